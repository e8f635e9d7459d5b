"""What apply does for one chat key: the Graph calls of each planned action, as steps.

Each action is a generator: it makes one Graph call (or a few that must go together), records
the result durably in the state, and yields the monotonic time before which its next call
cannot usefully start (the chat's own limits: 1 request per second per chat, 4 member changes
per minute per chat, ``includes/throttling-teams.md``). The executor (``apply/executor.py``)
puts the chat aside until then and serves other chats meanwhile, so a worker never sits out a
per-chat limit. The generator's return value is the key's `Outcome`.

Group creation follows the journal protocol of issue 6: the intent (members, topic, attempt id,
time) is made durable *before* ``POST /chats``; the chat id is recorded and the intent cleared
in one write after it. An ambiguous answer (timeout, dropped connection, 5xx) keeps the intent
and leads to lookups (``reconcile.py``) instead of a second POST: spread over the consistency
window (Graph lists new chats late), while the other chats go on; the chat is created again
only when every lookup of the window found nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Generator, Mapping
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

from provisioner.apply.context import StepContext, Steps, member_keys, membership_index, opt
from provisioner.apply.control import Cancelled
from provisioner.apply.reconcile import Lookup, find_created_chats, lookup_delays, parse_time
from provisioner.apply.results import (
    ADOPTED,
    CREATED,
    DELETED,
    FORGOTTEN,
    SKIPPED,
    UPDATED,
    Outcome,
)
from provisioner.apply.update import update_steps
from provisioner.apply.workspace import workspace_steps
from provisioner.errors import AuthError
from provisioner.graph.errors import (
    AmbiguousOutcome,
    GraphConnectionError,
    GraphError,
    GraphNotFound,
    ThrottledError,
)
from provisioner.graph.pacing import TENANT_WRITE
from provisioner.models import GROUP, HISTORY_ALL, ONE_ON_ONE
from provisioner.plans.types import Action, Change
from provisioner.states.home import claim_home, tenants_seen
from provisioner.states.records import ChatRecord, DeletedChat, Intent, State

#: How long after its journal entry an earlier run's creation may still have been sent (its
#: turn under the pacer, then the request timeout), beyond which its journal is stale.
STALE_AFTER_S = 600.0


#: What progress says a settling chat waits for.
WAITING_FOR = (
    "Graph to list the chat an unknown creation may have made (up to {window:.0f}s after it, "
    "before creating it again)"
)


class ChatSteps:
    """Turns each planned change into its steps (updates: ``apply/update.py``)."""

    def __init__(self, ctx: StepContext) -> None:
        self.ctx = ctx
        self.client = ctx.client

    def run(self, change: Change) -> Steps:
        """The steps of one planned change (no-ops are never given); the chat's apps and tabs
        (``apply.workspace``) once it exists and its members and topic are done."""
        steps = self._steps(change)
        if change.workspace is None:
            return steps
        return self._with_workspace(change, steps)

    def _with_workspace(self, change: Change, steps: Steps) -> Steps:
        outcome = yield from steps
        if outcome.status in (CREATED, ADOPTED, UPDATED) and outcome.chat_id:
            yield from workspace_steps(self.ctx, change, outcome.chat_id)
        return outcome

    def _steps(self, change: Change) -> Steps:
        action = change.action
        if action is Action.CREATE:
            if change.chat_type == ONE_ON_ONE:
                return self._create_one_on_one(change)
            return self._create_group(change)
        if action is Action.RECONCILE:
            return self._reconcile(change)
        if action is Action.UPDATE:
            return update_steps(self.ctx, change)
        if action is Action.DELETE:
            return self._delete(change)
        if action is Action.FORGET:
            return self._forget(change)
        raise ValueError(f"nothing to apply for a {action.value} change")

    # -- creations -------------------------------------------------------------------------

    def _create_one_on_one(self, change: Change) -> Steps:
        # chat-post.md: "Only one one-on-one chat can exist between two members"; Graph returns
        # the existing one, so this needs no journal and the client may retry it. Still, no
        # creation leaves a run that lost the state's lock (its successor owns the chats now).
        self.ctx.confirm_lock()
        chat = self.client.create_chat(_body(change), idempotent=True)
        record = ChatRecord(
            chat_id=str(chat["id"]),
            chat_type=ONE_ON_ONE,
            members=change.members,
            created_at=opt(chat.get("createdDateTime")),
        )
        tenant = _tenant_of(chat)

        def done_one(state: State) -> None:
            state.put_chat(change.key, record)
            claim_home(state, tenant=tenant)

        self.ctx.record(done_one)
        return Outcome(change.key, change.action, CREATED, record.chat_id)
        yield  # pragma: no cover  (a generator, like every action)

    def _create_group(
        self, change: Change, notes: tuple[str, ...] = (), users: Mapping[str, str] | None = None
    ) -> Steps:
        body = _body(change)
        intent = self._new_intent(change)

        def journal(state: State) -> None:
            state.put_intent(intent)  # replaces an earlier attempt's intent, in one record
            if users:
                state.put_users(users)

        # Journal just before this request's turn (not while it queues behind others), so a
        # killed run leaves few entries to look up.
        while (wait := self.ctx.turn_in(TENANT_WRITE)) > 0:
            yield self.ctx.clock() + wait
        self.ctx.record(journal)  # durable before the POST: a crash after it leaves a trace
        # Then, that the lock is still ours: a run that took it over after this confirmation
        # reads this intent (the journal is written only under the lock), and one that took
        # it before leaves this run here, the intent for it to look up (issue 20).
        self.ctx.confirm_lock()
        try:
            chat = self.client.create_chat(body, idempotent=False)
        except AmbiguousOutcome as exc:
            unknown: Exception = exc
        except Exception as exc:
            if not not_created(exc):
                # Anything else (an unexpected error after the request may have left): the
                # intent stays, and the chat is looked up before anything is created again.
                unknown = exc
            else:
                # Graph did not create it: an error answer, throttled past the retry budget,
                # never sent (no connection, or the run stopped while it waited for its turn).
                self.ctx.record(lambda s: _clear_intent(s, intent))
                if isinstance(exc, Cancelled) and not notes:  # nothing at all was done
                    return Outcome(change.key, change.action, SKIPPED, notes=(str(exc),))
                raise
        else:
            outcome = self._created_group(change, intent, chat, notes)
            if len(change.members) > len(intent.members):
                yield from self._complete(change, intent, outcome, chat)
            return outcome
        if any(n.startswith(_LOOKED_UP) for n in notes):
            # Already looked up once in this run and created again, and again no answer: stop
            # here (the intent stays; the next run looks it up) rather than loop on a server
            # that never answers a creation.
            raise unknown
        # Graph may or may not have made the chat: look (over the consistency window) before
        # creating again.
        note = f"{_LOOKED_UP} ({_reason(unknown)}): looked it up"
        return (yield from self._look_up(change, intent, (*notes, note), answered=True))

    def _complete(
        self, change: Change, intent: Intent, outcome: Outcome, chat: Mapping[str, Any]
    ) -> Generator[float, None, None]:
        """Add the members a creation could not take (more than 200 at one time, Teams
        limits) one by one, at the member pace, as an update of the new chat would. They see
        the whole history: the first members of a new chat do too."""
        if outcome.chat_id is None:
            return
        created_at = opt(chat.get("createdDateTime"))
        before = ChatRecord(outcome.chat_id, GROUP, intent.members, change.topic, created_at)
        follow_up = Change(
            key=change.key,
            action=Action.UPDATE,
            chat_type=GROUP,
            members=change.members,
            topic=change.topic,
            chat_id=outcome.chat_id,
            before=before,
            add=change.members[len(intent.members) :],
            history=HISTORY_ALL,
        )
        yield from update_steps(self.ctx, follow_up)

    def _new_intent(self, change: Change) -> Intent:
        # The body's members only: what Graph is asked to create, and what a lookup matches.
        at_once = len(_body(change).get("members") or ())
        # Graph's time, not only ours: a lookup compares it with Graph's createdDateTime, and
        # the host's clock may be minutes off Graph's, or jump before a rerun (issue 20).
        graph_now = self.ctx.graph_now()
        return Intent(
            key=change.key,
            chat_type=GROUP,
            members=change.members[:at_once],
            attempt_id=str(uuid.uuid4()),
            started_at=self._now().isoformat(timespec="milliseconds"),
            topic=change.topic,
            graph_started_at=None if graph_now is None else _iso_ms(graph_now),
        )

    def _created_group(
        self, change: Change, intent: Intent, chat: Mapping[str, Any], notes: tuple[str, ...]
    ) -> Outcome:
        """Graph answered the creation: record the chat and clear its intent, in one record."""
        record = ChatRecord(
            chat_id=str(chat["id"]),
            chat_type=GROUP,
            members=intent.members,
            topic=change.topic,
            created_at=opt(chat.get("createdDateTime")),
        )
        tenant = _tenant_of(chat)

        def done(state: State) -> None:
            state.put_chat(change.key, record)
            _clear_intent(state, intent)
            claim_home(state, tenant=tenant)

        self.ctx.record(done)
        return Outcome(change.key, change.action, CREATED, record.chat_id, notes=notes)

    def _reconcile(self, change: Change) -> Steps:
        intent = change.intent
        if intent is None:
            raise ValueError(f"{change.key}: a reconcile change without an intent")
        note = f"an unfinished creation (attempt {intent.attempt_id}) was looked up"
        return (yield from self._look_up(change, intent, (note,), answered=False))

    def _settle(
        self, change: Change, intent: Intent, answered: bool
    ) -> Generator[float, None, Lookup]:
        """Lookups spread over the consistency window (``reconcile.lookup_delays``): the
        first that finds the chat ends them; the result of the last is returned when none did.
        Between lookups the chat is put aside and the run goes on; progress says what it waits
        for.

        The window starts when Graph may last have made the chat: an ambiguous answer comes
        after the work (``answered``), so from now. A creation journaled by an earlier run
        may have been sent any time before that run ended (it can wait for its turn after
        being journaled), so also from now, unless the journal is older than the window
        plus ``STALE_AFTER_S`` on Graph's clock: then whatever was made is long listed and
        one lookup does. The host's clock is never asked (it may have jumped since the
        journal was written, issue 20): without Graph's times the whole window is used.
        The waits between lookups are monotonic (``ctx.clock``).
        """
        window = self.ctx.consistency_window_s
        elapsed = 0.0
        if not answered:
            age = self._graph_age(intent)
            elapsed = window if age is not None and age > window + STALE_AFTER_S else 0.0
        began, spent = self.ctx.clock(), 0  # requests are counted per thread: per lookup
        resolved: dict[str, str] = {}  # UPNs resolved by these lookups: resolved once
        what = WAITING_FOR.format(window=window)
        delays = lookup_delays(window, elapsed)
        try:
            for n, delay in enumerate(delays):
                at = began + delay
                if at > self.ctx.clock():
                    self.ctx.waiting(change.key, what)
                    yield at
                    self.ctx.waiting(change.key, None)
                before = self.ctx.requests()
                try:
                    lookup = find_created_chats(
                        self.client,
                        intent,
                        users={**self.ctx.users, **resolved},
                        clock_skew=self.ctx.clock_skew,
                        anchor=self.ctx.anchor,
                    )
                except GraphError as exc:
                    # Throttled past the retry budget, or 5xx after the retries: an early
                    # lookup that failed is followed by the next one. The last one decides, so
                    # its failure is the chat's (the intent stays for the next run).
                    if n == len(delays) - 1 or not _transient(exc):
                        raise
                    continue
                finally:
                    spent += self.ctx.requests() - before
                resolved.update(lookup.users)
                if lookup.chat is not None:
                    break
            lookup.users = resolved
            return lookup
        finally:
            self.ctx.waiting(change.key, None)
            self.ctx.reconciled(spent, self.ctx.clock() - began)

    def _look_up(
        self, change: Change, intent: Intent, notes: tuple[str, ...], *, answered: bool
    ) -> Steps:
        lookup = yield from self._settle(change, intent, answered)
        if lookup.refused:
            notes = (*notes, f"Graph refused {', '.join(lookup.refused)}: matched client-side")
        if lookup.chat is None:
            if change.body is None:  # no longer in the manifest, and nothing was made
                self.ctx.record(lambda s: _forget_intent(s, intent, lookup))
                return Outcome(
                    change.key,
                    change.action,
                    FORGOTTEN,
                    notes=(*notes, "no chat had been created; the key is no longer managed"),
                )
            notes = (*notes, "no chat had been created (none listed within the window): created it")
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

    # -- deletions -------------------------------------------------------------------------

    def _delete(self, change: Change) -> Steps:
        chat_id = change.chat_id
        if chat_id is None:
            raise ValueError(f"{change.key}: a delete without a chat id")
        notes: tuple[str, ...] = ()
        deleted: DeletedChat | None = None
        try:
            # chat-delete.md: a soft delete; the chat can be restored for a limited time.
            self.client.delete_chat(chat_id)
            deleted = DeletedChat(
                chat_id,
                change.chat_type,
                datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                change.topic,
                "expired" if change.reason == "expired" else "pruned",
            )
        except GraphNotFound:
            notes = ("the chat was already deleted",)

        def record(state: State) -> None:
            state.remove_chat(change.key)
            if deleted is not None:  # kept for `provision restore` (operations.restore)
                state.put_deleted(change.key, deleted)

        self.ctx.record(record)
        return Outcome(change.key, change.action, DELETED, chat_id, notes=notes)
        yield  # pragma: no cover

    def _forget(self, change: Change) -> Steps:
        self.ctx.record(lambda s: s.remove_chat(change.key))
        return Outcome(change.key, change.action, FORGOTTEN, change.chat_id)
        yield  # pragma: no cover

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.ctx.wallclock(), tz=timezone.utc)

    def _graph_age(self, intent: Intent) -> float | None:
        """Seconds since ``intent`` was journaled, on Graph's clock; None when unknown."""
        started = parse_time(intent.graph_started_at)
        now = self.ctx.graph_now() if started is not None else None
        return None if started is None or now is None else (now - started).total_seconds()


# -- helpers ------------------------------------------------------------------------------------


def _body(change: Change) -> dict[str, Any]:
    if change.body is None:
        raise ValueError(f"{change.key}: a creation without a request body")
    return change.body


def _iso_ms(at: datetime) -> str:
    return at.astimezone(timezone.utc).isoformat(timespec="milliseconds")


def _transient(exc: GraphError) -> bool:
    return isinstance(exc, ThrottledError) or exc.status in (429, 500, 502, 503, 504)


_LOOKED_UP = "the creation's outcome was unknown"


def not_created(exc: BaseException) -> bool:
    """True only with evidence that a group ``POST /chats`` made no chat: Graph answered with
    an error (4xx, throttling past the budget, a redirect), the connection was never opened,
    no token could be had, or the request never left its queue. Anything else may have
    reached Graph (issue 15)."""
    if isinstance(exc, (Cancelled, GraphConnectionError, ThrottledError)):
        return True
    if isinstance(exc, AuthError):
        # No token for the attempt: raised before sending, or after Graph refused the earlier
        # ones (401); a group POST is never re-sent after an attempt that may have reached it.
        return True
    if isinstance(exc, AmbiguousOutcome) or not isinstance(exc, GraphError):
        return False
    return 300 <= exc.status < 500


def _reason(exc: Exception) -> str:
    if isinstance(exc, GraphError):
        return f"HTTP {exc.status}" if exc.status else exc.graph_message
    return f"an unexpected {type(exc).__name__}"


def _tenant_of(chat: Mapping[str, Any]) -> str | None:
    """The chat's ``tenantId`` (chat resource), which a state without a tenant records."""
    found = tenants_seen([chat])
    return found.pop() if len(found) == 1 else None


def _clear_intent(state: State, intent: Intent) -> None:
    current = state.intents.get(intent.key)
    if current is not None and current.attempt_id == intent.attempt_id:
        state.clear_intent(intent.key)


def _forget_intent(state: State, intent: Intent, lookup: Lookup) -> None:
    _clear_intent(state, intent)
    state.put_users(lookup.users)


def _adopted(intent: Intent, lookup: Lookup) -> ChatRecord:
    """The record of an adopted chat: the intent's members (what the chat really has), with the
    object ids resolved and the membership ids Graph listed."""
    chat = lookup.chat
    assert chat is not None
    index = membership_index(chat.get("members") or ())
    members = []
    for m in intent.members:
        oid = lookup.object_ids.get(m.user) or m.object_id
        probe = replace(m, object_id=oid)
        mid = next((index[k] for k in member_keys(probe) if k in index), None)
        members.append(replace(probe, membership_id=mid or m.membership_id))
    return ChatRecord(
        chat_id=str(chat["id"]),
        chat_type=GROUP,
        members=tuple(members),
        topic=intent.topic,
        created_at=opt(chat.get("createdDateTime")),
    )
