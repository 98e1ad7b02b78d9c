"""Weekly job: email each customer the support tickets closed since the last run.

Read the report, select the newly closed tickets, group them per customer, send one message per
customer to the destination (destinations.py: a webhook, SMTP, Gmail or Microsoft 365), and
remember what was sent in last_run_date.json.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import signal
import sys
import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from pathlib import Path

from cli_options import UsageError, parse_args
from run_output import FILE_ONLY, ErrorLines, format_customer_table, format_summary, setup_logging
from state_file import (
    StateError,
    StateWriter,
    acquire_lock,
    append_rejected_csv,
    load_state,
    prepare_state_folder,
    rejected_csv_cells,
    rejected_csv_path,
    save_state,
)
from ticket_core import (
    Customer,
    ReportError,
    RunState,
    Selection,
    SelectOptions,
    cap_emails,
    drop_already_notified,
    drop_rejected,
    finish_state,
    group_by_customer,
    held_back_count,
    held_from,
    merged_recalls,
    next_held,
    next_last_run_date,
    recalls_of_held,
    recalls_of_rejected,
    refuse_unreadable_column,
    select_closed_tickets,
    split_by_weekly_guard,
    still_held,
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
    held_rejected: int = 0
    held_back: int = 0       # tickets held by earlier runs whose rows are usable now
    held_waiting: int = 0    # held tickets whose rows still need fixing
    held_before: int = 0     # tickets held by earlier runs, at the start of this one
    skipped: dict = field(default_factory=dict)
    other_statuses: Counter = field(default_factory=Counter)
    notified: list[Customer] = field(default_factory=list)
    would_notify: list[Customer] = field(default_factory=list)
    deferred: list[Customer] = field(default_factory=list)
    waiting: list[Customer] = field(default_factory=list)   # past --max-emails: they go out in the next run
    bounced: list[tuple[str, list[str], str]] = field(default_factory=list)  # reports read this run: (address, ids, reason)
    max_emails: int | None = None
    failed: list[tuple[Customer, str]] = field(default_factory=list)
    rejected: list[tuple[Customer, str]] = field(default_factory=list)
    not_attempted: list[Customer] = field(default_factory=list)
    old_last_run_date: date | None = None
    new_last_run_date: date | None = None
    test_mode: bool = False
    first_run: bool = False  # no state file and no --since: test mode looked 18 months back
    previews: int | None = None  # .eml files written by --preview-dir
    test_send: str = ""          # what --send-test-to did
    preview_dir: Path | None = None
    rejected_csv: Path | None = None  # where refusals are listed for a person (beside the state file)
    stop_reason: str = ""
    stop_exit_code: int = 0

    @property
    def exit_code(self) -> int:
        if self.stop_exit_code == 2:
            return 2
        return 1 if self.failed or self.not_attempted or self.rejected or self.bounced or self.stop_reason else 0


INTERRUPTED = "interrupted; what was delivered is recorded, the rest stays pending"


def main(argv: list[str] | None = None, hard_exit: bool = False) -> int:
    """The command line; the exit code. With `hard_exit`, a finished run ends the process at once.
    Ctrl+C and SIGTERM (a scheduler stopping the task) end any step as "interrupted", exit 2."""
    for stream in (sys.stdout, sys.stderr):  # a name the console's code page lacks must not end the run
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    stop_on_sigterm()
    argv = sys.argv[1:] if argv is None else argv
    heartbeat = None
    try:
        try:
            settings = parse_args(argv, SCRIPT_DIR, __version__)
        except UsageError as error:
            print(f"error: {error}", file=sys.stderr)
            ping_usage_error(argv, f"error: {error}")
            return 2
        try:
            setup_logging(settings.log_file, settings.verbose, settings.quiet, settings.secrets)
        except OSError as error:
            text = f"error: cannot write the log file {settings.log_file}: {error.strerror or error}"
            print(text, file=sys.stderr)
            ping_usage_error(argv, text)
            return 2
        for note in settings.notes:
            log.warning("%s", note)
        if settings.check:
            from run_check import check_all
            return check_all(settings)
        heartbeat = start_heartbeat(settings)
        errors = ErrorLines()
        log.addHandler(errors)
        exit_code, summary = run_and_report(settings)
        if heartbeat is not None:
            heartbeat.finish(exit_code, summary or errors.text())
    except KeyboardInterrupt:
        print(f"error: {INTERRUPTED}", file=sys.stderr)
        if heartbeat is not None:
            with contextlib.suppress(KeyboardInterrupt):
                heartbeat.finish(2, f"error: {INTERRUPTED}")
        return 2
    if hard_exit:
        exit_now(exit_code)
    return exit_code


def stop_on_sigterm() -> None:
    """SIGTERM, the usual stop of a scheduled task on Linux, ends the run as Ctrl+C does."""
    if threading.current_thread() is not threading.main_thread():
        return

    def interrupt(signal_number, frame) -> None:
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, interrupt)


def ping_usage_error(argv: list[str], text: str) -> None:
    """A live run refused at start still tells the heartbeat (exit 2), when the ping URL itself is
    usable: a mistyped setting must not wait for the monitor's grace time to be noticed."""
    from cli_options import ping_url_and_test_mode

    url, test_mode = ping_url_and_test_mode(argv)
    if url and not test_mode:
        from heartbeat import Heartbeat
        from url_rules import UrlError
        try:
            Heartbeat(url).finish(2, text)
        except UrlError:
            pass  # the ping URL is the problem the error already names


def start_heartbeat(settings):
    """The heartbeat of a live run (test mode and a test send ping nothing), its start ping sent."""
    if not settings.ping_url or settings.test_mode or settings.send_test_to:
        return None
    from heartbeat import Heartbeat
    heartbeat = Heartbeat(settings.ping_url)
    heartbeat.start()
    return heartbeat


def run_and_report(settings) -> tuple[int, str]:
    """Run, print the table and the summary; the exit code and the summary as printed ('' when the
    run stopped before one)."""
    try:
        report = run(settings)
    except (ConfigError, ReportError, StateError) as error:
        log.error("%s", error)
        return 2, ""
    except KeyboardInterrupt:
        log.error("%s", INTERRUPTED)
        return 2, f"error: {INTERRUPTED}"
    except Exception as error:  # a bug, not a user's mistake: still one line, the details in the log
        log.info("details of the unexpected error:", exc_info=True)  # shown with -v, written to --log-file
        log.error("unexpected %s: %s; what was delivered is recorded (details with -v or in --log-file)",
                  type(error).__name__, error)
        return 2, ""
    if report.test_mode:
        print(format_customer_table(report.would_notify, "Would email" if report.would_notify else "Nobody to email"))
    elif report.notified and not settings.quiet:
        print(format_customer_table(report.notified, "Emailed"))
    summary = format_summary(report)
    print("\n" + summary)
    for line in summary.splitlines():
        log.info("%s", line, extra=FILE_ONLY)
    if report.stop_reason:
        log.error("%s", report.stop_reason)
        summary += f"\nerror: {report.stop_reason}"
    return report.exit_code, summary


def run(settings) -> RunReport:
    """The weekly story: read, select, group, send, remember."""
    now = datetime.now()
    today = now.date()
    records = not settings.test_mode and not settings.send_test_to   # a test send records nothing either
    lock = acquire_lock(settings.state_file) if records else None
    try:
        if lock is not None:
            prepare_state_folder(settings.state_file)
        state = starting_state(settings, today)
        bounced = read_bounces(settings, state, today) if records and reads_bounces(settings) else None
        if bounced is not None:
            state, bounce_outcome = bounced
        start = state.last_run_date
        recall = merged_recalls(recalls_of_held(state.held),
                                recalls_of_rejected(state.rejected) if settings.retry_rejected else {})
        with garbage_collector_paused():
            rows, sheet_names = read_rows(settings)
            selection = select_from_report(rows, sheet_names, start, now, SelectOptions(
                closed_statuses=settings.closed_statuses, date_formats=settings.date_formats, columns=settings.columns,
                recall=recall, first_row_number=first_row_number(settings)))
            customers = group_by_customer(selection.by_email)
        for warning in selection.warnings:
            log.warning("%s", warning)
        log_skipped_rows(selection.skipped_rows)
        held = next_held(state.held, held_from(selection.skipped_rows), customers, today)
        owed, already = drop_already_notified(customers, state.notified)
        owed, held_rejected = (owed, 0) if settings.retry_rejected else drop_rejected(owed, state.rejected)
        to_send, deferred = split_by_weekly_guard(owed, state.last_emailed, today, settings.min_days_between_emails)
        to_send, waiting = cap_emails(to_send, settings.max_emails)
        report = RunReport(rows_read=selection.rows_read, new_tickets=selection.ticket_count - already - held_rejected,
                           already_notified=already, held_rejected=held_rejected, skipped=dict(selection.skipped),
                           other_statuses=selection.other_statuses, deferred=deferred, waiting=waiting,
                           held_back=held_back_count(owed, state.held), held_waiting=len(held),
                           held_before=len(state.held),
                           old_last_run_date=start, test_mode=settings.test_mode, max_emails=settings.max_emails,
                           rejected_csv=rejected_csv_path(settings.state_file),
                           first_run=not settings.since and not settings.state_file.exists())
        if bounced is not None:
            report.bounced = bounce_outcome.bounced
        for customer in deferred:
            log.info("deferred %s (%s): emailed on %s, fewer than %d days ago; it waits", customer.email,
                     ", ".join(customer.ticket_ids), state.last_emailed.get(customer.key), settings.min_days_between_emails)
        if settings.test_mode:
            report.would_notify = to_send
            if settings.preview_dir:
                report.previews, report.preview_dir = write_previews(settings, to_send), settings.preview_dir
            report.held_waiting = len(still_held(held, to_send))  # as the live run would leave them
            report.new_last_run_date = next_last_run_date(start, customers, deferred + waiting, today)
            return report
        if settings.send_test_to:
            report.test_send = send_test(settings, (to_send or owed)[:1])
            report.new_last_run_date = start
            return report
        state = send_all(settings, to_send, replace(state, held=held), today, report)
        report.held_waiting = len(state.held)
        pending = deferred + waiting + [customer for customer, _ in report.failed] + report.not_attempted
        report.new_last_run_date = next_last_run_date(start, customers, pending, today)
        save_state(settings.state_file, finish_state(state, report.new_last_run_date, today,
                                                 settings.min_days_between_emails))
        return report
    finally:
        if lock is not None:
            lock.release()


def reads_bounces(settings) -> bool:
    destination = settings.destination
    return (destination is not None and destination.read_bounces is not None
            and destination.reads_bounces(settings.send_context()))


def read_bounces(settings, state: RunState, today: date):
    """Before sending: the delivery reports that came back to the sending mailbox since the last read,
    applied to the state (bounced customers rejected and held for a corrected address, those
    returned for the sender's limits pending again), saved with how far the mailbox was read, and
    each bounce in rejected.csv. (state, outcome). A mailbox that cannot be read for a setting is
    exit 2 before anyone is emailed; one that cannot be reached now is a warning."""
    from bounce_reports import bounce_effects, read_report
    from destinations import SettingError

    destination = settings.destination
    earliest = min((date.fromisoformat(entry["day"]) for entry in state.sent.values()), default=today)
    cursor = state.bounce_cursor.get(destination.name, {})
    try:
        raws, cursor = destination.read_bounces(settings.send_context(), cursor, earliest)
    except SettingError as error:
        raise ConfigError(str(error)) from None
    except Exception as error:  # noqa: BLE001 (an unreachable mailbox must not keep the week's emails back)
        log.debug("reading the bounces failed", exc_info=True)   # -v or --log-file show why
        log.warning("the bounces could not be read this time (%s); they are read next run",
                    getattr(error, "strerror", None) or error)
        return None
    reports = [report for report in map(read_report, raws) if report is not None]
    state, outcome = bounce_effects(state, reports, today)
    state = replace(state, bounce_cursor={**state.bounce_cursor, destination.name: cursor})
    save_state(settings.state_file, state)
    csv_path = rejected_csv_path(settings.state_file)
    for address, tickets, reason in outcome.bounced:
        append_rejected_csv(csv_path, rejected_csv_cells(today, address, "", tickets, reason))
        log.warning("bounced %s (%s): %s; held until the report gives a corrected address (see %s)", address,
                    ", ".join(tickets), reason, csv_path)
    for address, tickets, reason in outcome.returned:
        log.warning("returned for the sending mailbox's limit, %s (%s): %s; it is sent again", address,
                    ", ".join(tickets), reason)
    for address, status in outcome.delayed:
        log.info("delayed, %s: %s (the server goes on trying; nothing to do yet)", address, status)
    log.info("read %d message(s) from the bounce mailbox, %d delivery report(s) of this job's emails", len(raws),
             len(outcome.bounced) + len(outcome.returned) + len(outcome.delayed))
    return state, outcome


def starting_state(settings, today: date) -> RunState:
    """The saved state, its window starting at --since when given. Without a state file a live run
    needs --since (it must never email last year's tickets); test mode looks 18 months back."""
    stored = load_state(settings.state_file, today)
    if stored is None:
        if settings.since:
            return RunState(settings.since)
        if not settings.test_mode and not settings.send_test_to:
            raise ConfigError(f"no state file at {settings.state_file} yet, so this is the first live run: pass --since "
                              "DD/MM/YYYY, the first day whose closed tickets should be emailed (nothing was sent)")
        log.info("no state file at %s yet: test mode looks 18 months back", settings.state_file)
        return RunState(months_before(today, 18))
    return replace(stored, last_run_date=settings.since or stored.last_run_date)


SKIPPED_ROWS_SHOWN = 20


def log_skipped_rows(skipped_rows: list) -> None:
    """Every closed row the run could not use, named for a person to fix (the first 20, then a count)."""
    for row in skipped_rows[:SKIPPED_ROWS_SHOWN]:
        ticket = f", ticket {row.ticket_id}" if row.ticket_id else ""
        log.warning("row %d skipped: %s (%r)%s", row.row_number, row.reason, row.value, ticket)
    if len(skipped_rows) > SKIPPED_ROWS_SHOWN:
        log.warning("and %d more closed rows skipped (the summary counts them by reason)",
                    len(skipped_rows) - SKIPPED_ROWS_SHOWN)


def first_row_number(settings) -> int:
    """The spreadsheet's number of the first row read: 2 for -range Sheet1!A2:F (a CSV file: 1)."""
    if settings.report and settings.report.suffix.lower() not in (".xlsx", ".xlsm") or not settings.range:
        return 1
    from a1_range import a1_bounds, split_a1_range
    try:
        first_row = a1_bounds(split_a1_range(settings.range)[1])[0]
    except ValueError:  # a named range, or a sheet name that looks like cells: Google's own numbering
        return 1
    return first_row or 1


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


def read_rows(settings) -> tuple[Iterable, list[str] | None]:
    """The report's rows from a file or from Google Sheets (imported only when needed: it is slow),
    and the sheet names when the report is a workbook."""
    if settings.report:
        from report_readers import read_report
        return read_report(settings.report, settings.range)
    import google_api

    def sheet_rows() -> Iterator[list]:
        try:
            yield from google_api.read_sheet_rows(settings.sheet_id, settings.range, credentials_path=settings.credentials,
                                                  token_path=settings.token, api_key=settings.api_key,
                                                  endpoint=settings.sheets_endpoint)
        except google_api.GoogleSetupError as error:  # before the first row, or a page that kept failing
            raise ConfigError(str(error)) from None
    return sheet_rows(), None


def select_from_report(rows: Iterable, sheet_names: list[str] | None, start: date, now: datetime,
                       options: SelectOptions) -> Selection:
    """The selection; for a workbook, a sheet with no usable header or data names the workbook's sheets."""
    hint = (f" (the workbook's sheets: {', '.join(map(repr, sheet_names))}; pick one with -range NAME)"
            if sheet_names else "")
    try:
        selection = select_closed_tickets(rows, start, now, options)
        refuse_unreadable_column(selection)
    except ReportError as error:
        raise ReportError(f"{error}{hint}") from None
    if sheet_names and (selection.layout_doubt or not (selection.rows_read or selection.has_header)):
        raise ReportError(f"the sheet read has no usable header row or data{hint}")
    return selection


PREVIEW_NAME_CHARS = 60  # of the address in a preview's file name: an address of 254 characters must fit


def write_previews(settings, customers: list[Customer]) -> int:
    """Test mode: each email that would be sent as DIR/NNN-address.eml, in the table's order, exactly
    as the SMTP route would send it (with a webhook, built from the payload's email). The new set
    is written before the earlier .eml files there are removed; nothing else is written. An email
    that would not be sent gets a warning instead of a file."""
    from customer_message import emails_for
    from delivery import UnsendableError

    mail_for = emails_for(settings.send_context())
    folder = settings.preview_dir
    try:
        folder.mkdir(parents=True, exist_ok=True)
        earlier = set(folder.glob("*.eml"))
        written = set()
        for number, customer in enumerate(customers, 1):
            try:
                data = mail_for(customer).data
            except UnsendableError as error:
                log.warning("no preview for %s: its email would not be sent (%s)", customer.email, error)
                continue
            name = "".join(char if char.isalnum() or char in "@._+-" else "_" for char in customer.email)
            path = folder / f"{number:03d}-{name[:PREVIEW_NAME_CHARS]}.eml"
            path.write_bytes(data)
            written.add(path)
        for path in earlier - written:
            path.unlink()
    except OSError as error:
        raise ConfigError(f"cannot write the previews in {folder}: {error.strerror or error}") from None
    return len(written)


def open_route(settings):
    """The destination of this run, and how it makes one customer's message."""
    from destinations import SettingError

    try:
        context = settings.send_context()
        return settings.destination.open(context), settings.destination.message_for(context)
    except SettingError as error:
        raise ConfigError(str(error)) from None


def send_test(settings, first: list[Customer]) -> str:
    """--send-test-to: the first customer's email, exactly as it would go out, to the test address
    alone (no --cc); nothing is recorded. What happened, for the summary."""
    from delivery import DeliveryPolicy, deliver_all

    if not first:
        return "nothing sent: nobody would be emailed in this run"
    customer = first[0]
    stand_in = customer._replace(email=settings.send_test_to)   # its own ids: the real email is not a duplicate
    test_settings = replace(settings, content=replace(settings.content, cc=(), subject_prefix="[TEST] "))
    route, message_for = open_route(test_settings)
    try:
        results = deliver_all(route, [stand_in], DeliveryPolicy(workers=1, timeout=settings.timeout,
                                                                 retries=settings.retries), message_for, lambda c: None)
    finally:
        route.shutdown()
    about = f"the email of {customer.email} ({', '.join(customer.ticket_ids)})"
    if results.delivered:
        return f"sent to {settings.send_test_to}: {about}; nothing recorded"
    reason = (results.failed or results.rejected or [(None, results.stop_reason or "not sent")])[0][1]
    raise ConfigError(f"the test email to {settings.send_test_to} ({about}) was not sent: {reason}")


def send_all(settings, customers: list[Customer], state: RunState, today: date, report: RunReport) -> RunState:
    """Deliver one message per customer; save the state after every delivery or refusal, before the next call."""
    from delivery import DeliveryPolicy, deliver_all

    if not customers:
        return state
    route, message_for = open_route(settings)
    writer = StateWriter(settings.state_file, state)

    keep_sent = reads_bounces(settings)
    if keep_sent:
        from customer_message import message_digest

    def remember(customer: Customer) -> None:
        writer.record(customer, today, message_digest(customer) if keep_sent else "")
        log.info("delivered to %s (%s)", customer.email, ", ".join(customer.ticket_ids))

    def refused(customer: Customer, reason: str) -> None:
        writer.record_rejection(customer, today, reason)
        log.warning("rejected %s (%s): %s; not retried (see %s, --retry-rejected)",
                    customer.email, ", ".join(customer.ticket_ids), reason, rejected_csv_path(settings.state_file))

    def withdrawn(customers: list[Customer]) -> None:
        try:
            writer.withdraw_rejections(customers)
        except StateError as error:  # the state is withdrawn all the same: it and the summary agree
            log.error("%s", error)
        log.info("refusals of %s withdrawn: the destination refused everyone alike; they stay pending",
                 ", ".join(customer.email for customer in customers))

    progress = progress_printer() if sys.stderr.isatty() and len(customers) >= 20 and not settings.quiet else None
    workers = min(settings.workers, settings.destination.max_in_flight or settings.workers)
    log.info("sending %d notification(s) to %s with %d worker(s)", len(customers), route.label, workers)
    policy = DeliveryPolicy(workers=workers, timeout=settings.timeout, retries=settings.retries,
                            max_per_minute=settings.max_per_minute)
    try:
        results = deliver_all(route, customers, policy, message_for, remember, refused, withdrawn,
                              progress or (lambda done, total: None))
    finally:
        route.shutdown()
        if progress:
            print(file=sys.stderr)
    position = {customer.email: index for index, customer in enumerate(customers)}
    report.notified = sorted(results.delivered, key=lambda customer: position[customer.email])  # report order
    report.failed, report.rejected = results.failed, results.rejected
    report.not_attempted = results.not_attempted
    report.stop_reason, report.stop_exit_code = results.stop_reason, results.stop_exit_code
    for customer, detail in report.failed:
        said = "the run stopped (the reason follows)" if detail in report.stop_reason else detail  # said once
        log.warning("not delivered to %s (%s): %s; it stays pending for the next run", customer.email,
                    ", ".join(customer.ticket_ids), said)
    for customer in report.not_attempted:
        log.info("not attempted %s (%s): the run stopped; it stays pending", customer.email, ", ".join(customer.ticket_ids))
    for customer in report.waiting:
        log.info("waiting %s (%s): past --max-emails %d; it goes out in the next run", customer.email,
                 ", ".join(customer.ticket_ids), settings.max_emails)
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
