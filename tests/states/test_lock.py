from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from lib.fs_helpers import make_readonly, snapshot  # noqa: F401  (fixture)

from provisioner.errors import LockError, StateError
from provisioner.states.lock import FileLock, LockInfo, hold


def write_lock(path: Path, **overrides: object) -> LockInfo:
    """A lock file as a killed run leaves it: holder info, no OS lock held."""
    info = LockInfo(
        id="11111111-2222-3333-4444-555555555555",
        operation="apply",
        who="someone@elsewhere",
        pid=os.getpid(),
        created="2024-01-01T00:00:00+00:00",
        host=socket.gethostname(),
    )
    info = dataclasses.replace(info, **overrides)  # type: ignore[arg-type]
    Path(str(path) + ".lock").write_text(info.to_json())
    return info


def test_lock_file_records_who_and_is_private(tmp_path: Path) -> None:
    state = tmp_path / "s.json"
    lock = FileLock(str(state))
    info = lock.acquire("plan")
    data = json.loads(Path(lock.path).read_text())
    assert data["id"] == info.id
    assert data["operation"] == "plan"
    assert data["pid"] == os.getpid()
    assert data["who"].endswith("@" + socket.gethostname())
    assert data["created"].endswith("+00:00")
    assert os.stat(lock.path).st_mode & 0o777 == 0o600
    assert info.took_over is None
    assert lock.release(info.id)
    assert not os.path.exists(lock.path)
    assert sorted(os.listdir(tmp_path)) == []  # no temp files left behind


def test_second_run_fails_at_once_naming_the_holder(tmp_path: Path) -> None:
    first = FileLock(str(tmp_path / "s.json")).acquire("apply")
    with pytest.raises(LockError) as err:
        FileLock(str(tmp_path / "s.json")).acquire("plan")
    text = str(err.value)
    for detail in (first.id, "apply", first.who, str(os.getpid()), first.created):
        assert detail in text
    assert f"stop process {os.getpid()}" in text


def test_lock_file_left_by_a_killed_run_is_taken_over(tmp_path: Path) -> None:
    # The file is there but no process holds its OS lock: whatever pid or host it names
    # (even ours, even another host's), the kernel says the holder is gone.
    state = tmp_path / "s.json"
    for overrides in ({}, {"host": "other-host"}, {"pid": 2**32 - 1}):
        left = write_lock(state, **overrides)
        info = FileLock(str(state)).acquire("apply")
        assert info.took_over == left
        assert info.id != left.id
        lock = FileLock(str(state))
        assert lock.read() == dataclasses.replace(info, took_over=None, state_existed=False)
        assert lock.is_held()
        os.unlink(str(state) + ".lock")  # (the holder object is gone; the fd stays open)


def test_lock_with_a_huge_or_negative_pid_is_reported_not_a_crash(tmp_path: Path) -> None:
    for pid in ("1" * 5000, "-1", "1e308", "NaN"):
        (tmp_path / "s.json.lock").write_text(
            '{"id": "x", "operation": "apply", "who": "a@b", "pid": '
            + pid
            + ', "created": "c", "host": "h"}'
        )
        with pytest.raises(LockError, match="not readable"):
            FileLock(str(tmp_path / "s.json")).read()


def test_force_unlock_needs_the_right_id(tmp_path: Path) -> None:
    lock = FileLock(str(tmp_path / "s.json"))
    held = write_lock(tmp_path / "s.json", host="other-host")  # left behind: no OS lock
    with pytest.raises(LockError, match="does not match"):
        lock.force_unlock("wrong-id")
    assert lock.read() == held
    assert lock.force_unlock(held.id) == held
    assert lock.read() is None
    with pytest.raises(LockError, match="not locked"):
        lock.force_unlock(held.id)


def test_force_unlock_never_removes_a_live_holders_lock(tmp_path: Path) -> None:
    holder = FileLock(str(tmp_path / "s.json"))
    mine = holder.acquire("apply")
    with pytest.raises(LockError, match="held by a running process") as err:
        FileLock(str(tmp_path / "s.json")).force_unlock(mine.id)
    assert f"stop process {os.getpid()}" in str(err.value)
    assert FileLock(str(tmp_path / "s.json")).is_held()
    assert holder.release(mine.id)


def test_release_never_removes_someone_elses_lock(tmp_path: Path) -> None:
    lock = FileLock(str(tmp_path / "s.json"))
    mine = lock.acquire("apply")
    assert not lock.release("another-id")
    assert FileLock(str(tmp_path / "s.json")).is_held()
    assert lock.release(mine.id)
    other = FileLock(str(tmp_path / "s.json"))
    theirs = other.acquire("plan")
    assert not lock.release(mine.id)  # released once; the new holder's lock stays
    assert other.read() == dataclasses.replace(theirs, took_over=None)
    assert FileLock(str(tmp_path / "s.json")).is_held()


def test_unreadable_lock_file_is_reported_not_guessed(tmp_path: Path) -> None:
    (tmp_path / "s.json.lock").write_text("{not json")
    with pytest.raises(LockError, match="not readable") as err:
        FileLock(str(tmp_path / "s.json")).read()
    assert "delete" in str(err.value)
    # Not held by any process: the next run takes it (nothing could be using the state).
    info = FileLock(str(tmp_path / "s.json")).acquire("apply")
    assert info.took_over is None


def test_hold_releases_on_error_and_interrupt(tmp_path: Path) -> None:
    lock = FileLock(str(tmp_path / "s.json"))
    for exc in (RuntimeError("boom"), KeyboardInterrupt()):
        with pytest.raises(type(exc)), hold(lock, "apply"):
            assert os.path.exists(lock.path)
            raise exc
        assert not os.path.exists(lock.path)


def test_lock_in_read_only_directory_is_a_clear_error(tmp_path: Path, make_readonly) -> None:  # noqa: F811
    make_readonly(tmp_path)
    with pytest.raises(StateError, match="cannot create the lock file") as err:
        FileLock(str(tmp_path / "s.json")).acquire("apply")
    assert "nothing was changed" in str(err.value)
    assert snapshot(tmp_path) == {}


HOLDER = textwrap.dedent(
    """
    import sys, time
    from provisioner.states.lock import FileLock
    info = FileLock(sys.argv[1]).acquire("apply")
    print(info.id, flush=True)
    time.sleep(60)
    """
)


def test_killed_holder_leaves_a_lock_the_next_run_takes_over(tmp_path: Path) -> None:
    state = str(tmp_path / "s.json")
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, state], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        held_id = proc.stdout.readline().strip()
        with pytest.raises(LockError) as err:  # alive: not taken over
            FileLock(state).acquire("apply")
        assert held_id in str(err.value) and str(proc.pid) in str(err.value)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    info = FileLock(state).acquire("apply")
    assert info.took_over is not None and info.took_over.id == held_id


RACER = textwrap.dedent(
    """
    import sys, time
    from provisioner.errors import LockError
    from provisioner.states.lock import FileLock
    while time.time() < float(sys.argv[2]):
        pass
    try:
        info = FileLock(sys.argv[1]).acquire("apply")
    except LockError:
        print("refused", flush=True)
    else:
        print("got", info.took_over is not None, flush=True)
        time.sleep(1)  # hold it while the others try
    """
)


def test_racing_runs_take_a_stale_lock_over_exactly_once(tmp_path: Path) -> None:
    import time

    state = tmp_path / "s.json"
    write_lock(state, pid=2**31)
    start = str(time.time() + 1.0)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, str(state), start], stdout=subprocess.PIPE, text=True
        )
        for _ in range(4)
    ]
    results = sorted(p.communicate(timeout=30)[0].strip() for p in procs)
    assert sum(r.startswith("got") for r in results) == 1, results
    assert results.count("refused") == 3, results


WAITER = textwrap.dedent(
    """
    import sys
    from provisioner.states.lock import FileLock
    lock = FileLock(sys.argv[1])
    try_acquire = lock._try_acquire
    def observed(info):
        got = try_acquire(info)
        if got is None:
            print("refused", flush=True)  # the holder has it: this run now waits
        return got
    lock._try_acquire = observed
    info = lock.acquire("apply", timeout=float(sys.argv[2]))
    print("got", info.id, flush=True)
    """
)


def test_a_run_with_a_lock_timeout_waits_for_the_holder(tmp_path: Path) -> None:
    state = str(tmp_path / "s.json")
    holder = FileLock(state)
    held = holder.acquire("apply")
    proc = subprocess.Popen(
        [sys.executable, "-c", WAITER, state, "30"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "refused\n"  # it tried, and waits
        assert proc.poll() is None
        holder.release(held.id)
        out = proc.communicate(timeout=30)[0]
    finally:
        proc.kill()
    assert "got " in out


def test_every_spelling_of_one_file_shares_the_lock(tmp_path: Path) -> None:
    from provisioner.states.local import LocalStateStore

    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "s.json"
    target.write_text("{}")
    (tmp_path / "link.json").symlink_to(target)
    a = LocalStateStore(str(tmp_path / "link.json"))
    b = LocalStateStore(str(tmp_path / "real" / ".." / "real" / "s.json"))
    with a.lock("apply"), pytest.raises(LockError, match="locked by another run"), b.lock("x"):
        pass


@pytest.mark.parametrize("call", ["write", "fsync"])
def test_a_lock_file_that_cannot_be_written_is_one_error_and_leaves_no_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, call: str
) -> None:
    # Found by tests/apply/test_apply_faults.py: ENOSPC or EIO while the holder's details are
    # written was an OSError, which the CLI reports as a bug.
    state = tmp_path / "s.json"
    lock = FileLock(str(state))

    def full(*args: object) -> None:
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as m:
        m.setattr(os, call, full)
        with pytest.raises(StateError, match="No space left on device"):
            lock.acquire("apply")
    assert not Path(lock.path).exists()
    assert FileLock(str(state)).acquire("apply")  # nothing is left held
