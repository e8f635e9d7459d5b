"""Issue 22: the emulator's Entra ID groups follow group-list-transitivemembers.md: nested
groups flattened, users only, $select, paging through @odata.nextLink, 403 without the
permission."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import requests

from provisioner.emulator import EmulatorServer, User

USERS = [str(uuid.uuid5(uuid.NAMESPACE_DNS, f"u{n}")) for n in range(250)]
GUEST = str(uuid.uuid5(uuid.NAMESPACE_DNS, "guest"))


@pytest.fixture
def server() -> Iterator[EmulatorServer]:
    with EmulatorServer(limits="off", invent_users=True, list_delay_s=0) as srv:
        srv.tenant.directory.remember(
            User(GUEST, "g_x.com#EXT#@c.onmicrosoft.com", "G", None, "Guest")
        )
        yield srv
        assert srv.tenant.counters.internal_errors_total == 0


def get(server: EmulatorServer, path: str, **params: str) -> requests.Response:
    return requests.get(
        f"{server.url}{path}", params=params, headers={"Authorization": "Bearer x"}, timeout=10
    )


def test_transitive_users_nested_with_cycles_guests_select_and_paging(
    server: EmulatorServer,
) -> None:
    groups = server.tenant.groups
    inner = groups.add("Inner", USERS[100:250])
    outer = groups.add("Outer", [*USERS[:100], inner.id, GUEST, USERS[0]])
    groups.add_members(inner.id, outer.id)  # a cycle: followed once
    path = f"/groups/{outer.id}/transitiveMembers/microsoft.graph.user"
    seen: list[dict[str, object]] = []
    answer = get(server, path, **{"$select": "id,userType", "$top": "120"}).json()
    pages = 1
    while True:
        seen += answer["value"]
        link = answer.get("@odata.nextLink")
        if not link:
            break
        answer = requests.get(link, headers={"Authorization": "Bearer x"}, timeout=10).json()
        pages += 1
    assert pages == 3
    assert [u["id"] for u in seen] == [*USERS[:100], GUEST, *USERS[100:250]]
    assert {tuple(sorted(k for k in u if not k.startswith("@"))) for u in seen} == {
        ("id", "userType")
    }
    assert [u["id"] for u in seen if u["userType"] == "Guest"] == [GUEST]
    assert len(get(server, path).json()["value"]) == 100  # the default page
    assert get(server, path, **{"$top": "1000"}).status_code == 400


def test_group_by_id_and_by_mail_and_missing(server: EmulatorServer) -> None:
    falcon = server.tenant.groups.add("Falcon", USERS[:2], mail="falcon@contoso.com")
    assert get(server, f"/groups/{falcon.id}").json()["displayName"] == "Falcon"
    found = get(server, "/groups", **{"$filter": "mail eq 'falcon@contoso.com'"}).json()
    assert [g["id"] for g in found["value"]] == [falcon.id]
    missing = get(server, f"/groups/{uuid.uuid4()}")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "Request_ResourceNotFound"


def test_without_the_permission_group_reads_are_403() -> None:
    with EmulatorServer(limits="off", invent_users=True, group_read=False) as srv:
        falcon = srv.tenant.groups.add("Falcon", USERS[:2])
        answer = get(srv, f"/groups/{falcon.id}/transitiveMembers/microsoft.graph.user")
    assert answer.status_code == 403
    assert answer.json()["error"]["code"] == "Authorization_RequestDenied"
