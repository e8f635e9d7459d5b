"""Seeded fault injection: the failures a careful Graph client must survive.

Kinds (``concepts/errors.md`` for the statuses):

* ``429``     throttled although no limit was reached ("It is possible to receive 429 ...
              even when the following limits are not reached", ``throttling-limits.md``);
              nothing is done, ``Retry-After`` is sent.
* ``503``     Service Unavailable with ``Retry-After``; nothing is done.
* ``504``     Gateway Timeout *after* the change was made (the ambiguous case that makes a
              careless client create a group chat twice).
* ``drop``    the connection is closed without any response, *after* the change was made.
* ``latency`` the response is delayed by ``ms`` milliseconds (default 1000).

Spec syntax (``--fault``, repeatable)::

    KIND=RATE[,method=METHOD][,path=GLOB][,chat-type=oneOnOne|group][,ms=N]

``RATE`` is the probability (0..1) per matching request. ``path`` is an fnmatch glob over the
route template, e.g. ``/chats``, ``/chats/{chat-id}/members``, ``/chats/*``; ``chat-type``
matches the ``chatType`` of a ``POST /chats`` body. Example: ``504=0.2,method=POST,path=/chats,
chat-type=group`` makes one group-chat creation in five time out after the chat was created.
Inside ``$batch`` each item rolls on its own; a ``drop`` there loses the whole batch response.
"""

from __future__ import annotations

import fnmatch
import random
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from provisioner.emulator.errors import EmulatorError

BEFORE_KINDS = ("429", "503")  # rejected, nothing done
AFTER_KINDS = ("504", "drop")  # the change is made, then the answer is lost
FAULT_KINDS = (*BEFORE_KINDS, *AFTER_KINDS, "latency")
METHODS = ("GET", "POST", "PATCH", "PUT", "DELETE")


@dataclass(frozen=True)
class FaultRule:
    kind: str
    rate: float
    method: str | None = None
    path: str | None = None
    chat_type: str | None = None
    ms: int = 1000

    def matches(self, method: str, route: str, chat_type: str | None) -> bool:
        if self.method and self.method != method:
            return False
        if self.path and not fnmatch.fnmatchcase(route, self.path):
            return False
        return not (self.chat_type and self.chat_type != chat_type)


#: The longest latency fault (ms): ten minutes, longer than any client waits.
MAX_FAULT_MS = 600_000


def parse_fault(spec: str) -> FaultRule:
    """Parse ``KIND=RATE[,key=value...]`` (see the module docstring)."""
    head, *options = [part.strip() for part in spec.split(",")]
    kind, sep, rate_text = head.partition("=")
    kind = kind.strip().lower()
    if not sep or kind not in FAULT_KINDS:
        raise EmulatorError(
            f"invalid fault {spec!r}: expected KIND=RATE with KIND one of {', '.join(FAULT_KINDS)}"
        )
    try:
        rate = float(rate_text)
    except ValueError:
        rate = -1.0
    if not 0.0 <= rate <= 1.0:
        raise EmulatorError(f"invalid fault {spec!r}: RATE must be a number from 0 to 1")
    fields: dict[str, str] = {}
    for option in options:
        key, sep, value = option.partition("=")
        key = key.strip().lower().replace("_", "-")
        if not sep or key not in ("method", "path", "chat-type", "ms"):
            raise EmulatorError(
                f"invalid fault {spec!r}: unknown option {option!r} "
                "(expected method=, path=, chat-type= or ms=)"
            )
        fields[key] = value.strip()
    method = fields.get("method", "").upper() or None
    if method and method not in METHODS:
        raise EmulatorError(f"invalid fault {spec!r}: unknown method {method!r}")
    chat_type = fields.get("chat-type") or None
    if chat_type and chat_type not in ("oneOnOne", "group"):
        raise EmulatorError(f"invalid fault {spec!r}: chat-type must be oneOnOne or group")
    ms = 1000
    if "ms" in fields:
        text = fields["ms"]
        if kind != "latency" or not text.isdigit() or len(text) > 9 or int(text) > MAX_FAULT_MS:
            raise EmulatorError(
                f"invalid fault {spec!r}: ms=N (an integer, 0 to {MAX_FAULT_MS}) is for "
                "latency only"
            )
        ms = int(text)
    return FaultRule(kind, rate, method, fields.get("path") or None, chat_type, ms)


FaultsArg = Iterable[str | FaultRule] | Mapping[str, float] | None


def normalize_faults(faults: FaultsArg) -> list[FaultRule]:
    """Accept spec strings, ``FaultRule`` objects or a ``{kind: rate}`` mapping."""
    if faults is None:
        return []
    if isinstance(faults, Mapping):
        return [parse_fault(f"{kind}={rate}") for kind, rate in faults.items()]
    return [f if isinstance(f, FaultRule) else parse_fault(f) for f in faults]


class FaultInjector:
    """Rolls the configured faults with one seeded RNG (deterministic for a given request
    sequence; concurrent clients interleave nondeterministically, as on a real network)."""

    def __init__(self, rules: Iterable[FaultRule], rng: random.Random) -> None:
        self.rules = list(rules)
        self._rng = rng
        self._lock = threading.Lock()

    def _roll(self, rule: FaultRule) -> bool:
        if rule.rate <= 0.0:
            return False
        with self._lock:
            return self._rng.random() < rule.rate

    def pick(
        self, kinds: tuple[str, ...], method: str, route: str, chat_type: str | None
    ) -> FaultRule | None:
        """The first rule of one of ``kinds`` that matches and fires, if any."""
        for rule in self.rules:
            if rule.kind in kinds and rule.matches(method, route, chat_type) and self._roll(rule):
                return rule
        return None

    def latency_ms(self, method: str, route: str, chat_type: str | None) -> int:
        return sum(
            rule.ms
            for rule in self.rules
            if rule.kind == "latency"
            and rule.matches(method, route, chat_type)
            and self._roll(rule)
        )
