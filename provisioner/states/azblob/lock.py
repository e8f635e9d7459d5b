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
import threading
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
    error_code,
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
        # ``confirm``: asked / answered tickets, the last answer (its last ticket, its error).
        self._confirm = threading.Condition()
        self._asked = self._answered = 0
        self._confirming = False
        self._failure: tuple[int, LockError | None] = (0, None)

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

    def confirm(self) -> None:
        """Refuse (LockError) unless the service confirms, now, that this run holds the lease.

        Called before each ``POST /chats`` (issue 20): the keeper renews only every third of
        the lease, so after a ``force-unlock`` (or a break in the portal) it may take 20 s to
        notice, and every creation sent meanwhile races the run that took over. A renewal is
        the confirmation: Azure Storage "Lease Blob" refuses to renew a broken lease or one
        another client holds (409), and renews an expired one nobody took. Callers that ask
        while a confirmation is in flight wait for the next one (one request serves them all,
        as the journal's group commit does), never for one that started before they asked.
        """
        self.check()
        with self._confirm:
            self._asked += 1
            ticket = self._asked
            while self._answered < ticket:
                if self._confirming:
                    self._confirm.wait()
                    continue
                self._confirming, upto = True, self._asked
                self._confirm.release()
                try:
                    failure = self._renew_now()
                finally:
                    self._confirm.acquire()
                    self._confirming = False
                    self._confirm.notify_all()
                self._answered, self._failure = upto, (upto, failure)
            done, failure = self._failure
            if failure is not None and ticket <= done:
                raise failure

    def _renew_now(self) -> LockError | None:
        lease, keeper = self.lease, self.keeper
        if lease is None or keeper is None:
            return None  # not locked by this run: nothing to confirm
        try:
            lease.renew()
        except HttpResponseError as exc:
            status = exc.status_code or 0
            if 400 <= status < 500 and status != 408:
                keeper.lost = f"the lease was broken or taken over ({error_code(exc) or status})"
                return self._lost_error(keeper.lost)
            reason = f"HTTP {status}"
        except AzureError as exc:  # no answer: network, timeout
            reason = type(exc).__name__
        else:
            return None
        return LockError(
            f"could not confirm this run still holds its lock on {self.location} ({reason}); "
            "no chat was created after that",
            hint=RERUN_PLAN,
        )

    def _lost_error(self, why: str) -> LockError:
        return LockError(
            f"this run lost its lock on {self.location}: {why}; nothing was written",
            hint=RERUN_PLAN,
        )

    def check(self) -> None:
        """Refuse to write once the keeper has lost the lease."""
        if self.keeper is not None and self.keeper.lost:
            raise self._lost_error(self.keeper.lost)

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
