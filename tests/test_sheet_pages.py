"""Large Google Sheets (contract section 13): read in pages of at most 250,000 cells, each retried on its own."""

import json
from urllib.parse import unquote, urlsplit

import pytest
from conftest import Reply, WebhookServer, clean_env, run_job

from a1_range import a1_bounds, split_a1_range
from google_api import PAGE_CELLS, Grid, page_ranges

SHEET_ID = "1AbCdEfGhIjKlMnOpQrStUvWxYz0123456789_-abc"
GRIDS = [Grid("Sheet1", 100_001, 26), Grid("Archive 'old'", 50, 6)]


@pytest.mark.parametrize("range_, expected", [
    ("Sheet1!A1:F", [("'Sheet1'!A1:F41666", 41666), ("'Sheet1'!A41667:F83332", 41666),
                     ("'Sheet1'!A83333:F100001", 16669)]),
    ("Sheet1!A2:F", [("'Sheet1'!A2:F41667", 41666), ("'Sheet1'!A41668:F83333", 41666),
                     ("'Sheet1'!A83334:F100001", 16668)]),
    ("A:F", [("'Sheet1'!A1:F41666", 41666), ("'Sheet1'!A41667:F83332", 41666), ("'Sheet1'!A83333:F100001", 16669)]),
    ("Sheet1!B10:C20", [("'Sheet1'!B10:C20", 11)]),
    ("Sheet1!A1:F999999", [("'Sheet1'!A1:F41666", 41666), ("'Sheet1'!A41667:F83332", 41666),
                           ("'Sheet1'!A83333:F100001", 16669)]),
    ("'Archive ''old'''", [("'Archive ''old'''!A1:F50", 50)]),
    ("'Archive ''old'''!A2:Z", [("'Archive ''old'''!A2:F50", 49)]),
])
def test_pages_never_exceed_250000_cells_or_the_grid(range_, expected):
    pages = page_ranges(range_, GRIDS)
    assert pages == expected
    for page, rows in pages:
        first_row, first_column, last_row, last_column = a1_bounds(split_a1_range(page)[1])
        assert (last_row - first_row + 1) == rows and rows * (last_column - first_column + 1) <= PAGE_CELLS


def test_a_whole_sheet_is_paged_over_all_its_columns():
    pages = page_ranges("Sheet1", GRIDS)
    assert pages[0] == ("'Sheet1'!A1:Z9615", 9615) and pages[-1][0].endswith(":Z100001")
    assert sum(rows for _, rows in pages) == 100_001


@pytest.mark.parametrize("range_", ["Tickets_Named_Range", "Missing!A1:F", "Sheet1!not cells"])
def test_a_range_not_of_the_form_sheet_a1_is_read_whole(range_):
    assert page_ranges(range_, GRIDS) is None


class PagedSheet:
    """A local Sheets API: spreadsheets.get with the grid, values.get for any A1 range of `rows`."""

    def __init__(self, rows, fail_page=None, blank_page=None, refused_page=None, edit_after_page=None) -> None:
        self.rows, self.fail_page, self.blank_page, self.refused_page = rows, fail_page, blank_page, refused_page
        self.edit_after_page = edit_after_page  # (page, edit): edit(rows) once that page was served
        self.ranges: list[str] = []
        self.server = WebhookServer()
        self.server.respond = self.respond

    def respond(self, received, index):
        path = unquote(urlsplit(received.path).path)
        if "/values/" not in path:
            grid = {"sheets": [{"properties": {"title": "Sheet1",
                                               "gridProperties": {"rowCount": len(self.rows), "columnCount": 6}}}]}
            return Reply(200, {"Content-Type": "application/json"}, body=json.dumps(grid).encode())
        range_ = path.split("/values/", 1)[1]
        self.ranges.append(range_)
        first_row, _, last_row, _ = a1_bounds(split_a1_range(range_)[1])
        page = (last_row - 1) // (PAGE_CELLS // 6) + 1  # pages after the first start a row early (the overlap)
        if page == self.refused_page:
            return Reply(400, {"Content-Type": "application/json"},
                         body=b'{"error": {"code": 400, "message": "Unable to parse range", "status": "INVALID_ARGUMENT"}}')
        if page == self.fail_page and self.ranges.count(range_) == 1:
            return Reply(429, {"Content-Type": "application/json"},
                         body=b'{"error": {"code": 429, "message": "Quota exceeded", "status": "RESOURCE_EXHAUSTED"}}')
        rows_per_page = PAGE_CELLS // 6
        values = [[] if (number - 1) // rows_per_page + 1 == self.blank_page else self.rows[number - 1]
                  for number in range(first_row, min(last_row, len(self.rows)) + 1)]
        while values and not values[-1]:
            values.pop()  # as Sheets does: no trailing empty rows
        if self.edit_after_page and self.edit_after_page[0] == page:
            self.edit_after_page[1](self.rows)
            self.edit_after_page = None
        body = {"range": range_, "majorDimension": "ROWS", **({"values": values} if values else {})}
        return Reply(200, {"Content-Type": "application/json"}, body=json.dumps(body).encode())


def big_sheet(count=100_000):
    rows = [["Firstname", "Lastname", "Email", "Ticket", "Status", "Date"]]
    rows += [["N", "X", f"c{n % 5000}@example.com", n, "Closed" if n % 4 == 0 else "Open", 46346] for n in range(1, count + 1)]
    return rows


def run_sheet(sheet, *extra):
    return run_job("-sheetid", SHEET_ID, "-range", "Sheet1!A1:F", "--since", "01/11/2026", "-testmode", "yes", "-v",
                   *extra, env=clean_env(SHEETS_API_ENDPOINT=sheet.server.root, GOOGLE_API_KEY="k"))


def test_a_large_sheet_is_read_in_pages_with_its_header_on_the_first_only():
    rows = big_sheet()
    rows[90_000][5] = "32/13/2026"    # sheet row 90,001, on the third page
    sheet = PagedSheet(rows)
    try:
        result = run_sheet(sheet)
    finally:
        sheet.server.close()
    assert result.returncode == 0, result.stderr
    assert sheet.ranges == ["'Sheet1'!A1:F41666", "'Sheet1'!A41666:F83332", "'Sheet1'!A83332:F100001"]
    assert "Rows read                100000" in result.stdout
    assert "Closed since 01/11/2026  24999 new" in result.stdout
    assert "row 90001 skipped: unparseable date ('32/13/2026')" in result.stderr


def test_a_429_on_the_third_page_retries_that_page_alone():
    sheet = PagedSheet(big_sheet(), fail_page=3)
    try:
        result = run_sheet(sheet)
    finally:
        sheet.server.close()
    assert result.returncode == 0, result.stderr
    assert sheet.ranges == ["'Sheet1'!A1:F41666", "'Sheet1'!A41666:F83332", "'Sheet1'!A83332:F100001",
                            "'Sheet1'!A83332:F100001"]
    assert "Rows read                100000" in result.stdout


def test_a_blank_page_in_the_middle_keeps_the_row_numbers_of_the_pages_after_it():
    rows = big_sheet()
    rows[90_000][5] = "32/13/2026"
    sheet = PagedSheet(rows, blank_page=2)
    try:
        result = run_sheet(sheet)
    finally:
        sheet.server.close()
    assert result.returncode == 0, result.stderr
    assert "Rows read                58334" in result.stdout      # the 41,666 rows of page 2 are blank
    assert "row 90001 skipped: unparseable date ('32/13/2026')" in result.stderr


def live_sheet_run(sheet, tmp_path, webhook):
    """A live run reading `sheet` and sending to `webhook`; the sheet's server closed afterwards."""
    try:
        return run_job("-sheetid", SHEET_ID, "-range", "Sheet1!A1:F", "--since", "01/11/2026", "-testmode", "no",
                       "-webhook_url", webhook.url, "--state-file", str(tmp_path / "s.json"),
                       env=clean_env(SHEETS_API_ENDPOINT=sheet.server.root, GOOGLE_API_KEY="k"))
    finally:
        sheet.server.close()


def test_a_page_that_fails_for_good_stops_the_run_before_anything_is_sent(tmp_path, webhook):
    result = live_sheet_run(PagedSheet(big_sheet(), refused_page=3), tmp_path, webhook)
    assert result.returncode == 2 and "Google Sheets rejected the range" in result.stderr
    assert webhook.requests == [] and not (tmp_path / "s.json").exists()


def test_a_range_without_a_sheet_reads_the_first_visible_sheet():
    grids = [Grid("Hidden", 10, 6, hidden=True), Grid("Visible", 5, 6)]
    assert page_ranges("A:F", grids) == [("'Visible'!A1:F5", 5)]
    assert page_ranges("Hidden!A:F", grids) == [("'Hidden'!A1:F10", 10)]   # named, a hidden sheet is read


@pytest.mark.parametrize("range_, message", [
    ("Sheet1!A200000:F", "starts past the end of sheet 'Sheet1' (100001 rows"),
    ("Sheet1!F1:A", "ends before it starts"),
    ("Sheet1!A10:F2", "ends before it starts"),
])
def test_a_range_that_reads_nothing_is_an_error_not_a_quiet_week(range_, message):
    sheet = PagedSheet(big_sheet())
    try:
        result = run_job("-sheetid", SHEET_ID, "-range", range_, "--since", "01/11/2026", "-testmode", "yes",
                         env=clean_env(SHEETS_API_ENDPOINT=sheet.server.root, GOOGLE_API_KEY="k"))
    finally:
        sheet.server.close()
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert "Summary" not in result.stdout


@pytest.mark.parametrize("edit", [
    lambda rows: rows.pop(100),                                  # a row deleted on a page already read
    lambda rows: rows.insert(50, list(rows[50])),                # a row inserted (the same row twice)
    lambda rows: rows.__setitem__(slice(41_000, None), [[]] * (len(rows) - 41_000)),  # cleared: the next page is empty
], ids=["deleted", "inserted", "cleared"])
def test_a_sheet_edited_while_it_is_read_stops_the_run_before_anything_is_sent(tmp_path, webhook, edit):
    # (an unedited sheet read in pages passes the same checks: test_a_large_sheet_is_read_in_pages...)
    result = live_sheet_run(PagedSheet(big_sheet(), edit_after_page=(1, edit)), tmp_path, webhook)
    assert result.returncode == 2 and "the sheet changed while it was read" in result.stderr, result.stderr
    assert webhook.requests == [] and not (tmp_path / "s.json").exists()


def test_rows_sorted_between_two_pages_are_noticed_by_the_overlap():
    rows = big_sheet()

    def sort_newest_first(rows):
        rows[1:] = sorted(rows[1:], key=lambda row: -row[3])
    sheet = PagedSheet(rows, edit_after_page=(1, sort_newest_first))
    try:
        result = run_sheet(sheet)
    finally:
        sheet.server.close()
    assert result.returncode == 2 and "the sheet changed while it was read" in result.stderr
    assert "Summary" not in result.stdout
