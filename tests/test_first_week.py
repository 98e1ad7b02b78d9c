"""A team's first week with real exports (issue 11): no mass email, no misread date, nothing hidden."""

import shutil
import subprocess
import sys
from datetime import date, timedelta

import pytest
from conftest import ROOT, Reply, clean_env, read_state, run_job, write_csv, write_state

TODAY = date.today()
RECENT = (TODAY - timedelta(days=3)).strftime("%d/%m/%Y")
SINCE = (TODAY - timedelta(days=10)).strftime("%d/%m/%Y")
LAST_YEAR = (TODAY - timedelta(days=300)).strftime("%d/%m/%Y")
ZENDESK_HEADER = ["Ticket ID", "Subject", "Requester", "Requester email", "Status", "Solved at"]


def test_the_first_live_run_without_since_sends_nothing_and_says_how_to_start(tmp_path, webhook):
    report = write_csv(tmp_path / "r.csv", [["A", "B", "a@example.com", "1", "Closed", LAST_YEAR]])
    state = tmp_path / "state" / "last_run_date.json"
    result = run_job("--report", str(report), "--state-file", str(state), "-webhook_url", webhook.url, "-testmode", "no")
    assert result.returncode == 2
    assert "--since DD/MM/YYYY" in result.stderr and len(result.stderr.splitlines()) == 1
    assert webhook.requests == [] and not state.exists()
    preview = run_job("--report", str(report), "--state-file", str(state), "-testmode", "yes")
    assert preview.returncode == 0
    assert "a@example.com" in preview.stdout                        # test mode still looks 18 months back
    assert "the first live run needs --since DD/MM/YYYY" in preview.stdout
    started = run_job("--report", str(report), "--state-file", str(state), "-webhook_url", webhook.url,
                      "-testmode", "no", "--since", SINCE)
    assert started.returncode == 0 and webhook.requests == []       # last year's ticket is not news
    assert read_state(state)["last_run_date"] == SINCE
    assert "First run" not in started.stdout


@pytest.mark.parametrize("value, form", [
    ("11/20/2026", "%m/%d/%Y"),
    ("11/20/2026 14:05", "%m/%d/%Y %H:%M"),
    ("2026-20-11", "%Y-%d-%m"),
])
def test_a_month_first_date_on_a_closed_row_stops_the_run_with_the_fix(tmp_path, webhook, value, form):
    rows = [["A", "B", "a@example.com", "1", "Closed", "01/12/2026"], ["C", "D", "c@example.com", "2", "Closed", value]]
    report = write_csv(tmp_path / "r.csv", rows)
    state = write_state(tmp_path / "s.json", {"last_run_date": "01/11/2026"})
    result = run_job("--report", str(report), "--state-file", str(state), "-webhook_url", webhook.url, "-testmode", "no")
    assert result.returncode == 2
    assert "row 3" in result.stderr and value in result.stderr and f'--date-format "{form}"' in result.stderr
    assert webhook.requests == [] and read_state(state) == {"last_run_date": "01/11/2026"}


def test_with_the_month_first_format_the_us_export_is_read_right(tmp_path):
    report = write_csv(tmp_path / "r.csv", [["A", "B", "a@example.com", "1", "Closed", "01/12/2026"],
                                            ["C", "D", "c@example.com", "2", "Closed", "11/20/2026"]])
    result = run_job("--report", str(report), "--since", "01/01/2026", "-testmode", "yes", "--date-format", "%m/%d/%Y",
                     "--state-file", str(tmp_path / "s.json"))
    assert result.returncode == 0, result.stderr
    assert "a@example.com" in result.stdout and "01/01/2026 -> 20/11/2026" in result.stdout


def test_an_open_row_with_a_month_first_date_does_not_stop_the_run(tmp_path):
    report = write_csv(tmp_path / "r.csv", [["A", "B", "a@example.com", "1", "Open", "11/20/2026"],
                                            ["C", "D", "c@example.com", "2", "Closed", RECENT]])
    result = run_job("--report", str(report), "--since", SINCE, "-testmode", "yes", "--state-file", str(tmp_path / "s"))
    assert result.returncode == 0, result.stderr


def write_workbook(path, sheets):
    from openpyxl import Workbook

    workbook = Workbook()
    workbook.remove(workbook.active)
    for name, rows in sheets.items():
        sheet = workbook.create_sheet(name)
        for row in rows:
            sheet.append(row)
    workbook.save(path)
    return path


TICKETS = [["Firstname", "Lastname", "Email", "Ticket", "Status", "Date"],
           ["Ann", "Lee", "ann@example.com", "T-1", "Closed", RECENT]]


@pytest.mark.parametrize("sheet_range", ["Tickets", "Tickets!A1:F", "'Tickets'!A:F"])
def test_range_picks_the_sheet_of_a_workbook(tmp_path, sheet_range):
    book = write_workbook(tmp_path / "r.xlsx", {"Notes": [["Exported weekly"], ["by support"]], "Tickets": TICKETS})
    result = run_job("--report", str(book), "-range", sheet_range, "--since", SINCE, "-testmode", "yes",
                     "--state-file", str(tmp_path / "s"))
    assert result.returncode == 0, result.stderr
    assert "ann@example.com" in result.stdout and "T-1" in result.stdout


@pytest.mark.parametrize("extra", [[], ["--column", "date=Date"], ["-range", "Notes"]])
def test_an_unusable_sheet_names_the_workbooks_sheets(tmp_path, extra):
    book = write_workbook(tmp_path / "r.xlsx", {"Notes": [["Exported weekly"], ["by support"]], "Tickets": TICKETS})
    result = run_job("--report", str(book), *extra, "--since", SINCE, "-testmode", "yes", "--state-file", str(tmp_path / "s"))
    assert result.returncode == 2
    assert "'Notes', 'Tickets'" in result.stderr and "-range" in result.stderr


def test_an_empty_sheet_names_the_sheets_but_a_header_without_rows_is_a_quiet_week(tmp_path):
    book = write_workbook(tmp_path / "r.xlsx", {"Empty": [], "Tickets": TICKETS[:1]})
    empty = run_job("--report", str(book), "--since", SINCE, "-testmode", "yes", "--state-file", str(tmp_path / "s"))
    assert empty.returncode == 2 and "'Empty', 'Tickets'" in empty.stderr
    header_only = run_job("--report", str(book), "-range", "Tickets", "--since", SINCE, "-testmode", "yes",
                          "--state-file", str(tmp_path / "s"))
    assert header_only.returncode == 0 and "Nobody to email" in header_only.stdout


def test_a_sheet_the_workbook_lacks_names_its_sheets(tmp_path):
    book = write_workbook(tmp_path / "r.xlsx", {"Tickets": TICKETS})
    result = run_job("--report", str(book), "-range", "Sheet1!A2:F", "--since", SINCE, "-testmode", "yes")
    assert result.returncode == 2 and "no sheet 'Sheet1'" in result.stderr and "'Tickets'" in result.stderr


def test_range_with_a_csv_report_is_ignored_with_a_warning_not_in_silence(tmp_path):
    report = write_csv(tmp_path / "r.csv", [["A", "B", "a@example.com", "1", "Closed", RECENT]])
    result = run_job("--report", str(report), "-range", "Sheet1!A2:F", "--since", SINCE, "-testmode", "yes",
                     "--state-file", str(tmp_path / "s.json"))
    assert result.returncode == 0
    assert "warning: -range 'Sheet1!A2:F' is ignored" in result.stderr and "a@example.com" in result.stdout


def test_a_zendesk_export_maps_with_column_and_closed_status_and_the_summary_shows_other_statuses(tmp_path):
    rows = [["101", "Printer", "Jane Doe", "jane@example.com", "Solved", RECENT],
            ["102", "VPN", "John Roe", "john@example.com", "Closed", RECENT],
            ["103", "Mail", "Ann Lee", "ann@example.com", "Open", RECENT],
            ["104", "Mail", "Ann Lee", "ann@example.com", "Pending", RECENT],
            ["105", "Mail", "Ann Lee", "ann@example.com", "open ", RECENT]]
    report = write_csv(tmp_path / "zendesk.csv", rows, header=ZENDESK_HEADER)
    plain = run_job("--report", str(report), "--since", SINCE, "-testmode", "yes", "--column", "date=Solved at",
                    "--state-file", str(tmp_path / "s"))
    assert plain.returncode == 0, plain.stderr
    assert "Not counted as closed    Open 2, Solved 1, Pending 1" in plain.stdout
    mapped = run_job("--report", str(report), "--since", SINCE, "-testmode", "yes", "--column", "date=Solved at",
                     "--closed-status", "Solved,Closed", "--state-file", str(tmp_path / "s"))
    assert mapped.returncode == 0, mapped.stderr
    assert "Would email 2 customers" in mapped.stdout and "Solved" not in mapped.stdout.split("Not counted")[-1]


def test_an_unreachable_destination_stops_after_three_customers_in_a_row_naming_host_and_port(tmp_path, quick_backoff):
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    rows = [[f"N{i}", "X", f"c{i}@example.com", str(i), "Closed", RECENT] for i in range(8)]
    report = write_csv(tmp_path / "r.csv", rows)
    state = write_state(tmp_path / "s.json", {"last_run_date": SINCE})
    result = run_job("--report", str(report), "--state-file", str(state), "-webhook_url", f"http://127.0.0.1:{port}/x",
                     "-testmode", "no", "--retries", "1", "--workers", "1")
    assert result.returncode == 1
    assert f"could not connect to 127.0.0.1:{port} for 3 customers in a row" in result.stderr
    assert "Customers not attempted  5 (run stopped; pending)" in result.stdout
    assert read_state(state)["last_run_date"] == RECENT   # never past a pending ticket


def test_deferred_failed_and_rejected_customers_are_named_in_the_log_and_with_v(tmp_path, webhook):
    rows = [["A", "X", "late@example.com", "1", "Closed", RECENT], ["B", "X", "fail@example.com", "2", "Closed", RECENT],
            ["C", "X", "bad@example.com", "3", "Closed", RECENT], ["D", "X", "ok@example.com", "4", "Closed", RECENT],
            ["E", "X", "ok@example.com", "5", "Closed", "32/13/2026"]]
    report = write_csv(tmp_path / "r.csv", rows)
    from ticket_core import customer_key

    state = write_state(tmp_path / "s.json", {"last_run_date": SINCE,
                                              "last_emailed": {customer_key("late@example.com"): TODAY.isoformat()}})
    replies = {"fail@example.com": Reply(503), "bad@example.com": Reply(422, body=b"mailbox unknown")}
    webhook.respond = lambda received, index: replies.get(received.json["email_address"], Reply(200))
    log_file = tmp_path / "run.log"
    result = run_job("--report", str(report), "--state-file", str(state), "-webhook_url", webhook.url, "-testmode", "no",
                     "--retries", "0", "--log-file", str(log_file), "-v", "--workers", "1")
    assert result.returncode == 1
    logged = log_file.read_text()
    for text in (result.stderr, logged):
        assert "deferred late@example.com (1)" in text
        assert "not delivered to fail@example.com (2)" in text
        assert "rejected bad@example.com (3): HTTP 422: mailbox unknown" in text
        assert "row 6 skipped: unparseable date ('32/13/2026')" in text
        assert "starting from 18 months ago" not in text


def test_the_emailed_table_is_in_report_order(tmp_path, webhook):
    rows = [[f"N{i}", "X", f"c{i}@example.com", str(i), "Closed", RECENT] for i in range(6)]
    report = write_csv(tmp_path / "r.csv", rows)
    webhook.respond = lambda received, index: Reply(200, delay=0.3 if received.json["email_address"] == "c0@example.com" else 0)
    result = run_job("--report", str(report), "--state-file", str(tmp_path / "s.json"), "-webhook_url", webhook.url,
                     "-testmode", "no", "--since", SINCE, "--workers", "3")
    assert result.returncode == 0
    order = [line.split()[2] for line in result.stdout.splitlines() if "@example.com" in line]
    assert order == [f"c{i}@example.com" for i in range(6)]


@pytest.mark.skipif(shutil.which("bash") is None, reason="run_util.sh needs bash")
def test_run_util_sh_keeps_quoted_extra_args_together_and_passes_its_own_arguments(tmp_path):
    folder = tmp_path / "app dir (x86)"
    folder.mkdir()
    for name in [*(p.name for p in ROOT.glob("*.py")), "run_util.sh"]:
        shutil.copy(ROOT / name, folder / name)
    rows = [["101", "Printer", "Jane Doe", "jane@example.com", "Solved", RECENT]]
    write_csv(folder / "zendesk.csv", rows, header=ZENDESK_HEADER)
    (folder / "run_settings.env").write_text(
        "\ufeffREPORT_FILE=zendesk.csv\nTESTMODE=no\nWEBHOOK_SECERT=x\n"
        'EXTRA_ARGS=--column date="Solved at" --closed-status Solved,Closed --subject "Your ticket & more"\n',
        encoding="utf-8")
    result = subprocess.run(["bash", str(folder / "run_util.sh"), "-testmode", "yes", "--since", SINCE],
                            cwd=tmp_path, env=clean_env(PYTHON=sys.executable), capture_output=True, text=True,
                            stdin=subprocess.DEVNULL, timeout=120)
    assert result.returncode == 0, result.stderr
    log = (folder / "logs" / "run_util.log").read_text(encoding="utf-8")
    assert "Would email 1 customer" in log and "jane@example.com" in log
    assert "unknown setting 'WEBHOOK_SECERT'" in result.stderr and "unknown setting 'WEBHOOK_SECERT'" in log


@pytest.mark.skipif(shutil.which("bash") is None, reason="run_util.sh needs bash")
def test_run_util_sh_errors_reach_the_log(tmp_path):
    folder = tmp_path / "app"
    folder.mkdir()
    shutil.copy(ROOT / "run_util.sh", folder / "run_util.sh")
    result = subprocess.run(["bash", str(folder / "run_util.sh")], cwd=tmp_path, env=clean_env(), capture_output=True,
                            text=True, stdin=subprocess.DEVNULL, timeout=60)
    assert result.returncode == 2
    assert "run_settings.env not found" in (folder / "logs" / "run_util.log").read_text(encoding="utf-8")


@pytest.mark.skipif(shutil.which("bash") is None, reason="run_util.sh needs bash")
def test_run_util_sh_refuses_extra_args_with_a_quote_that_does_not_close(tmp_path):
    folder = tmp_path / "app"
    folder.mkdir()
    shutil.copy(ROOT / "run_util.sh", folder / "run_util.sh")
    (folder / "run_settings.env").write_text('REPORT_FILE=r.csv\nEXTRA_ARGS=--subject "Your ticket\n', encoding="utf-8")
    result = subprocess.run(["bash", str(folder / "run_util.sh")], cwd=tmp_path, env=clean_env(PYTHON=sys.executable),
                            capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60)
    assert result.returncode == 2
    assert "a quote that does not close" in (folder / "logs" / "run_util.log").read_text(encoding="utf-8")
