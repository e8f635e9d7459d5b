"""What apply does for one chat key: the Graph calls of each planned action, as steps.

Each action is a generator: it makes one Graph call (or a few that must go together), records
the result durably in the state, and yields the monotonic time before which its next call
cannot usefully start (the chat's own limits: 1 request per second per chat, 4 member changes
per minute per chat, ``includes/throttling-teams.md``). The executor (``apply.py``) puts the
chat aside until then and serves other chats meanwhile, so a worker never sits out a per-chat
limit. The generator's return value is the key's `Outcome`.

Group creation follows the journal protocol of issue 6: the intent (members, topic, attempt id,
time) is made durable *before* ``POST /chats``; the chat id is recorded and the intent cleared
in one write after it. An ambiguous answer (timeout, dropped connection, 5xx) keeps the intent
and leads to a lookup (``reconcile.py``) instead of a second POST.
"""

from __future__ import annotations

import contextlib
import functools
import uuid
from collections.abc import Callable, Generator, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any, Protocol, TypeVar

from provisioner.apply_control import Cancelled
from provisioner.apply_result import (
    ADOPTED,
    CREATED,
    DELETED,
    FORGOTTEN,
    SKIPPED,
    UPDATED,
    Outcome,
)
from provisioner.errors import PlanError
from provisioner.graph_errors import AmbiguousOutcome, GraphError, GraphNotFound
from provisioner.models import GROUP, ONE_ON_ONE, Member
from provisioner.pacing import CHAT, CHAT_MEMBERS, TENANT_WRITE
from provisioner.plan import Action, Change
from provisioner.reconcile import ChatReader, Lookup, find_created_chats, parse_time
from provisioner.state import ChatRecord, Intent, MemberRecord, State

T = TypeVar("T")

Steps = Generator[float, None, Outcome]


class ChatApi(ChatReader, Protocol):
    """The part of `provisioner.graph.GraphClient` apply uses."""

    def create_chat(self, body: Mapping[str, Any], *, idempotent: bool) -> dict[str, Any]: ...

    def update_chat_topic(self, chat_id: str, topic: str) -> dict[str, Any]: ...

    def add_member(self, chat_id: str, body: Mapping[str, Any]) -> dict[str, Any]: ...

    def remove_member(self, chat_id: str, membership_id: str) -> None: ...

    def delete_chat(self, chat_id: str) -> None: ...


@dataclass
class StepContext:
    """What the steps need from the executor.

    ``record(fn)`` applies ``fn`` to the state and returns once that is durable. ``interval(kind,
    key)`` is the current spacing (s) of a pacing scope; ``turn_in(kind)`` the wait before a
    tenant-wide scope admits a request (nothing taken). ``requests()`` counts the Graph
    requests this thread has made (to measure what a reconciliation costs);
    ``reconciled(n)`` reports one finished lookup that took ``n`` requests.
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
    reconciled: Callable[[int], None] = lambda n: None
    settle_s: float = 5.0
    clock_skew: timedelta = field(default_factory=lambda: timedelta(minutes=5))


class ChatSteps:
    def __init__(self, ctx: StepContext) -> None:
        self.ctx = ctx
        self.client = ctx.client

    def run(self, change: Change) -> Steps:
        """The steps of one planned change (no-ops are never given)."""
        action = change.action
        if action is Action.CREATE:
            if change.chat_type == ONE_ON_ONE:
                return self._create_one_on_one(change)
            return self._create_group(change)
        if action is Action.RECONCILE:
            return self._reconcile(change)
        if action is Action.UPDATE:
            return self._update(change)
        if action is Action.DELETE:
            return self._delete(change)
        if action is Action.FORGET:
            return self._forget(change)
        raise ValueError(f"nothing to apply for a {action.value} change")

    # -- creations -------------------------------------------------------------------------

    def _create_one_on_one(self, change: Change) -> Steps:
        # chat-post.md: "Only one one-on-one chat can exist between two members"; Graph returns
        # the existing one, so this needs no journal and the client may retry it.
        chat = self.client.create_chat(_body(change), idempotent=True)
        record = ChatRecord(
            chat_id=str(chat["id"]),
            chat_type=ONE_ON_ONE,
            members=change.members,
            created_at=_opt(chat.get("createdDateTime")),
        )
        self.ctx.record(lambda s: s.put_chat(change.key, record))
        return Outcome(change.key, change.action, CREATED, record.chat_id)
        yield  # pragma: no cover  (a generator, like every action)

    def _create_group(
        self, change: Change, notes: tuple[str, ...] = (), users: Mapping[str, str] | None = None
    ) -> Steps:
        body = _body(change)
        intent = Intent(
            key=change.key,
            chat_type=GROUP,
            members=change.members,
            attempt_id=str(uuid.uuid4()),
            started_at=self._now().isoformat(timespec="milliseconds"),
            topic=change.topic,
        )

        def journal(state: State) -> None:
            state.put_intent(intent)  # replaces an earlier attempt's intent, in one write
            if users:
                state.users.update(users)

        # Journal just before this request's turn (not while it queues behind others), so a
        # killed run leaves few entries to look up.
        while (wait := self.ctx.turn_in(TENANT_WRITE)) > 0:
            yield self.ctx.clock() + wait
        self.ctx.record(journal)  # durable before the POST: a crash after it leaves a trace
        try:
            chat = self.client.create_chat(body, idempotent=False)
        except AmbiguousOutcome as exc:
            unknown = exc
        except Exception as exc:
            # Graph did not create it: an error answer, throttled past the retry budget, never
            # sent (no connection, or the run stopped while it waited for its turn).
            self.ctx.record(lambda s: _clear_intent(s, intent))
            if isinstance(exc, Cancelled) and not notes:  # nothing at all was done
                return Outcome(change.key, change.action, SKIPPED, notes=(str(exc),))
            raise
        else:
            record = ChatRecord(
                chat_id=str(chat["id"]),
                chat_type=GROUP,
                members=change.members,
                topic=change.topic,
                created_at=_opt(chat.get("createdDateTime")),
            )

            def done(state: State) -> None:
                state.put_chat(change.key, record)
                _clear_intent(state, intent)

            self.ctx.record(done)
            return Outcome(change.key, change.action, CREATED, record.chat_id, notes=notes)
        # Graph may or may not have made the chat: look before creating again. Give Graph a
        # moment first, so a chat made by the lost request is listed by the lookup.
        note = f"the creation's outcome was unknown ({_reason(unknown)}): looked it up"
        yield self.ctx.clock() + self.ctx.settle_s
        return (yield from self._look_up(change, intent, (*notes, note)))

    def _reconcile(self, change: Change) -> Steps:
        intent = change.intent
        if intent is None:
            raise ValueError(f"{change.key}: a reconcile change without an intent")
        started = parse_time(intent.started_at)
        if started is not None:
            settled = started + timedelta(seconds=self.ctx.settle_s)
            # At most settle_s from now, whatever the journal's clock said.
            wait = min(self.ctx.settle_s, (settled - self._now()).total_seconds())
            if wait > 0:
                yield self.ctx.clock() + wait
        note = f"an unfinished creation (attempt {intent.attempt_id}) was looked up"
        return (yield from self._look_up(change, intent, (note,)))

    def _look_up(self, change: Change, intent: Intent, notes: tuple[str, ...]) -> Steps:
        before = self.ctx.requests()
        lookup = find_created_chats(
            self.client, intent, users=self.ctx.users, clock_skew=self.ctx.clock_skew
        )
        self.ctx.reconciled(self.ctx.requests() - before)
        if lookup.chat is None:
            if change.body is None:  # no longer in the manifest, and nothing was made
                self.ctx.record(lambda s: _forget_intent(s, intent, lookup))
                return Outcome(
                    change.key,
                    change.action,
                    FORGOTTEN,
                    notes=(*notes, "no chat had been created; the key is no longer managed"),
                )
            notes = (*notes, "no chat had been created: created it")
            if change.chat_type == ONE_ON_ONE:  # the manifest made the key a oneOnOne since
                self.ctx.record(lambda s: _forget_intent(s, intent, lookup))
                outcome = yield from self._create_one_on_one(change)
                return replace(outcome, notes=notes)
            return (yield from self._create_group(change, notes, lookup.users))
        chat_id = str(lookup.chat["id"])
        duplicates = tuple(str(c["id"]) for c in lookup.duplicates)
        if duplicates:
            notes = (
                *notes,
                f"{len(duplicates) + 1} chats match this creation: adopted the oldest, "
                f"{chat_id}; the others were NOT deleted: {', '.join(duplicates)}",
            )
        if change.body is None:
            self.ctx.record(lambda s: _forget_intent(s, intent, lookup))
            note = f"found chat {chat_id}; not in the manifest, so not managed (it stays in Teams)"
            return Outcome(
                change.key, change.action, FORGOTTEN, chat_id, None, duplicates, (*notes, note)
            )
        record = _adopted(intent, lookup)

        def adopt(state: State) -> None:
            state.put_chat(change.key, record)
            _forget_intent(state, intent, lookup)

        self.ctx.record(adopt)
        return Outcome(change.key, change.action, ADOPTED, chat_id, None, duplicates, notes)

    # -- updates ---------------------------------------------------------------------------

    def _update(self, change: Change) -> Steps:
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
            self.ctx.record(lambda s: s.put_chat(change.key, record))

        def paced(member_change: bool) -> float:
            at = max(next_call, next_member if member_change else -1.0)
            return at if at > self.ctx.clock() else 0.0

        if change.topic_change is not None and change.topic is None:
            # chat-patch.md sets a topic to a string; there is no documented way to clear it.
            raise PlanError(
                f"{change.key}: Graph cannot remove a group chat's topic "
                f"(it is {change.topic_change[0]!r})",
                hint="keep a topic for this chat in the manifest",
            )
        if change.topic_change is not None and change.topic is not None:
            started = self.ctx.clock()
            self.client.update_chat_topic(chat_id, change.topic)
            topic = change.topic
            save()
            next_call = started + self.ctx.interval(CHAT, chat_id)

        known: dict[str, str] = {}
        wanted = [*change.remove, *(r.member for r in change.role_changes)]
        if any(m.membership_id is None for m in wanted):
            # Removing a member needs its membership id (chat-delete-members.md).
            if wait := paced(False):
                yield wait
            started = self.ctx.clock()
            known = _membership_index(self.client.list_members(chat_id))
            next_call = started + self.ctx.interval(CHAT, chat_id)

        def membership(member: MemberRecord) -> str | None:
            return member.membership_id or next(
                (known[k] for k in _keys(member) if k in known), None
            )

        def member_call(call: Callable[[str, T], MemberRecord | None], arg: T) -> None:
            nonlocal next_call, next_member, current
            started = self.ctx.clock()
            added = call(chat_id, arg)
            next_call = started + self.ctx.interval(CHAT, chat_id)
            next_member = started + self.ctx.interval(CHAT_MEMBERS, chat_id)
            if added is not None:
                current = [c for c in current if not _same(c, added)] + [added]

        add = functools.partial(self._add, history=change.history)
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
                member_call(self._remove, mid)
            current = [c for c in current if not _same(c, member)]
            save()
        for role_change in change.role_changes:
            # Graph cannot change a chat member's role in place (conversationmember-update.md
            # covers teams and channels only): remove the membership, add it with the new role.
            member = role_change.member
            mid = membership(member)
            if mid is not None:
                if wait := paced(True):
                    yield wait
                member_call(self._remove, mid)
                current = [c for c in current if not _same(c, member)]
                save()
            if wait := paced(True):
                yield wait
            member_call(add, replace(member, membership_id=None))
            save()

        # The final record is the plan's "after" view, with the membership ids learned.
        learned = {k: c.membership_id for c in current if c.membership_id for k in _keys(c)}
        members = tuple(
            replace(m, membership_id=_first_known(m, learned) or membership(m))
            for m in change.members
        )
        final = ChatRecord(chat_id, change.chat_type, members, change.topic, created_at)
        self.ctx.record(lambda s: s.put_chat(change.key, final))
        return Outcome(change.key, change.action, UPDATED, chat_id)

    def _add(
        self, chat_id: str, member: MemberRecord, *, history: str | None = None
    ) -> MemberRecord:
        # chat-post-members.md; ``history`` sets visibleHistoryStartDateTime (examples 2, 3).
        body = Member(member.user, member.role, member.tenant_id).request_body(
            self.ctx.graph_url, history=history
        )
        try:
            added = self.client.add_member(chat_id, body)
        except GraphError as exc:
            if exc.status == 409:  # already a member (a retried add that had succeeded)
                return member
            raise
        return replace(
            member,
            membership_id=_opt(added.get("id")) or member.membership_id,
            object_id=member.object_id or _opt(added.get("userId")),
        )

    def _remove(self, chat_id: str, membership_id: str) -> None:
        with contextlib.suppress(GraphNotFound):  # already gone: the outcome wanted
            self.client.remove_member(chat_id, membership_id)
        return None

    # -- deletions -------------------------------------------------------------------------

    def _delete(self, change: Change) -> Steps:
        chat_id = change.chat_id
        if chat_id is None:
            raise ValueError(f"{change.key}: a delete without a chat id")
        notes: tuple[str, ...] = ()
        try:
            # chat-delete.md: a soft delete; the chat can be restored for a limited time.
            self.client.delete_chat(chat_id)
        except GraphNotFound:
            notes = ("the chat was already deleted",)
        self.ctx.record(lambda s: s.remove_chat(change.key))
        return Outcome(change.key, change.action, DELETED, chat_id, notes=notes)
        yield  # pragma: no cover

    def _forget(self, change: Change) -> Steps:
        self.ctx.record(lambda s: s.remove_chat(change.key))
        return Outcome(change.key, change.action, FORGOTTEN, change.chat_id)
        yield  # pragma: no cover

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.ctx.wallclock(), tz=timezone.utc)


# -- helpers ------------------------------------------------------------------------------------


def _body(change: Change) -> dict[str, Any]:
    if change.body is None:
        raise ValueError(f"{change.key}: a creation without a request body")
    return change.body


def _opt(value: object) -> str | None:
    return None if value is None else str(value)


def _reason(exc: GraphError) -> str:
    return f"HTTP {exc.status}" if exc.status else exc.graph_message


def _clear_intent(state: State, intent: Intent) -> None:
    current = state.intents.get(intent.key)
    if current is not None and current.attempt_id == intent.attempt_id:
        state.clear_intent(intent.key)


def _forget_intent(state: State, intent: Intent, lookup: Lookup) -> None:
    _clear_intent(state, intent)
    state.users.update(lookup.users)


def _adopted(intent: Intent, lookup: Lookup) -> ChatRecord:
    """The record of an adopted chat: the intent's members (what the chat really has), with the
    object ids resolved and the membership ids Graph listed."""
    chat = lookup.chat
    assert chat is not None
    index = _membership_index(chat.get("members") or ())
    members = []
    for m in intent.members:
        oid = lookup.object_ids.get(m.user) or m.object_id
        probe = replace(m, object_id=oid)
        mid = next((index[k] for k in _keys(probe) if k in index), None)
        members.append(replace(probe, membership_id=mid or m.membership_id))
    return ChatRecord(
        chat_id=str(chat["id"]),
        chat_type=GROUP,
        members=tuple(members),
        topic=intent.topic,
        created_at=_opt(chat.get("createdDateTime")),
    )


def _membership_index(members: Iterable[Mapping[str, Any]]) -> dict[str, str]:
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


def _keys(member: MemberRecord) -> list[str]:
    keys = [member.object_id.lower()] if member.object_id else []
    return [*keys, member.user.lower()]


def _first_known(member: MemberRecord, index: Mapping[str, str | None]) -> str | None:
    return next((v for k in _keys(member) if (v := index.get(k))), None)


def _same(a: MemberRecord, b: MemberRecord) -> bool:
    return bool(set(_keys(a)) & set(_keys(b)))
