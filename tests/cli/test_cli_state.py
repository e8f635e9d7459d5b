"""`provision state list|show|rm` and `provision force-unlock`, driven through ``cli.main``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from lib.cli import run
from lib.fs_helpers import make_readonly, snapshot  # noqa: F401  (fixture)

from provisioner.states.local import LocalStateStore
from provisioner.states.lock import FileLock, new_lock_info
from provisioner.states.records import ChatRecord, Intent, MemberRecord

A = "8c0a1a67-50ce-4114-bb6c-da9c5dbcf6ca"
B = "3626a173-f2bc-4883-bcf7-01514c3bfb82"


@pytest.fixture
def state_file(tmp_path: Path) -> Path:
    path = tmp_path / "provision.state.json"
    store = LocalStateStore(path)
    state = store.read()
    state.put_chat(
        "project-x",
        ChatRecord(
            "19:px@thread.v2",
            "group",
            (MemberRecord(A, object_id=A, membership_id="m1"), MemberRecord(B, role="guest")),
            topic="Project X",
            created_at="2024-05-01T10:00:00Z",
        ),
    )
    state.put_chat(
        "oneonone-1", ChatRecord("19:a_b@unq.gbl.spaces", "oneOnOne", (MemberRecord(A),))
    )
    state.put_intent(
        Intent("pending", "group", (MemberRecord(A),), "att-1", "2024-05-01T10:00:00Z", "P")
    )
    store.write(state)
    return path


def test_state_list(capsys, state_file: Path) -> None:
    code, out, _ = run(capsys, "state", "list", "--state", str(state_file))
    assert code == 0
    assert out.splitlines() == [
        "oneonone-1  oneOnOne  19:a_b@unq.gbl.spaces",
        "pending     group     (creation pending: reconcile)",
        "project-x   group     19:px@thread.v2",
    ]


def test_state_list_uses_provision_state(capsys, state_file: Path, monkeypatch) -> None:
    monkeypatch.setenv("PROVISION_STATE", str(state_file))
    code, out, _ = run(capsys, "state", "list")
    assert code == 0 and "project-x" in out


def test_state_list_without_state(capsys, tmp_path: Path) -> None:
    code, out, err = run(capsys, "state", "list", "--state", str(tmp_path / "none.json"))
    assert code == 0 and out == "" and "No state at" in err
    assert not (tmp_path / "none.json").exists()


def test_state_show(capsys, state_file: Path) -> None:
    code, out, _ = run(capsys, "state", "show", "project-x", "--state", str(state_file))
    assert code == 0
    assert "chat_id:    19:px@thread.v2" in out
    assert 'topic:      "Project X"' in out
    assert f"  - {A}  owner  (object id {A}, membership m1)" in out
    assert f"  - {B}  guest" in out
    code, out, _ = run(capsys, "state", "show", "pending", "--state", str(state_file))
    assert code == 0 and "pending:" in out and "att-1" in out


def test_state_show_unknown_key(capsys, state_file: Path) -> None:
    code, _, err = run(capsys, "state", "show", "nope", "--state", str(state_file))
    assert code == 1 and "no chat with key 'nope'" in err and "Traceback" not in err


def test_state_rm_forgets_and_keeps_a_backup(capsys, state_file: Path) -> None:
    before = state_file.read_bytes()
    code, out, _ = run(capsys, "state", "rm", "project-x", "pending", "--state", str(state_file))
    assert code == 0
    assert "Removed project-x from the state (chat 19:px@thread.v2 stays in Teams)." in out
    state = LocalStateStore(state_file).read()
    assert set(state.chats) == {"oneonone-1"} and state.intents == {}
    assert state.serial == 2
    assert Path(str(state_file) + ".backup").read_bytes() == before
    assert not Path(str(state_file) + ".lock").exists()


def test_state_rm_unknown_key_changes_nothing(capsys, state_file: Path) -> None:
    before = snapshot(state_file.parent)
    code, _, err = run(capsys, "state", "rm", "project-x", "nope", "--state", str(state_file))
    assert code == 1 and "nope" in err and "nothing was removed" in err
    assert snapshot(state_file.parent) == before


def test_state_rm_in_read_only_directory(capsys, state_file: Path, make_readonly) -> None:  # noqa: F811
    before = snapshot(state_file.parent)
    make_readonly(state_file.parent)
    code, _, err = run(capsys, "state", "rm", "project-x", "--state", str(state_file))
    assert code == 1 and "cannot create the lock file" in err and "nothing was changed" in err
    assert snapshot(state_file.parent) == before


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'{"format_version": 1, "seri', "truncated"),
        (b'{"format_version": 7, "lineage": "x"}', "newer"),
    ],
)
def test_bad_state_is_a_clear_error(capsys, state_file: Path, content: bytes, message: str) -> None:
    state_file.write_bytes(content)
    before = snapshot(state_file.parent)
    for args in (["list"], ["show", "project-x"], ["rm", "project-x"]):
        code, _, err = run(capsys, "state", *args, "--state", str(state_file))
        assert code == 1 and message in err and str(state_file) in err
        assert "Traceback" not in err and "internal error" not in err
    assert snapshot(state_file.parent) == before


def test_locked_state_fails_at_once_with_holder_details(capsys, state_file: Path) -> None:
    lock = FileLock(str(state_file))
    held = lock.acquire("apply")
    code, _, err = run(capsys, "state", "rm", "project-x", "--state", str(state_file))
    assert code == 1
    assert held.id in err and "apply" in err and held.who in err
    assert f"stop process {os.getpid()}" in err
    lock.release(held.id)


def test_force_unlock(capsys, state_file: Path) -> None:
    lock = FileLock(str(state_file))
    live = lock.acquire("apply")
    code, _, err = run(capsys, "force-unlock", live.id, "--state", str(state_file))
    assert code == 1 and "held by a running process" in err and f"stop process {os.getpid()}" in err
    lock.release(live.id)
    held = new_lock_info("apply", str(state_file))  # left by a run that was killed
    Path(str(state_file) + ".lock").write_text(held.to_json())
    code, _, err = run(capsys, "force-unlock", "not-it", "--state", str(state_file))
    assert code == 1 and "does not match" in err and held.id in err
    code, out, _ = run(capsys, "force-unlock", held.id, "--state", str(state_file))
    assert code == 0 and f"Removed the lock {held.id}" in out
    assert not Path(str(state_file) + ".lock").exists()
    code, _, err = run(capsys, "force-unlock", held.id, "--state", str(state_file))
    assert code == 1 and "not locked" in err


def test_stale_lock_is_taken_over_with_a_note(capsys, state_file: Path) -> None:
    # Whatever pid it names (here a live one: ours), a lock file whose OS lock nobody holds
    # was left by a run that is gone.
    held = new_lock_info("apply", str(state_file))
    Path(str(state_file) + ".lock").write_text(held.to_json())
    code, _, err = run(capsys, "state", "rm", "pending", "--state", str(state_file))
    assert code == 0
    assert "took over a stale lock" in err and str(os.getpid()) in err and held.who in err


SLOW_RM = textwrap.dedent(
    """
    import sys, time
    from provisioner.cli import main as cli
    from provisioner.states.local import LocalStateStore
    def slow_write(self, state):
        time.sleep(30)
    LocalStateStore.write = slow_write
    sys.exit(cli.main(["state", "rm", "project-x", "--state", sys.argv[1]]))
    """
)


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signals_release_the_lock(state_file: Path, signum: int, code: int) -> None:
    before = snapshot(state_file.parent)
    lock_path = Path(str(state_file) + ".lock")
    proc = subprocess.Popen(
        [sys.executable, "-c", SLOW_RM, str(state_file)],
        stderr=subprocess.PIPE,
        text=True,
    )
    # Signal once the run holds the lock: its details are in the file (written under the OS
    # lock). A signal between creating the file and locking it may leave the empty file (the
    # next run takes it over), which is not what this test is about.
    deadline = time.monotonic() + 20
    while not (lock_path.exists() and lock_path.stat().st_size > 0):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.02)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == code, err
    assert not lock_path.exists()
    assert snapshot(state_file.parent) == before


def killed_run_journal(state_file: Path) -> None:
    """What an apply killed mid-run leaves: the state file and its journal."""
    from provisioner.states.journal_writer import JournalWriter
    from provisioner.states.store import local_store

    store = local_store(str(state_file))
    writer = JournalWriter(store, store.read())
    writer.start()
    record = ChatRecord("19:new@thread.v2", "group", (MemberRecord(A, object_id=A),), "New")
    writer.update(lambda s: (s.put_chat("journaled", record), s.clear_intent("pending")))
    writer.abandon()


def test_state_list_show_and_rm_see_a_killed_runs_journal(capsys, state_file: Path) -> None:
    killed_run_journal(state_file)
    before = state_file.read_bytes()
    code, out, _ = run(capsys, "state", "list", "--state", str(state_file))
    assert code == 0
    assert out.splitlines()[0].split() == ["journaled", "group", "19:new@thread.v2"]
    assert [line.split()[0] for line in out.splitlines()] == [
        "journaled", "oneonone-1", "project-x"
    ]  # fmt: skip
    code, out, _ = run(capsys, "state", "show", "journaled", "--state", str(state_file))
    assert code == 0 and "19:new@thread.v2" in out
    assert state_file.read_bytes() == before  # reading replays in memory only
    code, _, err = run(capsys, "state", "rm", "oneonone-1", "--state", str(state_file))
    assert code == 0, err
    # The write absorbed the journal: the state file now holds the journaled chat itself.
    assert not Path(f"{state_file}.journal").exists()
    assert set(LocalStateStore(state_file).read().chats) == {"project-x", "journaled"}


def test_a_journal_of_another_state_is_refused_with_a_clear_error(
    capsys, state_file: Path, tmp_path: Path
) -> None:
    other = tmp_path / "other.json"
    LocalStateStore(other).write(LocalStateStore(other).read())
    killed_run_journal(other)
    os.replace(f"{other}.journal", f"{state_file}.journal")
    code, _, err = run(capsys, "state", "list", "--state", str(state_file))
    assert code == 1
    assert "belongs to another state" in err and "Traceback" not in err
    assert Path(f"{state_file}.journal").exists()
