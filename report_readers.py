"""Report files: a CSV or XLSX export read as a stream of rows (lists of cells)."""

from __future__ import annotations

import codecs
import csv
from collections.abc import Iterator
from itertools import repeat
from pathlib import Path

from ticket_core import ReportError

DELIMITERS = (",", ";", "\t")
_PROBE_CHUNK = 1 << 20
_BLOCK_CHARS = 1 << 20


def read_report(path: Path) -> Iterator[list]:
    """Rows of a .csv or .xlsx report. Raises ReportError for a file that cannot be read."""
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".txt", ".tsv", ".xlsx", ".xlsm"):
        raise ReportError(f"{path}: unsupported report type {suffix or '(no extension)'}; export the report as .csv or .xlsx")
    if not path.is_file():
        raise ReportError(f"report file not found: {path}")
    if suffix in (".xlsx", ".xlsm"):
        return read_xlsx(path)
    return read_csv(path)


def sniff(path: Path) -> tuple[str, bool]:
    """(encoding, has_quotes) from one pass over the bytes: UTF-8 (with or without BOM) when the
    whole file decodes as UTF-8, else Windows-1252; and whether any '"' occurs at all."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    utf8, has_quotes = True, False
    try:
        with path.open("rb") as raw:
            while chunk := raw.read(_PROBE_CHUNK):
                has_quotes = has_quotes or b'"' in chunk
                utf8 = utf8 and _decodes(decoder, chunk)
        utf8 = utf8 and _decodes(decoder, b"", final=True)
    except OSError as error:
        raise ReportError(f"cannot read {path}: {error.strerror or error}") from None
    return ("utf-8-sig" if utf8 else "cp1252"), has_quotes


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
            first_line = probe.readline()
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
    with path.open(encoding=encoding, errors="replace", newline="") as handle:
        try:
            yield from csv.reader(handle, delimiter=delimiter)
        except csv.Error as error:
            raise ReportError(f"{path} is not a readable CSV file: {error}") from None


def read_xlsx(path: Path) -> Iterator[list]:
    """The first worksheet; date cells arrive as datetime values."""
    import zipfile  # here with openpyxl: a CSV report needs neither

    from openpyxl import load_workbook
    from openpyxl.utils.exceptions import InvalidFileException

    try:
        workbook = load_workbook(path, read_only=True, data_only=True)
    except (zipfile.BadZipFile, InvalidFileException, KeyError, OSError, ValueError) as error:
        raise ReportError(f"{path} is not a readable .xlsx workbook ({error})") from None
    return _xlsx_rows(workbook)


def _xlsx_rows(workbook) -> Iterator[list]:
    try:
        sheet = workbook.worksheets[0]
        for row in sheet.iter_rows(values_only=True):
            yield list(row)
    finally:
        workbook.close()
