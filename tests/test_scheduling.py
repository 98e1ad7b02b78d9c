"""The weekly entry points: run_util.sh end to end, run_util.bat by its structure, and what git ignores."""

import os
import re
import shutil
import subprocess
import sys

import pytest
from conftest import ROOT, clean_env
from standardwebhooks.webhooks import Webhook

from cli_options import GENERAL_KEYS
from destinations import environment_keys

WRAPPER_KEYS = ("SHEET_ID", "SHEET_RANGE", "REPORT_FILE", "TESTMODE", "EXTRA_ARGS")
# Every key the wrappers pass on: theirs, the job's general ones and each destination's own (from the one list).
SETTINGS_KEYS = (*WRAPPER_KEYS, *GENERAL_KEYS, *environment_keys())
needs_bash = pytest.mark.skipif(shutil.which("bash") is None, reason="run_util.sh needs bash")


def run_script(app, tmp_path, settings: str | None):
    if settings is not None:
        (app / "run_settings.env").write_text(settings, encoding="utf-8")
    elsewhere = tmp_path / "somewhere-else"
    elsewhere.mkdir(exist_ok=True)
    env = clean_env(PYTHON=sys.executable)
    return subprocess.run(["bash", str(app / "run_util.sh")], cwd=elsewhere, env=env, capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, timeout=120)


@needs_bash
def test_run_util_sh_runs_the_job_in_test_mode_from_another_folder(app, tmp_path):
    settings = ("# comment\r\nREPORT_FILE=examples/weekly_report.csv\r\nTESTMODE=yes\r\n"
                "EXTRA_ARGS=--since 01/11/2026\r\nWEBHOOK_URL=\r\n")
    result = run_script(app, tmp_path, settings)
    assert result.returncode == 0, result.stderr
    run_log = (app / "logs" / "run_util.log").read_text(encoding="utf-8")
    assert "Would email 12 customers" in run_log and "Summary (TEST MODE)" in run_log
    assert "Rows read" in (app / "logs" / "process_ticket.log").read_text(encoding="utf-8")
    assert not (app / "last_run_date.json").exists()
    assert not (tmp_path / "somewhere-else" / "logs").exists()


@needs_bash
def test_run_util_sh_reads_secrets_literally_and_sends(app, tmp_path, webhook):
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    settings = (f"REPORT_FILE=examples/weekly_report.csv\nTESTMODE=no\nWEBHOOK_URL={webhook.url}?a=1&b=$HOME\n"
                f"WEBHOOK_SECRET={secret}\nWEBHOOK_AUTHORIZATION=Bearer x&y!z\nEXTRA_ARGS=--since 01/11/2026\n")
    result = run_script(app, tmp_path, settings)
    assert result.returncode == 0, result.stderr
    assert len(webhook.requests) == 12
    assert webhook.requests[0].path == "/hooks/notify?a=1&b=$HOME"
    assert webhook.requests[0].headers["authorization"] == "Bearer x&y!z"
    Webhook(secret).verify(webhook.requests[0].body, webhook.requests[0].headers)
    assert '"last_run_date": "24/11/2026"' in (app / "last_run_date.json").read_text()
    assert "/hooks/notify" not in (app / "logs" / "run_util.log").read_text(encoding="utf-8")


@needs_bash
@pytest.mark.parametrize(("settings", "message"), [
    (None, "run_settings.env not found"),
    ("REPORT_FILE=examples/missing.csv\nTESTMODE=yes\n", "report file not found"),
])
def test_run_util_sh_passes_exit_code_2_on(app, tmp_path, settings, message):
    result = run_script(app, tmp_path, settings)
    assert result.returncode == 2
    logged = result.stderr + ((app / "logs" / "run_util.log").read_text() if (app / "logs").exists() else "")
    assert message in logged


def test_run_util_bat_structure():
    raw = (ROOT / "run_util.bat").read_bytes()
    lines = raw.split(b"\n")[:-1]
    assert lines and all(line.endswith(b"\r") for line in lines), "every line must end in CRLF"
    text = raw.decode("ascii")
    assert 'cd /d "%~dp0"' in text
    assert r"venv\Scripts\python.exe" in text
    assert "run_settings.env" in text and r"logs\run_util.log" in text and ">>" in text
    assert text.count("goto :done") == 3 and "exit /b %EXIT_CODE%" in text and "%*" in text
    assert "http" not in text.lower() and "whsec_" not in text
    assert not re.search(r"[A-Za-z0-9_-]{30,}", text), "no sheet id or secret in the .bat"
    for key in SETTINGS_KEYS:
        assert key in text


def test_run_util_bat_has_no_expanded_path_inside_a_parenthesised_block():
    """A ")" in "C:\\Program Files (x86)" would end such a block on a real cmd (KB 2524009): the .bat
    has no multi-line block, and no path variable stands inside the parentheses of a line."""
    for line in (ROOT / "run_util.bat").read_text(encoding="ascii").splitlines():
        if line.lower().startswith("rem "):
            continue
        assert not line.rstrip().endswith("("), line
        unquoted = re.sub(r'"[^"]*"', '""', line)
        for inside in re.findall(r"\(([^()]*)\)", unquoted):
            assert not re.search(r"%~dp0|%~f0|%RUN_LOG%|%PYTHON%|%SETTINGS%|%CD%", inside), line


def test_settings_example_names_every_setting():
    """A destination added to destinations.py fails this until the wrappers and the example know its keys."""
    example = (ROOT / "run_settings.env.example").read_text(encoding="utf-8")
    names = re.findall(r"^([A-Z_0-9]+)=", example, re.MULTILINE)
    assert sorted(names) == sorted(SETTINGS_KEYS)
    for key in SETTINGS_KEYS:
        assert key in (ROOT / "run_util.sh").read_text(encoding="utf-8")


def git(*args):
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True)


@pytest.mark.skipif(shutil.which("git") is None or git("rev-parse").returncode != 0, reason="not a git checkout")
def test_git_ignores_secrets_state_settings_logs_and_venv_and_keeps_bat_crlf():
    for path in ("credential.json", "token.json", "last_run_date.json", "last_run_date.json.lock",
                 "run_settings.env", "logs/process_ticket.log", "venv/bin/python"):
        assert git("check-ignore", "-q", path).returncode == 0, path
    assert git("check-attr", "eol", "--", "run_util.bat").stdout.strip().endswith("eol: crlf")


@needs_bash
def test_run_util_sh_says_which_mode_ran_in_the_log(app, tmp_path):
    settings = "REPORT_FILE=examples/weekly_report.csv\nTESTMODE=yes\n"
    result = run_script(app, tmp_path, settings)
    assert result.returncode == 0 and result.stdout == ""   # no terminal: everything goes to the log
    run_log = (app / "logs" / "run_util.log").read_text(encoding="utf-8")
    assert "run_util.sh: TEST MODE (TESTMODE=yes in run_settings.env" in run_log


@needs_bash
@pytest.mark.skipif(sys.platform == "win32", reason="a pseudo-terminal is POSIX")
def test_run_util_sh_by_hand_shows_the_mode_and_the_summary_on_the_terminal(app, tmp_path):
    """The README's first live run by hand, with TESTMODE=yes left in the settings: the terminal says
    it was a test run (an argument -testmode no makes it live)."""
    import pty

    (app / "run_settings.env").write_text("REPORT_FILE=examples/weekly_report.csv\nTESTMODE=yes\n", encoding="utf-8")
    primary, secondary = pty.openpty()
    process = subprocess.Popen(["bash", str(app / "run_util.sh"), "--since", "01/11/2026"], cwd=tmp_path,
                               env=clean_env(PYTHON=sys.executable), stdin=subprocess.DEVNULL, stdout=secondary,
                               stderr=secondary)
    os.close(secondary)
    output = b""
    while True:
        try:
            chunk = os.read(primary, 65536)
        except OSError:
            break
        if not chunk:
            break
        output += chunk
    assert process.wait(timeout=120) == 0
    os.close(primary)
    text = output.decode("utf-8", "replace")
    assert "TEST MODE (TESTMODE=yes in run_settings.env" in text and "Summary (TEST MODE)" in text
    assert "Summary (TEST MODE)" in (app / "logs" / "run_util.log").read_text(encoding="utf-8")
