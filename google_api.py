"""Everything Google: credentials, reading the sheet, and the one-off auth check (`python google_api.py`)."""

from __future__ import annotations

import argparse
import http.client
import json
import logging
import os
import re
import sys
import webbrowser
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import repeat
from pathlib import Path

import google.auth.exceptions
import google_auth_httplib2
import httplib2
import requests
from google.auth.transport.requests import Request
from google.oauth2 import service_account
from google.oauth2.credentials import Credentials
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError

import url_rules
from a1_range import a1_bounds, column_letters, quoted_sheet, split_a1_range
from time_bounds import TooSlowError, run_within

SCOPES = ["https://www.googleapis.com/auth/spreadsheets.readonly"]   # what reading the sheet needs
GMAIL_SEND = "https://www.googleapis.com/auth/gmail.send"           # what --send-with gmail needs
GMAIL_READONLY = "https://www.googleapis.com/auth/gmail.readonly"   # what reading bounces needs besides
CONSENT_SCOPES = [*SCOPES, GMAIL_SEND]                                # `python google_api.py --gmail` asks for both
SCRIPT_DIR = Path(__file__).resolve().parent
SHEET_RETRIES = 4
PAGE_CELLS = 250_000  # cells per values.get: Google advises payloads of about 2 MB; a page is retried on its own
HTTP_TIMEOUT_SECONDS = 60
GOOGLE_CALL_SECONDS = 300.0  # one call as a whole, its retries included: httplib2's timeout bounds each read only
AUTH_ADVICE = "run `python google_api.py` once to authorise"

# googleapiclient logs retried request URIs, API key included: keep its records away from any handler.
logging.getLogger("googleapiclient").addHandler(logging.NullHandler())
logging.getLogger("googleapiclient").propagate = False


class GoogleSetupError(Exception):
    """Credentials, access or the sheet itself are not usable: one clear line, exit 2."""


# ---------------------------------------------------------------- credentials

def ca_bundle() -> str | None:
    """The CA bundle corporate networks set, in the order httplib2 and requests would look."""
    return url_rules.ca_bundle(("HTTPLIB2_CA_CERTS", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"))


def token_request() -> Request:
    """google-auth's transport over requests: honours the proxy variables and the CA bundle."""
    session = requests.Session()
    bundle = ca_bundle()
    if bundle:
        session.verify = bundle
    return Request(session)


def read_credential_file(path: Path) -> dict:
    try:
        info = json.loads(path.read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        raise GoogleSetupError(f"no Google credential file at {path}: download it from the Google Cloud console "
                               "(see README, 'Set up Google')") from None
    except (OSError, ValueError) as error:
        raise GoogleSetupError(f"cannot read the Google credential file {path}: {error}") from None
    if not isinstance(info, dict) or not ({"installed", "web"} & info.keys() or info.get("type") == "service_account"):
        raise GoogleSetupError(f"{path} is neither an OAuth client (installed/web) nor a service account key")
    return info


def save_token(credentials: Credentials, token_path: Path) -> None:
    """Write token.json readable by its owner only (where the OS has such permissions)."""
    token_path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(token_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(credentials.to_json())
    if os.name == "posix":
        os.chmod(token_path, 0o600)


def refresh_and_save(credentials: Credentials, token_path: Path) -> Credentials:
    """Refresh an expired user token and save it; a refused or unreachable refresh is a setup error."""
    try:
        run_within(GOOGLE_CALL_SECONDS, lambda: credentials.refresh(token_request()))
    except TooSlowError:
        raise GoogleSetupError(f"Google's token endpoint gave no complete answer within {GOOGLE_CALL_SECONDS:g}s: check "
                               "the network and HTTPS_PROXY, or try again later") from None
    except google.auth.exceptions.RefreshError as error:
        raise GoogleSetupError(f"Google refused to refresh the saved token ({_first_line(error)}): "
                               f"{AUTH_ADVICE} again") from None
    except google.auth.exceptions.TransportError as error:
        raise GoogleSetupError(f"cannot reach Google's token endpoint ({_first_line(error)}): check the network "
                               f"or proxy settings; if it persists, {AUTH_ADVICE} again") from None
    save_token(credentials, token_path)
    return credentials


def load_user_token(token_path: Path) -> Credentials | None:
    try:
        return Credentials.from_authorized_user_file(str(token_path))  # the scopes the user granted, as saved
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise GoogleSetupError(f"the saved token {token_path} is unreadable ({error}): {AUTH_ADVICE} again") from None


def load_credentials(credentials_path: Path, token_path: Path):
    """Credentials for an unattended run: a service account key, or the saved (refreshed) user token.
    Never opens a browser or waits for input."""
    if credentials_path.exists() and read_credential_file(credentials_path).get("type") == "service_account":
        try:
            return service_account.Credentials.from_service_account_file(str(credentials_path), scopes=SCOPES)
        except (ValueError, KeyError) as error:
            raise GoogleSetupError(f"the service account key {credentials_path} is not usable ({error})") from None
    credentials = load_user_token(token_path)
    if credentials is None:
        where = "" if credentials_path.exists() else f" (and put credential.json at {credentials_path})"
        raise GoogleSetupError(f"not authorised with Google yet: no token at {token_path}; {AUTH_ADVICE}{where}")
    if not credentials.valid:
        if not credentials.refresh_token:
            raise GoogleSetupError(f"the saved token {token_path} has expired and cannot be refreshed: {AUTH_ADVICE}")
        refresh_and_save(credentials, token_path)
    return credentials


def authorise_interactively(credentials_path: Path, token_path: Path, open_browser: bool,
                            need_gmail: bool | str = False) -> Credentials:
    """The one-off consent (Google's quickstart flow): reading sheets, and sending with Gmail only when
    `need_gmail` (a team that only reads the sheet is never asked to let the job send email); reuse a
    valid or refreshable token (one without the gmail.send scope only when `need_gmail` is not asked),
    else ask."""
    from google_auth_oauthlib.flow import InstalledAppFlow
    from oauthlib.oauth2.rfc6749.errors import OAuth2Error

    credentials = load_user_token(token_path)
    wanted = [GMAIL_SEND, GMAIL_READONLY] if need_gmail == "read" else [GMAIL_SEND] if need_gmail else []
    if credentials and any(scope not in (credentials.scopes or ()) for scope in wanted):
        print("the saved token does not allow sending with Gmail: asking for consent again", file=sys.stderr)
        credentials = None
    if credentials and credentials.valid:
        return credentials
    if credentials and credentials.expired and credentials.refresh_token:
        try:
            return refresh_and_save(credentials, token_path)
        except GoogleSetupError as error:
            print(f"{error}; asking for consent again", file=sys.stderr)
    read_credential_file(credentials_path)
    # The user may untick "send email" (Google's granular consent): a token for fewer scopes is still
    # saved (it reads the sheet), instead of oauthlib's "Scope has changed" traceback.
    os.environ.setdefault("OAUTHLIB_RELAX_TOKEN_SCOPE", "1")
    scopes = [*CONSENT_SCOPES, GMAIL_READONLY] if need_gmail == "read" else CONSENT_SCOPES if need_gmail else SCOPES
    flow = InstalledAppFlow.from_client_secrets_file(str(credentials_path), scopes)
    try:
        credentials = flow.run_local_server(port=0, open_browser=open_browser)
    except webbrowser.Error:
        raise GoogleSetupError("no web browser found on this machine: run again with --no-browser and open "
                               "the printed address in a browser on this machine") from None
    except (OAuth2Error, ValueError, OSError) as error:  # a refused or unreachable token exchange, say
        raise GoogleSetupError(f"authorisation did not complete ({_first_line(error)}): run it again") from None
    save_token(credentials, token_path)
    return credentials


# ---------------------------------------------------------------- sending with Gmail

def gmail_credentials(credentials_path: Path, token_path: Path, sender: str, read: bool = False):
    """Credentials that may send as `sender` (and, with `read`, read its mailbox for bounces): a
    service account's, delegated to that mailbox (domain-wide delegation: the token is made for it,
    its JWT `sub`), or the saved user token, which must hold the scopes. Raises GoogleSetupError
    saying how to grant them."""
    scopes = [GMAIL_SEND, GMAIL_READONLY] if read else [GMAIL_SEND]
    if credentials_path.exists() and read_credential_file(credentials_path).get("type") == "service_account":
        try:
            return service_account.Credentials.from_service_account_file(str(credentials_path), scopes=scopes,
                                                                         subject=sender)
        except (ValueError, KeyError) as error:
            raise GoogleSetupError(f"the service account key {credentials_path} is not usable ({error})") from None
    credentials = load_credentials(credentials_path, token_path)
    if GMAIL_SEND not in (credentials.scopes or ()):
        raise GoogleSetupError(f"the saved token {token_path} does not allow sending email (no gmail.send scope): run "
                               "`python google_api.py --gmail` and allow 'Send email on your behalf' (nothing was sent)")
    if read and GMAIL_READONLY not in (credentials.scopes or ()):
        raise GoogleSetupError(f"the saved token {token_path} cannot read the mailbox for bounces (no gmail.readonly "
                               "scope): run `python google_api.py --gmail --read-bounces` (nothing was sent)")
    return credentials


def build_gmail(credentials, timeout: float, endpoint: str | None = None, max_answer: int | None = None):
    """The Gmail client; `endpoint` (GMAIL_API_ENDPOINT) replaces the API root (a proxy or a local test server).
    Answers are read up to MAX_ANSWER_BYTES (`max_answer` for reading whole messages)."""
    plain = _BoundedHttp(timeout=timeout, ca_certs=ca_bundle())
    plain.max_answer = max_answer or MAX_ANSWER_BYTES
    plain.follow_redirects = False  # a send is never redirected: a 3xx is an answer (section 21)
    http = google_auth_httplib2.AuthorizedHttp(credentials, http=plain)
    options = {"api_endpoint": endpoint} if endpoint else None
    return build("gmail", "v1", http=http, client_options=options, cache_discovery=False, static_discovery=True)


MAX_ANSWER_BYTES = 64 * 1024   # of a Gmail answer: the rest is never read


class _CappedResponse(http.client.HTTPResponse):
    """An answer whose body is read up to `limit` bytes (MAX_ANSWER_BYTES): an answer that never ends
    cannot fill the memory. A longer one is cut and its connection dropped (never reused)."""
    limit = MAX_ANSWER_BYTES

    def read(self, amt: int | None = None) -> bytes:
        if amt is not None:
            return super().read(amt)
        data = super().read(self.limit + 1)
        if len(data) > self.limit:
            self.cut = True
            self.close()
            return data[:self.limit]
        return data


def _capped_connections(limit: int) -> tuple[type, type]:
    """httplib2 connection classes whose answers are read up to `limit` bytes."""
    response = type("CappedResponse", (_CappedResponse,), {"limit": limit})
    return (type("CappedHTTPS", (httplib2.HTTPSConnectionWithTimeout,), {"response_class": response}),
            type("CappedHTTP", (httplib2.HTTPConnectionWithTimeout,), {"response_class": response}))


class _BoundedHttp(httplib2.Http):
    """httplib2 for the Gmail API: answers capped at `max_answer` bytes; a connection that carried a
    cut answer is closed, not reused."""
    max_answer = MAX_ANSWER_BYTES

    def request(self, uri, method="GET", body=None, headers=None, redirections=httplib2.DEFAULT_MAX_REDIRECTS,
                connection_type=None):
        secure, plain = _capped_connections(self.max_answer)
        kind = connection_type or (secure if uri.lower().startswith("https:") else plain)
        response, content = super().request(uri, method, body, headers, redirections, kind)
        if len(content or b"") >= self.max_answer:
            for connection in list(self.connections.values()):
                connection.close()
            self.connections.clear()
        return response, content


def granted_gmail_scope(credentials) -> str:
    """For --check: a token that proves the gmail.send scope (a service account's delegation is proven
    by getting one). Raises GoogleSetupError."""
    request = token_request()
    try:
        run_within(GOOGLE_CALL_SECONDS, lambda: credentials.refresh(request))
    except TooSlowError:
        raise GoogleSetupError("Google's token endpoint gave no complete answer in time: check the network") from None
    except google.auth.exceptions.RefreshError as error:
        raise GoogleSetupError(f"Google refused a token for sending ({_first_line(error)}): for a service account, "
                               "allow domain-wide delegation of the gmail.send scope for its client id; for a user "
                               f"token, {AUTH_ADVICE} again") from None
    except google.auth.exceptions.TransportError as error:
        raise GoogleSetupError(f"cannot reach Google's token endpoint ({_first_line(error)})") from None
    return "gmail.send granted"


# ---------------------------------------------------------------- reading the sheet

SHEET_URL_ID = re.compile(r"/spreadsheets/d/([A-Za-z0-9_-]+)")


def sheet_id_from(text: str) -> str:
    """The spreadsheet id, also when the whole URL of the sheet was pasted."""
    match = SHEET_URL_ID.search(text)
    return match.group(1) if match else text.strip()


def build_service(credentials=None, api_key: str | None = None, endpoint: str | None = None):
    """The Sheets client; `endpoint` (SHEETS_API_ENDPOINT) replaces the API root (a proxy or a local test server)."""
    http = httplib2.Http(timeout=HTTP_TIMEOUT_SECONDS, ca_certs=ca_bundle())  # proxy from the environment
    if credentials is not None:
        http = google_auth_httplib2.AuthorizedHttp(credentials, http=http)
    options = {"api_endpoint": endpoint} if endpoint else None
    return build("sheets", "v4", http=http, developerKey=api_key, client_options=options,
                 cache_discovery=False, static_discovery=True)


def fetch_values(service, sheet_id: str, range_: str, account: str = "") -> list[list]:
    """values.get with unformatted values and serial-number dates, retried on 429 and 5xx."""
    return _values(service.spreadsheets().values(), sheet_id, range_, account)


def _values(values_api, sheet_id: str, range_: str, account: str) -> list[list]:
    request = values_api.get(spreadsheetId=sheet_id, range=range_, valueRenderOption="UNFORMATTED_VALUE",
                             dateTimeRenderOption="SERIAL_NUMBER")
    return valid_text_rows(_executed(request, sheet_id, range_, account).get("values", []))


def _executed(request, sheet_id: str, range_: str, account: str) -> dict:
    """A Sheets API request's answer, retried on 429 and 5xx, bounded as a whole in time; every
    failure one GoogleSetupError line."""
    try:
        return run_within(GOOGLE_CALL_SECONDS, lambda: request.execute(num_retries=SHEET_RETRIES))
    except TooSlowError:
        raise GoogleSetupError(f"the Google Sheets API gave no complete answer within {GOOGLE_CALL_SECONDS:g}s: check "
                               "the network and HTTPS_PROXY, or try again later") from None
    except HttpError as error:
        raise GoogleSetupError(explain_http_error(error, sheet_id, range_, account)) from None
    except google.auth.exceptions.RefreshError as error:
        raise GoogleSetupError(f"Google refused the credentials ({_first_line(error)}): {AUTH_ADVICE} again") from None
    except google.auth.exceptions.TransportError as error:
        raise GoogleSetupError(f"cannot reach Google's token endpoint ({_first_line(error)}): check the network "
                               f"or proxy settings; if it persists, {AUTH_ADVICE} again") from None
    except (httplib2.HttpLib2Error, OSError) as error:
        raise GoogleSetupError(f"cannot reach the Google Sheets API ({type(error).__name__}: {_first_line(error)}): "
                               "check the network, HTTPS_PROXY and the CA bundle settings") from None


def valid_text_rows(rows: list[list]) -> list[list]:
    """The rows with every cell valid text: JSON may carry a lone surrogate (\\ud800), which no
    encoder takes; it is read as U+FFFD, so one poisoned cell cannot stop every later run."""
    for row in rows:
        for index, cell in enumerate(row):
            if type(cell) is str and not cell.isascii():
                row[index] = cell.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return rows


def explain_http_error(error: HttpError, sheet_id: str, range_: str, account: str = "") -> str:
    status = error.resp.status
    if status == 400:
        return f"Google Sheets rejected the range {range_!r} ({error.reason}): check -range, e.g. Sheet1!A2:F"
    if status == 403:
        who = f"share the sheet with {account}" if account else "share the sheet with your Google account"
        return (f"access to sheet {sheet_id} denied ({error.reason}): {who}, and enable the Google Sheets API "
                "in the Google Cloud project")
    if status == 404:
        return f"spreadsheet {sheet_id!r} not found: check -sheetid (the id is the long part of the sheet's URL)"
    if status == 401:
        return f"Google did not accept the credentials (HTTP 401): {AUTH_ADVICE} again"
    return f"the Google Sheets API answered HTTP {status} ({error.reason}) after {SHEET_RETRIES} retries"


def read_sheet_rows(sheet_id: str, range_: str, *, credentials_path: Path, token_path: Path,
                    api_key: str | None = None, endpoint: str | None = None) -> Iterator[list]:
    """The report's rows, page by page, as process_ticket.py needs them. Raises GoogleSetupError,
    also while the rows are being iterated (a page that still fails after its retries)."""
    service, account = sheets_service(credentials_path, token_path, api_key, endpoint)
    grids = sheet_grids(service, sheet_id, range_, account)
    pages = page_ranges(range_, grids)
    if pages is None:  # a named range, or a sheet Google itself must explain: read whole
        yield from fetch_values(service, sheet_id, range_, account)
        return
    # One values resource for all the pages: each new one is megabytes of generated docstrings in a
    # reference cycle, which the paused garbage collector would keep until the end of the read.
    values_api = service.spreadsheets().values()
    last_row: list | None = None  # the previous page's last row, read again as the next page's first
    for number, (page, row_count) in enumerate(pages, 1):
        rows = _values(values_api, sheet_id, overlapping(page) if last_row is not None else page, account)
        if last_row is not None:
            if (rows[0] if rows else []) != last_row:
                raise GoogleSetupError(SHEET_CHANGED)
            rows = rows[1:]
        yield from rows
        if number < len(pages):
            last_row = rows[-1] if len(rows) == row_count else []
            if len(rows) < row_count:  # Sheets drops a page's trailing empty rows
                yield from repeat([], row_count - len(rows))
    if len(pages) > 1 and sheet_grids(service, sheet_id, range_, account) != grids:
        raise GoogleSetupError(SHEET_CHANGED)


SHEET_CHANGED = ("the sheet changed while it was read (rows added, deleted or sorted between two pages), so rows "
                 "could be missed: nothing was sent; run again when nobody is editing it")


def overlapping(page: str) -> str:
    """A page's A1 range starting one row earlier: the row read again proves that nothing moved."""
    sheet, cells = page.rsplit("!", 1)
    start, end = cells.split(":")
    letters = start.rstrip("0123456789")
    return f"{sheet}!{letters}{int(start[len(letters):]) - 1}:{end}"


@dataclass(frozen=True)
class Grid:
    title: str
    rows: int
    columns: int
    hidden: bool = False


def sheet_grids(service, sheet_id: str, range_: str = "", account: str = "") -> list[Grid]:
    """Each sheet's title and grid size, in order: one small spreadsheets.get with a fields mask."""
    request = service.spreadsheets().get(
        spreadsheetId=sheet_id, fields="sheets.properties(title,hidden,gridProperties(rowCount,columnCount))")
    answer = _executed(request, sheet_id, range_, account)
    grids = []
    for sheet in answer.get("sheets", []):
        properties = sheet.get("properties", {})
        size = properties.get("gridProperties", {})
        grids.append(Grid(str(properties.get("title", "")), int(size.get("rowCount", 0)), int(size.get("columnCount", 0)),
                          bool(properties.get("hidden", False))))
    return grids


def page_ranges(range_: str, grids: list[Grid], page_cells: int = PAGE_CELLS) -> list[tuple[str, int]] | None:
    """The A1 ranges that read `range_` in pages of at most `page_cells` cells, never past the grid's
    last row or column, each with its row count; None when `range_` is not of the form Sheet[!A1:F]
    (a named range). A range without a sheet means the first visible sheet, as for Google. A range
    that ends before it starts, or starts past the grid, is a GoogleSetupError (it would read nothing)."""
    titles = [grid.title for grid in grids]
    if "!" not in range_ and range_.strip() in titles:
        sheet, cells = range_.strip(), ""
    else:
        sheet, cells = split_a1_range(range_)
    if not grids or (sheet and sheet not in titles) or (not sheet and not cells):
        return None
    grid = grids[titles.index(sheet)] if sheet else next((grid for grid in grids if not grid.hidden), grids[0])
    try:
        first_row, first_column, last_row, last_column = a1_bounds(cells)
    except ValueError:
        return None
    first_row, first_column = first_row or 1, first_column or 1
    if (last_row and last_row < first_row) or (last_column and last_column < first_column):
        raise GoogleSetupError(f"-range {range_!r} ends before it starts: write it top-left first, e.g. Sheet1!A2:F")
    if first_row > grid.rows or first_column > grid.columns:
        raise GoogleSetupError(f"-range {range_!r} starts past the end of sheet {grid.title!r} ({grid.rows} rows, "
                               f"{grid.columns} columns): check -range")
    last_row, last_column = min(last_row or grid.rows, grid.rows), min(last_column or grid.columns, grid.columns)
    rows_per_page = max(1, page_cells // (last_column - first_column + 1))
    columns = (column_letters(first_column), column_letters(last_column))
    pages = []
    for start in range(first_row, last_row + 1, rows_per_page):
        end = min(start + rows_per_page - 1, last_row)
        pages.append((f"{quoted_sheet(grid.title)}!{columns[0]}{start}:{columns[1]}{end}", end - start + 1))
    return pages


def sheets_service(credentials_path: Path, token_path: Path, api_key: str | None, endpoint: str | None):
    """(the Sheets client, the service account's address or '') for an API key or the credential files."""
    if api_key:
        return build_service(api_key=api_key, endpoint=endpoint), ""
    credentials = load_credentials(credentials_path, token_path)
    return build_service(credentials, endpoint=endpoint), getattr(credentials, "service_account_email", "") or ""


def check_sheet_access(sheet_id: str, *, credentials_path: Path, token_path: Path, api_key: str | None = None,
                       endpoint: str | None = None) -> str:
    """The spreadsheet's title, asked with the run's credentials (for --check: no values are read)."""
    service, account = sheets_service(credentials_path, token_path, api_key, endpoint)
    request = service.spreadsheets().get(spreadsheetId=sheet_id, fields="properties.title")
    return _executed(request, sheet_id, "", account).get("properties", {}).get("title", sheet_id)


def _first_line(error: Exception) -> str:
    """The provider's own words of an error, never a Python tuple or dict: google-auth's RefreshError
    carries ('invalid_grant: ...', {...the answer...})."""
    first = error.args[0] if error.args else error
    if isinstance(first, dict):
        first = first.get("error_description") or first.get("error") or type(error).__name__
    text = str(first)
    return text.splitlines()[0] if text.strip() else type(error).__name__


# ---------------------------------------------------------------- the auth check

def preview(rows: list[list], count: int = 5) -> str:
    """The first rows as a small table, columns left-aligned under col 1, col 2..."""
    shown = [[str(cell) for cell in row] for row in rows[:count]]
    width = max((len(row) for row in shown), default=0)
    if not width:
        return "  (no rows)"
    table = [[f"col {i + 1}" for i in range(width)], *(row + [""] * (width - len(row)) for row in shown)]
    sizes = [max(len(row[i]) for row in table) for i in range(width)]
    return "\n".join("  " + "  ".join(cell.ljust(size) for cell, size in zip(row, sizes, strict=True)).rstrip()
                     for row in table)


def count_data_rows(rows: list[list]) -> int:
    """Non-empty rows, not counting a header row (recognised as process_ticket.py would)."""
    from ticket_core import cell_text, is_header_row

    filled = [row for row in rows if any(cell_text(cell) for cell in row)]
    return len(filled) - (1 if filled and is_header_row(filled[0], {}) else 0)


def delegation_steps(info: dict) -> str:
    """What a Google Workspace admin authorises so that a service account may send as a mailbox:
    its numeric client id and the scopes, under domain-wide delegation."""
    return (f"To send with Gmail as a Workspace mailbox, an admin authorises domain-wide delegation: Google Admin "
            f"console > Security > Access and data control > API controls > Manage domain-wide delegation > Add new, "
            f"client ID {info.get('client_id', '(the client_id in the key file)')}, OAuth scopes: {GMAIL_SEND} "
            f"(and {GMAIL_READONLY} to read bounces back)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="google_api.py", allow_abbrev=False,
                                     description="Authorise with Google once and check that the sheet can be read.")
    parser.add_argument("-sheetid", "--sheet-id", dest="sheet_id", help="spreadsheet id or URL to read as a check")
    parser.add_argument("-range", "--range", dest="range", default="Sheet1", help="A1 range (default: Sheet1)")
    parser.add_argument("--no-browser", action="store_true", help="print the consent URL instead of opening it")
    parser.add_argument("--gmail", action="store_true",
                        help="also ask to send email as you with Gmail (for --send-with gmail; also when SEND_WITH=gmail); "
                             "for a service account, print what domain-wide delegation needs")
    parser.add_argument("--read-bounces", action="store_true",
                        help="with --gmail: also ask to read the mailbox (gmail.readonly), to read bounces back "
                             "(also when READ_BOUNCES=yes)")
    parser.add_argument("--credentials", default=str(SCRIPT_DIR / "credential.json"), help="default: credential.json")
    parser.add_argument("--token", default=str(SCRIPT_DIR / "token.json"), help="default: token.json")
    args = parser.parse_args(argv)
    credentials_path, token_path = Path(args.credentials).absolute(), Path(args.token).absolute()
    need_gmail: bool | str = args.gmail or os.environ.get("SEND_WITH", "").strip().lower() == "gmail"
    if need_gmail and (args.read_bounces or os.environ.get("READ_BOUNCES", "").strip().lower() in ("yes", "true", "1")):
        need_gmail = "read"  # the sending mailbox's delivery reports are read too: gmail.readonly
    try:
        info = read_credential_file(credentials_path) if credentials_path.exists() or not token_path.exists() else {}
        if info.get("type") == "service_account":
            credentials = load_credentials(credentials_path, token_path)
            account = credentials.service_account_email
            print(f"Service account {account}: no consent needed; share the sheet with this address.")
            if need_gmail:
                print(delegation_steps(info))
        else:
            credentials = authorise_interactively(credentials_path, token_path, open_browser=not args.no_browser,
                                                  need_gmail=need_gmail)
            account = ""
            print(f"Authorised; token saved to {token_path}")
        if args.sheet_id:
            rows = list(read_sheet_rows(sheet_id_from(args.sheet_id), args.range, credentials_path=credentials_path,
                                        token_path=token_path, endpoint=os.environ.get("SHEETS_API_ENDPOINT")))
            print(f"First rows of {args.range}:\n{preview(rows)}")
            print(f"{count_data_rows(rows)} data rows")
    except GoogleSetupError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: authorisation cancelled", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
