"""The real google-api-python-client and google-auth against local servers (SHEETS_API_ENDPOINT)."""

import json
import os
import socket
import socketserver
import stat
import subprocess
import sys
import threading
import urllib.request
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from conftest import ROOT, Reply, WebhookServer, clean_env, free_port, read_state, run_cli, run_job
from google.oauth2.credentials import Credentials
from mail_standins import write_service_account

import google_api

SHEET_ID = "1AbCdEfGhIjKlMnOpQrStUvWxYz0123456789_-abc"
# What Sheets returns with UNFORMATTED_VALUE / SERIAL_NUMBER: numbers, serial dates, ragged and empty rows.
SHEET_ROWS = [
    ["Jane", "Doe", "jane@example.com", 1001, "Closed", 46346],        # 2026-11-20
    ["John", "Roe", "john@example.com", 1002, "closed", 46347.5],      # 2026-11-21 12:00
    [],
    ["Ann", "Lee", "ann@example.com", 1003, "Open"],                   # ragged: trailing cells dropped
    ["Bo", "Li", "bo@example.com", "B-7", "Closed", "22/11/2026"],
]


def values_reply(rows=SHEET_ROWS) -> Reply:
    return Reply(200, {"Content-Type": "application/json"},
                 body=json.dumps({"range": "Sheet1!A2:F", "majorDimension": "ROWS", "values": rows}).encode())


def error_reply(status: int, message: str, reason: str = "") -> Reply:
    error = {"code": status, "message": message, "status": reason or "ERROR"}
    return Reply(status, {"Content-Type": "application/json"}, body=json.dumps({"error": error}).encode())


TOKEN_REPLY = Reply(200, {"Content-Type": "application/json"},
                    body=json.dumps({"access_token": "fresh-token", "expires_in": 3600, "token_type": "Bearer"}).encode())


def grid_reply(rows=1000, columns=26, titles=("Sheet1",)) -> Reply:
    sheets = [{"properties": {"title": title, "gridProperties": {"rowCount": rows, "columnCount": columns}}}
              for title in titles]
    return Reply(200, {"Content-Type": "application/json"}, body=json.dumps({"sheets": sheets}).encode())


def sheets_api(received, index, rows=SHEET_ROWS) -> Reply:
    """The token endpoint, spreadsheets.get (the grid) and values.get."""
    if received.path.startswith("/token"):
        return TOKEN_REPLY
    if "/values/" not in received.path:
        return grid_reply()
    return values_reply(rows)


@pytest.fixture
def api(monkeypatch):
    server = WebhookServer()
    server.respond = sheets_api
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "GOOGLE_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    yield server
    server.close()


def sheet_requests(server):
    return [r for r in server.requests if "/values/" in r.path]


def write_user_token(path, token="valid-token", expiry=None, refresh_token="refresh-1"):
    expiry = expiry or datetime.now(timezone.utc) + timedelta(hours=1)
    path.write_text(json.dumps({
        "token": token, "refresh_token": refresh_token, "client_id": "id.apps.googleusercontent.com",
        "client_secret": "not-a-secret", "scopes": google_api.SCOPES,
        "expiry": expiry.strftime("%Y-%m-%dT%H:%M:%SZ")}))
    return path


def test_api_key_mode_reads_unformatted_values_with_serial_dates(api):
    rows = list(google_api.read_sheet_rows(SHEET_ID, "Sheet1!A2:F", credentials_path=None, token_path=None,
                                           api_key="k-123", endpoint=api.root))
    assert rows == SHEET_ROWS
    [request] = sheet_requests(api)
    url = urlsplit(request.path)
    assert unquote(url.path) == f"/v4/spreadsheets/{SHEET_ID}/values/'Sheet1'!A2:F1000"
    query = parse_qs(url.query)
    assert query["valueRenderOption"] == ["UNFORMATTED_VALUE"]
    assert query["dateTimeRenderOption"] == ["SERIAL_NUMBER"]
    assert query["key"] == ["k-123"]


def test_oauth_with_a_valid_saved_token(api, tmp_path):
    token = write_user_token(tmp_path / "token.json")
    list(google_api.read_sheet_rows(SHEET_ID, "A:F", credentials_path=tmp_path / "none.json", token_path=token,
                                    endpoint=api.root))
    assert sheet_requests(api)[0].headers["authorization"] == "Bearer valid-token"


def test_an_expired_token_is_refreshed_against_the_token_endpoint_and_saved_owner_only(api, tmp_path):
    token_path = tmp_path / "token.json"
    credentials = Credentials(token="old", refresh_token="refresh-1", token_uri=api.root + "token",
                              client_id="id", client_secret="s", scopes=google_api.SCOPES,
                              expiry=datetime.now() - timedelta(minutes=5))
    google_api.refresh_and_save(credentials, token_path)
    [refresh] = [r for r in api.requests if r.path == "/token"]
    assert parse_qs(refresh.body.decode())["grant_type"] == ["refresh_token"]
    assert json.loads(token_path.read_text())["token"] == "fresh-token"
    if os.name == "posix":
        assert stat.S_IMODE(token_path.stat().st_mode) == 0o600
    google_api.fetch_values(google_api.build_service(credentials, endpoint=api.root), SHEET_ID, "A:F")
    assert sheet_requests(api)[0].headers["authorization"] == "Bearer fresh-token"


def test_a_refused_refresh_becomes_the_advice_to_authorise_again(api, tmp_path):
    api.respond = lambda received, index: Reply(
        400, {"Content-Type": "application/json"},
        body=b'{"error": "invalid_grant", "error_description": "Token has been expired or revoked."}')
    credentials = Credentials(token="old", refresh_token="r", token_uri=api.root + "token", client_id="id",
                              client_secret="s", expiry=datetime.now() - timedelta(minutes=5))
    with pytest.raises(google_api.GoogleSetupError, match=r"refused to refresh.*run `python google_api.py`"):
        google_api.refresh_and_save(credentials, tmp_path / "token.json")
    assert not (tmp_path / "token.json").exists()


def test_service_account_key_signs_a_jwt_for_the_local_token_endpoint(api, tmp_path):
    key_file = write_service_account(tmp_path / "credential.json", api.root + "token")
    rows = list(google_api.read_sheet_rows(SHEET_ID, "A:F", credentials_path=key_file,
                                           token_path=tmp_path / "token.json", endpoint=api.root))
    assert rows == SHEET_ROWS
    [exchange] = [r for r in api.requests if r.path == "/token"]
    assert parse_qs(exchange.body.decode())["grant_type"] == ["urn:ietf:params:oauth:grant-type:jwt-bearer"]
    assert sheet_requests(api)[0].headers["authorization"] == "Bearer fresh-token"
    assert not (tmp_path / "token.json").exists()


def test_429_then_success_is_retried(api):
    api.respond = lambda received, index: error_reply(429, "Quota exceeded") if index == 1 else sheets_api(received, index)
    rows = list(google_api.read_sheet_rows(SHEET_ID, "A:F", credentials_path=None, token_path=None, api_key="k",
                                           endpoint=api.root))
    assert rows == SHEET_ROWS and len(sheet_requests(api)) == 2


def test_403_with_a_service_account_names_the_address_to_share_with(api, tmp_path):
    key_file = write_service_account(tmp_path / "credential.json", api.root + "token")
    api.respond = lambda received, index: TOKEN_REPLY if received.path == "/token" else \
        error_reply(403, "The caller does not have permission", "PERMISSION_DENIED")
    with pytest.raises(google_api.GoogleSetupError, match="share the sheet with notifier@demo.iam.gserviceaccount.com"):
        list(google_api.read_sheet_rows(SHEET_ID, "A:F", credentials_path=key_file,
                                            token_path=tmp_path / "t.json", endpoint=api.root))


def google_cli(api, tmp_path, *extra, env_extra=None, sheet=SHEET_ID):
    env = clean_env(SHEETS_API_ENDPOINT=api.root, **(env_extra or {}))
    return run_job("-sheetid", sheet, "-range", "Sheet1!A2:F", "--state-file", str(tmp_path / "s.json"),
                   "--credentials", str(tmp_path / "credential.json"), "--token", str(tmp_path / "token.json"),
                   *extra, env=env)


@pytest.mark.parametrize(("status", "message"), [
    (400, "rejected the range 'Sheet1!A2:F'"),
    (403, "access to sheet"),
    (404, f"spreadsheet '{SHEET_ID}' not found: check -sheetid"),
])
def test_sheet_errors_become_one_line_each(api, tmp_path, status, message):
    api.respond = lambda received, index: error_reply(status, "nope")
    result = google_cli(api, tmp_path, "-testmode", "yes", env_extra={"GOOGLE_API_KEY": "k"})
    assert result.returncode == 2
    assert message in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_cli_reads_the_sheet_by_url_with_a_service_account_and_sends(api, tmp_path):
    write_service_account(tmp_path / "credential.json", api.root + "token")
    webhook = WebhookServer()
    try:
        url = f"https://docs.google.com/spreadsheets/d/{SHEET_ID}/edit#gid=0"
        result = google_cli(api, tmp_path, "-webhook_url", webhook.url, "-testmode", "no", "--since", "20/11/2026",
                            sheet=url)
        assert result.returncode == 0, result.stderr
        payloads = {p["email_address"]: p["tickets"] for p in webhook.payloads()}
    finally:
        webhook.close()
    assert payloads == {
        "jane@example.com": [{"ticket": "1001", "status": "Closed", "closed_date": "2026-11-20"}],
        "john@example.com": [{"ticket": "1002", "status": "Closed", "closed_date": "2026-11-21T12:00:00"}],
        "bo@example.com": [{"ticket": "B-7", "status": "Closed", "closed_date": "2026-11-22"}],
    }
    assert "Rows read                4" in result.stdout
    assert read_state(tmp_path / "s.json")["last_run_date"] == "22/11/2026"


def test_without_a_token_the_cli_exits_2_at_once_with_the_advice(api, tmp_path):
    result = google_cli(api, tmp_path, "-testmode", "yes")   # stdin is closed; a prompt would fail or hang
    assert result.returncode == 2
    assert "not authorised with Google yet" in result.stderr and "python google_api.py" in result.stderr
    assert api.requests == []


def test_an_unreachable_token_endpoint_exits_2_with_the_same_advice(api, tmp_path):
    write_user_token(tmp_path / "token.json", expiry=datetime.now(timezone.utc) - timedelta(hours=1))
    closed_port = free_port()
    result = google_cli(api, tmp_path, "-testmode", "yes", env_extra={"HTTPS_PROXY": f"http://127.0.0.1:{closed_port}"})
    assert result.returncode == 2
    assert "cannot reach Google's token endpoint" in result.stderr and "python google_api.py" in result.stderr


class ForwardProxy:
    """A minimal HTTP proxy on 127.0.0.1: CONNECT tunnels and absolute-form requests, all sent
    to one upstream port, so tests see that traffic really went through the proxy."""

    def __init__(self, upstream_port: int) -> None:
        self.request_lines: list[str] = []
        proxy = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                client = self.request
                head = b""
                while b"\r\n\r\n" not in head:
                    chunk = client.recv(4096)
                    if not chunk:
                        return
                    head += chunk
                proxy.request_lines.append(head.split(b"\r\n", 1)[0].decode())
                upstream = socket.create_connection(("127.0.0.1", upstream_port))
                if head.startswith(b"CONNECT "):
                    client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    head = head.split(b"\r\n\r\n", 1)[1]
                upstream.sendall(head)
                pump = threading.Thread(target=self.copy, args=(upstream, client), daemon=True)
                pump.start()
                self.copy(client, upstream)
                pump.join(5)

            @staticmethod
            def copy(source, target) -> None:
                try:
                    while data := source.recv(65536):
                        target.sendall(data)
                except OSError:
                    pass
                finally:
                    for sock in (source, target):
                        try:
                            sock.shutdown(socket.SHUT_RDWR)
                        except OSError:
                            pass

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_google_and_webhook_traffic_go_through_the_proxy_from_the_environment(api, tmp_path):
    webhook = WebhookServer()
    sheets_proxy, webhook_proxy = ForwardProxy(api.httpd.server_address[1]), ForwardProxy(webhook.httpd.server_address[1])
    try:
        # Hosts that do not resolve here: only a proxy can reach them.
        # Only a proxy can reach these: nothing listens on 127.0.0.2:80 (plain http is allowed only to this
        # machine, section 22), and the webhook's host does not resolve.
        env = clean_env(SHEETS_API_ENDPOINT="http://127.0.0.2/", GOOGLE_API_KEY="k",
                        HTTP_PROXY=sheets_proxy.url)
        env_webhook = {**env, "HTTP_PROXY": webhook_proxy.url}
        result = run_job("-sheetid", SHEET_ID, "--state-file", str(tmp_path / "s.json"), "-testmode", "yes", env=env)
        assert result.returncode == 0, result.stderr
        assert [line.rsplit(" ", 1)[0] for line in sheets_proxy.request_lines] == ["CONNECT 127.0.0.2:80"]
        assert "Would email 3 customers" in result.stdout
        result = run_job("--report", str(write_report(tmp_path)), "--state-file", str(tmp_path / "s.json"),
                         "-webhook_url", "http://hooks.proxied.test/notify", "--allow-http", "-testmode", "no",
                         "--since", "20/11/2026", env=env_webhook)
        assert result.returncode == 0, result.stderr
        assert webhook_proxy.request_lines == ["POST http://hooks.proxied.test/notify HTTP/1.1"]
        assert webhook.emails() == ["jane@example.com"]
        # NO_PROXY sends a listed host directly.
        direct = run_job("--report", str(write_report(tmp_path, ticket="2")), "--state-file", str(tmp_path / "s.json"),
                         "-webhook_url", webhook.url, "-testmode", "no", "--min-days-between-emails", "0",
                         env={**env_webhook, "NO_PROXY": "127.0.0.1"})
        assert direct.returncode == 0, direct.stderr
        assert len(webhook_proxy.request_lines) == 1 and len(webhook.requests) == 2
    finally:
        for server in (sheets_proxy, webhook_proxy, webhook):
            server.close()


def write_report(tmp_path, ticket="1"):
    path = tmp_path / "r.csv"
    path.write_text(f"Email,Ticket,Status,Date\njane@example.com,{ticket},Closed,21/11/2026\n", encoding="utf-8")
    return path


def test_auth_check_with_a_valid_token_shows_the_first_rows_and_the_count(api, tmp_path):
    write_user_token(tmp_path / "token.json")
    result = run_cli("-sheetid", SHEET_ID, "-range", "Sheet1!A2:F", "--token", str(tmp_path / "token.json"),
                     "--credentials", str(tmp_path / "credential.json"), "--no-browser",
                     script="google_api.py", env=clean_env(SHEETS_API_ENDPOINT=api.root))
    assert result.returncode == 0, result.stderr
    assert "jane@example.com" in result.stdout
    assert "4 data rows" in result.stdout


def test_auth_check_without_credentials_exits_2_without_waiting(tmp_path):
    result = run_cli("--credentials", str(tmp_path / "missing.json"), "--token", str(tmp_path / "t.json"),
                     "--no-browser", script="google_api.py", timeout=30)
    assert result.returncode == 2
    assert "no Google credential file" in result.stderr


def test_auth_check_consent_flow_saves_an_owner_only_token(api, tmp_path):
    """The one-off consent, with the browser played by this test: Google's consent page and token
    endpoint are the local server, as the client file says."""
    client = {"installed": {"client_id": "id.apps.googleusercontent.com", "client_secret": "not-a-secret",
                            "auth_uri": api.root + "auth", "token_uri": api.root + "token",
                            "redirect_uris": ["http://localhost"]}}
    (tmp_path / "credential.json").write_text(json.dumps(client))
    api.respond = lambda received, index: Reply(200, {"Content-Type": "application/json"}, body=json.dumps({
        "access_token": "consented", "refresh_token": "refresh-9", "expires_in": 3600, "token_type": "Bearer",
        "scope": google_api.SCOPES[0]}).encode()) if received.path == "/token" else values_reply()
    env = clean_env(SHEETS_API_ENDPOINT=api.root, PYTHONUNBUFFERED="1", OAUTHLIB_INSECURE_TRANSPORT="1")
    process = subprocess.Popen([sys.executable, str(ROOT / "google_api.py"), "--no-browser", "-sheetid", SHEET_ID,
                                "--credentials", str(tmp_path / "credential.json"), "--token", str(tmp_path / "token.json")],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, env=env)
    try:
        consent_url = next(word for line in process.stdout for word in line.split() if word.startswith("http"))
        query = parse_qs(urlsplit(consent_url).query)
        assert consent_url.startswith(api.root + "auth?") and query["scope"] == [" ".join(google_api.SCOPES)]  # no Gmail
        # The browser, after the user said yes: Google redirects back to the local port.
        urllib.request.urlopen(f"{query['redirect_uri'][0]}?state={query['state'][0]}&code=the-code", timeout=10).read()
        rest, errors = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 0, errors
    assert "4 data rows" in rest
    saved = json.loads((tmp_path / "token.json").read_text())
    assert (saved["token"], saved["refresh_token"]) == ("consented", "refresh-9")
    if os.name == "posix":
        assert stat.S_IMODE((tmp_path / "token.json").stat().st_mode) == 0o600
    exchange = next(r for r in api.requests if r.path == "/token")
    assert parse_qs(exchange.body.decode())["code"] == ["the-code"]


def test_a_lone_surrogate_in_a_sheet_cell_is_read_as_a_replacement_character_and_everyone_is_notified(api, tmp_path):
    body = (b'{"range": "Sheet1!A2:F", "majorDimension": "ROWS", "values": ['
            b'["Bad\\ud800name", "X", "bad@example.com", 1, "Closed", 46346], '
            b'["Jane", "Doe", "jane@example.com", 2, "Closed", 46346]]}')
    api.respond = lambda received, index: Reply(200, {"Content-Type": "application/json"}, body=body)
    webhook = WebhookServer()
    try:
        result = google_cli(api, tmp_path, "-webhook_url", webhook.url, "-testmode", "no", "--since", "20/11/2026",
                            env_extra={"GOOGLE_API_KEY": "k"})
        assert result.returncode == 0, result.stderr
        assert sorted(webhook.emails()) == ["bad@example.com", "jane@example.com"]
        bad = next(payload for payload in webhook.payloads() if payload["email_address"] == "bad@example.com")
        assert bad["full_name"] == "Bad\ufffdname X"
    finally:
        webhook.close()
