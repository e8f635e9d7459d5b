"""CoalescingStore: which writes wait, for how long, and that nothing held back is dropped.
(The journal guarantee itself is also checked against every backend in state_contract.py.)"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from provisioner.errors import StateError
from provisioner.states.coalesce import CoalescingStore
from provisioner.states.local import LocalStateStore
from provisioner.states.lock import LockInfo
from provisioner.states.records import State


class SlowStore:
    """A LocalStateStore whose writes take ``cost`` seconds on a fake clock, and can fail."""

    def __init__(self, path: Path, now: list[float], cost: float = 0.0) -> None:
        self.inner = LocalStateStore(path)
        self.now = now
        self.cost = cost
        self.fail = False
        self.location = self.inner.location
        self.backup_location = self.inner.backup_location

    def read(self) -> State:
        return self.inner.read()

    def write(self, state: State) -> None:
        if self.fail:
            raise StateError("disk full")
        self.now[0] += self.cost
        self.inner.write(state)

    @contextlib.contextmanager
    def _hold(self, operation: str) -> Iterator[LockInfo]:
        with self.inner.lock(operation) as info:
            yield info

    def lock(self, operation: str) -> contextlib.AbstractContextManager[LockInfo]:
        return self._hold(operation)

    def current_lock(self) -> LockInfo | None:
        return self.inner.current_lock()

    def force_unlock(self, lock_id: str) -> LockInfo:
        return self.inner.force_unlock(lock_id)


def make(tmp_path: Path, cost: float = 0.0) -> tuple[CoalescingStore, SlowStore, list[float]]:
    now = [100.0]
    slow = SlowStore(tmp_path / "s.json", now, cost)
    clock = lambda: now[0]  # noqa: E731
    return CoalescingStore(slow, max_delay=1.0, clock=clock, timer=clock), slow, now


def on_disk(tmp_path: Path) -> State:
    return LocalStateStore(tmp_path / "s.json").read()


def test_results_wait_at_most_the_interval(tmp_path: Path) -> None:
    store, _, now = make(tmp_path)
    state = store.read()
    step = 1 / 32  # about Graph's 30 rps, exact in binary floating point
    for i in range(31):
        now[0] += step
        state.users[f"u{i}"] = "x"
        store.write(state, durable=False)
    assert store.writes == 0 and store.deferred == 31 and not on_disk(tmp_path).exists
    now[0] += step  # 1 s since the last write: due
    state.users["u31"] = "x"
    store.write(state, durable=False)
    assert store.writes == 1 and not store.pending
    assert len(on_disk(tmp_path).users) == 32


def test_a_durable_write_carries_everything_held_back(tmp_path: Path) -> None:
    store, _, _ = make(tmp_path)
    state = store.read()
    state.users["held"] = "x"
    store.write(state, durable=False)
    state.users["intent"] = "y"
    store.write(state)  # durable by default
    assert set(on_disk(tmp_path).users) == {"held", "intent"} and store.writes == 1


def test_slow_writes_stretch_the_interval(tmp_path: Path) -> None:
    store, _, now = make(tmp_path, cost=0.3)
    state = store.read()
    store.write(state)  # took 0.3 s: the next held-back write may wait 3 s (10 % share)
    assert store.interval == pytest.approx(3.0)
    now[0] += 2.0
    store.write(state, durable=False)
    assert store.pending
    now[0] += 1.1
    store.write(state, durable=False)
    assert not store.pending and store.writes == 2


def test_flush_if_due_and_read_see_held_back_writes(tmp_path: Path) -> None:
    store, _, now = make(tmp_path)
    state = store.read()
    state.users["a"] = "x"
    store.write(state, durable=False)
    assert not store.flush_if_due()
    now[0] += 1.0
    assert store.flush_if_due() and on_disk(tmp_path).users == {"a": "x"}
    state.users["b"] = "x"
    store.write(state, durable=False)
    assert store.read().users == {"a": "x", "b": "x"}  # read flushes first
    assert not store.flush()  # nothing left


def test_releasing_the_lock_flushes_even_on_error(tmp_path: Path) -> None:
    store, slow, _ = make(tmp_path)
    with pytest.raises(KeyboardInterrupt), store.lock("apply"):
        state = store.read()
        state.users["done-before-ctrl-c"] = "x"
        store.write(state, durable=False)
        raise KeyboardInterrupt
    assert on_disk(tmp_path).users == {"done-before-ctrl-c": "x"}
    assert store.current_lock() is None

    # A flush that fails while the run is already failing does not hide the run's own error.
    with pytest.raises(RuntimeError, match="graph down"), store.lock("apply"):
        state.users["lost"] = "x"
        store.write(state, durable=False)
        slow.fail = True
        raise RuntimeError("graph down")
    assert "lost" not in on_disk(tmp_path).users
    # On success, a failing flush is the error.
    slow.fail = False
    with pytest.raises(StateError, match="disk full"), store.lock("apply"):
        store.write(state, durable=False)
        slow.fail = True
