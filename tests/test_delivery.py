"""Delivery you can trust: retries, misconfigured webhooks, kills, concurrent runs, the weekly guard."""

import os
import signal
import subprocess
import sys
import time
from datetime import date, timedelta

import pytest
from conftest import ROOT, Reply, clean_env, read_state, run_job, write_csv, write_state
from standardwebhooks.webhooks import Webhook

from delivery import DeliveryPolicy, deliver_all
from webhook_route import WebhookMessage, WebhookRoute, sign

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
CUSTOMERS = [[f"Cust{i}", "Omer", f"c{i}@example.com", str(100 + i), "Closed", f"{20 + i}/11/2026"] for i in range(5)]


@pytest.fixture
def setup(tmp_path):
    report = write_csv(tmp_path / "report.csv", CUSTOMERS)
    state = write_state(tmp_path / "last_run_date.json", {"last_run_date": "20/11/2026"})
    return report, state


def live_args(report, state, url, *extra):
    return ["--report", str(report), "--state-file", str(state), "-webhook_url", url, "-testmode", "no", *extra]


def send(url, messages=(("msg_1", b"{}"),), retries=3, workers=1, **route_options):
    """deliver_all over a real WebhookRoute, the messages standing for customers."""
    route = WebhookRoute(url, secret=SECRET, **route_options)
    policy = DeliveryPolicy(workers=workers, retries=retries, backoff_factor=0.01, timeout=5)
    try:
        return deliver_all(route, list(messages), policy, lambda message: WebhookMessage(*message), lambda message: None)
    finally:
        route.shutdown()


def test_503_then_200_is_one_delivery_with_the_same_id_and_a_valid_signature_each_time(webhook):
    webhook.respond = lambda received, index: Reply(503) if index == 0 else Reply(200)
    results = send(webhook.url, [("msg_abc", b'{"a": 1}')], retries=2)
    assert len(results.delivered) == 1
    assert [r.headers["webhook-id"] for r in webhook.requests] == ["msg_abc", "msg_abc"]
    for received in webhook.requests:
        Webhook(SECRET).verify(received.body, received.headers)


def test_429_with_retry_after_waits_as_asked_and_signs_each_attempt_afresh(webhook, monkeypatch):
    import delivery

    waits = []
    wait_for = delivery.retry_wait
    monkeypatch.setattr(delivery, "retry_wait", lambda *args: waits.append(wait_for(*args)) or waits[-1])
    webhook.respond = lambda received, index: Reply(429, {"Retry-After": "2"}) if index == 0 else Reply(200)
    assert len(send(webhook.url, retries=1).delivered) == 1
    first, second = webhook.requests
    assert waits == [2]   # the wait the destination asked for, not the backoff's
    assert int(second.headers["webhook-timestamp"]) > int(first.headers["webhook-timestamp"])
    assert second.headers["webhook-signature"] != first.headers["webhook-signature"]
    for received in (first, second):
        Webhook(SECRET).verify(received.body, received.headers)


def test_each_call_carries_its_own_body_and_headers_and_no_cookie_from_an_earlier_call(webhook):
    webhook.respond = lambda received, index: Reply(200, {"Set-Cookie": f"session=customer{index}; Path=/"})
    results = send(webhook.url, [("msg_a", b'{"to": "a"}'), ("msg_b", b'{"to": "bb"}')], authorization="Bearer t0ken")
    assert len(results.delivered) == 2
    first, second = webhook.requests
    assert (first.body, second.body) == (b'{"to": "a"}', b'{"to": "bb"}')
    assert (first.headers["content-length"], second.headers["content-length"]) == ("11", "12")
    assert (first.headers["webhook-id"], second.headers["webhook-id"]) == ("msg_a", "msg_b")
    assert first.headers["authorization"] == second.headers["authorization"] == "Bearer t0ken"
    assert "cookie" not in second.headers
    for received in (first, second):
        Webhook(SECRET).verify(received.body, received.headers)


def test_retries_give_up_after_the_configured_count(webhook):
    webhook.respond = lambda received, index: Reply(502)
    results = send(webhook.url, retries=2)
    assert (len(results.failed), len(webhook.requests)) == (1, 3)


@pytest.mark.parametrize("status", [401, 403, 404, 405, 410])
def test_misconfigured_statuses_are_not_retried_and_stop_the_run(webhook, status):
    webhook.respond = lambda received, index: Reply(status)
    results = send(webhook.url, [("msg_1", b"{}"), ("msg_2", b"{}")])
    assert (len(webhook.requests), results.stop_exit_code, len(results.not_attempted)) == (1, 2, 1)
    assert f"HTTP {status}" in results.stop_reason


def test_a_redirect_is_not_followed_and_stops_the_run_naming_the_new_host(webhook):
    webhook.respond = lambda received, index: Reply(302, {"Location": "https://new.example.net/secret/path"})
    results = send(webhook.url, [("msg_1", b"{}"), ("msg_2", b"{}")])
    assert (len(webhook.requests), results.stop_exit_code) == (1, 2)
    assert "HTTP 302" in results.stop_reason and "new.example.net:443" in results.stop_reason
    assert "secret" not in results.stop_reason


def test_connection_refused_is_retried_then_fails_without_the_path():
    results = send("http://127.0.0.1:9/secret/path?token=x", retries=1)
    (_, detail), = results.failed
    assert "127.0.0.1:9" in detail and "secret" not in detail and "token" not in detail


def test_signature_matches_the_standard_webhooks_reference():
    headers = {"webhook-id": "msg_x", "webhook-timestamp": str(int(time.time()))}
    key = __import__("base64").b64decode(SECRET[6:])
    headers["webhook-signature"] = sign(key, "msg_x", int(headers["webhook-timestamp"]), b'{"k": "v"}')
    Webhook(SECRET).verify(b'{"k": "v"}', headers)


def test_each_message_is_built_by_the_worker_that_sends_it_and_never_after_a_stop(webhook):
    webhook.respond = lambda received, index: Reply(401) if index == 1 else Reply(200)
    built, delivered = [], []

    def message_for(customer):
        built.append(customer)
        return WebhookMessage(f"msg_{customer}", f'{{"to": "{customer}"}}'.encode())

    route = WebhookRoute(webhook.url, secret=SECRET)
    results = deliver_all(route, ["a", "b", "c", "d"], DeliveryPolicy(workers=1), message_for, delivered.append)
    assert built == ["a", "b"]                      # c and d were never prepared: the webhook refused b
    assert [r.body for r in webhook.requests] == [b'{"to": "a"}', b'{"to": "b"}']
    assert (delivered, results.delivered, results.not_attempted) == (["a"], ["a"], ["c", "d"])
    assert [customer for customer, _ in results.failed] == ["b"] and "HTTP 401" in results.stop_reason


def test_a_slow_webhook_times_out_and_the_customer_stays_pending(setup, webhook):
    report, state = setup
    webhook.respond = lambda received, index: Reply(200, delay=3) if received.json["email_address"] == "c2@example.com" \
        else Reply(200)
    result = run_job(*live_args(report, state, webhook.url, "--timeout", "0.5", "--retries", "0"))
    assert result.returncode == 1
    assert "c2@example.com (102): 127.0.0.1:" in result.stderr and "did not answer within 0.5s" in result.stderr
    assert read_state(state)["last_run_date"] == "22/11/2026"


def test_401_stops_at_once_keeping_what_was_delivered(setup, webhook):
    report, state = setup
    webhook.respond = lambda received, index: Reply(401) if index == 2 else Reply(200)
    result = run_job(*live_args(report, state, webhook.url, "--workers", "1"))
    assert result.returncode == 2
    assert len(webhook.requests) == 3
    assert "answered HTTP 401" in result.stderr
    assert "Customers not attempted  2 (run stopped; pending)" in result.stdout
    saved = read_state(state)
    assert saved["last_run_date"] == "22/11/2026"
    assert len(saved["last_emailed"]) == 2          # c0 and c1 were delivered and recorded
    webhook.respond = lambda received, index: Reply(200)
    rerun = run_job(*live_args(report, state, webhook.url, "--min-days-between-emails", "0"))
    assert rerun.returncode == 0
    assert sorted(webhook.emails()[3:]) == ["c2@example.com", "c3@example.com", "c4@example.com"]


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
@pytest.mark.parametrize("kill_at", [0, 2, 4])
def test_kill_at_any_moment_loses_nothing_and_repeats_only_the_call_in_flight(setup, webhook, kill_at):
    report, state = setup
    process = {}

    def respond(received, index):
        if index == kill_at:
            os.kill(process["cli"].pid, signal.SIGKILL)
            time.sleep(0.2)
        return Reply(200)

    webhook.respond = respond
    process["cli"] = subprocess.Popen([sys.executable, str(ROOT / "process_ticket.py"),
                                       *live_args(report, state, webhook.url, "--workers", "1")],
                                      env=clean_env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE)
    process["cli"].wait(timeout=60)
    assert process["cli"].returncode == -signal.SIGKILL
    assert len(webhook.requests) == kill_at + 1
    rerun = run_job(*live_args(report, state, webhook.url, "--min-days-between-emails", "0"))
    assert rerun.returncode == 0, rerun.stderr
    emails = webhook.emails()
    assert sorted(set(emails)) == [f"c{i}@example.com" for i in range(5)]
    repeated = {email for email in emails if emails.count(email) > 1}
    assert repeated == {f"c{kill_at}@example.com"}
    ids = {r.headers["webhook-id"] for r in webhook.requests if r.json["email_address"] in repeated}
    assert len(ids) == 1


def test_a_second_live_run_exits_2_at_once_while_the_first_holds_the_lock(setup, webhook):
    report, state = setup
    webhook.respond = lambda received, index: Reply(200, delay=1.5 if index == 0 else 0)
    first = subprocess.Popen([sys.executable, str(ROOT / "process_ticket.py"),
                              *live_args(report, state, webhook.url, "--workers", "1")],
                             env=clean_env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while not webhook.requests and time.monotonic() < deadline:
        time.sleep(0.05)
    second = run_job(*live_args(report, state, webhook.url))
    assert second.returncode == 2
    assert "another run is in progress" in second.stderr
    assert first.wait(timeout=60) == 0
    assert len(webhook.requests) == 5
    assert run_job("--report", str(report), "--state-file", str(state), "-testmode", "yes").returncode == 0


def test_weekly_guard_defers_a_customer_emailed_recently_and_a_later_run_releases(tmp_path, webhook):
    report = write_csv(tmp_path / "r.csv", CUSTOMERS[:2])
    state = write_state(tmp_path / "s.json", {"last_run_date": "20/11/2026"})
    assert run_job(*live_args(report, state, webhook.url)).returncode == 0
    write_csv(report, [*CUSTOMERS[:2], ["Cust0", "Omer", "c0@example.com", "999", "Closed", "24/11/2026"]])
    deferred = run_job(*live_args(report, state, webhook.url))
    assert deferred.returncode == 0
    assert "Customers deferred       1 (emailed too recently; they wait)" in deferred.stdout
    assert len(webhook.requests) == 2
    saved = read_state(state)
    assert saved["last_run_date"] == "24/11/2026"       # the deferred ticket of 24/11 stays inside the window
    assert "999" not in str(saved["notified"])
    week_ago = (date.today() - timedelta(days=7)).isoformat()
    saved["last_emailed"] = dict.fromkeys(saved["last_emailed"], week_ago)
    write_state(state, saved)
    released = run_job(*live_args(report, state, webhook.url))
    assert released.returncode == 0
    assert webhook.payloads()[-1]["tickets"] == [{"ticket": "999", "status": "Closed", "closed_date": "2026-11-24"}]
    assert read_state(state)["last_run_date"] == "24/11/2026"


def test_state_that_cannot_be_written_mid_run_stops_sending(tmp_path, webhook):
    folder = tmp_path / "state"
    folder.mkdir()
    report = write_csv(tmp_path / "r.csv", CUSTOMERS)
    state = write_state(folder / "last_run_date.json", {"last_run_date": "20/11/2026"})

    def respond(received, index):
        if index == 0:
            folder.rename(tmp_path / "moved")
            folder.write_text("a file where the state folder was")
        return Reply(200)

    webhook.respond = respond
    result = run_job(*live_args(report, state, webhook.url, "--workers", "1"))
    assert result.returncode == 2
    assert "cannot write the state file" in result.stderr
    assert len(webhook.requests) == 1


def test_workers_send_concurrently(tmp_path, webhook):
    rows = [[f"N{i}", "X", f"n{i}@example.com", str(i), "Closed", "21/11/2026"] for i in range(12)]
    report = write_csv(tmp_path / "r.csv", rows)
    webhook.respond = lambda received, index: Reply(200, delay=0.2)
    result = run_job("--report", str(report), "--state-file", str(tmp_path / "s.json"), "-webhook_url", webhook.url,
                     "-testmode", "no", "--since", "20/11/2026", "--workers", "4")
    assert result.returncode == 0
    assert len(webhook.requests) == 12
    assert webhook.max_in_flight >= 2
