"""Sending as the team's own mailbox (contract section 18): the Gmail API through the real
google-api-python-client, and Microsoft Graph with a token from the real msal over HTTPS, both served
here on 127.0.0.1."""

import base64
import email
import email.policy
import json

import pytest
from conftest import Reply, read_state, run_job, write_csv
from cryptography.hazmat.primitives.asymmetric import rsa
from mail_standins import (
    FROM,
    RECENT,
    ROWS,
    SECRET,
    SINCE,
    certificate_file,
    json_reply,
    run,
    write_service_account,
    write_user_token,
)

import google_api


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
    preview = run_job("--report", str(tmp_path / "r.csv"), "--from", FROM, "--send-with", "gmail", "-testmode", "yes",
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
    result = run_job("--report", str(report), "--send-with", "gmail", "-testmode", "yes", env=gmail.env())
    assert result.returncode == 2 and "--from is required with gmail" in result.stderr
    result = run(tmp_path, "--send-with", "gmail", "-testmode", "no", "--api-key", "AIzaKEYKEYKEY", env=gmail.env())
    assert result.returncode == 2 and "cannot send email" in result.stderr and "AIzaKEYKEYKEY" not in result.stderr


def test_check_gets_a_gmail_token_without_sending(tmp_path, gmail):
    write_service_account(tmp_path / "credential.json", gmail)
    result = run(tmp_path, "--check", "--send-with", "gmail", env=gmail.env())
    assert "ok    destination: Gmail: gmail.send granted" in result.stdout, result.stdout
    assert gmail.sent == [] and len(gmail.tokens) == 1


# ---------------------------------------------------------------- Microsoft 365

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
    pem = certificate_file(tmp_path / "app.pem", rsa.generate_private_key(public_exponent=65537, key_size=2048))
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
