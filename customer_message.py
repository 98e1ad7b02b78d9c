"""What one customer is told, built in one place: subject, text and HTML bodies, the webhook's JSON
payload and its webhook-id, and the RFC 5322 email (Python's email package) with its envelope (pure)."""

from __future__ import annotations

import hashlib
import html
import re
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from string import Template
from typing import TYPE_CHECKING
from urllib.parse import quote

from delivery import UnsendableError
from ticket_core import Customer, address_key, is_valid_email

if TYPE_CHECKING:
    from email.message import EmailMessage
# The email package is imported where a message is built: a run that sends through a webhook and
# shows no preview never loads it (a fifth of the start-up).

DEFAULT_SUBJECT_ONE = "Your support ticket has been closed"
DEFAULT_SUBJECT_MANY = "Your support tickets have been closed"
DEFAULT_BODY = Template("""\
$greeting

$intro

$ticket_lines

If something is still not right, just reply to this email and we will look at it again.

Kind regards,
Customer Support
""")
TEMPLATE_FIELDS = ("greeting", "first_name", "full_name", "ticket_count", "ticket_phrase", "ticket_lines")
HTML_TEMPLATE_FIELDS = (*TEMPLATE_FIELDS, "ticket_list")
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def human_day(moment: datetime) -> str:
    return f"{moment.day} {MONTHS[moment.month - 1]} {moment.year}"


@dataclass(frozen=True)
class Content:
    """What every customer's email is made of, besides the customer: the run's settings."""
    subject: str | None = None
    body_template: Template | None = None
    html_template: Template | None = None
    cc: tuple[str, ...] = ()
    ticket_url: str | None = None       # an http(s) URL with {ticket} where the (URL-encoded) id goes
    subject_prefix: str = ""            # "[TEST] " on a --send-test-to email


def ticket_link(content: Content, ticket_id: str) -> str:
    return content.ticket_url.replace("{ticket}", quote(ticket_id, safe="")) if content.ticket_url else ""


def greeting(customer: Customer) -> str:
    """"Hello Jane," with the first name, else the full name (one name column); "Hello," when the
    address is shared by several names or has none: never "Hello ,"."""
    name = customer.first_name or customer.full_name
    return f"Hello {name}," if name.strip() else "Hello,"


def ticket_phrase(count: int) -> str:
    return "1 support ticket" if count == 1 else f"{count} support tickets"


def one_line(text: str) -> str:
    """A report's text on one line (a subject's own line breaks and tabs become spaces)."""
    return " ".join(text.split())


def ticket_line(ticket, content: Content) -> str:
    """'Ticket 52003 (Printer jams on tray 2), closed on 1 Dec 2026', and its link on the next line."""
    about = f" ({one_line(ticket.subject)})" if ticket.subject else ""
    link = ticket_link(content, ticket.ticket_id)
    return f"  - Ticket {ticket.ticket_id}{about}, closed on {human_day(ticket.closed_at)}" + (f"\n    {link}" if link else "")


def template_values(customer: Customer, content: Content = Content()) -> dict[str, str]:
    return {
        "greeting": greeting(customer),
        "first_name": customer.first_name,
        "full_name": customer.full_name,
        "ticket_count": str(len(customer.tickets)),
        "ticket_phrase": ticket_phrase(len(customer.tickets)),
        "ticket_lines": "\n".join(ticket_line(ticket, content) for ticket in customer.tickets),
    }


def render_body(customer: Customer, content: Content = Content()) -> str:
    values = template_values(customer, content)
    if content.body_template is not None:
        return content.body_template.substitute(values)
    count = len(customer.tickets)
    intro = ("Good news: your support ticket has been closed." if count == 1
             else f"Good news: these {count} support tickets of yours have been closed.")
    return DEFAULT_BODY.substitute(values, intro=intro)


def check_body_template(body_template: Template, fields: tuple[str, ...] = TEMPLATE_FIELDS) -> None:
    """Raise ValueError naming a placeholder the template uses that the notifier does not fill."""
    try:
        body_template.substitute(dict.fromkeys(fields, ""))
    except KeyError as missing:
        raise ValueError(f"unknown placeholder ${missing.args[0]}; use {', '.join('$' + f for f in fields)}") from None
    except ValueError as error:
        raise ValueError(f"{error} (write $$ for a literal $)") from None


def render_html(customer: Customer, html_template: Template, content: Content = Content()) -> str:
    """The HTML body: every value HTML-escaped (quotes too), $ticket_list as a <ul> of the tickets,
    each linked to its page when --ticket-url is given."""
    values = {name: html.escape(value) for name, value in template_values(customer, content).items()}
    values["ticket_lines"] = values["ticket_lines"].replace("\n", "<br>\n")
    items = []
    for ticket in customer.tickets:
        label = f"Ticket {html.escape(ticket.ticket_id)}"
        link = ticket_link(content, ticket.ticket_id)
        if link:
            label = f'<a href="{html.escape(link)}">{label}</a>'
        about = f" ({html.escape(one_line(ticket.subject))})" if ticket.subject else ""
        items.append(f"  <li>{label}{about}, closed on {human_day(ticket.closed_at)}</li>")
    return html_template.substitute(values, ticket_list="<ul>\n" + "\n".join(items) + "\n</ul>")


def subject_for(customer: Customer, content: Content = Content()) -> str:
    """--subject with its placeholders filled (those of the body templates), else the default subject."""
    if content.subject:
        subject = Template(content.subject).substitute(template_values(customer, content))
    else:
        subject = DEFAULT_SUBJECT_ONE if len(customer.tickets) == 1 else DEFAULT_SUBJECT_MANY
    return content.subject_prefix + one_line(subject)


def build_payload(customer: Customer, content: Content = Content()) -> dict:
    email = {
        "subject": subject_for(customer, content),
        "to_address": [customer.email],
        "cc_address": list(content.cc),
        "body": render_body(customer, content),
    }
    if content.html_template is not None:
        email["html_body"] = render_html(customer, content.html_template, content)
    return {
        "full_name": customer.full_name,
        "email_address": customer.email,
        "ready_to_send": True,
        "email": email,
        "tickets": [payload_ticket(ticket, content) for ticket in customer.tickets],
    }


def payload_ticket(ticket, content: Content) -> dict:
    """A payload's ticket: id, status, closed date; its subject when the report has one, its url
    with --ticket-url."""
    item = {"ticket": ticket.ticket_id, "status": ticket.status, "closed_date": ticket.closed_date}
    if ticket.subject is not None:  # the report has a subject column
        item["subject"] = ticket.subject
    if content.ticket_url:
        item["url"] = ticket_link(content, ticket.ticket_id)
    return item


def message_digest(customer: Customer) -> str:
    """Same customer and same tickets with the same closed days give the same digest, on every retry
    and rerun (whether the report writes a day with a time or not), so the receiver can drop
    duplicates; a ticket closed again on a later day gives a new one. The
    webhook-id and the Message-ID are both made from it."""
    parts = [address_key(customer.email)]
    parts += sorted(f"{t.ticket_id}@{t.closed_at.date().isoformat()}" for t in customer.tickets)  # the day, not the text
    return hashlib.sha256("\n".join(parts).encode("utf-8")).hexdigest()[:32]


def webhook_id(customer: Customer) -> str:
    return "msg_" + message_digest(customer)


# ---------------------------------------------------------------- the email

@dataclass(frozen=True)
class Sender:
    """Who the emails come from, and where replies go."""
    from_name: str
    from_address: str
    reply_to: tuple[str, str] | None = None   # (name, address)

    @property
    def domain(self) -> str:
        return self.from_address.rpartition("@")[2]


def parse_mailbox(text: str, what: str) -> tuple[str, str]:
    """(name, address) of 'Name <address>' or a bare address; ValueError naming `what`."""
    from email.utils import parseaddr

    if not text.isprintable():
        raise ValueError(f"{what} must be one line of printable text")
    name, address = parseaddr(text.strip())
    if not is_valid_email(address):
        raise ValueError(f"{what} is not an email address (use Name <address> or a bare address)")
    return name, address


def header_text(text: str) -> str:
    """A value for a header: anything that is not printable (a line break above all) becomes a space,
    so no report value can add a header."""
    return "".join(char if char.isprintable() else " " for char in text).strip()


# A display name written as a quoted string as it is: printable ASCII with nothing to escape and no
# '=' (so no '=?', which starts an RFC 2047 encoded word a mail reader would decode).
PLAIN_NAME_CHARS = 60  # a longer name is written as encoded words, which fold: no header line passes 998 octets
_PLAIN_NAME = re.compile(r"[A-Za-z0-9 !#$%&'*+,./:;<>?@^_`{|}~\[\]()-]*")


def display_name(name: str) -> str:
    """A display name as it goes on the wire: a quoted string when plain, else RFC 2047 encoded
    words (UTF-8) that say exactly the literal text, folded every 70 characters (a long name stays
    readable; the 998-octet line limit itself is checked by check_header_block)."""
    from email.header import Header

    name = header_text(name)
    if len(name) <= PLAIN_NAME_CHARS and _PLAIN_NAME.fullmatch(name):
        return f'"{name}"'
    return Header(name, "utf-8", maxlinelen=70).encode(linesep="\n ")


def mailbox_text(name: str, address: str) -> str:
    """`"Name" <address>`, or the bare address when there is no name."""
    return f"{display_name(name)} <{address}>" if header_text(name) else address


class _WrittenHeader(str):
    """A header value in its final form (see display_name), which the email package stores and
    writes as it is: never parsed, so no Python version can decode an encoded word in a name into
    raw line breaks (gh-121650), or refold an address."""

    def __new__(cls, name: str, value: str) -> _WrittenHeader:
        header = super().__new__(cls, value)
        header.name = name
        return header

    def fold(self, *, policy) -> str:
        return f"{self.name}: {self}".replace("\n", policy.linesep) + policy.linesep


def needs_smtputf8(addresses: list[str]) -> bool:
    """Whether a message to and from these addresses needs the server's SMTPUTF8 extension."""
    return not all(address.isascii() for address in addresses)


# The headers the job sets, each at most once; the first four are always there.
REQUIRED_HEADERS = ("to", "subject", "date", "auto-submitted")
OWN_HEADERS = frozenset((*REQUIRED_HEADERS, "from", "cc", "reply-to", "message-id", "mime-version", "content-type",
                         "content-transfer-encoding"))
MAX_LINE_OCTETS = 998  # RFC 5322


def check_header_block(data: bytes, with_sender: bool) -> None:
    """The header block of a message about to go out holds exactly the headers the job sets, each
    once, on lines of at most 998 octets with no stray line break: nothing from a report added,
    removed or changed one. Raises UnsendableError."""
    head = data.split(b"\r\n\r\n", 1)[0]
    if b"\r" in head.replace(b"\r\n", b"") or b"\n" in head.replace(b"\r\n", b""):
        raise UnsendableError("its header block holds a stray line break")
    names = []
    for line in head.split(b"\r\n"):
        if len(line) > MAX_LINE_OCTETS:
            raise UnsendableError(f"a header line is longer than {MAX_LINE_OCTETS} octets")
        if line[:1] in (b" ", b"\t"):
            continue
        name, colon, _ = line.partition(b":")
        if not colon:
            raise UnsendableError("its header block holds a line that is not a header")
        names.append(name.decode("ascii", "replace").strip().lower())
    counts = Counter(names)
    required = (*REQUIRED_HEADERS, *(("from", "message-id") if with_sender else ()))
    wrong = sorted({name for name in names if name not in OWN_HEADERS or counts[name] > 1}
                   | {name for name in required if not counts[name]})
    if wrong:
        raise UnsendableError(f"its header block failed the check ({', '.join(wrong)})")


def build_email(customer: Customer, content: Content, sender: Sender | None, now: datetime | None = None,
                transfer_encoding: str | None = None) -> EmailMessage:
    """The message for `customer`: From, To with the customer's name, Cc, Reply-To, Subject, Date,
    a Message-ID the same on every retry and rerun (from the webhook-id's digest), Auto-Submitted,
    and a UTF-8 text body (multipart/alternative with the HTML body when there is one).
    `transfer_encoding` "quoted-printable" makes the body 7-bit clean (for servers without 8BITMIME)."""
    import email.policy
    from email.message import EmailMessage
    from email.utils import format_datetime

    message = EmailMessage(policy=email.policy.SMTP)
    if sender is not None:
        message["From"] = _WrittenHeader("From", mailbox_text(sender.from_name, sender.from_address))
    message["To"] = _WrittenHeader("To", mailbox_text(customer.full_name, customer.email))
    if content.cc:
        message["Cc"] = _WrittenHeader("Cc", ",\n ".join(content.cc))
    if sender is not None and sender.reply_to:
        message["Reply-To"] = _WrittenHeader("Reply-To", mailbox_text(*sender.reply_to))
    message["Subject"] = header_text(subject_for(customer, content))
    message["Date"] = format_datetime((now or datetime.now()).astimezone())
    if sender is not None:
        message["Message-ID"] = f"<{message_digest(customer)}@{sender.domain}>"
    message["Auto-Submitted"] = "auto-generated"
    text = render_body(customer, content)
    message.set_content(text, charset="utf-8", cte=transfer_encoding or _eight_bit_if_needed(text))
    if content.html_template is not None:
        html_text = render_html(customer, content.html_template, content)
        message.add_alternative(html_text, subtype="html", charset="utf-8",
                                cte=transfer_encoding or _eight_bit_if_needed(html_text))
    return message


def _eight_bit_if_needed(text: str) -> str | None:
    """UTF-8 text as it is (announced with BODY=8BITMIME) when every line fits RFC 5322's 998 octets;
    a longer line is encoded (quoted-printable folds it); ASCII text as the email package chooses
    (7bit, or quoted-printable past its line length)."""
    if text.isascii():
        return None
    longest = max((len(line.encode("utf-8")) for line in text.splitlines()), default=0)
    return "8bit" if longest <= MAX_LINE_OCTETS else "quoted-printable"


def message_bytes(message: EmailMessage, international: bool) -> bytes:
    """The message as sent: CRLF line ends; UTF-8 headers only when an address needs them."""
    import email.policy

    return message.as_bytes(policy=email.policy.SMTPUTF8 if international else email.policy.SMTP)


@dataclass(frozen=True)
class OutgoingMail:
    """One message with its envelope: who it is from, the customer, the --cc copies. `data` may be
    8-bit (UTF-8 text); `data_7bit`, when not None, is the same message 7-bit clean, for a server
    that does not offer 8BITMIME."""
    sender: str
    recipient: str
    cc: tuple[str, ...]
    data: bytes
    international: bool   # an address with non-ASCII characters: the server must offer SMTPUTF8
    data_7bit: bytes | None = None
    message_id: str = ""

    @property
    def eight_bit(self) -> bool:
        return not self.data.isascii()


def outgoing_mail(customer: Customer, content: Content, sender: Sender | None) -> OutgoingMail:
    """The email `customer` gets, with its envelope, exactly as a mail route sends it and
    --preview-dir shows it; its header block checked (raises UnsendableError)."""
    import email.errors

    from_address = sender.from_address if sender else ""
    reply_to = [sender.reply_to[1]] if sender and sender.reply_to else []
    international = needs_smtputf8([from_address, customer.email, *content.cc, *reply_to])
    now = datetime.now()
    try:
        message = build_email(customer, content, sender, now)
        data = message_bytes(message, international)
        data_7bit = None
        if not data.isascii() and not international:
            data_7bit = message_bytes(build_email(customer, content, sender, now, "quoted-printable"), False)
    except (ValueError, TypeError, email.errors.MessageError) as error:  # what the email package refuses
        raise UnsendableError(f"the email package cannot build it ({type(error).__name__}: {error})") from None
    check_header_block(data, sender is not None)
    return OutgoingMail(from_address, customer.email, content.cc, data, international, data_7bit,
                        str(message.get("Message-ID", "")))


def emails_for(run):
    """How a mail destination (SMTP, Gmail, Microsoft 365) and --preview-dir make each customer's
    message from the run's settings: the one email builder."""
    return lambda customer: outgoing_mail(customer, run.content, run.sender)
