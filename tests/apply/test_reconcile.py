"""The reconciliation matcher and lookup: which chat an unfinished group creation made."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from provisioner.apply.reconcile import (
    EXPANDED_MEMBERS_LIMIT,
    WantedMembers,
    find_created_chats,
    lookup_delays,
    match_created_chats,
    parse_time,
)
from provisioner.graph.errors import GraphError, GraphNotFound
from provisioner.states.records import Intent, MemberRecord

A = "8c0a1a67-50ce-4114-bb6c-da9c5dbcf6ca"
B = "3626a173-f2bc-4883-bcf7-01514c3bfb82"
C = "82af01c5-f7cc-4a2e-a728-3a5df21afd9d"
D = "4595d2f2-7b31-446c-84fd-9b795e63114b"
MEGAN = "megan@contoso.com"
MEGAN_ID = "d74fc2ed-cb0e-4288-a219-b5c71abaf2aa"
STARTED = datetime(2024, 5, 1, 12, 0, 0, tzinfo=timezone.utc)


def graph_time(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 10000:02d}Z"


def member(user_id: str, email: str | None = None) -> dict[str, Any]:
    return {"id": f"m-{user_id}", "userId": user_id, "email": email, "roles": ["owner"]}


def chat(
    chat_id: str,
    *user_ids: str,
    topic: str | None = "Launch",
    created: datetime = STARTED + timedelta(seconds=1),
    chat_type: str = "group",
) -> dict[str, Any]:
    return {
        "id": chat_id,
        "chatType": chat_type,
        "topic": topic,
        "createdDateTime": graph_time(created),
        "members": [member(u) for u in user_ids],
    }


WANTED = WantedMembers(frozenset({A, B, C}))


def test_parse_time_reads_graph_and_journal_formats() -> None:
    assert parse_time("2020-12-04T23:10:28.51Z") == datetime(
        2020, 12, 4, 23, 10, 28, 510000, tzinfo=timezone.utc
    )
    assert parse_time("2024-05-01T12:00:00.1234567Z") == datetime(
        2024, 5, 1, 12, 0, 0, 123456, tzinfo=timezone.utc
    )
    assert parse_time("2024-05-01T14:00:00.000+02:00") == STARTED
    assert parse_time("2024-05-01T12:00:00") == STARTED
    assert parse_time("yesterday") is None
    assert parse_time(None) is None
    assert parse_time("2024-13-01T12:00:00Z") is None


def test_exact_member_set_and_topic_match() -> None:
    chats = [
        chat("19:subset", A, B),
        chat("19:superset", A, B, C, D),
        chat("19:other-topic", A, B, C, topic="Other"),
        chat("19:one-on-one", A, B, C, chat_type="oneOnOne"),
        chat("19:right", C, A, B),
    ]
    found = match_created_chats(chats, WANTED, topic="Launch", started_at=STARTED)
    assert [c["id"] for c in found] == ["19:right"]


def test_a_member_that_is_not_a_user_does_not_hide_the_chat() -> None:
    # Issue 20: an app or a bot in a chat's member list (no userId) made the lookup miss the
    # chat the creation had made, and the chat was created again (3 chats became 6).
    found = chat("19:with-bot", A, B, C)
    found["members"] = [*found["members"], {"@odata.type": "#microsoft.graph.appMember"}, "x"]
    assert match_created_chats([found], WANTED, topic="Launch", started_at=STARTED)


def test_user_ids_compare_case_insensitively() -> None:
    chats = [chat("19:upper", A.upper(), B, C)]
    assert match_created_chats(chats, WANTED, topic="Launch", started_at=STARTED)


def test_clock_skew_allows_a_graph_clock_behind_ours_but_not_an_old_chat() -> None:
    chats = [
        chat("19:skewed", A, B, C, created=STARTED - timedelta(minutes=4)),
        chat("19:old", A, B, C, created=STARTED - timedelta(minutes=6)),
    ]
    found = match_created_chats(chats, WANTED, topic="Launch", started_at=STARTED)
    assert [c["id"] for c in found] == ["19:skewed"]
    strict = match_created_chats(
        chats, WANTED, topic="Launch", started_at=STARTED, clock_skew=timedelta(0)
    )
    assert strict == []


def test_two_candidates_are_ordered_oldest_first() -> None:
    chats = [
        chat("19:second", A, B, C, created=STARTED + timedelta(seconds=9)),
        chat("19:first", A, B, C, created=STARTED + timedelta(seconds=2)),
    ]
    found = match_created_chats(chats, WANTED, topic="Launch", started_at=STARTED)
    assert [c["id"] for c in found] == ["19:first", "19:second"]


def test_none_match() -> None:
    assert match_created_chats([], WANTED, topic="Launch", started_at=STARTED) == []
    assert (
        match_created_chats([chat("19:x", A, B)], WANTED, topic="Launch", started_at=STARTED) == []
    )


def test_a_chat_without_a_readable_time_is_kept() -> None:
    # Adopting a chat that already had exactly these members and topic is harmless; creating a
    # second one is not.
    c = chat("19:no-time", A, B, C)
    c["createdDateTime"] = None
    assert match_created_chats([c], WANTED, topic="Launch", started_at=STARTED) == [c]


def test_unresolved_members_are_counted_never_matched_by_email() -> None:
    # Graph's email is the mail address, not the UPN (microsoft-graph-docs#17692), and null
    # for other tenants' members (msteams-docs#2190): an unresolved member only counts.
    wanted = WantedMembers(frozenset({A, B}), 1)
    good = chat("19:good", A, B)
    good["members"].append(member("f0000000-0000-0000-0000-000000000001", None))
    bigger = chat("19:bigger", A, B, C)
    bigger["members"].append(member("f0000000-0000-0000-0000-000000000002", "x@fabrikam.com"))
    found = match_created_chats([bigger, good], wanted, topic="Launch", started_at=STARTED)
    assert [c["id"] for c in found] == ["19:good"]


# --- the lookup, with a fake Graph ------------------------------------------------------------


class FakeGraph:
    """Pages of a user's chats (like ``@odata.nextLink``), users, full member lists."""

    def __init__(self, chats: list[dict[str, Any]], page: int = 2) -> None:
        self.chats = chats
        self.page = page
        self.users = {MEGAN: MEGAN_ID}
        self.calls: list[str] = []

    def get_user(self, id_or_upn: str) -> dict[str, Any]:
        self.calls.append(f"GET /users/{id_or_upn}")
        if id_or_upn.lower() not in self.users:
            raise GraphNotFound("not found", status=404, code="Request_ResourceNotFound")
        return {"id": self.users[id_or_upn.lower()]}

    def list_user_chats(
        self,
        user_id: str,
        *,
        chat_type: str | None = None,
        topic: str | None = None,
        expand_members: bool = True,
        top: int | None = None,
    ) -> Iterator[dict[str, Any]]:
        assert expand_members
        mine = [
            c
            for c in self.chats
            if any(m["userId"] == user_id for m in c["full"])
            and (chat_type is None or c["chatType"] == chat_type)
            and (topic is None or c["topic"] == topic)
        ]
        for start in range(0, len(mine), self.page):
            self.calls.append(f"GET /users/{user_id}/chats page {start // self.page + 1}")
            for c in mine[start : start + self.page]:
                shown = c["full"][:EXPANDED_MEMBERS_LIMIT]
                yield {k: v for k, v in c.items() if k != "full"} | {"members": shown}

    def list_members(self, chat_id: str) -> list[dict[str, Any]]:
        self.calls.append(f"GET /chats/{chat_id}/members")
        return next(c["full"] for c in self.chats if c["id"] == chat_id)


def stored(chat_id: str, *user_ids: str, **kw: Any) -> dict[str, Any]:
    c = chat(chat_id, *user_ids, **kw)
    c["full"] = c.pop("members")
    return c


def intent(*users: str, topic: str | None = "Launch", tenant: str | None = None) -> Intent:
    return Intent(
        key="launch",
        chat_type="group",
        members=tuple(
            MemberRecord(u, tenant_id=tenant if i else None) for i, u in enumerate(users)
        ),
        attempt_id="a1",
        started_at=STARTED.isoformat(timespec="milliseconds"),
        topic=topic,
    )


def test_lookup_pages_through_a_members_chats() -> None:
    noise = [stored(f"19:noise-{n}", A, B, D) for n in range(5)]
    graph = FakeGraph([*noise, stored("19:made", A, B, C)], page=2)
    found = find_created_chats(graph, intent(A, B, C), users={})
    assert found.chat is not None and found.chat["id"] == "19:made"
    assert found.duplicates == ()
    assert found.candidates == 6
    assert sum("chats page" in c for c in graph.calls) == 3


def test_lookup_resolves_upns_and_reports_them() -> None:
    graph = FakeGraph([stored("19:made", MEGAN_ID, B, C)])
    found = find_created_chats(graph, intent(MEGAN, B, C), users={})
    assert found.chat is not None and found.chat["id"] == "19:made"
    assert found.users == {MEGAN: MEGAN_ID}
    assert found.object_ids[MEGAN] == MEGAN_ID
    # A cached resolution costs no request.
    graph.calls.clear()
    again = find_created_chats(graph, intent(MEGAN, B, C), users={MEGAN: MEGAN_ID})
    assert again.chat is not None
    assert not any(c.startswith("GET /users/megan") for c in graph.calls)


def test_lookup_lists_the_chats_of_an_in_tenant_member() -> None:
    graph = FakeGraph([stored("19:made", A, B, C)])
    # C and A are out-of-tenant (tenantId set): their chats are not this tenant's to list.
    find_created_chats(
        graph, intent(B, C, A, tenant="4dc1fe35-8ac6-4f0d-904a-7ebcd364bea1"), users={}
    )
    listed = [c for c in graph.calls if "/chats page" in c]
    assert listed and listed[0].startswith(f"GET /users/{B}/chats")


def test_lookup_with_two_candidates_adopts_the_oldest() -> None:
    graph = FakeGraph(
        [
            stored("19:late", A, B, C, created=STARTED + timedelta(seconds=30)),
            stored("19:early", A, B, C, created=STARTED + timedelta(seconds=3)),
        ]
    )
    found = find_created_chats(graph, intent(A, B, C), users={})
    assert found.chat is not None and found.chat["id"] == "19:early"
    assert [c["id"] for c in found.duplicates] == ["19:late"]


def test_lookup_finds_none() -> None:
    graph = FakeGraph([stored("19:other", A, B, D)])
    found = find_created_chats(graph, intent(A, B, C), users={})
    assert found.chat is None and found.duplicates == ()


def test_lookup_reads_full_member_lists_of_large_chats() -> None:
    people = [f"00000000-0000-0000-0000-{n:012d}" for n in range(30)]
    graph = FakeGraph(
        [
            stored("19:big-other", *people[:29], D),  # same first 25 members, differs later
            stored("19:big", *people),
        ]
    )
    found = find_created_chats(graph, intent(*people), users={})
    assert found.chat is not None and found.chat["id"] == "19:big"
    assert "GET /chats/19:big/members" in graph.calls


@pytest.mark.parametrize("topic", [None, "Launch"])
def test_topic_none_matches_only_chats_without_topic(topic: str | None) -> None:
    graph = FakeGraph([stored("19:untitled", A, B, C, topic=None), stored("19:titled", A, B, C)])
    found = find_created_chats(graph, intent(A, B, C, topic=topic), users={})
    assert found.chat is not None
    assert found.chat["id"] == ("19:untitled" if topic is None else "19:titled")
    assert found.duplicates == ()


# --- issue 14: documented queries only, a fallback when refused, lookups over a window -------


class RefusingGraph(FakeGraph):
    """Refuses ``$filter`` (and, with ``expand``, ``$expand`` too) with a 400, as Graph
    refuses query forms it does not support."""

    def __init__(self, chats: list[dict[str, Any]], *, expand: bool = False) -> None:
        super().__init__(chats)
        self.refuse_expand = expand

    def list_user_chats(
        self,
        user_id: str,
        *,
        chat_type: str | None = None,
        topic: str | None = None,
        expand_members: bool = True,
        top: int | None = None,
    ) -> Iterator[dict[str, Any]]:
        if chat_type is not None or topic is not None or (expand_members and self.refuse_expand):
            self.calls.append("refused")
            raise GraphError("Invalid filter clause", status=400, code="BadRequest")
        if expand_members:
            yield from super().list_user_chats(user_id, top=top)
            return
        for c in super().list_user_chats(user_id, top=top):
            yield {k: v for k, v in c.items() if k != "members"}


@pytest.mark.parametrize("expand", [False, True])
def test_a_refused_query_falls_back_to_a_plainer_one(expand: bool) -> None:
    graph = RefusingGraph(
        [stored("19:other", A, B, C, topic="Other"), stored("19:made", A, B, C)], expand=expand
    )
    found = find_created_chats(graph, intent(A, B, C), users={})
    assert found.chat is not None and found.chat["id"] == "19:made"
    assert len(found.refused) == (2 if expand else 1)
    # Without members in the list, only the candidate whose topic fits is read in full.
    assert ("GET /chats/19:made/members" in graph.calls) == expand
    assert "GET /chats/19:other/members" not in graph.calls


def test_the_filter_is_one_documented_clause() -> None:
    seen: list[dict[str, Any]] = []

    class Spy(FakeGraph):
        def list_user_chats(self, user_id: str, **kw: Any) -> Iterator[dict[str, Any]]:
            seen.append(kw)
            return super().list_user_chats(user_id, **kw)

    find_created_chats(Spy([]), intent(A, B, topic="Launch"), users={})
    find_created_chats(Spy([]), intent(A, B, topic=None), users={})
    assert seen[0]["topic"] == "Launch" and seen[0].get("chat_type") is None
    assert seen[1]["chat_type"] == "group" and seen[1].get("topic") is None


def test_lookups_are_spread_over_the_window() -> None:
    delays = lookup_delays(60.0)
    assert delays[0] == 0.0 and delays[-1] == 60.0
    assert delays == sorted(delays) and 4 <= len(delays) <= 8
    gaps = [b - a for a, b in itertools.pairwise(delays)]
    assert gaps[0] < gaps[-2]  # dense at first, when most chats appear
    assert lookup_delays(60.0, elapsed_s=45.0)[-1] == 15.0  # counted from the creation
    assert lookup_delays(60.0, elapsed_s=600.0) == [0.0]  # long past: one lookup
    assert lookup_delays(0.0) == [0.0]
