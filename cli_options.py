"""The command line of process_ticket.py: the seed's single-dash spellings and the full option set."""

from __future__ import annotations

import argparse
import os
import re
from datetime import date
from pathlib import Path
from string import Template
from typing import TYPE_CHECKING

from payloads import HTML_TEMPLATE_FIELDS, TEMPLATE_FIELDS, Content, check_body_template
from report_dates import DEFAULT_DATE_FORMATS, check_day_range, parse_day
from ticket_core import ROLES

if TYPE_CHECKING:
    from email_message import Sender

TRUE_WORDS, FALSE_WORDS = ("yes", "true", "1"), ("no", "false", "0")
SHEET_URL_ID = re.compile(r"/spreadsheets/d/([A-Za-z0-9_-]+)")


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
                     description="Email customers, through a webhook or SMTP, the support tickets closed since the last run.")
    source = parser.add_argument_group("report")
    source.add_argument("-sheetid", "--sheet-id", dest="sheet_id", metavar="ID",
                        help="Google spreadsheet id or full sheet URL")
    source.add_argument("-range", "--range", dest="range", metavar="R",
                        help="A1 range of a Google Sheet (default: Sheet1), or the sheet of an .xlsx report (default: the first)")
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
    send.add_argument("-webhook_url", "--webhook-url", dest="webhook_url", metavar="URL",
                      help="the email webhook (default: $WEBHOOK_URL)")
    send.add_argument("--smtp-url", metavar="URL",
                      help="send email over SMTP instead: smtp://[user@]host[:587] (STARTTLS) or smtps://[user@]host[:465] "
                           "(default: $SMTP_URL); password in $SMTP_PASSWORD")
    send.add_argument("--from", dest="from_address", metavar="ADDRESS",
                      help="sender, 'Name <address>' or an address; required with SMTP (default: $SMTP_FROM)")
    send.add_argument("--reply-to", metavar="ADDRESS", help="Reply-To of the emails")
    send.add_argument("--cc", action="append", default=[], metavar="ADDRESS",
                      help="copy every email to this address; repeatable (also the webhook payload's cc_address)")
    send.add_argument("--max-per-minute", type=bounded(float, 0.1, 100000), metavar="N",
                      help="at most N messages a minute, evenly spaced (default: no limit)")
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
    send.add_argument("--allow-http", action="store_true", help="allow plain http to a non-loopback host")
    send.add_argument("--subject", metavar="TEXT", help="email subject")
    send.add_argument("--body-template", metavar="PATH",
                      help="string.Template file: $first_name $full_name $ticket_count $ticket_lines")
    send.add_argument("--html-template", metavar="PATH",
                      help="HTML body, string.Template: the same placeholders, HTML-escaped, and $ticket_list")
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


def parse_args(argv: list[str] | None, script_dir: Path, version: str) -> argparse.Namespace:
    """Parsed and checked options, paths made absolute. Raises UsageError."""
    args, unknown = build_parser(version).parse_known_args(argv)
    if unknown:
        raise UsageError(unknown_arguments(unknown))
    if bool(args.sheet_id) == bool(args.report):
        raise UsageError("give exactly one report source: -sheetid ID or --report PATH")
    if args.sheet_id:
        args.sheet_id = sheet_id_from(args.sheet_id)
        args.range = args.range or "Sheet1"
    args.report = absolute(args.report)
    args.notes = []  # warnings about the settings, logged once logging is set up
    if args.report and args.range and args.report.suffix.lower() not in (".xlsx", ".xlsm"):
        args.notes.append(f"-range {args.range!r} is ignored: it picks a sheet of a Google Sheet or an .xlsx "
                          "workbook, and a CSV file has none")
        args.range = None
    # The real path (links resolved): the lock, the writes and rejected.csv all follow the one file.
    args.state_file = (absolute(args.state_file) or script_dir / "last_run_date.json").resolve()
    args.credentials = absolute(args.credentials) or script_dir / "credential.json"
    args.token = absolute(args.token) or script_dir / "token.json"
    args.log_file = absolute(args.log_file)
    args.api_key = args.api_key or os.environ.get("GOOGLE_API_KEY") or None
    args.webhook_url = (args.webhook_url or os.environ.get("WEBHOOK_URL") or "").strip() or None
    args.closed_statuses = tuple(status.strip() for status in args.closed_status.split(",") if status.strip())
    if not args.closed_statuses:
        raise UsageError("--closed-status needs at least one status")
    args.date_formats = tuple(args.date_format or DEFAULT_DATE_FORMATS)
    if not all("%" in fmt for fmt in args.date_format or ()):
        raise UsageError("--date-format takes a strptime format such as %d/%m/%Y")
    args.columns = parse_columns(args.column)
    if args.subject is not None and not args.subject.isprintable():
        raise UsageError("--subject must be one line of printable text")
    body_template = load_template(absolute(args.body_template), "--body-template") if args.body_template else None
    html_template = load_template(absolute(args.html_template), "--html-template") if args.html_template else None
    args.preview_dir = absolute(args.preview_dir)
    if args.preview_dir and not args.test_mode:
        raise UsageError("--preview-dir only goes with -testmode yes (it shows the emails instead of sending them)")
    args.smtp_url = (args.smtp_url or os.environ.get("SMTP_URL") or "").strip() or None
    args.sender, cc = check_addresses(args)
    args.ping_url = (args.ping_url or os.environ.get("PING_URL") or "").strip() or None
    if args.ping_url:
        from heartbeat import check_ping_url
        from url_rules import UrlError

        try:
            check_ping_url(args.ping_url)
        except UrlError as error:
            raise UsageError(str(error)) from None
    args.content = Content(args.subject, body_template, html_template, cc)
    args.secrets = secrets_of(args)
    check_destination(args)
    if not args.test_mode:
        from url_rules import unusable_ca_bundle

        if problem := unusable_ca_bundle():
            raise UsageError(problem)
    return args


def check_addresses(args: argparse.Namespace) -> tuple[Sender | None, tuple[str, ...]]:
    """--from (or SMTP_FROM), --reply-to and --cc as mailboxes; --from is required with SMTP."""
    from email_message import Sender, parse_mailbox  # the email package only when addresses are given

    from_text = args.from_address or os.environ.get("SMTP_FROM") or ""
    if args.smtp_url and not from_text.strip():
        raise UsageError("--from is required with --smtp-url (the sender, e.g. \"Support <support@example.com>\"; "
                         "or set SMTP_FROM)")
    try:
        cc = tuple(parse_mailbox(text, "--cc")[1] for text in args.cc)
        reply_to = parse_mailbox(args.reply_to, "--reply-to") if args.reply_to else None
        if not from_text.strip():
            return None, cc
        return Sender(*parse_mailbox(from_text, "--from"), reply_to=reply_to), cc
    except ValueError as error:
        raise UsageError(str(error)) from None


def secrets_of(args: argparse.Namespace) -> list[str]:
    """Every value that must never reach the output or the log (the log filter hides them)."""
    from url_rules import SMTP_PORTS, WEB_PORTS, UrlError, parse_url

    values = [os.environ.get(name, "") for name in ("WEBHOOK_SECRET", "WEBHOOK_AUTHORIZATION", "SMTP_PASSWORD",
                                                     "SMTP_USERNAME")]
    values += [args.api_key or ""]
    values += os.environ.get("WEBHOOK_AUTHORIZATION", "").split()[1:]  # the token after "Bearer"
    for url, schemes in ((args.webhook_url, WEB_PORTS), (args.smtp_url, SMTP_PORTS), (args.ping_url, WEB_PORTS)):
        if url:
            try:
                values += parse_url(url, "", schemes).secrets()
            except UrlError:
                values.append(url)
    return [value for value in values if len(value) >= 4]


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
    url, test_mode = os.environ.get("PING_URL", "").strip(), False
    for index, word in enumerate(argv):
        name, equals, value = word.partition("=")
        if not equals and index + 1 < len(argv):
            value = argv[index + 1]
        if name == "--ping-url":
            url = value.strip()
        elif name in ("-testmode", "--testmode"):
            test_mode = value.strip().lower() in TRUE_WORDS
    return url, test_mode


def sheet_id_from(text: str) -> str:
    """The spreadsheet id, also when the whole URL of the sheet was pasted."""
    match = SHEET_URL_ID.search(text)
    return match.group(1) if match else text.strip()


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


def check_destination(args: argparse.Namespace) -> None:
    """One destination per live run, its settings checked before any traffic (a URL given is
    checked in test mode too)."""
    if args.webhook_url and args.smtp_url:
        raise UsageError("give one destination: a webhook (-webhook_url / WEBHOOK_URL) or SMTP (--smtp-url / SMTP_URL), "
                         "not both")
    if not args.webhook_url and not args.smtp_url and not args.test_mode and not args.check:
        raise UsageError("no destination: pass -webhook_url URL (or set WEBHOOK_URL) or --smtp-url URL (or set "
                         "SMTP_URL), or use -testmode yes")
    if args.smtp_url:
        check_smtp(args)
    elif args.webhook_url:
        check_webhook(args)


def check_smtp(args: argparse.Namespace) -> None:
    from smtp_route import SmtpConfigError, check_smtp_url

    try:
        check_smtp_url(args.smtp_url, os.environ.get("SMTP_USERNAME"), os.environ.get("SMTP_PASSWORD"))
    except SmtpConfigError as error:
        raise UsageError(str(error)) from None


def check_webhook(args: argparse.Namespace) -> None:
    from webhook_route import WebhookConfigError, check_authorization, check_webhook_url, parse_secret

    try:
        check_webhook_url(args.webhook_url, args.allow_http)
        if os.environ.get("WEBHOOK_SECRET"):
            parse_secret(os.environ["WEBHOOK_SECRET"])
        check_authorization(os.environ.get("WEBHOOK_AUTHORIZATION", ""))
    except WebhookConfigError as error:
        raise UsageError(str(error)) from None
