"""The ``StateStore`` contract: one suite that every state backend must pass.

Like Terraform's ``statemgr.TestFull``: ``tests/states/test_state_contract.py`` runs it against the
local file and against Azure Blob Storage (Azurite). A backend provides a ``Backend``: a way to
open fresh store instances on one location (as separate runs would), to plant raw bytes there,
and to read the backup.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from provisioner.errors import LockError, StateError
from provisioner.states.journal import encode, header
from provisioner.states.journal_writer import JournalWriter
from provisioner.states.records import ChatRecord, Intent, MemberRecord, State
from provisioner.states.store import JournaledStore


@dataclass
class Backend:
    name: str
    new_store: Callable[[], JournaledStore]  # a new instance on the same location: "another run"
    put_raw: Callable[[bytes], None]  # replace the stored bytes (corruption, foreign files)
    read_backup: Callable[[], State]
    delete: Callable[[], None]  # remove the state itself (its backup stays)
    # A blob lease can be broken by anyone; a local lock is the kernel's, held until its
    # process ends, and force-unlock refuses to remove it while it is held.
    force_unlock_breaks_a_live_lock: bool = True


def sample_state() -> State:
    state = State()
    state.put_chat(
        "project-x",
        ChatRecord(
            chat_id="19:abc@thread.v2",
            chat_type="group",
            topic="Project X — ünïcode",
            created_at="2024-05-01T10:00:00Z",
            members=(
                MemberRecord("alice@contoso.com", "owner", object_id="oid-a", membership_id="m1"),
                MemberRecord("bob@contoso.com", "guest", object_id="oid-b"),
                MemberRecord("oid-c", "owner", tenant_id="tenant-2"),
            ),
        ),
    )
    state.put_chat(
        "oneonone-0123456789abcdef",
        ChatRecord(
            chat_id="19:pair@unq.gbl.spaces",
            chat_type="oneOnOne",
            members=(MemberRecord("alice@contoso.com"), MemberRecord("carol@contoso.com")),
        ),
    )
    state.users["alice@contoso.com"] = "oid-a"
    state.last_plan_id = "plan-1"
    return state


def pending_intent(key: str = "team-y") -> Intent:
    return Intent(
        key=key,
        chat_type="group",
        topic="Team Y",
        members=(MemberRecord("alice@contoso.com"), MemberRecord("dave@contoso.com", "guest")),
        attempt_id="attempt-1",
        started_at="2024-05-01T10:00:01Z",
    )


def assert_same_content(a: State, b: State) -> None:
    assert a.lineage == b.lineage
    assert a.chats == b.chats
    assert a.intents == b.intents
    assert a.users == b.users
    assert a.last_plan_id == b.last_plan_id


class StateStoreContract:
    """Tests every backend passes. Subclasses provide a ``backend`` fixture."""

    # --- read / write -----------------------------------------------------------------------

    def test_no_state_yet_reads_empty(self, backend: Backend) -> None:
        state = backend.new_store().read()
        assert not state.exists
        assert state.serial == 0
        assert state.chats == {} and state.intents == {}

    def test_write_then_another_run_reads_the_same(self, backend: Backend) -> None:
        store = backend.new_store()
        store.read()
        state = sample_state()
        store.write(state)
        assert state.serial == 1 and state.exists
        again = backend.new_store().read()
        assert again.exists and again.serial == 1
        assert_same_content(again, state)

    def test_every_write_bumps_serial_and_keeps_a_backup(self, backend: Backend) -> None:
        store = backend.new_store()
        state = store.read()
        state.put_chat("a", sample_state().chats["project-x"])
        store.write(state)
        state.remove_chat("a")
        state.users["x@contoso.com"] = "oid-x"
        store.write(state)
        assert state.serial == 2
        current = backend.new_store().read()
        assert current.serial == 2 and "a" not in current.chats
        backup = backend.read_backup()
        assert backup.serial == 1 and "a" in backup.chats and backup.lineage == state.lineage
        assert store.backup_location != store.location

    def test_pending_intent_is_recovered_by_a_new_store(self, backend: Backend) -> None:
        # The journal: a group creation's intent written before the POST must be there for
        # the next run, exactly as written, even if the run died right after.
        store = backend.new_store()
        state = store.read()
        state.put_intent(pending_intent())
        store.write(state)
        recovered = backend.new_store().read()
        assert recovered.intents == {"team-y": pending_intent()}
        state.clear_intent("team-y")
        state.put_chat("team-y", sample_state().chats["project-x"])
        store.write(state)
        done = backend.new_store().read()
        assert done.intents == {} and "team-y" in done.chats

    def test_refuses_to_write_another_lineage(self, backend: Backend) -> None:
        first = sample_state()
        backend.new_store().write(first)
        other = backend.new_store()
        other.read()
        with pytest.raises(StateError, match="lineage"):
            other.write(State())
        assert_same_content(backend.new_store().read(), first)

    def test_a_store_that_never_read_still_refuses_another_lineage(self, backend: Backend) -> None:
        first = sample_state()
        backend.new_store().write(first)
        with pytest.raises(StateError, match="lineage"):
            backend.new_store().write(State())
        assert backend.new_store().read().serial == 1

    def test_refuses_to_write_an_older_serial(self, backend: Backend) -> None:
        store = backend.new_store()
        state = store.read()
        store.write(state)
        store.write(state)
        stale = backend.new_store().read()
        stale.serial = 1
        with pytest.raises(StateError, match="older"):
            store.write(stale)
        assert backend.new_store().read().serial == 2

    def test_truncated_state_is_a_clear_error_that_names_it(self, backend: Backend) -> None:
        store = backend.new_store()
        store.write(sample_state())
        good = sample_state().encode(serial=1)
        backend.put_raw(good[: len(good) // 2])
        with pytest.raises(StateError) as err:
            backend.new_store().read()
        message = str(err.value)
        assert store.location in message and "truncated" in message

    def test_a_missing_state_with_its_backup_is_refused(self, backend: Backend) -> None:
        # Issue 15: a state that is gone while its backup is there is not "no state yet".
        store = backend.new_store()
        state = store.read()
        state.put_chat("project-x", sample_state().chats["project-x"])
        store.write(state)
        store.write(state)  # the second write makes the backup
        backend.delete()
        with pytest.raises(StateError, match="is missing, but") as err:
            backend.new_store().read()
        assert "afresh" in str(err.value)

    def test_corrupt_state_points_at_the_backup(self, backend: Backend) -> None:
        store = backend.new_store()
        state = store.read()
        store.write(state)
        store.write(state)  # now a backup exists
        backend.put_raw(b'{"format_version": 1, "lineage": "x", "serial": "two"}')
        with pytest.raises(StateError) as err:
            backend.new_store().read()
        assert store.backup_location in str(err.value)

    def test_future_format_version_is_refused(self, backend: Backend) -> None:
        backend.put_raw(b'{"format_version": 99, "lineage": "x", "serial": 1, "chats": {}}\n')
        with pytest.raises(StateError, match="newer"):
            backend.new_store().read()

    # --- locking ----------------------------------------------------------------------------

    def test_lock_records_who_holds_it(self, backend: Backend) -> None:
        store = backend.new_store()
        assert store.current_lock() is None
        with store.lock("apply") as info:
            assert info.operation == "apply" and info.pid == os.getpid()
            assert "@" in info.who and info.created and info.id
            seen = backend.new_store().current_lock()
            assert seen is not None and seen.id == info.id and seen.who == info.who
        assert backend.new_store().current_lock() is None

    def test_second_run_fails_at_once_with_the_holders_details(self, backend: Backend) -> None:
        store = backend.new_store()
        with store.lock("apply") as info:
            with pytest.raises(LockError) as err, backend.new_store().lock("plan"):
                pass
            message = str(err.value)
            for detail in (info.id, "apply", info.who, str(info.pid), info.created):
                assert detail in message
        with backend.new_store().lock("plan"):  # free again afterwards
            pass

    def test_lock_is_released_when_the_run_fails(self, backend: Backend) -> None:
        store = backend.new_store()
        with pytest.raises(RuntimeError), store.lock("apply"):
            raise RuntimeError("boom")
        assert backend.new_store().current_lock() is None

    def test_writes_under_the_lock(self, backend: Backend) -> None:
        store = backend.new_store()
        with store.lock("apply"):
            state = store.read()
            state.put_intent(pending_intent())
            store.write(state)
            state.clear_intent("team-y")
            store.write(state)
        after = backend.new_store().read()
        assert after.serial == 2 and after.intents == {}

    def test_force_unlock_needs_the_right_id(self, backend: Backend) -> None:
        holder = backend.new_store()
        with holder.lock("apply") as info:
            other = backend.new_store()
            with pytest.raises(LockError, match="does not match"):
                other.force_unlock("not-the-id")
            if not backend.force_unlock_breaks_a_live_lock:
                with pytest.raises(LockError, match="held by a running process"):
                    other.force_unlock(info.id)
                return
            removed = other.force_unlock(info.id)
            assert removed.id == info.id
            with other.lock("apply") as taken:
                pass_through = backend.new_store().current_lock()
                assert pass_through is not None and pass_through.id == taken.id
        # The first holder's exit does not disturb anything (its lock was already gone).
        assert backend.new_store().current_lock() is None
        with pytest.raises(LockError, match="not locked"):
            backend.new_store().force_unlock(info.id)

    # --- the journal (the apply's durable changes) -----------------------------------------

    def test_journaled_changes_are_durable_without_rewriting_the_state(
        self, backend: Backend
    ) -> None:
        store = backend.new_store()
        with store.lock("apply"):
            state = store.read()
            with JournalWriter(store, state, every_s=3600).running() as writer:
                serial = state.serial  # the state on storage the journal continues
                writer.update(lambda s: s.put_intent(pending_intent()))  # before the POST
                other = backend.new_store().read()  # what a killed run leaves: state + journal
                assert other.intents == {"team-y": pending_intent()}
                assert backend.new_store().inner.read().intents == {}  # not a full rewrite
                record = sample_state().chats["project-x"]
                writer.update(lambda s: (s.put_chat("team-y", record), s.clear_intent("team-y")))
                writer.update(lambda s: s.put_users({"dave@contoso.com": "oid-d"}))
                seen = backend.new_store().read()
                assert seen.chats["team-y"] == record and seen.intents == {}
                assert seen.users["dave@contoso.com"] == "oid-d" and seen.serial == serial
        # The end of the run writes the full state once; the journal is gone.
        final = backend.new_store()
        assert final.journal.read() is None
        assert_same_content(final.read(), state)
        assert final.inner.read().serial == serial + 1

    def test_a_torn_last_record_is_dropped_and_a_foreign_journal_refused(
        self, backend: Backend
    ) -> None:
        store = backend.new_store()
        store.write(sample_state())
        with store.lock("apply"):
            state = store.read()
            writer = JournalWriter(store, state)
            writer.start()
            writer.update(lambda s: s.put_intent(pending_intent("a")))
            writer.abandon()  # killed: no compaction
            full = encode([("intent", "b", pending_intent("b"))])
            store.journal.append(full[: len(full) - 3])  # killed mid-append
        again = backend.new_store().read()
        assert set(again.intents) == {"a"}  # the torn record is dropped, never misread
        # A journal that continues another state is refused and left in place.
        store.journal.reset(header("another-lineage", state.serial) + full)
        with pytest.raises(StateError, match="belongs to another state"):
            backend.new_store().read()
        store.journal.reset(header(state.lineage, state.serial + 5) + full)
        with pytest.raises(StateError, match="continues serial"):
            backend.new_store().read()
        assert store.journal.read() is not None

    def test_damage_in_the_middle_is_refused_and_repair_keeps_every_record(
        self, backend: Backend
    ) -> None:
        from provisioner.operations.repair import repair

        store = backend.new_store()
        store.write(sample_state())
        state = store.read()
        records = [encode([("intent", k, pending_intent(k))]) for k in "abcd"]
        raw = bytearray(header(state.lineage, state.serial) + b"".join(records))
        second = len(raw) - sum(len(r) for r in records[1:])
        raw[second + 25] ^= 0x08  # one flipped bit in the second of four records
        with store.lock("apply"):
            store.journal.reset(bytes(raw) + b"\0" * 512)  # and a zero tail: torn, not damage
        with pytest.raises(StateError, match="damaged") as err:
            backend.new_store().read()
        assert "state repair" in (err.value.hint or "")
        report = repair(backend.new_store())
        assert report.restored == [second] and report.applied == 4 and report.lost == []
        repaired = backend.new_store()
        assert set(repaired.read().intents) == set("abcd")
        assert repaired.journal.read() is None and report.kept[0].endswith(".damaged")
