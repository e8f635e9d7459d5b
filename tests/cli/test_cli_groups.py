"""Issue 22: chat members from Entra ID groups, through the CLI against the emulator."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from lib.cli import run

from provisioner.emulator import EmulatorServer, User
from provisioner.states.local import LocalStateStore

# Distinct first 8 characters: the emulator's made-up UPN of a GUID user is built from them.
OWNER = str(uuid.uuid5(uuid.NAMESPACE_DNS, "owner"))
TEAM = [str(uuid.uuid5(uuid.NAMESPACE_DNS, f"team-{n}")) for n in range(10)]
GUEST = str(uuid.uuid5(uuid.NAMESPACE_DNS, "guest"))
GUEST_UPN = "ana_fabrikam.com#EXT#@contoso.onmicrosoft.com"


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[EmulatorServer]:
    monkeypatch.chdir(tmp_path)
    # Graph allows 4 member changes per minute per chat; these tests make up to 30 in a row:
    # the client's pace is raised for them, as for every test not marked documented_pace
    # (tests/conftest.py), and the emulator's limits are off.
    for name in ("PROVISION_STATE", "PROVISION_GRAPH_URL", "PROVISION_ACCESS_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    with EmulatorServer(limits="off", invent_users=True, list_delay_s=0) as srv:
        monkeypatch.setenv("PROVISION_GRAPH_URL", srv.url)
        monkeypatch.setenv("PROVISION_ACCESS_TOKEN", "token-1")
        srv.tenant.directory.remember(User(GUEST, GUEST_UPN, "Ana", "ana@fabrikam.com", "Guest"))
        yield srv
        assert srv.tenant.counters.internal_errors_total == 0


def manifest(group: str) -> str:
    return (
        "version: 1\nchats:\n  - key: falcon\n    chatType: group\n    topic: Falcon\n"
        f"    members:\n      - user: {OWNER}\n      - group: {group}\n"
    )


def members(server: EmulatorServer, chat_id: str) -> dict[str, str]:
    chat = server.tenant.chat(chat_id)
    assert chat is not None
    return {m.user_id: m.roles[0] for m in chat.members}


def upn(user_id: str) -> str:
    return f"user-{user_id[:8]}@emulator.invalid"


def test_a_chat_follows_its_group(
    capsys: pytest.CaptureFixture[str], server: EmulatorServer
) -> None:
    groups = server.tenant.groups
    inner = groups.add("Falcon-Leads", TEAM[3:5])
    falcon = groups.add("Falcon-Team", [*TEAM[:3], inner.id, GUEST], mail="falcon@contoso.com")
    Path("chats.yaml").write_text(manifest("falcon@contoso.com"))
    code, out, err = run(capsys, "apply", "chats.yaml", "--auto-approve")
    assert code == 0, out + err
    assert f"+ member {upn(TEAM[0])}  owner  (from group Falcon-Team)" in out
    assert f"+ member {GUEST}  guest  (from group Falcon-Team)" in out  # guests are guests
    state = LocalStateStore("provision.state.json").read()
    chat_id = state.chats["falcon"].chat_id
    assert members(server, chat_id) == {
        OWNER: "owner",
        **dict.fromkeys(TEAM[:5], "owner"),
        GUEST: "guest",
    }
    group = state.groups["falcon@contoso.com"]
    assert (group.group_id, group.name) == (falcon.id, "Falcon-Team") and group.read_at
    assert len(group.users) == 6

    # Unchanged group: nothing to do.
    code, out, err = run(capsys, "plan", "chats.yaml", "--detailed-exitcode")
    assert code == 0, out + err

    # Two join (one through the nested group), one leaves: exactly three member changes.
    groups.add_members(falcon.id, TEAM[5])
    groups.add_members(inner.id, TEAM[6])
    groups.remove_members(falcon.id, TEAM[1])
    code, out, err = run(capsys, "plan", "chats.yaml", "--detailed-exitcode", "--format", "json")
    assert code == 2, out + err
    (change,) = [c for c in json.loads(out)["changes"] if c["action"] != "no-op"]
    assert sorted((m["user"], m["via"]) for m in change["members_add"]) == sorted(
        [(upn(TEAM[5]), "group Falcon-Team"), (upn(TEAM[6]), "group Falcon-Team")]
    )
    assert [m["object_id"] for m in change["members_remove"]] == [TEAM[1]]
    code, out, err = run(capsys, "apply", "chats.yaml", "--auto-approve")
    assert code == 0, out + err
    assert f"+ member {upn(TEAM[5])}  owner  (from group Falcon-Team)" in out
    assert f"- member {upn(TEAM[1])}" in out
    assert set(members(server, chat_id)) == {OWNER, GUEST, TEAM[0], *TEAM[2:7]}
    # Offline, the state's copy of the group is used.
    code, out, err = run(capsys, "plan", "chats.yaml", "--no-refresh", "--detailed-exitcode")
    assert code == 0, out + err


def test_a_group_too_big_for_a_chat_is_refused_before_anything_is_sent(
    capsys: pytest.CaptureFixture[str], server: EmulatorServer
) -> None:
    big = server.tenant.groups.add(
        "All-Staff", [str(uuid.uuid5(uuid.NAMESPACE_DNS, f"staff-{n}")) for n in range(600)]
    )
    Path("chats.yaml").write_text(manifest(big.id))
    code, _, err = run(capsys, "apply", "chats.yaml", "--auto-approve")
    assert code == 1
    assert "group All-Staff" in err and "has 600 users" in err and "250" in err
    assert server.tenant.counters.by_route["POST /chats"] == 0
    assert not LocalStateStore("provision.state.json").read().chats


def test_without_group_read_permission_the_error_names_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with EmulatorServer(limits="off", invent_users=True, list_delay_s=0, group_read=False) as srv:
        monkeypatch.setenv("PROVISION_GRAPH_URL", srv.url)
        monkeypatch.setenv("PROVISION_ACCESS_TOKEN", "token-1")
        falcon = srv.tenant.groups.add("Falcon-Team", TEAM[:3])
        Path("chats.yaml").write_text(manifest(falcon.id))
        code, _, err = run(capsys, "apply", "chats.yaml", "--auto-approve")
    assert code == 1
    assert "GroupMember.Read.All" in err
    assert srv.tenant.counters.by_route["POST /chats"] == 0


def test_an_unknown_group_is_an_error_at_its_entry(
    capsys: pytest.CaptureFixture[str], server: EmulatorServer
) -> None:
    Path("chats.yaml").write_text(manifest("nobody@contoso.com"))
    code, _, err = run(capsys, "plan", "chats.yaml", "--refresh")
    assert code == 1
    assert "chats.yaml:8:9: group nobody@contoso.com was not found" in err


def test_a_chat_of_230_is_created_with_200_and_completed(
    capsys: pytest.CaptureFixture[str], server: EmulatorServer
) -> None:
    # Teams limits: only 200 members can be added at one time; the emulator refuses more.
    people = [str(uuid.uuid5(uuid.NAMESPACE_DNS, f"crowd-{n}")) for n in range(230)]
    Path("chats.yaml").write_text(
        "version: 1\nchats:\n  - key: crowd\n    chatType: group\n    topic: Crowd\n"
        "    members:\n" + "".join(f"      - user: {p}\n" for p in people)
    )
    code, out, err = run(capsys, "plan", "chats.yaml")
    assert code == 0, out + err
    assert "created with the first 200 and the other 30 are added one by one" in out
    assert "which takes about 7 minutes" in out  # 29 intervals of 15 s after the first
    code, out, err = run(capsys, "apply", "chats.yaml", "--auto-approve")
    assert code == 0, out + err
    chat_id = LocalStateStore("provision.state.json").read().chats["crowd"].chat_id
    assert set(members(server, chat_id)) == set(people)
    counters = server.tenant.counters
    assert counters.by_route["POST /chats"] == 1
    assert counters.by_route["POST /chats/{chat-id}/members"] == 30
    record = LocalStateStore("provision.state.json").read().chats["crowd"]
    assert len(record.members) == 230 and all(m.membership_id for m in record.members[200:])
    code, out, err = run(capsys, "plan", "chats.yaml", "--detailed-exitcode")
    assert code == 0, out + err
