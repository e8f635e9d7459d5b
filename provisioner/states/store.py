"""Where state lives: the ``StateStore`` protocol and ``open_store`` for a ``--state`` value
(a local file, or Azure Blob Storage imported on demand).
"""

from __future__ import annotations

import contextlib
from typing import Protocol

from provisioner.errors import StateError
from provisioner.states.local import LocalStateStore
from provisioner.states.lock import LockInfo
from provisioner.states.records import State


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


def open_store(spec: str, endpoint: str | None = None, *, lock_timeout: float = 0.0) -> StateStore:
    """The store for a ``--state`` value: a local path, or ``azblob://ACCOUNT/CONTAINER/PATH``
    (Azure Blob Storage, issue 9; ``endpoint``, else env ``PROVISION_STATE_ENDPOINT``, overrides
    the account's public endpoint, e.g. for Azurite or a national cloud). ``lock_timeout``:
    seconds ``lock()`` waits for another run's lock (``--lock-timeout``)."""
    if spec.lower().startswith("azblob://"):
        # Imported on demand: the Azure SDK is the optional extra teams-provision[azure], and a
        # clear error says to install it (raised by the import).
        from provisioner.states.azblob import open_azblob_store

        return open_azblob_store(spec, endpoint, lock_timeout=lock_timeout)
    if "://" in spec:
        scheme = spec.split("://", 1)[0]
        raise StateError(f"unsupported state location {spec!r}: {scheme}:// is not supported")
    return LocalStateStore(spec, lock_timeout=lock_timeout)


def force_unlock(store: StateStore, lock_id: str) -> LockInfo:
    """Remove the store's lock if its ID is ``lock_id``; returns what was removed."""
    return store.force_unlock(lock_id)
