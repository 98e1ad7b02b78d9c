"""Contract section 22: bounded, quiet and secret on every route (hostile input, round 3)."""

import errno
import logging
import os
import shutil
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import pytest
from conftest import Reply, clean_env, run_job, write_csv, write_state
from mail_standins import certificate_file, run

from state_file import StateError, StateWriter, load_state
from ticket_core import ClosedTicket, Customer, RunState

TODAY = date.today()
DAY = (TODAY - timedelta(days=3)).strftime("%d/%m/%Y")
SINCE = (TODAY - timedelta(days=10)).strftime("%d/%m/%Y")
needs_bash = pytest.mark.skipif(shutil.which("bash") is None, reason="run_util.sh needs bash")


# ---------------------------------------------------------------- the state path

@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")
@pytest.mark.parametrize("mode", [("-testmode", "yes"), ("-testmode", "no", "-webhook_url", "http://127.0.0.1:9/x"),
                                  ("--check", "-webhook_url", "http://127.0.0.1:9/x")])
def test_a_state_path_that_is_a_pipe_is_refused_at_start_in_every_mode_never_a_hang(tmp_path, mode):
    os.mkfifo(tmp_path / "s.json")
    report = write_csv(tmp_path / "r.csv", [["Ann", "Lee", "ann@example.com", "1", "Closed", DAY]])
    result = run_job("--report", str(report), "--state-file", str(tmp_path / "s.json"), *mode, env=clean_env())
    assert result.returncode == 2 and "is a pipe" in result.stdout + result.stderr


def test_a_state_path_that_is_a_folder_is_refused(tmp_path):
    (tmp_path / "s.json").mkdir()
    with pytest.raises(StateError, match="is a folder"):
        load_state(tmp_path / "s.json")


# ---------------------------------------------------------------- endpoint settings

@pytest.mark.parametrize("setting, value", [("GMAIL_API_ENDPOINT", "http://gateway.example.com:8080/"),
                                            ("GMAIL_API_ENDPOINT", "ftp://gateway.example.com/"),
                                            ("GMAIL_API_ENDPOINT", "http://[::1"),
                                            ("SHEETS_API_ENDPOINT", "http://gateway.example.com/"),
                                            ("M365_GRAPH_ENDPOINT", "http://graph.example.com")])
def test_an_endpoint_setting_that_would_carry_a_token_in_clear_is_refused_at_start(tmp_path, setting, value):
    report = write_csv(tmp_path / "r.csv", [["Ann", "Lee", "ann@example.com", "1", "Closed", DAY]])
    send_with = "gmail" if setting != "M365_GRAPH_ENDPOINT" else "microsoft365"
    env = clean_env(**{setting: value, "M365_TENANT_ID": "t", "M365_CLIENT_ID": "c", "M365_CLIENT_SECRET": "s3cret"})
    result = run_job("--report", str(report), "--send-with", send_with, "--from", "s@example.com", "-testmode", "yes",
                     env=env)
    assert result.returncode == 2 and setting in result.stderr


def test_plain_http_endpoints_to_this_machine_are_fine():
    from url_rules import check_endpoint

    assert check_endpoint("http://127.0.0.1:8080/", "GMAIL_API_ENDPOINT") == "http://127.0.0.1:8080/"
    assert check_endpoint("https://gateway.example.com/", "SHEETS_API_ENDPOINT")


# ---------------------------------------------------------------- the log file

def test_a_log_file_that_stops_taking_writes_is_one_warning_and_the_summary_says_so(tmp_path, capsys, monkeypatch):
    import run_output

    monkeypatch.setitem(run_output.LOG_INCOMPLETE, "written", True)
    logger = run_output.setup_logging(tmp_path / "run.log", verbose=False, quiet=False)
    handler = next(h for h in logger.handlers if hasattr(h, "baseFilename"))

    def full(record):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(handler, "emit", lambda record: handler.handleError(record) if _raise(full, record) else None)
    for number in range(7):
        logger.warning("line %d", number)
    errors = capsys.readouterr().err
    assert errors.count("stopped taking writes") == 1 and "Traceback" not in errors and "Logging error" not in errors
    assert not run_output.log_is_complete()
    logger.handlers.clear()
    run_output.setup_logging(tmp_path / "next.log", verbose=False, quiet=False)   # the next run, in this process
    assert run_output.log_is_complete()   # its summary does not inherit "Log file incomplete"
    logger.handlers.clear()


def _raise(function, record) -> bool:
    try:
        function(record)
    except OSError:
        return True
    return False


# ---------------------------------------------------------------- libraries' own records

def test_no_library_record_reaches_the_terminal_through_python_s_last_resort(tmp_path, capsys):
    import run_output

    run_output.setup_logging(None, verbose=False, quiet=False)
    logging.getLogger("msal.application").warning("raw answer: client_secret=hunter2")
    assert "hunter2" not in capsys.readouterr().err
    logging.getLogger("ticket_notifier").handlers.clear()


def test_an_identity_platform_answering_a_proxy_page_is_one_line_and_leaks_nothing(tmp_path, microsoft):
    page = b"<html><body>Access denied by the firewall. You sent: client_secret=client-s3cret-value</body></html>"
    microsoft.token_error = None
    original = microsoft.respond

    def respond(received, index):
        if received.path.endswith("/oauth2/v2.0/token"):
            return Reply(200, {"Content-Type": "text/html"}, body=page)
        return original(received, index)
    microsoft.server.respond = respond
    result = run(tmp_path, "-testmode", "no", "--retries", "0", env=microsoft.env())
    shown = result.stdout + result.stderr
    assert result.returncode in (1, 2) and "client-s3cret-value" not in shown and "Traceback" not in shown
    assert "<html>" not in shown and "not the identity platform's" in shown


def test_a_token_endpoint_that_trickles_is_bounded_by_the_timeout_in_check(tmp_path, microsoft):
    original = microsoft.respond

    def respond(received, index):
        if received.path.endswith("/oauth2/v2.0/token"):
            return Reply(200, {"Content-Type": "application/json"}, delay=30, body=b"{}")
        return original(received, index)
    microsoft.server.respond = respond
    started = time.monotonic()
    result = run(tmp_path, "--check", "--timeout", "2", env=microsoft.env())
    assert result.returncode == 2 and "no complete answer" in result.stdout
    assert time.monotonic() - started < 25   # far below the 30 s the endpoint would take (not a timing assertion)


# ---------------------------------------------------------------- saving costs what changed

def test_a_save_during_delivery_encodes_the_held_list_only_when_it_changed(tmp_path, monkeypatch):
    import state_file

    held = {f"-/{n}": {"ticket": str(n), "day": TODAY.isoformat(), "reason": "no or invalid email", "customer": "",
                       "name": "", "closed": ""} for n in range(1000)}
    writer = StateWriter(tmp_path / "s.json", RunState(TODAY - timedelta(days=5), held=held))
    encoded = []
    real = state_file._json
    monkeypatch.setattr(state_file, "_json", lambda value: encoded.append(len(value)) or real(value))
    for n in range(20):
        ticket = ClosedTicket(f"c{n}@example.com", f"T{n}", "Closed", __import__("datetime").datetime(2026, 12, 1),
                              False, "C", "C")
        writer.record(Customer(f"c{n}@example.com", "C", "C", (ticket,)), TODAY)
    assert encoded.count(1000) == 1   # the held list of 1,000 encoded once, not on each of the 20 saves
    assert len(load_state(tmp_path / "s.json").held) == 1000


# ---------------------------------------------------------------- the wrappers

def wrapper(app, settings: str, *args: str):
    (app / "run_settings.env").write_text(settings, encoding="utf-8")
    result = subprocess.run(["bash", str(app / "run_util.sh"), *args], cwd=app, env=clean_env(PYTHON=sys.executable),
                            capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120)
    return result, (app / "logs" / "run_util.log").read_text(encoding="utf-8")


@needs_bash
@pytest.mark.parametrize("spelling", [["-testmode", "no"], ["-testmode=no"], ["--testmode", "no"], ["--testmode=NO"]])
def test_the_wrapper_reads_every_spelling_of_a_live_run(app, spelling):
    write_state(app / "last_run_date.json", {"last_run_date": SINCE})
    result, log = wrapper(app, "REPORT_FILE=examples/weekly_report.csv\nTESTMODE=yes\n", *spelling)
    assert "LIVE run" in log and "TEST MODE" not in log.split("====")[-1].split("\n")[1]


@needs_bash
def test_an_empty_testmode_is_test_mode(app):
    result, log = wrapper(app, "REPORT_FILE=examples/weekly_report.csv\nTESTMODE=\n")
    assert result.returncode == 0 and "TEST MODE" in log and "Summary (TEST MODE)" in log


@needs_bash
def test_a_settings_line_the_wrapper_cannot_read_is_named_by_its_number_never_echoed(app):
    result, log = wrapper(app, "REPORT_FILE=examples/weekly_report.csv\nTESTMODE=yes\nSMTP_PASSWORD: hunter2-secret\n")
    assert "line 3" in result.stderr + log and "hunter2-secret" not in result.stderr + result.stdout + log


# ---------------------------------------------------------------- every route reads at most 64 kB

@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="the peak memory is read from Linux's /proc")
def test_a_gmail_answer_that_never_ends_is_read_up_to_64_kb(tmp_path):
    from conftest import RawServer, run_cli_peak_memory

    peak = []

    def measured(*args, env):
        result, kilobytes = run_cli_peak_memory(*args, env=env)
        peak.append(kilobytes)
        return result
    from mail_standins import write_user_token

    import google_api

    def endless(connection, server):
        connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n")
        chunk = b"x" * 65536
        deadline = time.monotonic() + 8
        while not server.stopped.is_set() and time.monotonic() < deadline:
            connection.sendall(chunk)

    server = RawServer(endless)
    try:
        write_user_token(tmp_path / "token.json", google_api.CONSENT_SCOPES)
        root = server.url.removesuffix("hook")
        result = run(tmp_path, "--send-with", "gmail", "-testmode", "no", "--timeout", "3", "--retries", "0", "-v",
                     env=clean_env(GMAIL_API_ENDPOINT=root), rows=[["Ann", "Lee", "ann@example.com", "1", "Closed", DAY]],
                     runner=measured)   # a process of its own: its peak memory is the point
    finally:
        server.close()
    assert result.returncode == 0, result.stderr   # a 200 is delivered, whatever its body; its body was cut
    assert peak[0] < 400_000   # KB: nowhere near the answer's size


def test_the_capped_response_keeps_64_kb_and_drops_the_rest():
    import io

    import google_api

    class Socket:
        def __init__(self, data):
            self.data = io.BytesIO(data)

        def makefile(self, mode):
            return self.data

    body = b"y" * (200 * 1024)
    response = google_api._CappedResponse(Socket(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body))
    response.begin()
    assert len(response.read()) == google_api.MAX_ANSWER_BYTES and response.isclosed()


# ---------------------------------------------------------------- a certificate the job cannot use

@pytest.mark.parametrize("kind", ["encrypted", "ec"])
def test_a_certificate_the_job_cannot_use_is_a_usage_error_at_start_in_every_mode(tmp_path, kind):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    if kind == "encrypted":
        pem = certificate_file(tmp_path / "app.pem", rsa.generate_private_key(public_exponent=65537, key_size=2048),
                               serialization.BestAvailableEncryption(b"pass-phrase"))
        said = "is encrypted"
    else:
        pem = certificate_file(tmp_path / "app.pem", ec.generate_private_key(ec.SECP256R1()))
        said = "RS256"
    report = write_csv(tmp_path / "r.csv", [["Ann", "Lee", "ann@example.com", "1", "Closed", DAY]])
    env = clean_env(SEND_WITH="microsoft365", M365_TENANT_ID="t", M365_CLIENT_ID="c", M365_CERTIFICATE=str(pem))
    for mode in (("-testmode", "yes"), ("--check",)):
        result = run_job("--report", str(report), "--from", "s@example.com", *mode, env=env)
        shown = result.stdout + result.stderr
        assert result.returncode == 2 and said in shown and "Traceback" not in shown and "unexpected" not in shown


# ---------------------------------------------------------------- SMTP --check as Postfix answers

def test_check_tries_rcpt_and_fails_on_postfix_s_delayed_reject_naming_the_login_settings(tmp_path, smtp_server):
    recorder, port = smtp_server("plain", auth_require_tls=False)
    recorder.rcpt_reply = lambda address, attempt: "554 5.7.1 <client>: Client host rejected: Access denied"
    report = write_csv(tmp_path / "r.csv", [["Ann", "Lee", "ann@example.com", "1", "Closed", DAY]])
    args = ("--check", "--report", str(report), "--state-file", str(tmp_path / "s.json"),
            "--smtp-url", f"smtp://127.0.0.1:{port}", "--from", "support@example.com")
    result = run_job(*args, env=clean_env())
    assert result.returncode == 2 and "SMTP_USERNAME and SMTP_PASSWORD" in result.stdout
    assert "Client host rejected" in result.stdout and recorder.messages == []
    recorder.rcpt_reply = lambda address, attempt: None
    result = run_job(*args, env=clean_env())
    assert result.returncode == 0 and "no TLS" in result.stdout and "TLS verified" not in result.stdout
    assert recorder.messages == [] and recorder.rcpt_attempts   # RCPT tried, then RSET: nothing sent


# ---------------------------------------------------------------- an untrusted CA, named where it fails

def test_gmail_behind_an_untrusted_certificate_stops_once_with_the_ca_advice(tmp_path, certificates):
    from conftest import WebhookServer
    from mail_standins import GmailApi, write_user_token

    import google_api

    ca, cert, key = certificates
    api = GmailApi()
    api.server.close()
    api.server = WebhookServer(tls=(cert, key))
    api.server.respond = api.respond
    try:
        write_user_token(tmp_path / "token.json", google_api.CONSENT_SCOPES)
        root = f"https://localhost:{api.server.httpd.server_address[1]}/"
        result = run(tmp_path, "--send-with", "gmail", "-testmode", "no", env=clean_env(GMAIL_API_ENDPOINT=root))
    finally:
        api.server.close()
    assert result.returncode == 2 and "HTTPLIB2_CA_CERTS" in result.stderr
    assert "Customers not attempted  2" in result.stdout   # found on the first customer, the others never tried


def test_the_secret_filter_knows_google_s_client_secret_and_tokens(tmp_path):
    import json

    from conftest import ROOT

    from cli_options import parse_args

    (tmp_path / "credential.json").write_text(json.dumps({"installed": {"client_id": "x", "client_secret": "GOCSPX-s3cr3t"}}))
    (tmp_path / "token.json").write_text(json.dumps({"token": "ya29.access-token", "refresh_token": "1//refresh-token"}))
    settings = parse_args(["--report", "r.csv", "-testmode", "yes", "--credentials", str(tmp_path / "credential.json"),
                           "--token", str(tmp_path / "token.json")], ROOT, "t", environment={})
    assert {"GOCSPX-s3cr3t", "ya29.access-token", "1//refresh-token"} <= set(settings.secrets)
