"""Report files: a CSV or XLSX export read as a stream of rows (lists of cells)."""

from __future__ import annotations

import codecs
import csv
import re
from collections.abc import Iterator
from itertools import repeat
from pathlib import Path

from a1_range import a1_bounds, split_a1_range
from ticket_core import ReportError

DELIMITERS = (",", ";", "\t")
# Both passes over a CSV file go a block at a time. 64 KiB stays in the processor's cache; with
# blocks of a megabyte the million-row benchmark ran about 8 % slower (bench/README.md).
_CHUNK_BYTES = 1 << 16
_BLOCK_CHARS = 1 << 16


def read_report(path: Path, sheet_range: str | None = None) -> tuple[Iterator[list], list[str] | None]:
    """Rows of a .csv or .xlsx report, and the sheet names when it is a workbook.
    Raises ReportError for a file that cannot be read as it was written."""
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".txt", ".tsv", ".xlsx", ".xlsm"):
        raise ReportError(f"{path}: unsupported report type {suffix or '(no extension)'}; export the report as .csv or .xlsx")
    if not path.is_file():
        raise ReportError(f"report file not found: {path}")
    if suffix in (".xlsx", ".xlsm"):
        return read_xlsx(path, sheet_range)
    return read_csv(path), None


# The first bytes of files that are not text in an encoding the job reads, and what to do instead.
_NOT_CSV = (
    (b"PK\x03\x04", "is an Excel workbook (.xlsx) with another name: rename it to .xlsx or export it as CSV"),
    (b"\xd0\xcf\x11\xe0", "is an old Excel workbook (.xls): save it as .xlsx or CSV UTF-8"),
    (b"\xff\xfe", "is UTF-16 text: save it as CSV UTF-8 (Excel: 'CSV UTF-8 (Comma delimited)')"),
    (b"\xfe\xff", "is UTF-16 text: save it as CSV UTF-8 (Excel: 'CSV UTF-8 (Comma delimited)')"),
)


def sniff(path: Path) -> tuple[str, bool]:
    """(encoding, has_quotes) from one pass over the bytes: UTF-8 (with or without BOM) when the
    whole file decodes as UTF-8, else Windows-1252; and whether any '"' occurs at all.
    A file that is not text in one of those (a workbook, UTF-16, a NUL byte anywhere) is a ReportError."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    utf8, has_quotes = True, False
    try:
        with path.open("rb") as raw:
            chunk = raw.read(_CHUNK_BYTES)
            _refuse_other_formats(path, chunk)
            while chunk:
                if b"\x00" in chunk:
                    raise ReportError(f"{path} is not plain text (it holds NUL bytes; UTF-16 or binary): "
                                      "save it as CSV UTF-8")
                has_quotes = has_quotes or b'"' in chunk
                utf8 = utf8 and _decodes(decoder, chunk)
                chunk = raw.read(_CHUNK_BYTES)
        utf8 = utf8 and _decodes(decoder, b"", final=True)
    except OSError as error:
        raise ReportError(f"cannot read {path}: {error.strerror or error}") from None
    return ("utf-8-sig" if utf8 else "cp1252"), has_quotes


def _refuse_other_formats(path: Path, head: bytes) -> None:
    for signature, advice in _NOT_CSV:
        if head.startswith(signature):
            raise ReportError(f"{path} {advice}")


def _decodes(decoder: codecs.IncrementalDecoder, chunk: bytes, final: bool = False) -> bool:
    try:
        decoder.decode(chunk, final)
    except UnicodeDecodeError:
        return False
    return True


def detect_delimiter(first_line: str) -> str:
    """The separator used most in the first line, counting only outside quotes."""
    counts = dict.fromkeys(DELIMITERS, 0)
    quoted = False
    for char in first_line:
        if char == '"':
            quoted = not quoted
        elif not quoted and char in counts:
            counts[char] += 1
    best = max(DELIMITERS, key=lambda delimiter: counts[delimiter])
    return best if counts[best] else ","


def read_csv(path: Path) -> Iterator[list[str]]:
    encoding, has_quotes = sniff(path)
    try:
        with path.open(encoding=encoding, errors="replace", newline="") as probe:
            first_line = next((line for line in probe if line.strip()), "")  # blank lines hide nothing
        delimiter = detect_delimiter(first_line)
    except OSError as error:
        raise ReportError(f"cannot read {path}: {error.strerror or error}") from None
    return _csv_rows(path, encoding, delimiter) if has_quotes else _split_rows(path, encoding, delimiter)


def _split_rows(path: Path, encoding: str, delimiter: str) -> Iterator[list[str]]:
    """A file without a single '"' has one record per line and no quoting: splitting each line
    gives exactly what csv.reader gives, in about half the time (large exports are often like this).
    The file is read a block of whole lines at a time, split in C rather than line by line."""
    with path.open(encoding=encoding, errors="replace", newline="") as handle:
        while block := handle.read(_BLOCK_CHARS):
            block += handle.readline()  # up to the end of the line the block stopped in
            if "\r" in block:  # as for csv.reader, \r\n, \r and \n all end a line
                block = block.replace("\r\n", "\n").replace("\r", "\n")
            lines = block.split("\n")
            if not lines[-1]:  # the block ended with a line end, not a line
                lines.pop()
            yield from map(str.split, lines, repeat(delimiter))


def _csv_rows(path: Path, encoding: str, delimiter: str) -> Iterator[list[str]]:
    """Quoted CSV, read strictly: a quote that never closes, or closes in the middle of a field,
    would swallow the rows after it into one cell, so it stops the run naming where it opened.
    A record spanning lines must also have the width of the first record."""
    with path.open(encoding=encoding, errors="replace", newline="") as handle:
        reader = csv.reader(handle, delimiter=delimiter, strict=True)
        record, line, width = 0, 0, None
        try:
            for row in reader:
                if reader.line_num - line > 1 and row and width is not None:
                    if len(row) != width:
                        raise csv.Error("a quoted cell runs over several lines into other rows")
                    if _holds_whole_rows(row, delimiter, width):
                        raise csv.Error("a quoted cell holds lines that are whole rows")
                record, line = record + 1, reader.line_num
                if width is None and row:
                    width = len(row)
                yield row
        except csv.Error as error:
            where = f"row {record + 1}" + (f" (line {line + 1} of the file)" if line != record else "")
            raise ReportError(f"{path}: {where} has a quote (\") that does not close where its cell ends ({error}); "
                              "the rows after it cannot be read as written: fix that cell and export again") from None


# A field that is an address alone, as an export writes it (no space around): text inside a cell that
# has one between separators is a swallowed row, even a short one, not a note someone typed.
_ADDRESS_FIELD = re.compile(r"[^\s@\"]+@[^\s@\"]+\.[^\s@\"]+")


def _holds_whole_rows(row: list[str], delimiter: str, width: int) -> bool:
    """Whether a cell of a record that spans lines holds a line that is a row: as many separators as
    a row, or (a row whose trailing empty cells were dropped) a field that is an address alone. A
    misplaced quote swallowed whole records, even when the record's width came out right."""
    return width > 1 and any(_looks_like_a_row(line, delimiter, width)
                             for cell in row if "\n" in cell or "\r" in cell for line in cell.splitlines())


def _looks_like_a_row(line: str, delimiter: str, width: int) -> bool:
    fields = line.split(delimiter)
    return len(fields) >= width or (len(fields) > 1 and any(map(_ADDRESS_FIELD.fullmatch, fields)))


def read_xlsx(path: Path, sheet_range: str | None = None) -> tuple[Iterator[list], list[str]]:
    """The sheet `sheet_range` names ('Tickets' or 'Tickets!A1:F'), else the first visible; date cells
    arrive as datetime values."""
    from openpyxl import load_workbook  # here: a CSV report never loads it

    damage = _workbook_damage()

    try:
        workbook = load_workbook(path, read_only=True, data_only=True)
    except damage as error:
        raise ReportError(f"{path} is not a readable .xlsx workbook ({type(error).__name__}: {error})") from None
    names = list(workbook.sheetnames)
    sheet_name, cells = split_a1_range(sheet_range or "")
    try:
        bounds = a1_bounds(cells)
    except ValueError:
        workbook.close()
        raise ReportError(f"-range {sheet_range!r} is not a sheet name or an A1 range such as Tickets!A1:F") from None
    if sheet_name and sheet_name not in names:
        workbook.close()
        raise ReportError(f"{path.name} has no sheet {sheet_name!r}; its sheets: {', '.join(map(repr, names))} "
                          "(pick one with -range NAME)")
    return _xlsx_rows(workbook, workbook[sheet_name] if sheet_name else first_visible(workbook), bounds, damage), names


def first_visible(workbook):
    """The sheet a report without -range is read from: the first one shown (as for Google), never the
    one that happened to be open when the workbook was saved, nor a hidden one."""
    return next((sheet for sheet in workbook.worksheets if sheet.sheet_state == "visible"), workbook.worksheets[0])


def _xlsx_rows(workbook, sheet, bounds, damage: tuple[type[BaseException], ...]) -> Iterator[list]:
    first_row, first_column, last_row, last_column = bounds
    try:
        for row in sheet.iter_rows(min_row=first_row, min_col=first_column, max_row=last_row, max_col=last_column,
                                   values_only=True):
            yield list(row)
    except damage as error:  # a damaged sheet inside a workbook that opened
        raise ReportError(f"the workbook's sheet {sheet.title!r} cannot be read to its end ({type(error).__name__}: "
                          f"{error}): save the workbook again, or export the report as CSV") from None
    finally:
        workbook.close()


def _workbook_damage() -> tuple[type[BaseException], ...]:
    """What openpyxl raises for a damaged workbook (a broken zip, XML or value)."""
    import zipfile
    import zlib
    from xml.etree.ElementTree import ParseError

    from openpyxl.utils.exceptions import InvalidFileException

    return (zipfile.BadZipFile, zlib.error, ParseError, InvalidFileException, KeyError, OSError, ValueError,
            TypeError, EOFError, IndexError, AttributeError)
