from __future__ import annotations

import json
import os
import threading
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lib.fs_helpers import make_readonly, snapshot  # noqa: F401  (fixture)

from provisioner.errors import LockError, StateError
from provisioner.states.local import LocalStateStore
from provisioner.states.records import (
    STATE_FORMAT_VERSION,
    ChatRecord,
    Intent,
    MemberRecord,
    State,
    iter_keys,
)
from provisioner.states.store import StateStore, force_unlock, open_store

A = "8c0a1a67-50ce-4114-bb6c-da9c5dbcf6ca"
B = "3626a173-f2bc-4883-bcf7-01514c3bfb82"


def record(n: int = 1, topic: str | None = "Project") -> ChatRecord:
    return ChatRecord(
        chat_id=f"19:{n:08x}@thread.v2",
        chat_type="group",
        topic=topic,
        created_at="2024-05-01T10:00:00Z",
        members=(
            MemberRecord(user=A, object_id=A, membership_id=f"m-{n}-a"),
            MemberRecord(user="jacob@contoso.com", role="guest", object_id=B),
            MemberRecord(user="x@fabrikam.com", tenant_id="4dc1fe35-8ac6-4f0d-904a-7ebcd364bea1"),
        ),
    )


def intent(key: str = "pending") -> Intent:
    return Intent(
        key=key,
        chat_type="group",
        topic="Pending",
        members=(MemberRecord(user=A), MemberRecord(user=B, role="guest")),
        attempt_id=str(uuid.uuid4()),
        started_at="2024-05-01T10:00:00+00:00",
    )


# --- the StateStore contract, run against every store (issue 9 adds the blob store here) ---

StoreFactory = Callable[[Path], StateStore]
STORES: dict[str, StoreFactory] = {"local": lambda d: LocalStateStore(d / "provision.state.json")}


@pytest.fixture(params=sorted(STORES))
def new_store(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], StateStore]:
    factory = STORES[request.param]
    return lambda: factory(tmp_path)


def test_store_reads_no_state_as_empty_with_fresh_lineage(new_store) -> None:
    a, b = new_store().read(), new_store().read()
    assert not a.exists and a.serial == 0 and a.chats == {} and a.intents == {}
    assert a.lineage != b.lineage
    assert uuid.UUID(a.lineage)


def test_store_round_trips_and_bumps_serial(new_store) -> None:
    store = new_store()
    state = store.read()
    state.put_chat("project-x", record(1))
    state.put_intent(intent("pending"))
    state.users["jacob@contoso.com"] = B
    store.write(state)
    assert state.serial == 1 and state.exists
    again = new_store().read()
    assert again.exists and again.serial == 1 and again.lineage == state.lineage
    assert again.chats == {"project-x": record(1)}
    assert again.intents == state.intents and set(again.intents) == {"pending"}
    assert again.users == {"jacob@contoso.com": B}
    state.remove_chat("project-x")
    state.clear_intent("pending")
    store.write(state)
    third = new_store().read()
    assert third.serial == 2 and third.chats == {} and third.intents == {}
    assert third.lineage == state.lineage


def test_store_refuses_a_state_of_another_lineage(new_store) -> None:
    store = new_store()
    state = store.read()
    store.write(state)
    foreign = State()
    with pytest.raises(StateError, match="lineage"):
        new_store().write(foreign)
    assert new_store().read().lineage == state.lineage


def test_store_refuses_to_overwrite_a_newer_state(new_store) -> None:
    store = new_store()
    first = store.read()
    store.write(first)
    stale = new_store().read()  # serial 1
    first.put_chat("a", record())
    store.write(first)  # serial 2
    other = new_store()
    other.read()
    with pytest.raises(StateError, match="older state"):
        other.write(stale)


def test_store_lock_is_exclusive_and_released(new_store) -> None:
    store = new_store()
    with store.lock("apply") as info:
        assert info.operation == "apply"
        with pytest.raises(LockError), new_store().lock("plan"):
            pass
        assert new_store().current_lock() is not None
    assert new_store().current_lock() is None
    with new_store().lock("plan"):
        pass


def test_force_unlock_removes_only_the_named_lock(new_store, tmp_path: Path) -> None:
    store = new_store()
    if isinstance(store, LocalStateStore):
        # A run that died holding it: the file is left, the kernel released the OS lock.
        from provisioner.states.lock import new_lock_info

        info = new_lock_info("apply", store.path)
        Path(store.path + ".lock").write_text(info.to_json())
    else:
        held = store.lock("apply")  # entered and never exited: a run that died holding it
        info = held.__enter__()
    with pytest.raises(LockError):
        force_unlock(new_store(), "not-the-id")
    assert force_unlock(new_store(), info.id).id == info.id
    assert new_store().current_lock() is None


# --- the local file ------------------------------------------------------------------------


def local(tmp_path: Path) -> LocalStateStore:
    return LocalStateStore(tmp_path / "provision.state.json")


def test_file_is_private_one_chat_per_line_and_backed_up(tmp_path: Path) -> None:
    store = local(tmp_path)
    state = store.read()
    state.put_chat("b", record(2))
    state.put_chat("a", record(1))
    store.write(state)
    path = Path(store.path)
    assert os.stat(path).st_mode & 0o777 == 0o600
    lines = path.read_text().splitlines()
    assert [ln.strip().split(":")[0] for ln in lines if ln.startswith('    "')] == ['"a"', '"b"']
    assert json.loads(path.read_text())["format_version"] == STATE_FORMAT_VERSION
    first = path.read_bytes()
    state.put_chat("c", record(3))
    store.write(state)
    assert Path(store.backup_location).read_bytes() == first
    assert os.stat(store.backup_location).st_mode & 0o777 == 0o600
    assert sorted(os.listdir(tmp_path)) == ["provision.state.json", "provision.state.json.backup"]


def test_write_reencodes_replaced_records(tmp_path: Path) -> None:
    store = local(tmp_path)
    state = store.read()
    state.put_chat("a", record(1, topic="Old"))
    store.write(state)
    state.put_chat("a", record(1, topic="New"))
    store.write(state)
    assert LocalStateStore(store.path).read().chats["a"].topic == "New"


def test_failed_write_leaves_the_old_state_and_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = local(tmp_path)
    state = store.read()
    state.put_chat("a", record(1))
    store.write(state)
    before = snapshot(tmp_path)

    def no_space(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", no_space)
    state.put_chat("b", record(2))
    with pytest.raises(StateError, match="No space left") as err:
        store.write(state)
    assert "nothing was changed" in str(err.value)
    assert state.serial == 1
    assert snapshot(tmp_path) == before


def test_write_in_read_only_directory_changes_nothing(tmp_path: Path, make_readonly) -> None:  # noqa: F811
    store = local(tmp_path)
    state = store.read()
    state.put_chat("a", record(1))
    store.write(state)
    before = snapshot(tmp_path)
    make_readonly(tmp_path)
    state.put_chat("b", record(2))
    with pytest.raises(StateError, match="cannot write state file") as err:
        store.write(state)
    assert str(tmp_path) in str(err.value)
    assert snapshot(tmp_path) == before
    with pytest.raises(StateError, match="cannot create the lock file"), store.lock("apply"):
        pass


def test_concurrent_writers_through_one_lock_lose_nothing(tmp_path: Path) -> None:
    # The executor's pattern: worker threads mutate and write through one lock-protected helper.
    store = local(tmp_path)
    state = store.read()
    guard = threading.Lock()

    def worker(offset: int) -> None:
        for i in range(25):
            with guard:
                state.put_chat(f"chat-{offset + i:04d}", record(offset + i))
                store.write(state)

    threads = [threading.Thread(target=worker, args=(n * 100,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    again = LocalStateStore(store.path).read()
    assert len(again.chats) == 100 and again.serial == 100


# --- bad state files: a clear error naming the file, nothing touched ------------------------


def write_raw(tmp_path: Path, raw: bytes, with_backup: bool = True) -> LocalStateStore:
    store = local(tmp_path)
    if with_backup:
        good = store.read()
        store.write(good)
        store.write(good)  # now a .backup exists
    Path(store.path).write_bytes(raw)
    return LocalStateStore(store.path)


def good_bytes(tmp_path: Path) -> bytes:
    store = LocalStateStore(tmp_path / "good.json")
    state = store.read()
    state.put_chat("a", record(1))
    store.write(state)
    return Path(store.path).read_bytes()


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda raw: raw[: len(raw) // 2], "truncated"),
        (lambda raw: b"", "empty"),
        (lambda raw: raw.replace(b'"chats"', b'"chats" x'), "corrupt"),
        (lambda raw: b'{"hello": "world"}', "not a provision state file"),
        (lambda raw: b"\xff\xfe garbage", "not UTF-8"),
        (lambda raw: raw.replace(b'"role": "guest"', b'"role": "admin"'), "unknown role"),
        (lambda raw: raw.replace(b'"serial": 1', b'"serial": "1"'), "serial: expected int"),
        (lambda raw: raw.replace(b'"chat_type": "group"', b'"chat_type": 3'), "chat_type"),
    ],
)
def test_bad_state_file_is_a_clear_error_and_untouched(
    tmp_path: Path, mangle: Callable[[bytes], bytes], message: str
) -> None:
    raw = mangle(good_bytes(tmp_path))
    store = write_raw(tmp_path, raw)
    before = snapshot(tmp_path)
    with pytest.raises(StateError, match=message) as err:
        store.read()
    text = str(err.value)
    assert store.path in text
    assert store.backup_location in text  # the way out
    with pytest.raises(StateError):  # nor is it overwritten by a write
        store.write(State())
    assert snapshot(tmp_path) == before


def test_future_state_version_asks_for_an_upgrade(tmp_path: Path) -> None:
    current = f'"format_version": {STATE_FORMAT_VERSION}'.encode()
    raw = good_bytes(tmp_path).replace(current, b'"format_version": 99')
    assert raw != good_bytes(tmp_path)
    store = write_raw(tmp_path, raw, with_backup=False)
    with pytest.raises(StateError, match="format version 99") as err:
        store.read()
    assert "upgrade provision" in str(err.value)


def test_bad_file_without_backup_says_so(tmp_path: Path) -> None:
    store = write_raw(tmp_path, b"{", with_backup=False)
    with pytest.raises(StateError, match="no backup exists"):
        store.read()


def test_state_path_that_is_a_directory(tmp_path: Path) -> None:
    with pytest.raises(StateError, match="is a directory"):
        LocalStateStore(tmp_path).read()


def test_open_store_rejects_unknown_schemes(tmp_path: Path) -> None:
    assert isinstance(open_store(str(tmp_path / "s.json")).inner, LocalStateStore)
    with pytest.raises(StateError, match="not supported"):
        open_store("s3://bucket/state.json")


def test_iter_keys_lists_chats_and_pending_creations(tmp_path: Path) -> None:
    state = State()
    state.put_chat("b", record())
    state.put_intent(intent("a"))
    assert list(iter_keys(state)) == ["a", "b"]


# --- any state survives the round trip -----------------------------------------------------

text = st.text(min_size=1, max_size=30)
member = st.builds(
    MemberRecord,
    user=text,
    role=st.sampled_from(["owner", "guest"]),
    object_id=st.none() | text,
    tenant_id=st.none() | text,
    membership_id=st.none() | text,
)
chat = st.builds(
    ChatRecord,
    chat_id=text,
    chat_type=st.sampled_from(["group", "oneOnOne"]),
    members=st.lists(member, max_size=4).map(tuple),
    topic=st.none() | text,
    created_at=st.none() | text,
)


@settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(chats=st.dictionaries(text, chat, max_size=5), users=st.dictionaries(text, text, max_size=3))
def test_any_state_round_trips(
    tmp_path: Path, chats: dict[str, ChatRecord], users: dict[str, str]
) -> None:
    path = tmp_path / f"{uuid.uuid4().hex}.json"
    store = LocalStateStore(path)
    state = store.read()
    for key, rec in chats.items():
        state.put_chat(key, rec)
    state.users.update(users)
    store.write(state)
    again = LocalStateStore(path).read()
    assert again.chats == chats
    assert again.users == users


def test_protected_keys_round_trip_and_follow_renames(tmp_path) -> None:
    from provisioner.states.local import LocalStateStore
    from provisioner.states.records import ChatRecord, MemberRecord

    store = LocalStateStore(tmp_path / "s.json")
    state = store.read()
    record = ChatRecord("19:a", "group", (MemberRecord("a@x.com"),))
    state.put_chat("a", record)
    assert b'"protected"' not in state.encode()  # absent while empty: old files unchanged
    state.protected.add("a")
    store.write(state)
    again = store.read()
    assert again.protected == {"a"}
    again.rename_chat("a", "b")
    assert again.protected == {"b"} and again.chats == {"b": record}
    again.remove_chat("b")
    assert again.protected == set()


def test_the_first_write_after_a_read_reuses_the_files_lines_and_writes_the_same_bytes() -> None:
    from provisioner.states.codec import decode_state

    state = State()
    for n, key in enumerate(["a", 'we"ird\\key', "ünï", "brace{", "b"]):
        topic = "t{o}p[ic" if n % 2 else f"Topic {n}"
        state.put_chat(key, ChatRecord(f"19:{n}@thread.v2", "group", (MemberRecord("u"),), topic))
    raw = state.encode(serial=1)
    read = decode_state(raw, "s", "h")
    changed = ChatRecord("19:new@thread.v2", "group", (MemberRecord("v"),), "New")
    read.put_chat("b", changed)  # replaced since the read: must not take the file's line
    read.remove_chat("a")
    again = read.copy().encode(serial=1)
    assert len(read._encoded) >= 4  # the unchanged chats' lines came from the file
    fresh = State(lineage=read.lineage, chats=dict(read.chats), last_plan_id=read.last_plan_id)
    assert again == fresh.encode(serial=1)
    # A file in another layout (pretty-printed) is not used: the bytes are encoded anew.
    pretty = json.dumps(json.loads(raw), indent=2).encode()
    other = decode_state(pretty, "s", "h")
    assert other.copy().encode(serial=1) == raw and not other._source


def test_settling_member_changes_round_trip_and_are_checked() -> None:
    import dataclasses

    from provisioner.states.codec import decode_state
    from provisioner.states.settling import Settling

    state = State()
    settling = (Settling("0000-a", "added", "2026-12-05T20:00:00Z"),)
    record = ChatRecord("19:c@thread.v2", "group", (MemberRecord("a@contoso.com"),), "T")
    state.put_chat("k", dataclasses.replace(record, settling=settling))
    back = decode_state(state.encode(), "s.json", "h")
    assert back.chats["k"].settling == settling
    bad = json.loads(state.encode())
    bad["chats"]["k"]["settling"] = [{"object_id": "x", "change": "renamed", "until": "t"}]
    with pytest.raises(StateError) as err:
        decode_state(json.dumps(bad).encode(), "s.json", "h")
    assert "settling" in str(err.value) and "change must be" in str(err.value)


def test_version_1_state_is_read_and_its_members_count_as_added(tmp_path: Path) -> None:
    # Issue 22: a version 1 file has no "added" flags; everything it lists was put there by
    # provision (version 1 removed everyone else), and it is written back as the new version.
    raw = (
        b'{"format_version": 1, "serial": 3, "lineage": "l", "chats": {"k": {"chat_id": "19:a", '
        b'"chat_type": "group", "members": [{"user": "a@contoso.com", "role": "owner"}]}}}'
    )
    store = write_raw(tmp_path, raw, with_backup=False)
    state = store.read()
    assert state.chats["k"].members[0].added is True
    store.write(state)
    doc = json.loads(Path(store.path).read_text())
    assert doc["format_version"] == STATE_FORMAT_VERSION == 2
    assert "added" not in doc["chats"]["k"]["members"][0]


def test_a_member_someone_else_added_keeps_its_flag(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    store = LocalStateStore(path)
    state = State()
    theirs = MemberRecord("b@contoso.com", "owner", "oid-b", added=False)
    state.put_chat("k", ChatRecord("19:a", "group", (MemberRecord("a@contoso.com"), theirs)))
    store.write(state)
    assert '"added": false' in path.read_text()
    again = store.read()
    assert [m.added for m in again.chats["k"].members] == [True, False]
    bad = path.read_text().replace('"added": false', '"added": "no"')
    path.write_text(bad)
    with pytest.raises(StateError, match=r"members\[1\]\.added: expected bool"):
        LocalStateStore(path).read()
