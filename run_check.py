"""`process_ticket.py --check`: settings, destination, Google and state file checked, a line each; nothing read or sent."""

from __future__ import annotations

import os
import socket
import ssl

from state_file import StateError, acquire_lock, load_state, write_probe
from url_rules import ca_bundle


def check_all(args) -> int:
    """Print one line per check, saying what to fix; 0 when all pass, else 2."""
    checks = [("settings", lambda: "the command line and the environment are usable"),
              ("destination", lambda: check_destination(args)),
              ("report", lambda: check_source(args)),
              ("state", lambda: check_state(args))]
    if args.ping_url:
        from heartbeat import check_ping_url
        checks.append(("heartbeat", lambda: f"pings go to {check_ping_url(args.ping_url).label} (none sent now)"))
    failed = 0
    for name, check in checks:
        try:
            print(f"ok    {name}: {check()}")
        except CheckFailedError as problem:
            failed += 1
            print(f"FAIL  {name}: {problem}")
        except Exception as error:  # a check must never end the others: one line, like the rest
            failed += 1
            print(f"FAIL  {name}: unexpected {type(error).__name__}: {error}")
    return 2 if failed else 0


class CheckFailedError(Exception):
    """One check that did not pass; the message says what to fix."""


def check_destination(args) -> str:
    if args.smtp_url:
        from delivery import DELIVERED
        from smtp_route import SmtpConfigError, SmtpRoute

        try:
            route = SmtpRoute(args.smtp_url, username=os.environ.get("SMTP_USERNAME"),
                              password=os.environ.get("SMTP_PASSWORD"), timeout=min(args.timeout, 15))
        except SmtpConfigError as error:
            raise CheckFailedError(str(error)) from None
        answer = route.open_channel().check(args.sender.from_address if args.sender else "")
        if answer.kind != DELIVERED:
            raise CheckFailedError(answer.detail)
        login = "logged in" if route.username else "no login (a relay that trusts this host)"
        return f"SMTP server {route.label} answers: EHLO, TLS verified, {login}"
    if args.webhook_url:
        from webhook_route import check_webhook_url

        url = check_webhook_url(args.webhook_url, args.allow_http)
        return handshake(url.host, url.port, url.scheme == "https", min(args.timeout, 15), url.label)
    if args.test_mode:
        return "none set (test mode sends nothing)"
    raise CheckFailedError("no destination: set WEBHOOK_URL (or -webhook_url) or SMTP_URL (or --smtp-url)")


def handshake(host: str, port: int, tls: bool, timeout: float, label: str) -> str:
    """A TCP connection and, for https, a verified TLS handshake: the webhook answers, nothing is posted."""
    import requests

    if requests.utils.get_environ_proxies(f"{'https' if tls else 'http'}://{host}:{port}"):
        return f"webhook {label} goes through the proxy set in the environment (not checked from here)"
    try:
        with socket.create_connection((host, port), timeout=timeout) as connection:
            if tls:
                context = ssl.create_default_context(cafile=ca_bundle())
                with context.wrap_socket(connection, server_hostname=host):
                    pass
    except ssl.SSLError as error:
        raise CheckFailedError(f"TLS with {label} failed ({error.reason or error}): check the certificate, or set "
                          "REQUESTS_CA_BUNDLE to your CA bundle") from None
    except ssl.CertificateError as error:
        raise CheckFailedError(f"the certificate of {label} does not match its name ({error})") from None
    except OSError as error:
        raise CheckFailedError(f"could not connect to {label} ({error.strerror or type(error).__name__}): check the URL, "
                          "the network and any firewall") from None
    return f"webhook {label} answers" + (" (TLS verified)" if tls else "")


def check_source(args) -> str:
    if args.report:
        if not args.report.is_file():
            raise CheckFailedError(f"report file not found: {args.report}")
        return f"{args.report} exists (not read now)"
    import google_api

    try:
        title = google_api.check_sheet_access(args.sheet_id, credentials_path=args.credentials, token_path=args.token,
                                              api_key=args.api_key)
    except google_api.GoogleSetupError as error:
        raise CheckFailedError(str(error)) from None
    return f"Google Sheet {title!r} can be read with these credentials"


def check_state(args) -> str:
    path = args.state_file
    try:
        stored = load_state(path)
        lock = acquire_lock(path)
        try:
            write_probe(path.parent)
        finally:
            lock.release()
    except StateError as error:
        raise CheckFailedError(str(error)) from None
    if stored is None:
        return f"no state file at {path} yet: the first live run needs --since DD/MM/YYYY; its folder is writable"
    return f"{path} is readable (last_run_date {stored.last_run_date:%d/%m/%Y}), its folder writable and not locked"
