"""The Microsoft 365 route: each customer's email sent as the team's mailbox by Microsoft Graph, with an app-only token (msal)."""

from __future__ import annotations

import base64
import json
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from customer_message import emails_for
from delivery import REJECTED, RETRY, STOP, Answer, answer_text, http_answer
from destinations import CheckFailedError, Destination, SettingError
from url_rules import WEB_PORTS, UrlError, ca_bundle, check_endpoint, parse_url

AUTHORITY_HOST = "login.microsoftonline.com"
GRAPH_ENDPOINT = "https://graph.microsoft.com"
MAIL_SEND = "Mail.Send"
MAX_ANSWER_BYTES = 64 * 1024
# What the identity platform's AADSTS codes mean, and the setting that fixes them.
AADSTS_FIXES = {
    "AADSTS7000215": "the client secret is wrong or expired: check M365_CLIENT_SECRET",
    "AADSTS7000222": "the client secret has expired: make a new one and set M365_CLIENT_SECRET",
    "AADSTS700016": "no such application in that tenant: check M365_CLIENT_ID and M365_TENANT_ID",
    "AADSTS90002": "no such tenant: check M365_TENANT_ID",
    "AADSTS900023": "M365_TENANT_ID is not a tenant id or domain: check it",
    "AADSTS700027": "the certificate is not the one registered for the app: check M365_CERTIFICATE",
    "AADSTS7000218": "the app needs a credential: set M365_CLIENT_SECRET or M365_CERTIFICATE",
}


class M365ConfigError(Exception):
    """Microsoft 365 settings that cannot work: exit 2."""


@dataclass(frozen=True)
class M365Settings:
    tenant_id: str
    client_id: str
    client_secret: str
    certificate: str           # path of a PEM file with the private key and its certificate
    authority_host: str
    graph_endpoint: str


def _credential(settings: M365Settings) -> str | dict:
    """msal's client credential: the secret, or the certificate's private key and SHA-1 thumbprint."""
    if settings.client_secret:
        return settings.client_secret
    try:
        pem = Path(settings.certificate).read_bytes()
    except OSError as error:
        raise M365ConfigError(f"cannot read M365_CERTIFICATE {settings.certificate}: {error.strerror or error}") from None
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    try:
        certificate = x509.load_pem_x509_certificate(pem)
        key = serialization.load_pem_private_key(pem, password=None)
    except TypeError:  # cryptography: "Password was not given but private key is encrypted"
        raise M365ConfigError("M365_CERTIFICATE's private key is encrypted: write it without a password (for example "
                              "openssl pkey -in key.pem -out plain-key.pem, then put it with the certificate in one "
                              "PEM file readable by the job's account only)") from None
    except ValueError:
        raise M365ConfigError("M365_CERTIFICATE must be a PEM file holding the private key (unencrypted) and its "
                              "certificate") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise M365ConfigError(f"M365_CERTIFICATE holds a {type(key).__name__.removeprefix('_').replace('PrivateKey', '')} "
                              "key; Microsoft's identity platform signs with RS256 or PS256: make an RSA key (2048 bits "
                              "or more) and register its certificate with the app")
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    return {"private_key": key_pem, "thumbprint": certificate.fingerprint(hashes.SHA1()).hex(),  # noqa: S303 (Entra's thumbprint)
            "public_certificate": certificate.public_bytes(serialization.Encoding.PEM).decode()}


def token_roles(access_token: str) -> list[str]:
    """The application permissions ("roles") an app-only token carries (its payload, not verified:
    Graph verifies it; this only tells the user what is missing)."""
    try:
        payload = access_token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return []
    roles = claims.get("roles", []) if isinstance(claims, dict) else []
    return [str(role) for role in roles] if isinstance(roles, list) else []


class M365Route:
    """Sends through Graph's sendMail as the --from mailbox; one token for the run, fetched again
    only when it expires (msal's cache)."""

    def __init__(self, settings: M365Settings, sender: str, timeout: float) -> None:
        import requests

        self.settings, self.sender, self.timeout = settings, sender, timeout
        self.label = parse_url(settings.graph_endpoint, "M365_GRAPH_ENDPOINT", WEB_PORTS).label
        self.session = requests.Session()
        bundle = ca_bundle()
        if bundle:
            self.session.verify = bundle
        self.credential = _credential(settings)
        self.app = None  # made with the first token: msal asks the identity platform about the tenant then
        self.scope = [f"{settings.graph_endpoint.rstrip('/')}/.default"]
        self.url = f"{settings.graph_endpoint.rstrip('/')}/v1.0/users/{quote(sender)}/sendMail"
        self._lock = threading.Lock()

    def token(self) -> str:
        """The app-only access token; an M365ConfigError naming the setting to fix when refused."""
        import requests

        from time_bounds import TooSlowError, run_within

        host = self.settings.authority_host
        # Bounded as a whole (a token endpoint that trickles its answer), and never waited on by the
        # attempts after a stuck one: they wait at most the same time for the lock, then say so.
        if not self._lock.acquire(timeout=self.timeout + 1):
            raise ConnectionError(f"{host} gave no token within {self.timeout:g}s (an earlier request is still waiting)")
        try:
            result = run_within(self.timeout + 1, self._acquire)
        except TooSlowError:
            raise ConnectionError(f"{host} gave no complete answer within {self.timeout:g}s") from None
        except requests.exceptions.SSLError:
            raise ConnectionError(f"TLS with {host} failed: its certificate is not trusted here (set REQUESTS_CA_BUNDLE "
                                  "to your CA bundle)") from None
        except requests.exceptions.RequestException as error:
            raise ConnectionError(f"cannot reach {host} ({type(error).__name__})") from None
        except ValueError as error:  # msal: an authority it cannot use, or an answer that is not JSON (a proxy's page)
            if "json" in type(error).__name__.lower() or "Expecting value" in str(error):
                raise ConnectionError(f"{host} answered with a page that is not the identity platform's (a proxy or "
                                      "firewall?)") from None
            raise M365ConfigError(f"the identity platform does not know the tenant ({answer_text(str(error))[:160]}): "
                                  "check M365_TENANT_ID (and M365_AUTHORITY_HOST for a national cloud)") from None
        except Exception as error:  # noqa: BLE001 (msal's own errors: a 5xx from the token endpoint, say)
            raise ConnectionError(f"{host} failed to give a token ({type(error).__name__}: "
                                  f"{answer_text(str(error))[:120]})") from None
        finally:
            self._lock.release()
        if "access_token" in result:
            return result["access_token"]
        description = answer_text(str(result.get("error_description") or result.get("error") or "no token"))
        fix = next((fix for code, fix in AADSTS_FIXES.items() if code in description),
                   "check M365_TENANT_ID, M365_CLIENT_ID and M365_CLIENT_SECRET / M365_CERTIFICATE")
        raise M365ConfigError(f"Microsoft's identity platform gave no token ({description.split(' Trace ID')[0]}): {fix}")

    def _acquire(self) -> dict:
        if self.app is None:
            self.app = self._application()
        return self.app.acquire_token_for_client(scopes=self.scope)

    def _application(self):
        import msal

        settings = self.settings
        return msal.ConfidentialClientApplication(
            settings.client_id, client_credential=self.credential,
            authority=f"https://{settings.authority_host}/{settings.tenant_id}", http_client=self.session,
            validate_authority=settings.authority_host == AUTHORITY_HOST,
            instance_discovery=settings.authority_host == AUTHORITY_HOST, timeout=self.timeout)

    def check_permission(self) -> str:
        """Proves, without sending, that the app may send as the mailbox, whichever way the permission was
        given: the token's roles (Entra admin consent), else Graph's answer to a sendMail with no message
        (RBAC for Applications in Exchange Online: a scoped grant is not in the token). Raises
        M365ConfigError naming the fix; ConnectionError when Microsoft cannot be reached."""
        import requests

        token = self.token()
        roles = token_roles(token)
        if MAIL_SEND in roles:
            return (f"Microsoft 365: a token for {self.settings.client_id} with {MAIL_SEND} in its roles (Entra consent); "
                    f"sends as {self.sender}")
        try:
            status, _, body = self.call("POST", self.url, token, b"")
        except requests.exceptions.RequestException as error:
            raise ConnectionError(f"cannot reach {self.label} ({type(error).__name__})") from None
        if status in (401, 403, 404):
            raise M365ConfigError(
                f"{self.label} does not let the app send as {self.sender} (HTTP {status} {_graph_error(body)}; the "
                f"token's roles: {', '.join(roles) or 'none'}): give the app {MAIL_SEND} for this mailbox with RBAC "
                "for Applications in Exchange Online (New-ServicePrincipal, a management scope, the role "
                "\"Application Mail.Send\"; see docs/microsoft365.md), or check --from")
        return (f"Microsoft 365: {self.label} lets {self.settings.client_id} send as {self.sender} (a scoped grant, "
                f"RBAC for Applications: the token carries no {MAIL_SEND} role; checked without sending)")

    def open_channel(self) -> M365Route:
        return self  # the session's connection pool is shared by the workers

    def reset(self) -> None:
        """Nothing to do: an answer that never completed leaves its connection out of the pool."""

    def close(self) -> None:
        """The workers' channels end with the route (see shutdown)."""

    def shutdown(self) -> None:
        self.session.close()

    def call(self, method: str, url: str, token: str, data: bytes | None = None,
             limit: int = MAX_ANSWER_BYTES) -> tuple[int, object, bytes]:
        """One Graph request as the app: never redirected, the answer read up to `limit` bytes.
        (status, headers, body); requests' exceptions pass through."""
        headers = {"Authorization": f"Bearer {token}", **({"Content-Type": "text/plain"} if data is not None else {})}
        response = self.session.request(method, url, data=data, headers=headers, timeout=self.timeout,
                                        allow_redirects=False, stream=True)  # a send is never redirected (section 21)
        try:
            return response.status_code, response.headers, response.raw.read(limit, decode_content=True) or b""
        finally:
            response.close()  # a longer answer is cut here; its connection is dropped, not reused

    def attempt(self, mail) -> Answer:
        import requests

        try:
            token = self.token()
        except M365ConfigError as error:
            return Answer(STOP, str(error))
        except ConnectionError as error:
            return Answer(RETRY, str(error), unreachable=True)
        try:
            status, headers, text = self.call("POST", self.url, token, base64.b64encode(mail.data))
        except requests.exceptions.ConnectTimeout:
            return Answer(RETRY, f"connecting to {self.label} timed out", unreachable=True)
        except requests.exceptions.ConnectionError:
            return Answer(RETRY, f"could not reach {self.label}", unreachable=True)
        except requests.exceptions.RequestException as error:
            return Answer(RETRY, f"the request to {self.label} failed ({type(error).__name__})")
        return self.classify(status, headers, text)

    def classify(self, status: int, headers, text: bytes) -> Answer:
        code = f"HTTP {status}"
        error = _graph_error(text)
        said = f"{code} {error}".strip()
        shared = http_answer(status, headers, self.label, error)
        if shared is not None:
            return shared
        if status in (401, 403):
            return Answer(STOP, f"{self.label} refused to send as {self.sender} ({said}): the app needs the application "
                                f"permission {MAIL_SEND} with admin consent, and an access policy that includes this "
                                "mailbox; check M365_CLIENT_ID / M365_TENANT_ID", code)
        if status == 404 or "ErrorInvalidUser" in error or "MailboxNotEnabled" in error:
            return Answer(STOP, f"{self.label} knows no mailbox {self.sender} ({said}): check --from", code)
        return Answer(REJECTED, said, code)


def _graph_error(text: bytes) -> str:
    """Graph's error code and message, from its JSON answer."""
    try:
        error = json.loads(text).get("error", {})
        return answer_text(f"{error.get('code', '')}: {error.get('message', '')}")
    except (ValueError, AttributeError):
        return answer_text(text)


# ---------------------------------------------------------------- the destination

def _configure(options, environment) -> M365Settings:
    settings = M365Settings(
        tenant_id=environment.get("M365_TENANT_ID", "").strip(), client_id=environment.get("M365_CLIENT_ID", "").strip(),
        client_secret=environment.get("M365_CLIENT_SECRET", ""), certificate=environment.get("M365_CERTIFICATE", "").strip(),
        authority_host=(environment.get("M365_AUTHORITY_HOST") or AUTHORITY_HOST).strip().removeprefix("https://").strip("/"),
        graph_endpoint=(environment.get("M365_GRAPH_ENDPOINT") or GRAPH_ENDPOINT).strip().rstrip("/"))
    missing = [name for name, value in (("M365_TENANT_ID", settings.tenant_id), ("M365_CLIENT_ID", settings.client_id))
               if not value]
    if missing:
        raise SettingError(f"--send-with microsoft365 needs {' and '.join(missing)} (the app registration's ids)")
    if settings.client_secret and settings.certificate:
        raise SettingError("M365_CLIENT_SECRET and M365_CERTIFICATE are both set: set only one (the certificate is "
                           "the safer credential)")
    if not settings.client_secret and not settings.certificate:
        raise SettingError("--send-with microsoft365 needs one credential: M365_CLIENT_SECRET or M365_CERTIFICATE")
    if settings.certificate and not Path(settings.certificate).is_file():
        raise SettingError(f"M365_CERTIFICATE {settings.certificate} is not a file")
    if settings.certificate:
        try:
            _credential(settings)  # a key the job cannot use is found at start, in every mode
        except M365ConfigError as error:
            raise SettingError(str(error)) from None
    try:
        parse_url(f"https://{settings.authority_host}/", "M365_AUTHORITY_HOST", WEB_PORTS)
        check_endpoint(settings.graph_endpoint, "M365_GRAPH_ENDPOINT")
    except UrlError as error:
        raise SettingError(str(error)) from None
    return settings


def _open(run) -> M365Route:
    """The route, its token and permission proven before the first customer (a refused secret, tenant
    or permission is exit 2 with nobody attempted); an unreachable identity platform is left to the
    attempts, which keep everyone pending."""
    try:
        route = M365Route(run.destination_settings, run.sender.from_address, run.timeout)
    except M365ConfigError as error:
        raise SettingError(str(error)) from None
    try:
        route.check_permission()
    except M365ConfigError as error:
        route.shutdown()
        raise SettingError(str(error)) from None
    except ConnectionError as error:
        if "TLS with" in str(error):  # an untrusted certificate is a setting to fix, on the host that has it
            route.shutdown()
            raise SettingError(str(error)) from None
    return route



def _check_live(run) -> str:

    try:
        route = M365Route(run.destination_settings, run.sender.from_address, min(run.timeout, 15))
        try:
            return route.check_permission()
        finally:
            route.shutdown()
    except (SettingError, M365ConfigError, ConnectionError) as error:
        raise CheckFailedError(str(error)) from None


MAIL_READ = "Mail.Read"
READ_ANSWER_BYTES = 4 * 1024 * 1024   # a report read whole (its returned message may carry attachments)


def _graph_get(route: M365Route, url: str, token: str) -> tuple[int, bytes]:
    import requests

    try:
        status, _, body = route.call("GET", url, token, limit=READ_ANSWER_BYTES)
    except requests.exceptions.RequestException as error:
        raise OSError(f"cannot reach {route.label} ({type(error).__name__})") from None
    if status in (401, 403):
        raise SettingError(f"{route.label} does not let the app read {route.sender}'s mailbox (HTTP {status} "
                           f"{_graph_error(body)}): give it {MAIL_READ} for this mailbox as for {MAIL_SEND} "
                           "(RBAC for Applications, the role \"Application Mail.Read\"; see docs/microsoft365.md)")
    if status != 200:
        raise OSError(f"{route.label} answered HTTP {status} {_graph_error(body)}")
    return status, body


def _read_bounces(run, cursor: dict, since) -> tuple[list[bytes], dict]:
    """The inbox messages received after the cursor (the newest receivedDateTime read) or since the day
    `since`, ten a page as Graph pages them (@odata.nextLink), each as MIME ($value). Reads only."""
    from urllib.parse import quote as quoted

    route = M365Route(run.destination_settings, run.sender.from_address, run.timeout)
    try:
        try:
            token = route.token()
        except M365ConfigError as error:
            raise SettingError(str(error)) from None
        after = str(cursor.get("after", "")) or f"{since.isoformat()}T00:00:00Z"
        base = f"{run.destination_settings.graph_endpoint}/v1.0/users/{quote(route.sender)}"
        url = (f"{base}/mailFolders/inbox/messages?$select=id,receivedDateTime&$orderby=receivedDateTime"
               f"&$top=10&$filter=receivedDateTime%20gt%20{quoted(after)}")
        found: list[tuple[str, str]] = []
        while url:
            _, body = _graph_get(route, url, token)
            page = json.loads(body)
            found += [(item["id"], item.get("receivedDateTime", "")) for item in page.get("value", [])]
            url = page.get("@odata.nextLink") or ""
            if url and not url.startswith(run.destination_settings.graph_endpoint):
                raise OSError(f"{route.label} pointed the next page elsewhere; the rest is read next run")
        raws = [_graph_get(route, f"{base}/messages/{quoted(message_id, safe='')}/$value", token)[1]
                for message_id, _ in found]
        newest = max((received for _, received in found), default=after)
        return raws, {"after": newest}
    finally:
        route.shutdown()


def _check_bounces(run) -> str:
    """--check: the inbox can be listed (Mail.Read), no message read."""
    route = M365Route(run.destination_settings, run.sender.from_address, min(run.timeout, 15))
    try:
        try:
            token = route.token()
        except M365ConfigError as error:
            raise SettingError(str(error)) from None
        _graph_get(route, f"{run.destination_settings.graph_endpoint}/v1.0/users/{quote(route.sender)}"
                          "/mailFolders/inbox?$select=id", token)
    except OSError as error:
        raise SettingError(str(error)) from None
    finally:
        route.shutdown()
    return f"bounces: {route.label} lets the app read {route.sender}'s inbox (nothing read)"


def _secrets(settings: M365Settings) -> list[str]:
    """The client secret, and the certificate's private key should any message ever quote it."""
    secrets = [settings.client_secret]
    if settings.certificate:
        try:
            credential = _credential(settings)
        except M365ConfigError:
            return secrets
        if isinstance(credential, dict):
            secrets += [line for line in credential["private_key"].splitlines() if len(line) > 40]
    return secrets


DESTINATION = Destination(
    name="microsoft365", summary="sent as the --from mailbox through Microsoft Graph (app-only OAuth, no SMTP password)",
    env_keys=("M365_TENANT_ID", "M365_CLIENT_ID", "M365_CLIENT_SECRET", "M365_CERTIFICATE", "M365_AUTHORITY_HOST",
              "M365_GRAPH_ENDPOINT"),
    secret_keys=("M365_CLIENT_SECRET",),
    add_options=lambda group: None, named=lambda options, environment: False,
    configure=_configure, secrets=_secrets, open=_open, message_for=emails_for,
    check_live=_check_live, needs_sender=True,
    max_in_flight=4,  # Graph allows 4 requests at once per mailbox and answers 429 past that
    reads_bounces=lambda run: run.read_bounces, read_bounces=_read_bounces, check_bounces=_check_bounces)

