"""The lock beside a local state file: ``<state>.lock``, saying who holds it.

Like Terraform's ``LockInfo`` (``internal/states/statemgr/locker.go``) the lock records an ID,
the operation, who (``user@host``), the pid and when. Unlike Terraform's local backend, which
relies on ``flock`` and leaves the info file behind, the lock *is* the file: it is created
atomically (written to a temp file, then hard-linked into place, which fails if a lock exists),
so it is always complete and every holder can be named.

A lock whose process is gone (same host, pid not alive, or alive but started later than the
lock, i.e. a reused pid) is stale: the next run takes it over by itself and says so, because a
killed pipeline must never need a person to continue. A lock held by a live process, or taken on
another host (we cannot see its processes), is only removed by ``provision force-unlock ID``.
"""

from __future__ import annotations

import contextlib
import errno
import getpass
import json
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone

from provisioner import __version__
from provisioner.errors import LockError, StateError

LOCK_SUFFIX = ".lock"


@dataclass(frozen=True)
class LockInfo:
    """Who holds a lock. ``took_over`` is the stale lock this one replaced, if any, so the CLI
    can tell the user (the core does not print)."""

    id: str
    operation: str
    who: str
    pid: int
    created: str
    host: str
    version: str = __version__
    path: str = ""
    # Process start time (Linux: clock ticks since boot, from /proc/<pid>/stat) so a pid that
    # was reused by an unrelated process after the holder died is still recognised as stale.
    pid_start: int | None = None
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
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("not an object")
        pid_start = data.get("pid_start")
        return cls(
            id=str(data["id"]),
            operation=str(data["operation"]),
            who=str(data["who"]),
            pid=int(data["pid"]),
            created=str(data["created"]),
            host=str(data["host"]),
            version=str(data.get("version", "")),
            path=str(data.get("path", "")),
            pid_start=int(pid_start) if pid_start is not None else None,
        )


def _who() -> tuple[str, str]:
    host = socket.gethostname()
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        user = str(os.getuid()) if hasattr(os, "getuid") else "unknown"
    return f"{user}@{host}", host


def process_start(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks since boot (Linux), or None where unknown."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may contain spaces: split after it.
    fields = stat[stat.rfind(b")") + 2 :].split()
    try:
        return int(fields[19])  # field 22 overall: starttime
    except (IndexError, ValueError):
        return None


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return False
    return True


def is_stale(info: LockInfo, host: str) -> bool:
    """True when ``info`` was taken on this host by a process that no longer runs."""
    if info.host != host:
        return False
    if not pid_alive(info.pid):
        return True
    if info.pid_start is not None:
        start = process_start(info.pid)
        if start is not None and start != info.pid_start:
            return True  # the pid now belongs to another process
    return False


class FileLock:
    """An exclusive lock on one state file, held through ``<state>.lock``."""

    def __init__(self, state_path: str) -> None:
        self.state_path = state_path
        self.path = state_path + LOCK_SUFFIX

    def read(self) -> LockInfo | None:
        """The current holder, or None when unlocked. Raises LockError for an unreadable lock."""
        try:
            with open(self.path, encoding="utf-8") as f:
                text = f.read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise LockError(f"cannot read lock file {self.path}: {exc.strerror}") from exc
        try:
            return LockInfo.from_json(text)
        except (ValueError, KeyError, TypeError) as exc:
            raise LockError(
                f"the state is locked, but the lock file {self.path} is not readable ({exc})",
                hint=f"make sure no provision run uses {self.state_path}, then delete {self.path}",
            ) from exc

    def read_id(self) -> str | None:
        holder = self.read()
        return holder.id if holder is not None else None

    def acquire(self, operation: str, lock_id: str | None = None) -> LockInfo:
        """Take the lock or raise LockError naming the holder. Takes over a stale lock."""
        who, host = _who()
        info = LockInfo(
            id=lock_id or str(uuid.uuid4()),
            operation=operation,
            who=who,
            pid=os.getpid(),
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            host=host,
            path=self.state_path,
            pid_start=process_start(os.getpid()),
        )
        if self._create(info):
            return info
        holder = self.read()
        if holder is None:  # released between our attempt and the read: try once more
            if self._create(info):
                return info
            holder = self.read()
        if holder is not None and is_stale(holder, host):
            if self._remove_if(holder.id) and self._create(info):
                return replace(info, took_over=holder)
            holder = self.read()  # another run got there first: report that one
        if holder is None:
            raise LockError(f"could not lock {self.state_path}: the lock changed hands, retry")
        hint = (
            f"if that run is gone, remove the lock with: provision force-unlock {holder.id}"
            if holder.host != host
            else f"wait for it to finish; if it hangs, stop process {holder.pid} on {holder.host}"
            f" (its lock is then taken over automatically) or run: "
            f"provision force-unlock {holder.id}"
        )
        raise LockHeld(
            f"the state {self.state_path} is locked by another run:\n{holder.describe()}",
            hint=hint,
        )

    def release(self, lock_id: str) -> bool:
        """Remove the lock if it is still ours. False when it was already gone or not ours."""
        return self._remove_if(lock_id)

    def force_unlock(self, lock_id: str) -> LockInfo:
        holder = self.read()
        if holder is None:
            raise LockError(f"the state {self.state_path} is not locked")
        if holder.id != lock_id:
            raise LockError(
                f"lock ID {lock_id} does not match the lock on {self.state_path}:\n"
                f"{holder.describe()}",
                hint="pass the ID shown above, after making sure that run is really gone",
            )
        if not self._remove_if(lock_id):
            raise LockError(f"the lock on {self.state_path} changed while removing it; retry")
        return holder

    def _create(self, info: LockInfo) -> bool:
        """Atomically create the lock file with ``info``; False if a lock already exists."""
        tmp = f"{self.path}.{info.id}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as exc:
            raise _unwritable(self.state_path, self.path, exc) from exc
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(info.to_json())
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(tmp, self.path)  # fails with EEXIST if locked: atomic and complete
                return True
            except FileExistsError:
                return False
            except OSError as exc:
                if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
                    raise _unwritable(self.state_path, self.path, exc) from exc
            # Filesystems without hard links: O_EXCL create, then write (a reader may briefly
            # see an empty file; it reports it as unreadable rather than guessing).
            try:
                fd2 = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                return False
            with os.fdopen(fd2, "w", encoding="utf-8") as f:
                f.write(info.to_json())
                f.flush()
                os.fsync(f.fileno())
            return True
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)

    def _remove_if(self, lock_id: str) -> bool:
        """Remove the lock file only if it holds ``lock_id``.

        Renaming first makes the check-and-remove safe against a concurrent taker: whoever
        renames the file owns exactly that file; if it turns out not to be the expected lock
        (another run replaced it in between), it is put back with a link, which never clobbers.
        """
        try:
            if self.read_id() != lock_id:
                return False
        except LockError:
            pass  # unreadable: let the rename below decide
        claim = f"{self.path}.{uuid.uuid4().hex}.removing"
        try:
            os.rename(self.path, claim)
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise _unwritable(self.state_path, self.path, exc) from exc
        try:
            with open(claim, encoding="utf-8") as f:
                current = LockInfo.from_json(f.read()).id
        except (OSError, ValueError, KeyError, TypeError):
            current = None
        if current == lock_id:
            os.unlink(claim)
            return True
        with contextlib.suppress(FileExistsError):
            os.link(claim, self.path)
        os.unlink(claim)
        return False


def _unwritable(state_path: str, lock_path: str, exc: OSError) -> StateError:
    directory = os.path.dirname(os.path.abspath(lock_path))
    return StateError(
        f"cannot create the lock file {lock_path} for state {state_path}: "
        f"{exc.strerror or exc} (directory {directory})",
        hint="the directory holding the state must be writable; nothing was changed",
    )


class LockHeld(LockError):
    """The lock is held by another run (as opposed to a lock that cannot be read or made):
    the one case worth waiting for with ``--lock-timeout``."""


#: How often a waiting run looks at the lock again (Terraform polls its locks similarly).
LOCK_POLL_SECONDS = 1.0


def wait_for(
    take: Callable[[], LockInfo],
    timeout: float,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> LockInfo:
    """Call ``take`` until it stops raising `LockHeld` or ``timeout`` seconds have passed
    (``--lock-timeout``; 0: one try, the default). The last refusal names the holder, and how
    long this run waited."""
    deadline = clock() + timeout
    while True:
        try:
            return take()
        except LockHeld as exc:
            remaining = deadline - clock()
            if remaining <= 0:
                if timeout > 0:
                    exc.message = f"waited {timeout:g}s (--lock-timeout), but {exc.message}"
                raise
            sleep(min(LOCK_POLL_SECONDS, remaining))


@contextlib.contextmanager
def hold(lock: FileLock, operation: str, timeout: float = 0.0) -> Iterator[LockInfo]:
    """Hold ``lock`` for the ``with`` block, waiting up to ``timeout`` seconds for another run
    to release it; released on success, error, KeyboardInterrupt and anything the CLI's
    SIGTERM handler raises."""
    # The ID is chosen before the lock file exists, so a signal arriving anywhere after the file
    # was created (even before ``acquire`` returns) still releases it.
    lock_id = str(uuid.uuid4())
    try:
        yield wait_for(lambda: lock.acquire(operation, lock_id), timeout)
    finally:
        lock.release(lock_id)
