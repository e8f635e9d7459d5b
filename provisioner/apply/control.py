"""How a caller stops and watches an apply: the stop signal, request figures, progress events.

The core never prints; the CLI implements `ApplyListener` to draw its progress display.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from provisioner.apply.results import Outcome

T = TypeVar("T")


class Cancelled(Exception):
    """The run is stopping: a request that was still waiting for its turn was not sent."""


class StopSignal:
    """Shared by the executor and the `Pacer`: once set, a request waiting for its turn raises
    `Cancelled` instead of being sent. Build the pacer with ``Pacer(sleep=stop.sleep)``."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason = ""

    def set(self, reason: str) -> None:
        if not self._event.is_set():
            self.reason = reason
            self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def sleep(self, seconds: float) -> None:
        if self._event.wait(max(0.0, seconds)):
            raise Cancelled(self.reason or "the run is stopping")


class RequestStats:
    """The Graph client's ``on_event`` hook: counts requests, throttling and retries, in total
    and per thread (so a lookup can tell what it cost). Thread-safe."""

    def __init__(self, forward: Callable[[str, Mapping[str, Any]], None] | None = None) -> None:
        self._lock = threading.Lock()
        self._local = threading.local()
        self._forward = forward
        #: Told of every answer below 400, in the thread that made the request (the executor
        #: counts it to the change that thread is working on).
        self.on_success: Callable[[], None] | None = None
        self.requests = 0  # answers received (every attempt of every request)
        self.throttled = 0  # 429s and 503s with Retry-After
        self.retries = 0  # retries for other reasons (5xx, dropped connections)
        self.token_refreshes = 0
        self.by_status: Counter[int] = Counter()

    def __call__(self, kind: str, info: Mapping[str, Any]) -> None:
        succeeded = False
        with self._lock:
            if kind == "response":
                self.requests += 1
                status = int(info.get("status", 0))
                self.by_status[status] += 1
                self._local.requests = getattr(self._local, "requests", 0) + 1
                succeeded = status < 400
            elif kind == "throttled":
                self.throttled += 1
            elif kind == "retry":
                self.retries += 1
            elif kind == "token_refresh":
                self.token_refreshes += 1
        if succeeded and self.on_success is not None:
            self.on_success()
        if self._forward is not None:
            self._forward(kind, info)

    def thread_requests(self) -> int:
        return int(getattr(self._local, "requests", 0))


@dataclass(frozen=True)
class Progress:
    total: int
    done: int
    failed: int
    in_flight: int
    elapsed: float
    requests: int
    throttled: int
    waiting: tuple[tuple[str, str], ...] = ()  # (key, what it waits for), chats put aside
    # The work, in the Graph requests the plan needs (`provisioner.apply.work`): what the
    # progress display measures, since chats differ a hundredfold in what they take.
    work_total: int = 0
    work_done: int = 0
    work_rate: float = 0.0  # requests per second, recent
    eta_s: float | None = None
    retries: int = 0

    @property
    def rate(self) -> float:
        """Chats finished per second, over the whole run."""
        return self.done / self.elapsed if self.elapsed > 0 else 0.0


class ApplyListener:
    """Receives progress; the default does nothing. ``finished`` is called from worker
    threads (keep it quick and thread-safe); ``tick`` and ``stopping`` from ``run``'s thread."""

    def started(self, total: int) -> None:
        return None

    def finished(self, outcome: Outcome) -> None:
        return None

    def tick(self, progress: Progress) -> None:
        return None

    def stopping(self, reason: str, in_flight: int, grace_s: float) -> None:
        return None


class WriteGate:
    """Lets worker threads write state until closed; ``close`` waits for writes in progress, so
    that no late write lands after the CLI released the state's lock."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._inside = 0
        self.closed = False

    def run(self, fn: Callable[[], T]) -> T:
        with self._cond:
            if self.closed:
                raise Cancelled("the run stopped before this change could be recorded")
            self._inside += 1
        try:
            return fn()
        finally:
            with self._cond:
                self._inside -= 1
                self._cond.notify_all()

    def close(self, timeout: float) -> None:
        with self._cond:
            self.closed = True
            self._cond.wait_for(lambda: self._inside == 0, timeout)
