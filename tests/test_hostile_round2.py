"""Hostile settings, files and signals, round 2 (contract section 15): no secret echoed, no "unexpected",
nothing unbounded."""

import json
import signal
import subprocess
import sys
import time
import zipfile
from datetime import date, timedelta

import pytest
from conftest import ROOT, RawServer, Reply, WebhookServer, clean_env, run_job, write_csv, write_state

TODAY = date.today()
RECENT = (TODAY - timedelta(days=3)).strftime("%d/%m/%Y")
SINCE = (TODAY - timedelta(days=10)).strftime("%d/%m/%Y")
ROWS = [[f"N{n}", "X", f"c{n}@example.com", str(n), "Closed", RECENT] for n in range(4)]
SECRET_PATH = "s3cr3tPath9"
API_KEY = "AIzaSyD-s3cr3t-key-0123456789"


@pytest.fixture
def monitor():
    server = WebhookServer()
    yield server
    server.close()


def ping_bodies(monitor) -> str:
    return "\n".join(received.body.decode("utf-8", "replace") for received in monitor.requests)


# ---------------------------------------------------------------- no secret echoed

@pytest.mark.parametrize("mistyped", [
    ["--webhook_url", f"https://hooks.example.com/{SECRET_PATH}/"],
    [f"--webhook_url=https://hooks.example.com/{SECRET_PATH}/"],
    ["--api_key", API_KEY],
    ["-webhookurl", f"https://hooks.example.com/{SECRET_PATH}/"],
    ["--smtp_password", API_KEY],
])
def test_a_mistyped_option_is_named_but_its_value_never_echoed(tmp_path, monitor, mistyped):
    report = write_csv(tmp_path / "r.csv", ROWS)
    log_dir = tmp_path / "logs"
    result = run_job("--report", str(report), "-testmode", "no", "--ping-url", monitor.root + "ping", *mistyped,
                     "--log-file", str(log_dir / "run.log"))
    assert result.returncode == 2
    assert mistyped[0].split("=")[0] in result.stderr and "value" in result.stderr
    shown = result.stdout + result.stderr + ping_bodies(monitor)
    assert SECRET_PATH not in shown and API_KEY not in shown
    assert monitor.requests and monitor.requests[-1].path.startswith("/ping/2")


def test_the_wrappers_log_never_gets_the_value_of_a_mistyped_option(tmp_path):
    app = tmp_path / "app"
    app.mkdir()
    for name in [*(p.name for p in ROOT.glob("*.py")), "run_util.sh"]:
        (app / name).write_bytes((ROOT / name).read_bytes())
    (app / "run_settings.env").write_text(f"REPORT_FILE={write_csv(tmp_path / 'r.csv', ROWS)}\nTESTMODE=yes\n"
                                          f"EXTRA_ARGS=--webhook_url https://hooks.example.com/{SECRET_PATH}/\n")
    result = subprocess.run(["bash", str(app / "run_util.sh")], env=clean_env(PYTHON=sys.executable),
                            capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120)
    assert result.returncode == 2
    text = (app / "logs" / "run_util.log").read_text(encoding="utf-8")
    assert "unknown option --webhook_url" in text and SECRET_PATH not in text


# ---------------------------------------------------------------- nothing unbounded

def test_a_monitor_that_answers_an_endless_body_is_not_read(tmp_path, webhook):
    def endless(connection, server):
        connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n")
        try:
            for _ in range(200_000):           # 2.6 GB if anyone read it all
                connection.sendall(b"x" * 13_000)
        except OSError:
            pass
    monitor = RawServer(endless)
    try:
        report = write_csv(tmp_path / "r.csv", ROWS)
        state = write_state(tmp_path / "s.json", {"last_run_date": SINCE})
        result = run_job("--report", str(report), "--state-file", str(state), "-webhook_url", webhook.url,
                         "-testmode", "no", "--ping-url", monitor.url)
    finally:
        monitor.close()
    assert result.returncode == 0, result.stderr
    assert monitor.requests == 2 and len(webhook.requests) == 4


def test_a_sheets_api_that_trickles_its_answer_is_bounded_as_a_whole(monkeypatch):
    import google_api

    def trickle(connection, server):
        connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n")
        for _ in range(40):
            if server.stopped.is_set():
                return
            connection.sendall(b" ")
            time.sleep(0.25)
    endpoint = RawServer(trickle)
    monkeypatch.setattr(google_api, "GOOGLE_CALL_SECONDS", 2.0)
    try:
        with pytest.raises(google_api.GoogleSetupError, match="no complete answer within 2s"):
            list(google_api.read_sheet_rows("1AbC", "Sheet1!A1:F", credentials_path=ROOT / "none.json",
                                            token_path=ROOT / "none.json", api_key="k",
                                            endpoint=endpoint.url.rsplit("/", 1)[0] + "/"))
    finally:
        endpoint.close()


# ---------------------------------------------------------------- a clear line, not "unexpected"

@pytest.mark.parametrize("route", ["webhook", "smtp"])
@pytest.mark.parametrize("bundle", ["missing", "not-pem"])
def test_a_ca_bundle_that_cannot_be_used_is_one_line_at_start(tmp_path, webhook, route, bundle):
    path = tmp_path / "nonexistent.pem" if bundle == "missing" else write_csv(tmp_path / "bundle.pem", [["not a cert"]])
    destination = (["-webhook_url", "https://hooks.example.com/x"] if route == "webhook"
                   else ["--smtp-url", "smtp://smtp.example.com:587", "--from", "a@example.com"])
    result = run_job("--report", str(write_csv(tmp_path / "r.csv", ROWS)), "--state-file", str(tmp_path / "s.json"),
                     "--since", SINCE, "-testmode", "no", *destination, env=clean_env(SSL_CERT_FILE=str(path)))
    assert result.returncode == 2
    assert result.stderr.startswith("error: SSL_CERT_FILE names a CA bundle that cannot be used")
    assert "unexpected" not in result.stderr and len(result.stderr.splitlines()) == 1
    assert not (tmp_path / "s.json").exists()


def test_a_damaged_workbook_is_one_clear_line(tmp_path):
    from openpyxl import Workbook

    workbook = Workbook()
    workbook.active.append(["Firstname", "Lastname", "Email", "Ticket", "Status", "Date"])
    workbook.active.append(["A", "B", "a@example.com", "1", "Closed", RECENT])
    workbook.save(tmp_path / "good.xlsx")
    with zipfile.ZipFile(tmp_path / "good.xlsx") as source, zipfile.ZipFile(tmp_path / "r.xlsx", "w") as damaged:
        for item in source.infolist():
            data = source.read(item.filename)
            if item.filename.startswith("xl/worksheets/sheet"):
                data = data[: len(data) // 2]       # the sheet's XML cut in the middle
            damaged.writestr(item, data)
    result = run_job("--report", str(tmp_path / "r.xlsx"), "--since", SINCE, "-testmode", "yes")
    assert result.returncode == 2
    assert "cannot be read to its end" in result.stderr or "is not a readable .xlsx workbook" in result.stderr
    assert "unexpected" not in result.stderr


@pytest.mark.skipif(sys.platform == "win32", reason="signals to a child are POSIX here")
@pytest.mark.parametrize("signal_number", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_check_says_interrupted_without_a_traceback(tmp_path, signal_number):
    def silent(connection, server):
        time.sleep(20)
    hanging = RawServer(silent, read_request=False)
    try:
        process = subprocess.Popen(
            [sys.executable, str(ROOT / "process_ticket.py"), "--check", "--report", str(write_csv(tmp_path / "r.csv", ROWS)),
             "--smtp-url", f"smtp://127.0.0.1:{hanging.sock.getsockname()[1]}", "--from", "a@example.com",
             "--state-file", str(tmp_path / "s.json"), "--timeout", "30"],
            env=clean_env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(1.5)
        process.send_signal(signal_number)
        out, err = process.communicate(timeout=30)
    finally:
        hanging.close()
    assert process.returncode == 2
    assert "interrupted" in err and "Traceback" not in err


@pytest.mark.skipif(sys.platform == "win32", reason="signals to a child are POSIX here")
@pytest.mark.parametrize("signal_number", [signal.SIGINT, signal.SIGTERM])
def test_a_stopped_live_run_says_interrupted_and_pings_exit_2(tmp_path, webhook, monitor, signal_number):
    report = write_csv(tmp_path / "r.csv", ROWS)
    state = write_state(tmp_path / "s.json", {"last_run_date": SINCE})
    webhook.respond = lambda received, index: Reply(200, delay=1.0)
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "process_ticket.py"), "--report", str(report), "--state-file", str(state),
         "-webhook_url", webhook.url, "-testmode", "no", "--workers", "1", "--ping-url", monitor.root + "ping"],
        env=clean_env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not webhook.requests and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal_number)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 2
    assert "interrupted" in err and "Traceback" not in err
    assert [request.path.split("?")[0] for request in monitor.requests] == ["/ping/start", "/ping/2"]
    assert "interrupted" in monitor.requests[-1].body.decode()
    saved = json.loads(state.read_text())
    assert saved["last_run_date"] == SINCE   # nothing settled past what was delivered


def test_a_log_file_that_cannot_be_written_still_pings_exit_2(tmp_path, monitor):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    result = run_job("--report", str(write_csv(tmp_path / "r.csv", ROWS)), "-testmode", "no", "-webhook_url",
                     "http://127.0.0.1:9/hook", "--log-file", str(blocker / "run.log"), "--ping-url", monitor.root + "p")
    assert result.returncode == 2 and "cannot write the log file" in result.stderr
    assert [request.path.split("?")[0] for request in monitor.requests] == ["/p/2"]


# ---------------------------------------------------------------- previews

def test_a_very_long_address_gets_a_short_preview_file_and_earlier_previews_stay_until_the_new_set_is_written(tmp_path):
    long_address = "a" * 60 + "@" + ".".join(["b" * 60] * 3) + ".com"
    folder = tmp_path / "p"
    folder.mkdir()
    (folder / "001-old@example.com.eml").write_text("old")
    rows = [["A", "", long_address, "1", "Closed", RECENT], ["B", "", "b@example.com", "2", "Closed", RECENT]]
    result = run_job("--report", str(write_csv(tmp_path / "r.csv", rows)), "--since", SINCE, "-testmode", "yes",
                     "--preview-dir", str(folder))
    assert result.returncode == 0, result.stderr
    names = sorted(path.name for path in folder.glob("*.eml"))
    assert len(names) == 2 and names[0].startswith("001-aaaa") and names[1] == "002-b@example.com.eml"
    assert all(len(name) < 80 for name in names)


def test_a_preview_that_cannot_be_written_keeps_the_earlier_set(tmp_path):
    folder = tmp_path / "p"
    folder.mkdir()
    (folder / "001-old@example.com.eml").write_text("old")
    (folder / "002-b@example.com.eml").mkdir()     # the new set cannot be written here
    rows = [["A", "", "a@example.com", "1", "Closed", RECENT], ["B", "", "b@example.com", "2", "Closed", RECENT]]
    result = run_job("--report", str(write_csv(tmp_path / "r.csv", rows)), "--since", SINCE, "-testmode", "yes",
                     "--preview-dir", str(folder))
    assert result.returncode == 2 and "cannot write the previews" in result.stderr
    assert (folder / "001-old@example.com.eml").read_text() == "old"


# ---------------------------------------------------------------- ranges that read nothing

@pytest.mark.parametrize("range_", ["Tickets!F1:A", "Tickets!A500:F"])
def test_a_workbook_range_that_reads_nothing_is_an_error(tmp_path, range_):
    from openpyxl import Workbook

    workbook = Workbook()
    workbook.active.title = "Tickets"
    workbook.active.append(["Firstname", "Lastname", "Email", "Ticket", "Status", "Date"])
    workbook.active.append(["A", "B", "a@example.com", "1", "Closed", RECENT])
    workbook.save(tmp_path / "r.xlsx")
    result = run_job("--report", str(tmp_path / "r.xlsx"), "-range", range_, "--since", SINCE, "-testmode", "yes")
    assert result.returncode == 2 and "Summary" not in result.stdout


def test_a_bounded_call_returns_raises_or_gives_up():
    from time_bounds import TooSlowError, run_within

    with pytest.raises(TooSlowError):
        run_within(0.2, lambda: time.sleep(1))
    with pytest.raises(ZeroDivisionError):
        run_within(5, lambda: 1 / 0)
    assert run_within(5, lambda: 42) == 42
