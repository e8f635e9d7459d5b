"""``BlobLock.confirm`` (issue 20, item 5) without a storage service: what a refused and a
failed renewal do. The end-to-end case (a force-unlock during an apply, against Azurite) is
``tests/apply/test_apply_lease.py``."""

from __future__ import annotations

import pytest

pytest.importorskip("azure.storage.blob")

from azure.core.exceptions import HttpResponseError, ServiceRequestError

from provisioner.errors import LockError
from provisioner.states.azblob.conn import BlobLocation
from provisioner.states.azblob.lease import LeaseKeeper
from provisioner.states.azblob.lock import BlobLock


class Lease:
    def __init__(self, *answers: Exception | None) -> None:
        self.answers = list(answers)
        self.renewals = 0

    def renew(self) -> None:
        self.renewals += 1
        answer = self.answers.pop(0) if self.answers else None
        if answer is not None:
            raise answer


def locked(lease: Lease) -> BlobLock:
    lock = BlobLock(BlobLocation("acct", "c", "s.json"), None, 15, 0.0)  # type: ignore[arg-type]
    lock.lease = lease  # type: ignore[assignment]
    lock.keeper = LeaseKeeper(lease, 15)  # type: ignore[arg-type]  # never started
    return lock


def refused(status: int) -> HttpResponseError:
    error = HttpResponseError(message="refused")
    error.status_code = status
    return error


def test_a_broken_lease_is_lost_for_good() -> None:
    lock = locked(Lease(refused(409)))
    with pytest.raises(LockError, match="lost its lock"):
        lock.confirm()
    assert lock.keeper is not None and lock.keeper.lost
    with pytest.raises(LockError, match="lost its lock"):
        lock.check()  # every later write (a journal append) is refused too


def test_an_unanswered_renewal_refuses_this_creation_only() -> None:
    lease = Lease(ServiceRequestError("no route"), refused(503), None)
    lock = locked(lease)
    for _ in range(2):
        with pytest.raises(LockError, match="could not confirm"):
            lock.confirm()
    lock.confirm()  # answered: the lease is still ours
    assert lease.renewals == 3 and lock.keeper is not None and lock.keeper.lost is None


def test_nothing_to_confirm_without_a_lock() -> None:
    lock = BlobLock(BlobLocation("acct", "c", "s.json"), None, 15, 0.0)  # type: ignore[arg-type]
    lock.confirm()
