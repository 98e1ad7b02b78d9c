"""The pure core with literal data: selection, boundary, grouping, payload, next state."""

import random
from datetime import date, datetime
from string import Template

import pytest

from customer_message import Content, build_payload, check_body_template, webhook_id
from report_dates import DEFAULT_DATE_FORMATS, ISO_8601, DateParser
from ticket_core import (
    SKIP_BAD_DATE,
    SKIP_FUTURE_DATE,
    SKIP_NO_EMAIL,
    SKIP_NO_TICKET,
    ClosedTicket,
    ReportError,
    RunState,
    SelectOptions,
    customer_key,
    delivery_entries,
    drop_already_notified,
    finish_state,
    group_by_customer,
    index_by_email,
    is_valid_email,
    next_last_run_date,
    select_closed_tickets,
    split_by_weekly_guard,
)

NOW = datetime(2026, 11, 27, 6, 0)
HEADER = ["Firstname", "Lastname", "Email", "Ticket", "Status", "Date"]


def select(rows, since=date(2026, 11, 20), **options):
    return select_closed_tickets(rows, since, NOW, SelectOptions(**options))


def ids(selection):
    return sorted(ticket.ticket_id for ticket in selection.tickets)


def customers_of(rows, since=date(2026, 11, 1)):
    return group_by_customer(select([HEADER, *rows], since).by_email)


def test_closed_status_matches_trimmed_and_case_insensitively_and_others_are_ignored():
    rows = [HEADER,
            ["A", "B", "a@example.com", "1", "Closed", "21/11/2026"],
            ["A", "B", "a@example.com", "2", "  cLoSeD ", "21/11/2026"],
            ["A", "B", "a@example.com", "3", "Open", "21/11/2026"],
            ["A", "B", "a@example.com", "4", "Closed pending", "21/11/2026"]]
    selection = select(rows)
    assert ids(selection) == ["1", "2"]
    assert {ticket.status for ticket in selection.tickets} == {"Closed"}
    assert selection.rows_read == 4


def test_several_closed_statuses():
    rows = [HEADER,
            ["A", "B", "a@example.com", "1", "Resolved", "21/11/2026"],
            ["A", "B", "a@example.com", "2", "done", "21/11/2026"],
            ["A", "B", "a@example.com", "3", "Closed", "21/11/2026"]]
    assert ids(select(rows, closed_statuses=("Resolved", "Done"))) == ["1", "2"]


def test_a_ticket_dated_on_the_last_run_day_is_included_and_the_day_before_is_not():
    rows = [HEADER,
            ["A", "B", "a@example.com", "same-day", "Closed", "20/11/2026 00:00"],
            ["A", "B", "a@example.com", "same-day-late", "Closed", "20/11/2026 23:59"],
            ["A", "B", "a@example.com", "day-before", "Closed", "19/11/2026 23:59"]]
    assert ids(select(rows)) == ["same-day", "same-day-late"]


@pytest.mark.parametrize(("row", "reason"), [
    (["A", "B", "", "1", "Closed", "21/11/2026"], SKIP_NO_EMAIL),
    (["A", "B", "a@example", "1", "Closed", "21/11/2026"], SKIP_NO_EMAIL),
    (["A", "B", "a@b@example.com", "1", "Closed", "21/11/2026"], SKIP_NO_EMAIL),
    (["A", "B", "a@example.com; b@example.com", "1", "Closed", "21/11/2026"], SKIP_NO_EMAIL),
    (["A", "B", "a b@example.com", "1", "Closed", "21/11/2026"], SKIP_NO_EMAIL),
    (["A", "B", "a@example.com", "", "Closed", "21/11/2026"], SKIP_NO_TICKET),
    (["A", "B", "a@example.com", "1", "Closed", "31/02/2026"], SKIP_BAD_DATE),
    (["A", "B", "a@example.com", "1", "Closed", ""], SKIP_BAD_DATE),
    (["A", "B", "a@example.com", "1", "Closed", "next week"], SKIP_BAD_DATE),
    (["A", "B", "a@example.com", "1", "Closed", "29/11/2026"], SKIP_FUTURE_DATE),
    (["A", "B", "a@example.com", "1", "Closed"], SKIP_BAD_DATE),  # short row: no date cell
])
def test_each_unusable_closed_row_is_skipped_and_counted_by_reason(row, reason):
    selection = select([HEADER, row, ["C", "D", "c@example.com", "9", "Closed", "21/11/2026"]])
    assert selection.skipped == {reason: 1}
    assert ids(selection) == ["9"]
    assert [(row.row_number, row.reason) for row in selection.skipped_rows] == [(2, reason)]


def test_tomorrow_is_not_the_future_but_two_days_ahead_is():
    rows = [HEADER,
            ["A", "B", "a@example.com", "1", "Closed", "28/11/2026"],
            ["A", "B", "a@example.com", "2", "Closed", "29/11/2026"]]
    selection = select(rows)
    assert ids(selection) == ["1"]
    assert selection.skipped == {SKIP_FUTURE_DATE: 1}


def test_old_unusable_rows_and_open_rows_with_bad_data_are_ignored_silently():
    rows = [HEADER,
            ["A", "B", "not-an-email", "1", "Closed", "01/01/2025"],
            ["A", "B", "", "", "Open", "garbage"]]
    assert select(rows).skipped == {}


def test_the_same_ticket_on_several_closed_rows_is_kept_once_with_its_latest_date():
    rows = [HEADER,
            ["A", "B", "a@example.com", "1", "Closed", "21/11/2026"],
            ["A", "B", "A@Example.com ", "1", "Closed", "23/11/2026"],
            ["A", "B", "a@example.com", "1", "Closed", "22/11/2026"]]
    [ticket] = select(rows).tickets
    assert ticket.closed_at == datetime(2026, 11, 23)


def test_row_numbers_are_the_spreadsheet_rows_and_blank_rows_are_not_read():
    rows = [[], ["", " "], HEADER,
            ["A", "B", "a@example.com", "1", "Closed", "31/02/2026"],
            ["", "", "", "", "", ""],
            [None, None, None, None, None],
            ["A", "B", "a@example.com", "2", "Open", "21/11/2026"]]
    selection = select(rows)
    assert [row[:4] for row in selection.skipped_rows] == [(4, SKIP_BAD_DATE, "31/02/2026", "1")]
    assert selection.rows_read == 2


def test_headerless_report_uses_the_seed_layout():
    rows = [["Jane", "Doe", "jane@example.com", "1001", "Closed", "21/11/2026"],
            ["", "", "", "", "", ""],
            ["John", "Roe", "john@example.com", "1002", "Closed", "22/11/2026"]]
    selection = select(rows)
    assert ids(selection) == ["1001", "1002"]
    assert selection.rows_read == 2


def test_an_unrecognised_header_read_as_the_seed_layout_gets_a_warning():
    rows = [["Resumen", "Clave", "Informador", "Estado", "Creada", "Resuelta?"],
            ["Printer", "IHS-1", "maria@example.com", "Completado", "18/jul/26", ""]]
    selection = select(rows)
    assert selection.tickets == []
    [warning] = selection.warnings
    assert "first row: Resumen, Clave, Informador" in warning and "--column ROLE=HEADER" in warning
    assert select(rows[1:]).warnings == []


def test_header_in_any_order_with_extra_columns_and_recognised_synonyms():
    rows = [["Priority", "Ticket #", "State", "Customer Name", "E-mail", "Last Updated"],
            ["High", "T-7", "closed", "Jane Doe", "jane@example.com", "2026-11-21 10:30"]]
    [ticket] = select(rows).tickets
    assert (ticket.ticket_id, ticket.full_name, ticket.email) == ("T-7", "Jane Doe", "jane@example.com")
    assert ticket.closed_date == "2026-11-21T10:30:00"


def test_a_first_row_with_an_at_sign_is_data_even_when_cells_look_like_header_names():
    rows = [["Name", "Key", "name.key@example.com", "1", "Closed", "21/11/2026"],
            ["Jane", "Doe", "jane@example.com", "2", "Closed", "21/11/2026"]]
    selection = select(rows)
    assert ids(selection) == ["1", "2"]
    assert selection.tickets[0].full_name == "Name Key"


def test_missing_required_column_names_the_headers_found():
    with pytest.raises(ReportError, match=r"no email column; headers found: Ticket, Status, Date"):
        select([["Ticket", "Status", "Date"], ["1", "Closed", "21/11/2026"]])


def test_column_overrides_map_any_header_and_an_unknown_header_is_an_error():
    rows = [["Customer Email", "Ticket ID", "Ticket Status", "Date of Purchase", "Time to Resolution"],
            ["a@example.com", "7", "Closed", "2020-01-01", "2026-11-21 18:05:38"]]
    [ticket] = select(rows, columns={"date": "time to resolution"}).tickets
    assert ticket.closed_at == datetime(2026, 11, 21, 18, 5, 38)
    with pytest.raises(ReportError, match="--column date=Closed At: no such column"):
        select(rows, columns={"date": "Closed At"})


@pytest.mark.parametrize(("text", "expected", "has_time"), [
    ("03/04/2026", datetime(2026, 4, 3), False),          # day first, never guessed as 4 March
    ("03/04/2026 07:05", datetime(2026, 4, 3, 7, 5), True),
    ("03/04/2026 07:05:09", datetime(2026, 4, 3, 7, 5, 9), True),
    ("2026-04-03", datetime(2026, 4, 3), False),
    ("2026-04-03T07:05", datetime(2026, 4, 3, 7, 5), True),
    ("2026-04-03 07:05:09", datetime(2026, 4, 3, 7, 5, 9), True),
    ("03-Apr-2026", datetime(2026, 4, 3), False),
    (46023, datetime(2026, 1, 1), False),                 # a Sheets serial number
    (46023.75, datetime(2026, 1, 1, 18, 0), True),
    (datetime(2026, 4, 3, 0, 0), datetime(2026, 4, 3), False),
    (date(2026, 4, 3), datetime(2026, 4, 3), False),
])
def test_dates_are_read_day_first_and_from_serial_numbers(text, expected, has_time):
    assert DateParser().parse(text) == (expected, has_time)


@pytest.mark.parametrize("text", ["04/13/2026", "2026/04/03", "3.4.26", "", "yesterday", True])
def test_dates_outside_the_accepted_forms_are_not_guessed(text):
    assert DateParser().parse(text) is None


def test_numeric_date_formats_give_exactly_what_strptime_gives():
    """Formats made of day, month, year, hour, minute and second are matched without strptime
    (timestamps make a distinct text per row). Any text must still parse, or be refused, as
    datetime.strptime does it: random moments in each format, then bent a character at a time."""
    formats = [*(fmt for fmt in DEFAULT_DATE_FORMATS if fmt != ISO_8601),
               "%m/%d/%Y", "%Y%m%d", "%d.%m.%Y %H.%M", "%H:%M %d/%m/%Y", "%d/%m", "%Y-%m-%d %%"]
    rng = random.Random(20261127)
    odd = "0123456789 /-:.T t\t%١٢"
    for fmt in formats:
        texts = [" 3/4/2026", "3/4/2026", "31/02/2026", "29/02/2024", "29/02/2023", "2026-04-03t07:05", "03/04/2026  07:05",
                 "03/04/2026\t07:05:09", "03/04/2026 24:00", "03/04/2026 23:59:60", "03/04/2026 7:5:9", "٠٣/٠٤/٢٠٢٦"]
        for _ in range(300):
            moment = datetime(rng.randrange(1, 10000), rng.randrange(1, 13), rng.randrange(1, 29),
                              rng.randrange(24), rng.randrange(60), rng.randrange(60))
            text = moment.strftime(fmt)
            texts += [text, text.replace("0", "", 1)]
            for _ in range(3):
                at = rng.randrange(len(text) + 1)
                texts.append(text[:at] + rng.choice(odd) + text[at + rng.randrange(2):])
        parser = DateParser([fmt])
        for text in texts:
            try:
                expected = (datetime.strptime(text.strip(), fmt), any(d in fmt for d in ("%H", "%M", "%S")))
            except ValueError:
                expected = None
            assert parser.parse(text) == expected, (fmt, text)


def test_date_formats_replace_the_defaults():
    parser = DateParser(["%m/%d/%Y"])
    assert parser.parse("04/13/2026") == (datetime(2026, 4, 13), False)
    assert parser.parse("2026-04-13") is None


@pytest.mark.parametrize(("text", "valid"), [
    ("jane.doe@example.com", True), ("j+tag@mail.example.co.uk", True),
    ("jane@example", False), ("@example.com", False), ("jane@.com", False), ("jane@example.", False),
    ("jane@@example.com", False), ("jane @example.com", False), ("jane@exa\tmple.com", False),
    ("jane@example.com,john@example.com", False), ("Jane <jane@example.com>", False), ("", False),
])
def test_email_must_be_one_plain_address(text, valid):
    assert is_valid_email(text) is valid


def test_customers_are_grouped_case_insensitively_and_tickets_sorted_by_date_then_id():
    customers = customers_of([
        ["Jane", "Doe", "jane@example.com", "10", "Closed", "05/11/2026"],
        ["Jane", "Doe", "JANE@example.com", "9", "Closed", "05/11/2026"],
        ["Jane", "Doe", " jane@EXAMPLE.com", "100", "Closed", "02/11/2026"],
        ["John", "Roe", "john@example.com", "1", "Closed", "03/11/2026"],
    ])
    assert [(c.email.lower(), c.ticket_ids) for c in customers] == [
        ("jane@example.com", ["100", "9", "10"]), ("john@example.com", ["1"])]


def test_each_payload_holds_only_its_own_customers_tickets():
    """The seed's privacy leak: each body accumulated the previous customers' tickets."""
    customers = customers_of([
        ["Ann", "A", "ann@example.com", "A-1", "Closed", "02/11/2026"],
        ["Bob", "B", "bob@example.com", "B-1", "Closed", "03/11/2026"],
        ["Bob", "B", "bob@example.com", "B-2", "Closed", "04/11/2026"],
        ["Cy", "C", "cy@example.com", "C-1", "Closed", "05/11/2026"],
    ])
    payloads = [build_payload(customer) for customer in customers]
    for payload, own in zip(payloads, (["A-1"], ["B-1", "B-2"], ["C-1"]), strict=True):
        assert [t["ticket"] for t in payload["tickets"]] == own
        others = {"A-1", "B-1", "B-2", "C-1"} - set(own)
        assert not any(other in payload["email"]["body"] for other in others)
        assert all(f"Ticket {ticket_id}" in payload["email"]["body"] for ticket_id in own)
        assert payload["email"]["to_address"] == [payload["email_address"]]


def test_payload_shape_and_greeting_by_first_name():
    [customer] = customers_of([["Jane", "Doe", "jane@example.com", "1001", "Closed", "20/11/2026 14:30"],
                               ["Jane", "Doe", "jane@example.com", "1002", "Closed", "21/11/2026"]])
    payload = build_payload(customer)
    assert payload == {
        "full_name": "Jane Doe",
        "email_address": "jane@example.com",
        "ready_to_send": True,
        "email": {"subject": "Your support tickets have been closed", "to_address": ["jane@example.com"],
                  "cc_address": [], "body": payload["email"]["body"]},
        "tickets": [{"ticket": "1001", "status": "Closed", "closed_date": "2026-11-20T14:30:00"},
                    {"ticket": "1002", "status": "Closed", "closed_date": "2026-11-21"}],
    }
    body = payload["email"]["body"]
    assert body.startswith("Hello Jane,\n")
    assert "Ticket 1001, closed on 20 Nov 2026" in body and "Ticket 1002, closed on 21 Nov 2026" in body


def test_one_address_shared_by_different_names_is_one_customer_greeted_neutrally():
    [customer] = customers_of([["Ann", "Smith", "asmith@example.com", "1", "Closed", "02/11/2026"],
                               ["Al", "Smith", "asmith@example.com", "2", "Closed", "03/11/2026"]])
    payload = build_payload(customer)
    assert customer.ticket_ids == ["1", "2"]
    assert payload["email"]["body"].startswith("Hello,\n")
    assert payload["full_name"] == ""


def test_custom_subject_and_body_template():
    [customer] = customers_of([["Jane", "Doe", "jane@example.com", "7", "Closed", "20/11/2026"]])
    template = Template("Dear $full_name ($first_name): $ticket_count closed\n$ticket_lines\nCost: $$0")
    payload = build_payload(customer, Content("Closed!", template))
    assert payload["email"]["subject"] == "Closed!"
    assert payload["email"]["body"] == "Dear Jane Doe (Jane): 1 closed\n  - Ticket 7, closed on 20 Nov 2026\nCost: $0"


def test_body_template_with_an_unknown_placeholder_is_refused():
    with pytest.raises(ValueError, match=r"unknown placeholder \$ticket_ids"):
        check_body_template(Template("$ticket_ids"))


def test_webhook_id_is_stable_and_changes_when_a_ticket_is_closed_again():
    def customer(*rows):
        return customers_of([list(row) for row in rows])[0]
    first = customer(["J", "D", "jane@example.com", "1", "Closed", "02/11/2026"],
                     ["J", "D", "jane@example.com", "2", "Closed", "03/11/2026"])
    same = customer(["J", "D", "JANE@example.com", "2", "Closed", "03/11/2026"],
                    ["J", "D", "jane@example.com", "1", "Closed", "02/11/2026"])
    reclosed = customer(["J", "D", "jane@example.com", "1", "Closed", "09/11/2026"],
                        ["J", "D", "jane@example.com", "2", "Closed", "03/11/2026"])
    assert webhook_id(first) == webhook_id(same)
    assert webhook_id(first) != webhook_id(reclosed)
    assert webhook_id(first).startswith("msg_")


def ticket(ticket_id, day, email="jane@example.com"):
    return ClosedTicket(email, ticket_id, "Closed", datetime.combine(day, datetime.min.time()), False)


def test_already_notified_tickets_are_dropped_but_a_new_one_on_the_same_day_is_not():
    customers = group_by_customer(index_by_email([ticket("1", date(2026, 11, 20)), ticket("2", date(2026, 11, 20))]))
    notified = {customer_key("JANE@example.com"): {"1": "2026-11-20"}}
    remaining, dropped = drop_already_notified(customers, notified)
    assert dropped == 1
    assert [c.ticket_ids for c in remaining] == [["2"]]


def test_a_ticket_closed_again_after_its_notification_is_sent_again():
    customers = group_by_customer(index_by_email([ticket("1", date(2026, 11, 25))]))
    remaining, dropped = drop_already_notified(customers, {customer_key("jane@example.com"): {"1": "2026-11-20"}})
    assert (dropped, [c.ticket_ids for c in remaining]) == (0, [["1"]])


def test_weekly_guard_counts_calendar_days():
    customers = group_by_customer(index_by_email([ticket("1", date(2026, 11, 20), "a@example.com"),
                                                  ticket("2", date(2026, 11, 21), "b@example.com")]))
    emailed = {customer_key("a@example.com"): "2026-11-21", customer_key("b@example.com"): "2026-11-20"}
    to_send, deferred = split_by_weekly_guard(customers, emailed, date(2026, 11, 27), 7)
    assert [c.email for c in to_send] == ["b@example.com"]
    assert [c.email for c in deferred] == ["a@example.com"]
    to_send, deferred = split_by_weekly_guard(customers, emailed, date(2026, 11, 27), 0)
    assert (len(to_send), deferred) == (2, [])


def test_next_last_run_date_is_the_latest_settled_day_and_never_passes_a_pending_ticket():
    start = date(2026, 11, 20)
    tickets = [ticket("1", date(2026, 11, 21), "a@example.com"), ticket("2", date(2026, 11, 24), "b@example.com"),
               ticket("3", date(2026, 11, 23), "b@example.com")]
    found = group_by_customer(index_by_email(tickets))
    pending = group_by_customer(index_by_email(tickets[1:]))
    assert next_last_run_date(start, found, [], date.max) == date(2026, 11, 24)
    assert next_last_run_date(start, found, pending, date.max) == date(2026, 11, 23)
    assert next_last_run_date(start, [], [], date.max) == start


def test_a_delivery_is_recorded_then_finish_state_keeps_only_what_the_next_window_sees():
    state = RunState(date(2026, 11, 20), {customer_key("old@example.com"): {"9": "2026-11-19"}},
                     {customer_key("old@example.com"): "2025-01-01"})
    [customer] = group_by_customer(index_by_email([ticket("1", date(2026, 11, 20)), ticket("2", date(2026, 11, 24))]))
    key, notified, emailed_on = delivery_entries(state, customer, date(2026, 11, 27))
    assert (key, notified, emailed_on) == (customer.key, {"1": "2026-11-20", "2": "2026-11-24"}, "2026-11-27")
    state = RunState(state.last_run_date, {**state.notified, key: notified}, {**state.last_emailed, key: emailed_on})
    finished = finish_state(state, date(2026, 11, 24), date(2026, 11, 27), 7)
    assert finished.last_run_date == date(2026, 11, 24)
    assert finished.notified == {customer.key: {"2": "2026-11-24"}}
    assert finished.last_emailed == {customer.key: "2026-11-27"}


def test_max_emails_takes_the_customers_with_the_oldest_tickets_and_keeps_the_report_s_order():
    from conftest import customer

    from ticket_core import cap_emails

    late, early, middle = (customer(f"{name}@example.com", "1", closed=date(2026, 11, day))
                           for name, day in (("late", 24), ("early", 21), ("middle", 22)))
    assert cap_emails([late, early, middle], 2) == ([early, middle], [late])
    assert cap_emails([late, early, middle], 1) == ([early], [middle, late])   # those who wait: oldest first
    assert cap_emails([late, early, middle], 3) == ([late, early, middle], [])
    assert cap_emails([late, early, middle], None) == ([late, early, middle], [])
