"""Drift checks through covering lists: the same live view and plan as the per-chat refresh."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from lib.lifecycle_support import client_for, create

from provisioner.emulator import EmulatorServer
from provisioner.graph.client import GraphClient
from provisioner.models import Chat, DesiredState, Member
from provisioner.operations.cover import LIST_MEMBER_CAP, covering_users
from provisioner.operations.refresh import refresh
from provisioner.plans.planner import make_plan
from provisioner.states.records import ChatRecord, MemberRecord, State

NS = uuid.UUID(int=26)


def user(name: str) -> str:
    return str(uuid.uuid5(NS, name))


OWNER = user("owner")


def test_greedy_cover_picks_the_shared_member_first() -> None:
    chats = {f"c{i}": {OWNER, user(f"u{i}")} for i in range(30)}
    chats |= {f"d{i}": {user("x"), user(f"v{i}")} for i in range(12)}
    chats |= {f"e{i}": {user(f"w{i}")} for i in range(5)}  # nobody covers 10 of these
    chosen = covering_users(chats)
    assert [u for u, _ in chosen] == [OWNER, user("x")]
    assert chosen[0][1] == frozenset(f"c{i}" for i in range(30))
    assert chosen[1][1] == frozenset(f"d{i}" for i in range(12))


def test_greedy_cover_counts_only_chats_not_covered_yet() -> None:
    # b's 12 chats are all a's too: once a is chosen, b covers nothing new.
    a, b = user("a"), user("b")
    chats = {f"c{i}": {a, b} for i in range(12)} | {f"d{i}": {a} for i in range(3)}
    assert [u for u, _ in covering_users(chats)] == [a]
    assert covering_users(chats, only=b) == [(b, frozenset(f"c{i}" for i in range(12)))]
    assert covering_users(chats, min_cover=16) == []


@pytest.fixture
def server() -> Iterator[EmulatorServer]:
    with EmulatorServer(limits="off", seed=26, invent_users=True, list_delay_s=0) as server:
        yield server


def group_of(key: str, *users: str) -> Chat:
    return Chat(key, "group", tuple(Member(u) for u in users), f"Topic {key}")


def managed(client: GraphClient, chats: list[Chat]) -> tuple[State, dict[str, str]]:
    state, ids = State(), {}
    for chat in chats:
        ids[chat.key] = chat_id = create(client, chat)
        members = tuple(MemberRecord(m.user, object_id=m.user) for m in chat.members)
        state.put_chat(chat.key, ChatRecord(chat_id, "group", members, chat.topic))
    return state, ids


def test_covering_lists_give_the_per_chat_view_and_plan(server: EmulatorServer) -> None:
    client = client_for(server)
    chats = [group_of(f"g{i:02d}", OWNER, user(f"a{i}"), user(f"b{i}")) for i in range(30)]
    chats += [
        group_of("deleted", OWNER, user("d1"), user("d2")),
        group_of("left", OWNER, user("l1"), user("l2")),  # a member removed in Teams
        group_of("owner-gone", OWNER, user("o1"), user("o2")),  # the covering user removed
        group_of("renamed", OWNER, user("r1"), user("r2")),
        group_of("grown", OWNER, user("g1"), user("g2")),  # grows to the list's cap
        group_of("big", OWNER, *(user(f"big{i}") for i in range(LIST_MEMBER_CAP + 1))),
        group_of("other", user("n1"), user("n2")),  # nobody covers it
    ]
    state, ids = managed(client, chats)

    def member_id(key: str, who: str) -> str:
        return next(m["id"] for m in client.list_members(ids[key]) if m["userId"] == who)

    # Changes in Teams, outside provision:
    client.delete_chat(ids["deleted"])
    client.remove_member(ids["left"], member_id("left", user("l2")))
    client.remove_member(ids["owner-gone"], member_id("owner-gone", OWNER))
    client.update_chat_topic(ids["renamed"], "Renamed in Teams")
    for i in range(LIST_MEMBER_CAP - 3):
        client.add_member(ids["grown"], Member(user(f"extra{i}")).request_body(client.base_url))

    server.tenant.reset_counters()
    per_chat = refresh(client, state, cover=False)
    assert server.tenant.counters.by_route["GET /users/{user-id}/chats"] == 0
    server.tenant.reset_counters()
    covered = refresh(client, state)
    counters = server.tenant.counters
    assert covered == per_chat
    # One list page of the owner's 35 chats (50 per page), then single reads for the rest:
    # deleted, owner-gone, grown (listed with 25 members), big (26 in the state) and other.
    assert counters.by_route["GET /users/{user-id}/chats"] == 1
    assert counters.batch_items_total == 5
    assert len(covered["grown"].members) == LIST_MEMBER_CAP
    assert covered["deleted"].gone and len(covered["left"].members) == 2

    desired = DesiredState(tuple(sorted(chats, key=lambda c: c.key)))
    by_list = make_plan(desired, state, live=covered)
    by_chat = make_plan(desired, state, live=per_chat)
    assert by_list.changes == by_chat.changes and by_list.drift == by_chat.drift
    assert {d.key for d in by_list.drift} >= {"deleted", "left", "owner-gone", "renamed", "grown"}


def test_chats_missing_from_the_covering_list_are_read_one_by_one(server: EmulatorServer) -> None:
    # The state says a user shares the chats whom Graph has in none of them (the state is out
    # of date): that user's list holds none of them, so each is read on its own, and the view
    # is still the per-chat one.
    client = client_for(server)
    chats = [group_of(f"g{i:02d}", OWNER, user(f"a{i}")) for i in range(12)]
    state, _ = managed(client, chats)
    ghost = user("ghost")
    for key, record in list(state.chats.items()):
        stale = (MemberRecord(ghost, object_id=ghost), record.members[1])
        state.put_chat(key, ChatRecord(record.chat_id, "group", stale, record.topic))
    server.tenant.reset_counters()
    covered = refresh(client, state)
    assert server.tenant.counters.by_route["GET /users/{user-id}/chats"] == 1
    assert server.tenant.counters.batch_items_total == 12
    assert covered == refresh(client, state, cover=False)
