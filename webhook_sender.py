"""The email webhook: Standard Webhooks headers, retries with backoff, concurrent delivery."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ConnectTimeoutError, MaxRetryError, ProtocolError, ReadTimeoutError
from urllib3.util.retry import Retry

log = logging.getLogger("ticket_notifier")

RETRY_STATUSES = frozenset([408, 429, *range(500, 600)])
MISCONFIGURED_STATUSES = frozenset([401, 403, 404, 405, 410])
RETRY_AFTER_MAX_SECONDS = 120
CA_BUNDLE_VARIABLES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE")

DELIVERED, FAILED, MISCONFIGURED = "delivered", "failed", "misconfigured"


class WebhookConfigError(Exception):
    """The webhook settings are unusable: exit 2 before any traffic."""


def host_of(url: str) -> str:
    """The part of a webhook URL that may appear in logs: never its path or query."""
    parts = urlsplit(url)
    return parts.hostname or "(no host)"


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_webhook_url(url: str, allow_http: bool) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WebhookConfigError("the webhook URL must start with https:// and name a host")
    if parts.scheme == "http" and not allow_http and not is_loopback(parts.hostname):
        raise WebhookConfigError(
            f"refusing plain http to {parts.hostname}: use https, or pass --allow-http if you really mean it")


def parse_secret(text: str) -> bytes:
    """A Standard Webhooks secret: 'whsec_' followed by base64 key bytes."""
    encoded = text.strip().removeprefix("whsec_")
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if not key:
        raise WebhookConfigError("WEBHOOK_SECRET must be 'whsec_' followed by a base64 key")
    return key


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def webhook_headers(msg_id: str, body: bytes, key: bytes | None, authorization: str | None,
                    timestamp: int | None = None) -> dict[str, str]:
    timestamp = int(time.time()) if timestamp is None else timestamp
    headers = {
        "Content-Type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
    }
    if key:
        headers["webhook-signature"] = sign(key, msg_id, timestamp, body)
    if authorization:
        headers["Authorization"] = authorization
    return headers


@dataclass(frozen=True)
class Outcome:
    result: str  # DELIVERED, FAILED or MISCONFIGURED
    detail: str


class WebhookSender:
    """POSTs to one webhook. Retries follow urllib3's Retry policy (backoff, jitter, Retry-After),
    driven here rather than inside the adapter so every attempt gets a fresh timestamp and signature."""

    def __init__(self, url: str, *, secret: str | None = None, authorization: str | None = None,
                 timeout: float = 30, retries: int = 3, pool_size: int = 4, backoff_factor: float = 1.0) -> None:
        self.host = host_of(url)
        self.key = parse_secret(secret) if secret else None
        self.authorization = authorization or None
        self.timeout = timeout
        self.retry_policy = Retry(
            total=retries, connect=retries, read=retries, status=retries, other=0, redirect=0,
            allowed_methods=None, status_forcelist=RETRY_STATUSES, backoff_factor=backoff_factor,
            backoff_jitter=backoff_factor / 2, backoff_max=60, raise_on_status=False,
            respect_retry_after_header=True, retry_after_max=RETRY_AFTER_MAX_SECONDS)
        self.session = requests.Session()
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=max(pool_size, 1), max_retries=0)
        self.session.mount("https://", adapter)
        self.session.mount("http://", adapter)
        # The proxy (HTTPS_PROXY, HTTP_PROXY, NO_PROXY) and CA bundle settings are read from the
        # environment once for the run, not again on every request (a third of a request's cost).
        self.session.trust_env = False
        self.session.proxies = requests.utils.get_environ_proxies(url)
        ca_bundle = next((os.environ[name] for name in CA_BUNDLE_VARIABLES if os.environ.get(name)), None)
        if ca_bundle:
            self.session.verify = ca_bundle
        # Every call is a POST to the same URL with the session's headers: that is prepared once, and
        # each attempt copies it and adds its own headers and body (a quarter less work than session.post).
        # The session sends no cookies, so nothing a webhook sets for one customer goes out with the next.
        self._request = self.session.prepare_request(requests.Request("POST", url))

    def close(self) -> None:
        self.session.close()

    def deliver(self, msg_id: str, body: bytes, should_stop: Callable[[], bool] = lambda: False) -> Outcome:
        retry = self.retry_policy
        while True:
            headers = webhook_headers(msg_id, body, self.key, self.authorization)
            try:
                response = self.session.send(self._prepared(headers, body), timeout=self.timeout, allow_redirects=False)
            except requests.exceptions.SSLError:
                return Outcome(MISCONFIGURED, f"TLS certificate of {self.host} not accepted "
                                              "(set REQUESTS_CA_BUNDLE to your CA bundle)")
            except requests.exceptions.RequestException as error:
                failure, transport_error = self._describe(error), self._as_retry_error(error)
                try:
                    retry = retry.increment(method="POST", url=self.host, error=transport_error)
                except (MaxRetryError, ProtocolError, ConnectTimeoutError, ReadTimeoutError):
                    return Outcome(FAILED, failure)
                log.info("webhook %s: %s; retrying", self.host, failure)
                if should_stop():
                    return Outcome(FAILED, failure)
                retry.sleep()
                continue
            status = response.status_code
            if 200 <= status < 300:
                return Outcome(DELIVERED, f"HTTP {status}")
            if status in MISCONFIGURED_STATUSES:
                return Outcome(MISCONFIGURED, f"the webhook at {self.host} answered HTTP {status}: "
                                              "check the webhook URL and WEBHOOK_AUTHORIZATION / WEBHOOK_SECRET")
            if not retry.is_retry("POST", status, "Retry-After" in response.headers):
                return Outcome(FAILED, f"HTTP {status}")
            try:
                retry = retry.increment(method="POST", url=self.host, response=response.raw)
            except MaxRetryError:
                return Outcome(FAILED, f"HTTP {status} after {self.retry_policy.total} retries")
            log.info("webhook %s answered HTTP %s; retrying", self.host, status)
            if should_stop():
                return Outcome(FAILED, f"HTTP {status}")
            retry.sleep(response.raw)

    def _prepared(self, headers: dict[str, str], body: bytes) -> requests.PreparedRequest:
        request = self._request.copy()
        request.headers.update(headers)
        request.prepare_body(body, None)
        return request

    def _describe(self, error: Exception) -> str:
        """A one-line reason that never repeats the URL's path or query."""
        if isinstance(error, requests.exceptions.ConnectTimeout):
            return f"connecting to {self.host} timed out"
        if isinstance(error, requests.exceptions.Timeout):
            return f"{self.host} did not answer within {self.timeout:g}s"
        if isinstance(error, requests.exceptions.ConnectionError):
            return f"could not connect to {self.host}"
        return f"request to {self.host} failed ({type(error).__name__})"

    @staticmethod
    def _as_retry_error(error: Exception) -> Exception:
        """The urllib3 error class Retry.increment counts: connect errors or read errors."""
        if isinstance(error, requests.exceptions.ConnectTimeout):
            return ConnectTimeoutError("connect timeout")
        if isinstance(error, requests.exceptions.ReadTimeout):
            return ReadTimeoutError(None, "", "read timeout")  # type: ignore[arg-type]
        cause = error.args[0] if error.args else None
        if isinstance(cause, MaxRetryError) and isinstance(cause.reason, ConnectTimeoutError):
            return ConnectTimeoutError("connection failed")
        return ProtocolError("connection broken")


@dataclass
class Deliveries:
    """What deliver_all did with the customers."""
    delivered: list = field(default_factory=list)
    failed: list[tuple[object, str]] = field(default_factory=list)  # with the reason; pending for the next run
    not_attempted: list = field(default_factory=list)  # left when sending stopped early
    stop_reason: str = ""  # why sending stopped early: a misconfigured webhook, a state that could not be saved


def deliver_all(sender: WebhookSender, customers: Sequence[object], workers: int,
                message_for: Callable[[object], tuple[str, bytes]], on_delivered: Callable[[object], None],
                on_progress: Callable[[int, int], None] = lambda done, total: None) -> Deliveries:
    """One call per customer with `workers` threads. A worker builds a customer's message (webhook-id
    and body) just before sending it, so a large run holds only the messages in flight, and the first
    call goes out at once. `on_delivered` (which saves the state) runs in the worker before it takes
    its next customer; when it raises, or the webhook shows itself misconfigured, no new call starts."""
    stop = threading.Event()
    results = Deliveries()
    results_lock = threading.Lock()

    def stop_sending(reason: str) -> None:
        stop.set()
        with results_lock:
            results.stop_reason = results.stop_reason or reason

    def run(customer: object) -> None:
        if stop.is_set():
            with results_lock:
                results.not_attempted.append(customer)
            return
        msg_id, body = message_for(customer)
        outcome = sender.deliver(msg_id, body, stop.is_set)
        if outcome.result == DELIVERED:
            try:
                on_delivered(customer)
            except Exception as error:  # the state could not be saved: stop sending
                stop_sending(str(error))
        elif outcome.result == MISCONFIGURED:
            stop_sending(outcome.detail)
        with results_lock:
            if outcome.result == DELIVERED:
                results.delivered.append(customer)
            else:
                results.failed.append((customer, outcome.detail))
            on_progress(len(results.delivered) + len(results.failed), len(customers))

    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="webhook") as pool:
        try:
            list(pool.map(run, customers))
        except BaseException:  # Ctrl+C or a bug: let the calls in flight finish, start no new one
            stop.set()
            raise
    return results
