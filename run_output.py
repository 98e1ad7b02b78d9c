"""What a run shows people: the customer table, the closing summary, and the log setup."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from operator import attrgetter
from pathlib import Path

from report_dates import format_day
from ticket_core import SKIP_REASONS, Customer

LOGGER_NAME = "ticket_notifier"
LOG_FILE_BYTES = 1_000_000
LOG_FILE_BACKUPS = 5
FILE_ONLY = {"file_only": True}  # extra= for records already printed on stdout (the summary)
_ticket_id = attrgetter("ticket_id")


def printable(text: str) -> str:
    """A report value as it may appear in output and logs: line breaks, terminal escapes and other
    control or invisible characters shown as escapes, so one line stays one line."""
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else ascii(char)[1:-1] for char in text)


class _StderrFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        prefix = "" if record.levelno < logging.WARNING else f"{record.levelname.lower()}: "
        return prefix + record.getMessage()


class _SafeRecords(logging.Filter):
    """Every record leaves as one line with no secret: the secrets given are replaced by ***, and
    line breaks, terminal escapes and other control characters (from a report's names and ids,
    or a receiver's answer) are shown as escapes."""

    def __init__(self, secrets: Sequence[str]) -> None:
        super().__init__()
        self.secrets = sorted(set(secrets), key=len, reverse=True)  # a whole URL before its path

    def filter(self, record: logging.LogRecord) -> bool:
        lines = [record.getMessage()]
        if record.exc_info:  # a traceback, line by line, with the same care
            lines += logging.Formatter().formatException(record.exc_info).splitlines()
            record.exc_info, record.exc_text = None, None
        record.msg, record.args = "\n".join(map(self.safe, lines)), None
        return True

    def safe(self, line: str) -> str:
        for secret in self.secrets:
            line = line.replace(secret, "***")
        return printable(line)


class ErrorLines(logging.Handler):
    """The error lines of a run, as shown (secrets hidden): the heartbeat's end ping carries them when
    the run stopped before its summary."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"error: {record.getMessage()}")

    def text(self) -> str:
        return "\n".join(self.lines)


def setup_logging(log_file: Path | None, verbose: bool, quiet: bool, secrets: Sequence[str] = ()) -> logging.Logger:
    """Our own logger only: library loggers (urllib3, googleapiclient) would print request paths."""
    logger = logging.getLogger(LOGGER_NAME)
    LOG_INCOMPLETE["written"] = True   # a new run's log starts whole
    logger.handlers.clear()
    logger.filters.clear()
    logger.addFilter(_SafeRecords(secrets))
    logger.propagate = False
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.ERROR if quiet else logging.INFO if verbose else logging.WARNING)
    console.setFormatter(_StderrFormatter())
    console.addFilter(lambda record: not getattr(record, "file_only", False))
    logger.addHandler(console)
    if log_file:
        _QuietWhenFull = _file_handler_class()  # noqa: N806 (a class; only here: it slows every start by a tenth)

        log_file.parent.mkdir(parents=True, exist_ok=True)
        to_file = _QuietWhenFull(log_file, maxBytes=LOG_FILE_BYTES, backupCount=LOG_FILE_BACKUPS, encoding="utf-8")
        to_file.setLevel(logging.DEBUG if verbose else logging.INFO)
        to_file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logger.addHandler(to_file)
    logger.setLevel(min(handler.level for handler in logger.handlers))  # what no handler takes is not even formatted
    # No library's own record reaches the terminal through Python's last-resort handler (msal logs an
    # identity platform's raw answer, which may echo the client secret): the root keeps them all.
    root = logging.getLogger()
    if not any(isinstance(handler, logging.NullHandler) for handler in root.handlers):
        root.addHandler(logging.NullHandler())
    return logger


LOG_INCOMPLETE = {"written": True}   # False once the log file stopped taking writes (a full disk)


def log_is_complete() -> bool:
    return LOG_INCOMPLETE["written"]


def _file_handler_class():
    from logging.handlers import RotatingFileHandler

    class QuietWhenFull(RotatingFileHandler):
        """The log file: when it stops taking writes (a full disk), one warning on stderr instead of a
        traceback per record; the run goes on and its summary says the log is incomplete."""

        def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 (logging's name)
            if LOG_INCOMPLETE["written"]:
                LOG_INCOMPLETE["written"] = False
                error = sys.exc_info()[1]
                print(f"warning: the log file {self.baseFilename} stopped taking writes "
                      f"({getattr(error, 'strerror', None) or error}); the run goes on, the log is incomplete",
                      file=sys.stderr)
    return QuietWhenFull


def format_table(headers: Sequence[str], columns: Sequence[Sequence[str]], indent: str = "  ") -> str:
    """Columns left-aligned under their headers (the last one unpadded)."""
    widths = [max(len(header), max(map(len, column), default=0)) for header, column in zip(headers, columns, strict=True)]
    line_format = indent + "".join(f"{{:<{width}}}  " for width in widths[:-1]) + "{}"
    lines = [line_format.format(*headers), line_format.format(*("-" * width for width in widths))]
    return "\n".join(lines + list(map(line_format.format, *columns)))


def only_printable(texts: list[str]) -> list[str]:
    """`texts` with line breaks and escapes shown as such (checked in C first: they are rare)."""
    return texts if all(map(str.isprintable, texts)) else list(map(printable, texts))


def format_customer_table(customers: Sequence[Customer], title: str) -> str:
    if not customers:
        return f"{title}."
    names = only_printable([customer.full_name or "-" for customer in customers])
    emails = [customer.email for customer in customers]
    ticket_ids = only_printable([", ".join(map(_ticket_id, customer.tickets)) for customer in customers])
    noun = "customer" if len(customers) == 1 else "customers"
    return f"{title} {len(customers)} {noun}:\n" + format_table(("Customer", "Email", "Tickets"), (names, emails, ticket_ids))


def format_status_counts(counts, most: int = 5) -> str:
    """The statuses that did not count as closed, most frequent first, so a 'Solved' that needs
    --closed-status shows."""
    shown = [f"{printable(str(status).strip()) or '(blank)'} {count}" for status, count in counts.most_common(most)]
    rest = len(counts) - most
    return ", ".join(shown) + (f" and {rest} more" if rest > 0 else "")


def format_summary(report) -> str:
    """The closing lines every run prints, test mode or live, quiet or not."""
    old = format_day(report.old_last_run_date) if report.old_last_run_date else "-"
    new = format_day(report.new_last_run_date) if report.new_last_run_date else old
    skipped_total = sum(report.skipped.values())
    reasons = ", ".join(f"{reason} {report.skipped[reason]}" for reason in SKIP_REASONS if report.skipped.get(reason))
    listed = report.rejected_csv or "rejected.csv"
    held = f", {report.held_rejected} rejected earlier (see {listed})" if report.held_rejected else ""
    rows = [
        ("Rows read", str(report.rows_read)),
        (f"Closed since {old}", f"{report.new_tickets} new, {report.already_notified} already notified{held}"),
    ]
    if report.test_mode:
        rows.append(("Customers to email", f"{len(report.would_notify)} (test mode: nothing sent)"))
    else:
        rows.append(("Customers notified", str(len(report.notified))))
    rows += [
        ("Customers deferred", f"{len(report.deferred)}" + (" (emailed too recently; they wait)" if report.deferred else "")),
        ("Customers failed", f"{len(report.failed)}" + (" (pending for the next run)" if report.failed else "")),
    ]
    rows.append(("Customers rejected", f"{len(report.rejected)}" + (f" (refused for good; see {listed})"
                                                                    if report.rejected else "")))
    if report.bounced:
        rows.append(("Bounced since the last run", f"{len(report.bounced)} ("
                     + ", ".join(printable(address) for address, _, _ in report.bounced[:5])
                     + (", ..." if len(report.bounced) > 5 else "") + f"; see {listed})"))
    if report.waiting:
        rows.append(("Customers waiting", f"{len(report.waiting)} (past --max-emails {report.max_emails}; they go "
                                          "out in the next run, oldest ticket first)"))
    if report.not_attempted:
        rows.append(("Customers not attempted", f"{len(report.not_attempted)} (run stopped; pending)"))
    rows.append(("Rows skipped", f"{skipped_total}" + (f" ({reasons})" if reasons else "")))
    if report.held_before:
        rows.append(("Held from earlier runs", f"{report.held_before} ({report.held_back} usable now)"))
    if report.held_waiting:
        rows.append(("Held for later runs", f"{report.held_waiting} (fix their address or date; emailed once fixed, "
                                            "kept 90 days)"))
    if report.other_statuses:
        rows.append(("Not counted as closed", format_status_counts(report.other_statuses)))
    if report.test_send:
        rows.append(("Test email", report.test_send))
    if report.previews is not None:
        rows.append(("Previews", f"{report.previews} .eml file(s) in {report.preview_dir}"))
    if report.first_run:
        rows.append(("First run", "no state file, so this looked 18 months back; "
                                  "the first live run needs --since DD/MM/YYYY"))
    saved = " (test mode: not saved)" if report.test_mode else " (test send: not saved)" if report.test_send else ""
    rows.append(("last_run_date", f"{old} -> {new}{saved}"))
    if not log_is_complete():
        rows.append(("Log file", "incomplete: it stopped taking writes during the run (a full disk?)"))
    width = max(len(label) for label, _ in rows)
    title = "Summary (TEST MODE)" if report.test_mode else "Summary"
    return "\n".join([title, *(f"  {label.ljust(width)}  {value}" for label, value in rows)])
