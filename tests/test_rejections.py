"""Refused for good (contract section 11): a customer the receiver rejects is reported once, not retried for ever."""

import csv
import os
import signal
import subprocess
import sys
import time
from datetime import date, timedelta

import pytest
from conftest import ROOT, Reply, clean_env, read_state, webhook_run, write_csv, write_state

from ticket_core import customer_key

TODAY = date.today()
DAY = [(TODAY - timedelta(days=d)).strftime("%d/%m/%Y") for d in range(12)]
SINCE = DAY[10]
ONE_TRY = ("--retries", "0", "--workers", "1")   # one attempt, one worker: a run in a known order


def rows(*customers):
    """(name, email, ticket, days ago) -> report rows."""
    return [[name, "X", email, ticket, "Closed", DAY[days_ago]] for name, email, ticket, days_ago in customers]


REPORT = rows(("Ok", "ok@example.com", "1", 5), ("Bad", "bad@example.com", "2", 4), ("Fine", "fine@example.com", "3", 3))


@pytest.fixture
def setup(tmp_path):
    report = write_csv(tmp_path / "r.csv", REPORT)
    state = write_state(tmp_path / "last_run_date.json", {"last_run_date": SINCE})
    return report, state


def refusing(status, body=b"no such mailbox", who="bad@example.com"):
    return lambda received, index: Reply(status, body=body) if received.json["email_address"] == who else Reply(200)


def read_rejected_csv(state):
    path = state.with_name("rejected.csv")
    raw = path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # Excel reads UTF-8 right with a BOM
    return list(csv.reader(raw.decode("utf-8-sig").splitlines()))


@pytest.mark.parametrize("status", [400, 413, 422, 418, 451, 499])
def test_a_refusing_status_rejects_that_customer_once_and_the_run_moves_on(setup, webhook, status):
    report, state = setup
    webhook.respond = refusing(status)
    result = webhook_run(report, state, webhook.url, *ONE_TRY)
    assert result.returncode == 1
    assert f"Customers rejected       1 (refused for good; see {state.with_name('rejected.csv')})" in result.stdout
    assert f"rejected bad@example.com (2): HTTP {status}: no such mailbox" in result.stderr
    assert sorted(webhook.emails()) == ["bad@example.com", "fine@example.com", "ok@example.com"]
    saved = read_state(state)
    assert saved["last_run_date"] == DAY[3]                   # the rejected ticket does not hold it back
    entry = saved["rejected"][customer_key("bad@example.com")]
    assert entry["tickets"] == {"2": (TODAY - timedelta(days=4)).isoformat()} and f"HTTP {status}" in entry["reason"]
    assert "bad@example.com" not in state.read_text()
    header, line = read_rejected_csv(state)
    assert header == ["day", "email", "name", "tickets", "reason"]
    assert line == [TODAY.isoformat(), "bad@example.com", "Bad X", "2", f"HTTP {status}: no such mailbox"]
    again = webhook_run(report, state, webhook.url, *ONE_TRY, "--since", SINCE, "--min-days-between-emails", "0")
    assert again.returncode == 0, again.stderr
    assert webhook.emails().count("bad@example.com") == 1        # not retried by later runs
    assert "1 rejected earlier" in again.stdout


def test_the_reason_is_cut_to_200_characters_and_formulas_are_defused(tmp_path, webhook):
    report = write_csv(tmp_path / "r.csv", rows(("Ok", "ok@example.com", "1", 5), ("=HYPERLINK(1)", "-x@example.com", "@2", 4)))
    state = write_state(tmp_path / "last_run_date.json", {"last_run_date": SINCE})
    webhook.respond = refusing(400, body=b"+" + b"r" * 500, who="-x@example.com")
    assert webhook_run(report, state, webhook.url, *ONE_TRY).returncode == 1
    _, line = read_rejected_csv(state)
    assert line[1:4] == ["'-x@example.com", "'=HYPERLINK(1) X", "'@2"]
    assert line[4] == "HTTP 400: +" + "r" * 199


def test_a_second_rejection_appends_to_the_csv(tmp_path, webhook):
    state = write_state(tmp_path / "last_run_date.json", {"last_run_date": SINCE})
    webhook.respond = lambda received, index: Reply(422) if received.json["email_address"].startswith("bad") else Reply(200)
    webhook_run(write_csv(tmp_path / "a.csv", rows(("O", "ok@example.com", "1", 5), ("B", "bad1@example.com", "2", 4))),
                state, webhook.url, *ONE_TRY)
    webhook_run(write_csv(tmp_path / "b.csv", rows(("O", "ok2@example.com", "5", 2), ("B", "bad2@example.com", "6", 2))),
                state, webhook.url, *ONE_TRY)
    lines = read_rejected_csv(state)
    assert [line[1] for line in lines] == ["email", "bad1@example.com", "bad2@example.com"]


def test_the_first_three_customers_refused_alike_mean_a_misconfigured_destination(tmp_path, webhook):
    report = write_csv(tmp_path / "r.csv", rows(*[(f"N{i}", f"c{i}@example.com", str(i), 4) for i in range(6)]))
    state = write_state(tmp_path / "last_run_date.json", {"last_run_date": SINCE})
    webhook.respond = lambda received, index: Reply(400, body=b"missing field 'to'")
    result = webhook_run(report, state, webhook.url, *ONE_TRY, "--workers", "2")
    assert result.returncode == 2
    assert "refused the first 3 customers alike (HTTP 400: missing field 'to')" in result.stderr
    assert len(webhook.requests) <= 4
    saved = read_state(state)
    assert saved["rejected"] == {} and saved["last_run_date"] == DAY[4]
    assert not state.with_name("rejected.csv").exists()
    webhook.respond = lambda received, index: Reply(200)
    fixed = webhook_run(report, state, webhook.url, *ONE_TRY)
    assert fixed.returncode == 0 and len(set(webhook.emails())) == 6


def test_refusals_that_differ_are_customers_not_the_destination(tmp_path, webhook):
    report = write_csv(tmp_path / "r.csv", rows(*[(f"N{i}", f"c{i}@example.com", str(i), 4) for i in range(4)]))
    state = write_state(tmp_path / "last_run_date.json", {"last_run_date": SINCE})
    webhook.respond = lambda received, index: Reply(400 if index % 2 == 0 else 422)
    result = webhook_run(report, state, webhook.url, *ONE_TRY)
    assert result.returncode == 1
    assert "Customers rejected       4" in result.stdout and len(read_state(state)["rejected"]) == 4


def test_with_fewer_than_three_customers_all_refused_they_are_rejected(tmp_path, webhook):
    report = write_csv(tmp_path / "r.csv", rows(("A", "a@example.com", "1", 4), ("B", "b@example.com", "2", 4)))
    state = write_state(tmp_path / "last_run_date.json", {"last_run_date": SINCE})
    webhook.respond = lambda received, index: Reply(422)
    result = webhook_run(report, state, webhook.url, *ONE_TRY)
    assert result.returncode == 1 and "Customers rejected       2" in result.stdout


def test_retry_rejected_sends_again_under_the_corrected_address_and_clears_the_entry(setup, webhook, tmp_path):
    report, state = setup
    webhook.respond = refusing(422)
    assert webhook_run(report, state, webhook.url, *ONE_TRY).returncode == 1
    assert read_state(state)["last_run_date"] == DAY[3]
    corrected = write_csv(tmp_path / "fixed.csv", rows(("Ok", "ok@example.com", "1", 5), ("Bad", "good@example.com", "2", 4),
                                                      ("Fine", "fine@example.com", "3", 3)))
    result = webhook_run(corrected, state, webhook.url, *ONE_TRY, "--retry-rejected")
    assert result.returncode == 0, result.stderr
    retried = webhook.payloads()[-1]
    assert retried["email_address"] == "good@example.com" and [t["ticket"] for t in retried["tickets"]] == ["2"]
    assert read_state(state)["rejected"] == {}
    assert len(webhook.requests) == 4


def test_retry_rejected_refused_again_stays_on_the_list(setup, webhook):
    report, state = setup
    webhook.respond = refusing(422)
    webhook_run(report, state, webhook.url, *ONE_TRY)
    result = webhook_run(report, state, webhook.url, *ONE_TRY, "--retry-rejected", "--min-days-between-emails", "0")
    assert result.returncode == 1
    assert webhook.emails().count("bad@example.com") == 2
    assert customer_key("bad@example.com") in read_state(state)["rejected"]


def test_a_corrected_address_in_the_window_goes_out_without_retry_rejected(setup, webhook, tmp_path):
    report, state = setup
    webhook.respond = refusing(422)
    webhook_run(report, state, webhook.url, *ONE_TRY, "--since", DAY[6])
    write_state(state, {**read_state(state), "last_run_date": DAY[6]})
    corrected = write_csv(tmp_path / "fixed.csv", rows(("Bad", "good@example.com", "2", 4)))
    result = webhook_run(corrected, state, webhook.url, *ONE_TRY)
    assert result.returncode == 0
    assert webhook.emails()[-1] == "good@example.com"


def test_rejected_entries_are_forgotten_after_90_days(setup, webhook):
    report, state = setup
    old = {"day": (TODAY - timedelta(days=91)).isoformat(), "reason": "HTTP 400", "tickets": {"9": "2026-01-01"}}
    recent = {"day": (TODAY - timedelta(days=89)).isoformat(), "reason": "HTTP 400", "tickets": {"8": "2026-01-01"}}
    write_state(state, {"last_run_date": SINCE, "rejected": {"old": old, "recent": recent}})
    assert webhook_run(report, state, webhook.url, *ONE_TRY).returncode == 0
    assert list(read_state(state)["rejected"]) == ["recent"]


def run_killed(report, state, webhook, answer):
    """A live run with one worker; `answer(received, index)` is the receiver's reply, or None to
    kill the run right there (once; later calls get a 200)."""
    process = {}

    def respond(received, index):
        reply = answer(received, index)
        if reply is None and process["cli"].returncode is None:
            os.kill(process["cli"].pid, signal.SIGKILL)
            time.sleep(0.2)
        return reply or Reply(200)

    webhook.respond = respond
    process["cli"] = subprocess.Popen([sys.executable, str(ROOT / "process_ticket.py"), "--report", str(report),
                                       "--state-file", str(state), "-webhook_url", webhook.url, "-testmode", "no",
                                       "--workers", "1"], env=clean_env(), stdin=subprocess.DEVNULL,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process["cli"].wait(timeout=60)
    assert process["cli"].returncode == -signal.SIGKILL   # the kill happened: the test is about what it left


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_a_kill_right_after_a_rejection_keeps_it_recorded(setup, webhook):
    report, state = setup
    replies = {"bad@example.com": Reply(422, body=b"unknown user"), "fine@example.com": None}
    run_killed(report, state, webhook, lambda received, index: replies.get(received.json["email_address"], Reply(200)))
    assert customer_key("bad@example.com") in read_state(state)["rejected"]
    assert len(read_rejected_csv(state)) == 2
    rerun = webhook_run(report, state, webhook.url, *ONE_TRY, "--min-days-between-emails", "0")
    assert rerun.returncode == 0
    assert webhook.emails().count("bad@example.com") == 1 and webhook.emails().count("fine@example.com") == 2


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_a_kill_right_after_a_first_rejection_keeps_it_recorded_too(tmp_path, webhook):
    report = write_csv(tmp_path / "r.csv", rows(("Bad", "bad@example.com", "2", 4), ("Ok", "ok@example.com", "1", 3)))
    state = write_state(tmp_path / "last_run_date.json", {"last_run_date": SINCE})
    run_killed(report, state, webhook, lambda received, index: Reply(400) if index == 0 else None)
    assert customer_key("bad@example.com") in read_state(state)["rejected"]
