"""Email directly over SMTP (contract section 10) against a real SMTP server (aiosmtpd) with TLS made here."""

import os
import signal
import subprocess
import sys
import time
from datetime import date, timedelta

import pytest
from conftest import ROOT, RawServer, clean_env, free_port, read_state, run_job, write_csv, write_state
from mail_standins import PASSWORD, SMTP_FROM, SMTP_ROWS, USER, run_smtp, smtp_env

TODAY = date.today()
RECENT = (TODAY - timedelta(days=3)).strftime("%d/%m/%Y")
SINCE = (TODAY - timedelta(days=10)).strftime("%d/%m/%Y")
def test_starttls_with_auth_delivers_one_email_per_customer_with_every_header(tmp_path, smtp_server, certificates):
    recorder, port = smtp_server("starttls")
    log_file = tmp_path / "run.log"
    url = f"smtp://{USER.replace('@', '%40')}@localhost:{port}"
    result = run_smtp(tmp_path, url, "--cc", "audit@example.com", "--reply-to", "help@example.com",
                      "--log-file", str(log_file), "-v", env=smtp_env(certificates))
    assert result.returncode == 0, result.stderr
    assert sorted(recorder.recipients()) == ["ann@example.com", "jane@example.com", "john@example.com"]
    jane = next(m for m in recorder.messages if m["to"][0] == "jane@example.com")
    assert jane["from"] == "support@example.com" and jane["to"] == ["jane@example.com", "audit@example.com"]
    message = jane["message"]
    assert message["From"] == SMTP_FROM and message["To"] == "Jane Doe <jane@example.com>"
    assert message["Cc"] == "audit@example.com" and message["Reply-To"] == "help@example.com"
    assert message["Subject"] == "Your support tickets have been closed"
    assert message["Auto-Submitted"] == "auto-generated" and message["Date"]
    assert message["Message-ID"].endswith("@example.com>")
    body = message.get_body(("plain",))
    assert body.get_content_charset() == "utf-8" and "1001" in body.get_content() and "1002" in body.get_content()
    assert "2001" not in body.get_content()
    assert len(recorder.sessions) <= 4 and recorder.quits >= 1
    shown = result.stdout + result.stderr + log_file.read_text()
    assert PASSWORD not in shown and USER not in shown
    assert len(read_state(tmp_path / "s.json")["last_emailed"]) == 3


def test_smtps_with_login_only_and_the_message_id_is_the_same_on_a_rerun(tmp_path, smtp_server, certificates):
    recorder, port = smtp_server("smtps", auth_exclude_mechanism=["PLAIN"])
    env = smtp_env(certificates, SMTP_USERNAME=USER)
    first = run_smtp(tmp_path, f"smtps://127.0.0.1:{port}", env=env, rows=SMTP_ROWS[2:3])
    assert first.returncode == 0, first.stderr
    rerun = run_smtp(tmp_path, f"smtps://127.0.0.1:{port}", "--since", SINCE, "--min-days-between-emails", "0",
                     env=env, rows=SMTP_ROWS[2:3], state=tmp_path / "other.json")
    assert rerun.returncode == 0
    ids = [m["message"]["Message-ID"] for m in recorder.messages]
    assert len(ids) == 2 and ids[0] == ids[1]


def test_one_connection_per_worker_is_reused_and_closed_with_quit(tmp_path, smtp_server, certificates):
    recorder, port = smtp_server("starttls")
    rows = [[f"N{i}", "X", f"c{i}@example.com", str(i), "Closed", RECENT] for i in range(8)]
    result = run_smtp(tmp_path, f"smtp://{USER}@localhost:{port}".replace(f"{USER}@", "u@"), "--workers", "2",
                      env=smtp_env(certificates, SMTP_PASSWORD="x"), rows=rows)
    assert result.returncode == 2 and "refused the SMTP login" in result.stderr
    assert recorder.messages == []
    result = run_smtp(tmp_path, f"smtp://localhost:{port}", "--workers", "2",
                      env=smtp_env(certificates, SMTP_USERNAME=USER), rows=rows, state=tmp_path / "s2.json")
    assert result.returncode == 0, result.stderr
    assert len(recorder.messages) == 8 and len(recorder.sessions) == 2 and recorder.quits == 2


def test_an_untrusted_certificate_stops_the_run_before_any_email(tmp_path, smtp_server, certificates):
    recorder, port = smtp_server("starttls")
    env = clean_env(SMTP_PASSWORD=PASSWORD, SMTP_USERNAME=USER)
    result = run_smtp(tmp_path, f"smtp://localhost:{port}", env=env)
    assert result.returncode == 2 and "is not signed by an authority this machine trusts" in result.stderr
    assert recorder.messages == [] and PASSWORD not in result.stderr


def test_a_host_name_the_certificate_does_not_name_stops_the_run(tmp_path, smtp_server, certificates):
    recorder, port = smtp_server("smtps", host="127.0.0.2")   # the certificate names localhost and 127.0.0.1
    env = smtp_env(certificates, SMTP_USERNAME=USER)
    result = run_smtp(tmp_path, f"smtps://127.0.0.2:{port}", env=env)
    assert result.returncode == 2 and "is for another name" in result.stderr
    assert recorder.messages == []


def test_a_local_relay_without_tls_or_auth_takes_the_emails(tmp_path, smtp_server):
    recorder, port = smtp_server("plain", authenticator=None)
    result = run_smtp(tmp_path, f"smtp://127.0.0.1:{port}", env=clean_env())
    assert result.returncode == 0, result.stderr
    assert len(recorder.messages) == 3


def test_a_remote_server_without_starttls_is_refused(monkeypatch, smtp_server):
    import url_rules
    from delivery import STOP
    from smtp_route import SmtpRoute

    recorder, port = smtp_server("plain", authenticator=None)
    monkeypatch.setattr(url_rules, "is_loopback", lambda host: False)
    channel = SmtpRoute(f"smtp://127.0.0.1:{port}", username=None, password=None, timeout=5).open_channel()
    answer = channel.attempt(None)
    assert answer.kind == STOP and "does not offer STARTTLS" in answer.detail


def test_a_recipient_refused_for_good_is_rejected_and_the_others_go(tmp_path, smtp_server, certificates):
    recorder, port = smtp_server("starttls")
    recorder.rcpt_reply = lambda address, attempt: "550 5.1.1 user unknown" if address == "john@example.com" else None
    result = run_smtp(tmp_path, f"smtp://localhost:{port}", env=smtp_env(certificates, SMTP_USERNAME=USER))
    assert result.returncode == 1
    assert "rejected john@example.com (2001): localhost:" in result.stderr and "550 5.1.1 user unknown" in result.stderr
    assert sorted(recorder.recipients()) == ["ann@example.com", "jane@example.com"]
    assert "john@example.com" in (tmp_path / "rejected.csv").read_text(encoding="utf-8-sig")


def test_a_message_refused_at_data_is_rejected(tmp_path, smtp_server, certificates):
    recorder, port = smtp_server("starttls")
    recorder.data_reply = lambda envelope: "554 5.6.0 content refused" if "ann@example.com" in envelope.rcpt_tos else None
    result = run_smtp(tmp_path, f"smtp://localhost:{port}", env=smtp_env(certificates, SMTP_USERNAME=USER))
    assert result.returncode == 1 and "rejected ann@example.com" in result.stderr and "554" in result.stderr


def test_the_first_three_recipients_refused_alike_stop_the_run_and_stay_pending(tmp_path, smtp_server, certificates):
    recorder, port = smtp_server("starttls")
    recorder.rcpt_reply = lambda address, attempt: "550 5.7.1 relaying denied"
    rows = [[f"N{i}", "X", f"c{i}@example.com", str(i), "Closed", RECENT] for i in range(5)]
    result = run_smtp(tmp_path, f"smtp://localhost:{port}", "--workers", "1", env=smtp_env(certificates, SMTP_USERNAME=USER),
                      rows=rows)
    assert result.returncode == 2 and "refused the first 3 customers alike" in result.stderr
    assert read_state(tmp_path / "s.json")["rejected"] == {}


def test_a_temporary_refusal_is_retried_and_then_delivered(tmp_path, smtp_server, certificates, quick_backoff):
    recorder, port = smtp_server("starttls")
    recorder.rcpt_reply = lambda address, attempt: "451 4.7.1 greylisted, try again" if attempt == 1 else None
    result = run_smtp(tmp_path, f"smtp://localhost:{port}", env=smtp_env(certificates, SMTP_USERNAME=USER), rows=SMTP_ROWS[3:])
    assert result.returncode == 0, result.stderr
    assert recorder.recipients() == ["ann@example.com"]


def test_a_refused_sender_stops_the_run(tmp_path, smtp_server, certificates):
    recorder, port = smtp_server("starttls")
    recorder.mail_reply = lambda address: "553 5.7.1 sender not allowed"
    result = run_smtp(tmp_path, f"smtp://localhost:{port}", "--workers", "1", env=smtp_env(certificates, SMTP_USERNAME=USER))
    assert result.returncode == 2 and "refused the sender" in result.stderr
    assert "Customers not attempted  2" in result.stdout


def test_a_refused_cc_is_a_warning_and_the_customer_still_gets_the_email(tmp_path, smtp_server, certificates):
    recorder, port = smtp_server("starttls")
    recorder.rcpt_reply = lambda address, attempt: "550 no such user" if address == "audit@example.com" else None
    result = run_smtp(tmp_path, f"smtp://localhost:{port}", "--cc", "audit@example.com",
                      env=smtp_env(certificates, SMTP_USERNAME=USER))
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("refused the --cc address audit@example.com") == 1
    assert len(recorder.messages) == 3 and all(m["to"] == [m["to"][0]] for m in recorder.messages)


def test_a_non_ascii_address_without_smtputf8_is_rejected_and_with_it_delivered(tmp_path, smtp_server, certificates):
    rows = [["Jürgen", "Straß", "jürgen@example.com", "1", "Closed", RECENT],
            ["Ann", "Lee", "ann@example.com", "2", "Closed", RECENT]]
    recorder, port = smtp_server("starttls", enable_SMTPUTF8=False)
    result = run_smtp(tmp_path, f"smtp://localhost:{port}", env=smtp_env(certificates, SMTP_USERNAME=USER), rows=rows)
    assert result.returncode == 1 and "rejected jürgen@example.com" in result.stderr and "SMTPUTF8" in result.stderr
    recorder, port = smtp_server("starttls", enable_SMTPUTF8=True)
    result = run_smtp(tmp_path, f"smtp://localhost:{port}", env=smtp_env(certificates, SMTP_USERNAME=USER), rows=rows,
                      state=tmp_path / "s2.json")
    assert result.returncode == 0, result.stderr
    jurgen = next(m for m in recorder.messages if m["to"] == ["jürgen@example.com"])
    assert jurgen["message"]["To"] == "Jürgen Straß <jürgen@example.com>" and "SMTPUTF8" in jurgen["options"]


def test_a_name_with_a_line_break_cannot_add_a_header(tmp_path, smtp_server, certificates):
    recorder, port = smtp_server("starttls")
    rows = [["Eve\r\nBcc: victim@example.net", "X", "eve@example.com", "1", "Closed", RECENT]]
    result = run_smtp(tmp_path, f"smtp://localhost:{port}", env=smtp_env(certificates, SMTP_USERNAME=USER), rows=rows)
    assert result.returncode == 0, result.stderr
    message = recorder.messages[0]["message"]
    assert message["Bcc"] is None and recorder.messages[0]["to"] == ["eve@example.com"]


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")
def test_a_kill_mid_run_loses_nothing_and_the_rerun_repeats_only_the_one_in_flight(tmp_path, smtp_server, certificates):
    recorder, port = smtp_server("starttls")
    process = {}
    rows = [[f"N{i}", "X", f"c{i}@example.com", str(i), "Closed", RECENT] for i in range(5)]

    def data_reply(envelope):
        if len(recorder.messages) == 2 and process["cli"].returncode is None:
            os.kill(process["cli"].pid, signal.SIGKILL)
            time.sleep(0.2)
        return None

    recorder.data_reply = data_reply
    report = write_csv(tmp_path / "r.csv", rows)
    state = write_state(tmp_path / "s.json", {"last_run_date": SINCE})
    args = ["--report", str(report), "--state-file", str(state), "--smtp-url", f"smtp://localhost:{port}", "--from", SMTP_FROM,
            "-testmode", "no", "--workers", "1"]
    env = smtp_env(certificates, SMTP_USERNAME=USER)
    process["cli"] = subprocess.Popen([sys.executable, str(ROOT / "process_ticket.py"), *args], env=env,
                                      stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process["cli"].wait(timeout=60)
    assert process["cli"].returncode == -signal.SIGKILL   # the kill happened: the test is about what it left
    rerun = run_job(*args, "--min-days-between-emails", "0", env=env)
    assert rerun.returncode == 0, rerun.stderr
    received = recorder.recipients()
    assert sorted(set(received)) == [f"c{i}@example.com" for i in range(5)]
    repeated = [address for address in set(received) if received.count(address) > 1]
    assert len(repeated) <= 1
    ids = {m["message"]["Message-ID"] for m in recorder.messages if m["to"][0] in repeated}
    assert len(ids) <= 1


def test_max_per_minute_spaces_the_messages_evenly(tmp_path, smtp_server, certificates):
    recorder, port = smtp_server("starttls")
    arrivals = []
    recorder.data_reply = lambda envelope: arrivals.append(time.monotonic())
    result = run_smtp(tmp_path, f"smtp://localhost:{port}", "--max-per-minute", "120", "--workers", "3",
                      env=smtp_env(certificates, SMTP_USERNAME=USER))
    assert result.returncode == 0, result.stderr
    assert len(arrivals) == 3   # the spacing itself: test_rules' limiter test, on a clock it controls


def test_test_mode_connects_to_nothing_but_needs_from(tmp_path):
    report = write_csv(tmp_path / "r.csv", SMTP_ROWS)
    url = f"smtp://127.0.0.1:{free_port()}"
    missing_from = run_job("--report", str(report), "--since", SINCE, "--smtp-url", url, "-testmode", "yes")
    assert missing_from.returncode == 2 and "--from is required" in missing_from.stderr
    result = run_job("--report", str(report), "--since", SINCE, "--smtp-url", url, "--from", SMTP_FROM, "-testmode", "yes")
    assert result.returncode == 0 and "Would email 3 customers" in result.stdout


@pytest.mark.parametrize("url, env, message", [
    ("smtp://user:s3cretPW@smtp.example.com:587", {}, "holds a password"),
    ("smtp://user:@smtp.example.com", {}, "holds a password"),
    ("smtp://user@smtp.example.com", {}, "SMTP_PASSWORD is not"),
    ("smtp://smtp.example.com:99999", {}, "cannot be parsed"),
    ("smtp://[::1:25", {}, "cannot be parsed"),
    ("smtpx://smtp.example.com", {}, "must start with smtp:// or smtps://"),
    ("smtp://smtp.example.com:465", {}, "use smtps://host:465"),
    ("smtp://smtp.example.com", {"WEBHOOK_URL": "https://hooks.example.com/x"}, "give one destination"),
    ("smtp://user@smtp.example.com", {"SMTP_PASSWORD": "s3cretPWé"}, "SMTP_PASSWORD must be printable ASCII"),
])
def test_smtp_settings_that_cannot_work_are_usage_errors_without_echo(tmp_path, url, env, message):
    report = write_csv(tmp_path / "r.csv", SMTP_ROWS)
    result = run_job("--report", str(report), "--state-file", str(tmp_path / "s.json"), "--since", SINCE,
                     "--smtp-url", url, "--from", SMTP_FROM, "-testmode", "no", env=clean_env(**env))
    assert result.returncode == 2 and message in result.stderr
    assert "s3cretPW" not in result.stderr and len(result.stderr.splitlines()) == 1


def test_check_logs_in_to_the_smtp_server_and_sends_nothing(tmp_path, smtp_server, certificates):
    recorder, port = smtp_server("starttls")
    report = write_csv(tmp_path / "r.csv", SMTP_ROWS)
    args = ("--check", "--report", str(report), "--state-file", str(tmp_path / "s.json"),
            "--smtp-url", f"smtp://localhost:{port}", "--from", SMTP_FROM)
    result = run_job(*args, env=smtp_env(certificates, SMTP_USERNAME=USER))
    assert result.returncode == 0, result.stdout
    assert f"ok    destination: SMTP server localhost:{port} answers: EHLO, TLS verified, logged in" in result.stdout
    wrong = run_job(*args, env=smtp_env(certificates, SMTP_USERNAME=USER, SMTP_PASSWORD="wrong-password"))
    assert wrong.returncode == 2 and "refused the SMTP login (535" in wrong.stdout
    assert "wrong-password" not in wrong.stdout + wrong.stderr and recorder.messages == []


def test_a_greeting_that_trickles_in_is_cut_at_the_timeout(tmp_path):
    def trickle(connection, server):
        while not server.stopped.is_set():
            connection.sendall(b"2")
            time.sleep(0.1)

    server = RawServer(trickle, read_request=False)
    port = server.sock.getsockname()[1]
    started = time.monotonic()
    try:
        result = run_smtp(tmp_path, f"smtp://127.0.0.1:{port}", "--timeout", "1", "--retries", "0", "--workers", "1",
                          env=clean_env(), rows=SMTP_ROWS[3:])
    finally:
        server.close()
    assert result.returncode == 1 and "gave no complete answer within 1s" in result.stderr
    assert time.monotonic() - started < 20


def test_a_connection_the_server_dropped_while_idle_is_reopened_within_the_same_attempt(tmp_path, smtp_server,
                                                                                       certificates):
    recorder, port = smtp_server("starttls", timeout=0.5)          # the server drops a connection idle for 0.5 s
    result = run_smtp(tmp_path, f"smtp://localhost:{port}", "--retries", "0", "--workers", "1",
                      "--max-per-minute", "60", env=smtp_env(certificates, SMTP_USERNAME=USER))   # 1 s apart
    assert result.returncode == 0, result.stderr
    assert len(recorder.messages) == 3 and len(recorder.sessions) == 3


def test_every_connection_ends_with_quit_also_when_a_refusal_stops_the_run(tmp_path, smtp_server, certificates):
    recorder, port = smtp_server("starttls")
    recorder.mail_reply = lambda address: "553 5.7.1 sender not allowed"
    result = run_smtp(tmp_path, f"smtp://localhost:{port}", env=smtp_env(certificates, SMTP_USERNAME=USER))
    assert result.returncode == 2 and recorder.sessions
    assert recorder.quits >= len(recorder.sessions)   # no "lost connection after MAIL" in the server's log
