"""Coalesced state writes for apply: the journal guarantee without a full write per change.

An apply records every change in state. A full write of a 10,000-chat state (several MB) takes
longer than one change's share of Graph's throughput (~33 ms at the 30 requests/s a tenant gets
for chat creation, concepts/throttling-limits.md), most of all against Blob Storage, where each
write is an upload plus a server-side backup copy (figures: ``benchmarks/bench_state_azblob.py``).
So writes are split by what a lost write would cost:

- ``write(state)`` / ``write(state, durable=True)``: written before it returns. Required for a
  group-creation intent, *before* its ``POST /chats``: a group POST is not idempotent (every call
  makes a new chat, api-reference/v1.0/api/chat-post.md), so the journal must know it may exist.
  Several intents may be journaled in one durable write before their POSTs (an intent whose
  POST never happened is harmless: recovery looks the chat up, finds nothing, creates it): the
  executor journals the intents of the group creations it will start in the next ``interval``
  seconds (``ceil(interval * rate)`` of them) in one durable write, then sends those POSTs.
- ``write(state, durable=False)``: may be held back. Only for outcomes that are safe to lose in
  a crash: a oneOnOne result (its POST is "create or return the existing chat", so the next run
  adopts it again), a group chat's id whose intent is already durable (recovery finds the
  chat), member/topic updates (the next plan sees them again). It is written by the first
  ``write`` call made ``interval`` seconds or more after the last actual write, by any durable
  write, by ``flush()`` / ``flush_if_due()``, and when the lock is released (on success, error
  or interrupt).

``interval`` is ``max_delay`` (1 s), stretched when writes are slow so that writing state takes
about ``max_share`` (10 %) of the apply's time: a write that took 0.3 s makes the next one due
3 s later, and the journal's intent batches grow with it, so a slow store (a big state over a
slow link) never makes Graph wait on state.

The same ``State`` object must be passed each time (the executor's one state); what is written
is always the latest version of it, with the serial bumped once per actual write.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator

from provisioner.errors import ProvisionError
from provisioner.states.lock import LockInfo
from provisioner.states.records import State
from provisioner.states.store import StateStore


class CoalescingStore:
    """Wraps any ``StateStore``; adds ``write(..., durable=)``, ``flush()``, ``flush_if_due()``."""

    def __init__(
        self,
        store: StateStore,
        *,
        max_delay: float = 1.0,
        max_share: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
        timer: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.store = store
        self.max_delay = max_delay
        self.max_share = max_share
        self._clock = clock
        self._timer = timer  # measures what a write costs (real time, even in simulations)
        self._last_cost = 0.0
        self._mutex = threading.RLock()
        self._pending: State | None = None
        self._last_write = clock()
        self.writes = 0  # actual writes made (for benchmarks and tests)
        self.deferred = 0  # write calls that were held back

    @property
    def location(self) -> str:
        return self.store.location

    @property
    def backup_location(self) -> str:
        return self.store.backup_location

    @property
    def interval(self) -> float:
        """Seconds a held-back write may wait: ``max_delay``, or longer when the last write was
        slow, so that writing costs at most ``max_share`` of the time."""
        return max(self.max_delay, self._last_cost / self.max_share)

    @property
    def pending(self) -> bool:
        return self._pending is not None

    def read(self) -> State:
        with self._mutex:
            self.flush()  # a read sees every write made through this store
            return self.store.read()

    def write(self, state: State, *, durable: bool = True) -> None:
        with self._mutex:
            self._pending = state
            if durable or self._clock() - self._last_write >= self.interval:
                self.flush()
            else:
                self.deferred += 1

    def flush(self) -> bool:
        """Write the held-back state now, if any. True when something was written."""
        with self._mutex:
            state = self._pending
            if state is None:
                return False
            started = self._timer()
            self.store.write(state)
            self._last_cost = self._timer() - started
            self._pending = None
            self._last_write = self._clock()
            self.writes += 1
            return True

    def flush_if_due(self) -> bool:
        """For an idle executor (e.g. waiting out a Retry-After): write a held-back state once
        ``interval`` has passed since the last write."""
        with self._mutex:
            if self._pending is None or self._clock() - self._last_write < self.interval:
                return False
            return self.flush()

    def lock(self, operation: str) -> contextlib.AbstractContextManager[LockInfo]:
        return self._hold(operation)

    def current_lock(self) -> LockInfo | None:
        return self.store.current_lock()

    def force_unlock(self, lock_id: str) -> LockInfo:
        return self.store.force_unlock(lock_id)

    @contextlib.contextmanager
    def _hold(self, operation: str) -> Iterator[LockInfo]:
        with self.store.lock(operation) as info:
            completed = False
            try:
                yield info
                completed = True
            finally:
                if completed:
                    self.flush()
                else:
                    # Record what was done before the error; the error itself matters more
                    # than a failed flush (whatever is lost is re-adopted or recovered).
                    with contextlib.suppress(ProvisionError):
                        self.flush()
