"""Issue 23, item 4: ``--target KEY`` on plan and apply, ``provision state mv`` and
``provision show PLANFILE``, driven through ``cli.main`` against the built-in emulator."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from lib.cli import run

from provisioner.models import DesiredState
from provisioner.plans.targets import matches, narrow
from provisioner.states.local import LocalStateStore
from provisioner.states.lock import FileLock
from provisioner.states.records import ChatRecord, Intent, MemberRecord, State

MANIFEST = textwrap.dedent(
    """\
    version: 1
    chats:
    """
) + "".join(
    textwrap.dedent(
        f"""\
          - key: {key}
            chatType: group
            topic: {key.title()}
            members:
              - user: megan.bowen@contoso.com
              - user: alex.wilber@contoso.com
        """
    )
    for key in ("inc-1", "inc-2", "team-a")
)


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)  # the emulator keeps its tenant in ./.provision-emulator.json
    monkeypatch.delenv("PROVISION_STATE", raising=False)
    (tmp_path / "chats.yaml").write_text(MANIFEST)
    return tmp_path


def keys_in_state(path: Path) -> list[str]:
    return sorted(LocalStateStore(path).read().chats)


def test_targeted_plan_and_apply_touch_only_the_matching_keys(capsys, workdir: Path) -> None:
    code, out, err = run(capsys, "plan", "chats.yaml", "--emulator", "--target", "inc-*")
    assert code == 0
    assert '"inc-1"' in out and '"inc-2"' in out and "team-a" not in out
    assert "Plan: 2 to create" in out
    assert "targeting is in effect" in err and "'inc-*'" in err

    code, out, err = run(
        capsys, "apply", "chats.yaml", "--emulator", "--auto-approve", "--target", "inc-1"
    )
    assert code == 0, err
    assert keys_in_state(workdir / "provision.state.json") == ["inc-1"]
    # The untargeted run then creates the rest and keeps what the targeted one recorded.
    before = LocalStateStore(workdir / "provision.state.json").read().chats["inc-1"]
    code, out, err = run(capsys, "apply", "chats.yaml", "--emulator", "--auto-approve")
    assert code == 0, err
    assert "Plan: 2 to create" in out
    state = LocalStateStore(workdir / "provision.state.json").read()
    assert sorted(state.chats) == ["inc-1", "inc-2", "team-a"]
    assert state.chats["inc-1"].chat_id == before.chat_id
    assert "targeting" not in err


def test_targeted_prune_deletes_only_inside_the_targets(capsys, workdir: Path) -> None:
    assert run(capsys, "apply", "chats.yaml", "--emulator", "--auto-approve")[0] == 0
    (workdir / "chats.yaml").write_text("version: 1\nchats: []\n")
    code, out, _ = run(capsys, "plan", "chats.yaml", "--emulator", "--prune", "--target", "team-a")
    assert code == 0
    assert "Plan: 0 to create, 0 to update, 1 to delete" in out
    assert "inc-1" not in out


def test_a_target_that_matches_nothing_is_an_error(capsys, workdir: Path) -> None:
    code, _, err = run(capsys, "plan", "chats.yaml", "--emulator", "--target", "inc-9")
    assert code == 1
    assert "--target matches no chat key" in err and "'inc-9'" in err
    assert "Traceback" not in err
    assert not (workdir / "provision.state.json").exists()


def test_show_prints_a_saved_plan_as_plan_did(capsys, workdir: Path) -> None:
    code, planned, _ = run(
        capsys, "plan", "chats.yaml", "--emulator", "--target", "team-a", "--out", "p.plan"
    )
    assert code == 0
    code, shown, err = run(capsys, "show", "p.plan")
    assert code == 0
    assert shown == planned
    assert "'team-a'" in err  # a targeted plan says so wherever it is shown
    code, text, _ = run(capsys, "show", "p.plan", "--format", "json")
    document = json.loads(text)
    assert document["targets"] == ["team-a"]
    assert [c["key"] for c in document["changes"]] == ["team-a"]
    code, text, _ = run(capsys, "show", "p.plan", "--format", "markdown")
    assert "**Targeted plan:**" in text and "`team-a`" in text
    # A saved plan is applied as it is: --target belongs to planning.
    code, _, err = run(capsys, "apply", "p.plan", "--emulator", "--target", "inc-1")
    assert code == 1 and "--target is for planning" in err


def test_show_refuses_what_is_not_a_plan(capsys, workdir: Path) -> None:
    code, out, err = run(capsys, "show", "chats.yaml")
    assert code == 1
    assert "is not a provision plan file" in err and out == ""
    code, _, err = run(capsys, "show", "missing.plan")
    assert code == 1 and "cannot read plan file missing.plan" in err


A = "8c0a1a67-50ce-4114-bb6c-da9c5dbcf6ca"


@pytest.fixture
def state_file(tmp_path: Path) -> Path:
    path = tmp_path / "provision.state.json"
    store = LocalStateStore(path)
    state = store.read()
    state.put_chat("old", ChatRecord("19:old@thread.v2", "group", (MemberRecord(A),), topic="T"))
    state.set_protected("old", True)
    state.put_chat("other", ChatRecord("19:other@thread.v2", "group", (MemberRecord(A),)))
    state.put_intent(Intent("pending", "group", (MemberRecord(A),), "att", "2024-05-01", "P"))
    store.write(state)
    return path


def test_state_mv_renames_a_key_with_its_protection(capsys, state_file: Path) -> None:
    code, out, _ = run(capsys, "state", "mv", "old", "new", "--state", str(state_file))
    assert code == 0
    assert out == "Moved old to new in the state (chat 19:old@thread.v2).\n"
    state = LocalStateStore(state_file).read()
    assert sorted(state.chats) == ["new", "other"]
    assert state.chats["new"].chat_id == "19:old@thread.v2"
    assert state.protected == {"new"}


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("missing", "new", "not in the state"),
        ("old", "other", "other is already in the state"),
        ("old", "pending", "pending is already in the state"),
        ("pending", "new", "outcome is not known yet"),
        ("old", "Bad Key", "is not a valid key"),
    ],
)
def test_state_mv_refuses_and_changes_nothing(
    capsys, state_file: Path, old: str, new: str, message: str
) -> None:
    before = state_file.read_bytes()
    code, _, err = run(capsys, "state", "mv", old, new, "--state", str(state_file))
    assert code == 1
    assert message in err and "Traceback" not in err
    assert state_file.read_bytes() == before


def test_state_mv_waits_for_the_lock_like_every_command(capsys, state_file: Path) -> None:
    before = state_file.read_bytes()
    lock = FileLock(str(state_file))
    held = lock.acquire("apply")
    try:
        code, _, err = run(capsys, "state", "mv", "old", "new", "--state", str(state_file))
    finally:
        lock.release(held.id)
    assert code == 1
    assert held.id in err and "apply" in err
    assert state_file.read_bytes() == before


def test_narrowing_leaves_the_whole_state_alone() -> None:
    state = State()
    for key in ("inc-1", "inc-2", "team-a"):
        state.put_chat(key, ChatRecord(f"19:{key}@thread.v2", "group", (MemberRecord(A),)))
    state.set_protected("team-a", True)
    _, view = narrow(DesiredState(chats=()), state, ["inc-*"])
    assert sorted(view.chats) == ["inc-1", "inc-2"] and view.protected == set()
    assert sorted(state.chats) == ["inc-1", "inc-2", "team-a"]
    assert state.protected == {"team-a"}
    assert view.users is state.users  # resolved users are shared, as for an untargeted plan
    assert matches("anything", []) and not matches("inc-10", ["inc-?"])
