"""The whole weekly job through the real CLI in a subprocess, against a real HTTP server on 127.0.0.1."""

import json
import shutil
import subprocess
import sys
from datetime import date, timedelta

import pytest
from conftest import ROOT, Reply, clean_env, read_state, run_cli, run_job, webhook_run, write_csv, write_state

EXAMPLE = ROOT / "examples" / "weekly_report.csv"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

ROWS = [
    ["Jane", "Doe", "jane@example.com", "1001", "Closed", "20/11/2026"],
    ["Jane", "Doe", "jane@example.com", "1002", "Closed", "21/11/2026 10:30"],
    ["John", "Roe", "john@example.com", "2001", "Closed", "22/11/2026"],
    ["Ann", "Lee", "ann@example.com", "3001", "Closed", "19/11/2026"],   # before last_run_date
    ["Ann", "Lee", "ann@example.com", "3002", "Open", "24/11/2026"],
    ["Bo", "Li", "bo@example.com", "4001", "closed ", "23/11/2026"],
]


@pytest.fixture
def report(tmp_path):
    return write_csv(tmp_path / "report.csv", ROWS)


@pytest.fixture
def state(tmp_path):
    (tmp_path / "state").mkdir()
    return write_state(tmp_path / "state" / "last_run_date.json", {"last_run_date": "20/11/2026"})


def test_quick_start_example_in_test_mode_shows_who_would_be_emailed(tmp_path):
    state = tmp_path / "never" / "last_run_date.json"
    result = run_job("--report", str(EXAMPLE), "--since", "01/11/2026", "-testmode", "yes",
                     "--state-file", str(state))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Would email 12 customers:" in out
    assert "jane.doe@example.com         1001, 1005, 1012" in out
    assert "Rows skipped             4 (no or invalid email 1, no ticket id 1, unparseable date 1, " \
           "date more than one day in the future 1)" in out
    assert "last_run_date            01/11/2026 -> 24/11/2026 (test mode: not saved)" in out
    assert not state.parent.exists()


def test_live_run_posts_one_call_per_customer_with_signed_standard_webhook_headers(report, state, webhook):
    from standardwebhooks.webhooks import Webhook

    env = clean_env(WEBHOOK_SECRET=SECRET, WEBHOOK_AUTHORIZATION="Bearer s3cr3t-token")
    result = run_job("--report", str(report), "--state-file", str(state), "-webhook_url", webhook.url,
                     "-testmode", "no", env=env)
    assert result.returncode == 0, result.stderr
    assert sorted(webhook.emails()) == ["bo@example.com", "jane@example.com", "john@example.com"]
    jane = next(p for p in webhook.payloads() if p["email_address"] == "jane@example.com")
    assert jane["tickets"] == [{"ticket": "1001", "status": "Closed", "closed_date": "2026-11-20"},
                               {"ticket": "1002", "status": "Closed", "closed_date": "2026-11-21T10:30:00"}]
    assert jane["email"]["to_address"] == ["jane@example.com"] and jane["ready_to_send"] is True
    verifier = Webhook(SECRET)
    for received in webhook.requests:
        assert received.headers["content-type"] == "application/json"
        assert received.headers["authorization"] == "Bearer s3cr3t-token"
        verifier.verify(received.body, received.headers)  # raises when the signature is wrong
    saved = read_state(state)
    assert saved["last_run_date"] == "23/11/2026"
    assert "Customers notified       3" in result.stdout
    for text in (result.stdout, result.stderr, state.read_text()):
        assert "jane@example.com" not in state.read_text() and "s3cr3t" not in text and "/hooks/" not in text


def test_rerun_sends_nothing_and_the_same_day_boundary_is_exact(report, state, webhook):
    assert webhook_run(report, state, webhook.url, "--since", "20/11/2026").returncode == 0
    first = len(webhook.requests)
    # Next week: the report gains a ticket closed on the day the last run recorded.
    write_csv(report, [*ROWS, ["Cy", "Wu", "cy@example.com", "5001", "Closed", "23/11/2026"]])
    result = run_job("--report", str(report), "--state-file", str(state), "-webhook_url", webhook.url,
                     "-testmode", "no", "--min-days-between-emails", "0")
    assert result.returncode == 0, result.stderr
    assert webhook.emails()[first:] == ["cy@example.com"]
    assert "1 new, 1 already notified" in result.stdout


def test_seed_state_file_is_read_as_is(report, state, webhook):
    result = run_job("--report", str(report), "--state-file", str(state), "-webhook_url", webhook.url,
                     "-testmode", "no")
    assert result.returncode == 0, result.stderr
    assert "ann@example.com" not in webhook.emails()       # 19/11 is before the seed's 20/11
    assert "jane@example.com" in webhook.emails()          # 20/11 is on it
    assert "last_run_date            20/11/2026 -> 23/11/2026" in result.stdout


@pytest.mark.parametrize("content", [
    "", "{not json", "[]", '"20/11/2026"', "{}", '{"last_run_date": 20112026}', '{"last_run_date": "11/31/2026"}',
    '{"last_run_date": "20/11/2026", "notified": ["x"]}', '{"last_run_date": "20/11/2026", "last_emailed": {"k": "soon"}}',
])
def test_a_broken_state_file_stops_the_run_untouched_and_sends_nothing(report, tmp_path, webhook, content):
    state = tmp_path / "last_run_date.json"
    state.write_text(content, encoding="utf-8")
    result = run_job("--report", str(report), "--state-file", str(state), "-webhook_url", webhook.url,
                     "-testmode", "no")
    assert result.returncode == 2
    assert webhook.requests == []
    assert state.read_text(encoding="utf-8") == content
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ") and "state file" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_failed_post_leaves_that_customer_pending_and_a_rerun_sends_only_it(report, state, webhook):
    webhook.respond = lambda received, index: Reply(500) if received.json["email_address"] == "john@example.com" \
        else Reply(200)
    result = webhook_run(report, state, webhook.url, "--since", "20/11/2026", "--retries", "0")
    assert result.returncode == 1
    assert "Customers failed         1 (pending for the next run)" in result.stdout
    assert "not delivered to john@example.com (2001): the webhook at 127.0.0.1:" in result.stderr and "HTTP 500" in result.stderr
    assert read_state(state)["last_run_date"] == "22/11/2026"   # never past John's pending ticket
    webhook.respond = lambda received, index: Reply(200)
    sent_before = len(webhook.requests)
    rerun = run_job("--report", str(report), "--state-file", str(state), "-webhook_url", webhook.url,
                    "-testmode", "no")
    assert rerun.returncode == 0, rerun.stderr
    assert webhook.emails()[sent_before:] == ["john@example.com"]
    assert read_state(state)["last_run_date"] == "23/11/2026"


def test_test_mode_never_writes_or_creates_state_and_needs_no_webhook(report, state):
    before = state.read_bytes()
    result = run_job("--report", str(report), "--state-file", str(state), "-testmode", "YES")
    assert result.returncode == 0, result.stderr
    assert state.read_bytes() == before
    assert sorted(p.name for p in state.parent.iterdir()) == ["last_run_date.json"]
    assert "Would email 3 customers" in result.stdout


@pytest.mark.parametrize(("args", "message"), [
    (["-testmode", "yes"], "exactly one report source"),
    (["--report", "x.csv", "-sheetid", "abc", "-testmode", "yes"], "exactly one report source"),
    (["--report", "x.csv", "-testmode", "maybe"], "expected yes or no"),
    (["--report", "x.csv", "-testmode", "no"], "no destination"),
    (["--report", "x.csv", "-testmode", "no", "-webhook_url", "http://hooks.example.com/x"], "refusing plain http"),
    (["--report", "x.csv", "-testmode", "yes", "--column", "phone=Tel"], "unknown role 'phone'"),
    (["--report", "x.csv", "-testmode", "yes", "--since", "2026/11/20"], "not a date in the form DD/MM/YYYY"),
    (["--report", "x.csv", "-testmode", "yes", "--workers", "0"], "must be between 1 and 64"),
    (["--report", "missing.csv", "-testmode", "yes"], "report file not found"),
    (["--report", "x.csv", "-testmode", "yes", "--body-template", "nope.txt"], "cannot read --body-template"),
])
def test_usage_and_configuration_problems_exit_2_with_one_line(tmp_path, args, message):
    write_csv(tmp_path / "x.csv", ROWS)
    result = run_job(*args, "--state-file", str(tmp_path / "s.json"), cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


@pytest.mark.parametrize(("variable", "value", "message"), [
    ("WEBHOOK_SECRET", "whsec_not base64!", "WEBHOOK_SECRET must be 'whsec_' followed by a base64 key"),
    ("WEBHOOK_AUTHORIZATION", "Bearer a\nX-Evil: 1", "WEBHOOK_AUTHORIZATION must be printable ASCII on one line"),
])
def test_bad_webhook_secrets_stop_before_any_traffic(report, state, webhook, variable, value, message):
    result = run_job("--report", str(report), "--state-file", str(state), "-webhook_url", webhook.url,
                     "-testmode", "no", env=clean_env(**{variable: value}))
    assert result.returncode == 2
    assert message in result.stderr and value not in result.stderr
    assert webhook.requests == []


def test_missing_columns_name_the_headers_found(tmp_path):
    report = write_csv(tmp_path / "r.csv", [["1", "Closed"]], header=["Ticket", "Status"])
    result = run_job("--report", str(report), "-testmode", "yes")
    assert result.returncode == 2
    assert "no email, date column; headers found: Ticket, Status" in result.stderr


def test_webhook_url_from_environment_and_a_log_file_without_secrets(report, state, webhook, tmp_path):
    log_file = tmp_path / "logs" / "deep" / "run.log"
    env = clean_env(WEBHOOK_URL=webhook.url + "?key=abc123", WEBHOOK_SECRET=SECRET)
    result = run_job("--report", str(report), "--state-file", str(state), "-testmode", "no", "-v",
                     "--log-file", str(log_file), env=env)
    assert result.returncode == 0, result.stderr
    assert len(webhook.requests) == 3
    logged = log_file.read_text(encoding="utf-8")
    assert "sending 3 notification(s) to 127.0.0.1" in logged and "Customers notified" in logged
    for text in (logged, result.stdout, result.stderr):
        assert "abc123" not in text and "/hooks/notify" not in text and SECRET[6:] not in text


def test_default_state_lives_next_to_the_script_whatever_the_working_directory(tmp_path, webhook):
    app = tmp_path / "app"
    app.mkdir()
    for source in ROOT.glob("*.py"):
        shutil.copy(source, app / source.name)
    elsewhere = tmp_path / "System32"
    elsewhere.mkdir()
    report = write_csv(elsewhere / "report.csv", ROWS)
    result = run_cli("--report", "report.csv", "-webhook_url", webhook.url, "-testmode", "no",
                     "--since", "20/11/2026", cwd=elsewhere, script=str(app / "process_ticket.py"))
    assert result.returncode == 0, result.stderr
    assert json.loads((app / "last_run_date.json").read_text())["last_run_date"] == "23/11/2026"
    assert not (elsewhere / "last_run_date.json").exists()
    assert report.exists()


def test_missing_state_file_starts_18_months_back(tmp_path):
    from process_ticket import months_before

    start = months_before(date.today(), 18)
    rows = [["In", "Side", "in@example.com", "1", "Closed", start.strftime("%d/%m/%Y")],
            ["Out", "Side", "out@example.com", "2", "Closed", (start - timedelta(days=1)).strftime("%d/%m/%Y")]]
    report = write_csv(tmp_path / "r.csv", rows)
    result = run_job("--report", str(report), "--state-file", str(tmp_path / "none.json"), "-testmode", "yes")
    assert result.returncode == 0
    assert "in@example.com" in result.stdout and "out@example.com" not in result.stdout   # on the boundary, not past it


SHARED_KAGGLE = ROOT.parent / "shared" / "data" / "customer_support_tickets.csv"


@pytest.mark.skipif(not SHARED_KAGGLE.exists(), reason="the shared data folder is not beside this checkout")
def test_the_public_kaggle_export_works_with_column_options_only():
    import csv
    with SHARED_KAGGLE.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    closed = [row for row in rows if row["Ticket Status"] == "Closed" and row["Time to Resolution"] >= "2023-06-01"]
    expected_customers = len({row["Customer Email"].lower() for row in closed})
    result = run_job("--report", str(SHARED_KAGGLE), "--column", "email=Customer Email", "--column", "ticket=Ticket ID",
                     "--column", "status=Ticket Status", "--column", "date=Time to Resolution",
                     "--column", "name=Customer Name", "--since", "01/06/2023", "-testmode", "yes")
    assert result.returncode == 0, result.stderr
    assert f"Rows read                {len(rows)}" in result.stdout
    assert f"Would email {expected_customers} customers" in result.stdout
    assert f"{len(closed)} new, 0 already notified" in result.stdout


def test_version_and_help():
    assert run_job("--version").stdout.startswith("process_ticket.py ")
    help_text = run_job("--help").stdout
    for option in ("-sheetid", "-range", "-webhook_url", "-testmode", "--report", "--column", "--since"):
        assert option in help_text



def test_reading_a_file_does_not_import_the_google_libraries(report, tmp_path):
    code = ("import sys, process_ticket; code = process_ticket.main(sys.argv[1:]); "
            "print('google loaded' if any(m.startswith(('googleapiclient', 'google.auth')) for m in sys.modules) "
            "else 'google not loaded'); sys.exit(code)")
    result = subprocess.run([sys.executable, "-c", code, "--report", str(report), "-testmode", "yes",
                             "--state-file", str(tmp_path / "s.json")], cwd=ROOT, capture_output=True, text=True,
                            env=clean_env(), stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    assert result.stdout.rstrip().endswith("google not loaded")


def test_names_the_console_cannot_show_do_not_stop_the_run(tmp_path):
    report = write_csv(tmp_path / "r.csv", [["Zoë", "Ørsted", "zoe@example.com", "1", "Closed", "21/11/2026"]])
    result = subprocess.run([sys.executable, str(ROOT / "process_ticket.py"), "--report", str(report), "-testmode", "yes",
                             "--since", "20/11/2026", "--state-file", str(tmp_path / "s.json")],
                            capture_output=True, env=clean_env(PYTHONIOENCODING="ascii"), stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    assert b"Zo\\xeb \\xd8rsted" in result.stdout and b"zoe@example.com" in result.stdout
