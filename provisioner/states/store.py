"""Where state lives: the ``StateStore`` protocol, ``JournaledStore`` (a store with its
write-ahead journal, ``states.journal``) and ``open_store`` for a ``--state`` value (a local
file, or Azure Blob Storage imported on demand).
"""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING, Protocol

from provisioner.errors import StateError
from provisioner.states.journal import (
    JOURNAL_SUFFIX,
    JournalFile,
    LocalJournalFile,
    marker,
    parse,
    replay,
)
from provisioner.states.local import LocalStateStore
from provisioner.states.lock import LockInfo
from provisioner.states.records import State

if TYPE_CHECKING:
    from provisioner.signin.chooser import SignIn


class StateStore(Protocol):
    """Where state lives. ``LocalStateStore`` is the file; issue 9 adds Azure Blob Storage.

    - ``read()`` returns the state, or an empty one (``exists`` False, serial 0, a fresh
      lineage) when there is none yet; raises StateError for anything unreadable.
    - ``write(state)`` persists ``state`` with ``serial + 1`` (and sets ``state.serial``), keeping
      the previous version as a backup; refuses another lineage than the one it read.
    - ``lock(operation)`` holds the store's lock for a ``with`` block.
    """

    @property
    def location(self) -> str: ...

    @property
    def backup_location(self) -> str: ...

    def read(self) -> State: ...

    def write(self, state: State) -> None: ...

    def lock(self, operation: str) -> contextlib.AbstractContextManager[LockInfo]: ...

    def current_lock(self) -> LockInfo | None: ...

    def force_unlock(self, lock_id: str) -> LockInfo: ...

    def confirm_lock(self) -> None:
        """Refuse (LockError) unless this run still holds the lock, asking the service where
        the lock can be taken away (a blob lease broken by ``force-unlock`` or the portal)."""
        ...


class JournaledStore:
    """A ``StateStore`` with the journal a run appends its changes to.

    ``read()`` returns the state with any journal a killed run left replayed into it (in
    memory: the files are not changed), so plan, ``state list/show`` and import see every
    change that run made durable. ``write(state)`` writes the whole state, which absorbs the
    journal: a ``compact`` marker first (so a crash before the journal is gone cannot replay
    it twice), then the state, then the journal is removed. A run's own appends and
    compactions go through ``states.journal_writer.JournalWriter``.
    """

    def __init__(self, inner: StateStore, journal: JournalFile) -> None:
        self.inner = inner
        self.journal = journal
        self.leftover = False  # the last read found a journal (a killed run's)
        self.replayed = 0  # how many of its records were applied
        self.read_seconds = 0.0  # what the last read of the state took (a compaction's cost)

    @property
    def location(self) -> str:
        return self.inner.location

    @property
    def backup_location(self) -> str:
        return self.inner.backup_location

    def read(self) -> State:
        started = time.perf_counter()
        state = self.inner.read()
        self.read_seconds = time.perf_counter() - started
        raw = self.journal.read()
        self.leftover = raw is not None
        self.replayed = 0
        if raw:
            parsed = parse(raw, self.journal.location)
            self.replayed = replay(state, parsed, self.journal.location, self.location)
        return state

    def write(self, state: State) -> None:
        raw = self.journal.read()
        if raw is None:
            self.inner.write(state)
            return
        if not self.leftover:
            raise StateError(
                f"refusing to write {self.location}: its journal {self.journal.location} "
                "appeared after this command read the state",
                hint="another run may be using the state; run the command again",
            )
        self.seal(state.serial + 1, raw)
        self.inner.write(state)
        self.journal.remove()
        self.leftover = False

    def seal(self, serial: int, raw: bytes | None = None) -> None:
        """Make durable that the state about to be written as ``serial`` holds the journal
        (``raw``: its bytes, read if not given). After a torn tail, the marker says where that
        tail lies, so it is not mistaken for damage in the middle of the journal."""
        raw = self.journal.read() if raw is None else raw
        parsed = parse(raw or b"", self.journal.location)
        if parsed.header is None:
            return  # empty, or torn before its header was durable: nothing in it to absorb
        torn = (parsed.end, parsed.dropped) if parsed.dropped else None
        self.journal.append(marker(serial, torn))

    def lock(self, operation: str) -> contextlib.AbstractContextManager[LockInfo]:
        return self.inner.lock(operation)

    def current_lock(self) -> LockInfo | None:
        return self.inner.current_lock()

    def force_unlock(self, lock_id: str) -> LockInfo:
        return self.inner.force_unlock(lock_id)

    def confirm_lock(self) -> None:
        self.inner.confirm_lock()


def local_store(path: str, *, lock_timeout: float = 0.0) -> JournaledStore:
    """The local state file ``path`` with its journal ``path.journal`` (beside the file a
    symlink points to: one journal whatever the spelling, as for the backup and the lock)."""
    inner = LocalStateStore(path, lock_timeout=lock_timeout)
    return JournaledStore(inner, LocalJournalFile(inner.path + JOURNAL_SUFFIX))


def open_store(
    spec: str,
    endpoint: str | None = None,
    *,
    lock_timeout: float = 0.0,
    sign_in: SignIn | None = None,
) -> JournaledStore:
    """The store for a ``--state`` value: a local path, or ``azblob://ACCOUNT/CONTAINER/PATH``
    (Azure Blob Storage, issue 9; ``endpoint``, else env ``PROVISION_STATE_ENDPOINT``, overrides
    the account's public endpoint, e.g. for Azurite or a national cloud). ``lock_timeout``:
    seconds ``lock()`` waits for another run's lock (``--lock-timeout``). ``sign_in``: the
    run's ``--auth`` and ``--cloud``, which the blob signs in with too (None: the
    environment's)."""
    if spec.lower().startswith("azblob://"):
        # Imported on demand: the Azure SDK is the optional extra teams-provision[azure], and a
        # clear error says to install it (raised by the import).
        from provisioner.states.azblob.store import open_azblob_store

        store = open_azblob_store(spec, endpoint, lock_timeout=lock_timeout, sign_in=sign_in)
        return JournaledStore(store, store.journal_file())
    if "://" in spec:
        scheme = spec.split("://", 1)[0]
        raise StateError(f"unsupported state location {spec!r}: {scheme}:// is not supported")
    return local_store(spec, lock_timeout=lock_timeout)


def force_unlock(store: StateStore, lock_id: str) -> LockInfo:
    """Remove the store's lock if its ID is ``lock_id``; returns what was removed."""
    return store.force_unlock(lock_id)
