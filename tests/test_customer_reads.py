"""What the customer reads, round 2 (contract section 19): what each ticket was about, a link to it, a
greeting that always reads right, and a test send to oneself."""

import email
import email.policy
from datetime import date, timedelta

import pytest
from conftest import ROOT, Reply, read_state, run_job, write_csv, write_state

TODAY = date.today()
DAY = [(TODAY - timedelta(days=d)).strftime("%d/%m/%Y") for d in range(12)]
SINCE = DAY[10]
TEMPLATES = ("--body-template", str(ROOT / "examples" / "body.txt"), "--html-template", str(ROOT / "examples" / "body.html"))

# Three layouts of the same report: first and last name columns, one name column, an address shared by names.
LAYOUTS = {
    "first and last name": (["Firstname", "Lastname", "Email", "Ticket", "Subject", "Status", "Date"],
                            [["Jane", "Doe", "jane@example.com", "T1", "Printer jams", "Closed", DAY[3]]]),
    "one name column": (["Requester", "Requester email", "Ticket ID", "Title", "Status", "Resolved"],
                        [["Jane Doe", "jane@example.com", "T1", "Printer jams", "Closed", DAY[3]]]),
    "a shared address": (["Name", "Email", "Ticket", "Summary", "Status", "Date"],
                         [["Jane Doe", "jane@example.com", "T1", "Printer jams", "Closed", DAY[3]],
                          ["Joe Bloggs", "jane@example.com", "T2", "Scanner <offline> & slow", "Closed", DAY[3]]]),
}


def previews(tmp_path, layout, *extra):
    header, rows = LAYOUTS[layout]
    report = write_csv(tmp_path / "r.csv", rows, header=header)
    result = run_job("--report", str(report), "--since", SINCE, "-testmode", "yes", "--from", "Support <s@example.com>",
                     "--preview-dir", str(tmp_path / "p"), *extra)
    assert result.returncode == 0, result.stderr
    [path] = list((tmp_path / "p").glob("*.eml"))
    return email.message_from_bytes(path.read_bytes(), policy=email.policy.default)


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("templates", [(), TEMPLATES], ids=["default body", "bundled templates"])
def test_the_greeting_never_reads_hello_comma_and_each_ticket_says_what_it_was_about(tmp_path, layout, templates):
    message = previews(tmp_path, layout, "--ticket-url", "https://help.example.com/t/{ticket}?src=mail", *templates)
    text = message.get_body(("plain",)).get_content()
    assert "Hello ," not in text and "Hello  " not in text
    greeting = text.splitlines()[0]
    assert greeting == ("Hello," if layout == "a shared address" else "Hello Jane," if layout == "first and last name"
                        else "Hello Jane Doe,")
    assert "Ticket T1 (Printer jams), closed on" in text and "https://help.example.com/t/T1?src=mail" in text
    assert "ticket(s)" not in text
    if templates:
        html = message.get_body(("html",)).get_content()
        assert '<a href="https://help.example.com/t/T1?src=mail">Ticket T1</a> (Printer jams)' in html
        if layout == "a shared address":
            assert "Scanner &lt;offline&gt; &amp; slow" in html and "<offline>" not in html
            assert "We have closed 2 support tickets" in text
        else:
            assert "We have closed 1 support ticket you raised" in text


def test_the_payload_carries_each_tickets_subject_and_url_and_no_other_customers(tmp_path, webhook):
    header = ["Requester", "Requester email", "Ticket ID", "Subject", "Status", "Resolved"]
    rows = [["Jane Doe", "jane@example.com", "A/1 b", "Printer jams", "Closed", DAY[3]],
            ["Bob Roe", "bob@example.com", "B2", "Bob's secret project", "Closed", DAY[3]]]
    report = write_csv(tmp_path / "r.csv", rows, header=header)
    state = write_state(tmp_path / "s.json", {"last_run_date": SINCE})
    result = run_job("--report", str(report), "--state-file", str(state), "-webhook_url", webhook.url, "-testmode", "no",
                     "--ticket-url", "https://help.example.com/tickets/{ticket}")
    assert result.returncode == 0, result.stderr
    jane = next(payload for payload in webhook.payloads() if payload["email_address"] == "jane@example.com")
    assert jane["tickets"] == [{"ticket": "A/1 b", "status": "Closed", "closed_date": jane["tickets"][0]["closed_date"],
                                "subject": "Printer jams", "url": "https://help.example.com/tickets/A%2F1%20b"}]
    assert "Bob" not in str(jane) and "https://help.example.com/tickets/A%2F1%20b" in jane["email"]["body"]


def test_without_a_subject_column_the_payload_is_as_before(tmp_path, webhook):
    report = write_csv(tmp_path / "r.csv", [["Jane", "Doe", "jane@example.com", "1", "Closed", DAY[3]]])
    state = write_state(tmp_path / "s.json", {"last_run_date": SINCE})
    result = run_job("--report", str(report), "--state-file", str(state), "-webhook_url", webhook.url, "-testmode", "no")
    assert result.returncode == 0
    assert set(webhook.payloads()[0]["tickets"][0]) == {"ticket", "status", "closed_date"}


@pytest.mark.parametrize("template, message", [("https://help.example.com/tickets/", "needs {ticket}"),
                                               ("ftp://help.example.com/{ticket}", "must start with"),
                                               ("https://help.example.com:99999/{ticket}", "cannot be parsed")])
def test_a_ticket_url_that_cannot_work_is_refused_at_start(tmp_path, template, message):
    report = write_csv(tmp_path / "r.csv", [["Jane", "Doe", "jane@example.com", "1", "Closed", DAY[3]]])
    result = run_job("--report", str(report), "--since", SINCE, "-testmode", "yes", "--ticket-url", template)
    assert result.returncode == 2 and message in result.stderr


def test_a_test_send_mails_the_first_customers_email_to_the_operator_and_records_nothing(tmp_path, webhook):
    monitor_requests = []
    rows = [["Jane", "Doe", "jane@example.com", "1", "Closed", DAY[4]], ["Bob", "Roe", "bob@example.com", "2", "Closed", DAY[3]]]
    report = write_csv(tmp_path / "r.csv", rows)
    state = tmp_path / "s.json"
    result = run_job("--report", str(report), "--state-file", str(state), "-webhook_url", webhook.url, "-testmode", "no",
                     "--send-test-to", "me@example.org", "--cc", "audit@example.com", "--ping-url", webhook.root + "ping")
    assert result.returncode == 0, result.stderr
    [payload] = [request.json for request in webhook.requests if request.path.startswith("/hooks")]
    assert payload["email"]["to_address"] == ["me@example.org"] and payload["email"]["cc_address"] == []
    assert "Hello Jane," in payload["email"]["body"] and "Ticket 1," in payload["email"]["body"]
    assert not state.exists() and not (tmp_path / "rejected.csv").exists()
    assert not [request for request in webhook.requests if request.path.startswith("/ping")] and not monitor_requests
    assert "Test email" in result.stdout and "sent to me@example.org" in result.stdout


def test_a_test_send_over_smtp_goes_to_the_operator_alone(tmp_path, smtp_server, certificates):
    from mail_standins import PASSWORD, SMTP_FROM, USER

    recorder, port = smtp_server("starttls")
    report = write_csv(tmp_path / "r.csv", [["Jane", "Doe", "jane@example.com", "1", "Closed", DAY[3]]])
    state = write_state(tmp_path / "s.json", {"last_run_date": SINCE})
    from conftest import clean_env
    env = clean_env(SSL_CERT_FILE=str(certificates[0]), SMTP_USERNAME=USER, SMTP_PASSWORD=PASSWORD)
    result = run_job("--report", str(report), "--state-file", str(state), "--smtp-url", f"smtp://localhost:{port}",
                     "--from", SMTP_FROM, "-testmode", "no", "--send-test-to", "me@example.org", "--cc", "audit@example.com",
                     env=env)
    assert result.returncode == 0, result.stderr
    [sent] = recorder.messages
    assert sent["to"] == ["me@example.org"] and "Hello Jane," in sent["message"].get_body(("plain",)).get_content()
    assert read_state(state) == {"last_run_date": SINCE}


def test_a_test_send_that_is_refused_says_so_and_records_nothing(tmp_path, webhook):
    webhook.respond = lambda received, index: Reply(422, body=b"no such mailbox")
    report = write_csv(tmp_path / "r.csv", [["Jane", "Doe", "jane@example.com", "1", "Closed", DAY[3]]])
    result = run_job("--report", str(report), "--state-file", str(tmp_path / "s.json"), "-webhook_url", webhook.url,
                     "-testmode", "no", "--send-test-to", "me@example.org", "--retries", "0")
    assert result.returncode == 2 and "the test email to me@example.org" in result.stderr
    assert not (tmp_path / "s.json").exists() and not (tmp_path / "rejected.csv").exists()


def test_send_test_to_needs_an_address_and_a_live_run(tmp_path):
    report = write_csv(tmp_path / "r.csv", [["Jane", "Doe", "jane@example.com", "1", "Closed", DAY[3]]])
    result = run_job("--report", str(report), "-testmode", "yes", "--send-test-to", "me@example.org")
    assert result.returncode == 2 and "without -testmode yes" in result.stderr
    result = run_job("--report", str(report), "-testmode", "no", "-webhook_url", "http://127.0.0.1:9/h",
                     "--send-test-to", "not an address")
    assert result.returncode == 2 and "one email address" in result.stderr
