"""run_util.bat on a real cmd interpreter: wine's cmd.exe, started from C:\\windows\\system32 as Task Scheduler does.

A stand-in python.exe (tests/wine/standin_python.c, cross-compiled with MinGW) records the arguments,
folder and environment it was started with and exits with a chosen code. Wine's output goes to files,
never pipes (its helper processes keep a pipe open). Without wine or MinGW these tests are skipped.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

WINE, MINGW = shutil.which("wine"), shutil.which("x86_64-w64-mingw32-gcc")
pytestmark = pytest.mark.skipif(
    sys.platform == "win32" or not WINE or not MINGW,
    reason="needs wine and gcc-mingw-w64-x86-64 (.ci/run installs them: apt-get install wine wine64 gcc-mingw-w64-x86-64)")

APP_FOLDER = r"C:\Program Files (x86)\ticket notifier"


class Wine:
    """A wine prefix of the test's own with the stand-in python and a Task Scheduler-like launcher."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.env = {key: value for key, value in os.environ.items() if not key.startswith(("WINE", "STANDIN"))}
        self.env.update(WINEPREFIX=str(folder / "prefix"), WINEDEBUG="-all", WINEDLLOVERRIDES="mscoree,mshtml=")
        for name in ("standin_python", "launcher"):
            subprocess.run([MINGW, "-municode", "-O1", "-o", str(folder / f"{name}.exe"),
                            str(ROOT / "tests" / "wine" / f"{name}.c")], check=True, capture_output=True, timeout=120)
        self.wine("cmd", "/c", "exit", "0", timeout=180)  # makes the prefix (about 10 s)
        self.drive_c = folder / "prefix" / "drive_c"
        shutil.copy(folder / "launcher.exe", self.drive_c / "launcher.exe")

    def wine(self, *args: str, env: dict | None = None, timeout: float = 120) -> int:
        with (self.folder / "wine.out").open("wb") as out, (self.folder / "wine.err").open("wb") as err:
            return subprocess.run([WINE, *args], env={**self.env, **(env or {})}, stdout=out, stderr=err,
                                  stdin=subprocess.DEVNULL, timeout=timeout).returncode

    def app(self, name: str = APP_FOLDER) -> Path:
        """A fresh install folder holding run_util.bat and the stand-in venv\\Scripts\\python.exe."""
        folder = self.drive_c / name[3:].replace("\\", "/")
        shutil.rmtree(folder, ignore_errors=True)
        (folder / "venv" / "Scripts").mkdir(parents=True)
        shutil.copy(ROOT / "run_util.bat", folder / "run_util.bat")
        shutil.copy(ROOT / "run_util.bom", folder / "run_util.bom")
        shutil.copy(self.folder / "standin_python.exe", folder / "venv" / "Scripts" / "python.exe")
        return folder

    def run_bat(self, app_name: str, arguments: str = "", exit_code: int = 0) -> tuple[int, list[tuple[str, str]]]:
        """run_util.bat started from System32; (exit code, what the stand-in python recorded)."""
        record = self.folder / "record.txt"
        for attempt in range(2):  # one retry: wine's own start-up fails about once in 4,000 starts
            record.unlink(missing_ok=True)
            launch = f'cmd.exe /c ""{app_name}\\run_util.bat" {arguments}"'
            code = self.wine("C:\\launcher.exe", env={"LAUNCH": launch, "STANDIN_EXIT": str(exit_code),
                                                      "STANDIN_RECORD": "Z:" + str(record).replace("/", "\\")})
            if code not in (97, 98) and (code == exit_code or not record.exists()) or attempt:
                break
        lines = record.read_text(encoding="utf-8").splitlines() if record.exists() else []
        return code, [tuple(line.split("\t", 1)) for line in lines]


@pytest.fixture(scope="module")
def wine(tmp_path_factory):
    folder = tmp_path_factory.mktemp("wine")
    instance = Wine(folder)
    yield instance
    subprocess.run(["wineserver", "-k"], env=instance.env, capture_output=True, timeout=60)


def settings(folder: Path, text: str, bom: bool = False) -> None:
    (folder / "run_settings.env").write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.replace("\n", "\r\n").encode("utf-8"))


def arguments(record):
    return [value for label, value in record if label == "arg"]


def environment(record):
    return {label[4:]: value for label, value in record if label.startswith("env ")}


def test_settings_reach_python_byte_for_byte_from_a_folder_with_spaces_and_parentheses(wine):
    app = wine.app()
    url = 'https://hooks.example.com/x?a=1&b=%20&c=%PATH%!d^e+/=="q" '
    settings(app, "# comment\nSHEET_ID=1AbC\nSHEET_RANGE=Clôturés!A2:F\nTESTMODE=no\n"
                  f"WEBHOOK_URL={url}\nWEBHOOK_AUTHORIZATION=Bearer x&y!z\n"
                  'EXTRA_ARGS=--column date="Solved at" --subject "Your ticket & more"\n')
    code, record = wine.run_bat(APP_FOLDER, "-testmode yes --since 01/11/2026")
    assert code == 0
    assert dict(record)["cwd"] == APP_FOLDER
    assert arguments(record) == [
        APP_FOLDER + r"\process_ticket.py", "-sheetid", "1AbC", "-range", "Clôturés!A2:F", "-testmode", "no",
        "--log-file", APP_FOLDER + r"\logs\process_ticket.log", "--column", "date=Solved at",
        "--subject", "Your ticket & more", "-testmode", "yes", "--since", "01/11/2026"]
    assert environment(record)["WEBHOOK_URL"] == url
    assert environment(record)["WEBHOOK_AUTHORIZATION"] == "Bearer x&y!z"
    assert environment(record)["PYTHONUTF8"] == "1"
    log = (app / "logs" / "run_util.log").read_text(encoding="utf-8")
    assert log.startswith("==== ") and "stand-in python ran" in log


def test_a_mistyped_key_is_warned_about_in_the_log_and_sets_nothing(wine):
    app = wine.app()
    settings(app, "# saved by an old Notepad, with a BOM\nREPORT_FILE=report.csv\nWEBHOOK_SECERT=whsec_abc\nPATH=C:\\nowhere\n",
             bom=True)
    code, record = wine.run_bat(APP_FOLDER)
    assert code == 0
    log = (app / "logs" / "run_util.log").read_text(encoding="utf-8")
    assert "unknown setting 'WEBHOOK_SECERT'" in log and "unknown setting 'PATH'" in log
    assert "WEBHOOK_SECERT" not in environment(record)
    assert arguments(record)[1:3] == ["--report", "report.csv"] and "-range" not in arguments(record)


def test_a_workbook_gets_its_sheet_from_sheet_range(wine):
    app = wine.app()
    settings(app, "REPORT_FILE=C:\\exports\\tickets.xlsx\nSHEET_RANGE=Tickets\nTESTMODE=yes\n")
    code, record = wine.run_bat(APP_FOLDER)
    assert code == 0
    assert arguments(record)[1:7] == ["--report", "C:\\exports\\tickets.xlsx", "-range", "Tickets", "-testmode", "yes"]


@pytest.mark.parametrize("exit_code", [0, 1, 2])
def test_exit_codes_pass_through(wine, exit_code):
    app = wine.app()
    settings(app, "SHEET_ID=abc\n")
    code, record = wine.run_bat(APP_FOLDER, exit_code=exit_code)
    assert code == exit_code and record


def test_missing_settings_and_a_missing_python_are_errors_in_the_log(wine):
    app = wine.app()
    code, record = wine.run_bat(APP_FOLDER)
    assert code == 2 and not record
    assert "run_settings.env not found" in (app / "logs" / "run_util.log").read_text(encoding="utf-8")
    settings(app, "SHEET_ID=abc\n")
    (app / "venv" / "Scripts" / "python.exe").unlink()
    code, record = wine.run_bat(APP_FOLDER)
    assert code == 2 and not record
    assert "python.exe not found" in (app / "logs" / "run_util.log").read_text(encoding="utf-8")


@pytest.mark.parametrize("testmode, said", [("yes", "TEST MODE (TESTMODE=yes in run_settings.env)"),
                                             ("no", "finished with exit code 0 (TESTMODE=no")])
def test_the_console_is_told_which_mode_ran(wine, testmode, said):
    """A first live run by hand ("run_util.bat --since ...") with TESTMODE=yes still in the settings
    must not look like a live run: the console says which mode ran."""
    app = wine.app()
    settings(app, f"REPORT_FILE=report.csv\nTESTMODE={testmode}\n")
    code, record = wine.run_bat(APP_FOLDER, "--since 01/11/2026")
    assert code == 0 and record
    assert said in (wine.folder / "wine.out").read_text(encoding="utf-8", errors="replace")


@pytest.mark.parametrize("line", ["TESTMODE=\n", ""])
def test_an_empty_or_missing_testmode_is_test_mode_under_cmd(wine, line):
    app = wine.app()
    settings(app, "REPORT_FILE=report.csv\n" + line)
    code, record = wine.run_bat(APP_FOLDER)
    assert code == 0 and arguments(record)[3:5] == ["-testmode", "yes"]
