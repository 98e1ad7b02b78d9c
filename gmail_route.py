"""The Gmail route: each customer's email sent as the team's own mailbox by the Gmail API, with the job's Google credential."""

from __future__ import annotations

import base64
import json
import socket
import ssl
from dataclasses import dataclass

from customer_message import emails_for
from delivery import DELIVERED, REJECTED, RETRY, STOP, Answer, answer_text, http_answer
from destinations import CheckFailedError, Destination, SettingError

GMAIL_LABEL = "gmail.googleapis.com:443"
SCOPE_ADVICE = ("for a user token, run `python google_api.py --gmail` and allow sending email; for a service account, "
                "allow domain-wide delegation of https://www.googleapis.com/auth/gmail.send for its client id")
RATE_REASONS = ("rateLimitExceeded", "userRateLimitExceeded", "backendError")


@dataclass(frozen=True)
class GmailSettings:
    """The credential files, --from and --timeout are the run's; its own is only another API root."""
    endpoint: str | None = None   # GMAIL_API_ENDPOINT: another root for the Gmail API (a proxy, a test)


class GmailRoute:
    """Sends as --from; each worker has its own client (httplib2 is not thread-safe)."""

    def __init__(self, credentials, timeout: float, sender: str, endpoint: str | None = None) -> None:
        self.credentials, self.timeout, self.sender, self.endpoint = credentials, timeout, sender, endpoint
        self.label = GMAIL_LABEL

    def open_channel(self) -> GmailChannel:
        return GmailChannel(self)

    def shutdown(self) -> None:
        """The clients end with their channels."""


class GmailChannel:
    def __init__(self, route: GmailRoute) -> None:
        import google_api

        self.route = route
        self.messages = google_api.build_gmail(route.credentials, route.timeout, route.endpoint).users().messages()

    def attempt(self, mail) -> Answer:
        import google.auth.exceptions
        import httplib2
        from googleapiclient.errors import HttpError

        raw = base64.urlsafe_b64encode(mail.data).decode("ascii")
        request = self.messages.send(userId="me", body={"raw": raw})
        request.postproc = lambda response, content: (response.status, content)  # any 2xx, whatever its body
        try:
            status, content = request.execute(num_retries=0)
        except HttpError as error:
            return classify(error.resp.status, error.resp, error.content)
        except google.auth.exceptions.RefreshError as error:
            return Answer(STOP, f"Google refused a token for sending as {self.route.sender} "
                                f"({answer_text(str(error))}): {SCOPE_ADVICE}")
        except ssl.SSLError as error:
            return Answer(STOP, f"TLS with {GMAIL_LABEL} failed ({error.reason or type(error).__name__}): its certificate "
                                "is not trusted here; set HTTPLIB2_CA_CERTS (or SSL_CERT_FILE) to your CA bundle")
        except (google.auth.exceptions.TransportError, httplib2.HttpLib2Error, ConnectionRefusedError,
                socket.gaierror) as error:
            if "CERTIFICATE_VERIFY_FAILED" in str(error):
                return Answer(STOP, "TLS with Google's token endpoint failed (certificate not trusted): set "
                                    "REQUESTS_CA_BUNDLE (or SSL_CERT_FILE) to your CA bundle")
            return Answer(RETRY, f"could not reach {GMAIL_LABEL} ({type(error).__name__}: {answer_text(str(error))[:120]})",
                          unreachable=True)
        except (TimeoutError, OSError) as error:
            return Answer(RETRY, f"the request to {GMAIL_LABEL} failed ({type(error).__name__})")
        return classify(status, {}, content)

    def reset(self) -> None:
        """Nothing to do: httplib2 drops a connection whose answer never completed."""

    def close(self) -> None:
        """Nothing to end."""


NOT_ENABLED_REASONS = ("accessNotConfigured", "SERVICE_DISABLED")
NOT_ENABLED_ADVICE = ("the Gmail API is not enabled in the Google Cloud project of the credential: enable it at the "
                      "link in Google's message (APIs & Services > Library > Gmail API), wait a few minutes, run again")


def classify(status: int, headers, content: bytes) -> Answer:
    """Gmail's answer by section 6's shared classes (delivery.http_answer), then its own 4xx: a
    rate refusal given as 403 is retried, the API not enabled or a missing scope stops the run,
    anything else refuses this customer (400 "Invalid To header")."""
    code = f"HTTP {status}"
    message, reasons = _google_error(content)
    said = f"{code} {' '.join(reasons)}: {message}".strip(": ") if message or reasons else code
    if status == 403 and set(reasons) & set(NOT_ENABLED_REASONS) or "SERVICE_DISABLED" in message:
        whole = " ".join(_google_error(content, whole=True)[0].split())
        return Answer(STOP, f"{GMAIL_LABEL} answered {code} ({whole}): {NOT_ENABLED_ADVICE}", code)
    if 200 <= status < 300:
        return Answer(DELIVERED, f"{code}, id {_sent_id(content)}", code)
    rate_refusal = status == 403 and set(reasons) & {*RATE_REASONS, "dailyLimitExceeded"}  # a limit, not a scope
    shared = http_answer(429 if rate_refusal else status, headers, GMAIL_LABEL, said)
    if shared is not None:
        return shared
    if status in (401, 403):
        return Answer(STOP, f"{GMAIL_LABEL} refused to send ({said}): {SCOPE_ADVICE}", code)
    return Answer(REJECTED, said, code)   # 400 "Invalid To header", a message Gmail will not take


def _sent_id(content: bytes) -> str:
    """The id Gmail gave the message, for the log; '?' when its answer has none (any 2xx is delivered)."""
    try:
        answer = json.loads(content)
    except (ValueError, TypeError):
        return "?"
    return str(answer.get("id", "?")) if isinstance(answer, dict) else "?"


def _google_error(content: bytes, whole: bool = False) -> tuple[str, list[str]]:
    """Google's error message (cut to one line of REASON_CHARS, or `whole`) and its reasons."""
    text = content.decode("utf-8", "replace") if isinstance(content, bytes) else str(content)
    try:
        error = json.loads(text).get("error", {})
        reasons = [str(item.get("reason", "")) for item in error.get("errors", []) if isinstance(item, dict)]
        reasons += [str(item.get("reason", "")) for item in error.get("details", []) if isinstance(item, dict)
                    and item.get("reason")]
        message = str(error.get("message", ""))
    except (ValueError, AttributeError):
        message, reasons = text, []
    return (message[:2000] if whole else answer_text(message)), reasons


# ---------------------------------------------------------------- the destination

def _configure(environment) -> GmailSettings:
    from url_rules import UrlError, check_endpoint

    endpoint = environment.get("GMAIL_API_ENDPOINT", "").strip() or None
    try:
        return GmailSettings(check_endpoint(endpoint, "GMAIL_API_ENDPOINT") if endpoint else None)
    except UrlError as error:
        raise SettingError(str(error)) from None


def _open(run) -> GmailRoute:
    import google_api

    try:
        credentials = google_api.gmail_credentials(run.credentials, run.token, run.sender.from_address)
    except google_api.GoogleSetupError as error:
        key = " (an API key reads a shared sheet but cannot send email)" if run.api_key else ""
        raise SettingError(f"{error}{key}") from None
    return GmailRoute(credentials, run.timeout, run.sender.from_address, run.destination_settings.endpoint)


def _open_proven(run) -> GmailRoute:
    """The route with its token fetched before the first customer: a refused delegation or grant is
    exit 2 with nobody attempted; an unreachable token endpoint is left to the attempts (pending)."""
    import google_api

    route = _open(run)
    if not route.credentials.valid:
        try:
            google_api.granted_gmail_scope(route.credentials)
        except google_api.GoogleSetupError as error:
            if "cannot reach" not in str(error) and "in time" not in str(error):
                raise SettingError(str(error)) from None
    return route



def _check_live(run) -> str:
    import google_api

    try:
        route = _open(run)
        granted = google_api.granted_gmail_scope(route.credentials)
    except (SettingError, google_api.GoogleSetupError) as error:
        raise CheckFailedError(str(error)) from None
    return f"Gmail: {granted} to send as {run.sender.from_address}"


READ_ANSWER_BYTES = 4 * 1024 * 1024   # a report read whole (its returned message may carry attachments)


def _mailbox_reader(run):
    """The Gmail client with the scopes to read the mailbox (gmail.readonly); SettingError naming it."""
    import google_api

    try:
        credentials = google_api.gmail_credentials(run.credentials, run.token, run.sender.from_address, read=True)
    except google_api.GoogleSetupError as error:
        raise SettingError(str(error)) from None
    return google_api.build_gmail(credentials, run.timeout, run.destination_settings.endpoint, READ_ANSWER_BYTES)


def _read_bounces(run, cursor: dict, since) -> tuple[list[bytes], dict]:
    """The messages that arrived in the sending mailbox after the cursor (the newest internalDate read,
    in ms) or since the day `since`: users.messages.list, then users.messages.get(format=raw). Reads only."""
    import calendar

    import google.auth.exceptions
    from googleapiclient.errors import HttpError

    after = int(cursor.get("after_ms", 0)) or calendar.timegm(since.timetuple()) * 1000
    try:
        messages = _mailbox_reader(run).users().messages()
        ids, page = [], None
        while True:
            listed = messages.list(userId="me", q=f"after:{after // 1000}", pageToken=page, maxResults=100).execute(
                num_retries=2)
            ids += [item["id"] for item in listed.get("messages", [])]
            page = listed.get("nextPageToken")
            if not page:
                break
        raws, newest = [], after
        for message_id in ids:
            message = messages.get(userId="me", id=message_id, format="raw").execute(num_retries=2)
            received = int(message.get("internalDate", 0))
            if received <= after:
                continue
            newest = max(newest, received)
            raw = message.get("raw", "")
            raws.append(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    except HttpError as error:
        if error.resp.status in (401, 403):
            message, _ = _google_error(error.content)
            raise SettingError(f"{GMAIL_LABEL} does not let this credential read the mailbox ({message}): grant "
                               "gmail.readonly (python google_api.py --gmail --read-bounces; for a service account, "
                               "in its domain-wide delegation)") from None
        raise OSError(f"{GMAIL_LABEL} answered HTTP {error.resp.status}") from None
    except google.auth.exceptions.RefreshError as error:
        said = answer_text(str(error.args[0] if error.args else error))
        raise SettingError(f"Google refused a token to read the mailbox ({said}): grant gmail.readonly") from None
    return raws, {"after_ms": newest}


def _check_bounces(run) -> str:
    """--check: the mailbox can be read (users.getProfile needs gmail.readonly), no message read."""
    from googleapiclient.errors import HttpError

    try:
        profile = _mailbox_reader(run).users().getProfile(userId="me").execute(num_retries=1)
    except HttpError as error:
        raise SettingError(f"{GMAIL_LABEL} does not let this credential read the mailbox (HTTP {error.resp.status}): "
                           "grant gmail.readonly") from None
    return f"bounces: Gmail lets this credential read {profile.get('emailAddress', run.sender.from_address)} (nothing read)"


DESTINATION = Destination(
    name="gmail", summary="sent as the --from mailbox through the Gmail API (the Google credential, OAuth)",
    env_keys=("GMAIL_API_ENDPOINT",), secret_keys=(), add_options=lambda group: None,
    named=lambda options, environment: False,
    configure=lambda options, environment: _configure(environment),
    secrets=lambda settings: [], open=_open_proven,
    message_for=emails_for, check_live=_check_live, needs_sender=True,
    reads_bounces=lambda run: run.read_bounces, read_bounces=_read_bounces, check_bounces=_check_bounces)
