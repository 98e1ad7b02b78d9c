"""What one customer reads, built in-process and read back as a mail client reads it: the headers,
both bodies, the payload, the 7-bit copy and the header check. Written for the survivors of a
mutation run (README, "Mutation testing")."""

import email
import email.policy
from datetime import datetime
from string import Template

import pytest
from conftest import customer

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

CLOSED = datetime(2026, 11, 25, 10, 30)
ANN = "ann@example.com"
SENDER = Sender("Help Desk", "help@example.org", ("Support Team", "support@example.org"))
HTML = Template("<p>$greeting</p>\n$ticket_list\n<p>$ticket_lines</p>")
LINKED = Content(subject=None, html_template=HTML, cc=("boss@example.org",), ticket_url="https://desk.example/t/{ticket}")


def read(data: bytes):
    return email.message_from_bytes(data, policy=email.policy.default)


def test_an_email_says_who_it_is_from_to_whom_and_about_what_and_answers_go_to_reply_to():
    ann = customer(ANN, "T-1", "T 2", subjects=["Printer jam", "Two\nlines"])
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
    ann = customer(ANN, '"><script>', "T2", name="A&B Co", first_name="A&B", subjects=['<b>"hi"</b>', ""])
    assert render_html(ann, HTML, LINKED) == (
        "<p>Hello A&amp;B,</p>\n<ul>\n"
        '  <li><a href="https://desk.example/t/%22%3E%3Cscript%3E">Ticket &quot;&gt;&lt;script&gt;</a> '
        "(&lt;b&gt;&quot;hi&quot;&lt;/b&gt;), closed on 25 Nov 2026</li>\n"
        '  <li><a href="https://desk.example/t/T2">Ticket T2</a>, closed on 25 Nov 2026</li>\n</ul>\n'
        "<p>  - Ticket &quot;&gt;&lt;script&gt; (&lt;b&gt;&quot;hi&quot;&lt;/b&gt;), closed on 25 Nov 2026<br>\n"
        "    https://desk.example/t/%22%3E%3Cscript%3E<br>\n  - Ticket T2, closed on 25 Nov 2026<br>\n"
        "    https://desk.example/t/T2</p>")
    assert render_html(customer(ANN, "T1"), Template("$ticket_list")) == (
        "<ul>\n  <li>Ticket T1, closed on 25 Nov 2026</li>\n</ul>")


def test_the_default_body_speaks_of_one_ticket_or_of_several():
    one, two = render_body(customer(ANN, "T1")), render_body(customer(ANN, "T1", "T2"))
    assert one.startswith("Hello Ann,\n\nGood news: your support ticket has been closed.\n\n  - Ticket T1, closed on")
    assert "Good news: these 2 support tickets of yours have been closed.\n\n  - Ticket T1, closed on 25 Nov 2026\n" \
           "  - Ticket T2, closed on 25 Nov 2026\n\nIf something" in two
    template = Template("$greeting $ticket_phrase ($ticket_count): $full_name/$first_name")
    assert render_body(customer(ANN, "T1"), Content(body_template=template)) == "Hello Ann, 1 support ticket (1): Ann Lee/Ann"
    assert render_body(customer(ANN, "T1", "T2"), Content(body_template=template)).startswith("Hello Ann, 2 support tickets")
    assert render_body(customer(ANN, "T1", name="", first_name=""), Content(body_template=Template("$greeting"))) == "Hello,"


def test_a_body_template_with_an_unknown_placeholder_or_a_lone_dollar_is_refused_naming_the_fix():
    check_body_template(Template("$greeting $ticket_lines"))
    with pytest.raises(ValueError) as unknown:
        check_body_template(Template("$greeting $name"))
    assert str(unknown.value) == ("unknown placeholder $name; use $greeting, $first_name, $full_name, $ticket_count, "
                                  "$ticket_phrase, $ticket_lines")
    with pytest.raises(ValueError, match=r"^Invalid placeholder in string: line 1, col 6 \(write \$\$ for a literal \$\)$"):
        check_body_template(Template("cost $5"))


def test_a_payload_carries_subjects_and_links_only_when_the_report_and_settings_have_them():
    payload = build_payload(customer(ANN, "T1", subjects=["Printer jam"], closed=CLOSED), LINKED)
    assert payload["tickets"] == [{"ticket": "T1", "status": "Closed", "closed_date": "2026-11-25T10:30:00",
                                   "subject": "Printer jam", "url": "https://desk.example/t/T1"}]
    assert payload["email"]["html_body"] == render_html(customer(ANN, "T1", subjects=["Printer jam"]), HTML, LINKED)
    assert payload["email"]["subject"] == "Your support ticket has been closed"
    plain = build_payload(customer(ANN, "T1", closed=CLOSED))
    assert plain["tickets"] == [{"ticket": "T1", "status": "Closed", "closed_date": "2026-11-25T10:30:00"}]
    assert "html_body" not in plain["email"]


def test_a_utf8_body_goes_8bit_with_a_quoted_printable_copy_and_an_ascii_one_7bit():
    zoe = customer(ANN, "T1", name="Zoë Ünal", first_name="Zoë")
    mail = outgoing_mail(zoe, Content(html_template=HTML), SENDER)
    assert mail.eight_bit and not mail.international
    parts = list(read(mail.data).walk())
    assert [part["Content-Transfer-Encoding"] for part in parts[1:]] == ["8bit", "8bit"]
    copy = read(mail.data_7bit)
    assert mail.data_7bit.isascii()
    assert [part["Content-Transfer-Encoding"] for part in list(copy.walk())[1:]] == ["quoted-printable"] * 2
    assert copy.get_body(("plain",)).get_content() == read(mail.data).get_body(("plain",)).get_content()
    plain = outgoing_mail(customer(ANN, "T1"), Content(body_template=Template("$greeting")), SENDER)
    assert read(plain.data)["Content-Transfer-Encoding"] == "7bit" and plain.data_7bit is None


def test_an_international_address_needs_smtputf8_and_keeps_its_utf8_headers():
    mail = outgoing_mail(customer("zoë@exämple.de", "T1"), Content(), SENDER)
    assert mail.international and mail.data_7bit is None and "zoë@exämple.de".encode() in mail.data


def test_a_webhook_preview_has_no_sender_and_no_message_id():
    mail = outgoing_mail(customer(ANN, "T1"), Content(), None)
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


# ---------------------------------------------------------------- names, headers and copies on their edges

def test_a_ticket_id_with_a_slash_is_one_path_segment_of_its_link():
    assert build_payload(customer(ANN, "A/1"), LINKED)["tickets"][0]["url"] == "https://desk.example/t/A%2F1"


def test_the_message_digest_is_stable_across_versions_and_belongs_to_one_address():
    ann = customer(ANN, "T1", "T2")
    assert message_digest(ann) == message_digest(customer(ANN, "T2", "T1"))
    # Made from the closed day (section 21): the value of versions that used the moment changed once.
    assert message_digest(ann) == "8cc448425bfd702b11aafd1e63261e37"   # receivers keep it across upgrades
    day_only = tuple(t._replace(has_time=False, closed_at=t.closed_at.replace(hour=0, minute=0)) for t in ann.tickets)
    assert message_digest(ann._replace(tickets=day_only)) == message_digest(ann)   # the same day, with or without a time
    assert message_digest(customer("bob@example.com", "T1", "T2")) != message_digest(ann)


def test_a_mailbox_setting_is_one_printable_address_with_an_optional_name():
    from customer_message import parse_mailbox

    assert parse_mailbox(" Help Desk <help@example.org> ", "--from") == ("Help Desk", "help@example.org")
    assert parse_mailbox("help@example.org", "--from") == ("", "help@example.org")
    with pytest.raises(ValueError, match=r"^--from must be one line of printable text$"):
        parse_mailbox("Help <help@example.org>\nBcc: x@y.z", "--from")
    with pytest.raises(ValueError, match=r"^--reply-to is not an email address \(use Name <address> or a bare address\)$"):
        parse_mailbox("Help Desk", "--reply-to")


def test_header_values_lose_line_breaks_and_names_fold_within_the_line_limit():
    from customer_message import display_name, header_text, mailbox_text

    assert header_text(" Printer\r\nBcc: x@y.z\t") == "Printer  Bcc: x@y.z"
    plain = "A" * 60
    assert display_name(plain) == f'"{plain}"' and display_name(plain + "A").startswith("=?utf-8?")
    assert display_name("Zoë") == "=?utf-8?q?Zo=C3=AB?="
    assert mailbox_text("", "a@example.org") == "a@example.org" and mailbox_text(" \n", "a@example.org") == "a@example.org"
    long_name = "Zoë " * 40
    mail = outgoing_mail(customer(ANN, "T1", name=long_name.strip(), first_name="Zoë"), Content(), SENDER)
    head = mail.data.split(b"\r\n\r\n", 1)[0]
    assert all(len(line) <= 78 for line in head.split(b"\r\n")) and b"\n" not in head.replace(b"\r\n", b"")
    from email.header import decode_header, make_header

    to = [line for line in head.replace(b"\r\n ", b" ").split(b"\r\n") if line.startswith(b"To: ")][0].decode()
    name = to.removeprefix("To: ").removesuffix(" <ann@example.com>")
    assert str(make_header(decode_header(name))) == long_name.strip()     # RFC 2047: adjacent words join


def test_hostile_names_in_from_and_reply_to_go_out_as_their_literal_text():
    trap = "=?utf-8?q?x=0D=0ABcc:_evil@example.org?="
    mail = outgoing_mail(customer(ANN, "T1"), Content(), Sender(trap, "help@example.org", (trap, "support@example.org")))
    assert trap.encode() not in mail.data
    message = read(mail.data)
    assert message["From"].addresses[0].display_name == trap and message["Reply-To"].addresses[0].display_name == trap
    assert message["Bcc"] is None


def test_several_cc_addresses_are_folded_one_per_line():
    mail = outgoing_mail(customer(ANN, "T1"), Content(cc=("boss@example.org", "team@example.org")), SENDER)
    assert b"Cc: boss@example.org,\r\n team@example.org\r\n" in mail.data


def test_the_header_check_accepts_a_tab_folded_line_and_refuses_a_non_ascii_header_name():
    check_header_block(b"To: a@b.c,\r\n\tx@y.z\r\nSubject: s\r\nDate: d\r\nAuto-Submitted: a\r\n\r\n", False)
    with pytest.raises(UnsendableError, match=r"failed the check"):
        check_header_block("To: a@b.c\r\nSubjéct: s\r\nDate: d\r\nAuto-Submitted: a\r\n\r\n".encode(), False)


def test_the_subject_setting_and_the_moment_given_are_what_the_email_says():
    from customer_message import build_email

    moment = datetime(2026, 11, 25, 10, 30).astimezone()
    message = build_email(customer(ANN, "T1"), Content(subject="Closed: thanks"), SENDER, moment)
    assert message["Subject"] == "Closed: thanks" and message["Date"].datetime == moment


def test_an_ascii_mail_keeps_its_headers_7bit_and_its_7bit_copy_matches_the_8bit_one(monkeypatch):
    import customer_message

    class Clock(datetime):
        ticks = 0

        @classmethod
        def now(cls, tz=None):
            cls.ticks += 1
            return datetime(2026, 11, 25, 10, 30, cls.ticks, tzinfo=tz)
    monkeypatch.setattr(customer_message, "datetime", Clock)
    mail = outgoing_mail(customer(ANN, "T1", name="Zoë Ünal", first_name="Zoë"), Content(subject="Ticket geschlossen ✓"), SENDER)
    head = mail.data.split(b"\r\n\r\n", 1)[0]
    assert head.isascii() and mail.data_7bit.isascii()
    eight, seven = read(mail.data), read(mail.data_7bit)
    for header in ("From", "To", "Subject", "Date", "Message-ID"):
        assert str(eight[header]) == str(seven[header])
    assert eight["Subject"] == "Ticket geschlossen ✓"


def test_a_non_ascii_reply_to_address_makes_the_mail_international():
    mail = outgoing_mail(customer(ANN, "T1"), Content(), Sender("Help", "help@example.org", ("Ünal", "zoë@exämple.de")))
    assert mail.international


def test_a_body_the_email_package_cannot_encode_rejects_that_customer_with_the_reason():
    with pytest.raises(UnsendableError, match=r"^the email package cannot build it \(UnicodeEncodeError: "):
        outgoing_mail(customer(ANN, "T1"), Content(body_template=Template("broken \udcff")), SENDER)


def test_every_mail_destination_and_the_preview_make_the_same_email():
    from types import SimpleNamespace

    from customer_message import emails_for

    run = SimpleNamespace(content=LINKED, sender=SENDER)
    made, direct = emails_for(run)(customer(ANN, "T1")), outgoing_mail(customer(ANN, "T1"), LINKED, SENDER)
    assert (made.sender, made.recipient, made.cc, made.message_id) == (direct.sender, direct.recipient, direct.cc,
                                                                       direct.message_id)
    assert read(made.data).get_body(("plain",)).get_content() == read(direct.data).get_body(("plain",)).get_content()


@pytest.mark.parametrize("octets, encoding", [(998, "8bit"), (999, "quoted-printable")])
def test_a_utf8_line_longer_than_998_octets_goes_quoted_printable(octets, encoding):
    line = "é" + "x" * (octets - 2)   # é is two octets
    mail = outgoing_mail(customer(ANN, "T1"), Content(body_template=Template(line)), SENDER)
    assert read(mail.data)["Content-Transfer-Encoding"] == encoding
    assert read(mail.data).get_content().rstrip("\r\n") == line


def test_a_subject_s_placeholders_are_the_customer_s():
    from customer_message import subject_for

    assert subject_for(customer(ANN, "T1", "T2"), Content(subject="$first_name: $ticket_count closed")) == "Ann: 2 closed"
