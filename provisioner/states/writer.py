"""Durable state changes from many threads, batched: group commit.

The apply executor records every change as soon as Graph has made it (and journals each group
creation before it is sent), so a write follows every change. A full write of a 10,000-chat
state costs tens of milliseconds (see ``benchmarks/bench_plan.py``), about as long as one
change takes at Graph's documented ~30 writes/s per tenant. Writing once per change from a
single lock would cap the apply at the disk's pace; instead, every thread that changes the
state while a write is in flight is covered by the *next* write, the way databases group
commits. Each ``update`` still returns only once its change is durable, so the journal
guarantee (intent persisted before ``POST /chats`` is sent) is unchanged.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

from provisioner.states.records import State
from provisioner.states.store import StateStore

T = TypeVar("T")


class StateWriter:
    """Owns one ``State`` for the length of a run; threads change it only through ``update``."""

    def __init__(self, store: StateStore, state: State) -> None:
        self.store = store
        self.state = state
        self.writes = 0  # how many writes were made (for progress and benchmarks)
        self._cond = threading.Condition()
        self._changed = 0  # changes made so far
        self._durable = 0  # changes covered by a completed write
        self._writing = False

    def update(self, change: Callable[[State], T]) -> T:
        """Run ``change(state)`` under the lock, then return its result once a write that
        includes it has completed. A failed write raises (StateError) in every thread whose
        change it was meant to persist; the next ``update`` tries again."""
        with self._cond:
            result = change(self.state)
            self._changed += 1
            mine = self._changed
            while self._durable < mine:
                if self._writing:
                    self._cond.wait()
                    continue
                self._write_locked()
        return result

    def flush(self) -> None:
        """Write now, whatever has changed (e.g. at the end of a run)."""
        with self._cond:
            while self._writing:
                self._cond.wait()
            self._write_locked()

    def _write_locked(self) -> None:
        # Called holding the condition's lock; releases it during the I/O so other threads
        # keep changing the state, and their changes ride on the next write.
        self._writing = True
        upto = self._changed
        snapshot = self.state.copy()
        self._cond.release()
        try:
            self.store.write(snapshot)
        finally:
            self._cond.acquire()
            self._writing = False
            self._cond.notify_all()
        self.writes += 1
        self.state.serial = snapshot.serial
        self.state.exists = True
        self._durable = max(self._durable, upto)
