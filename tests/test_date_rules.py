"""Report dates in-process: ISO moments with every zone form, serial numbers on their bounds, the
12-hour variants and the month-first check, with the machine's zone pinned. Written for the
survivors of a mutation run (README, "Mutation testing")."""

import time
from datetime import date, datetime

import pytest

from a1_range import a1_bounds, split_a1_range
from report_dates import (
    DateParser,
    check_day_range,
    month_first_form,
    parse_day,
    parse_iso_moment,
)


@pytest.fixture
def utc(monkeypatch):
    """The machine's zone is UTC for the test (TZ, read again by the C library)."""
    if not hasattr(time, "tzset"):
        pytest.skip("needs time.tzset (POSIX)")
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.parametrize("text, moment", [
    ("2026-11-21T14:09", datetime(2026, 11, 21, 14, 9)),
    ("2026-11-21 14:09:05", datetime(2026, 11, 21, 14, 9, 5)),
    ("2026-11-21T14:09:05.5", datetime(2026, 11, 21, 14, 9, 5, 500000)),
    ("2026-11-21T14:09:05,123", datetime(2026, 11, 21, 14, 9, 5, 123000)),
    ("2026-11-21T14:09:05.1234567", datetime(2026, 11, 21, 14, 9, 5, 123456)),     # .NET's 7 digits, cut
    ("2026-11-21T14:09:05Z", datetime(2026, 11, 21, 14, 9, 5)),
    ("2026-11-21T14:09:05z", datetime(2026, 11, 21, 14, 9, 5)),
    ("2026-11-21T14:09:05+01:00", datetime(2026, 11, 21, 13, 9, 5)),
    ("2026-11-21T14:09:05-0230", datetime(2026, 11, 21, 16, 39, 5)),
    ("2026-11-21T14:09:05+05:45", datetime(2026, 11, 21, 8, 24, 5)),
    ("2026-11-21T14:09:05-07", datetime(2026, 11, 21, 21, 9, 5)),
    ("2026-11-21T23:30:00-12:00", datetime(2026, 11, 22, 11, 30)),
    ("2026-11-21T00:30:00+14:00", datetime(2026, 11, 20, 10, 30)),
])
def test_iso_moments_with_every_zone_form_become_the_machine_s_local_time(utc, text, moment):
    assert parse_iso_moment(text) == moment


def test_text_that_is_not_an_iso_moment_is_none():
    assert parse_iso_moment("2026-11-21") is None and parse_iso_moment("21/11/2026 14:09") is None


def test_a_workbook_date_with_a_zone_is_made_local_and_one_without_is_kept(utc):
    from datetime import timedelta, timezone

    parser = DateParser()
    assert parser.parse(datetime(2026, 11, 21, 14, 9, tzinfo=timezone(timedelta(hours=2)))) == (
        datetime(2026, 11, 21, 12, 9), True)
    assert parser.parse(datetime(2026, 11, 21)) == (datetime(2026, 11, 21), False)
    assert parser.parse(date(2026, 11, 21)) == (datetime(2026, 11, 21), False)


@pytest.mark.parametrize("serial, expected", [
    (0.99, None), (1, (datetime(1899, 12, 31), False)), (2958465, (datetime(9999, 12, 31), False)),
    (2958466, None), (46347.5, (datetime(2026, 11, 21, 12, 0), True)),
    (46347.99999999, (datetime(2026, 11, 22, 0, 0), True)),                 # rounded to the second
    (46347 + 1 / 86400 - 1e-9, (datetime(2026, 11, 21, 0, 0, 1), True)),
])
def test_serial_numbers_count_from_1899_on_their_bounds(serial, expected):
    assert DateParser().parse(serial) == expected


def test_an_empty_cell_is_no_date_and_a_date_that_fails_one_form_tries_the_next():
    parser = DateParser(("%d/%m/%Y", "%Y-%m-%d"))
    assert parser.parse(None) is None and parser.parse("") is None
    assert parser.parse("31/02/2026") is None                       # no such day: not in any form
    assert parser.parse("2026-11-21") == (datetime(2026, 11, 21), False)
    assert DateParser(("%d-%b-%Y", "%d/%m/%Y")).parse("21/11/2026") == (datetime(2026, 11, 21), False)


def test_a_numeric_form_with_a_literal_percent_and_a_repeated_field_is_left_to_strptime():
    assert DateParser(("%d%%%m%%%Y",)).parse("21%11%2026") == (datetime(2026, 11, 21), False)
    assert DateParser(("%d %m %Y",)).parse("21  11 2026") == (datetime(2026, 11, 21), False)
    assert DateParser(("%d/%b/%Y",)).parse("21/NOV/2026") == (datetime(2026, 11, 21), False)
    assert DateParser(("%d/%m/%YT%H",)).parse("21/11/2026t10") == (datetime(2026, 11, 21, 10), True)


@pytest.mark.parametrize("fmt, problem", [("%d/%m/%Y %d", "gives the same field twice"),
                                           ("%d/%Q/%Y", "'Q' is a bad directive"), ("%d/%m/%Y %", "stray %")])
def test_a_date_format_strptime_cannot_use_is_refused_at_start(fmt, problem):
    from report_dates import check_date_format

    check_date_format("%d %% %m")
    with pytest.raises(ValueError, match=problem):
        check_date_format(fmt)


def test_a_date_format_with_a_field_twice_is_a_usage_error_not_an_unexpected_one(tmp_path):
    from conftest import run_job

    result = run_job("--report", str(tmp_path / "r.csv"), "-testmode", "yes", "--date-format", "%d/%m/%Y %d")
    assert result.returncode == 2
    assert result.stderr.strip() == ("error: --date-format '%d/%m/%Y %d' gives the same field twice; use a strptime "
                                     "format such as %d/%m/%Y")


def test_month_first_dates_are_named_with_their_12_hour_form():
    formats = ("%d/%m/%Y %H:%M",)
    assert month_first_form(formats, "11/25/2026 10:30") == "%m/%d/%Y %H:%M"
    assert month_first_form(formats, "11/25/2026 10:30 PM") == "%m/%d/%Y %I:%M %p"
    assert month_first_form(formats, "11/25/2026 10:30PM") == "%m/%d/%Y %I:%M%p"
    assert month_first_form(formats, "25/11/2026 10:30") == ""
    assert month_first_form(("%Y-%m-%d",), "2026-25-11") == "%Y-%d-%m"
    assert month_first_form(("%m/%Y",), "25/2026") == ""


def test_days_of_the_state_and_since_lie_between_1970_and_tomorrow():
    today = date(2026, 11, 27)
    assert check_day_range(date(1970, 1, 1), today, "x") == date(1970, 1, 1)
    with pytest.raises(ValueError, match="^--since 31/12/1969 is before 1970 or after tomorrow: check the year$"):
        check_day_range(date(1969, 12, 31), today, "--since")
    with pytest.raises(ValueError, match="^'21.11.26' is not a date in the form DD/MM/YYYY$"):
        parse_day(" 21.11.26 ")


def test_a_quoted_sheet_name_of_two_quotes_is_empty_and_a_cell_reads_its_letters():
    assert split_a1_range("''!A1:B2")[0] == ""
    assert split_a1_range("'a'!A1")[0] == "a"
    assert a1_bounds("B2:D10") == a1_bounds("b2:d10") and a1_bounds("AX1:AX2") == (1, 50, 2, 50)


@pytest.mark.parametrize("form, text, moment", [("%b %d, %Y", "Dec 01, 2026", datetime(2026, 12, 1)),
                                                ("%B %d %Y", "December 1 2026", datetime(2026, 12, 1)),
                                                ("%y%m%d", "261201", datetime(2026, 12, 1))])
def test_forms_the_job_suggests_read_as_strptime_reads_them_never_unexpected(form, text, moment):
    from report_dates import DateParser

    assert DateParser((form,)).parse(text) == (moment, False)


@pytest.mark.skipif(not hasattr(__import__("time"), "tzset"), reason="time.tzset is POSIX")
def test_a_moment_in_the_daylight_saving_gap_is_made_local_as_the_clock_shows_it(monkeypatch):
    import time

    from report_dates import local_time, parse_iso_moment

    monkeypatch.setenv("TZ", "Europe/London")
    time.tzset()
    try:
        # 01:30 UTC on 29 March 2026 is 02:30 in London (the clocks went from 01:00 to 02:00 GMT/BST).
        assert parse_iso_moment("2026-03-29T01:30:00Z") == datetime(2026, 3, 29, 2, 30)
        # A report's own clock time (no zone) is kept as written, even one the clocks skipped.
        assert local_time(datetime(2026, 3, 29, 1, 30)) == datetime(2026, 3, 29, 1, 30)
        assert DateParser(("%d/%m/%Y %H:%M",)).parse("29/03/2026 01:30") == (datetime(2026, 3, 29, 1, 30), True)
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


def test_a_month_name_form_that_cannot_read_a_text_leaves_the_next_forms_to_try():
    parser = DateParser(("%b %d, %Y", "%d/%m/%Y"))
    assert parser.parse("21/11/2026") == (datetime(2026, 11, 21), False)
    assert parser.parse("Nov 21, 2026") == (datetime(2026, 11, 21), False)
    assert DateParser(("%d %B %Y", "%Y-%m-%d")).parse("2026-11-21") == (datetime(2026, 11, 21), False)
    assert DateParser(("%b %d, %Y", "%d %B %Y")).parse("21 November 2026") == (datetime(2026, 11, 21), False)
