"""The state file last_run_date.json: strict reading, atomic writing, and the one-run-at-a-time lock."""

from __future__ import annotations

import csv
import json
import logging
import os
import stat
import sys
import tempfile
import threading
import time
from collections.abc import Iterable
from datetime import date, datetime
from pathlib import Path

from report_dates import check_day_range, format_day, parse_day
from ticket_core import (
    Customer,
    RunState,
    customer_key,
    delivery_entries,
    held_settled_by,
    held_ticket_ids,
    rejection_entry,
    sent_entry,
    without_delivered,
)


class StateError(Exception):
    """The state file cannot be trusted or written: the run stops with exit 2, nothing lost."""


REPAIR = "restore it from a backup, or move it aside and run once with --since DD/MM/YYYY (the day of the last run)"


def state_from_json(text: str, source: str = "state file", today: date | None = None) -> RunState:
    """Read the seed's {"last_run_date": "DD/MM/YYYY"} and our own keys; never guess. Every day in
    it must lie between 1970 and tomorrow, every value be of the type this program writes."""
    today = today or date.today()
    try:
        data = json.loads(text)
    except RecursionError:
        raise StateError(f"{source} is nested too deeply to be a state file: {REPAIR}") from None
    except ValueError as error:
        raise StateError(f"{source} is not valid JSON ({error}): {REPAIR}") from None
    if not isinstance(data, dict):
        raise StateError(f"{source} is not a JSON object: {REPAIR}")
    raw_day = data.get("last_run_date")
    if not isinstance(raw_day, str):
        raise StateError(f'{source} has no "last_run_date" text: {REPAIR}')
    try:
        last_run_date = check_day_range(parse_day(raw_day), today, '"last_run_date"')
    except ValueError as error:
        raise StateError(f'{source}: "last_run_date" {raw_day!r} is not usable ({error}): {REPAIR}') from None
    check = _Checker(source, today)
    notified = check.nested("notified", data.get("notified", {}), lambda where, tickets: check.days(where, tickets, moment=True))
    last_emailed = check.days("last_emailed", data.get("last_emailed", {}), moment=False)
    rejected = check.nested("rejected", data.get("rejected", {}), check.rejected_entry)
    held = check.nested("held", data.get("held", {}), check.held_entry)
    sent = check.nested("sent", data.get("sent", {}), check.sent_entry)
    cursors = check.nested("bounces", data.get("bounces", {}), check.cursor)
    return RunState(last_run_date, notified, last_emailed, rejected, held, sent, cursors)


class _Checker:
    """Checks the inner values of a state file, naming the key of the first wrong one."""

    def __init__(self, source: str, today: date) -> None:
        self.source, self.today = source, today

    def fail(self, where: str, what: str) -> StateError:
        return StateError(f'{self.source}: "{where}" {what}: {REPAIR}')

    def mapping(self, where: str, value: object) -> dict:
        if not isinstance(value, dict):
            raise self.fail(where, "is not a JSON object")
        return value

    def nested(self, where: str, value: object, check_inner) -> dict:
        return {key: check_inner(f"{where}.{key}", inner) for key, inner in self.mapping(where, value).items()}

    def days(self, where: str, value: object, moment: bool) -> dict[str, str]:
        for key, text in self.mapping(where, value).items():
            self.day(f"{where}.{key}", text, moment)
        return value  # type: ignore[return-value]

    def day(self, where: str, text: object, moment: bool) -> None:
        """An ISO day (or moment without a time zone) between 1970 and tomorrow."""
        try:
            if not isinstance(text, str):
                raise ValueError("not text")
            parsed = datetime.fromisoformat(text) if moment else date.fromisoformat(text)
            if isinstance(parsed, datetime) and parsed.tzinfo is not None:
                raise ValueError("has a time zone")
            check_day_range(parsed.date() if isinstance(parsed, datetime) else parsed, self.today, "the day")
        except ValueError as error:
            raise self.fail(where, f"is {str(text)[:40]!r}, not a day this program writes ({error})") from None

    def rejected_entry(self, where: str, entry: object) -> dict:
        entry = self.mapping(where, entry)
        self.day(f"{where}.day", entry.get("day"), moment=False)
        if not isinstance(entry.get("reason"), str):
            raise self.fail(f"{where}.reason", "is not text")
        if "name" in entry and not isinstance(entry["name"], str):
            raise self.fail(f"{where}.name", "is not text")
        self.days(f"{where}.tickets", entry.get("tickets"), moment=True)
        return entry

    def sent_entry(self, where: str, entry: object) -> dict:
        entry = self.mapping(where, entry)
        self.day(f"{where}.day", entry.get("day"), moment=False)
        for name in ("customer", "name"):
            if not isinstance(entry.get(name), str):
                raise self.fail(f"{where}.{name}", "is not text")
        self.days(f"{where}.tickets", entry.get("tickets"), moment=True)
        return entry

    def cursor(self, where: str, value: object) -> dict:
        """How far a mailbox was read: text or whole numbers, each the destination's own."""
        for key, item in self.mapping(where, value).items():
            if not isinstance(item, (str, int)) or isinstance(item, bool):
                raise self.fail(f"{where}.{key}", "is not text or a number")
        return value  # type: ignore[return-value]

    def held_entry(self, where: str, entry: object) -> dict:
        entry = self.mapping(where, entry)
        self.day(f"{where}.day", entry.get("day"), moment=False)
        for name in ("reason", "customer", "closed"):
            if not isinstance(entry.get(name), str):
                raise self.fail(f"{where}.{name}", "is not text")
        for name in ("ticket", "name"):  # an older version wrote neither
            if name in entry and not isinstance(entry[name], str):
                raise self.fail(f"{where}.{name}", "is not text")
        if entry["closed"]:
            self.day(f"{where}.closed", entry["closed"], moment=True)
        return entry


def state_to_json(state: RunState) -> str:
    """The state file's text: one top-level key per line, last_run_date first."""
    return _state_text(state.last_run_date, map(_entry_text, state.notified.items()),
                       map(_entry_text, state.last_emailed.items()), _json(state.rejected), _json(state.held),
                       map(_entry_text, state.sent.items()), _json(state.bounce_cursor))


def _json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)


def _entry_text(item: tuple[str, object]) -> str:
    key, value = item
    return f"{json.dumps(key)}: {json.dumps(value, ensure_ascii=False)}"


def _state_text(last_run_date: date, notified: Iterable[str], last_emailed: Iterable[str], rejected: str,
                held: str, sent: Iterable[str] = (), cursors: str = "{}") -> str:
    """The state file's text; "sent" and "bounces" only when bounces are read (a file without them
    reads as before)."""
    sent_text = ", ".join(sent)
    extra = (f',\n  "sent": {{{sent_text}}}' if sent_text else "") + (f',\n  "bounces": {cursors}' if cursors != "{}" else "")
    return (f'{{\n  "last_run_date": {json.dumps(format_day(last_run_date))},\n'
            f'  "notified": {{{", ".join(notified)}}},\n'
            f'  "last_emailed": {{{", ".join(last_emailed)}}},\n'
            f'  "rejected": {rejected},\n'
            f'  "held": {held}{extra}\n}}\n')


def load_state(path: Path, today: date | None = None) -> RunState | None:
    """The saved state, or None when there is no state file yet."""
    check_regular_file(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as error:
        raise StateError(f"cannot read the state file {path}: {_reason(error)}") from None
    return state_from_json(text, f"the state file {path}", today)


def check_regular_file(path: Path) -> None:
    """A state path that exists must be a regular file: reading a pipe or a device would wait for ever,
    and a folder cannot be replaced. Checked without opening it."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return
    except OSError as error:
        raise StateError(f"cannot read the state file {path}: {_reason(error)}") from None
    if not stat.S_ISREG(mode):
        kind = "a folder" if stat.S_ISDIR(mode) else "a pipe" if stat.S_ISFIFO(mode) else "not a regular file"
        raise StateError(f"the state file {path} is {kind}: pass --state-file with the path of a file")


def save_state(path: Path, state: RunState) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise StateError(f"cannot write the state file {path}: {_reason(error)}") from None
    write_state_text(path, state_to_json(state))


def _temp_prefix(path: Path) -> str:
    return f".{path.name}."


def write_state_text(path: Path, text: str) -> None:
    """Write atomically: a temporary file beside the target, flushed to disk, then renamed over it.
    The folder must exist (a live run has made it for its lock)."""
    try:
        handle, temp_name = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(handle, "w", encoding="utf-8", newline="\n") as temp:
                temp.write(text)
                temp.flush()
                os.fsync(temp.fileno())
            _replace(temp_name, path)
        except BaseException:
            Path(temp_name).unlink(missing_ok=True)
            raise
    except OSError as error:
        raise StateError(f"cannot write the state file {path}: {_reason(error)}") from None


def _replace(source: str, target: Path) -> None:
    """os.replace, retried briefly on Windows where a virus scanner may hold the target open."""
    attempts = 5 if sys.platform == "win32" else 1
    for attempt in range(attempts):
        try:
            os.replace(source, target)
            return
        except PermissionError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.2 * (attempt + 1))


def prepare_state_folder(path: Path) -> None:
    """Before a live run sends anything: its files can be written (a read-only state file or folder
    would otherwise be found after the first delivery, which then goes out again next week), and
    the temporary files a killed run left behind (of the state file and rejected.csv) are removed."""
    folder, written = path.parent, (path, rejected_csv_path(path))
    for file in written:
        for leftover in folder.glob(_temp_prefix(file) + "*.tmp"):
            leftover.unlink(missing_ok=True)
    for existing in written:
        if existing.exists() and (not os.access(existing, os.W_OK) or not existing.stat().st_mode & stat.S_IWUSR):
            raise StateError(f"{existing} is read-only: make it writable (the run records every delivery in it)")
    if os.name == "posix" and not folder.stat().st_mode & stat.S_IWUSR:
        raise StateError(f"the state folder {folder} is read-only: make it writable or pass --state-file elsewhere")
    write_probe(folder)


def write_probe(folder: Path) -> None:
    """Create and remove a file in `folder`: the one sure test that the run can write there."""
    try:
        handle, probe = tempfile.mkstemp(prefix=".write-probe.", suffix=".tmp", dir=folder)
        os.close(handle)
        os.unlink(probe)
    except OSError as error:
        raise StateError(f"cannot write in the state folder {folder}: {_reason(error)}") from None


# ---------------------------------------------------------------- rejected.csv

REJECTED_CSV_HEADER = ("day", "email", "name", "tickets", "reason")
_FORMULA_STARTS = ("=", "+", "-", "@")


def rejected_csv_path(state_path: Path) -> Path:
    return state_path.with_name("rejected.csv")


def spreadsheet_safe(cell: str) -> str:
    """A cell no spreadsheet runs as a formula: a leading = + - @ gets a ' before it."""
    return "'" + cell if cell.startswith(_FORMULA_STARTS) else cell


def rejected_csv_line(customer: Customer, today: date, reason: str) -> list[str]:
    return rejected_csv_cells(today, customer.email, customer.full_name, customer.ticket_ids, reason)


def rejected_csv_cells(today: date, email: str, name: str, ticket_ids: list[str], reason: str) -> list[str]:
    """One line of rejected.csv (day, email, name, tickets, reason), safe to open in a spreadsheet."""
    return [spreadsheet_safe(cell) for cell in (today.isoformat(), email, name, " ".join(ticket_ids), reason)]


def append_rejected_csv(path: Path, line: list[str]) -> None:
    """One line appended to rejected.csv (UTF-8 with a BOM so Excel reads it right), made when missing."""
    try:
        new = not path.exists() or path.stat().st_size == 0
        with path.open("a", encoding="utf-8-sig" if new else "utf-8", newline="") as handle:
            writer = csv.writer(handle)
            if new:
                writer.writerow(REJECTED_CSV_HEADER)
            writer.writerow(line)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as error:
        raise StateError(f"cannot write {path}: {_reason(error)}") from None


def remove_rejected_csv_lines(path: Path, lines: list[list[str]]) -> None:
    """rejected.csv without these lines (one occurrence each), replaced atomically; the rest as it was
    (a file left with its header alone is removed)."""
    if not lines:
        return
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            rows = list(csv.reader(handle))
        for line in lines:
            if line in rows:
                rows.remove(line)
        if rows in ([], [list(REJECTED_CSV_HEADER)]):  # no refusal left: as if none had been written
            path.unlink()
            return
        handle_number, temp_name = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(handle_number, "w", encoding="utf-8-sig", newline="") as temp:
                csv.writer(temp).writerows(rows)
            _replace(temp_name, path)
        except BaseException:
            Path(temp_name).unlink(missing_ok=True)
            raise
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise StateError(f"cannot take this run's lines out of {path} ({_reason(error)}): the customers stay pending; "
                         "delete their lines from it by hand") from None


def remove_rejected_csv_customers(path: Path, keys: set[str]) -> None:
    """rejected.csv without the lines of these customers (by customer key), replaced atomically."""
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            rows = list(csv.reader(handle))
    except FileNotFoundError:
        return
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise StateError(f"cannot take the delivered customers out of {path} ({_reason(error)}); delete their lines "
                         "by hand") from None
    kept = [row for row in rows[1:] if len(row) < 2 or customer_key(row[1].removeprefix("'")) not in keys]
    if len(kept) < len(rows) - 1:
        remove_rejected_csv_lines(path, [row for row in rows[1:] if row not in kept])


# ---------------------------------------------------------------- saving during delivery

class StateWriter:
    """The one writer of the state during delivery. Each delivery is recorded, then saved before
    its worker goes on; a save made while others wait covers their deliveries too (group commit).
    A delivery changes one customer's entries, so only those are changed and encoded again:
    the cost of recording stays flat however many customers the file holds."""

    def __init__(self, path: Path, state: RunState) -> None:
        self.path = path
        self.state = RunState(state.last_run_date, dict(state.notified), dict(state.last_emailed), dict(state.rejected),
                              dict(state.held), dict(state.sent), dict(state.bounce_cursor))
        self._sent_text = dict(zip(state.sent, map(_entry_text, state.sent.items()), strict=True))
        self._notified_text = dict(zip(state.notified, map(_entry_text, state.notified.items()), strict=True))
        self._emailed_text = dict(zip(state.last_emailed, map(_entry_text, state.last_emailed.items()), strict=True))
        self._changes = 0
        self._saved_changes = 0
        self._csv_lines: dict[str, list[list[str]]] = {}       # this run's lines in rejected.csv, by customer key
        self._rejected_before: dict[str, dict | None] = {}     # each refused customer's entry before this run
        self._state_lock = threading.Lock()
        self._save_lock = threading.Lock()
        self._encoded_cache: dict[str, tuple[object, str]] = {}
        self._held_ids_cache: tuple[object, set[str]] = (None, set())

    def record(self, customer: Customer, today: date, message_key: str = "") -> None:
        """Record a delivery to `customer` and return once a save that includes it is on disk; with
        `message_key` (its Message-ID's local part, while bounces are read) the email is kept to
        match a report. Raises StateError."""
        with self._state_lock:
            key, notified, emailed_on = delivery_entries(self.state, customer, today)
            self.state.notified[key] = notified
            self.state.last_emailed[key] = emailed_on
            self._notified_text[key] = _entry_text((key, notified))
            self._emailed_text[key] = _entry_text((key, emailed_on))
            if message_key:
                self.state.sent[message_key] = sent_entry(customer, today)
                self._sent_text[message_key] = _entry_text((message_key, self.state.sent[message_key]))
            cleared: list[str] = []
            if self.state.rejected:
                remaining = without_delivered(self.state.rejected, customer)
                if remaining is not None:
                    cleared = [key for key in self.state.rejected if key not in remaining]
                    self.state.rejected = remaining
            self._settle_held(customer)
            mine = self._changed()
        self._save_including(mine)
        if cleared:  # delivered at last (--retry-rejected): its lines leave rejected.csv, which lists the open ones
            try:
                remove_rejected_csv_customers(rejected_csv_path(self.path), set(cleared))
            except StateError as error:
                logging.getLogger("ticket_notifier").warning("%s", error)

    def record_rejection(self, customer: Customer, today: date, reason: str) -> None:
        """Record that `customer` was refused for good: a line in rejected.csv, then the state.
        Raises StateError when either cannot be written (the customer then stays pending)."""
        line = rejected_csv_line(customer, today, reason)
        append_rejected_csv(rejected_csv_path(self.path), line)
        with self._state_lock:
            key, entry = rejection_entry(self.state, customer, today, reason)
            self._csv_lines.setdefault(key, []).append(line)
            self._rejected_before.setdefault(key, self.state.rejected.get(key))
            self.state.rejected = {**self.state.rejected, key: entry}
            self._settle_held(customer)
            mine = self._changed()
        self._save_including(mine)

    def withdraw_rejections(self, customers: list[Customer]) -> None:
        """Take back this run's refusals of `customers` (the destination refused everyone alike: a
        setting is wrong, not the customers). The state first, so that it and the summary agree even
        when rejected.csv cannot be rewritten; from rejected.csv only this run's own lines go (another
        job may share the file). Raises StateError when rejected.csv could not be rewritten."""
        with self._state_lock:
            rejected = dict(self.state.rejected)
            for customer in customers:
                earlier = self._rejected_before.pop(customer.key, None)
                if earlier is None:
                    rejected.pop(customer.key, None)
                else:
                    rejected[customer.key] = earlier
            self.state.rejected = rejected
            lines = [line for customer in customers for line in self._csv_lines.pop(customer.key, [])]
            mine = self._changed()
        self._save_including(mine)
        remove_rejected_csv_lines(rejected_csv_path(self.path), lines)

    def _settle_held(self, customer: Customer) -> None:
        if not self.state.held or self._held_ids().isdisjoint(ticket.ticket_id for ticket in customer.tickets):
            return  # nearly every delivery: none of its tickets is held (looked up, not scanned)
        remaining = held_settled_by(self.state.held, customer)
        if remaining is not None:
            self.state.held = remaining

    def _held_ids(self) -> set[str]:
        """The held tickets' ids, worked out again only when the held list changed (a new dict)."""
        held = self.state.held
        seen, ids = self._held_ids_cache
        if seen is not held:
            ids = held_ticket_ids(held)
            self._held_ids_cache = (held, ids)
        return ids

    def _encoded(self, name: str) -> str:
        """The rejected or held list as JSON, encoded again only when it changed (each change makes a
        new dict): a save costs what changed, not the size of the lists."""
        value = getattr(self.state, name)
        seen, text = self._encoded_cache.get(name, (None, ""))
        if seen is not value:
            text = _json(value)
            self._encoded_cache[name] = (value, text)
        return text

    def _changed(self) -> int:
        self._changes += 1
        return self._changes

    def _save_including(self, change: int) -> None:
        with self._save_lock:
            if self._saved_changes >= change:
                return
            with self._state_lock:
                text = _state_text(self.state.last_run_date, self._notified_text.values(), self._emailed_text.values(),
                                   self._encoded("rejected"), self._encoded("held"), self._sent_text.values(),
                                   self._encoded("bounce_cursor"))
                covered = self._changes
            write_state_text(self.path, text)
            self._saved_changes = covered


def acquire_lock(path: Path):
    """An OS-level lock beside the state file (a FileLock): it dies with its process, so a killed
    run never blocks the next one. `path` is the real path (links resolved), so two names of one
    file share one lock. Imported here: test mode needs no lock, and filelock is slow to load."""
    from filelock import FileLock, Timeout

    lock = FileLock(path.with_name(path.name + ".lock"), timeout=0)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock.acquire()
    except Timeout:
        raise StateError(f"another run is in progress (it holds {lock.lock_file}); try again when it has finished") from None
    except OSError as error:
        raise StateError(f"cannot create the lock file {lock.lock_file}: {_reason(error)}") from None
    return lock


def _reason(error: Exception) -> str:
    return getattr(error, "strerror", None) or str(error)
