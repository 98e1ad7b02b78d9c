"""The state file: the seed's form, strict reading, atomic writes, one writer under concurrent deliveries."""

import errno
import json
import os
import threading
from datetime import date, datetime

import pytest

from process_ticket import months_before
from state_file import StateError, StateWriter, load_state, save_state, state_from_json, state_to_json
from ticket_core import ClosedTicket, RunState, customer_key, group_by_customer, index_by_email


def test_the_seeds_form_and_iso_are_read_and_dd_mm_yyyy_is_written(tmp_path):
    assert state_from_json('{"last_run_date": "05/03/2026"}').last_run_date == date(2026, 3, 5)
    assert state_from_json('{"last_run_date": "2026-03-05", "other": 1}').last_run_date == date(2026, 3, 5)
    path = tmp_path / "deep" / "state.json"
    save_state(path, RunState(date(2026, 3, 5), {"k": {"1": "2026-03-05T10:00:00"}}, {"k": "2026-03-06"}))
    data = json.loads(path.read_text())
    assert data == {"last_run_date": "05/03/2026", "notified": {"k": {"1": "2026-03-05T10:00:00"}},
                    "last_emailed": {"k": "2026-03-06"}, "rejected": {}, "held": {}}
    assert path.read_text().splitlines()[1] == '  "last_run_date": "05/03/2026",'
    assert load_state(path) == RunState(date(2026, 3, 5), data["notified"], data["last_emailed"])
    assert sorted(p.name for p in path.parent.iterdir()) == ["state.json"]   # no temporary file left


def test_a_missing_file_is_none_and_an_unreadable_one_is_an_error(tmp_path):
    assert load_state(tmp_path / "absent.json") is None
    (tmp_path / "binary.json").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(StateError, match="cannot read the state file"):
        load_state(tmp_path / "binary.json")


def test_a_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "state.json"
    save_state(path, RunState(date(2026, 3, 5)))
    before = path.read_bytes()

    def disk_full(descriptor):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(StateError, match="cannot write the state file .*No space left on device"):
        save_state(path, RunState(date(2026, 3, 6)))
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_concurrent_deliveries_are_all_recorded_by_the_one_writer(tmp_path):
    path = tmp_path / "state.json"
    writer = StateWriter(path, RunState(date(2026, 11, 20)))
    customers = group_by_customer(index_by_email(
        ClosedTicket(f"c{i}@example.com", str(i), "Closed", datetime(2026, 11, 21), False) for i in range(200)))
    today = date(2026, 11, 27)

    missing = []   # asserted in the test's own thread: an assertion in a worker thread fails nothing

    def deliver(batch):
        for customer in batch:
            writer.record(customer, today)
            saved = json.loads(path.read_text())   # after update returns, this delivery is on disk
            if customer.key not in saved["notified"]:
                missing.append(customer.email)

    threads = [threading.Thread(target=deliver, args=(customers[i::8],)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    saved = json.loads(path.read_text())
    assert missing == []
    assert len(saved["notified"]) == len(saved["last_emailed"]) == 200


def test_the_writer_keeps_earlier_customers_and_writes_what_a_full_save_writes(tmp_path):
    """The writer changes only the delivered customer's entries; the file must be the one a
    save of the whole state gives, with the customers already in the file kept as they were."""
    earlier = {customer_key("old@example.com"): {"7": "2026-11-19"}, customer_key("jane@example.com"): {"1": "2026-11-19"}}
    start = RunState(date(2026, 11, 20), earlier, {key: "2026-11-10" for key in earlier})
    path = tmp_path / "state.json"
    writer = StateWriter(path, start)
    [jane, new] = group_by_customer(index_by_email([
        ClosedTicket("Jane@Example.com", "2", "Closed", datetime(2026, 11, 24, 9, 30), True),
        ClosedTicket("new@example.com", "N-1", "Closed", datetime(2026, 11, 25), False)]))
    writer.record(jane, date(2026, 11, 27))
    writer.record(new, date(2026, 11, 27))

    expected = RunState(date(2026, 11, 20), {
        customer_key("old@example.com"): {"7": "2026-11-19"},
        jane.key: {"1": "2026-11-19", "2": "2026-11-24T09:30:00"},
        new.key: {"N-1": "2026-11-25"}}, {customer_key("old@example.com"): "2026-11-10", jane.key: "2026-11-27",
                                          new.key: "2026-11-27"})
    assert load_state(path) == expected == writer.state
    assert path.read_text(encoding="utf-8") == state_to_json(expected)
    assert start.notified == earlier  # the caller's state is not changed under it


@pytest.mark.parametrize(("today", "first_run_start"), [
    (date(2026, 11, 27), date(2025, 5, 27)), (date(2026, 8, 31), date(2025, 2, 28)), (date(2025, 8, 29), date(2024, 2, 29)),
    (date(2026, 5, 31), date(2024, 11, 30)), (date(2026, 6, 15), date(2024, 12, 15)), (date(2026, 1, 1), date(2024, 7, 1))])
def test_a_first_run_starts_18_months_back_on_the_same_day_or_the_last_day_of_a_shorter_month(today, first_run_start):
    assert months_before(today, 18) == first_run_start
