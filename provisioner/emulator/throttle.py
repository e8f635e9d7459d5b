"""Throttling as Graph documents it for Teams chats: token buckets that answer 429.

Limits come from ``concepts/throttling-limits.md``, "Microsoft Teams service limits" (the
table lives in ``includes/throttling-teams.md``) and from ``api-reference/v1.0/api/
chat-delete.md``. Each rule is a bucket of ``count`` requests refilled over ``per_seconds``;
a request must find a token in *every* bucket that applies to it ("the first limit to be
reached triggers throttling behavior").

``throttling.md`` says Graph "continues to log resource usage while a client is being
throttled": a throttled request also takes a token, so the bucket goes into debt (bounded at
one capacity below zero) and a client that ignores ``Retry-After`` stays throttled longer.
``Retry-After`` is the exact time until the bucket holds a token again, so a client that waits
it (alone) succeeds.

``--limits xN`` compresses time by N: every bucket refills N times faster, capacities (the
burst a bucket allows) stay as documented.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from provisioner.emulator.errors import EmulatorError


@dataclass(frozen=True)
class Rule:
    name: str
    count: int
    per_seconds: float


# concepts/throttling-limits.md, Microsoft Teams service limits, "Limit per app per tenant":
TEAMS_READ = Rule("teams-read", 30, 1.0)  # "Other GET API calls for Microsoft Teams": 30 rps
TEAMS_WRITE = Rule("teams-write", 30, 1.0)  # "Other API calls for Microsoft Teams": 30 rps
MEMBER_ADD = Rule("chat-member-add", 30, 1.0)  # "POST chat member": 30 rps
MEMBER_REMOVE = Rule("chat-member-remove", 30, 1.0)  # "Delete chat member": 30 rps
# ... "Limit per app per tenant per resource (chat/channel)" for the member rows: 4 rpm.
MEMBER_ADD_PER_CHAT = Rule("chat-member-add-per-chat", 4, 60.0)
MEMBER_REMOVE_PER_CHAT = Rule("chat-member-remove-per-chat", 4, 60.0)
# "A maximum of one request per second per app per tenant can be issued on a given ... chat."
PER_CHAT = Rule("per-chat", 1, 1.0)
# "A maximum of five requests per second per user can be issued when doing List chats or Get
# chat": keyed by the user whose chats are listed.
PER_USER_CHAT_READS = Rule("per-user-chat-reads", 5, 1.0)
# api-reference/v1.0/api/chat-delete.md: "One delete request per second per tenant is allowed."
CHAT_DELETE = Rule("chat-delete", 1, 1.0)
# GET /users is not Teams but "Identity and access service limits": application+tenant pair,
# size S (under 50 users): 3,500 requests per 10 seconds (each GET user costs 1).
IDENTITY = Rule("identity", 3500, 10.0)

Demand = tuple[Rule, str]  # a rule and the key of its bucket (tenant, chat id, user id)


MIN_SCALE = 0.001
MAX_SCALE = 1000.0


def parse_limits(value: str | float | None) -> float | None:
    """``documented`` -> 1.0, ``off`` -> None (no throttling), ``xN`` (or a number) -> N."""
    if value is None:
        return None
    if isinstance(value, (int, float)):
        scale = float(value)
    else:
        text = value.strip().lower()
        if text == "documented":
            return 1.0
        if text == "off":
            return None
        number = text[1:] if text.startswith("x") else text[:-1] if text.endswith("x") else text
        try:
            scale = float(number)
        except ValueError:
            raise EmulatorError(
                f"invalid limits {value!r}: expected 'documented', 'off' or xN (e.g. x10)"
            ) from None
    # x0.001 makes Teams' 1 rps per chat one request per 17 min; x1000 is past any test.
    if not MIN_SCALE <= scale <= MAX_SCALE:  # NaN too
        raise EmulatorError(
            f"invalid limits {value!r}: the scale factor must be from {MIN_SCALE:g} to "
            f"{MAX_SCALE:g}"
        )
    return scale


class _Bucket:
    __slots__ = ("capacity", "rate", "stamp", "tokens")

    def __init__(self, capacity: float, rate: float, now: float) -> None:
        self.capacity = capacity
        self.rate = rate
        self.tokens = capacity
        self.stamp = now

    def refill(self, now: float) -> None:
        if now > self.stamp:
            self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now


class Throttler:
    """All buckets of one emulated app+tenant. ``scale=None`` disables throttling."""

    def __init__(self, scale: float | None, clock: Callable[[], float] = time.monotonic) -> None:
        self.scale = scale
        self._clock = clock
        self._buckets: dict[tuple[str, str], _Bucket] = {}
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.scale is not None

    def acquire(self, demands: Sequence[Demand]) -> float | None:
        """Take one token from every bucket; ``None`` if allowed, else seconds to wait."""
        if self.scale is None or not demands:
            return None
        with self._lock:
            now = self._clock()
            buckets = []
            for rule, key in demands:
                bucket = self._buckets.get((rule.name, key))
                if bucket is None:
                    rate = rule.count / rule.per_seconds * self.scale
                    bucket = self._buckets[(rule.name, key)] = _Bucket(rule.count, rate, now)
                bucket.refill(now)
                buckets.append(bucket)
            short = [b for b in buckets if b.tokens < 1.0]
            if not short:
                for b in buckets:
                    b.tokens -= 1.0
                return None
            for b in short:  # the throttled request still counts (see module docstring)
                b.tokens = max(b.tokens - 1.0, -b.capacity)
            return max((1.0 - b.tokens) / b.rate for b in short)
