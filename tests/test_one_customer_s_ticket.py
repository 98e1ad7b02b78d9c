"""Contract section 21: a ticket is one customer's ticket, the window never passes today, a ticket is
identified by its day, and every route's answers mean what they say (the story in-process with a
scripted destination; Gmail and Graph through their stand-ins)."""

from datetime import date, datetime, timedelta
from urllib.parse import urlsplit

import pytest
from conftest import Reply, ScriptedDestination, read_state, refuse_temporary_files_in, run_story, write_csv, write_state
from mail_standins import FROM, json_reply, run, write_user_token

import google_api
from customer_message import Content, Sender, outgoing_mail, webhook_id
from delivery import DELIVERED, REJECTED, Answer
from report_dates import DateParser
from ticket_core import ClosedTicket, Customer

TODAY = date.today()
DAY = (TODAY - timedelta(days=3)).strftime("%d/%m/%Y")
SINCE = (TODAY - timedelta(days=10)).strftime("%d/%m/%Y")


def sends(gmail) -> list:
    return [r for r in gmail.server.requests if urlsplit(r.path).path.endswith("/messages/send")]


def delivered(email, attempt):
    return Answer(DELIVERED, "HTTP 200", "HTTP 200")


def story(tmp_path, rows, *extra, answer=delivered):
    """One live run of the story on these rows; (report, scripted destination)."""
    script = ScriptedDestination(answer)
    report = write_csv(tmp_path / "r.csv", rows)
    state = tmp_path / "s.json"
    if not state.exists():
        write_state(state, {"last_run_date": SINCE})
    return run_story(script, "--report", str(report), "--state-file", str(state), "-testmode", "no",
                     "--min-days-between-emails", "0", *extra), script


# ---------------------------------------------------------------- the state folder, before anyone

def test_a_state_folder_this_account_cannot_write_stops_the_run_before_the_first_email(tmp_path, monkeypatch):
    """The write probe must be made in the state folder itself: one made anywhere else succeeds, the
    first email goes out, the state cannot be saved and that email repeats next week."""
    from state_file import StateError

    folder = tmp_path / "state"
    folder.mkdir()
    refuse_temporary_files_in(folder, monkeypatch)
    script = ScriptedDestination(delivered)
    report = write_csv(tmp_path / "r.csv", [["Ann", "Lee", "ann@example.com", "1", "Closed", DAY]])
    with pytest.raises(StateError, match="cannot write in the state folder"):
        run_story(script, "--report", str(report), "--state-file", str(folder / "s.json"), "--since", SINCE,
                  "-testmode", "no")
    assert script.attempts == [] and not (folder / "s.json").exists()


# ---------------------------------------------------------------- two customers, one ticket id

def test_another_customer_s_usable_row_of_the_same_id_never_keeps_a_broken_row_from_being_held(tmp_path):
    rows = [["Ann", "Lee", "ann@example.com", "500", "Closed", DAY], ["Bob", "Ray", "bob(at)example.com", "500", "Closed", DAY]]
    report, script = story(tmp_path, rows)
    assert script.attempts == ["ann@example.com"] and report.held_waiting == 1
    rows[1][2] = "bob@example.com"   # the help desk fixes Bob's address
    report, script = story(tmp_path, rows)
    assert script.attempts == ["bob@example.com"] and report.held_waiting == 0
    assert read_state(tmp_path / "s.json")["held"] == {}


def test_two_customers_bad_dates_on_the_same_id_are_two_held_tickets(tmp_path):
    rows = [["Ann", "Lee", "ann@example.com", "700", "Closed", "31/02/2026"],
            ["Bob", "Ray", "bob@example.com", "700", "Closed", "30/02/2026"],
            ["Cy", "Day", "cy@example.com", "1", "Closed", DAY], ["Di", "Fox", "di@example.com", "2", "Closed", DAY],
            ["Ed", "Gee", "ed@example.com", "3", "Closed", DAY]]
    report, script = story(tmp_path, rows)
    assert report.held_waiting == 2 and len(read_state(tmp_path / "s.json")["held"]) == 2
    old = (TODAY - timedelta(days=40)).strftime("%d/%m/%Y")   # fixed to their real days, before the window
    rows[0][5], rows[1][5] = old, old
    report, script = story(tmp_path, rows)
    assert sorted(script.attempts) == ["ann@example.com", "bob@example.com"] and report.held_waiting == 0


def test_one_customer_s_delivery_never_settles_another_s_rejection_of_the_same_id(tmp_path):
    rows = [["Ann", "Lee", "ann@example.com", "100", "Closed", DAY], ["Bob", "Ray", "bob@example.com", "100", "Closed", DAY]]

    def ann_refused(email, attempt):
        if email == "ann@example.com":
            return Answer(REJECTED, "HTTP 422 mailbox full", "HTTP 422")
        return delivered(email, attempt)
    report, script = story(tmp_path, rows, answer=ann_refused)
    assert [c.email for c, _ in report.rejected] == ["ann@example.com"] and [c.email for c in report.notified] == [
        "bob@example.com"]
    state = read_state(tmp_path / "s.json")
    assert len(state["rejected"]) == 1   # Bob's delivery of his own 100 left Ann's refusal of hers alone
    for order in (rows, rows[::-1]):     # whatever the rows' order, Ann alone gets hers again; Bob is not told twice
        write_csv(tmp_path / "r.csv", order)
        report, script = story(tmp_path, order, "--retry-rejected")
        assert script.attempts in (["ann@example.com"], [])
    assert read_state(tmp_path / "s.json")["rejected"] == {}


def test_a_rejected_ticket_is_retried_under_a_corrected_address_of_the_same_name_only(tmp_path):
    rows = [["Ann", "Lee", "ann@example.com", "100", "Closed", DAY]]
    story(tmp_path, rows, answer=lambda email, attempt: Answer(REJECTED, "HTTP 422 no such user", "HTTP 422"))
    later = (TODAY + timedelta(days=0)).strftime("%d/%m/%Y")
    state = read_state(tmp_path / "s.json")
    state["last_run_date"] = later   # the ticket is now before the window: only a recall takes it
    write_state(tmp_path / "s.json", state)
    stranger = [["Zed", "Bo", "zed@example.com", "100", "Closed", DAY]]
    report, script = story(tmp_path, stranger, "--retry-rejected")
    assert script.attempts == []     # another customer's ticket 100 is not Ann's
    fixed = [["Ann", "Lee", "ann.lee@example.com", "100", "Closed", DAY]]
    report, script = story(tmp_path, fixed, "--retry-rejected")
    assert script.attempts == ["ann.lee@example.com"]


def test_a_recall_two_addresses_of_one_name_could_claim_stays_held_and_names_the_rows(tmp_path, caplog):
    rows = [["Ann", "Lee", "ann(at)example.com", "9", "Closed", DAY]]
    story(tmp_path, rows)
    state = read_state(tmp_path / "s.json")
    state["last_run_date"] = TODAY.strftime("%d/%m/%Y")
    write_state(tmp_path / "s.json", state)
    rows = [["Ann", "Lee", "ann@example.com", "9", "Closed", DAY], ["Ann", "Lee", "ann@example.org", "9", "Closed", DAY]]
    report, script = story(tmp_path, rows)
    assert script.attempts == [] and report.held_waiting == 1
    assert "rows 2, 3" in caplog.text and "stays held" in caplog.text


def test_a_state_file_of_the_previous_format_upgrades_in_place_and_sends_nothing_again(tmp_path):
    key = Customer("ann@example.com", "", "", ()).key
    write_state(tmp_path / "s.json", {
        "last_run_date": SINCE, "notified": {key: {"100": (TODAY - timedelta(days=3)).isoformat()}},
        "last_emailed": {}, "rejected": {}, "held": {"200": {"day": TODAY.isoformat(), "reason": "no or invalid email",
                                                           "customer": "", "closed": ""}}})
    rows = [["Ann", "Lee", "ann@example.com", "100", "Closed", DAY], ["Ann", "Lee", "ann@example.com", "200", "Closed", DAY]]
    report, script = story(tmp_path, rows)
    assert script.attempts == ["ann@example.com"] and [t.ticket_id for t in report.notified[0].tickets] == ["200"]
    assert read_state(tmp_path / "s.json")["held"] == {}


# ---------------------------------------------------------------- the window and the day

def test_a_row_dated_tomorrow_is_sent_and_the_window_stays_at_today(tmp_path):
    tomorrow = (TODAY + timedelta(days=1)).strftime("%d/%m/%Y")
    rows = [["Ann", "Lee", "ann@example.com", "1", "Closed", tomorrow]]
    report, script = story(tmp_path, rows)
    assert script.attempts == ["ann@example.com"] and report.new_last_run_date == TODAY
    rows.append(["Bob", "Ray", "bob@example.com", "2", "Closed", TODAY.strftime("%d/%m/%Y") + " 23:00"])
    report, script = story(tmp_path, rows)
    assert script.attempts == ["bob@example.com"]   # closed later today: still inside the window


def test_a_notified_ticket_stays_notified_when_the_export_gains_a_time_of_day(tmp_path):
    rows = [["Ann", "Lee", "ann@example.com", "1", "Closed", DAY]]
    report, script = story(tmp_path, rows)
    first_id = webhook_id(report.notified[0])
    rows[0][5] = DAY + " 14:09"
    report, script = story(tmp_path, rows)
    assert script.attempts == [] and report.already_notified == 1
    moment = datetime.strptime(DAY + " 14:09", "%d/%m/%Y %H:%M")
    ticket = ClosedTicket("ann@example.com", "1", "Closed", moment, True, "Ann", "Ann Lee")
    assert webhook_id(Customer("ann@example.com", "Ann Lee", "Ann", (ticket,))) == first_id


# ---------------------------------------------------------------- every line of every email fits

def test_a_long_subject_with_one_accent_never_makes_a_line_longer_than_998_octets():
    subject = "Ré" + "x" * 1300
    ticket = ClosedTicket("ann@example.com", "1", "Closed", datetime(2026, 12, 1), False, "Ann", "Ann Lee", subject)
    mail = outgoing_mail(Customer("ann@example.com", "Ann Lee", "Ann", (ticket,)), Content(subject=None),
                         Sender("", "support@example.com"))
    assert max(len(line) for line in mail.data.split(b"\r\n")) <= 998
    short = ticket._replace(subject="Réglé")
    assert not outgoing_mail(Customer("ann@example.com", "Ann Lee", "Ann", (short,)), Content(),
                             Sender("", "support@example.com")).data.isascii()   # short lines stay 8-bit


# ---------------------------------------------------------------- the calendar's edges

@pytest.mark.parametrize("cell", ["9999-12-31T23:30-05:00", "0001-01-01T00:30+05:00", 2958465.9999999, 3e6])
def test_a_date_the_calendar_cannot_hold_is_an_unparseable_date(cell):
    assert DateParser(("ISO 8601", "%d/%m/%Y")).parse(cell) is None or isinstance(cell, float) and cell < 2958466


def test_a_row_dated_past_the_calendar_is_skipped_and_held_never_unexpected(tmp_path):
    rows = [["Ann", "Lee", "ann@example.com", "1", "Closed", "9999-12-31T23:30-05:00"],
            ["Bob", "Ray", "bob@example.com", "2", "Closed", DAY], ["Cy", "Day", "cy@example.com", "3", "Closed", DAY]]
    report, script = story(tmp_path, rows)
    assert report.skipped == {"unparseable date": 1} and sorted(script.attempts) == ["bob@example.com", "cy@example.com"]


# ---------------------------------------------------------------- the mail APIs' answers

@pytest.fixture
def gmail_user(tmp_path, gmail):
    write_user_token(tmp_path / "token.json", google_api.CONSENT_SCOPES)
    return gmail


@pytest.mark.parametrize("reply", [Reply(200, body=b""), Reply(200, {"Content-Type": "text/plain"}, body=b"queued"),
                                   Reply(202, body=b"")])
def test_any_2xx_from_gmail_is_delivered_and_never_sent_again(tmp_path, gmail_user, reply):
    gmail_user.answer = lambda message, index: reply
    result = run(tmp_path, "--send-with", "gmail", "-testmode", "no", env=gmail_user.env())
    assert result.returncode == 0, result.stderr
    assert len(sends(gmail_user)) == 3
    again = run(tmp_path, "--send-with", "gmail", "-testmode", "no", env=gmail_user.env())
    assert again.returncode == 0 and len(sends(gmail_user)) == 3


@pytest.mark.parametrize("status", [302, 303, 307, 308])
def test_a_redirect_from_gmail_stops_the_run_naming_where_it_pointed(tmp_path, gmail_user, status):
    gmail_user.answer = lambda message, index: Reply(status, {"Location": "https://elsewhere.example.net/x?token=1"}, b"")
    result = run(tmp_path, "--send-with", "gmail", "-testmode", "no", env=gmail_user.env())
    assert result.returncode == 2 and f"HTTP {status}" in result.stderr and "elsewhere.example.net" in result.stderr
    assert "token=1" not in result.stderr and read_state(tmp_path / "s.json")["rejected"] == {}
    assert len(sends(gmail_user)) == 1


@pytest.mark.parametrize("status", [302, 303, 307, 308])
def test_a_redirect_from_graph_stops_the_run_and_is_never_followed(tmp_path, microsoft, status):
    microsoft.answer = lambda message, index: Reply(status, {"Location": f"https://{microsoft.host}/moved"}, b"")
    result = run(tmp_path, "-testmode", "no", env=microsoft.env())
    assert result.returncode == 2 and f"HTTP {status}" in result.stderr
    assert not any(r.path == "/moved" for r in microsoft.server.requests)
    assert read_state(tmp_path / "s.json").get("notified", {}) == {}


def refused_once_each(refusal, delivered):
    """A mail API's answer: `refusal` the first time each recipient is sent to, then `delivered`."""
    seen: set[str] = set()

    def answer(message, index):
        to = str(message["To"])
        if to in seen:
            return delivered
        seen.add(to)
        return refusal
    return answer


PASSING = {"408": json_reply(408, {"error": {"message": "slow"}}),
           "500": json_reply(500, {"error": {"code": "InternalServerError", "message": "try later"}}),
           "503": json_reply(503, {"error": {"message": "unavailable"}})}
GMAIL_RATE = {"403-rateLimitExceeded": json_reply(403, {"error": {"message": "Rate Limit Exceeded",
                                                                  "errors": [{"reason": "rateLimitExceeded"}]}}),
              "403-userRateLimitExceeded": json_reply(403, {"error": {"message": "User Rate Limit Exceeded",
                                                                      "errors": [{"reason": "userRateLimitExceeded"}]}})}


@pytest.mark.parametrize("refusal", [*PASSING.values(), *GMAIL_RATE.values()], ids=[*PASSING, *GMAIL_RATE])
def test_a_passing_refusal_from_gmail_is_retried_not_a_refusal_nor_a_stop(tmp_path, gmail_user, refusal, quick_backoff):
    """408, a 5xx, and Gmail's 403 about rate: each customer is answered so once, then delivered."""
    gmail_user.answer = refused_once_each(refusal, json_reply(200, {"id": "x"}))
    result = run(tmp_path, "--send-with", "gmail", "-testmode", "no", env=gmail_user.env())
    assert result.returncode == 0 and "rejected" not in result.stderr, result.stderr
    assert len(sends(gmail_user)) == 6 and "Customers notified       3" in result.stdout


@pytest.mark.parametrize("refusal", PASSING.values(), ids=PASSING)
def test_a_passing_refusal_from_graph_is_retried_not_a_refusal(tmp_path, microsoft, refusal, quick_backoff):
    microsoft.answer = refused_once_each(refusal, Reply(202, body=b""))
    result = run(tmp_path, "-testmode", "no", env=microsoft.env())
    assert result.returncode == 0 and "rejected" not in result.stderr, result.stderr
    assert len(microsoft.sent) == 3 and "Customers notified       3" in result.stdout


def test_graph_never_has_more_than_four_requests_in_flight(tmp_path, microsoft):
    rows = [["C", str(n), f"c{n}@example.com", str(n), "Closed", DAY] for n in range(12)]
    result = run(tmp_path, "-testmode", "no", "--workers", "8", "-v", env=microsoft.env(), rows=rows)
    assert result.returncode == 0 and len(microsoft.sent) == 12
    assert "with 4 worker(s)" in result.stderr


def test_a_redirected_gmail_send_is_never_replayed(tmp_path, gmail_user):
    gmail_user.answer = lambda message, index: Reply(301, {"Location": "/gmail/v1/users/me/messages/send"}, b"")
    result = run(tmp_path, "--send-with", "gmail", "-testmode", "no", "--from", FROM, env=gmail_user.env())
    assert result.returncode == 2 and len(sends(gmail_user)) == 1   # the message went out once, never re-POSTed
