"""Drift checks below one read per chat: read the managed chats through a few users' chat lists.

A per-chat refresh costs one read per chat (a ``$batch`` item is one read,
``concepts/json-batching.md``), so 10,000 chats need at least 333 s at the 30 reads per second
of ``includes/throttling-teams.md``. Graph's list of a user's chats
(``api-reference/v1.0/api/chat-list.md``: ``GET /users/{id}/chats?$expand=members``) returns up
to 50 chats per call (``$top`` at most 50), each with its members; managed chats usually share
members (the owner, an onboarding team). So `cover` picks a small set of users whose lists hold
the managed chats -- a greedy set cover computed from the state's members -- and reads those
lists. Each page costs one read of the tenant's 30 per second and one of the five requests
per second per user that ``includes/throttling-teams.md`` allows on "List chats or Get chat"
(the client's pacer keeps both, ``graph.pacing.USER_CHATS``).

The rest is read one by one, as the per-chat refresh does (``refresh.read_chats``):

* chats no chosen user covers;
* chats the state gives 25 members or more, and listed chats that show 25 members: chat-list.md's
  known issue caps ``$expand=members`` at 25 members per chat, so such a list may be cut short;
* chats a chosen user's list did not hold: deleted (a 404 says so), or that user left or was
  removed (drift the single read reports as the per-chat refresh would).

So the live view is the one the per-chat refresh gives (``tests/operations/test_cover.py``
compares the plans on the emulator). Lists lag behind writes (graph-facts), as member lists
do; the state's settling records cover provision's own recent changes either way.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, runtime_checkable

from provisioner.graph.errors import GraphError
from provisioner.graph.reads import READ_CONCURRENCY, BatchClient
from provisioner.plans.live import LiveChat, live_chat
from provisioner.states.records import State

#: chat-list.md: "Maximum allowed $top value is 50."
LIST_PAGE = 50
#: chat-list.md, known issues: with $expand=members a listed chat shows at most 25 members.
LIST_MEMBER_CAP = 25
#: A user's list is read only if it covers at least this many chats not covered yet: the list
#: also pages through the user's other chats, which cost reads and cover nothing.
MIN_COVER = 10


@runtime_checkable
class ListClient(BatchClient, Protocol):
    """A client that can also list a user's chats (`provisioner.graph.client.GraphClient`)."""

    def list_user_chats(
        self,
        user_id: str,
        *,
        chat_type: str | None = None,
        topic: str | None = None,
        expand_members: bool = True,
        top: int | None = None,
    ) -> Iterator[dict[str, Any]]: ...

    def signed_in_user(self) -> str | None: ...


def members_by_chat(state: State) -> dict[str, frozenset[str]]:
    """The object ids of each managed chat's members, by chat id, for chats a list can show
    whole (fewer members than the list's cap); members without a known object id are left out
    (a user's list is read by object id)."""
    out: dict[str, frozenset[str]] = {}
    for record in state.chats.values():
        if len(record.members) >= LIST_MEMBER_CAP:
            continue
        ids = set()
        for member in record.members:
            oid = (
                member.object_id or state.users.get(member.user) or state.users.get(member.identity)
            )
            if oid:
                ids.add(oid.lower())
        out[record.chat_id] = frozenset(ids)
    return out


def covering_users(
    chats: Mapping[str, Iterable[str]], *, only: str | None = None, min_cover: int = MIN_COVER
) -> list[tuple[str, frozenset[str]]]:
    """Greedy set cover: users (each with the chats it is chosen for) until no user covers
    ``min_cover`` more chats. ``only`` restricts the choice to one user (delegated calls list
    the signed-in user's chats alone, chat-list.md). Ties go to the smaller user id, so the
    choice does not depend on dict order."""
    by_user: dict[str, set[str]] = {}
    for chat_id, users in chats.items():
        for user in users:
            if only is None or user == only:
                by_user.setdefault(user, set()).add(chat_id)
    heap = [(-len(ids), user) for user, ids in by_user.items()]
    heapq.heapify(heap)
    covered: set[str] = set()
    chosen = []
    while heap:
        stale, user = heapq.heappop(heap)
        fresh = by_user[user] - covered
        if len(fresh) < min_cover:
            if len(fresh) == -stale:
                break  # the best user left covers too few: so does every other
            continue
        if len(fresh) != -stale:  # lazy greedy: re-queue with its current gain
            heapq.heappush(heap, (-len(fresh), user))
            continue
        chosen.append((user, frozenset(fresh)))
        covered |= fresh
    return chosen


def read_lists(
    client: ListClient,
    chosen: list[tuple[str, frozenset[str]]],
    wanted: frozenset[str],
    *,
    concurrency: int = READ_CONCURRENCY,
) -> tuple[dict[str, LiveChat], set[str]]:
    """The managed chats (``wanted``) found in the chosen users' lists, and the chats to read
    one by one: those whose list showed the member cap, and those of a user whose list failed."""

    def one(user: str, assigned: frozenset[str]) -> tuple[list[dict[str, Any]], set[str]]:
        try:
            pages = client.list_user_chats(user, expand_members=True, top=LIST_PAGE)
            return [c for c in pages if str(c.get("id") or "") in wanted], set()
        except GraphError:
            return [], set(assigned)  # e.g. a user deleted since: read their chats singly

    found: dict[str, LiveChat] = {}
    single: set[str] = set()
    with ThreadPoolExecutor(max_workers=max(1, min(concurrency, len(chosen) or 1))) as pool:
        for listed, failed in pool.map(lambda c: one(*c), chosen):
            single |= failed
            for body in listed:
                chat_id = str(body["id"])
                members = body.get("members")
                if isinstance(members, list) and len(members) >= LIST_MEMBER_CAP:
                    single.add(chat_id)  # maybe cut short by the cap
                elif chat_id not in single:
                    found[chat_id] = live_chat(body, chat_id)
    for chat_id in single:
        found.pop(chat_id, None)
    return found, single


def cover_refresh(
    client: ListClient, state: State, *, concurrency: int = READ_CONCURRENCY
) -> tuple[dict[str, LiveChat], list[str]]:
    """The chats read through covering lists, and the chat ids still to read one by one
    (all of them when no user covers enough)."""
    chats = members_by_chat(state)
    signed_in = client.signed_in_user()
    chosen = covering_users(chats, only=signed_in.lower() if signed_in else None)
    every = [record.chat_id for record in state.chats.values()]
    if not chosen:
        return {}, every
    wanted = frozenset(every)
    found, _ = read_lists(client, chosen, wanted, concurrency=concurrency)
    return found, [chat_id for chat_id in dict.fromkeys(every) if chat_id not in found]
