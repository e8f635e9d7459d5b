"""Issue 23, items 2 and 5: ``expires`` on a chat, its delete, ``provision restore KEY``, and the
emulator's soft delete and undoDelete (chat-delete.md, deletedchat-undodelete.md); driven
through ``cli.main`` and the emulator."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from provisioner.cli.main import main
from provisioner.emulator import EmulatorServer
from provisioner.graph.client import GraphClient
from provisioner.graph.errors import GraphNotFound
from provisioner.models import Chat, DesiredState, Member, expiry_of
from provisioner.operations.clients import EmulatorToken
from provisioner.plans.planner import make_plan
from provisioner.plans.types import Action
from provisioner.states.codec import decode_state
from provisioner.states.local import LocalStateStore
from provisioner.states.records import ChatRecord, DeletedChat, MemberRecord, State

A, B, C = (str(uuid.UUID(int=0x3000 + n)) for n in range(3))


def manifest(expires: str, *, protect: bool = False) -> str:
    return f"""\
version: 1
chats:
  - key: incident
    chatType: group
    topic: Incident
    expires: {expires}
    members: [{{user: {A}}}, {{user: {B}}}]
  - key: kept
    chatType: group
    topic: Kept
    expires: {expires}
    protect: {"true" if protect else "false"}
    members: [{{user: {A}}}, {{user: {C}}}]
"""


class World:
    def __init__(self, root: Path, server: EmulatorServer) -> None:
        self.root = root
        self.server = server
        self.client = GraphClient(server.url, EmulatorToken())

    def run(self, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
        code = main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    def apply(self, capsys: pytest.CaptureFixture[str], text: str) -> tuple[int, str, str]:
        (self.root / "chats.yaml").write_text(text)
        return self.run(capsys, "apply", "chats.yaml", "--auto-approve")

    def state(self) -> State:
        return LocalStateStore(self.root / "provision.state.json").read()


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PROVISION_STATE", raising=False)
    with EmulatorServer(limits="off", seed=7, invent_users=True, list_delay_s=0) as server:
        monkeypatch.setenv("PROVISION_GRAPH_URL", server.url)
        monkeypatch.setenv("PROVISION_ACCESS_TOKEN", "test-token")
        yield World(tmp_path, server)
        assert server.tenant.counters.internal_errors_total == 0


def test_an_expired_chat_is_deleted_restored_and_a_protected_one_kept(world, capsys) -> None:
    code, out, err = world.apply(capsys, manifest("2099-01-01", protect=True))
    assert code == 0 and "Apply complete: 2 created" in out, err
    incident = world.state().chats["incident"].chat_id
    kept = world.state().chats["kept"].chat_id

    (world.root / "chats.yaml").write_text(manifest("2020-01-01", protect=True))
    code, out, _ = world.run(capsys, "plan", "chats.yaml", "--format", "json")
    plan = json.loads(out)
    assert plan["summary"]["delete"] == 1
    by_key = {c["key"]: c for c in plan["changes"]}
    assert by_key["incident"]["action"] == "delete"
    assert by_key["incident"]["reason"] == "expired"
    assert by_key["kept"]["reason"] == "expired-protected"
    code, text, _ = world.run(capsys, "plan", "chats.yaml")
    assert '- chat "incident" (group): delete (expired)' in text
    assert "kept has expired but is protected: kept" in text

    code, out, err = world.apply(capsys, manifest("2020-01-01", protect=True))
    assert code == 0, err
    assert "1 deleted" in out
    assert world.server.tenant.chat(incident).is_deleted
    assert not world.server.tenant.chat(kept).is_deleted
    state = world.state()
    assert "incident" not in state.chats and state.deleted["incident"].chat_id == incident
    assert state.deleted["incident"].reason == "expired"
    # Deleted and expired: nothing more to do, and it is not created again.
    code, out, _ = world.apply(capsys, manifest("2020-01-01", protect=True))
    assert code == 0 and "No changes." in out
    assert "kept has expired but is protected: kept" in out
    assert world.server.tenant.counters.post_chats_total == 2

    posts = world.server.tenant.counters.post_chats_total
    code, out, err = world.run(capsys, "restore", "incident")
    assert code == 0, err
    assert f'Restored group chat "Incident" {incident} as incident (2 members)' in out
    assert "deletes incident again" in err
    assert not world.server.tenant.chat(incident).is_deleted
    state = world.state()
    assert state.chats["incident"].chat_id == incident and "incident" not in state.deleted
    assert world.server.tenant.counters.post_chats_total == posts  # undoDelete, not a create
    # Moved out of the past, the restored chat is simply managed again.
    code, out, err = world.apply(capsys, manifest("2099-01-01", protect=True))
    assert code == 0 and "No changes." in out, err


def test_restore_refuses_what_it_cannot_do_and_changes_nothing(world, capsys) -> None:
    assert world.apply(capsys, manifest("2099-01-01"))[0] == 0
    assert world.apply(capsys, manifest("2020-01-01"))[0] == 0  # both deleted (no protect)
    path = world.root / "provision.state.json"

    before = path.read_bytes()
    code, _, err = world.run(capsys, "restore", "nothing-here")
    assert code == 1 and "has no chat deleted by provision under nothing-here" in err
    assert path.read_bytes() == before

    # Past Graph's seven days (chat-delete.md): refused before any call.
    state = LocalStateStore(path).read()
    old = datetime.now(timezone.utc) - timedelta(days=8)
    record = state.deleted["kept"]
    state.deleted["kept"] = DeletedChat(
        record.chat_id, record.chat_type, old.strftime("%Y-%m-%dT%H:%M:%SZ"), record.topic
    )
    LocalStateStore(path).write(state)
    before = path.read_bytes()
    requests = world.server.tenant.counters.requests_total
    code, _, err = world.run(capsys, "restore", "kept")
    assert code == 1 and "more than 7 days ago" in err and "Traceback" not in err
    assert path.read_bytes() == before
    assert world.server.tenant.counters.requests_total == requests

    # Graph's own period has run out although the state's has not: Graph answers 404.
    world.server.tenant._clock = lambda: time.time() + 8 * 86400
    code, _, err = world.run(capsys, "restore", "incident")
    assert code == 1 and "Graph no longer has the deleted chat" in err
    assert "incident" not in world.state().deleted


def test_the_emulator_restores_for_seven_days_only(world) -> None:
    members = [Member(u).request_body(world.server.url) for u in (A, B)]
    body = {"chatType": "group", "topic": "T", "members": members}
    chat_id = world.client.create_chat(body, idempotent=False)["id"]
    world.client.delete_chat(chat_id)
    world.client.restore_chat(chat_id)
    assert not world.server.tenant.chat(chat_id).is_deleted
    with pytest.raises(GraphNotFound):  # an active chat is not a deleted one
        world.client.restore_chat(chat_id)
    world.client.delete_chat(chat_id)
    world.server.tenant._clock = lambda: time.time() + 7 * 86400 + 60
    with pytest.raises(GraphNotFound):
        world.client.restore_chat(chat_id)


def test_validate_reads_expires_as_written(tmp_path: Path, capsys) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(
        manifest("2026-02-30").replace(
            "expires: 2026-02-30\n    protect", "expires: soon\n    protect"
        )
    )
    assert main(["validate", str(path)]) == 1
    out, err = capsys.readouterr()
    err += out
    assert f"{path}:6:14: error: '2026-02-30' is not a date or time that exists" in err
    assert f"{path}:11:14: error: expires 'soon' must be a date" in err
    path.write_text(manifest("2026-12-31T18:00:00+01:00"))
    assert main(["validate", str(path)]) == 0


@pytest.mark.parametrize(
    ("text", "moment"),
    [
        ("2026-12-31", "2026-12-31T00:00:00+00:00"),
        ("2026-12-31T18:00", "2026-12-31T18:00:00+00:00"),
        ("2026-12-31T18:00:00+01:00", "2026-12-31T17:00:00+00:00"),
        ("2026-12-31 18:00:00Z", "2026-12-31T18:00:00+00:00"),
        ("2026-12-31T18:00:00.250Z", "2026-12-31T18:00:00.250000+00:00"),
    ],
)
def test_expiry_of(text: str, moment: str) -> None:
    found = expiry_of(text)
    assert found is not None and found.isoformat() == moment


def test_the_planner_decides_expiry_with_the_time_it_is_given() -> None:
    chat = Chat("c", "group", (Member(A), Member(B)), "T", expires="2026-06-01")
    state = State()
    state.put_chat(
        "c", ChatRecord("19:c@thread.v2", "group", (MemberRecord(A), MemberRecord(B)), topic="T")
    )
    desired = DesiredState(chats=(chat,))
    before = datetime(2026, 5, 31, 23, 59, tzinfo=timezone.utc)
    after = datetime(2026, 6, 1, tzinfo=timezone.utc)
    assert not make_plan(desired, state, now=before).has_changes
    (change,) = make_plan(desired, state, now=after).actionable
    assert change.action is Action.DELETE and change.reason == "expired"
    assert make_plan(desired, State(), now=after).changes == ()  # never created


def test_deleted_chats_survive_the_codec_and_the_journal() -> None:
    state = State()
    state._log = []
    state.put_deleted(
        "x", DeletedChat("19:x@thread.v2", "group", "2026-12-01T10:00:00Z", "X", "expired")
    )
    decoded = decode_state(state.encode(), "test", "")
    assert decoded.deleted == state.deleted
    from provisioner.states.journal import _FRAME, _apply, encode

    replayed = State()
    for change in json.loads(encode(state._log)[_FRAME.size :]):
        _apply(replayed, change, "test")
    assert replayed.deleted == state.deleted
    state.drop_deleted("x")
    assert decode_state(state.encode(), "test", "").deleted == {}
