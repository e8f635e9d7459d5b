"""How much work an apply is, and how fast it goes: the figures behind its progress display.

Chats are the wrong unit for progress: a creation is one request, but a chat gaining five
members is five member changes, and Graph allows 4 member changes per minute per chat
(``includes/throttling-teams.md``), so such a chat takes over a minute whatever the tenant's
rate. Counted in finished chats, a member-heavy run shows "0 done" for a minute and then
guesses an ETA from nothing. The unit here is the Graph request a planned change needs
(`planned_requests`): the run's total is known from the plan, each successful request of a
change counts as done (at most what it planned), and a finished change counts as whole.

`WorkMeter.snapshot` gives the rate over the last ``window_s`` seconds, and an ETA that is the
larger of two lower bounds:

* the work left at the rate the run makes while it has work it may send: time in which every
  remaining change waits for its chat's own limit does not count (a member-heavy run goes in
  bursts, every chat's next member change falling due together, then waits; averaging the
  waits into the rate would count them twice), and
* what the busiest chat still needs at its member-change pace (its member changes left, one
  interval apart, from its last one): a run waiting on a few chats is not "1 s left". The
  interval is the median of the gaps between consecutive member changes of one chat seen
  lately (the pace the tenant really allows; the pacer's own figure for a chat dips after a
  429 and recovers, which made the ETA jump), the pacer's until there are enough of them.

Measured against the emulator's documented limits (``benchmarks/bench_progress.py``).
"""

from __future__ import annotations

import statistics
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from provisioner.plans.types import Action, Change


def member_changes(change: Change) -> int:
    """Member additions and removals an update makes (a role change is both), and the
    members a creation adds after it (over 200 at one time, Teams limits)."""
    if change.action is Action.CREATE:
        return len(change.add)
    if change.action is not Action.UPDATE:
        return 0
    return len(change.add) + len(change.remove) + 2 * len(change.role_changes)


def planned_requests(change: Change) -> int:
    """The Graph requests ``change`` needs when nothing goes wrong (retries, and the lookups of
    an unfinished creation, come on top and are reported apart)."""
    action = change.action
    extra = change.workspace.requests if change.workspace is not None else 0  # apps, tabs
    if action is Action.CREATE:
        return 1 + member_changes(change) + extra
    if action in (Action.RECONCILE, Action.DELETE):
        return 1 + extra
    if action is not Action.UPDATE:
        return 0  # forget, no-op: the state only
    topic = 1 if change.topic_change is not None and change.topic is not None else 0
    wanted = [*change.remove, *(r.member for r in change.role_changes)]
    listing = 1 if any(m.membership_id is None for m in wanted) else 0
    return topic + listing + member_changes(change) + extra


#: Recent gaps between two member changes of one chat that set the member pace (at least
#: ``_MIN_GAPS`` of them).
_GAPS, _MIN_GAPS = 200, 5


@dataclass(frozen=True)
class Work:
    """A snapshot: requests planned and done, the recent rate, the estimate of time left."""

    total: int
    done: int
    rate: float  # requests per second over the recent window
    eta_s: float | None  # None until there is a rate to go by


class WorkMeter:
    """Thread-safe account of the work done per planned change. ``member_interval(chat_id)``
    gives the seconds between two member changes of that chat (60/4 by Graph's documented
    limit, or what the pacer adapted it to)."""

    def __init__(
        self,
        changes: Sequence[Change],
        member_interval: Callable[[str], float],
        *,
        window_s: float = 20.0,
    ) -> None:
        self._lock = threading.Lock()
        self._planned = [planned_requests(c) for c in changes]
        self._members = [member_changes(c) for c in changes]
        self._chats = [c.chat_id or "" for c in changes]
        self._done = [0] * len(changes)
        self._last: list[float | None] = [None] * len(changes)
        self._finished = [False] * len(changes)
        self._member_interval = member_interval
        self._window_s = window_s
        # (elapsed, done, busy): busy is the time so far in which some change could go.
        self._samples: deque[tuple[float, int, float]] = deque()
        self._busy = 0.0
        self._gaps: deque[float] = deque(maxlen=_GAPS)
        self.total = sum(self._planned)

    def advance(self, index: int, successes: int, at: float) -> None:
        """Change ``index`` got ``successes`` more successful answers, the last at ``at``
        (seconds since the run started)."""
        if successes <= 0:
            return
        with self._lock:
            last = self._last[index]
            if last is not None and self._members[index] and successes == 1:
                self._gaps.append(at - last)
            self._done[index] = min(self._planned[index], self._done[index] + successes)
            self._last[index] = at

    def finish(self, index: int) -> None:
        """Change ``index`` ended (made, failed or skipped): none of its work is left."""
        with self._lock:
            self._done[index] = self._planned[index]
            self._finished[index] = True

    def _chat_bound(self, n: int, elapsed: float, seen: float | None) -> float:
        """The least time change ``n`` still needs at its chat's member-change pace."""
        left = min(self._members[n], self._planned[n] - self._done[n])
        if self._finished[n] or left <= 0:
            return 0.0
        interval = seen if seen is not None else self._member_interval(self._chats[n])
        last = self._last[n]
        if last is None:  # nothing made yet: the first change may go now
            return (left - 1) * interval
        return max(0.0, last + left * interval - elapsed)

    def snapshot(self, elapsed: float, *, busy: bool = True) -> Work:
        """The work at ``elapsed`` seconds; ``busy``: some change could go since the last
        snapshot (False while every change waits for its chat's own limit)."""
        with self._lock:
            done = sum(self._done)
            left = self.total - done
            seen = statistics.median(self._gaps) if len(self._gaps) >= _MIN_GAPS else None
            bound = max(
                (self._chat_bound(n, elapsed, seen) for n in range(len(self._done))), default=0
            )
            if self._samples and busy:
                self._busy += elapsed - self._samples[-1][0]
            self._samples.append((elapsed, done, self._busy))
            while len(self._samples) > 2 and self._samples[1][0] <= elapsed - self._window_s:
                self._samples.popleft()
            (t0, d0, b0), (t1, d1, b1) = self._samples[0], self._samples[-1]
        rate = (d1 - d0) / (t1 - t0) if t1 > t0 else 0.0
        pace = (d1 - d0) / (b1 - b0) if b1 > b0 else rate
        if left == 0:
            return Work(self.total, done, rate, 0.0)
        if pace <= 0:
            return Work(self.total, done, rate, None)
        return Work(self.total, done, rate, max(left / pace, bound))
