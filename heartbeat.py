"""The heartbeat: Healthchecks.io-style pings when a live run starts and ends, so a run that never happened is noticed."""

from __future__ import annotations

import logging
import time
import uuid
from urllib.parse import urlsplit, urlunsplit

from url_rules import WEB_PORTS, CheckedUrl, parse_url

log = logging.getLogger("ticket_notifier")

PING_TIMEOUT_SECONDS = 10
PING_RETRIES = 2
PING_BACKOFF_SECONDS = 1.0   # the wait before retry n is n times this
MAX_BODY_BYTES = 100_000


def check_ping_url(url: str) -> CheckedUrl:
    """Raises UrlError; the message never repeats the URL (it is a secret like the webhook's)."""
    return parse_url(url, "the ping URL", WEB_PORTS)


class Heartbeat:
    """`URL/start` when a live run begins; a POST to `URL/<exit code>` with the summary at its end; both
    with the same ?rid=<uuid4> so the monitor pairs them and measures the run. A ping never changes
    the exit code and never holds the run for long: a short timeout, two retries, then a warning."""

    def __init__(self, url: str, timeout: float = PING_TIMEOUT_SECONDS) -> None:
        self.url = check_ping_url(url)
        self.run_id = str(uuid.uuid4())
        self.timeout = timeout

    def address(self, suffix: str) -> str:
        """URL/suffix?rid=..., keeping a query the URL already has."""
        parts = urlsplit(self.url.text)
        query = f"{parts.query}&rid={self.run_id}" if parts.query else f"rid={self.run_id}"
        return urlunsplit((parts.scheme, parts.netloc, f"{parts.path.rstrip('/')}/{suffix}", query, ""))

    def start(self) -> None:
        self._send("start", b"")

    def finish(self, exit_code: int, text: str) -> None:
        self._send(str(exit_code), text.encode("utf-8")[:MAX_BODY_BYTES])

    def _send(self, suffix: str, body: bytes) -> None:
        import requests  # here: a run without a heartbeat never loads it for this

        from time_bounds import call_within

        session = requests.Session()

        def post() -> int | str:
            """The monitor's status code, or what went wrong."""
            try:
                response = session.post(self.address(suffix), data=body, timeout=self.timeout, stream=True,
                                        headers={"Content-Type": "text/plain; charset=utf-8"})
                response.close()  # the status is all a ping needs: the monitor's body is never read
                return response.status_code
            except requests.exceptions.RequestException as error:
                return type(error).__name__

        for attempt in range(PING_RETRIES + 1):
            if attempt:
                time.sleep(attempt * PING_BACKOFF_SECONDS)
            status = call_within(self.timeout + 1, post)  # a monitor that trickles its answer cannot hold the run
            if isinstance(status, int) and status < 500:
                if status >= 300:
                    log.warning("the heartbeat at %s answered HTTP %d to the %s ping: check PING_URL",
                                self.url.label, status, suffix)
                return
            problem = (f"HTTP {status}" if isinstance(status, int) else status) or f"no answer within {self.timeout:g}s"
        log.warning("the %s ping to %s failed (%s); the run is not affected", suffix, self.url.label, problem)
