"""SMTP as real mail servers behave (contract section 17): no header from a report, one login, connection
limits, bounded answers, and diagnostics that name the fix. aiosmtpd with scripted replies, and raw
sockets for servers that trickle, drop or never stop answering."""

import re
import socket
import threading
import time
from datetime import date, timedelta

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult
from conftest import clean_env, free_port, make_certificates, read_state, run_cli, run_job, write_csv, write_state
from mail_standins import SMTP_FROM, SMTP_ROWS, USER, SmtpRecorder, run_smtp, smtp_env

from customer_message import check_header_block
from delivery import BACKOFF_MAX_SECONDS, UnsendableError, backoff_seconds

TODAY = date.today()
RECENT = (TODAY - timedelta(days=3)).strftime("%d/%m/%Y")
SINCE = (TODAY - timedelta(days=10)).strftime("%d/%m/%Y")


class LimitedSMTP(SMTP):
    """An SMTP session that answers 421 at the greeting past `limit` sessions at once."""
    limit = 2
    active = 0
    most = 0
    refused = 0
    lock = threading.Lock()

    async def _handle_client(self):
        cls = type(self)
        with cls.lock:
            over = cls.active >= cls.limit
            if not over:
                cls.active += 1
                cls.most = max(cls.most, cls.active)
            else:
                cls.refused += 1
        if over:
            await self.push("421 4.7.0 Too many connections, try again later")
            self.transport.close()
            return
        try:
            await super()._handle_client()
        finally:
            with cls.lock:
                cls.active -= 1


class ScriptedController(Controller):
    def __init__(self, handler, session_class=SMTP, **kwargs):
        self.session_class = session_class
        super().__init__(handler, **kwargs)

    def factory(self):
        return self.session_class(self.handler, **self.SMTP_kwargs)


def start(handler, session_class=SMTP, **options):
    port = free_port()
    controller = ScriptedController(handler, session_class, hostname="127.0.0.1", port=port, **options)
    controller.start()
    return controller, port


def local_run(tmp_path, port, *extra, rows=SMTP_ROWS, env=None):
    """A run against a relay on this machine (no TLS, no login)."""
    return run_smtp(tmp_path, f"smtp://127.0.0.1:{port}", *extra, rows=rows, env=env or clean_env())


class RawSmtp:
    """A hand-written SMTP server on 127.0.0.1: `script(send, lines)` plays one session, where
    `lines` yields the client's lines and `send(bytes, trickle=0)` writes (a byte at a time with a pause
    when trickling)."""

    def __init__(self, script) -> None:
        self.script = script
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sessions = 0
        self.commands: list[str] = []
        self.stopped = threading.Event()
        threading.Thread(target=self.serve, daemon=True).start()

    @property
    def port(self) -> int:
        return self.sock.getsockname()[1]

    def serve(self):
        while not self.stopped.is_set():
            try:
                connection, _ = self.sock.accept()
            except OSError:
                return
            self.sessions += 1
            threading.Thread(target=self.handle, args=(connection, self.sessions), daemon=True).start()

    def handle(self, connection, number):
        reader = connection.makefile("rb")

        def send(data: bytes, trickle: float = 0):
            if not trickle:
                connection.sendall(data)
                return
            for byte in data:
                if self.stopped.is_set():
                    return
                connection.sendall(bytes([byte]))
                time.sleep(trickle)

        def lines():
            while True:
                line = reader.readline()
                if not line:
                    return
                text = line.decode("utf-8", "replace").rstrip("\r\n")
                self.commands.append(text)
                yield text

        try:
            self.script(send, lines(), number)
        except OSError:
            pass
        finally:
            connection.close()

    def close(self):
        self.stopped.set()
        self.sock.close()


def plain_session(send, lines, number, ehlo=b"250-raw\r\n250 SIZE 1000000\r\n", data_reply=b"250 2.0.0 Ok: queued as 4XyZ\r\n",
                  greeting=b"220 raw ESMTP\r\n", quit_reply=b"221 bye\r\n", trickle=None):
    """An ordinary session; `trickle` names the step whose reply comes a byte every 0.5 s."""
    send(greeting, 0.5 if trickle == "greeting" else 0)
    in_data = False
    for line in lines:
        if in_data:
            if line == ".":
                in_data = False
                send(data_reply, 0.5 if trickle == "data" else 0)
            continue
        verb = line.split(" ", 1)[0].upper()
        if verb in ("EHLO", "HELO"):
            send(ehlo, 0.5 if trickle == "ehlo" else 0)
        elif verb == "DATA":
            send(b"354 go ahead\r\n")
            in_data = True
        elif verb == "QUIT":
            send(quit_reply, 0.5 if trickle == "quit" else 0)
            return
        else:
            send(b"250 ok\r\n")


@pytest.fixture
def raw_smtp():
    servers = []

    def make(script):
        server = RawSmtp(script)
        servers.append(server)
        return server
    yield make
    for server in servers:
        server.close()


# ---------------------------------------------------------------- no header from a report

def display_name_as_sent(received) -> str:
    """The To header's display name decoded the way RFC 2047 says (adjacent encoded words joined; the
    email package's address parser puts a space between them)."""
    from email.header import decode_header, make_header

    raw = received["raw"].split(b"\r\n\r\n", 1)[0].decode("utf-8")
    to = re.search(r"^To: (.*?)(?=\r\n\S)", raw + "\r\nX", re.MULTILINE | re.DOTALL).group(1)
    text = str(make_header(decode_header(to.replace("\r\n", ""))))
    name = text.rpartition(" <")[0]
    return name[1:-1] if to.startswith('"') else name   # a quoted string, not an encoded word


INJECTIONS = [
    "=?utf-8?q?S=0D=0AReply-To:_attacker@evil.example?=",
    "=?utf-8?q?S=0D=0ABcc:_attacker@evil.example?=",
    "=?utf-8?q?S=0D=0A=0D=0Afake_body?=",
    "=?utf-8?b?UwpSZXBseS1UbzogYXR0YWNrZXJAZXZpbC5leGFtcGxl?=",
    "Ann\r\nBcc: attacker@evil.example",
    '"=?utf-8?q?S=0D=0AReply-To:_x@evil.example?="',
]


@pytest.mark.parametrize("name", INJECTIONS)
def test_a_name_holding_an_encoded_line_break_adds_no_header(tmp_path, name):
    recorder = SmtpRecorder()
    controller, port = start(recorder)
    try:
        rows = [[name, "", "jane@example.com", "1001", "Closed", RECENT]]
        result = local_run(tmp_path, port, rows=rows, env=clean_env())
    finally:
        controller.stop()
    assert result.returncode == 0, result.stderr
    [received] = recorder.messages
    message = received["message"]
    assert sorted(message.keys()) == sorted(["From", "To", "Subject", "Date", "Message-ID", "Auto-Submitted",
                                             "Content-Type", "Content-Transfer-Encoding", "MIME-Version"])
    assert received["to"] == ["jane@example.com"] and "attacker" not in str(message["To"].addresses[0].addr_spec)
    assert message.get_content().startswith("Hello ")   # the body is where the body starts
    expected = name.replace("\r", " ").replace("\n", " ").strip()
    assert display_name_as_sent(received) == expected   # the literal text, decoded once as RFC 2047 says
    if "=?" in name:   # never on the wire as an encoded word a mail reader would decode, not even quoted
        head = received["raw"].split(b"\r\n\r\n", 1)[0].decode("ascii", "replace")
        assert name.strip('"') not in head


def test_the_header_check_refuses_a_block_with_a_header_the_job_does_not_set():
    good = (b"From: a@example.com\r\nTo: b@example.com\r\nSubject: s\r\nDate: d\r\nMessage-ID: <m@x>\r\n"
            b"Auto-Submitted: auto-generated\r\nMIME-Version: 1.0\r\n\r\nbody")
    check_header_block(good, with_sender=True)
    for bad in (good.replace(b"Subject: s", b"Subject: s\r\nBcc: x@evil.example"),
                good.replace(b"To: b@example.com", b"To: b@example.com\r\nTo: c@example.com"),
                good.replace(b"Date: d\r\n", b""),
                good.replace(b"Subject: s", b"Subject: s\nReply-To: x@evil.example"),
                good.replace(b"Subject: s", b"Subject: " + b"x" * 1000)):
        with pytest.raises(UnsendableError):
            check_header_block(bad, with_sender=True)


def test_a_name_of_1200_characters_is_folded_below_998_octets(tmp_path):
    recorder = SmtpRecorder()
    controller, port = start(recorder)
    try:
        result = local_run(tmp_path, port, rows=[["N" * 1200, "", "jane@example.com", "1", "Closed", RECENT]])
    finally:
        controller.stop()
    assert result.returncode == 0, result.stderr
    raw = recorder.messages[0]["message"].as_bytes()
    assert max(map(len, raw.split(b"\n"))) <= 998
    assert display_name_as_sent(recorder.messages[0]) == "N" * 1200


@pytest.mark.parametrize("address", ["john..doe@example.com", ".x@example.com", "x.@example.com",
                                     "a" * 65 + "@example.com", "a@" + "b" * 250 + ".com"])
def test_an_address_the_email_package_cannot_carry_is_skipped_when_read_and_previews_go_on(tmp_path, address):
    rows = [["A", "", address, "1", "Closed", RECENT], ["B", "", "b@example.com", "2", "Closed", RECENT]]
    report = write_csv(tmp_path / "r.csv", rows)
    result = run_job("--report", str(report), "--since", SINCE, "-testmode", "yes", "--from", SMTP_FROM,
                     "--preview-dir", str(tmp_path / "p"))
    assert result.returncode == 0, result.stderr
    assert "no or invalid email 1" in result.stdout
    assert [path.name for path in (tmp_path / "p").glob("*.eml")] == ["001-b@example.com.eml"]


# ---------------------------------------------------------------- the sender, the login, connection limits

def test_a_sender_refused_at_rcpt_stops_the_run_whatever_the_number_of_customers(tmp_path):
    recorder = SmtpRecorder()
    recorder.rcpt_reply = lambda address, attempt: "553 5.7.1 <support@example.com>: Sender address rejected: not owned by user"
    controller, port = start(recorder)
    try:
        result = local_run(tmp_path, port, rows=SMTP_ROWS[:1])
    finally:
        controller.stop()
    assert result.returncode == 2
    assert "refused the sender support@example.com at RCPT" in result.stderr and "--from" in result.stderr
    saved = read_state(tmp_path / "s.json")
    assert saved["rejected"] == {} and not (tmp_path / "rejected.csv").exists()


@pytest.mark.parametrize("reply", ["550 5.1.8 Bad sender's system address", "550 5.1.7 Bad sender's mailbox address syntax"])
def test_an_enhanced_status_for_the_sender_at_rcpt_stops_the_run(tmp_path, reply):
    recorder = SmtpRecorder()
    recorder.rcpt_reply = lambda address, attempt: reply
    controller, port = start(recorder)
    try:
        result = local_run(tmp_path, port, rows=SMTP_ROWS[:1])
    finally:
        controller.stop()
    assert result.returncode == 2 and not (tmp_path / "rejected.csv").exists()


def test_a_wrong_password_costs_one_login_per_run(tmp_path, certificates):
    ca, cert, key = certificates
    import ssl as ssl_module

    context = ssl_module.create_default_context(ssl_module.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    logins = []

    def refuse(server, session, envelope, mechanism, auth_data):
        logins.append(mechanism)
        return AuthResult(success=False, handled=False)
    recorder = SmtpRecorder()
    controller, port = start(recorder, ssl_context=context, authenticator=refuse, auth_require_tls=False)
    rows = [[f"N{n}", "", f"c{n}@example.com", str(n), "Closed", RECENT] for n in range(12)]
    try:
        result = run_smtp(tmp_path, f"smtps://localhost:{port}", "--workers", "4", rows=rows,
                          env=smtp_env(certificates, SMTP_USERNAME=USER, SMTP_PASSWORD="wrong"))
    finally:
        controller.stop()
    assert result.returncode == 2 and "refused the SMTP login" in result.stderr
    assert len(logins) == 1 and recorder.messages == []


@pytest.mark.parametrize("limit", [1, 2])
def test_a_server_that_allows_fewer_connections_gets_all_80_emails(tmp_path, limit):
    """A 421 at the greeting while even one other connection is open means "fewer connections": the
    worker gives its customer back and ends, it does not retry the greeting."""
    LimitedSMTP.active = LimitedSMTP.most = LimitedSMTP.refused = 0
    LimitedSMTP.limit = limit
    recorder = SmtpRecorder()
    recorder.data_reply = lambda envelope: time.sleep(0.03)   # a run of a few seconds: retried connections would show
    controller, port = start(recorder, LimitedSMTP)
    rows = [[f"N{n}", "", f"c{n}@example.com", str(n), "Closed", RECENT] for n in range(80)]
    try:
        result = local_run(tmp_path, port, rows=rows)
    finally:
        controller.stop()
    assert result.returncode == 0, result.stderr
    assert len(set(recorder.recipients())) == 80 and LimitedSMTP.most <= limit
    assert "Customers notified       80" in result.stdout
    assert LimitedSMTP.refused <= 4 - limit   # each worker too many gave up its connection for good, once


def test_the_backoff_starts_near_one_second_doubles_and_stops_at_sixty():
    assert 1 <= backoff_seconds(1) <= 1.25 and 2 <= backoff_seconds(2) <= 2.5 and 4 <= backoff_seconds(3) <= 5
    assert backoff_seconds(7) == BACKOFF_MAX_SECONDS or 60 >= backoff_seconds(7) >= 60
    assert backoff_seconds(30) == BACKOFF_MAX_SECONDS


def test_a_temporary_refusal_waits_and_quits_before_reconnecting(tmp_path, quick_backoff):
    recorder = SmtpRecorder()
    recorder.rcpt_reply = lambda address, attempt: "421 4.7.0 Try again later" if attempt == 1 else None
    controller, port = start(recorder)
    try:
        result = local_run(tmp_path, port, "--workers", "1", rows=SMTP_ROWS[2:3])
    finally:
        controller.stop()
    assert result.returncode == 0, result.stderr
    assert recorder.quits == 2 and len(recorder.messages) == 1   # QUIT after the 421, then at the end


# ---------------------------------------------------------------- 8-bit content

def test_8bit_text_is_announced_with_8bitmime(tmp_path):
    recorder = SmtpRecorder()
    controller, port = start(recorder)
    try:
        result = local_run(tmp_path, port, rows=[["Zoë", "Ångström", "zoe@example.com", "1", "Closed", RECENT]])
    finally:
        controller.stop()
    assert result.returncode == 0, result.stderr
    assert "BODY=8BITMIME" in recorder.messages[0]["options"]


def test_8bit_text_goes_7bit_clean_to_a_server_without_8bitmime(tmp_path, raw_smtp):
    received = []

    def script(send, lines, number):
        send(b"220 raw\r\n")
        data = []
        in_data = False
        for line in lines:
            if in_data:
                if line == ".":
                    in_data = False
                    received.append("\n".join(data))
                    send(b"250 ok\r\n")
                else:
                    data.append(line)
                continue
            verb = line.split(" ", 1)[0].upper()
            if verb == "EHLO":
                send(b"250-raw\r\n250 SIZE 1000\r\n")
            elif verb == "DATA":
                send(b"354 go\r\n")
                in_data = True
            elif verb == "QUIT":
                send(b"221 bye\r\n")
                return
            else:
                send(b"250 ok\r\n")
    server = raw_smtp(script)
    result = local_run(tmp_path, server.port, rows=[["Zoë", "", "zoe@example.com", "1", "Closed", RECENT]])
    assert result.returncode == 0, result.stderr
    assert received and received[0].isascii() and "quoted-printable" in received[0]
    assert not any("8BITMIME" in command for command in server.commands)


# ---------------------------------------------------------------- bounded answers

@pytest.mark.parametrize("step", ["greeting", "ehlo", "data", "quit"])
def test_a_server_that_trickles_a_reply_cannot_hold_the_run(tmp_path, raw_smtp, step):
    server = raw_smtp(lambda send, lines, number: plain_session(send, lines, number, trickle=step))
    result = local_run(tmp_path, server.port, "--timeout", "1", "--retries", "0", "--workers", "1", rows=SMTP_ROWS[2:3])
    # run_cli's own timeout (120 s) would fail the test; the run ends on its own within a few timeouts
    if step == "quit":
        assert result.returncode == 0, result.stderr       # delivered; the goodbye that trickles is cut
    else:
        assert result.returncode == 1 and "within 1s" in result.stderr


def test_a_reply_that_trickles_for_ever_after_the_data_cannot_hold_the_run(tmp_path, raw_smtp):
    """The attempt is given up at the timeout and its connection dropped under the read that is still
    waiting: the run ends (in a process of its own, which would otherwise never end)."""
    def script(send, lines, number):   # a reply that never completes: 100,000 bytes, one every half second
        plain_session(send, lines, number, data_reply=b"2" * 100_000, trickle="data")
    server = raw_smtp(script)
    report = write_csv(tmp_path / "r.csv", SMTP_ROWS[2:3])
    write_state(tmp_path / "s.json", {"last_run_date": SINCE})
    result = run_cli("--report", str(report), "--state-file", str(tmp_path / "s.json"), "--smtp-url",
                     f"smtp://127.0.0.1:{server.port}", "--from", SMTP_FROM, "-testmode", "no", "--timeout", "1",
                     "--retries", "0", "--workers", "1", timeout=60)
    assert result.returncode == 1 and "gave no complete answer within 1s" in result.stderr


def test_check_cannot_be_held_by_a_trickling_greeting(tmp_path, raw_smtp):
    server = raw_smtp(lambda send, lines, number: plain_session(send, lines, number, trickle="greeting"))
    result = run_job("--check", "--report", str(write_csv(tmp_path / "r.csv", SMTP_ROWS)), "--smtp-url",
                     f"smtp://127.0.0.1:{server.port}", "--from", SMTP_FROM, "--timeout", "1", "--state-file",
                     str(tmp_path / "s.json"))
    assert result.returncode == 2 and "FAIL  destination" in result.stdout


def test_an_attempt_abandoned_at_the_timeout_never_sends_later(tmp_path, raw_smtp):
    """The first session's greeting comes after the timeout: that attempt is abandoned, and must not
    go on to send the email that the retry delivers."""
    def script(send, lines, number):
        if number == 1:
            time.sleep(2.5)
        plain_session(send, lines, number)
    server = raw_smtp(script)
    result = local_run(tmp_path, server.port, "--timeout", "1", "--retries", "2", "--workers", "1", rows=SMTP_ROWS[2:3])
    assert result.returncode == 0, result.stderr
    time.sleep(3)   # the abandoned attempt's server session has had time to run
    assert [command.upper() for command in server.commands].count("DATA") == 1


def test_a_drop_after_data_is_not_resent_outside_the_retries(tmp_path, raw_smtp):
    def script(send, lines, number):
        send(b"220 raw\r\n")
        for line in lines:
            verb = line.split(" ", 1)[0].upper()
            if verb == "EHLO":
                send(b"250 raw\r\n")
            elif verb == "DATA":
                send(b"354 go\r\n")
            elif line == ".":
                return            # the message is in, the reply never comes: the connection drops
            elif verb in ("MAIL", "RCPT", "RSET", "NOOP"):
                send(b"250 ok\r\n")
    server = raw_smtp(script)
    result = local_run(tmp_path, server.port, "--retries", "0", "--workers", "1", rows=SMTP_ROWS[2:3])
    assert result.returncode == 1
    assert [command.upper() for command in server.commands].count("DATA") == 1


def test_an_endless_multiline_reply_ends_the_connection_not_the_memory(tmp_path, raw_smtp):
    def script(send, lines, number):
        send(b"220 raw\r\n")
        for line in lines:
            if line.upper().startswith("EHLO"):
                try:
                    for _ in range(200_000):
                        send(b"250-" + b"x" * 60 + b"\r\n")
                except OSError:
                    return
    server = raw_smtp(script)
    result = local_run(tmp_path, server.port, "--retries", "0", "--workers", "1", rows=SMTP_ROWS[2:3])
    assert result.returncode == 1 and "a reply longer than" in result.stderr


def test_a_reply_line_over_8192_bytes_after_data_still_means_delivered(tmp_path, raw_smtp):
    long_reply = b"250 2.0.0 Ok: queued " + b"x" * 9000 + b"\r\n"
    server = raw_smtp(lambda send, lines, number: plain_session(send, lines, number, data_reply=long_reply))
    state = tmp_path / "s.json"
    result = local_run(tmp_path, server.port, "--retries", "0", "--workers", "1", rows=SMTP_ROWS[2:3])
    assert result.returncode == 0, result.stderr
    assert read_state(state)["rejected"] == {} and len(read_state(state)["notified"]) == 1


def test_non_ascii_addresses_first_to_a_server_without_smtputf8_do_not_look_like_a_misconfiguration(tmp_path):
    recorder = SmtpRecorder()
    controller, port = start(recorder, enable_SMTPUTF8=False)
    rows = [[f"N{n}", "", f"jürgen{n}@example.com", str(n), "Closed", RECENT] for n in range(3)]
    rows += [["Ann", "", "ann@example.com", "9", "Closed", RECENT]]
    try:
        result = local_run(tmp_path, port, "--workers", "1", rows=rows)
    finally:
        controller.stop()
    assert result.returncode == 1, result.stderr
    assert "refused the first 3" not in result.stderr
    assert recorder.recipients() == ["ann@example.com"] and "Customers rejected       3" in result.stdout


# ---------------------------------------------------------------- reply-to and cc

def test_a_non_ascii_reply_to_is_written_as_an_address_with_smtputf8(tmp_path):
    recorder = SmtpRecorder()
    controller, port = start(recorder, enable_SMTPUTF8=True)
    try:
        result = local_run(tmp_path, port, "--reply-to", "Hjälp <hjälp@exämple.com>", rows=SMTP_ROWS[2:3])
    finally:
        controller.stop()
    assert result.returncode == 0, result.stderr
    head = recorder.messages[0]["raw"].split(b"\r\n\r\n", 1)[0]
    reply_to = next(line for line in head.split(b"\r\n") if line.startswith(b"Reply-To: "))
    assert reply_to.endswith(" <hjälp@exämple.com>".encode()) and b"=?" not in reply_to.rpartition(b"<")[2]
    assert "SMTPUTF8" in recorder.messages[0]["options"]


def test_a_cc_deferred_with_4xx_is_retried_not_dropped(tmp_path, quick_backoff):
    recorder = SmtpRecorder()
    recorder.rcpt_reply = lambda address, attempt: "451 4.3.0 try later" if address == "audit@example.com" and \
        attempt == 1 else None
    controller, port = start(recorder)
    try:
        result = local_run(tmp_path, port, "--cc", "audit@example.com", "--workers", "1", rows=SMTP_ROWS[2:3])
    finally:
        controller.stop()
    assert result.returncode == 0, result.stderr
    assert recorder.messages[0]["to"] == ["john@example.com", "audit@example.com"]


# ---------------------------------------------------------------- diagnostics

def test_an_expired_certificate_says_so(tmp_path):
    ca, cert, key = make_certificates(tmp_path, expired=True)
    import ssl as ssl_module

    context = ssl_module.create_default_context(ssl_module.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    controller, port = start(SmtpRecorder(), ssl_context=context)
    try:
        result = run_smtp(tmp_path, f"smtps://localhost:{port}", env=clean_env(SSL_CERT_FILE=str(ca)))
    finally:
        controller.stop()
    assert result.returncode == 2 and "has expired" in result.stderr and "SSL_CERT_FILE" not in result.stderr


def test_smtps_to_a_starttls_port_says_to_use_smtp(tmp_path, raw_smtp):
    server = raw_smtp(plain_session)
    result = run_smtp(tmp_path, f"smtps://127.0.0.1:{server.port}", env=clean_env())
    assert result.returncode == 2 and "use smtp://" in result.stderr


def test_a_530_at_mail_from_says_the_server_wants_a_login(tmp_path):
    recorder = SmtpRecorder()
    recorder.mail_reply = lambda address: "530 5.7.0 Authentication required"
    controller, port = start(recorder)
    try:
        result = local_run(tmp_path, port, rows=SMTP_ROWS[:1])
    finally:
        controller.stop()
    assert result.returncode == 2 and "wants a login" in result.stderr and "SMTP_USERNAME" in result.stderr


def test_check_against_a_login_only_server_without_a_login_fails_naming_the_settings(tmp_path):
    recorder = SmtpRecorder()
    recorder.mail_reply = lambda address: "530 5.7.0 Authentication required"
    controller, port = start(recorder)
    try:
        result = run_job("--check", "--report", str(write_csv(tmp_path / "r.csv", SMTP_ROWS)), "--smtp-url",
                         f"smtp://127.0.0.1:{port}", "--from", SMTP_FROM, "--state-file", str(tmp_path / "s.json"))
    finally:
        controller.stop()
    assert result.returncode == 2 and "SMTP_USERNAME and SMTP_PASSWORD" in result.stdout
    assert recorder.messages == []


def test_the_message_id_and_the_servers_queue_id_are_logged(tmp_path, raw_smtp):
    server = raw_smtp(plain_session)
    log_file = tmp_path / "run.log"
    result = local_run(tmp_path, server.port, "--log-file", str(log_file), rows=SMTP_ROWS[2:3])
    assert result.returncode == 0, result.stderr
    text = log_file.read_text(encoding="utf-8")
    assert "Message-ID <" in text and "queued as 4XyZ" in text


def test_help_describes_workers_timeout_and_retries_for_every_route():
    text = " ".join(run_job("--help").stdout.split())
    for option in ("--workers N", "--timeout SECONDS", "--retries N"):
        described = text[text.rindex(option) + len(option):].split(" --", 1)[0]
        assert "every destination" in described and "webhook" not in described, described
