"""What the Graph client did during a run, for people and log pipelines (issue 25, item 5):
one record per request and per retry decision (``--log-format json``), and requests and
throttled requests per second over the run (the apply report's chart).

Fed by the client's ``on_event`` hook (through `apply.control.RequestStats`). A record names
the route template, never an id: chat ids, object ids and UPNs identify people. Memory is
bounded: per-second counts only, at most ``MAX_SECONDS`` of them (later seconds add to the
last one).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from provisioner.graph.routes import route_template

#: Seconds of per-second counts kept (a day); an apply longer than that adds to the last.
MAX_SECONDS = 86_400


@dataclass(frozen=True)
class Series:
    """The run in ``len(requests)`` equal steps of ``step_s`` seconds: requests answered and
    requests throttled in each, and the answers' per-second rate."""

    step_s: int
    requests: tuple[int, ...]
    throttled: tuple[int, ...]

    @property
    def rates(self) -> tuple[float, ...]:
        return tuple(round(n / self.step_s, 1) for n in self.requests)


def record_of(kind: str, info: Mapping[str, Any], at_s: float) -> dict[str, Any]:
    """One log record: ``t`` (seconds since the run started), ``event`` (response, throttled,
    retry, token_refresh), and what the client said, minus anything that names a person."""
    record: dict[str, Any] = {"t": round(at_s, 3), "event": kind}
    if "method" in info:
        record["method"] = info["method"]
    if "path" in info:
        record["route"] = route_template(str(info["path"]))
    if "status" in info:
        record["status"] = int(info["status"])
    if "elapsed" in info:
        record["elapsed_ms"] = round(float(info["elapsed"]) * 1000, 1)
    if "delay" in info:
        record["wait_s"] = round(float(info["delay"]), 3)
    if "reason" in info:
        record["reason"] = str(info["reason"])
    return record


class RunLog:
    """An ``on_event`` hook: counts per second, and hands each record to ``sink`` (if any)."""

    def __init__(
        self,
        sink: Callable[[dict[str, Any]], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sink = sink
        self._clock = clock
        self._start = clock()
        self._lock = threading.Lock()
        self._requests: list[int] = []
        self._throttled: list[int] = []

    def __call__(self, kind: str, info: Mapping[str, Any]) -> None:
        at = max(0.0, self._clock() - self._start)
        second = min(int(at), MAX_SECONDS - 1)
        with self._lock:
            if kind in ("response", "throttled"):
                grow = second + 1 - len(self._requests)
                if grow > 0:
                    self._requests.extend([0] * grow)
                    self._throttled.extend([0] * grow)
                target = self._requests if kind == "response" else self._throttled
                target[second] += 1
        if self._sink is not None:
            self._sink(record_of(kind, info, at))

    def series(self, points: int = 60) -> Series:
        """At most ``points`` steps of whole seconds covering the run."""
        with self._lock:
            requests, throttled = list(self._requests), list(self._throttled)
        seconds = max(1, len(requests))
        step = max(1, -(-seconds // points))

        def fold(values: list[int]) -> tuple[int, ...]:
            return tuple(sum(values[i : i + step]) for i in range(0, seconds, step)) or (0,)

        return Series(step, fold(requests), fold(throttled))
