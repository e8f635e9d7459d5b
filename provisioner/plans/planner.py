"""The planner: desired chats x state (x live view from Graph) -> Plan. Pure and deterministic.

No I/O and no clock beyond the plan's own timestamp: the same inputs give the same changes, in
key order. Everything apply needs goes into the plan (see ``provisioner.plan``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from provisioner.errors import PlanError
from provisioner.manifest import moves as moves_
from provisioner.models import (
    DEFAULT_GRAPH_URL,
    GROUP,
    HISTORY_ALL,
    ONE_ON_ONE,
    Chat,
    DesiredState,
    Member,
)
from provisioner.plans.live import (
    LiveChat,
    LiveMember,
    find_drift,
    match_members,
    object_id_of,
    with_object_ids,
)
from provisioner.plans.types import Action, Change, Drift, Plan, RoleChange
from provisioner.states.records import ChatRecord, Intent, MemberRecord, State

__all__ = ["LiveChat", "LiveMember", "make_plan", "refresh_only_plan"]


def make_plan(
    desired: DesiredState,
    state: State,
    *,
    live: Mapping[str, LiveChat] | None = None,
    prune: bool = False,
    graph_url: str = DEFAULT_GRAPH_URL,
) -> Plan:
    """Plan every key of ``desired`` and ``state`` (ordered by key).

    ``live`` is the refreshed view of managed chats by *state* key (None: no refresh; a key
    missing from it was not refreshed). ``desired.moves`` rename state keys first (the change
    of the new key carries ``moved_from``). ``state.users`` (UPN -> object id, filled in by
    ``provisioner.users`` before planning) makes member comparisons exact.

    Raises PlanError, listing every offending key, for changes Graph cannot make in place (a
    chat's type, a oneOnOne's member pair), for a planned delete of a protected key, and for
    a ``moved:`` entry whose old and new keys are both in the state.
    """
    wanted = desired.by_key()
    errors: list[tuple[str, str]] = []
    chats, intents, protected, live, moved_from = _moved(desired, state, live, errors)
    keys = sorted(set(wanted) | set(chats) | set(intents))
    changes: list[Change] = []
    drift: list[Drift] = []
    users = state.users
    for key in keys:
        chat = wanted.get(key)
        record = chats.get(key)
        intent = intents.get(key)
        if record is not None and live is not None:
            record = with_object_ids(record, users)
        current = record
        gone = False
        if live is not None and record is not None and key in live:
            seen = live[key]
            found = find_drift(key, record, seen, users)
            if found is not None:
                drift.append(found)
            gone = seen.gone
            current = None if gone else seen.as_record(record)
        if intent is not None:
            change = _reconcile(key, intent, chat, graph_url, users)
        elif chat is None:
            if record is None:
                continue
            change = _unmanaged(key, record, prune=prune, gone=gone)
            if change.action is Action.DELETE and key in protected:
                errors.append(
                    (
                        f"{key}: it is protected (protect: true when last applied), so its "
                        f"chat {record.chat_id} cannot be deleted",
                        _UNPROTECT_HINT,
                    )
                )
        elif current is None:
            change = _create(chat, graph_url, users)
            if gone and record is not None:
                note = f"chat {record.chat_id} was deleted outside provision: created again"
                change = replace(change, notes=(note, *change.notes))
        else:
            try:
                change = _compare(chat, current, users)
            except _CannotUpdate as exc:
                errors.append((str(exc), _NEW_KEY_HINT))
                continue
        if chat is not None and chat.protect != (key in protected):
            change = replace(change, protect_change=(key in protected, chat.protect))
        if key in moved_from:
            change = replace(change, moved_from=moved_from[key])
        changes.append(change)
    if errors:
        raise PlanError(
            "the plan cannot be made:\n" + "\n".join(f"  - {e}" for e, _ in errors),
            hint="; ".join(dict.fromkeys(h for _, h in errors)),
        )
    return Plan(
        changes=tuple(changes),
        state_lineage=state.lineage if state.exists else None,
        state_serial=state.serial if state.exists else 0,
        graph_url=graph_url,
        manifest_digest=desired.digest,
        manifest_files=desired.files,
        drift=tuple(drift),
        refreshed=live is not None,
        prune=prune,
    )


def refresh_only_plan(
    state: State,
    live: Mapping[str, LiveChat],
    *,
    graph_url: str = DEFAULT_GRAPH_URL,
    desired: DesiredState | None = None,
) -> Plan:
    """``plan --refresh-only``: the drift between ``state`` and ``live`` alone, no changes
    from the manifests (Terraform's refresh-only mode). Applying it records the refreshed view
    in state (``refresh.record_plan_facts``)."""
    drift = []
    for key in sorted(state.chats):
        if key in live:
            record = with_object_ids(state.chats[key], state.users)
            found = find_drift(key, record, live[key], state.users)
            if found is not None:
                drift.append(found)
    return Plan(
        changes=(),
        state_lineage=state.lineage if state.exists else None,
        state_serial=state.serial if state.exists else 0,
        graph_url=graph_url,
        manifest_digest=desired.digest if desired is not None else "",
        manifest_files=desired.files if desired is not None else (),
        drift=tuple(drift),
        refreshed=True,
        refresh_only=True,
    )


_NEW_KEY_HINT = (
    "a different chat needs a different key; the old key is then planned as forget (or "
    "remove it now with: provision state rm KEY)"
)
_UNPROTECT_HINT = (
    "to delete it, put it back in the manifest with protect: false and apply, then remove it; "
    "to stop managing it without deleting, plan without --prune (forget) or run: provision "
    "state rm KEY"
)


def _moved(
    desired: DesiredState,
    state: State,
    live: Mapping[str, LiveChat] | None,
    errors: list[tuple[str, str]],
) -> tuple[
    dict[str, ChatRecord],
    Mapping[str, Intent],
    set[str],
    Mapping[str, LiveChat] | None,
    dict[str, str],
]:
    """The state's chats, protected keys and refreshed view with ``moved:`` applied, and the
    old key of each renamed one (new key -> old key). Entries whose old key the state does
    not hold do nothing (they may have been applied already, or this is a fresh state)."""
    if not desired.moves:
        return state.chats, state.intents, state.protected, live, {}
    chats = dict(state.chats)
    protected = set(state.protected)
    seen = dict(live) if live is not None else None
    moved_from: dict[str, str] = {}
    for old, new in sorted(moves_.resolve(desired.moves).items()):
        if old not in state.chats:
            if old in state.intents:
                errors.append(
                    (
                        f"{old}: moved to {new}, but its creation is unfinished",
                        "apply once without the moved: entry (it reconciles the creation), "
                        "then add it again",
                    )
                )
            continue
        if new in state.chats or new in state.intents or new in moved_from:
            other = moved_from.get(new, new)
            errors.append(
                (
                    f"{old}: moved to {new}, but the state already has a chat under "
                    f"{other if other != new else new} ({_chat_id(state, other)})",
                    "keep the entry of the chat that is now this key, and stop managing the "
                    "other one: provision state rm KEY",
                )
            )
            continue
        chats[new] = chats.pop(old)
        if old in protected:
            protected.discard(old)
            protected.add(new)
        if seen is not None and old in seen:
            seen[new] = seen.pop(old)
        moved_from[new] = old
    return chats, state.intents, protected, seen, moved_from


def _chat_id(state: State, key: str) -> str:
    record = state.chats.get(key)
    return f"chat {record.chat_id}" if record is not None else "a creation in progress"


class _CannotUpdate(Exception):
    pass


def _after(member: Member, users: Mapping[str, str]) -> MemberRecord:
    return MemberRecord(
        member.user, member.role, object_id_of(member.user, users), member.tenant_id
    )


def _source(chat: Chat) -> str | None:
    return str(chat.source) if chat.source is not None else None


def _create(chat: Chat, graph_url: str, users: Mapping[str, str]) -> Change:
    # A oneOnOne create is "create, or adopt the existing chat": Graph returns the existing
    # one-on-one chat of a pair instead of creating another (api-reference/v1.0/api/chat-post.md),
    # so unlike a group creation it is safe to repeat and needs no journal.
    return Change(
        key=chat.key,
        action=Action.CREATE,
        chat_type=chat.chat_type,
        members=tuple(_after(m, users) for m in chat.members),
        topic=chat.topic,
        body=chat.request_body(graph_url),
        source=_source(chat),
    )


def _reconcile(
    key: str, intent: Intent, chat: Chat | None, graph_url: str, users: Mapping[str, str]
) -> Change:
    # A group creation was started and its outcome never recorded (killed run, timeout...):
    # apply must look the chat up before creating anything (issue 6), never blindly re-POST.
    notes = [
        f"a creation started at {intent.started_at} (attempt {intent.attempt_id}) has no "
        f"recorded outcome: apply looks for that chat first and adopts it, or creates it if "
        f"it does not exist"
    ]
    if chat is None:
        notes.append("no longer in the manifest: a chat found is recorded, then forgotten")
        return Change(
            key=key,
            action=Action.RECONCILE,
            chat_type=intent.chat_type,
            members=intent.members,
            topic=intent.topic,
            intent=intent,
            notes=tuple(notes),
        )
    if chat.member_identities != intent.member_identities or chat.topic != intent.topic:
        notes.append("the manifest changed since: the next plan shows the difference")
    return Change(
        key=key,
        action=Action.RECONCILE,
        chat_type=chat.chat_type,
        members=tuple(_after(m, users) for m in chat.members),
        topic=chat.topic,
        body=chat.request_body(graph_url),
        intent=intent,
        notes=tuple(notes),
        source=_source(chat),
    )


def _unmanaged(key: str, record: ChatRecord, *, prune: bool, gone: bool) -> Change:
    if gone:
        action, note = Action.FORGET, "not in the manifest and already deleted outside provision"
    elif prune:
        # api-reference/v1.0/api/chat-delete.md: a soft delete, admin only
        # (Chat.ManageDeletion.All), one delete per second per tenant, restorable for 7 days.
        action, note = (
            Action.DELETE,
            "not in the manifest (--prune): deleted in Teams. Graph soft-deletes chats: a "
            "tenant admin can restore it for 7 days. Needs Chat.ManageDeletion.All; one "
            "delete per second per tenant",
        )
    else:
        action, note = (
            Action.FORGET,
            "not in the manifest: removed from state only; the chat stays in Teams",
        )
    return Change(
        key=key,
        action=action,
        chat_type=record.chat_type,
        members=record.members,
        topic=record.topic,
        chat_id=record.chat_id,
        before=record,
        notes=(note,),
    )


def _compare(chat: Chat, current: ChatRecord, users: Mapping[str, str]) -> Change:
    if chat.chat_type != current.chat_type:
        raise _CannotUpdate(
            f"{chat.key}: chatType changes from {current.chat_type} to {chat.chat_type}; Graph "
            f"cannot convert a chat ({current.chat_id}), so this would be a different chat"
        )
    if _unchanged(chat, current):
        # The common case of a large steady-state plan: same members, written the same way.
        return Change(
            key=chat.key,
            action=Action.NOOP,
            chat_type=chat.chat_type,
            members=current.members,
            topic=chat.topic,
            chat_id=current.chat_id,
            before=current,
            source=_source(chat),
        )
    wanted = [_after(m, users) for m in chat.members]
    matched = match_members(((m.user, m.object_id) for m in wanted), current.members)
    if chat.chat_type == ONE_ON_ONE and any(r is None for r in matched):
        was = " and ".join(m.user for m in current.members)
        now = " and ".join(m.user for m in chat.members)
        raise _CannotUpdate(
            f"{chat.key}: this oneOnOne chat is between {was}; the manifest now says {now}. "
            f"A one-on-one chat's members cannot change, so this would be a different chat"
        )
    after: list[MemberRecord] = []
    add: list[MemberRecord] = []
    role_changes: list[RoleChange] = []
    kept: set[int] = set()
    for member, found in zip(wanted, matched, strict=True):
        if found is None:
            after.append(member)
            add.append(member)
            continue
        if chat.chat_type == GROUP and _norm(member.tenant_id) != _norm(found.tenant_id):
            # The membership belongs to the user of another tenant: replace it.
            merged = MemberRecord(
                member.user, member.role, member.object_id or found.object_id, member.tenant_id
            )
            add.append(merged)
            after.append(merged)
            continue
        merged = MemberRecord(
            member.user,
            member.role,
            member.object_id or found.object_id,
            member.tenant_id,
            found.membership_id,
        )
        kept.add(id(found))
        after.append(merged)
        if chat.chat_type == GROUP and member.role != found.role:
            role_changes.append(RoleChange(member=merged, old_role=found.role))
    remove = tuple(m for m in current.members if id(m) not in kept)
    if chat.chat_type == ONE_ON_ONE:
        remove = ()  # pair equal (checked above); tenant/role are not changed in place
    topic_change = None
    notes: list[str] = []
    if _topic_differs(chat, current):
        topic_change = (current.topic, chat.topic)
    if any(m.membership_id is None for m in (*remove, *(r.member for r in role_changes))):
        notes.append("membership ids not known yet: apply reads the chat's members first")
    if role_changes:
        # Graph v1.0 has no update for chat members: the chat resource lists Add, Get, List
        # and Remove member only (resources/chat.md), and conversationmember-update.md
        # ("PATCH roles") is for teams and channels. So a role change is a remove and an add.
        notes.append(
            "Graph cannot change a chat member's role in place: apply removes and adds the "
            "member again (2 member changes each; 4 per minute per chat)"
        )
    history = None
    if add or role_changes:
        history = chat.history
        notes.append(
            "added members see the whole chat history (history: all)"
            if chat.history == HISTORY_ALL
            else "added members see the chat from when they are added (history: none)"
        )
    action = Action.UPDATE if (add or remove or role_changes or topic_change) else Action.NOOP
    return Change(
        key=chat.key,
        action=action,
        chat_type=chat.chat_type,
        members=tuple(after),
        topic=chat.topic if chat.topic is not None else current.topic,
        chat_id=current.chat_id,
        before=current,
        topic_change=topic_change,
        add=tuple(add),
        remove=remove,
        role_changes=tuple(role_changes),
        notes=tuple(notes) if action is Action.UPDATE else (),
        source=_source(chat),
        history=history if action is Action.UPDATE else None,
    )


def _topic_differs(chat: Chat, current: ChatRecord) -> bool:
    """A group chat's topic is managed only when the manifest sets one: chat-patch.md sets a
    topic to a string and documents no way to clear it, so a manifest without a topic leaves
    whatever topic the chat has (a plan to clear it could never be applied)."""
    return chat.chat_type == GROUP and chat.topic is not None and chat.topic != current.topic


def _unchanged(chat: Chat, current: ChatRecord) -> bool:
    if _topic_differs(chat, current):
        return False
    if len(chat.members) != len(current.members):
        return False
    for m, r in zip(chat.members, current.members, strict=True):
        if m.user != r.user or m.role != r.role or m.tenant_id != r.tenant_id:
            return False
    return True


def _norm(tenant_id: str | None) -> str | None:
    return tenant_id.lower() if tenant_id else None
