"""Benchmark of section 22's costs: 120,000 closed rows with unreadable dates against 120,000 readable
ones (the selection alone), and saving the state during delivery with a large held list against an
empty one. Run against this checkout, or another one for a before/after in the same hour:

    venv/bin/python bench/hostile.py              # this checkout
    venv/bin/python bench/hostile.py /tmp/old     # another checkout of the project
"""

from __future__ import annotations

import random
import statistics
import sys
import tempfile
import time
from datetime import date, datetime, timedelta
from pathlib import Path

ROOT = Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from state_file import StateWriter  # noqa: E402 (after the path is set)
from ticket_core import ClosedTicket, Customer, RunState, select_closed_tickets  # noqa: E402

ROWS = 120_000


def report(unreadable: bool) -> list[list[str]]:
    rng = random.Random(1)
    rows = [["Firstname", "Lastname", "Email", "Ticket", "Status", "Date"]]
    for number in range(ROWS):
        day, month, hour, minute = rng.randint(1, 28), rng.randint(1, 12), rng.randint(0, 23), rng.randint(0, 59)
        when = (f"{day:02d}.{month:02d}x2026 {hour:02d}:{minute:02d}" if unreadable
                else f"{day:02d}/{month:02d}/2026 {hour:02d}:{minute:02d}")
        rows.append(["A", "B", f"c{number % 5000}@example.com", str(number), "Closed", when])
    return rows


def median_seconds(work, times: int = 3) -> float:
    spent = []
    for _ in range(times):
        started = time.perf_counter()
        work()
        spent.append(time.perf_counter() - started)
    return statistics.median(spent)


def selection(unreadable: bool) -> float:
    rows = report(unreadable)
    try_it = lambda: _select(rows)  # noqa: E731
    return median_seconds(try_it)


def _select(rows) -> None:
    try:
        select_closed_tickets(rows, date(2026, 1, 1), datetime(2026, 12, 31))
    except Exception as error:  # noqa: BLE001 (an older checkout may stop on a column it cannot read: still timed)
        print(f"(the selection stopped: {type(error).__name__})", file=sys.stderr)


def saves(held_entries: int, deliveries: int = 100) -> float:
    held = {f"-/{n}": {"ticket": str(n), "day": date.today().isoformat(), "reason": "no or invalid email",
                       "customer": "", "name": "", "closed": ""} for n in range(held_entries)}
    with tempfile.TemporaryDirectory() as folder:
        writer = StateWriter(Path(folder) / "s.json", RunState(date.today() - timedelta(days=5), held=held))
        started = time.perf_counter()
        for number in range(deliveries):
            ticket = ClosedTicket(f"c{number}@example.com", f"T{number}", "Closed", datetime(2026, 12, 1), False, "C", "C")
            writer.record(Customer(f"c{number}@example.com", "C", "C", (ticket,)), date.today())
        return time.perf_counter() - started


def main() -> None:
    good, bad = selection(False), selection(True)
    empty, large = saves(0), saves(5_000)
    print(f"{ROOT}, {time.strftime('%Y-%m-%d %H:%M')}, medians of 3\n")
    print("| what | seconds | ratio |\n|---|---:|---:|")
    print(f"| selection, {ROWS:,} readable dates | {good:.2f} | 1 |")
    print(f"| selection, {ROWS:,} unreadable dates | {bad:.2f} | {bad / good:.2f} |")
    print(f"| 100 deliveries saved, empty held list | {empty:.2f} | 1 |")
    print(f"| 100 deliveries saved, 5,000 held tickets (a 0.7 MB state file written 100 times) | {large:.2f} | "
          f"{large / empty:.2f} |")


if __name__ == "__main__":
    main()
