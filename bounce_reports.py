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

from delivery import speaks_of_a_sending_limit

FAILED, DELAYED, OTHER = "failed", "delayed", "other"
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
        return speaks_of_a_sending_limit(f"{self.status} {self.diagnostic}")

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


# ---------------------------------------------------------------- what the reports change

@dataclass
class BounceOutcome:
    """What the reports read in one run did, for the summary and rejected.csv."""
    bounced: list[tuple[str, list[str], str]]   # (address, ticket ids, reason): refused for good
    returned: list[tuple[str, list[str], str]]  # sent again: the failure was the sending mailbox's limit
    delayed: list[tuple[str, str]]              # (address, status): logged only


def bounce_effects(state, reports, today):
    """The state once `reports` are applied, and what they did (pure).

    A report names an email of the job by its Message-ID (state.sent); one that names none is left
    alone. For the customer the email went to (a failed --cc copy is not the customer's bounce):
    a permanent failure about the address or mailbox records its tickets as rejected ("bounced:
    status diagnostic") and holds them for the same customer under a corrected address (the row's
    name); a failure about the sender's limits makes them pending again (sent once more); a delay
    is only reported. The email is then forgotten, so a report read twice changes nothing, and a
    report about an older email never touches a newer one to a corrected address."""
    from dataclasses import replace

    from ticket_core import customer_key, held_entry, held_key

    sent, notified, emailed = dict(state.sent), dict(state.notified), dict(state.last_emailed)
    rejected, held = dict(state.rejected), dict(state.held)
    outcome = BounceOutcome([], [], [])
    for report in reports:
        key = next((found for found in report.message_ids if found in sent), None)
        if key is None:
            continue
        email = sent[key]
        about = [status for status in report.recipients if customer_key(status.recipient) == email["customer"]]
        final = next((status for status in about if status.action == FAILED and status.status.startswith("5")), None)
        if final is None:
            outcome.delayed += [(status.recipient, status.status) for status in about if status.action == DELAYED]
            continue
        customer, tickets = email["customer"], email["tickets"]
        del sent[key]
        if final.about_the_sender:  # not the customer's fault: pending again, whatever the window says
            mine = {ticket: closed for ticket, closed in notified.get(customer, {}).items() if ticket not in tickets}
            notified = {**notified, customer: mine} if mine else {k: v for k, v in notified.items() if k != customer}
            emailed.pop(customer, None)
            for ticket, closed in tickets.items():
                held[held_key(ticket, customer, email["name"])] = {
                    "day": today.isoformat(), **held_entry(ticket, f"returned: {final.status}", customer, email["name"],
                                                           closed)}
            outcome.returned.append((final.recipient, list(tickets), final.reason))
            continue
        earlier = rejected.get(customer, {}).get("tickets", {})
        rejected[customer] = {"day": today.isoformat(), "reason": final.reason, "tickets": {**earlier, **tickets},
                              "name": email["name"]}
        for ticket, closed in tickets.items() if email["name"] else ():  # sent once to a corrected address
            held[held_key(ticket, "", email["name"])] = {
                "day": today.isoformat(), **held_entry(ticket, "bounced", "", email["name"], closed)}
        outcome.bounced.append((final.recipient, list(tickets), final.reason))
    return replace(state, sent=sent, notified=notified, last_emailed=emailed, rejected=rejected, held=held), outcome
