from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path

import pytest

from provisioner.errors import StateError
from provisioner.states.local import LocalStateStore
from provisioner.states.lock import LockInfo
from provisioner.states.records import ChatRecord, MemberRecord, State
from provisioner.states.writer import StateWriter


class SlowStore:
    """A local store whose writes take a while and are recorded (what was durable when)."""

    def __init__(self, path: Path, delay: float = 0.01) -> None:
        self.inner = LocalStateStore(path)
        self.delay = delay
        self.durable: set[str] = set()
        self.fail = False
        self._lock = threading.Lock()

    @property
    def location(self) -> str:
        return self.inner.location

    @property
    def backup_location(self) -> str:
        return self.inner.backup_location

    def read(self) -> State:
        return self.inner.read()

    def write(self, state: State) -> None:
        time.sleep(self.delay)
        if self.fail:
            raise StateError("disk full")
        self.inner.write(state)
        with self._lock:
            self.durable = set(state.chats)

    def lock(self, operation: str) -> contextlib.AbstractContextManager[LockInfo]:
        return self.inner.lock(operation)

    def current_lock(self) -> LockInfo | None:
        return self.inner.current_lock()

    def force_unlock(self, lock_id: str) -> LockInfo:
        return self.inner.force_unlock(lock_id)


def rec(n: int) -> ChatRecord:
    return ChatRecord(f"19:{n}@thread.v2", "group", (MemberRecord("a@x.com"),), topic=str(n))


def test_every_update_is_durable_when_it_returns_and_writes_are_batched(tmp_path: Path) -> None:
    store = SlowStore(tmp_path / "s.json")
    writer = StateWriter(store, store.read())
    late: list[str] = []

    def worker(base: int) -> None:
        for i in range(30):
            key = f"k{base + i}"
            writer.update(lambda s, key=key, n=base + i: s.put_chat(key, rec(n)))
            if key not in store.durable:
                late.append(key)

    threads = [threading.Thread(target=worker, args=(t * 1000,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert late == []
    again = LocalStateStore(tmp_path / "s.json").read()
    assert len(again.chats) == 240
    assert writer.writes < 240  # concurrent changes shared writes
    assert again.serial == writer.writes == writer.state.serial


def test_a_failed_write_raises_where_the_change_was_made_and_is_retried(tmp_path: Path) -> None:
    store = SlowStore(tmp_path / "s.json", delay=0)
    writer = StateWriter(store, store.read())
    writer.update(lambda s: s.put_chat("a", rec(1)))
    store.fail = True
    with pytest.raises(StateError, match="disk full"):
        writer.update(lambda s: s.put_chat("b", rec(2)))
    store.fail = False
    writer.update(lambda s: s.put_chat("c", rec(3)))
    assert set(LocalStateStore(tmp_path / "s.json").read().chats) == {"a", "b", "c"}


def test_flush_writes_whatever_changed(tmp_path: Path) -> None:
    store = SlowStore(tmp_path / "s.json", delay=0)
    state = store.read()
    writer = StateWriter(store, state)
    state.users["a@x.com"] = "id"  # changed directly, e.g. by a resolver before the run
    writer.flush()
    assert LocalStateStore(tmp_path / "s.json").read().users == {"a@x.com": "id"}
