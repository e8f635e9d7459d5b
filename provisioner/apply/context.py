"""What the steps of an apply share: the Graph calls they make, what they need from the
executor, and how they match members (by object id, UPN or email, case-insensitively)."""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from provisioner.apply.reconcile import DEFAULT_CLOCK_SKEW, ChatReader
from provisioner.apply.results import Outcome
from provisioner.states.records import MemberRecord, State
from provisioner.states.settling import DEFAULT_CONSISTENCY_WINDOW_S

#: A planned change as steps: yields the monotonic time its next step may start, returns its
#: `Outcome` (see ``apply/steps.py``).
Steps = Generator[float, None, Outcome]


class ChatApi(ChatReader, Protocol):
    """The part of `provisioner.graph.client.GraphClient` apply uses. A client may also offer
    ``graph_now()`` (Graph's time, issue 20); without it the host's time stands in."""

    def create_chat(self, body: Mapping[str, Any], *, idempotent: bool) -> dict[str, Any]: ...

    def update_chat_topic(self, chat_id: str, topic: str) -> dict[str, Any]: ...

    def add_member(self, chat_id: str, body: Mapping[str, Any]) -> dict[str, Any]: ...

    def remove_member(self, chat_id: str, membership_id: str) -> None: ...

    def delete_chat(self, chat_id: str) -> None: ...


@dataclass
class StepContext:
    """What the steps need from the executor.

    ``record(fn)`` applies ``fn`` to the state and returns once that is durable (``fn`` changes
    the state through its methods, which note each change for the journal). ``interval(kind,
    key)`` is the current spacing (s) of a pacing scope; ``turn_in(kind)`` the wait before a
    tenant-wide scope admits a request (nothing taken). ``requests()`` counts the Graph
    requests this thread has made (to measure what a reconciliation costs);
    ``reconciled(n, s)`` reports one settled creation that took ``n`` requests and ``s``
    seconds; ``waiting(key, what)`` says what a chat put aside waits for (None: no longer);
    ``confirm_lock()`` raises unless the run still holds the state's lock; ``graph_now()`` is
    Graph's time (None: unknown).
    """

    client: ChatApi
    record: Callable[[Callable[[State], Any]], Any]
    users: Mapping[str, str]
    graph_url: str
    clock: Callable[[], float]
    wallclock: Callable[[], float]
    interval: Callable[[str, str], float]
    turn_in: Callable[[str], float] = lambda kind: 0.0
    requests: Callable[[], int] = lambda: 0
    reconciled: Callable[[int, float], None] = lambda n, seconds: None
    waiting: Callable[[str, str | None], None] = lambda key, what: None
    # Raises (LockError) unless the run still holds the state's lock: asked before each
    # ``POST /chats``, so a run whose lease was broken creates nothing more (issue 20).
    confirm_lock: Callable[[], None] = lambda: None
    consistency_window_s: float = DEFAULT_CONSISTENCY_WINDOW_S
    clock_skew: timedelta = DEFAULT_CLOCK_SKEW
    anchor: str | None = None  # whose chats lookups list (the signed-in user, delegated)
    # Graph's time (``GraphClient.graph_now``): what creations are journaled and aged by, so
    # that matching never depends on the host's clock agreeing with Graph's (issue 20).
    graph_now: Callable[[], datetime | None] = lambda: None


def opt(value: object) -> str | None:
    return None if value is None else str(value)


def membership_index(members: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """userId and email (lower case) -> membership id."""
    index: dict[str, str] = {}
    for m in members:
        mid = m.get("id")
        if not mid:
            continue
        for k in (m.get("userId"), m.get("email")):
            if k:
                index.setdefault(str(k).lower(), str(mid))
    return index


def member_keys(member: MemberRecord) -> list[str]:
    keys = [member.object_id.lower()] if member.object_id else []
    return [*keys, member.user.lower()]


def first_known(member: MemberRecord, index: Mapping[str, str | None]) -> str | None:
    return next((v for k in member_keys(member) if (v := index.get(k))), None)


def same_member(a: MemberRecord, b: MemberRecord) -> bool:
    return bool(set(member_keys(a)) & set(member_keys(b)))
