"""The local state store: a JSON file, written atomically, with a backup and a lock.

The local store writes atomically (temp file in the same directory, fsync, ``os.replace``, fsync
the directory), keeps the previous version as ``<state>.backup`` and creates the file with mode
0600 (an existing file keeps its mode and owner).

The path is resolved once (symlinks followed): a state reached through a link is written
through to its target, and its backup and lock live beside the target, so every spelling of one
state shares one lock (issue 15). A missing state is an empty one only when nothing says a
state existed: a backup, a journal, or a lock left by a run that had found a state are
evidence, and reading then refuses with how to restore it or start afresh on purpose.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator

from provisioner.errors import StateError
from provisioner.fsutil import (
    FileTooLarge,
    NotRegularFile,
    read_regular,
    special_file,
    sweep_temp_files,
    write_atomic,
)
from provisioner.states.codec import decode_state, lineage_of
from provisioner.states.journal import JOURNAL_SUFFIX
from provisioner.states.lock import FileLock, LockInfo, hold
from provisioner.states.records import BACKUP_SUFFIX, State

#: The largest state file read (every input is bounded): a chat of 250 members takes about
#: 50 KB of state, so this holds 20,000 of the largest chats Graph allows.
MAX_STATE_BYTES = 1 << 30


class LocalStateStore:
    """A state file on the local filesystem."""

    def __init__(self, path: str | os.PathLike[str], *, lock_timeout: float = 0.0) -> None:
        self.given_path = os.fspath(path)
        # Followed through symlinks: one file, one backup, one lock, whatever the spelling
        # (kept as given when no link is involved, so messages show the user's own path).
        real = os.path.realpath(self.given_path)
        self.path = self.given_path if real == os.path.abspath(self.given_path) else real
        self.lock_timeout = lock_timeout
        self._lock = FileLock(self.path)
        self._took_over: LockInfo | None = None
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
        self._refuse_special_files()
        try:
            raw = read_regular(self.path, limit=MAX_STATE_BYTES)
        except FileNotFoundError:
            self._refuse_if_evidence()
            state = State()
            self._lineage, self._serial = None, 0
            return state
        except IsADirectoryError as exc:
            raise StateError(f"the state path {self.path} is a directory, not a file") from exc
        except NotRegularFile as exc:  # became one after _refuse_special_files looked
            raise StateError(f"the state path {self.path} is not a regular file") from exc
        except FileTooLarge as exc:
            raise StateError(
                f"the state file {self.path} is larger than {MAX_STATE_BYTES >> 20} MB: not a "
                "state provision wrote",
                hint="check --state (or PROVISION_STATE) names the right file",
            ) from exc
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
            write_atomic(self.path, data, before_replace=self._backup, keep_mode=True)
        except OSError as exc:
            raise self._unwritable(exc, directory) from exc
        state.serial = new_serial
        state.exists = True
        self._lineage, self._serial = state.lineage, new_serial

    def lock(self, operation: str) -> contextlib.AbstractContextManager[LockInfo]:
        return self._locked(operation)

    @contextlib.contextmanager
    def _locked(self, operation: str) -> Iterator[LockInfo]:
        self._refuse_special_files()
        with hold(self._lock, operation, timeout=self.lock_timeout) as info:
            # Holding the lock, no writer of this state is alive: what temp files remain were
            # left by killed runs.
            sweep_temp_files(self.path, self.backup_location)
            self._took_over = info.took_over
            try:
                yield info
            finally:
                self._took_over = None

    def current_lock(self) -> LockInfo | None:
        # A file left by a killed run is not a lock: nothing holds it.
        return self._lock.read() if self._lock.is_held() else None

    def force_unlock(self, lock_id: str) -> LockInfo:
        return self._lock.force_unlock(lock_id)

    def confirm_lock(self) -> None:
        """Nothing to confirm: the OS lock cannot be taken from a live holder (``force-unlock``
        refuses while it is held), so a run that took it holds it until it ends."""

    def damaged(self) -> tuple[bytes, State | None]:
        """For ``provision state repair`` when ``read`` refuses the file: its bytes, and the
        backup (None when it is missing or unreadable too)."""
        self._refuse_special_files()
        try:
            raw = read_regular(self.path, limit=MAX_STATE_BYTES)
        except OSError as exc:  # NotRegularFile and FileTooLarge included
            raise StateError(f"cannot read state file {self.path}: {exc}") from exc
        try:
            kept = read_regular(self.backup_location, limit=MAX_STATE_BYTES)
            backup: State | None = decode_state(kept, self.backup_location, "")
        except (OSError, StateError):
            backup = None
        return raw, backup

    def replace_damaged(self, state: State, serial: int, keep: str) -> None:
        """Write ``state`` as ``serial`` over an unreadable file, first copied to ``keep``; the
        backup stays the last good version (it is not replaced by the damaged file)."""
        try:
            with open(self.path, "rb") as f:
                write_atomic(keep, f.read())
            write_atomic(self.path, state.encode(serial=serial), keep_mode=True)
        except OSError as exc:
            raise self._unwritable(exc, os.path.dirname(os.path.abspath(self.path))) from exc
        state.serial = serial
        state.exists = True
        self._lineage, self._serial = state.lineage, serial

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

    def _refuse_special_files(self) -> None:
        """The state, its journal, backup and lock are regular files or absent: a FIFO there
        hung every command, ``--state /dev/zero`` ate memory (issue 20). Checked before any
        of them is opened, so nothing is read, locked or written."""
        for what, path in (
            ("state", self.path),
            ("journal", self.path + JOURNAL_SUFFIX),
            ("backup", self.backup_location),
            ("lock", self._lock.path),
        ):
            kind = special_file(path)
            if kind is not None:
                raise StateError(
                    f"the {what} path {path} is {kind}, not a regular file: refusing to use it",
                    hint="give --state (or PROVISION_STATE) the path of a regular file",
                )

    def _refuse_if_evidence(self) -> None:
        """A missing state with a backup, a journal or a lock left by a run that had found a
        state is not "no state yet": refuse rather than create every chat again."""
        evidence = [p for p in (self.backup_location, self.path + JOURNAL_SUFFIX) if _exists(p)]
        left = self._lock_left_behind()
        if left is not None:
            evidence.append(f"{self._lock.path} (left by {left.operation} of {left.who})")
        if not evidence:
            return
        restore = (
            f"restore it with: cp {self.backup_location} {self.path}; "
            if _exists(self.backup_location)
            else ""
        )
        raise StateError(
            f"the state file {self.path} is missing, but {', '.join(evidence)} "
            f"say{'s' if len(evidence) == 1 else ''} a state existed: refusing to start from an "
            f"empty state (every chat would be created again)",
            hint=f"check --state (or PROVISION_STATE) names the right file; {restore}"
            f"to start afresh on purpose, move those files out of the way first",
        )

    def _lock_left_behind(self) -> LockInfo | None:
        """The lock file of a run that had found a state (ours, when we hold it, says what we
        took over)."""
        held = self._lock.held
        try:
            info = self._lock.read() if held is None else self._took_over
        except StateError:
            return None
        if info is None or not info.state_existed:
            return None
        return info

    def _backup(self) -> None:
        """Make ``<state>.backup`` the version about to be replaced.

        A hard link costs no copy (the old inode stays as the backup when the state is
        replaced); filesystems without links get a copy instead.
        """
        if not os.path.exists(self.path):
            return
        backup = self.backup_location
        other = _peek_lineage(backup)
        if other is not None and self._lineage is not None and other != self._lineage:
            raise StateError(
                f"refusing to replace {backup}: it holds another state (lineage {other}, this "
                f"one is {self._lineage}); a backup of another lineage is never overwritten",
                hint=f"nothing was changed; move {backup} away if it is not needed",
            )
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
        if _exists(self.path + JOURNAL_SUFFIX) and os.path.exists(self.backup_location):
            # The journal continues this file, not the backup: putting the backup back alone
            # would leave a journal no state continues.
            return (
                "provision changed nothing; `provision state repair` (same --state) rebuilds "
                f"it from {self.backup_location}, the readable part of this file and the "
                "journal, keeping a copy of this file"
            )
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


def _exists(path: str) -> bool:
    return os.path.lexists(path)


def _peek_lineage(path: str) -> str | None:
    """The lineage of the state file at ``path`` from its first 4 KiB (None when there is no
    file or no lineage there)."""
    try:
        with open(path, "rb") as f:
            return lineage_of(f.read(4096))
    except OSError:
        return None
