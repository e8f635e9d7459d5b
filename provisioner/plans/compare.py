"""One managed chat against what it is now: the update (or no-op) of a key on both sides.

``current`` is the state's record, or what Graph has now when the plan was refreshed. Pure, like
the rest of the planner (``plans.planner``): members are matched by what was written or by
object id (``plans.live.match_members``), and what Graph cannot change in place (a chat's type,
a oneOnOne's member pair) raises ``CannotUpdate`` for the planner to report.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from provisioner.models import GROUP, HISTORY_ALL, HISTORY_NONE, ONE_ON_ONE, Chat, Member
from provisioner.plans.live import match_members, object_id_of
from provisioner.plans.types import Action, Change, RoleChange
from provisioner.states.records import ChatRecord, MemberRecord


class CannotUpdate(Exception):
    """The manifest asks for something Graph cannot do to the chat under this key: a
    different chat (its type, a oneOnOne's pair), or a member's role changed in place."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


#: Why a role change is refused rather than planned as a remove and an add.
ROLE_CHANGE_HINT = (
    "keep the member's current role in the manifest; to really change it, remove the member "
    "from the manifest and apply, then add them back with the new role and apply (in-tenant "
    "guests are always guest, members of other tenants always owner)"
)


def compare(chat: Chat, current: ChatRecord, users: Mapping[str, str]) -> Change:
    """The change that makes ``current`` into ``chat`` (UPDATE, or NOOP when nothing differs)."""
    if chat.chat_type != current.chat_type:
        raise CannotUpdate(
            f"{chat.key}: chatType changes from {current.chat_type} to {chat.chat_type}; Graph "
            f"cannot convert a chat ({current.chat_id}), so this would be a different chat"
        )
    if _unchanged(chat, current):
        return _noop(chat, current)
    members = _diff_members(chat, current, users)
    if members.role_changes:
        raise CannotUpdate(_role_message(chat, members.role_changes), ROLE_CHANGE_HINT)
    topic_change = (current.topic, chat.topic) if _topic_differs(chat, current) else None
    changed = members.add or members.remove or members.role_changes or topic_change
    return Change(
        key=chat.key,
        action=Action.UPDATE if changed else Action.NOOP,
        chat_type=chat.chat_type,
        members=tuple(members.after),
        topic=chat.topic if chat.topic is not None else current.topic,
        chat_id=current.chat_id,
        before=current,
        topic_change=topic_change,
        add=tuple(members.add),
        remove=members.remove,
        role_changes=tuple(members.role_changes),
        unmanaged=members.unmanaged,
        notes=_update_notes(chat, members) if changed else (),
        source=source_of(chat),
        history=chat.history if changed and (members.add or members.role_changes) else None,
    )


def after_member(member: Member, users: Mapping[str, str]) -> MemberRecord:
    """The manifest's member as it will be recorded (object id resolved when known)."""
    return MemberRecord(
        member.user,
        member.role,
        object_id_of(member.user, users),
        member.tenant_id,
        via=member.via,
    )


def source_of(chat: Chat) -> str | None:
    return str(chat.source) if chat.source is not None else None


def _noop(chat: Chat, current: ChatRecord) -> Change:
    # The common case of a large steady-state plan: same members, written the same way.
    return Change(
        key=chat.key,
        action=Action.NOOP,
        chat_type=chat.chat_type,
        members=current.members,
        topic=chat.topic,
        chat_id=current.chat_id,
        before=current,
        source=source_of(chat),
    )


@dataclass
class _MemberDiff:
    """The members after apply, and what changes to get there."""

    after: list[MemberRecord] = field(default_factory=list)
    add: list[MemberRecord] = field(default_factory=list)
    remove: tuple[MemberRecord, ...] = ()
    role_changes: list[RoleChange] = field(default_factory=list)
    unmanaged: tuple[MemberRecord, ...] = ()  # kept as they are (membership: additive)


def _diff_members(chat: Chat, current: ChatRecord, users: Mapping[str, str]) -> _MemberDiff:
    wanted = [after_member(m, users) for m in chat.members]
    matched = match_members(((m.user, m.object_id) for m in wanted), current.members)
    if chat.chat_type == ONE_ON_ONE and any(r is None for r in matched):
        was = " and ".join(m.user for m in current.members)
        now = " and ".join(m.user for m in chat.members)
        raise CannotUpdate(
            f"{chat.key}: this oneOnOne chat is between {was}; the manifest now says {now}. "
            f"A one-on-one chat's members cannot change, so this would be a different chat"
        )
    diff = _MemberDiff()
    kept: set[int] = set()
    for member, found in zip(wanted, matched, strict=True):
        if found is None:
            diff.after.append(member)
            diff.add.append(member)
            continue
        if chat.chat_type == GROUP and _other_tenant(member, found):
            # The membership belongs to the user of another tenant: replace it.
            merged = replace(member, object_id=member.object_id or found.object_id)
            diff.add.append(merged)
            diff.after.append(merged)
            continue
        # A member found in the chat keeps whether provision added it: one someone else added
        # stays theirs under ``additive`` even while the manifest lists it too.
        merged = replace(
            member,
            object_id=member.object_id or found.object_id,
            membership_id=found.membership_id,
            added=found.added,
        )
        kept.add(id(found))
        diff.after.append(merged)
        if chat.chat_type == GROUP and member.role != found.role:
            diff.role_changes.append(RoleChange(member=merged, old_role=found.role))
    if chat.chat_type != ONE_ON_ONE:  # a pair is equal (checked above); never changed in place
        others = [m for m in current.members if id(m) not in kept]
        if chat.additive:
            # Issue 22: only members provision added itself are removed; the others are
            # someone else's and stay, listed in the plan as unmanaged.
            diff.unmanaged = tuple(m for m in others if not m.added)
            diff.after.extend(diff.unmanaged)
            others = [m for m in others if m.added]
        diff.remove = tuple(others)
    return diff


def _other_tenant(member: MemberRecord, found: MemberRecord) -> bool:
    """True when the manifest's member and the one in the chat are of different tenants. A
    member read back without a tenantId is never a difference: Graph's known issue "some
    properties for chat members might be missing" (tenantId, email, displayName;
    concepts/includes/known-issues/teamwork-communications.md) means an empty tenantId says
    nothing, and taking it for "in-tenant" removed and re-added every external member on
    every run."""
    if found.tenant_id is None:
        return False
    return _norm(member.tenant_id) != _norm(found.tenant_id)


def _role_message(chat: Chat, changes: list[RoleChange]) -> str:
    # Graph v1.0 cannot change a chat member's role: the chat resource lists Add, Get, List and
    # Remove member only (resources/chat.md; conversationmember-update.md is for teams and
    # channels). A remove then an add would lose the member if Graph refused the add (a
    # guest's role is fixed by the account type, chat-post.md; adding to some chats was
    # refused with RosterAddMemberBlocked, microsoft-graph-docs-contrib#1622), so it is not
    # planned at all.
    who = ", ".join(f"{r.member.user} ({r.old_role} -> {r.member.role})" for r in changes)
    return (
        f"{chat.key}: member roles differ from the chat's: {who}. Graph cannot change a chat "
        f"member's role in place, and removing and adding them again could lose the member"
    )


def _update_notes(chat: Chat, members: _MemberDiff) -> tuple[str, ...]:
    notes: list[str] = []
    changing = (*members.remove, *(r.member for r in members.role_changes))
    if any(m.membership_id is None for m in changing):
        notes.append("membership ids not known yet: apply reads the chat's members first")
    if members.add or members.role_changes:
        notes.append(_history_note(chat.history))
    return tuple(notes)


def _history_note(history: str) -> str:
    if history == HISTORY_ALL:
        return "added members see the whole chat history (history: all)"
    if history == HISTORY_NONE:
        return "added members see the chat from when they are added (history: none)"
    return f"added members see the chat history from {history} (history: since)"


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
