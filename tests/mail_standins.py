"""Stand-ins for the mail providers, served on 127.0.0.1: an SMTP server's side (for aiosmtpd), the
Gmail API with Google's token endpoint (for the real google-api-python-client), Microsoft's identity
platform with Graph (for the real msal); a Google service account's key; and the runs against them."""

import base64
import email
import email.policy
import json
import threading
from datetime import date, datetime, timedelta, timezone
from urllib.parse import parse_qs, unquote, urlsplit

from aiosmtpd.smtp import AuthResult
from conftest import Reply, WebhookServer, clean_env, run_job, write_csv, write_state

TODAY = date.today()
RECENT = (TODAY - timedelta(days=3)).strftime("%d/%m/%Y")
SINCE = (TODAY - timedelta(days=10)).strftime("%d/%m/%Y")
ROWS = [["Jane", "Doe", "jane@example.com", "1001", "Closed", RECENT],
        ["John", "Roe", "john@example.com", "2001", "Closed", RECENT],
        ["Ann", "Lee", "ann@example.com", "3001", "Closed", RECENT]]
FROM = "Support <support@example.com>"
TENANT, CLIENT, SECRET = "contoso.onmicrosoft.com", "11111111-2222-3333-4444-555555555555", "client-s3cret-value"


# ---------------------------------------------------------------- SMTP

USER, PASSWORD = "mailer@example.com", "app-pass-7QX9"
SMTP_FROM = "Support Team <support@example.com>"


class SmtpRecorder:
    """The server's side: what arrived, and scripted replies to MAIL, RCPT and DATA."""

    def __init__(self) -> None:
        self.messages: list[dict] = []
        self.sessions: set[int] = set()
        self.quits = 0
        self.rcpt_attempts: list[str] = []
        self.mail_reply = lambda address: None
        self.rcpt_reply = lambda address, attempt: None
        self.data_reply = lambda envelope: None
        self.lock = threading.Lock()

    async def handle_MAIL(self, server, session, envelope, address, mail_options):  # noqa: N802
        self.sessions.add(id(session))
        reply = self.mail_reply(address)
        if reply:
            return reply
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        with self.lock:
            self.rcpt_attempts.append(address)
            attempt = self.rcpt_attempts.count(address)
        reply = self.rcpt_reply(address, attempt)
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        reply = self.data_reply(envelope)
        if reply:
            return reply
        self.messages.append({"from": envelope.mail_from, "to": list(envelope.rcpt_tos), "raw": envelope.original_content,
                              "message": email.message_from_bytes(envelope.original_content, policy=email.policy.default),
                              "options": list(envelope.mail_options)})
        return "250 2.0.0 Message accepted"

    async def handle_QUIT(self, server, session, envelope):  # noqa: N802
        self.quits += 1
        return "221 Bye"

    def recipients(self) -> list[str]:
        return [message["to"][0] for message in self.messages]


def authenticator(server, session, envelope, mechanism, auth_data):
    return AuthResult(success=auth_data.login == USER.encode() and auth_data.password == PASSWORD.encode(),
                      handled=False)


SMTP_ROWS = [["Jane", "Doe", "jane@example.com", "1001", "Closed", RECENT],
        ["Jane", "Doe", "jane@example.com", "1002", "Closed", RECENT],
        ["John", "Roe", "john@example.com", "2001", "Closed", RECENT],
        ["Ann", "Lee", "ann@example.com", "3001", "Closed", RECENT]]


def smtp_env(certificates, **extra):
    return clean_env(**{"SSL_CERT_FILE": str(certificates[0]), "SMTP_PASSWORD": PASSWORD, **extra})


def run_smtp(tmp_path, url, *extra, env, rows=SMTP_ROWS, state=None):
    report = write_csv(tmp_path / "r.csv", rows)
    state = state or tmp_path / "s.json"
    if not state.exists():
        write_state(state, {"last_run_date": SINCE})
    return run_job("--report", str(report), "--state-file", str(state), "--smtp-url", url, "--from", SMTP_FROM,
                   "-testmode", "no", "--retries", "1", *extra, env=env)


# ---------------------------------------------------------------- Google

def write_service_account(path, token_from):
    """A Google service account's key file (a fresh RSA key) whose tokens come from `token_from`: a
    token endpoint's URL, or the Gmail stand-in (GmailApi) whose token endpoint it is."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    path.write_text(json.dumps({
        "type": "service_account", "project_id": "demo", "private_key_id": "k1", "private_key": pem,
        "client_email": "notifier@demo.iam.gserviceaccount.com", "client_id": "1",
        "token_uri": token_from if isinstance(token_from, str) else token_from.server.root + "token"}))
    return path


def json_reply(status: int, body: dict, headers: dict | None = None) -> Reply:
    return Reply(status, {"Content-Type": "application/json", **(headers or {})}, body=json.dumps(body).encode())


def run(tmp_path, *extra, env, rows=ROWS, state=True, runner=run_job):
    report = write_csv(tmp_path / "r.csv", rows)
    state_path = tmp_path / "s.json"
    if state and not state_path.exists():
        write_state(state_path, {"last_run_date": SINCE})
    return runner("--report", str(report), "--state-file", str(state_path), "--from", FROM, "--retries", "1",
                   "--credentials", str(tmp_path / "credential.json"), "--token", str(tmp_path / "token.json"),
                   *extra, env=env)


# ---------------------------------------------------------------- Gmail

def write_user_token(path, scopes, expiry=None):
    expiry = expiry or datetime.now(timezone.utc) + timedelta(hours=1)
    path.write_text(json.dumps({"token": "ya29.valid-token", "refresh_token": "refresh-1",
                                "client_id": "id.apps.googleusercontent.com", "client_secret": "not-a-secret",
                                "scopes": scopes, "expiry": expiry.strftime("%Y-%m-%dT%H:%M:%SZ")}))
    return path


class GmailApi:
    """users.messages.send, and Google's token endpoint for service accounts; `answer(raw message, index)`."""

    def __init__(self):
        self.server = WebhookServer()
        self.sent: list[email.message.EmailMessage] = []
        self.tokens: list[dict] = []
        self.refuse_delegation = False
        self.inbox: list[tuple[str, int, bytes]] = []   # (id, internalDate in ms, raw message): the sending mailbox
        self.answer = lambda message, index: json_reply(200, {"id": f"m{index}", "labelIds": ["SENT"]})
        self.server.respond = self.respond

    def respond(self, received, index):
        path = urlsplit(received.path).path
        if path == "/token":
            if self.refuse_delegation:
                return json_reply(401, {"error": "unauthorized_client",
                                        "error_description": "Client is unauthorized to retrieve access tokens"})
            form = parse_qs(received.body.decode())
            if form["grant_type"][0] == "refresh_token":
                return json_reply(200, {"access_token": "ya29.refreshed", "expires_in": 3600, "token_type": "Bearer"})
            assertion = form["assertion"][0].split(".")[1]
            self.tokens.append(json.loads(base64.urlsafe_b64decode(assertion + "=" * (-len(assertion) % 4))))
            return json_reply(200, {"access_token": "ya29.service", "expires_in": 3600, "token_type": "Bearer"})
        if received.method == "GET":
            return self.mailbox(path, parse_qs(urlsplit(received.path).query))
        assert path == "/gmail/v1/users/me/messages/send", path
        raw = json.loads(received.body)["raw"]
        message = email.message_from_bytes(base64.urlsafe_b64decode(raw), policy=email.policy.default)
        reply = self.answer(message, len(self.sent))
        if reply.status == 200:
            self.sent.append(message)
        return reply

    def mailbox(self, path: str, query: dict):
        """users.messages.list (q=after:SECONDS, pages of two), users.messages.get (format=raw), getProfile."""
        if path == "/gmail/v1/users/me/profile":
            return json_reply(200, {"emailAddress": "support@example.com"})
        if path == "/gmail/v1/users/me/messages":
            after = int(query.get("q", ["after:0"])[0].split(":")[1])
            ids = [message_id for message_id, received, _ in self.inbox if received // 1000 > after - 1]
            start = int(query.get("pageToken", ["0"])[0])
            page = {"messages": [{"id": message_id} for message_id in ids[start:start + 2]]}
            if start + 2 < len(ids):
                page["nextPageToken"] = str(start + 2)
            return json_reply(200, page)
        message_id = path.rsplit("/", 1)[1]
        found = next(item for item in self.inbox if item[0] == message_id)
        assert query.get("format") == ["raw"]
        return json_reply(200, {"id": message_id, "internalDate": str(found[1]),
                                "raw": base64.urlsafe_b64encode(found[2]).decode()})

    def env(self, **extra):
        return clean_env(GMAIL_API_ENDPOINT=self.server.root, **extra)

    def close(self):
        self.server.close()




def access_token(roles):
    def part(data):
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")
    return f"{part({'alg': 'none'})}.{part({'roles': roles, 'aud': 'https://graph.microsoft.com'})}.sig"


class Microsoft:
    """Entra ID's token endpoint (with its OpenID configuration) and Graph's sendMail, over HTTPS."""

    def __init__(self, certificates):
        ca, cert, key = certificates
        self.ca = ca
        self.server = WebhookServer(tls=(cert, key))
        self.sent: list[email.message.EmailMessage] = []
        self.token_requests: list[dict] = []
        self.roles = ["Mail.Send"]
        self.rbac = False   # Exchange Online's RBAC for Applications lets the app send as the mailbox
        self.inbox: list[tuple[str, str, bytes]] = []   # (id, receivedDateTime, MIME): the sending mailbox's inbox
        self.can_read = True   # Mail.Read granted for the mailbox
        self.pages = 0
        self.token_error: dict | None = None
        self.answer = lambda message, index: Reply(202, body=b"")
        self.server.respond = self.respond

    @property
    def host(self) -> str:
        return f"localhost:{self.server.httpd.server_address[1]}"

    def respond(self, received, index):
        path = unquote(urlsplit(received.path).path)
        base = f"https://{self.host}/{TENANT}"
        if path.endswith("/.well-known/openid-configuration"):
            return json_reply(200, {"token_endpoint": f"{base}/oauth2/v2.0/token", "issuer": f"{base}/v2.0",
                                    "authorization_endpoint": f"{base}/oauth2/v2.0/authorize"})
        if path.endswith("/oauth2/v2.0/token"):
            self.token_requests.append({key: values[0] for key, values in parse_qs(received.body.decode()).items()})
            if self.token_error:
                return json_reply(400, self.token_error)
            return json_reply(200, {"access_token": access_token(self.roles), "expires_in": 3600,
                                    "token_type": "Bearer"})
        if received.method == "GET":
            return self.mailbox(path, parse_qs(urlsplit(received.path).query))
        assert path == "/v1.0/users/support@example.com/sendMail", path
        assert received.headers["content-type"] == "text/plain"
        if not received.body:  # a request that sends nothing: Graph says whether the app may send as the mailbox
            if "Mail.Send" in self.roles or self.rbac:
                return json_reply(400, {"error": {"code": "ErrorMimeContentInvalidBase64String", "message": "Invalid"}})
            return json_reply(403, {"error": {"code": "ErrorAccessDenied", "message": "Access is denied."}})
        message = email.message_from_bytes(base64.b64decode(received.body), policy=email.policy.default)
        reply = self.answer(message, len(self.sent))
        if reply.status == 202:
            self.sent.append(message)
        return reply

    def mailbox(self, path: str, query: dict):
        """The inbox as Graph pages it (ten a page, @odata.nextLink), each message's MIME ($value)."""
        if not self.can_read:
            return json_reply(403, {"error": {"code": "ErrorAccessDenied", "message": "Access is denied."}})
        base = "/v1.0/users/support@example.com"
        if path == f"{base}/mailFolders/inbox":
            return json_reply(200, {"id": "inbox"})
        if path == f"{base}/mailFolders/inbox/messages":
            after = query.get("$filter", ["receivedDateTime gt 1970-01-01T00:00:00Z"])[0].rsplit(" ", 1)[1]
            listed = [item for item in self.inbox if item[1] > after]
            start = int(query.get("$skip", ["0"])[0])
            page = {"value": [{"id": message_id, "receivedDateTime": received}
                              for message_id, received, _ in listed[start:start + 10]]}
            if start + 10 < len(listed):
                page["@odata.nextLink"] = (f"https://{self.host}{base}/mailFolders/inbox/messages?$filter="
                                           f"receivedDateTime%20gt%20{after}&$skip={start + 10}")
            self.pages += 1
            return json_reply(200, page)
        message_id = path.split("/messages/", 1)[1].removesuffix("/$value")
        return Reply(200, {"Content-Type": "text/plain"}, body=next(raw for item_id, _, raw in self.inbox
                                                                   if item_id == message_id))

    def env(self, **extra):
        settings = {"M365_TENANT_ID": TENANT, "M365_CLIENT_ID": CLIENT, "M365_CLIENT_SECRET": SECRET,
                    "M365_AUTHORITY_HOST": self.host, "M365_GRAPH_ENDPOINT": f"https://{self.host}",
                    "REQUESTS_CA_BUNDLE": str(self.ca), "SEND_WITH": "microsoft365", **extra}
        return clean_env(**{key: value for key, value in settings.items() if value is not None})

    def close(self):
        self.server.close()


def certificate_file(path, key, encryption=None):
    """M365_CERTIFICATE's file: `key` (unencrypted unless `encryption` says) and a certificate for it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID

    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "notifier")])
    now = datetime.now(timezone.utc)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(days=1))
                   .not_valid_after(now + timedelta(days=30)).sign(key, hashes.SHA256()))
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       encryption or serialization.NoEncryption())
                     + certificate.public_bytes(serialization.Encoding.PEM))
    return path
