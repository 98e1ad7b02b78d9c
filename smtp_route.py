"""The SMTP route: one customer's email handed to an SMTP server over verified TLS, and what its replies mean."""

from __future__ import annotations

import contextlib
import logging
import re
import smtplib
import socket
import ssl
import threading
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from customer_message import OutgoingMail, emails_for
from delivery import DELIVERED, FEWER, REJECTED, RETRY, STOP, Answer, answer_text
from destinations import CheckFailedError, Destination, SettingError
from time_bounds import call_within
from url_rules import SMTP_CA_VARIABLES, SMTP_PORTS, CheckedUrl, UrlError, ca_bundle, is_printable_ascii, parse_url, url_secrets

log = logging.getLogger("ticket_notifier")

AUTH_MECHANISMS = ("PLAIN", "LOGIN")   # as offered; the password only ever inside TLS (or to this machine)
REPLY_MAX_BYTES = 65_536               # of one reply, however many lines: an endless reply is cut, not stored
REPLY_LINE_BYTES = 8_192               # smtplib's own limit for a line; a longer one is cut to it, not refused
# A 5xx at RCPT that refuses the sender, not the recipient: enhanced status 5.1.7/5.1.8, or the reply says so.
_SENDER_REFUSED = re.compile(r"\b5\.1\.[78]\b|\bsender\b", re.IGNORECASE)
LOGIN_ADVICE = "check SMTP_USERNAME / SMTP_PASSWORD (an app password for Gmail)"


_RATE_WORDS = re.compile(r"\brate\b|too (much|many) (mail|messages)|try again later|throttl", re.IGNORECASE)


class SmtpConfigError(Exception):
    """The SMTP settings are unusable: exit 2 before any traffic."""


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
    """Verifies the server's certificate and host name, with the CA bundle a corporate network sets.
    Raises SmtpConfigError for a bundle that is missing or holds no certificate."""
    bundle = ca_bundle(SMTP_CA_VARIABLES)
    try:
        return ssl.create_default_context(cafile=bundle)
    except (OSError, ssl.SSLError) as error:
        raise SmtpConfigError(f"the CA bundle {bundle} (SSL_CERT_FILE / REQUESTS_CA_BUNDLE) cannot be used "
                              f"({getattr(error, 'strerror', None) or type(error).__name__}): point it at a PEM file "
                              "of certificates, or unset it") from None


class _SlowServer(smtplib.SMTPServerDisconnected):
    """No reply within the timeout."""


class _BoundedReplies:
    """smtplib's reply reading, bounded: a line longer than smtplib takes is cut (its end read and
    dropped) rather than turned into a local "500 Line too long" (which would reject a delivered
    email), and a reply of endless lines ends the connection instead of filling the memory."""

    def getreply(self):  # noqa: D102 (smtplib's interface)
        if self.file is None:
            self.file = self.sock.makefile("rb")
        lines, total = [], 0
        while True:
            line, total = self._reply_line(total)
            lines.append(line[4:].strip(b" \t\r\n"))
            try:
                code = int(line[:3])
            except ValueError:
                return -1, b"\n".join(lines)
            if line[3:4] != b"-":
                return code, b"\n".join(lines)

    def _reply_line(self, total: int) -> tuple[bytes, int]:
        """One reply line, cut at REPLY_LINE_BYTES, and the bytes read so far."""
        line = b""
        while True:
            try:
                chunk = self.file.readline(REPLY_LINE_BYTES + 1)
            except TimeoutError:
                self.close()
                raise _SlowServer("no reply in time") from None
            except OSError as error:
                self.close()
                raise smtplib.SMTPServerDisconnected(f"connection lost ({error})") from None
            if not chunk:
                self.close()
                raise smtplib.SMTPServerDisconnected("the server closed the connection")
            total += len(chunk)
            if total > REPLY_MAX_BYTES:
                self.close()
                raise smtplib.SMTPServerDisconnected(f"a reply longer than {REPLY_MAX_BYTES} bytes")
            line += chunk[:max(0, REPLY_LINE_BYTES - len(line))]
            if chunk.endswith(b"\n"):
                return line, total


class _SMTP(_BoundedReplies, smtplib.SMTP):
    pass


class _SMTPSSL(_BoundedReplies, smtplib.SMTP_SSL):
    pass


class _AttemptOverError(Exception):
    """An answer that ends the attempt (carried up from deep in the conversation)."""

    def __init__(self, answer: Answer) -> None:
        super().__init__(answer.detail)
        self.answer = answer


class SmtpRoute:
    """Hands messages to one SMTP server; each worker has its own connection (a channel).

    The first connection logs in before any other connects, so a wrong password costs one failed
    login per run, not one per worker; a refused login stops the others before they try."""

    def __init__(self, url: str, *, username: str | None, password: str | None, timeout: float = 30) -> None:
        self.url, self.username = check_smtp_url(url, username, password)
        self.password = password or ""
        self.label = self.url.label
        self.timeout = timeout
        self.context = tls_context()
        self.tls_used = self.url.scheme == "smtps"  # STARTTLS sets it too (for --check's words)
        self._warned_cc: set[str] = set()
        self._lock = threading.Lock()
        self.first_login = threading.Lock()   # held by the connection that proves the login
        self.proven = False                   # a connection got through greeting, TLS and login
        self.login_refused: Answer | None = None
        self.connections = 0                  # open or being opened, all channels together

    def open_channel(self) -> SmtpChannel:
        return SmtpChannel(self)

    def shutdown(self) -> None:
        """The channels end themselves (QUIT)."""

    def count_connection(self, change: int) -> int:
        """Count a connection opened (+1) or closed (-1); the number of the others."""
        with self._lock:
            self.connections += change
            return self.connections - (1 if change > 0 else 0)

    def warn_cc_once(self, address: str, code: int, reply: bytes) -> None:
        with self._lock:
            if address in self._warned_cc:
                return
            self._warned_cc.add(address)
        log.warning("the SMTP server refused the --cc address %s (%d %s); the customers' emails still go",
                    address, code, answer_text(reply))


class SmtpChannel:
    """One worker's connection, opened on first use, reused for its next messages, ended with QUIT.

    Each attempt runs in a helper thread that the delivery loop abandons at --timeout (reset());
    an abandoned attempt never touches the channel again: every change to the connection is made
    under the lock and only by the attempt of the current generation."""

    def __init__(self, route: SmtpRoute) -> None:
        self.route = route
        self.connection: smtplib.SMTP | None = None
        self.generation = 0
        self.lock = threading.Lock()

    # ------------------------------------------------------------ one attempt

    def attempt(self, mail: OutgoingMail) -> Answer:
        generation = self.generation

        def send() -> Answer:
            connection, fresh = self._connection(generation)
            reused = not fresh
            try:
                return self._transaction(connection, mail)
            except _IdleDropped as dropped:
                if not reused:
                    return Answer(RETRY, str(dropped))
                # An idle connection the server ended before MAIL: nothing was sent; once more, freshly.
                connection, _ = self._connection(self._drop(generation))
                return self._transaction(connection, mail)
        return self._answer_of(send, generation)

    def check(self, sender: str) -> Answer:
        """For --check: connect, greet, secure and log in (without a login, MAIL FROM shows whether the
        server wants one), then QUIT; DELIVERED when all of it worked. Bounded by the timeout."""
        generation = self.generation

        def conversation() -> Answer:
            connection, _ = self._connection(generation)
            if sender:  # MAIL and RCPT, then RSET: a server that refuses either without a login says so now
                code, reply = connection.mail(sender)
                if code == 250:
                    code, reply = connection.rcpt(sender)
                connection.rset()
                if code not in (250, 251):
                    advice = ("check the login and that it may send as --from" if self.route.username
                              else "set SMTP_USERNAME and SMTP_PASSWORD")
                    return Answer(STOP, f"{self.route.label} would not take an email from {sender} ({code} "
                                        f"{answer_text(reply)}): {advice}", str(code))
            return Answer(DELIVERED, "ok")
        answer = call_within(self.route.timeout + 1, lambda: self._answer_of(conversation, generation))
        if answer is None:
            self.reset()
            return Answer(RETRY, f"{self.route.label} gave no complete answer within {self.route.timeout:g}s")
        self.close()
        return answer

    def _answer_of(self, conversation, generation: int) -> Answer:
        """The Answer of a conversation with the server, whatever it raised."""
        label = self.route.label
        try:
            return conversation()
        except _AttemptOverError as over:
            if over.answer.kind != REJECTED:  # after a refused recipient or message the connection is fine
                self._drop(generation, polite=True)  # QUIT, on a stop too (a lost connection counts in fail2ban)
            return over.answer
        except smtplib.SMTPResponseException as error:  # a refusal smtplib raised itself (DATA, STARTTLS)
            temporary = not 500 <= error.smtp_code < 600
            self._drop(generation, polite=True)
            said = f"{error.smtp_code} {answer_text(error.smtp_error)}"
            return Answer(RETRY if temporary else REJECTED, f"{label} answered {said}", str(error.smtp_code), said=said)
        except _SlowServer:
            unreachable = self.connection is None
            self._drop(generation)
            return Answer(RETRY, f"{label} did not answer within {self.route.timeout:g}s", unreachable=unreachable)
        except smtplib.SMTPServerDisconnected as error:
            self._drop(generation)
            return Answer(RETRY, f"{label} ended the connection ({error})")
        except smtplib.SMTPException as error:
            self._drop(generation)
            return Answer(RETRY, f"the SMTP conversation with {label} failed ({type(error).__name__})")
        except ssl.SSLCertVerificationError as error:
            self._drop(generation)
            return Answer(STOP, certificate_problem(label, error))
        except ssl.SSLError as error:
            self._drop(generation)
            if self.route.url.scheme == "smtps" and "WRONG_VERSION_NUMBER" in str(error):
                return Answer(STOP, f"{label} speaks plain SMTP first, not TLS: use smtp://{label} (STARTTLS) "
                                    "instead of smtps://")
            return Answer(STOP, f"TLS with {label} failed ({error.reason or type(error).__name__}): "
                                "check the server's TLS settings and the port")
        except (socket.gaierror, ConnectionRefusedError) as error:
            self._drop(generation)
            return Answer(RETRY, f"could not connect to {label} ({error.strerror or type(error).__name__})",
                          unreachable=True)
        except TimeoutError:
            unreachable = self.connection is None
            self._drop(generation)
            return Answer(RETRY, f"{label} did not answer within {self.route.timeout:g}s", unreachable=unreachable)
        except OSError as error:
            self._drop(generation)
            return Answer(RETRY, f"the connection to {label} failed ({error.strerror or type(error).__name__})")

    # ------------------------------------------------------------ connecting

    def _connection(self, generation: int) -> tuple[smtplib.SMTP, bool]:
        """This channel's connection (and False: not fresh) when it is open; else a new one (True), greeted,
        secured and logged in. The first of the run logs in while the others wait for it."""
        with self.lock:
            if generation != self.generation:
                raise _AttemptOverError(Answer(RETRY, "the attempt was abandoned"))
            if self.connection is not None:
                return self.connection, False
        route = self.route
        if route.login_refused is not None:
            raise _AttemptOverError(route.login_refused)
        if route.proven:
            connection = self._open()
        else:
            if not route.first_login.acquire(timeout=route.timeout):
                raise _SlowServer("waiting for the first login")
            try:
                if route.login_refused is not None:
                    raise _AttemptOverError(route.login_refused)
                connection = self._open()
                route.proven = True
            finally:
                route.first_login.release()
        with self.lock:
            if generation == self.generation:
                self.connection = connection
                return connection, True
        _close(connection, route, polite=False)
        raise _AttemptOverError(Answer(RETRY, "the attempt was abandoned"))

    def _open(self) -> smtplib.SMTP:
        route, url = self.route, self.route.url
        others = route.count_connection(+1)
        connection = None
        try:
            if url.scheme == "smtps":
                connection = _SMTPSSL(url.host, url.port, timeout=route.timeout, context=route.context)
            else:
                connection = _SMTP(url.host, url.port, timeout=route.timeout)
            connection.counted = True
            self._greet_and_log_in(connection)
            return connection
        except smtplib.SMTPConnectError as error:
            route.count_connection(-1)
            if error.smtp_code == 421 and others:
                raise _AttemptOverError(Answer(FEWER, f"{route.label} allows fewer connections "
                                                      f"({error.smtp_code} {answer_text(error.smtp_error)})")) from None
            self._refused("greeted with", error.smtp_code, error.smtp_error, stop_on_5xx=True)
        except ConnectionRefusedError:
            route.count_connection(-1)
            if others:
                raise _AttemptOverError(Answer(FEWER, f"{route.label} refused a connection while {others} were "
                                                      "open")) from None
            raise
        except BaseException:
            if connection is None:
                route.count_connection(-1)
            else:
                _close(connection, route, polite=False)
            raise
        raise AssertionError("unreachable")

    def _greet_and_log_in(self, connection: smtplib.SMTP) -> None:
        route, url = self.route, self.route.url
        self._reply(*connection.ehlo(), "EHLO")
        if url.scheme == "smtp":
            if connection.has_extn("starttls"):
                route.tls_used = True
                try:
                    connection.starttls(context=route.context)
                except smtplib.SMTPResponseException as error:
                    raise _AttemptOverError(Answer(STOP, f"{route.label} refused STARTTLS ({error.smtp_code} "
                                             f"{answer_text(error.smtp_error)})", str(error.smtp_code))) from None
                self._reply(*connection.ehlo(), "EHLO")
            elif not url.is_loopback:
                raise _AttemptOverError(Answer(STOP, f"{route.label} does not offer STARTTLS: the password and the emails "
                                                     "would travel unencrypted; use its TLS port (smtps://host:465) or "
                                                     "another server"))
        if route.username:
            self._log_in(connection)

    def _log_in(self, connection: smtplib.SMTP) -> None:
        route = self.route
        offered = connection.esmtp_features.get("auth", "").upper().split()
        mechanism = next((name for name in AUTH_MECHANISMS if name in offered), None)
        if mechanism is None:
            refusal = Answer(STOP, f"{route.label} offers no PLAIN or LOGIN authentication"
                                   f"{' (AUTH: ' + ' '.join(offered) + ')' if offered else ''}")
            route.login_refused = refusal
            raise _AttemptOverError(refusal)
        connection.user, connection.password = route.username, route.password
        authenticate = connection.auth_plain if mechanism == "PLAIN" else connection.auth_login
        try:
            connection.auth(mechanism, authenticate, initial_response_ok=True)
        except smtplib.SMTPAuthenticationError as error:
            code, said = error.smtp_code, answer_text(error.smtp_error)
            if 400 <= code < 500:
                raise _AttemptOverError(Answer(RETRY, f"{route.label} could not log in now ({code} {said})",
                                               str(code))) from None
            refusal = Answer(STOP, f"{route.label} refused the SMTP login ({code} {said}): {LOGIN_ADVICE}", str(code))
            route.login_refused = refusal  # one refused login per run: nobody tries again
            raise _AttemptOverError(refusal) from None

    # ------------------------------------------------------------ one message

    def _transaction(self, connection: smtplib.SMTP, mail: OutgoingMail) -> Answer:
        """MAIL, RCPT for the customer then each --cc, DATA, done by hand: smtplib's send_message would
        send to the copies alone when the customer's address is refused."""
        label = self.route.label
        options, data = [], mail.data
        if mail.international:
            if not connection.has_extn("smtputf8"):
                return Answer(REJECTED, f"{label} cannot take an address with non-ASCII characters (no SMTPUTF8)")
            options.append("SMTPUTF8")
        if mail.eight_bit:
            if connection.has_extn("8bitmime"):
                options.append("BODY=8BITMIME")
            elif mail.data_7bit is not None:
                data = mail.data_7bit
        try:
            code, reply = connection.mail(mail.sender, options)
        except smtplib.SMTPServerDisconnected as error:
            raise _IdleDropped(f"{label} ended the connection ({error})") from None
        if code == 421:  # the server is ending the connection (idle too long, shutting down): nothing was sent
            raise _IdleDropped(f"{label} answered MAIL FROM with 421 {answer_text(reply)}")
        if code != 250:
            connection.rset()
            if code == 530:
                raise _AttemptOverError(Answer(STOP, f"{label} wants a login before sending ({code} {answer_text(reply)}): "
                                                     "set SMTP_USERNAME and SMTP_PASSWORD", str(code)))
            self._refused("refused the sender (MAIL FROM) with", code, reply, stop_on_5xx=True)
        code, reply = connection.rcpt(mail.recipient)
        if code not in (250, 251):
            connection.rset()
            if 500 <= code < 600 and _SENDER_REFUSED.search(answer_text(reply)):
                raise _AttemptOverError(Answer(STOP, f"{label} refused the sender {mail.sender} at RCPT ({code} "
                                                     f"{answer_text(reply)}): check --from (the login must own it)",
                                               str(code)))
            self._refused("refused the recipient with", code, reply)
        for address in mail.cc:
            cc_code, cc_reply = connection.rcpt(address)
            if 400 <= cc_code < 500:
                connection.rset()
                self._refused(f"deferred the --cc address {address} with", cc_code, cc_reply)
            if cc_code not in (250, 251):
                self.route.warn_cc_once(address, cc_code, cc_reply)
        code, reply = connection.data(data)
        if code != 250:
            self._refused("refused the message with", code, reply)
        log.info("%s accepted the email to %s, Message-ID %s: %d %s", label, mail.recipient, mail.message_id or "-",
                 code, answer_text(reply))
        return Answer(DELIVERED, f"{code} {answer_text(reply)}", str(code))

    def _refused(self, what: str, code: int, reply: bytes, stop_on_5xx: bool = False) -> None:
        """A reply that is not a yes: 421 and 4xx are retried; a 5xx rejects this customer, or
        (greeting, sender) stops the run."""
        said = f"{code} {answer_text(reply)}"
        detail = f"{self.route.label} {what} {said}"
        if 400 <= code < 500 and _RATE_WORDS.search(answer_text(reply)):  # not a refused sender: slow down, try again
            detail = f"{self.route.label} is limiting the rate of sending ({said})"
        if 500 <= code < 600:
            raise _AttemptOverError(Answer(STOP if stop_on_5xx else REJECTED, detail, str(code), said=said))
        raise _AttemptOverError(Answer(RETRY, detail, str(code), said=said))

    def _reply(self, code: int, reply: bytes, what: str) -> None:
        if code != 250:
            self._refused(f"answered {what} with", code, reply, stop_on_5xx=True)

    # ------------------------------------------------------------ the connection

    def _drop(self, generation: int, polite: bool = False) -> int:
        """End the connection of this attempt's generation (with QUIT after a temporary refusal, so
        the server sees a clean end before the reconnect); an abandoned attempt changes nothing.
        The generation that follows (-1 when the attempt was abandoned)."""
        with self.lock:
            if generation != self.generation:
                return -1
            connection, self.connection = self.connection, None
            self.generation += 1
            following = self.generation
        if connection is not None:
            _close(connection, self.route, polite)
        return following

    def reset(self) -> None:
        """Drop the connection without a word (an attempt ran out of time): the abandoned attempt's
        socket is closed under it, and its generation is over."""
        with self.lock:
            connection, self.connection = self.connection, None
            self.generation += 1
        if connection is not None:
            _close(connection, self.route, polite=False)

    def close(self) -> None:
        """End politely with QUIT, within the timeout."""
        with self.lock:
            connection, self.connection = self.connection, None
            self.generation += 1
        if connection is not None:
            _close(connection, self.route, polite=True)


def _shut_down(connection: smtplib.SMTP) -> None:
    """End the socket under an attempt that may still be reading from it: the read returns at once.
    Without this, closing the connection waits for that read, as long as the server trickles its reply."""
    sock = getattr(connection, "sock", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


class _IdleDropped(smtplib.SMTPServerDisconnected):
    """The server ended the connection before MAIL FROM was taken: nothing was sent on it."""


def _close(connection: smtplib.SMTP, route: SmtpRoute, polite: bool) -> None:
    """Close a connection once (QUIT first when polite, bounded by the timeout) and count it closed."""
    if polite:
        def quit_politely() -> bool:
            try:
                connection.quit()
            except Exception:  # noqa: S110 (a goodbye: refused, cut, or the connection closed under it when too slow)
                pass
            return True
        if call_within(route.timeout, quit_politely) is None:   # the goodbye trickles: drop it
            _shut_down(connection)
    else:
        _shut_down(connection)
    try:
        connection.close()
    except OSError:
        pass
    if getattr(connection, "counted", False):
        connection.counted = False
        route.count_connection(-1)


def certificate_problem(label: str, error: ssl.SSLCertVerificationError) -> str:
    """What a failed certificate check means, and the fix."""
    code, said = getattr(error, "verify_code", None), str(getattr(error, "verify_message", "") or error)
    if code in (9, 10):  # not yet valid, expired
        return f"the certificate of {label} {'has expired' if code == 10 else 'is not valid yet'}: the server must renew it"
    if code == 62 or "hostname" in said.lower() or "match" in said.lower():
        return f"the certificate of {label} is for another name ({said}): use the host name the certificate names"
    return (f"the certificate of {label} is not signed by an authority this machine trusts ({said}): set SSL_CERT_FILE "
            "to your CA bundle")


# ---------------------------------------------------------------- the destination

@dataclass(frozen=True)
class SmtpSettings:
    url: str
    username: str
    password: str
    imap_url: str = ""        # IMAP_URL: the mailbox the bounces come back to (bounces are read when set)
    imap_password: str = ""   # IMAP_PASSWORD, else SMTP_PASSWORD


IMAP_PORTS = {"imaps": 993, "imap": 143}
IMAP_MESSAGE_BYTES = 256 * 1024   # of each report read: headers and the returned headers come first


class BounceSetupError(Exception):
    """The mailbox the bounces come back to cannot be read (login, permission, TLS): exit 2 at start."""


def check_imap_url(url: str) -> tuple[CheckedUrl, str]:
    """IMAP_URL, imaps://user@host[:993][/MAILBOX]; imap:// only to this machine. (url, mailbox)."""
    try:
        checked = parse_url(url, "IMAP_URL", IMAP_PORTS)
    except UrlError as error:
        raise SettingError(str(error)) from None
    if ":" in urlsplit(url.strip()).netloc.rpartition("@")[0]:
        raise SettingError("IMAP_URL holds a password: remove it and set IMAP_PASSWORD in the environment instead")
    if checked.scheme == "imap" and not checked.is_loopback:
        raise SettingError("IMAP_URL must be imaps:// (TLS) for a host other than this machine: the password would "
                           "travel unencrypted")
    if not checked.username:
        raise SettingError("IMAP_URL needs the mailbox's user name: imaps://user@host:993/INBOX")
    mailbox = unquote(urlsplit(url.strip()).path.lstrip("/")) or "INBOX"
    return checked, mailbox


def read_imap_reports(settings: SmtpSettings, cursor: dict, since, timeout: float,
                      probe: bool = False) -> tuple[list[bytes], dict]:
    """The messages that arrived in the bounce mailbox since `cursor` (its UIDVALIDITY and last UID),
    or since the day `since` on a first read, and the cursor after them. Only reads: EXAMINE and
    BODY.PEEK, nothing is flagged, moved or deleted. Raises BounceSetupError (login, TLS) or OSError."""
    import imaplib

    from time_bounds import TooSlowError, run_within

    url, mailbox = check_imap_url(settings.imap_url)

    def read() -> tuple[list[bytes], dict]:
        if url.scheme == "imaps":
            connection = imaplib.IMAP4_SSL(url.host, url.port, ssl_context=tls_context(), timeout=timeout)
        else:
            connection = imaplib.IMAP4(url.host, url.port, timeout=timeout)
        try:
            try:
                connection.login(url.username, settings.imap_password)
            except imaplib.IMAP4.error as error:
                raise BounceSetupError(f"{url.label} refused the IMAP login of {url.username} "
                                       f"({answer_text(str(error))}): check IMAP_URL and IMAP_PASSWORD") from None
            status, _ = connection.select(_quoted(mailbox), readonly=True)  # EXAMINE
            if status != "OK":
                raise BounceSetupError(f"{url.label} has no mailbox {mailbox!r}: check the path of IMAP_URL")
            validity = str((connection.response("UIDVALIDITY")[1] or [b""])[0].decode())
            if probe:  # --check: the login and the mailbox are proven, nothing is read
                return [], {}
            last = int(cursor.get("uid", 0)) if str(cursor.get("uidvalidity", "")) == validity else 0
            criteria = f"UID {last + 1}:*" + ("" if last else f" SINCE {since.strftime('%d-%b-%Y')}")
            _, found = connection.uid("SEARCH", None, criteria)
            uids = sorted(uid for uid in map(int, (found[0] or b"").split()) if uid > last)
            raws = []
            for uid in uids:
                _, data = connection.uid("FETCH", str(uid), f"(BODY.PEEK[]<0.{IMAP_MESSAGE_BYTES}>)")
                raws += [part[1] for part in data if isinstance(part, tuple) and len(part) > 1]
            return raws, {"uidvalidity": validity, "uid": max(uids, default=last)}
        finally:
            with contextlib.suppress(Exception):
                connection.logout()

    try:
        return run_within(timeout * 4 + 1, read)
    except TooSlowError:
        raise OSError(f"{url.label} gave no complete answer in time") from None
    except ssl.SSLError as error:
        raise BounceSetupError(f"TLS with {url.label} failed ({error.reason or error}): set SSL_CERT_FILE to your CA "
                               "bundle, or check the port of IMAP_URL") from None


def _quoted(mailbox: str) -> str:
    return '"' + mailbox.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _add_options(group) -> None:
    group.add_argument("--smtp-url", metavar="URL",
                       help="send over SMTP instead: smtp://[user@]host[:587] (STARTTLS) or smtps://[user@]host[:465] "
                            "(default: $SMTP_URL); password in $SMTP_PASSWORD; needs --from")


def _url(options, environment) -> str:
    return (options.smtp_url or environment.get("SMTP_URL") or "").strip()


def _configure(options, environment) -> SmtpSettings:
    url = _url(options, environment)
    if not url:
        raise SettingError("no SMTP server: pass --smtp-url URL or set SMTP_URL")
    password = environment.get("SMTP_PASSWORD") or ""
    try:
        _, username = check_smtp_url(url, environment.get("SMTP_USERNAME"), password)
    except SmtpConfigError as error:
        raise SettingError(str(error)) from None
    imap_url = environment.get("IMAP_URL", "").strip()
    imap_password = environment.get("IMAP_PASSWORD") or password
    if imap_url:
        check_imap_url(imap_url)
        if not imap_password:
            raise SettingError("IMAP_URL is set but neither IMAP_PASSWORD nor SMTP_PASSWORD: set IMAP_PASSWORD")
    return SmtpSettings(url, username, password, imap_url, imap_password)


def _read_bounces(run, cursor: dict, since) -> tuple[list[bytes], dict]:
    try:
        return read_imap_reports(run.destination_settings, cursor, since, run.timeout)
    except BounceSetupError as error:  # a login or TLS the settings must fix: exit 2 before the first customer
        raise SettingError(str(error)) from None


def _check_bounces(run) -> str:
    """--check: log in to the bounce mailbox and EXAMINE it, reading no message."""
    own = run.destination_settings
    url, mailbox = check_imap_url(own.imap_url)
    try:
        read_imap_reports(own, {}, None, min(run.timeout, 15), probe=True)
    except BounceSetupError as error:
        raise SettingError(str(error)) from None
    except OSError as error:
        raise SettingError(f"cannot reach {url.label} ({error.strerror or error}): check IMAP_URL") from None
    return f"bounces: {url.label} lets {url.username} read {mailbox} (nothing read)"


def _secrets(settings: SmtpSettings) -> list[str]:
    """The passwords, and what the URL must not show; the user name is not a secret (with the usual
    set-up it is the --from address, and an error about the sender must be able to name it)."""
    return [settings.password, settings.imap_password,
            *(value for value in url_secrets(settings.url, SMTP_PORTS) if value != settings.username)]


def _open(run) -> SmtpRoute:
    own = run.destination_settings
    try:
        return SmtpRoute(own.url, username=own.username, password=own.password, timeout=run.timeout)
    except SmtpConfigError as error:
        raise SettingError(str(error)) from None



def _check_live(run) -> str:
    """EHLO, STARTTLS and AUTH (or, without a login, whether the server wants one); nothing sent."""

    try:
        route = _open(run.with_timeout(min(run.timeout, 15)))
    except SettingError as error:
        raise CheckFailedError(str(error)) from None
    answer = route.open_channel().check(run.sender.from_address if run.sender else "")
    if answer.kind != DELIVERED:
        raise CheckFailedError(answer.detail)
    login = "logged in" if route.username else "no login (a relay that trusts this host)"
    tls = "TLS verified" if route.tls_used else "no TLS (this machine only)"
    return f"SMTP server {route.label} answers: EHLO, {tls}, {login}, MAIL and RCPT accepted (then RSET, nothing sent)"


DESTINATION = Destination(
    name="smtp", named_by="--smtp-url URL (or SMTP_URL)", summary="each customer's email handed to an SMTP server",
    env_keys=("SMTP_URL", "SMTP_USERNAME", "SMTP_PASSWORD", "IMAP_URL", "IMAP_PASSWORD"),
    secret_keys=("SMTP_URL", "SMTP_PASSWORD", "IMAP_PASSWORD"),
    add_options=_add_options, named=lambda options, environment: bool(_url(options, environment)),
    configure=_configure, secrets=_secrets, open=_open, message_for=emails_for, check_live=_check_live,
    needs_sender=True, reads_bounces=lambda run: bool(run.destination_settings.imap_url),
    read_bounces=_read_bounces, check_bounces=_check_bounces)
