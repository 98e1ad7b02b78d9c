"""The delivery loop's rules in-process (deliver_all with scripted channels): what a user reads in
the summary and the state when a destination retries, refuses alike, wants fewer connections or
breaks, each on its boundary. Written for the survivors of a mutation run (README, "Mutation testing")."""

import logging
import threading
import time

import pytest
from conftest import ScriptedDestination as Channels

import delivery
from delivery import (
    DELIVERED,
    FEWER,
    LIMIT,
    REJECTED,
    RETRY,
    STOP,
    Answer,
    DeliveryPolicy,
    RateLimiter,
    UnsendableError,
    answer_text,
    attempt_within,
    backoff_seconds,
    deliver_all,
    http_answer,
    limit_line,
    resume_time,
    retry_wait,
)


@pytest.fixture(autouse=True)
def no_worker_dies(monkeypatch):
    """A worker thread that raises loses its customer from every list: fail the test instead."""
    died = []
    monkeypatch.setattr(threading, "excepthook", lambda hook_arguments: died.append(hook_arguments.exc_value))
    yield
    assert died == []


class StateCallbacks:
    """The state callbacks: what is recorded as refused, after withdrawals, and the progress seen."""

    def __init__(self, fail_rejection: Exception | None = None) -> None:
        self.delivered, self.rejected, self.withdrawn, self.progress = [], [], [], []
        self.fail_rejection = fail_rejection

    def on_rejected(self, customer, reason) -> None:
        if self.fail_rejection:
            raise self.fail_rejection
        self.rejected.append((customer, reason))

    def on_withdrawn(self, customers) -> None:
        self.withdrawn.append(list(customers))
        self.rejected = [(c, reason) for c, reason in self.rejected if c not in customers]


def deliver(route, customers, recorder=None, message_for=lambda customer: customer, **policy):
    recorder = recorder or StateCallbacks()
    return deliver_all(route, customers, DeliveryPolicy(**{"timeout": 5, "backoff_factor": 0.001, **policy}),
                       message_for, recorder.delivered.append, recorder.on_rejected, recorder.on_withdrawn,
                       lambda done, total: recorder.progress.append((done, total)))


REFUSED = Answer(REJECTED, "HTTP 422 bad field", "HTTP 422")


# ---------------------------------------------------------------- backoff and answers

def test_the_backoff_starts_at_one_second_and_adds_at_most_a_quarter(monkeypatch):
    monkeypatch.setattr(delivery.random, "random", lambda: 0.999)
    assert 1.249 < backoff_seconds(1) <= 1.25
    assert 4.99 < backoff_seconds(3) <= 5.0
    assert backoff_seconds(30) == delivery.BACKOFF_MAX_SECONDS
    monkeypatch.setattr(delivery.random, "random", lambda: 0.0)
    assert backoff_seconds(2, factor=3) == 6 and retry_wait(Answer(RETRY, "busy"), 2, factor=3) == 6


def test_each_retry_waits_the_backoff_of_its_own_number(monkeypatch):
    waits = []
    monkeypatch.setattr(delivery, "backoff_seconds", lambda number, factor=1.0: waits.append((number, factor)) or 0)
    route = Channels({"a": [Answer(RETRY, "HTTP 503 busy", "HTTP 503")]})
    results = deliver(route, ["a"], retries=2, backoff_factor=0.5)
    assert waits == [(1, 0.5), (2, 0.5)] and results.failed == [("a", "HTTP 503 busy")]


def test_a_retry_is_logged_with_its_reason_and_wait(notifier_log, monkeypatch):
    monkeypatch.setattr(delivery, "backoff_seconds", lambda number, factor=1.0: 0.25)
    deliver(Channels({"a": [Answer(RETRY, "HTTP 503 busy", "HTTP 503"), Answer(DELIVERED, "ok")]}), ["a"])
    messages = notifier_log.messages
    assert "HTTP 503 busy; retrying in 0.2s" in messages or "HTTP 503 busy; retrying in 0.3s" in messages


def test_a_receivers_words_become_one_short_line():
    assert answer_text(b"bad\r\n  field \xff") == "bad field \ufffd"
    assert answer_text(b"ok") == "ok" and answer_text("two\nlines") == "two lines"
    assert answer_text("x" * 500) == "x" * delivery.REASON_CHARS


# ---------------------------------------------------------------- the rate limit

def test_the_rate_limit_spaces_starts_evenly(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(delivery.time, "monotonic", lambda: now[0])
    limiter, stop = RateLimiter(30), threading.Event()
    assert limiter.interval == 2.0 and RateLimiter(None).interval == 0
    waited = []
    monkeypatch.setattr(stop, "wait", lambda seconds: waited.append(seconds) or False)
    assert limiter.wait(stop) is True and waited == []          # the first start does not wait
    assert limiter.wait(stop) is True and waited == [2.0]       # the next one waits its turn
    now[0] = 101.0
    assert limiter.wait(stop) is True and waited == [2.0, 3.0] and limiter.next_start == 106.0


def test_a_stopped_run_starts_nothing_more_with_or_without_a_rate_limit():
    stop = threading.Event()
    stop.set()
    assert RateLimiter(None).wait(stop) is False and RateLimiter(6000).wait(stop) is False
    assert RateLimiter(None).wait(threading.Event()) is True


def test_the_run_uses_the_policy_s_rate_limit(monkeypatch):
    made = []

    class Recording(RateLimiter):
        def __init__(self, per_minute):
            made.append(per_minute)
            super().__init__(None)
    monkeypatch.setattr(delivery, "RateLimiter", Recording)
    deliver(Channels({"a": [Answer(DELIVERED, "ok")]}), ["a"], max_per_minute=12)
    assert made == [12]


# ---------------------------------------------------------------- one attempt

class Raising:
    def attempt(self, message):
        raise ValueError("a route's bug")

    def reset(self):
        pass


class Slow:
    def __init__(self, seconds):
        self.seconds, self.resets = seconds, 0

    def attempt(self, message):
        time.sleep(self.seconds)
        return Answer(DELIVERED, "late but whole")

    def reset(self):
        self.resets += 1


def test_a_route_s_exception_is_a_retry_naming_its_type():
    assert attempt_within(Raising(), "m", 5, "host:1") == Answer(RETRY, "sending to host:1 failed (ValueError)")


def test_the_route_s_own_timeout_comes_first_then_the_outer_bound_gives_up():
    assert attempt_within(Slow(0.3), "m", 0.1, "host:1").kind == DELIVERED   # the outer bound is the timeout + 1 s
    slow = Slow(3)
    assert attempt_within(slow, "m", 0.1, "host:1") == Answer(RETRY, "host:1 gave no complete answer within 0.1s")
    assert slow.resets == 1


# ---------------------------------------------------------------- retries and stops

def test_retries_end_with_the_last_answer_s_reason_and_count_each_attempt():
    route = Channels({"a": [Answer(RETRY, "HTTP 503 busy", "HTTP 503")]})
    results = deliver(route, ["a"], retries=2)
    assert route.attempts == ["a", "a", "a"] and results.failed == [("a", "HTTP 503 busy")]


def test_a_retry_that_kept_its_code_ends_the_opening_of_alike_refusals():
    """An answered retry ends 'the first three refused alike': later refusals are the customers' own."""
    route = Channels({"a": [REFUSED], "b": [Answer(RETRY, "HTTP 503 busy", "HTTP 503")], "c": [REFUSED],
                      "d": [REFUSED]})
    recorder = StateCallbacks()
    results = deliver(route, ["a", "b", "c", "d"], recorder, workers=1, retries=1)
    assert results.stop_reason == "" and [c for c, _ in results.rejected] == ["a", "c", "d"]
    assert [c for c, _ in recorder.rejected] == ["a", "c", "d"] and results.failed == [("b", "HTTP 503 busy")]


def test_three_alike_refusals_first_are_withdrawn_and_stop_the_run():
    route = Channels({name: [REFUSED] for name in "abcd"})
    recorder = StateCallbacks()
    results = deliver(route, list("abcd"), recorder, workers=1)
    assert results.stop_exit_code == 2
    assert results.stop_reason == ("scripted:1 refused the first 3 customers alike (HTTP 422 bad field): check the "
                                   "destination's settings; they stay pending")
    assert results.rejected == [] and results.failed == [(name, "HTTP 422 bad field") for name in "abc"]
    assert results.not_attempted == ["d"] and recorder.withdrawn == [["a", "b", "c"]] and recorder.rejected == []


def test_two_alike_refusals_are_the_customers_own():
    route = Channels({"a": [REFUSED], "b": [REFUSED], "c": [Answer(DELIVERED, "ok")], "d": [REFUSED]})
    recorder = StateCallbacks()
    results = deliver(route, list("abcd"), recorder, workers=1)
    assert results.stop_reason == "" and recorder.rejected == [(name, "HTTP 422 bad field") for name in "abd"]
    assert recorder.delivered == ["c"] and recorder.progress == [(1, 4), (2, 4), (3, 4), (4, 4)]


def test_refusals_of_different_codes_are_not_alike():
    route = Channels({"a": [REFUSED], "b": [Answer(REJECTED, "HTTP 400 no", "HTTP 400")], "c": [REFUSED]})
    results = deliver(route, list("abc"), workers=1)
    assert results.stop_reason == "" and len(results.rejected) == 3


def test_the_job_s_own_refusals_have_no_code_and_never_look_like_a_misconfigured_destination():
    def message_for(customer):
        raise UnsendableError(f"{customer} has no usable template")
    results = deliver(Channels({}), list("abcd"), message_for=message_for, workers=1)
    assert results.stop_reason == ""
    assert results.rejected == [(name, f"not sent: {name} has no usable template") for name in "abcd"]


def test_refusals_in_flight_when_the_opening_stops_the_run_stay_pending_and_are_not_recorded():
    route = Channels({name: [REFUSED] for name in "abcd"}, gate=threading.Barrier(4))
    recorder = StateCallbacks()
    results = deliver(route, list("abcd"), recorder, workers=4, first_alone=False)
    assert results.stop_exit_code == 2 and results.rejected == [] and recorder.rejected == []
    assert sorted(results.failed) == [(name, "HTTP 422 bad field") for name in "abcd"]


def test_a_refusal_that_cannot_be_recorded_leaves_the_customer_pending_and_stops():
    route = Channels({"a": [REFUSED], "b": [Answer(DELIVERED, "ok")]})
    results = deliver(route, ["a", "b"], StateCallbacks(fail_rejection=OSError("rejected.csv is open in Excel")), workers=1)
    assert results.failed == [("a", "HTTP 422 bad field (the refusal could not be recorded)")]
    assert results.stop_reason == "rejected.csv is open in Excel" and results.stop_exit_code == 2
    assert results.rejected == [] and results.not_attempted == ["b"]


def test_a_bug_while_making_a_message_stops_the_run_and_keeps_the_customer_pending():
    def message_for(customer):
        raise KeyError("subject")
    results = deliver(Channels({}), ["a", "b"], message_for=message_for, workers=1)
    assert results.failed == [("a", "unexpected KeyError while sending: 'subject'")]
    assert results.stop_exit_code == 2 and results.not_attempted == ["b"]


def test_a_customer_waiting_for_the_rate_limit_when_the_run_stops_is_not_attempted():
    route = Channels({"a": [Answer(STOP, "HTTP 401 wrong secret", "HTTP 401")], "b": [Answer(DELIVERED, "ok")],
                      "c": [Answer(DELIVERED, "ok")]})
    results = deliver(route, ["a", "b", "c"], workers=2, max_per_minute=20)   # b's turn is 3 s after a's
    assert results.failed == [("a", "HTTP 401 wrong secret")] and results.stop_exit_code == 2
    assert sorted(results.not_attempted) == ["b", "c"] and route.attempts == ["a"]


def test_a_retry_waiting_for_the_rate_limit_when_the_run_stops_is_a_failure_of_that_customer():
    route = Channels({"a": [Answer(RETRY, "HTTP 503 busy", "HTTP 503")], "b": [Answer(STOP, "HTTP 401 no", "HTTP 401")]})
    results = deliver(route, ["a", "b"], workers=2, max_per_minute=120, retries=3)   # starts 0.5 s apart
    assert ("a", "the run stopped before a retry") in results.failed and results.stop_exit_code == 2


def test_a_stop_cuts_a_backoff_short_and_the_customer_keeps_its_last_reason():
    route = Channels({"a": [Answer(RETRY, "HTTP 503 busy", "HTTP 503")], "b": [Answer(STOP, "HTTP 401 no", "HTTP 401")]})
    results = deliver(route, ["a", "b"], workers=2, retries=3, backoff_factor=60)
    assert sorted(results.failed) == [("a", "HTTP 503 busy"), ("b", "HTTP 401 no")]


# ---------------------------------------------------------------- fewer connections

def test_the_last_worker_waits_when_the_destination_wants_fewer_connections():
    route = Channels({"a": [Answer(FEWER, "421 too many connections"), Answer(DELIVERED, "ok")]})
    results = deliver(route, ["a"], workers=1, retries=0)
    assert results.delivered == ["a"] and len(route.attempts) == 2


def test_a_worker_told_fewer_gives_its_customer_back_and_ends():
    a_channel_closed = threading.Event()

    class ClosingSeen(Channels):
        def open_channel(self):
            channel = super().open_channel()
            original_close, original_attempt = channel.close, channel.attempt

            def close():
                original_close()
                a_channel_closed.set()

            def attempt(message):
                if message == "b":
                    a_channel_closed.wait(10)     # b is answered once the worker told fewer has ended
                return original_attempt(message)
            channel.close, channel.attempt = close, attempt
            return channel
    route = ClosingSeen({"a": [Answer(FEWER, "421 too many connections"), Answer(DELIVERED, "ok")],
                        "b": [Answer(DELIVERED, "ok")], "c": [Answer(DELIVERED, "ok")]})
    results = deliver(route, ["a", "b", "c"], workers=2, retries=0)
    assert sorted(results.delivered) == ["a", "b", "c"] and results.not_attempted == []
    told_fewer = route.channel_attempts[0][0]
    assert route.channel_attempts[0][1] == "a" and route.closed[0] == told_fewer
    assert all(channel != told_fewer for channel, _ in route.channel_attempts[1:])


def test_when_every_worker_is_told_fewer_the_last_one_carries_on():
    route = Channels({name: [Answer(FEWER, "421 too many"), Answer(DELIVERED, "ok")] for name in "abc"})
    results = deliver(route, list("abc"), workers=3, retries=0)
    assert sorted(results.delivered) == ["a", "b", "c"] and results.not_attempted == []
    assert len(route.closed) == 3 and results.failed == []


def test_customers_left_when_sending_stopped_are_all_listed_once():
    route = Channels({"a": [Answer(STOP, "HTTP 401 no", "HTTP 401")], "b": [Answer(DELIVERED, "ok")],
                      "c": [Answer(DELIVERED, "ok")], "d": [Answer(DELIVERED, "ok")]})
    results = deliver(route, list("abcd"), workers=2, max_per_minute=20)
    assert sorted(results.not_attempted) == ["b", "c", "d"] and results.delivered == []


def test_a_customer_given_back_after_the_other_workers_ended_is_still_delivered():
    """The worker told fewer last, when the others have already run out of customers, carries on."""
    gate = threading.Event()

    class Late(Channels):
        def open_channel(self):
            channel = super().open_channel()
            if channel.number == 1:
                original = channel.attempt

                def attempt(message):
                    gate.wait(10)          # answers once the other worker has ended
                    return original(message)
                channel.attempt = attempt
            return channel
    route = Late({"a": [Answer(FEWER, "421 too many connections"), Answer(DELIVERED, "ok")],
                  "b": [Answer(DELIVERED, "ok")]})
    watcher = threading.Thread(target=lambda: (time.sleep(0.3), gate.set()))
    watcher.start()
    results = deliver(route, ["a", "b"], workers=2, retries=0)
    watcher.join()
    assert sorted(results.delivered) == ["a", "b"] and results.not_attempted == []


# ---------------------------------------------------------------- the second mutation run's survivors

def test_a_route_s_bug_is_logged_with_its_traceback_and_named_in_the_failure(notifier_log):
    class Broken(Channels):
        def open_channel(self):
            channel = super().open_channel()
            channel.attempt = lambda message: 1 / 0
            return channel
    results = deliver(Broken({}), ["a"], retries=0)
    assert results.failed == [("a", "sending to scripted:1 failed (ZeroDivisionError)")]
    assert logged_with_traceback(notifier_log, "attempt failed", "ZeroDivisionError")


def test_a_bug_while_making_a_message_is_logged_with_its_traceback(notifier_log):
    def message_for(customer):
        raise KeyError("subject")
    deliver(Channels({}), ["a"], message_for=message_for)
    assert logged_with_traceback(notifier_log, "delivery failed", "KeyError")


def test_the_outer_bound_is_the_timeout_and_one_second():
    assert attempt_within(Slow(1.6), "m", 0.1, "host:1").kind == RETRY


def test_the_last_worker_told_fewer_waits_one_backoff_then_tries_again(monkeypatch):
    waits = []
    monkeypatch.setattr(delivery, "backoff_seconds", lambda number, factor=1.0: waits.append((number, factor)) or 0)
    route = Channels({"a": [Answer(FEWER, "421 too many connections"), Answer(DELIVERED, "ok")]})
    results = deliver(route, ["a"], workers=1, retries=0, backoff_factor=0.25)
    assert results.delivered == ["a"] and waits == [(1, 0.25)]


def test_the_progress_counts_delivered_failed_and_refused_customers():
    route = Channels({"a": [Answer(DELIVERED, "ok")], "b": [Answer(RETRY, "HTTP 503", "HTTP 503")], "c": [REFUSED]})
    recorder = StateCallbacks()
    deliver(route, ["a", "b", "c"], recorder, workers=1, retries=0)
    assert recorder.progress == [(1, 3), (2, 3), (3, 3)]


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    @property
    def messages(self) -> list[str]:
        return [record.getMessage() for record in self.records]


def logged_with_traceback(log, message: str, error: str) -> bool:
    """One DEBUG record says `message` with the traceback of `error` (kept as exc_info, or folded
    into the message by the log's secret filter when an earlier test set logging up)."""
    found = [record for record in log.records if record.getMessage().split("\n")[0] == message]
    return len(found) == 1 and found[0].levelname == "DEBUG" and (
        found[0].exc_info is not None and found[0].exc_info[0].__name__ == error
        or f"{error}" in found[0].getMessage() and "Traceback" in found[0].getMessage())


@pytest.fixture
def notifier_log():
    """The job's log records as the test sees them, whatever an earlier test set up for logging."""
    logger, records = logging.getLogger("ticket_notifier"), _Records()
    level = logger.level
    logger.addHandler(records)
    logger.setLevel(logging.DEBUG)
    yield records
    logger.removeHandler(records)
    logger.setLevel(level)


class Gated(Channels):
    """Channels whose attempt at a message first waits for an event; each message's first channel is
    noted before that wait, and each channel's close is flagged."""

    def __init__(self, script, waits_for=None, gate: threading.Barrier | None = None) -> None:
        super().__init__(script, gate)
        self.waits_for = waits_for or {}
        self.first_channel: dict[str, int] = {}
        self.together: threading.Barrier | None = None
        self.closed_event: dict[int, threading.Event] = {}

    def open_channel(self):
        channel = super().open_channel()
        original_attempt, original_close = channel.attempt, channel.close
        event = self.closed_flag(channel.number)

        def attempt(message):
            with self.lock:
                first = message not in self.first_channel
                self.first_channel.setdefault(message, channel.number)
            if first and self.together is not None:
                self.together.wait(10)      # every worker has taken its first customer
            if message in self.waits_for:
                self.waits_for[message]().wait(10)
            return original_attempt(message)

        def close():
            original_close()
            event.set()
        channel.attempt, channel.close = attempt, close
        return channel

    def closed_flag(self, number: int) -> threading.Event:
        with self.lock:
            return self.closed_event.setdefault(number, threading.Event())

    def closed_after(self, message: str) -> threading.Event:
        """Set once the channel that first attempted `message` has closed (its worker ended)."""
        for _ in range(1000):
            with self.lock:
                number = self.first_channel.get(message)
            if number is not None:
                return self.closed_flag(number)
            time.sleep(0.01)
        raise AssertionError(f"nobody attempted {message}")


def test_a_worker_told_fewer_is_logged_and_gives_its_customer_to_one_still_running(notifier_log):
    route = Gated({"a": [Answer(FEWER, "421 too many connections"), Answer(DELIVERED, "ok")],
                   "b": [Answer(DELIVERED, "ok")]})
    route.waits_for = {"b": lambda: route.closed_after("a")}           # b's worker runs until a's has ended
    route.together = threading.Barrier(2)
    results = deliver(route, ["a", "b"], workers=2, retries=0, first_alone=False)
    assert sorted(results.delivered) == ["a", "b"]
    assert "421 too many connections; one connection fewer" in notifier_log.messages
    assert [message for channel, message in route.channel_attempts if channel == route.first_channel["a"]] == ["a"]


def test_a_customer_whose_worker_ended_while_it_was_being_given_back_is_carried_on(monkeypatch):
    """Told fewer while another worker still runs, then that worker ends before the give-back: the
    worker told fewer keeps the customer instead of handing it to nobody."""
    route = Gated({"a": [Answer(FEWER, "421 too many connections"), Answer(DELIVERED, "ok")],
                   "b": [Answer(DELIVERED, "ok")]})
    giving_back = threading.Event()
    original_give_back = delivery._Run.give_back

    def late_give_back(run, customer):
        giving_back.set()
        route.closed_after("b").wait(10)      # the other worker has run out of customers and ended
        return original_give_back(run, customer)
    monkeypatch.setattr(delivery._Run, "give_back", late_give_back)
    route.together = threading.Barrier(2)
    route.waits_for = {"b": lambda: giving_back}        # b is answered once a's worker is giving a back
    results = deliver(route, ["a", "b"], workers=2, retries=0, first_alone=False)
    assert sorted(results.delivered) == ["a", "b"] and results.not_attempted == []
    assert route.channel_attempts.count((route.first_channel["a"], "a")) == 2


def test_with_three_workers_one_that_ran_out_does_not_make_another_the_last():
    route = Gated({"x": [Answer(DELIVERED, "ok")], "a": [Answer(FEWER, "421 too many"), Answer(DELIVERED, "ok")],
                   "c": [Answer(DELIVERED, "ok")]})
    route.waits_for = {"a": lambda: route.closed_after("x"), "c": lambda: route.closed_after("a")}
    route.together = threading.Barrier(3)
    results = deliver(route, ["x", "a", "c"], workers=3, retries=0, first_alone=False)
    assert sorted(results.delivered) == ["a", "c", "x"]
    assert [message for channel, message in route.channel_attempts if channel == route.first_channel["a"]] == ["a"]


def test_a_customer_taken_but_waiting_its_turn_when_the_run_stops_is_not_attempted():
    route = Gated({"a": [Answer(STOP, "HTTP 401 no", "HTTP 401")], "b": [Answer(DELIVERED, "ok")]})
    taken = threading.Event()
    route.waits_for = {"a": lambda: taken}
    threading.Timer(0.5, taken.set).start()        # b is taken meanwhile and waits 3 s for the rate limit
    results = deliver(route, ["a", "b"], workers=2, max_per_minute=20, first_alone=False)
    assert results.not_attempted == ["b"] and results.failed == [("a", "HTTP 401 no")]


def test_an_opening_withdrawn_keeps_the_job_s_own_refusals_and_lists_each_customer_once():
    own_refusal_recorded = threading.Event()

    class FailFirstAlike(StateCallbacks):
        failed_once = False

        def on_rejected(self, customer, reason):
            if customer in "abc" and not self.failed_once:
                self.failed_once = True
                raise OSError("rejected.csv is locked")
            super().on_rejected(customer, reason)
            if customer == "e":
                own_refusal_recorded.set()

    def message_for(customer):
        if customer == "e":
            raise UnsendableError("no usable template")
        return customer
    route = Gated({name: [REFUSED] for name in "abc"}, gate=threading.Barrier(3))
    route.waits_for = dict.fromkeys("abc", lambda: own_refusal_recorded)
    recorder = FailFirstAlike()
    results = deliver(route, list("eabc"), recorder, message_for=message_for, workers=4, first_alone=False)
    assert sorted(results.failed) == [(name, "HTTP 422 bad field") for name in "abc"]
    assert results.rejected == [("e", "not sent: no usable template")] == recorder.rejected
    assert results.stop_exit_code == 2


def test_a_customer_given_back_just_before_the_run_stops_waits_for_the_next_run():
    """Told fewer, handed back, and then the other worker's answer stops the run: the customer handed
    back was never attempted and must be listed so (else last_run_date passes their tickets)."""
    route = Gated({"a": [Answer(FEWER, "421 too many connections")],
                   "b": [Answer(STOP, "HTTP 401 no", "HTTP 401")]})
    route.together = threading.Barrier(2)
    route.waits_for = {"b": lambda: route.closed_after("a")}       # b is answered once a was handed back
    results = deliver(route, ["a", "b"], workers=2, retries=0, first_alone=False)
    assert results.not_attempted == ["a"] and results.failed == [("b", "HTTP 401 no")]
    assert results.delivered == [] and results.rejected == []


def test_a_refusal_that_could_not_be_recorded_outside_the_opening_stays_pending_when_the_opening_trips():
    """The job's own refusal of e (no code: outside the opening) could not be recorded; then a, b and c
    are refused alike and the opening trips. e is still pending, with the reason it was not recorded."""
    own_refusal_failed = threading.Event()

    class FailOwnRefusal(StateCallbacks):
        def on_rejected(self, customer, reason):
            if customer == "e":
                own_refusal_failed.set()
                raise OSError("rejected.csv is locked")
            super().on_rejected(customer, reason)

    all_in_flight = threading.Barrier(4)   # e's message is made once a, b and c are being attempted

    def message_for(customer):
        if customer == "e":
            all_in_flight.wait(10)
            raise UnsendableError("no usable template")
        return customer

    def in_flight_until_e_failed():
        all_in_flight.wait(10)
        return own_refusal_failed
    route = Gated({name: [REFUSED] for name in "abc"})
    route.waits_for = dict.fromkeys("abc", in_flight_until_e_failed)
    results = deliver(route, list("eabc"), FailOwnRefusal(), message_for=message_for, workers=4, first_alone=False)
    assert sorted(name for name, _ in results.failed) == ["a", "b", "c", "e"]
    assert ("e", "not sent: no usable template (the refusal could not be recorded)") in results.failed
    assert results.rejected == []


def test_the_rate_limiter_spaces_every_start_evenly_on_its_own_clock(monkeypatch):
    import delivery
    from delivery import RateLimiter

    clock = [100.0]
    monkeypatch.setattr(delivery.time, "monotonic", lambda: clock[0])

    class Stop:
        def __init__(self):
            self.waits = []

        def wait(self, seconds):
            self.waits.append(seconds)
            clock[0] += seconds
            return False

        def is_set(self):
            return False

    limiter, stop = RateLimiter(120), Stop()
    assert all(limiter.wait(stop) for _ in range(3)) and stop.waits == [0.5, 0.5]   # 120 a minute: one each 0.5 s
    clock[0] += 10   # a pause longer than the interval: the next start is not held back
    assert limiter.wait(stop) and stop.waits == [0.5, 0.5]


# ---------------------------------------------------------------- the shared answer rules (section 6 and 23)

def test_the_resume_time_is_the_provider_s_own_words_without_their_punctuation_or_this_machine_s_clock():
    said = Answer(LIMIT, "the sending limit (x)", "HTTP 429", said="HTTP 429: Retry after 2026-12-08 10:00.)")
    assert resume_time(said) == "2026-12-08 10:00"
    asked = Answer(LIMIT, "the sending limit (HTTP 429)", "HTTP 429", retry_after=3600)
    expected = time.strftime("%Y-%m-%d %H:%M", time.localtime(1_000_000 + 3600)) + " (this machine's time)"
    assert resume_time(asked, now=1_000_000) == expected
    assert resume_time(asked).endswith(" (this machine's time)")
    assert resume_time(Answer(LIMIT, "the sending limit (550 5.4.5 Daily user sending quota exceeded)", "550")) == ""


def test_the_limit_line_names_the_destination_the_count_the_answer_who_waits_and_when():
    said = Answer(LIMIT, "the sending limit (550 5.4.5 quota)", "550", said="550 5.4.5 Daily user sending quota exceeded")
    assert limit_line("smtp.gmail.com:587", 1900, said, 3100) == (
        "sending limit reached at smtp.gmail.com:587 after 1900 email(s) in this run (it answered 550 5.4.5 Daily "
        "user sending quota exceeded); 3100 customer(s) wait for the next run, none rejected; the provider did not "
        "say when sending can resume (a daily limit counts the last 24 hours); if this happens every week, spread "
        "the sending with --max-emails N over daily runs")
    words_only = Answer(LIMIT, "the sending limit (HTTP 429 dailyLimitExceeded. Retry after 2026-12-08T10:00Z)", "HTTP 429")
    assert limit_line("gmail.googleapis.com:443", 0, words_only, 7) == (
        "sending limit reached at gmail.googleapis.com:443 after 0 email(s) in this run (HTTP 429 dailyLimitExceeded. "
        "Retry after 2026-12-08T10:00Z); 7 customer(s) wait for the next run, none rejected; the provider says sending "
        "can resume 2026-12-08T10:00Z; if this happens every week, spread the sending with --max-emails N over daily runs")


@pytest.mark.parametrize("location, named", [("https://elsewhere.example.net/x?token=1", "elsewhere.example.net:443"),
                                             ("http://[2001:db8::1]:8080/p", "[2001:db8::1]:8080"),
                                             ("", ""), ("/relative/path", ""), ("not a url at all", "")])
def test_a_redirect_names_only_the_host_it_pointed_to(location, named):
    answer = http_answer(302, {"Location": location}, "graph:443")
    pointed = f" (it pointed to {named})" if named else ""
    assert answer == Answer(STOP, f"graph:443 answered HTTP 302{pointed}: the address moved or a proxy redirects it; check "
                                  "the destination's URL or endpoint setting (a send is never redirected)", "HTTP 302")


@pytest.mark.parametrize("status, kind", [(200, DELIVERED), (204, DELIVERED), (299, DELIVERED), (300, STOP), (399, STOP),
                                          (408, RETRY), (429, RETRY), (500, RETRY), (599, RETRY), (400, None),
                                          (401, None), (404, None), (600, None)])
def test_every_http_status_has_its_class(status, kind):
    answer = http_answer(status, {}, "hooks.example:443")
    assert (answer and answer.kind) == kind and (answer is None or answer.code == f"HTTP {status}")


def test_an_http_answer_says_what_the_receiver_said_and_how_long_it_asked_to_wait():
    assert http_answer(202, {}, "hooks.example:443") == Answer(DELIVERED, "HTTP 202", "HTTP 202")
    assert http_answer(503, {"Retry-After": "7"}, "hooks.example:443", "busy") == Answer(
        RETRY, "hooks.example:443 answered HTTP 503: busy", "HTTP 503", retry_after=7, said="HTTP 503: busy")
    assert http_answer(429, {"retry-after": "9"}, "hooks.example:443") == Answer(
        RETRY, "hooks.example:443 answered HTTP 429", "HTTP 429", retry_after=9, said="HTTP 429")
    assert http_answer(308, {"location": "https://moved.example/x"}, "hooks.example:443") == Answer(
        STOP, "hooks.example:443 answered HTTP 308 (it pointed to moved.example:443): the address moved or a proxy "
              "redirects it; check the destination's URL or endpoint setting (a send is never redirected)", "HTTP 308")
    assert "pointed" not in http_answer(301, {"Location": ""}, "hooks.example:443").detail


@pytest.mark.parametrize("kind", [DELIVERED, FEWER, LIMIT])
def test_an_answer_that_is_no_refusal_is_never_made_a_limit(kind):
    answer = Answer(kind, "550 5.4.5 Daily user sending quota exceeded", "550", retry_after=3600)
    assert delivery.as_sending_limit(answer) is answer


def test_a_limit_keeps_the_provider_s_words_code_and_wait():
    said = Answer(REJECTED, "relay:25 refused the message", "550", said="550 5.4.5 Daily user sending quota exceeded")
    assert delivery.as_sending_limit(said) == Answer(
        LIMIT, "the sending limit (550 5.4.5 Daily user sending quota exceeded)", "550",
        said="550 5.4.5 Daily user sending quota exceeded")
    words_in_detail = Answer(RETRY, "gmail answered HTTP 429 dailyLimitExceeded", "HTTP 429", retry_after=30)
    assert delivery.as_sending_limit(words_in_detail) == Answer(
        LIMIT, "the sending limit (gmail answered HTTP 429 dailyLimitExceeded)", "HTTP 429", retry_after=30)
    long_wait = Answer(RETRY, "graph answered HTTP 429", "HTTP 429", retry_after=121, said="HTTP 429")
    assert delivery.as_sending_limit(long_wait) == Answer(LIMIT, "the sending limit (HTTP 429)", "HTTP 429",
                                                          retry_after=121, said="HTTP 429")
    at_the_cap = Answer(RETRY, "graph answered HTTP 429", "HTTP 429", retry_after=120, said="HTTP 429")
    assert delivery.as_sending_limit(at_the_cap) is at_the_cap


@pytest.mark.parametrize("said, limit", [
    ("550 5.4.5 Daily user sending quota exceeded", True),
    ("552 5.2.2 mailbox full, quota exceeded", False),
    ("550 5.2.2 over quota; daily sending limit", False),   # the recipient's quota wins: a refusal, never a stop
    ("250 OK", False),
])
def test_a_sending_limit_is_the_sender_s_never_the_recipient_s(said, limit):
    assert delivery.speaks_of_a_sending_limit(said) is limit


def test_a_sending_limit_stops_the_run_and_everyone_undelivered_waits():
    limit = Answer(REJECTED, "relay:25 refused", "550", said="550 5.4.5 Daily user sending quota exceeded")
    route = Channels({"a": [Answer(DELIVERED, "ok")], "b": [limit], "c": [Answer(DELIVERED, "ok")]})
    results = deliver(route, ["a", "b", "c"], workers=1)
    assert results.delivered == ["a"] and [name for name, _ in results.failed] == ["b"] and results.not_attempted == ["c"]
    assert results.stop_exit_code == 1 and results.stop_reason.startswith(
        "sending limit reached at scripted:1 after 1 email(s) in this run (it answered 550 5.4.5 Daily user sending "
        "quota exceeded); 2 customer(s) wait for the next run, none rejected")


def test_a_limit_answered_after_a_stop_leaves_the_stop_s_reason():
    limit = Answer(REJECTED, "relay:25 refused", "550", said="550 5.4.5 Daily user sending quota exceeded")
    route = Gated({"a": [Answer(STOP, "HTTP 401 no", "HTTP 401")], "b": [limit]})
    route.together = threading.Barrier(2)
    route.waits_for = {"b": lambda: route.closed_after("a")}     # b's answer comes once a's worker stopped
    results = deliver(route, ["a", "b"], workers=2, first_alone=False)
    assert results.stop_reason == "HTTP 401 no" and results.stop_exit_code == 2
    assert sorted(name for name, _ in results.failed) == ["a", "b"]
