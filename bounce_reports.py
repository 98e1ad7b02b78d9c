"""Delivery status notifications read back: which email of the job a report is about, and what it says (pure).

A report (RFC 3464 `multipart/report; report-type=delivery-status`, as Postfix, Gmail's
mailer-daemon and Exchange Online's "Undeliverable:" write it) is matched to an email the job sent
by that email's Message-ID, found in the returned message or its headers, never by guessing
from addresses. What a report means for the customer is decided in `bounce_effects`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage, Message
from email.utils import getaddresses

FAILED, DELAYED, OTHER = "failed", "delayed", "other"
# A failure about the sender's own limits, not the recipient: the customer is sent again, once.
_SENDER_LIMIT = re.compile(r"\b5\.1\.90\b|SubmissionQuotaExceeded|\b5\.7\.23[23]\b|\b5\.4\.5\b.*\b(quota|limit)|"
                           r"\b(quota|limit)\b.*\b5\.4\.5\b", re.IGNORECASE | re.DOTALL)
_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_MESSAGE_ID = re.compile(r"<([^<>@\s]+)@[^<>\s]+>")
REASON_CHARS = 200


@dataclass(frozen=True)
class RecipientStatus:
    recipient: str      # the address the report is about (Final-Recipient or Original-Recipient)
    action: str         # FAILED, DELAYED or OTHER
    status: str         # 5.1.1
    diagnostic: str     # the receiving server's words

    @property
    def about_the_sender(self) -> bool:
        """A failure caused by the sending mailbox's limits (the customer is not at fault)."""
        return bool(_SENDER_LIMIT.search(f"{self.status} {self.diagnostic}"))

    @property
    def reason(self) -> str:
        return " ".join(f"bounced: {self.status} {self.diagnostic}".split())[:REASON_CHARS]


@dataclass(frozen=True)
class Report:
    message_ids: tuple[str, ...]             # the local parts of the Message-IDs it names (the job's digests)
    recipients: tuple[RecipientStatus, ...]


def read_report(raw: bytes) -> Report | None:
    """The report in a message from the mailbox, or None when it is not a delivery report (a
    customer's reply, a newsletter) or names no Message-ID."""
    message = message_from_bytes(raw, policy=policy.default)
    recipients = _recipients(message)
    if not recipients:
        return None
    ids = _returned_message_ids(message)
    return Report(ids, recipients) if ids else None


def _recipients(message: Message) -> tuple[RecipientStatus, ...]:
    """The per-recipient fields of the message/delivery-status part (RFC 3464 section 2.3)."""
    found = []
    for part in message.walk():
        if part.get_content_type() != "message/delivery-status":
            continue
        for block in _status_blocks(part):
            recipient = _address(block.get("final-recipient") or block.get("original-recipient") or "")
            action = (block.get("action") or "").strip().lower()
            status = _STATUS.search(block.get("status") or "")
            if not recipient or not status:
                continue
            kind = FAILED if action == "failed" else DELAYED if action == "delayed" else OTHER
            diagnostic = " ".join((block.get("diagnostic-code") or "").split())
            kind_of, semicolon, text = diagnostic.partition(";")  # "smtp; 550 ...", "X-Postfix; user unknown"
            diagnostic = text.strip() if semicolon and " " not in kind_of.strip() else diagnostic
            found.append(RecipientStatus(recipient, kind, status.group(0), diagnostic))
    return tuple(found)


def _status_blocks(part: Message) -> list[dict[str, str]]:
    """The field blocks of a delivery-status part (per-message first, then one per recipient), as
    lower-cased names; the email package gives them as sub-messages, or as text on some versions."""
    payload = part.get_payload()
    blocks: list[dict[str, str]] = []
    if isinstance(payload, list):
        for sub in payload:
            blocks.append({name.lower(): str(value) for name, value in sub.items()})
        return blocks
    text = payload if isinstance(payload, str) else ""
    for chunk in re.split(r"\r?\n\s*\r?\n", text):
        fields: dict[str, str] = {}
        for line in re.split(r"\r?\n(?![ \t])", chunk):
            name, colon, value = line.partition(":")
            if colon:
                fields[name.strip().lower()] = " ".join(value.split())
        if fields:
            blocks.append(fields)
    return blocks


def _address(field: str) -> str:
    """'rfc822; jane@example.com' -> jane@example.com."""
    value = field.split(";", 1)[1] if ";" in field else field
    addresses = [address for _, address in getaddresses([value.strip()]) if "@" in address]
    return addresses[0].strip().lower() if addresses else ""


def _returned_message_ids(message: Message) -> tuple[str, ...]:
    """The Message-IDs of the returned message (message/rfc822) or its headers (text/rfc822-headers),
    and those the report itself refers to (In-Reply-To, References); local parts, in order."""
    ids: list[str] = []

    def add(value: object) -> None:
        for found in _MESSAGE_ID.findall(str(value or "")):
            if found not in ids:
                ids.append(found)

    for part in message.walk():
        kind = part.get_content_type()
        if kind == "message/rfc822":
            payload = part.get_payload()
            returned = payload[0] if isinstance(payload, list) and payload else payload
            if isinstance(returned, (Message, EmailMessage)):
                add(returned.get("Message-ID"))
        elif kind == "text/rfc822-headers":
            headers = message_from_bytes(part.get_payload(decode=True) or b"", policy=policy.default)
            add(headers.get("Message-ID"))
    add(message.get("In-Reply-To"))
    add(message.get("References"))
    return tuple(ids)
