"""Issue 14: a refresh right after an apply, while Graph's member lists still lag behind the
changes apply made, reports no drift and plans nothing (a lagging list is not a change)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from lib.tokens import jwt

from provisioner.cli.main import main
from provisioner.emulator import EmulatorServer
from provisioner.states.local import LocalStateStore

A, B, C, D = (str(uuid.UUID(int=n)) for n in range(11, 15))


def manifest(team: tuple[str, ...], crew: tuple[str, ...] = (A, C)) -> str:
    lines = ["version: 1", "chats:"]
    for key, users in (("team", team), ("crew", crew)):
        lines += [f"  - key: {key}", "    chatType: group", f"    topic: {key.title()}"]
        lines += ["    members:", *(f"      - user: {u}" for u in users)]
    return "\n".join(lines) + "\n"


@pytest.fixture
def lagging(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[EmulatorServer]:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PROVISION_STATE", raising=False)
    # Member lists lag 3 s behind writes; the window covers it.
    with EmulatorServer(limits="off", seed=2, invent_users=True, list_delay_s=3.0) as server:
        monkeypatch.setenv("PROVISION_GRAPH_URL", server.url)
        monkeypatch.setenv("PROVISION_ACCESS_TOKEN", "t")
        monkeypatch.setenv("PROVISION_CONSISTENCY_WINDOW", "30")
        yield server


def listed(server: EmulatorServer, chat_id: str) -> set[str]:
    resp = requests.get(
        f"{server.url}/chats/{chat_id}/members", headers={"Authorization": "Bearer t"}, timeout=10
    )
    return {m["userId"] for m in resp.json()["value"]}


def test_a_refresh_right_after_apply_is_not_fooled_by_lagging_lists(
    lagging: EmulatorServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "chats.yaml").write_text(manifest((A, B, C), (A, B, C)))
    assert main(["apply", "chats.yaml", "--auto-approve"]) == 0
    chats = LocalStateStore(tmp_path / "provision.state.json").read().chats
    team, crew = chats["team"].chat_id, chats["crew"].chat_id
    # D joins the team, C leaves the crew (one member change per chat: no per-chat pacing).
    (tmp_path / "chats.yaml").write_text(manifest((A, B, C, D), (A, B)))
    assert main(["apply", "chats.yaml", "--auto-approve"]) == 0
    assert listed(lagging, team) == {A, B, C}  # the lists still show the old members
    assert listed(lagging, crew) == {A, B, C}
    capsys.readouterr()
    code = main(["plan", "chats.yaml", "--detailed-exitcode"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "changed outside provision" not in out
    state = LocalStateStore(tmp_path / "provision.state.json").read()
    assert [(s.object_id, s.change) for s in state.chats["team"].settling] == [(D, "added")]
    assert [(s.object_id, s.change) for s in state.chats["crew"].settling] == [(C, "removed")]


def test_a_change_made_in_teams_is_still_drift(
    lagging: EmulatorServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "chats.yaml").write_text(manifest((A, B, C)))
    assert main(["apply", "chats.yaml", "--auto-approve"]) == 0
    chat_id = LocalStateStore(tmp_path / "provision.state.json").read().chats["team"].chat_id
    chat = lagging.tenant.chat(chat_id)
    assert chat is not None
    gone = next(m for m in chat.members if m.user_id == C)
    lagging.tenant.list_delay = (0.0, 0.0)  # this removal is listed at once
    lagging.tenant.remove_member(chat_id, gone.membership_id)  # someone removes C in Teams
    capsys.readouterr()
    code = main(["plan", "chats.yaml", "--detailed-exitcode"])
    assert code == 2


def test_delegated_apply_refuses_new_chats_without_the_signed_in_user(
    lagging: EmulatorServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # A delegated token (scp) for A: Graph creates chats only with A in them (chat-post.md).
    monkeypatch.setenv("PROVISION_ACCESS_TOKEN", jwt({"scp": "Chat.Create", "oid": A}))
    (tmp_path / "chats.yaml").write_text(manifest((B, C), (A, D)))
    capsys.readouterr()
    assert main(["apply", "chats.yaml", "--auto-approve"]) == 1
    err = capsys.readouterr().err
    assert f"signed in as {A} (delegated)" in err and "team" in err and "crew" not in err
    assert lagging.tenant.counters.post_chats_total == 0  # refused before anything was sent
    (tmp_path / "chats.yaml").write_text(manifest((A, B), (A, D)))
    assert main(["apply", "chats.yaml", "--auto-approve"]) == 0
