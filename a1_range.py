"""A1 ranges ('Tickets', "'My sheet'!A2:F", 'A:F'), read the same way for workbooks and Google Sheets (pure)."""

from __future__ import annotations

import re

_A1_CELLS = re.compile(r"([A-Za-z]{1,3}\d*|\d+)(:([A-Za-z]{1,3}\d*|\d+))?")


def looks_like_cells(text: str) -> bool:
    return _A1_CELLS.fullmatch(text.strip()) is not None


def split_a1_range(range_: str) -> tuple[str, str]:
    """(sheet, cells) of an A1 range: 'Tickets' -> ('Tickets', ''), "'My sheet'!A2:F" -> ('My sheet', 'A2:F'),
    'A2:F' -> ('', 'A2:F')."""
    sheet, bang, cells = range_.rpartition("!")
    if not bang:
        return ("", range_.strip()) if looks_like_cells(range_) else (_unquoted(range_), "")
    return _unquoted(sheet), cells.strip()


def _unquoted(sheet: str) -> str:
    sheet = sheet.strip()
    return sheet[1:-1].replace("''", "'") if len(sheet) >= 2 and sheet[0] == sheet[-1] == "'" else sheet


def a1_bounds(cells: str) -> tuple[int | None, int | None, int | None, int | None]:
    """(first row, first column, last row, last column) of 'A2:F' style cells, 1-based; None where open.
    ValueError for text that is not cells."""
    if not cells:
        return None, None, None, None
    found = _A1_CELLS.fullmatch(cells)
    if not found:
        raise ValueError(cells)
    start, end = found.group(1), found.group(3) or found.group(1)
    first_row, first_column = _a1_cell(start)
    last_row, last_column = _a1_cell(end)
    return first_row, first_column, last_row, last_column


def _a1_cell(cell: str) -> tuple[int | None, int | None]:
    letters = cell.rstrip("0123456789")
    digits = cell[len(letters):]
    column = 0
    for letter in letters.upper():
        column = column * 26 + ord(letter) - ord("A") + 1
    return (int(digits) if digits else None), (column or None)


def column_letters(column: int) -> str:
    """1 -> A, 26 -> Z, 27 -> AA."""
    letters = ""
    while column:
        column, remainder = divmod(column - 1, 26)
        letters = chr(ord("A") + remainder) + letters
    return letters


def quoted_sheet(title: str) -> str:
    return "'" + title.replace("'", "''") + "'"
