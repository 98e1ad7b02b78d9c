"""The SMTP route: one customer's email handed to an SMTP server over verified TLS, and what its replies mean."""

from __future__ import annotations

import logging
import smtplib
import socket
import ssl
import threading
from dataclasses import dataclass
from urllib.parse import urlsplit

from delivery import DELIVERED, REJECTED, RETRY, STOP, Answer, answer_text
from email_message import message_bytes, needs_smtputf8
from url_rules import SMTP_CA_VARIABLES, SMTP_PORTS, CheckedUrl, UrlError, ca_bundle, is_printable_ascii, parse_url

log = logging.getLogger("ticket_notifier")

AUTH_MECHANISMS = ("PLAIN", "LOGIN")   # as offered; the password only ever inside TLS (or to this machine)


class SmtpConfigError(Exception):
    """The SMTP settings are unusable: exit 2 before any traffic."""


@dataclass(frozen=True)
class OutgoingMail:
    """One message with its envelope: who it is from, the customer, the --cc copies."""
    sender: str
    recipient: str
    cc: tuple[str, ...]
    data: bytes
    international: bool   # an address with non-ASCII characters: the server must offer SMTPUTF8


def check_smtp_url(url: str, username: str | None, password: str | None) -> tuple[CheckedUrl, str]:
    """The checked URL and the user name (from the URL, else SMTP_USERNAME). A password in the URL
    is refused without repeating it; a user name needs SMTP_PASSWORD."""
    try:
        checked = parse_url(url, "the SMTP URL", SMTP_PORTS)
    except UrlError as error:
        raise SmtpConfigError(str(error)) from None
    if checked.scheme == "smtp" and checked.port == 465:
        raise SmtpConfigError("port 465 speaks TLS from the first byte: use smtps://host:465 (smtp:// is for STARTTLS, "
                              "port 587)")
    if ":" in urlsplit(url.strip()).netloc.rpartition("@")[0]:
        raise SmtpConfigError("the SMTP URL holds a password: remove it and set SMTP_PASSWORD in the environment instead")
    user = checked.username or (username or "").strip()
    for name, value in (("the SMTP user name", user), ("SMTP_PASSWORD", password or "")):
        if not is_printable_ascii(value):  # smtplib sends both as ASCII
            raise SmtpConfigError(f"{name} must be printable ASCII on one line")
    if user and not password:
        raise SmtpConfigError("an SMTP user name is set but SMTP_PASSWORD is not: set it in the environment")
    if password and not user:
        raise SmtpConfigError("SMTP_PASSWORD is set but no user name: put it in the URL (smtp://user@host) or SMTP_USERNAME")
    return checked, user


def tls_context() -> ssl.SSLContext:
    """Verifies the server's certificate and host name, with the CA bundle a corporate network sets."""
    return ssl.create_default_context(cafile=ca_bundle(SMTP_CA_VARIABLES))


class SmtpRoute:
    """Hands messages to one SMTP server; each worker has its own connection (a channel)."""

    def __init__(self, url: str, *, username: str | None, password: str | None, timeout: float = 30) -> None:
        self.url, self.username = check_smtp_url(url, username, password)
        self.password = password or ""
        self.label = self.url.label
        self.timeout = timeout
        self.context = tls_context()
        self._warned_cc: set[str] = set()
        self._lock = threading.Lock()

    def open_channel(self) -> SmtpChannel:
        return SmtpChannel(self)

    def shutdown(self) -> None:
        """The channels end themselves (QUIT)."""

    def warn_cc_once(self, address: str, code: int, reply: bytes) -> None:
        with self._lock:
            if address in self._warned_cc:
                return
            self._warned_cc.add(address)
        log.warning("the SMTP server refused the --cc address %s (%d %s); the customers' emails still go",
                    address, code, answer_text(reply))


class _AttemptOverError(Exception):
    """An answer that ends the attempt (carried up from deep in the conversation)."""

    def __init__(self, answer: Answer) -> None:
        super().__init__(answer.detail)
        self.answer = answer


class SmtpChannel:
    """One worker's connection, opened on first use, reused for its next messages, ended with QUIT."""

    def __init__(self, route: SmtpRoute) -> None:
        self.route = route
        self.connection: smtplib.SMTP | None = None

    # ------------------------------------------------------------ one attempt

    def attempt(self, mail: OutgoingMail) -> Answer:
        def send() -> Answer:
            reused = self.connection is not None
            try:
                self._connected()
                return self._transaction(mail)
            except smtplib.SMTPServerDisconnected:
                if not reused:
                    raise
                self.reset()  # the server ended an idle connection: once more on a fresh one
                self._connected()
                return self._transaction(mail)
        return self._answer_of(send)

    def check(self) -> Answer:
        """For --check: connect, greet, secure and log in, then QUIT; DELIVERED when all of it worked."""
        def connect() -> Answer:
            self._connected()
            return Answer(DELIVERED, "ok")
        try:
            return self._answer_of(connect)
        finally:
            self.close()

    def _answer_of(self, conversation) -> Answer:
        """The Answer of a conversation with the server, whatever it raised."""
        try:
            return conversation()
        except _AttemptOverError as stop:
            if stop.answer.kind != REJECTED:  # after a refused recipient or message the connection is fine
                self.reset()
            return stop.answer
        except smtplib.SMTPResponseException as error:  # a refusal smtplib raised itself (DATA, STARTTLS)
            self.reset()
            kind = REJECTED if 500 <= error.smtp_code < 600 else RETRY
            return Answer(kind, f"{self.route.label} answered {error.smtp_code} {answer_text(error.smtp_error)}",
                          str(error.smtp_code))
        except smtplib.SMTPException as error:
            self.reset()
            return Answer(RETRY, f"the SMTP conversation with {self.route.label} failed ({type(error).__name__})")
        except ssl.SSLError as error:
            self.reset()
            return Answer(STOP, f"TLS with {self.route.label} failed ({error.reason or type(error).__name__}): "
                                "check the server's certificate, or set SSL_CERT_FILE to your CA bundle")
        except ssl.CertificateError as error:
            self.reset()
            return Answer(STOP, f"the certificate of {self.route.label} does not match its name ({error})")
        except smtplib.SMTPServerDisconnected:
            self.reset()
            return Answer(RETRY, f"{self.route.label} closed the connection")
        except (socket.gaierror, ConnectionRefusedError) as error:
            self.reset()
            return Answer(RETRY, f"could not connect to {self.route.label} ({error.strerror or type(error).__name__})",
                          unreachable=True)
        except TimeoutError:
            unreachable = self.connection is None
            self.reset()
            return Answer(RETRY, f"{self.route.label} did not answer within {self.route.timeout:g}s",
                          unreachable=unreachable)
        except OSError as error:
            self.reset()
            return Answer(RETRY, f"the connection to {self.route.label} failed ({error.strerror or type(error).__name__})")

    def _connected(self) -> None:
        """Connect, greet, secure and log in, unless this channel's connection is already open."""
        if self.connection is not None:
            return
        route, url = self.route, self.route.url
        try:
            if url.scheme == "smtps":
                connection = smtplib.SMTP_SSL(url.host, url.port, timeout=route.timeout, context=route.context)
            else:
                connection = smtplib.SMTP(url.host, url.port, timeout=route.timeout)
        except smtplib.SMTPConnectError as error:
            self._refused("greeted with", error.smtp_code, error.smtp_error, stop_on_5xx=True)
        self.connection = connection
        self._reply(*connection.ehlo(), "EHLO")
        if url.scheme == "smtp":
            if connection.has_extn("starttls"):
                try:
                    connection.starttls(context=route.context)
                except smtplib.SMTPResponseException as error:
                    raise _AttemptOverError(Answer(STOP, f"{route.label} refused STARTTLS ({error.smtp_code} "
                                             f"{answer_text(error.smtp_error)})", str(error.smtp_code))) from None
                self._reply(*connection.ehlo(), "EHLO")
            elif not url.is_loopback:
                raise _AttemptOverError(Answer(STOP, f"{route.label} does not offer STARTTLS: the password and the emails would "
                                         "travel unencrypted; use its TLS port (smtps://host:465) or another server"))
        if route.username:
            self._log_in(connection)

    def _log_in(self, connection: smtplib.SMTP) -> None:
        route = self.route
        offered = connection.esmtp_features.get("auth", "").upper().split()
        mechanism = next((name for name in AUTH_MECHANISMS if name in offered), None)
        if mechanism is None:
            raise _AttemptOverError(Answer(STOP, f"{route.label} offers no PLAIN or LOGIN authentication"
                                     f"{' (AUTH: ' + ' '.join(offered) + ')' if offered else ''}"))
        connection.user, connection.password = route.username, route.password
        authenticate = connection.auth_plain if mechanism == "PLAIN" else connection.auth_login
        try:
            connection.auth(mechanism, authenticate, initial_response_ok=True)
        except smtplib.SMTPAuthenticationError as error:
            code, said = error.smtp_code, answer_text(error.smtp_error)
            if 400 <= code < 500:
                raise _AttemptOverError(Answer(RETRY, f"{route.label} could not log in now ({code} {said})",
                                               str(code))) from None
            raise _AttemptOverError(Answer(STOP, f"{route.label} refused the SMTP login ({code} {said}): "
                                     "check SMTP_USERNAME / SMTP_PASSWORD (an app password for Gmail)", str(code))) from None

    def _transaction(self, mail: OutgoingMail) -> Answer:
        """MAIL, RCPT for the customer then each --cc, DATA, done by hand: smtplib's send_message would
        send to the copies alone when the customer's address is refused."""
        connection = self.connection
        assert connection is not None
        options = []
        if mail.international:
            if not connection.has_extn("smtputf8"):
                return Answer(REJECTED, f"{self.route.label} cannot take an address with non-ASCII characters "
                                        "(no SMTPUTF8)", "SMTPUTF8")
            options = ["SMTPUTF8", "BODY=8BITMIME"]
        code, reply = connection.mail(mail.sender, options)
        if code != 250:
            connection.rset()
            self._refused("refused the sender (MAIL FROM) with", code, reply, stop_on_5xx=True)
        code, reply = connection.rcpt(mail.recipient)
        if code not in (250, 251):
            connection.rset()
            self._refused("refused the recipient with", code, reply)
        for address in mail.cc:
            cc_code, cc_reply = connection.rcpt(address)
            if cc_code not in (250, 251):
                self.route.warn_cc_once(address, cc_code, cc_reply)
        code, reply = connection.data(mail.data)
        if code != 250:
            self._refused("refused the message with", code, reply)
        return Answer(DELIVERED, f"{code} {answer_text(reply)}", str(code))

    def _refused(self, what: str, code: int, reply: bytes, stop_on_5xx: bool = False) -> None:
        """A reply that is not a yes: 421 and 4xx are retried; a 5xx rejects this customer, or
        (greeting, sender) stops the run."""
        detail = f"{self.route.label} {what} {code} {answer_text(reply)}"
        if 500 <= code < 600:
            raise _AttemptOverError(Answer(STOP if stop_on_5xx else REJECTED, detail, str(code)))
        raise _AttemptOverError(Answer(RETRY, detail, str(code)))

    def _reply(self, code: int, reply: bytes, what: str) -> None:
        if code != 250:
            self._refused(f"answered {what} with", code, reply, stop_on_5xx=True)

    # ------------------------------------------------------------ the connection

    def reset(self) -> None:
        """Drop the connection without a word (it is in an unknown state)."""
        connection, self.connection = self.connection, None
        if connection is not None:
            try:
                connection.close()
            except OSError:
                pass

    def close(self) -> None:
        """End politely with QUIT."""
        connection, self.connection = self.connection, None
        if connection is not None:
            try:
                connection.quit()
            except (smtplib.SMTPException, OSError):
                connection.close()


def outgoing_mail(message, sender: str, recipient: str, cc: tuple[str, ...]) -> OutgoingMail:
    international = needs_smtputf8([sender, recipient, *cc])
    return OutgoingMail(sender, recipient, cc, message_bytes(message, international), international)
