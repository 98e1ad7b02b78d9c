"""The pure core of the notifier: report rows in, customers and the next state out, no I/O."""

from __future__ import annotations

import functools
import hashlib
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from itertools import chain
from operator import attrgetter, itemgetter
from typing import NamedTuple

from report_dates import DEFAULT_DATE_FORMATS, DateParser, forms_that_read, iso_moment, month_first_form

ROLES = ("first_name", "last_name", "name", "email", "ticket", "status", "date", "subject")
REQUIRED_ROLES = ("email", "ticket", "status", "date")
NAME_ROLES = ("first_name", "last_name", "name")
# The seed's sheet has no header row: Firstname | Lastname | Email | Ticket | Status | Date.
SEED_LAYOUT = {"first_name": 0, "last_name": 1, "email": 2, "ticket": 3, "status": 4, "date": 5}

HEADER_NAMES = {
    "first_name": ("Firstname", "First Name", "Given Name"),
    "last_name": ("Lastname", "Last Name", "Surname"),
    "name": ("Name", "Full Name", "Customer Name", "Customer", "Requester"),
    "email": ("Email", "E-mail", "Email Address", "Customer Email", "Requester Email", "Contact Email"),
    "ticket": ("Ticket", "Ticket ID", "Ticket No", "Ticket Number", "Ticket #", "ID", "Issue Key", "Key",
               "Case Number"),
    "status": ("Status", "Ticket Status", "State"),
    "date": ("Date", "Status Date", "Updated", "Last Updated", "Closed Date", "Date Closed", "Resolved"),
    "subject": ("Subject", "Title", "Summary", "Ticket Subject"),
}

SKIP_NO_EMAIL = "no or invalid email"
SKIP_NO_TICKET = "no ticket id"
SKIP_BAD_DATE = "unparseable date"
SKIP_FUTURE_DATE = "date more than one day in the future"
SKIP_REASONS = (SKIP_NO_EMAIL, SKIP_NO_TICKET, SKIP_BAD_DATE, SKIP_FUTURE_DATE)
# Skipped for a reason the help desk can fix in the row: such a ticket is held for later runs.
HOLDABLE_REASONS = (SKIP_NO_EMAIL, SKIP_BAD_DATE, SKIP_FUTURE_DATE)
# A column nobody can read: at least this many closed rows, and more than half, skipped for its reason.
UNREADABLE_COLUMN_ROWS = 3
COLUMN_FIXES = {
    SKIP_BAD_DATE: "date",
    SKIP_NO_EMAIL: "email",
}

# One address: one '@', a local part of dot-separated words (no leading, trailing or double dot: RFC 5321),
# a dotted domain with no empty label, no spaces, separators or control characters.
_WORD_CHAR = r'[^@.\s\x00-\x1f\x7f,;:<>()\[\]\\"]'
_EMAIL = re.compile(rf"{_WORD_CHAR}+(?:\.{_WORD_CHAR}+)*@(?:{_WORD_CHAR}+\.)+{_WORD_CHAR}+")
MAX_LOCAL_PART, MAX_ADDRESS = 64, 254  # RFC 5321's lengths
# Characters no address may hold: controls, invisible formatting (zero-width space, soft hyphen), separators.
_INVISIBLE_CATEGORIES = frozenset(("Cc", "Cf", "Zs", "Zl", "Zp"))


class ReportError(Exception):
    """The report cannot be used as a whole (a missing column, say): the run stops with exit 2."""


# ---------------------------------------------------------------- reading cells

def normalise_header(text: object) -> str:
    """Header names compare case-insensitively, ignoring spaces, '_', '-', '#' and '.'."""
    return re.sub(r"[\s_\-#.]", "", str(text or "")).casefold()


_KNOWN_HEADERS = {normalise_header(name): role for role, names in HEADER_NAMES.items() for name in names}


def cell_text(value: object) -> str:
    """A cell as trimmed text; whole numbers lose the '.0' a spreadsheet gives them."""
    if type(value) is str:  # nearly every cell: checked first
        return value.strip()
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def is_valid_email(text: str) -> bool:
    """One plain address, as a mailer can send to it (no name, no list, no spaces, nothing invisible)."""
    if _EMAIL.fullmatch(text) is None or len(text) > MAX_ADDRESS or text.index("@") > MAX_LOCAL_PART:
        return False
    return text.isascii() or not any(unicodedata.category(char) in _INVISIBLE_CATEGORIES for char in text)


def address_key(email: str) -> str:
    """The one way two addresses are the same customer: trimmed and lower-cased, never case-folded
    (casefold makes Straße@ and strasse@, or the Kelvin sign and k, one mailbox)."""
    return email.strip().lower()




# ---------------------------------------------------------------- columns

def is_header_row(row: Sequence[object], overrides: Mapping[str, str]) -> bool:
    cells = [cell_text(cell) for cell in row]
    if any("@" in cell for cell in cells):
        return False
    wanted = {normalise_header(header) for header in overrides.values()}
    return any(normalise_header(cell) in _KNOWN_HEADERS or normalise_header(cell) in wanted for cell in cells)


def find_columns(header: Sequence[object], overrides: Mapping[str, str]) -> dict[str, int]:
    """Map each role to its column: --column overrides first, then the first recognised name."""
    names = [normalise_header(cell_text(cell)) for cell in header]
    found_headers = ", ".join(cell_text(cell) for cell in header if cell_text(cell)) or "(none)"
    columns: dict[str, int] = {}
    for role, wanted in overrides.items():
        key = normalise_header(wanted)
        if key not in names:
            raise ReportError(f"--column {role}={wanted}: no such column in the report; headers found: {found_headers}")
        columns[role] = names.index(key)
    for index, name in enumerate(names):
        role = _KNOWN_HEADERS.get(name)
        if role and role not in columns and index not in columns.values():
            columns[role] = index
    missing = [role for role in REQUIRED_ROLES if role not in columns]
    if missing:
        raise ReportError(
            f"the report has no {', '.join(missing)} column; headers found: {found_headers} "
            f"(map them with --column ROLE=HEADER)")
    return columns


# ---------------------------------------------------------------- selecting closed tickets

class ClosedTicket(NamedTuple):
    """One closed ticket of the report (a tuple: a large report holds hundreds of thousands)."""
    email: str
    ticket_id: str
    status: str
    closed_at: datetime
    has_time: bool
    first_name: str = ""
    full_name: str = ""
    subject: str | None = None   # None: the report has no subject column

    @property
    def email_key(self) -> str:
        return address_key(self.email)

    @property
    def closed_date(self) -> str:
        return iso_moment(self.closed_at, self.has_time)


class SkippedRow(NamedTuple):
    """A closed row that could not be used, as a person finds it in the spreadsheet."""
    row_number: int
    reason: str
    value: str          # the cell that made it unusable
    ticket_id: str
    customer_key: str   # the customer's key when the address is usable, else ''
    closed_date: str    # ISO day or moment when the date is usable, else ''
    name_key: str = ""  # the row's name (name_key), to know the customer under a corrected address


class Recall(NamedTuple):
    """A ticket taken again whatever its date (held, or --retry-rejected): only the row of the same
    customer, closed no earlier than the day recorded (when known), never another customer's ticket
    that happens to share the id. The same customer is the same address, or the same name under a
    corrected address; a recall that knows neither (written by an older version) takes any address."""
    customer_key: str = ""
    not_before: str = ""   # ISO day or moment
    name_key: str = ""


BY_ADDRESS, BY_NAME, BY_ANY = "address", "name", "any"


def recall_matches(recalls: Iterable[Recall], moment: datetime, email_key: str, name: str = "") -> str:
    """How a row of `email_key` and `name` closed at `moment` matches one of `recalls`: BY_ADDRESS,
    BY_NAME (a corrected address), BY_ANY (the recall knows no customer), or '' when it does not.
    Days are compared, never times: a report may write the same day with or without a time."""
    found = ""
    row_customer = customer_key(email_key) if email_key else ""
    row_name = name_key(name)
    for recall in recalls:
        if recall.not_before and moment.date() < datetime.fromisoformat(recall.not_before).date():
            continue
        if recall.customer_key and row_customer == recall.customer_key:
            return BY_ADDRESS
        if recall.name_key and row_name == recall.name_key:
            found = BY_NAME
        elif not recall.customer_key and not recall.name_key and not found:
            found = BY_ANY
    return found


@dataclass
class Selection:
    """What one pass over the report found: the closed tickets by email key, then by ticket id."""
    rows_read: int = 0
    by_email: dict[str, dict[str, ClosedTicket]] = field(default_factory=dict)
    skipped: Counter = field(default_factory=Counter)
    skipped_rows: list[SkippedRow] = field(default_factory=list)
    closed_rows: int = 0  # rows whose status counts as closed, whatever their date
    recalled: set[str] = field(default_factory=set)  # ticket ids taken from before the window (held or --retry-rejected)
    ambiguous: set[str] = field(default_factory=set)  # recalled ticket ids whose customer could not be told: still held
    warnings: list[str] = field(default_factory=list)
    layout_doubt: str = ""  # no header found and the first row does not look like the seed's layout either
    has_header: bool = False
    other_statuses: Counter = field(default_factory=Counter)  # statuses that did not count as closed

    @property
    def tickets(self) -> list[ClosedTicket]:
        return [ticket for tickets in self.by_email.values() for ticket in tickets.values()]

    @property
    def ticket_count(self) -> int:
        return sum(map(len, self.by_email.values()))


@dataclass(frozen=True)
class SelectOptions:
    closed_statuses: tuple[str, ...] = ("Closed",)
    date_formats: tuple[str, ...] = DEFAULT_DATE_FORMATS
    columns: Mapping[str, str] = field(default_factory=dict)
    recall: Mapping[str, tuple[Recall, ...]] = field(default_factory=dict)  # ticket id -> taken whatever its date
    first_row_number: int = 1  # the spreadsheet's number of the first row read (-range Sheet1!A2:F: 2)


def select_closed_tickets(rows: Iterable[Sequence[object]], since: date, now: datetime,
                          options: SelectOptions = SelectOptions()) -> Selection:
    """Closed tickets dated on or after `since`, one per (customer, ticket id) with its latest date.

    Each row meets these rules in this order; the first that applies decides:
      blank                  not counted as read
      short                  padded with empty cells (Sheets drops a row's trailing empty cells)
      not closed             ignored; its status is counted (Selection.other_statuses)
      unreadable date        skipped, after the month-first check (which stops the run)
      closed before `since`  ignored, unless its ticket is recalled (held earlier, or --retry-rejected)
      over a day ahead       skipped
      no ticket id           skipped
      no usable address      skipped
      seen before            a customer's ticket keeps its latest date
    Skipped rows are counted by reason and kept (SkippedRow) for the summary and for holding.
    """
    selection = Selection()
    layout = _find_layout(enumerate(rows, options.first_row_number), options)  # numbered as a spreadsheet shows
    if layout is None:
        return selection
    columns, data_rows, first_row_number = layout.columns, layout.rows, layout.first_row_number
    selection.has_header = layout.has_header
    if not layout.has_header:
        selection.layout_doubt = _seed_layout_doubt(layout.first_row)
        if selection.layout_doubt:
            selection.warnings.append(selection.layout_doubt)

    by_email, skipped_rows, other_statuses = selection.by_email, selection.skipped_rows, defaultdict(int)
    cells = _CellMeanings(columns, options)
    closed_status, text_date, address, names, name_cells = (
        cells.closed_status, cells.text_date, cells.address, cells.names, cells.name_cells)
    earliest = datetime(since.year, since.month, since.day)
    latest = now + timedelta(days=1)
    i_status, i_date, i_ticket, i_email = (columns[role] for role in ("status", "date", "ticket", "email"))
    i_subject = columns.get("subject")
    width = max(columns.values()) + 1
    recall = options.recall

    def new_ticket(row: Sequence[object], ticket_id: str, status: str, closed_at: datetime, has_time: bool) -> ClosedTicket:
        """A recalled row's ticket (the rows inside the window make theirs at the end of the loop)."""
        first_name, full_name = names(name_cells(row))
        subject = None if i_subject is None else cell_text(row[i_subject])
        return ClosedTicket(address(row[i_email])[0], ticket_id, status, closed_at, has_time, first_name, full_name,
                            subject)

    def skip(row_number: int, reason: str, value: object, row: Sequence[object], closed_date: str = "") -> None:
        skipped_rows.append(_skipped_row(row_number, reason, value, row[i_ticket], address(row[i_email])[1],
                                         closed_date, names(name_cells(row))[1]))

    row_number, blank_rows, closed_rows = first_row_number - 1, 0, 0
    not_yet_told: list[tuple[int, str, ClosedTicket]] = []  # recalled by name or id alone: (row, email key, ticket)
    for row_number, row in data_rows:
        if len(row) < width:  # short: blank, or Sheets dropped its trailing empty cells
            if not any(row):
                blank_rows += 1
                continue
            row = [*row, *[""] * (width - len(row))]
        raw_status = row[i_status]
        status = closed_status(raw_status)
        if not status:  # not closed
            if raw_status or any(row):
                other_statuses[raw_status] += 1
            else:
                blank_rows += 1
            continue
        closed_rows += 1
        raw_date = row[i_date]
        parsed = text_date(raw_date) if type(raw_date) is str else cells.parser.parse(raw_date)
        if parsed is None:  # unreadable date
            _refuse_month_first(cells.parser, raw_date, row_number)
            skip(row_number, SKIP_BAD_DATE, raw_date, row)
            continue
        closed_at, has_time = parsed
        if closed_at < earliest:  # before the window: only a recalled ticket of the same customer is taken
            if not recall:
                continue
            email_key, full_name = address(row[i_email])[1], names(name_cells(row))[1]
            recalled_by = _recall_of(row, closed_at, recall, i_ticket, email_key, full_name)
            if not recalled_by:
                continue
            if recalled_by != BY_ADDRESS and email_key:  # by name or id: told apart once every row is read
                not_yet_told.append((row_number, email_key, new_ticket(row, cell_text(row[i_ticket]), status,
                                                                       closed_at, has_time)))
                continue
            if recalled_by == BY_ADDRESS:
                selection.recalled.add(cell_text(row[i_ticket]))
        if closed_at > latest:  # over a day ahead
            skip(row_number, SKIP_FUTURE_DATE, raw_date, row)
            continue
        ticket_id = cell_text(row[i_ticket])
        if not ticket_id:
            skip(row_number, SKIP_NO_TICKET, ticket_id, row)
            continue
        email, email_key = address(row[i_email])
        if not email_key:
            skip(row_number, SKIP_NO_EMAIL, row[i_email], row, iso_moment(closed_at, has_time))
            continue
        tickets = by_email.get(email_key)
        if tickets is None:  # a new customer: customers keep the order the report first names them in
            tickets = by_email[email_key] = {}
        seen = tickets.get(ticket_id)
        if seen is not None and closed_at < seen.closed_at:  # seen before: the latest date wins
            continue
        # Made here rather than by new_ticket(): a call for each ticket costs a large report about 5 %.
        first_name, full_name = names(name_cells(row))
        subject = None if i_subject is None else cell_text(row[i_subject])
        tickets[ticket_id] = ClosedTicket(email, ticket_id, status, closed_at, has_time, first_name, full_name, subject)
    _take_unambiguous_recalls(not_yet_told, selection, recall)
    selection.rows_read = row_number - first_row_number + 1 - blank_rows
    selection.closed_rows = closed_rows
    selection.skipped.update(row.reason for row in skipped_rows)
    selection.other_statuses = _merged_statuses(other_statuses)
    return selection


class _Layout(NamedTuple):
    columns: Mapping[str, int]
    rows: Iterator[tuple[int, Sequence[object]]]   # the numbered rows to read
    first_row_number: int
    first_row: Sequence[object]
    has_header: bool


def _find_layout(numbered_rows: Iterator[tuple[int, Sequence[object]]], options: SelectOptions) -> _Layout | None:
    """The columns, from the first row that is not blank: a header row names them; otherwise that
    row is data in the seed's layout and the rows to read start with it. None when all are blank."""
    first_number, first = next(((number, row) for number, row in numbered_rows if any(cell_text(cell) for cell in row)),
                               (0, None))
    if first is None:
        return None
    if is_header_row(first, options.columns):
        return _Layout(find_columns(first, options.columns), numbered_rows, first_number + 1, first, True)
    if options.columns:
        raise ReportError("--column needs a header row, but the report's first row holds data")
    return _Layout(SEED_LAYOUT, chain([(first_number, first)], numbered_rows), first_number, first, False)


class _CellMeanings:
    """What a distinct cell means, worked out once per report (functools.cache): reports repeat the
    same few statuses, dates, addresses and names, so a known cell costs one cache lookup."""

    def __init__(self, columns: Mapping[str, int], options: SelectOptions) -> None:
        closed = {status.strip().casefold(): status.strip() for status in options.closed_statuses}
        self.parser = DateParser(options.date_formats)
        self.closed_status = functools.cache(lambda cell: closed.get(cell_text(cell).casefold(), ""))  # '' if not closed
        # Text dates only: a workbook's typed cells are parsed as they come (a cache takes True for 1).
        self.text_date = functools.cache(self.parser.parse)   # (moment, has time) or None
        self.address = functools.cache(_email_and_key)         # (email, key); the key is '' when not usable
        self.names = functools.cache(_person_names_reader(columns))  # (first name, full name) of a row's name cells
        self.name_cells = _cells_getter([columns[role] for role in NAME_ROLES if role in columns])


def _recall_of(row: Sequence[object], closed_at: datetime, recall: Mapping[str, tuple[Recall, ...]],
               i_ticket: int, email_key: str, name: str) -> str:
    """How a row from before the window is a held or rejected ticket of the same customer
    (recall_matches), '' when it is not one."""
    ticket_id = cell_text(row[i_ticket])
    return recall_matches(recall[ticket_id], closed_at, email_key, name) if ticket_id in recall else ""


def _take_unambiguous_recalls(rows: list[tuple[int, str, ClosedTicket]], selection: Selection,
                              recall: Mapping[str, tuple[Recall, ...]]) -> None:
    """Tickets recalled by name under a corrected address (or by id alone, for an entry of an older
    version) join their customer when one address claims them; when rows of several addresses
    do, nobody can tell whose ticket it is: it stays held and the warning names the rows. A claim
    by name is no claim when the recalled customer's own address holds the ticket in this report."""
    claims: dict[str, list[tuple[int, str, ClosedTicket]]] = {}
    for claim in rows:
        ticket = claim[2]
        holders = {customer_key(key) for key, tickets in selection.by_email.items() if ticket.ticket_id in tickets}
        matched = [one for one in recall[ticket.ticket_id] if (one.name_key and one.name_key == name_key(ticket.full_name))
                   or not (one.customer_key or one.name_key)]
        if matched and all(one.customer_key in holders for one in matched if one.customer_key) and \
                any(one.customer_key for one in matched):
            continue
        claims.setdefault(ticket.ticket_id, []).append(claim)
    for ticket_id, found in claims.items():
        if len({key for _, key, _ in found}) > 1:
            selection.ambiguous.add(ticket_id)
            numbers = ", ".join(str(number) for number, _, _ in found)
            selection.warnings.append(f"ticket {ticket_id}: rows {numbers} of different addresses could each be the "
                                      "held ticket of one customer; it stays held until only one row claims it")
            continue
        for _, key, ticket in found:
            tickets = selection.by_email.setdefault(key, {})
            earlier = tickets.get(ticket_id)
            if earlier is None or ticket.closed_at >= earlier.closed_at:
                tickets[ticket_id] = ticket
        selection.recalled.add(ticket_id)


def _skipped_row(row_number: int, reason: str, value: object, ticket_cell: object, email_key: str,
                 closed_date: str, name: str) -> SkippedRow:
    return SkippedRow(row_number, reason, cell_text(value), cell_text(ticket_cell),
                      customer_key(email_key) if email_key else "", closed_date, name_key(name))


def _merged_statuses(counts: Mapping[object, int]) -> Counter:
    """The statuses that did not count as closed, trimmed and merged case-insensitively (as closed
    statuses are compared), each under the spelling seen first."""
    spelling: dict[str, str] = {}
    merged: Counter = Counter()
    for status, count in counts.items():
        if count:
            text = cell_text(status)
            merged[spelling.setdefault(text.casefold(), text)] += count
    return merged


def _refuse_month_first(parser: DateParser, value: object, row_number: int) -> None:
    """A closed row's text date that fails the formats in use but reads with day and month swapped
    (11/20/2026) means a month-first report: 01/12/2026 would be misread without a word. Stop."""
    if not isinstance(value, str):
        return
    form = month_first_form(parser.formats_text, value.strip())
    if form:
        raise ReportError(f"row {row_number}: the date {value.strip()!r} is month-first, so other dates "
                          f"of this report would be misread; pass --date-format \"{form}\" if the whole report "
                          "writes dates month first")


def refuse_unreadable_column(selection: Selection) -> None:
    """A column nobody can read is a setting to fix, not a quiet week: when at least
    UNREADABLE_COLUMN_ROWS closed rows, and more than half of them, are skipped for the same
    reason (the date, or the address), stop before sending, naming the first row and the fix."""
    for reason, role in COLUMN_FIXES.items():
        count = selection.skipped[reason]
        if count < UNREADABLE_COLUMN_ROWS or count * 2 <= selection.closed_rows:
            continue
        first = next(row for row in selection.skipped_rows if row.reason == reason)
        where = (f"row {first.row_number}: {count} of the {selection.closed_rows} closed rows were skipped for "
                 f"{reason} (the first: {first.value!r})")
        if role == "date":
            forms = forms_that_read(first.value)
            if len(forms) == 1:
                fix = f'pass --date-format "{forms[0]}"'
            elif forms:
                fix = "pass " + " or ".join(f'--date-format "{form}"' for form in forms) + ", whichever the report uses"
            else:
                fix = 'pass --date-format with the form the column uses (such as "%d/%m/%Y %H:%M")'
            fix += ", or --column date=HEADER if the dates are in another column"
        else:
            fix = "if the addresses are in another column, pass --column email=HEADER; else fix the report's addresses"
        raise ReportError(f"{where}: {fix} (nothing was sent)")


def _seed_layout_doubt(first: Sequence[object]) -> str:
    """A warning when a first row read as the seed's layout has no address where one belongs:
    most likely a header the program does not know, which would otherwise go unnoticed."""
    email_cell = cell_text(first[SEED_LAYOUT["email"]]) if len(first) > SEED_LAYOUT["email"] else ""
    if is_valid_email(email_cell):
        return ""
    shown = ", ".join(cell_text(cell) for cell in first[:8]) + (", ..." if len(first) > 8 else "")
    return ("no header row recognised, so the columns are read as Firstname, Lastname, Email, Ticket, Status, "
            f"Date, but the first row's third cell is not an email address (first row: {shown}); "
            "if that row is a header, map its columns with --column ROLE=HEADER")


def _email_and_key(cell: object) -> tuple[str, str]:
    """The address as written (trimmed) and its key; the key is '' when it is not one address."""
    email = cell_text(cell)
    return email, address_key(email) if is_valid_email(email) else ""


def _person_names_reader(columns: Mapping[str, int]) -> Callable[[tuple], tuple[str, str]]:
    """A function from a row's name cells (those of NAME_ROLES the report has, in that order) to
    (first name, full name). A column the report lacks reads as the blank cell added at the end."""
    present = [role for role in NAME_ROLES if role in columns]
    pick = itemgetter(*(present.index(role) if role in present else -1 for role in NAME_ROLES))

    def person_names(cells: tuple) -> tuple[str, str]:
        first_name, last_name, name = map(cell_text, pick((*cells, "")))
        return first_name, name or (f"{first_name} {last_name}" if first_name and last_name else first_name or last_name)
    return person_names


def _cells_getter(indexes: Sequence[int]) -> Callable[[Sequence[object]], tuple]:
    """The cells of a row at `indexes`, always as a tuple (itemgetter alone gives a bare cell for one index)."""
    if len(indexes) > 1:
        return itemgetter(*indexes)
    if indexes:
        (index,) = indexes
        return lambda row: (row[index],)
    return lambda row: ()


# ---------------------------------------------------------------- customers

class Customer(NamedTuple):
    """One email address and its newly closed tickets, sorted by date then id."""
    email: str
    full_name: str
    first_name: str
    tickets: tuple[ClosedTicket, ...]

    @property
    def key(self) -> str:
        """How the state file names a customer: SHA-256 of the lower-cased email, never the email."""
        return customer_key(self.email)

    @property
    def ticket_ids(self) -> list[str]:
        return [ticket.ticket_id for ticket in self.tickets]

    @property
    def earliest(self) -> datetime:
        return self.tickets[0].closed_at


@functools.lru_cache(maxsize=65536)  # a report repeats its addresses
def customer_key(email: str) -> str:
    return hashlib.sha256(address_key(email).encode("utf-8")).hexdigest()


@functools.lru_cache(maxsize=4096)  # a report repeats its names: each is hashed once
def name_key(name: str) -> str:
    """How the state knows a customer's name without holding it (a corrected address keeps the
    name): a short SHA-256 of the name, spaces squeezed and case ignored; '' when there is none."""
    words = " ".join(name.split()).casefold()
    return hashlib.sha256(words.encode("utf-8")).hexdigest()[:16] if words else ""


_closed_at = attrgetter("closed_at")
_ticket_id = attrgetter("ticket_id")
_tickets = attrgetter("tickets")
_last = itemgetter(-1)
_names = attrgetter("first_name", "full_name")


def _ticket_order(ticket: ClosedTicket) -> tuple:
    """By date, then id in natural order: shorter first, so 9 comes before 10 and T-9 before T-10."""
    return (ticket.closed_at, len(ticket.ticket_id), ticket.ticket_id)


def index_by_email(tickets: Iterable[ClosedTicket]) -> dict[str, dict[str, ClosedTicket]]:
    """Tickets by email key then ticket id, as a Selection holds them; the latest date wins."""
    index: dict[str, dict[str, ClosedTicket]] = {}
    for ticket in tickets:
        same_customer = index.setdefault(ticket.email_key, {})
        previous = same_customer.get(ticket.ticket_id)
        if previous is None or ticket.closed_at >= previous.closed_at:
            same_customer[ticket.ticket_id] = ticket
    return index


def group_by_customer(by_email: Mapping[str, Mapping[str, ClosedTicket]]) -> list[Customer]:
    """One customer per email (compared case-insensitively), in the order they first appear in
    the report, each with its tickets sorted by date then id.

    When rows of one address carry different names (a shared mailbox), the customer is
    greeted neutrally rather than by one of the names.
    """
    customers = []
    for tickets in by_email.values():
        if len(tickets) == 1:
            (ticket,) = tickets.values()
            customers.append(Customer(ticket.email, ticket.full_name, ticket.first_name, (ticket,)))
            continue
        group = sorted(tickets.values(), key=_closed_at)
        if len(set(map(_closed_at, group))) < len(group):  # tickets closed at the same moment: by id too
            group.sort(key=_ticket_order)
        latest = group[-1]
        names = set(map(_names, group))
        same_person = len(names) == 1 or len({(first.casefold(), full.casefold()) for first, full in names}) == 1
        customers.append(Customer(group[0].email, latest.full_name if same_person else "",
                                  latest.first_name if same_person else "", tuple(group)))
    return customers


def same_day_or_later(recorded: str, moment: datetime) -> bool:
    """Whether a closed day recorded in the state (ISO day or moment) is on or after `moment`'s day:
    a ticket is identified by its day, whatever precision the report writes it with."""
    return datetime.fromisoformat(recorded).date() >= moment.date()


def is_notified(ticket: ClosedTicket, notified: Mapping[str, str]) -> bool:
    recorded = notified.get(ticket.ticket_id)
    return recorded is not None and same_day_or_later(recorded, ticket.closed_at)


def drop_already_notified(customers: Iterable[Customer],
                          notified: Mapping[str, Mapping[str, str]]) -> tuple[list[Customer], int]:
    """Customers with only the tickets not yet recorded as notified, and how many were dropped."""
    return _drop_recorded(customers, notified)


def drop_rejected(customers: Iterable[Customer], rejected: Mapping[str, Mapping]) -> tuple[list[Customer], int]:
    """Customers without the tickets this address was refused for (they wait for --retry-rejected),
    and how many were held back. A rejection belongs to an address: under another one they go out."""
    return _drop_recorded(customers, {key: entry["tickets"] for key, entry in rejected.items()})


def _drop_recorded(customers: Iterable[Customer],
                   recorded: Mapping[str, Mapping[str, str]]) -> tuple[list[Customer], int]:
    """Customers without their tickets recorded (customer key -> ticket id -> closed date) at that
    date or later, and how many tickets were dropped."""
    remaining, dropped = [], 0
    for customer in customers:
        done = recorded.get(customer.key) if recorded else None
        if not done:
            remaining.append(customer)
            continue
        tickets = tuple(ticket for ticket in customer.tickets if not is_notified(ticket, done))
        dropped += len(customer.tickets) - len(tickets)
        if tickets:
            remaining.append(Customer(customer.email, customer.full_name, customer.first_name, tickets))
    return remaining, dropped


def split_by_weekly_guard(customers: Iterable[Customer], last_emailed: Mapping[str, str], today: date,
                          min_days: int) -> tuple[list[Customer], list[Customer]]:
    """(to send, deferred): a customer emailed fewer than `min_days` calendar days ago waits."""
    if min_days <= 0 or not last_emailed:
        return list(customers), []
    to_send, deferred = [], []
    for customer in customers:
        last = last_emailed.get(customer.key)
        if min_days > 0 and last and (today - date.fromisoformat(last)).days < min_days:
            deferred.append(customer)
        else:
            to_send.append(customer)
    return to_send, deferred


def cap_emails(customers: list[Customer], most: int | None) -> tuple[list[Customer], list[Customer]]:
    """(to send, waiting): at most `most` customers, those whose oldest ticket is oldest, in the report's
    order; the others wait for the next run (--max-emails), oldest ticket first."""
    if most is None or len(customers) <= most:
        return customers, []
    oldest_first = sorted(range(len(customers)), key=lambda index: customers[index].earliest)  # stable: report order
    chosen = set(oldest_first[:most])
    return ([customer for index, customer in enumerate(customers) if index in chosen],
            [customers[index] for index in oldest_first[most:]])


# ---------------------------------------------------------------- next state

REJECTED_KEEP_DAYS = 90
HELD_KEEP_DAYS = 90
SENT_KEEP_DAYS = 90


@dataclass
class RunState:
    """What last_run_date.json holds: the start of the next window, tickets already notified
    in it (customer key -> ticket id -> closed date), each customer's last email day, and the
    customers refused for good (customer key -> {"day", "reason", "tickets": {id: closed date}})."""
    last_run_date: date
    notified: dict[str, dict[str, str]] = field(default_factory=dict)
    last_emailed: dict[str, str] = field(default_factory=dict)
    rejected: dict[str, dict] = field(default_factory=dict)
    held: dict[str, dict] = field(default_factory=dict)  # held_key -> {"ticket", "day", "reason", "customer", "name", "closed"}
    # The emails sent while bounces are read: Message-ID's local part -> {"customer", "name", "day", "tickets"},
    # kept SENT_KEEP_DAYS; and how far each destination's mailbox was read.
    sent: dict[str, dict] = field(default_factory=dict)
    bounce_cursor: dict[str, dict] = field(default_factory=dict)


def held_key(ticket_id: str, customer: str, name: str) -> str:
    """The key of a held ticket in the state: its id and its customer (two customers may share an id)."""
    return f"{customer or name or '-'}/{ticket_id}"


def held_from(skipped_rows: Iterable[SkippedRow]) -> dict[str, dict]:
    """The skipped closed rows to hold for later runs: those with a ticket id, skipped for a reason
    the help desk can fix in the row (the address, the date). What was usable is kept to recall
    only this customer's ticket: the customer when the address was usable, the name, the date
    when the date was."""
    return {held_key(row.ticket_id, row.customer_key, row.name_key):
            held_entry(row.ticket_id, row.reason, row.customer_key, row.name_key, row.closed_date)
            for row in skipped_rows if row.ticket_id and row.reason in HOLDABLE_REASONS}


def held_ticket(key: str, entry: Mapping[str, str]) -> str:
    """A held entry's ticket id (an older version keyed held tickets by their id alone, with no name)."""
    return entry.get("ticket", key)


def held_ticket_ids(held: Mapping[str, dict]) -> set[str]:
    """The ids of the held tickets: a customer none of whose tickets is among them settles nothing."""
    return {held_ticket(key, entry) for key, entry in held.items()}


def held_entry(ticket_id: str, reason: str, customer: str, name: str, closed: str) -> dict[str, str]:
    """One held ticket as the state keeps it (the day it was first held is added when it joins)."""
    return {"ticket": ticket_id, "reason": reason, "customer": customer, "name": name, "closed": closed}


def held_recall(entry: Mapping[str, str]) -> Recall:
    return Recall(entry["customer"], entry["closed"], entry.get("name", ""))


def recalls_of_held(held: Mapping[str, dict]) -> dict[str, tuple[Recall, ...]]:
    recalls: dict[str, tuple[Recall, ...]] = {}
    for key, entry in held.items():
        ticket_id = held_ticket(key, entry)
        recalls[ticket_id] = (*recalls.get(ticket_id, ()), held_recall(entry))
    return recalls


def rejected_recall(key: str, entry: Mapping, closed: str) -> Recall:
    """A rejected ticket, recalled for its customer: the same address or the same name. An entry of
    an older version knows no name: its tickets are recalled under any address, as then."""
    return Recall(key, closed, entry["name"]) if "name" in entry else Recall("", closed)


def recalls_of_rejected(rejected: Mapping[str, Mapping]) -> dict[str, tuple[Recall, ...]]:
    """--retry-rejected: each rejected ticket from a row of its customer (its address, or its name
    under a corrected address) closed no earlier than the one refused."""
    recalls: dict[str, tuple[Recall, ...]] = {}
    for key, entry in rejected.items():
        for ticket_id, closed in entry["tickets"].items():
            recalls[ticket_id] = (*recalls.get(ticket_id, ()), rejected_recall(key, entry, closed))
    return recalls


def merged_recalls(*maps: Mapping[str, tuple[Recall, ...]]) -> dict[str, tuple[Recall, ...]]:
    merged: dict[str, tuple[Recall, ...]] = {}
    for recalls in maps:
        for ticket_id, more in recalls.items():
            merged[ticket_id] = (*merged.get(ticket_id, ()), *more)
    return merged


def _settles(recall: Recall, customer: Customer, ticket: ClosedTicket) -> bool:
    """Whether emailing (or refusing) `customer` this ticket settles what `recall` holds of it."""
    return bool(recall_matches([recall], ticket.closed_at, address_key(customer.email), ticket.full_name))


def held_settled_by(held: Mapping[str, dict], customer: Customer) -> dict[str, dict] | None:
    """The held entries once `customer` was emailed or refused (its tickets are recorded elsewhere
    now); None if none of its tickets was held. Another customer's ticket of the same id stays held."""
    tickets = {ticket.ticket_id: ticket for ticket in customer.tickets}
    settled = {key for key, entry in held.items() if held_ticket(key, entry) in tickets
               and _settles(held_recall(entry), customer, tickets[held_ticket(key, entry)])}
    return {key: entry for key, entry in held.items() if key not in settled} if settled else None


def held_back_count(customers: Iterable[Customer], held: Mapping[str, dict]) -> int:
    """How many of these customers' tickets were held by earlier runs (their rows are usable now)."""
    if not held:
        return 0
    recalls = recalls_of_held(held)
    return sum(1 for customer in customers for ticket in customer.tickets if ticket.ticket_id in recalls
               and any(_settles(recall, customer, ticket) for recall in recalls[ticket.ticket_id]))


def still_held(held: Mapping[str, dict], customers: Iterable[Customer]) -> dict[str, dict]:
    """The held entries left once these customers are emailed: what a live run would leave held."""
    if not held:
        return {}
    remaining = dict(held)
    held_ids = held_ticket_ids(held)
    for customer in customers:
        if held_ids.isdisjoint(map(_ticket_id, customer.tickets)):  # nearly every customer: looked at in C
            continue
        settled = held_settled_by(remaining, customer)
        if settled is not None:
            remaining = settled
    return remaining


def delivery_entries(state: RunState, customer: Customer, today: date) -> tuple[str, dict[str, str], str]:
    """What a delivery to `customer` changes in the state: its key, its notified tickets (those
    already recorded and the ones just sent) and the day of its last email."""
    key = customer.key
    notified = {**state.notified.get(key, {}), **{ticket.ticket_id: ticket.closed_date for ticket in customer.tickets}}
    return key, notified, today.isoformat()


def customer_name_key(customer: Customer) -> str:
    """The name the state keeps of a customer (hashed), to know them under a corrected address: the
    customer's name, else (an address shared by several names) the latest ticket's."""
    return name_key(customer.full_name or (customer.tickets[-1].full_name if customer.tickets else ""))


def rejection_entry(state: RunState, customer: Customer, today: date, reason: str) -> tuple[str, dict]:
    """What a refusal of `customer` changes in the state: its key and its rejected entry (with the
    name, so that --retry-rejected finds the customer under a corrected address)."""
    earlier = state.rejected.get(customer.key, {}).get("tickets", {})
    tickets = {**earlier, **{ticket.ticket_id: ticket.closed_date for ticket in customer.tickets}}
    return customer.key, {"day": today.isoformat(), "reason": reason, "tickets": tickets, "name": customer_name_key(customer)}


def without_delivered(rejected: Mapping[str, dict], customer: Customer) -> dict[str, dict] | None:
    """The rejected entries once `customer`'s tickets were delivered: those of this customer (its
    address, or its name under a corrected address), closed no later than delivered; another
    customer's ticket of the same id stays rejected. None if unchanged."""
    delivered = {ticket.ticket_id: ticket for ticket in customer.tickets}

    def settled(key: str, entry: Mapping, ticket_id: str, closed: str) -> bool:
        return ticket_id in delivered and _settles(rejected_recall(key, entry, closed), customer, delivered[ticket_id])

    if not any(settled(key, entry, *item) for key, entry in rejected.items() for item in entry["tickets"].items()):
        return None
    remaining = {}
    for key, entry in rejected.items():
        tickets = {ticket_id: closed for ticket_id, closed in entry["tickets"].items()
                   if not settled(key, entry, ticket_id, closed)}
        if tickets:
            remaining[key] = {**entry, "tickets": tickets}
    return remaining


def next_last_run_date(start: date, found: Iterable[Customer], pending: Iterable[Customer], today: date) -> date:
    """The latest closed day that is fully settled, never past a pending ticket nor the run's own day
    (a row dated tomorrow must not hide a ticket closed later today).

    `found` is every customer with closed tickets in the window, notified before or now.
    Tickets dated on the returned day are still looked at next time (the window is
    inclusive); the notified list keeps them from being sent twice.
    """
    pending_days = [customer.earliest.date() for customer in pending]
    if pending_days:
        return min(max(start, min(pending_days)), today)
    latest = max(map(_last, map(_tickets, found)), key=_closed_at, default=None)  # each customer's last ticket
    return min(max(start, latest.closed_at.date()) if latest else start, today)


def next_held(held: Mapping[str, dict], newly_held: Mapping[str, dict], customers: Iterable[Customer],
              today: date) -> dict[str, dict]:
    """Held tickets after a run: the ones skipped now join (unless the same customer's ticket is usable
    on another row: same address or same name; another customer's ticket of that id holds nothing),
    each keeps the day it was first held, and is forgotten HELD_KEEP_DAYS after it."""
    if not held and not newly_held:
        return {}
    wanted = {entry["ticket"] for entry in newly_held.values()}
    usable = set()
    for customer in customers if newly_held else ():
        for ticket in customer.tickets:
            if ticket.ticket_id in wanted:  # only the ids just skipped (a large report has hundreds of thousands)
                usable.add((customer.key, ticket.ticket_id))
                if name_key(ticket.full_name):
                    usable.add((name_key(ticket.full_name), ticket.ticket_id))
    merged = dict(held)
    for key, entry in newly_held.items():
        if (entry["customer"], entry["ticket"]) not in usable and (entry["name"], entry["ticket"]) not in usable:
            merged[key] = {"day": held.get(key, {}).get("day", today.isoformat()), **entry}
    horizon = today - timedelta(days=HELD_KEEP_DAYS)
    return {key: entry for key, entry in merged.items() if date.fromisoformat(entry["day"]) >= horizon}


def finish_state(state: RunState, new_last_run_date: date, today: date, keep_email_days: int) -> RunState:
    """The state to keep after a run: forget what the next window can no longer see."""
    notified = {}
    for key, tickets in state.notified.items():
        kept = {ticket_id: closed for ticket_id, closed in tickets.items()
                if datetime.fromisoformat(closed).date() >= new_last_run_date}
        if kept:
            notified[key] = kept
    horizon = today - timedelta(days=max(keep_email_days, 31))
    last_emailed = {key: day for key, day in state.last_emailed.items() if date.fromisoformat(day) >= horizon}
    rejected_horizon = today - timedelta(days=REJECTED_KEEP_DAYS)
    rejected = {key: entry for key, entry in state.rejected.items() if date.fromisoformat(entry["day"]) >= rejected_horizon}
    sent_horizon = today - timedelta(days=SENT_KEEP_DAYS)
    sent = {key: entry for key, entry in state.sent.items() if date.fromisoformat(entry["day"]) >= sent_horizon}
    return RunState(new_last_run_date, notified, last_emailed, rejected, state.held, sent, state.bounce_cursor)


def sent_entry(customer: Customer, today: date) -> dict:
    """What the state keeps of an email while bounces are read: whose it was, with which tickets."""
    return {"customer": customer.key, "name": customer_name_key(customer), "day": today.isoformat(),
            "tickets": {ticket.ticket_id: ticket.closed_date for ticket in customer.tickets}}
