"""Client-side pacing under Microsoft Graph's documented throttling limits.

Graph evaluates every request against several limits at once (per app per tenant, per chat,
...) and the first one reached throttles (``concepts/throttling-limits.md``). A `Pacer` keeps
one rate limiter per *scope* of such a limit, shared by every worker thread, and lets a request
go only when all of its scopes allow it. The documented Teams numbers are in
``includes/throttling-teams.md`` of ``microsoftgraph/microsoft-graph-docs-contrib``:

* "Other API calls for Microsoft Teams": 30 rps per app per tenant (writes), and the same for
  "Other GET API calls" (reads), counted separately;
* "A maximum of one request per second per app per tenant can be issued on a given ...
  chat";
* "POST chat member" / "Delete chat member": 4 requests per minute per chat;
* "A maximum of five requests per second per user ... List chats or Get chat";
* ``api-reference/v1.0/api/chat-delete.md``: "One delete request per second per tenant".

The documented rate is only an upper bound: another app in the same tenant, or a limit the
docs do not list, can make the real one lower. So each scope adapts (AIMD): a 429 pauses the
whole scope until its ``Retry-After`` has passed (`MAX_PAUSE` at most) and cuts the scope's
rate (multiplicative decrease, once per congestion event rather than once per 429, since the
requests already in flight when we react were sent at the old rate); the rate then climbs
back, quickly up to just below the rate that last failed, then slowly (additive increase) up
to the documented rate.

Rate limiting is a GCRA ("virtual scheduling" token bucket): a scope at rate ``r`` admits one
request every ``1/r`` seconds, with a tolerance of ``slack/r`` so that a thread waking a few
milliseconds late costs no throughput while the scope stays busy. Nothing here sleeps in
tests: ``clock`` and ``sleep`` are injected.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

#: Workers of an apply (the CLI's ``--concurrency``, the executor's default).
#: suggested_concurrency(30 rps, 0.4 s round trips) is 18 once running, but a run starts with a
#: burst of most of a second's requests (the Pacer's ``burst``: Graph's token bucket is full at
#: the start): all of them are in flight at once (issue 26).
DEFAULT_CONCURRENCY = 32

# Scope kinds. A scope is a kind plus a key (a chat id, a user id; "" for tenant-wide ones).
TENANT_WRITE = "tenant-write"
TENANT_READ = "tenant-read"
TENANT_DELETE = "tenant-delete"
CHAT = "chat"
CHAT_MEMBERS = "chat-members"
USER_CHATS = "user-chats"
DIRECTORY_READ = "directory-read"
TENANT_TABS = "tenant-tabs"

#: The longest one answer's ``Retry-After`` pauses a scope, i.e. every request sharing it
#: (issue 20: one 429 with ``Retry-After: 99999`` froze every write of a run for a day).
#: Graph's Retry-After values are reported at 10-20 s, SharePoint's up to 300 s
#: (learn.microsoft.com/answers/questions/648796); two minutes covers Graph's own, and a
#: longer pause is left to each request: its own wait is capped by the client
#: (``retry.Limits.max_retry_after``), and a request told to wait longer fails on its own.
#: The others learn the real wait from their own answers, at the cost of one request each.
MAX_PAUSE = 120.0

#: Kinds whose rate ``--max-rps`` overrides: the per-tenant request rates a user can know better
#: than the docs (a tenant shared with other apps, an emulator with scaled limits).
TENANT_KINDS = frozenset({TENANT_WRITE, TENANT_READ})


@dataclass(frozen=True)
class Limit:
    """A documented sustained rate (requests per second) and the doc that says so."""

    rate: float
    source: str


#: Member additions and removals Graph allows per chat per minute (includes/throttling-teams.md).
MEMBER_CHANGES_PER_MINUTE = 4.0

DOCUMENTED_LIMITS: Mapping[str, Limit] = {
    TENANT_WRITE: Limit(
        30.0,
        "includes/throttling-teams.md: Other API calls for Microsoft Teams, 30 rps per app "
        "per tenant",
    ),
    TENANT_READ: Limit(
        30.0,
        "includes/throttling-teams.md: Other GET API calls for Microsoft Teams, 30 rps per app "
        "per tenant",
    ),
    CHAT: Limit(
        1.0,
        "includes/throttling-teams.md: one request per second per app per tenant on a given chat",
    ),
    CHAT_MEMBERS: Limit(
        MEMBER_CHANGES_PER_MINUTE / 60.0,
        "includes/throttling-teams.md: POST/Delete chat member, 4 rpm per chat",
    ),
    TENANT_DELETE: Limit(
        1.0, "api-reference/v1.0/api/chat-delete.md: one delete request per second per tenant"
    ),
    USER_CHATS: Limit(
        5.0,
        "includes/throttling-teams.md: five requests per second per user for List chats / Get chat",
    ),
    TENANT_TABS: Limit(
        # includes/throttling-teams.md gives "POST/PUT channel, tab, installedApps" 30 rps per
        # app per tenant, but tab POSTs were observed throttled at about 5 rps
        # (microsoft-graph-docs-contrib#3192); tab writes stay under that, and adapt further
        # on a 429 as every scope does.
        4.0,
        "includes/throttling-teams.md (30 rps) and microsoft-graph-docs-contrib#3192: tab "
        "POSTs throttled at ~5 rps",
    ),
    DIRECTORY_READ: Limit(
        # The smallest tenant size (S) of the identity limits: 3,500 resource units per 10 s
        # per app+tenant pair; GET user costs 1 unit.
        350.0,
        "concepts/throttling-limits.md: identity and access, 3,500 requests per 10 seconds "
        "(S tenants)",
    ),
}


@dataclass(frozen=True, order=True)
class Scope:
    """One throttling scope a request counts against, e.g. ``Scope(CHAT, chat_id)``."""

    kind: str
    key: str = ""

    def __str__(self) -> str:
        return f"{self.kind}:{self.key}" if self.key else self.kind


class _Bucket:
    """Adaptive GCRA state of one scope. Guarded by the owning Pacer's lock."""

    __slots__ = (
        "ceiling",
        "credit",
        "event_bad",
        "event_from",
        "event_ok",
        "event_rate",
        "landed",
        "last_decrease",
        "max_rate",
        "min_rate",
        "paused_until",
        "rate",
        "tat",
        "throttled",
        "updated",
    )

    def __init__(self, max_rate: float, now: float, floor: float, credit: float = 0.0) -> None:
        self.max_rate = max_rate
        self.min_rate = max_rate * floor
        self.rate = max_rate
        self.ceiling = max_rate
        # Requests that may go at once, beyond the schedule: the part of Graph's full token
        # bucket a run may assume at its start (`Pacer` ``burst``). Spent once, never refilled.
        self.credit = credit
        self.tat = -math.inf  # theoretical arrival time of the next request
        self.paused_until = -math.inf
        self.last_decrease = -math.inf
        self.updated = now
        self.throttled = 0
        # The congestion event being measured: responses to requests sent in
        # [event_from, last_decrease) at event_rate, and how many of them Graph accepted.
        self.event_from = -math.inf
        self.event_rate = max_rate
        self.event_ok = 0
        self.event_bad = 0
        self.landed = math.inf  # the rate set by the last decrease

    def in_event(self, sent_at: float) -> bool:
        return self.event_from < sent_at < self.last_decrease

    def learn(self) -> None:
        """Estimate the real limit from the share of in-flight requests that got through."""
        total = self.event_ok + self.event_bad
        if total >= 3:
            estimate = self.event_rate * self.event_ok / total
            self.ceiling = max(self.min_rate, min(self.event_rate, estimate))


class Pacer:
    """Token buckets for every throttling scope, shared by all worker threads.

    ``limits`` overrides the rate of some scope kinds (the rest keep `DOCUMENTED_LIMITS`),
    e.g. an emulator's scaled limits;
    ``max_rps`` replaces the per-tenant request rates (`TENANT_KINDS`). ``decrease`` is the
    factor applied to a scope's rate on a 429; after it the rate recovers at ``fast_recovery``
    (fraction of the documented rate per second) up to ``approach`` times the estimated real
    limit, then probes upward at ``probe`` per second, never beyond the documented rate.

    The estimate is the rate that failed times the share of the requests in flight at that
    moment that Graph still accepted (they reached a saturated server); with fewer than three
    such answers it is the rate that failed.

    ``burst`` (seconds of the documented rate) is what a new scope may send at once: Graph's
    token buckets are full when a run starts, so ramping into the rate would waste most of a
    second of a 10-second run (issue 26). A 429 ends it. The defaults were tuned with the
    closed-loop simulation in ``tests/graph/test_pacing.py`` (32 workers, 150-300 or 400 ms
    round trips, a server bucket of one second of the documented rate that counts throttled
    requests, Retry-After): at the documented limit >= 0.95 of it with no 429; at half of
    it, unannounced, >= 0.90 of the real limit with about 4 % of requests answered 429
    (the ones in flight when the first 429 comes back).
    """

    def __init__(
        self,
        limits: Mapping[str, float] | None = None,
        *,
        max_rps: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        decrease: float = 0.7,
        first_decrease: float = 0.45,
        fast_recovery: float = 0.25,
        approach: float = 0.9,
        probe: float = 0.003,
        floor: float = 0.05,
        slack: float = 0.25,
        max_slack: float = 0.02,
        max_pause: float = MAX_PAUSE,
        burst: float = 0.8,
    ) -> None:
        if max_rps is not None and not max_rps > 0:
            raise ValueError("max_rps must be a positive number")
        if not (0 < decrease < 1 and 0 < first_decrease < 1):
            raise ValueError("decrease must be between 0 and 1")
        if not 0 <= burst <= 1:
            raise ValueError("burst must be between 0 and 1 (seconds of the documented rate)")
        rates = {kind: limit.rate for kind, limit in DOCUMENTED_LIMITS.items()}
        rates.update(limits or {})
        if max_rps is not None:
            for kind in TENANT_KINDS:
                rates[kind] = float(max_rps)
        self._rates = rates
        self._clock = clock
        self._sleep = sleep
        self._decrease = decrease
        self._first_decrease = first_decrease
        self._fast = fast_recovery
        self._approach = approach
        self._probe = probe
        self._floor = floor
        self._slack = slack
        self._max_slack = max_slack
        self._max_pause = max_pause
        self._burst = burst
        self._near = 1.25
        self._lock = threading.Lock()
        self._buckets: dict[Scope, _Bucket] = {}

    # -- public API -------------------------------------------------------------------------

    def clock(self) -> float:
        return self._clock()

    def try_acquire(self, scopes: Iterable[Scope], *, not_before: float = -math.inf) -> float:
        """Take a slot in every scope and return 0.0, or take none and return the wait (s).

        A scope listed twice costs two slots (a ``$batch`` of several requests on one scope).
        """
        cost = Counter(scopes)
        with self._lock:
            now = self._clock()
            ready = not_before
            buckets = []
            for scope, n in cost.items():
                bucket = self._bucket(scope, now)
                interval = 1.0 / bucket.rate
                ready = max(ready, bucket.paused_until)
                if n > bucket.credit:
                    # Conformant once the virtual schedule is at most a small tolerance ahead
                    # of real time, so a thread that wakes a little late costs no throughput.
                    # A request of several slots (a $batch) waits for its last one: Graph
                    # counts all its items when it arrives (json-batching.md), so going at
                    # the first slot would spend n - 1 slots early, beyond the bucket's burst.
                    tolerance = min(self._slack * interval, self._max_slack)
                    last = bucket.tat + (n - bucket.credit - 1) * interval
                    ready = max(ready, last - tolerance)
                buckets.append((bucket, n, interval))
            if ready > now:
                return ready - now
            for bucket, n, interval in buckets:
                spent = min(bucket.credit, float(n))
                bucket.credit -= spent
                if n > spent:
                    # The slots run from the schedule up to now (the last one is due now);
                    # a scope's first request starts its schedule (its burst is the credit).
                    slots = n - spent
                    start = now if bucket.tat == -math.inf else now - (slots - 1) * interval
                    bucket.tat = max(bucket.tat, start) + slots * interval
            return 0.0

    def delay(self, scopes: Iterable[Scope]) -> float:
        """Seconds until every scope would admit one more request (0.0: now). Takes no slot.

        Lets a caller do its preparation (apply journals a group creation) just before its
        turn rather than long before it."""
        with self._lock:
            now = self._clock()
            ready = -math.inf
            for scope in set(scopes):
                bucket = self._bucket(scope, now)
                ready = max(ready, bucket.paused_until)
                if bucket.credit < 1:
                    tolerance = min(self._slack / bucket.rate, self._max_slack)
                    ready = max(ready, bucket.tat - tolerance)
            return max(0.0, ready - now)

    def acquire(self, scopes: Iterable[Scope], *, not_before: float = -math.inf) -> float:
        """Block until every scope allows one more request; return the clock time granted."""
        wanted = list(scopes)
        while True:
            wait = self.try_acquire(wanted, not_before=not_before)
            if wait <= 0:
                return self._clock()
            self._sleep(wait)

    def throttled(
        self, scopes: Iterable[Scope], *, retry_after: float | None, sent_at: float
    ) -> None:
        """Graph answered 429 (or 503 with Retry-After) to a request sent at ``sent_at``.

        Graph does not say which of a request's limits was hit, so every scope of the request
        slows down: pausing only the narrowest one would keep hammering a tenant-wide limit.
        """
        with self._lock:
            now = self._clock()
            for scope in set(scopes):
                bucket = self._bucket(scope, now)
                bucket.throttled += 1
                bucket.credit = 0.0  # Graph's bucket is empty: no burst left to assume
                if retry_after is not None and retry_after > 0:
                    # Graph keeps counting while a client is throttled; waiting out
                    # Retry-After is the fastest way back (concepts/throttling.md). One
                    # answer pauses the others for MAX_PAUSE at most (see there).
                    pause = min(retry_after, self._max_pause)
                    bucket.paused_until = max(bucket.paused_until, now + pause)
                    bucket.tat = max(bucket.tat, bucket.paused_until)
                if sent_at >= bucket.last_decrease:
                    # One decrease per congestion event: requests sent before the previous
                    # decrease were paced at the old rate, their 429s say nothing new...
                    bucket.event_from = sent_at
                    bucket.event_rate = bucket.rate
                    bucket.event_ok = 0
                    bucket.event_bad = 0  # the sample starts after the request that failed
                    bucket.ceiling = bucket.rate
                    bucket.rate = bucket.landed = max(bucket.min_rate, self._decreased(bucket))
                    bucket.last_decrease = now
                    bucket.updated = max(now, bucket.paused_until)
                elif bucket.in_event(sent_at):
                    # ...but they measure how far above the real limit we were.
                    bucket.event_bad += 1
                    bucket.learn()

    def succeeded(self, scopes: Iterable[Scope], *, sent_at: float) -> None:
        """Graph accepted a request sent at ``sent_at`` (feeds the limit estimate)."""
        with self._lock:
            for scope in set(scopes):
                bucket = self._buckets.get(scope)
                if bucket is not None and bucket.in_event(sent_at):
                    bucket.event_ok += 1
                    bucket.learn()

    def rate(self, scope: Scope) -> float:
        """The current admitted rate of ``scope`` (requests per second)."""
        with self._lock:
            return self._bucket(scope, self._clock()).rate

    def paused_until(self, scope: Scope) -> float:
        with self._lock:
            return self._bucket(scope, self._clock()).paused_until

    def throttle_count(self, scope: Scope) -> int:
        with self._lock:
            return self._bucket(scope, self._clock()).throttled

    def documented_rate(self, kind: str) -> float:
        return self._rates[kind]

    # -- internals --------------------------------------------------------------------------

    def _bucket(self, scope: Scope, now: float) -> _Bucket:
        bucket = self._buckets.get(scope)
        if bucket is None:
            if scope.kind not in self._rates:
                raise KeyError(f"no rate limit known for scope kind {scope.kind!r}")
            if len(self._buckets) > 10_000:
                self._evict(now)
            rate = self._rates[scope.kind]
            credit = self._credit(scope.kind, rate)
            bucket = self._buckets[scope] = _Bucket(rate, now, self._floor, credit)
        else:
            self._recover(bucket, now)
        return bucket

    def _decreased(self, bucket: _Bucket) -> float:
        """The rate after a congestion event.

        The first 429 of a scope says only that the real limit is below the documented one,
        maybe far below (another app in the tenant): ``first_decrease`` lands under half of
        it at once, rather than in several steps that each cost a round trip of 429s. Later
        events happen near a limit already found: probing just above the rate the last event
        landed on puts the limit between the two, so back to just under that landing; else
        the usual ``decrease``."""
        if bucket.landed == math.inf:
            return bucket.rate * self._first_decrease
        if bucket.rate <= self._near * bucket.landed:
            return min(bucket.rate, bucket.landed) * 0.95
        return bucket.rate * self._decrease

    def _credit(self, kind: str, rate: float) -> float:
        """The requests a new scope may send at once: ``burst`` seconds of its rate, less the
        one its schedule admits anyway; none for scopes of one request at a time (a chat).
        Never more than the documented rate gives: a faster rate (``--max-rps``, a scaled
        emulator) says nothing about a bigger bucket."""
        documented = DOCUMENTED_LIMITS[kind].rate if kind in DOCUMENTED_LIMITS else rate
        return float(max(0, math.floor(min(rate, documented) * self._burst) - 1))

    def _recover(self, bucket: _Bucket, now: float) -> None:
        """Raise the rate for the time elapsed since the last update (not counting pauses)."""
        start = max(bucket.updated, bucket.paused_until)
        if now <= start or bucket.rate >= bucket.max_rate:
            bucket.updated = max(bucket.updated, now)
            return
        dt = now - start
        bucket.updated = now
        rate = bucket.rate
        knee = min(bucket.max_rate, self._approach * bucket.ceiling)
        if rate < knee:
            # Well below the rate that failed last time: nothing to learn down here.
            fast = self._fast * bucket.max_rate
            needed = (knee - rate) / fast
            if dt <= needed:
                bucket.rate = rate + fast * dt
                return
            dt -= needed
            rate = knee
        # Near or above the last failure: probe gently, so the next overshoot is small.
        bucket.rate = min(bucket.max_rate, rate + self._probe * bucket.max_rate * dt)

    def _evict(self, now: float) -> None:
        # Per-chat scopes are short-lived; drop the ones that are idle, unpaused and back at
        # full rate (recreating them later gives the same state).
        for scope in [
            scope
            for scope, b in self._buckets.items()
            if b.tat < now - 60 and b.paused_until < now and b.rate >= b.max_rate
        ]:
            del self._buckets[scope]


def backoff_delay(
    attempt: int,
    *,
    base: float = 0.5,
    cap: float = 60.0,
    rand: Callable[[], float] = random.random,
) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(cap, base * 2**attempt)).

    Used when Graph throttles or fails without a Retry-After; the jitter keeps the workers
    that failed together from retrying together.
    """
    return rand() * min(cap, base * (2.0 ** max(0, attempt)))


def suggested_concurrency(rate: float, latency: float, *, headroom: float = 1.5) -> int:
    """Workers needed so that round-trip latency does not cap ``rate`` (Little's law)."""
    return max(1, math.ceil(rate * latency * headroom))
