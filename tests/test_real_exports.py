"""Exit 0 means every closed ticket was handled (contract section 16): real export dates, columns nobody
can read, tickets held until their rows are fixed, and refusals that are recorded or left pending."""

import csv
import logging
from datetime import date, datetime, timedelta

import pytest
from conftest import Reply, clean_env, read_state, run_cli, run_job, webhook_run, write_csv, write_state

from state_file import StateError, StateWriter, load_state
from ticket_core import Customer, RunState, customer_key

TODAY = date.today()
DAY = [(TODAY - timedelta(days=d)).strftime("%d/%m/%Y") for d in range(800)]
SINCE = DAY[10]
HEADER = ["Firstname", "Lastname", "Email", "Ticket", "Status", "Date"]
ONE_TRY = ("--retries", "0", "--workers", "1")   # one attempt, one worker: a run in a known order


def row(email, ticket, day, name="Ann"):
    return [name, "X", email, ticket, "Closed", day]


def preview(report, *extra, env=None):
    return run_job("--report", str(report), "--since", SINCE, "-testmode", "yes", *extra, env=env)


# ---------------------------------------------------------------- dates of real exports

@pytest.mark.parametrize("value, closed", [
    ("21.11.2026 14:09", "2026-11-21T14:09:00"),
    ("21.11.2026", "2026-11-21"),
    ("21.11.2026 14:09:33", "2026-11-21T14:09:33"),
    ("2026-11-21T14:09:00Z", "2026-11-21T14:09:00"),
    ("2026-11-21T14:09:00.123456Z", "2026-11-21T14:09:00"),
    ("2026-11-21 14:09:00.1234567+01:00", "2026-11-21T13:09:00"),
    ("2026-11-21T14:09-0500", "2026-11-21T19:09:00"),
    ("2026-11-21T01:30:00+14:00", "2026-11-20T11:30:00"),   # the farthest offset moves the day back
    ("2026-11-20T23:30:00-12:00", "2026-11-21T11:30:00"),   # and the other way
])
def test_export_dates_with_a_zone_are_read_as_this_machines_local_time(tmp_path, webhook, value, closed):
    report = write_csv(tmp_path / "r.csv", [row("a@example.com", "1", value)])
    state = write_state(tmp_path / "s.json", {"last_run_date": "01/11/2026"})
    result = webhook_run(report, state, webhook.url, *ONE_TRY, env=clean_env(TZ="UTC"), runner=run_cli)
    assert result.returncode == 0, result.stderr
    assert webhook.payloads()[0]["tickets"][0]["closed_date"] == closed


def test_the_local_zone_decides_the_day(tmp_path, webhook):
    report = write_csv(tmp_path / "r.csv", [row("a@example.com", "1", "2026-11-21T23:30:00Z")])
    state = write_state(tmp_path / "s.json", {"last_run_date": "01/11/2026"})
    result = webhook_run(report, state, webhook.url, *ONE_TRY, env=clean_env(TZ="Europe/Paris"),
                         runner=run_cli)  # the process's own zone
    assert result.returncode == 0, result.stderr
    assert webhook.payloads()[0]["tickets"][0]["closed_date"] == "2026-11-22T00:30:00"


def test_a_date_format_with_a_zone_works(tmp_path, webhook):
    report = write_csv(tmp_path / "r.csv", [row("a@example.com", "1", "21/11/2026 14:09 +0100")])
    state = write_state(tmp_path / "s.json", {"last_run_date": "01/11/2026"})
    result = webhook_run(report, state, webhook.url, *ONE_TRY, "--date-format", "%d/%m/%Y %H:%M %z",
                         env=clean_env(TZ="UTC"), runner=run_cli)
    assert result.returncode == 0, result.stderr
    assert webhook.payloads()[0]["tickets"][0]["closed_date"] == "2026-11-21T13:09:00"


@pytest.mark.parametrize("value, form", [
    ("11/21/2026 02:09 PM", "%m/%d/%Y %I:%M %p"),
    ("11/21/2026 2:09:33 pm", "%m/%d/%Y %I:%M:%S %p"),
    ("11/21/2026 14:09", "%m/%d/%Y %H:%M"),
    ("11/21/2026 02:09PM", "%m/%d/%Y %I:%M%p"),
])
def test_a_month_first_date_with_a_time_stops_the_run_naming_the_whole_format(tmp_path, webhook, value, form):
    report = write_csv(tmp_path / "r.csv", [row("a@example.com", "1", DAY[2]), row("b@example.com", "2", value)])
    state = write_state(tmp_path / "s.json", {"last_run_date": SINCE})
    result = webhook_run(report, state, webhook.url, *ONE_TRY)
    assert result.returncode == 2
    assert f'row 3: the date {value!r} is month-first' in result.stderr and f'--date-format "{form}"' in result.stderr
    assert webhook.requests == []
    fixed = run_job("--report", str(report), "--since", "01/11/2026", "-testmode", "yes", "--date-format", form,
                    "--date-format", "%d/%m/%Y")
    assert fixed.returncode == 0 and "b@example.com" in fixed.stdout


def test_since_takes_an_iso_day_too(tmp_path):
    report = write_csv(tmp_path / "r.csv", [row("a@example.com", "1", DAY[5]), row("b@example.com", "2", DAY[20])])
    since = (TODAY - timedelta(days=10)).isoformat()
    result = run_job("--report", str(report), "--since", since, "-testmode", "yes")
    assert result.returncode == 0, result.stderr
    assert "a@example.com" in result.stdout and "b@example.com" not in result.stdout
    assert f"Closed since {SINCE}" in result.stdout


# ---------------------------------------------------------------- a column nobody can read

def mixed(bad_count, good_count, bad_cell="32/13/2026", bad_role="date"):
    rows = []
    for n in range(bad_count):
        email, day = (f"bad{n}@example.com", bad_cell) if bad_role == "date" else (bad_cell, DAY[3])
        rows.append(row(email, f"B{n}", day))
    rows += [row(f"good{n}@example.com", f"G{n}", DAY[3]) for n in range(good_count)]
    return rows


def test_three_unreadable_dates_of_five_closed_rows_stop_the_run_naming_the_first_and_the_fix(tmp_path, webhook):
    report = write_csv(tmp_path / "r.csv", mixed(3, 2, "11/21/2026 02:09 AM x"))
    state = write_state(tmp_path / "s.json", {"last_run_date": SINCE})
    result = webhook_run(report, state, webhook.url, *ONE_TRY)
    assert result.returncode == 2
    assert "row 2: 3 of the 5 closed rows were skipped for unparseable date (the first: '11/21/2026 02:09 AM x')" \
        in result.stderr
    assert "--date-format" in result.stderr and "--column date=HEADER" in result.stderr
    assert webhook.requests == [] and read_state(state) == {"last_run_date": SINCE}


def test_the_fix_names_both_orders_when_a_value_reads_either_way(tmp_path):
    result = preview(write_csv(tmp_path / "r.csv", mixed(3, 0, "05/11/2026 02:09 PM")))
    assert result.returncode == 2
    assert '--date-format "%d/%m/%Y %I:%M %p" or --date-format "%m/%d/%Y %I:%M %p", whichever' in result.stderr


def test_three_unreadable_dates_of_six_are_half_skipped_and_counted_not_a_stop(tmp_path, webhook):
    report = write_csv(tmp_path / "r.csv", mixed(3, 3))
    state = write_state(tmp_path / "s.json", {"last_run_date": SINCE})
    result = webhook_run(report, state, webhook.url, *ONE_TRY)
    assert result.returncode == 0, result.stderr
    assert "unparseable date 3" in result.stdout and len(webhook.requests) == 3


def test_two_unreadable_dates_of_two_are_fewer_than_three_and_counted(tmp_path):
    result = preview(write_csv(tmp_path / "r.csv", mixed(2, 0)))
    assert result.returncode == 0 and "unparseable date 2" in result.stdout


@pytest.mark.parametrize("cell", ["", "Ann Smith", "not-an-address"])
def test_an_email_column_nobody_can_read_stops_the_run(tmp_path, cell):
    result = preview(write_csv(tmp_path / "r.csv", mixed(4, 3, cell, bad_role="email")))
    assert result.returncode == 2
    assert "4 of the 7 closed rows were skipped for no or invalid email" in result.stderr
    assert "--column email=HEADER" in result.stderr


def test_old_closed_rows_count_among_all_closed_rows(tmp_path):
    rows = mixed(3, 0) + [row(f"old{n}@example.com", f"O{n}", DAY[400]) for n in range(3)]
    result = preview(write_csv(tmp_path / "r.csv", rows))
    assert result.returncode == 0 and "unparseable date 3" in result.stdout


# ---------------------------------------------------------------- skipped rows named

def test_a_live_run_names_every_skipped_closed_row_without_v(tmp_path, webhook):
    rows = [row("a@example.com", "T1", DAY[3]), row("broken", "T2", DAY[3]), row("c@example.com", "T3", "31/02/2026")]
    rows += [row(f"d{n}@example.com", f"D{n}", DAY[3]) for n in range(5)]
    report = write_csv(tmp_path / "r.csv", rows)
    state = write_state(tmp_path / "s.json", {"last_run_date": SINCE})
    result = webhook_run(report, state, webhook.url, *ONE_TRY)
    assert result.returncode == 0, result.stderr
    assert "warning: row 3 skipped: no or invalid email ('broken'), ticket T2" in result.stderr
    assert "warning: row 4 skipped: unparseable date ('31/02/2026'), ticket T3" in result.stderr


def test_past_twenty_skipped_rows_one_line_says_how_many_more(tmp_path):
    rows = [row(f"a{n}@example.com", f"T{n}", "31/02/2026") for n in range(23)]
    rows += [row(f"g{n}@example.com", f"G{n}", DAY[3]) for n in range(30)]
    result = preview(write_csv(tmp_path / "r.csv", rows))
    assert result.returncode == 0, result.stderr
    assert result.stderr.count(" skipped: unparseable date") == 20
    assert "and 3 more closed rows skipped" in result.stderr


def test_row_numbers_are_the_sheets_own_when_the_range_starts_lower(tmp_path):
    from openpyxl import Workbook

    workbook = Workbook()
    sheet = workbook.active
    sheet.title = "Tickets"
    sheet.append(["Weekly export"])
    sheet.append(HEADER)
    sheet.append(row("a@example.com", "1", DAY[3]))
    sheet.append(row("b@example.com", "2", "31/02/2026"))
    workbook.save(tmp_path / "r.xlsx")
    result = run_job("--report", str(tmp_path / "r.xlsx"), "-range", "Tickets!A2:F", "--since", SINCE, "-testmode", "yes")
    assert result.returncode == 0, result.stderr
    assert "row 4 skipped: unparseable date ('31/02/2026'), ticket 2" in result.stderr


# ---------------------------------------------------------------- held until fixed

def test_a_ticket_skipped_for_its_address_is_emailed_once_the_row_is_fixed(tmp_path, webhook):
    state = write_state(tmp_path / "s.json", {"last_run_date": DAY[20]})
    week1 = write_csv(tmp_path / "w1.csv", [row("ann@example", "T1", DAY[15]), row("bob@example.com", "T2", DAY[12])])
    first = webhook_run(week1, state, webhook.url, *ONE_TRY)
    assert first.returncode == 0 and webhook.emails() == ["bob@example.com"]
    saved = read_state(state)
    assert [entry["ticket"] for entry in saved["held"].values()] == ["T1"]
    assert saved["last_run_date"] == DAY[12]   # the held ticket does not hold it
    assert "Held for later runs      1 (fix their address or date" in first.stdout
    still_broken = webhook_run(week1, state, webhook.url, *ONE_TRY)
    assert still_broken.returncode == 0 and webhook.emails() == ["bob@example.com"]
    assert [entry["ticket"] for entry in read_state(state)["held"].values()] == ["T1"] and "row 2 skipped" in still_broken.stderr
    week3 = write_csv(tmp_path / "w3.csv", [row("ann@example.com", "T1", DAY[15]), row("bob@example.com", "T2", DAY[12])])
    fixed = webhook_run(week3, state, webhook.url, *ONE_TRY)
    assert fixed.returncode == 0, fixed.stderr
    assert webhook.emails() == ["bob@example.com", "ann@example.com"]
    assert [t["ticket"] for t in webhook.payloads()[-1]["tickets"]] == ["T1"]
    assert "Held from earlier runs   1 (1 usable now)" in fixed.stdout and read_state(state)["held"] == {}
    assert "Held for later runs" not in fixed.stdout
    again = webhook_run(week3, state, webhook.url, *ONE_TRY)
    assert again.returncode == 0 and len(webhook.requests) == 2   # forgotten once emailed: never twice


def test_a_ticket_skipped_for_its_date_is_emailed_once_the_date_is_fixed_and_only_to_its_customer(tmp_path, webhook):
    state = write_state(tmp_path / "s.json", {"last_run_date": DAY[20]})
    webhook_run(write_csv(tmp_path / "w1.csv", [row("ann@example.com", "T1", "32/13/2026"), row("b@example.com", "T2", DAY[12]),
                                         row("c@example.com", "T3", DAY[12])]), state, webhook.url, *ONE_TRY)
    assert customer_key("ann@example.com") == next(iter(read_state(state)["held"].values()))["customer"]
    fixed = write_csv(tmp_path / "w2.csv", [row("ann@example.com", "T1", DAY[18]), row("zed@example.com", "T1", DAY[19]),
                                            row("b@example.com", "T2", DAY[12]), row("c@example.com", "T3", DAY[12])])
    result = webhook_run(fixed, state, webhook.url, *ONE_TRY)
    assert result.returncode == 0, result.stderr
    assert webhook.emails()[2:] == ["ann@example.com"]    # not zed, whose old ticket shares the id


def test_a_held_ticket_whose_address_is_then_refused_becomes_a_rejection(tmp_path, webhook):
    state = write_state(tmp_path / "s.json", {"last_run_date": DAY[20]})
    webhook_run(write_csv(tmp_path / "w1.csv", [row("ann@@example.com", "T1", DAY[15]), row("b@example.com", "T2", DAY[12])]),
                state, webhook.url, *ONE_TRY)
    webhook.respond = lambda received, index: Reply(422) if received.json["email_address"] == "ann@example.net" else Reply(200)
    rows = [row("ann@example.net", "T1", DAY[15]), row("b@example.com", "T2", DAY[12])]
    result = webhook_run(write_csv(tmp_path / "w2.csv", rows), state, webhook.url, *ONE_TRY)
    assert result.returncode == 1
    saved = read_state(state)
    assert saved["held"] == {} and customer_key("ann@example.net") in saved["rejected"]


def test_held_tickets_are_forgotten_after_90_days(tmp_path, webhook):
    held = {"T1": {"day": (TODAY - timedelta(days=91)).isoformat(), "reason": "no or invalid email", "customer": "",
                   "closed": ""},
            "T2": {"day": (TODAY - timedelta(days=90)).isoformat(), "reason": "no or invalid email", "customer": "",
                   "closed": ""}}
    state = write_state(tmp_path / "s.json", {"last_run_date": SINCE, "held": held})
    result = webhook_run(write_csv(tmp_path / "r.csv", [row("a@example.com", "T9", DAY[3])]), state, webhook.url, *ONE_TRY)
    assert result.returncode == 0
    assert list(read_state(state)["held"]) == ["T2"]


def test_test_mode_shows_held_tickets_but_writes_nothing(tmp_path):
    state = write_state(tmp_path / "s.json", {"last_run_date": SINCE})
    result = run_job("--report", str(write_csv(tmp_path / "r.csv", [row("x", "T1", DAY[3])])), "--state-file", str(state),
                     "-testmode", "yes")
    assert result.returncode == 0 and "Held for later runs      1" in result.stdout
    assert read_state(state) == {"last_run_date": SINCE}


# ---------------------------------------------------------------- refusals: recorded, or pending

def test_a_refusal_that_cannot_be_written_to_rejected_csv_leaves_the_customer_pending(tmp_path, webhook):
    report = write_csv(tmp_path / "r.csv", [row("ok@example.com", "1", DAY[5]), row("bad@example.com", "2", DAY[4]),
                                            row("fine@example.com", "3", DAY[3])])
    state = write_state(tmp_path / "s.json", {"last_run_date": SINCE})
    (tmp_path / "rejected.csv").mkdir()     # cannot be appended to (as when Excel holds it open on Windows)
    webhook.respond = lambda received, index: Reply(422) if received.json["email_address"] == "bad@example.com" else Reply(200)
    result = webhook_run(report, state, webhook.url, *ONE_TRY)
    assert result.returncode == 2
    assert "rejected.csv" in result.stderr
    saved = read_state(state)
    assert saved["rejected"] == {} and saved["last_run_date"] == DAY[4]     # pending: it holds last_run_date
    assert webhook.emails() == ["ok@example.com", "bad@example.com"]        # nothing sent after the stop
    (tmp_path / "rejected.csv").rmdir()
    webhook.respond = lambda received, index: Reply(200)
    again = webhook_run(report, state, webhook.url, *ONE_TRY)
    assert again.returncode == 0 and webhook.emails()[2:] == ["bad@example.com", "fine@example.com"]


def test_a_withdrawal_takes_out_only_this_runs_lines_of_a_shared_rejected_csv(tmp_path, webhook):
    other_jobs_line = ["2026-11-30", "someone@example.com", "Someone", "77", "HTTP 422: unknown"]
    with (tmp_path / "rejected.csv").open("w", encoding="utf-8-sig", newline="") as handle:
        csv.writer(handle).writerows([["day", "email", "name", "tickets", "reason"], other_jobs_line])
    report = write_csv(tmp_path / "r.csv", [row(f"c{n}@example.com", str(n), DAY[4]) for n in range(5)])
    state = write_state(tmp_path / "job_a.json", {"last_run_date": SINCE})
    webhook.respond = lambda received, index: Reply(400, body=b"missing field")
    result = webhook_run(report, state, webhook.url, *ONE_TRY)
    assert result.returncode == 2 and "refused the first 3 customers alike" in result.stderr
    assert read_state(state)["rejected"] == {}
    with (tmp_path / "rejected.csv").open(encoding="utf-8-sig", newline="") as handle:
        assert list(csv.reader(handle))[1:] == [other_jobs_line]
    assert "Customers rejected       0" in result.stdout


def test_a_withdrawal_that_cannot_rewrite_rejected_csv_still_withdraws_the_state(tmp_path):
    state_path = write_state(tmp_path / "s.json", {"last_run_date": SINCE})
    writer = StateWriter(state_path, load_state(state_path))
    customers = [Customer(f"c{n}@example.com", "", "", ()) for n in range(2)]
    for customer in customers:
        writer.record_rejection(customer, TODAY, "HTTP 400")
    csv_path = tmp_path / "rejected.csv"
    csv_path.rename(tmp_path / "held-open.csv")
    csv_path.mkdir()                       # cannot be read or replaced now
    with pytest.raises(StateError, match="rejected.csv"):
        writer.withdraw_rejections(customers)
    assert load_state(state_path).rejected == {} and writer.state.rejected == {}


def test_retry_rejected_sends_the_rejected_customers_own_ticket_not_an_older_one_with_the_same_id(tmp_path, webhook):
    state = write_state(tmp_path / "s.json", {"last_run_date": SINCE})
    webhook.respond = lambda received, index: Reply(422) if received.json["email_address"] == "bad@example.com" else Reply(200)
    webhook_run(write_csv(tmp_path / "w1.csv", [row("bad@example.com", "7", DAY[5]), row("ok@example.com", "8", DAY[4])]),
                state, webhook.url, *ONE_TRY)
    webhook.respond = lambda received, index: Reply(200)
    report = write_csv(tmp_path / "w2.csv", [row("zed@example.com", "7", DAY[700]), row("bad@example.org", "7", DAY[5]),
                                             row("ok@example.com", "8", DAY[4])])
    result = webhook_run(report, state, webhook.url, *ONE_TRY, "--retry-rejected")
    assert result.returncode == 0, result.stderr
    assert webhook.emails()[2:] == ["bad@example.org"]
    assert read_state(state)["rejected"] == {}


# ---------------------------------------------------------------- the hint of an unexpected error

def test_the_details_of_an_unexpected_error_reach_the_log_file_with_secrets_hidden(tmp_path):
    from run_output import setup_logging

    log_file = tmp_path / "run.log"
    logger = setup_logging(log_file, verbose=False, quiet=True, secrets=["s3cr3t-token"])
    try:
        raise RuntimeError("failed with s3cr3t-token inside")
    except RuntimeError:
        logger.info("details of the unexpected error:", exc_info=True)
    for handler in logger.handlers:
        handler.flush()
    text = log_file.read_text(encoding="utf-8")
    assert "Traceback (most recent call last)" in text and "RuntimeError: failed with *** inside" in text
    assert "s3cr3t-token" not in text
    logger.handlers.clear()
    logging.getLogger("ticket_notifier").handlers.clear()


def test_parsing_never_leaves_a_zone_for_comparisons(tmp_path):
    from report_dates import DateParser

    parsed, has_time = DateParser().parse("2026-11-21T14:09:00+01:00")
    assert parsed.tzinfo is None and has_time and isinstance(parsed, datetime)
    assert RunState(TODAY).held == {}
