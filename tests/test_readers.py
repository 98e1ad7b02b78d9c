"""Report files as exported by real systems: encodings, delimiters, multi-line fields, XLSX dates."""

import csv
from datetime import date, datetime

import pytest
from conftest import SEED_HEADER, write_csv
from openpyxl import Workbook

import report_readers
from report_readers import read_report
from ticket_core import ReportError, select_closed_tickets

NOW = datetime(2026, 11, 27, 6, 0)


def closed(path, since=date(2026, 11, 1)):
    selection = select_closed_tickets(read_report(path)[0], since, NOW)
    return [(t.email, t.ticket_id, t.full_name, t.closed_date) for t in selection.tickets]


def test_an_xlsx_without_a_range_is_read_from_its_first_visible_sheet_whichever_was_open(tmp_path):
    workbook = Workbook()
    hidden = workbook.active
    hidden.title, hidden.sheet_state = "Old", "hidden"
    hidden.append(SEED_HEADER)
    hidden.append(["Old", "Row", "old@example.com", 1, "Closed", datetime(2026, 11, 20)])
    workbook.create_sheet("Report").append(SEED_HEADER)
    workbook["Report"].append(["Jane", "Doe", "jane@example.com", 1001, "Closed", datetime(2026, 11, 21)])
    workbook.create_sheet("Notes").append(SEED_HEADER)
    workbook["Notes"].append(["Not", "This", "notes@example.com", 9, "Closed", datetime(2026, 11, 22)])
    workbook.active = 2   # saved with the last sheet open
    workbook.save(tmp_path / "report.xlsx")
    assert closed(tmp_path / "report.xlsx") == [("jane@example.com", "1001", "Jane Doe", "2026-11-21")]


@pytest.mark.parametrize("delimiter", [",", ";", "\t"])
def test_delimiter_is_detected(tmp_path, delimiter):
    path = write_csv(tmp_path / "report.csv", [["Jane", "Doe", "jane@example.com", "1", "Closed", "21/11/2026"]],
                     delimiter=delimiter)
    assert closed(path) == [("jane@example.com", "1", "Jane Doe", "2026-11-21")]


def test_utf8_with_bom_and_cp1252_are_both_read(tmp_path):
    row = [["Zoë", "Müller", "zoe@example.com", "1", "Closed", "21/11/2026"]]
    with_bom = write_csv(tmp_path / "bom.csv", row, encoding="utf-8-sig")
    windows = write_csv(tmp_path / "win.csv", row, encoding="cp1252")
    assert closed(with_bom) == closed(windows) == [("zoe@example.com", "1", "Zoë Müller", "2026-11-21")]


def test_quoted_fields_may_span_lines(tmp_path):
    path = tmp_path / "report.csv"
    path.write_text('Ticket,Email,Description,Status,Date\n'
                    '1,jane@example.com,"line one\nline two, with comma",Closed,21/11/2026\n'
                    '2,john@example.com,"x",Closed,22/11/2026\n', encoding="utf-8")
    assert [t[1] for t in closed(path)] == ["1", "2"]


def test_xlsx_date_cells_and_numbers(tmp_path):
    workbook = Workbook()
    sheet = workbook.active
    sheet.append(SEED_HEADER)
    sheet.append(["Jane", "Doe", "jane@example.com", 1001, "Closed", datetime(2026, 11, 21)])
    sheet.append(["John", "Roe", "john@example.com", 1002.0, "closed", datetime(2026, 11, 22, 9, 30)])
    sheet.append([None, None, None, None, None, None])
    sheet.append(["Ann", "Lee", "ann@example.com", "1003", "Closed", "23/11/2026"])
    workbook.create_sheet("Other").append(["ignored"])
    workbook.save(tmp_path / "report.xlsx")
    assert closed(tmp_path / "report.xlsx") == [
        ("jane@example.com", "1001", "Jane Doe", "2026-11-21"),
        ("john@example.com", "1002", "John Roe", "2026-11-22T09:30:00"),
        ("ann@example.com", "1003", "Ann Lee", "2026-11-23")]


@pytest.mark.parametrize("delimiter", [",", ";", "\t"])
@pytest.mark.parametrize("block_chars", [1 << 20, 1, 7])
@pytest.mark.parametrize("last_line_end", ["\n", ""])
def test_files_without_quotes_read_exactly_as_csv_reader_reads_them(tmp_path, monkeypatch, delimiter, block_chars,
                                                                    last_line_end):
    """Quote-free files take a faster path, read in blocks of lines; it must give the same rows as the
    csv module, wherever a block stops (in a line, between \r and \n) and whether the file ends a line."""
    monkeypatch.setattr(report_readers, "_BLOCK_CHARS", block_chars)
    lines = ["Firstname,Lastname,Email,Ticket,Status,Date", " Jane , Doe,jane@example.com,1,Closed,21/11/2026",
             "", ",,,,,", "John,Roe,john@example.com,2,Closed,22/11/2026,extra,", "Ann,Lee,,3", "  ", "Zoë,Ü,z@x.io,4,x,y"]
    text = "\r\n".join(lines[:4]) + "\n" + "\r".join(lines[4:]) + "\r\n\r\n\n\rlast,line" + last_line_end
    path = tmp_path / "plain.csv"
    path.write_text(text.replace(",", delimiter), encoding="utf-8", newline="")
    with path.open(encoding="utf-8", newline="") as handle:
        expected = [row for row in csv.reader(handle, delimiter=delimiter)]
    got = list(read_report(path)[0])
    assert [row for row in got if any(row)] == [row for row in expected if any(row)]
    assert len(got) == len(expected)


def _report_with_late_row(tmp_path, late_row: str):
    """A report whose `late_row` comes after the encoding pass's first block, with a two-byte
    character split by that block's end."""
    size = report_readers._CHUNK_BYTES
    filler = "Ann,Lee,ann@example.com,9,Open,01/11/2026\n"
    head = filler * (size // len(filler) - 1) + "Bea,Lee,bea@example.com,8,Open,01/11/2026,"
    data = (head + "x" * (size - 1 - len(head)) + "é\n" + late_row).encode("utf-8")
    assert data[size - 1:size + 1] == "é".encode()
    path = tmp_path / "late.csv"
    path.write_bytes(data)
    return path


def test_the_encoding_pass_judges_the_whole_file_not_its_first_block(tmp_path):
    """A UTF-8 character split between two blocks is still UTF-8; a quote or a NUL byte in a later
    block decides as one in the first would."""
    quoted = _report_with_late_row(tmp_path, '"Zoë, Jr.",Müller,zoe@example.com,1,Closed,21/11/2026\n')
    assert closed(quoted) == [("zoe@example.com", "1", "Zoë, Jr. Müller", "2026-11-21")]
    with_nul = _report_with_late_row(tmp_path, "Zoë,Müller,zoe@example.com,1,Closed,21/11/2026\x00\n")
    with pytest.raises(ReportError, match="NUL bytes"):
        read_report(with_nul)


def test_unreadable_reports_raise_report_error(tmp_path):
    (tmp_path / "broken.xlsx").write_bytes(b"not a zip")
    (tmp_path / "old.xls").write_bytes(b"\xd0\xcf")
    with pytest.raises(ReportError, match="not a readable .xlsx"):
        read_report(tmp_path / "broken.xlsx")
    with pytest.raises(ReportError, match="export the report as .csv or .xlsx"):
        read_report(tmp_path / "old.xls")
    with pytest.raises(ReportError, match="report file not found"):
        read_report(tmp_path / "missing.csv")


def test_empty_report_has_no_rows(tmp_path):
    (tmp_path / "empty.csv").write_text("", encoding="utf-8")
    assert closed(tmp_path / "empty.csv") == []
