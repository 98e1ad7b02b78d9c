"""The one delivery loop of every route: workers, rate limit, retries, the stop / reject / fail rules, recording, progress.

A route (webhook_route.py, smtp_route.py) only makes one attempt at one message and says what the
answer means (an Answer); everything else a run promises about delivery is decided here, once.
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from time_bounds import call_within

log = logging.getLogger("ticket_notifier")

DELIVERED, RETRY, REJECTED, STOP = "delivered", "retry", "rejected", "stop"
FEWER = "fewer"  # the destination allows fewer connections: the customer goes back, the worker ends
LIMIT = "limit"  # the provider's sending limit is reached: sending stops, nobody is refused, all undelivered wait
RETRY_AFTER_MAX_SECONDS = 120
BACKOFF_MAX_SECONDS = 60
UNREACHABLE_IN_A_ROW = 3     # customers whose every attempt failed to connect: the destination is down, stop trying
SAME_REFUSAL_OPENING = 3     # the first customers all refused alike: the destination is misconfigured, not them
REASON_CHARS = 200           # of a receiver's own text quoted in a refusal


class UnsendableError(ValueError):
    """A message that cannot be made for a customer (it would fail the same way every week): that
    customer is rejected with the reason, and the others go on."""


def backoff_seconds(retry_number: int, factor: float = 1.0) -> float:
    """The wait before retry 1, 2, 3...: `factor` seconds, doubling, at most BACKOFF_MAX_SECONDS,
    plus up to a quarter at random so that workers refused together do not retry together."""
    base = min(BACKOFF_MAX_SECONDS, factor * 2 ** (retry_number - 1))
    return min(BACKOFF_MAX_SECONDS, base * (1 + random.random() / 4))


def retry_wait(answer: Answer, retry_number: int, factor: float = 1.0) -> float:
    """How long to wait before retry `retry_number`: what the destination asked (Retry-After, at most
    RETRY_AFTER_MAX_SECONDS), else the backoff."""
    if answer.retry_after is not None:
        return min(answer.retry_after, RETRY_AFTER_MAX_SECONDS)
    return backoff_seconds(retry_number, factor)


RETRY_STATUSES = frozenset([408, 429, *range(500, 600)])


def retry_after_seconds(value: str | None) -> float | None:
    """A Retry-After header in seconds; one that cannot be read counts as absent."""
    if value is None:
        return None
    from urllib3.exceptions import InvalidHeader
    from urllib3.util.retry import Retry

    try:
        return Retry(0).parse_retry_after(value)
    except (InvalidHeader, ValueError, OverflowError):
        return None


def http_answer(status: int, headers, label: str, said: str = "") -> Answer | None:
    """Section 6's classes for an HTTP answer, one rule for every route that speaks HTTP: any 2xx is
    delivered whatever its body; a 3xx stops the run naming where it pointed (a send is never
    redirected: the message could go elsewhere, or nowhere); 408, 429 and 5xx are retried,
    honouring Retry-After. None for the other 4xx, which each route reads in its own terms."""
    code = f"HTTP {status}"
    if 200 <= status < 300:
        return Answer(DELIVERED, code, code)
    if 300 <= status < 400:
        location = str(headers.get("Location") or headers.get("location") or "")
        pointed = f" (it pointed to {_host_of(location)})" if _host_of(location) else ""
        return Answer(STOP, f"{label} answered {code}{pointed}: the address moved or a proxy redirects it; "
                            "check the destination's URL or endpoint setting (a send is never redirected)", code)
    if status in RETRY_STATUSES:
        return Answer(RETRY, f"{label} answered {code}" + (f": {said}" if said else ""), code,
                      retry_after=retry_after_seconds(headers.get("Retry-After") or headers.get("retry-after")),
                      said=f"{code}: {said}" if said else code)
    return None


def _host_of(url: str) -> str:
    """The host (and port) of a redirect's Location, never its path or query."""
    from url_rules import WEB_PORTS, UrlError, parse_url

    try:
        return parse_url(url, "Location", WEB_PORTS).label if url else ""
    except UrlError:
        return ""


# How providers say that the sending mailbox reached its limit (section 23), whatever the reply's first
# digit: Gmail's and Workspace's 5.4.5 "quota/limit exceeded", Exchange's 5.1.90 (daily recipients),
# SubmissionQuotaExceeded (5.2.0), 5.7.232 / 5.7.233 (the tenant's external recipients), the Gmail API's
# dailyLimitExceeded and its "User-rate limit exceeded. Retry after <time>", any reply that speaks of a
# daily or sending limit or quota.
_SENDING_LIMIT = re.compile(
    r"\b5\.4\.5\b.*\b(quota|limit)|\b(quota|limit)\b.*\b5\.4\.5\b|\b5\.1\.90\b|SubmissionQuotaExceeded|"
    r"\b5\.7\.23[23]\b|dailyLimitExceeded|rate[ -]?limit exceeded\W+retry after|"
    r"\b(daily|hourly|sending|submission)\b[\w -]{0,24}\b(limit|quota)\b",
    re.IGNORECASE)
# The recipient's own mailbox over its quota (5.2.2, "mailbox full") is that customer's refusal, never the sender's limit.
_RECIPIENT_QUOTA = re.compile(r"\b5\.2\.2\b|mailbox (is )?full|over quota|mailbox size", re.IGNORECASE)
_RESUME_AT = re.compile(r"retry after\s+(\S+(?:\s\d\d:\d\d(?::\d\d)?)?)", re.IGNORECASE)


def speaks_of_a_sending_limit(said: str) -> bool:
    """Whether a provider's words say the sending mailbox reached a limit (not the recipient's mailbox
    its quota): at send time (as_sending_limit) and in a delivery report (bounce_reports) alike."""
    return bool(_SENDING_LIMIT.search(said)) and not _RECIPIENT_QUOTA.search(said)


def as_sending_limit(answer: Answer) -> Answer:
    """The one rule, for every destination, that tells a sending limit from a refusal or a failure:
    the provider's words (above), or a Retry-After beyond what a run waits (RETRY_AFTER_MAX_SECONDS).
    Such an answer becomes LIMIT: no retry is spent against it and nobody is rejected for it."""
    if answer.kind in (DELIVERED, FEWER, LIMIT):
        return answer
    beyond_wait = answer.retry_after is not None and answer.retry_after > RETRY_AFTER_MAX_SECONDS
    if beyond_wait or speaks_of_a_sending_limit(answer.said or answer.detail):
        return Answer(LIMIT, f"the sending limit ({answer.said or answer.detail})", answer.code,
                      retry_after=answer.retry_after, said=answer.said)
    return answer


def resume_time(answer: Answer, now: float | None = None) -> str:
    """When the provider says sending can resume ('' when it does not say)."""
    found = _RESUME_AT.search(answer.said or answer.detail)
    if found:
        return found.group(1).rstrip(".,;)")
    if answer.retry_after is not None:
        moment = time.localtime((time.time() if now is None else now) + answer.retry_after)
        return time.strftime("%Y-%m-%d %H:%M", moment) + " (this machine's time)"
    return ""


def limit_line(label: str, sent: int, answer: Answer, waiting: int) -> str:
    """The one line a run that met a sending limit ends with."""
    when = resume_time(answer)
    said = f"it answered {answer.said}" if answer.said else answer.detail.removeprefix("the sending limit (")[:-1]
    return (f"sending limit reached at {label} after {sent} email(s) in this run ({said}); {waiting} "
            f"customer(s) wait for the next run, none rejected; "
            + (f"the provider says sending can resume {when}" if when else "the provider did not say when sending "
               "can resume (a daily limit counts the last 24 hours)")
            + "; if this happens every week, spread the sending with --max-emails N over daily runs")


def answer_text(raw: bytes | str) -> str:
    """A receiver's own words for a message: one line, at most REASON_CHARS characters."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    return " ".join(text.split())[:REASON_CHARS]


@dataclass(frozen=True)
class Answer:
    """What one attempt came to, as the route understood the destination's answer."""
    kind: str                 # DELIVERED, RETRY (may work later), REJECTED (this customer, for good), STOP (the
    #                           destination), FEWER (too many connections: not an attempt at this customer)
    detail: str               # one line for people; never a secret, a URL path or a query
    code: str = ""            # the destination's status or reply code ('' when the job itself decided), to
    #                           spot a destination that refuses everyone alike
    retry_after: float | None = None   # seconds the destination asked us to wait
    unreachable: bool = False          # no connection at all: refused, no such name, no connection in time
    said: str = ""                     # the destination's own words (code and text), when the route has them


class Channel(Protocol):
    """What one worker uses to send: for SMTP its own connection, for a webhook the shared session."""
    def attempt(self, message: object) -> Answer: ...
    def reset(self) -> None: ...      # drop a connection left in an unknown state (an attempt ran out of time)
    def close(self) -> None: ...      # end politely (SMTP QUIT)


class Route(Protocol):
    label: str                          # host:port, for messages
    def open_channel(self) -> Channel: ...
    def shutdown(self) -> None: ...     # after the last channel closed: free what the route shares


@dataclass(frozen=True)
class DeliveryPolicy:
    workers: int = 4
    timeout: float = 30              # one attempt as a whole: connect, send, answer
    retries: int = 3
    backoff_factor: float = 1.0
    max_per_minute: float | None = None
    first_alone: bool = True         # the first attempt goes alone: a refused credential is met once, not per worker


@dataclass
class Deliveries:
    """What deliver_all did with the customers."""
    delivered: list = field(default_factory=list)
    rejected: list[tuple[object, str]] = field(default_factory=list)   # refused for good, recorded as such
    failed: list[tuple[object, str]] = field(default_factory=list)     # with the reason; pending for the next run
    not_attempted: list = field(default_factory=list)                  # left when sending stopped early
    stop_reason: str = ""     # why sending stopped early
    stop_exit_code: int = 0   # 2: the destination or the state needs fixing; 1: the destination could not be reached


class RateLimiter:
    """At most `per_minute` starts a minute, evenly spaced, whatever the number of workers."""

    def __init__(self, per_minute: float | None) -> None:
        self.interval = 60.0 / per_minute if per_minute else 0.0
        self.next_start = 0.0
        self.lock = threading.Lock()

    def wait(self, stop: threading.Event) -> bool:
        """Wait for this start's turn; False when the run stopped meanwhile."""
        if not self.interval:
            return not stop.is_set()
        with self.lock:
            now = time.monotonic()
            start = max(now, self.next_start)
            self.next_start = start + self.interval
        return not stop.wait(start - now) if start > now else not stop.is_set()


def attempt_within(channel: Channel, message: object, timeout: float, label: str) -> Answer:
    """One attempt, given up after `timeout` seconds however slowly the answer trickles in."""
    def attempt() -> Answer:
        try:
            return channel.attempt(message)
        except Exception as error:  # a route's bug must not hang the worker
            log.debug("attempt failed", exc_info=True)
            return Answer(RETRY, f"sending to {label} failed ({type(error).__name__})")

    answer = call_within(timeout + 1, attempt)  # the route's own timeouts come first; this is the outer bound
    if answer is None:
        channel.reset()
        return Answer(RETRY, f"{label} gave no complete answer within {timeout:g}s")
    return answer


class _Run:
    """One deliver_all call: the customers, the workers' shared bookkeeping, and the rules that turn
    each customer's final answer into a result. Every rule is one method, applied under the lock in
    the order the answers end."""

    def __init__(self, route: Route, customers: Sequence[object], policy: DeliveryPolicy, callbacks: _Callbacks) -> None:
        self.route, self.customers, self.policy, self.callbacks = route, customers, policy, callbacks
        self.results = Deliveries()
        self.lock = threading.RLock()  # re-entered when a record made under it fails and stops the run
        self.stop = threading.Event()
        self.next_index = 0
        self.unreachable_in_a_row = 0
        self.opening: list[tuple[object, Answer]] | None = []  # the refusals while every answer so far is alike
        self.refused_alike = ""  # the code of an opening that showed the destination misconfigured
        self.limiter = RateLimiter(policy.max_per_minute)
        self.given_back: list = []
        self.workers = max(1, min(policy.workers, len(customers)))
        self.workers_left = self.workers  # not ended, nor told fewer
        self.first_answer = threading.Event()  # the other workers start once the first attempt was answered
        self.limit: tuple[Answer, int] | None = None  # the first sending-limit answer, and the emails sent before it

    # ---------------------------------------------------------------- a worker

    def work(self) -> None:
        """One worker: its own channel, one customer after another until none is left or the run stops."""
        channel = self.route.open_channel()
        try:
            while (customer := self.take()) is not None:
                answer = self.final_answer(channel, customer)
                while answer is not None and answer.kind == FEWER and not self.give_back(customer):
                    answer = self.final_answer(channel, customer)  # the others have ended: carry on with it
                if answer is None:
                    self.results_add("not_attempted", customer)
                elif answer.kind == FEWER:
                    log.info("%s; one connection fewer", answer.detail)
                    return
                else:
                    self.settle(customer, answer)
                    self.report_progress()
        finally:
            channel.close()

    def take(self) -> object | None:
        """The next customer (one given back first); None ends the worker: none left, or the run stopped."""
        with self.lock:
            if self.stop.is_set() or (not self.given_back and self.next_index >= len(self.customers)):
                self.workers_left -= 1
                return None
            if self.given_back:
                return self.given_back.pop()
            customer = self.customers[self.next_index]
            self.next_index += 1
            return customer

    def final_answer(self, channel: Channel, customer: object) -> Answer | None:
        """The customer's message, made just before sending (a large run holds only the messages in
        flight), and the answer its attempts came to; None when the run stopped first."""
        try:
            return self.deliver_one(channel, self.callbacks.message_for(customer))
        except UnsendableError as error:
            return Answer(REJECTED, f"not sent: {error}")
        except Exception as error:  # a bug: the customer stays pending, the run stops, details in the log
            log.debug("delivery failed", exc_info=True)
            return Answer(STOP, f"unexpected {type(error).__name__} while sending: {error}")

    def deliver_one(self, channel: Channel, message: object) -> Answer | None:
        """Attempts with backoff until the message is delivered, refused, or out of retries.
        None when the run stopped before the first attempt. FEWER comes back at once, unless this
        worker is the last one: then it waits like a retry and tries again (not counted)."""
        every_attempt_unreachable, attempted, retries_done = True, False, 0
        while True:
            if not self.limiter.wait(self.stop):
                return Answer(RETRY, "the run stopped before a retry") if attempted else None
            answer = as_sending_limit(attempt_within(channel, message, self.policy.timeout, self.route.label))
            self.first_answer.set()
            if answer.kind == LIMIT:
                return answer
            if answer.kind == FEWER:
                if not self.last_worker():
                    return answer
                if self.stop.wait(backoff_seconds(1, self.policy.backoff_factor)):
                    return Answer(RETRY, answer.detail) if attempted else None
                continue
            attempted = True
            if answer.kind != RETRY:
                return answer
            every_attempt_unreachable = every_attempt_unreachable and answer.unreachable
            if retries_done >= self.policy.retries:
                return Answer(RETRY, answer.detail, answer.code, unreachable=every_attempt_unreachable)
            retries_done += 1
            wait = retry_wait(answer, retries_done, self.policy.backoff_factor)
            log.info("%s; retrying in %.1fs", answer.detail, wait)
            if self.stop.wait(wait):
                return Answer(RETRY, answer.detail, answer.code)

    def last_worker(self) -> bool:
        with self.lock:
            return self.workers_left <= 1

    def give_back(self, customer: object) -> bool:
        """A customer not attempted (the destination wanted fewer connections) goes first again to a
        worker still running, and this one ends; False when no other worker is left to take it."""
        with self.lock:
            if self.workers_left <= 1:
                return False
            self.given_back.append(customer)
            self.workers_left -= 1
            return True

    # ---------------------------------------------------------------- the rules

    def settle(self, customer: object, answer: Answer) -> None:
        """A customer's final answer: recorded as delivered or refused, or pending as failed; the run
        stops when the destination shows itself misconfigured, unreachable or refusing the job."""
        with self.lock:
            if self.sending_limit(customer, answer):
                return
            if self.opening_of_alike_refusals(customer, answer) or self.refused_in_flight(customer, answer):
                return
            self.count_unreachable(answer)
            if answer.kind == STOP:
                self.stop_sending(answer.detail, 2)
            if answer.kind in (STOP, RETRY):
                self.results.failed.append((customer, answer.detail))
        if answer.kind == DELIVERED:
            self.record_delivery(customer)
        elif answer.kind == REJECTED:
            self.record_refusal(customer, answer)

    def sending_limit(self, customer: object, answer: Answer) -> bool:
        """The provider's sending limit: this customer and every one not delivered wait for the next
        run (exit 1), also those answered so while in flight; nobody is rejected for it."""
        if answer.kind != LIMIT:
            return False
        self.results.failed.append((customer, answer.detail))
        if self.limit is None:
            self.limit = (answer, len(self.results.delivered))
            self.stop_sending(LIMIT, 1)  # the line is written once the run knows how many wait (deliver_all)
        return True

    def opening_of_alike_refusals(self, customer: object, answer: Answer) -> bool:
        """While every answer so far refused alike, a refusal is recorded at once (under the lock, so
        the opening's records are exactly these) and kept; the SAME_REFUSAL_OPENING-th alike means the
        destination is misconfigured, not the customers: their refusals are withdrawn, they stay
        pending and the run stops. Any other answer ends the opening; the job's own refusals (no
        code) neither count nor end it. True when the answer was handled here."""
        if self.opening is None or (answer.kind == REJECTED and not answer.code):
            return False
        if answer.kind != REJECTED or any(earlier.code != answer.code for _, earlier in self.opening):
            self.opening = None
            return False
        self.opening.append((customer, answer))
        if len(self.opening) < SAME_REFUSAL_OPENING:
            self.record_refusal(customer, answer)
            return True
        withdrawn = [refused for refused, _ in self.opening]
        self.results.rejected = [(c, reason) for c, reason in self.results.rejected if not _among(c, withdrawn)]
        self.results.failed = [(c, reason) for c, reason in self.results.failed if not _among(c, withdrawn)]
        self.results.failed += [(refused, refusal.detail) for refused, refusal in self.opening]
        self.callbacks.on_withdrawn(withdrawn)
        self.refused_alike, self.opening = answer.code, None
        self.stop_sending(f"{self.route.label} refused the first {SAME_REFUSAL_OPENING} customers alike "
                          f"({answer.detail}): check the destination's settings; they stay pending", 2)
        return True

    def refused_in_flight(self, customer: object, answer: Answer) -> bool:
        """A refusal alike those of a misconfigured opening, answered after it stopped the run: the
        customer stays pending too."""
        if answer.kind == REJECTED and self.refused_alike and answer.code == self.refused_alike:
            self.results.failed.append((customer, answer.detail))
            return True
        return False

    def count_unreachable(self, answer: Answer) -> None:
        """UNREACHABLE_IN_A_ROW customers whose every attempt failed to connect stop the run (exit 1);
        any answer from the destination starts the count again."""
        if answer.kind == RETRY and answer.unreachable:
            self.unreachable_in_a_row += 1
            if self.unreachable_in_a_row >= UNREACHABLE_IN_A_ROW:
                self.stop_sending(f"could not connect to {self.route.label} for {UNREACHABLE_IN_A_ROW} customers in "
                                  "a row; stopped trying: check that it is up and reachable from here", 1)
        else:
            self.unreachable_in_a_row = 0

    def record_delivery(self, customer: object) -> None:
        if self.recorded(self.callbacks.on_delivered, customer):
            self.results_add("delivered", customer)

    def record_refusal(self, customer: object, answer: Answer) -> None:
        """A refusal that cannot be recorded leaves its customer pending (and stops the run)."""
        if self.recorded(self.callbacks.on_rejected, customer, answer.detail):
            self.results_add("rejected", (customer, answer.detail))
        else:
            self.results_add("failed", (customer, f"{answer.detail} (the refusal could not be recorded)"))

    def recorded(self, callback: Callable, *arguments: object) -> bool:
        """The state saved by `callback`; when it cannot be, no new attempt starts."""
        try:
            callback(*arguments)
        except Exception as error:
            self.stop_sending(str(error), 2)
            return False
        return True

    def stop_sending(self, reason: str, exit_code: int) -> None:
        """No new attempt starts, not even a retry that was waiting; the first reason is the one told."""
        with self.lock:
            if not self.results.stop_reason:
                self.results.stop_reason, self.results.stop_exit_code = reason, exit_code
            self.stop.set()

    # ---------------------------------------------------------------- results

    def results_add(self, outcome: str, entry: object) -> None:
        with self.lock:
            getattr(self.results, outcome).append(entry)

    def report_progress(self) -> None:
        with self.lock:
            results = self.results
            self.callbacks.on_progress(len(results.delivered) + len(results.failed) + len(results.rejected),
                                       len(self.customers))


def _among(customer: object, customers: list) -> bool:
    """By identity: two customers may be equal values, never the same one."""
    return any(customer is other for other in customers)


@dataclass(frozen=True)
class _Callbacks:
    message_for: Callable[[object], object]
    on_delivered: Callable[[object], None]
    on_rejected: Callable[[object, str], None]
    on_withdrawn: Callable[[list], None]
    on_progress: Callable[[int, int], None]


def deliver_all(route: Route, customers: Sequence[object], policy: DeliveryPolicy,
                message_for: Callable[[object], object], on_delivered: Callable[[object], None],
                on_rejected: Callable[[object, str], None] = lambda customer, reason: None,
                on_withdrawn: Callable[[list], None] = lambda customers: None,
                on_progress: Callable[[int, int], None] = lambda done, total: None) -> Deliveries:
    """One message per customer with `policy.workers` threads (the rules: _Run.settle).

    `on_delivered` and `on_rejected` save the state and run in the worker before it takes its next
    customer; when one raises, no new attempt starts. `on_withdrawn` takes back the refusals of an
    opening that showed the destination misconfigured, and must not raise.
    """
    run = _Run(route, customers, policy, _Callbacks(message_for, on_delivered, on_rejected, on_withdrawn, on_progress))
    workers = [threading.Thread(target=run.work, name=f"deliver-{n}", daemon=True) for n in range(run.workers)]
    try:
        # The first attempt goes alone: a credential, permission or API the provider refuses is found
        # on one customer, never on one per worker.
        workers[0].start()
        while policy.first_alone and not run.first_answer.wait(0.2) and workers[0].is_alive():
            pass
        for worker in workers[1:]:
            worker.start()
        for worker in workers:
            while worker.is_alive():
                worker.join(0.2)  # a short join lets Ctrl+C through
    except BaseException:
        run.stop.set()  # Ctrl+C: start nothing more; the attempts in flight end within the timeout
        for worker in workers:
            if worker.is_alive():
                worker.join(policy.timeout + 2)
        raise
    finally:
        run.results.not_attempted += run.given_back + list(run.customers[run.next_index:])
        if run.limit is not None and run.results.stop_reason == LIMIT:
            answer, sent = run.limit
            waiting = len(run.results.failed) + len(run.results.not_attempted)
            run.results.stop_reason = limit_line(route.label, sent, answer, waiting)
    return run.results
