"""The lock beside a local state file: ``<state>.lock``, held with an OS-level lock.

Exclusion comes from the kernel, not from the file's presence: the holder keeps the lock file
open with ``fcntl.flock`` (POSIX) or ``msvcrt.locking`` (Windows) on it, and the kernel drops
that lock when the holder's process ends, however it ends (``kill -9``, a crashed container,
another PID namespace on the same host). So no PID heuristics are needed (no ``/proc``, no
``os.kill(pid, 0)``, which on Windows is not a liveness probe), and a run in a container that
shares the file with the host cannot mistake a live holder for a stale one (issue 15).

The file also says who holds it, like Terraform's ``LockInfo``
(``internal/states/statemgr/locker.go``): ID, operation, ``user@host``, pid, when. A file left
by a killed run is taken over by the next one (the OS lock is free) and reported. The state
path is resolved (symlinks) by the store, so every spelling of one state shares one lock.

Release unlinks the file while still holding the OS lock, so a waiter that opened the old file
sees it was replaced (another inode) and opens the new one instead; a lock is therefore only
ever held on the file the path currently names.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import socket
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from typing import Any

from provisioner import __version__
from provisioner.errors import LockError, StateError

LOCK_SUFFIX = ".lock"
#: Holder info larger than this is not ours (the file is read for messages only).
MAX_LOCK_FILE = 64 * 1024
# Windows locks byte ranges, and a locked range cannot be read by others: lock one byte far
# past the holder info, so the info stays readable (msvcrt.locking locks from the position).
_WINDOWS_LOCK_OFFSET = 1 << 30


@dataclass(frozen=True)
class LockInfo:
    """Who holds a lock. ``took_over`` is the lock left by a killed run that this one replaced,
    if any, so the CLI can tell the user (the core does not print)."""

    id: str
    operation: str
    who: str
    pid: int
    created: str
    host: str
    version: str = __version__
    path: str = ""
    # Kept for files written by older versions (process start time); no longer used.
    pid_start: int | None = None
    # Whether the state file existed when the lock was taken: a lock left behind by a run that
    # found a state is evidence that a state is missing (issue 15), one from a first run is not.
    state_existed: bool | None = None
    took_over: LockInfo | None = None

    def describe(self) -> str:
        return (
            f"ID:        {self.id}\n"
            f"Operation: {self.operation}\n"
            f"Who:       {self.who}\n"
            f"PID:       {self.pid}\n"
            f"Created:   {self.created}\n"
            f"Version:   {self.version}"
        )

    def to_json(self) -> str:
        data = asdict(self)
        data.pop("took_over")
        return json.dumps(data, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> LockInfo:
        """Parse holder info; ValueError for anything not ours (numbers range-checked)."""
        from provisioner.fsutil import loads_json

        data = loads_json(text)
        if not isinstance(data, dict):
            raise ValueError("not an object")
        pid_start = data.get("pid_start")
        existed = data.get("state_existed")
        return cls(
            id=_text(data, "id"),
            operation=_text(data, "operation"),
            who=_text(data, "who"),
            pid=_small_int(data.get("pid"), "pid"),
            created=_text(data, "created"),
            host=_text(data, "host"),
            version=str(data.get("version", ""))[:64],
            path=str(data.get("path", "")),
            pid_start=None if pid_start is None else _small_int(pid_start, "pid_start"),
            state_existed=existed if isinstance(existed, bool) else None,
        )


def _text(data: dict[str, Any], name: str) -> str:
    value = data[name]
    if not isinstance(value, str | int) or isinstance(value, bool) or len(str(value)) > 1024:
        raise ValueError(f"{name} is not a short text")
    return str(value)


def _small_int(value: object, name: str) -> int:
    # A pid is 32 bits on every system provision runs on; anything else is not a lock of ours.
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**32:
        raise ValueError(f"{name} is not a process id")
    return value


def new_lock_info(operation: str, path: str, lock_id: str | None = None) -> LockInfo:
    """Holder info for this process (the local lock and the blob lease share it)."""
    host = socket.gethostname()
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        user = str(os.getuid()) if hasattr(os, "getuid") else "unknown"
    return LockInfo(
        id=lock_id or str(uuid.uuid4()),
        operation=operation,
        who=f"{user}@{host}",
        pid=os.getpid(),
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        host=host,
        path=path,
    )


# --- the OS lock -----------------------------------------------------------------------------


def _try_os_lock(fd: int) -> bool:
    """Take the exclusive OS lock on ``fd`` without waiting; False when another holds it."""
    if sys.platform == "win32":
        import msvcrt

        os.lseek(fd, _WINDOWS_LOCK_OFFSET, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError as exc:
        # A filesystem without locks must not pass for an unlocked one.
        msg = f"the filesystem does not support file locks ({exc.strerror})"
        raise OSError(exc.errno, msg) from exc
    return True


def _os_unlock(fd: int) -> None:
    if sys.platform == "win32":
        import msvcrt

        os.lseek(fd, _WINDOWS_LOCK_OFFSET, os.SEEK_SET)
        with contextlib.suppress(OSError):
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        return
    import fcntl

    with contextlib.suppress(OSError):
        fcntl.flock(fd, fcntl.LOCK_UN)


def _same_file(fd: int, path: str) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)


class FileLock:
    """An exclusive lock on one state file, held through ``<state>.lock``.

    ``state_path`` should be resolved (``os.path.realpath``) by the caller: the lock is named
    after it, so two spellings of one state must resolve to one name.
    """

    def __init__(self, state_path: str) -> None:
        self.state_path = state_path
        self.path = state_path + LOCK_SUFFIX
        self._fd: int | None = None
        self._held: LockInfo | None = None

    @property
    def held(self) -> LockInfo | None:
        """What this object holds right now (None when not locked by us)."""
        return self._held

    def read(self) -> LockInfo | None:
        """The current holder, or None when unlocked. A lock file left by a killed run is
        returned too (``is_held`` tells them apart). LockError for an unreadable file."""
        if self._held is not None:
            return self._held
        try:
            with open(self.path, "rb") as f:
                raw = f.read(MAX_LOCK_FILE + 1)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise LockError(f"cannot read lock file {self.path}: {exc.strerror}") from exc
        if not raw.strip():
            return None  # being written by its holder this very moment, or left empty
        try:
            if len(raw) > MAX_LOCK_FILE:
                raise ValueError("too large")
            return LockInfo.from_json(raw.decode("utf-8"))
        except (ValueError, KeyError, TypeError) as exc:
            raise LockError(
                f"the lock file {self.path} is not readable ({exc})",
                hint=f"make sure no provision run uses {self.state_path}, then delete {self.path}",
            ) from exc

    def is_held(self) -> bool:
        """True when some process holds the OS lock (this one included)."""
        if self._held is not None:
            return True
        try:
            fd = os.open(self.path, os.O_RDWR)
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise _unwritable(self.state_path, self.path, exc) from exc
        try:
            if _try_os_lock(fd):
                _os_unlock(fd)
                return False
            return True
        finally:
            os.close(fd)

    def acquire(
        self, operation: str, lock_id: str | None = None, *, timeout: float = 0.0
    ) -> LockInfo:
        """Take the lock, waiting up to ``timeout`` seconds; LockError naming the holder."""
        if self._held is not None:  # one lock per run: a second taker waits like another run
            raise self._busy()
        deadline = time.monotonic() + max(0.0, timeout)
        info = new_lock_info(operation, self.state_path, lock_id)
        while True:
            got = self._try_acquire(info)
            if got is not None:
                return got
            if time.monotonic() >= deadline:
                busy = self._busy()
                if timeout > 0:  # --lock-timeout: say that this run waited
                    busy.message = f"waited {timeout:g}s (--lock-timeout), but {busy.message}"
                raise busy
            time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))

    def _try_acquire(self, info: LockInfo) -> LockInfo | None:
        for _ in range(10):  # the file can be replaced between open and lock: open it again
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            except OSError as exc:
                raise _unwritable(self.state_path, self.path, exc) from exc
            try:
                locked = _try_os_lock(fd)
            except OSError as exc:
                os.close(fd)
                raise _unwritable(self.state_path, self.path, exc) from exc
            if not locked:
                os.close(fd)
                return None
            if not _same_file(fd, self.path):  # released (unlinked) while we waited
                _os_unlock(fd)
                os.close(fd)
                continue
            try:
                return self._take(fd, info)
            except BaseException as exc:
                # Stopped (SIGINT/SIGTERM) or failed while taking it: leave no lock file
                # behind; unlinked while still locked, as `release` does.
                self._held = self._fd = None
                if sys.platform != "win32":
                    with contextlib.suppress(OSError):
                        if _same_file(fd, self.path):
                            os.unlink(self.path)
                _os_unlock(fd)
                os.close(fd)
                if isinstance(exc, OSError):  # e.g. a full disk: one line, not a bug report
                    raise _unwritable(self.state_path, self.path, exc) from exc
                raise
        raise LockError(f"could not lock {self.state_path}: the lock changed hands, retry")

    def _take(self, fd: int, info: LockInfo) -> LockInfo:
        left = _read_fd(fd)  # what a killed holder left behind, if anything
        info = replace(info, state_existed=os.path.exists(self.state_path))
        data = info.to_json().encode("utf-8")
        os.lseek(fd, 0, os.SEEK_SET)
        os.ftruncate(fd, 0)
        os.write(fd, data)
        os.fsync(fd)
        self._fd = fd
        self._held = info
        return replace(info, took_over=left)

    def _busy(self) -> LockError:
        try:
            holder = self.read()
        except LockError:
            holder = None
        if holder is None:
            return LockError(
                f"the state {self.state_path} is locked by another run (it has not said who yet)",
                hint="wait for it to finish, then run again",
            )
        return LockError(
            f"the state {self.state_path} is locked by another run:\n{holder.describe()}",
            hint=f"wait for it to finish, then run again; if it hangs, stop "
            f"process {holder.pid} on {holder.host}: the lock is released when it ends",
        )

    def release(self, lock_id: str) -> bool:
        """Release the lock if this object holds ``lock_id``. False when not ours."""
        if self._held is None or self._fd is None or self._held.id != lock_id:
            return False
        fd, self._fd, self._held = self._fd, None, None
        try:
            if sys.platform != "win32":
                # Unlinked while still locked: a waiter on this file sees it was replaced.
                with contextlib.suppress(OSError):
                    if _same_file(fd, self.path):
                        os.unlink(self.path)
        finally:
            _os_unlock(fd)
            os.close(fd)
        if sys.platform == "win32":
            # Windows cannot unlink an open file; the small window this leaves is closed by
            # the inode check in ``_try_acquire`` of the next run.
            with contextlib.suppress(OSError):
                os.unlink(self.path)
        return True

    def force_unlock(self, lock_id: str) -> LockInfo:
        """Remove a lock file left by a run that is gone. A lock whose holder still runs is
        never removed: the OS lock would still exclude others, and removing the file would let
        a second run start beside the first."""
        holder = self.read()
        if holder is None or (self._held is None and not os.path.exists(self.path)):
            raise LockError(f"the state {self.state_path} is not locked")
        if holder.id != lock_id:
            raise LockError(
                f"lock ID {lock_id} does not match the lock on {self.state_path}:\n"
                f"{holder.describe()}",
                hint="pass the ID shown above, after making sure that run is really gone",
            )
        if self.is_held():
            raise LockError(
                f"the lock on {self.state_path} is held by a running process:\n{holder.describe()}",
                hint=f"stop process {holder.pid} on {holder.host}; its lock is released when "
                f"it ends (no force-unlock needed)",
            )
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        return holder


def _read_fd(fd: int) -> LockInfo | None:
    os.lseek(fd, 0, os.SEEK_SET)
    raw = os.read(fd, MAX_LOCK_FILE + 1)
    if not raw.strip() or len(raw) > MAX_LOCK_FILE:
        return None
    try:
        return LockInfo.from_json(raw.decode("utf-8"))
    except (ValueError, KeyError, TypeError):
        return None


def _unwritable(state_path: str, lock_path: str, exc: OSError) -> StateError:
    directory = os.path.dirname(os.path.abspath(lock_path))
    return StateError(
        f"cannot create the lock file {lock_path} for state {state_path}: "
        f"{exc.strerror or exc} (directory {directory})",
        hint="the directory holding the state must be writable; nothing was changed",
    )


@contextlib.contextmanager
def hold(lock: FileLock, operation: str, *, timeout: float = 0.0) -> Iterator[LockInfo]:
    """Hold ``lock`` for the ``with`` block; released on success, error, KeyboardInterrupt and
    anything the CLI's SIGTERM handler raises (and by the kernel if the process dies)."""
    lock_id = str(uuid.uuid4())
    try:
        yield lock.acquire(operation, lock_id, timeout=timeout)
    finally:
        lock.release(lock_id)
