"""The blob lease behind an ``azblob://`` state's lock: renewal and the lock details.

Azure Storage "Lease Blob": a finite lease lasts 15-60 s and must be renewed to be kept; while
leased, writes need the lease ID. The lock's details (Terraform's ``LockInfo``: ID, operation,
who, pid, created) travel in the blob's metadata so the next run can say who holds it.
Imported by ``state_azblob`` once it has checked that the Azure SDK (the ``azure`` extra) is
installed.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Mapping

from azure.core.exceptions import AzureError, HttpResponseError
from azure.storage.blob import BlobLeaseClient

from provisioner.states.lock import LockInfo

LOCK_METADATA_KEY = "provisionlock"


def error_code(exc: HttpResponseError) -> str:
    # The storage SDK attaches the service's x-ms-error-code to the exception it raises.
    code = getattr(exc, "error_code", None)
    return str(getattr(code, "value", code) or "")


class LeaseKeeper:
    """Renews a lease every ``seconds / 3`` until stopped; records why if the lease is lost.

    A renewal that fails for a transient reason (network, 5xx) is retried every 2 s until the
    lease would have expired; a refusal (the lease was broken or taken over) stops at once.
    """

    def __init__(self, lease: BlobLeaseClient, seconds: int) -> None:
        self._lease = lease
        self._seconds = seconds
        self._stop = threading.Event()
        self.lost: str | None = None
        self.renewals = 0
        self._thread = threading.Thread(
            target=self._run, name="provision-lease-renewal", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        interval = self._seconds / 3
        last_ok = time.monotonic()
        wait = interval
        while not self._stop.wait(wait):
            try:
                self._lease.renew()
            except HttpResponseError as exc:
                status = exc.status_code or 0
                if 400 <= status < 500 and status != 408:
                    self.lost = f"the lease was broken or taken over ({error_code(exc) or status})"
                    return
                reason = f"HTTP {status}"
            except AzureError as exc:  # no answer: network, timeout
                reason = type(exc).__name__
            else:
                last_ok = time.monotonic()
                self.renewals += 1
                wait = interval
                continue
            if time.monotonic() - last_ok >= self._seconds:
                self.lost = f"could not renew the lease for {self._seconds} s ({reason})"
                return
            wait = min(interval, 2.0)


def encode_lock(info: LockInfo) -> str:
    # Metadata values travel as HTTP headers: ASCII only, so the JSON goes base64-encoded
    # (a user or host name may not be ASCII). Terraform's azurerm backend does the same.
    return base64.b64encode(info.to_json().encode("utf-8")).decode("ascii")


def decode_lock(metadata: Mapping[str, str]) -> LockInfo | None:
    raw = metadata.get(LOCK_METADATA_KEY)
    if not raw:
        return None
    try:
        return LockInfo.from_json(base64.b64decode(raw, validate=True).decode("utf-8"))
    except (ValueError, KeyError, TypeError):
        return None
