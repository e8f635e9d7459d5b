"""The journal's records: framing, torn tails, replay, and refusal of a journal that does not
continue the state (``states.journal``, ``states.store.JournaledStore``)."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import pytest

from provisioner.errors import StateError
from provisioner.states.journal import encode, frame, header, marker, parse, replay
from provisioner.states.records import ChatRecord, Intent, MemberRecord, State
from provisioner.states.store import local_store


def rec(n: int) -> ChatRecord:
    return ChatRecord(f"19:{n}@thread.v2", "group", (MemberRecord("a@x.com", "owner", "oid"),))


def intent(key: str) -> Intent:
    return Intent(key, "group", (MemberRecord("a@x.com"),), "attempt", "2026-01-01T00:00:00Z", "T")


def journal_of(state: State, *changes: list[tuple[object, ...]]) -> bytes:
    return header(state.lineage, state.serial) + b"".join(encode(c) for c in changes)


def test_every_kind_of_change_replays_to_the_same_state() -> None:
    base = State(serial=3)
    base.put_chat("old", rec(0))
    base.set_protected("old", True)
    expected = base.copy()
    log: list[tuple[object, ...]] = []
    expected._log = log
    expected.put_chat("a", rec(1))
    expected.put_intent(intent("b"))
    expected.clear_intent("b")
    expected.put_intent(intent("c"))
    expected.rename_chat("old", "new")
    expected.set_protected("a", True)
    expected.put_users({"a@x.com": "oid"})
    expected.set_last_plan("plan-9")
    expected.remove_chat("a")
    raw = journal_of(base, log[:3], log[3:])
    replayed = base.copy()
    assert replay(replayed, parse(raw, "j"), "j", "s") == 2
    assert replayed.chats == expected.chats and replayed.intents == expected.intents
    assert replayed.protected == expected.protected == {"new"}
    assert replayed.users == expected.users and replayed.last_plan_id == "plan-9"


def test_a_torn_last_record_is_dropped_wherever_the_cut_falls() -> None:
    state = State()
    whole = journal_of(state, [("chat", "a", rec(1))], [("chat", "b", rec(2))])
    last = len(encode([("chat", "b", rec(2))]))
    for cut in range(1, last + 1):
        parsed = parse(whole[: len(whole) - cut], "j")
        assert len(parsed.records) == 1 and parsed.dropped == last - cut
        replayed = State(lineage=state.lineage)
        replay(replayed, parsed, "j", "s")
        assert set(replayed.chats) == {"a"}


def test_a_last_record_whose_checksum_fails_is_dropped_as_torn() -> None:
    state = State()
    raw = bytearray(journal_of(state, [("chat", "a", rec(1))], [("chat", "b", rec(2))]))
    second = len(header(state.lineage, 0)) + len(encode([("chat", "a", rec(1))]))
    raw[second + 12] ^= 0x01  # a flipped bit inside the second record's payload
    parsed = parse(bytes(raw), "j")
    assert len(parsed.records) == 1 and parsed.dropped == len(raw) - second
    # An absurd length is not trusted either (bounded input).
    bogus = header(state.lineage, 0) + struct.pack(">II", 2**31, 0) + b"x" * 10
    assert parse(bogus, "j").records == []


@pytest.mark.parametrize("zeros", [8, 9, 4096])
def test_a_tail_of_zeros_left_by_a_crash_is_torn_not_corrupt(zeros: int) -> None:
    # Found by test_journal_machine.py: a filesystem can extend a file before the appended
    # data reaches it, so a crash mid-append may leave zeros; eight zero bytes frame an empty
    # payload whose CRC-32 (0) matches, which was refused as "corrupt" and stopped every run.
    state = State()
    raw = journal_of(state, [("chat", "a", rec(1))]) + b"\0" * zeros
    parsed = parse(raw, "j")
    assert len(parsed.records) == 1 and parsed.dropped == zeros


def test_a_journal_without_a_durable_header_is_empty() -> None:
    whole = header("l", 0)
    assert parse(whole[:5], "j").header is None
    assert parse(b"", "j").header is None


def test_bytes_with_a_good_checksum_that_are_not_a_record_are_refused() -> None:
    raw = header("l", 0) + frame(b"not json")
    with pytest.raises(StateError, match="corrupt at byte"):
        parse(raw, "j")
    with pytest.raises(StateError, match="journal header"):
        parse(frame(b"[1]"), "j")


def test_a_compaction_marker_says_what_the_state_already_holds() -> None:
    base = State(serial=7)
    raw = (
        header(base.lineage, 7)
        + encode([("chat", "a", rec(1))])
        + marker(8)
        + encode([("chat", "b", rec(2))])
    )
    # Killed before the compacted state was written: everything replays onto serial 7.
    at7 = State(lineage=base.lineage, serial=7)
    assert replay(at7, parse(raw, "j"), "j", "s") == 3 and set(at7.chats) == {"a", "b"}
    # Killed after it was written (serial 8 holds "a"): only what came after the marker.
    at8 = State(lineage=base.lineage, serial=8)
    at8.put_chat("a", rec(1))
    assert replay(at8, parse(raw, "j"), "j", "s") == 1 and set(at8.chats) == {"a", "b"}
    # Any other serial: refused.
    with pytest.raises(StateError, match=r"continues serial 7.*at serial 9"):
        replay(State(lineage=base.lineage, serial=9), parse(raw, "j"), "j", "s")


def test_read_replays_in_memory_and_write_absorbs_the_journal(tmp_path: Path) -> None:
    path = str(tmp_path / "s.json")
    store = local_store(path)
    state = store.read()
    store.write(state)
    store.journal.reset(journal_of(state, [("intent", "g", intent("g"))]))
    before = Path(path).read_bytes()
    again = local_store(path)
    seen = again.read()
    assert set(seen.intents) == {"g"} and again.leftover and again.replayed == 1
    assert Path(path).read_bytes() == before  # reading changes no file
    again.write(seen)
    assert not Path(path + ".journal").exists()
    assert set(local_store(path).read().intents) == {"g"}


def test_a_foreign_journal_is_refused_and_left_in_place(tmp_path: Path) -> None:
    path = str(tmp_path / "s.json")
    store = local_store(path)
    store.write(store.read())
    foreign = journal_of(State(), [("chat", "x", rec(1))])
    Path(path + ".journal").write_bytes(foreign)
    with pytest.raises(StateError, match="belongs to another state") as caught:
        local_store(path).read()
    assert "left it in place" in caught.value.message
    assert Path(path + ".journal").read_bytes() == foreign


def test_a_journal_torn_before_its_header_holds_nothing_and_is_removed(tmp_path: Path) -> None:
    path = str(tmp_path / "s.json")
    store = local_store(path)
    store.write(store.read())
    Path(path + ".journal").write_bytes(header("l", 1)[:6])  # killed while starting one
    again = local_store(path)
    state = again.read()
    assert again.leftover and again.replayed == 0
    again.write(state)
    assert not Path(path + ".journal").exists()
    assert local_store(path).read().serial == 2


def test_groups_and_member_flags_replay() -> None:
    # Issue 22: a group as read (put_group) and members provision did not add ("added":
    # false, "via") survive the journal.
    from provisioner.states.records import GroupRecord, GroupUser, MemberRecord

    base = State(serial=1)
    expected = base.copy()
    log: list[tuple[Any, ...]] = []
    expected._log = log
    # Issue 23: a user's display name and mail (a generator's fields) too.
    users = (GroupUser("u1", "a@x.com", True), GroupUser("u2", "b@x.com", False, "B", "b@y.com"))
    group = GroupRecord("gid", "Falcon", "2026-01-01T00:00:00Z", users)
    expected.put_group("Falcon@X.com", group)
    members = (MemberRecord("a@x.com", via="group Falcon"), MemberRecord("b", added=False))
    expected.put_chat("k", ChatRecord("19:k", "group", members))
    replayed = base.copy()
    assert replay(replayed, parse(journal_of(base, log), "j"), "j", "s") == 1
    assert replayed.groups == {"falcon@x.com": group}
    assert replayed.chats["k"].members == members
