"""Sending as the team's own mailbox (contract section 18): the Gmail API through the real
google-api-python-client, and Microsoft Graph with a token from the real msal over HTTPS, both served
here on 127.0.0.1."""

import base64
import email
import email.policy
import json
from datetime import date, datetime, timedelta, timezone
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from conftest import Reply, WebhookServer, clean_env, read_state, run_cli, write_csv, write_state
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

import google_api

TODAY = date.today()
RECENT = (TODAY - timedelta(days=3)).strftime("%d/%m/%Y")
SINCE = (TODAY - timedelta(days=10)).strftime("%d/%m/%Y")
ROWS = [["Jane", "Doe", "jane@example.com", "1001", "Closed", RECENT],
        ["John", "Roe", "john@example.com", "2001", "Closed", RECENT],
        ["Ann", "Lee", "ann@example.com", "3001", "Closed", RECENT]]
FROM = "Support <support@example.com>"
TENANT, CLIENT, SECRET = "contoso.onmicrosoft.com", "11111111-2222-3333-4444-555555555555", "client-s3cret-value"


def json_reply(status: int, body: dict, headers: dict | None = None) -> Reply:
    return Reply(status, {"Content-Type": "application/json", **(headers or {})}, body=json.dumps(body).encode())


def run(tmp_path, *extra, env, rows=ROWS, state=True):
    report = write_csv(tmp_path / "r.csv", rows)
    state_path = tmp_path / "s.json"
    if state and not state_path.exists():
        write_state(state_path, {"last_run_date": SINCE})
    return run_cli("--report", str(report), "--state-file", str(state_path), "--from", FROM, "--retries", "1",
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
        assert path == "/gmail/v1/users/me/messages/send", path
        raw = json.loads(received.body)["raw"]
        message = email.message_from_bytes(base64.urlsafe_b64decode(raw), policy=email.policy.default)
        reply = self.answer(message, len(self.sent))
        if reply.status == 200:
            self.sent.append(message)
        return reply

    def env(self, **extra):
        return clean_env(GMAIL_API_ENDPOINT=self.server.root, **extra)

    def close(self):
        self.server.close()


@pytest.fixture
def gmail():
    api = GmailApi()
    yield api
    api.close()


def test_gmail_sends_each_customer_the_same_message_as_smtp_once(tmp_path, gmail):
    write_user_token(tmp_path / "token.json", google_api.CONSENT_SCOPES)
    result = run(tmp_path, "--send-with", "gmail", "-testmode", "no", env=gmail.env())
    assert result.returncode == 0, result.stderr
    assert sorted(message["To"].addresses[0].addr_spec for message in gmail.sent) == \
        ["ann@example.com", "jane@example.com", "john@example.com"]
    jane = next(message for message in gmail.sent if "jane" in str(message["To"]))
    assert jane["From"] == FROM and jane["Message-ID"].endswith("@example.com>") and jane["Auto-Submitted"]
    assert gmail.server.requests[0].headers["authorization"] == "Bearer ya29.valid-token"
    assert "ya29" not in result.stdout + result.stderr
    again = run(tmp_path, "--send-with", "gmail", "-testmode", "no", env=gmail.env())
    assert again.returncode == 0 and len(gmail.sent) == 3          # nothing resent
    preview = run_cli("--report", str(tmp_path / "r.csv"), "--from", FROM, "--send-with", "gmail", "-testmode", "yes",
                      "--since", SINCE, "--state-file", str(tmp_path / "none.json"), "--preview-dir", str(tmp_path / "p"),
                      env=gmail.env())
    assert preview.returncode == 0 and len(gmail.server.requests) == 3   # test mode contacts nothing
    shown = email.message_from_bytes((tmp_path / "p" / "001-jane@example.com.eml").read_bytes(), policy=email.policy.default)
    assert shown["Message-ID"] == jane["Message-ID"] and shown.get_content() == jane.get_content()


def test_a_token_without_the_gmail_send_scope_stops_before_sending_saying_how_to_grant_it(tmp_path, gmail):
    write_user_token(tmp_path / "token.json", google_api.SCOPES)
    result = run(tmp_path, "--send-with", "gmail", "-testmode", "no", env=gmail.env())
    assert result.returncode == 2
    assert "no gmail.send scope" in result.stderr and "python google_api.py --gmail" in result.stderr
    assert gmail.server.requests == [] and read_state(tmp_path / "s.json")["last_run_date"] == SINCE


def write_service_account(path, gmail):
    """A service account key whose token endpoint is the local Gmail fake's."""
    from test_google import write_service_account as service_account_key

    return service_account_key(path, gmail.server.root + "token")


def test_a_service_account_sends_with_domain_wide_delegation_for_the_from_mailbox(tmp_path, gmail):
    write_service_account(tmp_path / "credential.json", gmail)
    result = run(tmp_path, "--send-with", "gmail", "-testmode", "no", env=gmail.env())
    assert result.returncode == 0, result.stderr
    assert gmail.tokens[0]["sub"] == "support@example.com" and "gmail.send" in gmail.tokens[0]["scope"]
    assert len(gmail.sent) == 3


def test_a_refused_delegation_stops_the_run_naming_it(tmp_path, gmail):
    write_service_account(tmp_path / "credential.json", gmail)
    gmail.refuse_delegation = True
    result = run(tmp_path, "--send-with", "gmail", "-testmode", "no", env=gmail.env())
    assert result.returncode == 2 and "domain-wide delegation" in result.stderr
    assert result.stderr.count("domain-wide delegation") == 1   # found when the destination opens: said once
    assert gmail.server.requests and not any("send" in r.path for r in gmail.server.requests)   # nobody attempted
    assert read_state(tmp_path / "s.json") == {"last_run_date": SINCE}
    check = run(tmp_path, "--check", "--send-with", "gmail", env=gmail.env())
    assert check.returncode == 2 and "domain-wide delegation" in check.stdout


def test_gmail_refusals_follow_the_rules(tmp_path, gmail):
    write_user_token(tmp_path / "token.json", google_api.CONSENT_SCOPES)

    def answer(message, index):
        if "john" in str(message["To"]):
            return json_reply(400, {"error": {"code": 400, "message": "Invalid To header", "status": "INVALID_ARGUMENT"}})
        if "ann" in str(message["To"]) and not any("ann" in str(m["To"]) for m in gmail.sent):
            calls = [r for r in gmail.server.requests if b"ann" in base64.urlsafe_b64decode(json.loads(r.body)["raw"])]
            if len(calls) == 1:
                return json_reply(429, {"error": {"code": 429, "message": "Rate Limit Exceeded"}}, {"Retry-After": "1"})
        return json_reply(200, {"id": "x"})
    gmail.answer = answer
    result = run(tmp_path, "--send-with", "gmail", "-testmode", "no", "--workers", "1", env=gmail.env())
    assert result.returncode == 1, result.stderr
    assert "rejected john@example.com" in result.stderr and "Invalid To header" in result.stderr
    assert sorted(str(m["To"].addresses[0].addr_spec) for m in gmail.sent) == ["ann@example.com", "jane@example.com"]


@pytest.mark.parametrize("status, message", [(401, "Request had invalid authentication credentials."),
                                             (403, "Request had insufficient authentication scopes.")])
def test_gmail_401_and_403_stop_the_run_naming_the_scope(tmp_path, gmail, status, message):
    write_service_account(tmp_path / "credential.json", gmail)   # its token endpoint is ours: a 401 refreshes first
    gmail.answer = lambda msg, index: json_reply(status, {"error": {"code": status, "message": message}})
    result = run(tmp_path, "--send-with", "gmail", "-testmode", "no", env=gmail.env())
    assert result.returncode == 2 and "gmail.send" in result.stderr
    assert read_state(tmp_path / "s.json")["rejected"] == {}


def test_gmail_needs_from_and_cannot_send_with_an_api_key_alone(tmp_path, gmail):
    report = write_csv(tmp_path / "r.csv", ROWS)
    result = run_cli("--report", str(report), "--send-with", "gmail", "-testmode", "yes", env=gmail.env())
    assert result.returncode == 2 and "--from is required with gmail" in result.stderr
    result = run(tmp_path, "--send-with", "gmail", "-testmode", "no", "--api-key", "AIzaKEYKEYKEY", env=gmail.env())
    assert result.returncode == 2 and "cannot send email" in result.stderr and "AIzaKEYKEYKEY" not in result.stderr


def test_check_gets_a_gmail_token_without_sending(tmp_path, gmail):
    write_service_account(tmp_path / "credential.json", gmail)
    result = run(tmp_path, "--check", "--send-with", "gmail", env=gmail.env())
    assert "ok    destination: Gmail: gmail.send granted" in result.stdout, result.stdout
    assert gmail.sent == [] and len(gmail.tokens) == 1


# ---------------------------------------------------------------- Microsoft 365

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

    def env(self, **extra):
        settings = {"M365_TENANT_ID": TENANT, "M365_CLIENT_ID": CLIENT, "M365_CLIENT_SECRET": SECRET,
                    "M365_AUTHORITY_HOST": self.host, "M365_GRAPH_ENDPOINT": f"https://{self.host}",
                    "REQUESTS_CA_BUNDLE": str(self.ca), "SEND_WITH": "microsoft365", **extra}
        return clean_env(**{key: value for key, value in settings.items() if value is not None})

    def close(self):
        self.server.close()


@pytest.fixture
def microsoft(certificates):
    fake = Microsoft(certificates)
    yield fake
    fake.close()


def test_microsoft365_sends_as_the_mailbox_with_one_token_and_no_resend(tmp_path, microsoft):
    result = run(tmp_path, "-testmode", "no", env=microsoft.env())
    assert result.returncode == 0, result.stderr
    assert len(microsoft.sent) == 3 and len(microsoft.token_requests) == 1
    assert microsoft.token_requests[0]["grant_type"] == "client_credentials"
    assert microsoft.token_requests[0]["scope"] == f"https://{microsoft.host}/.default"
    jane = next(message for message in microsoft.sent if "jane" in str(message["To"]))
    assert jane["From"] == FROM and jane["Message-ID"].endswith("@example.com>")
    assert SECRET not in result.stdout + result.stderr
    again = run(tmp_path, "-testmode", "no", env=microsoft.env())
    assert again.returncode == 0 and len(microsoft.sent) == 3


def test_microsoft365_with_a_certificate_credential(tmp_path, microsoft):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "notifier")])
    now = datetime.now(timezone.utc)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(days=1))
                   .not_valid_after(now + timedelta(days=30)).sign(key, hashes.SHA256()))
    pem = tmp_path / "app.pem"
    pem.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()) + certificate.public_bytes(serialization.Encoding.PEM))
    result = run(tmp_path, "-testmode", "no", env=microsoft.env(M365_CLIENT_SECRET=None, M365_CERTIFICATE=str(pem)))
    assert result.returncode == 0, result.stderr
    request = microsoft.token_requests[0]
    assert request["client_assertion_type"].endswith("jwt-bearer") and "client_secret" not in request
    header = json.loads(base64.urlsafe_b64decode(request["client_assertion"].split(".")[0] + "=="))
    assert "x5t" in header or "x5t#S256" in header


@pytest.mark.parametrize("error, setting", [
    ({"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided."},
     "the client secret is wrong or expired: check M365_CLIENT_SECRET"),
    ({"error": "invalid_request", "error_description": "AADSTS90002: Tenant 'x' not found."},
     "no such tenant: check M365_TENANT_ID"),
    ({"error": "unauthorized_client", "error_description": "AADSTS700016: Application not found in the directory."},
     "no such application in that tenant: check M365_CLIENT_ID"),
])
def test_a_refused_token_stops_the_run_naming_the_setting(tmp_path, microsoft, error, setting):
    microsoft.token_error = error
    result = run(tmp_path, "-testmode", "no", env=microsoft.env())
    assert result.returncode == 2 and setting in result.stderr and result.stderr.count(setting) == 1
    assert not any(r.path.endswith("sendMail") for r in microsoft.server.requests)   # nobody attempted
    assert read_state(tmp_path / "s.json") == {"last_run_date": SINCE} and "not attempted" not in result.stdout
    assert SECRET not in result.stdout + result.stderr


def test_graph_refusals_follow_the_rules(tmp_path, microsoft):
    def answer(message, index):
        to = str(message["To"])
        if "john" in to:
            return json_reply(400, {"error": {"code": "ErrorInvalidRecipients", "message": "Invalid recipients"}})
        ann_calls = [r for r in microsoft.server.requests if r.path.endswith("sendMail")
                     and b"ann@" in base64.b64decode(r.body)]
        if "ann" in to and len(ann_calls) == 1:
            return json_reply(429, {"error": {"code": "ApplicationThrottled", "message": "slow down"}}, {"Retry-After": "1"})
        return Reply(202, body=b"")
    microsoft.answer = answer
    result = run(tmp_path, "-testmode", "no", "--workers", "1", env=microsoft.env())
    assert result.returncode == 1, result.stderr
    assert "rejected john@example.com" in result.stderr and "ErrorInvalidRecipients" in result.stderr
    assert sorted(str(m["To"].addresses[0].addr_spec) for m in microsoft.sent) == ["ann@example.com", "jane@example.com"]


@pytest.mark.parametrize("status", [401, 403])
def test_graph_401_and_403_stop_the_run_naming_mail_send(tmp_path, microsoft, status):
    microsoft.answer = lambda message, index: json_reply(status, {"error": {"code": "ErrorAccessDenied",
                                                                            "message": "Access is denied."}})
    result = run(tmp_path, "-testmode", "no", "--workers", "1", env=microsoft.env())
    assert result.returncode == 2 and "Mail.Send" in result.stderr
    assert len([r for r in microsoft.server.requests if r.path.endswith("sendMail")]) == 1


def test_check_gets_a_token_and_checks_mail_send_without_sending(tmp_path, microsoft):
    result = run(tmp_path, "--check", env=microsoft.env())
    assert result.returncode == 0, result.stdout
    assert "with Mail.Send" in result.stdout and microsoft.sent == []
    microsoft.roles = ["User.Read.All"]
    result = run(tmp_path, "--check", env=microsoft.env())
    assert result.returncode == 2 and "RBAC for Applications" in result.stdout and "admin consent" not in result.stdout
    microsoft.rbac = True   # the scoped grant: no role in the token, and Graph lets the app send as the mailbox
    result = run(tmp_path, "--check", env=microsoft.env())
    assert result.returncode == 0 and "RBAC for Applications" in result.stdout and microsoft.sent == []
    result = run(tmp_path, "-testmode", "no", env=microsoft.env())
    assert result.returncode == 0 and len(microsoft.sent) == 3


def test_microsoft365_settings_are_checked_at_start_and_test_mode_contacts_nothing(tmp_path, microsoft):
    result = run(tmp_path, "-testmode", "no", env=microsoft.env(M365_TENANT_ID=None))
    assert result.returncode == 2 and "M365_TENANT_ID" in result.stderr
    result = run(tmp_path, "-testmode", "no", env=microsoft.env(M365_CERTIFICATE=str(tmp_path / "r.csv")))
    assert result.returncode == 2 and "set only one" in result.stderr
    result = run(tmp_path, "-testmode", "no", env=microsoft.env(M365_CLIENT_SECRET=None))
    assert result.returncode == 2 and "one credential" in result.stderr
    result = run(tmp_path, "-testmode", "yes", env=microsoft.env())
    assert result.returncode == 0 and microsoft.server.requests == []


def test_an_unreachable_identity_platform_leaves_everyone_pending(tmp_path, microsoft):
    from conftest import free_port

    closed = f"localhost:{free_port()}"
    result = run(tmp_path, "-testmode", "no", "--retries", "0",
                 env=microsoft.env(M365_AUTHORITY_HOST=closed, M365_GRAPH_ENDPOINT=f"https://{closed}"))
    assert result.returncode == 1 and f"cannot reach {closed}" in result.stderr and "unexpected" not in result.stderr
    saved = read_state(tmp_path / "s.json")
    assert saved["notified"] == {} and saved["last_run_date"] == RECENT   # the pending tickets' day: found again
