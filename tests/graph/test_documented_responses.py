"""Graph's documented example responses (tests/data/graph-docs/) through the client's parsing
code: what the docs show is what provision must read (issue 14, part 5)."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from typing import Any

import pytest
from lib.clock import FakeClock
from lib.documented import documented_file as documented
from pytest_httpserver import HTTPServer
from werkzeug import Response

from provisioner.apply.context import membership_index
from provisioner.apply.reconcile import WantedMembers, match_created_chats, parse_time
from provisioner.graph.client import GraphClient
from provisioner.graph.retry import parse_retry_after
from provisioner.operations.refresh import is_manageable
from provisioner.plans.live import live_chat


def serve(server: HTTPServer, name: str, *, then: dict[str, Any] | None = None) -> dict[str, Any]:
    """Answer the documented request with the documented response (``then`` afterwards)."""
    doc = documented(name)
    path = doc["request"]["path"].split("?")[0]
    answers = [doc["response"], *([then] if then else [])]
    calls: list[int] = []

    def handler(request: Any) -> Response:
        answer = answers[min(len(calls), len(answers) - 1)]
        calls.append(1)
        body = answer["body"]
        return Response(
            None if body is None else json.dumps(body),
            status=answer["status"],
            headers=answer["headers"],
        )

    server.expect_request(f"/v1.0{path}", method=doc["request"]["method"]).respond_with_handler(
        handler
    )
    return doc


class Token:
    description = "test"

    def get_token(self) -> str:
        return "token"

    def invalidate(self) -> None:
        return None


@pytest.fixture
def fake_time() -> FakeClock:
    """Retries wait on this clock, not on the wall clock: waits are recorded and pass at once."""
    return FakeClock(100.0)


@pytest.fixture
def client(httpserver: HTTPServer, fake_time: FakeClock) -> GraphClient:
    return GraphClient(
        httpserver.url_for("/v1.0"),
        Token(),
        clock=fake_time.clock,
        sleep=fake_time.sleep,
        rand=lambda: 0.5,
        wallclock=time.time,
    )


@pytest.mark.parametrize("name", ["create-chat-group.json", "create-chat-one-on-one.json"])
def test_create_chat(httpserver: HTTPServer, client: GraphClient, name: str) -> None:
    doc = serve(httpserver, name)
    chat = client.create_chat({"chatType": "group", "members": []}, idempotent=False)
    assert chat["id"] == doc["response"]["body"]["id"]
    assert parse_time(chat["createdDateTime"]) is not None  # "2020-12-04T23:10:28.51Z" too


def test_list_chats_with_members(httpserver: HTTPServer, client: GraphClient) -> None:
    serve(httpserver, "list-chats-expand-members.json")
    meeting, group = client.list_user_chats("8b081ef6-4792-4def-b2c9-c363a1bf41d5")
    assert not is_manageable(live_chat(meeting))  # meeting chats belong to meetings
    chat = live_chat(group)
    assert chat.chat_type == "group" and chat.topic == "Group chat sample"
    # Roles are [] in the docs' examples: a plain member, read as owner.
    assert {m.role for m in chat.members} == {"owner"}
    ids = frozenset(m.object_id for m in chat.members)
    started = datetime(2020, 12, 3, 19, 41, 0, tzinfo=timezone.utc)
    found = match_created_chats(
        [group], WantedMembers(ids), topic="Group chat sample", started_at=started
    )
    assert [c["id"] for c in found] == [group["id"]]


def test_get_chat_with_members(httpserver: HTTPServer, client: GraphClient) -> None:
    doc = serve(httpserver, "get-chat-expand-members.json")
    chat = live_chat(client.get_chat("19:b8577894a63548969c5c92bb9c80c5e1@thread.v2"))
    members = doc["response"]["body"]["members"]
    assert [(m.object_id, m.membership_id) for m in chat.members] == [
        (m["userId"], m["id"]) for m in members
    ]
    record = chat.as_record()
    # Members are named by object id, never by the email Graph reports.
    assert [m.user for m in record.members] == [m["userId"] for m in members]


def test_list_members_with_null_emails(httpserver: HTTPServer, client: GraphClient) -> None:
    doc = serve(httpserver, "list-members.json")
    chat_id = doc["request"]["path"].split("/")[2]
    members = client.list_members(chat_id)
    assert membership_index(members) == {m["userId"]: m["id"] for m in members}


def test_add_member_takes_the_membership_id_from_location(
    httpserver: HTTPServer, client: GraphClient
) -> None:
    doc = serve(httpserver, "add-member.json")
    added = client.add_member("19:cf66807577b149cca1b7af0c32eec122@thread.v2", {})
    assert added["id"] == doc["response"]["headers"]["Location"].rsplit("/", 1)[1]


def test_remove_member(httpserver: HTTPServer, client: GraphClient) -> None:
    doc = serve(httpserver, "remove-member.json")
    chat_id, _, membership_id = doc["request"]["path"].split("/")[2:5]
    assert client.remove_member(chat_id, membership_id) is None
    assert len(httpserver.log) == 1


def test_batch_items_are_read_one_by_one(httpserver: HTTPServer, client: GraphClient) -> None:
    doc = serve(httpserver, "batch.json")
    items = doc["response"]["body"]["responses"]
    results = client.batch([{"id": i["id"], "method": "GET", "url": "/me"} for i in items])
    assert [(r["id"], r["status"]) for r in results] == [(i["id"], i["status"]) for i in items]
    assert results[2]["body"]["error"]["code"] == "Request_BadRequest"


def test_429_waits_for_its_fractional_retry_after(
    httpserver: HTTPServer, client: GraphClient, fake_time: FakeClock
) -> None:
    chat = documented("get-chat-expand-members.json")["response"]
    doc = serve(httpserver, "too-many-requests.json", then=chat)
    assert parse_retry_after(doc["response"]["headers"]["Retry-After"]) == 2.128
    body = client.get_chat("19:b8577894a63548969c5c92bb9c80c5e1@thread.v2", expand_members=False)
    assert body["id"] == chat["body"]["id"]
    assert sum(fake_time.slept) >= 2.128


def test_the_tenant_of_an_organization_list(httpserver: HTTPServer, client: GraphClient) -> None:
    doc = serve(httpserver, "list-organization.json")
    assert client.organization_tenant() == doc["response"]["body"]["value"][0]["id"]
