"""Contract section 24: a customer whose email bounced was not told. Reports a real Postfix wrote,
read from a real Dovecot over IMAPS; Gmail's and Exchange Online's formats through their stand-ins;
the rules of what a report changes, with literal data."""

import csv
from datetime import date, timedelta
from email.message import EmailMessage

import mail_servers
import pytest
from conftest import clean_env, customer, free_port, read_state, run_job, write_csv, write_state

from bounce_reports import FAILED, bounce_effects, read_report
from ticket_core import Customer, RunState, customer_key, name_key, sent_entry

TODAY = date.today()
DAY = (TODAY - timedelta(days=3)).strftime("%d/%m/%Y")
SINCE = (TODAY - timedelta(days=10)).strftime("%d/%m/%Y")


# ---------------------------------------------------------------- reports as providers write them

def report(recipient: str, status: str, diagnostic: str, message_id: str, action: str = "failed",
           returned: str = "headers", subject: str = "Delivery Status Notification (Failure)",
           sender: str = "Mail Delivery Subsystem <mailer-daemon@googlemail.com>") -> bytes:
    """A delivery status notification (RFC 3464) laid out as Gmail's mailer-daemon and Exchange Online
    write theirs: a human part, message/delivery-status, then the original's headers or the whole of it."""
    if returned == "headers":
        original = ("Content-Type: text/rfc822-headers\r\n\r\n"
                    f"From: Support <support@example.com>\r\nTo: {recipient}\r\n"
                    f"Subject: Your support ticket has been closed\r\nMessage-ID: <{message_id}@example.com>\r\n")
    else:
        original = ("Content-Type: message/rfc822\r\n\r\n"
                    f"From: Support <support@example.com>\r\nTo: {recipient}\r\n"
                    f"Subject: Your support ticket has been closed\r\nMessage-ID: <{message_id}@example.com>\r\n"
                    "Content-Type: text/plain; charset=utf-8\r\n\r\nHello,\r\n")
    text = (f"From: {sender}\r\nTo: support@example.com\r\nSubject: {subject}\r\n"
            "MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"b1\"\r\n\r\n"
            "--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
            f"Address not found: your message wasn't delivered to {recipient}.\r\n\r\n"
            "--b1\r\nContent-Type: message/delivery-status\r\n\r\n"
            "Reporting-MTA: dns; mx.example.net\r\nArrival-Date: Mon, 7 Dec 2026 10:00:00 +0000\r\n\r\n"
            f"Final-Recipient: rfc822; {recipient}\r\nAction: {action}\r\nStatus: {status}\r\n"
            f"Diagnostic-Code: smtp; {diagnostic}\r\n\r\n"
            f"--b1\r\n{original}\r\n--b1--\r\n")
    return text.encode()


def test_gmail_s_and_exchange_s_reports_are_read_by_the_message_id_they_return():
    gmail = report("jane@example.org", "5.1.1", "550-5.1.1 The email account that you tried to reach does not exist.",
                   "0123abcd", returned="message")
    exchange = report("bob@contoso.com", "5.1.10", "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found",
                      "4567ef01", subject="Undeliverable: Your support ticket has been closed",
                      sender="Microsoft Outlook <MicrosoftExchange329e71ec88ae4615bbc36ab6ce41109e@contoso.com>")
    read = read_report(gmail)
    assert read.message_ids == ("0123abcd",) and read.recipients[0].recipient == "jane@example.org"
    assert read.recipients[0].action == FAILED and read.recipients[0].status == "5.1.1"
    assert "does not exist" in read.recipients[0].reason and read.recipients[0].reason.startswith("bounced: 5.1.1")
    assert read_report(exchange).recipients[0].status == "5.1.10"
    limit = read_report(report("bob@contoso.com", "5.7.233", "550 5.7.233 tenant external recipient limit", "99"))
    assert limit.recipients[0].about_the_sender


def test_a_message_that_is_not_a_delivery_report_is_no_report():
    reply = EmailMessage()
    reply["Subject"], reply["In-Reply-To"] = "Re: closed", "<0123abcd@example.com>"
    reply.set_content("Thanks!")
    assert read_report(reply.as_bytes()) is None


# ---------------------------------------------------------------- what a report changes

def sent_state(*customers: Customer) -> RunState:
    from customer_message import message_digest

    state = RunState(TODAY - timedelta(days=5))
    for one in customers:
        state.notified[one.key] = {t.ticket_id: t.closed_date for t in one.tickets}
        state.last_emailed[one.key] = TODAY.isoformat()
        state.sent[message_digest(one)] = sent_entry(one, TODAY)
    return state


def test_a_permanent_failure_rejects_and_holds_for_a_corrected_address_and_reading_it_twice_changes_nothing():
    from customer_message import message_digest

    jane = customer("jane@example.org", "T1", "T2", name="Jane Doe", closed=date(2026, 12, 1))
    state = sent_state(jane)
    bounce = read_report(report("jane@example.org", "5.1.1", "user unknown", message_digest(jane)))
    after, outcome = bounce_effects(state, [bounce], TODAY)
    assert outcome.bounced == [("jane@example.org", ["T1", "T2"], "bounced: 5.1.1 user unknown")]
    assert after.rejected[jane.key]["tickets"] == {"T1": "2026-12-01", "T2": "2026-12-01"}
    assert {entry["ticket"] for entry in after.held.values()} == {"T1", "T2"}
    assert all(entry["name"] == name_key("Jane Doe") and entry["customer"] == "" for entry in after.held.values())
    again, twice = bounce_effects(after, [bounce], TODAY)
    assert twice.bounced == [] and again == after


def test_a_failure_about_the_sender_s_limits_makes_the_customer_pending_again():
    from customer_message import message_digest

    jane = customer("jane@example.org", "T1", name="Jane Doe", closed=date(2026, 12, 1))
    state = sent_state(jane)
    limit = read_report(report("jane@example.org", "5.7.233", "550 5.7.233 external recipient limit reached",
                               message_digest(jane)))
    after, outcome = bounce_effects(state, [limit], TODAY)
    assert outcome.bounced == [] and len(outcome.returned) == 1 and after.rejected == {}
    assert jane.key not in after.notified and jane.key not in after.last_emailed
    assert [entry["customer"] for entry in after.held.values()] == [jane.key]


def test_a_delay_a_copy_s_failure_and_another_job_s_report_change_nothing():
    from customer_message import message_digest

    jane = customer("jane@example.org", "T1", name="Jane Doe", closed=date(2026, 12, 1))
    state = sent_state(jane)
    delayed = read_report(report("jane@example.org", "4.4.1", "connection timed out", message_digest(jane),
                                 action="delayed"))
    copy = read_report(report("audit@example.com", "5.1.1", "user unknown", message_digest(jane)))
    stranger = read_report(report("jane@example.org", "5.1.1", "user unknown", "not-ours"))
    after, outcome = bounce_effects(state, [delayed, copy, stranger], TODAY)
    assert after == state and outcome.bounced == [] and outcome.delayed == [("jane@example.org", "4.4.1")]


def test_a_report_about_an_older_email_never_rejects_a_newer_one_to_a_corrected_address():
    from customer_message import message_digest

    old = customer("jane@example.org", "T1", name="Jane Doe", closed=date(2026, 12, 1))
    new = customer("jane.doe@example.org", "T1", name="Jane Doe", closed=date(2026, 12, 1))
    state = sent_state(old, new)
    bounce = read_report(report("jane@example.org", "5.1.1", "user unknown", message_digest(old)))
    after, _ = bounce_effects(state, [bounce], TODAY)
    assert list(after.rejected) == [customer_key("jane@example.org")] and message_digest(new) in after.sent


# ---------------------------------------------------------------- a real Postfix writes, a real Dovecot serves

@pytest.fixture
def servers(certificates):
    reason = mail_servers.available()
    if reason:
        pytest.skip(reason)
    running = mail_servers.start(certificates, free_port)
    yield running
    running.stop()


def test_a_bounce_postfix_writes_is_read_back_over_imaps_and_the_customer_is_not_told(tmp_path, servers, certificates):
    rows = [["Ghost", "Writer", "ghost@unknown.test", "500", "Closed", DAY],
            ["Ann", "Lee", "ann@test.local", "501", "Closed", DAY]]
    report_path = write_csv(tmp_path / "r.csv", rows)
    state = tmp_path / "s.json"
    write_state(state, {"last_run_date": SINCE})
    env = clean_env(IMAP_URL=f"imaps://support%40test.local@localhost:{servers.imap_port}/INBOX",
                    IMAP_PASSWORD=mail_servers.IMAP_PASSWORD, SSL_CERT_FILE=str(certificates[0]))

    def live(*extra):
        return run_job("--report", str(report_path), "--state-file", str(state), "--smtp-url",
                       f"smtp://127.0.0.1:{servers.smtp_port}", "--from", "Support <support@test.local>", "-testmode",
                       "no", "--min-days-between-emails", "0", *extra, env=env)

    check = live("--check")
    assert check.returncode == 0 and "bounces: localhost" in check.stdout and "nothing read" in check.stdout, check.stdout
    first = live()
    assert first.returncode == 0, first.stderr
    assert len(servers.wait_for("ann", 1)) == 1
    bounces = servers.wait_for("support", 1)
    assert len(bounces) == 1 and b"multipart/report" in bounces[0].read_bytes()   # Postfix's own report
    second = live()
    assert second.returncode == 1, second.stderr
    assert "Bounced since the last run  1 (ghost@unknown.test" in second.stdout
    assert "bounced ghost@unknown.test (500): bounced: 5.1.1" in second.stderr
    with (tmp_path / "rejected.csv").open(encoding="utf-8-sig", newline="") as handle:
        lines = list(csv.reader(handle))[1:]
    assert [(line[1], line[3]) for line in lines] == [("ghost@unknown.test", "500")] and "5.1.1" in lines[0][4]
    saved = read_state(state)
    assert customer_key("ghost@unknown.test") in saved["rejected"] and saved["bounces"]["smtp"]["uid"] >= 1
    third = live()
    assert third.returncode == 0 and "Bounced" not in third.stdout   # read once: the second read changes nothing
    rows[0][2] = "ann.new@test.local"   # the help desk fixes the address: sent once to it, under the same name
    write_csv(report_path, rows)
    fixed = live()
    assert fixed.returncode == 0, fixed.stderr
    assert len(servers.wait_for("ann.new", 1)) == 1
    flags = [path.name.partition(":2,")[2] for path in servers.messages("support")]
    assert flags and all("S" not in flag for flag in flags)   # only read: nothing marked seen, moved or deleted
    again = live()
    assert again.returncode == 0 and len(servers.wait_for("ann.new", 2, seconds=3)) == 1


def test_a_bounce_mailbox_login_refused_stops_before_the_first_customer(tmp_path, servers, certificates):
    report_path = write_csv(tmp_path / "r.csv", [["Ann", "Lee", "ann@test.local", "501", "Closed", DAY]])
    state = write_state(tmp_path / "s.json", {"last_run_date": SINCE})
    env = clean_env(IMAP_URL=f"imaps://support%40test.local@localhost:{servers.imap_port}/INBOX",
                    IMAP_PASSWORD="wrong", SSL_CERT_FILE=str(certificates[0]))
    result = run_job("--report", str(report_path), "--state-file", str(state), "--smtp-url",
                     f"smtp://127.0.0.1:{servers.smtp_port}", "--from", "support@test.local", "-testmode", "no",
                     env=env)
    assert result.returncode == 2 and "IMAP_PASSWORD" in result.stderr and "wrong" not in result.stderr
    assert servers.messages("ann") == [] and read_state(state) == {"last_run_date": SINCE}


# ---------------------------------------------------------------- the mail APIs' mailboxes

def message_key(message) -> str:
    return str(message["Message-ID"]).strip("<>").split("@")[0]


def test_gmail_reads_its_mailer_daemon_s_reports_with_gmail_readonly(tmp_path, gmail):
    import time as clock

    from mail_standins import ROWS, run, write_user_token

    import google_api

    write_user_token(tmp_path / "token.json", [*google_api.CONSENT_SCOPES, google_api.GMAIL_READONLY])
    env = gmail.env(READ_BOUNCES="yes")
    first = run(tmp_path, "--send-with", "gmail", "-testmode", "no", env=env)
    assert first.returncode == 0 and len(gmail.sent) == 3, first.stderr
    john = next(message for message in gmail.sent if "john@" in str(message["To"]))
    now_ms = int(clock.time() * 1000) + 1000
    gmail.inbox = [("n1", now_ms, b"From: a@b.c\r\nSubject: hello\r\n\r\nnot a report\r\n"),
                   ("r1", now_ms + 1, report("john@example.com", "5.1.1", "550-5.1.1 The email account that you tried "
                                             "to reach does not exist.", message_key(john), returned="message")),
                   ("n2", now_ms + 2, b"From: c@d.e\r\nSubject: hi\r\n\r\nstill not\r\n")]
    second = run(tmp_path, "--send-with", "gmail", "-testmode", "no", env=env)
    assert second.returncode == 1, second.stderr
    assert "Bounced since the last run  1 (john@example.com" in second.stdout
    saved = read_state(tmp_path / "s.json")
    assert customer_key("john@example.com") in saved["rejected"] and saved["bounces"]["gmail"]["after_ms"] == now_ms + 2
    third = run(tmp_path, "--send-with", "gmail", "-testmode", "no", env=env)
    assert third.returncode == 0 and "Bounced" not in third.stdout
    assert [row for row in ROWS if row[2] == "john@example.com"]


def test_gmail_without_gmail_readonly_stops_before_the_first_customer_naming_it(tmp_path, gmail):
    from mail_standins import run, write_user_token

    import google_api

    write_user_token(tmp_path / "token.json", google_api.CONSENT_SCOPES)
    result = run(tmp_path, "--send-with", "gmail", "-testmode", "no", "--read-bounces", env=gmail.env())
    assert result.returncode == 2 and "gmail.readonly" in result.stderr and gmail.sent == []


def test_microsoft365_reads_exchange_s_reports_page_by_page_and_a_tenant_limit_sends_again(tmp_path, microsoft):
    from mail_standins import run

    env = microsoft.env(READ_BOUNCES="yes")
    first = run(tmp_path, "-testmode", "no", env=env)
    assert first.returncode == 0 and len(microsoft.sent) == 3, first.stderr
    by_address = {str(message["To"].addresses[0].addr_spec): message for message in microsoft.sent}
    noise = [(f"n{n}", f"2099-01-01T00:00:{n:02d}Z", b"Subject: newsletter\r\n\r\nhello\r\n") for n in range(11)]
    microsoft.inbox = noise + [
        ("r1", "2099-01-01T00:01:00Z", report("john@example.com", "5.1.10", "550 5.1.10 RESOLVER.ADR.RecipientNotFound; "
                                              "Recipient not found by SMTP address lookup", message_key(by_address[
                                                  "john@example.com"]), subject="Undeliverable: closed")),
        ("r2", "2099-01-01T00:02:00Z", report("ann@example.com", "5.7.233", "550 5.7.233 Your message can't be sent "
                                              "because your organization has exceeded its external recipient limit",
                                              message_key(by_address["ann@example.com"]), subject="Undeliverable: x"))]
    second = run(tmp_path, "-testmode", "no", "--min-days-between-emails", "0", env=env)
    assert second.returncode == 1, second.stderr
    assert microsoft.pages >= 2   # thirteen messages, ten a page
    assert "Bounced since the last run  1 (john@example.com" in second.stdout
    resent = [m for m in microsoft.sent if "ann@" in str(m["To"])]
    assert len(resent) == 2   # returned for the tenant's limit: sent once more, by this run
    saved = read_state(tmp_path / "s.json")
    assert customer_key("john@example.com") in saved["rejected"] and customer_key("ann@example.com") not in saved["rejected"]


def test_microsoft365_without_mail_read_is_found_by_check_and_before_the_first_customer(tmp_path, microsoft):
    from mail_standins import run

    microsoft.can_read = False
    check = run(tmp_path, "--check", env=microsoft.env(READ_BOUNCES="yes"))
    assert check.returncode == 2 and "Mail.Read" in check.stdout
    result = run(tmp_path, "-testmode", "no", env=microsoft.env(READ_BOUNCES="yes"))
    assert result.returncode == 2 and "Mail.Read" in result.stderr and microsoft.sent == []
