"""Rules, each tested where it lives, on its boundary and on both sides of it: the gaps a mutation
audit found (a `<` for a `<=`, a dropped condition, a wrong status class, a missing escape)."""

import csv
import json
import logging
import smtplib
import time
from datetime import date, timedelta
from pathlib import Path
from string import Template
from types import SimpleNamespace

import pytest
from conftest import Reply, ScriptedDestination, customer, read_state, run_job, write_csv, write_state

from a1_range import a1_bounds
from customer_message import Content, render_html
from delivery import (
    DELIVERED,
    REJECTED,
    RETRY,
    RETRY_AFTER_MAX_SECONDS,
    STOP,
    Answer,
    DeliveryPolicy,
    deliver_all,
    retry_wait,
)
from heartbeat import Heartbeat
from report_dates import check_day_range
from report_readers import read_csv
from run_output import setup_logging
from state_file import append_rejected_csv, load_state, rejected_csv_line, spreadsheet_safe
from ticket_core import (
    REJECTED_KEEP_DAYS,
    ReportError,
    RunState,
    finish_state,
    next_last_run_date,
)
from webhook_route import WebhookRoute

TODAY = date(2026, 11, 27)


# ---------------------------------------------------------------- last_run_date never passes a pending ticket

def test_a_pending_customer_dated_before_the_others_holds_last_run_date_at_its_day():
    early = customer("a@example.com", "a0", closed=date(2026, 11, 21))
    late = customer("b@example.com", "b0", closed=date(2026, 11, 25))
    start = date(2026, 11, 20)
    assert next_last_run_date(start, [early, late], pending=[early], today=date.max) == date(2026, 11, 21)
    assert next_last_run_date(start, [early, late], pending=[], today=date.max) == date(2026, 11, 25)
    assert next_last_run_date(start, [early, late], pending=[late], today=date.max) == date(2026, 11, 25)


@pytest.mark.parametrize("pending_kind", ["deferred", "not attempted"])
def test_deferred_and_not_attempted_customers_hold_last_run_date_through_the_cli(tmp_path, webhook, pending_kind):
    day = [(date.today() - timedelta(days=d)).strftime("%d/%m/%Y") for d in range(12)]
    rows = [["A", "X", "early@example.com", "1", "Closed", day[6]], ["B", "X", "late@example.com", "2", "Closed", day[2]]]
    report = write_csv(tmp_path / "r.csv", rows)
    state = {"last_run_date": day[10]}
    if pending_kind == "deferred":
        from ticket_core import customer_key
        state["last_emailed"] = {customer_key("early@example.com"): (date.today() - timedelta(days=2)).isoformat()}
    else:
        webhook.respond = lambda received, index: Reply(401) if received.json["email_address"] == "late@example.com" \
            else Reply(200, delay=0.5)
    path = write_state(tmp_path / "s.json", state)
    extra = ("--workers", "1") if pending_kind == "deferred" else ("--workers", "1")
    if pending_kind == "not attempted":
        rows.reverse()
        write_csv(tmp_path / "r.csv", rows)
    result = run_job("--report", str(report), "--state-file", str(path), "-webhook_url", webhook.url, "-testmode", "no",
                     "--retries", "0", *extra)
    assert read_state(path)["last_run_date"] == day[6], result.stdout + result.stderr


# ---------------------------------------------------------------- what an answer means

@pytest.fixture
def route():
    made = WebhookRoute("http://127.0.0.1:9/hook")
    yield made
    made.shutdown()


@pytest.mark.parametrize("status", [200, 201, 202, 204, 299])
def test_any_2xx_is_delivered(route, status):
    assert route.classify(status, {}, b"").kind == DELIVERED


@pytest.mark.parametrize("status, kind", [(408, RETRY), (429, RETRY), (500, RETRY), (503, RETRY), (599, RETRY),
                                          (400, REJECTED), (413, REJECTED), (422, REJECTED), (409, REJECTED),
                                          (401, STOP), (403, STOP), (404, STOP), (405, STOP), (410, STOP),
                                          (301, STOP), (308, STOP)])
def test_each_status_class_means_what_the_contract_says(route, status, kind):
    assert route.classify(status, {}, b"").kind == kind


def test_retry_after_is_honoured_and_capped_at_120_seconds():
    assert retry_wait(Answer(RETRY, "x", retry_after=30), 1) == 30
    assert retry_wait(Answer(RETRY, "x", retry_after=RETRY_AFTER_MAX_SECONDS), 1) == RETRY_AFTER_MAX_SECONDS
    assert retry_wait(Answer(RETRY, "x", retry_after=3600), 1) == RETRY_AFTER_MAX_SECONDS
    assert 1 <= retry_wait(Answer(RETRY, "x"), 1) <= 1.25 and 4 <= retry_wait(Answer(RETRY, "x"), 3) <= 5


def deliver(route, customers, **policy):
    return deliver_all(route, customers, DeliveryPolicy(**{"timeout": 5, "backoff_factor": 0.01, **policy}),
                       lambda message: message, lambda message: None)


def test_a_backoff_wait_is_cut_short_by_a_stop():
    route = ScriptedDestination({"waits": [Answer(RETRY, "busy")], "stops": [Answer(STOP, "401")]})
    started = time.monotonic()
    results = deliver(route, ["waits", "stops"], workers=2, retries=3, backoff_factor=60)
    assert time.monotonic() - started < 30       # the 60 s backoff did not run out
    assert route.attempts.count("waits") == 1 and results.stop_exit_code == 2


def test_unreachable_means_every_attempt_failed_to_connect():
    unreachable, answered = Answer(RETRY, "refused", unreachable=True), Answer(RETRY, "503", "HTTP 503")
    route = ScriptedDestination({f"c{n}": [unreachable, answered] for n in range(4)})
    results = deliver(route, [f"c{n}" for n in range(4)], workers=1, retries=1)
    assert results.stop_reason == "" and len(results.failed) == 4    # answered once each: not unreachable
    route = ScriptedDestination({f"c{n}": [answered, unreachable] for n in range(4)})
    results = deliver(route, [f"c{n}" for n in range(4)], workers=1, retries=1)
    assert results.stop_reason == "" and len(results.not_attempted) == 0


def test_three_unreachable_customers_in_a_row_stop_and_two_do_not():
    unreachable = Answer(RETRY, "could not connect to scripted:1", unreachable=True)
    route = ScriptedDestination({f"c{n}": [unreachable] for n in range(5)})
    results = deliver(route, [f"c{n}" for n in range(5)], workers=1, retries=0)
    assert results.stop_exit_code == 1 and "scripted:1 for 3 customers in a row" in results.stop_reason
    assert len(results.failed) == 3 and results.not_attempted == ["c3", "c4"]
    route = ScriptedDestination({"c0": [unreachable], "c1": [unreachable], "c2": [Answer(DELIVERED, "ok")],
                              "c3": [unreachable], "c4": [unreachable]})
    results = deliver(route, ["c0", "c1", "c2", "c3", "c4"], workers=1, retries=0)
    assert results.stop_reason == "" and len(results.delivered) == 1


def test_any_answer_from_the_destination_ends_an_unreachable_streak():
    unreachable = Answer(RETRY, "could not connect to scripted:1", unreachable=True)
    script = {"a": [unreachable], "b": [unreachable], "c": [Answer(RETRY, "HTTP 500", "HTTP 500")],
              "d": [unreachable], "e": [unreachable], "f": [Answer(DELIVERED, "HTTP 200")]}
    results = deliver(ScriptedDestination(script), list(script), workers=1, retries=0)
    assert results.stop_reason == "" and results.delivered == ["f"] and len(results.failed) == 5


def test_a_webhook_connect_timeout_counts_as_unreachable(route):
    import requests

    answer = route._failure(requests.exceptions.ConnectTimeout("connect timed out"))
    assert answer.kind == RETRY and answer.unreachable
    answer = route._failure(requests.exceptions.ReadTimeout("read timed out"))
    assert answer.kind == RETRY and not answer.unreachable


def test_an_smtp_timeout_mid_conversation_is_not_unreachable_and_a_raised_4xx_is_retried():
    from smtp_route import SmtpChannel, SmtpRoute, _SlowServer

    channel = SmtpChannel(SmtpRoute("smtp://127.0.0.1:2525", username=None, password=None, timeout=1))
    channel.connection = SimpleNamespace(close=lambda: None, counted=False)

    def slow():
        raise _SlowServer("no reply in time")
    answer = channel._answer_of(slow, channel.generation)
    assert answer.kind == RETRY and not answer.unreachable

    def deferred():
        raise smtplib.SMTPDataError(451, b"4.3.0 try later")
    assert channel._answer_of(deferred, channel.generation).kind == RETRY

    def refused():
        raise smtplib.SMTPDataError(554, b"5.7.1 spam")
    assert channel._answer_of(refused, channel.generation).kind == REJECTED


# ---------------------------------------------------------------- what the customer reads

def test_html_values_are_escaped_with_quotes_so_no_attribute_can_be_injected():
    evil = customer("a@example.com", "a0", closed=date(2026, 11, 21), name='Ann" onmouseover="alert(1) <b>')
    html = render_html(evil, Template('<a title="$full_name">$first_name</a> $ticket_list'))
    assert '"alert' not in html and "&quot;" in html and "<b>" not in html


def test_a_non_ascii_address_keeps_a_name_with_quotes_inside_its_display_name():
    from customer_message import Sender, outgoing_mail

    name = 'Zoë "Z" \\ Ångström'
    mail = outgoing_mail(customer("zoë@exämple.com", "z0", closed=date(2026, 11, 21), name=name), Content(),
                         Sender("Support", "support@example.com"))
    head = mail.data.split(b"\r\n\r\n")[0].decode("utf-8")
    to = next(line for line in head.split("\r\n") if line.startswith("To: "))
    assert to.endswith(" <zoë@exämple.com>") and '"Z"' not in to      # encoded, not a broken quoted string
    from email.header import decode_header, make_header
    assert str(make_header(decode_header(to[4:].rpartition(" <")[0]))) == name


def test_the_date_header_carries_a_zone_and_the_message_id_the_webhook_ids_digest():
    from customer_message import Sender, message_digest, outgoing_mail, webhook_id

    ann = customer("a@example.com", "a0", closed=date(2026, 11, 21))
    mail = outgoing_mail(ann, Content(), Sender("Support", "support@example.com"))
    head = mail.data.split(b"\r\n\r\n")[0].decode()
    date_line = next(line for line in head.split("\r\n") if line.startswith("Date: "))
    assert date_line[-5:-4] in "+-" and date_line[-4:].isdigit()
    assert f"Message-ID: <{message_digest(ann)}@example.com>" in head and webhook_id(ann).endswith(message_digest(ann))


# ---------------------------------------------------------------- the state file and rejected.csv

def test_a_rejected_entry_is_kept_on_day_90_and_forgotten_after_it():
    def entry(days_ago):
        return {"day": (TODAY - timedelta(days=days_ago)).isoformat(), "reason": "x", "tickets": {"1": "2026-01-01"}}
    state = RunState(TODAY, rejected={"kept": entry(REJECTED_KEEP_DAYS), "gone": entry(REJECTED_KEEP_DAYS + 1)})
    assert list(finish_state(state, TODAY, TODAY, 7).rejected) == ["kept"]


@pytest.mark.parametrize("cell, safe", [("=1+1", "'=1+1"), ("+1", "'+1"), ("-1", "'-1"), ("@sum", "'@sum"),
                                        ("a=1", "a=1"), ("", "")])
def test_a_formula_start_is_defused_in_rejected_csv(cell, safe):
    assert spreadsheet_safe(cell) == safe


def test_rejected_csv_has_one_bom_at_its_start_however_many_appends(tmp_path):
    path = tmp_path / "rejected.csv"
    for n in range(3):
        append_rejected_csv(path, rejected_csv_line(customer(f"c{n}@example.com", "c0", closed=date(2026, 11, 21)), TODAY, "x"))
    raw = path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf") and raw.count(b"\xef\xbb\xbf") == 1
    assert len(list(csv.reader(raw.decode("utf-8-sig").splitlines()))) == 4


def test_a_state_file_saved_by_notepad_with_a_bom_is_read(tmp_path):
    path = tmp_path / "s.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps({"last_run_date": "20/11/2026"}).encode())
    assert load_state(path, TODAY).last_run_date == date(2026, 11, 20)


@pytest.mark.parametrize("offset, accepted", [(-1, True), (0, True), (1, True), (2, False)])
def test_a_day_up_to_tomorrow_is_accepted_and_later_refused(offset, accepted):
    day = TODAY + timedelta(days=offset)
    if accepted:
        assert check_day_range(day, TODAY, "--since") == day
    else:
        with pytest.raises(ValueError):
            check_day_range(day, TODAY, "--since")


def test_since_tomorrow_is_accepted_on_the_command_line(tmp_path):
    report = write_csv(tmp_path / "r.csv", [["A", "B", "a@example.com", "1", "Closed", "01/01/2026"]])
    tomorrow = (date.today() + timedelta(days=1)).strftime("%d/%m/%Y")
    assert run_job("--report", str(report), "--since", tomorrow, "-testmode", "yes").returncode == 0
    after = (date.today() + timedelta(days=2)).strftime("%d/%m/%Y")
    assert run_job("--report", str(report), "--since", after, "-testmode", "yes").returncode == 2


# ---------------------------------------------------------------- the heartbeat

def test_a_ping_url_keeps_its_query_and_adds_the_run_id():
    heartbeat = Heartbeat("https://hc.example.com/ping/abc?create=1")
    address = heartbeat.address("start")
    assert address.startswith("https://hc.example.com/ping/abc/start?create=1&rid=")


def test_a_4xx_ping_is_not_retried_and_is_warned_about(webhook, caplog):
    webhook.respond = lambda received, index: Reply(404)
    with caplog.at_level(logging.WARNING, logger="ticket_notifier"):
        Heartbeat(webhook.root + "ping").start()
    assert len(webhook.requests) == 1
    assert "answered HTTP 404" in caplog.text


def test_check_proves_the_state_folder_writable(tmp_path, monkeypatch):
    import run_check
    import state_file

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr(state_file.tempfile, "mkstemp", refuse)
    with pytest.raises(run_check.CheckFailedError, match="cannot write in the state folder"):
        run_check.check_state(SimpleNamespace(state_file=tmp_path / "s.json"))


# ---------------------------------------------------------------- the log filter

def test_the_log_filter_hides_a_urls_query_and_replaces_the_longest_secret_first(tmp_path):
    url = "https://hooks.example.com/path/s3cr3t?token=abc123xyz"
    log_file = tmp_path / "log.txt"
    logger = setup_logging(log_file, verbose=True, quiet=True, secrets=["/path/s3cr3t", url, "token=abc123xyz"])
    logger.error("posting to %s failed; query token=abc123xyz", url)
    for handler in logger.handlers:
        handler.flush()
    text = log_file.read_text()
    assert "posting to *** failed; query ***" in text and "s3cr3t" not in text and "abc123xyz" not in text
    logger.handlers.clear()


def test_a_webhook_url_query_is_among_its_secrets():
    from url_rules import WEB_PORTS, parse_url

    secrets = parse_url("https://hooks.example.com/p?sig=abcd1234", "x", WEB_PORTS).secrets()
    assert "sig=abcd1234" in secrets and "/p" in secrets


# ---------------------------------------------------------------- ranges and CSV records

@pytest.mark.parametrize("cells, bounds", [("A2", (2, 1, 2, 1)), ("A:A", (None, 1, None, 1)), ("B3:B3", (3, 2, 3, 2)),
                                           ("2:2", (2, None, 2, None)), ("A2:F", (2, 1, None, 6))])
def test_one_row_and_one_column_ranges_are_ranges(cells, bounds):
    assert a1_bounds(cells) == bounds


def test_a_one_column_google_range_is_read_not_empty():
    from google_api import Grid, page_ranges

    assert page_ranges("Sheet1!C2:C2", [Grid("Sheet1", 10, 6)]) == [("'Sheet1'!C2:C2", 1)]
    assert page_ranges("Sheet1!A5:F5", [Grid("Sheet1", 10, 6)]) == [("'Sheet1'!A5:F5", 1)]


def write_text(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8", newline="")
    return path


def test_a_quoted_cell_over_lines_of_the_wrong_width_stops_the_reading(tmp_path):
    path = write_text(tmp_path / "r.csv", 'a,b,c\n1,"two\nlines",3,4\n5,6,7\n')
    with pytest.raises(ReportError, match="row 2"):
        list(read_csv(path))


@pytest.mark.parametrize("bob", ['Bob,X,bob@example.com,2",Closed', 'Bob,X,bob@example.com,2"'],
                         ids=["as-wide-as-the-header", "narrower"])
def test_a_quote_that_swallows_a_short_row_stops_the_reading(tmp_path, bob):
    """An export that drops trailing empty cells: the quote opened in Ann's Status cell closes in Bob's
    short row, whether the record comes out as wide as the header or narrower. Bob's ticket must not vanish."""
    rows = ["Firstname,Lastname,Email,Ticket,Status,Date",
            'Ann,X,ann@example.com,1,"Closed,21/11/2026', bob,
            "Cid,X,cid@example.com,3,Closed,21/11/2026"]
    path = write_text(tmp_path / "r.csv", "\n".join(rows) + "\n")
    with pytest.raises(ReportError, match="row 2"):
        list(read_csv(path))


def test_a_quote_that_swallows_whole_rows_and_keeps_the_width_stops_the_reading(tmp_path):
    """A quote opened at the start of a row's first cell and closed at the end of a later row's
    first cell keeps the column count: the rows in between are whole records inside one cell."""
    rows = ["Firstname,Lastname,Email,Ticket,Status,Date"]
    rows += ['"Ann,X,ann@example.com,1,Closed,21/11/2026', "Bob,X,bob@example.com,2,Closed,21/11/2026",
             'Cid",X,cid@example.com,3,Closed,21/11/2026', "Dan,X,dan@example.com,4,Closed,21/11/2026"]
    path = write_text(tmp_path / "r.csv", "\n".join(rows) + "\n")
    with pytest.raises(ReportError, match="row 2"):
        list(read_csv(path))


def test_a_real_multiline_cell_with_few_separators_is_read(tmp_path):
    path = write_text(tmp_path / "r.csv", 'a,b,c\n1,"two\nlines, one comma",3\n5,6,7\n')
    assert list(read_csv(path)) == [["a", "b", "c"], ["1", "two\nlines, one comma", "3"], ["5", "6", "7"]]


def test_a_note_over_lines_that_mentions_an_address_in_a_sentence_is_read(tmp_path):
    note = "Called back.\nWrite to help@example.com, or reply"
    path = write_text(tmp_path / "r.csv", f'a,b,c\n1,"{note}",3\n')
    assert list(read_csv(path)) == [["a", "b", "c"], ["1", note, "3"]]


# ---------------------------------------------------------------- the story in-process, with a scripted destination

def test_the_story_in_process_keeps_a_pending_customer_s_day_and_records_the_others(tmp_path):
    from conftest import ScriptedDestination, run_story

    day = [(date.today() - timedelta(days=d)).strftime("%d/%m/%Y") for d in range(12)]
    report = write_csv(tmp_path / "r.csv", [["A", "X", "early@example.com", "1", "Closed", day[6]],
                                            ["B", "X", "late@example.com", "2", "Closed", day[2]],
                                            ["C", "X", "bad@example.com", "3", "Closed", day[4]]])
    state = write_state(tmp_path / "s.json", {"last_run_date": day[10]})
    answers = {"early@example.com": Answer(RETRY, "busy", "HTTP 503"), "late@example.com": Answer(DELIVERED, "ok"),
               "bad@example.com": Answer(REJECTED, "HTTP 422", "HTTP 422")}
    script = ScriptedDestination(lambda email, attempt: answers[email])
    report_ = run_story(script, "--report", str(report), "--state-file", str(state), "-testmode", "no",
                        "--retries", "1", "--workers", "1")
    assert [c.email for c in report_.notified] == ["late@example.com"]
    assert [c.email for c, _ in report_.failed] == ["early@example.com"]
    assert [c.email for c, _ in report_.rejected] == ["bad@example.com"]
    assert script.attempts.count("early@example.com") == 2 and report_.exit_code == 1
    saved = read_state(state)
    assert saved["last_run_date"] == day[6]          # the pending customer's day, not the latest
    assert len(saved["notified"]) == 1 and len(saved["rejected"]) == 1
