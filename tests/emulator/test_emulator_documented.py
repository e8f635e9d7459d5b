"""The emulator answers in the shapes Graph's documentation shows (tests/data/graph-docs/):
every field of a documented example response is in the emulator's answer to the same request,
with a value of the same JSON type (null standing in for any), and statuses and headers that
carry meaning (Location, Retry-After) match. The client reads the same files in
tests/graph/test_documented_responses.py, so the three cannot drift apart silently."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests
from lib.documented import (
    EX1,
    EX2,
    assert_shape,
    documented,
    group,
    member,
)

from provisioner.emulator import DEFAULT_TENANT_ID, EmulatorServer


@pytest.fixture
def graph() -> Iterator[tuple[str, requests.Session]]:
    # The default directory (it holds the docs' example users); lists at once, since these
    # tests compare shapes (the listing lag has tests of its own).
    with EmulatorServer(limits="off", seed=3, list_delay_s=0) as server, requests.Session() as s:
        s.headers["Authorization"] = "Bearer docs"
        yield server.url, s
        assert server.tenant.counters.internal_errors_total == 0


def test_create_chat(graph: tuple[str, requests.Session]) -> None:
    url, s = graph
    assert_shape(documented("create-chat-group.json")["body"], group(url, s))
    body = {"chatType": "oneOnOne", "members": [member(u) for u in EX1]}
    resp = s.post(f"{url}/chats", json=body)
    assert resp.status_code == documented("create-chat-one-on-one.json")["status"]
    assert_shape(documented("create-chat-one-on-one.json")["body"], resp.json())


def test_list_chats_with_members(graph: tuple[str, requests.Session]) -> None:
    url, s = graph
    group(url, s)
    doc = documented("list-chats-expand-members.json")["body"]
    got = s.get(f"{url}/users/{EX2[0]}/chats", params={"$expand": "members"}).json()
    doc_group = next(c for c in doc["value"] if c["chatType"] == "group")
    assert_shape({**doc, "value": [doc_group]}, got)


def test_get_chat_with_members(graph: tuple[str, requests.Session]) -> None:
    url, s = graph
    chat = group(url, s)
    got = s.get(f"{url}/chats/{chat['id']}", params={"$expand": "members"}).json()
    assert_shape(documented("get-chat-expand-members.json")["body"], got)


def test_list_add_remove_members(graph: tuple[str, requests.Session]) -> None:
    url, s = graph
    chat = group(url, s)
    path = f"{url}/chats/{chat['id']}/members"
    assert_shape(documented("list-members.json")["body"], s.get(path).json())
    doc = documented("add-member.json")
    added = s.post(path, json=member(EX1[0]))
    assert added.status_code == doc["status"] and not added.content  # no body, as documented
    location = added.headers["Location"]
    assert location.startswith(f"/chats/{chat['id']}/members/")
    assert doc["headers"]["Location"].startswith("/chats/")  # the same kind of path
    removed = s.delete(f"{path}/{location.rsplit('/', 1)[1]}")
    assert removed.status_code == documented("remove-member.json")["status"]
    assert not removed.content


def test_batch(graph: tuple[str, requests.Session]) -> None:
    url, s = graph
    chat = group(url, s)
    requests_ = [
        {"id": "2", "method": "GET", "url": f"/chats/{chat['id']}"},
        {"id": "4", "method": "PUT", "url": f"/chats/{chat['id']}"},  # 405, as item 4
    ]
    got = s.post(f"{url}/$batch", json={"requests": requests_}).json()
    doc = documented("batch.json")["body"]
    by_id = {item["id"]: item for item in got["responses"]}
    assert set(by_id["2"]) >= {"id", "status", "headers", "body"}
    doc_405 = next(i for i in doc["responses"] if i["status"] == 405)
    assert by_id["4"]["status"] == 405
    assert_shape(doc_405["body"], by_id["4"]["body"])
    assert by_id["4"]["body"]["error"]["code"] == doc_405["body"]["error"]["code"]


def test_too_many_requests() -> None:
    doc = documented("too-many-requests.json")
    with (
        EmulatorServer(limits="off", faults=["429=1.0"], seed=1) as server,
        requests.Session() as s,
    ):
        resp = s.get(f"{server.url}/me", headers={"Authorization": "Bearer docs"})
    assert resp.status_code == 429
    assert float(resp.headers["Retry-After"]) > 0
    assert_shape(doc["body"], resp.json())
    assert resp.json()["error"]["code"] == doc["body"]["error"]["code"]


def test_list_organization_names_the_tenant(graph: tuple[str, requests.Session]) -> None:
    # organization-list.md: what an app-only token without a tid learns its tenant from.
    url, s = graph
    resp = s.get(f"{url}/organization")
    assert resp.status_code == documented("list-organization.json")["status"]
    assert_shape(documented("list-organization.json")["body"], resp.json())
    assert [org["id"] for org in resp.json()["value"]] == [DEFAULT_TENANT_ID]
