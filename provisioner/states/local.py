"""The local state store: a JSON file, written atomically, with a backup and a lock.

The local store writes atomically (temp file in the same directory, fsync, ``os.replace``, fsync
the directory), keeps the previous version as ``<state>.backup`` and creates the file with mode
0600.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid

from provisioner.errors import StateError
from provisioner.fsutil import write_atomic
from provisioner.states.lock import FileLock, LockInfo, hold
from provisioner.states.records import BACKUP_SUFFIX, State, decode_state


class LocalStateStore:
    """A state file on the local filesystem."""

    def __init__(self, path: str | os.PathLike[str], *, lock_timeout: float = 0.0) -> None:
        self.path = os.fspath(path)
        self._lock = FileLock(self.path)
        #: Seconds to wait for another run's lock (``--lock-timeout``); 0 fails at once.
        self.lock_timeout = lock_timeout
        # What this store last read or wrote: writes must continue that history.
        self._lineage: str | None = None
        self._serial: int | None = None

    @property
    def location(self) -> str:
        return self.path

    @property
    def backup_location(self) -> str:
        return self.path + BACKUP_SUFFIX

    def read(self) -> State:
        try:
            with open(self.path, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            state = State()
            self._lineage, self._serial = None, 0
            return state
        except IsADirectoryError as exc:
            raise StateError(f"the state path {self.path} is a directory, not a file") from exc
        except OSError as exc:
            raise StateError(f"cannot read state file {self.path}: {exc.strerror}") from exc
        state = decode_state(raw, self.path, self._restore_hint())
        self._lineage, self._serial = state.lineage, state.serial
        return state

    def write(self, state: State) -> None:
        self._check_history(state)
        new_serial = state.serial + 1
        data = state.encode(serial=new_serial)
        directory = os.path.dirname(os.path.abspath(self.path))
        try:
            write_atomic(self.path, data, before_replace=self._backup)
        except OSError as exc:
            raise self._unwritable(exc, directory) from exc
        state.serial = new_serial
        state.exists = True
        self._lineage, self._serial = state.lineage, new_serial

    def lock(self, operation: str) -> contextlib.AbstractContextManager[LockInfo]:
        return hold(self._lock, operation, self.lock_timeout)

    def current_lock(self) -> LockInfo | None:
        return self._lock.read()

    def force_unlock(self, lock_id: str) -> LockInfo:
        return self._lock.force_unlock(lock_id)

    def _check_history(self, state: State) -> None:
        if self._serial is None:
            # Never read: learn what is on disk before overwriting it. An unreadable file
            # raises here: replacing it would also replace the good backup with it.
            self.read()
        if self._lineage is not None and state.lineage != self._lineage:
            raise StateError(
                f"refusing to write state of lineage {state.lineage} over {self.path}, "
                f"which holds lineage {self._lineage} (a different state)"
            )
        if self._serial is not None and self._lineage is not None and state.serial < self._serial:
            raise StateError(
                f"refusing to write an older state (serial {state.serial}) over {self.path} "
                f"(serial {self._serial})"
            )

    def _backup(self) -> None:
        """Make ``<state>.backup`` the version about to be replaced.

        A hard link costs no copy (the old inode stays as the backup when the state is
        replaced); filesystems without links get a copy instead.
        """
        if not os.path.exists(self.path):
            return
        backup = self.backup_location
        tmp = f"{backup}.{uuid.uuid4().hex}.tmp"
        try:
            try:
                os.link(self.path, tmp)
            except OSError:
                shutil.copyfile(self.path, tmp)
                os.chmod(tmp, 0o600)
            os.replace(tmp, backup)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def _restore_hint(self) -> str:
        if os.path.exists(self.backup_location):
            return (
                f"the previous version is in {self.backup_location}: after checking it, "
                f"restore it with: cp {self.backup_location} {self.path}"
            )
        return "no backup exists; fix or remove the file by hand (provision changed nothing)"

    def _unwritable(self, exc: OSError, directory: str) -> StateError:
        return StateError(
            f"cannot write state file {self.path}: {exc.strerror or exc} (directory {directory})",
            hint=f"nothing was changed; {self.path} still holds the previous state",
        )
