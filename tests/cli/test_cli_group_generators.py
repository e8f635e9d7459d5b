"""Issue 23: generators whose rows are the users of an Entra ID group, through the CLI against
the emulator (validate offline, plan and apply reading the group, --no-refresh from the state)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from lib.cli import run

from provisioner.emulator import EmulatorServer, User
from provisioner.states.local import LocalStateStore

HR = str(uuid.uuid5(uuid.NAMESPACE_DNS, "hr"))
HIRES = [str(uuid.uuid5(uuid.NAMESPACE_DNS, f"hire-{n}")) for n in range(5)]
NAMES = ["Ana Silva", "Ben Okafor", "Chen Wei", "Dara Byrne", "Eli Cohen"]
UPNS = [f"{n.split()[0].lower()}@contoso.com" for n in NAMES]
GROUP_MAIL = "new-hires@contoso.com"
SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"

MANIFEST = f"""\
version: 1
chats: []
generators:
  - name: welcome
    source: {{group: {GROUP_MAIL}}}
    chats:
      - key: welcome-{{upn|slug}}
        chatType: group
        topic: Welcome {{name}}
        members: [{{user: "{{upn}}"}}, {{user: {HR}}}]
"""


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[EmulatorServer]:
    monkeypatch.chdir(tmp_path)
    for name in ("PROVISION_STATE", "PROVISION_GRAPH_URL", "PROVISION_ACCESS_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    with EmulatorServer(limits="off", invent_users=True, list_delay_s=0) as srv:
        monkeypatch.setenv("PROVISION_GRAPH_URL", srv.url)
        monkeypatch.setenv("PROVISION_ACCESS_TOKEN", "token-1")
        for oid, upn, name in zip(HIRES, UPNS, NAMES, strict=True):
            srv.tenant.directory.remember(User(oid, upn, name, upn, "Member"))
        yield srv
        assert srv.tenant.counters.internal_errors_total == 0


def key(n: int) -> str:
    return f"welcome-{UPNS[n].replace('@', '-')}"


def three_hires(server: EmulatorServer) -> str:
    """A group of 3 users, one of them through a nested group; its id."""
    inner = server.tenant.groups.add("Hires-East", [HIRES[2]])
    group = server.tenant.groups.add("New-Hires", [HIRES[0], HIRES[1], inner.id], mail=GROUP_MAIL)
    Path("chats.yaml").write_text(MANIFEST)
    return group.id


def plan_json(capsys: pytest.CaptureFixture[str], *flags: str) -> dict[str, object]:
    """The plan as JSON, checked against its published schema."""
    import jsonschema

    code, out, err = run(capsys, "plan", "chats.yaml", "--format", "json", *flags)
    assert code in (0, 2), out + err
    data = json.loads(out)
    assert isinstance(data, dict)
    schema = json.loads(Path(SCHEMAS, "plan.schema.json").read_text())
    assert [e.message for e in jsonschema.Draft202012Validator(schema).iter_errors(data)] == []
    return data


def counts(plan: dict[str, object]) -> dict[str, int]:
    summary = plan["summary"]
    assert isinstance(summary, dict)
    return {action: n for action, n in summary.items() if n and action != "no-op"}


def actions(plan: dict[str, object]) -> dict[str, str]:
    changes = plan["changes"]
    assert isinstance(changes, list)
    return {c["key"]: c["action"] for c in changes if c["action"] != "no-op"}


def test_validate_checks_the_templates_and_notes_the_group(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("chats.yaml").write_text(MANIFEST)
    code, out, err = run(capsys, "validate", "chats.yaml")
    assert code == 0, out + err
    assert (
        f"note: generator welcome reads group {GROUP_MAIL} when planning (not expanded offline)"
        in err
    )
    assert "0 errors" in out
    Path("chats.yaml").write_text(MANIFEST.replace("{name}", "{givenName}"))
    code, out, err = run(capsys, "validate", "chats.yaml")
    assert code == 1
    assert (
        "chats.yaml:9:16: error: 'givenName' is not a field of the source "
        "(its fields: id, upn, name, mail, userType)" in out
    )


def test_chats_follow_the_group(capsys: pytest.CaptureFixture[str], server: EmulatorServer) -> None:
    group_id = three_hires(server)
    code, out, err = run(capsys, "plan", "chats.yaml")
    assert code == 0, out + err
    assert f"# from generator welcome, group {GROUP_MAIL}: {UPNS[2]}" in out  # nested: followed
    code, out, err = run(capsys, "apply", "chats.yaml", "--auto-approve")
    assert code == 0, out + err
    state = LocalStateStore("provision.state.json").read()
    assert sorted(state.chats) == sorted(key(n) for n in range(3))
    chat = server.tenant.chat(state.chats[key(0)].chat_id)
    assert chat is not None and chat.topic == "Welcome Ana Silva"
    assert {m.user_id for m in chat.members} == {HIRES[0], HR}
    assert counts(plan_json(capsys, "--detailed-exitcode")) == {}  # nothing to do

    # One joins, one leaves: exactly one creation and the usual policy for the chat left.
    server.tenant.groups.add_members(group_id, HIRES[3])
    server.tenant.groups.remove_members(group_id, HIRES[1])
    plan = plan_json(capsys)
    assert actions(plan) == {key(3): "create", key(1): "forget"}
    assert actions(plan_json(capsys, "--prune")) == {key(3): "create", key(1): "delete"}


def test_each_group_is_read_once_per_plan(
    capsys: pytest.CaptureFixture[str], server: EmulatorServer
) -> None:
    three_hires(server)
    # A second generator and a group: member entry on the same group (spelt otherwise).
    more = MANIFEST.replace(
        "chats: []\n",
        "chats:\n  - key: all-hires\n    chatType: group\n    topic: All hires\n"
        f"    members: [{{user: {HR}}}, {{group: {GROUP_MAIL.upper()}}}]\n",
    ) + (
        "  - name: buddies\n"
        f"    source: {{group: {GROUP_MAIL.upper()}}}\n"
        "    chats:\n"
        "      - key: buddy-{id}\n"
        "        chatType: oneOnOne\n"
        f'        members: [{{user: "{{id}}"}}, {{user: {HR}}}]\n'
    )
    Path("chats.yaml").write_text(more)
    code, out, err = run(capsys, "plan", "chats.yaml")
    assert code == 0, out + err
    assert "7 to create" in out  # 3 + 3 generated, and the hand-written one
    assert f"# from generator buddies, group {GROUP_MAIL.upper()}: {UPNS[1]}" in out
    reads = server.tenant.counters.by_route
    assert sum(n for route, n in reads.items() if "transitiveMembers" in route) == 1
    # The group's answer pairs each UPN with its object id: no user is looked up.
    assert sum(n for route, n in reads.items() if "/users" in route) == 0


def test_a_users_problem_points_at_the_generator(
    capsys: pytest.CaptureFixture[str], server: EmulatorServer
) -> None:
    group_id = three_hires(server)
    server.tenant.directory.remember(User(HIRES[4], UPNS[4], "", UPNS[4], "Member"))
    server.tenant.groups.add_members(group_id, HIRES[4])
    code, out, err = run(capsys, "plan", "chats.yaml")
    assert code == 1
    assert (
        f"chats.yaml:4:5: error: user {UPNS[4]}: the field 'name' is empty in this row" in out + err
    )


def test_a_plan_without_refresh_uses_the_state_or_says_it_needs_one(
    capsys: pytest.CaptureFixture[str], server: EmulatorServer
) -> None:
    group_id = three_hires(server)
    code, out, err = run(capsys, "plan", "chats.yaml", "--no-refresh")
    assert code == 1
    assert (
        f"chats.yaml:4:5: generator welcome reads group {GROUP_MAIL}, which the state has not "
        "recorded: this plan needs a refresh" in out + err
    )
    assert not Path("provision.state.json").exists()
    code, out, err = run(capsys, "apply", "chats.yaml", "--auto-approve")
    assert code == 0, out + err
    server.tenant.groups.add_members(group_id, HIRES[3])  # unseen without refresh
    assert counts(plan_json(capsys, "--no-refresh", "--detailed-exitcode")) == {}
    assert counts(plan_json(capsys)) == {"create": 1}


def test_a_targeted_plan_keeps_the_matching_generated_chats(
    capsys: pytest.CaptureFixture[str], server: EmulatorServer
) -> None:
    three_hires(server)
    plan = plan_json(capsys, "--target", "welcome-b*")
    assert actions(plan) == {key(1): "create"}


def test_a_group_graph_does_not_find_is_an_error_at_the_generator(
    capsys: pytest.CaptureFixture[str], server: EmulatorServer
) -> None:
    Path("chats.yaml").write_text(MANIFEST)  # no such group in the tenant
    code, _, err = run(capsys, "plan", "chats.yaml")
    assert code == 1
    assert f"chats.yaml:4:5: group {GROUP_MAIL} was not found in the directory" in err
