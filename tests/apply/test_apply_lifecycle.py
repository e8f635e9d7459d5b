"""`provision apply` with the lifecycle of issue 7: drift repaired after refresh, prune, moved
keys, protected chats, member history; driven through ``cli.main`` and the emulator."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from provisioner.cli.main import main
from provisioner.emulator import EmulatorServer
from provisioner.graph.client import GraphClient
from provisioner.models import Member
from provisioner.operations.clients import EmulatorToken
from provisioner.states.local import LocalStateStore

A, B, C, D = (str(uuid.UUID(int=0x2000 + n)) for n in range(4))
MANIFEST = f"""\
version: 1
chats:
  - key: team
    chatType: group
    topic: Team
    members:
      - user: {A}
      - user: {B}
  - key: other
    chatType: group
    topic: Other
    members:
      - user: {A}
      - user: {C}
"""


class World:
    def __init__(self, root: Path, server: EmulatorServer) -> None:
        self.root = root
        self.server = server
        self.client = GraphClient(server.url, EmulatorToken())

    def manifest(self, text: str) -> None:
        (self.root / "chats.yaml").write_text(text)

    def apply(self, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
        code = main(["apply", "chats.yaml", "--auto-approve", *args])
        out, err = capsys.readouterr()
        return code, out, err

    def chat_id(self, key: str) -> str:
        return LocalStateStore(self.root / "provision.state.json").read().chats[key].chat_id

    def members(self, chat_id: str) -> dict[str, str]:
        chat = self.server.tenant.chat(chat_id)
        assert chat is not None
        return {m.user_id: m.roles[0] for m in chat.members}


@pytest.fixture
def world(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Iterator[World]:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PROVISION_STATE", raising=False)
    with EmulatorServer(limits="off", seed=5, invent_users=True, list_delay_s=0) as server:
        monkeypatch.setenv("PROVISION_GRAPH_URL", server.url)
        monkeypatch.setenv("PROVISION_ACCESS_TOKEN", "test-token")
        w = World(tmp_path, server)
        w.manifest(MANIFEST)
        code, out, err = w.apply(capsys)
        assert code == 0, err
        assert "Apply complete: 2 created" in out
        yield w
        assert server.tenant.counters.internal_errors_total == 0


def test_drift_is_refreshed_shown_and_repaired(world: World, capsys) -> None:
    chat_id = world.chat_id("team")
    world.client.update_chat_topic(chat_id, "Renamed in Teams")
    world.client.add_member(chat_id, Member(C).request_body(world.server.url))
    code, out, err = world.apply(capsys)
    assert code == 0, err
    assert "Changes outside provision" in out
    assert "Apply complete: 0 created, 0 adopted, 1 updated" in out
    chat = world.server.tenant.chat(chat_id)
    assert chat is not None and chat.topic == "Team"
    assert world.members(chat_id) == {A: "owner", B: "owner"}
    code, out, _ = world.apply(capsys)
    assert code == 0 and "No changes." in out


def test_a_chat_deleted_in_teams_is_created_again(world: World, capsys) -> None:
    old = world.chat_id("other")
    world.client.delete_chat(old)
    code, out, err = world.apply(capsys)
    assert code == 0, err
    assert "Apply complete: 1 created" in out
    assert world.chat_id("other") != old


def test_prune_deletes_and_protect_refuses(world: World, capsys) -> None:
    world.manifest(MANIFEST.split("  - key: other")[0])
    other = world.chat_id("other")
    code, out, err = world.apply(capsys)
    assert code == 0, err
    assert "1 forgotten" in out  # without --prune: stop managing, the chat stays
    chat = world.server.tenant.chat(other)
    assert chat is not None and not chat.is_deleted

    world.manifest(MANIFEST.replace("    topic: Team\n", "    topic: Team\n    protect: true\n"))
    assert world.apply(capsys)[0] == 0  # other is created again; team becomes protected
    world.manifest(MANIFEST.split("  - key: other")[0].replace("  - key: team", "  - key: x"))
    code, _, err = world.apply(capsys, "--prune")
    assert code == 1 and "protect" in err
    world.manifest(MANIFEST.split("  - key: other")[0])
    again = world.chat_id("other")
    code, out, err = world.apply(capsys, "--prune")
    assert code == 0, err
    assert "1 deleted" in out
    chat = world.server.tenant.chat(again)
    assert chat is not None and chat.is_deleted  # Graph's soft delete


def test_moved_key_is_renamed_without_a_graph_change(world: World, capsys) -> None:
    chat_id = world.chat_id("team")
    world.manifest(
        MANIFEST.replace("  - key: team", "  - key: team-renamed")
        + "moved:\n  - from: team\n    to: team-renamed\n"
    )
    before = world.server.tenant.counters.post_chats_total
    code, out, err = world.apply(capsys, "--format", "json")
    assert code == 0, err
    assert json.loads(out)["outcomes"] == []  # nothing to do in Teams
    assert world.chat_id("team-renamed") == chat_id
    assert world.server.tenant.counters.post_chats_total == before
    state = LocalStateStore("provision.state.json").read()
    assert "team" not in state.chats
    code, out, _ = world.apply(capsys)
    assert code == 0 and "No changes." in out


def test_members_are_added_with_the_chats_history_setting(
    world: World, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    bodies: list[dict[str, Any]] = []
    real = GraphClient.add_member

    def spy(self: GraphClient, chat_id: str, body: Any) -> dict[str, Any]:
        bodies.append(dict(body))
        return real(self, chat_id, body)

    monkeypatch.setattr(GraphClient, "add_member", spy)
    world.manifest(
        MANIFEST.replace("    topic: Team\n", "    topic: Team\n    history: all\n").replace(
            f"      - user: {B}\n", f"      - user: {B}\n      - user: {D}\n", 1
        )
    )
    code, out, err = world.apply(capsys)
    assert code == 0, err
    assert "1 updated" in out
    (body,) = bodies
    assert body["visibleHistoryStartDateTime"] == "0001-01-01T00:00:00Z"
    assert body["user@odata.bind"].endswith(f"/users('{D}')")
    assert D in world.members(world.chat_id("team"))
