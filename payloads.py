"""What one customer's webhook call carries: the JSON payload, the email body and the webhook-id (pure)."""

from __future__ import annotations

import hashlib
from datetime import datetime
from string import Template

from ticket_core import Customer, address_key

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
TEMPLATE_FIELDS = ("first_name", "full_name", "ticket_count", "ticket_lines")
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def human_day(moment: datetime) -> str:
    return f"{moment.day} {MONTHS[moment.month - 1]} {moment.year}"


def template_values(customer: Customer) -> dict[str, str]:
    lines = "\n".join(f"  - Ticket {t.ticket_id}, closed on {human_day(t.closed_at)}" for t in customer.tickets)
    return {
        "first_name": customer.first_name,
        "full_name": customer.full_name,
        "ticket_count": str(len(customer.tickets)),
        "ticket_lines": lines,
    }


def render_body(customer: Customer, body_template: Template | None = None) -> str:
    values = template_values(customer)
    if body_template is not None:
        return body_template.substitute(values)
    count = len(customer.tickets)
    greeting_name = customer.first_name or customer.full_name
    intro = ("Good news: your support ticket has been closed." if count == 1
             else f"Good news: these {count} support tickets of yours have been closed.")
    return DEFAULT_BODY.substitute(values, greeting=f"Hello {greeting_name}," if greeting_name else "Hello,",
                                   intro=intro)


def check_body_template(body_template: Template) -> None:
    """Raise ValueError naming a placeholder the template uses that the notifier does not fill."""
    try:
        body_template.substitute(dict.fromkeys(TEMPLATE_FIELDS, ""))
    except KeyError as missing:
        raise ValueError(f"unknown placeholder ${missing.args[0]}; use {', '.join('$' + f for f in TEMPLATE_FIELDS)}") from None
    except ValueError as error:
        raise ValueError(f"{error} (write $$ for a literal $)") from None


def build_payload(customer: Customer, subject: str | None = None, body_template: Template | None = None) -> dict:
    count = len(customer.tickets)
    return {
        "full_name": customer.full_name,
        "email_address": customer.email,
        "ready_to_send": True,
        "email": {
            "subject": subject or (DEFAULT_SUBJECT_ONE if count == 1 else DEFAULT_SUBJECT_MANY),
            "to_address": [customer.email],
            "cc_address": [],
            "body": render_body(customer, body_template),
        },
        "tickets": [{"ticket": t.ticket_id, "status": t.status, "closed_date": t.closed_date}
                    for t in customer.tickets],
    }


def webhook_id(customer: Customer) -> str:
    """Same customer and same tickets with the same closed dates give the same id, on every retry
    and rerun, so the receiver can drop duplicates; a ticket closed again gives a new one."""
    parts = [address_key(customer.email)]
    parts += sorted(f"{t.ticket_id}@{t.closed_date}" for t in customer.tickets)
    return "msg_" + hashlib.sha256("\n".join(parts).encode("utf-8")).hexdigest()[:32]
