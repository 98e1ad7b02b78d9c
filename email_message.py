"""The email one customer receives, as an RFC 5322 message built with Python's email package (pure)."""

from __future__ import annotations

import email.policy
from dataclasses import dataclass
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr

from payloads import Content, render_body, render_html, subject_for
from ticket_core import Customer, is_valid_email


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


def mailbox_header(name: str, address: str) -> Address | str:
    """A To/From/Cc value. An address with non-ASCII characters needs SMTPUTF8 and is written as
    text, which email's Address refuses."""
    name = header_text(name)
    if address.isascii():
        return Address(display_name=name, addr_spec=address)
    quoted = name.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{quoted}" <{address}>' if name else address


def needs_smtputf8(addresses: list[str]) -> bool:
    """Whether a message to and from these addresses needs the server's SMTPUTF8 extension."""
    return not all(address.isascii() for address in addresses)


def build_email(customer: Customer, content: Content, msg_id: str, sender: Sender | None,
                now: datetime | None = None) -> EmailMessage:
    """The message for `customer`: From, To with the customer's name, Cc, Reply-To, Subject, Date,
    a Message-ID the same on every retry and rerun (from the webhook-id), Auto-Submitted, and a
    UTF-8 text body (multipart/alternative with the HTML body when there is one)."""
    message = EmailMessage(policy=email.policy.SMTP)
    if sender is not None:
        message["From"] = mailbox_header(sender.from_name, sender.from_address)
    message["To"] = mailbox_header(customer.full_name, customer.email)
    if content.cc:
        message["Cc"] = [mailbox_header("", address) for address in content.cc]
    if sender is not None and sender.reply_to:
        message["Reply-To"] = mailbox_header(*sender.reply_to)
    message["Subject"] = header_text(subject_for(customer, content.subject))
    message["Date"] = format_datetime((now or datetime.now()).astimezone())
    if sender is not None:
        message["Message-ID"] = f"<{msg_id.removeprefix('msg_')}@{sender.domain}>" if sender.domain else make_msgid()
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(render_body(customer, content.body_template), charset="utf-8")
    if content.html_template is not None:
        message.add_alternative(render_html(customer, content.html_template), subtype="html", charset="utf-8")
    return message


def message_bytes(message: EmailMessage, international: bool) -> bytes:
    """The message as sent: CRLF line ends; UTF-8 headers only when an address needs them."""
    return message.as_bytes(policy=email.policy.SMTPUTF8 if international else email.policy.SMTP)
