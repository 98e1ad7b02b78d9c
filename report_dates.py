"""Dates in reports and in the state file: the accepted forms, never guessed, and how days are written (pure)."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta, timezone
from operator import itemgetter
from typing import NamedTuple

# Pseudo-format for ISO 8601 moments: T or space, an optional fraction, an optional Z or offset.
ISO_8601 = "ISO 8601"
DEFAULT_DATE_FORMATS = (
    "%d/%m/%Y", "%d/%m/%Y %H:%M", "%d/%m/%Y %H:%M:%S",
    "%d.%m.%Y", "%d.%m.%Y %H:%M", "%d.%m.%Y %H:%M:%S",
    "%Y-%m-%d", ISO_8601,
    "%d-%b-%Y",
)
TIME_DIRECTIVES = ("%H", "%I", "%M", "%S", "%X", "%c", "%T", "%R")
# Spreadsheet serial dates count days from 1899-12-30 (Google Sheets, Excel).
SERIAL_EPOCH = datetime(1899, 12, 30)
# The one range of days the state file and --since may hold: a mistyped year must not silence every later run.
EARLIEST_DAY = date(1970, 1, 1)


def has_time_directive(fmt: str) -> bool:
    return fmt == ISO_8601 or any(directive in fmt for directive in TIME_DIRECTIVES)


_ISO_MOMENT = re.compile(r"(\d{4})-(\d\d)-(\d\d)[T ](\d\d):(\d\d)(?::(\d\d)(?:[.,](\d+))?)?"
                         r"\s*(Z|[+-]\d\d(?::?\d\d)?)?", re.IGNORECASE)


def parse_iso_moment(text: str) -> datetime | None:
    """An ISO 8601 moment ('2026-11-21T14:09:00.123+01:00'), as local time of this machine when it
    carries a zone; None when `text` is not one."""
    found = _ISO_MOMENT.fullmatch(text)
    if found is None:
        return None
    year, month, day, hour, minute, second, fraction, zone = found.groups()
    microsecond = int((fraction or "0")[:6].ljust(6, "0"))
    moment = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second or 0), microsecond)
    if zone is None:
        return moment
    if zone.upper() == "Z":
        offset = timedelta(0)
    else:
        digits = zone[1:].replace(":", "")
        offset = timedelta(hours=int(digits[:2]), minutes=int(digits[2:] or 0)) * (-1 if zone[0] == "-" else 1)
    return local_time(moment.replace(tzinfo=timezone(offset)))


def check_date_format(fmt: str) -> None:
    """ValueError naming what is wrong when strptime cannot use `fmt` at all: an unknown directive,
    a stray %, or a field given twice (every date would otherwise be skipped, or the run fail)."""
    try:
        datetime.strptime("", fmt)
    except re.error:  # strptime compiles a field given twice into a regex that cannot be
        raise ValueError(f"{fmt!r} gives the same field twice") from None
    except ValueError as error:
        if "does not match format" not in str(error):  # only what an empty text cannot match is fine
            raise ValueError(f"{fmt!r}: {error}") from None


def local_time(moment: datetime) -> datetime:
    """A moment with a zone as the local time of the machine that runs the job (no zone left)."""
    return moment.astimezone().replace(tzinfo=None) if moment.tzinfo is not None else moment


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
        self.formats = tuple((fmt, has_time_directive(fmt), None if fmt == ISO_8601 else _strptime_regex(fmt))
                             for fmt in formats)

    def parse(self, value: object) -> tuple[datetime, bool] | None:
        """(moment, has_time) or None when the cell is not a date in an accepted form, or one the
        calendar cannot hold (9999-12-31T23:30-05:00 made local, a serial past 9999-12-31)."""
        try:
            return self._parse(value)
        except OverflowError:
            return None

    def _parse(self, value: object) -> tuple[datetime, bool] | None:
        if isinstance(value, datetime):
            return local_time(value), value.time() != datetime.min.time()
        if isinstance(value, date):
            return datetime(value.year, value.month, value.day), False
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return self._from_serial(float(value))
        return self._parse_text(str(value or "").strip())

    def _parse_text(self, text: str) -> tuple[datetime, bool] | None:
        for fmt, has_time, numeric in self.formats:
            try:
                if fmt == ISO_8601:
                    moment = parse_iso_moment(text)
                    if moment is not None:
                        return moment, True
                    continue
                if numeric is None:
                    if ("%b" in fmt or "%B" in fmt) and not _MONTH_WORD.search(text):
                        continue  # no month name in it: strptime would fail, slowly
                    return local_time(datetime.strptime(text, fmt)), has_time  # %z: a zone, made local
                found = numeric.regex.match(text)  # as strptime: from the start, then nothing left over
                if found is not None and found.end() == len(text):
                    return datetime(*numeric.arguments((*map(int, found.groups()), *_STRPTIME_DEFAULTS))), has_time
            except (ValueError, OverflowError):  # not this format, no such day (31/02) or time, past the calendar
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


def _with_clock_variants(formats: Sequence[str]) -> list[str]:
    """`formats`, each with a 24-hour time also as a 12-hour one with AM/PM (' %p' and '%p')."""
    variants = []
    for fmt in formats:
        variants.append(fmt)
        if "%H" in fmt:
            variants += [fmt.replace("%H", "%I") + " %p", fmt.replace("%H", "%I") + "%p"]
    return variants


def _swapped(fmt: str) -> str:
    return fmt.replace("%d", "\0").replace("%m", "%d").replace("\0", "%m")


_AM_PM = re.compile(r"[AP]\.?M", re.IGNORECASE)
_MONTH_WORD = re.compile(r"[^\W\d_]{3}")   # a month's name or abbreviation: three letters at least


def _reads(fmt: str, text: str) -> bool:
    """Whether strptime reads `text` with `fmt`. Asked about 30 times for every unreadable date (the
    month-first check), so a form that cannot match is ruled out first (AM/PM, month names), and a
    numeric form is matched with its compiled regex (_strptime_regex), several times faster."""
    if "%p" in fmt and not _AM_PM.search(text) or ("%b" in fmt or "%B" in fmt) and not _MONTH_WORD.search(text):
        return False
    numeric = _numeric_form(fmt)
    try:
        if numeric is None:
            datetime.strptime(text, fmt)
            return True
        found = numeric.regex.match(text)
        if found is None or found.end() != len(text):
            return False
        datetime(*numeric.arguments((*map(int, found.groups()), *_STRPTIME_DEFAULTS)))
    except (ValueError, OverflowError):
        return False
    return True


@functools.lru_cache(maxsize=256)
def _numeric_form(fmt: str) -> _NumericFormat | None:
    return _strptime_regex(fmt)


def month_first_form(formats: Sequence[str], text: str) -> str:
    """The whole format that reads `text` once its day and month are swapped ('' if none): the sign
    of a month-first report. The formats in use are tried, and each with a 12-hour clock (AM/PM);
    a text that also reads day-first in such a form is ambiguous, not a sign."""
    pairs, could_read_swapped = _month_first_forms(tuple(formats))
    if not could_read_swapped(text):  # nearly every unreadable date: one regex, not thirty strptime calls
        return ""
    for fmt, swapped in pairs:
        if _reads(fmt, text):
            return ""
        if _reads(swapped, text):
            return swapped
    return ""


@functools.lru_cache(maxsize=32)
def _month_first_forms(formats: tuple[str, ...]) -> tuple[list[tuple[str, str]], Callable[[str], bool]]:
    """The (form, form with day and month swapped) pairs month_first_form tries, and a quick test that
    is False only when no swapped form can read a text: the numeric ones as one regex, the others
    (AM/PM, month names) by what they need."""
    pairs = [(fmt, _swapped(fmt)) for fmt in _with_clock_variants([fmt for fmt in formats if "%d" in fmt and "%m" in fmt])]
    numeric = [_numeric_form(swapped) for _, swapped in pairs]
    others = [swapped for (_, swapped), form in zip(pairs, numeric, strict=True) if form is None]
    combined = re.compile("|".join(f"(?:{form.regex.pattern})" for form in numeric if form is not None) or "(?!)",
                          re.IGNORECASE)
    with_am_pm = any("%p" in fmt for fmt in others)
    with_month_name = any("%b" in fmt or "%B" in fmt for fmt in others)
    with_other = any("%p" not in fmt and "%b" not in fmt and "%B" not in fmt for fmt in others)

    def could_read_swapped(text: str) -> bool:
        return bool(combined.fullmatch(text) or with_other or with_am_pm and _AM_PM.search(text)
                    or with_month_name and _MONTH_WORD.search(text))
    return pairs, could_read_swapped


# Forms a report's dates are often in, besides the defaults: offered as the fix for a date column
# the run cannot read. Day-first and month-first forms are both named when both read a value.
_COMMON_FORMS = (*_with_clock_variants([fmt for fmt in DEFAULT_DATE_FORMATS if "%d" in fmt and "%m" in fmt]),
                 "%Y/%m/%d", "%Y/%m/%d %H:%M", "%Y/%m/%d %H:%M:%S", "%d %b %Y", "%d %B %Y", "%b %d, %Y", "%B %d, %Y",
                 "%d/%m/%y", "%Y%m%d")


def forms_that_read(text: str) -> list[str]:
    """The common date forms that read `text`: with a month-first twin when both read it (01/02/2026)."""
    found = []
    for fmt in _COMMON_FORMS:
        for form in (fmt, _swapped(fmt)):
            if form not in found and _reads(form, text):
                found.append(form)
    return found


def iso_moment(moment: datetime, has_time: bool) -> str:
    return moment.isoformat(timespec="seconds") if has_time else moment.date().isoformat()
