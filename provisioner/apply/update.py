"""Updating a chat in place: its topic (``PATCH``), members added and removed, role changes.

Each call is a step: a chat may take one request per second and four member changes per minute
(``includes/throttling-teams.md``), so between two calls the chat yields the time its next call
may start and the executor serves other chats meanwhile. Every call's result is recorded in the
state before the next one, so a stopped run leaves the chat's real membership in the state.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from dataclasses import replace
from typing import TypeVar

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
from provisioner.graph.errors import GraphError, GraphNotFound
from provisioner.graph.pacing import CHAT, CHAT_MEMBERS
from provisioner.models import Member
from provisioner.plans.live import object_id_of
from provisioner.plans.types import Change
from provisioner.states.records import ChatRecord, MemberRecord

T = TypeVar("T")


def update_steps(ctx: StepContext, change: Change) -> Steps:
    """The steps of an ``update`` change: topic, then members added, removed, re-roled."""
    chat_id = change.chat_id
    if chat_id is None:
        raise ValueError(f"{change.key}: an update without a chat id")
    before = change.before
    current = list(before.members) if before is not None else list(change.members)
    topic = before.topic if before is not None else change.topic
    created_at = before.created_at if before is not None else None
    next_call = -1.0  # monotonic time before which this chat's next call would wait
    next_member = -1.0

    def save() -> None:
        record = ChatRecord(chat_id, change.chat_type, tuple(current), topic, created_at)
        ctx.record(lambda s: s.put_chat(change.key, record))

    def paced(member_change: bool) -> float:
        at = max(next_call, next_member if member_change else -1.0)
        return at if at > ctx.clock() else 0.0

    # The planner never plans clearing a topic (chat-patch.md documents no way to), so a
    # topic change always carries the new topic.
    if change.topic_change is not None and change.topic is not None:
        started = ctx.clock()
        ctx.client.update_chat_topic(chat_id, change.topic)
        topic = change.topic
        save()
        next_call = started + ctx.interval(CHAT, chat_id)

    known: dict[str, str] = {}
    wanted = [*change.remove, *(r.member for r in change.role_changes)]
    if any(m.membership_id is None for m in wanted):
        # Removing a member needs its membership id (chat-delete-members.md).
        if wait := paced(False):
            yield wait
        started = ctx.clock()
        known = membership_index(ctx.client.list_members(chat_id))
        next_call = started + ctx.interval(CHAT, chat_id)

    def membership(member: MemberRecord) -> str | None:
        return member.membership_id or next(
            (known[k] for k in member_keys(member) if k in known), None
        )

    def member_call(call: Callable[[str, T], MemberRecord | None], arg: T) -> None:
        nonlocal next_call, next_member, current
        started = ctx.clock()
        added = call(chat_id, arg)
        next_call = started + ctx.interval(CHAT, chat_id)
        next_member = started + ctx.interval(CHAT_MEMBERS, chat_id)
        if added is not None:
            current = [c for c in current if not same_member(c, added)] + [added]

    add = functools.partial(_add, ctx, history=change.history)
    for member in change.add:
        if wait := paced(True):
            yield wait
        member_call(add, member)
        save()
    for member in change.remove:
        mid = membership(member)
        if mid is not None:
            if wait := paced(True):
                yield wait
            member_call(functools.partial(_remove, ctx), mid)
        current = [c for c in current if not same_member(c, member)]
        save()
    for role_change in change.role_changes:
        # Graph cannot change a chat member's role in place (conversationmember-update.md
        # covers teams and channels only): remove the membership, add it with the new role.
        member = role_change.member
        mid = membership(member)
        if mid is not None:
            if wait := paced(True):
                yield wait
            member_call(functools.partial(_remove, ctx), mid)
            current = [c for c in current if not same_member(c, member)]
            save()
        if wait := paced(True):
            yield wait
        member_call(add, replace(member, membership_id=None))
        save()

    # The final record is the plan's "after" view, with the membership ids learned.
    learned = {k: c.membership_id for c in current if c.membership_id for k in member_keys(c)}
    members = tuple(
        replace(m, membership_id=first_known(m, learned) or membership(m)) for m in change.members
    )
    final = ChatRecord(chat_id, change.chat_type, members, change.topic, created_at)
    ctx.record(lambda s: s.put_chat(change.key, final))
    return Outcome(change.key, change.action, UPDATED, chat_id)


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
        if exc.status == 409:  # already a member (a retried add that had succeeded)
            return member
        raise
    return replace(
        member,
        membership_id=opt(added.get("id")) or member.membership_id,
        object_id=member.object_id
        or opt(added.get("userId"))
        or object_id_of(member.user, ctx.users),
    )


def _remove(ctx: StepContext, chat_id: str, membership_id: str) -> None:
    with contextlib.suppress(GraphNotFound):  # already gone: the outcome wanted
        ctx.client.remove_member(chat_id, membership_id)
    return None
