"""What one customer reads, built in-process and read back as a mail client reads it: the headers,
both bodies, the payload, the 7-bit copy and the header check. Written for the survivors of a
mutation run (README, "Mutation testing")."""

import email
import email.policy
from datetime import datetime
from string import Template

import pytest

from customer_message import (
    Content,
    Sender,
    build_payload,
    check_body_template,
    check_header_block,
    message_digest,
    outgoing_mail,
    render_body,
    render_html,
)
from delivery import UnsendableError
from ticket_core import ClosedTicket, Customer

CLOSED = datetime(2026, 11, 25, 10, 30)
SENDER = Sender("Help Desk", "help@example.org", ("Support Team", "support@example.org"))
HTML = Template("<p>$greeting</p>\n$ticket_list\n<p>$ticket_lines</p>")
LINKED = Content(subject=None, html_template=HTML, cc=("boss@example.org",), ticket_url="https://desk.example/t/{ticket}")


def customer(*tickets, email_address="ann@example.com", name=("Ann", "Ann Lee"), subjects=None):
    made = tuple(ClosedTicket(email_address, ticket_id, "Closed", CLOSED, True, name[0], name[1],
                              None if subjects is None else subjects[n]) for n, ticket_id in enumerate(tickets))
    return Customer(email_address, name[1], name[0], made)


def read(data: bytes):
    return email.message_from_bytes(data, policy=email.policy.default)


def test_an_email_says_who_it_is_from_to_whom_and_about_what_and_answers_go_to_reply_to():
    ann = customer("T-1", "T 2", subjects=["Printer jam", "Two\nlines"])
    mail = outgoing_mail(ann, LINKED, SENDER)
    message = read(mail.data)
    assert (mail.sender, mail.recipient, mail.cc, mail.international) == (
        "help@example.org", "ann@example.com", ("boss@example.org",), False)
    for header in (b'From: "Help Desk" <help@example.org>', b'To: "Ann Lee" <ann@example.com>', b"Cc: boss@example.org",
                   b'Reply-To: "Support Team" <support@example.org>'):
        assert header + b"\r\n" in mail.data
    assert message["Subject"] == "Your support tickets have been closed"
    assert message["Auto-Submitted"] == "auto-generated"
    assert mail.message_id == message["Message-ID"] == f"<{message_digest(ann)}@example.org>"
    assert message["Date"].datetime.tzinfo is not None
    text, html_part = message.get_body(("plain",)), message.get_body(("html",))
    assert text.get_content_charset() == html_part.get_content_charset() == "utf-8"
    body = text.get_content().replace("\r\n", "\n")
    assert body == render_body(ann, LINKED)
    assert "  - Ticket T-1 (Printer jam), closed on 25 Nov 2026\n    https://desk.example/t/T-1\n" in body
    assert "  - Ticket T 2 (Two lines), closed on 25 Nov 2026\n    https://desk.example/t/T%202" in body
    assert html_part.get_content().replace("\r\n", "\n") == render_html(ann, HTML, LINKED) + "\n"
    assert mail.data_7bit is None and not mail.eight_bit


def test_an_html_body_lists_each_ticket_linked_and_escaped():
    ann = customer('"><script>', "T2", subjects=['<b>"hi"</b>', ""], name=("A&B", "A&B Co"))
    assert render_html(ann, HTML, LINKED) == (
        "<p>Hello A&amp;B,</p>\n<ul>\n"
        '  <li><a href="https://desk.example/t/%22%3E%3Cscript%3E">Ticket &quot;&gt;&lt;script&gt;</a> '
        "(&lt;b&gt;&quot;hi&quot;&lt;/b&gt;), closed on 25 Nov 2026</li>\n"
        '  <li><a href="https://desk.example/t/T2">Ticket T2</a>, closed on 25 Nov 2026</li>\n</ul>\n'
        "<p>  - Ticket &quot;&gt;&lt;script&gt; (&lt;b&gt;&quot;hi&quot;&lt;/b&gt;), closed on 25 Nov 2026<br>\n"
        "    https://desk.example/t/%22%3E%3Cscript%3E<br>\n  - Ticket T2, closed on 25 Nov 2026<br>\n"
        "    https://desk.example/t/T2</p>")
    assert render_html(customer("T1"), Template("$ticket_list")) == (
        "<ul>\n  <li>Ticket T1, closed on 25 Nov 2026</li>\n</ul>")


def test_the_default_body_speaks_of_one_ticket_or_of_several():
    one, two = render_body(customer("T1")), render_body(customer("T1", "T2"))
    assert one.startswith("Hello Ann,\n\nGood news: your support ticket has been closed.\n\n  - Ticket T1, closed on")
    assert "Good news: these 2 support tickets of yours have been closed.\n\n  - Ticket T1, closed on 25 Nov 2026\n" \
           "  - Ticket T2, closed on 25 Nov 2026\n\nIf something" in two
    template = Template("$greeting $ticket_phrase ($ticket_count): $full_name/$first_name")
    assert render_body(customer("T1"), Content(body_template=template)) == "Hello Ann, 1 support ticket (1): Ann Lee/Ann"
    assert render_body(customer("T1", "T2"), Content(body_template=template)).startswith("Hello Ann, 2 support tickets")
    assert render_body(customer("T1", name=("", "")), Content(body_template=Template("$greeting"))) == "Hello,"


def test_a_body_template_with_an_unknown_placeholder_or_a_lone_dollar_is_refused_naming_the_fix():
    check_body_template(Template("$greeting $ticket_lines"))
    with pytest.raises(ValueError) as unknown:
        check_body_template(Template("$greeting $name"))
    assert str(unknown.value) == ("unknown placeholder $name; use $greeting, $first_name, $full_name, $ticket_count, "
                                  "$ticket_phrase, $ticket_lines")
    with pytest.raises(ValueError, match=r"^Invalid placeholder in string: line 1, col 6 \(write \$\$ for a literal \$\)$"):
        check_body_template(Template("cost $5"))


def test_a_payload_carries_subjects_and_links_only_when_the_report_and_settings_have_them():
    payload = build_payload(customer("T1", subjects=["Printer jam"]), LINKED)
    assert payload["tickets"] == [{"ticket": "T1", "status": "Closed", "closed_date": "2026-11-25T10:30:00",
                                   "subject": "Printer jam", "url": "https://desk.example/t/T1"}]
    assert payload["email"]["html_body"] == render_html(customer("T1", subjects=["Printer jam"]), HTML, LINKED)
    assert payload["email"]["subject"] == "Your support ticket has been closed"
    plain = build_payload(customer("T1"))
    assert plain["tickets"] == [{"ticket": "T1", "status": "Closed", "closed_date": "2026-11-25T10:30:00"}]
    assert "html_body" not in plain["email"]


def test_a_utf8_body_goes_8bit_with_a_quoted_printable_copy_and_an_ascii_one_7bit():
    zoe = customer("T1", name=("Zoë", "Zoë Ünal"))
    mail = outgoing_mail(zoe, Content(html_template=HTML), SENDER)
    assert mail.eight_bit and not mail.international
    parts = list(read(mail.data).walk())
    assert [part["Content-Transfer-Encoding"] for part in parts[1:]] == ["8bit", "8bit"]
    copy = read(mail.data_7bit)
    assert mail.data_7bit.isascii()
    assert [part["Content-Transfer-Encoding"] for part in list(copy.walk())[1:]] == ["quoted-printable"] * 2
    assert copy.get_body(("plain",)).get_content() == read(mail.data).get_body(("plain",)).get_content()
    plain = outgoing_mail(customer("T1"), Content(body_template=Template("$greeting")), SENDER)
    assert read(plain.data)["Content-Transfer-Encoding"] == "7bit" and plain.data_7bit is None


def test_an_international_address_needs_smtputf8_and_keeps_its_utf8_headers():
    mail = outgoing_mail(customer("T1", email_address="zoë@exämple.de"), Content(), SENDER)
    assert mail.international and mail.data_7bit is None and "zoë@exämple.de".encode() in mail.data


def test_a_webhook_preview_has_no_sender_and_no_message_id():
    mail = outgoing_mail(customer("T1"), Content(), None)
    message = read(mail.data)
    assert mail.sender == "" and mail.message_id == "" and message["From"] is None and message["Message-ID"] is None


@pytest.mark.parametrize("head, reason", [
    (b"To: a@b.c\r\nSubject: s\r\nDate: d\r\nAuto-Submitted: a\r\nBcc: x@y.z", "its header block failed the check (bcc)"),
    (b"To: a@b.c\r\nSubject: s\r\nDate: d", "its header block failed the check (auto-submitted)"),
    (b"To: a@b.c\r\nTo: x@y.z\r\nSubject: s\r\nDate: d\r\nAuto-Submitted: a", "its header block failed the check (to)"),
    (b"To: a@b.c\nBcc: x\r\nSubject: s\r\nDate: d\r\nAuto-Submitted: a", "its header block holds a stray line break"),
    (b"To: a@b.c\rBcc: x\r\nSubject: s\r\nDate: d\r\nAuto-Submitted: a", "its header block holds a stray line break"),
    (b"To: a@b.c\r\nnot a header\r\nSubject: s\r\nDate: d\r\nAuto-Submitted: a",
     "its header block holds a line that is not a header"),
    (b"To: " + b"a" * 995 + b"\r\nSubject: s\r\nDate: d\r\nAuto-Submitted: a", "a header line is longer than 998 octets"),
])
def test_the_header_check_refuses_what_a_report_could_have_added(head, reason):
    with pytest.raises(UnsendableError, match=f"^{reason}$".replace("(", r"\(").replace(")", r"\)")):
        check_header_block(head + b"\r\n\r\nbody\r\n", with_sender=False)


def test_the_header_check_wants_from_and_message_id_only_with_a_sender_and_passes_folded_lines():
    head = b"To: a@b.c,\r\n x@y.z\r\nSubject: s\r\nDate: d\r\nAuto-Submitted: a\r\n\r\nbody\r\n"
    check_header_block(head, with_sender=False)
    check_header_block(b"To: " + b"a" * 994 + b"\r\nSubject: s\r\nDate: d\r\nAuto-Submitted: a\r\n\r\n", False)
    with pytest.raises(UnsendableError, match=r"\(from, message-id\)$"):
        check_header_block(head, with_sender=True)
