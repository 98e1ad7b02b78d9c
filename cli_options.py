"""The command line of process_ticket.py: the seed's single-dash spellings and the full option set."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from string import Template
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from customer_message import HTML_TEMPLATE_FIELDS, TEMPLATE_FIELDS, Content, check_body_template
from destinations import (
    Destination,
    SendContext,
    SettingError,
    all_destinations,
    by_name,
    environment_keys,
    how_to_name_one,
)
from report_dates import DEFAULT_DATE_FORMATS, check_date_format, check_day_range, parse_day
from ticket_core import ROLES

if TYPE_CHECKING:
    from customer_message import Sender

TRUE_WORDS, FALSE_WORDS = ("yes", "true", "1"), ("no", "false", "0")


class UsageError(Exception):
    """A wrong option or value: one line on stderr, exit 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see --help)")


def yes_no(text: str) -> bool:
    word = text.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise argparse.ArgumentTypeError(f"expected yes or no, got {text!r}")


def since_day(text: str) -> date:
    try:
        return check_day_range(parse_day(text), date.today(), "--since")
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def bounded(kind: type, low: float, high: float):
    def convert(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low:g} and {high:g}, got {text}")
        return value
    convert.__name__ = kind.__name__
    return convert


def build_parser(version: str) -> argparse.ArgumentParser:
    parser = _Parser(prog="process_ticket.py", allow_abbrev=False,
                     description="Email customers the support tickets closed since the last run, through one of: "
                                 + ", ".join(destination.name for destination in all_destinations()) + ".")
    source = parser.add_argument_group("report")
    source.add_argument("-sheetid", "--sheet-id", dest="sheet_id", metavar="ID",
                        help="Google spreadsheet id or full sheet URL")
    source.add_argument("-range", "--range", dest="range", metavar="R",
                        help="A1 range of a Google Sheet (default: Sheet1), or the sheet of an .xlsx report "
                             "(default: the first visible)")
    source.add_argument("--report", metavar="PATH", help="read a .csv or .xlsx export instead of a Google Sheet")
    source.add_argument("--closed-status", default="Closed", metavar="LIST",
                        help="comma-separated statuses that count as closed (default: Closed)")
    source.add_argument("--date-format", action="append", metavar="FMT",
                        help="strptime format of text dates; repeatable, replaces the day-first defaults")
    source.add_argument("--column", action="append", default=[], metavar="ROLE=HEADER",
                        help=f"map a role ({', '.join(ROLES)}) to a header name; repeatable")
    source.add_argument("--since", type=since_day, metavar="DD/MM/YYYY",
                        help="start from this date instead of the stored last_run_date (needed by the first live run)")
    source.add_argument("--retry-rejected", action="store_true",
                        help="send the tickets of customers rejected earlier again, under the address the report now gives")
    send = parser.add_argument_group("sending")
    names = [destination.name for destination in all_destinations()]
    send.add_argument("--send-with", choices=names, metavar="|".join(names),
                      help="the destination: " + "; ".join(f"{d.name}: {d.summary}" for d in all_destinations())
                           + " (default: $SEND_WITH, else the one whose URL is given)")
    for destination in all_destinations():
        destination.add_options(send)
    send.add_argument("--from", dest="from_address", metavar="ADDRESS",
                      help="sender, 'Name <address>' or an address; required to send email directly "
                           f"({', '.join(d.name for d in all_destinations() if d.needs_sender)}) (default: $SMTP_FROM)")
    send.add_argument("--reply-to", metavar="ADDRESS", help="Reply-To of the emails")
    send.add_argument("--cc", action="append", default=[], metavar="ADDRESS",
                      help="copy every email to this address; repeatable (also the webhook payload's cc_address)")
    send.add_argument("--max-per-minute", type=bounded(float, 0.1, 100000), metavar="N",
                      help="at most N messages a minute, evenly spaced (default: no limit)")
    send.add_argument("--max-emails", type=bounded(int, 1, 10_000_000), metavar="N",
                      help="a live run emails at most N customers; the others wait for the next run, oldest ticket "
                           "first (default: $MAX_EMAILS, else no cap): keeps a large week under a mailbox's daily limit")
    send.add_argument("--read-bounces", action="store_true",
                      help="gmail and microsoft365: before sending, read the delivery reports in the sending mailbox "
                           "(default: $READ_BOUNCES); smtp reads them whenever IMAP_URL is set")
    send.add_argument("-testmode", "--testmode", dest="test_mode", type=yes_no, default=False, metavar="yes|no",
                      help="yes: show what would be sent, send nothing, write nothing (default: no)")
    send.add_argument("--min-days-between-emails", type=bounded(int, 0, 3650), default=7, metavar="N",
                      help="email a customer at most once in N calendar days; 0 disables (default: 7)")
    send.add_argument("--workers", type=bounded(int, 1, 64), default=4, metavar="N",
                      help="messages sent at once, each over its own connection for SMTP; every destination (default: 4)")
    send.add_argument("--timeout", type=bounded(float, 0.1, 600), default=30, metavar="SECONDS",
                      help="each attempt as a whole (connect, send, answer), every destination (default: 30)")
    send.add_argument("--retries", type=bounded(int, 0, 10), default=3, metavar="N",
                      help="extra attempts per message on temporary failures, waiting 1 s, 2 s, 4 s... up to 60 s; "
                           "every destination (default: 3)")
    placeholders = " ".join(f"${name}" for name in TEMPLATE_FIELDS)
    send.add_argument("--subject", metavar="TEXT", help=f"email subject; may hold the placeholders {placeholders} "
                                                        "($$ for a literal $)")
    send.add_argument("--body-template", metavar="PATH", help=f"string.Template file with {placeholders}")
    send.add_argument("--html-template", metavar="PATH",
                      help="HTML body, string.Template: the same placeholders, HTML-escaped, and $ticket_list")
    send.add_argument("--ticket-url", metavar="TEMPLATE",
                      help="link each ticket: an http(s) URL with {ticket} where the id goes, "
                           "e.g. https://help.example.com/tickets/{ticket}")
    send.add_argument("--send-test-to", metavar="ADDRESS",
                      help="a live run that sends only the first customer's email, exactly as it would go out, to "
                           "ADDRESS (no --cc), and records nothing")
    send.add_argument("--preview-dir", metavar="DIR",
                      help="test mode: write each email that would be sent as DIR/NNN-address.eml")
    files = parser.add_argument_group("files")
    files.add_argument("--state-file", metavar="PATH", help="default: last_run_date.json next to this script")
    files.add_argument("--credentials", metavar="PATH", help="Google credential file (default: credential.json)")
    files.add_argument("--token", metavar="PATH", help="Google OAuth token file (default: token.json)")
    files.add_argument("--api-key", metavar="KEY", help="Google API key for link-shared sheets (default: $GOOGLE_API_KEY)")
    files.add_argument("--log-file", metavar="PATH", help="also log to this file (rotated)")
    files.add_argument("--ping-url", metavar="URL",
                       help="heartbeat (Healthchecks.io style): URL/start when a live run begins, URL/<exit code> "
                            "at its end (default: $PING_URL)")
    output = parser.add_argument_group("output")
    output.add_argument("--check", action="store_true",
                        help="check the settings, the destination, Google and the state file; read and send nothing")
    output.add_argument("-q", "--quiet", action="store_true", help="only errors besides the summary")
    output.add_argument("-v", "--verbose", action="store_true", help="more detail in the log")
    output.add_argument("--version", action="version", version=f"%(prog)s {version}")
    return parser


# Environment keys the job reads besides the destinations' own (run_settings.env may set them too).
GENERAL_KEYS = ("SEND_WITH", "SMTP_FROM", "GOOGLE_API_KEY", "PING_URL", "SHEETS_API_ENDPOINT", "MAX_EMAILS", "READ_BOUNCES")


@dataclass(frozen=True)
class Settings:
    """The run's settings: built once from the command line and the environment, then never changed."""
    sheet_id: str | None
    range: str | None
    report: Path | None
    closed_statuses: tuple[str, ...]
    date_formats: tuple[str, ...]
    columns: Mapping[str, str]
    since: date | None
    retry_rejected: bool
    destination: Destination | None          # None: test mode or --check without one
    destination_settings: Any                # the destination's own frozen settings
    sender: Sender | None
    content: Content
    max_per_minute: float | None
    max_emails: int | None                   # at most this many customers emailed per run; the others wait
    read_bounces: bool                       # --read-bounces / READ_BOUNCES=yes (gmail, microsoft365)
    test_mode: bool
    min_days_between_emails: int
    workers: int
    timeout: float
    retries: int
    preview_dir: Path | None
    send_test_to: str | None                 # a live run that sends one test email there and records nothing
    state_file: Path
    credentials: Path
    token: Path
    api_key: str | None
    sheets_endpoint: str | None              # SHEETS_API_ENDPOINT: another root for the Sheets API (a proxy, a test)
    log_file: Path | None
    ping_url: str | None
    check: bool
    quiet: bool
    verbose: bool
    notes: tuple[str, ...]                   # warnings about the settings, logged once logging is set up
    secrets: tuple[str, ...]                 # every value the log filter hides

    def with_timeout(self, seconds: float) -> Settings:
        return replace(self, timeout=seconds)

    def send_context(self) -> SendContext:
        """What the destination is given of the run."""
        return SendContext(self.destination_settings, self.timeout, self.workers, self.retries, self.content, self.sender,
                           self.credentials, self.token, self.api_key, self.read_bounces)


def read_environment() -> dict[str, str]:
    """The environment as the run reads it: once, the keys it knows, nothing else."""
    keys = (*GENERAL_KEYS, *environment_keys())
    return {key: os.environ[key] for key in keys if os.environ.get(key)}


def parse_args(argv: list[str] | None, script_dir: Path, version: str,
               environment: Mapping[str, str] | None = None, destination: Destination | None = None) -> Settings:
    """The run's settings, checked, paths made absolute. Raises UsageError. `destination` (a test's
    scripted one) replaces the one the options and environment would choose. The steps, in the
    order their errors are met: the options, the report, the rules that select, the message, the
    destination and its addresses, the monitoring and the files."""
    environment = read_environment() if environment is None else environment
    args = parsed_options(argv, version)
    source, notes = report_source(args)
    selection = selection_rules(args)
    subject, body_template, html_template = message_templates(args)
    preview_dir = preview_folder(args)
    if destination is None:
        destination, destination_settings = choose_destination(args, environment)
    else:
        destination_settings = destination.configure(args, environment)
    sender, cc = check_addresses(args, environment, destination)
    ping_url = ping_url_setting(args, environment)
    if not args.test_mode:
        check_ca_bundles()
    files = file_paths(args, script_dir)
    api_key = args.api_key or environment.get("GOOGLE_API_KEY") or None
    return Settings(
        **source, **selection, **files, api_key=api_key, since=args.since, retry_rejected=args.retry_rejected,
        destination=destination, destination_settings=destination_settings, sender=sender,
        content=Content(subject, body_template, html_template, cc, check_ticket_url(args.ticket_url)),
        max_per_minute=args.max_per_minute, max_emails=max_emails_setting(args, environment),
        read_bounces=args.read_bounces or environment.get("READ_BOUNCES", "").strip().lower() in TRUE_WORDS,
        send_test_to=check_test_address(args), test_mode=args.test_mode,
        min_days_between_emails=args.min_days_between_emails, workers=args.workers, timeout=args.timeout,
        retries=args.retries, preview_dir=preview_dir, sheets_endpoint=sheets_endpoint(environment),
        ping_url=ping_url, check=args.check, quiet=args.quiet, verbose=args.verbose, notes=tuple(notes),
        secrets=tuple(secrets_of(environment, destination, destination_settings, api_key, ping_url,
                                 files["credentials"], files["token"])))


def parsed_options(argv: list[str] | None, version: str) -> argparse.Namespace:
    """The command line as argparse reads it; an unknown word is an error that says what was meant."""
    args, unknown = build_parser(version).parse_known_args(argv)
    if unknown:
        raise UsageError(unknown_arguments(unknown))
    return args


def report_source(args: argparse.Namespace) -> tuple[dict[str, Any], list[str]]:
    """Where the report is read: one Google Sheet or one file, and the range or sheet; the notes
    about a setting that is ignored."""
    if bool(args.sheet_id) == bool(args.report):
        raise UsageError("give exactly one report source: -sheetid ID or --report PATH")
    notes = []
    sheet_range = args.range or ("Sheet1" if args.sheet_id else None)
    report = absolute(args.report)
    if report and sheet_range and report.suffix.lower() not in (".xlsx", ".xlsm"):
        notes.append(f"-range {sheet_range!r} is ignored: it picks a sheet of a Google Sheet or an .xlsx "
                     "workbook, and a CSV file has none")
        sheet_range = None
    sheet_id = google_sheet_id(args.sheet_id) if args.sheet_id else None
    return {"sheet_id": sheet_id, "range": sheet_range, "report": report}, notes


def selection_rules(args: argparse.Namespace) -> dict[str, Any]:
    """What makes a row a closed ticket: the statuses, the date formats, the columns."""
    closed_statuses = tuple(status.strip() for status in args.closed_status.split(",") if status.strip())
    if not closed_statuses:
        raise UsageError("--closed-status needs at least one status")
    if not all("%" in fmt for fmt in args.date_format or ()):
        raise UsageError("--date-format takes a strptime format such as %d/%m/%Y")
    for fmt in args.date_format or ():
        try:
            check_date_format(fmt)
        except ValueError as error:
            raise UsageError(f"--date-format {error}; use a strptime format such as %d/%m/%Y") from None
    return {"closed_statuses": closed_statuses, "date_formats": tuple(args.date_format or DEFAULT_DATE_FORMATS),
            "columns": MappingProxyType(parse_columns(args.column))}


def message_templates(args: argparse.Namespace) -> tuple[str | None, Template | None, Template | None]:
    """--subject (one printable line whose placeholders exist), --body-template, --html-template."""
    if args.subject is not None and not args.subject.isprintable():
        raise UsageError("--subject must be one line of printable text")
    if args.subject is not None:
        try:
            check_body_template(Template(args.subject))
        except ValueError as error:
            raise UsageError(f"--subject: {error}") from None
    body_template = load_template(absolute(args.body_template), "--body-template") if args.body_template else None
    html_template = load_template(absolute(args.html_template), "--html-template") if args.html_template else None
    return args.subject, body_template, html_template


def preview_folder(args: argparse.Namespace) -> Path | None:
    preview_dir = absolute(args.preview_dir)
    if preview_dir and not args.test_mode:
        raise UsageError("--preview-dir only goes with -testmode yes (it shows the emails instead of sending them)")
    return preview_dir


def ping_url_setting(args: argparse.Namespace, environment: Mapping[str, str]) -> str | None:
    """--ping-url, else PING_URL: checked like every URL the job calls."""
    ping_url = (args.ping_url or environment.get("PING_URL") or "").strip() or None
    if ping_url:
        from heartbeat import check_ping_url
        from url_rules import UrlError

        try:
            check_ping_url(ping_url)
        except UrlError as error:
            raise UsageError(str(error)) from None
    return ping_url


def check_ca_bundles() -> None:
    """A live run stops at start when a CA bundle the environment names cannot be loaded."""
    from url_rules import unusable_ca_bundle

    if problem := unusable_ca_bundle():
        raise UsageError(problem)


def file_paths(args: argparse.Namespace, script_dir: Path) -> dict[str, Path | None]:
    """The files the run reads and writes, absolute; the defaults sit beside the script."""
    return {
        # The real path (links resolved): the lock, the writes and rejected.csv all follow the one file.
        "state_file": (absolute(args.state_file) or script_dir / "last_run_date.json").resolve(),
        "credentials": absolute(args.credentials) or script_dir / "credential.json",
        "token": absolute(args.token) or script_dir / "token.json",
        "log_file": absolute(args.log_file),
    }


def max_emails_setting(args: argparse.Namespace, environment: Mapping[str, str]) -> int | None:
    """--max-emails, else the setting MAX_EMAILS: a whole number of at least 1."""
    if args.max_emails is not None:
        return args.max_emails
    text = environment.get("MAX_EMAILS", "").strip()
    if not text:
        return None
    try:
        return bounded(int, 1, 10_000_000)(text)
    except argparse.ArgumentTypeError as error:
        raise UsageError(f"MAX_EMAILS {error}") from None


def sheets_endpoint(environment: Mapping[str, str]) -> str | None:
    """SHEETS_API_ENDPOINT, checked like every endpoint setting (https; http only to this machine)."""
    from url_rules import UrlError, check_endpoint

    endpoint = environment.get("SHEETS_API_ENDPOINT", "").strip() or None
    try:
        return check_endpoint(endpoint, "SHEETS_API_ENDPOINT") if endpoint else None
    except UrlError as error:
        raise UsageError(str(error)) from None


def check_ticket_url(template: str | None) -> str | None:
    """--ticket-url: an http(s) URL with {ticket} where the id goes."""
    if template is None:
        return None
    from url_rules import WEB_PORTS, UrlError, parse_url

    if "{ticket}" not in template:
        raise UsageError("--ticket-url needs {ticket} where the ticket id goes, e.g. https://help.example.com/tickets/{ticket}")
    try:
        parse_url(template.replace("{ticket}", "1"), "--ticket-url", WEB_PORTS)
    except UrlError as error:
        raise UsageError(str(error)) from None
    return template.strip()


def check_test_address(args: argparse.Namespace) -> str | None:
    """--send-test-to: one address, in a live run (test mode sends nothing, not even a test)."""
    if args.send_test_to is None:
        return None
    from ticket_core import is_valid_email

    address = args.send_test_to.strip()
    if not is_valid_email(address):
        raise UsageError("--send-test-to takes one email address, e.g. --send-test-to you@example.com")
    if args.test_mode:
        raise UsageError("--send-test-to sends one real email: use it without -testmode yes")
    if args.preview_dir:
        raise UsageError("--send-test-to and --preview-dir do not go together")
    return address


def google_sheet_id(text: str) -> str:
    from google_api import sheet_id_from  # only when the report is a Google Sheet: it loads the Google client

    return sheet_id_from(text)


def choose_destination(args: argparse.Namespace, environment: Mapping[str, str]) -> tuple[Destination | None, Any]:
    """The one destination of this run and its own settings, checked before any traffic (a destination
    named is checked in test mode too): --send-with / SEND_WITH, else the one whose URL is given."""
    wanted = args.send_with or environment.get("SEND_WITH", "").strip().lower() or None
    destinations = all_destinations()
    if wanted:
        if wanted not in [destination.name for destination in destinations]:
            raise UsageError(f"SEND_WITH must be one of {', '.join(d.name for d in destinations)}")
        chosen = by_name(wanted)
    else:
        named = [destination for destination in destinations if destination.named(args, environment)]
        if len(named) > 1:
            raise UsageError("give one destination: " + " or ".join(f"{d.name} ({', '.join(d.env_keys[:1])})" for d in named)
                             + ", not both (or pick one with --send-with)")
        if not named:
            if not args.test_mode and not args.check:
                raise UsageError(f"no destination: pass {how_to_name_one()}; or use -testmode yes")
            return None, None
        chosen = named[0]
    try:
        return chosen, chosen.configure(args, environment)
    except SettingError as error:
        raise UsageError(str(error)) from None


def check_addresses(args: argparse.Namespace, environment: Mapping[str, str],
                    destination: Destination | None) -> tuple[Sender | None, tuple[str, ...]]:
    """--from (or SMTP_FROM), --reply-to and --cc as mailboxes; --from is required to send email directly."""
    from customer_message import Sender, parse_mailbox  # the email package only when addresses are given

    from_text = args.from_address or environment.get("SMTP_FROM") or ""
    if destination is not None and destination.needs_sender and not from_text.strip():
        raise UsageError(f"--from is required with {destination.name}: the mailbox the emails come from, e.g. "
                         "--from \"Support <support@example.com>\" (in run_settings.env: SMTP_FROM)")
    try:
        cc = tuple(parse_mailbox(text, "--cc")[1] for text in args.cc)
        reply_to = parse_mailbox(args.reply_to, "--reply-to") if args.reply_to else None
        if not from_text.strip():
            return None, cc
        return Sender(*parse_mailbox(from_text, "--from"), reply_to=reply_to), cc
    except ValueError as error:
        raise UsageError(str(error)) from None


def secrets_of(environment: Mapping[str, str], destination: Destination | None, destination_settings: Any,
               api_key: str | None, ping_url: str | None, credentials: Path | None = None,
               token: Path | None = None) -> list[str]:
    """Every value that must never reach the output or the log (the log filter hides them): each
    destination's secret keys as set, the chosen destination's own, the API key and the ping URL."""
    from url_rules import WEB_PORTS, url_secrets

    values = [environment.get(key, "") for d in all_destinations() for key in d.secret_keys]
    values += [api_key or "", *google_file_secrets(credentials, token)]
    if destination is not None:
        values += destination.secrets(destination_settings)
    if ping_url:
        values += url_secrets(ping_url, WEB_PORTS)
    return [value for value in values if len(value) >= 4]


GOOGLE_SECRET_FIELDS = ("client_secret", "refresh_token", "token", "private_key", "private_key_id")


def google_file_secrets(*paths: Path | None) -> list[str]:
    """What the Google files hold that must never be shown: the OAuth client's secret, the saved
    refresh and access tokens, a service account's key (read as JSON; a file that cannot be read
    hides nothing and is reported where it is used)."""
    import json

    values: list[str] = []
    for path in paths:
        try:
            data = json.loads(path.read_text(encoding="utf-8")) if path and path.is_file() else {}
        except (OSError, ValueError):
            continue
        sections = [data, *(value for value in data.values() if isinstance(value, dict))] if isinstance(data, dict) else []
        for section in sections:
            for field_name in GOOGLE_SECRET_FIELDS:
                value = section.get(field_name)
                if isinstance(value, str):
                    values += [value, *(line for line in value.splitlines() if len(line) > 40)]
    return values


def unknown_arguments(words: list[str]) -> str:
    """The usage error for arguments argparse did not know: the options by name, never a value (a
    mistyped option is often followed by a URL or a key)."""
    names = [word.split("=", 1)[0] for word in words if word.startswith("-") and len(word) > 1]
    values = len(words) - len(names) + sum("=" in word for word in words if word.startswith("-"))
    shown = f"unknown option{'s' if len(names) > 1 else ''} {', '.join(names)}" if names else "unexpected arguments"
    hidden = f" ({values} value{'s' if values > 1 else ''} not shown)" if values else ""
    return f"{shown}{hidden} (see --help; options use dashes, e.g. --webhook-url or -webhook_url)"


def ping_url_and_test_mode(argv: list[str]) -> tuple[str, bool]:
    """--ping-url (or PING_URL) and whether test mode was asked for, read from a command line that
    did not parse as a whole."""
    url, test_mode = read_environment().get("PING_URL", "").strip(), False
    for index, word in enumerate(argv):
        name, equals, value = word.partition("=")
        if not equals and index + 1 < len(argv):
            value = argv[index + 1]
        if name == "--ping-url":
            url = value.strip()
        elif name in ("-testmode", "--testmode"):
            test_mode = value.strip().lower() in TRUE_WORDS
        elif name == "--send-test-to":  # a test send pings nothing either
            test_mode = True
    return url, test_mode


def absolute(path: str | None) -> Path | None:
    """A path from the command line, relative to the current directory as usual."""
    return Path(path).expanduser().absolute() if path else None


def parse_columns(specs: list[str]) -> dict[str, str]:
    columns = {}
    for spec in specs:
        role, sep, header = spec.partition("=")
        role = role.strip().lower().replace("-", "_")
        if not sep or not header.strip():
            raise UsageError(f"--column takes ROLE=HEADER, got {spec!r}")
        if role not in ROLES:
            raise UsageError(f"--column: unknown role {role!r}; roles are {', '.join(ROLES)}")
        columns[role] = header.strip()
    return columns


def load_template(path: Path, option: str) -> Template:
    """A text or HTML template, its placeholders checked now rather than at the first customer."""
    try:
        template = Template(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"cannot read {option} {path}: {getattr(error, 'strerror', None) or error}") from None
    try:
        check_body_template(template, HTML_TEMPLATE_FIELDS if option == "--html-template" else TEMPLATE_FIELDS)
    except ValueError as error:
        raise UsageError(f"{option} {path}: {error}") from None
    return template
