"""State in Azure Blob Storage: ``--state azblob://ACCOUNT/CONTAINER/PATH``.

The same ``StateStore`` interface as the local file (``states.local``), on the service's own
primitives, as Terraform's ``azurerm`` backend does:

- **Lock = a lease on the state blob** (``states.azblob.lock``): only the lease holder can write
  the blob, the lock details live in its metadata, and the lease is renewed while the run lasts
  and expires by itself within a minute when the run is killed (Terraform #24078-style stuck
  locks cannot happen). A missing blob cannot be leased, so locking first creates an empty
  placeholder blob, which reads as "no state yet".
- **Writes are conditional on the ETag** the store last read or wrote (``If-Match``; creating the
  first state uses ``If-None-Match: *``), so no run overwrites a state it has not read. Our own
  metadata changes (lock details) change the ETag too; the store follows them only when the blob
  had not changed in between.
- **Backup:** before each write, a server-side copy of the version being replaced goes to
  ``PATH.backup`` (Azurite has no blob versioning, and a copy works on every account). The copy
  is conditional on the same ETag, so the backup is exactly the version the write replaces.

- **Journal:** a run's changes go to ``PATH.journal``, an append blob (``states.azblob.journal``).

Secrets: the credential lives only in the SDK client; messages name the account, container and
blob, never a key, SAS or URL query (``states.azblob.errors``).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any, NoReturn

from provisioner.errors import LockError, ProvisionError, StateError
from provisioner.signin.chooser import SignIn
from provisioner.signin.sessions import NoNetrc
from provisioner.states.azblob.conn import (
    INSTALL_HINT,
    BlobLocation,
    Connection,
    connection_for,
    parse_azblob_url,
)
from provisioner.states.codec import decode_state
from provisioner.states.journal import JOURNAL_SUFFIX
from provisioner.states.lock import LockInfo
from provisioner.states.records import BACKUP_SUFFIX, State

try:
    from azure.core import MatchConditions
    from azure.core.exceptions import (
        AzureError,
        HttpResponseError,
        ResourceExistsError,
        ResourceNotFoundError,
    )
    from azure.core.pipeline.transport import RequestsTransport
    from azure.storage.blob import BlobClient, BlobServiceClient, ContentSettings, ExponentialRetry
except ImportError as exc:  # the optional extra is not installed
    raise ProvisionError(
        "azblob:// state needs the Azure SDK (azure-storage-blob is not installed)",
        hint=INSTALL_HINT,
    ) from exc

# After the check above: these modules need the SDK too.
from provisioner.states.azblob.errors import (
    RERUN_PLAN,
    StateConflictError,
    conflict,
    raise_if_no_container,
    sdk_errors,
)
from provisioner.states.azblob.journal import BlobJournalFile
from provisioner.states.azblob.lease import LeaseKeeper, error_code
from provisioner.states.azblob.lock import MAX_LEASE_SECONDS, MIN_LEASE_SECONDS, BlobLock

__all__ = ["AzureBlobStateStore", "StateConflictError", "open_azblob_store"]

DEFAULT_LEASE_SECONDS = 60
_HINT_LATER = "\x00restore hint\x00"
_JSON = ContentSettings(content_type="application/json; charset=utf-8")


class AzureBlobStateStore:
    """A state blob in Azure Blob Storage (or Azurite). See the module docstring."""

    def __init__(
        self,
        location: BlobLocation,
        blob: BlobClient,
        backup: BlobClient,
        journal: BlobClient,
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
        self._lock = BlobLock(location, blob, lease_seconds, lock_timeout)
        self._journal = journal
        self._mutex = threading.RLock()
        # The version of the blob this store last read or wrote: ETag (None: absent), size,
        # lineage and serial. ``_serial`` None means "never read".
        self._etag: str | None = None
        self._size = 0
        self._lineage: str | None = None
        self._serial: int | None = None
        self._previous: bytes | None = None  # bytes of that version, for the backup fallback

    @property
    def lease_seconds(self) -> int:
        return self._lock.lease_seconds

    @property
    def lock_timeout(self) -> float:
        return self._lock.lock_timeout

    @property
    def _keeper(self) -> LeaseKeeper | None:
        return self._lock.keeper

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
                raise_if_no_container(self._where, exc)
                self._refuse_if_backup()
                self._remember(None, b"", None, 0)
                return State()
            etag = download.properties.etag
            if not raw:  # the placeholder a lock creates: no state yet
                self._refuse_if_backup()
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
            self._lock.check()
            new_serial = state.serial + 1
            data = state.encode(serial=new_serial)
            if self._etag is not None and self._size:
                self._backup()
            options: dict[str, Any] = {"content_settings": _JSON}
            if self._lock.lease is not None:
                # Put Blob replaces metadata: carry the lock details over.
                options.update(lease=self._lock.lease, metadata=self._lock.metadata)
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
            return self._lock.holder(retry_without_details=False)

    def force_unlock(self, lock_id: str) -> LockInfo:
        with self._errors("unlock"):
            return self._lock.force_unlock(lock_id)

    def confirm_lock(self) -> None:
        """Refuse (LockError) unless the service confirms this run still holds the lease."""
        with self._errors("confirm the lock on"):
            self._lock.confirm()

    def journal_file(self) -> BlobJournalFile:
        """``PATH.journal``: an append blob written under this store's lock."""
        where = self._where.sibling(JOURNAL_SUFFIX)
        return BlobJournalFile(where, self._journal, self._lock, self._endpoint)

    # --- locking ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _hold(self, operation: str) -> Iterator[LockInfo]:
        with self._mutex, self._errors("lock"):
            before, after = self._lock.acquire(operation, self._create_placeholder)
            self._follow(before, after)
            assert self._lock.info is not None
            info = self._lock.info
        try:
            yield info
        finally:
            with self._mutex:
                known = self._etag
                cleared = self._lock.release(known)
                if cleared is not None:
                    self._follow(known, cleared)

    def _create_placeholder(self) -> None:
        try:
            response = self._blob.upload_blob(b"", overwrite=False, content_settings=_JSON)
        except ResourceExistsError:
            return  # another run created it first
        if self._etag is None and self._serial is not None:
            # We had read "no state"; the placeholder is our own empty version of that.
            self._etag = response["etag"]

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
        mine = self._lock.info
        if refused and mine is not None:  # we were holding the lock
            holder = self._lock.holder(retry_without_details=True)
            if holder is None or holder.id != mine.id:
                now = f"; it is now held by:\n{holder.describe()}" if holder else ""
                raise LockError(
                    f"this run lost its lock on {self.location} ({code}); nothing was written{now}",
                    hint=RERUN_PLAN,
                ) from exc
        elif refused:
            holder = self._lock.holder(retry_without_details=True)
            if holder is not None:
                raise LockError(
                    f"the state {self.location} is locked by another run:\n{holder.describe()}",
                    hint="nothing was written; run again when that run has finished",
                ) from exc
        if code in ("ConditionNotMet", "SourceConditionNotMet", "BlobAlreadyExists"):
            raise conflict(self.location, self._etag, exc)
        if code.startswith(("Lease", "lease")):
            raise LockError(
                f"the lock on {self.location} changed during this write ({code}); nothing was "
                "written",
                hint=RERUN_PLAN,
            ) from exc
        raise exc

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

    def _refuse_if_backup(self) -> None:
        """No state, but its backup: a state existed (issue 15). Refuse rather than start
        empty and create every chat again (and later replace that backup)."""
        if self._backup_blob.exists():
            raise StateError(
                f"the state {self.location} is missing, but {self.backup_location} says a state "
                f"existed: refusing to start from an empty state (every chat would be created "
                f"again)",
                hint="check --state names the right blob; restore the backup by copying it over "
                "the state blob (e.g. az storage blob copy start), or, to start afresh on "
                "purpose, delete the backup blob first",
            )

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

    def _errors(self, action: str) -> contextlib.AbstractContextManager[None]:
        return sdk_errors(self.location, self._endpoint, action)


class _Transport(RequestsTransport):  # type: ignore[misc, unused-ignore]  # the SDK is untyped here
    """The SDK's transport, whose requests session never reads ``~/.netrc``: an entry for the
    storage host (or a ``default`` entry) would replace the SDK's ``Authorization`` header
    (psf/requests#3929): every request refused with 403, and the netrc password sent to the
    endpoint. Proxies and the CA bundle still come from the environment."""

    def _init_session(self, session: Any) -> None:
        super()._init_session(session)
        session.auth = NoNetrc()


def open_azblob_store(
    spec: str,
    endpoint: str | None = None,
    *,
    env: Mapping[str, str] | None = None,
    lease_seconds: int = DEFAULT_LEASE_SECONDS,
    lock_timeout: float = 0.0,
    retry_total: int = 3,
    sign_in: SignIn | None = None,
) -> AzureBlobStateStore:
    """The store for ``azblob://ACCOUNT/CONTAINER/PATH``; ``endpoint`` (else env
    ``PROVISION_STATE_ENDPOINT``) overrides the account's public endpoint (Azurite, national
    clouds, private endpoints). Credentials come from the environment, see ``connection_for``.
    """
    location = parse_azblob_url(spec)
    environ = os.environ if env is None else env
    conn: Connection = connection_for(location, endpoint, environ, sign_in)
    service = BlobServiceClient(
        conn.account_url,
        credential=conn.credential,
        # The SDK's default retry waits 15 s and more between tries; a CLI wants to know
        # sooner. Transient 5xx and connection errors are still retried with backoff.
        retry_policy=ExponentialRetry(initial_backoff=1, increment_base=3, retry_total=retry_total),
        # Given a transport, the SDK passes it none of these: its own default transport is
        # made with them (azure-storage-blob, StorageAccountHostsMixin._create_pipeline; its
        # DATA_BLOCK_SIZE is 256 KiB in azure-storage-blob 12.x).
        transport=_Transport(
            connection_timeout=20, read_timeout=60, connection_data_block_size=256 * 1024
        ),
    )
    container = service.get_container_client(location.container)
    return AzureBlobStateStore(
        location,
        container.get_blob_client(location.blob),
        container.get_blob_client(location.blob + BACKUP_SUFFIX),
        container.get_blob_client(location.blob + JOURNAL_SUFFIX),
        lease_seconds=lease_seconds,
        lock_timeout=lock_timeout,
        endpoint=conn.account_url,
    )
