"""`provision plan`, driven through ``cli.main`` with real manifests."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from lib.cli import run
from lib.fs_helpers import make_readonly, snapshot  # noqa: F401  (fixture)

from provisioner.cli import options as cli_options
from provisioner.cli.main import main
from provisioner.plans.files import load_plan
from provisioner.plans.types import Action
from provisioner.states.local import LocalStateStore
from provisioner.states.lock import FileLock
from provisioner.states.records import ChatRecord, MemberRecord

A = "8c0a1a67-50ce-4114-bb6c-da9c5dbcf6ca"
B = "3626a173-f2bc-4883-bcf7-01514c3bfb82"
C = "82af01c5-f7cc-4a2e-a728-3a5df21afd9d"

MANIFEST = f"""\
version: 1
chats:
  - chatType: oneOnOne
    members:
      - user: {A}
      - user: jacob@contoso.com
  - key: project-x
    chatType: group
    topic: Project X
    members:
      - user: {A}
      - user: {B}
        role: guest
      - user: {C}
"""


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PROVISION_STATE", raising=False)
    monkeypatch.delenv("PROVISION_GRAPH_URL", raising=False)
    (tmp_path / "chats.yaml").write_text(MANIFEST)
    return tmp_path


def record_all(path: Path) -> None:
    """A state holding both chats as an apply would have left them."""
    code = main(["plan", "chats.yaml", "--state", str(path), "--out", "p.plan", "--no-refresh"])
    assert code == 0
    store = LocalStateStore(path)
    state = store.read()
    for change in load_plan("p.plan").changes:
        state.put_chat(
            change.key,
            ChatRecord(f"19:{change.key}", change.chat_type, change.members, change.topic),
        )
    store.write(state)


def test_plan_against_no_state(capsys, workdir: Path) -> None:
    code, out, err = run(capsys, "plan", "chats.yaml")
    assert code == 0, err
    assert "  # project-x will be created" in out
    assert out.rstrip().endswith(
        "Plan: 2 to create, 0 to update, 0 to delete, "
        "0 to forget, 0 to reconcile, 0 to move, 0 to import, 0 protection changes."
    )
    assert "\x1b[" not in out  # not a terminal: no colour
    assert sorted(os.listdir(workdir)) == ["chats.yaml"]  # plan writes nothing


def test_detailed_exitcode(capsys, workdir: Path) -> None:
    assert run(capsys, "plan", "chats.yaml", "--detailed-exitcode")[0] == 2
    record_all(workdir / "provision.state.json")
    capsys.readouterr()
    code, out, _ = run(capsys, "plan", "chats.yaml", "--detailed-exitcode", "--no-refresh")
    assert code == 0 and "No changes." in out
    # Plans that refresh from Graph (and release the lock after):
    # tests/operations/test_lifecycle.py.


def test_json_format(capsys, workdir: Path) -> None:
    code, out, _ = run(capsys, "plan", "chats.yaml", "--format", "json")
    assert code == 0
    doc = json.loads(out)
    assert doc["format_version"] == 1
    assert doc["summary"]["create"] == 2 and doc["summary"]["update"] == 0
    assert [c["key"] for c in doc["changes"]][1] == "project-x"
    body = doc["changes"][1]["request"]
    assert body["chatType"] == "group" and body["topic"] == "Project X"
    assert body["members"][1] == {
        "@odata.type": "#microsoft.graph.aadUserConversationMember",
        "roles": ["guest"],
        "user@odata.bind": f"https://graph.microsoft.com/v1.0/users('{B}')",
    }


def test_markdown_format_and_graph_url(capsys, workdir: Path, monkeypatch) -> None:
    monkeypatch.setenv("PROVISION_GRAPH_URL", "http://127.0.0.1:9999/v1.0/")
    code, out, _ = run(capsys, "plan", "chats.yaml", "--format", "markdown")
    assert code == 0
    assert out.startswith("### provision plan") and "<details>" in out
    code, out, _ = run(capsys, "plan", "chats.yaml", "--format", "json")
    assert "http://127.0.0.1:9999/v1.0/users(" in out


def test_plain_http_graph_url_is_refused(capsys, workdir: Path) -> None:
    code, _, err = run(capsys, "plan", "chats.yaml", "--graph-url", "http://graph.example.com")
    assert code == 1 and "https://" in err


def test_out_saves_a_plan_that_loads(capsys, workdir: Path) -> None:
    code, out, err = run(capsys, "plan", "chats.yaml", "--out", "p.plan")
    assert code == 0 and "Saved the plan to p.plan" in err and "Plan: 2 to create" in out
    assert os.stat("p.plan").st_mode & 0o777 == 0o600
    plan = load_plan("p.plan")
    assert [c.action for c in plan.changes] == [Action.CREATE, Action.CREATE]
    assert plan.state_lineage is None and plan.manifest_digest


def test_state_option_and_env(capsys, workdir: Path, monkeypatch) -> None:
    record_all(workdir / "elsewhere.json")
    capsys.readouterr()
    code, out, _ = run(capsys, "plan", "chats.yaml", "--state", "elsewhere.json", "--no-refresh")
    assert code == 0 and "No changes." in out
    monkeypatch.setenv("PROVISION_STATE", "elsewhere.json")
    code, out, _ = run(capsys, "plan", "chats.yaml", "--no-refresh")
    assert code == 0 and "No changes." in out


def test_update_and_forget(capsys, workdir: Path) -> None:
    path = workdir / "provision.state.json"
    record_all(path)
    store = LocalStateStore(path)
    state = store.read()
    x = state.chats["project-x"]
    state.put_chat("project-x", ChatRecord(x.chat_id, "group", x.members[:2], topic="Old"))
    state.put_chat("retired", ChatRecord("19:r", "group", (MemberRecord(A), MemberRecord(B))))
    store.write(state)
    capsys.readouterr()
    code, out, _ = run(capsys, "plan", "chats.yaml", "--no-refresh", "--detailed-exitcode")
    assert code == 2
    assert '~ topic "Old" -> "Project X"' in out and f"+ member {C}  owner" in out
    assert "  # retired will be forgotten" in out
    assert (
        "Plan: 0 to create, 1 to update, 0 to delete, "
        "1 to forget, 0 to reconcile, 0 to move, 0 to import, 0 protection changes."
    ) in out


def test_chat_type_change_is_an_error(capsys, workdir: Path) -> None:
    path = workdir / "provision.state.json"
    record_all(path)
    store = LocalStateStore(path)
    state = store.read()
    x = state.chats["project-x"]
    state.put_chat("project-x", ChatRecord(x.chat_id, "oneOnOne", x.members[:2]))
    store.write(state)
    capsys.readouterr()
    code, _, err = run(capsys, "plan", "chats.yaml", "--no-refresh")
    assert code == 1 and "chatType changes from oneOnOne to group" in err


def test_invalid_manifest(capsys, workdir: Path) -> None:
    (workdir / "chats.yaml").write_text("version: 1\nchats:\n  - chatType: group\n")
    code, _, err = run(capsys, "plan", "chats.yaml")
    assert code == 1 and "chats.yaml:" in err and "Traceback" not in err


def test_corrupt_state(capsys, workdir: Path) -> None:
    path = workdir / "provision.state.json"
    record_all(path)
    store = LocalStateStore(path)
    store.write(store.read())  # leaves a backup
    path.write_text(path.read_text()[:-40])
    before = snapshot(workdir)
    capsys.readouterr()
    code, out, err = run(capsys, "plan", "chats.yaml")
    assert code == 1 and out == ""
    assert "truncated" in err and "cp provision.state.json.backup provision.state.json" in err
    assert snapshot(workdir) == before


def test_refresh_waits_for_no_one_and_no_refresh_needs_no_lock(
    capsys, workdir: Path, monkeypatch
) -> None:
    # Credentials are checked (no network) before the lock is taken; the lock stops it.
    monkeypatch.setenv("PROVISION_ACCESS_TOKEN", "test-token")
    path = workdir / "provision.state.json"
    record_all(path)
    held = FileLock(str(path)).acquire("apply")
    capsys.readouterr()
    code, _, err = run(capsys, "plan", "chats.yaml")
    assert code == 1 and held.id in err and "locked" in err
    code, out, _ = run(capsys, "plan", "chats.yaml", "--no-refresh")
    assert code == 0 and "No changes." in out


def test_color_only_on_a_terminal_without_no_color(monkeypatch) -> None:
    monkeypatch.setattr("sys.stdout.isatty", lambda: True)
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert cli_options.use_color()
    monkeypatch.setenv("NO_COLOR", "1")
    assert not cli_options.use_color()
    monkeypatch.setattr("sys.stdout.isatty", lambda: False)
    monkeypatch.delenv("NO_COLOR")
    assert not cli_options.use_color()


def test_read_only_state_directory(
    capsys,
    workdir: Path,
    make_readonly,  # noqa: F811
    monkeypatch,
) -> None:
    monkeypatch.setenv("PROVISION_ACCESS_TOKEN", "test-token")
    path = workdir / "provision.state.json"
    record_all(path)
    (workdir / "p.plan").unlink()
    before = snapshot(workdir)
    make_readonly(workdir)
    capsys.readouterr()
    code, out, err = run(capsys, "plan", "chats.yaml")  # refresh takes the lock: refused
    assert code == 1 and out == ""
    assert "cannot create the lock file" in err and "--no-refresh" in err
    code, out, _ = run(capsys, "plan", "chats.yaml", "--no-refresh")  # reading needs no lock
    assert code == 0 and "No changes." in out
    assert snapshot(workdir) == before


@pytest.mark.parametrize("target", ["chats.yaml", "provision.state.json", "notes.txt", "dir"])
def test_out_never_overwrites_a_file_that_is_not_a_plan(capsys, workdir: Path, target: str) -> None:
    record_all(workdir / "provision.state.json")
    (workdir / "notes.txt").write_text("mine\n")
    (workdir / "dir").mkdir()
    before = snapshot(workdir)
    capsys.readouterr()
    code, out, err = run(capsys, "plan", "chats.yaml", "--no-refresh", "--out", target)
    assert code == 1 and out == "" and "Traceback" not in err
    assert target in err
    assert snapshot(workdir) == before
    if target in ("chats.yaml", "notes.txt"):
        assert "--force" in err
        code, _, _ = run(capsys, "plan", "chats.yaml", "--no-refresh", "--out", target, "--force")
        assert code == 0 and load_plan(workdir / target).state_serial >= 1
    if target == "provision.state.json":
        assert "is the state file" in err
        code, _, err = run(capsys, "plan", "chats.yaml", "--no-refresh", "--out", target, "--force")
        assert code == 1 and snapshot(workdir) == before


def test_out_replaces_a_plan_of_ours(capsys, workdir: Path) -> None:
    for _ in range(2):
        code, _, _ = run(capsys, "plan", "chats.yaml", "--no-refresh", "--out", "p.plan")
        assert code == 0
    assert load_plan(workdir / "p.plan").state_serial == 0
