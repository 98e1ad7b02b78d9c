"""What one customer is told: subject, text and HTML bodies, the webhook's JSON payload and its webhook-id (pure)."""

from __future__ import annotations

import hashlib
import html
from dataclasses import dataclass
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
HTML_TEMPLATE_FIELDS = (*TEMPLATE_FIELDS, "ticket_list")
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


def check_body_template(body_template: Template, fields: tuple[str, ...] = TEMPLATE_FIELDS) -> None:
    """Raise ValueError naming a placeholder the template uses that the notifier does not fill."""
    try:
        body_template.substitute(dict.fromkeys(fields, ""))
    except KeyError as missing:
        raise ValueError(f"unknown placeholder ${missing.args[0]}; use {', '.join('$' + f for f in fields)}") from None
    except ValueError as error:
        raise ValueError(f"{error} (write $$ for a literal $)") from None


def render_html(customer: Customer, html_template: Template) -> str:
    """The HTML body: every value HTML-escaped, and $ticket_list as a <ul> of the tickets."""
    values = {name: html.escape(value) for name, value in template_values(customer).items()}
    items = "\n".join(f"  <li>Ticket {html.escape(t.ticket_id)}, closed on {human_day(t.closed_at)}</li>"
                      for t in customer.tickets)
    values["ticket_lines"] = values["ticket_lines"].replace("\n", "<br>\n")
    return html_template.substitute(values, ticket_list=f"<ul>\n{items}\n</ul>")


def subject_for(customer: Customer, subject: str | None = None) -> str:
    return subject or (DEFAULT_SUBJECT_ONE if len(customer.tickets) == 1 else DEFAULT_SUBJECT_MANY)


@dataclass(frozen=True)
class Content:
    """What every customer's email is made of, besides the customer: the run's settings."""
    subject: str | None = None
    body_template: Template | None = None
    html_template: Template | None = None
    cc: tuple[str, ...] = ()


def build_payload(customer: Customer, content: Content = Content()) -> dict:
    email = {
        "subject": subject_for(customer, content.subject),
        "to_address": [customer.email],
        "cc_address": list(content.cc),
        "body": render_body(customer, content.body_template),
    }
    if content.html_template is not None:
        email["html_body"] = render_html(customer, content.html_template)
    return {
        "full_name": customer.full_name,
        "email_address": customer.email,
        "ready_to_send": True,
        "email": email,
        "tickets": [{"ticket": t.ticket_id, "status": t.status, "closed_date": t.closed_date}
                    for t in customer.tickets],
    }


def webhook_id(customer: Customer) -> str:
    """Same customer and same tickets with the same closed dates give the same id, on every retry
    and rerun, so the receiver can drop duplicates; a ticket closed again gives a new one."""
    parts = [address_key(customer.email)]
    parts += sorted(f"{t.ticket_id}@{t.closed_date}" for t in customer.tickets)
    return "msg_" + hashlib.sha256("\n".join(parts).encode("utf-8")).hexdigest()[:32]
