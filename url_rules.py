"""Destinations from settings (webhook, SMTP, heartbeat): URLs parsed and checked once at start and shown
only as host and port, header-bound values checked, and the CA bundle that verifies them."""

from __future__ import annotations

import ipaddress
import os
import unicodedata
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

WEB_PORTS = {"https": 443, "http": 80}
SMTP_PORTS = {"smtp": 587, "smtps": 465}
HTTP_CA_VARIABLES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE")  # the order requests looks in
SMTP_CA_VARIABLES = ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE")  # Python's ssl variable first: smtplib is not requests


def ca_bundle(variables: tuple[str, ...] = HTTP_CA_VARIABLES) -> str | None:
    """The CA bundle a corporate network sets, from the first of `variables` that is set."""
    return next((os.environ[name] for name in variables if os.environ.get(name)), None)


ALL_CA_VARIABLES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE", "HTTPLIB2_CA_CERTS")


def unusable_ca_bundle() -> str:
    """Why a CA bundle named in the environment cannot verify anything ('' when each one set loads):
    found at start, not as one "OSError" per customer every week."""
    import ssl

    seen = set()
    for name in ALL_CA_VARIABLES:
        value = os.environ.get(name, "")
        if not value or value in seen:
            continue
        seen.add(value)
        try:
            ssl.create_default_context(**({"capath": value} if os.path.isdir(value) else {"cafile": value}))
        except (OSError, ssl.SSLError) as error:
            reason = getattr(error, "strerror", None) or getattr(error, "reason", None) or type(error).__name__
            return (f"{name} names a CA bundle that cannot be used ({reason}): point it at a PEM file of "
                    "certificates, or unset it")
    return ""


def is_printable_ascii(text: str) -> bool:
    """A value that goes out in a header or an SMTP login: printable ASCII on one line."""
    return all(" " <= char <= "~" for char in text)


class UrlError(ValueError):
    """A URL the run cannot use; the message never repeats the URL, its user, password, path or query."""


@dataclass(frozen=True)
class CheckedUrl:
    text: str
    scheme: str
    host: str
    port: int
    username: str
    password: str

    @property
    def label(self) -> str:
        """How logs and messages name the destination: host and port, nothing else."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def is_loopback(self) -> bool:
        return is_loopback(self.host)

    def secrets(self) -> list[str]:
        """The parts of the URL that must never be shown (for the log filter)."""
        parts = urlsplit(self.text)
        hidden = [self.text, self.username, self.password, parts.path, parts.query, parts.fragment,
                  parts.netloc.rpartition("@")[0]]
        return [part for part in hidden if part and part not in ("/", self.host)]


def is_loopback(host: str) -> bool:
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_url(text: str, what: str, default_ports: dict[str, int]) -> CheckedUrl:
    """`text` as one of the schemes in `default_ports` with a host; raises UrlError naming `what`."""
    text = text.strip()
    if any(char.isspace() or unicodedata.category(char) in ("Cc", "Cf") for char in text):
        raise UrlError(f"{what} contains spaces or invisible characters")
    schemes = " or ".join(f"{scheme}://" for scheme in default_ports)
    try:
        parts = urlsplit(text)
        scheme, host, port = parts.scheme.lower(), parts.hostname, parts.port
    except ValueError:
        raise UrlError(f"{what} cannot be parsed: check its port (1-65535) and any [IPv6] address") from None
    if scheme not in default_ports:
        raise UrlError(f"{what} must start with {schemes}")
    if not host:
        raise UrlError(f"{what} names no host")
    if port == 0:
        raise UrlError(f"{what} cannot be parsed: check its port (1-65535) and any [IPv6] address")
    return CheckedUrl(text, scheme, host, port or default_ports[scheme], unquote(parts.username or ""),
                      unquote(parts.password or ""))


def url_secrets(url: str, default_ports: dict[str, int]) -> list[str]:
    """What the log filter must hide of a URL from the settings: its user, password, path and query
    (the whole URL when it cannot be parsed)."""
    try:
        return parse_url(url, "", default_ports).secrets()
    except UrlError:
        return [url]


def check_endpoint(url: str, setting: str) -> str:
    """An API root set in the environment (SHEETS_API_ENDPOINT, GMAIL_API_ENDPOINT, M365_GRAPH_ENDPOINT):
    an https URL, plain http only to this machine, so that no token ever travels in clear text.
    The URL as given; UrlError naming the setting."""
    checked = parse_url(url, setting, WEB_PORTS)
    if checked.scheme != "https" and not checked.is_loopback:
        raise UrlError(f"{setting} must be an https:// URL (plain http only to this machine): a token would travel "
                       "in clear text")
    return url

