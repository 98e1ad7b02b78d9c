"""The command line of process_ticket.py: the seed's single-dash spellings and the full option set."""

from __future__ import annotations

import argparse
import os
import re
from datetime import date
from pathlib import Path
from string import Template

from payloads import check_body_template
from report_dates import DEFAULT_DATE_FORMATS, check_day_range, parse_day
from ticket_core import ROLES

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
                     description="Email customers, through a webhook, the support tickets closed since the last run.")
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
    send.add_argument("-testmode", "--testmode", dest="test_mode", type=yes_no, default=False, metavar="yes|no",
                      help="yes: show what would be sent, send nothing, write nothing (default: no)")
    send.add_argument("--min-days-between-emails", type=bounded(int, 0, 3650), default=7, metavar="N",
                      help="email a customer at most once in N calendar days; 0 disables (default: 7)")
    send.add_argument("--workers", type=bounded(int, 1, 64), default=4, metavar="N",
                      help="concurrent webhook calls (default: 4)")
    send.add_argument("--timeout", type=bounded(float, 0.1, 600), default=30, metavar="SECONDS",
                      help="per webhook request (default: 30)")
    send.add_argument("--retries", type=bounded(int, 0, 10), default=3, metavar="N",
                      help="extra attempts on retryable failures (default: 3)")
    send.add_argument("--allow-http", action="store_true", help="allow plain http to a non-loopback host")
    send.add_argument("--subject", metavar="TEXT", help="email subject")
    send.add_argument("--body-template", metavar="PATH",
                      help="string.Template file: $first_name $full_name $ticket_count $ticket_lines")
    files = parser.add_argument_group("files")
    files.add_argument("--state-file", metavar="PATH", help="default: last_run_date.json next to this script")
    files.add_argument("--credentials", metavar="PATH", help="Google credential file (default: credential.json)")
    files.add_argument("--token", metavar="PATH", help="Google OAuth token file (default: token.json)")
    files.add_argument("--api-key", metavar="KEY", help="Google API key for link-shared sheets (default: $GOOGLE_API_KEY)")
    files.add_argument("--log-file", metavar="PATH", help="also log to this file (rotated)")
    output = parser.add_argument_group("output")
    output.add_argument("-q", "--quiet", action="store_true", help="only errors besides the summary")
    output.add_argument("-v", "--verbose", action="store_true", help="more detail in the log")
    output.add_argument("--version", action="version", version=f"%(prog)s {version}")
    return parser


def parse_args(argv: list[str] | None, script_dir: Path, version: str) -> argparse.Namespace:
    """Parsed and checked options, paths made absolute. Raises UsageError."""
    args = build_parser(version).parse_args(argv)
    if bool(args.sheet_id) == bool(args.report):
        raise UsageError("give exactly one report source: -sheetid ID or --report PATH")
    if args.sheet_id:
        args.sheet_id = sheet_id_from(args.sheet_id)
        args.range = args.range or "Sheet1"
    args.report = absolute(args.report)
    if args.report and args.range and args.report.suffix.lower() not in (".xlsx", ".xlsm"):
        raise UsageError("-range picks a sheet of a Google Sheet or an .xlsx workbook; a CSV file has none: drop -range")
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
    if not all("%" in fmt for fmt in args.date_formats):
        raise UsageError("--date-format takes a strptime format such as %d/%m/%Y")
    args.columns = parse_columns(args.column)
    if args.subject is not None and not args.subject.isprintable():
        raise UsageError("--subject must be one line of printable text")
    args.body_template = load_body_template(absolute(args.body_template)) if args.body_template else None
    args.secrets = secrets_of(args)
    check_webhook(args)
    return args


def secrets_of(args: argparse.Namespace) -> list[str]:
    """Every value that must never reach the output or the log (the log filter hides them)."""
    from url_rules import UrlError, parse_url

    values = [os.environ.get(name, "") for name in ("WEBHOOK_SECRET", "WEBHOOK_AUTHORIZATION")]
    values += [args.api_key or ""]
    values += os.environ.get("WEBHOOK_AUTHORIZATION", "").split()[1:]  # the token after "Bearer"
    if args.webhook_url:
        try:
            values += parse_url(args.webhook_url, "", {"http": 80, "https": 443}).secrets()
        except UrlError:
            values.append(args.webhook_url)
    return [value for value in values if len(value) >= 4]


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


def load_body_template(path: Path) -> Template:
    try:
        template = Template(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"cannot read --body-template {path}: {getattr(error, 'strerror', None) or error}") from None
    try:
        check_body_template(template)
    except ValueError as error:
        raise UsageError(f"--body-template {path}: {error}") from None
    return template


def check_webhook(args: argparse.Namespace) -> None:
    """The webhook settings, checked before any traffic: a URL given is checked in test mode too."""
    from webhook_route import WebhookConfigError, check_authorization, check_webhook_url, parse_secret

    if not args.webhook_url:
        if args.test_mode:
            return
        raise UsageError("no webhook URL: pass -webhook_url URL or set WEBHOOK_URL (or use -testmode yes)")
    try:
        check_webhook_url(args.webhook_url, args.allow_http)
        if os.environ.get("WEBHOOK_SECRET"):
            parse_secret(os.environ["WEBHOOK_SECRET"])
        check_authorization(os.environ.get("WEBHOOK_AUTHORIZATION", ""))
    except WebhookConfigError as error:
        raise UsageError(str(error)) from None
