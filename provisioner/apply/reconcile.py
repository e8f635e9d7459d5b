"""Finding a group chat that a creation may have made: the lookup behind crash safety (issue 6)
and behind ambiguous answers (issue 14).

Group ``POST /chats`` is not idempotent: every call makes a new chat
(``api-reference/v1.0/api/chat-post.md``; microsoft-graph-docs#16077). When a creation's
outcome is unknown (a timeout, a dropped connection, a 5xx, a killed run), provision never
repeats it blindly: it lists the group chats of a member (``chat-list.md``: ``GET
/users/{id}/chats`` with ``$expand=members``, following ``@odata.nextLink``) and keeps the chats
that have

* exactly the intended members, compared by Entra object id (``userId``), never by ``email``
  or display name: Graph's ``email`` is the mail address, not the UPN
  (microsoft-graph-docs#17692), and null for members of other tenants
  (MicrosoftDocs/msteams-docs#2190). UPNs are resolved with ``GET /users/{upn}`` first;
* the intended topic; and
* a ``createdDateTime`` no earlier than when the creation was journaled, minus a clock skew
  allowance (5 minutes by default). "When" is Graph's time (``Intent.graph_started_at``, from
  the ``Date`` of its answers, ``graph/clock.py``), so a host clock minutes off Graph's does
  not matter (issue 20); the allowance covers Graph's servers disagreeing among themselves.

The narrowest list is asked for first: one ``$filter`` clause (``topic eq`` or ``chatType
eq``; chat-list.md documents ``$filter`` but no expression, so these are assumptions, and no
filter joining properties with ``and`` is tried); when Graph refuses a query with a 400 the
lookup falls back to a plainer one (`provisioner.graph.fallback`), and every chat is matched
client-side whatever the form. A listing shows at most
25 members per chat (the known issue of "List chats"), so a candidate that may hold more is
confirmed with its full member list.

One lookup is not evidence that nothing was made: Graph lists new chats late (users report
minutes, microsoft-graph-docs-contrib#5343). ``lookup_delays`` spreads lookups over a
consistency window; the caller creates again only when all of them found nothing.

`match_created_chats` is the pure matcher; `find_created_chats` does the Graph calls.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Protocol, cast

from provisioner.graph.errors import GraphNotFound
from provisioner.graph.fallback import first_accepted
from provisioner.graph.reads import BatchClient
from provisioner.graph.users import lookup_users
from provisioner.models import GROUP, GUID_RE
from provisioner.states.records import Intent, MemberRecord

#: How much earlier than our journal entry Graph's ``createdDateTime`` may be and still count.
DEFAULT_CLOCK_SKEW = timedelta(minutes=5)

#: ``chat-list.md`` (known issue, as the emulator reproduces it): ``$expand=members`` lists at
#: most 25 members per chat, so a chat showing that many is read again in full before comparing.
EXPANDED_MEMBERS_LIMIT = 25

_GRAPH_TIME = re.compile(
    r"^(\d{4})-(\d\d)-(\d\d)[T ](\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:?\d\d)?$"
)


class ChatReader(Protocol):
    """The part of `provisioner.graph.client.GraphClient` a lookup uses."""

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


def lookup_delays(window_s: float, elapsed_s: float = 0.0) -> list[float]:
    """When to look (seconds from now) for a chat whose creation began ``elapsed_s`` ago:
    at once, then at doubling intervals (a sixteenth of the window first: most chats are
    listed within seconds), the last one once the whole window has passed since the creation.
    A creation older than the window needs one lookup."""
    remaining = max(0.0, window_s - max(0.0, elapsed_s))
    delays = [0.0]
    step = max(window_s / 16, 0.01)
    at = 0.0
    while at < remaining:
        at = min(remaining, at + step)
        delays.append(at)
        step *= 2
    return delays


@dataclass(frozen=True)
class WantedMembers:
    """The member set a creation asked for: the object ids known, and how many members had
    none (a UPN the directory did not know: counted, never matched by ``email``)."""

    object_ids: frozenset[str]
    unresolved: int = 0

    @property
    def size(self) -> int:
        return len(self.object_ids) + self.unresolved


def _members_match(members: Iterable[Mapping[str, Any]], wanted: WantedMembers) -> bool:
    # Only user members count: a member of another type (an app or a bot, no userId) in the
    # list must not hide the chat the creation made (issue 20: 3 chats became 6).
    ids = [str(m["userId"]).lower() for m in members if isinstance(m, Mapping) and m.get("userId")]
    return len(ids) == wanted.size and wanted.object_ids <= set(ids)


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
    found: list[tuple[datetime, int, Mapping[str, Any]]] = []
    seen: set[str] = set()
    for n, chat in enumerate(chats):
        if not _may_be_it(chat, topic, started_at - clock_skew) or str(chat.get("id")) in seen:
            continue
        if not _members_match(chat.get("members") or (), wanted):
            continue
        seen.add(str(chat.get("id")))
        created = parse_time(chat.get("createdDateTime"))
        found.append((created or started_at, n, chat))
    found.sort(key=lambda item: (item[0], item[1]))
    return [chat for _, _, chat in found]


def _may_be_it(chat: Mapping[str, Any], topic: str | None, not_before: datetime) -> bool:
    """Type, topic and creation time fit (members are compared apart)."""
    if chat.get("chatType", GROUP) != GROUP or chat.get("topic") != topic:
        return False
    created = parse_time(chat.get("createdDateTime"))
    return created is None or created >= not_before


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
    refused: tuple[str, ...] = ()  # queries Graph refused (400) before a plainer one answered


def find_created_chats(
    reader: ChatReader,
    intent: Intent,
    *,
    users: MutableMapping[str, str] | Mapping[str, str],
    clock_skew: timedelta = DEFAULT_CLOCK_SKEW,
    page_size: int = 50,
    anchor: str | None = None,
) -> Lookup:
    """Look for the chat(s) ``intent`` may have created. ``users`` is the state's UPN ->
    object id cache (read only here; new resolutions are returned in ``Lookup.users``).
    ``anchor``: whose chats to list (delegated calls may only list the signed-in user's,
    chat-list.md); by default an in-tenant member.

    Raises the Graph client's errors (a failed lookup leaves the intent for the next try).
    """
    # Graph's time when the creation was journaled, compared with Graph's createdDateTime;
    # the host's time only for intents journaled before any Graph answer told its time.
    started_at = parse_time(intent.graph_started_at) or parse_time(intent.started_at)
    if started_at is None:
        # Unreadable journal time: compare members and topic only (never skip the lookup).
        started_at = datetime.min.replace(tzinfo=timezone.utc) + clock_skew
    lookup = Lookup()
    lookup.object_ids, unresolved = _resolve(reader, intent, users, lookup.users)
    wanted = WantedMembers(frozenset(lookup.object_ids.values()), unresolved)
    anchor = anchor or _anchor(intent.members, lookup.object_ids)
    if anchor is None:
        return lookup  # nobody whose chats can be listed: nothing can be found
    not_before = started_at - clock_skew
    chats = []
    for chat in _listed(reader, anchor, intent.topic, page_size, lookup):
        lookup.candidates += 1
        if not _may_be_it(chat, intent.topic, not_before):
            continue
        members = chat.get("members")
        if members is None or (
            len(members) >= EXPANDED_MEMBERS_LIMIT and wanted.size >= EXPANDED_MEMBERS_LIMIT
        ):
            # Not expanded, or maybe cut at 25: confirm the candidate with its member list.
            chat = {**chat, "members": reader.list_members(str(chat["id"]))}
        chats.append(chat)
    matches = match_created_chats(
        chats, wanted, topic=intent.topic, started_at=started_at, clock_skew=clock_skew
    )
    if matches:
        lookup.chat = matches[0]
        lookup.duplicates = tuple(matches[1:])
    return lookup


def _resolve(
    reader: ChatReader,
    intent: Intent,
    users: Mapping[str, str],
    resolved: dict[str, str],
) -> tuple[dict[str, str], int]:
    """Each member's object id (``user`` -> id), and how many have none. UPNs not known yet
    are resolved in one go (``$batch``, 20 per request, where the reader has it); new
    resolutions go into ``resolved`` (UPN, lower case -> id)."""
    unknown = [m.user for m in intent.members if _known_object_id(m, users) is None]
    found = _look_up_users(reader, unknown)
    resolved.update(found)
    object_ids: dict[str, str] = {}
    for member in intent.members:
        oid = _known_object_id(member, users) or found.get(member.user.lower())
        if oid is not None:
            object_ids[member.user] = oid.lower()
    return object_ids, len(intent.members) - len(object_ids)


def _look_up_users(reader: ChatReader, upns: list[str]) -> dict[str, str]:
    """UPN (lower case) -> object id for those Graph knows. A 404 is a user not in this
    tenant's directory (user-get.md); validate refuses out-of-tenant members named by UPN, so
    this is a user gone since."""
    if not upns:
        return {}
    if len(upns) > 1 and callable(getattr(reader, "batch", None)):
        answers = lookup_users(cast(BatchClient, reader), upns, concurrency=1)
        return {upn: str(u["id"]) for upn, u in answers.items() if u and u.get("id")}
    found = {}
    for upn in upns:
        try:
            oid = str(reader.get_user(upn).get("id") or "")
        except GraphNotFound:
            continue
        if oid:
            found[upn.lower()] = oid
    return found


def _listed(
    reader: ChatReader, anchor: str, topic: str | None, page_size: int, lookup: Lookup
) -> Iterator[Mapping[str, Any]]:
    """The anchor's chats, through the narrowest query Graph accepts (`graph.fallback`): one
    ``$filter`` clause (undocumented) with ``$expand=members``, else without the filter, else
    without the expansion (members are then read per candidate). The caller checks type and
    topic of every chat whatever the form (``_may_be_it``)."""
    narrow: dict[str, Any] = {"topic": topic} if topic is not None else {"chat_type": GROUP}

    def form(**kwargs: Any) -> Callable[[], Iterator[Mapping[str, Any]]]:
        return lambda: reader.list_user_chats(anchor, top=page_size, **kwargs)

    chats, lookup.refused = first_accepted(
        [
            ("$filter with $expand=members", form(**narrow, expand_members=True)),
            ("$expand=members", form(expand_members=True)),
            ("a plain list", form(expand_members=False)),
        ]
    )
    return chats


def _known_object_id(member: MemberRecord, users: Mapping[str, str]) -> str | None:
    if member.object_id:
        return member.object_id
    if GUID_RE.match(member.user):
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
