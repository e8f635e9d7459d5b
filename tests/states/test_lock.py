from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from fs_helpers import make_readonly, snapshot  # noqa: F401  (fixture)

from provisioner.errors import LockError, StateError
from provisioner.states.local import LocalStateStore
from provisioner.states.lock import (
    LOCK_POLL_SECONDS,
    FileLock,
    LockHeld,
    LockInfo,
    hold,
    is_stale,
    process_start,
    wait_for,
)


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def write_lock(path: Path, **overrides: object) -> LockInfo:
    info = LockInfo(
        id="11111111-2222-3333-4444-555555555555",
        operation="apply",
        who="someone@elsewhere",
        pid=os.getpid(),
        created="2024-01-01T00:00:00+00:00",
        host=socket.gethostname(),
        pid_start=process_start(os.getpid()),
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
    assert f"provision force-unlock {first.id}" in text


def test_stale_lock_of_dead_process_is_taken_over(tmp_path: Path) -> None:
    state = tmp_path / "s.json"
    stale = write_lock(state, pid=dead_pid(), pid_start=None)
    info = FileLock(str(state)).acquire("apply")
    assert info.took_over == stale
    assert info.id != stale.id
    assert FileLock(str(state)).read() == dataclasses.replace(info, took_over=None)


def test_lock_of_reused_pid_is_stale(tmp_path: Path) -> None:
    # Our own pid is alive, but the lock says it was started at another time: the process
    # that took the lock is gone and the pid was reused.
    start = process_start(os.getpid())
    if start is None:
        pytest.skip("process start times need /proc")
    stale = write_lock(tmp_path / "s.json", pid_start=start + 1)
    assert is_stale(stale, socket.gethostname())
    info = FileLock(str(tmp_path / "s.json")).acquire("apply")
    assert info.took_over == stale


def test_live_lock_on_this_host_is_not_taken_over(tmp_path: Path) -> None:
    held = write_lock(tmp_path / "s.json")  # our pid, our start time: alive
    with pytest.raises(LockError, match="locked by another run"):
        FileLock(str(tmp_path / "s.json")).acquire("apply")
    assert FileLock(str(tmp_path / "s.json")).read() == held


def test_lock_from_another_host_is_never_taken_over(tmp_path: Path) -> None:
    held = write_lock(tmp_path / "s.json", host="other-host", pid=dead_pid())
    with pytest.raises(LockError) as err:
        FileLock(str(tmp_path / "s.json")).acquire("apply")
    assert f"provision force-unlock {held.id}" in str(err.value)
    assert FileLock(str(tmp_path / "s.json")).read() == held


def test_force_unlock_needs_the_right_id(tmp_path: Path) -> None:
    lock = FileLock(str(tmp_path / "s.json"))
    held = write_lock(tmp_path / "s.json", host="other-host")
    with pytest.raises(LockError, match="does not match"):
        lock.force_unlock("wrong-id")
    assert lock.read() == held
    assert lock.force_unlock(held.id) == held
    assert lock.read() is None
    with pytest.raises(LockError, match="not locked"):
        lock.force_unlock(held.id)


def test_release_never_removes_someone_elses_lock(tmp_path: Path) -> None:
    lock = FileLock(str(tmp_path / "s.json"))
    mine = lock.acquire("apply")
    lock.force_unlock(mine.id)  # a person removed it...
    theirs = lock.acquire("plan")  # ...and another run took it
    assert not lock.release(mine.id)
    assert lock.read() == dataclasses.replace(theirs, took_over=None)


def test_unreadable_lock_file_is_reported_not_guessed(tmp_path: Path) -> None:
    (tmp_path / "s.json.lock").write_text("{not json")
    with pytest.raises(LockError, match="not readable") as err:
        FileLock(str(tmp_path / "s.json")).acquire("apply")
    assert "delete" in str(err.value)
    assert (tmp_path / "s.json.lock").read_text() == "{not json"


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
        with pytest.raises(LockError):  # alive: not taken over
            FileLock(state).acquire("apply")
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
    write_lock(state, pid=dead_pid(), pid_start=None)
    start = str(time.time() + 1.0)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, str(state), start], stdout=subprocess.PIPE, text=True
        )
        for _ in range(4)
    ]
    results = sorted(p.communicate(timeout=30)[0].strip() for p in procs)
    # Exactly one wins: usually the one that removed the stale lock, but a run that arrives
    # just after the removal may create its lock first (then it has nothing to take over).
    assert sum(r.startswith("got") for r in results) == 1, results
    assert results.count("refused") == 3, results


# --- --lock-timeout ----------------------------------------------------------------------------

LOCKED = LockInfo(
    id="x", operation="apply", who="me@here", pid=1, created="2024-01-01T00:00:00+00:00", host="h"
)


def test_wait_for_retries_only_while_the_lock_is_held() -> None:
    now = [0.0]
    naps: list[float] = []
    tries = iter([LockHeld("locked by another run"), LockHeld("locked by another run")])

    def take() -> LockInfo:
        failure = next(tries, None)
        if failure is not None:
            raise failure
        return LOCKED

    def sleep(seconds: float) -> None:
        naps.append(seconds)
        now[0] += seconds

    assert wait_for(take, 5.0, clock=lambda: now[0], sleep=sleep) is LOCKED
    assert naps == [LOCK_POLL_SECONDS, LOCK_POLL_SECONDS]


def test_wait_for_gives_up_at_the_deadline_and_says_it_waited() -> None:
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    def take() -> LockInfo:
        raise LockHeld("the state s is locked by another run", hint="force-unlock X")

    with pytest.raises(LockHeld) as caught:
        wait_for(take, 2.5, clock=lambda: now[0], sleep=sleep)
    assert now[0] == 2.5
    assert str(caught.value).startswith("waited 2.5s (--lock-timeout), but the state s is locked")


def test_wait_for_does_not_wait_for_other_lock_errors() -> None:
    def take() -> LockInfo:
        raise LockError("the lock file is not readable")

    with pytest.raises(LockError, match="not readable"):
        wait_for(take, 60.0, sleep=lambda s: pytest.fail("slept"))


def test_no_timeout_fails_at_once_without_the_waiting_note(tmp_path: Path) -> None:
    state = tmp_path / "s.json"
    write_lock(state, host="elsewhere")
    with pytest.raises(LockHeld) as caught, LocalStateStore(str(state)).lock("plan"):
        pass
    assert "waited" not in str(caught.value)


def test_a_waiting_run_gets_the_lock_when_the_holder_releases_it(tmp_path: Path) -> None:
    state = tmp_path / "s.json"
    holder = LocalStateStore(str(state))
    waiter = LocalStateStore(str(state), lock_timeout=30.0)
    got: list[str] = []
    with holder.lock("apply"):
        thread = threading.Thread(target=lambda: got.append(_lock_once(waiter)))
        thread.start()
        time.sleep(1.5)  # the waiter polls meanwhile
        assert got == []
    thread.join(10)
    assert got == ["plan"]


def _lock_once(store: LocalStateStore) -> str:
    with store.lock("plan") as info:
        return info.operation
