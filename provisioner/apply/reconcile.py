"""Finding a group chat that a creation may have made: the lookup behind crash safety (issue 6).

Group ``POST /chats`` is not idempotent: every call makes a new chat
(``api-reference/v1.0/api/chat-post.md``). When a creation's outcome is unknown (a timeout, a
dropped connection, a 5xx, a killed run), provision never repeats it blindly: it lists the
group chats of one of the intended members (``api-reference/v1.0/api/chat-list.md``:
``GET /users/{id}/chats`` with ``$filter`` and ``$expand=members``, following
``@odata.nextLink``) and keeps the chats that have

* exactly the intended member set (compared by Entra object id; Graph reports members by
  ``userId``, so UPNs are resolved with ``GET /users/{upn}`` first, and an out-of-tenant UPN
  that cannot be resolved is compared with the member's ``email``),
* the intended topic, and
* a ``createdDateTime`` no earlier than when the creation was journaled, minus a clock skew
  allowance (our clock and Graph's may disagree; 5 minutes by default).

`match_created_chats` is the pure matcher; `find_created_chats` does the Graph calls.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Protocol

from provisioner.graph.errors import GraphNotFound
from provisioner.models import GROUP
from provisioner.states.records import Intent, MemberRecord

#: How much earlier than our journal entry Graph's ``createdDateTime`` may be and still count.
DEFAULT_CLOCK_SKEW = timedelta(minutes=5)

#: ``chat-list.md`` (known issue, as the emulator reproduces it): ``$expand=members`` lists at
#: most 25 members per chat, so a chat showing that many is read again in full before comparing.
EXPANDED_MEMBERS_LIMIT = 25

_GUID = re.compile(r"^[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}$")
_GRAPH_TIME = re.compile(
    r"^(\d{4})-(\d\d)-(\d\d)[T ](\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:?\d\d)?$"
)


class ChatReader(Protocol):
    """The part of `provisioner.graph.GraphClient` a lookup uses."""

    def get_user(self, id_or_upn: str) -> dict[str, Any]: ...

    def list_user_chats(
        self,
        user_id: str,
        *,
        chat_type: str | None = None,
        topic: str | None = None,
        expand_members: bool = True,
        top: int | None = None,
    ) -> Iterator[dict[str, Any]]: ...

    def list_members(self, chat_id: str) -> list[dict[str, Any]]: ...


def parse_time(text: object) -> datetime | None:
    """A Graph or ISO 8601 timestamp (``2020-12-04T23:10:28.51Z``: any number of fraction
    digits, ``Z`` or an offset; none means UTC) as an aware datetime, or None."""
    if not isinstance(text, str):
        return None
    found = _GRAPH_TIME.match(text.strip())
    if found is None:
        return None
    year, month, day, hour, minute, second, fraction, zone = found.groups()
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    tz = timezone.utc
    if zone and zone != "Z":
        sign = -1 if zone[0] == "-" else 1
        digits = zone[1:].replace(":", "")
        tz = timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))
    try:
        return datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second), micro, tz
        )
    except ValueError:
        return None


@dataclass(frozen=True)
class WantedMembers:
    """The member set a creation asked for: object ids where known, and the UPNs (lower
    case) that could not be resolved, matched against members' ``email`` instead."""

    object_ids: frozenset[str]
    unresolved: frozenset[str] = frozenset()

    @property
    def size(self) -> int:
        return len(self.object_ids) + len(self.unresolved)


def _members_match(members: Iterable[Mapping[str, Any]], wanted: WantedMembers) -> bool:
    ids: set[str] = set()
    emails: list[str] = []
    count = 0
    for m in members:
        count += 1
        user_id = str(m.get("userId") or "").lower()
        if user_id in wanted.object_ids and user_id not in ids:
            ids.add(user_id)
        else:
            emails.append(str(m.get("email") or "").lower())
    if count != wanted.size or ids != wanted.object_ids:
        return False
    return sorted(emails) == sorted(wanted.unresolved)


def match_created_chats(
    chats: Iterable[Mapping[str, Any]],
    wanted: WantedMembers,
    *,
    topic: str | None,
    started_at: datetime,
    clock_skew: timedelta = DEFAULT_CLOCK_SKEW,
) -> list[Mapping[str, Any]]:
    """The group chats among ``chats`` that the creation journaled at ``started_at`` may have
    made, oldest first. Each chat needs its full ``members`` list.

    A chat without a readable ``createdDateTime`` is kept: adopting a chat that already had
    exactly these members and topic is harmless, creating a second one is what must not happen.
    """
    not_before = started_at - clock_skew
    found: list[tuple[datetime, int, Mapping[str, Any]]] = []
    for n, chat in enumerate(chats):
        if chat.get("chatType", GROUP) != GROUP or chat.get("topic") != topic:
            continue
        created = parse_time(chat.get("createdDateTime"))
        if created is not None and created < not_before:
            continue
        if not _members_match(chat.get("members") or (), wanted):
            continue
        found.append((created or started_at, n, chat))
    found.sort(key=lambda item: (item[0], item[1]))
    return [chat for _, _, chat in found]


@dataclass
class Lookup:
    """What a lookup found: ``chat`` (the oldest match, to adopt) and ``duplicates`` (the
    other matches: reported, never deleted). ``object_ids`` maps each member's ``user`` to the
    object id Graph uses for it (resolved UPNs included); ``users`` the UPNs newly resolved."""

    chat: Mapping[str, Any] | None = None
    duplicates: tuple[Mapping[str, Any], ...] = ()
    object_ids: dict[str, str] = field(default_factory=dict)
    users: dict[str, str] = field(default_factory=dict)
    candidates: int = 0  # chats listed (after Graph's $filter)


def find_created_chats(
    reader: ChatReader,
    intent: Intent,
    *,
    users: MutableMapping[str, str] | Mapping[str, str],
    clock_skew: timedelta = DEFAULT_CLOCK_SKEW,
    page_size: int = 50,
) -> Lookup:
    """Look for the chat(s) ``intent`` may have created. ``users`` is the state's UPN ->
    object id cache (read only here; new resolutions are returned in ``Lookup.users``).

    Raises the Graph client's errors (a failed lookup leaves the intent for the next try).
    """
    started_at = parse_time(intent.started_at)
    if started_at is None:
        # Unreadable journal time: compare members and topic only (never skip the lookup).
        started_at = datetime.min.replace(tzinfo=timezone.utc) + clock_skew
    lookup = Lookup()
    object_ids: dict[str, str] = {}
    unresolved: set[str] = set()
    for member in intent.members:
        oid = _known_object_id(member, users)
        if oid is None:
            try:
                oid = str(reader.get_user(member.user).get("id") or "") or None
            except GraphNotFound:
                # An out-of-tenant UPN is not in this tenant's directory (user-get.md: 404).
                oid = None
            if oid is not None:
                lookup.users[member.user.lower()] = oid
        if oid is None:
            unresolved.add(member.user.lower())
        else:
            object_ids[member.user] = oid.lower()
    lookup.object_ids = object_ids
    wanted = WantedMembers(frozenset(object_ids.values()), frozenset(unresolved))
    anchor = _anchor(intent.members, object_ids)
    if anchor is None:
        return lookup  # nobody whose chats can be listed: nothing can be found
    chats = []
    for chat in reader.list_user_chats(
        anchor, chat_type=GROUP, topic=intent.topic, expand_members=True, top=page_size
    ):
        lookup.candidates += 1
        members = chat.get("members") or []
        if len(members) >= EXPANDED_MEMBERS_LIMIT and wanted.size >= EXPANDED_MEMBERS_LIMIT:
            chat = {**chat, "members": reader.list_members(str(chat["id"]))}
        chats.append(chat)
    matches = match_created_chats(
        chats, wanted, topic=intent.topic, started_at=started_at, clock_skew=clock_skew
    )
    if matches:
        lookup.chat = matches[0]
        lookup.duplicates = tuple(matches[1:])
    return lookup


def _known_object_id(member: MemberRecord, users: Mapping[str, str]) -> str | None:
    if member.object_id:
        return member.object_id
    if _GUID.match(member.user):
        return member.user
    return users.get(member.user.lower())


def _anchor(members: Iterable[MemberRecord], object_ids: Mapping[str, str]) -> str | None:
    """Whose chats to list: an in-tenant member with a known object id (an out-of-tenant
    user's chats are not readable through this tenant)."""
    fallback = None
    for member in members:
        oid = object_ids.get(member.user)
        if oid is None:
            continue
        if member.tenant_id is None:
            return oid
        fallback = fallback or oid
    return fallback
