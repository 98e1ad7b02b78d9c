"""The state file: the seed's form, strict reading, atomic writes, one writer under concurrent deliveries."""

import errno
import json
import os
import threading
from datetime import date, datetime

import pytest

from state_file import StateError, StateWriter, load_state, save_state, state_from_json
from ticket_core import ClosedTicket, RunState, group_by_customer, index_by_email, record_delivery


def test_the_seeds_form_and_iso_are_read_and_dd_mm_yyyy_is_written(tmp_path):
    assert state_from_json('{"last_run_date": "05/03/2026"}').last_run_date == date(2026, 3, 5)
    assert state_from_json('{"last_run_date": "2026-03-05", "other": 1}').last_run_date == date(2026, 3, 5)
    path = tmp_path / "deep" / "state.json"
    save_state(path, RunState(date(2026, 3, 5), {"k": {"1": "2026-03-05T10:00:00"}}, {"k": "2026-03-06"}))
    data = json.loads(path.read_text())
    assert data == {"last_run_date": "05/03/2026", "notified": {"k": {"1": "2026-03-05T10:00:00"}},
                    "last_emailed": {"k": "2026-03-06"}}
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

    def deliver(batch):
        for customer in batch:
            writer.update(lambda state, customer=customer: record_delivery(state, customer, today))
            saved = json.loads(path.read_text())   # after update returns, this delivery is on disk
            assert customer.key in saved["notified"]

    threads = [threading.Thread(target=deliver, args=(customers[i::8],)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    saved = json.loads(path.read_text())
    assert len(saved["notified"]) == len(saved["last_emailed"]) == 200
