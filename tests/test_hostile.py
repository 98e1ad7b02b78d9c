"""Broken, odd and hostile input (contract section 15): nothing wrong sent, nothing lost in silence, no secret shown."""

import json
import os
import signal
import subprocess
import sys
import time
from datetime import date, timedelta

import pytest
from conftest import ROOT, RawServer, Reply, clean_env, read_state, run_job, webhook_run, write_csv, write_state

from ticket_core import SelectOptions, customer_key, group_by_customer, select_closed_tickets

TODAY = date.today()
RECENT = (TODAY - timedelta(days=3)).strftime("%d/%m/%Y")
SINCE = (TODAY - timedelta(days=10)).strftime("%d/%m/%Y")
ROWS = [[f"N{i}", "X", f"c{i}@example.com", str(100 + i), "Closed", RECENT] for i in range(10)]


def popen(*args, env=None):
    return subprocess.Popen([sys.executable, str(ROOT / "process_ticket.py"), *args], env=env or clean_env(),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


# ---------------------------------------------------------------- reports that cannot be read as written

@pytest.mark.parametrize("broken_cell", ['"Q', 'Q"x', '"Q" x'])
def test_a_quote_that_never_closes_stops_before_sending_naming_the_row(tmp_path, webhook, broken_cell):
    lines = ["Firstname,Lastname,Email,Ticket,Status,Date"] + [",".join(row) for row in ROWS]
    lines[3] = lines[3].replace("N2", broken_cell, 1) if broken_cell.startswith('"') else lines[3]
    if not broken_cell.startswith('"'):  # a quote opened in one row and closed inside a later cell
        lines[3] = lines[3].replace("N2", '"N2', 1)
        lines[7] = lines[7].replace("N6", broken_cell, 1)
    report = tmp_path / "r.csv"
    report.write_text("\n".join(lines) + "\n", encoding="utf-8")
    state = write_state(tmp_path / "s.json", {"last_run_date": SINCE})
    before = state.read_text()
    result = webhook_run(report, state, webhook.url, "--since", SINCE)
    assert result.returncode == 2
    assert "row 4" in result.stderr and "quote" in result.stderr
    assert webhook.requests == [] and state.read_text() == before


def test_a_quoted_cell_over_several_lines_is_still_one_cell(tmp_path):
    report = tmp_path / "r.csv"
    report.write_text('Firstname,Lastname,Email,Ticket,Status,Date\n"Ann\nMarie",Lee,a@example.com,1,Closed,'
                      f'{RECENT}\nBo,Li,b@example.com,2,Closed,{RECENT}\n', encoding="utf-8")
    result = run_job("--report", str(report), "--since", SINCE, "-testmode", "yes", "--state-file", str(tmp_path / "s"))
    assert result.returncode == 0, result.stderr
    assert "Would email 2 customers" in result.stdout


def test_a_blank_first_line_hides_neither_the_header_nor_the_delimiter(tmp_path):
    report = tmp_path / "r.csv"
    report.write_text("\n\nEmail;Ticket;Status;Date\nx@example.com;7;Closed;" + RECENT + "\n", encoding="utf-8")
    result = run_job("--report", str(report), "--since", SINCE, "-testmode", "yes", "--state-file", str(tmp_path / "s"))
    assert result.returncode == 0, result.stderr
    assert "Would email 1 customer" in result.stdout and "x@example.com" in result.stdout


@pytest.mark.parametrize("content, message", [
    ("Email,Ticket,Status,Date\nx@example.com,7,Closed,01/01/2026\n".encode("utf-16"), "UTF-16"),
    ("Email,Ticket,Status,Date\n".encode("utf-16-le"), "NUL"),
    (b"PK\x03\x04" + b"\x00" * 40, "rename it to .xlsx"),
    (b"\xd0\xcf\x11\xe0" + b"\x00" * 40, ".xls"),
])
def test_a_file_in_an_encoding_not_read_or_a_renamed_workbook_is_an_error(tmp_path, content, message):
    report = tmp_path / "r.csv"
    report.write_bytes(content)
    result = run_job("--report", str(report), "--since", SINCE, "-testmode", "yes", "--state-file", str(tmp_path / "s"))
    assert result.returncode == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


# ---------------------------------------------------------------- one address, one customer

@pytest.mark.parametrize("first, second", [
    ("STRASSE@example.com", "straße@example.com"),
    ("\ufb01nance@example.com", "finance@example.com"),
    ("Stra\u00dfe@example.com", "STRASSE@example.com"),
])
def test_addresses_that_only_case_folding_makes_equal_are_two_customers(first, second):
    rows = [["A", "B", first, "1", "Closed", RECENT], ["C", "D", second, "2", "Closed", RECENT]]
    customers = group_by_customer(select_closed_tickets(rows, TODAY - timedelta(days=10),
                                                        __import__("datetime").datetime.now()).by_email)
    assert [[t.ticket_id for t in c.tickets] for c in customers] == [["1"], ["2"]]
    assert customer_key(first) != customer_key(second)


def test_upper_and_lower_case_of_one_address_stay_one_customer():
    rows = [["A", "B", "Jane@Example.com", "1", "Closed", RECENT], ["A", "B", " jane@example.COM ", "2", "Closed", RECENT]]
    customers = group_by_customer(select_closed_tickets(rows, TODAY - timedelta(days=10),
                                                        __import__("datetime").datetime.now()).by_email)
    assert len(customers) == 1 and len(customers[0].tickets) == 2


@pytest.mark.parametrize("address", ["zw\u200b@example.com", "soft\u00adhyphen@example.com", "nb\u00a0sp@example.com",
                                     "bom\ufeff@example.com", "line\u2028sep@example.com", "c1\x85@example.com",
                                     "rtl\u202e@example.com"])
def test_addresses_with_invisible_characters_are_invalid(address):
    rows = [["A", "B", address, "1", "Closed", RECENT]]
    selection = select_closed_tickets(rows, TODAY - timedelta(days=10), __import__("datetime").datetime.now(),
                                      SelectOptions())
    assert selection.by_email == {} and sum(selection.skipped.values()) == 1


# ---------------------------------------------------------------- secrets

@pytest.mark.parametrize("url", [
    "http://USER:PASS@127.0.0.1:99999/SECRETPATH/x?token=QQQQ",
    "http://USER:PASS@[::1/SECRETPATH?token=QQQQ",
    "http://USER:PASS@127.0.0.1:port/SECRETPATH?token=QQQQ",
    "http://USER:PASS@127.0.0.1:0/SECRETPATH?token=QQQQ",
    "ftp://USER:PASS@127.0.0.1/SECRETPATH?token=QQQQ",
    "http://USER:PASS@127.0.0.1/SECRET PATH?token=QQQQ",
])
@pytest.mark.parametrize("test_mode", ["no", "yes"])
def test_an_unusable_webhook_url_is_a_usage_error_that_never_echoes_it(tmp_path, url, test_mode):
    report = write_csv(tmp_path / "r.csv", ROWS)
    log_file = tmp_path / "run.log"
    result = run_job("--report", str(report), "--state-file", str(tmp_path / "s.json"), "--since", SINCE,
                     "-testmode", test_mode, "--log-file", str(log_file), env=clean_env(WEBHOOK_URL=url))
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    shown = result.stdout + result.stderr + (log_file.read_text() if log_file.exists() else "")
    for secret in ("USER", "PASS", "SECRET", "QQQQ"):
        assert secret not in shown


def test_the_log_never_shows_the_webhook_path_query_or_password(tmp_path, webhook):
    report = write_csv(tmp_path / "r.csv", ROWS[:2])
    url = webhook.url.replace("http://", "http://USER:PASSWORD@") + "/SECRETPATH?token=QQQQ#FRAGMENT"
    webhook.respond = lambda received, index: Reply(500)
    log_file = tmp_path / "run.log"
    result = webhook_run(report, tmp_path / "s.json", url, "--since", SINCE, "--retries", "0", "-v", "--log-file", str(log_file))
    assert result.returncode == 1
    shown = result.stdout + result.stderr + log_file.read_text()
    for secret in ("USER", "PASSWORD", "SECRETPATH", "QQQQ", "FRAGMENT", "hooks/notify"):
        assert secret not in shown


@pytest.mark.parametrize("value", ["Bearer €uro", "Bearer a\tb", "Bearer \x1b[31m"])
def test_an_authorization_value_that_cannot_be_a_header_is_refused_at_start(tmp_path, webhook, value):
    report = write_csv(tmp_path / "r.csv", ROWS[:2])
    result = webhook_run(report, tmp_path / "s.json", webhook.url, "--since", SINCE, env=clean_env(WEBHOOK_AUTHORIZATION=value))
    assert result.returncode == 2 and "WEBHOOK_AUTHORIZATION" in result.stderr
    assert webhook.requests == [] and value not in result.stderr


# ---------------------------------------------------------------- answers that must not break the run

@pytest.mark.parametrize("retry_after", ["soon", "-1", "1e9999", "Wed, 99 Foo 2026", ""])
def test_an_unreadable_retry_after_counts_as_absent(tmp_path, webhook, retry_after, quick_backoff):
    report = write_csv(tmp_path / "r.csv", ROWS[:1])
    webhook.respond = lambda received, index: Reply(429, {"Retry-After": retry_after}) if index == 0 else Reply(200)
    result = webhook_run(report, tmp_path / "s.json", webhook.url, "--since", SINCE, "--retries", "1")
    assert result.returncode == 0, result.stderr
    assert len(webhook.requests) == 2 and "unexpected" not in result.stderr


def trickle(connection, server) -> None:
    connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
    while not server.stopped.is_set():
        connection.sendall(b"x")
        time.sleep(0.1)


def trickle_headers(connection, server) -> None:
    for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"y" * 1000:
        if server.stopped.is_set():
            return
        connection.sendall(bytes([byte]))
        time.sleep(0.1)


def flood(connection, server) -> None:
    connection.sendall(b"HTTP/1.1 400 Bad Request\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk = b"%x\r\n%s\r\n" % (65536, b"z" * 65536)
    deadline = time.monotonic() + 20
    while not server.stopped.is_set() and time.monotonic() < deadline:
        connection.sendall(chunk)


@pytest.mark.parametrize("answer", [trickle, trickle_headers])
def test_timeout_bounds_the_whole_attempt_however_slowly_the_answer_comes(tmp_path, answer):
    server = RawServer(answer)
    try:
        report = write_csv(tmp_path / "r.csv", ROWS[:1])
        started = time.monotonic()
        result = webhook_run(report, tmp_path / "s.json", server.url, "--since", SINCE, "--timeout", "1", "--retries", "1")
        elapsed = time.monotonic() - started
    finally:
        server.close()
    assert result.returncode == 1
    assert "c0@example.com" in result.stderr and "within 1s" in result.stderr
    assert server.requests == 2 and elapsed < 15


def test_an_endless_answer_is_read_up_to_64_kb_and_the_customer_is_rejected_with_its_start(tmp_path):
    server = RawServer(flood)
    try:
        report = write_csv(tmp_path / "r.csv", ROWS[:1])
        result = webhook_run(report, tmp_path / "s.json", server.url, "--since", SINCE, "--timeout", "5")
    finally:
        server.close()
    assert result.returncode == 1
    assert "rejected c0@example.com" in result.stderr and "HTTP 400: zzzz" in result.stderr
    assert len(result.stderr) < 2000


# ---------------------------------------------------------------- stop means stop

def test_after_a_401_a_worker_waiting_to_retry_never_sends_again(tmp_path, webhook):
    report = write_csv(tmp_path / "r.csv", ROWS[:2])

    def respond(received, index):
        if received.json["email_address"] == "c0@example.com":
            return Reply(429, {"Retry-After": "60"})
        time.sleep(0.5)
        return Reply(401)

    webhook.respond = respond
    started = time.monotonic()
    result = webhook_run(report, tmp_path / "s.json", webhook.url, "--since", SINCE, "--workers", "2")
    assert result.returncode == 2 and "HTTP 401" in result.stderr
    assert [r.json["email_address"] for r in webhook.requests].count("c0@example.com") == 1
    assert time.monotonic() - started < 30   # a wait that ignored the stop would last the 60 s asked


def test_after_a_401_a_worker_waiting_for_its_rate_limit_turn_never_sends(tmp_path, webhook):
    report = write_csv(tmp_path / "r.csv", ROWS[:3])
    webhook.respond = lambda received, index: Reply(401)
    started = time.monotonic()
    result = webhook_run(report, tmp_path / "s.json", webhook.url, "--since", SINCE, "--workers", "3",
                         "--max-per-minute", "1")  # 60 s apart
    assert result.returncode == 2 and len(webhook.requests) == 1
    assert time.monotonic() - started < 30   # a turn that ignored the stop would come after 60 s
    assert "Customers not attempted  2" in result.stdout


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child is POSIX here")
def test_ctrl_c_ends_the_run_promptly_and_starts_no_further_call(tmp_path, webhook):
    report = write_csv(tmp_path / "r.csv", ROWS)
    state = write_state(tmp_path / "s.json", {"last_run_date": SINCE})
    webhook.respond = lambda received, index: Reply(503, {"Retry-After": "30"}) if index == 0 else Reply(200, delay=0.3)
    process = popen("--report", str(report), "--state-file", str(state), "-webhook_url", webhook.url,
                    "-testmode", "no", "--workers", "2", "--timeout", "3")
    deadline = time.monotonic() + 30
    while len(webhook.requests) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    interrupted = time.monotonic()
    sent = len(webhook.requests)
    process.wait(timeout=30)
    assert time.monotonic() - interrupted < 6
    assert process.returncode == 2
    time.sleep(0.5)
    assert len(webhook.requests) <= sent + 1   # at most the call that was being started
    delivered = len(read_state(state)["last_emailed"])
    assert delivered >= 1


# ---------------------------------------------------------------- poison cells and state

def test_ticket_ids_and_names_never_bring_line_breaks_or_escapes_into_output_or_log(tmp_path, webhook):
    rows = [["Eve\x1b[2J\x1b[31m", "X", "eve@example.com", "666\n2026-12-01 00:00:00,000 INFO forged", "Closed", RECENT]]
    report = write_csv(tmp_path / "r.csv", rows)
    log_file = tmp_path / "run.log"
    result = webhook_run(report, tmp_path / "s.json", webhook.url, "--since", SINCE, "--log-file", str(log_file), "-v")
    assert result.returncode == 0, result.stderr
    for text in (result.stdout, result.stderr, log_file.read_text()):
        assert "\x1b" not in text
    for line in log_file.read_text().splitlines():
        assert line[:4].isdigit() and " forged" not in line.split(" ", 3)[2]
    assert not any(line.startswith("2026-12-01 00:00:00,000 INFO forged") for line in log_file.read_text().splitlines())
    assert webhook.payloads()[0]["tickets"][0]["ticket"] == "666\n2026-12-01 00:00:00,000 INFO forged"


@pytest.mark.parametrize("state, key", [
    ("[" * 10000 + "]" * 10000, "nested too deeply"),
    ('{"last_run_date": "20/11/2026", "x": ' + "[" * 100000 + "]" * 100000 + "}", "nested too deeply"),
    ({"last_run_date": "20/11/2026", "notified": {"k": {"1": "2026-11-20T10:00:00+02:00"}}}, "notified.k.1"),
    ({"last_run_date": "20/11/2026", "notified": {"k": {"1": 5}}}, "notified.k.1"),
    ({"last_run_date": "20/11/2026", "notified": {"k": ["1"]}}, "notified.k"),
    ({"last_run_date": "20/11/2026", "notified": []}, "notified"),
    ({"last_run_date": "20/11/2026", "last_emailed": {"k": "2026-11-20T10:00"}}, "last_emailed.k"),
    ({"last_run_date": "20/11/2026", "last_emailed": {"k": "9999-01-01"}}, "last_emailed.k"),
    ({"last_run_date": "20/11/2026", "last_emailed": {"k": "1969-12-31"}}, "last_emailed.k"),
    ({"last_run_date": "31/12/9999"}, "last_run_date"),
    ({"last_run_date": "01/01/0999"}, "last_run_date"),
    ({"last_run_date": "20/11/2026", "rejected": {"k": {"day": "2026-11-20", "reason": 4, "tickets": {}}}}, "rejected.k.reason"),
    ({"last_run_date": "20/11/2026", "rejected": {"k": {"day": "x", "reason": "r", "tickets": {}}}}, "rejected.k.day"),
    ({"last_run_date": "20/11/2026", "rejected": {"k": "x"}}, "rejected.k"),
])
def test_a_state_file_wrong_inside_is_exit_2_naming_the_key_and_left_untouched(tmp_path, webhook, state, key):
    path = write_state(tmp_path / "s.json", state)
    before = path.read_bytes()
    report = write_csv(tmp_path / "r.csv", ROWS[:1])
    result = run_job("--report", str(report), "--state-file", str(path), "-webhook_url", webhook.url, "-testmode", "no")
    assert result.returncode == 2
    assert key in result.stderr and "unexpected" not in result.stderr and len(result.stderr.splitlines()) == 1
    assert path.read_bytes() == before and webhook.requests == []


@pytest.mark.parametrize("since", ["01/01/0999", "31/12/9999", "31/12/1969", (TODAY + timedelta(days=2)).strftime("%d/%m/%Y")])
def test_since_before_1970_or_after_tomorrow_is_refused(tmp_path, since):
    report = write_csv(tmp_path / "r.csv", ROWS[:1])
    result = run_job("--report", str(report), "--since", since, "-testmode", "yes")
    assert result.returncode == 2 and "--since" in result.stderr and "1970" in result.stderr


def test_every_day_written_is_read_back_by_the_next_run(tmp_path, webhook):
    report = write_csv(tmp_path / "r.csv", [["A", "B", "a@example.com", "1", "Closed", "02/01/1970"]])
    state = tmp_path / "s.json"
    assert webhook_run(report, state, webhook.url, "--since", SINCE, "--since", "01/01/1970").returncode == 0
    assert read_state(state)["last_run_date"] == "02/01/1970"
    again = run_job("--report", str(report), "--state-file", str(state), "-webhook_url", webhook.url, "-testmode", "no")
    assert again.returncode == 0, again.stderr


# ---------------------------------------------------------------- locks and files

@pytest.mark.skipif(os.name != "posix", reason="symlinks need privileges on Windows")
def test_two_names_of_one_state_file_share_one_lock_and_the_link_is_kept(tmp_path, webhook):
    report = write_csv(tmp_path / "r.csv", ROWS[:3])
    real = write_state(tmp_path / "real" / "s.json", {"last_run_date": SINCE}) if (tmp_path / "real").mkdir() is None else None
    link = tmp_path / "link.json"
    link.symlink_to(real)
    webhook.respond = lambda received, index: Reply(200, delay=1.0 if index == 0 else 0)
    first = popen("--report", str(report), "--state-file", str(real), "-webhook_url", webhook.url, "-testmode", "no",
                  "--workers", "1")
    deadline = time.monotonic() + 30
    while not webhook.requests and time.monotonic() < deadline:
        time.sleep(0.05)
    second = run_job("--report", str(report), "--state-file", str(link), "-webhook_url", webhook.url, "-testmode", "no")
    assert second.returncode == 2 and "another run is in progress" in second.stderr
    assert first.wait(timeout=60) == 0
    assert len(webhook.requests) == 3
    third = run_job("--report", str(report), "--state-file", str(link), "-webhook_url", webhook.url, "-testmode", "no")
    assert third.returncode == 0
    assert link.is_symlink() and json.loads(link.read_text())["last_run_date"] == RECENT


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
@pytest.mark.parametrize("read_only", ["folder", "file"])
def test_a_read_only_state_folder_or_file_is_an_error_before_any_call(tmp_path, webhook, read_only):
    folder = tmp_path / "state"
    folder.mkdir()
    state = write_state(folder / "s.json", {"last_run_date": SINCE})
    report = write_csv(tmp_path / "r.csv", ROWS[:4])
    (folder if read_only == "folder" else state).chmod(0o555 if read_only == "folder" else 0o444)
    try:
        result = webhook_run(report, state, webhook.url, "--since", SINCE)
    finally:
        folder.chmod(0o755)
        state.chmod(0o644)
    assert result.returncode == 2 and "read-only" in result.stderr
    assert webhook.requests == []


def test_temporary_files_left_by_a_killed_run_are_removed_by_the_next(tmp_path, webhook):
    state = write_state(tmp_path / "s.json", {"last_run_date": SINCE})
    leftover = tmp_path / ".s.json.abc123.tmp"
    leftover.write_text("{half")
    other = tmp_path / "keep.tmp"
    other.write_text("not ours")
    report = write_csv(tmp_path / "r.csv", ROWS[:1])
    assert webhook_run(report, state, webhook.url, "--since", SINCE).returncode == 0
    assert not leftover.exists() and other.exists()
