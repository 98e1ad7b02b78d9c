"""Shared test helpers: a real HTTP server on 127.0.0.1 and the real CLI in a subprocess."""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SEED_HEADER = ["Firstname", "Lastname", "Email", "Ticket", "Status", "Date"]
from cli_options import GENERAL_KEYS  # noqa: E402 (after the path is set)
from destinations import environment_keys  # noqa: E402

# Nothing from a developer's shell may reach a test: every key the job reads (its general keys and each
# destination's own, from the one list), the Sheets endpoint and the proxies are dropped.
SECRET_ENV = (*GENERAL_KEYS, *environment_keys(), "SHEETS_API_ENDPOINT",
              "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy")


@pytest.fixture(autouse=True)
def no_subprocess_in_a_mutation_run(monkeypatch):
    """mutmut changes the code inside the test's own process only: a test that runs the job in a
    subprocess would test the unchanged code there and only cost time, so a mutation run skips it."""
    if "MUTANT_UNDER_TEST" in os.environ:
        def skip(*args, **kwargs):
            pytest.skip("runs a subprocess, which the mutant does not reach")
        monkeypatch.setattr(subprocess, "Popen", skip)


@dataclass
class Received:
    method: str
    path: str
    headers: dict
    body: bytes
    arrived: float = field(default_factory=time.monotonic)

    @property
    def json(self) -> dict:
        return json.loads(self.body)


@dataclass
class Reply:
    status: int = 200
    headers: dict = field(default_factory=dict)
    delay: float = 0.0
    body: bytes = b'{"ok": true}'


class WebhookServer:
    """A scripted HTTP server (a webhook, or the Sheets API and its token endpoint):
    `respond(received, index)` returns the Reply for each request."""

    def __init__(self, tls: tuple[Path, Path] | None = None) -> None:
        """`tls`: (cert.pem, key.pem) to serve HTTPS."""
        self.requests: list[Received] = []
        self.respond: Callable[[Received, int], Reply] = lambda received, index: Reply()
        self._lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                self.answer()

            def do_GET(self) -> None:  # noqa: N802
                self.answer()

            def answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                received = Received(self.command, self.path, {k.lower(): v for k, v in self.headers.items()},
                                    self.rfile.read(length))
                with server._lock:
                    index = len(server.requests)
                    server.requests.append(received)
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                reply = server.respond(received, index)
                if reply.delay:
                    time.sleep(reply.delay)
                with server._lock:
                    server.in_flight -= 1
                try:
                    self.send_response(reply.status)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(reply.body)))
                    self.end_headers()
                    self.wfile.write(reply.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.scheme = "http"
        if tls:
            import ssl

            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(*tls)
            self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
            self.scheme = "https"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True)  # a prompt shutdown
        self.thread.start()

    @property
    def root(self) -> str:
        host = "localhost" if self.scheme == "https" else "127.0.0.1"  # the test certificate names localhost
        return f"{self.scheme}://{host}:{self.httpd.server_address[1]}/"

    @property
    def url(self) -> str:
        return self.root + "hooks/notify"

    def payloads(self) -> list[dict]:
        return [received.json for received in self.requests]

    def emails(self) -> list[str]:
        return [payload["email_address"] for payload in self.payloads()]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def webhook():
    server = WebhookServer()
    yield server
    server.close()


class RawServer:
    """A socket server on 127.0.0.1 that answers each connection with `answer(connection, server)`, for
    trickles and floods; after reading an HTTP request, or at once (read_request=False) for a protocol
    whose server speaks first, such as SMTP."""

    def __init__(self, answer, read_request: bool = True) -> None:
        self.answer, self.read_request = answer, read_request
        self.requests = 0
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.stopped = threading.Event()
        threading.Thread(target=self.serve, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}/hook"

    def serve(self) -> None:
        while not self.stopped.is_set():
            try:
                connection, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.handle, args=(connection,), daemon=True).start()

    def handle(self, connection) -> None:
        try:
            connection.settimeout(5)
            if self.read_request:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += connection.recv(65536)
            self.requests += 1
            self.answer(connection, self)
        except OSError:
            pass
        finally:
            connection.close()

    def close(self) -> None:
        self.stopped.set()
        self.sock.close()


def clean_env(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in SECRET_ENV}
    env["PYTHONIOENCODING"] = "utf-8"
    env.update(extra)
    return env


def run_cli(*args: str, env: dict | None = None, cwd: Path | None = None, timeout: float = 120,
            script: str = "process_ticket.py") -> subprocess.CompletedProcess:
    """The real CLI in a subprocess, stdin closed, as Task Scheduler or cron would start it."""
    return subprocess.run([sys.executable, str(ROOT / script), *args], capture_output=True, text=True,
                          encoding="utf-8", env=env or clean_env(), cwd=cwd or ROOT, timeout=timeout,
                          stdin=subprocess.DEVNULL)


# The CLI's story run in a process of its own, which then reports its own peak memory (Linux's VmHWM: the
# peak of this process's memory since it started, not of the test process it was started from).
_PEAK_MEMORY_RUN = """import sys
sys.path.insert(0, sys.argv.pop(1))
import process_ticket
code = process_ticket.main(sys.argv[1:])
with open("/proc/self/status") as status:
    peak = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
sys.stderr.write(f"\\npeak-memory-kb {peak}\\n")
sys.exit(code)
"""


def run_cli_peak_memory(*args: str, env: dict | None = None) -> tuple[Finished, int]:
    """The real CLI in a subprocess, and that process's own peak memory in KB (Linux only)."""
    done = subprocess.run([sys.executable, "-c", _PEAK_MEMORY_RUN, str(ROOT), *args], capture_output=True, text=True,
                          encoding="utf-8", env=env or clean_env(), cwd=ROOT, stdin=subprocess.DEVNULL, timeout=120)
    stderr, _, peak = done.stderr.rpartition("\npeak-memory-kb ")
    return Finished(done.returncode, done.stdout, stderr), int(peak)


@dataclass
class Finished:
    """What a run of the command line left: its exit code and what it printed (as subprocess gives)."""
    returncode: int
    stdout: str
    stderr: str


def run_job(*args: str, env: dict | None = None, cwd: Path | None = None) -> Finished:
    """The job's command line run in this process (process_ticket.main) with `env` as its whole
    environment and `cwd` as its folder: the same arguments, output and exit code as run_cli, without
    starting Python again (and within reach of a mutation run). For the tests where the process
    itself is not the point; signals, locks, wrappers and a first run end to end use run_cli."""
    import contextlib
    import io
    import logging
    import signal

    import process_ticket

    environment = env if env is not None else clean_env()
    logger = logging.getLogger("ticket_notifier")
    kept_logger = (list(logger.handlers), list(logger.filters), logger.level, logger.propagate)
    kept_environment, kept_folder = dict(os.environ), os.getcwd()
    kept_sigterm = signal.getsignal(signal.SIGTERM)
    out, err = io.StringIO(), io.StringIO()
    try:
        os.environ.clear()
        os.environ.update(environment)
        os.chdir(cwd or ROOT)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = process_ticket.main(list(args))
            except SystemExit as stop:   # argparse's --help and --version
                code = stop.code if isinstance(stop.code, int) else 0 if stop.code is None else 2
    finally:
        os.chdir(kept_folder)
        os.environ.clear()
        os.environ.update(kept_environment)
        signal.signal(signal.SIGTERM, kept_sigterm)
        logger.handlers[:], logger.filters[:] = kept_logger[0], kept_logger[1]
        logger.setLevel(kept_logger[2])
        logger.propagate = kept_logger[3]
    return Finished(code, out.getvalue(), err.getvalue())


def webhook_run(report: Path, state: Path, url: str, *extra: str, env: dict | None = None,
                runner: Callable = run_job) -> Finished:
    """A live run of `report` to the webhook at `url`, recorded in `state` (in-process unless `runner`
    is run_cli)."""
    return runner("--report", str(report), "--state-file", str(state), "-webhook_url", url, "-testmode", "no", *extra,
                  env=env)


def closed_ticket(email: str, ticket_id: str, closed: date = date(2026, 11, 25), *, name: str = "Ann Lee",
                  first_name: str | None = None, subject: str | None = None):
    """One closed ticket as the selection makes it: closed on a day, or at a datetime (has_time)."""
    from ticket_core import ClosedTicket

    has_time = isinstance(closed, datetime)
    closed_at = closed if has_time else datetime(closed.year, closed.month, closed.day)
    first = first_name if first_name is not None else (name.split()[0] if name else "")
    return ClosedTicket(email, ticket_id, "Closed", closed_at, has_time, first, name, subject)


def customer(email: str, *tickets, name: str = "Ann Lee", first_name: str | None = None,
             closed: date = date(2026, 11, 25), subjects: list[str] | None = None):
    """A customer (ticket_core.Customer) with `tickets`: ClosedTicket values, or ids closed on `closed`
    (one of `subjects` each, when given)."""
    from ticket_core import ClosedTicket, Customer

    made = tuple(ticket if isinstance(ticket, ClosedTicket) else
                 closed_ticket(email, ticket, closed, name=name, first_name=first_name,
                               subject=None if subjects is None else subjects[n]) for n, ticket in enumerate(tickets))
    first = first_name if first_name is not None else (name.split()[0] if name else "")
    return Customer(email, name, first, made)


def write_csv(path: Path, rows: list[list[str]], header: list[str] | None = SEED_HEADER, **csv_options) -> Path:
    with path.open("w", encoding=csv_options.pop("encoding", "utf-8"), newline="") as handle:
        writer = csv.writer(handle, **csv_options)
        if header:
            writer.writerow(header)
        writer.writerows(rows)
    return path


def write_state(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data) if not isinstance(data, str) else data, encoding="utf-8")
    return path


def read_state(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def make_certificates(folder: Path, expired: bool = False) -> tuple[Path, Path, Path]:
    """A test CA and a server certificate for localhost and 127.0.0.1 signed by it: (ca.pem, cert.pem, key.pem);
    with `expired`, the server certificate ended yesterday."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
          .not_valid_after(now + datetime.timedelta(days=30))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                                       encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    server = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
              .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
              .not_valid_before(now - datetime.timedelta(days=10))
              .not_valid_after(now + datetime.timedelta(days=-1 if expired else 30))
              .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                          x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
              .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
              .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
              .sign(ca_key, hashes.SHA256()))
    paths = folder / "ca.pem", folder / "cert.pem", folder / "key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


@pytest.fixture
def certificates(tmp_path):
    folder = tmp_path / "tls"
    folder.mkdir()
    return make_certificates(folder)


@pytest.fixture
def smtp_server(certificates):
    """start(mode, **SMTP options) -> (recorder, url without scheme user); mode: starttls, smtps or plain."""
    import ssl

    from aiosmtpd.controller import Controller
    from mail_standins import SmtpRecorder, authenticator

    ca, cert, key = certificates
    controllers = []

    def start(mode="starttls", host="127.0.0.1", **options):
        recorder = SmtpRecorder()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        port = free_port()
        # aiosmtpd does not see implicit TLS, so it would not offer AUTH there when TLS is required
        settings = {"authenticator": authenticator, "auth_require_tls": mode == "starttls", **options}
        if mode == "starttls":
            settings.update(tls_context=context, require_starttls=True)
        elif mode == "smtps":
            settings.update(ssl_context=context)
        controller = Controller(recorder, hostname=host, port=port, **settings)
        controller.start()
        controllers.append(controller)
        return recorder, port

    yield start
    for controller in controllers:
        controller.stop()


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ScriptedDestination:
    """A destination whose answers a test scripts, for deliver_all (a Route) and for the story in-process
    (run_story, through destination()). `answers` is either a function, answer(message, attempt
    number) -> delivery.Answer, or a script: script[message] lists the answers (the last one repeats).
    In the story a message is the customer's address. Every channel is numbered: `channel_attempts`
    logs (channel, message), `attempts` the messages alone; closes are counted; `gate`, when given,
    holds every answer."""

    label = "scripted:1"

    def __init__(self, answers: Callable | dict, gate: threading.Barrier | None = None) -> None:
        self.answer = self._from_script(dict(answers)) if isinstance(answers, dict) else answers
        self.channel_attempts: list[tuple[int, object]] = []
        self.closed: list[int] = []
        self.opened = 0
        self.gate = gate
        self.lock = threading.Lock()

    @staticmethod
    def _from_script(script: dict) -> Callable:
        def answer(message, attempt_number):
            answers = script[message]
            return answers[min(attempt_number, len(answers)) - 1]
        return answer

    @property
    def attempts(self) -> list:
        """The messages attempted, in order, whatever the channel."""
        return [message for _, message in self.channel_attempts]

    def open_channel(self) -> _Channel:
        with self.lock:
            self.opened += 1
            return _Channel(self, self.opened)

    def shutdown(self) -> None:
        pass

    def destination(self):
        """This script as the story's destination (destinations.Destination)."""
        from destinations import Destination

        return Destination(name="scripted", summary="a test's script", env_keys=(), secret_keys=(),
                           add_options=lambda group: None, named=lambda options, environment: False,
                           configure=lambda options, environment: None, secrets=lambda settings: [],
                           open=lambda run: self, message_for=lambda run: (lambda customer: customer.email),
                           check_live=lambda run: "scripted")


class _Channel:
    def __init__(self, route: ScriptedDestination, number: int) -> None:
        self.route, self.number = route, number

    def attempt(self, message):
        with self.route.lock:
            self.route.channel_attempts.append((self.number, message))
            attempt_number = self.route.attempts.count(message)
        answer = self.route.answer(message, attempt_number)
        if self.route.gate is not None:
            self.route.gate.wait(10)
        return answer

    def reset(self) -> None:
        pass

    def close(self) -> None:
        with self.route.lock:
            self.route.closed.append(self.number)


def run_story(script: ScriptedDestination, *args: str):
    """The job's story in-process (process_ticket.run) with the settings of `args` (as on the command
    line, an empty environment) and the scripted destination; the RunReport."""
    import process_ticket
    from cli_options import parse_args

    settings = parse_args(list(args), ROOT, "test", environment={}, destination=script.destination())
    return process_ticket.run(settings)


@pytest.fixture
def quick_backoff(monkeypatch):
    """Retries a hundredth of a second apart instead of one second and more (the same attempts, sooner),
    for in-process runs whose point is what a retry leads to, not how long it waits."""
    import delivery

    monkeypatch.setattr(delivery, "backoff_seconds", lambda retry_number, factor=1.0: 0.01)


def refuse_temporary_files_in(folder: Path, monkeypatch) -> None:
    """A folder this account cannot create files in (staged for root too): tempfile.mkstemp refuses it,
    and works anywhere else."""
    import tempfile

    import state_file

    make_temp = tempfile.mkstemp

    def refusing(*args, dir=None, **kwargs):
        if dir is not None and Path(dir) == folder:
            raise PermissionError(13, "Permission denied")
        return make_temp(*args, dir=dir, **kwargs)
    monkeypatch.setattr(state_file.tempfile, "mkstemp", refusing)


@pytest.fixture
def gmail():
    """The Gmail API and Google's token endpoint, on 127.0.0.1 (mail_standins.GmailApi)."""
    from mail_standins import GmailApi

    api = GmailApi()
    yield api
    api.close()


@pytest.fixture
def microsoft(certificates):
    """Microsoft's identity platform and Graph over HTTPS on 127.0.0.1 (mail_standins.Microsoft)."""
    from mail_standins import Microsoft

    fake = Microsoft(certificates)
    yield fake
    fake.close()


@pytest.fixture
def app(tmp_path):
    """A copy of the program in its own folder, as it would be installed (for the wrappers)."""
    import shutil

    folder = tmp_path / "ticket-notifier"
    folder.mkdir()
    for name in [*(p.name for p in ROOT.glob("*.py")), "run_util.sh"]:
        shutil.copy(ROOT / name, folder / name)
    shutil.copytree(ROOT / "examples", folder / "examples")
    return folder
