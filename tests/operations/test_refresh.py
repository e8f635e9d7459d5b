"""Refresh against the emulator: batched reads, 404 as gone, throttled items, the live view."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from lib.lifecycle_support import A, L, M, client_for, create, group, member_of

from provisioner.emulator import EmulatorServer
from provisioner.models import Member
from provisioner.operations.refresh import read_chats, refresh
from provisioner.plans.live import live_chat
from provisioner.plans.planner import LiveMember, make_plan
from provisioner.states.records import ChatRecord, MemberRecord, State


@pytest.fixture
def server() -> Iterator[EmulatorServer]:
    with EmulatorServer(limits="off", seed=3, invent_users=True, list_delay_s=0) as server:
        yield server


def test_reads_every_chat_in_batches(server: EmulatorServer) -> None:
    client = client_for(server)
    ids = [create(client, group(f"g{i}", f"Chat {i}", A, M)) for i in range(46)]
    state = State()
    for i, chat_id in enumerate(ids):
        state.put_chat(f"g{i}", ChatRecord(chat_id, "group", (MemberRecord(A), MemberRecord(M))))
    server.tenant.reset_counters()
    live = refresh(client, state)
    assert sorted(live) == sorted(state.chats)
    assert live["g7"].topic == "Chat 7" and live["g7"].chat_id == ids[7]
    assert {m.email for m in live["g7"].members} == {A, M}
    counters = server.tenant.counters
    assert counters.by_route["POST /$batch"] == 4  # 46 reads: 15 + 15 + 15 + 1
    assert counters.batch_items_total == 46
    server.tenant.reset_counters()
    refresh(client, state, batch_size=20)
    assert server.tenant.counters.by_route["POST /$batch"] == 3  # Graph's maximum, 20


def test_a_deleted_chat_is_gone(server: EmulatorServer) -> None:
    client = client_for(server)
    kept, deleted = create(client, group("k", "K", A, M)), create(client, group("d", "D", A, M))
    client.delete_chat(deleted)
    found = read_chats(client, [kept, deleted, "19:never@thread.v2"])
    assert not found[kept].gone
    assert found[deleted].gone and found["19:never@thread.v2"].gone


def test_throttled_items_are_retried_on_their_own() -> None:
    # Every fourth item is throttled (429 with a short Retry-After); the client retries each
    # one alone after its own Retry-After, and refresh still sees every chat.
    with EmulatorServer(
        limits="x100", seed=5, faults=["429=0.25"], invent_users=True, list_delay_s=0
    ) as server:
        client = client_for(server)
        server.set_faults([])
        ids = [create(client, group(f"g{i}", f"T{i}", A, M)) for i in range(30)]
        server.set_faults(["429=0.25"])
        found = read_chats(client, ids)
        assert all(not found[i].gone and found[i].topic for i in ids)
        assert server.tenant.counters.faults["429"] > 0


def test_live_chat_shape() -> None:
    body = {
        "id": "19:x@thread.v2",
        "chatType": "group",
        "topic": "T",
        "tenantId": "AAAA0000-0000-0000-0000-000000000000",
        "createdDateTime": "2024-01-01T00:00:00Z",
        "members": [
            {"id": "m1", "roles": ["owner"], "userId": "u1", "email": "a@x.com",
             "tenantId": "aaaa0000-0000-0000-0000-000000000000"},
            {"id": "m2", "roles": ["guest"], "userId": "u2", "tenantId": None},
            {"id": "m3", "roles": [], "userId": "u3",
             "tenantId": "bbbb0000-0000-0000-0000-000000000000"},
            {"id": "app", "roles": [], "displayName": "Some bot"},
        ],
    }  # fmt: skip
    chat = live_chat(body)
    assert chat.chat_id == "19:x@thread.v2" and chat.created_at == "2024-01-01T00:00:00Z"
    assert chat.members == (
        LiveMember("u1", "owner", "m1", None, "a@x.com"),  # home tenant: not kept
        LiveMember("u2", "guest", "m2", None, None),
        LiveMember("u3", "owner", "m3", "bbbb0000-0000-0000-0000-000000000000", None),
    )


def test_member_added_in_teams_is_drift_and_planned_for_removal(server: EmulatorServer) -> None:
    from provisioner.models import DesiredState
    from provisioner.operations.users import resolve_users

    client = client_for(server)
    chat = group("g", "G", A, M)
    chat_id = create(client, chat)
    client.add_member(chat_id, Member(L).request_body(client.base_url))
    state = State()
    state.put_chat("g", ChatRecord(chat_id, "group", (MemberRecord(A), MemberRecord(M)), "G"))
    # As plan does (operations.refresh.read_from_graph): UPNs resolved before comparing, since
    # members are compared by object id, never by the email Graph reports (issue 14).
    state.users.update(resolve_users(client, state, DesiredState((chat,))))
    plan = make_plan(DesiredState((chat,)), state, live=refresh(client, state))
    (drift,) = plan.drift
    lee_id = server.tenant.user_id(L)
    # Lee is in neither the manifest nor the state: named by object id, not by email.
    assert [m.user for m in drift.added] == [lee_id] and not drift.removed
    (change,) = plan.changes
    lee = member_of(client, chat_id, L)
    assert [(m.user, m.membership_id) for m in change.remove] == [(lee_id, lee["id"])]
