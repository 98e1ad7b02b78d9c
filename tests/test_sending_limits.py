"""Contract section 23: a provider's sending limit stops sending without refusing anybody, and a large
week goes out over several runs with --max-emails (a real SMTP server, the Gmail and Graph stand-ins,
and the story in-process)."""

import threading
from datetime import date, timedelta

import pytest
from conftest import ScriptedDestination, clean_env, read_state, run_job, run_story, write_csv, write_state
from mail_standins import json_reply, run, write_user_token

import google_api
from cli_options import UsageError, parse_args
from delivery import DELIVERED, LIMIT, REJECTED, RETRY, STOP, Answer, as_sending_limit, resume_time

TODAY = date.today()
DAY = (TODAY - timedelta(days=3)).strftime("%d/%m/%Y")
SINCE = (TODAY - timedelta(days=10)).strftime("%d/%m/%Y")
FROM = "Support <support@example.com>"


def customers(count: int) -> list[list[str]]:
    return [["C", str(n), f"c{n:02d}@example.com", str(n), "Closed", DAY] for n in range(count)]


# ---------------------------------------------------------------- the one rule

@pytest.mark.parametrize("detail", [
    "smtp.gmail.com:587 refused the message with 550 5.4.5 Daily user sending quota exceeded. x - gsmtp",
    "smtp.gmail.com:587 refused the sender (MAIL FROM) with 550 5.4.5 Daily user sending limit exceeded.",
    "outlook:587 refused the recipient with 550 5.1.90 Your message can't be sent because you've reached your daily limit",
    "outlook:587 refused the message with 554 5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException",
    "outlook:587 refused the recipient with 550 5.7.232 Your message can't be sent because your tenant exceeded its limit",
    "outlook:587 refused the recipient with 550 5.7.233 tenant external recipient rate limit exceeded",
    "gmail.googleapis.com:443 answered HTTP 429 rateLimitExceeded: User-rate limit exceeded. Retry after 2026-12-08T10:00Z",
    "gmail.googleapis.com:443 refused to send (HTTP 403 dailyLimitExceeded: Daily Limit Exceeded)",
    "relay:25 refused the message with 452 4.7.0 hourly sending quota exceeded, try again later",
])
def test_every_provider_s_limit_is_a_limit_whatever_the_first_digit(detail):
    for kind in (REJECTED, RETRY, STOP):
        assert as_sending_limit(Answer(kind, detail, "550")).kind == LIMIT


@pytest.mark.parametrize("detail", [
    "relay:25 refused the recipient with 550 5.1.1 <nobody@example.com>: Recipient address rejected: User unknown",
    "relay:25 refused the message with 552 5.3.4 Message size exceeds fixed limit",
    "relay:25 refused the message with 552 5.2.2 <jane@example.org>: mailbox full, quota exceeded",
    "outlook:587 refused the recipient with 550 5.2.2 The recipient's mailbox is full and can't accept messages now",
    "relay:25 refused the message with 552 5.2.2 <jane@example.org>: mailbox has exceeded its daily storage quota",
    "the webhook at hooks:443 answered HTTP 429",
    "gmail.googleapis.com:443 answered HTTP 429 rateLimitExceeded: Rate Limit Exceeded",
])
def test_an_ordinary_refusal_or_a_short_wait_is_not_a_limit(detail):
    assert as_sending_limit(Answer(REJECTED, detail, "550")).kind == REJECTED
    assert as_sending_limit(Answer(RETRY, detail, "HTTP 429", retry_after=120)).kind == RETRY


def test_a_retry_after_beyond_the_run_s_wait_cap_is_a_limit_and_says_when():
    answer = as_sending_limit(Answer(RETRY, "graph:443 answered HTTP 429", "HTTP 429", retry_after=3600))
    assert answer.kind == LIMIT and "this machine's time" in resume_time(answer)
    said = Answer(LIMIT, "HTTP 429: User-rate limit exceeded. Retry after 2026-12-08T10:00:00.000Z", "HTTP 429")
    assert resume_time(said) == "2026-12-08T10:00:00.000Z"
    assert as_sending_limit(Answer(DELIVERED, "250 quota exceeded? no: delivered", "250")).kind == DELIVERED


# ---------------------------------------------------------------- SMTP

def limited(recorder, allowed: int, stage: str, reply: str):
    """The server takes `allowed` emails, then answers `reply` at `stage` (mail, rcpt or data)."""
    taken = []
    lock = threading.Lock()

    def after_allowed(*args):
        with lock:
            if len(taken) >= allowed:
                return reply
            if stage == "data":
                taken.append(1)
        return None

    def counted_data(envelope):
        refused = after_allowed()
        return refused

    if stage == "mail":
        recorder.mail_reply = lambda address: reply if len(recorder.messages) >= allowed else None
    elif stage == "rcpt":
        recorder.rcpt_reply = lambda address, attempt: reply if len(recorder.messages) >= allowed else None
    else:
        recorder.data_reply = counted_data


def run_plain(tmp_path, port, rows, *extra):
    report = write_csv(tmp_path / "r.csv", rows)
    state = tmp_path / "s.json"
    if not state.exists():
        write_state(state, {"last_run_date": SINCE})
    return run_job("--report", str(report), "--state-file", str(state), "--smtp-url", f"smtp://127.0.0.1:{port}",
                   "--from", FROM, "-testmode", "no", "--min-days-between-emails", "0", *extra, env=clean_env())


@pytest.mark.parametrize("stage, reply", [
    ("data", "550 5.4.5 Daily user sending quota exceeded. x - gsmtp"),
    ("mail", "550 5.4.5 Daily user sending limit exceeded. x - gsmtp"),
    ("rcpt", "550 5.1.90 Your message can't be sent because you've reached your daily limit for message recipients"),
    ("data", "554 5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException; Failed to process message"),
])
def test_a_mailbox_s_daily_limit_stops_sending_and_every_other_customer_waits(tmp_path, smtp_server, stage, reply):
    recorder, port = smtp_server("plain", auth_require_tls=False)
    limited(recorder, 10, stage, reply)
    result = run_plain(tmp_path, port, customers(30), "--workers", "1")
    assert result.returncode == 1, result.stderr
    assert len(recorder.messages) == 10
    assert "sending limit reached" in result.stderr and "after 10 email(s)" in result.stderr
    assert "20 customer(s) wait for the next run, none rejected" in result.stderr
    assert "refused the sender" not in result.stderr and "--from" not in result.stderr.split("sending limit")[1][:0]
    assert not (tmp_path / "rejected.csv").exists() and read_state(tmp_path / "s.json")["rejected"] == {}
    tried = len(recorder.rcpt_attempts) if stage != "mail" else None
    assert tried is None or tried <= 11   # no retry spent against the limit, no further customer tried
    # The next day the limit has lifted: the other 20 go out, nobody twice.
    recorder.mail_reply = lambda address: None
    recorder.rcpt_reply = lambda address, attempt: None
    recorder.data_reply = lambda envelope: None
    result = run_plain(tmp_path, port, customers(30))
    assert result.returncode == 0, result.stderr
    assert sorted(recorder.recipients()) == [f"c{n:02d}@example.com" for n in range(30)]


def test_a_rate_limit_450_at_mail_from_is_worded_as_a_rate_limit(tmp_path, smtp_server):
    recorder, port = smtp_server("plain", auth_require_tls=False)
    recorder.mail_reply = lambda address: "450 4.7.1 Too much mail from this sender, try again later"
    result = run_plain(tmp_path, port, customers(1), "--retries", "0")
    assert result.returncode == 1 and "limiting the rate of sending" in result.stderr
    assert "refused the sender" not in result.stderr


# ---------------------------------------------------------------- Gmail and Graph

def test_the_gmail_api_s_user_rate_limit_with_a_retry_time_stops_at_once(tmp_path, gmail):
    write_user_token(tmp_path / "token.json", google_api.CONSENT_SCOPES)

    def answer(message, index):
        if len(gmail.sent) >= 2:
            return json_reply(429, {"error": {"code": 429, "message": "User-rate limit exceeded.  Retry after "
                                              "2026-12-08T10:00:00.000Z", "errors": [{"reason": "rateLimitExceeded"}]}})
        return json_reply(200, {"id": "x"})
    gmail.answer = answer
    result = run(tmp_path, "--send-with", "gmail", "-testmode", "no", "--workers", "1", env=gmail.env(),
                 rows=customers(8))
    assert result.returncode == 1 and len(gmail.sent) == 2
    sends = [r for r in gmail.server.requests if "/messages/send" in r.path]
    assert len(sends) == 3   # the one answered with the limit, never retried; nobody after it
    assert "can resume 2026-12-08T10:00:00.000Z" in result.stderr and "6 customer(s) wait" in result.stderr


def test_the_gmail_api_s_daily_limit_is_a_limit_not_a_missing_scope(tmp_path, gmail):
    write_user_token(tmp_path / "token.json", google_api.CONSENT_SCOPES)
    gmail.answer = lambda message, index: json_reply(403, {"error": {"code": 403, "message": "Daily Limit Exceeded",
                                                                     "errors": [{"reason": "dailyLimitExceeded"}]}})
    result = run(tmp_path, "--send-with", "gmail", "-testmode", "no", env=gmail.env())
    assert result.returncode == 1 and "sending limit reached" in result.stderr and "gmail.send" not in result.stderr


def test_graph_s_retry_after_beyond_the_cap_is_not_waited_out(tmp_path, microsoft):
    microsoft.answer = lambda message, index: json_reply(429, {"error": {"code": "ApplicationThrottled",
                                                                         "message": "Mailbox concurrency limit"}},
                                                         {"Retry-After": "3600"})
    result = run(tmp_path, "-testmode", "no", "--workers", "1", env=microsoft.env(), rows=customers(12))
    assert result.returncode == 1 and "12 customer(s) wait" in result.stderr
    assert len([r for r in microsoft.server.requests if r.path.endswith("sendMail") and r.body]) == 1


# ---------------------------------------------------------------- --max-emails

def test_max_emails_sends_the_oldest_first_and_the_others_wait_for_the_next_run(tmp_path):
    rows = [["C", str(n), f"c{n}@example.com", str(n), "Closed", (TODAY - timedelta(days=n)).strftime("%d/%m/%Y")]
            for n in range(1, 6)]
    script = ScriptedDestination(lambda email, attempt: Answer(DELIVERED, "ok", "200"))
    write_csv(tmp_path / "r.csv", rows)
    write_state(tmp_path / "s.json", {"last_run_date": SINCE})
    args = ("--report", str(tmp_path / "r.csv"), "--state-file", str(tmp_path / "s.json"), "-testmode", "no",
            "--max-emails", "2")
    report = run_story(script, *args)
    assert sorted(script.attempts) == ["c4@example.com", "c5@example.com"] and len(report.waiting) == 3
    assert report.exit_code == 0 and report.new_last_run_date == TODAY - timedelta(days=3)
    report = run_story(script, *args)
    assert sorted(script.attempts[2:]) == ["c2@example.com", "c3@example.com"]
    report = run_story(script, *args)
    assert script.attempts[4:] == ["c1@example.com"] and report.waiting == [] and len(set(script.attempts)) == 5


def test_max_emails_comes_from_the_setting_too_and_must_be_a_whole_number(tmp_path):
    from conftest import ROOT

    settings = parse_args(["--report", "r.csv", "-testmode", "yes"], ROOT, "t", environment={"MAX_EMAILS": "1900"})
    assert settings.max_emails == 1900
    with pytest.raises(UsageError, match="MAX_EMAILS"):
        parse_args(["--report", "r.csv", "-testmode", "yes"], ROOT, "t", environment={"MAX_EMAILS": "lots"})
    result = run_job("--report", "r.csv", "-testmode", "yes", "--max-emails", "0", env=clean_env())
    assert result.returncode == 2 and "--max-emails" in result.stderr
