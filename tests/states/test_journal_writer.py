"""JournalWriter: every change durable when ``update`` returns, appends shared by concurrent
changes (group commit), compaction on its schedule, and nothing made durable ever dropped."""

from __future__ import annotations

import functools
import threading
import time
from pathlib import Path

import pytest

from provisioner.errors import StateError
from provisioner.states.journal import LocalJournalFile, parse
from provisioner.states.journal_writer import JournalWriter
from provisioner.states.records import ChatRecord, MemberRecord, State
from provisioner.states.store import JournaledStore, local_store


class SlowJournal(LocalJournalFile):
    """A journal file whose appends take a while and can fail; counts what it was asked."""

    def __init__(self, path: str, delay: float = 0.0) -> None:
        super().__init__(path)
        self.delay = delay
        self.fail = False
        self.appends = 0

    def append(self, data: bytes) -> None:
        time.sleep(self.delay)
        if self.fail:
            raise StateError("disk full")
        super().append(data)
        self.appends += 1


def rec(n: int) -> ChatRecord:
    return ChatRecord(f"19:{n}@thread.v2", "group", (MemberRecord("a@x.com"),), topic=str(n))


def slow_store(tmp_path: Path, delay: float = 0.0) -> tuple[JournaledStore, SlowJournal]:
    path = str(tmp_path / "s.json")
    journal = SlowJournal(path + ".journal", delay)
    store = JournaledStore(local_store(path).inner, journal)
    return store, journal


def durable(tmp_path: Path) -> State:
    """What a run killed now would leave: the state file with its journal replayed."""
    return local_store(str(tmp_path / "s.json")).read()


def test_every_update_is_durable_when_it_returns_and_appends_are_shared(
    tmp_path: Path,
) -> None:
    store, journal = slow_store(tmp_path, delay=0.01)
    writer = JournalWriter(store, store.read(), every_s=3600)
    writer.start()
    late: list[str] = []

    def put(state: State, key: str, n: int) -> None:
        state.put_chat(key, rec(n))

    def worker(base: int) -> None:
        for i in range(30):
            key = f"k{base + i}"
            writer.update(functools.partial(put, key=key, n=base + i))
            if key not in durable(tmp_path).chats:
                late.append(key)

    threads = [threading.Thread(target=worker, args=(t * 1000,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert late == []
    assert journal.appends < 240  # concurrent changes shared appends (group commit)
    size = Path(journal.path).stat().st_size
    assert size < 240 * 200  # O(change): each record is its own chat, not the state
    writer.close()
    again = local_store(str(tmp_path / "s.json")).read()
    assert len(again.chats) == 240 and not Path(journal.path).exists()
    assert writer.compactions == 1 and again.serial == writer.state.serial


def test_a_failed_append_raises_where_the_change_was_made_and_stops_the_journal(
    tmp_path: Path,
) -> None:
    store, journal = slow_store(tmp_path)
    writer = JournalWriter(store, store.read())
    writer.start()
    writer.update(lambda s: s.put_chat("a", rec(1)))
    journal.fail = True
    with pytest.raises(StateError, match="disk full"):
        writer.update(lambda s: s.put_chat("b", rec(2)))
    journal.fail = False
    # After a failed append the journal may end in a torn record: nothing more goes after it.
    with pytest.raises(StateError, match="disk full"):
        writer.update(lambda s: s.put_chat("c", rec(3)))
    writer.close()  # the full state still holds every change made in memory (not the refused)
    assert set(durable(tmp_path).chats) == {"a", "b"}


def test_compaction_runs_on_its_schedule_and_carries_what_came_meanwhile(
    tmp_path: Path,
) -> None:
    now = [0.0]
    store, journal = slow_store(tmp_path)
    writer = JournalWriter(store, store.read(), every_s=5.0, clock=lambda: now[0])
    writer.start()
    serial = writer.state.serial
    writer.update(lambda s: s.put_chat("a", rec(1)))
    assert writer.compactions == 0
    now[0] = 6.0
    # A change made while the compaction writes the state lands in the next journal.
    inner_write = store.inner.write

    def slow_write(state: State) -> None:
        t = threading.Thread(target=writer.update, args=(lambda s: s.put_chat("c", rec(3)),))
        t.start()
        # The change is made, and durable, while the state is being written (the lock is
        # not held meanwhile): it lands in the next journal.
        t.join(10)
        assert not t.is_alive()
        inner_write(state)
        threads.append(t)

    threads: list[threading.Thread] = []
    store.inner.write = slow_write  # type: ignore[method-assign]
    writer.update(lambda s: s.put_chat("b", rec(2)))  # due: compacts after its append
    store.inner.write = inner_write  # type: ignore[method-assign]
    for t in threads:
        t.join()
    assert writer.compactions == 1 and writer.state.serial == serial + 1
    on_disk = local_store(str(tmp_path / "s.json")).inner.read()
    assert set(on_disk.chats) >= {"a", "b"}
    parsed = parse(Path(journal.path).read_bytes(), journal.path)
    assert parsed.header is not None and parsed.header["serial"] == serial + 1
    assert set(durable(tmp_path).chats) == {"a", "b", "c"}
    # Not due again before every_s has passed since the last compaction.
    writer.update(lambda s: s.put_chat("d", rec(4)))
    assert writer.compactions == 1


def test_a_killed_run_is_replayed_by_the_next_one_which_starts_from_it(tmp_path: Path) -> None:
    path = str(tmp_path / "s.json")
    store = local_store(path)
    first = JournalWriter(store, store.read())
    first.start()
    first.update(lambda s: s.put_chat("a", rec(1)))
    first.abandon()  # killed: no compaction
    store = local_store(path)
    state = store.read()
    assert set(state.chats) == {"a"} and store.leftover
    second = JournalWriter(store, state)
    second.start()  # writes the replayed state first, then a fresh journal
    assert set(local_store(path).inner.read().chats) == {"a"}
    second.update(lambda s: s.put_chat("b", rec(2)))
    second.close()
    assert set(local_store(path).read().chats) == {"a", "b"}


def test_deferred_changes_ride_with_the_next_update_and_bypasses_are_caught(
    tmp_path: Path,
) -> None:
    store, _ = slow_store(tmp_path)
    writer = JournalWriter(store, store.read())
    writer.start()
    writer.defer(lambda s: s.set_last_plan("p1"))
    assert durable(tmp_path).last_plan_id is None
    writer.update(lambda s: s.put_chat("a", rec(1)))
    assert durable(tmp_path).last_plan_id == "p1"
    with pytest.raises(AssertionError, match="bypassed"):
        writer.update(lambda s: s.users.update({"x@y.z": "oid"}))
    writer.close()


def test_a_run_that_changed_nothing_writes_nothing(tmp_path: Path) -> None:
    path = str(tmp_path / "s.json")
    store = local_store(path)
    store.write(store.read())
    writer = JournalWriter(store, store.read())
    with writer.running():
        writer.defer(lambda s: s.set_last_plan("p1"))  # only with a change
    again = local_store(path).read()
    assert again.serial == 1 and again.last_plan_id is None
    assert not Path(path + ".journal").exists() and writer.writes == 0
