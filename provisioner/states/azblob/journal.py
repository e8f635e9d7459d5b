"""The journal of an ``azblob://`` state: an append blob ``PATH.journal`` beside the state blob.

Each group commit is one Append Block (durable when the service answers, Azure Storage "Append
Block"), made only while this run holds the state blob's lease (the lock: ``states.azblob.lock``)
and conditional on the append position this run expects (``If-Append-Position-Equal``), so a
run that lost its lock, or a second writer, cannot interleave records: its append is refused
(412) and it stops. A block holds at most 4 MiB; a bigger group commit is several blocks, and a
run killed between them leaves a torn last record, which the checksum catches.

A blob cannot be replaced atomically by a new append blob (creating it empties it before the
first block lands), so ``atomic_reset`` is False: the journal writer holds appends while it
writes a compacted state, and an empty or missing journal after a compaction loses nothing.
Imported by ``states.azblob.store`` once it has checked that the Azure SDK is installed.
"""

from __future__ import annotations

import contextlib

from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.storage.blob import BlobClient

from provisioner.errors import LockError
from provisioner.states.azblob.conn import BlobLocation
from provisioner.states.azblob.errors import RERUN_PLAN, raise_if_no_container, sdk_errors
from provisioner.states.azblob.lease import error_code
from provisioner.states.azblob.lock import BlobLock

# Azure Storage "Append Block": at most 4 MiB per block (the limit every service version and
# Azurite accept).
MAX_BLOCK = 4 * 1024 * 1024


class BlobJournalFile:
    """``JournalFile`` on an append blob (see the module docstring)."""

    atomic_reset = False

    def __init__(
        self, where: BlobLocation, blob: BlobClient, lock: BlobLock, endpoint: str = ""
    ) -> None:
        self._where = where
        self._blob = blob
        self._lock = lock
        self._endpoint = endpoint
        self._size: int | None = None  # the append position this run expects

    @property
    def location(self) -> str:
        return str(self._where)

    def read(self) -> bytes | None:
        with sdk_errors(self.location, self._endpoint, "read the journal of"):
            try:
                raw = self._blob.download_blob().readall()
            except ResourceNotFoundError as exc:
                raise_if_no_container(self._where, exc)
                return None
            return bytes(raw)

    def append(self, data: bytes) -> None:
        with sdk_errors(self.location, self._endpoint, "append to the journal of"):
            self._lock.check()
            if self._size is None:
                self._size = int(self._blob.get_blob_properties().size)
            for start in range(0, len(data), MAX_BLOCK):
                block = data[start : start + MAX_BLOCK]
                try:
                    self._blob.append_block(block, appendpos_condition=self._size)
                except HttpResponseError as exc:
                    self._refused(exc)
                self._size += len(block)

    def reset(self, data: bytes) -> None:
        with sdk_errors(self.location, self._endpoint, "start the journal of"):
            self._lock.check()
            self._blob.create_append_blob()
            self._size = 0
        self.append(data)

    def remove(self) -> None:
        with sdk_errors(self.location, self._endpoint, "remove the journal of"):
            with contextlib.suppress(ResourceNotFoundError):
                self._blob.delete_blob()
            self._size = None

    def keep(self, data: bytes, suffix: str) -> str:
        where = f"{self.location}{suffix}"
        with sdk_errors(where, self._endpoint, "write"):
            # The container's client carries the journal's credential and pipeline (a SAS
            # token stays in the query string, not glued to the name).
            container = self._blob._get_container_client()
            copy = container.get_blob_client(self._blob.blob_name + suffix)
            copy.upload_blob(data, overwrite=True)
        return where

    def _refused(self, exc: HttpResponseError) -> None:
        self._size = None
        if exc.status_code == 412:
            raise LockError(
                f"the journal {self.location} was changed by another writer "
                f"({error_code(exc)}); this run's change was not recorded",
                hint=RERUN_PLAN,
            ) from exc
        raise exc
