"""Weekly job: email each customer, through a webhook, the support tickets closed since the last run.

Read the report, select the newly closed tickets, group them per customer, send one webhook
call per customer, and remember what was sent in last_run_date.json.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import sys
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

from cli_options import UsageError, parse_args
from payloads import build_payload, webhook_id
from run_output import FILE_ONLY, format_customer_table, format_summary, setup_logging
from state_file import StateError, StateWriter, acquire_lock, load_state, save_state
from ticket_core import (
    Customer,
    ReportError,
    RunState,
    SelectOptions,
    drop_already_notified,
    finish_state,
    group_by_customer,
    next_last_run_date,
    select_closed_tickets,
    split_by_weekly_guard,
)

__version__ = "1.0.0"
SCRIPT_DIR = Path(__file__).resolve().parent
log = logging.getLogger("ticket_notifier")


class ConfigError(Exception):
    """A setting, credential or file the run cannot work with: exit 2 before anything is sent."""


@dataclass
class RunReport:
    """What the run did, for the summary."""
    rows_read: int = 0
    new_tickets: int = 0
    already_notified: int = 0
    skipped: dict = field(default_factory=dict)
    notified: list[Customer] = field(default_factory=list)
    would_notify: list[Customer] = field(default_factory=list)
    deferred: list[Customer] = field(default_factory=list)
    failed: list[tuple[Customer, str]] = field(default_factory=list)
    not_attempted: list[Customer] = field(default_factory=list)
    old_last_run_date: date | None = None
    new_last_run_date: date | None = None
    test_mode: bool = False
    stop_reason: str = ""


def main(argv: list[str] | None = None, hard_exit: bool = False) -> int:
    """The command line; the exit code. With `hard_exit`, a finished run ends the process at once."""
    for stream in (sys.stdout, sys.stderr):  # a name the console's code page lacks must not end the run
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    try:
        args = parse_args(argv, SCRIPT_DIR, __version__)
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        setup_logging(args.log_file, args.verbose, args.quiet)
    except OSError as error:
        print(f"error: cannot write the log file {args.log_file}: {error.strerror or error}", file=sys.stderr)
        return 2
    try:
        report = run(args)
    except (ConfigError, ReportError, StateError) as error:
        log.error("%s", error)
        return 2
    except KeyboardInterrupt:
        log.error("interrupted; what was delivered is recorded, the rest stays pending")
        return 2
    except Exception as error:  # a bug, not a user's mistake: still one line, the details in the log
        log.debug("unexpected error", exc_info=True)
        log.error("unexpected %s: %s; what was delivered is recorded (details with -v or in --log-file)",
                  type(error).__name__, error)
        return 2
    if report.test_mode:
        print(format_customer_table(report.would_notify, "Would email" if report.would_notify else "Nobody to email"))
    elif report.notified and not args.quiet:
        print(format_customer_table(report.notified, "Emailed"))
    summary = format_summary(report)
    print("\n" + summary)
    for line in summary.splitlines():
        log.info("%s", line, extra=FILE_ONLY)
    if report.stop_reason:
        log.error("%s", report.stop_reason)
    exit_code = 2 if report.stop_reason else 1 if report.failed or report.not_attempted else 0
    if hard_exit:
        exit_now(exit_code)
    return exit_code


def run(args) -> RunReport:
    """The weekly story: read, select, group, send, remember."""
    now = datetime.now()
    today = now.date()
    lock = None if args.test_mode else acquire_lock(args.state_file)
    try:
        state = starting_state(args, today)
        start = state.last_run_date
        with garbage_collector_paused():
            selection = select_closed_tickets(read_rows(args), start, now, SelectOptions(
                closed_statuses=args.closed_statuses, date_formats=args.date_formats, columns=args.columns))
            customers = group_by_customer(selection.by_email)
        for warning in selection.warnings:
            log.warning("%s", warning)
        for row_number, reason in selection.skipped_rows:
            log.info("row %d skipped: %s", row_number, reason)
        owed, already = drop_already_notified(customers, state.notified)
        to_send, deferred = split_by_weekly_guard(owed, state.last_emailed, today, args.min_days_between_emails)
        report = RunReport(rows_read=selection.rows_read, new_tickets=selection.ticket_count - already,
                           already_notified=already, skipped=dict(selection.skipped), deferred=deferred,
                           old_last_run_date=start, test_mode=args.test_mode)
        if args.test_mode:
            report.would_notify = to_send
            report.new_last_run_date = next_last_run_date(start, customers, deferred)
            return report
        state = send_all(args, to_send, state, today, report)
        pending = deferred + [customer for customer, _ in report.failed] + report.not_attempted
        report.new_last_run_date = next_last_run_date(start, customers, pending)
        save_state(args.state_file, finish_state(state, report.new_last_run_date, today,
                                                 args.min_days_between_emails))
        return report
    finally:
        if lock is not None:
            lock.release()


def starting_state(args, today: date) -> RunState:
    """The saved state, its window starting at --since when given; 18 months back for a first run."""
    stored = load_state(args.state_file)
    if stored is None:
        log.info("no state file at %s yet: starting from 18 months ago", args.state_file)
        stored = RunState(last_run_date=months_before(today, 18))
    return RunState(args.since or stored.last_run_date, stored.notified, stored.last_emailed)


@contextmanager
def garbage_collector_paused():
    """Reading a large report makes hundreds of thousands of small objects and no reference
    cycles; the cyclic collector would rescan them again and again (a third of the run).
    Afterwards they are frozen, so later collections skip them too."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was_enabled:
            gc.enable()


def read_rows(args):
    """The report's rows from a file or from Google Sheets (imported only when needed: it is slow)."""
    if args.report:
        from report_readers import read_report
        return read_report(args.report)
    import google_api
    try:
        return google_api.read_sheet_rows(args.sheet_id, args.range, credentials_path=args.credentials,
                                          token_path=args.token, api_key=args.api_key)
    except google_api.GoogleSetupError as error:
        raise ConfigError(str(error)) from None


def send_all(args, customers: list[Customer], state: RunState, today: date, report: RunReport) -> RunState:
    """Deliver one call per customer; save the state after every delivery, before the next call."""
    from webhook_sender import WebhookConfigError, WebhookSender, deliver_all

    if not customers:
        return state
    try:
        sender = WebhookSender(args.webhook_url, secret=os.environ.get("WEBHOOK_SECRET"),
                               authorization=os.environ.get("WEBHOOK_AUTHORIZATION"),
                               timeout=args.timeout, retries=args.retries, pool_size=args.workers)
    except WebhookConfigError as error:
        raise ConfigError(str(error)) from None
    writer = StateWriter(args.state_file, state)

    def message_for(customer: Customer) -> tuple[str, bytes]:
        payload = build_payload(customer, args.subject, args.body_template)
        return webhook_id(customer), json.dumps(payload, ensure_ascii=False).encode("utf-8")

    def remember(customer: Customer) -> None:
        writer.record(customer, today)
        log.info("delivered to %s (%s)", customer.email, ", ".join(customer.ticket_ids))

    progress = progress_printer() if sys.stderr.isatty() and len(customers) >= 20 and not args.quiet else None
    log.info("sending %d notification(s) to %s with %d worker(s)", len(customers), sender.host, args.workers)
    try:
        results = deliver_all(sender, customers, args.workers, message_for, remember,
                              progress or (lambda done, total: None))
    finally:
        sender.close()
        if progress:
            print(file=sys.stderr)
    report.notified = results.delivered
    report.failed = results.failed
    report.not_attempted = results.not_attempted
    report.stop_reason = results.stop_reason
    for customer, detail in report.failed:
        log.warning("not delivered to %s: %s; it stays pending for the next run", customer.email, detail)
    return writer.state


def progress_printer():
    def show(done: int, total: int) -> None:
        print(f"\rsent {done}/{total}", end="", file=sys.stderr, flush=True)
    return show


def months_before(day: date, months: int) -> date:
    """The same day `months` earlier, or the last day of that month when it is shorter."""
    year, month_index = divmod(day.year * 12 + day.month - 1 - months, 12)
    first_of_month = date(year, month_index + 1, 1)
    first_of_next = date(year + (month_index + 1) // 12, (month_index + 1) % 12 + 1, 1)
    return first_of_month.replace(day=min(day.day, (first_of_next - first_of_month).days))


def exit_now(exit_code: int) -> None:
    """End the process without freeing the run's objects one by one, which takes a twentieth of
    a million-row run and gives nothing back (mypy does the same). Only when all is written: the
    state is saved and the lock released inside run(), the output and the log are flushed here,
    and no delivery thread is left."""
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    if threading.active_count() == 1:
        os._exit(exit_code)
    sys.exit(exit_code)


if __name__ == "__main__":
    try:
        sys.exit(main(hard_exit=True))
    except BrokenPipeError:  # the output was piped into `head` or similar, which stopped reading
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)
