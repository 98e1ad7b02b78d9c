"""Calls bounded as a whole in time: a socket timeout bounds each read, not an answer that trickles in a byte at a time."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class TooSlowError(Exception):
    """A call that did not finish within its bound (it goes on in a helper thread, left behind)."""


def call_within(seconds: float, work: Callable[[], T]) -> T | None:
    """What `work()` returns, or None when it has not finished within `seconds`. It runs in a daemon
    helper thread, left behind when too slow. `work` must catch its own exceptions."""
    results: list[T] = []
    helper = threading.Thread(target=lambda: results.append(work()), name="bounded call", daemon=True)
    helper.start()
    helper.join(seconds)
    return results[0] if results else None


def run_within(seconds: float, work: Callable[[], T]) -> T:
    """What `work()` returns, or what it raised; TooSlowError when it has not finished within `seconds`."""
    def outcome() -> tuple[bool, object]:
        try:
            return True, work()
        except BaseException as error:  # handed to the caller's thread as it is
            return False, error
    result = call_within(seconds, outcome)
    if result is None:
        raise TooSlowError(f"no complete answer within {seconds:g}s")
    finished, value = result
    if not finished:
        raise value  # type: ignore[misc]
    return value  # type: ignore[return-value]
