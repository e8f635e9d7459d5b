"""The lock of an ``azblob://`` state: a lease on the state blob, with its details in metadata.

Only the lease holder can write a leased blob (the service refuses writes without the lease ID),
and the lock details (ID, operation, who, pid, created) are kept in the blob's metadata for the
next run to show. The lease is never infinite: it lasts ``lease_seconds`` (at most 60, the
longest finite lease), a ``LeaseKeeper`` renews it every third of that, and a killed run simply
stops renewing, so its lock expires by itself within a minute. Imported by ``states.azblob.store``
once it has checked that the Azure SDK (the ``azure`` extra) is installed.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable
from typing import Any, NoReturn

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
)
from azure.storage.blob import BlobClient, BlobLeaseClient

from provisioner.errors import LockError
from provisioner.states.azblob.conn import BlobLocation
from provisioner.states.azblob.errors import RERUN_PLAN, raise_if_no_container
from provisioner.states.azblob.lease import (
    LOCK_METADATA_KEY,
    LeaseKeeper,
    decode_lock,
    encode_lock,
)
from provisioner.states.lock import LockInfo, new_lock_info

# Azure Storage "Lease Blob": a finite lease lasts 15 to 60 seconds.
MIN_LEASE_SECONDS, MAX_LEASE_SECONDS = 15, 60
UNKNOWN_LOCK_ID = "unknown"


class BlobLock:
    """The lease a run holds on the state blob (``lease`` is None when not locked)."""

    def __init__(
        self, where: BlobLocation, blob: BlobClient, lease_seconds: int, lock_timeout: float
    ) -> None:
        self._where = where
        self._blob = blob
        self.lease_seconds = lease_seconds
        self.lock_timeout = lock_timeout
        self.lease: BlobLeaseClient | None = None
        self.metadata: dict[str, str] | None = None
        self.info: LockInfo | None = None
        self.keeper: LeaseKeeper | None = None

    @property
    def location(self) -> str:
        return str(self._where)

    def acquire(self, operation: str, create_placeholder: Callable[[], None]) -> tuple[str, str]:
        """Take the lease (waiting up to ``lock_timeout``) and set the lock details; returns
        the blob's ETag before and after the details were set."""
        if self.lease is not None:
            raise LockError(f"this run already holds the lock on {self.location}")
        info = new_lock_info(operation, self.location)
        lease_id = str(uuid.uuid4())  # private to this run; the lock ID shown is info.id
        deadline = time.monotonic() + self.lock_timeout
        while True:
            try:
                lease = self._blob.acquire_lease(self.lease_seconds, lease_id)
                break
            except ResourceNotFoundError as exc:
                # A missing blob cannot be leased: an empty placeholder reads as "no state".
                raise_if_no_container(self._where, exc)
                create_placeholder()
            except ResourceExistsError as exc:  # 409: LeaseAlreadyPresent / breaking
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self.raise_locked(exc)
                time.sleep(min(2.0, remaining))
        metadata = {LOCK_METADATA_KEY: encode_lock(info)}
        try:
            response = self._blob.set_blob_metadata(metadata, lease=lease)
        except BaseException:
            with contextlib.suppress(AzureError):
                lease.release()
            raise
        self.lease, self.metadata, self.info = lease, metadata, info
        self.keeper = LeaseKeeper(lease, self.lease_seconds)
        self.keeper.start()
        return str(lease.etag), str(response["etag"])

    def release(self, etag: str | None) -> str | None:
        """Clear the lock details and release the lease (best effort: if this fails, the
        lease expires within ``lease_seconds`` anyway, and the run's own outcome matters more).
        Returns the blob's new ETag when our metadata change went onto version ``etag``."""
        lease, keeper = self.lease, self.keeper
        self.lease = self.keeper = self.metadata = self.info = None
        if lease is None or keeper is None:
            return None
        keeper.stop()
        after = None
        with contextlib.suppress(AzureError):
            if etag is not None:
                # Clear our lock details; conditional so we follow only our own change.
                response = self._blob.set_blob_metadata(
                    {}, lease=lease, etag=etag, match_condition=MatchConditions.IfNotModified
                )
                after = str(response["etag"])
            else:
                self._blob.set_blob_metadata({}, lease=lease)
        with contextlib.suppress(AzureError):
            lease.release()
        return after

    def check(self) -> None:
        """Refuse to write once the keeper has lost the lease."""
        if self.keeper is not None and self.keeper.lost:
            raise LockError(
                f"this run lost its lock on {self.location}: {self.keeper.lost}; "
                "nothing was written",
                hint=RERUN_PLAN,
            )

    def force_unlock(self, lock_id: str) -> LockInfo:
        props = self.properties()
        holder = self.holder_from(props) if props is not None else None
        if holder is None or props is None:
            raise LockError(f"the state {self.location} is not locked")
        if holder.id != lock_id:
            raise LockError(
                f"lock ID {lock_id} does not match the lock on {self.location}:\n"
                f"{holder.describe()}",
                hint="pass the ID shown above, after making sure that run is really gone",
            )
        try:
            # Conditional on the ETag we just saw: a new holder sets its own details
            # (a new ETag), so a lock that changed hands in between is never broken.
            BlobLeaseClient(self._blob).break_lease(
                lease_break_period=0,
                etag=props.etag,
                match_condition=MatchConditions.IfNotModified,
            )
        except HttpResponseError as exc:
            if exc.status_code in (409, 412):
                raise LockError(
                    f"the lock on {self.location} changed while removing it; retry"
                ) from exc
            raise
        return holder

    def holder(self, *, retry_without_details: bool) -> LockInfo | None:
        props = self.properties()
        holder = self.holder_from(props) if props is not None else None
        if retry_without_details and holder is not None and holder.id == UNKNOWN_LOCK_ID:
            # A holder sets its details right after taking the lease: look once more.
            time.sleep(0.5)
            props = self.properties()
            holder = self.holder_from(props) if props is not None else None
        return holder

    def properties(self) -> Any:
        try:
            return self._blob.get_blob_properties()
        except ResourceNotFoundError as exc:
            raise_if_no_container(self._where, exc)
            return None

    def holder_from(self, props: Any) -> LockInfo | None:
        if props.lease.state not in ("leased", "breaking"):
            return None  # available, expired or broken: not locked, whatever the metadata says
        info = decode_lock(props.metadata or {})
        if info is None:
            return LockInfo(
                id=UNKNOWN_LOCK_ID,
                operation="unknown",
                who="unknown (the blob is leased without provision lock details)",
                pid=0,
                created="unknown",
                host="",
                version="",
                path=self.location,
            )
        return info

    def raise_locked(self, exc: HttpResponseError) -> NoReturn:
        holder = self.holder(retry_without_details=True)
        if holder is None:  # released between our attempt and the look: say so, not "locked"
            raise LockError(
                f"could not lock {self.location}: the lock changed hands, retry"
            ) from exc
        waited = (
            f"waited {self.lock_timeout:g}s (--lock-timeout), but " if self.lock_timeout else ""
        )
        raise LockError(
            f"{waited}the state {self.location} is locked by another run:\n{holder.describe()}",
            hint=(
                "the lock is a blob lease that its run renews while it lasts: if that run was "
                f"killed, the lease expires within {MAX_LEASE_SECONDS} s and the next run "
                "proceeds; if it hangs, stop it or run: "
                f"provision force-unlock {holder.id}"
            ),
        ) from exc
