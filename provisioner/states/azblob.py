"""State in Azure Blob Storage: ``--state azblob://ACCOUNT/CONTAINER/PATH``.

The same ``StateStore`` interface as the local file (``provisioner.state``), on the service's
own primitives, as Terraform's ``azurerm`` backend does:

- **Lock = a lease on the state blob.** Only the lease holder can then write the blob (the
  service refuses writes without the lease ID), and the lock details (ID, operation, who, pid,
  created) are kept in the blob's metadata for the next run to show. Unlike Terraform, the
  lease is never infinite: it lasts ``lease_seconds`` (at most 60, the longest finite lease),
  a background thread renews it every third of that, and a killed run simply stops renewing, so
  its lock expires by itself within a minute (Terraform #24078-style stuck locks cannot happen).
  A missing blob cannot be leased, so locking first creates an empty placeholder blob, which
  reads as "no state yet".
- **Writes are conditional on the ETag** the store last read or wrote (``If-Match``; creating the
  first state uses ``If-None-Match: *``), so no run overwrites a state it has not read. Our own
  metadata changes (lock details) change the ETag too; the store follows them only when the blob
  had not changed in between.
- **Backup:** before each write, a server-side copy of the version being replaced goes to
  ``PATH.backup`` (Azurite has no blob versioning, and a copy works on every account). The copy
  is conditional on the same ETag, so the backup is exactly the version the write replaces.

Secrets: the credential lives only in the SDK client; messages name the account, container and
blob, never a key, SAS or URL query (transport errors are described by their type only).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from typing import Any, NoReturn

from provisioner.errors import AuthError, LockError, ProvisionError, StateError
from provisioner.states.azblob_conn import (
    INSTALL_HINT,
    BlobLocation,
    Connection,
    connection_for,
    parse_azblob_url,
)
from provisioner.states.lock import LockHeld, LockInfo
from provisioner.states.records import BACKUP_SUFFIX, State, decode_state

try:
    from azure.core import MatchConditions
    from azure.core.exceptions import (
        AzureError,
        ClientAuthenticationError,
        HttpResponseError,
        ResourceExistsError,
        ResourceNotFoundError,
    )
    from azure.storage.blob import (
        BlobClient,
        BlobLeaseClient,
        BlobServiceClient,
        ContentSettings,
        ExponentialRetry,
    )
except ImportError as exc:  # the optional extra is not installed
    raise ProvisionError(
        "azblob:// state needs the Azure SDK (azure-storage-blob is not installed)",
        hint=INSTALL_HINT,
    ) from exc

# After the check above: this module needs the SDK too.
from provisioner.states.azblob_lease import (
    LOCK_METADATA_KEY,
    LeaseKeeper,
    decode_lock,
    encode_lock,
    error_code,
    new_lock_info,
)

DEFAULT_LEASE_SECONDS = 60
# Azure Storage "Lease Blob": a finite lease lasts 15 to 60 seconds.
MIN_LEASE_SECONDS, MAX_LEASE_SECONDS = 15, 60
UNKNOWN_LOCK_ID = "unknown"
_AUTH_HINT = (
    "check AZURE_STORAGE_CONNECTION_STRING / AZURE_STORAGE_KEY / AZURE_STORAGE_SAS_TOKEN, or "
    "that the Azure AD identity has the Storage Blob Data Contributor role on the container"
)
_HINT_LATER = "\x00restore hint\x00"
_JSON = ContentSettings(content_type="application/json; charset=utf-8")


class StateConflictError(StateError):
    """The state blob changed since this store read it: the write was refused, nothing changed."""


class AzureBlobStateStore:
    """A state blob in Azure Blob Storage (or Azurite). See the module docstring."""

    def __init__(
        self,
        location: BlobLocation,
        blob: BlobClient,
        backup: BlobClient,
        *,
        lease_seconds: int = DEFAULT_LEASE_SECONDS,
        lock_timeout: float = 0.0,
        endpoint: str = "",
    ) -> None:
        if not MIN_LEASE_SECONDS <= lease_seconds <= MAX_LEASE_SECONDS:
            raise ProvisionError(
                f"lease duration must be {MIN_LEASE_SECONDS}-{MAX_LEASE_SECONDS} s, "
                f"not {lease_seconds}"
            )
        self._where = location
        self._blob = blob
        self._backup_blob = backup
        self._endpoint = endpoint
        self.lease_seconds = lease_seconds
        self.lock_timeout = lock_timeout
        self._mutex = threading.RLock()
        # The version of the blob this store last read or wrote: ETag (None: absent), size,
        # lineage and serial. ``_serial`` None means "never read".
        self._etag: str | None = None
        self._size = 0
        self._lineage: str | None = None
        self._serial: int | None = None
        self._previous: bytes | None = None  # bytes of that version, for the backup fallback
        # While locked:
        self._lease: BlobLeaseClient | None = None
        self._lock_metadata: dict[str, str] | None = None
        self._info: LockInfo | None = None
        self._keeper: LeaseKeeper | None = None

    # --- StateStore -------------------------------------------------------------------------

    @property
    def location(self) -> str:
        return str(self._where)

    @property
    def backup_location(self) -> str:
        return str(self._where.sibling(BACKUP_SUFFIX))

    def read(self) -> State:
        with self._mutex, self._errors("read"):
            try:
                download = self._blob.download_blob()
                raw = download.readall()
            except ResourceNotFoundError as exc:
                self._raise_if_no_container(exc)
                self._remember(None, b"", None, 0)
                return State()
            etag = download.properties.etag
            if not raw:  # the placeholder a lock creates: no state yet
                self._remember(etag, raw, None, 0)
                return State()
            # Remember the version before decoding, so an explicit write can replace an
            # unreadable state (keeping it as the backup), as the local store allows.
            self._remember(etag, raw, None, None)
            try:
                state = decode_state(raw, self.location, _HINT_LATER)
            except StateError as err:
                if err.hint != _HINT_LATER:
                    raise
                # Only now look for a backup to point at (a request the normal path saves).
                raise StateError(err.message, hint=self._restore_hint()) from err
            self._remember(etag, raw, state.lineage, state.serial)
            return state

    def write(self, state: State) -> None:
        with self._mutex, self._errors("write"):
            self._check_history(state)
            self._check_lease()
            new_serial = state.serial + 1
            data = state.encode(serial=new_serial)
            if self._etag is not None and self._size:
                self._backup()
            options: dict[str, Any] = {"content_settings": _JSON}
            if self._lease is not None:
                # Put Blob replaces metadata: carry the lock details over.
                options.update(lease=self._lease, metadata=self._lock_metadata)
            if self._etag is None:
                options["overwrite"] = False  # If-None-Match: *
            else:
                options.update(
                    overwrite=True, etag=self._etag, match_condition=MatchConditions.IfNotModified
                )
            try:
                response = self._blob.upload_blob(data, **options)
            except HttpResponseError as exc:
                self._raise_write_error(exc)
            self._remember(response["etag"], data, state.lineage, new_serial)
            state.serial = new_serial
            state.exists = True

    def lock(self, operation: str) -> contextlib.AbstractContextManager[LockInfo]:
        return self._hold(operation)

    def current_lock(self) -> LockInfo | None:
        with self._errors("read the lock of"):
            return self._holder(retry_without_details=False)

    def force_unlock(self, lock_id: str) -> LockInfo:
        with self._errors("unlock"):
            props = self._properties()
            holder = self._holder_from(props) if props is not None else None
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

    # --- locking ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _hold(self, operation: str) -> Iterator[LockInfo]:
        info = self._acquire(operation)
        try:
            yield info
        finally:
            self._release()

    def _acquire(self, operation: str) -> LockInfo:
        with self._mutex, self._errors("lock"):
            if self._lease is not None:
                raise LockError(f"this run already holds the lock on {self.location}")
            info = new_lock_info(operation, self.location)
            lease_id = str(uuid.uuid4())  # private to this run; the lock ID shown is info.id
            deadline = time.monotonic() + self.lock_timeout
            while True:
                try:
                    lease = self._blob.acquire_lease(self.lease_seconds, lease_id)
                    break
                except ResourceNotFoundError as exc:
                    self._raise_if_no_container(exc)
                    self._create_placeholder()
                except ResourceExistsError as exc:  # 409: LeaseAlreadyPresent / breaking
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        self._raise_locked(exc)
                    time.sleep(min(2.0, remaining))
            metadata = {LOCK_METADATA_KEY: encode_lock(info)}
            try:
                response = self._blob.set_blob_metadata(metadata, lease=lease)
            except BaseException:
                with contextlib.suppress(AzureError):
                    lease.release()
                raise
            self._follow(lease.etag, str(response["etag"]))
            self._lease = lease
            self._lock_metadata = metadata
            self._info = info
            self._keeper = LeaseKeeper(lease, self.lease_seconds)
            self._keeper.start()
            return info

    def _release(self) -> None:
        with self._mutex:
            lease, keeper = self._lease, self._keeper
            self._lease = self._keeper = self._lock_metadata = self._info = None
            if lease is None or keeper is None:
                return
            keeper.stop()
            # Best effort: if this fails (network, lease already broken), the lease expires
            # within lease_seconds anyway, and the core must not mask the run's own outcome.
            with contextlib.suppress(AzureError):
                before = self._etag
                if before is not None:
                    # Clear our lock details; conditional so we follow only our own change.
                    response = self._blob.set_blob_metadata(
                        {}, lease=lease, etag=before, match_condition=MatchConditions.IfNotModified
                    )
                    self._follow(before, str(response["etag"]))
                else:
                    self._blob.set_blob_metadata({}, lease=lease)
            with contextlib.suppress(AzureError):
                lease.release()

    def _create_placeholder(self) -> None:
        try:
            response = self._blob.upload_blob(b"", overwrite=False, content_settings=_JSON)
        except ResourceExistsError:
            return  # another run created it first
        if self._etag is None and self._serial is not None:
            # We had read "no state"; the placeholder is our own empty version of that.
            self._etag = response["etag"]

    def _check_lease(self) -> None:
        if self._keeper is not None and self._keeper.lost:
            raise LockError(
                f"this run lost its lock on {self.location}: {self._keeper.lost}; "
                "nothing was written",
                hint="another run may have taken over the state; re-run plan",
            )

    def _holder(self, *, retry_without_details: bool) -> LockInfo | None:
        props = self._properties()
        holder = self._holder_from(props) if props is not None else None
        if retry_without_details and holder is not None and holder.id == UNKNOWN_LOCK_ID:
            # A holder sets its details right after taking the lease: look once more.
            time.sleep(0.5)
            props = self._properties()
            holder = self._holder_from(props) if props is not None else None
        return holder

    def _properties(self) -> Any:
        try:
            return self._blob.get_blob_properties()
        except ResourceNotFoundError as exc:
            self._raise_if_no_container(exc)
            return None

    def _holder_from(self, props: Any) -> LockInfo | None:
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

    def _raise_locked(self, exc: HttpResponseError) -> NoReturn:
        holder = self._holder(retry_without_details=True)
        if holder is None:  # released between our attempt and the look: say so, not "locked"
            raise LockError(
                f"could not lock {self.location}: the lock changed hands, retry"
            ) from exc
        waited = (
            f"waited {self.lock_timeout:g}s (--lock-timeout), but " if self.lock_timeout else ""
        )
        raise LockHeld(
            f"{waited}the state {self.location} is locked by another run:\n{holder.describe()}",
            hint=(
                "the lock is a blob lease that its run renews while it lasts: if that run was "
                f"killed, the lease expires within {MAX_LEASE_SECONDS} s and the next run "
                "proceeds; if it hangs, stop it or run: "
                f"provision force-unlock {holder.id}"
            ),
        ) from exc

    # --- writing ----------------------------------------------------------------------------

    def _check_history(self, state: State) -> None:
        """Same rules as the local store: never read -> read first; refuse another lineage
        or an older serial than what this store last saw."""
        if self._serial is None:
            with contextlib.suppress(StateError):
                self.read()
        if self._lineage is not None and state.lineage != self._lineage:
            raise StateError(
                f"refusing to write state of lineage {state.lineage} over {self.location}, "
                f"which holds lineage {self._lineage} (a different state)"
            )
        if self._serial is not None and self._lineage is not None and state.serial < self._serial:
            raise StateError(
                f"refusing to write an older state (serial {state.serial}) over "
                f"{self.location} (serial {self._serial})"
            )

    def _backup(self) -> None:
        """Copy the version about to be replaced to ``PATH.backup`` (server side)."""
        try:
            response = self._backup_blob.start_copy_from_url(
                self._blob.url,
                source_etag=self._etag,
                source_match_condition=MatchConditions.IfNotModified,
            )
        except HttpResponseError as exc:
            if exc.status_code == 412:
                self._raise_write_error(exc)
            if exc.status_code in (401, 403) and self._previous is not None:
                # Some credentials cannot authorise a server-side copy source (e.g. a SAS
                # without read permission): upload the bytes we already hold instead.
                self._backup_blob.upload_blob(
                    self._previous, overwrite=True, content_settings=_JSON
                )
                return
            raise
        status = response.get("copy_status")
        deadline = time.monotonic() + 60
        # A same-account copy of a small blob normally completes at once; a pending copy must
        # finish before the source is overwritten, or the service aborts it.
        while status == "pending" and time.monotonic() < deadline:
            time.sleep(0.2)
            status = self._backup_blob.get_blob_properties().copy.status
        if status != "success":
            raise StateError(
                f"could not back up {self.location} to {self.backup_location} "
                f"(copy status {status}); nothing was written"
            )

    def _raise_write_error(self, exc: HttpResponseError) -> NoReturn:
        """Explain a refused write (or backup copy). Nothing was written in any case.

        The lock is the likelier story than a bare ETag mismatch: a run that lost its lease,
        or that writes while another run holds the lock, is told who holds it now.
        """
        code = error_code(exc)
        refused = exc.status_code in (409, 412)
        if refused and self._info is not None:  # we were holding the lock
            holder = self._holder(retry_without_details=True)
            if holder is None or holder.id != self._info.id:
                now = f"; it is now held by:\n{holder.describe()}" if holder else ""
                raise LockError(
                    f"this run lost its lock on {self.location} ({code}); nothing was written{now}",
                    hint="another run may have taken over the state; re-run plan",
                ) from exc
        elif refused:
            holder = self._holder(retry_without_details=True)
            if holder is not None:
                raise LockError(
                    f"the state {self.location} is locked by another run:\n{holder.describe()}",
                    hint="nothing was written; run again when that run has finished",
                ) from exc
        if code in ("ConditionNotMet", "SourceConditionNotMet", "BlobAlreadyExists"):
            self._raise_conflict(exc)
        if code.startswith(("Lease", "lease")):
            raise LockError(
                f"the lock on {self.location} changed during this write ({code}); nothing was "
                "written",
                hint="another run may have taken over the state; re-run plan",
            ) from exc
        raise exc

    def _raise_conflict(self, exc: HttpResponseError) -> NoReturn:
        raise StateConflictError(
            f"the state {self.location} was changed by someone else since this run read it "
            f"(ETag {self._etag or 'none: it did not exist'}); nothing was written",
            hint="another run or person wrote it; run plan again to see the current state",
        ) from exc

    # --- bookkeeping ------------------------------------------------------------------------

    def _remember(
        self, etag: str | None, raw: bytes, lineage: str | None, serial: int | None
    ) -> None:
        self._etag, self._size, self._previous = etag, len(raw), raw or None
        self._lineage, self._serial = lineage, serial

    def _follow(self, before: str | None, after: str) -> None:
        """Adopt the ETag of our own metadata change if the blob was the version we knew."""
        if before is not None and self._etag == before:
            self._etag = after

    def _restore_hint(self) -> str:
        try:
            has_backup = self._backup_blob.exists()
        except AzureError:
            has_backup = False
        if has_backup:
            return (
                f"the previous version is in {self.backup_location}: after checking it, copy "
                "it over the state blob (e.g. az storage blob copy start)"
            )
        return "no backup exists; fix or delete the blob by hand (provision changed nothing)"

    def _raise_if_no_container(self, exc: HttpResponseError) -> None:
        if error_code(exc) == "ContainerNotFound":
            raise StateError(
                f"the container {self._where.container!r} does not exist in storage account "
                f"{self._where.account!r} (state {self.location})",
                hint="create it first (e.g. az storage container create); provision does not "
                "create containers",
            ) from exc

    @contextlib.contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        """Turn SDK errors that are not handled above into ProvisionErrors without secrets."""
        try:
            yield
        except ProvisionError:
            raise
        except ClientAuthenticationError as exc:
            raise AuthError(
                f"access to {self.location} was refused "
                f"({error_code(exc) or exc.status_code or type(exc).__name__})",
                hint=_AUTH_HINT,
            ) from exc
        except HttpResponseError as exc:
            if exc.status_code in (401, 403):
                raise AuthError(
                    f"access to {self.location} was refused (HTTP {exc.status_code} "
                    f"{error_code(exc)})".replace(" )", ")"),
                    hint=_AUTH_HINT,
                ) from exc
            raise StateError(
                f"could not {action} the state {self.location}: HTTP {exc.status_code} "
                f"{error_code(exc)}".rstrip()
            ) from exc
        except AzureError as exc:  # transport: no response (DNS, refused, TLS, timeout)
            where = f" at {self._endpoint}" if self._endpoint else ""
            raise StateError(
                f"could not {action} the state {self.location}: the storage service{where} "
                f"did not answer ({type(exc).__name__})",
                hint="check the account name, --state-endpoint and the network",
            ) from exc


def open_azblob_store(
    spec: str,
    endpoint: str | None = None,
    *,
    env: Mapping[str, str] | None = None,
    lease_seconds: int = DEFAULT_LEASE_SECONDS,
    lock_timeout: float = 0.0,
    retry_total: int = 3,
) -> AzureBlobStateStore:
    """The store for ``azblob://ACCOUNT/CONTAINER/PATH``; ``endpoint`` (else env
    ``PROVISION_STATE_ENDPOINT``) overrides the account's public endpoint (Azurite, national
    clouds, private endpoints). Credentials come from the environment, see ``connection_for``.
    """
    location = parse_azblob_url(spec)
    conn: Connection = connection_for(location, endpoint, os.environ if env is None else env)
    service = BlobServiceClient(
        conn.account_url,
        credential=conn.credential,
        # The SDK's default retry waits 15 s and more between tries; a CLI wants to know
        # sooner. Transient 5xx and connection errors are still retried with backoff.
        retry_policy=ExponentialRetry(initial_backoff=1, increment_base=3, retry_total=retry_total),
        connection_timeout=20,
        read_timeout=60,
    )
    container = service.get_container_client(location.container)
    return AzureBlobStateStore(
        location,
        container.get_blob_client(location.blob),
        container.get_blob_client(location.blob + BACKUP_SUFFIX),
        lease_seconds=lease_seconds,
        lock_timeout=lock_timeout,
        endpoint=conn.account_url,
    )
