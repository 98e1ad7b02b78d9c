"""Dates in reports and in the state file: the accepted forms, never guessed, and how days are written (pure)."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta
from operator import itemgetter
from typing import NamedTuple

DEFAULT_DATE_FORMATS = (
    "%d/%m/%Y", "%d/%m/%Y %H:%M", "%d/%m/%Y %H:%M:%S",
    "%Y-%m-%d", "%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S",
    "%d-%b-%Y",
)
TIME_DIRECTIVES = ("%H", "%I", "%M", "%S", "%X", "%c", "%T", "%R")
# Spreadsheet serial dates count days from 1899-12-30 (Google Sheets, Excel).
SERIAL_EPOCH = datetime(1899, 12, 30)
# The one range of days the state file and --since may hold: a mistyped year must not silence every later run.
EARLIEST_DAY = date(1970, 1, 1)


def has_time_directive(fmt: str) -> bool:
    return any(directive in fmt for directive in TIME_DIRECTIVES)


# The regular expressions datetime.strptime builds for these directives (CPython's _strptime).
# A format made only of them and literal text is matched here with one regex and gives what
# strptime gives, several times faster: exports with timestamps have a distinct text per row.
_STRPTIME_DIRECTIVES = {
    "d": r"(3[0-1]|[1-2]\d|0[1-9]|[1-9]| [1-9])",
    "m": r"(1[0-2]|0[1-9]|[1-9])",
    "Y": r"(\d\d\d\d)",
    "H": r"(2[0-3]|[0-1]\d|\d)",
    "M": r"([0-5]\d|\d)",
    "S": r"(6[0-1]|[0-5]\d|\d)",
}


_DATETIME_FIELDS = ("Y", "m", "d", "H", "M", "S")
_STRPTIME_DEFAULTS = (1900, 1, 1, 0, 0, 0)  # what strptime assumes for a field the format lacks


class _NumericFormat(NamedTuple):
    regex: re.Pattern
    arguments: Callable[[tuple], tuple]  # (group values..., *defaults) -> datetime's arguments


def _strptime_regex(fmt: str) -> _NumericFormat | None:
    """The regex strptime would match `fmt` with, and how its groups become datetime's arguments;
    None when the format uses another directive (month names, say), left to strptime itself."""
    fmt = re.sub(r"\s+", r"\\s+", re.sub(r"([\\.^$*+?\(\){}\[\]|])", r"\\\1", fmt))
    pattern, fields = "", []
    while "%" in fmt:
        index = fmt.index("%")
        directive = fmt[index + 1:index + 2]
        if directive == "%":
            pattern += fmt[:index] + "%"
        elif directive in _STRPTIME_DIRECTIVES and directive not in fields:
            pattern += fmt[:index] + _STRPTIME_DIRECTIVES[directive]
            fields.append(directive)
        else:
            return None
        fmt = fmt[index + 2:]
    positions = [fields.index(field) if field in fields else len(fields) + slot  # a group, or strptime's default
                 for slot, field in enumerate(_DATETIME_FIELDS)]
    return _NumericFormat(re.compile(pattern + fmt, re.IGNORECASE), itemgetter(*positions))


class DateParser:
    """Parses report date cells: text in the given formats (never guessed), spreadsheet serial
    numbers, and the date cells of an XLSX file."""

    def __init__(self, formats: Sequence[str] = DEFAULT_DATE_FORMATS) -> None:
        self.formats_text = tuple(formats)
        self.formats = tuple((fmt, has_time_directive(fmt), _strptime_regex(fmt)) for fmt in formats)

    def parse(self, value: object) -> tuple[datetime, bool] | None:
        """(moment, has_time) or None when the cell is not a date in an accepted form."""
        if isinstance(value, datetime):
            return value.replace(tzinfo=None), value.time() != datetime.min.time()
        if isinstance(value, date):
            return datetime(value.year, value.month, value.day), False
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return self._from_serial(float(value))
        return self._parse_text(str(value or "").strip())

    def _parse_text(self, text: str) -> tuple[datetime, bool] | None:
        for fmt, has_time, numeric in self.formats:
            try:
                if numeric is None:
                    return datetime.strptime(text, fmt), has_time
                found = numeric.regex.match(text)  # as strptime: from the start, then nothing left over
                if found is not None and found.end() == len(text):
                    return datetime(*numeric.arguments((*map(int, found.groups()), *_STRPTIME_DEFAULTS))), has_time
            except ValueError:  # not this format, or no such day (31/02) or time
                continue
        return None

    @staticmethod
    def _from_serial(serial: float) -> tuple[datetime, bool] | None:
        if not 1 <= serial < 2958466:  # 1899-12-31 .. 9999-12-31
            return None
        moment = SERIAL_EPOCH + timedelta(days=serial)
        moment = moment.replace(microsecond=0) + timedelta(seconds=round(moment.microsecond / 1e6))
        return moment, not float(serial).is_integer()


_DAY_PARSER = DateParser(("%d/%m/%Y", "%Y-%m-%d"))


def parse_day(text: str) -> date:
    """A day as the state file and --since write it: DD/MM/YYYY, or ISO YYYY-MM-DD."""
    parsed = _DAY_PARSER.parse(text.strip())
    if parsed is None:
        raise ValueError(f"{text.strip()!r} is not a date in the form DD/MM/YYYY")
    return parsed[0].date()


def format_day(day: date) -> str:
    return f"{day.day:02d}/{day.month:02d}/{day.year:04d}"


def check_day_range(day: date, today: date, what: str) -> date:
    """`day` when it lies between 1970 and tomorrow; else ValueError naming `what`."""
    if not EARLIEST_DAY <= day <= today + timedelta(days=1):
        raise ValueError(f"{what} {format_day(day)} is before 1970 or after tomorrow: check the year")
    return day


def month_first_form(formats: Sequence[str], text: str) -> str:
    """The first of `formats` that reads `text` once its day and month are swapped ('' if none):
    the sign of a month-first report."""
    for fmt in formats:
        if "%d" not in fmt or "%m" not in fmt:
            continue
        swapped = fmt.replace("%d", "\0").replace("%m", "%d").replace("\0", "%m")
        try:
            datetime.strptime(text, swapped)
        except ValueError:
            continue
        return swapped
    return ""


def iso_moment(moment: datetime, has_time: bool) -> str:
    return moment.isoformat(timespec="seconds") if has_time else moment.date().isoformat()
