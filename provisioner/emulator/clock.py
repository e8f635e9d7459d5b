"""The emulator's one source of time: every wall-clock reading (``createdDateTime``, when a write
is listed), every monotonic one (throttling buckets, token lifetimes) and every wait (latency,
injected slowness) goes through a `Clock`.

`SystemClock` is the real one (the default). `ManualClock` moves only when told to, so a test
can step past a ``Retry-After``, a list delay or a token's lifetime without sleeping, and can
wait until a request is *inside* the emulator's latency (``wait_for_sleepers``) instead of
sleeping and hoping it got there.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Clock(Protocol):
    def time(self) -> float:
        """Seconds since the epoch (what Graph's timestamps are made of)."""
        ...

    def monotonic(self) -> float:
        """Seconds from an arbitrary start, never going back (what intervals are made of)."""
        ...

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` on this clock."""
        ...


class SystemClock:
    """The machine's clocks."""

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class ManualClock:
    """A clock that moves only with `advance`. ``sleep`` blocks its thread until the clock has
    been advanced far enough (it never advances the clock itself: several request threads may
    sleep at once, and the test decides when their time has come)."""

    def __init__(self, start: float = 1_767_225_600.0) -> None:  # 2026-01-01T00:00:00Z
        self._start = start
        self._elapsed = 0.0
        self._sleepers = 0  # threads sleeping now
        self._sleeps = 0  # sleeps begun so far
        self._cond = threading.Condition()

    def time(self) -> float:
        with self._cond:
            return self._start + self._elapsed

    def monotonic(self) -> float:
        with self._cond:
            return self._elapsed

    def sleep(self, seconds: float) -> None:
        with self._cond:
            until = self._elapsed + max(0.0, seconds)
            self._sleepers += 1
            self._sleeps += 1
            self._cond.notify_all()
            try:
                while self._elapsed < until:
                    self._cond.wait()
            finally:
                self._sleepers -= 1
                self._cond.notify_all()

    def advance(self, seconds: float) -> None:
        """Move the clock on by ``seconds`` and wake the sleepers whose time has come."""
        if seconds < 0:
            raise ValueError("a clock never goes back")
        with self._cond:
            self._elapsed += seconds
            self._cond.notify_all()

    def wait_for_sleepers(self, count: int = 1, timeout: float = 10.0) -> bool:
        """Block until at least ``count`` threads sleep on this clock (False after ``timeout``
        real seconds: a test's guard against a request that never arrives)."""
        with self._cond:
            return self._cond.wait_for(lambda: self._sleepers >= count, timeout)

    def wait_for_sleeps(self, total: int, timeout: float = 10.0) -> bool:
        """Block until ``total`` sleeps have begun on this clock since it was made (one a
        sleeper that just woke up is not mistaken for the next)."""
        with self._cond:
            return self._cond.wait_for(lambda: self._sleeps >= total, timeout)
