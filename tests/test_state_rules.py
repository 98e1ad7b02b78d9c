"""The state file's rules in-process: every wrong value is named by its key, every value this program
writes reads back the same, rejected.csv loses exactly this run's lines, and the StateWriter settles
held and rejected entries. Written for the survivors of a mutation run (README, "Mutation testing")."""

import csv
import json
from datetime import date
from pathlib import Path

import pytest
from conftest import customer, refuse_temporary_files_in

from state_file import (
    REPAIR,
    StateError,
    StateWriter,
    append_rejected_csv,
    load_state,
    prepare_state_folder,
    rejected_csv_cells,
    rejected_csv_line,
    remove_rejected_csv_customers,
    remove_rejected_csv_lines,
    save_state,
    state_from_json,
    state_to_json,
    write_state_text,
)
from ticket_core import RunState, customer_key, name_key

TODAY = date(2026, 11, 27)
KEY = "k" * 64


def read(data, source="state file"):
    return state_from_json(json.dumps(data), source, TODAY)


FULL = {"last_run_date": "20/11/2026",
        "notified": {KEY: {"T1": "2026-11-21", "T2": "2026-11-21T10:30:00"}},
        "last_emailed": {KEY: "2026-11-21"},
        "rejected": {KEY: {"day": "2026-11-22", "reason": "HTTP 422", "tickets": {"T3": "2026-11-20T09:00:00"}}},
        "held": {"T4": {"day": "2026-11-23", "reason": "unparseable date", "customer": KEY, "closed": ""},
                 "T5": {"day": "2026-11-23", "reason": "no or invalid email", "customer": "", "closed": "2026-11-22"}}}


def test_every_key_this_program_writes_reads_back_as_written(tmp_path):
    state = read(FULL)
    assert state == RunState(date(2026, 11, 20), FULL["notified"], FULL["last_emailed"], FULL["rejected"], FULL["held"])
    save_state(tmp_path / "s.json", state)
    assert load_state(tmp_path / "s.json", TODAY) == state
    assert state_from_json(state_to_json(state), "x", TODAY) == state


def test_the_seed_s_state_file_reads_with_empty_entries_and_a_bom_is_fine(tmp_path):
    assert read({"last_run_date": "20/11/2026"}) == RunState(date(2026, 11, 20))
    (tmp_path / "s.json").write_text('{"last_run_date": "20/11/2026"}', encoding="utf-8-sig")
    assert load_state(tmp_path / "s.json", TODAY) == RunState(date(2026, 11, 20))


def wrong(data, **changes):
    broken = json.loads(json.dumps(data))
    for path, value in changes.items():
        *parents, last = path.split("__")
        target = broken
        for part in parents:
            target = target[part]
        target[last] = value
    return broken


@pytest.mark.parametrize("data, message", [
    ([1], "the file is not a JSON object"),
    ({"last_run_date": 20}, 'the file has no "last_run_date" text'),
    ({"last_run_date": "29/11/2026"}, "the file: \"last_run_date\" '29/11/2026' is not usable (\"last_run_date\" "),
    (wrong(FULL, notified=[]), 'the file: "notified" is not a JSON object'),
    (wrong(FULL, notified={KEY: {"T1": "2026-11-21T10:00:00+01:00"}}),
     f"the file: \"notified.{KEY}.T1\" is '2026-11-21T10:00:00+01:00', not a day this program writes (has a time "
     "zone)"),
    (wrong(FULL, last_emailed={KEY: "2026-11-21T10:00:00"}),
     f"the file: \"last_emailed.{KEY}\" is '2026-11-21T10:00:00', not a day this program writes"),
    (wrong(FULL, last_emailed={KEY: 5}), f"the file: \"last_emailed.{KEY}\" is '5', not a day this program writes "
                                         "(not text)"),
    (wrong(FULL, rejected={KEY: []}), f'the file: "rejected.{KEY}" is not a JSON object'),
    (wrong(FULL, rejected__kkkk={"reason": "r", "tickets": {}}), "the file: \"rejected.kkkk.day\" is 'None'"),
    (wrong(FULL, rejected__kkkk={"day": "2026-11-22T08:00:00", "reason": "r", "tickets": {}}),
     "the file: \"rejected.kkkk.day\" is '2026-11-22T08:00:00', not a day"),
    (wrong(FULL, rejected__kkkk={"day": "2026-11-22", "reason": 1, "tickets": {}}),
     'the file: "rejected.kkkk.reason" is not text'),
    (wrong(FULL, rejected__kkkk={"day": "2026-11-22", "reason": "r"}), 'the file: "rejected.kkkk.tickets" is not a JSON'),
    (wrong(FULL, rejected__kkkk={"day": "2026-11-22", "reason": "r", "tickets": {"T": "2026-11-29"}}),
     "the file: \"rejected.kkkk.tickets.T\" is '2026-11-29', not a day this program writes"),
    (wrong(FULL, held__T4=[]), 'the file: "held.T4" is not a JSON object'),
    (wrong(FULL, held__T4__day="2026-11-23T01:00:00"), "the file: \"held.T4.day\" is '2026-11-23T01:00:00', not a day"),
    (wrong(FULL, held__T4__reason=None), 'the file: "held.T4.reason" is not text'),
    (wrong(FULL, held__T4__customer=None), 'the file: "held.T4.customer" is not text'),
    (wrong(FULL, held__T4__closed=None), 'the file: "held.T4.closed" is not text'),
    (wrong(FULL, held__T5__closed="yesterday"), "the file: \"held.T5.closed\" is 'yesterday', not a day"),
    (wrong(FULL, held__T4__ticket=4), 'the file: "held.T4.ticket" is not text'),
    (wrong(FULL, held__T4__name=["Ann"]), 'the file: "held.T4.name" is not text'),
    (wrong(FULL, rejected__kkkk={"day": "2026-11-22", "reason": "r", "tickets": {}, "name": 7}),
     'the file: "rejected.kkkk.name" is not text'),
])
def test_a_wrong_value_is_named_by_its_key_with_the_repair(data, message):
    with pytest.raises(StateError) as refused:
        read(data, "the file")
    assert str(refused.value).startswith(message) and str(refused.value).endswith(f": {REPAIR}")


def test_a_delivered_customer_leaves_rejected_csv_wherever_their_line_is_and_whatever_it_starts_with(tmp_path):
    """The others' lines stay, in order, whichever line goes (the first, a middle one, the last); an
    address a spreadsheet would run as a formula was written with a ' before it and is still found."""
    path = tmp_path / "rejected.csv"
    for email in ("ann@example.com", "-bob@example.com", "cy@example.com", "di@example.com"):
        append_rejected_csv(path, rejected_csv_cells(TODAY, email, "N", ["1"], "HTTP 422"))

    def emails():
        with path.open(encoding="utf-8-sig", newline="") as handle:
            return [row[1] for row in csv.reader(handle)]
    remove_rejected_csv_customers(path, {customer_key("-bob@example.com")})
    assert emails() == ["email", "ann@example.com", "cy@example.com", "di@example.com"]
    remove_rejected_csv_customers(path, {customer_key("di@example.com")})
    assert emails() == ["email", "ann@example.com", "cy@example.com"]
    remove_rejected_csv_customers(path, {customer_key("ann@example.com")})
    assert emails() == ["email", "cy@example.com"]
    remove_rejected_csv_customers(path, {customer_key("nobody@example.com")})
    assert emails() == ["email", "cy@example.com"]


def test_a_rejected_csv_that_cannot_be_read_says_to_take_the_lines_out_by_hand(tmp_path):
    path = tmp_path / "rejected.csv"
    path.write_bytes(b"\xef\xbb\xbfday,email\n2026-11-22,\xff\xfe\n")   # not UTF-8
    with pytest.raises(StateError, match=r"cannot take the delivered customers out of .*rejected.csv \(.*\); "
                                         r"delete their lines by hand"):
        remove_rejected_csv_customers(path, {customer_key("ann@example.com")})


def test_a_held_entry_may_keep_a_moment_and_a_rejected_ticket_a_time():
    data = wrong(FULL, held__T5__closed="2026-11-22T10:30:00")
    assert read(data).held["T5"]["closed"] == "2026-11-22T10:30:00"


def test_json_that_is_not_a_state_is_refused_with_the_repair():
    with pytest.raises(StateError, match=r"^state file is not valid JSON \(Expecting property name"):
        state_from_json("{'last_run_date': 1}", today=TODAY)
    with pytest.raises(StateError, match="^state file is nested too deeply to be a state file: restore it"):
        state_from_json("[" * 100000 + "]" * 100000, today=TODAY)


# ---------------------------------------------------------------- rejected.csv

def test_a_withdrawal_takes_out_one_occurrence_of_each_line_and_keeps_the_rest(tmp_path):
    path = tmp_path / "rejected.csv"
    ann, bob = (rejected_csv_line(customer(email, "T1"), TODAY, "HTTP 422") for email in ("ann@x.org", "bob@x.org"))
    with path.open("w", encoding="utf-8-sig", newline="") as handle:
        csv.writer(handle).writerows([["day", "email", "name", "tickets", "reason"], ann, bob, ann])
    remove_rejected_csv_lines(path, [ann, ["2026-01-01", "nobody", "", "", ""]])
    assert path.read_bytes().startswith("\ufeffday,email,name,tickets,reason\r\n".encode())
    with path.open(encoding="utf-8-sig", newline="") as handle:
        assert list(csv.reader(handle))[1:] == [bob, ann]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rejected.csv"]      # no temporary file left


def test_a_rejected_csv_left_with_its_header_alone_is_removed(tmp_path):
    path = tmp_path / "rejected.csv"
    line = rejected_csv_line(customer("ann@x.org", "T1"), TODAY, "HTTP 422")
    with path.open("w", encoding="utf-8-sig", newline="") as handle:
        csv.writer(handle).writerows([["day", "email", "name", "tickets", "reason"], line])
    remove_rejected_csv_lines(path, [])
    assert path.exists()
    remove_rejected_csv_lines(path, [line])
    assert not path.exists()


def test_a_rejected_csv_that_cannot_be_read_names_the_manual_fix(tmp_path):
    with pytest.raises(StateError) as refused:
        remove_rejected_csv_lines(tmp_path / "missing.csv", [["x"]])
    assert "the customers stay pending; delete their lines from it by hand" in str(refused.value)


# ---------------------------------------------------------------- the writer

def test_the_writer_settles_a_held_ticket_and_a_rejected_one_when_delivered(tmp_path):
    ann = customer("ann@example.com", "T1", "T2")
    state = RunState(date(2026, 11, 20), rejected={"other": {"day": "2026-11-21", "reason": "422",
                                                             "tickets": {"T1": "2026-11-24", "T9": "2026-11-24"}}},
                     held={"T2": {"day": "2026-11-21", "reason": "unparseable date", "customer": ann.key, "closed": ""},
                           "T8": {"day": "2026-11-21", "reason": "unparseable date", "customer": "", "closed": ""}})
    writer = StateWriter(tmp_path / "s.json", state)
    writer.record(ann, TODAY)
    saved = load_state(tmp_path / "s.json", TODAY)
    assert saved.rejected == {"other": {"day": "2026-11-21", "reason": "422", "tickets": {"T9": "2026-11-24"}}}
    assert list(saved.held) == ["T8"] and saved.notified == {ann.key: {"T1": "2026-11-25", "T2": "2026-11-25"}}
    assert saved.last_emailed == {ann.key: TODAY.isoformat()}


def test_the_writer_records_a_refusal_in_both_files_and_a_withdrawal_restores_the_earlier_entry(tmp_path):
    ann = customer("ann@example.com", "T2")
    earlier = {"day": "2026-11-01", "reason": "old", "tickets": {"T1": "2026-10-30"}}
    path = tmp_path / "s.json"
    writer = StateWriter(path, RunState(date(2026, 11, 20), rejected={ann.key: earlier},
                                        held={"T2": {"day": "2026-11-21", "reason": "unparseable date",
                                                     "customer": ann.key, "closed": ""}}))
    writer.record_rejection(ann, TODAY, "HTTP 422 bad")
    saved = load_state(path, TODAY)
    assert saved.rejected[ann.key] == {"day": TODAY.isoformat(), "reason": "HTTP 422 bad",
                                       "tickets": {"T1": "2026-10-30", "T2": "2026-11-25"}, "name": name_key("Ann Lee")}
    assert saved.held == {}
    with (tmp_path / "rejected.csv").open(encoding="utf-8-sig", newline="") as handle:
        assert list(csv.reader(handle))[1:] == [[TODAY.isoformat(), "ann@example.com", "Ann Lee", "T2", "HTTP 422 bad"]]
    bob = customer("bob@example.com", "T3")
    writer.record_rejection(bob, TODAY, "HTTP 422 bad")
    writer.withdraw_rejections([ann, bob])
    assert load_state(path, TODAY).rejected == {ann.key: earlier}
    assert not (tmp_path / "rejected.csv").exists()
    assert customer_key("Ann@Example.com") == ann.key


def test_a_state_folder_that_is_writable_is_cleared_of_a_killed_run_s_temporary_files(tmp_path):
    path = tmp_path / "s.json"
    (tmp_path / ".s.json.abc.tmp").write_text("half")
    (tmp_path / ".other.json.abc.tmp").write_text("not ours")
    (tmp_path / ".rejected.csv.xyz.tmp").write_text("half")
    prepare_state_folder(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.json.abc.tmp"]
    write_state_text(path, "{}")
    assert path.read_text() == "{}" and sorted(p.name for p in tmp_path.iterdir()) == [".other.json.abc.tmp", "s.json"]


def test_a_state_file_in_a_missing_folder_cannot_be_written_and_says_so(tmp_path):
    with pytest.raises(StateError, match="^cannot write the state file .*s.json: "):
        write_state_text(tmp_path / "missing" / "s.json", "{}")


# ---------------------------------------------------------------- days, files and messages on their edges

def test_a_day_past_tomorrow_is_named_with_the_check_and_a_long_value_is_cut_to_40_characters():
    with pytest.raises(StateError) as future:
        read(wrong(FULL, last_emailed={KEY: "2026-11-29"}))
    assert str(future.value).startswith(f"state file: \"last_emailed.{KEY}\" is '2026-11-29', not a day this program "
                                        "writes (the day 29/11/2026 is before 1970 or after tomorrow: check the year)")
    with pytest.raises(StateError) as long_value:
        read(wrong(FULL, last_emailed={KEY: "x" * 60}))
    assert f"is '{'x' * 40}', not a day" in str(long_value.value)


def test_text_a_person_reads_stays_readable_in_the_state_file(tmp_path):
    state = RunState(date(2026, 11, 20), notified={KEY: {"Fall-ä1": "2026-11-21"}},
                     rejected={KEY: {"day": "2026-11-22", "reason": "Adresse ungültig", "tickets": {}}},
                     held={"Fall-ö2": {"day": "2026-11-22", "reason": "unparseable date", "customer": "", "closed": ""}})
    save_state(tmp_path / "nested" / "deeper" / "s.json", state)
    text = (tmp_path / "nested" / "deeper" / "s.json").read_text(encoding="utf-8")
    assert "Fall-ä1" in text and "Adresse ungültig" in text and "Fall-ö2" in text
    assert load_state(tmp_path / "nested" / "deeper" / "s.json", TODAY) == state


def test_a_state_file_that_cannot_be_read_or_is_dated_after_the_run_s_today_is_named(tmp_path):
    (tmp_path / "dir.json").mkdir()
    with pytest.raises(StateError, match=r"^the state file .*dir\.json is a folder: pass --state-file with the path of a file$"):
        load_state(tmp_path / "dir.json", TODAY)
    (tmp_path / "s.json").write_text('{"last_run_date": "01/12/2026"}')
    with pytest.raises(StateError, match=r"^the state file .*s\.json: \"last_run_date\" '01/12/2026' is not usable"):
        load_state(tmp_path / "s.json", TODAY)
    with pytest.raises(StateError, match=r"^cannot write the state file .*s\.json: (Not a directory|File exists)$"):
        save_state(tmp_path / "s.json" / "s.json", RunState(TODAY))


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="names an open file through /proc (Linux)")
def test_the_state_is_written_through_a_temporary_file_the_next_run_would_clean_up(tmp_path, monkeypatch):
    import os

    import state_file

    seen = []
    real_fsync = os.fsync
    monkeypatch.setattr(state_file.os, "fsync", lambda fd: seen.append(os.readlink(f"/proc/self/fd/{fd}")) or real_fsync(fd))
    write_state_text(tmp_path / "s.json", "{}")
    [temp] = [Path(name) for name in seen]
    assert temp.parent == tmp_path and temp.name.startswith(".s.json.") and temp.name.endswith(".tmp")


def test_a_rename_that_keeps_failing_is_an_error_never_a_silent_loss(tmp_path, monkeypatch):
    import state_file

    def refuse(source, target):
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr(state_file.os, "replace", refuse)
    monkeypatch.setattr(state_file.time, "sleep", lambda seconds: None)
    with pytest.raises(StateError, match="^cannot write the state file .*: Permission denied$"):
        write_state_text(tmp_path / "s.json", "{}")
    assert list(tmp_path.iterdir()) == []


def test_a_read_only_state_file_or_folder_is_refused_before_anything_is_sent(tmp_path):
    import os
    import stat

    path = tmp_path / "s.json"
    path.write_text("{}")
    os.chmod(path, stat.S_IRUSR)
    with pytest.raises(StateError, match=r"^.*s\.json is read-only: make it writable \(the run records every delivery"):
        prepare_state_folder(path)
    os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)
    if os.name == "posix":
        os.chmod(tmp_path, stat.S_IRUSR | stat.S_IXUSR)
        try:
            with pytest.raises(StateError, match="^the state folder .* is read-only: make it writable or pass --state-file"):
                prepare_state_folder(path)
        finally:
            os.chmod(tmp_path, stat.S_IRWXU)


def test_rejected_csv_gets_one_bom_and_header_even_when_it_exists_empty_and_lists_every_ticket(tmp_path):
    from state_file import append_rejected_csv

    path = tmp_path / "rejected.csv"
    path.write_bytes(b"")
    line = rejected_csv_line(customer("ann@example.com", "T1", "T2"), TODAY, "HTTP 422")
    append_rejected_csv(path, line)
    append_rejected_csv(path, line)
    data = path.read_bytes()
    assert data.count("\ufeff".encode()) == 1 and data.startswith("\ufeffday,email,name,tickets,reason\r\n".encode())
    assert data.count(b"2026-11-27,ann@example.com,Ann Lee,T1 T2,HTTP 422\r\n") == 2
    with pytest.raises(StateError, match=r"^cannot write .*folder: Is a directory$"):
        (tmp_path / "folder").mkdir()
        append_rejected_csv(tmp_path / "folder", line)


def test_a_rejected_csv_that_is_not_csv_names_the_reason(tmp_path):
    path = tmp_path / "rejected.csv"
    path.write_bytes(b"day,email\r\n" + b"x" * 200_000 + b"\r\n")
    with pytest.raises(StateError, match=r"^cannot take this run's lines out of .*rejected\.csv \(field larger than field "):
        remove_rejected_csv_lines(path, [["x"]])
    with pytest.raises(StateError, match=r"^cannot take this run's lines out of .*missing\.csv \(No such file or directory\)"):
        remove_rejected_csv_lines(tmp_path / "missing.csv", [["x"]])


def test_withdrawing_a_customer_whose_refusal_was_never_recorded_changes_nothing(tmp_path):
    writer = StateWriter(tmp_path / "s.json", RunState(date(2026, 11, 20)))
    writer.withdraw_rejections([customer("ann@example.com", "T1")])
    assert load_state(tmp_path / "s.json", TODAY) == RunState(date(2026, 11, 20))


def test_a_second_run_is_refused_while_the_first_holds_the_lock_beside_the_state_file(tmp_path):
    from state_file import acquire_lock

    path = tmp_path / "new" / "folder" / "s.json"
    first = acquire_lock(path)
    try:
        assert (tmp_path / "new" / "folder" / "s.json.lock").exists()
        with pytest.raises(StateError, match=r"^another run is in progress \(it holds .*s\.json\.lock\); try again when "
                                             "it has finished$"):
            acquire_lock(path)
    finally:
        first.release()
    (tmp_path / "file").write_text("")
    with pytest.raises(StateError, match=r"^cannot create the lock file .*s\.json\.lock: (Not a directory|File exists)$"):
        acquire_lock(tmp_path / "file" / "s.json")


def test_rejected_csv_is_rewritten_through_a_temporary_file_the_next_run_would_clean_up(tmp_path, monkeypatch):
    import tempfile

    import state_file

    made = []
    real_mkstemp = tempfile.mkstemp

    def recording_mkstemp(*args, **kwargs):
        handle, name = real_mkstemp(*args, **kwargs)
        made.append(Path(name))
        return handle, name
    monkeypatch.setattr(state_file.tempfile, "mkstemp", recording_mkstemp)
    path = tmp_path / "rejected.csv"
    keep, drop = (rejected_csv_line(customer(email, "T1"), TODAY, "HTTP 422") for email in ("a@x.org", "b@x.org"))
    with path.open("w", encoding="utf-8-sig", newline="") as handle:
        csv.writer(handle).writerows([["day", "email", "name", "tickets", "reason"], keep, drop])
    remove_rejected_csv_lines(path, [drop])
    [temp] = made
    assert temp.parent == tmp_path and temp.name.startswith(".rejected.csv.") and temp.name.endswith(".tmp")


SENT = {"0123abcd": {"customer": KEY, "name": "n" * 16, "day": "2026-11-22", "tickets": {"T1": "2026-11-21"}},
        "4567ef01": {"customer": KEY, "name": "n" * 16, "day": "2026-11-23", "tickets": {"T2": "2026-11-22T09:15:00"}}}


def test_the_sent_emails_and_the_bounce_cursors_read_back_as_written(tmp_path):
    data = {**FULL, "sent": SENT, "bounces": {"gmail": {"history": "123", "seen": 4}}}
    state = read(data)
    assert state.sent == SENT and state.bounce_cursor == {"gmail": {"history": "123", "seen": 4}}
    save_state(tmp_path / "s.json", state)
    assert load_state(tmp_path / "s.json", TODAY) == state


@pytest.mark.parametrize("data, message", [
    ({**FULL, "sent": {"m": {**SENT["0123abcd"], "customer": 5}}}, 'the file: "sent.m.customer" is not text'),
    ({**FULL, "sent": []}, 'the file: "sent" is not a JSON object'),
    ({**FULL, "bounces": {"gmail": {"history": True}}}, 'the file: "bounces.gmail.history" is not text or a number'),
    ({**FULL, "bounces": []}, 'the file: "bounces" is not a JSON object'),
    ({**FULL, "bounces": {"gmail": 5}}, 'the file: "bounces.gmail" is not a JSON object'),
    ({**FULL, "sent": {"m": []}}, 'the file: "sent.m" is not a JSON object'),
    ({**FULL, "sent": {"m": {**SENT["0123abcd"], "day": "2026-11-22T10:00:00"}}},
     "the file: \"sent.m.day\" is '2026-11-22T10:00:00', not a day"),
    ({**FULL, "sent": {"m": {**SENT["0123abcd"], "tickets": {"T1": "soon"}}}}, "the file: \"sent.m.tickets.T1\" is 'soon'"),
    ({**FULL, "sent": {"m": {**SENT["0123abcd"], "tickets": []}}}, 'the file: "sent.m.tickets" is not a JSON object'),
])
def test_a_wrong_sent_email_or_bounce_cursor_is_named_by_its_key(data, message):
    with pytest.raises(StateError) as refused:
        read(data, "the file")
    assert str(refused.value).startswith(message)


def test_a_sent_email_is_kept_90_days_for_its_bounces_then_forgotten():
    from ticket_core import finish_state

    sent = {"old": {**SENT["0123abcd"], "day": "2026-08-28"}, "kept": {**SENT["0123abcd"], "day": "2026-08-29"}}
    state = RunState(date(2026, 11, 20), sent=sent, bounce_cursor={"gmail": {"history": "9"}})
    finished = finish_state(state, date(2026, 11, 20), TODAY, 7)   # 27/11 - 90 days = 29/08
    assert finished.sent == {"kept": sent["kept"]} and finished.bounce_cursor == {"gmail": {"history": "9"}}


def test_a_delivery_while_bounces_are_read_keeps_its_email_and_settles_the_customer_s_refusal(tmp_path, caplog):
    from ticket_core import sent_entry

    path = tmp_path / "s.json"
    ann = customer("ann@example.com", "T1", closed=date(2026, 11, 21))
    writer = StateWriter(path, RunState(date(2026, 11, 20), bounce_cursor={"gmail": {"history": "7"}}))
    writer.record_rejection(ann, TODAY, "HTTP 422 mailbox full")
    writer.record(ann, TODAY, message_key="abc123")
    saved = load_state(path, TODAY)
    assert saved.sent == {"abc123": sent_entry(ann, TODAY)} and saved.bounce_cursor == {"gmail": {"history": "7"}}
    assert saved.rejected == {} and saved.notified == {ann.key: {"T1": "2026-11-21"}}
    assert not (tmp_path / "rejected.csv").exists()   # her line left with her refusal, and it was the only one


def test_a_rejected_csv_that_cannot_be_rewritten_after_a_delivery_is_a_warning_not_a_stop(tmp_path, caplog):
    path = tmp_path / "s.json"
    ann = customer("ann@example.com", "T1", closed=date(2026, 11, 21))
    writer = StateWriter(path, RunState(date(2026, 11, 20)))
    writer.record_rejection(ann, TODAY, "HTTP 422 mailbox full")
    (tmp_path / "rejected.csv").write_bytes(b"\xef\xbb\xbfday,email\n\xff\xfe\n")   # unreadable now
    with caplog.at_level("WARNING", logger="ticket_notifier"):
        writer.record(ann, TODAY)
    assert load_state(path, TODAY).rejected == {}
    assert [record.getMessage() for record in caplog.records if record.name == "ticket_notifier"] == [
        f"cannot take the delivered customers out of {tmp_path / 'rejected.csv'} ('utf-8' codec can't decode byte 0xff "
        "in position 10: invalid start byte); delete their lines by hand"]


@pytest.mark.skipif(not hasattr(__import__("os"), "mkfifo"), reason="named pipes are POSIX")
def test_a_state_path_that_is_a_folder_or_a_pipe_is_named_as_such(tmp_path):
    import os

    from state_file import check_regular_file

    (tmp_path / "folder").mkdir()
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(StateError, match=r"the state file .*folder is a folder: pass --state-file with the path of a file"):
        check_regular_file(tmp_path / "folder")
    with pytest.raises(StateError, match=r"the state file .*pipe is a pipe: pass --state-file"):
        check_regular_file(tmp_path / "pipe")
    check_regular_file(tmp_path / "missing.json")


def test_a_state_path_that_cannot_be_looked_at_says_why(tmp_path):
    from state_file import check_regular_file

    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(StateError, match=r"cannot read the state file .*s\.json: .*(not a directory|Not a directory)"):
        check_regular_file(tmp_path / "file.txt" / "s.json")


@pytest.mark.skipif(not Path("/dev/null").exists(), reason="a device file is POSIX")
def test_a_device_as_the_state_file_is_not_a_regular_file():
    from state_file import check_regular_file

    with pytest.raises(StateError, match=r"the state file /dev/null is not a regular file: pass --state-file"):
        check_regular_file(Path("/dev/null"))


def test_the_write_probe_is_made_in_the_state_folder_itself(tmp_path, monkeypatch):
    """A probe made anywhere else would succeed where the state cannot be saved."""
    refuse_temporary_files_in(tmp_path, monkeypatch)
    with pytest.raises(StateError, match="cannot write in the state folder"):
        prepare_state_folder(tmp_path / "s.json")


def test_a_writer_keeps_every_entry_it_started_with(tmp_path):
    path = tmp_path / "s.json"
    ann, bob = customer("ann@example.com", "T1", closed=date(2026, 11, 21)), customer("bob@example.com", "T2")
    start = RunState(date(2026, 11, 20), notified={ann.key: {"T1": "2026-11-21"}}, last_emailed={ann.key: "2026-11-21"},
                     sent=SENT, bounce_cursor={"gmail": {"history": "7"}})
    StateWriter(path, start).record(bob, TODAY, message_key="m2")
    saved = load_state(path, TODAY)
    assert saved.notified[ann.key] == {"T1": "2026-11-21"} and saved.last_emailed[ann.key] == "2026-11-21"
    assert set(saved.sent) == {*SENT, "m2"} and saved.sent["0123abcd"] == SENT["0123abcd"]
