"""Benchmark of the selection alone: select_closed_tickets of this checkout against another checkout's, on
bench.py's million-row report held in memory, alternating, in one run (issue 35):

    git worktree add /tmp/before <commit>
    venv/bin/python bench/selection.py /tmp/before [RUNS]
"""

from __future__ import annotations

import gc
import importlib.util
import statistics
import sys
import tempfile
import time
from datetime import date, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import bench  # noqa: E402 (after the path is set)
from report_readers import read_csv  # noqa: E402


def load(name: str, path: Path):
    """One checkout's ticket_core, under its own module name."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def main() -> None:
    other, runs = Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 9
    report = Path(tempfile.gettempdir()) / "bench-selection-1m.csv"
    if not report.exists():
        bench.build_report(report, 1_000_000)
    rows = list(read_csv(report))
    modules = {"before": load("ticket_core_before", other / "ticket_core.py"),
               "after": load("ticket_core_after", ROOT / "ticket_core.py")}
    since, now = date(2026, 1, 1), datetime(2026, 12, 7, 12)
    seconds: dict[str, list[float]] = {"before": [], "after": []}
    for run in range(runs):
        for name in ("before", "after") if run % 2 == 0 else ("after", "before"):
            module = modules[name]
            gc.collect()
            gc.disable()
            start = time.perf_counter()
            module.select_closed_tickets(rows, since, now, module.SelectOptions())
            seconds[name].append(time.perf_counter() - start)
            gc.enable()
    medians = {name: statistics.median(values) for name, values in seconds.items()}
    print("| runs each | before, median s | after, median s | after / before, medians | after / before, fastest |")
    print(f"|---:|---:|---:|---:|---:|\n| {runs} | {medians['before']:.3f} | {medians['after']:.3f} | "
          f"{medians['after'] / medians['before']:.2f} | {min(seconds['after']) / min(seconds['before']):.2f} |")


if __name__ == "__main__":
    main()
