"""``group:`` member entries made into members, from the groups as read (issue 22). Pure.

A chat's ``group:`` entries (``models.Chat.groups``) name Entra ID groups; their users, nested
groups followed, were read from Graph by a refreshing plan (``operations.groups``) or are
the ones the state recorded at the last apply (``State.groups``). Each user joins the chat
after the members named directly (or through sets), in the group's order:

* named by UPN when Graph gives one that a manifest could hold, else by object id; the
  UPN -> object id pairs are returned, so members match Graph's answers without lookups;
* a guest account (``userType`` Guest) as ``guest``: chat-post.md gives in-tenant guests the
  guest role and nobody else; everyone else with the entry's ``role`` (default owner);
* a user already in the chat (named directly, by a set, or by another group) keeps that entry;
* a chat the groups would take over Graph's limit for a group chat (250) is an error naming
  each group and its size, before anything is sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from provisioner.models import MAX_GROUP_MEMBERS, Chat, DesiredState, GroupRef, Member
from provisioner.plans.live import object_id_of
from provisioner.states.records import GroupRecord

#: A UPN a manifest could name a member by (the schema's user pattern, simplified): guest
#: UPNs with ``#EXT#`` are kept by object id instead, which every Graph call accepts.
_PLAIN_UPN = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789'._!^~+-@"


class GroupProblem(Exception):
    """A group that cannot be used as it is: never read, or too big for the chat."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.hint = hint


def expand_groups(
    desired: DesiredState, groups: Mapping[str, GroupRecord], users: Mapping[str, str]
) -> tuple[DesiredState, dict[str, str], list[GroupProblem]]:
    """``desired`` with every chat's groups made into members, the UPN -> object id pairs the
    groups taught, and the problems found (every chat is looked at)."""
    if not any(c.groups for c in desired.chats):
        return desired, {}, []
    learned: dict[str, str] = {}
    problems: list[GroupProblem] = []
    chats = []
    for chat in desired.chats:
        if chat.groups:
            chat = _with_group_members(chat, groups, {**users, **learned}, learned, problems)
        chats.append(chat)
    return replace(desired, chats=tuple(chats)), learned, problems


def _with_group_members(
    chat: Chat,
    groups: Mapping[str, GroupRecord],
    users: Mapping[str, str],
    learned: dict[str, str],
    problems: list[GroupProblem],
) -> Chat:
    members = list(chat.members)
    seen = set()
    for m in members:
        seen.add(m.identity)
        oid = object_id_of(m.user, users)
        if oid:
            seen.add(oid.lower())
    sizes: list[str] = []
    for ref in chat.groups:
        record = groups.get(ref.identity)
        if record is None:
            problems.append(_unread(chat, ref))
            continue
        sizes.append(f"group {record.name} ({ref.group}) has {len(record.users)} users")
        for user in record.users:
            if user.object_id.lower() in seen or (user.upn and user.upn.lower() in seen):
                continue
            seen.add(user.object_id.lower())
            name = user.object_id
            if user.upn and all(c in _PLAIN_UPN for c in user.upn):
                name = user.upn
                learned[user.upn.lower()] = user.object_id
                seen.add(user.upn.lower())
            role = "guest" if user.guest else (ref.role or "owner")
            members.append(Member(name, role, None, ref.source, via=f"group {record.name}"))
    if len(members) > MAX_GROUP_MEMBERS:
        problems.append(
            GroupProblem(
                f"{chat.key}: {'; '.join(sizes)}: the chat would have {len(members)} members, "
                f"over Graph's limit of {MAX_GROUP_MEMBERS} for a group chat",
                "use a smaller group (or a team with channels for a group this size)",
            )
        )
    return replace(chat, members=tuple(members))


def _unread(chat: Chat, ref: GroupRef) -> GroupProblem:
    where = f" ({ref.source})" if ref.source else ""
    return GroupProblem(
        f"{chat.key}: group {ref.group}{where} has not been read from Graph yet",
        "plan with --refresh (the default when the state holds chats) to read its members",
    )
