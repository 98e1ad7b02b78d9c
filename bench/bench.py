"""Benchmark: builds synthetic inputs, times the job against a bare csv.reader pass and delivery
against the ideal, all in one run, and prints the figures and ratios as Markdown tables.

    venv/bin/python bench/bench.py            # 10k, 100k and 1M rows; 500 and 2,000 deliveries
    venv/bin/python bench/bench.py --quick    # 10k and 100k rows; 500 deliveries
    venv/bin/python bench/bench.py --sheet-only   # 1M rows as a Google Sheet against the same file
"""

from __future__ import annotations

import argparse
import compileall
import multiprocessing
import os
import platform
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

STATUSES = ["Closed"] * 36 + ["closed"] * 2 + ["CLOSED "] * 2 + ["Open"] * 30 + ["In Progress"] * 15 + ["Pending"] * 15
FIRST_NAMES = ["Jane", "John", "Maria", "Wei", "Aisha", "Tom", "Emma", "Lucas", "Sofia", "Noah", "Olivia", "Liam"]
LAST_NAMES = ["Doe", "Smith", "Garcia", "Chen", "Khan", "Brown", "Wilson", "Martin", "Rossi", "Müller"]
SINCE = "01/01/2026"


def build_report(path: Path, rows: int, seed: int = 1, quoted: bool = False) -> None:
    """The seed's headerless layout; about 40% closed; one customer per ten rows; dates over 18 months.
    With `quoted`, the first row has quoted cells, which sends the whole file through the csv module."""
    rng = random.Random(seed)
    customers = max(rows // 10, 1)
    first_day = date(2025, 6, 1)
    days = [(first_day + timedelta(days=offset)).strftime("%d/%m/%Y") for offset in range(540)]
    with path.open("w", encoding="utf-8", newline="") as handle:
        if quoted:
            handle.write('"Ann, Jr.","Quoted",ann@example.com,0,Open,01/01/2026\n')
            rows -= 1
        for ticket in range(1, rows + 1):
            customer = rng.randrange(customers)
            handle.write(f"{FIRST_NAMES[customer % 12]},{LAST_NAMES[customer % 10]},customer{customer}@example.com,"
                         f"{ticket},{rng.choice(STATUSES)},{rng.choice(days)}\n")


def timed(command: list[str], env: dict | None = None) -> tuple[float, float | None]:
    """(wall seconds, peak RSS in MB) of one child process, measured by the OS for that child.
    Windows has no wait4: there only the wall time is measured."""
    with tempfile.TemporaryFile() as errors:
        start = time.perf_counter()
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=errors, stdin=subprocess.DEVNULL, env=env)
        if hasattr(os, "wait4"):
            _, status, usage = os.wait4(process.pid, 0)
            exit_code = os.waitstatus_to_exitcode(status)
            rss_mb = usage.ru_maxrss / 1024 if sys.platform != "darwin" else usage.ru_maxrss / 1024 / 1024
        else:
            exit_code, rss_mb = process.wait(), None
        wall = time.perf_counter() - start
        if exit_code != 0:
            errors.seek(0)
            raise SystemExit(f"benchmark command failed: {' '.join(command)}\n{errors.read().decode()}")
    return wall, rss_mb


BASELINE = "import csv, sys\nfor row in csv.reader(open(sys.argv[1], encoding='utf-8', newline='')): pass"


def measure_report(path: Path, repeats: int) -> dict:
    """Baseline and job alternately, `repeats` times each; the medians (this machine is noisy)."""
    baseline, job, job_rss = [], [], []
    for _ in range(repeats):
        baseline.append(timed([sys.executable, "-c", BASELINE, str(path)])[0])
        wall, rss_mb = timed([sys.executable, str(ROOT / "process_ticket.py"), "--report", str(path), "--since", SINCE,
                              "-testmode", "yes", "--state-file", str(path.with_suffix(".json"))])
        job.append(wall)
        job_rss.append(rss_mb)
    return {"baseline": statistics.median(baseline), "job": statistics.median(job),
            "job_rss": None if None in job_rss else max(job_rss)}


# ---------------------------------------------------------------- delivery

def serve(port_queue, connections, latency: float) -> None:
    """A webhook in its own process (so it does not share the client's GIL) that answers after `latency`."""
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            with connections.get_lock():
                connections.value += 1

        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            time.sleep(latency)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    port_queue.put(server.server_address[1])
    server.serve_forever()


def bare_requests(port: int, calls: int, workers: int) -> float:
    """Seconds for `calls` POSTs from `workers` threads sharing one requests.Session: no report,
    no signing, nothing saved. The most any requests-based client reaches against this webhook here."""
    import requests
    from requests.adapters import HTTPAdapter

    session = requests.Session()
    session.trust_env = False
    session.mount("http://", HTTPAdapter(pool_maxsize=workers))
    url, body = f"http://127.0.0.1:{port}/hook", b"{}" * 300
    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda _: session.post(url, data=body, timeout=30).raise_for_status(), range(calls)))
    return time.perf_counter() - start


def webhook_round_trip(port: int, calls: int = 30) -> float:
    """Median seconds for one POST from a bare socket client, one after the other: the webhook's own
    latency as a client sees it (its nominal latency plus its parsing, sleeping late and loopback)."""
    request = b"POST /hook HTTP/1.1\r\nHost: bench\r\nContent-Length: 2\r\n\r\n{}"
    times = []
    with socket.create_connection(("127.0.0.1", port)) as connection:
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _ in range(calls):
            start = time.perf_counter()
            connection.sendall(request)
            answer = b""
            while b"\r\n\r\n" not in answer:
                answer += connection.recv(4096)
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def write_delivery_report(path: Path, customers: int) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for number in range(customers):
            handle.write(f"Cust,{number},c{number}@example.com,{number},Closed,20/11/2026\n")


def delivery_args(report: Path, port: int, workers: int, state_file: Path) -> list[str]:
    return ["--report", str(report), "-webhook_url", f"http://127.0.0.1:{port}/hook", "-testmode", "no",
            "--since", "20/11/2026", "--workers", str(workers), "--state-file", str(state_file), "-q"]


def measure_delivery(folder: Path, port: int, connections, customers: int, workers: int) -> tuple[float, int, float]:
    """(seconds for the run in process, connections it opened, seconds for the whole command in a new Python)."""
    import process_ticket
    from cli_options import parse_args

    report = folder / "delivery.csv"
    write_delivery_report(report, customers)
    args = parse_args(delivery_args(report, port, workers, folder / "in_process.json"), ROOT, "bench")
    process_ticket.setup_logging(None, verbose=False, quiet=True)
    connections_before = connections.value
    start = time.perf_counter()
    report_of_run = process_ticket.run(args)
    in_process = time.perf_counter() - start
    opened = connections.value - connections_before
    if len(report_of_run.notified) != customers:
        raise SystemExit(f"delivery benchmark: only {len(report_of_run.notified)} of {customers} delivered")
    command, _ = timed([sys.executable, str(ROOT / "process_ticket.py"),
                        *delivery_args(report, port, workers, folder / "command.json")])
    return in_process, opened, command


def measure_delivery_repeated(folder: Path, repeats: int, customers: int, latency: float, workers: int) -> dict:
    """The webhook runs in its own process (so it does not share the client's GIL) for all the runs."""
    connections = multiprocessing.Value("i", 0)
    port_queue = multiprocessing.Queue()
    server = multiprocessing.Process(target=serve, args=(port_queue, connections, latency), daemon=True)
    server.start()
    try:
        port = port_queue.get(timeout=30)
        round_trip = webhook_round_trip(port)
        runs, bare = [], []
        for attempt in range(repeats):
            run_folder = folder / f"delivery_{customers}_{attempt}"
            shutil.rmtree(run_folder, ignore_errors=True)  # a --keep folder holds the last bench's state files
            run_folder.mkdir()
            runs.append(measure_delivery(run_folder, port, connections, customers, workers))
            bare.append(bare_requests(port, customers, workers))
    finally:
        server.terminate()
    in_process = sorted(run[0] for run in runs)
    return {"ideal": customers * latency / workers, "wall": statistics.median(in_process), "fastest": in_process[0],
            "slowest": in_process[-1], "command": statistics.median(run[2] for run in runs),
            "connections": max(run[1] for run in runs), "bare": statistics.median(bare), "round_trip": round_trip}


def serve_sheet(port_queue, report: str, server_seconds) -> None:
    """A local Sheets API over the rows of `report` (6 columns): spreadsheets.get gives the grid,
    values.get any A1 range. Each row's JSON is made once, so a page costs a join; the time spent
    answering is added to `server_seconds` so the figures can leave it out."""
    import csv
    import json
    from urllib.parse import unquote, urlsplit

    from a1_range import a1_bounds, split_a1_range

    with open(report, encoding="utf-8", newline="") as handle:
        encoded = [json.dumps(row, ensure_ascii=False) for row in csv.reader(handle)]
    grid = json.dumps({"sheets": [{"properties": {"title": "Sheet1", "gridProperties": {
        "rowCount": len(encoded), "columnCount": 6}}}]}).encode()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802
            start = time.perf_counter()
            path = unquote(urlsplit(self.path).path)
            if "/values/" in path:
                range_ = path.split("/values/", 1)[1]
                first, _, last, _ = a1_bounds(split_a1_range(range_)[1])
                body = ('{"range": ' + json.dumps(range_) + ', "majorDimension": "ROWS", "values": ['
                        + ",".join(encoded[first - 1:last]) + "]}").encode()
            else:
                body = grid
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            with server_seconds.get_lock():
                server_seconds.value += time.perf_counter() - start

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    port_queue.put(server.server_address[1])
    server.serve_forever()


def measure_sheet(report: Path, repeats: int) -> dict:
    """The job in test mode reading the rows of `report` through the real googleapiclient from a local
    Sheets API in its own process; wall time less the server's own time, and peak RSS."""
    server_seconds = multiprocessing.Value("d", 0.0)
    port_queue = multiprocessing.Queue()
    server = multiprocessing.Process(target=serve_sheet, args=(port_queue, str(report), server_seconds), daemon=True)
    server.start()
    try:
        port = port_queue.get(timeout=300)
        env = {**os.environ, "SHEETS_API_ENDPOINT": f"http://127.0.0.1:{port}/", "GOOGLE_API_KEY": "bench"}
        walls, rss_values, server_parts = [], [], []
        for _ in range(repeats):
            with server_seconds.get_lock():
                server_seconds.value = 0.0
            wall, peak = timed([sys.executable, str(ROOT / "process_ticket.py"), "-sheetid", "bench", "-range",
                                "Sheet1!A1:F", "--since", SINCE, "-testmode", "yes", "-q"], env=env)
            walls.append(wall - server_seconds.value)
            server_parts.append(server_seconds.value)
            rss_values.append(peak)
    finally:
        server.terminate()
    return {"job": statistics.median(walls), "server": statistics.median(server_parts),
            "job_rss": max(rss_values) if None not in rss_values else None}


def rss(megabytes: float | None) -> str:
    return "n/a" if megabytes is None else f"{megabytes:.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip the 1,000,000-row report and the 2,000 deliveries")
    parser.add_argument("--keep", metavar="DIR", help="build the inputs in DIR and keep them")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each measurement; medians are shown")
    parser.add_argument("--sheet-only", action="store_true", help="only the Google Sheet figures")
    options = parser.parse_args()
    sizes = [10_000, 100_000] if options.quick else [10_000, 100_000, 1_000_000]
    folder_context = tempfile.TemporaryDirectory(prefix="ticket-bench-") if not options.keep else None
    folder = Path(options.keep or folder_context.name)
    folder.mkdir(parents=True, exist_ok=True)

    # The job's modules compiled once, as every run after a scheduled job's first finds them (this
    # machine sets PYTHONDONTWRITEBYTECODE, which would make each measured run compile them again).
    compileall.compile_dir(ROOT, maxlevels=0, quiet=1)
    print(f"Machine: {platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}; {date.today().isoformat()}\n")
    print(f"Test mode on a report in the seed's layout (~40% closed, one customer per 10 rows, --since {SINCE}), "
          f"against a bare csv.reader pass over the same file in the same Python; medians of {options.repeats} runs. "
          "A file without any '\"' is read by splitting lines; the last row has one quoted line, read by csv.reader:\n")
    print("| rows | csv.reader s | job s | job / csv.reader | job µs/row | job peak RSS MB |")
    print("|---:|---:|---:|---:|---:|---:|")
    cases = [(rows, False) for rows in sizes] + [(sizes[-1], True)]
    file_figures = {}
    for rows, quoted in ([] if options.sheet_only else cases):
        path = folder / f"report_{rows}{'_quoted' if quoted else ''}.csv"
        build_report(path, rows, quoted=quoted)
        figures = measure_report(path, options.repeats)
        file_figures[(rows, quoted)] = figures
        label = f"{rows:,}" + (" with quotes" if quoted else "")
        print(f"| {label} | {figures['baseline']:.2f} | {figures['job']:.2f} | {figures['job'] / figures['baseline']:.2f} "
              f"| {figures['job'] / rows * 1e6:.2f} | {rss(figures['job_rss'])} |", flush=True)

    rows = sizes[-1]
    print(f"\nThe same {rows:,} rows x 6 columns as a Google Sheet, read in pages of 250,000 cells through the real "
          "googleapiclient from a local Sheets API in its own process (its own time left out), against the same "
          "rows read from the CSV file; medians of "
          f"{options.repeats} runs:\n")
    print("| rows | file job s | sheet job s (server excluded) | sheet / file | server s | sheet peak RSS MB |")
    print("|---:|---:|---:|---:|---:|---:|")
    path = folder / f"report_{rows}.csv"
    if not path.exists():
        build_report(path, rows)
    file_job = file_figures.get((rows, False)) or measure_report(path, options.repeats)
    sheet = measure_sheet(path, options.repeats)
    print(f"| {rows:,} | {file_job['job']:.2f} | {sheet['job']:.2f} | {sheet['job'] / file_job['job']:.2f} "
          f"| {sheet['server']:.2f} | {rss(sheet['job_rss'])} |", flush=True)
    if options.sheet_only:
        return

    latency, workers = 0.020, 8
    print(f"\nDelivery: a webhook answering after {latency * 1000:.0f} ms, --workers {workers}; medians of "
          f"{options.repeats} runs. In process: the run itself (read, select, send, save the state after every "
          "delivery). Whole command: the same in a new Python, start-up and imports included. Bare requests: "
          "the same number of POSTs from the same threads with nothing else, for reference:\n")
    print("| customers | ideal s (customers x latency / workers) | in process s | ideal / in process "
          "| range of ideal / in process | connections opened | whole command s | ideal / whole command "
          "| bare requests, ideal / s | webhook's own round trip ms |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for customers in (500,) if options.quick else (500, 2000):
        figures = measure_delivery_repeated(folder, options.repeats, customers, latency, workers)
        ideal = figures["ideal"]
        print(f"| {customers:,} | {ideal:.2f} | {figures['wall']:.2f} | {ideal / figures['wall']:.2f} "
              f"| {ideal / figures['slowest']:.2f} to {ideal / figures['fastest']:.2f} | {figures['connections']} "
              f"| {figures['command']:.2f} | {ideal / figures['command']:.2f} | {ideal / figures['bare']:.2f} "
              f"| {figures['round_trip'] * 1000:.1f} |", flush=True)
    if folder_context:
        folder_context.cleanup()


if __name__ == "__main__":
    main()
