"""The executor: runs a Plan through the Graph client, saving state after every change.

A pool of worker threads shares one client and its `Pacer`, so every request counts against the
same throttling scopes (``concepts/throttling-limits.md``). Chats are interleaved: each planned
change is a sequence of steps (``apply/steps.py``), and a chat that has to wait for its own
limits (1 request/s per chat, 4 member changes/min per chat) is put aside until then while the
workers serve other chats, so the run is paced by the tenant-wide limit, not by one busy chat.

Every step's result is made durable before the step counts as done: appended to the state's
journal with group commit (`states.journal_writer.JournalWriter`), so a change costs O(change),
not a rewrite of the whole state. One
failed chat does not stop the others; a failure that will hit every chat (401, 403, the state
cannot be written) stops the run early. ``request_stop`` (SIGINT/SIGTERM in the CLI) starts no
new work, lets requests in flight finish for a bounded time, and returns what was done.

The core never prints: progress goes to an `ApplyListener`.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TypeVar

from provisioner.apply.context import ChatApi, StepContext, Steps
from provisioner.apply.control import (
    ApplyListener,
    Cancelled,
    Progress,
    RequestStats,
    StopSignal,
    WriteGate,
)
from provisioner.apply.reconcile import DEFAULT_CLOCK_SKEW
from provisioner.apply.results import FAILED, INTERRUPTED, SKIPPED, ApplyResult, Failure, Outcome
from provisioner.apply.steps import ChatSteps
from provisioner.apply.work import WorkMeter
from provisioner.errors import AuthError, LockError, StateError
from provisioner.graph.errors import GraphAuthError, GraphConnectionError, GraphPermissionError
from provisioner.graph.pacing import (
    CHAT_MEMBERS,
    DEFAULT_CONCURRENCY,
    DOCUMENTED_LIMITS,
    Pacer,
    Scope,
)
from provisioner.plans.types import Change, Plan
from provisioner.states.journal_writer import JournalWriter
from provisioner.states.records import State
from provisioner.states.settling import DEFAULT_CONSISTENCY_WINDOW_S

T = TypeVar("T")


@dataclass(frozen=True)
class ApplyOptions:
    """``concurrency``: worker threads. ``consistency_window_s``: how long after a creation
    whose outcome is unknown lookups go on before it is made again (Graph lists new chats
    late; ``reconcile.py``). ``clock_skew``: how much earlier than our journal Graph's
    ``createdDateTime`` may be. ``anchor``: whose chats lookups list (the signed-in user in
    delegated mode; default an in-tenant member). ``grace_s``: how long a stop waits for
    requests in flight."""

    concurrency: int = DEFAULT_CONCURRENCY
    consistency_window_s: float = DEFAULT_CONSISTENCY_WINDOW_S
    clock_skew: timedelta = DEFAULT_CLOCK_SKEW
    anchor: str | None = None
    grace_s: float = 30.0
    tick_s: float = 0.2


@dataclass
class _Task:
    change: Change
    index: int = 0  # in the plan's actionable changes (the work meter's account)
    steps: Steps | None = None
    outcome: Outcome | None = None
    acted: bool = False  # recorded something in the state (else stopping it skips it)
    running: bool = False  # a worker is in one of its steps


@dataclass(order=True)
class _Entry:
    at: float
    seq: int
    task: _Task = field(compare=False)


# Failures every other chat would meet too: a missing permission, a rejected credential, a
# Graph that cannot be reached (DNS, refused), a state that cannot be written (or whose lock
# was lost).
_STOP_EARLY = (
    GraphAuthError,
    GraphPermissionError,
    GraphConnectionError,
    AuthError,
    StateError,
    LockError,
)


class Executor:
    """Runs ``plan``'s changes (no-ops excluded) with ``client``, recording into ``writer``.

    Build the client with ``pacer`` (made with ``sleep=stop.sleep``) and ``on_event=stats`` to
    get cancellation of waiting requests and request figures; both are optional.
    """

    def __init__(
        self,
        plan: Plan,
        client: ChatApi,
        writer: JournalWriter,
        *,
        options: ApplyOptions | None = None,
        listener: ApplyListener | None = None,
        stats: RequestStats | None = None,
        stop: StopSignal | None = None,
        pacer: Pacer | None = None,
        clock: Callable[[], float] = time.monotonic,
        wallclock: Callable[[], float] = time.time,
    ) -> None:
        self.plan = plan
        self.options = options or ApplyOptions()
        self.listener = listener or ApplyListener()
        self.stats = stats
        self.stop = stop or StopSignal()
        self._writer = writer
        self._pacer = pacer
        self._clock = clock
        self._gate = WriteGate()
        self._cond = threading.Condition()
        self._heap: list[_Entry] = []
        self._seq = 0
        self._active = 0
        self._alive = 0
        self._all_done = threading.Event()
        self._done = 0
        self._failed = 0
        self._stop_error: Failure | None = None
        self._lookups = 0
        self._current = threading.local()
        self._turns_lock = threading.Lock()
        self._claimed: dict[str, float] = {}
        self._lookup_requests = 0
        self._settle_seconds = 0.0
        self._waiting: dict[str, str] = {}
        self._tasks = [_Task(c, n) for n, c in enumerate(plan.actionable)]
        self._work = WorkMeter(
            [t.change for t in self._tasks], lambda chat: self._interval(CHAT_MEMBERS, chat)
        )
        self._started = clock()
        if stats is not None:
            stats.on_success = self._succeeded
        ctx = StepContext(
            client=client,
            record=self._record,
            users=writer.state.users,
            graph_url=plan.graph_url,
            clock=clock,
            wallclock=wallclock,
            interval=self._interval,
            turn_in=self._turn_in,
            requests=stats.thread_requests if stats is not None else (lambda: 0),
            reconciled=self._reconciled,
            waiting=self._set_waiting,
            confirm_lock=writer.store.confirm_lock,
            consistency_window_s=self.options.consistency_window_s,
            clock_skew=self.options.clock_skew,
            anchor=self.options.anchor,
        )
        graph_now = getattr(client, "graph_now", None)
        if callable(graph_now):
            ctx.graph_now = graph_now
        self._steps = ChatSteps(ctx)

    # -- control ----------------------------------------------------------------------------

    def request_stop(self, reason: str) -> None:
        """Start no new work; requests waiting for their turn are not sent. Thread-safe and
        signal-safe (it only sets flags and wakes threads)."""
        self.stop.set(reason)
        with self._cond:
            self._cond.notify_all()

    def run(self) -> ApplyResult:
        """Run every change; returns when all are done, or after a stop (bounded by
        ``grace_s``). A KeyboardInterrupt in the calling thread aborts at once."""
        started = self._started = self._clock()
        # Journaled with the first change: a saved plan is then refused as "already applied".
        self._writer.defer(lambda s: s.set_last_plan(self.plan.plan_id))
        total = len(self._tasks)
        self.listener.started(total)
        for task in self._tasks:
            self._push(task, 0.0)
        workers = min(max(1, self.options.concurrency), total)
        self._alive = workers
        if workers == 0:
            self._all_done.set()
        for n in range(workers):
            threading.Thread(target=self._worker, name=f"provision-apply-{n}", daemon=True).start()
        deadline: float | None = None
        try:
            while True:
                finished = self._all_done.wait(self.options.tick_s)
                if self.stop.is_set() and deadline is None:
                    deadline = self._clock() + self.options.grace_s
                    self.listener.stopping(self.stop.reason, self._active, self.options.grace_s)
                if finished:
                    break
                self.listener.tick(self._progress(started))
                if deadline is not None and self._clock() >= deadline:
                    break  # requests still in flight are abandoned; the journal covers them
        finally:
            # No write after this returns: the caller releases the state's lock next.
            self._gate.close(timeout=5.0)
        self.listener.tick(self._progress(started))
        return self._result(started)

    # -- workers ----------------------------------------------------------------------------

    def _push(self, task: _Task, at: float) -> None:
        self._seq += 1
        heapq.heappush(self._heap, _Entry(at, self._seq, task))

    def _worker(self) -> None:
        try:
            while True:
                task = self._next_task()
                if task is None:
                    return
                at = self._step(task)
                with self._cond:
                    self._active -= 1
                    if task.outcome is None and not self.stop.is_set():
                        self._push(task, at)
                    self._cond.notify_all()
        finally:
            with self._cond:
                self._alive -= 1
                if self._alive == 0:
                    self._all_done.set()
                self._cond.notify_all()

    def _next_task(self) -> _Task | None:
        with self._cond:
            while True:
                if self.stop.is_set():
                    return None
                if not self._heap:
                    if self._active == 0:
                        return None
                    self._cond.wait()
                    continue
                wait = self._heap[0].at - self._clock()
                if wait > 0:
                    self._cond.wait(min(wait, 1.0))
                    continue
                self._active += 1
                return heapq.heappop(self._heap).task

    def _step(self, task: _Task) -> float:
        """Advance ``task`` by one step; returns when its next step may start."""
        change = task.change
        self._current.task = task
        task.running = True
        try:
            if task.steps is None:
                task.steps = self._steps.run(change)
            return next(task.steps)
        except StopIteration as done:
            self._finish(task, done.value)
        except Cancelled as exc:
            status = INTERRUPTED if task.acted else SKIPPED
            self._finish(task, Outcome(change.key, change.action, status, notes=(str(exc),)))
        except Exception as exc:
            failure = Failure.of(exc)
            self._finish(task, Outcome(change.key, change.action, FAILED, error=failure))
            if isinstance(exc, _STOP_EARLY):
                # Every other chat would fail the same way: stop instead of repeating it.
                with self._cond:
                    if self._stop_error is None:
                        self._stop_error = failure
                self.request_stop(type(exc).__name__)
        finally:
            task.running = False
            self._current.task = None
        return 0.0

    def _finish(self, task: _Task, outcome: Outcome) -> None:
        with self._cond:
            task.outcome = outcome
            self._done += 1
            if outcome.status == FAILED:
                self._failed += 1
        self._work.finish(task.index)
        self.listener.finished(outcome)

    # -- what the steps use -----------------------------------------------------------------

    def _record(self, fn: Callable[[State], T]) -> T:
        task = getattr(self._current, "task", None)
        if task is not None:
            task.acted = True
        return self._gate.run(lambda: self._writer.update(fn))

    def _interval(self, kind: str, key: str) -> float:
        if self._pacer is not None:
            return 1.0 / self._pacer.rate(Scope(kind, key))
        return 1.0 / DOCUMENTED_LIMITS[kind].rate

    def _turn_in(self, kind: str) -> float:
        """0.0 when a request of a tenant-wide scope may go now, and the next slot is then
        claimed for it (so that workers waking together do not all go); else the wait."""
        if self._pacer is None:
            return 0.0
        scope = Scope(kind)
        with self._turns_lock:
            now = self._clock()
            wait = max(self._pacer.delay([scope]), self._claimed.get(kind, -1.0) - now)
            if wait <= 0:
                self._claimed[kind] = now + 1.0 / self._pacer.rate(scope)
            return max(0.0, wait)

    def _succeeded(self) -> None:
        """A request of this worker's change succeeded (`RequestStats.on_success`): one more
        request of its work is done. Counted per request, not per step: a step may make
        several (a worker held by the pacer for a chat's member limit goes on to the next)."""
        task = getattr(self._current, "task", None)
        if task is not None:
            self._work.advance(task.index, 1, self._clock() - self._started)

    def _reconciled(self, requests: int, seconds: float) -> None:
        with self._cond:
            self._lookups += 1
            self._lookup_requests += requests
            self._settle_seconds += seconds

    def _set_waiting(self, key: str, what: str | None) -> None:
        with self._cond:
            if what is None:
                self._waiting.pop(key, None)
            else:
                self._waiting[key] = what

    # -- results ----------------------------------------------------------------------------

    def _progress(self, started: float) -> Progress:
        stats = self.stats
        now = self._clock()
        with self._cond:  # some change may go now: the work's rate counts this time
            busy = self._active > 0 or bool(self._heap and self._heap[0].at <= now)
        elapsed = now - started
        work = self._work.snapshot(elapsed, busy=busy)
        return Progress(
            total=len(self._tasks),
            done=self._done,
            failed=self._failed,
            in_flight=self._active,
            elapsed=elapsed,
            requests=stats.requests if stats else 0,
            throttled=stats.throttled if stats else 0,
            waiting=tuple(sorted(self._waiting.items())),
            work_total=work.total,
            work_done=work.done,
            work_rate=work.rate,
            eta_s=work.eta_s,
            retries=stats.retries if stats else 0,
        )

    def _result(self, started: float) -> ApplyResult:
        outcomes = []
        with self._cond:
            for task in self._tasks:
                outcome = task.outcome
                if outcome is None:
                    change = task.change
                    status = INTERRUPTED if task.acted or task.running else SKIPPED
                    outcome = Outcome(change.key, change.action, status, change.chat_id)
                outcomes.append(outcome)
        stats = self.stats
        return ApplyResult(
            plan_id=self.plan.plan_id,
            outcomes=sorted(outcomes, key=lambda o: o.key),
            duration_s=self._clock() - started,
            requests=stats.requests if stats else 0,
            throttled=stats.throttled if stats else 0,
            retries=stats.retries if stats else 0,
            token_refreshes=stats.token_refreshes if stats else 0,
            stopped=self.stop.reason if self.stop.is_set() else None,
            stop_error=self._stop_error,
            lookups=self._lookups,
            lookup_requests=self._lookup_requests,
            settle_seconds=self._settle_seconds,
            state_writes=self._writer.writes,
            work_total=self._work.total,
            work_done=self._work.snapshot(self._clock() - started).done,
        )
