"""Where the emails go: the one list of destinations, and what a destination module provides.

The story (process_ticket.py), the command line (cli_options.py), --check (run_check.py), the
wrappers and the tests learn of destinations from DESTINATION_MODULES, never by branching on one.
Adding a destination is its module (which defines DESTINATION) plus one line here.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from customer_message import Content, Sender

# One line per destination: the module that defines its DESTINATION.
DESTINATION_MODULES = (
    "webhook_route",
    "smtp_route",
    "gmail_route",
    "microsoft365_route",
)


class SettingError(ValueError):
    """A destination's setting that cannot work: a usage error at start (exit 2), naming it."""


class CheckFailedError(Exception):
    """One --check line that did not pass; the message says what to fix."""


@dataclass(frozen=True)
class SendContext:
    """All a destination is given of the run (never the whole Settings): its own checked settings,
    how each attempt is bounded, what the emails say and who sends them, and the Google credential
    files (Gmail sends with the credential that reads the sheet)."""
    destination_settings: Any          # the value this destination's `configure` returned
    timeout: float                     # one attempt as a whole, token calls included
    workers: int
    retries: int
    content: Content
    sender: Sender | None
    credentials: Path
    token: Path
    api_key: str | None
    read_bounces: bool                 # --read-bounces / READ_BOUNCES

    def with_timeout(self, seconds: float) -> SendContext:
        return replace(self, timeout=seconds)


@dataclass(frozen=True)
class Destination:
    """Everything the job knows of one destination. At start it reads only the command line and
    the environment (`named`, `configure`, `secrets`); when it sends, checks or reads bounces it
    is given a SendContext, never the whole Settings. A route answers each attempt with a
    delivery.Answer; what an answer means for the run is decided in delivery, once."""
    name: str
    summary: str                                   # for --help
    env_keys: tuple[str, ...]                      # the settings file keys / environment variables it reads
    secret_keys: tuple[str, ...]                   # those whose values are secret
    add_options: Callable[[Any], None]             # its own options, on an argparse group
    named: Callable[[Any, Mapping[str, str]], bool]  # (options, environment): its URL is set
    configure: Callable[[Any, Mapping[str, str]], Any]  # (options, environment) -> its own frozen settings
    secrets: Callable[[Any], list[str]]            # (its own settings) -> values the log filter hides
    open: Callable[[SendContext], Any]             # -> a delivery.Route
    message_for: Callable[[SendContext], Callable[[Any], Any]]  # -> customer -> the message one attempt sends
    check_live: Callable[[SendContext], str]       # --check's line; raises CheckFailedError
    needs_sender: bool = False                     # --from is required (in test mode too)
    named_by: str = ""                             # how the settings name it without --send-with, for messages
    max_in_flight: int | None = None               # at most this many messages at once, whatever --workers says
    # Bounces: whether this run reads them; the reports that arrived since a cursor (or a first day),
    # and the cursor after them; --check's proof that the mailbox can be read (SettingError).
    reads_bounces: Callable[[SendContext], bool] = lambda run: False
    read_bounces: Callable[[SendContext, dict, Any], tuple[list[bytes], dict]] | None = None
    check_bounces: Callable[[SendContext], str] | None = None


def all_destinations() -> tuple[Destination, ...]:
    return tuple(importlib.import_module(name).DESTINATION for name in DESTINATION_MODULES)


def by_name(name: str) -> Destination:
    return next(destination for destination in all_destinations() if destination.name == name)


def how_to_name_one() -> str:
    """'no destination' advice, made from the list: each destination's URL setting, or --send-with NAME."""
    named = [destination.named_by for destination in all_destinations() if destination.named_by]
    return ", ".join(named) + ", or --send-with " + "|".join(d.name for d in all_destinations())


def environment_keys() -> tuple[str, ...]:
    """Every environment key a destination reads (the wrappers and run_settings.env.example know them)."""
    return tuple(key for destination in all_destinations() for key in destination.env_keys)
