"""The core's rules for rows that come back: held tickets, --retry-rejected, rejected entries and the
unreadable-column stop, called with literal data (no files, no network). Written for the survivors
of a mutation run (README, "Mutation testing"): each test fails when its rule breaks."""

from collections import Counter
from datetime import date, datetime

import pytest
from conftest import closed_ticket, customer

from ticket_core import (
    BY_ADDRESS,
    HELD_KEEP_DAYS,
    REJECTED_KEEP_DAYS,
    SKIP_BAD_DATE,
    SKIP_FUTURE_DATE,
    SKIP_NO_EMAIL,
    SKIP_NO_TICKET,
    ClosedTicket,
    Recall,
    ReportError,
    RunState,
    Selection,
    SelectOptions,
    SkippedRow,
    cell_text,
    customer_key,
    drop_already_notified,
    drop_rejected,
    find_columns,
    finish_state,
    group_by_customer,
    held_back_count,
    held_from,
    held_settled_by,
    index_by_email,
    is_header_row,
    is_valid_email,
    merged_recalls,
    name_key,
    next_held,
    next_last_run_date,
    recall_matches,
    recalls_of_held,
    recalls_of_rejected,
    refuse_unreadable_column,
    rejection_entry,
    select_closed_tickets,
    split_by_weekly_guard,
    still_held,
    without_delivered,
)

TODAY = date(2026, 11, 27)
NOW = datetime(2026, 11, 27, 9, 0)
ANN, BOB = "ann@example.com", "bob@example.com"
HEADER = ["Firstname", "Lastname", "Email", "Ticket", "Status", "Date"]


def select(rows, since=date(2026, 11, 20), header=HEADER, **options):
    return select_closed_tickets([header, *rows] if header else rows, since, NOW, SelectOptions(**options))


# ---------------------------------------------------------------- recalls

def test_a_recall_takes_only_its_customer_s_row_closed_no_earlier_than_recorded():
    moment = datetime(2026, 11, 10, 12, 0)
    mine = Recall(customer_key(ANN), "2026-11-10T12:00:00")
    assert recall_matches([mine], moment, ANN)                                   # on the recorded moment
    assert recall_matches([mine], datetime(2026, 11, 10, 11, 59), ANN)           # the same day, written earlier
    assert not recall_matches([mine], datetime(2026, 11, 9, 23, 59), ANN)        # the day before
    assert not recall_matches([mine], moment, BOB)                               # another customer
    assert not recall_matches([mine], moment, "")                                # an address not usable
    assert recall_matches([Recall("", "2026-11-10")], moment, BOB)               # any address when none was known
    assert recall_matches([Recall(customer_key(ANN), "")], datetime(2020, 1, 1), ANN)   # any date when none was
    assert not recall_matches([Recall(customer_key(BOB), "")], moment, ANN)
    assert recall_matches([Recall(customer_key(BOB), ""), mine], moment, ANN)   # any of several
    assert not recall_matches([], moment, ANN)


def test_skipped_rows_are_held_only_for_what_the_help_desk_can_fix():
    rows = [SkippedRow(2, SKIP_BAD_DATE, "31/02/2026", "T1", customer_key(ANN), ""),
            SkippedRow(3, SKIP_NO_EMAIL, "ann(at)example", "T2", "", "2026-11-21"),
            SkippedRow(4, SKIP_FUTURE_DATE, "01/01/2030", "T3", customer_key(ANN), ""),
            SkippedRow(5, SKIP_NO_TICKET, "", "", customer_key(ANN), "2026-11-21"),
            SkippedRow(6, SKIP_BAD_DATE, "x", "", customer_key(ANN), "")]
    assert held_from(rows) == {
        f"{customer_key(ANN)}/T1": {"ticket": "T1", "reason": SKIP_BAD_DATE, "customer": customer_key(ANN), "name": "",
                                    "closed": ""},
        "-/T2": {"ticket": "T2", "reason": SKIP_NO_EMAIL, "customer": "", "name": "", "closed": "2026-11-21"},
        f"{customer_key(ANN)}/T3": {"ticket": "T3", "reason": SKIP_FUTURE_DATE, "customer": customer_key(ANN),
                                    "name": "", "closed": ""},
    }


def test_held_and_rejected_entries_become_recalls_by_ticket_id():
    held = {"T1": {"day": "2026-11-20", "reason": SKIP_BAD_DATE, "customer": "k1", "closed": ""}}
    assert recalls_of_held(held) == {"T1": (Recall("k1", ""),)}
    rejected = {"k1": {"day": "2026-11-20", "reason": "422", "tickets": {"T1": "2026-11-02", "T2": "2026-11-03"}},
                "k2": {"day": "2026-11-21", "reason": "422", "tickets": {"T1": "2026-11-05"}}}
    assert recalls_of_rejected(rejected) == {"T1": (Recall("", "2026-11-02"), Recall("", "2026-11-05")),
                                             "T2": (Recall("", "2026-11-03"),)}
    assert merged_recalls(recalls_of_held(held), recalls_of_rejected(rejected))["T1"] == (
        Recall("k1", ""), Recall("", "2026-11-02"), Recall("", "2026-11-05"))
    assert merged_recalls({}, {"T9": (Recall("a", ""),)}) == {"T9": (Recall("a", ""),)}


def test_a_recalled_row_from_before_the_window_is_selected_and_named():
    rows = [["Ann", "Lee", ANN, "T1", "Closed", "02/11/2026"], ["Bob", "Ray", BOB, "T1", "Closed", "03/11/2026"],
            ["Ann", "Lee", ANN, "T2", "Closed", "04/11/2026"]]
    selection = select(rows, recall={"T1": (Recall(customer_key(ANN), ""),)})
    assert [(t.email, t.ticket_id) for t in selection.tickets] == [(ANN, "T1")]
    assert selection.recalled == {"T1"}
    assert select(rows, recall={"T3": (Recall("", ""),)}).tickets == [] and select(rows).recalled == set()


def test_a_held_ticket_settles_once_its_customer_is_emailed_and_others_stay():
    held = {"T1": {"day": "2026-11-20", "reason": SKIP_BAD_DATE, "customer": customer_key(ANN), "closed": ""},
            "T2": {"day": "2026-11-20", "reason": SKIP_NO_EMAIL, "customer": "", "closed": "2026-11-22"}}
    ann = customer(ANN, "T1", closed=date(2026, 11, 21))
    assert held_settled_by(held, ann) == {"T2": held["T2"]}
    assert held_settled_by(held, customer(BOB, "T1", closed=date(2026, 11, 21))) is None   # not its customer
    early = customer(BOB, "T2", closed=date(2026, 11, 21))                               # closed before the held row
    assert held_settled_by(held, early) is None
    assert held_settled_by(held, customer(BOB, "T2", closed=date(2026, 11, 22))) == {"T1": held["T1"]}
    assert held_back_count([ann, customer(BOB, "T9", closed=TODAY)], held) == 1
    assert held_back_count([ann], {}) == 0


def test_next_held_adds_the_newly_held_keeps_first_days_and_forgets_after_90_days():
    first_day = date.fromordinal(TODAY.toordinal() - HELD_KEEP_DAYS).isoformat()
    too_old = date.fromordinal(TODAY.toordinal() - HELD_KEEP_DAYS - 1).isoformat()
    held = {"T1": {"day": first_day, "reason": SKIP_BAD_DATE, "customer": "k", "closed": ""},
            "T2": {"day": too_old, "reason": SKIP_BAD_DATE, "customer": "k", "closed": ""}}
    newly = {"T1": {"ticket": "T1", "reason": SKIP_NO_EMAIL, "customer": "", "name": "", "closed": "2026-11-26"},
             "T3": {"ticket": "T3", "reason": SKIP_BAD_DATE, "customer": "k", "name": "", "closed": ""},
             "T4": {"ticket": "T4", "reason": SKIP_BAD_DATE, "customer": customer_key(ANN), "name": "", "closed": ""}}
    usable_elsewhere = [customer(ANN, "T4", closed=TODAY)]
    assert next_held(held, newly, usable_elsewhere, TODAY) == {
        "T1": {"day": first_day, **newly["T1"]},
        "T3": {"day": TODAY.isoformat(), **newly["T3"]},
    }
    assert next_held(held, {}, [], TODAY) == {"T1": held["T1"]}
    assert next_held({}, {}, usable_elsewhere, TODAY) == {}
    assert next_held({}, {"T5": newly["T3"]}, [], TODAY) == {"T5": {"day": TODAY.isoformat(), **newly["T3"]}}
    # Another customer's usable row of the same id holds nothing back (section 21).
    bobs = {"k/T4": {**newly["T4"], "customer": customer_key(BOB)}}
    assert next_held({}, bobs, usable_elsewhere, TODAY) == {"k/T4": {"day": TODAY.isoformat(), **bobs["k/T4"]}}


def test_a_refusal_adds_to_the_customer_s_earlier_rejected_tickets():
    ann = customer(ANN, "T2", closed=date(2026, 11, 21))
    state = RunState(date(2026, 11, 20), rejected={ann.key: {"day": "2026-11-01", "reason": "old",
                                                             "tickets": {"T1": "2026-10-30"}}})
    assert rejection_entry(state, ann, TODAY, "HTTP 422 bad") == (
        ann.key, {"day": TODAY.isoformat(), "reason": "HTTP 422 bad", "tickets": {"T1": "2026-10-30", "T2": "2026-11-21"},
                  "name": name_key(ann.full_name)})
    other = RunState(date(2026, 11, 20), rejected={"someone else": {"day": "x", "reason": "y", "tickets": {"T9": "z"}}})
    assert rejection_entry(other, ann, TODAY, "r")[1]["tickets"] == {"T2": "2026-11-21"}


def test_a_delivery_settles_rejected_tickets_closed_no_later_than_it_under_any_address():
    rejected = {"k1": {"day": "2026-11-20", "reason": "422", "tickets": {"T1": "2026-11-21", "T2": "2026-11-21"}},
                "k2": {"day": "2026-11-20", "reason": "422", "tickets": {"T1": "2026-11-25"}}}
    delivered = customer(BOB, "T1", closed=date(2026, 11, 21))   # a corrected address, the same day
    assert without_delivered(rejected, delivered) == {
        "k1": {"day": "2026-11-20", "reason": "422", "tickets": {"T2": "2026-11-21"}},
        "k2": {"day": "2026-11-20", "reason": "422", "tickets": {"T1": "2026-11-25"}},   # a later closing waits
    }
    assert without_delivered(rejected, customer(BOB, "T1", closed=date(2026, 11, 20))) is None
    assert without_delivered(rejected, customer(BOB, "T7", closed=TODAY)) is None
    both = customer(ANN, "T1", "T2", closed=TODAY)
    assert without_delivered(rejected, both) == {}


def test_rejected_tickets_wait_only_under_their_own_address():
    ann = customer(ANN, closed_ticket(ANN, "T1", date(2026, 11, 21)), closed_ticket(ANN, "T2", date(2026, 11, 22)))
    rejected = {ann.key: {"day": "2026-11-21", "reason": "422", "tickets": {"T1": "2026-11-21"}}}
    remaining, dropped = drop_rejected([ann, customer(BOB, "T1", closed=TODAY)], rejected)
    assert dropped == 1 and [c.ticket_ids for c in remaining] == [["T2"], ["T1"]]


def test_state_is_forgotten_on_the_day_after_each_horizon_never_on_it():
    keep = date.fromordinal(TODAY.toordinal() - REJECTED_KEEP_DAYS).isoformat()
    drop = date.fromordinal(TODAY.toordinal() - REJECTED_KEEP_DAYS - 1).isoformat()
    emailed_kept = date.fromordinal(TODAY.toordinal() - 31).isoformat()
    emailed_dropped = date.fromordinal(TODAY.toordinal() - 32).isoformat()
    held = {"T1": {"day": drop, "reason": SKIP_BAD_DATE, "customer": "", "closed": ""}}
    state = RunState(date(2026, 11, 20), rejected={"kept": {"day": keep, "reason": "r", "tickets": {}},
                                                   "dropped": {"day": drop, "reason": "r", "tickets": {}}},
                     last_emailed={"a": emailed_kept, "b": emailed_dropped}, held=held)
    finished = finish_state(state, date(2026, 11, 20), TODAY, keep_email_days=7)
    assert list(finished.rejected) == ["kept"] and finished.last_emailed == {"a": emailed_kept}
    assert finished.held == held          # held tickets have their own horizon (next_held)


def test_last_run_date_is_the_latest_ticket_of_every_customer_found():
    late_second = customer(ANN, closed_ticket(ANN, "T1", date(2026, 11, 21)), closed_ticket(ANN, "T2", date(2026, 11, 25)))
    early = customer(BOB, "T3", closed=date(2026, 11, 23))
    assert next_last_run_date(date(2026, 11, 20), [late_second, early], [], date.max) == date(2026, 11, 25)
    assert next_last_run_date(date(2026, 11, 20), [early, late_second], [], date.max) == date(2026, 11, 25)


# ---------------------------------------------------------------- a column nobody can read

def selection_with(reason, count, closed_rows, value="2026-13-45"):
    selection = Selection(closed_rows=closed_rows, skipped=Counter({reason: count}))
    selection.skipped_rows = [SkippedRow(7 + n, reason, value, f"T{n}", "", "") for n in range(count)]
    return selection


def test_an_unreadable_column_stops_at_three_rows_and_more_than_half():
    refuse_unreadable_column(selection_with(SKIP_BAD_DATE, 2, 2))            # too few to be sure
    refuse_unreadable_column(selection_with(SKIP_BAD_DATE, 3, 6))            # half is not more than half
    with pytest.raises(ReportError) as stopped:
        refuse_unreadable_column(selection_with(SKIP_BAD_DATE, 3, 5))
    assert str(stopped.value).startswith("row 7: 3 of the 5 closed rows were skipped for unparseable date "
                                         "(the first: '2026-13-45'): pass --date-format with the form the column "
                                         'uses (such as "%d/%m/%Y %H:%M"), or --column date=HEADER if the dates '
                                         "are in another column (nothing was sent)")


def test_an_unreadable_column_names_the_date_form_that_reads_its_first_value():
    with pytest.raises(ReportError) as one_form:
        refuse_unreadable_column(selection_with(SKIP_BAD_DATE, 4, 4, "20 Nov 2026"))
    assert ': pass --date-format "%d %b %Y", or --column date=HEADER' in str(one_form.value)
    with pytest.raises(ReportError) as two_forms:
        refuse_unreadable_column(selection_with(SKIP_BAD_DATE, 4, 4, "05/06/26"))
    assert ('pass --date-format "%d/%m/%y" or --date-format "%m/%d/%y", whichever the report uses, or --column '
            'date=HEADER') in str(two_forms.value)


def test_an_unreadable_address_column_names_its_own_fix_after_a_readable_date_column():
    selection = selection_with(SKIP_NO_EMAIL, 3, 4, "Ann Lee")
    selection.skipped[SKIP_BAD_DATE] = 1
    with pytest.raises(ReportError) as stopped:
        refuse_unreadable_column(selection)
    assert str(stopped.value) == ("row 7: 3 of the 4 closed rows were skipped for no or invalid email (the first: "
                                  "'Ann Lee'): if the addresses are in another column, pass --column email=HEADER; "
                                  "else fix the report's addresses (nothing was sent)")


# ---------------------------------------------------------------- cells, addresses and headers

def test_cells_read_as_trimmed_text_and_whole_numbers_lose_their_point_zero():
    assert cell_text(None) == "" and cell_text(12.0) == "12" and cell_text(12.5) == "12.5" and cell_text(" x ") == "x"


def test_an_address_at_each_rfc_5321_length_limit_is_usable_and_one_past_is_not():
    at_limit = f"{'l' * 64}@{'d' * 63}.{'d' * 63}.{'e' * 57}.com"
    assert len(at_limit) == 254 and is_valid_email(at_limit) and not is_valid_email(at_limit.replace("e", "ee", 1))
    assert not is_valid_email(f"{'l' * 65}@example.com") and is_valid_email(f"{'l' * 64}@example.com")
    assert is_valid_email("müller@exämple.de") and not is_valid_email("mu\u200bller@example.de")


def test_a_header_named_by_column_overrides_counts_as_a_header_row():
    assert is_header_row(["Kunde", "Mail", "Nr"], {"email": "Mail"}) and not is_header_row(["Kunde", "Mail"], {})
    assert find_columns(["Status", "Email", "Ticket", "Date", "Email"], {}) == {"status": 0, "email": 1, "ticket": 2,
                                                                                 "date": 3}
    columns = find_columns(["Mail", "Email", "Ticket", "Status", "Date"], {"email": "Mail"})
    assert columns["email"] == 0 and 1 not in columns.values()


# ---------------------------------------------------------------- selecting

def test_short_rows_blank_rows_and_other_statuses_are_counted_as_a_person_reads_them():
    rows = [["Ann", "Lee", ANN, "T1", "Closed", "21/11/2026", "Printer jam"],
            [],
            ["", "", "", "", "", ""],
            ["Bob", "Ray", BOB, "T2", "open"],
            ["Bob", "Ray", BOB, "T3", " Open ", "22/11/2026"],
            ["Cy", "Day", "cy@example.com", "T4", "Pending", "22/11/2026"],
            ["Dee", "Fox", "dee@example.com", "T5", "Closed", "22/11/2026"]]
    selection = select(rows, header=[*HEADER, "Subject"])
    assert selection.rows_read == 5 and selection.closed_rows == 2 and selection.has_header
    assert selection.other_statuses == Counter({"open": 2, "Pending": 1})
    assert [(t.ticket_id, t.subject) for t in selection.tickets] == [("T1", "Printer jam"), ("T5", "")]
    assert select(rows[:1]).tickets[0].subject is None          # no subject column: no subject at all


def test_without_a_header_the_seed_layout_is_read_and_column_overrides_are_refused():
    rows = [["Ann", "Lee", ANN, "T1", "Closed", "21/11/2026"]]
    selection = select(rows, header=None)
    assert not selection.has_header and selection.layout_doubt == "" and selection.rows_read == 1
    with pytest.raises(ReportError, match="^--column needs a header row, but the report's first row holds data$"):
        select(rows, header=None, columns={"email": "Mail"})
    doubtful = select([["a", "b", "c", "d", "e", "f", "g", "h", "i"]], header=None)
    assert doubtful.layout_doubt.endswith("(first row: a, b, c, d, e, f, g, h, ...); if that row is a header, map its "
                                          "columns with --column ROLE=HEADER")
    assert doubtful.warnings == [doubtful.layout_doubt]


def test_a_report_with_only_blank_rows_reads_nothing():
    selection = select([[], ["", ""]], header=None)
    assert selection.rows_read == 0 and not selection.has_header and selection.tickets == []


def test_skipped_rows_keep_what_was_usable_for_holding_and_their_sheet_row_number():
    rows = [["Ann", "Lee", ANN, "T1", "Closed", "31/02/2026"],
            ["Bob", "Ray", "bob at example", "T2", "Closed", "21/11/2026 10:30"],
            ["Cy", "Day", "cy@example.com", "", "Closed", "21/11/2026"],
            ["Cy", "Day", "cy@example.com", "T4", "Closed", "21/11/2029"]]
    selection = select(rows, first_row_number=5)
    assert selection.skipped_rows == [
        SkippedRow(6, SKIP_BAD_DATE, "31/02/2026", "T1", customer_key(ANN), "", name_key("Ann Lee")),
        SkippedRow(7, SKIP_NO_EMAIL, "bob at example", "T2", "", "2026-11-21T10:30:00", name_key("Bob Ray")),
        SkippedRow(8, SKIP_NO_TICKET, "", "", customer_key("cy@example.com"), "", name_key("Cy Day")),
        SkippedRow(9, SKIP_FUTURE_DATE, "21/11/2029", "T4", customer_key("cy@example.com"), "", name_key("Cy Day")),
    ]
    assert selection.skipped == Counter({SKIP_BAD_DATE: 1, SKIP_NO_EMAIL: 1, SKIP_NO_TICKET: 1, SKIP_FUTURE_DATE: 1})
    assert selection.closed_rows == 4 and selection.rows_read == 4


def test_a_month_first_date_stops_the_selection_naming_its_row_and_form():
    rows = [["Ann", "Lee", ANN, "T1", "Closed", "11/25/2026"]]
    with pytest.raises(ReportError) as stopped:
        select(rows)
    assert str(stopped.value) == ("row 2: the date '11/25/2026' is month-first, so other dates of this report would "
                                  'be misread; pass --date-format "%m/%d/%Y" if the whole report writes dates month first')


# ---------------------------------------------------------------- selection and grouping on their boundaries

def test_headers_name_every_missing_column_and_an_empty_header_cell_is_no_column():
    with pytest.raises(ReportError, match="^the report has no email, ticket, date column; headers found: Name, Status "):
        find_columns(["Name", "Status"], {})
    with pytest.raises(ReportError, match="^--column ticket=xxxx: no such column"):
        find_columns(["", "Email", "Status", "Date"], {"ticket": "xxxx"})


def test_a_header_alone_reads_no_rows():
    selection = select([])
    assert selection.rows_read == 0 and selection.has_header and selection.tickets == []


def test_blank_statuses_repeated_statuses_and_blank_rows_are_each_counted():
    rows = [["Ann", "Lee", ANN, "T1", "Open", "21/11/2026"], ["Ann", "Lee", ANN, "T2", "Open", "21/11/2026"],
            ["Cy", "Day", "cy@example.com", "T3", "", "21/11/2026"],
            ["", "", "", "", "", ""], ["", "", "", "", "", ""], ["Ann", "Lee", ANN, "T4", "Closed", "21/11/2026"]]
    selection = select(rows)
    assert selection.other_statuses == Counter({"Open": 2, "": 1}) and selection.rows_read == 4


def test_a_typed_date_cell_from_a_workbook_is_read_as_it_comes():
    selection = select([["Ann", "Lee", ANN, "T1", "Closed", datetime(2026, 11, 21, 10, 30)]])
    assert [(t.ticket_id, t.closed_at, t.has_time) for t in selection.tickets] == [("T1", datetime(2026, 11, 21, 10, 30),
                                                                                   True)]


def test_a_row_before_the_window_does_not_end_the_reading_and_a_dated_recall_is_kept_to_its_date():
    rows = [["Ann", "Lee", ANN, "T1", "Closed", "02/11/2026"], ["Bob", "Ray", BOB, "T2", "Closed", "03/11/2026"],
            ["Cy", "Day", "cy@example.com", "T3", "Closed", "21/11/2026"]]
    assert [t.ticket_id for t in select(rows).tickets] == ["T3"]
    recall = {"T1": (Recall("", "2026-11-02"),), "T2": (Recall("", "2026-11-04"),)}
    assert sorted(t.ticket_id for t in select(rows, recall=recall).tickets) == ["T1", "T3"]


def test_a_date_exactly_a_day_ahead_is_kept_and_a_minute_later_is_not():
    rows = [["Ann", "Lee", ANN, "T1", "Closed", "28/11/2026 09:00"], ["Ann", "Lee", ANN, "T2", "Closed", "28/11/2026 09:01"]]
    selection = select(rows)
    assert [t.ticket_id for t in selection.tickets] == ["T1"] and selection.skipped == Counter({SKIP_FUTURE_DATE: 1})


def test_the_same_ticket_on_the_same_day_keeps_the_later_row_and_an_earlier_row_ends_nothing():
    rows = [["Ann", "Lee", ANN, "T1", "Closed", "21/11/2026", "first"], ["Ann", "Lee", ANN, "T1", "Closed", "21/11/2026",
                                                                       "second"],
            ["Ann", "Lee", ANN, "T1", "Closed", "20/11/2026", "older"], ["Ann", "Lee", ANN, "T2", "Closed", "22/11/2026", "x"]]
    selection = select(rows, header=[*HEADER, "Subject"])
    assert [(t.ticket_id, t.subject) for t in selection.tickets] == [("T1", "second"), ("T2", "x")]


def test_a_first_row_too_short_for_an_address_or_of_eight_cells_is_named_in_the_doubt():
    short = select([["a", "b"]], header=None)
    assert short.layout_doubt.startswith("no header row recognised, so the columns are read as Firstname, Lastname, "
                                         "Email, Ticket, Status, Date, but the first row's third cell is not an email")
    assert "(first row: a, b);" in short.layout_doubt
    eight = select([list("abcdefgh")], header=None)
    assert "(first row: a, b, c, d, e, f, g, h);" in eight.layout_doubt


def test_a_full_name_is_first_and_last_or_whichever_there_is():
    rows = [["Ann", "Lee", ANN, "T1", "Closed", "21/11/2026"], ["", "Ray", BOB, "T2", "Closed", "21/11/2026"],
            ["Cy", "", "cy@example.com", "T3", "Closed", "21/11/2026"]]
    assert [(t.first_name, t.full_name) for t in select(rows).tickets] == [("Ann", "Ann Lee"), ("", "Ray"), ("Cy", "Cy")]


def test_grouping_keeps_the_first_spelling_of_the_address_and_the_latest_spelling_of_one_name():
    def named(email, ticket_id, day, first, full):
        return ClosedTicket(email, ticket_id, "Closed", datetime(2026, 11, day), False, first, full)
    tickets = [named("Ann@Example.com", "T1", 20, "ann", "ann lee"), named("ann@example.com", "T2", 21, "Ann", "Ann Lee"),
               named("ann@example.com", "T3", 22, "ANN", "ANN LEE")]
    [ann] = group_by_customer({"ann@example.com": {t.ticket_id: t for t in tickets}})
    assert (ann.email, ann.first_name, ann.full_name, ann.ticket_ids) == ("Ann@Example.com", "ANN", "ANN LEE",
                                                                          ["T1", "T2", "T3"])


def test_the_test_index_keeps_the_latest_date_and_on_a_tie_the_later_ticket():
    early, late, tie = (ClosedTicket(ANN, "T1", "Closed", datetime(2026, 11, day), False, "Ann", name)
                        for day, name in ((20, "early"), (21, "late"), (21, "tie")))
    assert index_by_email([early, late])[ANN]["T1"].full_name == "late"
    assert index_by_email([late, early])[ANN]["T1"].full_name == "late"
    assert index_by_email([late, tie])[ANN]["T1"].full_name == "tie"


def test_dropping_recorded_tickets_counts_them_all_and_keeps_the_rest_of_each_customer():
    ann = customer(ANN, closed_ticket(ANN, "T1", date(2026, 11, 21)), closed_ticket(ANN, "T2", date(2026, 11, 22)))
    bob = customer(BOB, closed_ticket(BOB, "T3", date(2026, 11, 21)), closed_ticket(BOB, "T4", date(2026, 11, 22)),
                   name="Bob Ray")
    recorded = {ann.key: {"T1": "2026-11-21"}, bob.key: {"T3": "2026-11-21"}}
    remaining, dropped = drop_already_notified([ann, bob], recorded)
    assert dropped == 2 and [(c.email, c.full_name, c.first_name, c.ticket_ids) for c in remaining] == [
        (ANN, "Ann Lee", "Ann", ["T2"]), (BOB, "Bob Ray", "Bob", ["T4"])]


def test_a_one_day_guard_defers_a_customer_emailed_today_and_no_guard_defers_nobody():
    ann = customer(ANN, "T1", closed=TODAY)
    assert split_by_weekly_guard([ann], {ann.key: TODAY.isoformat()}, TODAY, 1) == ([], [ann])
    assert split_by_weekly_guard([ann], {ann.key: TODAY.isoformat()}, TODAY, 0) == ([ann], [])
    yesterday = date.fromordinal(TODAY.toordinal() - 1).isoformat()
    assert split_by_weekly_guard([ann], {ann.key: yesterday}, TODAY, 1) == ([ann], [])


def test_only_held_tickets_count_as_held_back():
    held = {"T1": {"day": "2026-11-20", "reason": SKIP_BAD_DATE, "customer": "", "closed": ""}}
    customers = [customer(ANN, "T1", "T7", closed=TODAY), customer(BOB, "T8", closed=TODAY)]
    assert held_back_count(customers, held) == 1


# ---------------------------------------------------------------- survivors of the 2026-12-07 mutation run

def test_a_recall_not_yet_due_does_not_hide_a_later_one_of_the_same_customer():
    not_due = Recall(customer_key(ANN), "2026-11-25")
    due = Recall(customer_key(ANN), "2026-11-20")
    assert recall_matches([not_due, due], datetime(2026, 11, 22), ANN) == BY_ADDRESS


def test_a_rejected_ticket_is_recalled_and_settled_by_its_address_even_under_another_name():
    """The report now spells Ann's name differently: her address still makes the refused ticket hers."""
    key, entry = rejection_entry(RunState(date(2026, 11, 20)), customer(ANN, "T1", closed=date(2026, 11, 21)), TODAY,
                                 "HTTP 422")
    rejected = {key: entry}
    [recall] = recalls_of_rejected(rejected)["T1"]
    assert recall == Recall(customer_key(ANN), "2026-11-21", name_key("Ann Lee"))
    assert recall_matches([recall], datetime(2026, 11, 21), ANN, "Ann Smith-Lee") == BY_ADDRESS
    renamed = customer(ANN, "T1", closed=date(2026, 11, 21), name="Ann Smith-Lee")
    assert without_delivered(rejected, renamed) == {}


def test_what_a_live_run_leaves_held_looks_past_customers_with_nothing_held():
    held = {"ann@example.com/T1": {"ticket": "T1", "day": "2026-11-22", "reason": "unparseable date",
                                   "customer": customer_key(ANN), "closed": "", "name": name_key("Ann Lee")}}
    emailed = [customer(BOB, "T9", closed=TODAY), customer(ANN, "T1", closed=date(2026, 11, 21))]
    assert still_held(held, emailed) == {}


ANN_NEW, ANN_OTHER = "ann.lee@example.org", "a.lee@example.net"


def by_name(*rows, holder_rows=()):
    """The selection of rows from before the window (02-04/11) while Ann's T1 is held under her old address."""
    recall = {"T1": (Recall(customer_key(ANN), "", name_key("Ann Lee")),)}
    return select([*holder_rows, *rows], recall=recall)


def test_a_held_ticket_under_a_corrected_address_joins_that_customer_the_latest_row_winning():
    selection = by_name(["Ann", "Lee", ANN_NEW, "T1", "Closed", "03/11/2026"],
                        ["Ann", "Lee", ANN_NEW, "T1", "Closed", "02/11/2026"],
                        ["Anne", "Lee", ANN_NEW, "T1", "Closed", "04/11/2026"])   # another name: not hers
    [ticket] = selection.tickets
    assert (ticket.email, ticket.closed_at, ticket.first_name) == (ANN_NEW, datetime(2026, 11, 3), "Ann")
    assert selection.recalled == {"T1"} and selection.ambiguous == set() and selection.warnings == []


def test_a_held_ticket_two_addresses_claim_by_name_stays_held_and_the_warning_names_the_rows():
    selection = by_name(["Ann", "Lee", ANN_NEW, "T1", "Closed", "02/11/2026"],
                        ["Ann", "Lee", ANN_OTHER, "T1", "Closed", "03/11/2026"])
    assert selection.tickets == [] and selection.ambiguous == {"T1"} and selection.recalled == set()
    assert selection.warnings == ["ticket T1: rows 2, 3 of different addresses could each be the held ticket of one "
                                  "customer; it stays held until only one row claims it"]


def test_a_claim_by_name_is_no_claim_while_the_customer_s_own_address_holds_the_ticket():
    holder = [["Ann", "Lee", ANN, "T1", "Closed", "25/11/2026"]]   # inside the window, at her recorded address
    selection = by_name(["Ann", "Lee", ANN_NEW, "T1", "Closed", "02/11/2026"], holder_rows=holder)
    assert [(t.email, t.ticket_id) for t in selection.tickets] == [(ANN, "T1")] and selection.ambiguous == set()


def test_an_entry_of_an_older_version_recalls_its_ticket_under_one_address_only():
    recall = {"T1": (Recall("", ""),)}   # no customer, no name: any address, as then
    one = select([["Ann", "Lee", ANN_NEW, "T1", "Closed", "02/11/2026"]], recall=recall)
    assert [t.email for t in one.tickets] == [ANN_NEW] and one.recalled == {"T1"}
    two = select([["Ann", "Lee", ANN_NEW, "T1", "Closed", "02/11/2026"], ["Bob", "Ray", BOB, "T1", "Closed", "03/11/2026"]],
                 recall=recall)
    assert two.tickets == [] and two.ambiguous == {"T1"}


def test_a_ticket_recalled_by_name_is_made_whole_with_its_subject():
    recall = {"T1": (Recall(customer_key(ANN), "", name_key("Ann Lee")),)}
    rows = [["Ann", "Lee", "Ann.Lee@Example.org", "T1", "Closed", "02/11/2026 10:30", "Printer jam"]]
    selection = select(rows, header=[*HEADER, "Subject"], recall=recall, date_formats=("%d/%m/%Y %H:%M",))
    assert selection.tickets == [ClosedTicket("Ann.Lee@Example.org", "T1", "Closed", datetime(2026, 11, 2, 10, 30), True,
                                              "Ann", "Ann Lee", "Printer jam")]
    assert list(selection.by_email) == ["ann.lee@example.org"]


def test_a_held_entry_recalls_its_customer_by_address_and_by_name():
    entry = {"ticket": "T1", "day": "2026-11-22", "reason": "unparseable date", "customer": customer_key(ANN),
             "closed": "", "name": name_key("Ann Lee")}
    bob = {**entry, "customer": customer_key(BOB), "name": name_key("Bob Ray")}
    assert recalls_of_held({"k/T1": entry, "b/T1": bob}) == {"T1": (Recall(customer_key(ANN), "", name_key("Ann Lee")),
                                                                   Recall(customer_key(BOB), "", name_key("Bob Ray")))}



def test_two_customers_without_an_address_hold_the_same_ticket_id_apart_by_name():
    rows = [SkippedRow(5, SKIP_NO_EMAIL, "x", "T1", "", "2026-11-21", name_key("Ann Lee")),
            SkippedRow(6, SKIP_NO_EMAIL, "y", "T1", "", "2026-11-22", name_key("Bob Ray"))]
    assert sorted(held_from(rows)) == sorted([f"{name_key('Ann Lee')}/T1", f"{name_key('Bob Ray')}/T1"])


def test_each_held_ticket_claimed_by_name_is_decided_on_its_own():
    """T1 is no claim (Ann's own address holds it), T2 is claimed by two addresses, T3 by one: T3 joins
    that customer whatever came before it."""
    recall = {ticket_id: (Recall(customer_key(ANN), "", name_key("Ann Lee")),) for ticket_id in ("T1", "T2", "T3")}
    rows = [["Ann", "Lee", ANN, "T1", "Closed", "25/11/2026"],
            ["Ann", "Lee", ANN_NEW, "T1", "Closed", "02/11/2026"],
            ["Ann", "Lee", ANN_NEW, "T2", "Closed", "02/11/2026"], ["Ann", "Lee", ANN_OTHER, "T2", "Closed", "03/11/2026"],
            ["Ann", "Lee", ANN_NEW, "T3", "Closed", "04/11/2026"]]
    selection = select(rows, recall=recall)
    assert sorted((t.email, t.ticket_id) for t in selection.tickets) == sorted([(ANN, "T1"), (ANN_NEW, "T3")])
    assert selection.ambiguous == {"T2"} and selection.recalled == {"T3"}


def test_a_skipped_row_is_not_held_when_the_same_customer_s_ticket_is_usable_on_another_row():
    skipped = [SkippedRow(5, SKIP_BAD_DATE, "31/02/2026", "T1", customer_key(ANN), "", name_key("Ann Lee"))]
    assert next_held({}, held_from(skipped), [customer(ANN_NEW, "T1", closed=TODAY)], TODAY) == {}   # her name
    assert len(next_held({}, held_from(skipped), [customer(BOB, "T1", closed=TODAY, name="Bob Ray")], TODAY)) == 1


def test_a_held_ticket_is_settled_by_its_customer_emailed_at_a_corrected_address():
    ann = {"ticket": "T1", "day": "2026-11-22", "reason": "unparseable date", "customer": customer_key(ANN),
           "closed": "", "name": name_key("Ann Lee")}
    bob = {**ann, "customer": customer_key(BOB), "name": name_key("Bob Ray")}
    moved = customer(ANN_NEW, "T1", closed=date(2026, 11, 21))   # emailed at her corrected address, same name
    assert held_settled_by({"k/T1": ann, "b/T1": bob}, moved) == {"b/T1": bob}


def test_only_the_recalls_of_the_claiming_name_decide_whether_its_own_address_holds_the_ticket():
    """Ann's address holds T1 in the window: a row under her name elsewhere is no claim, whatever other
    customers (Bob, an entry with an address and no name) have T1 held too."""
    recall = {"T1": (Recall(customer_key(ANN), "", name_key("Ann Lee")), Recall(customer_key(BOB), "", name_key("Bob Ray")),
                     Recall(customer_key("dan@example.com"), ""))}
    rows = [["Ann", "Lee", ANN, "T1", "Closed", "25/11/2026"], ["Ann", "Lee", ANN_OTHER, "T1", "Closed", "02/11/2026"]]
    selection = select(rows, recall=recall)
    assert [(t.email, t.ticket_id) for t in selection.tickets] == [(ANN, "T1")] and selection.ambiguous == set()


def test_a_row_recalled_by_its_own_address_is_taken_at_once_and_a_claim_by_her_name_elsewhere_is_none():
    recall = {"T1": (Recall(customer_key(ANN), "", name_key("Ann Lee")),)}
    rows = [["Ann", "Lee", ANN, "T1", "Closed", "02/11/2026"], ["Ann", "Lee", ANN_OTHER, "T1", "Closed", "03/11/2026"]]
    selection = select(rows, recall=recall)
    assert [(t.email, t.ticket_id) for t in selection.tickets] == [(ANN, "T1")]
    assert selection.ambiguous == set() and selection.warnings == [] and selection.recalled == {"T1"}
