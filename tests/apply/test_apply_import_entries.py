"""Issue 23, item 3: ``import:`` entries adopt an existing chat by pull request (Terraform's
import blocks): planned and reviewed, applied without ``POST /chats``; driven through
``cli.main`` and the emulator."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from provisioner.cli.main import main
from provisioner.emulator import EmulatorServer
from provisioner.graph.client import GraphClient
from provisioner.models import Member
from provisioner.operations.clients import EmulatorToken
from provisioner.states.local import LocalStateStore

A, B, C = (str(uuid.UUID(int=0x4000 + n)) for n in range(3))


def manifest(chat_id: str, *, members: tuple[str, ...] = (A, B), topic: str = "Project X") -> str:
    listed = ", ".join(f"{{user: {m}}}" for m in members)
    return f"""\
version: 1
import:
  - key: project-x
    id: "{chat_id}"
chats:
  - key: project-x
    chatType: group
    topic: {topic}
    members: [{listed}]
"""


class World:
    def __init__(self, root: Path, server: EmulatorServer) -> None:
        self.root = root
        self.server = server
        self.client = GraphClient(server.url, EmulatorToken())

    def existing_chat(self) -> str:
        members = [Member(u).request_body(self.server.url) for u in (A, B)]
        body = {"chatType": "group", "topic": "Project X", "members": members}
        return str(self.client.create_chat(body, idempotent=False)["id"])

    def run(self, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
        code = main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    def write(self, text: str) -> None:
        (self.root / "chats.yaml").write_text(text)


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PROVISION_STATE", raising=False)
    with EmulatorServer(limits="off", seed=9, invent_users=True, list_delay_s=0) as server:
        monkeypatch.setenv("PROVISION_GRAPH_URL", server.url)
        monkeypatch.setenv("PROVISION_ACCESS_TOKEN", "test-token")
        yield World(tmp_path, server)
        assert server.tenant.counters.internal_errors_total == 0


def test_an_import_entry_is_planned_and_adopted_without_a_create(world, capsys) -> None:
    chat_id = world.existing_chat()
    world.write(manifest(chat_id, members=(A, B, C), topic="Project X renamed"))
    code, out, err = world.run(capsys, "plan", "chats.yaml")  # a first plan refreshes for it
    assert code == 0, err
    assert f"# project-x will be imported (chat {chat_id}), then updated in place" in out
    assert '~ topic "Project X" -> "Project X renamed"' in out
    assert (
        "Plan: 0 to create, 1 to update, 0 to delete, "
        "0 to forget, 0 to reconcile, 0 to move, 1 to import, 0 protection changes."
    ) in out
    code, out, _ = world.run(capsys, "plan", "chats.yaml", "--format", "json")
    plan = json.loads(out)
    assert plan["summary"]["import"] == 1 and plan["summary"]["create"] == 0
    assert plan["changes"][0]["import_id"] == chat_id

    posts = world.server.tenant.counters.post_chats_total
    code, out, err = world.run(capsys, "apply", "chats.yaml", "--auto-approve")
    assert code == 0, err
    assert world.server.tenant.counters.post_chats_total == posts  # adopted, not created
    state = LocalStateStore(world.root / "provision.state.json").read()
    assert state.chats["project-x"].chat_id == chat_id
    chat = world.server.tenant.chat(chat_id)
    assert chat is not None and chat.topic == "Project X renamed"
    assert {m.user_id for m in chat.members} == {A, B, C}
    # The entry can stay: it is done.
    code, out, _ = world.run(capsys, "plan", "chats.yaml", "--detailed-exitcode")
    assert code == 0 and "No changes." in out


def test_an_import_that_already_matches_is_recorded_only(world, capsys) -> None:
    chat_id = world.existing_chat()
    world.write(manifest(chat_id))
    code, out, err = world.run(capsys, "apply", "chats.yaml", "--auto-approve")
    assert code == 0, err
    assert f"# project-x will be imported (chat {chat_id})" in out
    assert "adopted as project-x (import:), not created" in out
    state = LocalStateStore(world.root / "provision.state.json").read()
    assert state.chats["project-x"].chat_id == chat_id


def test_imports_that_cannot_be_made_stop_the_plan(world, capsys) -> None:
    world.write(manifest("19:doesnotexist@thread.v2"))
    code, _, err = world.run(capsys, "plan", "chats.yaml")
    assert code == 1 and "was not found (Graph answered 404)" in err
    assert not (world.root / "provision.state.json").exists()

    chat_id = world.existing_chat()
    world.write(manifest(chat_id))
    code, _, err = world.run(capsys, "plan", "chats.yaml", "--no-refresh")
    assert code == 1 and "needs it read from Graph" in err and "drop --no-refresh" in err

    # Managed already under another key: a moved: entry is the way to rename.
    world.write(manifest(chat_id).replace("project-x", "other"))
    assert world.run(capsys, "apply", "chats.yaml", "--auto-approve")[0] == 0
    world.write(
        manifest(chat_id)
        + "  - key: other\n    chatType: group\n    topic: Project X\n"
        + f"    members: [{{user: {A}}}, {{user: {B}}}]\n"
    )
    code, _, err = world.run(capsys, "plan", "chats.yaml")
    assert code == 1 and f"chat {chat_id} is already managed as other" in err


def test_import_entries_are_validated_with_positions(tmp_path: Path, capsys) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(
        manifest("19:a@thread.v2")
        .replace("import:\n", 'import:\n  - key: nope\n    id: "19:b@thread.v2"\n')
        .replace("chats:\n", '  - key: project-x\n    id: "19:c@thread.v2"\nchats:\n')
    )
    assert main(["validate", str(path)]) == 1
    out, err = capsys.readouterr()
    text = out + err
    assert f"{path}:3:10: error: 'nope' is not the key of any chat in the manifests" in text
    assert f"{path}:7:10: error: 'project-x' is already imported at {path}:5:5" in text
    path.write_text(manifest("not-a-chat-id"))
    assert main(["validate", str(path)]) == 1
    out, err = capsys.readouterr()
    assert "is not a chat id" in out + err
