"""Contract section 25: set-up found before the first customer, and what the operator sees (the story
in-process with a scripted destination; google_api.py and the Gmail stand-in where the process or the
provider is the point)."""

import csv
import json
import re
from datetime import date, timedelta
from string import Template

import pytest
from conftest import ROOT, ScriptedDestination, clean_env, read_state, run_cli, run_job, run_story, write_csv, write_state
from mail_standins import json_reply, run, write_user_token

import google_api
from cli_options import UsageError, build_parser, parse_args
from customer_message import TEMPLATE_FIELDS, Content, subject_for
from delivery import DELIVERED, REJECTED, Answer
from ticket_core import ClosedTicket, Customer

TODAY = date.today()
DAY = (TODAY - timedelta(days=3)).strftime("%d/%m/%Y")
SINCE = (TODAY - timedelta(days=10)).strftime("%d/%m/%Y")


def story(tmp_path, rows, *extra, answer=lambda email, attempt: Answer(DELIVERED, "ok", "200")):
    script = ScriptedDestination(answer)
    write_csv(tmp_path / "r.csv", rows)
    if not (tmp_path / "s.json").exists():
        write_state(tmp_path / "s.json", {"last_run_date": SINCE})
    return run_story(script, "--report", str(tmp_path / "r.csv"), "--state-file", str(tmp_path / "s.json"),
                     "--min-days-between-emails", "0", *extra), script


# ---------------------------------------------------------------- the subject

def test_subject_placeholders_are_filled_and_an_unknown_one_is_refused_at_start():
    ann = Customer("ann@example.com", "Ann Lee", "Ann", (
        ClosedTicket("ann@example.com", "1", "Closed", __import__("datetime").datetime(2026, 12, 1), False, "Ann", "Ann Lee"),))
    assert subject_for(ann, Content(subject="Acme: $ticket_phrase closed")) == "Acme: 1 support ticket closed"
    assert subject_for(ann, Content(subject="50$$ off")) == "50$ off"
    with pytest.raises(UsageError, match=r"--subject: unknown placeholder \$ticket_fase"):
        parse_args(["--report", "r.csv", "-testmode", "yes", "--subject", "Acme: $ticket_fase"], ROOT, "t", environment={})


def test_help_names_every_placeholder_the_bundled_templates_use():
    shown = " ".join(build_parser("t").format_help().split())
    used = set()
    for template in ("body.txt", "body.html"):
        text = (ROOT / "examples" / template).read_text(encoding="utf-8")
        used |= {match[1] or match[2] for match in Template.pattern.findall(text) if match[1] or match[2]}
    assert used - {"ticket_list"} <= set(TEMPLATE_FIELDS)
    for name in TEMPLATE_FIELDS:
        assert f"${name}" in shown


def test_the_example_templates_mark_the_lines_a_team_must_change():
    for template in ("body.txt", "body.html"):
        text = (ROOT / "examples" / template).read_text(encoding="utf-8")
        assert "CHANGE" in text and "Example Ltd." not in text


# ---------------------------------------------------------------- what the operator sees

def test_the_summary_names_rejected_csv_with_its_path_and_a_retried_customer_leaves_it(tmp_path, capsys):
    rows = [["Ann", "Lee", "ann@example.com", "1", "Closed", DAY], ["Bob", "Ray", "bob@example.com", "2", "Closed", DAY]]
    refused = lambda email, attempt: Answer(REJECTED, "HTTP 422 mailbox full", "HTTP 422")  # noqa: E731
    report, _ = story(tmp_path, rows, "-testmode", "no", answer=refused)
    from run_output import format_summary

    assert str(tmp_path / "rejected.csv") in format_summary(report)
    report, script = story(tmp_path, [rows[0]], "-testmode", "no", "--retry-rejected")
    assert script.attempts == ["ann@example.com"]
    with (tmp_path / "rejected.csv").open(encoding="utf-8-sig", newline="") as handle:
        left = [row[1] for row in csv.reader(handle)][1:]
    assert left == ["bob@example.com"]   # Ann was delivered: her line is gone; Bob's refusal still stands


def test_the_test_mode_summary_counts_held_tickets_as_the_live_run_would_leave_them(tmp_path):
    rows = [["Ann", "Lee", "ann(at)example.com", "1", "Closed", DAY], ["Bob", "Ray", "bob@example.com", "2", "Closed", DAY]]
    report, _ = story(tmp_path, rows, "-testmode", "no")
    assert report.held_waiting == 1
    rows[0][2] = "ann@example.com"   # fixed: test mode shows the week the live run will leave
    report, _ = story(tmp_path, rows, "-testmode", "yes")
    assert report.held_waiting == 0 and [c.email for c in report.would_notify] == ["ann@example.com"]


def test_a_test_send_s_subject_starts_with_test(tmp_path):
    from dataclasses import replace

    import process_ticket
    from customer_message import emails_for

    write_csv(tmp_path / "r.csv", [["Ann", "Lee", "ann@example.com", "1", "Closed", DAY]])
    write_state(tmp_path / "s.json", {"last_run_date": SINCE})
    sent = []
    script = ScriptedDestination(lambda message, attempt: Answer(DELIVERED, "ok", "200"))
    destination = replace(script.destination(), message_for=lambda run: lambda customer: sent.append(
        emails_for(run)(customer)) or customer.email)
    settings = parse_args(["--report", str(tmp_path / "r.csv"), "--state-file", str(tmp_path / "s.json"),
                           "--send-test-to", "me@example.com", "--from", "Support <s@example.com>"], ROOT, "t",
                          environment={}, destination=destination)
    process_ticket.run(settings)
    assert b"Subject: [TEST] Your support ticket has been closed" in sent[0].data
    assert read_state(tmp_path / "s.json") == {"last_run_date": SINCE}


# ---------------------------------------------------------------- Google: scopes, delegation, the API not enabled

def test_a_service_account_s_gmail_set_up_prints_its_client_id_and_the_scope(tmp_path, gmail):
    from mail_standins import write_service_account

    write_service_account(tmp_path / "credential.json", gmail)
    client_id = json.loads((tmp_path / "credential.json").read_text()).get("client_id", "")
    result = run_cli("--credentials", str(tmp_path / "credential.json"), "--token", str(tmp_path / "t.json"), "--gmail",
                     script="google_api.py", env=gmail.env(), timeout=60)
    assert result.returncode == 0, result.stderr
    assert google_api.GMAIL_SEND in result.stdout and "domain-wide delegation" in result.stdout
    assert client_id and client_id in result.stdout


def test_a_refused_service_account_token_reads_as_google_s_words_not_a_tuple():
    from google.auth.exceptions import RefreshError

    error = RefreshError("unauthorized_client: Client is unauthorized to retrieve access tokens",
                         {"error": "unauthorized_client", "error_description": "Client is unauthorized"})
    assert google_api._first_line(error) == "unauthorized_client: Client is unauthorized to retrieve access tokens"
    assert google_api._first_line(RefreshError({"error_description": "Bad grant"})) == "Bad grant"


NOT_ENABLED = ("Gmail API has not been used in project 123456789 before or it is disabled. Enable it by visiting "
               "https://console.developers.google.com/apis/api/gmail.googleapis.com/overview?project=123456789 then "
               "retry. If you enabled this API recently, wait a few minutes for the action to propagate to our systems "
               "and retry.")


def test_the_gmail_api_not_enabled_stops_at_the_first_answer_with_google_s_whole_message_once(tmp_path, gmail):
    write_user_token(tmp_path / "token.json", google_api.CONSENT_SCOPES)
    gmail.answer = lambda message, index: json_reply(403, {"error": {
        "code": 403, "message": NOT_ENABLED, "status": "PERMISSION_DENIED",
        "errors": [{"message": NOT_ENABLED, "domain": "usageLimits", "reason": "accessNotConfigured"}],
        "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "SERVICE_DISABLED"}]}})
    rows = [["C", str(n), f"c{n}@example.com", str(n), "Closed", DAY] for n in range(6)]
    result = run(tmp_path, "--send-with", "gmail", "-testmode", "no", env=gmail.env(), rows=rows)
    assert result.returncode == 2, result.stderr
    assert len([r for r in gmail.server.requests if "/messages/send" in r.path]) == 1   # nobody else tried
    link = "https://console.developers.google.com/apis/api/gmail.googleapis.com/overview?project=123456789"
    assert result.stderr.count(link) == 1 and "not enabled" in result.stderr
    assert "gmail.send" not in result.stderr and "scope" not in result.stderr
    assert read_state(tmp_path / "s.json").get("rejected", {}) == {}


def test_from_is_named_with_the_destination_in_use(tmp_path, gmail):
    write_csv(tmp_path / "r.csv", [["Ann", "Lee", "ann@example.com", "1", "Closed", DAY]])
    result = run_job("--report", str(tmp_path / "r.csv"), "--send-with", "gmail", "-testmode", "yes", env=clean_env())
    assert result.returncode == 2 and "--from is required with gmail" in result.stderr
    assert re.search(r"or set SMTP_FROM", result.stderr) is None
