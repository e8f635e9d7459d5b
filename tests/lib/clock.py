"""A clock that moves only when something sleeps on it or a test moves it: code that takes
``clock``/``sleep`` parameters runs its waits at once, and the test sees every wait."""

from __future__ import annotations


class FakeClock:
    """Call it (or ``clock()``) for the time; ``sleep`` records the wait and moves time on.

    ``zero_sleeps=False`` makes a zero wait fail the test (for code that must not sleep for
    nothing); a negative wait always does.
    """

    def __init__(self, now: float = 1000.0, *, zero_sleeps: bool = True) -> None:
        self.now = now
        self.slept: list[float] = []
        self._zero_sleeps = zero_sleeps

    def __call__(self) -> float:
        return self.now

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0 or (seconds == 0 and self._zero_sleeps), seconds
        self.slept.append(seconds)
        self.now += seconds

    def advance(self, seconds: float) -> None:
        self.now += seconds
