"""The state file last_run_date.json: strict reading, atomic writing, and the one-run-at-a-time lock."""

from __future__ import annotations

import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Iterable
from datetime import date, datetime
from pathlib import Path

from report_dates import format_day, parse_day
from ticket_core import Customer, RunState, delivery_entries


class StateError(Exception):
    """The state file cannot be trusted or written: the run stops with exit 2, nothing lost."""


REPAIR = "restore it from a backup, or move it aside and run once with --since DD/MM/YYYY (the day of the last run)"


def state_from_json(text: str, source: str = "state file") -> RunState:
    """Read the seed's {"last_run_date": "DD/MM/YYYY"} and our own keys; never guess."""
    try:
        data = json.loads(text)
    except ValueError as error:
        raise StateError(f"{source} is not valid JSON ({error}): {REPAIR}") from None
    if not isinstance(data, dict):
        raise StateError(f"{source} is not a JSON object: {REPAIR}")
    raw_day = data.get("last_run_date")
    if not isinstance(raw_day, str):
        raise StateError(f'{source} has no "last_run_date" text: {REPAIR}')
    try:
        last_run_date = parse_day(raw_day)
    except ValueError:
        raise StateError(f'{source}: "last_run_date" is {raw_day!r}, not DD/MM/YYYY: {REPAIR}') from None
    notified = data.get("notified", {})
    last_emailed = data.get("last_emailed", {})
    if not _is_nested_day_map(notified, datetime.fromisoformat, depth=2):
        raise StateError(f'{source}: "notified" is not in the form this program writes: {REPAIR}')
    if not _is_nested_day_map(last_emailed, date.fromisoformat, depth=1):
        raise StateError(f'{source}: "last_emailed" is not in the form this program writes: {REPAIR}')
    return RunState(last_run_date, notified, last_emailed)


def _is_nested_day_map(value: object, parse_day_text, depth: int) -> bool:
    if not isinstance(value, dict):
        return False
    for key, inner in value.items():
        if not isinstance(key, str):
            return False
        if depth > 1:
            if not _is_nested_day_map(inner, parse_day_text, depth - 1):
                return False
            continue
        try:
            parse_day_text(inner)
        except (TypeError, ValueError):
            return False
    return True


def state_to_json(state: RunState) -> str:
    """The state file's text: one top-level key per line, last_run_date first."""
    return _state_text(state.last_run_date, map(_entry_text, state.notified.items()),
                       map(_entry_text, state.last_emailed.items()))


def _entry_text(item: tuple[str, object]) -> str:
    key, value = item
    return f"{json.dumps(key)}: {json.dumps(value)}"


def _state_text(last_run_date: date, notified: Iterable[str], last_emailed: Iterable[str]) -> str:
    return (f'{{\n  "last_run_date": {json.dumps(format_day(last_run_date))},\n'
            f'  "notified": {{{", ".join(notified)}}},\n'
            f'  "last_emailed": {{{", ".join(last_emailed)}}}\n}}\n')


def load_state(path: Path) -> RunState | None:
    """The saved state, or None when there is no state file yet."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as error:
        raise StateError(f"cannot read the state file {path}: {_reason(error)}") from None
    return state_from_json(text, f"the state file {path}")


def save_state(path: Path, state: RunState) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise StateError(f"cannot write the state file {path}: {_reason(error)}") from None
    write_state_text(path, state_to_json(state))


def write_state_text(path: Path, text: str) -> None:
    """Write atomically: a temporary file beside the target, flushed to disk, then renamed over it.
    The folder must exist (a live run has made it for its lock)."""
    try:
        handle, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
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


class StateWriter:
    """The one writer of the state during delivery. Each delivery is recorded, then saved before
    its worker goes on; a save made while others wait covers their deliveries too (group commit).
    A delivery changes one customer's entries, so only those are changed and encoded again:
    the cost of recording stays flat however many customers the file holds."""

    def __init__(self, path: Path, state: RunState) -> None:
        self.path = path
        self.state = RunState(state.last_run_date, dict(state.notified), dict(state.last_emailed))
        self._notified_text = dict(zip(state.notified, map(_entry_text, state.notified.items()), strict=True))
        self._emailed_text = dict(zip(state.last_emailed, map(_entry_text, state.last_emailed.items()), strict=True))
        self._changes = 0
        self._saved_changes = 0
        self._state_lock = threading.Lock()
        self._save_lock = threading.Lock()

    def record(self, customer: Customer, today: date) -> None:
        """Record a delivery to `customer` and return once a save that includes it is on disk.
        Raises StateError."""
        with self._state_lock:
            key, notified, emailed_on = delivery_entries(self.state, customer, today)
            self.state.notified[key] = notified
            self.state.last_emailed[key] = emailed_on
            self._notified_text[key] = _entry_text((key, notified))
            self._emailed_text[key] = _entry_text((key, emailed_on))
            self._changes += 1
            mine = self._changes
        with self._save_lock:
            if self._saved_changes >= mine:
                return
            with self._state_lock:
                text = _state_text(self.state.last_run_date, self._notified_text.values(), self._emailed_text.values())
                covered = self._changes
            write_state_text(self.path, text)
            self._saved_changes = covered


def acquire_lock(path: Path):
    """An OS-level lock beside the state file (a FileLock): it dies with its process, so a killed
    run never blocks the next one. Imported here: test mode needs no lock, and filelock is slow to load."""
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
