"""Updating a chat in place: its topic (``PATCH``), members added and removed, role changes.

Each call is a step: a chat may take one request per second and four member changes per minute
(``includes/throttling-teams.md``), so between two calls the chat yields the time its next call
may start and the executor serves other chats meanwhile. Every call's result is recorded in the
state before the next one, so a stopped run leaves the chat's real membership in the state.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import datetime, timezone

from provisioner.apply.context import (
    StepContext,
    Steps,
    first_known,
    member_keys,
    membership_index,
    opt,
    same_member,
)
from provisioner.apply.results import UPDATED, Outcome
from provisioner.graph.errors import (
    AmbiguousOutcome,
    GraphAuthError,
    GraphError,
    GraphNotFound,
    GraphPermissionError,
    ThrottledError,
)
from provisioner.graph.pacing import CHAT, CHAT_MEMBERS
from provisioner.models import Member
from provisioner.plans.live import object_id_of
from provisioner.plans.types import Change
from provisioner.states.records import ChatRecord, MemberRecord
from provisioner.states.settling import ADDED, REMOVED, Settling


def update_steps(ctx: StepContext, change: Change) -> Steps:
    """The steps of an ``update`` change: topic, then members added, removed, re-roled."""
    chat_id = change.chat_id
    if chat_id is None:
        raise ValueError(f"{change.key}: an update without a chat id")
    update = _ChatUpdate(ctx, change, chat_id)
    update.set_topic()
    yield from update.read_memberships()
    for member in change.add:
        yield from update.add(member)
    for member in change.remove:
        yield from update.remove(member)
    for role_change in change.role_changes:
        yield from update.change_role(role_change.member)
    return update.finish()


class _ChatUpdate:
    """One update in progress: the chat as recorded so far (members, topic), the membership
    ids read from Graph, and when the chat's next call (and next member change) may start."""

    def __init__(self, ctx: StepContext, change: Change, chat_id: str) -> None:
        self.ctx = ctx
        self.change = change
        self.chat_id = chat_id
        before = change.before
        self.current = list(before.members) if before is not None else list(change.members)
        self.topic = before.topic if before is not None else change.topic
        self.created_at = before.created_at if before is not None else None
        # Membership changes Graph's lists may not show yet (states.records.Settling).
        self.settling = list(before.settling) if before is not None else []
        self.known: dict[str, str] = {}
        self.next_call = -1.0  # monotonic time before which this chat's next call would wait
        self.next_member = -1.0

    def set_topic(self) -> None:
        # The planner never plans clearing a topic (chat-patch.md documents no way to), so a
        # topic change always carries the new topic.
        topic = self.change.topic
        if self.change.topic_change is None or topic is None:
            return
        started = self.ctx.clock()
        self.ctx.client.update_chat_topic(self.chat_id, topic)
        self.topic = topic
        self.save()
        self.next_call = started + self.ctx.interval(CHAT, self.chat_id)

    def read_memberships(self) -> Iterator[float]:
        wanted = [*self.change.remove, *(r.member for r in self.change.role_changes)]
        if all(m.membership_id is not None for m in wanted):
            return
        # Removing a member needs its membership id (chat-delete-members.md).
        yield from self.pace(member_change=False)
        started = self.ctx.clock()
        self.known = membership_index(self.ctx.client.list_members(self.chat_id))
        self.next_call = started + self.ctx.interval(CHAT, self.chat_id)

    def add(self, member: MemberRecord) -> Iterator[float]:
        yield from self.pace(member_change=True)
        history = self.change.history
        self.member_call(lambda: _add(self.ctx, self.chat_id, member, history=history))
        self.settled(member, ADDED)
        self.save()

    def remove(self, member: MemberRecord) -> Iterator[float]:
        mid = self.membership(member)
        if mid is not None:
            yield from self.pace(member_change=True)
            self.member_call(lambda: _remove(self.ctx, self.chat_id, mid))
            self.settled(member, REMOVED)
        self.current = [c for c in self.current if not same_member(c, member)]
        self.save()

    def change_role(self, member: MemberRecord) -> Iterator[float]:
        # Graph cannot change a chat member's role in place (conversationmember-update.md
        # covers teams and channels only): remove the membership, add it with the new role.
        if self.membership(member) is not None:  # else it is not a member now: only add
            yield from self.remove(member)
        yield from self.add(replace(member, membership_id=None))

    def finish(self) -> Outcome:
        # The final record is the plan's "after" view, with the membership ids learned.
        change = self.change
        learned = {
            k: c.membership_id for c in self.current if c.membership_id for k in member_keys(c)
        }
        members = tuple(
            replace(m, membership_id=first_known(m, learned) or self.membership(m))
            for m in change.members
        )
        final = ChatRecord(
            self.chat_id,
            change.chat_type,
            members,
            change.topic,
            self.created_at,
            tuple(self.settling),
        )
        self.ctx.record(lambda s: s.put_chat(change.key, final))
        return Outcome(change.key, change.action, UPDATED, self.chat_id)

    def save(self) -> None:
        record = ChatRecord(
            self.chat_id,
            self.change.chat_type,
            tuple(self.current),
            self.topic,
            self.created_at,
            tuple(self.settling),
        )
        self.ctx.record(lambda s: s.put_chat(self.change.key, record))

    def settled(self, member: MemberRecord, change: str) -> None:
        """Note a membership change until Graph's lists can be trusted to show it (the
        consistency window), so that a refresh meanwhile does not report it as drift."""
        oid = member.object_id or object_id_of(member.user, self.ctx.users)
        if oid is None:
            return
        now = self.ctx.wallclock()
        until = datetime.fromtimestamp(now + self.ctx.consistency_window_s, tz=timezone.utc)
        self.settling = [
            s for s in self.settling if s.object_id.lower() != oid.lower() and s.until > _iso(now)
        ]
        self.settling.append(Settling(oid.lower(), change, _iso_dt(until)))

    def pace(self, *, member_change: bool) -> Iterator[float]:
        """Yields the time the chat's next call may start, when that is still to come."""
        at = max(self.next_call, self.next_member if member_change else -1.0)
        wait = at if at > self.ctx.clock() else 0.0
        if wait:
            yield wait

    def membership(self, member: MemberRecord) -> str | None:
        return member.membership_id or next(
            (self.known[k] for k in member_keys(member) if k in self.known), None
        )

    def member_call(self, call: Callable[[], MemberRecord | None]) -> None:
        started = self.ctx.clock()
        added = call()
        self.next_call = started + self.ctx.interval(CHAT, self.chat_id)
        self.next_member = started + self.ctx.interval(CHAT_MEMBERS, self.chat_id)
        if added is not None:
            self.current = [c for c in self.current if not same_member(c, added)] + [added]


def _add(
    ctx: StepContext, chat_id: str, member: MemberRecord, *, history: str | None = None
) -> MemberRecord:
    # chat-post-members.md; ``history`` sets visibleHistoryStartDateTime (examples 2, 3).
    body = Member(member.user, member.role, member.tenant_id).request_body(
        ctx.graph_url, history=history
    )
    try:
        added = ctx.client.add_member(chat_id, body)
    except GraphError as exc:
        # "Already a member" has no documented answer (chat-post-members.md lists 201 only;
        # the OpenAPI description, 2XX and a default error): after a refused or unanswered
        # add (a retried add whose first attempt had worked), the member list decides.
        if not _worth_a_look(exc):
            raise
        mid = _listed_membership(ctx, chat_id, member)
        if mid is None:
            raise
        return replace(member, membership_id=mid, object_id=_object_id(ctx, member, None))
    return replace(
        member,
        membership_id=opt(added.get("id")) or member.membership_id,
        object_id=_object_id(ctx, member, added.get("userId")),
    )


def _object_id(ctx: StepContext, member: MemberRecord, listed: object) -> str | None:
    return member.object_id or opt(listed) or object_id_of(member.user, ctx.users)


def _worth_a_look(exc: GraphError) -> bool:
    """An add Graph refused for something other than throttling, permissions or a missing
    chat, or whose outcome is unknown: the member may be in the chat already."""
    if isinstance(exc, (ThrottledError, GraphNotFound, GraphPermissionError, GraphAuthError)):
        return False
    return isinstance(exc, AmbiguousOutcome) or 400 <= exc.status < 500


def _listed_membership(ctx: StepContext, chat_id: str, member: MemberRecord) -> str | None:
    """The member's membership id if the chat's member list shows them, else None."""
    index = membership_index(ctx.client.list_members(chat_id))
    oid = member.object_id or object_id_of(member.user, ctx.users)
    probe = replace(member, object_id=oid)
    return next((index[k] for k in member_keys(probe) if k in index), None)


def _remove(ctx: StepContext, chat_id: str, membership_id: str) -> None:
    with contextlib.suppress(GraphNotFound):  # already gone: the outcome wanted
        ctx.client.remove_member(chat_id, membership_id)
    return None


def _iso_dt(at: datetime) -> str:
    return at.isoformat(timespec="seconds").replace("+00:00", "Z")


def _iso(ts: float) -> str:
    return _iso_dt(datetime.fromtimestamp(ts, tz=timezone.utc))
