"""The webhook route: one Standard Webhooks POST of one customer's JSON payload, and what its answer means."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import socket
import ssl
import time
from dataclasses import dataclass

from delivery import REJECTED, RETRY, STOP, Answer, answer_text, http_answer
from destinations import CheckFailedError, Destination, SettingError
from url_rules import WEB_PORTS, CheckedUrl, UrlError, ca_bundle, is_printable_ascii, parse_url, url_secrets

MISCONFIGURED_STATUSES = frozenset([401, 403, 404, 405, 410])
MAX_ANSWER_BYTES = 64 * 1024      # of an answer's body; the rest is never read


class WebhookConfigError(Exception):
    """The webhook settings are unusable: exit 2 before any traffic."""


@dataclass(frozen=True)
class WebhookMessage:
    msg_id: str
    body: bytes


def check_webhook_url(url: str, allow_http: bool) -> CheckedUrl:
    try:
        checked = parse_url(url, "the webhook URL", WEB_PORTS)
    except UrlError as error:
        raise WebhookConfigError(str(error)) from None
    if checked.scheme == "http" and not allow_http and not checked.is_loopback:
        raise WebhookConfigError(
            f"refusing plain http to {checked.host}: use https, or pass --allow-http if you really mean it")
    return checked


def check_authorization(value: str) -> None:
    """WEBHOOK_AUTHORIZATION goes out as a header: printable ASCII on one line."""
    if not is_printable_ascii(value):
        raise WebhookConfigError("WEBHOOK_AUTHORIZATION must be printable ASCII on one line, e.g. Bearer abc123")


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


class WebhookRoute:
    """POSTs to one webhook. The session is shared by the workers; each attempt copies one prepared
    request and adds its own headers and body (fresh timestamp and signature on every attempt)."""

    def __init__(self, url: str, *, secret: str | None = None, authorization: str | None = None,
                 timeout: float = 30, pool_size: int = 4, allow_http: bool = True) -> None:
        self.url = check_webhook_url(url, allow_http)
        self.label = self.url.label
        self.key = parse_secret(secret) if secret else None
        if authorization:
            check_authorization(authorization)
        self.authorization = authorization or None
        import requests  # here, not at import: a run that sends nothing never loads it
        from requests.adapters import HTTPAdapter

        self.timeout = timeout
        self.session = requests.Session()
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=max(pool_size, 1), max_retries=0)
        self.session.mount("https://", adapter)
        self.session.mount("http://", adapter)
        # The proxy (HTTPS_PROXY, HTTP_PROXY, NO_PROXY) and CA bundle settings are read from the
        # environment once for the run, not again on every request (a third of a request's cost).
        self.session.trust_env = False
        self.session.proxies = requests.utils.get_environ_proxies(url)
        bundle = ca_bundle()
        if bundle:
            self.session.verify = bundle
        # The session sends no cookies, so nothing a webhook sets for one customer goes out with the next.
        self._request = self.session.prepare_request(requests.Request("POST", url))

    def open_channel(self) -> WebhookRoute:
        return self  # every worker shares the session's connection pool

    def reset(self) -> None:
        """Nothing to do: a connection whose answer never completed is not returned to the pool."""

    def close(self) -> None:
        """The workers' channels end with the route (see shutdown)."""

    def shutdown(self) -> None:
        self.session.close()

    def attempt(self, message: WebhookMessage) -> Answer:
        import requests

        headers = webhook_headers(message.msg_id, message.body, self.key, self.authorization)
        request = self._request.copy()
        request.headers.update(headers)
        request.prepare_body(message.body, None)
        try:
            response = self.session.send(request, timeout=self.timeout, allow_redirects=False, stream=True)
            try:
                text = response.raw.read(MAX_ANSWER_BYTES, decode_content=True) or b""
            finally:
                response.close()  # a longer answer is cut here; its connection is dropped, not reused
        except requests.exceptions.SSLError:
            return Answer(STOP, f"TLS certificate of {self.label} not accepted (set REQUESTS_CA_BUNDLE to your CA bundle)")
        except requests.exceptions.RequestException as error:
            return self._failure(error)
        return self.classify(response.status_code, response.headers, text)

    def classify(self, status: int, headers, text: bytes) -> Answer:
        code = f"HTTP {status}"
        said = answer_text(text)
        shared = http_answer(status, headers, f"the webhook at {self.label}", said)
        if shared is not None:
            return shared
        if status in MISCONFIGURED_STATUSES:
            return Answer(STOP, f"the webhook at {self.label} answered {code}: "
                                "check the webhook URL and WEBHOOK_AUTHORIZATION / WEBHOOK_SECRET", code)
        return Answer(REJECTED, code + (f": {said}" if said else ""), code)

    def _failure(self, error: Exception) -> Answer:
        """A one-line reason that never repeats the URL's path or query."""
        import requests
        from urllib3.exceptions import NewConnectionError

        if isinstance(error, requests.exceptions.ConnectTimeout):
            return Answer(RETRY, f"connecting to {self.label} timed out", unreachable=True)
        if isinstance(error, requests.exceptions.Timeout):
            return Answer(RETRY, f"{self.label} did not answer within {self.timeout:g}s")
        if isinstance(error, requests.exceptions.ConnectionError):
            cause = getattr(error.args[0], "reason", None) if error.args else None
            if isinstance(cause, NewConnectionError):
                return Answer(RETRY, f"could not connect to {self.label}", unreachable=True)
            return Answer(RETRY, f"the connection to {self.label} broke before an answer")
        return Answer(STOP, f"request to {self.label} failed ({type(error).__name__})")


# ---------------------------------------------------------------- the destination

@dataclass(frozen=True)
class WebhookSettings:
    url: str
    secret: str | None
    authorization: str | None
    allow_http: bool


def _add_options(group) -> None:
    group.add_argument("-webhook_url", "--webhook-url", dest="webhook_url", metavar="URL",
                       help="the email webhook (default: $WEBHOOK_URL); the default destination")
    group.add_argument("--allow-http", action="store_true", help="allow a plain-http webhook to a non-loopback host")


def _url(options, environment) -> str:
    return (options.webhook_url or environment.get("WEBHOOK_URL") or "").strip()


def _configure(options, environment) -> WebhookSettings:
    try:
        url = _url(options, environment)
        if not url:
            raise WebhookConfigError("no webhook URL: pass -webhook_url URL or set WEBHOOK_URL")
        check_webhook_url(url, options.allow_http)
        secret = environment.get("WEBHOOK_SECRET") or None
        if secret:
            parse_secret(secret)
        authorization = environment.get("WEBHOOK_AUTHORIZATION") or None
        check_authorization(authorization or "")
    except WebhookConfigError as error:
        raise SettingError(str(error)) from None
    return WebhookSettings(url, secret, authorization, options.allow_http)


def _secrets(settings: WebhookSettings) -> list[str]:
    authorization = settings.authorization or ""
    return [settings.secret or "", authorization, *authorization.split()[1:], *url_secrets(settings.url, WEB_PORTS)]


def _open(run) -> WebhookRoute:
    own = run.destination_settings
    try:
        return WebhookRoute(own.url, secret=own.secret, authorization=own.authorization, timeout=run.timeout,
                            pool_size=run.workers, allow_http=own.allow_http)
    except WebhookConfigError as error:
        raise SettingError(str(error)) from None


def _message_for(run):
    from customer_message import build_payload, webhook_id

    def message(customer) -> WebhookMessage:
        payload = build_payload(customer, run.content)
        return WebhookMessage(webhook_id(customer), json.dumps(payload, ensure_ascii=False).encode("utf-8"))
    return message


def _check_live(run) -> str:
    """A TCP connection and, for https, a verified TLS handshake: the webhook answers, nothing is posted."""
    import requests


    url = check_webhook_url(run.destination_settings.url, run.destination_settings.allow_http)
    timeout = min(run.timeout, 15)
    if requests.utils.get_environ_proxies(f"{url.scheme}://{url.host}:{url.port}"):
        return f"webhook {url.label} goes through the proxy set in the environment (not checked from here)"
    try:
        with socket.create_connection((url.host, url.port), timeout=timeout) as connection:
            if url.scheme == "https":
                context = ssl.create_default_context(cafile=ca_bundle())
                with context.wrap_socket(connection, server_hostname=url.host):
                    pass
    except ssl.SSLError as error:
        raise CheckFailedError(f"TLS with {url.label} failed ({error.reason or error}): check the certificate, or set "
                               "REQUESTS_CA_BUNDLE to your CA bundle") from None
    except ssl.CertificateError as error:
        raise CheckFailedError(f"the certificate of {url.label} does not match its name ({error})") from None
    except OSError as error:
        raise CheckFailedError(f"could not connect to {url.label} ({error.strerror or type(error).__name__}): check the "
                               "URL, the network and any firewall") from None
    return f"webhook {url.label} answers" + (" (TLS verified)" if url.scheme == "https" else "")


DESTINATION = Destination(
    name="webhook", named_by="-webhook_url URL (or WEBHOOK_URL)",
    summary="a POST of each customer's JSON payload to an email webhook",
    env_keys=("WEBHOOK_URL", "WEBHOOK_SECRET", "WEBHOOK_AUTHORIZATION"),
    secret_keys=("WEBHOOK_URL", "WEBHOOK_SECRET", "WEBHOOK_AUTHORIZATION"),
    add_options=_add_options, named=lambda options, environment: bool(_url(options, environment)),
    configure=_configure, secrets=_secrets, open=_open, message_for=_message_for, check_live=_check_live)
