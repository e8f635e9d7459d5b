"""The planner: desired chats x state (x live view from Graph) -> Plan. Pure and deterministic.

No I/O and no clock beyond the plan's own timestamp: the same inputs give the same changes, in
key order. Everything apply needs goes into the plan (see ``provisioner.plan``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from provisioner.errors import PlanError
from provisioner.models import DEFAULT_GRAPH_URL, GROUP, ONE_ON_ONE, Chat, DesiredState, Member
from provisioner.plan import Action, Change, Drift, Plan, RoleChange
from provisioner.state import ChatRecord, Intent, MemberRecord, State

_GUID = re.compile(r"^[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}$")


@dataclass(frozen=True, slots=True)
class LiveMember:
    """A member as Graph reports it (``aadUserConversationMember``): ``userId``, ``roles``,
    the membership ``id``, ``tenantId`` and ``email``."""

    object_id: str
    role: str = "owner"
    membership_id: str | None = None
    tenant_id: str | None = None
    email: str | None = None


@dataclass(frozen=True, slots=True)
class LiveChat:
    """A managed chat as refresh read it back from Graph (issue 7 fills these), or ``gone``
    when Graph answered 404."""

    chat_id: str
    chat_type: str = ""
    topic: str | None = None
    members: tuple[LiveMember, ...] = ()
    gone: bool = False
    created_at: str | None = None

    def as_record(self, known: ChatRecord | None = None) -> ChatRecord:
        """The live chat as a state record; members keep the ``user`` text state had for them
        (matched by object id) so plans and state keep showing users as the manifest wrote
        them."""
        written = {}
        if known is not None:
            for m in known.members:
                if m.object_id:
                    written[m.object_id.lower()] = m.user
                elif _GUID.match(m.user):
                    written[m.user.lower()] = m.user
        members = tuple(
            MemberRecord(
                user=written.get(m.object_id.lower(), m.email or m.object_id),
                role=m.role,
                object_id=m.object_id,
                tenant_id=m.tenant_id,
                membership_id=m.membership_id,
            )
            for m in self.members
        )
        return ChatRecord(
            chat_id=self.chat_id,
            chat_type=self.chat_type or (known.chat_type if known else GROUP),
            members=members,
            topic=self.topic,
            created_at=self.created_at or (known.created_at if known else None),
        )


def make_plan(
    desired: DesiredState,
    state: State,
    *,
    live: Mapping[str, LiveChat] | None = None,
    prune: bool = False,
    graph_url: str = DEFAULT_GRAPH_URL,
) -> Plan:
    """Plan every key of ``desired`` and ``state`` (ordered by key).

    ``live`` is the refreshed view of managed chats by key (None: no refresh; a key missing
    from it was not refreshed). Raises PlanError, listing every offending key, for changes
    Graph cannot make in place (a chat's type, a oneOnOne's member pair).
    """
    wanted = desired.by_key()
    keys = sorted(set(wanted) | set(state.chats) | set(state.intents))
    changes: list[Change] = []
    drift: list[Drift] = []
    errors: list[str] = []
    users = state.users
    for key in keys:
        chat = wanted.get(key)
        record = state.chats.get(key)
        intent = state.intents.get(key)
        current = record
        gone = False
        if live is not None and record is not None and key in live:
            seen = live[key]
            found = _drift(key, record, seen, users)
            if found is not None:
                drift.append(found)
            gone = seen.gone
            current = None if gone else seen.as_record(record)
        if intent is not None:
            changes.append(_reconcile(key, intent, chat, graph_url, users))
        elif chat is None:
            if record is not None:
                changes.append(_unmanaged(key, record, prune=prune, gone=gone))
        elif current is None:
            change = _create(chat, graph_url, users)
            if gone and record is not None:
                note = f"chat {record.chat_id} was deleted outside provision: created again"
                change = replace(change, notes=(note, *change.notes))
            changes.append(change)
        else:
            try:
                changes.append(_compare(chat, current, users))
            except _CannotUpdate as exc:
                errors.append(str(exc))
    if errors:
        raise PlanError(
            "the plan cannot be made:\n" + "\n".join(f"  - {e}" for e in errors),
            hint="a different chat needs a different key; the old key is then planned as "
            "forget (or remove it now with: provision state rm KEY)",
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


class _CannotUpdate(Exception):
    pass


def _object_id(user: str, users: Mapping[str, str]) -> str | None:
    if _GUID.match(user):
        return user
    return users.get(user.lower())


def _after(member: Member, users: Mapping[str, str]) -> MemberRecord:
    return MemberRecord(member.user, member.role, _object_id(member.user, users), member.tenant_id)


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
        action, note = (
            Action.DELETE,
            "not in the manifest: deleted in Teams (Graph soft-deletes chats; restorable for "
            "a limited time)",
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


def _index(records: Iterable[MemberRecord]) -> dict[str, MemberRecord]:
    index: dict[str, MemberRecord] = {}
    for r in records:
        index.setdefault(r.user.lower(), r)
        if r.object_id:
            index.setdefault(r.object_id.lower(), r)
    return index


def _match(
    wanted: Iterable[tuple[str, str | None]], current: tuple[MemberRecord, ...]
) -> list[MemberRecord | None]:
    """For each wanted (user, resolved object id), the current member it is, or None.

    Users are matched case-insensitively by what was written (GUID or UPN) or by object id,
    so a manifest switching between a user's UPN and object id is not a membership change
    once the UPN is resolved (cached in state by issue 7).
    """
    index = _index(current)
    used: set[int] = set()
    out: list[MemberRecord | None] = []
    for user, object_id in wanted:
        found = None
        for candidate in (user.lower(), object_id.lower() if object_id else None):
            r = index.get(candidate) if candidate else None
            if r is not None and id(r) not in used:
                found = r
                break
        if found is not None:
            used.add(id(found))
        out.append(found)
    return out


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
    matched = _match(((m.user, m.object_id) for m in wanted), current.members)
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
    if chat.chat_type == GROUP and chat.topic != current.topic:
        topic_change = (current.topic, chat.topic)
    notes: list[str] = []
    if any(m.membership_id is None for m in (*remove, *(r.member for r in role_changes))):
        notes.append("membership ids not known yet: apply reads the chat's members first")
    action = Action.UPDATE if (add or remove or role_changes or topic_change) else Action.NOOP
    return Change(
        key=chat.key,
        action=action,
        chat_type=chat.chat_type,
        members=tuple(after),
        topic=chat.topic,
        chat_id=current.chat_id,
        before=current,
        topic_change=topic_change,
        add=tuple(add),
        remove=remove,
        role_changes=tuple(role_changes),
        notes=tuple(notes) if action is Action.UPDATE else (),
        source=_source(chat),
    )


def _unchanged(chat: Chat, current: ChatRecord) -> bool:
    if chat.chat_type == GROUP and chat.topic != current.topic:
        return False
    if len(chat.members) != len(current.members):
        return False
    for m, r in zip(chat.members, current.members, strict=True):
        if m.user != r.user or m.role != r.role or m.tenant_id != r.tenant_id:
            return False
    return True


def _norm(tenant_id: str | None) -> str | None:
    return tenant_id.lower() if tenant_id else None


def _drift(key: str, record: ChatRecord, seen: LiveChat, users: Mapping[str, str]) -> Drift | None:
    """What changed in Teams since state was written, or None."""
    if seen.gone:
        return Drift(key=key, chat_id=record.chat_id, gone=True)
    live = seen.as_record(record)
    matched = _match(
        ((m.user, m.object_id or _object_id(m.user, users)) for m in record.members),
        live.members,
    )
    removed = tuple(r for r, found in zip(record.members, matched, strict=True) if found is None)
    present = {id(f) for f in matched if f is not None}
    added = tuple(m for m in live.members if id(m) not in present)
    role_changes = tuple(
        RoleChange(member=found, old_role=r.role)
        for r, found in zip(record.members, matched, strict=True)
        if found is not None and found.role != r.role
    )
    topic_change = (record.topic, live.topic) if live.topic != record.topic else None
    if not (removed or added or role_changes or topic_change):
        return None
    return Drift(
        key=key,
        chat_id=record.chat_id,
        topic_change=topic_change,
        added=added,
        removed=removed,
        role_changes=role_changes,
    )
