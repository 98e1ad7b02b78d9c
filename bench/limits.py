"""Benchmark of section 23: a week of 5,000 customers against a local SMTP server (aiosmtpd on
127.0.0.1) whose mailbox takes 1,900 emails a day, sent as three daily runs with --max-emails 1900,
against the same 5,000 sent at once with no limit; and how soon a run that meets the limit ends.

    venv/bin/python bench/limits.py            # 5,000 customers
    venv/bin/python bench/limits.py --customers 1000 --daily 400
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class Mailbox:
    """The server's side: at most `daily` emails a 'day' (day() starts the next), then Gmail's 5.4.5."""

    def __init__(self, daily: int | None) -> None:
        self.daily, self.today, self.recipients = daily, 0, []
        self.first_refusal: float | None = None
        self.lock = threading.Lock()

    def day(self) -> None:
        self.today, self.first_refusal = 0, None

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's naming)
        with self.lock:
            if self.daily is not None and self.today >= self.daily:
                self.first_refusal = self.first_refusal or time.perf_counter()
                return "550 5.4.5 Daily user sending quota exceeded. bench - gsmtp"
            self.today += 1
            self.recipients.extend(envelope.rcpt_tos)
        return "250 2.0.0 OK"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def report(path: Path, customers: int) -> None:
    day = (date.today() - timedelta(days=2)).strftime("%d/%m/%Y")
    with path.open("w", encoding="utf-8") as handle:
        handle.write("Firstname,Lastname,Email,Ticket,Status,Date\n")
        for number in range(customers):
            handle.write(f"C,{number},c{number}@example.com,{number},Closed,{day}\n")


def run(folder: Path, port: int, *extra: str) -> tuple[float, int, float]:
    """(seconds, exit code, the moment it ended) of one live run."""
    since = (date.today() - timedelta(days=7)).strftime("%d/%m/%Y")
    state = folder / "s.json"
    command = [sys.executable, str(ROOT / "process_ticket.py"), "--report", str(folder / "r.csv"),
               "--state-file", str(state), "--smtp-url", f"smtp://127.0.0.1:{port}", "--from", "bench@example.com",
               "-testmode", "no", "-q", *extra]
    if not state.exists():
        command += ["--since", since]
    start = time.perf_counter()
    finished = subprocess.run(command, capture_output=True, text=True)
    end = time.perf_counter()
    return end - start, finished.returncode, end


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=5000)
    parser.add_argument("--daily", type=int, default=1900)
    options = parser.parse_args()
    from aiosmtpd.controller import Controller

    rows = []
    with tempfile.TemporaryDirectory() as temp:
        base = Path(temp)
        for name, daily in (("no limit", None), ("limited", options.daily)):
            mailbox = Mailbox(daily)
            port = free_port()
            controller = Controller(mailbox, hostname="127.0.0.1", port=port)
            controller.start()
            folder = base / name.replace(" ", "-")
            folder.mkdir()
            report(folder / "r.csv", options.customers)
            try:
                if daily is None:
                    seconds, code, _ = run(folder, port)
                    rows.append(("all at once, no limit", 1, seconds, code, len(mailbox.recipients), ""))
                    baseline = seconds
                    continue
                total, codes = 0.0, []
                for _ in range(3):
                    mailbox.day()
                    seconds, code, _ = run(folder, port, "--max-emails", str(daily))
                    total += seconds
                    codes.append(code)
                rows.append((f"3 daily runs, --max-emails {daily}", 3, total, max(codes), len(mailbox.recipients),
                             f"{total / baseline:.2f}x"))
                rejected = (folder / "rejected.csv").exists()
                unique = len(set(mailbox.recipients)) == len(mailbox.recipients) == options.customers
                # The same week without --max-emails: the first run meets the limit.
                mailbox.day()
                again = base / "unplanned"
                again.mkdir()
                report(again / "r.csv", options.customers)
                mailbox.recipients.clear()
                seconds, code, ended = run(again, port)
                after_limit = ended - (mailbox.first_refusal or ended)
                rows.append(("one run meeting the limit", 1, seconds, code, len(mailbox.recipients),
                             f"ended {after_limit:.2f} s after the first 5.4.5"))
            finally:
                controller.stop()
    print(f"{options.customers} customers, a mailbox of {options.daily} a day (aiosmtpd on 127.0.0.1), one run "
          f"of bench/limits.py on {time.strftime('%Y-%m-%d %H:%M')}\n")
    print("| what | runs | seconds | worst exit | emails accepted | note |\n|---|---:|---:|---:|---:|---|")
    for what, runs, seconds, code, accepted, note in rows:
        print(f"| {what} | {runs} | {seconds:.1f} | {code} | {accepted} | {note} |")
    print(f"\nevery customer exactly once over the three runs: {unique}; rejected.csv written: {rejected}")


if __name__ == "__main__":
    main()
