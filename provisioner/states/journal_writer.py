"""A run's durable changes: appended to the journal with group commit, compacted now and then.

The apply executor records every change as soon as Graph has made it, and journals each group
creation's intent before its ``POST /chats`` is sent (a group POST is not idempotent: every call
makes a new chat, api-reference/v1.0/api/chat-post.md). Rewriting the whole state for each
change would cost O(state) per change (tens of ms for 10,000 chats, seconds for 100,000 in Blob
Storage), more than one change's share of Graph's ~30 writes/s per tenant
(concepts/throttling-limits.md). Instead each change is one journal record (``states.journal``):

- **Group commit.** ``update(fn)`` applies ``fn`` to the state, queues the record, and returns
  once an append that includes it is durable. While one append is in flight, every change made
  meanwhile waits for the next one, so one fsync (or one Append Block) covers all of them.
- **Compaction.** The full state is written at the end of the run (``close``) and during it at
  most every ``every_s`` seconds, stretched so that compaction takes at most ``max_share`` of
  the time (a 100,000-chat state over a slow link never makes Graph wait). A ``compact`` marker
  is made durable first; records appended while the state is written are carried into the next
  journal, which replaces the old one atomically.

A failed append may leave a torn record, after which nothing more may be appended: the writer
then refuses every further change (StateError; the executor stops the run) and ``close`` still
tries to write the full state, which holds every change made in memory.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

from provisioner.errors import ProvisionError, StateError
from provisioner.states.journal import encode, header, marker
from provisioner.states.records import State
from provisioner.states.store import JournaledStore

T = TypeVar("T")


def _yield() -> None:
    """Between two steps of the prewarm: let the apply's threads run first."""
    time.sleep(0.002)


class JournalWriter:
    """Owns one ``State`` for the length of a run; threads change it only through ``update``.

    Changes must go through ``State``'s methods (``put_chat``, ``put_users``...), which note
    them for the journal; ``update`` refuses a change that bypassed them.
    """

    def __init__(
        self,
        store: JournaledStore,
        state: State,
        *,
        every_s: float = 5.0,
        max_share: float = 0.05,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.state = state
        self.every_s = every_s
        self.max_share = max_share
        self._clock = clock
        self.writes = 0  # durable writes: journal appends and full writes
        self.appends = 0
        self.compactions = 0
        self._cond = threading.Condition()
        self._queue: list[bytes] = []  # records not appended yet
        self._queued = 0  # records queued so far (the sequence number of the last one)
        self._durable = 0  # records covered by a completed append
        self._since = 0  # records since the last compaction
        self._appending = False  # an append is in flight (without the lock)
        self._compacting = False
        self._carry: list[bytes] | None = None  # appended after a compaction's marker
        self._broken: ProvisionError | None = None
        self._last = clock()
        # What a compaction costs: until one is measured, about what reading the state took
        # (both are one pass over every chat), so a big state is not compacted 5 s in.
        self._cost = store.read_seconds
        self._open = False
        self._prewarm: threading.Thread | None = None

    # --- the run ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def running(self) -> Iterator[JournalWriter]:
        """Start the journal; on leaving, write the full state (the journal then goes)."""
        self.start()
        try:
            yield self
        except Exception:
            # Everything reported done is in the journal already; the error matters more than
            # a failed compaction (the next run replays the journal).
            with contextlib.suppress(ProvisionError):
                self.close()
            raise
        except BaseException:
            self.abandon()  # stopped at once (a second SIGINT): the journal holds every change
            raise
        self.close()

    def abandon(self) -> None:
        """Stop journaling without writing the state: the next run replays the journal."""
        with self._cond:
            self._open = False
            self.state._log = None

    def start(self) -> None:
        """Begin a fresh journal on the state as read (under the store's lock). A journal a
        killed run left (already replayed by ``read``) or a state that does not exist yet is
        first written in full, so the new journal always continues a state on storage."""
        if self.store.leftover or not self.state.exists:
            self.store.write(self.state)
            self.writes += 1
        self.store.journal.reset(header(self.state.lineage, self.state.serial))
        self.state._log = []
        self._last = self._clock()
        self._open = True
        if self.state._source:
            # The run mostly waits for Graph: meanwhile, take the unchanged chats' encoded
            # lines from the file just read, so the compaction at the end only writes them.
            self._prewarm = threading.Thread(
                target=self.state.copy().prepare,
                args=(_yield,),
                name="provision-state-prewarm",
                daemon=True,
            )
            self._prewarm.start()

    def update(self, change: Callable[[State], T]) -> T:
        """Run ``change(state)`` under the lock, then return its result once an append that
        includes it is durable. A failed append raises (a ProvisionError) in every thread whose
        change it was meant to persist, and in every later call."""
        with self._cond:
            if self._broken is not None:
                raise self._broken
            if not self._open:
                raise StateError("this run's journal is closed: the change was not recorded")
            result = self._apply(change)
            while self._durable < self._queued:
                if self._broken is not None:
                    raise self._broken
                if self._appending:
                    self._cond.wait()
                else:
                    self._append_locked()
            due = self._due()
            if due:
                self._compacting = True
        if due:
            self._compact()
        return result

    def defer(self, change: Callable[[State], None]) -> None:
        """Apply ``change`` now and journal it with the next ``update`` (not on its own: if
        no update follows, it is not written)."""
        with self._cond:
            change(self.state)

    def close(self) -> None:
        """Write the full state if anything changed, and remove the journal."""
        with self._cond:
            self._cond.wait_for(lambda: not self._compacting and not self._appending)
            if not self._open:
                return
            self._open = False
            self.state._log = None
            if self._since == 0 and not self._queue:
                self.store.journal.remove()
                return
            self._compacting = True
        if self._prewarm is not None:
            self._prewarm.join()
        self._compact(final=True)

    # --- inside ----------------------------------------------------------------------------

    def _apply(self, change: Callable[[State], T]) -> T:
        state = self.state
        log = state._log
        assert log is not None
        shape = (len(state.chats), len(state.intents), len(state.users), len(state.protected))
        plan = state.last_plan_id
        try:
            result = change(state)
        finally:
            noted = list(log)
            log.clear()
        if not noted and (
            shape != (len(state.chats), len(state.intents), len(state.users), len(state.protected))
            or plan != state.last_plan_id
        ):
            raise AssertionError("a journaled change bypassed State's methods")
        if noted:
            self._queue.append(encode(noted))
            self._queued += 1
            self._since += 1
        return result

    def _append_locked(self) -> None:
        # Called holding the condition's lock; releases it during the I/O so other threads
        # keep changing the state, and their changes ride on the next append.
        data = b"".join(self._queue)
        self._queue.clear()
        upto = self._queued
        self._appending = True
        self._cond.release()
        try:
            self.store.journal.append(data)
        except ProvisionError as exc:
            self._broken = exc
            raise
        finally:
            self._cond.acquire()
            self._appending = False
            self._cond.notify_all()
        self._appended(data, upto)

    def _appended(self, data: bytes, upto: int) -> None:
        self.appends += 1
        self.writes += 1
        self._durable = upto
        if self._carry is not None:
            self._carry.append(data)

    def _due(self) -> bool:
        if self._compacting or self._since == 0 or not self._open:
            return False
        elapsed = self._clock() - self._last
        return elapsed >= max(self.every_s, self._cost / self.max_share)

    def _compact(self, *, final: bool = False) -> None:
        """Write the full state (``_compacting`` set by the caller). Holds the lock only to
        take the snapshot and to start the next journal; changes go on meanwhile, unless the
        journal cannot be replaced atomically (then appends wait: nothing needs carrying)."""
        started = time.perf_counter()
        hold = not self.store.journal.atomic_reset
        try:
            snapshot = self._mark(final, hold)
            self.store.inner.write(snapshot)
            with self._cond:
                self.state.serial = snapshot.serial
                self.state.exists = True
                self.writes += 1
                self.compactions += 1
                if not hold:
                    self._cond.wait_for(lambda: not self._appending)
                self._next_journal(final)
        finally:
            with self._cond:
                if hold:
                    self._appending = False
                self._carry = None
                self._compacting = False
                self._cost = time.perf_counter() - started
                self._last = self._clock()
                self._cond.notify_all()

    def _mark(self, final: bool, hold: bool) -> State:
        """The snapshot to write, once a marker saying so is durable after every record it
        holds (under the lock: no record may come between the snapshot and its marker)."""
        with self._cond:
            self._cond.wait_for(lambda: not self._appending)
            snapshot = self.state.copy()
            data = b"".join(self._queue) + marker(snapshot.serial + 1)
            self._queue.clear()
            upto = self._queued
            self._appending = hold  # held: later changes wait for the next journal
            if self._broken is None:
                try:
                    self.store.journal.append(data)
                except ProvisionError as exc:
                    self._broken = exc
                    if not final:
                        raise
            if self._broken is not None and final:
                # A broken journal (a failed append may have left a torn record): the final
                # write still saves every change made in memory. A marker declaring the torn
                # tail is tried once more; if it cannot be made durable either and the run is
                # killed right after the write, the next read refuses the journal and
                # `provision state repair` sees the state absorbed it (one serial ahead).
                with contextlib.suppress(ProvisionError):
                    self.store.seal(snapshot.serial + 1)
            if self._broken is None:
                self._appended(data, upto)
            self._since = 0
            self._carry = None if final or hold else []
            return snapshot

    def _next_journal(self, final: bool) -> None:
        if final:
            self.store.journal.remove()
            self.store.leftover = False
            return
        carry = b"".join(self._carry or [])
        try:
            self.store.journal.reset(header(self.state.lineage, self.state.serial) + carry)
        except ProvisionError as exc:
            self._broken = exc
            raise
