"""The local state file against accidents (issue 15): links, a missing state with evidence,
another lineage's backup, killed runs' temp files, mode and owner, hostile numbers."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from provisioner.errors import LockError, StateError
from provisioner.states.local import LocalStateStore
from provisioner.states.lock import new_lock_info
from provisioner.states.records import ChatRecord, MemberRecord, State


def record(n: int = 1) -> ChatRecord:
    return ChatRecord(
        f"19:{n}@thread.v2", "group", (MemberRecord("a@x.com"), MemberRecord("b@x.com"))
    )


def saved(path: Path, chats: int = 1) -> State:
    store = LocalStateStore(path)
    state = store.read()
    for n in range(chats):
        state.put_chat(f"k{n}", record(n))
    store.write(state)
    return state


def test_a_symlinked_state_is_written_through_and_shares_one_lock(tmp_path: Path) -> None:
    (tmp_path / "shared").mkdir()
    target = tmp_path / "shared" / "team.state.json"
    link = tmp_path / "provision.state.json"
    link.symlink_to(target)
    first = saved(link)
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert LocalStateStore(target).read().lineage == first.lineage
    state = LocalStateStore(link).read()
    state.put_chat("k9", record(9))
    LocalStateStore(link).write(state)
    assert link.is_symlink()
    assert set(LocalStateStore(target).read().chats) == {"k0", "k9"}
    assert (tmp_path / "shared" / "team.state.json.backup").exists()
    with (
        LocalStateStore(link).lock("apply"),
        pytest.raises(LockError, match="locked by another run"),
        LocalStateStore(target).lock("apply"),
    ):
        pass


@pytest.mark.parametrize("evidence", ["backup", "journal", "lock"])
def test_a_missing_state_with_evidence_is_refused(tmp_path: Path, evidence: str) -> None:
    path = tmp_path / "s.json"
    saved(path)
    saved(path)  # a second write makes the backup
    if evidence == "journal":
        os.unlink(str(path) + ".backup")
        Path(str(path) + ".journal").write_text("{}\n")
    elif evidence == "lock":
        os.unlink(str(path) + ".backup")
        info = new_lock_info("apply", str(path))
        import dataclasses

        info = dataclasses.replace(info, state_existed=True)  # a run that had found a state
        Path(str(path) + ".lock").write_text(info.to_json())
    os.unlink(path)
    with pytest.raises(StateError, match="is missing, but") as err:
        LocalStateStore(path).read()
    text = str(err.value)
    assert "to start afresh on purpose" in text
    if evidence == "backup":
        assert f"cp {path}.backup {path}" in text
    # Under the lock too (the run that takes over the left lock sees what it took over).
    store = LocalStateStore(path)
    with store.lock("apply"), pytest.raises(StateError, match="is missing"):
        store.read()


def test_a_lock_left_by_a_first_run_is_no_evidence(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    Path(str(path) + ".lock").write_text(new_lock_info("apply", str(path)).to_json())
    store = LocalStateStore(path)
    with store.lock("apply") as info:
        assert info.took_over is not None
        assert not store.read().exists


def test_a_backup_of_another_lineage_is_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    other = tmp_path / "other.json"
    saved(other)
    saved(other)
    saved(path)
    os.replace(str(other) + ".backup", str(path) + ".backup")  # someone copied it there
    before = Path(str(path) + ".backup").read_bytes()
    store = LocalStateStore(path)
    state = store.read()
    state.put_chat("new", record(5))
    with pytest.raises(StateError, match="another state"):
        store.write(state)
    assert Path(str(path) + ".backup").read_bytes() == before
    assert "new" not in LocalStateStore(path).read().chats


def test_temp_files_of_killed_runs_are_swept_under_the_lock(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    saved(path)
    left = [
        tmp_path / ".s.json.abc123.tmp",
        tmp_path / "s.json.backup.0f0f.tmp",
    ]
    unrelated = tmp_path / ".other.json.abc.tmp"
    for p in [*left, unrelated]:
        p.write_text("partial")
    with LocalStateStore(path).lock("apply"):
        pass
    assert not any(p.exists() for p in left)
    assert unrelated.exists()


def test_an_existing_state_keeps_its_mode(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    saved(path)
    os.chmod(path, 0o644)
    saved(path)
    assert os.stat(path).st_mode & 0o777 == 0o644


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root")
def test_root_rewriting_a_state_keeps_its_owner(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    saved(path)
    os.chown(path, 1234, 1234)
    os.chmod(path, 0o644)
    saved(path)
    st = os.stat(path)
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (1234, 1234, 0o644)


@pytest.mark.parametrize(
    "body, what",
    [
        ('"serial": ' + "7" * 5000, "digits"),
        ('"serial": -1', "out of range"),
        ('"serial": 9223372036854775808', "out of range"),
        ('"serial": NaN', "NaN"),
        ('"serial": Infinity', "Infinity"),
        ('"serial": 1, "deep": ' + "[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ],
)
def test_hostile_numbers_and_nesting_are_a_clear_error(
    tmp_path: Path, body: str, what: str
) -> None:
    path = tmp_path / "s.json"
    path.write_text('{"format_version": 1, "lineage": "l", "chats": {}, ' + body + "}")
    started = time.perf_counter()
    with pytest.raises(StateError, match="is corrupt") as err:
        LocalStateStore(path).read()
    assert what in str(err.value)
    assert time.perf_counter() - started < 5
