"""Contract suite: what a Graph chat API must do, checked over HTTP only.

Nothing here looks inside the emulator, so the same tests can be pointed at a recording of
the real Microsoft Graph replayed on loopback: set ``PROVISION_CONTRACT_GRAPH_URL`` (a
loopback URL ending in ``/v1.0``), ``PROVISION_CONTRACT_TOKEN`` and
``PROVISION_CONTRACT_USERS`` (comma-separated object ids of at least four in-tenant users).
By default the target is an in-process ``EmulatorServer`` with a users directory.

Emulator-only behaviour (throttling, faults, persistence, inspection) is tested in
``test_emulator_server.py``; the pure parts in ``test_emulator_units.py``.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import pytest
import requests

from provisioner.emulator import EmulatorServer

T = TypeVar("T")
MEMBER_TYPE = "#microsoft.graph.aadUserConversationMember"
GRAPH = "https://graph.microsoft.com/v1.0"
ONE_ON_ONE_ID = re.compile(r"^19:[0-9a-f-]{36}_[0-9a-f-]{36}@unq\.gbl\.spaces$")
GROUP_ID = re.compile(r"^19:[0-9a-f]{32}@thread\.v2$")
ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,3})?Z$")

USERS = [
    {"id": "8b081ef6-4792-4def-b2c9-c363a1bf41d5", "userPrincipalName": "adele@contoso.com"},
    {"id": "82af01c5-f7cc-4a2e-a728-3a5df21afd9d", "userPrincipalName": "jacob@contoso.com"},
    {"id": "8c0a1a67-50ce-4114-bb6c-da9c5dbcf6ca", "userPrincipalName": "nick@contoso.com"},
    {"id": "3626a173-f2bc-4883-bcf7-01514c3bfb82", "userPrincipalName": "bart@contoso.com"},
    {"id": "4595d2f2-7b31-446c-84fd-9b795e63114b", "userPrincipalName": "tony@contoso.com"},
    {
        "id": "2c8d2b5c-1849-4066-b57d-e7a0e9e44ec8",
        "userPrincipalName": "guest_fabrikam.com#EXT#@contoso.com",
        "userType": "Guest",
    },
]


def member(user: str, role: str = "owner", tenant_id: str | None = None) -> dict[str, object]:
    body: dict[str, object] = {
        "@odata.type": MEMBER_TYPE,
        "roles": [role],
        "user@odata.bind": f"{GRAPH}/users('{user}')",
    }
    if tenant_id:
        body["tenantId"] = tenant_id
    return body


def one_on_one(a: str, b: str) -> dict[str, object]:
    return {"chatType": "oneOnOne", "members": [member(a), member(b)]}


def group(topic: str | None, *users: str) -> dict[str, object]:
    body: dict[str, object] = {"chatType": "group", "members": [member(u) for u in users]}
    if topic is not None:
        body["topic"] = topic
    return body


def assert_graph_error(resp: requests.Response, status: int, code: str | None = None) -> None:
    """Graph's error shape (concepts/errors.md)."""
    assert resp.status_code == status, resp.text
    error = resp.json()["error"]
    assert isinstance(error["code"], str) and error["code"]
    assert isinstance(error["message"], str) and error["message"]
    assert error["innerError"]["request-id"]
    if code is not None:
        assert error["code"] == code


@dataclass
class Target:
    base_url: str
    session: requests.Session
    users: list[str]
    server: EmulatorServer | None = None

    def url(self, path: str) -> str:
        return self.base_url + path

    def get(self, path: str, **kw: object) -> requests.Response:
        return self.session.get(self.url(path), **kw)  # type: ignore[arg-type]

    def post(self, path: str, **kw: object) -> requests.Response:
        return self.session.post(self.url(path), **kw)  # type: ignore[arg-type]

    def patch(self, path: str, **kw: object) -> requests.Response:
        return self.session.patch(self.url(path), **kw)  # type: ignore[arg-type]

    def delete(self, path: str, **kw: object) -> requests.Response:
        return self.session.delete(self.url(path), **kw)  # type: ignore[arg-type]


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def write_users(tmp_path: Path) -> Path:
    path = tmp_path / "users.json"
    path.write_text(json.dumps({"users": USERS}), encoding="utf-8")
    return path


@pytest.fixture
def graph(tmp_path: Path) -> Iterator[Target]:
    session = requests.Session()
    url = os.environ.get("PROVISION_CONTRACT_GRAPH_URL")
    if url:
        if not _is_loopback(url):
            pytest.skip("the contract suite only talks to loopback (replay a recording there)")
        session.headers["Authorization"] = f"Bearer {os.environ['PROVISION_CONTRACT_TOKEN']}"
        users = os.environ["PROVISION_CONTRACT_USERS"].split(",")
        yield Target(url.rstrip("/"), session, users)
        return
    session.headers["Authorization"] = "Bearer contract-test"
    # A short listing lag, so the listing tests below wait for Graph's lists to catch up with
    # its writes as they must against the real service (issue 14), without slowing the suite.
    with EmulatorServer(
        limits="off", users=write_users(tmp_path), seed=7, list_delay_s=(0.0, 0.3)
    ) as server:
        yield Target(server.url, session, [u["id"] for u in USERS[:5]], server)
        session.close()
        assert server.tenant.counters.internal_errors_total == 0, server.last_internal_error


def eventually(check: Callable[[], T | None], timeout: float = 20.0) -> T:
    """``check()``'s first result that is not None, polled until ``timeout``: Graph's lists
    lag behind its writes (microsoft-graph-docs-contrib#5343), so a listing test waits."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found is not None:
            return found
        assert time.monotonic() < deadline, "the list never showed the write"
        time.sleep(0.1)


def member_ids(graph: Target, path: str, wanted: set[str]) -> set[str] | None:
    ids = {m["userId"] for m in graph.get(path).json()["value"]}
    return ids if ids == wanted else None


def unique_topic() -> str:
    return f"contract {uuid.uuid4().hex[:12]}"


# -- POST /chats -----------------------------------------------------------------------------
def test_one_on_one_create_returns_the_existing_chat(graph: Target) -> None:
    a, b = graph.users[:2]
    first = graph.post("/chats", json=one_on_one(a, b))
    again = graph.post("/chats", json=one_on_one(b, a))  # the same pair, other order
    assert first.status_code == 201 and again.status_code == 201  # chat-post.md: 201 both
    chat = first.json()
    assert ONE_ON_ONE_ID.match(chat["id"])
    assert again.json()["id"] == chat["id"]
    assert chat["chatType"] == "oneOnOne" and chat["topic"] is None
    assert ISO_MS.match(chat["createdDateTime"]) and ISO_MS.match(chat["lastUpdatedDateTime"])


def test_one_on_one_by_upn_is_the_same_chat_as_by_id(graph: Target) -> None:
    if graph.server is None:
        pytest.skip("needs the UPNs of the users")
    by_id = graph.post("/chats", json=one_on_one(USERS[0]["id"], USERS[1]["id"])).json()
    by_upn = graph.post(
        "/chats",
        json=one_on_one(USERS[0]["userPrincipalName"], USERS[1]["userPrincipalName"]),
    )
    assert by_upn.status_code == 201 and by_upn.json()["id"] == by_id["id"]


def test_group_create_always_makes_a_new_chat(graph: Target) -> None:
    body = group(unique_topic(), *graph.users[:3])
    first, second = graph.post("/chats", json=body), graph.post("/chats", json=body)
    assert first.status_code == second.status_code == 201
    assert first.json()["id"] != second.json()["id"]
    for resp in (first, second):
        assert GROUP_ID.match(resp.json()["id"])
        assert resp.json()["topic"] == body["topic"]


def test_get_chat_expands_members(graph: Target) -> None:
    created = graph.post("/chats", json=group(unique_topic(), *graph.users[:3])).json()
    plain = graph.get(f"/chats/{created['id']}")
    assert plain.status_code == 200 and "members" not in plain.json()
    full = graph.get(f"/chats/{created['id']}", params={"$expand": "members"})
    assert full.status_code == 200
    members = full.json()["members"]
    assert {m["userId"] for m in members} == set(graph.users[:3])
    assert all(m["roles"] == ["owner"] and m["@odata.type"] == MEMBER_TYPE for m in members)
    assert len({m["id"] for m in members}) == 3  # membership ids are distinct (and opaque)


def test_chat_id_may_be_percent_encoded(graph: Target) -> None:
    chat = graph.post("/chats", json=one_on_one(*graph.users[1:3])).json()
    encoded = chat["id"].replace(":", "%3A").replace("@", "%40")
    assert graph.get(f"/chats/{encoded}").json()["id"] == chat["id"]


BAD_BODIES = {
    "topic on oneOnOne": lambda u: {**one_on_one(u[0], u[1]), "topic": "nope"},
    "oneOnOne with three members": lambda u: {
        "chatType": "oneOnOne",
        "members": [member(x) for x in u[:3]],
    },
    "oneOnOne with one member": lambda u: {"chatType": "oneOnOne", "members": [member(u[0])]},
    "group with one member": lambda u: group("t", u[0]),
    "members missing": lambda u: {"chatType": "group", "topic": "t"},
    "members not a list": lambda u: {"chatType": "group", "members": member(u[0])},
    "chatType missing": lambda u: {"members": [member(u[0]), member(u[1])]},
    "chatType meeting": lambda u: {"chatType": "meeting", "members": [member(x) for x in u[:2]]},
    "role member": lambda u: {
        "chatType": "oneOnOne",
        "members": [member(u[0]), member(u[1], role="member")],
    },
    "roles missing": lambda u: {
        "chatType": "oneOnOne",
        "members": [member(u[0]), {k: v for k, v in member(u[1]).items() if k != "roles"}],
    },
    "odata.type missing": lambda u: {
        "chatType": "oneOnOne",
        "members": [member(u[0]), {k: v for k, v in member(u[1]).items() if k != "@odata.type"}],
    },
    "bad odata bind": lambda u: {
        "chatType": "oneOnOne",
        "members": [member(u[0]), {**member(u[1]), "user@odata.bind": f"users/{u[1]}"}],
    },
    "same user twice": lambda u: group("t", u[0], u[0], u[1]),
    "topic with colon": lambda u: group("a:b", *u[:3]),
    "topic too long": lambda u: group("x" * 251, *u[:3]),
    "unknown property": lambda u: {**group("t", *u[:3]), "color": "blue"},
    "bad tenantId": lambda u: {
        "chatType": "oneOnOne",
        "members": [member(u[0]), member(u[1], tenant_id="not-a-guid")],
    },
    "external user as guest": lambda u: {
        "chatType": "oneOnOne",
        "members": [
            member(u[0]),
            member(u[1], role="guest", tenant_id="4dc1fe35-8ac6-4f0d-904a-7ebcd364bea1"),
        ],
    },
}


@pytest.mark.parametrize("case", sorted(BAD_BODIES))
def test_bad_chat_bodies_are_400(graph: Target, case: str) -> None:
    resp = graph.post("/chats", json=BAD_BODIES[case](graph.users))
    assert_graph_error(resp, 400)


def test_malformed_json_is_400_and_wrong_content_type_is_415(graph: Target) -> None:
    resp = graph.post("/chats", data=b"{not json", headers={"Content-Type": "application/json"})
    assert_graph_error(resp, 400, "BadRequest")
    resp = graph.post("/chats", data=b"chatType=group", headers={"Content-Type": "text/plain"})
    assert_graph_error(resp, 415)
    # the connection is still good for the next request
    assert graph.post("/chats", json=one_on_one(*graph.users[:2])).status_code == 201


def test_federated_member_must_be_owner_and_is_accepted(graph: Target) -> None:
    other_tenant = "4dc1fe35-8ac6-4f0d-904a-7ebcd364bea1"
    body = {
        "chatType": "oneOnOne",
        "members": [member(graph.users[0]), member(str(uuid.uuid4()), tenant_id=other_tenant)],
    }
    resp = graph.post("/chats", json=body)
    assert resp.status_code == 201, resp.text
    chat = graph.get(f"/chats/{resp.json()['id']}", params={"$expand": "members"}).json()
    assert other_tenant in {m["tenantId"] for m in chat["members"]}


# -- PATCH / DELETE ---------------------------------------------------------------------------
def test_patch_topic_only_for_group(graph: Target) -> None:
    chat = graph.post("/chats", json=group(unique_topic(), *graph.users[:3])).json()
    new_topic = unique_topic()
    resp = graph.patch(f"/chats/{chat['id']}", json={"topic": new_topic})
    assert resp.status_code == 200 and resp.json()["topic"] == new_topic  # chat-patch.md
    assert graph.get(f"/chats/{chat['id']}").json()["topic"] == new_topic
    assert_graph_error(graph.patch(f"/chats/{chat['id']}", json={"topic": "a:b"}), 400)
    assert_graph_error(graph.patch(f"/chats/{chat['id']}", json={"chatType": "oneOnOne"}), 400)
    one = graph.post("/chats", json=one_on_one(*graph.users[:2])).json()
    assert_graph_error(graph.patch(f"/chats/{one['id']}", json={"topic": "x"}), 400)


def test_delete_then_get_is_404(graph: Target) -> None:
    chat = graph.post("/chats", json=group(unique_topic(), *graph.users[:3])).json()
    assert graph.delete(f"/chats/{chat['id']}").status_code == 204
    assert_graph_error(graph.get(f"/chats/{chat['id']}"), 404)
    listed = graph.get(f"/users/{graph.users[0]}/chats", params={"$top": "50"}).json()
    assert chat["id"] not in {c["id"] for c in listed["value"]}


def test_unknown_chat_is_404(graph: Target) -> None:
    assert_graph_error(graph.get("/chats/19:0000000000000000000000000000dead@thread.v2"), 404)


# -- members ----------------------------------------------------------------------------------
def test_members_add_list_remove(graph: Target) -> None:
    chat = graph.post("/chats", json=group(unique_topic(), *graph.users[:3])).json()
    path = f"/chats/{chat['id']}/members"
    added = graph.post(path, json=member(graph.users[3]))
    # chat-post-members.md: 201 and a Location with the member's path; no body.
    assert added.status_code == 201 and not added.content
    location = added.headers["Location"]
    assert location.startswith(f"/chats/{chat['id']}/members/")
    eventually(lambda: member_ids(graph, path, set(graph.users[:4])))
    listed = graph.get(path).json()["value"]
    target = next(m for m in listed if m["userId"] == graph.users[3])
    assert location.endswith("/" + target["id"])
    assert graph.delete(f"{path}/{target['id']}").status_code == 204
    eventually(lambda: member_ids(graph, path, set(graph.users[:3])))
    assert_graph_error(graph.delete(f"{path}/{target['id']}"), 404)


# -- users ------------------------------------------------------------------------------------
def test_get_user_and_unknown_user(graph: Target) -> None:
    resp = graph.get(f"/users/{graph.users[0]}")
    assert resp.status_code == 200 and resp.json()["id"] == graph.users[0]
    assert "userPrincipalName" in resp.json()
    assert_graph_error(
        graph.get(f"/users/{uuid.uuid4()}"), 404, "Request_ResourceNotFound"
    )  # user-get.md


# -- listing ----------------------------------------------------------------------------------
def test_list_chats_pages_with_next_link(graph: Target) -> None:
    topic = unique_topic()
    created = {
        graph.post("/chats", json=group(topic, *graph.users[:3])).json()["id"] for _ in range(7)
    }

    def pages() -> tuple[list[str], int] | None:
        url: str | None = graph.url(f"/users/{graph.users[1]}/chats")
        params: dict[str, str] | None = {"$top": "3", "$filter": f"topic eq '{topic}'"}
        seen: list[str] = []
        pages = 0
        while url:
            resp = graph.session.get(url, params=params)
            assert resp.status_code == 200, resp.text
            body = resp.json()
            assert len(body["value"]) <= 3
            seen += [c["id"] for c in body["value"]]
            url, params, pages = body.get("@odata.nextLink"), None, pages + 1
        return (seen, pages) if sorted(seen) == sorted(created) else None

    assert eventually(pages)[1] >= 3


def test_list_chats_filter_and_expand(graph: Target) -> None:
    topic = unique_topic()
    graph.post("/chats", json=group(topic, *graph.users[:3]))
    graph.post("/chats", json=one_on_one(*graph.users[:2]))

    def listed() -> list[dict[str, Any]] | None:
        found = graph.get(
            "/me/chats" if graph.server is None else f"/users/{graph.users[0]}/chats",
            params={"$filter": f"topic eq '{topic}'", "$expand": "members"},
        ).json()["value"]
        return found or None

    groups = eventually(listed)
    assert len(groups) == 1 and groups[0]["topic"] == topic and groups[0]["chatType"] == "group"
    assert {m["userId"] for m in groups[0]["members"]} == set(graph.users[:3])

    def ones() -> list[dict[str, Any]] | None:
        found = graph.get(
            f"/users/{graph.users[0]}/chats", params={"$filter": "chatType eq 'oneOnOne'"}
        ).json()["value"]
        return found or None

    assert all(c["chatType"] == "oneOnOne" for c in eventually(ones))


def test_list_chats_rejects_top_over_50(graph: Target) -> None:
    assert_graph_error(graph.get(f"/users/{graph.users[0]}/chats", params={"$top": "51"}), 400)


# -- $batch -----------------------------------------------------------------------------------
def test_batch_runs_items_and_honours_depends_on(graph: Target) -> None:
    topic = unique_topic()
    body = {
        "requests": [
            {
                "id": "create",
                "method": "POST",
                "url": "/chats",
                "body": group(topic, *graph.users[:3]),
                "headers": {"Content-Type": "application/json"},
            },
            {"id": "user", "method": "GET", "url": f"/users/{graph.users[0]}"},
            {
                "id": "bad",
                "method": "POST",
                "url": "/chats",
                "body": group("x", graph.users[0]),
                "headers": {"Content-Type": "application/json"},
            },
            {"id": "after-bad", "dependsOn": ["bad"], "method": "GET", "url": "/me"},
        ]
    }
    resp = graph.post("/$batch", json=body)
    assert resp.status_code == 200
    by_id = {r["id"]: r for r in resp.json()["responses"]}
    assert set(by_id) == {"create", "user", "bad", "after-bad"}  # correlate by id, not order
    assert by_id["create"]["status"] == 201 and by_id["create"]["body"]["topic"] == topic
    assert by_id["user"]["status"] == 200
    assert by_id["bad"]["status"] == 400 and by_id["bad"]["body"]["error"]["code"]
    assert by_id["after-bad"]["status"] == 424  # json-batching.md: Failed Dependency


@pytest.mark.parametrize(
    "requests_",
    [
        [{"id": str(i), "method": "GET", "url": "/me"} for i in range(21)],  # over 20
        [{"id": "a", "method": "GET", "url": "/me"}, {"id": "A", "method": "GET", "url": "/me"}],
        [{"id": "a", "method": "POST", "url": "/chats", "body": {}}],  # body, no Content-Type
        [{"id": "a", "method": "GET", "url": "/me", "dependsOn": ["zz"]}],
        [],
    ],
    ids=[
        "21-requests",
        "duplicate-ids",
        "body-without-content-type",
        "unknown-dependency",
        "empty",
    ],
)
def test_malformed_batches_are_400(graph: Target, requests_: list[dict[str, object]]) -> None:
    assert_graph_error(graph.post("/$batch", json={"requests": requests_}), 400)


# -- auth and routing -------------------------------------------------------------------------
@pytest.mark.parametrize("header", [None, "", "Bearer", "Basic dXNlcjpwYXNz"])
def test_requests_without_a_bearer_token_are_401(graph: Target, header: str | None) -> None:
    headers = {} if header is None else {"Authorization": header}
    resp = requests.get(graph.url("/me"), headers=headers)
    assert_graph_error(resp, 401, "InvalidAuthenticationToken")


def test_unknown_segment_is_400_and_wrong_method_is_405(graph: Target) -> None:
    assert_graph_error(graph.get("/chatz"), 400, "BadRequest")
    assert_graph_error(graph.post("/me/chats", json={}), 405)
