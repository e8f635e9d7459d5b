"""Emulator-only behaviour, checked over HTTP and from the emulator's side (``server.tenant``):
throttling with ``Retry-After`` timing, every fault kind, persistence across restarts and
crashes, bad input, keep-alive, concurrency, and ``embedded()``."""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from lib.tokens import jwt

# pytest puts each test's folder on sys.path (its default import mode), so the contract
# test's helpers import by file name.
from test_emulator_contract import (
    USERS,
    assert_graph_error,
    group,
    member,
    one_on_one,
    write_users,
)

from provisioner.emulator import EmulatorError, EmulatorServer, embedded
from provisioner.emulator.clock import ManualClock
from provisioner.errors import ProvisionError

A, B, C, D, E = (u["id"] for u in USERS[:5])
Start = Callable[..., EmulatorServer]


@pytest.fixture
def start() -> Iterator[Start]:
    servers: list[EmulatorServer] = []

    def _start(**kw: Any) -> EmulatorServer:
        kw.setdefault("seed", 1)
        # Most tests here are about throttling, faults, persistence and the wire: they name
        # made-up users and read lists right after writing. The default directory and the
        # listing lag have tests of their own, which pass these two options explicitly.
        kw.setdefault("invent_users", True)
        kw.setdefault("list_delay_s", 0)
        server = EmulatorServer(**kw).start()
        servers.append(server)
        return server

    yield _start
    for server in servers:
        server.stop()
        assert server.tenant.counters.internal_errors_total == 0, server.last_internal_error


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        session.headers["Authorization"] = "Bearer emulator-test"
        yield session


def new_users(n: int) -> list[str]:
    return [str(uuid.uuid4()) for _ in range(n)]


# -- throttling -------------------------------------------------------------------------------
def test_per_chat_limit_429_and_retry_after_timing(start: Start, http: requests.Session) -> None:
    clock = ManualClock()  # time passes only when the test says: no sleeps, exact figures
    server = start(limits="x5", clock=clock)  # 1 request/s per chat becomes 5/s, burst 1
    chat = http.post(f"{server.url}/chats", json=group("t", A, B, C)).json()
    url = f"{server.url}/chats/{chat['id']}"
    assert http.get(url).status_code == 200
    throttled = http.get(url)
    assert_graph_error(throttled, 429, "TooManyRequests")
    assert throttled.json()["error"]["innerError"]["status"] == "429"  # throttling.md sample
    wait = float(throttled.headers["Retry-After"])
    # the bucket was empty and the throttled request counts too: up to 2 tokens at 5/s
    assert wait == 0.4
    clock.advance(0.39)
    early = http.get(url)  # retrying before Retry-After stays throttled
    assert early.status_code == 429
    wait = float(early.headers["Retry-After"])
    clock.advance(wait)
    assert http.get(url).status_code == 200  # waiting Retry-After is enough
    counters = server.tenant.counters
    assert counters.throttled_total == 2 and counters.requests_total == 5


def test_documented_limits_send_whole_second_retry_after(
    start: Start, http: requests.Session
) -> None:
    server = start()  # limits="documented"
    chat = http.post(f"{server.url}/chats", json=group("t", A, B)).json()
    http.get(f"{server.url}/chats/{chat['id']}")
    resp = http.get(f"{server.url}/chats/{chat['id']}")
    assert resp.status_code == 429
    assert resp.headers["Retry-After"] == "2"  # (1 - (-1)) tokens at 1 per second


def test_write_bucket_allows_a_burst_of_30_then_429(start: Start, http: requests.Session) -> None:
    server = start()  # 30 rps for POST /chats, burst 30
    statuses = [
        http.post(f"{server.url}/chats", json=group(None, A, B)).status_code for _ in range(60)
    ]
    assert statuses[:30] == [201] * 30
    assert 429 in statuses[30:]
    counters = server.tenant.counters
    assert counters.chats_created_total == statuses.count(201)
    assert counters.throttled_total == statuses.count(429)
    assert len(server.tenant.chats()) == statuses.count(201)


def test_batch_items_are_throttled_one_by_one(start: Start, http: requests.Session) -> None:
    server = start(limits="x10")
    chat = http.post(f"{server.url}/chats", json=group("t", A, B)).json()
    items = [{"id": str(i), "method": "GET", "url": f"/chats/{chat['id']}"} for i in range(5)]
    resp = http.post(f"{server.url}/$batch", json={"requests": items})
    assert resp.status_code == 200
    statuses = sorted(r["status"] for r in resp.json()["responses"])
    assert statuses == [200, 429, 429, 429, 429]
    for item in resp.json()["responses"]:
        if item["status"] == 429:
            assert float(item["headers"]["Retry-After"]) > 0
            assert item["body"]["error"]["code"] == "TooManyRequests"


def test_list_chats_is_limited_to_5_per_second_per_user(
    start: Start, http: requests.Session
) -> None:
    # includes/throttling-teams.md: "A maximum of five requests per second per user can be
    # issued when doing List chats or Get chat": a sixth list of one user's chats within the
    # second is throttled, while another user's list still goes through (issue 26).
    server = start(limits="documented")
    users = new_users(2)
    lists = [http.get(f"{server.url}/users/{users[0]}/chats") for _ in range(6)]
    assert [r.status_code for r in lists] == [200] * 5 + [429]
    assert float(lists[-1].headers["Retry-After"]) > 0
    assert http.get(f"{server.url}/users/{users[1]}/chats").status_code == 200


def test_member_add_is_limited_to_4_per_minute_per_chat(
    start: Start, http: requests.Session
) -> None:
    clock = ManualClock()
    server = start(limits="x40", clock=clock)  # 4 per minute -> 2.7 per second, burst 4
    users = new_users(7)
    chat = http.post(f"{server.url}/chats", json=group("t", *users[:2])).json()
    url = f"{server.url}/chats/{chat['id']}/members"
    statuses = []
    for user in users[2:]:
        statuses.append(http.post(url, json=member(user)))
        clock.advance(0.03)  # stay under the 1 request/s (x40) per-chat limit
    assert [r.status_code for r in statuses] == [201, 201, 201, 201, 429]
    clock.advance(float(statuses[-1].headers["Retry-After"]))
    assert http.post(url, json=member(users[-1])).status_code == 201


def test_chat_delete_is_limited_per_tenant(start: Start, http: requests.Session) -> None:
    clock = ManualClock()
    server = start(limits="x5", clock=clock)
    ids = [http.post(f"{server.url}/chats", json=group("t", A, B)).json()["id"] for _ in range(2)]
    assert http.delete(f"{server.url}/chats/{ids[0]}").status_code == 204
    second = http.delete(f"{server.url}/chats/{ids[1]}")
    assert second.status_code == 429  # chat-delete.md: one delete per second per tenant
    clock.advance(float(second.headers["Retry-After"]))
    assert http.delete(f"{server.url}/chats/{ids[1]}").status_code == 204


def test_limits_off_never_throttle(start: Start, http: requests.Session) -> None:
    server = start(limits="off")
    chat = http.post(f"{server.url}/chats", json=group("t", A, B)).json()
    assert {http.get(f"{server.url}/chats/{chat['id']}").status_code for _ in range(100)} == {200}
    assert server.tenant.counters.throttled_total == 0


# -- faults -----------------------------------------------------------------------------------
def test_503_answers_retry_after_and_does_nothing(start: Start, http: requests.Session) -> None:
    server = start(limits="off", faults=["503=1"], fault_retry_after_s=0.05)
    resp = http.post(f"{server.url}/chats", json=group("t", A, B))
    assert_graph_error(resp, 503)
    assert resp.headers["Retry-After"] == "0.05"
    assert server.tenant.chats() == []
    counters = server.tenant.counters
    assert counters.faults["503"] == 1 and counters.post_chats_total == 0


def test_504_comes_after_the_change_so_blind_retries_duplicate_groups(
    start: Start, http: requests.Session
) -> None:
    server = start(limits="off", faults=["504=1,method=POST,path=/chats,chat-type=group"])
    body = group("Project X", A, B, C)
    assert_graph_error(http.post(f"{server.url}/chats", json=body), 504)
    assert_graph_error(http.post(f"{server.url}/chats", json=body), 504)
    dupes = server.tenant.duplicate_group_chats()
    assert len(dupes) == 1 and len(dupes[0]) == 2  # the careless client made it twice
    # the rule is limited to group creation: oneOnOne and reads are untouched
    assert http.post(f"{server.url}/chats", json=one_on_one(A, B)).status_code == 201
    assert http.get(f"{server.url}/chats/{dupes[0][0].id}").status_code == 200
    assert server.tenant.counters.faults["504"] == 2


def test_drop_closes_the_connection_after_the_change(start: Start, http: requests.Session) -> None:
    server = start(limits="off", faults=["drop=1,method=POST"])
    with pytest.raises(requests.ConnectionError):
        http.post(f"{server.url}/chats", json=one_on_one(A, B))
    (chat,) = server.tenant.chats()
    assert chat.member_user_ids == {A, B}
    server.set_faults(None)
    # the oneOnOne retry finds the chat the lost answer was about
    again = http.post(f"{server.url}/chats", json=one_on_one(A, B))
    assert again.status_code == 201 and again.json()["id"] == chat.id
    assert server.tenant.counters.faults["drop"] == 1


def test_drop_inside_a_batch_loses_the_whole_response(start: Start, http: requests.Session) -> None:
    server = start(limits="off", faults=["drop=1,method=POST,path=/chats"])
    items = [
        {"id": "1", "method": "GET", "url": "/me"},
        {
            "id": "2",
            "method": "POST",
            "url": "/chats",
            "body": group("t", A, B),
            "headers": {"Content-Type": "application/json"},
        },
    ]
    with pytest.raises(requests.ConnectionError):
        http.post(f"{server.url}/$batch", json={"requests": items})
    assert len(server.tenant.chats()) == 1


def test_429_fault_and_latency_fault(start: Start, http: requests.Session) -> None:
    clock = ManualClock()
    server = start(limits="off", faults=["429=1,path=/me"], fault_retry_after_s=0.02, clock=clock)
    resp = http.get(f"{server.url}/me")
    assert_graph_error(resp, 429, "TooManyRequests")
    assert resp.headers["Retry-After"] == "0.02"
    server.set_faults(["latency=1,ms=150,method=GET"])
    with ThreadPoolExecutor(1) as pool:
        answer = pool.submit(http.get, f"{server.url}/me")
        assert clock.wait_for_sleepers(1)  # the request is held inside the emulator
        clock.advance(0.149)
        assert not answer.done()
        clock.advance(0.001)
        assert answer.result(timeout=10).status_code == 200
    assert server.tenant.counters.faults == {"429": 1, "latency": 1}


def test_base_latency_range(start: Start, http: requests.Session) -> None:
    clock = ManualClock()
    server = start(limits="off", latency_ms=(40, 60), clock=clock)
    with ThreadPoolExecutor(1) as pool:
        answers = pool.submit(lambda: [http.get(f"{server.url}/me") for _ in range(3)])
        for n in range(1, 4):
            assert clock.wait_for_sleeps(n)  # each request waits its latency...
            clock.advance(0.039)
            assert not answers.done()
            clock.advance(0.021)  # ...of 40 to 60 ms
        assert [r.status_code for r in answers.result(timeout=10)] == [200] * 3


def test_faults_are_repeatable_with_a_seed(start: Start, http: requests.Session) -> None:
    def run(seed: int) -> list[int]:
        server = start(limits="off", faults={"503": 0.3}, seed=seed, fault_retry_after_s=0.01)
        return [http.get(f"{server.url}/me").status_code for _ in range(40)]

    first, second, other = run(42), run(42), run(43)
    assert first == second
    assert 0 < first.count(503) < 40
    assert other != first


def test_token_expiry_mid_run(start: Start) -> None:
    clock = ManualClock()
    server = start(limits="off", token_lifetime_s=0.3, clock=clock)
    old = {"Authorization": "Bearer first-token"}
    assert requests.get(f"{server.url}/me", headers=old).status_code == 200
    clock.advance(0.29)
    assert requests.get(f"{server.url}/me", headers=old).status_code == 200
    clock.advance(0.01)
    expired = requests.get(f"{server.url}/me", headers=old)
    assert_graph_error(expired, 401, "InvalidAuthenticationToken")
    assert "expired" in expired.json()["error"]["message"]
    fresh = requests.get(f"{server.url}/me", headers={"Authorization": "Bearer second-token"})
    assert fresh.status_code == 200


# -- persistence ------------------------------------------------------------------------------
def test_tenant_survives_a_restart(start: Start, http: requests.Session, tmp_path: Path) -> None:
    data = tmp_path / "tenant.json"
    server = start(limits="off", data_path=data)
    one = http.post(f"{server.url}/chats", json=one_on_one(A, B)).json()
    grp = http.post(f"{server.url}/chats", json=group("first", A, B, C)).json()
    gone = http.post(f"{server.url}/chats", json=group("gone", A, B)).json()
    http.patch(f"{server.url}/chats/{grp['id']}", json={"topic": "renamed"})
    http.post(f"{server.url}/chats/{grp['id']}/members", json=member(D))
    http.delete(f"{server.url}/chats/{gone['id']}")
    before = {c.id: c for c in server.tenant.chats()}
    server.stop()
    assert stat.S_IMODE(os.stat(data).st_mode) == 0o600
    assert data.with_name("tenant.json.journal").stat().st_size == 0  # folded into the snapshot

    again = start(limits="off", data_path=data)
    assert {c.id: c for c in again.tenant.chats()} == before
    assert again.tenant.chat(gone["id"]).is_deleted  # type: ignore[union-attr]
    assert http.get(f"{again.url}/chats/{grp['id']}").json()["topic"] == "renamed"
    assert_graph_error(http.get(f"{again.url}/chats/{gone['id']}"), 404)
    resp = http.post(f"{again.url}/chats", json=one_on_one(B, A))
    assert resp.json()["id"] == one["id"] and again.tenant.counters.chats_created_total == 0


def test_the_journal_is_replayed_after_a_crash(
    start: Start, http: requests.Session, tmp_path: Path
) -> None:
    data = tmp_path / "live" / "tenant.json"
    server = start(limits="off", data_path=data)
    ids = {
        http.post(f"{server.url}/chats", json=group(f"g{i}", A, B)).json()["id"] for i in range(3)
    }
    crash = tmp_path / "crash"  # what a kill -9 leaves: the journal, no final snapshot
    crash.mkdir()
    for name in os.listdir(data.parent):
        if not name.endswith(".lock"):
            shutil.copy(data.parent / name, crash / name)
    assert not (crash / "tenant.json").exists()
    with (crash / "tenant.json.journal").open("ab") as journal:
        journal.write(b'{"seq": 99, "chat": {"id": "19:torn')  # a write cut short
    recovered = start(limits="off", data_path=crash / "tenant.json")
    assert {c.id for c in recovered.tenant.chats()} == ids


@pytest.mark.parametrize(
    ("snapshot", "journal", "message"),
    [
        ("{garbage", None, "corrupt"),
        ('{"some": "other file"}', None, "not a provision emulator data file"),
        (
            '{"format": "provision-emulator", "version": 1, "tenantId": "t", "journalSeq": 0, '
            '"users": [], "chats": [{"id": "19:x@thread.v2"}]}',
            None,
            "malformed",
        ),
        ('{"format": "provision-emulator", "version": 7}', None, "version 7"),
        (None, '{"seq": 1, "chat": \nnot json\n{"seq": 2}\n', "corrupt"),
    ],
    ids=["not-json", "foreign", "bad-record", "future-version", "bad-journal"],
)
def test_corrupt_data_is_a_clear_startup_error(
    tmp_path: Path, snapshot: str | None, journal: str | None, message: str
) -> None:
    data = tmp_path / "tenant.json"
    if snapshot is not None:
        data.write_text(snapshot)
    if journal is not None:
        data.with_name("tenant.json.journal").write_text(journal)
    with pytest.raises(EmulatorError, match=message) as info:
        EmulatorServer(data_path=data)
    assert isinstance(info.value, ProvisionError)
    EmulatorServer(data_path=tmp_path / "other.json").stop()  # and nothing is left locked


def test_one_data_file_one_emulator(tmp_path: Path) -> None:
    first = EmulatorServer(data_path=tmp_path / "t.json")
    try:
        with pytest.raises(EmulatorError, match="in use by another emulator"):
            EmulatorServer(data_path=tmp_path / "t.json")
    finally:
        first.stop()
    EmulatorServer(data_path=tmp_path / "t.json").stop()  # released on stop


def test_made_up_users_are_consistent_across_restarts(
    start: Start, http: requests.Session, tmp_path: Path
) -> None:
    data = tmp_path / "t.json"
    server = start(limits="off", data_path=data)
    by_upn = http.get(f"{server.url}/users/jacob@contoso.com").json()
    assert by_upn["userPrincipalName"] == "jacob@contoso.com"
    assert http.get(f"{server.url}/users/{by_upn['id']}").json()["userPrincipalName"] == (
        "jacob@contoso.com"
    )
    guid = str(uuid.uuid4())
    made_up_upn = http.get(f"{server.url}/users/{guid}").json()["userPrincipalName"]
    server.stop()
    again = start(limits="off", data_path=data)
    assert http.get(f"{again.url}/users('jacob@contoso.com')").json()["id"] == by_upn["id"]
    assert http.get(f"{again.url}/users/{guid}").json()["userPrincipalName"] == made_up_upn


# -- users directory from a file --------------------------------------------------------------
def test_users_file_rules(start: Start, http: requests.Session, tmp_path: Path) -> None:
    server = start(limits="off", users=write_users(tmp_path), invent_users=False)
    guest = USERS[5]["id"]
    assert_graph_error(http.post(f"{server.url}/chats", json=group("t", A, str(uuid.uuid4()))), 404)
    # chat-post.md: in-tenant guest users must be assigned the guest role
    assert_graph_error(http.post(f"{server.url}/chats", json=group("t", A, guest)), 400)
    body = {"chatType": "group", "members": [member(A), member(guest, role="guest")]}
    assert http.post(f"{server.url}/chats", json=body).status_code == 201
    assert http.get(f"{server.url}/me").json()["id"] == A  # the first user is /me
    # ... and a member account has no guest role (issue 22), on creation and on Add member.
    body = {
        "chatType": "group",
        "members": [member(A), member(B, role="guest"), member(guest, role="guest")],
    }
    assert_graph_error(http.post(f"{server.url}/chats", json=body), 400)
    chat = http.post(f"{server.url}/chats", json=group("t", A, B)).json()
    assert_graph_error(
        http.post(f"{server.url}/chats/{chat['id']}/members", json=member(C, role="guest")), 400
    )


def test_sparse_members_leave_out_tenant_id_email_and_display_name(
    start: Start, http: requests.Session
) -> None:
    # concepts/includes/known-issues/teamwork-communications.md: "some properties for chat
    # members might be missing" (tenantId, email, displayName).
    server = start(limits="off", list_delay_s=0, sparse_members=True)
    chat = http.post(f"{server.url}/chats", json=group("t", A, B)).json()
    listed = http.get(f"{server.url}/chats/{chat['id']}/members").json()["value"]
    expanded = http.get(f"{server.url}/chats/{chat['id']}?$expand=members").json()["members"]
    for m in (*listed, *expanded):
        assert m["userId"] in (A, B) and m["id"]
        assert m["tenantId"] is None and m["email"] is None and m["displayName"] is None


@pytest.mark.parametrize(
    "content",
    ["not json", '{"users": 3}', '[{"id": "x", "userPrincipalName": "a@b.c"}]'],
)
def test_bad_users_file_is_a_startup_error(tmp_path: Path, content: str) -> None:
    path = tmp_path / "users.json"
    path.write_text(content)
    with pytest.raises(EmulatorError):
        EmulatorServer(users=path)


# -- semantics the contract suite leaves to the emulator --------------------------------------
def test_soft_deleted_chat_stays_in_the_tenant(start: Start, http: requests.Session) -> None:
    server = start(limits="off")
    chat = http.post(f"{server.url}/chats", json=group("t", A, B)).json()
    http.delete(f"{server.url}/chats/{chat['id']}")
    (view,) = server.tenant.chats()
    assert view.is_deleted and server.tenant.chats(include_deleted=False) == []


def test_recreating_a_deleted_one_on_one_revives_it(start: Start, http: requests.Session) -> None:
    server = start(limits="off")
    chat = http.post(f"{server.url}/chats", json=one_on_one(A, B)).json()
    http.delete(f"{server.url}/chats/{chat['id']}")
    again = http.post(f"{server.url}/chats", json=one_on_one(A, B))
    assert again.json()["id"] == chat["id"]
    assert http.get(f"{server.url}/chats/{chat['id']}").status_code == 200


def test_only_200_members_at_one_time(start: Start, http: requests.Session) -> None:
    # Teams limits (limits-specifications-teams.md): "Only 200 members can be added at one time".
    server = start(limits="off")
    people = [str(uuid.uuid5(uuid.NAMESPACE_DNS, f"p{n}")) for n in range(201)]
    body = {"chatType": "group", "members": [member(p) for p in people]}
    assert_graph_error(http.post(f"{server.url}/chats", json=body), 400)
    body["members"] = body["members"][:200]
    assert http.post(f"{server.url}/chats", json=body).status_code == 201


def test_visible_history_start_is_kept_or_the_time_of_the_add(
    start: Start, http: requests.Session
) -> None:
    # chat-post-members.md: example 3 sends 0001-01-01T00:00:00Z (all history); example 2
    # sends none (history from when the member is added).
    server = start(limits="off", list_delay_s=0)
    grp = http.post(f"{server.url}/chats", json=group("t", A, B)).json()
    url = f"{server.url}/chats/{grp['id']}/members"
    assert_graph_error(
        http.post(url, json={**member(C), "visibleHistoryStartDateTime": "soon"}), 400
    )
    assert (
        http.post(
            url, json={**member(C), "visibleHistoryStartDateTime": "2025-03-01T00:00:00Z"}
        ).status_code
        == 201
    )
    assert http.post(url, json=member(D)).status_code == 201
    starts = {m["userId"]: m["visibleHistoryStartDateTime"] for m in http.get(url).json()["value"]}
    assert starts[A] == starts[B] == "0001-01-01T00:00:00Z"
    assert starts[C] == "2025-03-01T00:00:00Z"
    assert starts[D].startswith("20") and starts[D] != starts[C]


def test_member_conflicts(start: Start, http: requests.Session) -> None:
    server = start(limits="off")
    grp = http.post(f"{server.url}/chats", json=group("t", A, B)).json()
    assert_graph_error(http.post(f"{server.url}/chats/{grp['id']}/members", json=member(A)), 400)
    one = http.post(f"{server.url}/chats", json=one_on_one(A, B)).json()
    assert_graph_error(http.post(f"{server.url}/chats/{one['id']}/members", json=member(C)), 400)


def test_list_expands_at_most_25_members(start: Start, http: requests.Session) -> None:
    server = start(limits="off")
    users = new_users(30)
    chat = http.post(f"{server.url}/chats", json=group("big", *users)).json()
    listed = http.get(f"{server.url}/users/{users[0]}/chats", params={"$expand": "members"}).json()[
        "value"
    ]
    assert len(listed[0]["members"]) == 25  # chat-list.md known issue
    full = http.get(f"{server.url}/chats/{chat['id']}", params={"$expand": "members"}).json()
    assert len(full["members"]) == 30


def test_list_default_page_size_and_me(start: Start, http: requests.Session) -> None:
    server = start(limits="off", me=A)
    for i in range(25):
        http.post(f"{server.url}/chats", json=group(f"g{i}", A, B))
    page = http.get(f"{server.url}/me/chats").json()
    assert len(page["value"]) == 20 and "@odata.nextLink" in page
    rest = http.get(page["@odata.nextLink"]).json()
    assert len(rest["value"]) == 5 and "@odata.nextLink" not in rest
    assert http.get(f"{server.url}/chats", params={"$top": "50"}).json()["@odata.count"] == 25


def test_batch_responses_come_back_shuffled(start: Start, http: requests.Session) -> None:
    items = [{"id": str(i), "method": "GET", "url": "/me"} for i in range(10)]
    shuffled = start(limits="off")
    resp = http.post(f"{shuffled.url}/$batch", json={"requests": items}).json()["responses"]
    assert [r["id"] for r in resp] != [str(i) for i in range(10)]
    ordered = start(limits="off", shuffle_batch=False)
    resp = http.post(f"{ordered.url}/$batch", json={"requests": items}).json()["responses"]
    assert [r["id"] for r in resp] == [str(i) for i in range(10)]


# -- bad input and the HTTP layer -------------------------------------------------------------
def test_oversize_body_is_413_and_the_server_keeps_serving(
    start: Start, http: requests.Session
) -> None:
    server = start(limits="off", max_body_bytes=2000)
    big = group("x", *new_users(100))
    assert_graph_error(http.post(f"{server.url}/chats", json=big), 413)
    assert http.get(f"{server.url}/me").status_code == 200


def test_chunked_body_without_length_is_411(start: Start, http: requests.Session) -> None:
    server = start(limits="off")
    body = json.dumps(group("t", A, B)).encode()
    resp = http.post(
        f"{server.url}/chats",
        data=iter([body]),  # a generator: requests sends it chunked
        headers={"Content-Type": "application/json"},
    )
    assert_graph_error(resp, 411)
    assert http.get(f"{server.url}/me").status_code == 200


def test_missing_content_type_and_unknown_version(start: Start, http: requests.Session) -> None:
    server = start(limits="off")
    resp = http.post(f"{server.url}/chats", data=json.dumps(group("t", A, B)).encode())
    assert_graph_error(resp, 400)
    root = server.url.rsplit("/", 1)[0]
    assert_graph_error(http.get(f"{root}/v2.0/me"), 404)
    assert http.options(f"{server.url}/me").status_code == 405


def test_garbage_on_the_wire_does_not_stop_the_server(start: Start, http: requests.Session) -> None:
    server = start(limits="off")
    with socket.create_connection((server.host, server.port), timeout=5) as raw:
        raw.sendall(b"THIS IS NOT HTTP\r\n\r\n")
        assert raw.recv(4096).startswith(b"HTTP/1.1 400")
    assert http.get(f"{server.url}/me").status_code == 200


def test_keep_alive_reuses_one_connection(start: Start, http: requests.Session) -> None:
    server = start(limits="off")
    for _ in range(30):
        assert http.get(f"{server.url}/me").status_code == 200
    assert server.tenant.counters.connections_total == 1


def test_stop_hangs_up_idle_keep_alive_connections(start: Start, http: requests.Session) -> None:
    server = start(limits="off")
    assert http.get(f"{server.url}/me").status_code == 200
    server.stop()
    with pytest.raises(requests.ConnectionError):
        http.get(f"{server.url}/me", timeout=5)


def test_concurrent_creates(start: Start) -> None:
    server = start(limits="off")
    ids: list[str] = []
    lock = threading.Lock()

    def worker() -> None:
        with requests.Session() as s:
            s.headers["Authorization"] = "Bearer t"
            for _ in range(10):
                one = s.post(f"{server.url}/chats", json=one_on_one(A, B)).json()["id"]
                s.post(f"{server.url}/chats", json=group("same", A, B, C))
                with lock:
                    ids.append(one)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(ids)) == 1  # one oneOnOne chat for the pair, whatever the interleaving
    groups = server.tenant.duplicate_group_chats()
    assert len(groups) == 1 and len(groups[0]) == 80
    assert server.tenant.counters.chats_created_total == 81


def test_embedded_keeps_the_tenant_between_runs(tmp_path: Path, http: requests.Session) -> None:
    data = tmp_path / ".provision-emulator.json"
    with embedded(data, limits="off") as url:
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v1.0")
        chat = http.post(f"{url}/chats", json=group("kept", A, B)).json()
    assert data.exists()
    with embedded(data, limits="off") as url:
        assert http.get(f"{url}/chats/{chat['id']}").json()["topic"] == "kept"


def test_url_before_start_and_double_start(tmp_path: Path) -> None:
    server = EmulatorServer()
    with pytest.raises(EmulatorError, match="not started"):
        _ = server.url
    with server, pytest.raises(EmulatorError, match="already started"):
        server.start()


def test_find_chats_by_upn_or_id(start: Start, http: requests.Session) -> None:
    server = start(limits="off")
    body = group("Project X", "jacob@contoso.com", A)
    made = http.post(f"{server.url}/chats", json=body).json()
    (found,) = server.tenant.find_chats(
        chat_type="group", topic="Project X", members=[A, "Jacob@Contoso.com"]
    )
    assert found.id == made["id"]
    assert server.tenant.find_chats(members=[A]) == []


def test_a_client_hanging_up_mid_body_is_not_an_emulator_error(
    start: Start, http: requests.Session
) -> None:
    server = start(limits="off")
    with socket.create_connection((server.host, server.port), timeout=5) as raw:
        raw.sendall(
            b"POST /v1.0/chats HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t\r\n"
            b'Content-Type: application/json\r\nContent-Length: 500\r\n\r\n{"chatType"'
        )
        raw.shutdown(socket.SHUT_WR)
        assert raw.recv(4096) == b""  # no answer for a request that never arrived whole
    assert http.get(f"{server.url}/me").status_code == 200
    assert server.tenant.chats() == []


# -- the documented service by default (issue 14) ------------------------------------------------
def test_default_directory_holds_the_readme_users_and_no_one_else(
    start: Start, http: requests.Session
) -> None:
    server = start(limits="off", invent_users=False)
    for ref in ("megan.bowen@contoso.com", "8c0a1a67-50ce-4114-bb6c-da9c5dbcf6ca"):
        assert http.get(f"{server.url}/users/{ref}").status_code == 200
    for ref in ("nobody@contoso.com", str(uuid.uuid4())):
        # user-get.md: 404; graph-facts: Request_ResourceNotFound
        assert_graph_error(http.get(f"{server.url}/users/{ref}"), 404, "Request_ResourceNotFound")
    body = group("t", "adele@contoso.com", "nobody@contoso.com")
    assert_graph_error(http.post(f"{server.url}/chats", json=body), 404, "Request_ResourceNotFound")


def test_new_chats_and_memberships_are_listed_after_the_list_delay(
    start: Start, http: requests.Session
) -> None:
    clock = ManualClock()
    server = start(limits="off", list_delay_s=0.6, clock=clock)
    chat = http.post(f"{server.url}/chats", json=group("lag", A, B)).json()
    listing = f"{server.url}/users/{A}/chats"
    assert http.get(listing).json()["value"] == []  # microsoft-graph-docs-contrib#5343
    members = f"{server.url}/chats/{chat['id']}/members"
    assert {m["userId"] for m in http.get(members).json()["value"]} == {A, B}  # with the chat
    added = http.post(members, json=member(C))
    assert added.status_code == 201 and not added.content  # chat-post-members.md: no body
    assert {m["userId"] for m in http.get(members).json()["value"]} == {A, B}
    removed = next(m for m in http.get(members).json()["value"] if m["userId"] == B)
    assert http.delete(f"{members}/{removed['id']}").status_code == 204
    assert {m["userId"] for m in http.get(members).json()["value"]} == {A, B}  # B still shown
    clock.advance(0.59)
    assert http.get(listing).json()["value"] == []
    clock.advance(0.01)
    assert [c["id"] for c in http.get(listing).json()["value"]] == [chat["id"]]
    assert {m["userId"] for m in http.get(members).json()["value"]} == {A, C}


def test_list_delay_option() -> None:
    from provisioner.emulator.server import parse_delay

    assert parse_delay("2-30s") == (2.0, 30.0) and parse_delay("0") == 0.0
    for bad in ("30-2s", "-1", "x", "1-99999"):
        with pytest.raises(EmulatorError):
            parse_delay(bad)


def test_joined_filter_is_refused(start: Start, http: requests.Session) -> None:
    server = start(limits="off")
    resp = http.get(
        f"{server.url}/users/{A}/chats",
        params={"$filter": "chatType eq 'group' and topic eq 'x'"},
    )
    assert_graph_error(resp, 400)


def test_group_chats_hold_at_most_250_members(start: Start, http: requests.Session) -> None:
    server = start(limits="off")
    users = new_users(251)
    assert_graph_error(http.post(f"{server.url}/chats", json=group("big", *users)), 400)
    # 200 at one time (Teams limits), then one by one up to 250.
    chat = http.post(f"{server.url}/chats", json=group("big", *users[:200])).json()
    for user in users[200:250]:
        resp = http.post(f"{server.url}/chats/{chat['id']}/members", json=member(user))
        assert resp.status_code == 201
    resp = http.post(f"{server.url}/chats/{chat['id']}/members", json=member(users[250]))
    assert_graph_error(resp, 400)


def test_delegated_calls_act_for_the_signed_in_user(start: Start, http: requests.Session) -> None:
    server = start(limits="off", sign_in="delegated", me=A)
    assert_graph_error(http.post(f"{server.url}/chats", json=group("t", B, C)), 400)
    assert http.post(f"{server.url}/chats", json=group("t", A, B)).status_code == 201
    assert http.get(f"{server.url}/users/{A}/chats").status_code == 200
    assert_graph_error(http.get(f"{server.url}/users/{B}/chats"), 403)
    chat = http.get(f"{server.url}/users/{A}/chats").json()["value"][0]
    assert_graph_error(http.get(f"{server.url}/users/{B}/chats/{chat['id']}"), 403)
    # An app-only server still honours a delegated token (scp + oid claims).
    app = start(limits="off")
    token = {"Authorization": f"Bearer {jwt({'scp': 'Chat.ReadWrite', 'oid': B})}"}
    assert_graph_error(http.post(f"{app.url}/chats", json=group("t", A, C), headers=token), 400)
    assert_graph_error(http.get(f"{app.url}/users/{A}/chats", headers=token), 403)
    assert http.get(f"{app.url}/users/{A}/chats").status_code == 200  # app-only: anyone
