"""Knowing that the weekly run happened (contract section 12): the heartbeat pings and process_ticket.py --check."""

import json
import time
import uuid
from datetime import date, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from conftest import RawServer, Reply, WebhookServer, clean_env, free_port, run_job, write_csv, write_state

TODAY = date.today()
RECENT = (TODAY - timedelta(days=3)).strftime("%d/%m/%Y")
SINCE = (TODAY - timedelta(days=10)).strftime("%d/%m/%Y")
ROWS = [["Jane", "Doe", "jane@example.com", "1", "Closed", RECENT]]


@pytest.fixture
def monitor():
    server = WebhookServer()
    yield server
    server.close()


def pings(monitor):
    return [(urlsplit(r.path).path, parse_qs(urlsplit(r.path).query), r) for r in monitor.requests]


def test_a_live_run_pings_start_and_its_exit_code_with_the_summary_and_one_run_id(tmp_path, webhook, monitor):
    report = write_csv(tmp_path / "r.csv", ROWS)
    url = monitor.root + "ping/SECRET-UUID"
    log_file = tmp_path / "run.log"
    result = run_job("--report", str(report), "--state-file", str(tmp_path / "s.json"), "--since", SINCE,
                     "-webhook_url", webhook.url, "-testmode", "no", "--log-file", str(log_file), "-v",
                     env=clean_env(PING_URL=url))
    assert result.returncode == 0, result.stderr
    (start_path, start_query, _), (end_path, end_query, end) = pings(monitor)
    assert (start_path, end_path) == ("/ping/SECRET-UUID/start", "/ping/SECRET-UUID/0")
    assert start_query["rid"] == end_query["rid"] and uuid.UUID(start_query["rid"][0]).version == 4
    assert end.method == "POST" and "Customers notified       1" in end.body.decode()
    assert "SECRET-UUID" not in result.stdout + result.stderr + log_file.read_text()


def test_a_run_that_stops_before_its_summary_pings_exit_2_with_the_error(tmp_path, webhook, monitor):
    report = write_csv(tmp_path / "r.csv", ROWS)
    state = write_state(tmp_path / "s.json", "{broken")
    result = run_job("--report", str(report), "--state-file", str(state), "-webhook_url", webhook.url,
                     "-testmode", "no", "--ping-url", monitor.root + "p")
    assert result.returncode == 2
    (_, _, _), (end_path, _, end) = pings(monitor)
    assert end_path == "/p/2" and "is not valid JSON" in end.body.decode()


def test_a_live_run_refused_at_start_still_pings_exit_2_with_the_error(tmp_path, monitor):
    report = write_csv(tmp_path / "r.csv", ROWS)
    result = run_job("--report", str(report), "-testmode", "no", "--ping-url", monitor.root + "p")
    assert result.returncode == 2 and "no destination" in result.stderr
    [(path, _, end)] = pings(monitor)
    assert path == "/p/2" and "no destination" in end.body.decode()
    refused_in_test_mode = run_job("--report", str(report), "-testmode", "yes", "--since", "31/12/9999",
                                   env=clean_env(PING_URL=monitor.root + "p"))
    assert refused_in_test_mode.returncode == 2 and len(monitor.requests) == 1


@pytest.fixture
def quick_ping_retries(monkeypatch):
    """Ping retries a hundredth of a second apart instead of one and two seconds: the same attempts, sooner."""
    import heartbeat

    monkeypatch.setattr(heartbeat, "PING_BACKOFF_SECONDS", 0.01)


def test_a_failing_ping_never_changes_the_exit_code(tmp_path, webhook, quick_ping_retries):
    report = write_csv(tmp_path / "r.csv", ROWS)
    started = time.monotonic()
    result = run_job("--report", str(report), "--state-file", str(tmp_path / "s.json"), "--since", SINCE,
                     "-webhook_url", webhook.url, "-testmode", "no", "--ping-url", f"http://127.0.0.1:{free_port()}/p")
    assert result.returncode == 0 and len(webhook.requests) == 1
    assert "the start ping to 127.0.0.1:" in result.stderr and "the 0 ping" in result.stderr
    assert time.monotonic() - started < 60


def test_a_monitor_answering_500_is_retried_twice_then_warned_about(tmp_path, webhook, monitor, quick_ping_retries):
    monitor.respond = lambda received, index: Reply(500)
    report = write_csv(tmp_path / "r.csv", ROWS)
    result = run_job("--report", str(report), "--state-file", str(tmp_path / "s.json"), "--since", SINCE,
                     "-webhook_url", webhook.url, "-testmode", "no", "--ping-url", monitor.root + "p")
    assert result.returncode == 0
    assert [path for path, _, _ in pings(monitor)] == ["/p/start"] * 3 + ["/p/0"] * 3


def test_test_mode_pings_nothing(tmp_path, monitor):
    report = write_csv(tmp_path / "r.csv", ROWS)
    result = run_job("--report", str(report), "--since", SINCE, "-testmode", "yes", "--ping-url", monitor.root + "p")
    assert result.returncode == 0 and monitor.requests == []


@pytest.mark.parametrize("url", ["http://127.0.0.1:99999/SECRET", "hc-ping.com/SECRET", "http://[::1/SECRET"])
def test_an_unparseable_ping_url_is_a_usage_error_that_does_not_show_it(tmp_path, url):
    report = write_csv(tmp_path / "r.csv", ROWS)
    result = run_job("--report", str(report), "--since", SINCE, "-testmode", "yes", env=clean_env(PING_URL=url))
    assert result.returncode == 2 and "ping URL" in result.stderr and "SECRET" not in result.stderr


# ---------------------------------------------------------------- --check

def check(tmp_path, *extra, env=None):
    report = write_csv(tmp_path / "r.csv", ROWS)
    return run_job("--check", "--report", str(report), "--state-file", str(tmp_path / "state" / "s.json"), *extra,
                   env=env or clean_env())


def test_check_passes_with_a_reachable_webhook_and_notes_the_first_run(tmp_path, webhook):
    result = check(tmp_path, "-webhook_url", webhook.url)
    assert result.returncode == 0, result.stdout
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["ok"] * 4
    assert any("webhook 127.0.0.1:" in line and "answers" in line for line in lines)
    assert any("first live run needs --since" in line for line in lines)
    assert webhook.requests == []                            # nothing was posted


def test_check_names_an_unreachable_webhook_and_exits_2(tmp_path):
    port = free_port()
    result = check(tmp_path, "-webhook_url", f"http://127.0.0.1:{port}/SECRET")
    assert result.returncode == 2
    assert f"FAIL  destination: could not connect to 127.0.0.1:{port}" in result.stdout
    assert "SECRET" not in result.stdout + result.stderr


def test_check_fails_on_a_broken_or_locked_state_file(tmp_path, webhook):
    (tmp_path / "state").mkdir()
    write_state(tmp_path / "state" / "s.json", {"last_run_date": "31/12/9999"})
    result = check(tmp_path, "-webhook_url", webhook.url)
    assert result.returncode == 2 and "FAIL  state:" in result.stdout and "last_run_date" in result.stdout
    write_state(tmp_path / "state" / "s.json", {"last_run_date": SINCE})
    from filelock import FileLock

    with FileLock(tmp_path / "state" / "s.json.lock"):
        locked = check(tmp_path, "-webhook_url", webhook.url)
    assert locked.returncode == 2 and "another run is in progress" in locked.stdout
    assert check(tmp_path, "-webhook_url", webhook.url).returncode == 0


def test_check_reads_the_sheets_title_but_no_values(tmp_path, webhook):
    api = WebhookServer()
    api.respond = lambda received, index: Reply(200, {"Content-Type": "application/json"},
                                                body=json.dumps({"properties": {"title": "Weekly export"}}).encode())
    try:
        result = run_job("--check", "-sheetid", "1AbCdEfGhIjKlMnOpQrStUvWxYz0123456789_-abc", "-webhook_url", webhook.url,
                         "--state-file", str(tmp_path / "s.json"),
                         env=clean_env(SHEETS_API_ENDPOINT=api.root, GOOGLE_API_KEY="k-1"))
        paths = [r.path for r in api.requests]
    finally:
        api.close()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Google Sheet 'Weekly export' can be read" in result.stdout
    assert paths and all("/values/" not in path for path in paths)


def test_a_monitor_that_trickles_its_answer_cannot_hold_the_run(quick_ping_retries):
    from heartbeat import Heartbeat

    def trickle(connection, server):
        connection.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
        while not server.stopped.is_set():
            connection.sendall(b"y")
            time.sleep(0.1)

    server = RawServer(trickle)
    started = time.monotonic()
    try:
        Heartbeat(server.url, timeout=0.5).finish(0, "summary")
    finally:
        server.close()
    assert server.requests == 3 and time.monotonic() - started < 15


def test_a_failing_ping_waits_one_then_two_backoffs_before_its_retries(monitor, monkeypatch):
    from types import SimpleNamespace

    import heartbeat

    waits = []
    monkeypatch.setattr(heartbeat, "time", SimpleNamespace(sleep=waits.append))
    monitor.respond = lambda received, index: Reply(503)
    heartbeat.Heartbeat(monitor.root + "p", timeout=2).finish(0, "summary")
    assert waits == [heartbeat.PING_BACKOFF_SECONDS, 2 * heartbeat.PING_BACKOFF_SECONDS] and len(monitor.requests) == 3
