"""The live view of managed chats (what refresh read from Graph) and how members are matched.

Graph names a chat member by object id (``userId``) and email; the state and the manifest name
them as written (GUID or UPN). Matching goes by what was written or by object id, case-
insensitively, so once UPNs are resolved (``provisioner.graph.users``) the form a manifest uses does
not matter. ``find_drift`` compares a state record with the live chat: the "changed outside
provision" section of a plan.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any

from provisioner.models import GROUP, GUID_RE
from provisioner.plans.types import Action, Change, Drift, RoleChange
from provisioner.states.records import ChatRecord, MemberRecord
from provisioner.states.settling import ADDED, REMOVED, Settling


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
    tenant_id: str | None = None  # the chat's tenantId: where it was created

    def as_record(
        self,
        known: ChatRecord | None = None,
        now: datetime | None = None,
        names: Mapping[str, str] | None = None,
    ) -> ChatRecord:
        """The live chat as a state record; members keep the ``user`` text state had for them
        (matched by object id) so plans and state keep showing users as the manifest wrote
        them. A member Graph reports that state does not know is named by the UPN ``names``
        (object id -> UPN, from ``upn_names``) gives it, else by object id; never by
        ``email`` (the mail address, not the UPN, microsoft-graph-docs#17692; null for other
        tenants' members, MicrosoftDocs/msteams-docs#2190).

        Membership changes provision made within the consistency window (``known.settling``)
        win over the list: Graph's member lists lag behind writes (contrib#5343), so a member
        provision added that the list does not show yet, or one it removed that the list
        still shows, is not a change made in Teams."""
        written: dict[str, MemberRecord] = {}
        if known is not None:
            for m in known.members:
                if m.object_id:
                    written[m.object_id.lower()] = m
                elif GUID_RE.match(m.user):
                    written[m.user.lower()] = m
        members = tuple(
            _as_member(m, written.get(m.object_id.lower()), names) for m in self.members
        )
        settling: tuple[Settling, ...] = ()
        if known is not None and known.settling:
            members, settling = _without_lag(members, known, now or datetime.now(timezone.utc))
        return ChatRecord(
            chat_id=self.chat_id,
            chat_type=self.chat_type or (known.chat_type if known else GROUP),
            members=members,
            topic=self.topic,
            created_at=self.created_at or (known.created_at if known else None),
            settling=settling,
        )


def _as_member(
    m: LiveMember, known: MemberRecord | None, names: Mapping[str, str] | None
) -> MemberRecord:
    """A listed member as a record. A member state does not know was added by someone else
    (``added`` False: ``membership: additive`` leaves it alone). ``tenantId`` missing from the
    answer is not news: Graph's known issue "some properties for chat members might be
    missing" (concepts/includes/known-issues/teamwork-communications.md) says tenantId, email
    and displayName may come back empty, so the recorded tenant stands."""
    if known is None:
        user = (names or {}).get(m.object_id.lower(), m.object_id)
        return MemberRecord(user, m.role, m.object_id, m.tenant_id, m.membership_id, added=False)
    tenant = m.tenant_id if m.tenant_id is not None else known.tenant_id
    return MemberRecord(
        known.user, m.role, m.object_id, tenant, m.membership_id, known.added, known.via
    )


def _without_lag(
    members: tuple[MemberRecord, ...], known: ChatRecord, now: datetime
) -> tuple[tuple[MemberRecord, ...], tuple[Settling, ...]]:
    """``members`` (as listed) corrected by the changes still settling, and those changes."""
    pending = tuple(s for s in known.settling if _before(now, s.until))
    added = {s.object_id.lower() for s in pending if s.change == ADDED}
    removed = {s.object_id.lower() for s in pending if s.change == REMOVED}
    listed = {m.object_id.lower() for m in members if m.object_id}
    kept = [m for m in members if not (m.object_id and m.object_id.lower() in removed)]
    kept += [m for m in known.members if m.object_id and m.object_id.lower() in added - listed]
    return tuple(kept), pending


def _before(now: datetime, until: str) -> bool:
    try:
        end = datetime.fromisoformat(until.replace("Z", "+00:00"))
    except ValueError:
        return False  # unreadable: the change is no longer trusted over the list
    if end.tzinfo is None:
        end = end.replace(tzinfo=timezone.utc)
    return now < end


def upn_names(users: Mapping[str, str]) -> dict[str, str]:
    """Object id (lower case) -> UPN, from the resolved users (UPN -> object id)."""
    return {oid.lower(): upn for upn, oid in users.items()}


def object_id_of(user: str, users: Mapping[str, str]) -> str | None:
    if GUID_RE.match(user):
        return user
    return users.get(user.lower())


def with_object_ids(record: ChatRecord, users: Mapping[str, str]) -> ChatRecord:
    """The record with the object ids of its UPN members filled in from the resolved users,
    so it can be matched exactly with what Graph reports (``userId``)."""
    if not users or all(m.object_id for m in record.members):
        return record
    members = tuple(
        m if m.object_id else replace(m, object_id=object_id_of(m.user, users))
        for m in record.members
    )
    return replace(record, members=members)


def _index(records: Iterable[MemberRecord]) -> dict[str, MemberRecord]:
    index: dict[str, MemberRecord] = {}
    for r in records:
        index.setdefault(r.user.lower(), r)
        if r.object_id:
            index.setdefault(r.object_id.lower(), r)
    return index


def match_members(
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


def find_drift(
    key: str,
    record: ChatRecord,
    seen: LiveChat,
    users: Mapping[str, str],
    names: Mapping[str, str] | None = None,
) -> Drift | None:
    """What changed in Teams since state was written, or None."""
    if seen.gone:
        return Drift(key=key, chat_id=record.chat_id, gone=True)
    live = seen.as_record(record, names=names)
    matched = match_members(
        ((m.user, m.object_id or object_id_of(m.user, users)) for m in record.members),
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
        record=live,
    )


def without_signed_in_user(
    changes: Iterable[Change], signed_in: str, users: Mapping[str, str]
) -> list[str]:
    """The keys of planned creations that do not include ``signed_in`` (an object id). In
    delegated mode Graph creates a chat only with the caller among its members (chat-post.md:
    every participant is listed, the caller too), so such a plan would fail at apply. A member
    whose UPN is not resolved might be the caller: such a creation is not reported."""
    wanted = signed_in.lower()
    keys = []
    for change in changes:
        if change.action is not Action.CREATE:
            continue
        # Only the members of the POST itself count: a chat of more than 200 is created
        # with the first 200 (issue 22), and the caller must be among them.
        sent = len(change.body.get("members") or ()) if change.body else len(change.members)
        ids = [m.object_id or object_id_of(m.user, users) for m in change.members[:sent]]
        if wanted not in {i.lower() for i in ids if i} and all(ids):
            keys.append(change.key)
    return keys


def live_chat(body: Mapping[str, Any], chat_id: str | None = None) -> LiveChat:
    """A Graph ``chat`` (with ``members`` expanded) as a `LiveChat`.

    A member's ``tenantId`` is kept only when it differs from the chat's: the manifest sets
    ``tenantId`` for out-of-tenant users alone, and every in-tenant member carries the home
    tenant. A member without roles counts as an owner (chat-post.md: a member is an owner or
    a guest; guests always have the guest role).
    """
    home = str(body.get("tenantId") or "").lower()
    members = []
    for m in body.get("members") or ():
        if not isinstance(m, Mapping) or not m.get("userId"):
            continue  # not a user (e.g. an app or bot in the chat): not managed here
        roles = [str(r).lower() for r in m.get("roles") or ()]
        tenant = str(m.get("tenantId") or "") or None
        if tenant is not None and (not home or tenant.lower() == home):
            tenant = None
        members.append(
            LiveMember(
                object_id=str(m["userId"]),
                role="guest" if "guest" in roles else "owner",
                membership_id=str(m["id"]) if m.get("id") else None,
                tenant_id=tenant,
                email=str(m["email"]) if m.get("email") else None,
            )
        )
    return LiveChat(
        chat_id=str(body.get("id") or chat_id or ""),
        chat_type=str(body.get("chatType") or ""),
        topic=str(body["topic"]) if body.get("topic") is not None else None,
        members=tuple(members),
        created_at=str(body["createdDateTime"]) if body.get("createdDateTime") else None,
        tenant_id=home[:64] or None,
    )
