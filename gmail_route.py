"""The Gmail route: each customer's email sent as the team's own mailbox by the Gmail API, with the job's Google credential."""

from __future__ import annotations

import base64
import json
import socket
from dataclasses import dataclass

from customer_message import emails_for
from delivery import DELIVERED, REJECTED, RETRY, STOP, Answer, answer_text
from destinations import Destination, SettingError

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
        try:
            answer = self.messages.send(userId="me", body={"raw": raw}).execute(num_retries=0)
        except HttpError as error:
            return classify(error.resp.status, error.resp, error.content)
        except google.auth.exceptions.RefreshError as error:
            return Answer(STOP, f"Google refused a token for sending as {self.route.sender} "
                                f"({answer_text(str(error))}): {SCOPE_ADVICE}")
        except (google.auth.exceptions.TransportError, httplib2.HttpLib2Error, ConnectionRefusedError,
                socket.gaierror) as error:
            return Answer(RETRY, f"could not reach {GMAIL_LABEL} ({type(error).__name__}: {answer_text(str(error))[:120]})",
                          unreachable=True)
        except (TimeoutError, OSError) as error:
            return Answer(RETRY, f"the request to {GMAIL_LABEL} failed ({type(error).__name__})")
        return Answer(DELIVERED, f"sent, id {answer.get('id', '?')}", "200")

    def reset(self) -> None:
        """Nothing to do: httplib2 drops a connection whose answer never completed."""

    def close(self) -> None:
        """Nothing to end."""


def classify(status: int, headers, content: bytes) -> Answer:
    from webhook_route import retry_after_seconds

    code = f"HTTP {status}"
    message, reasons = _google_error(content)
    said = f"{code}: {message}" if message else code
    if status == 429 or status >= 500 or (status == 403 and set(reasons) & set(RATE_REASONS)):
        return Answer(RETRY, f"{GMAIL_LABEL} answered {said}", code,
                      retry_after=retry_after_seconds(headers.get("retry-after")))
    if status in (401, 403):
        return Answer(STOP, f"{GMAIL_LABEL} refused to send ({said}): {SCOPE_ADVICE}", code)
    return Answer(REJECTED, said, code)   # 400 "Invalid To header", a message Gmail will not take


def _google_error(content: bytes) -> tuple[str, list[str]]:
    try:
        error = json.loads(content).get("error", {})
        reasons = [str(item.get("reason", "")) for item in error.get("errors", []) if isinstance(item, dict)]
        return answer_text(str(error.get("message", ""))), reasons
    except (ValueError, AttributeError):
        return answer_text(content), []


# ---------------------------------------------------------------- the destination

def _open(run) -> GmailRoute:
    import google_api

    try:
        credentials = google_api.gmail_credentials(run.credentials, run.token, run.sender.from_address)
    except google_api.GoogleSetupError as error:
        key = " (an API key reads a shared sheet but cannot send email)" if run.api_key else ""
        raise SettingError(f"{error}{key}") from None
    return GmailRoute(credentials, run.timeout, run.sender.from_address, run.destination_settings.endpoint)



def _check_live(run) -> str:
    import google_api
    from run_check import CheckFailedError

    try:
        route = _open(run)
        granted = google_api.granted_gmail_scope(route.credentials)
    except (SettingError, google_api.GoogleSetupError) as error:
        raise CheckFailedError(str(error)) from None
    return f"Gmail: {granted} to send as {run.sender.from_address}"


DESTINATION = Destination(
    name="gmail", summary="sent as the --from mailbox through the Gmail API (the Google credential, OAuth)",
    env_keys=("GMAIL_API_ENDPOINT",), secret_keys=(), add_options=lambda group: None,
    named=lambda options, environment: False,
    configure=lambda options, environment: GmailSettings(environment.get("GMAIL_API_ENDPOINT", "").strip() or None),
    secrets=lambda settings: [], open=_open,
    message_for=emails_for, check_live=_check_live, needs_sender=True)
