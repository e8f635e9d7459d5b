"""Deterministic crash points for ``provision apply`` (issue 21), as SQLite's I/O-error tests:
count every durable write (lock, state write, backup, journal reset/append/remove) and every
Graph request of a run; run again with the Nth of them failing or stopping the "process",
for N = 1, 2, ... until a run meets no Nth point; after each, rerun and check the tenant.

Two kinds of injection, each before or after the operation itself:

- ``stop``: the process dies there. From that point on every durable write and every request
  raises `Killed` (a BaseException, so no ``except Exception`` recovers from it), and the lock
  is let go the way the kernel does it for a killed process (the file stays). Whatever the
  in-process code still runs on its way out cannot change anything a next run sees, which is
  what makes an in-process run stand in for ``kill -9``.
- ``fail``: only the Nth operation fails (an ``OSError`` for a write: ENOSPC before, EIO from
  the fsync after; a request is refused before it is sent, or its answer is lost after Graph
  did the work), and the run goes on as it would.

Runs are in-process, one worker (``--concurrency 1``), so the Nth point is the same one in
every run.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from provisioner.graph import batch, pacing, retry
from provisioner.graph import client as graph_client
from provisioner.graph.retry import TransportFailure
from provisioner.states import journal_local, local, lock

STOP, FAIL = "stop", "fail"
BEFORE, AFTER = "before", "after"


class Killed(BaseException):
    """The simulated ``kill -9``: raised at the injected point and at every durable operation
    after it."""


@dataclass
class Injector:
    """Counts the crash points of one run and fires at the ``target``-th (None: never)."""

    target: int | None = None
    kind: str = STOP
    when: str = BEFORE
    count: int = 0
    dead: bool = False
    fired: str | None = None  # the label of the point that fired
    labels: list[str] = field(default_factory=list)
    # Only Graph requests are points (durable writes run as they are): to fail requests only.
    requests_only: bool = False

    def point(self, label: str, op: Callable[[], Any], fail: Callable[[Any], Any]) -> Any:
        """Run ``op`` (one durable write or request) as crash point number ``count + 1``;
        ``fail(op)`` is what a ``fail`` injection does instead."""
        if self.dead:
            raise Killed(f"after {self.fired}")
        if self.requests_only and not label.startswith(("GET ", "POST ", "PATCH ", "DELETE ")):
            return op()
        self.count += 1
        self.labels.append(label)
        if self.count != self.target:
            return op()
        self.fired = f"{self.kind} {self.when} #{self.count} {label}"
        if self.kind == FAIL:
            return fail(op)
        if self.when == AFTER:
            op()
        self.dead = True
        raise Killed(self.fired)


#: The system calls a durable write makes; ``fail before`` makes the first of them fail
#: (ENOSPC: nothing of this write is on storage), ``fail after`` its first fsync (EIO: the
#: data went out but is not known to be durable), inside the operation, so the code's own
#: error handling is what is tested.
_WRITES = ("write", "ftruncate", "fsync", "fdatasync", "link", "replace", "unlink")
_SYNCS = ("fsync", "fdatasync")


def _os_failure(inj: Injector) -> Callable[[Callable[[], Any]], Any]:
    names = _WRITES if inj.when == BEFORE else _SYNCS
    code = errno.ENOSPC if inj.when == BEFORE else errno.EIO

    def fail(op: Callable[[], Any]) -> Any:
        failed = False
        with pytest.MonkeyPatch.context() as mp:
            for name in names:
                real = getattr(os, name, None)
                if real is None:
                    continue

                def once(*args: Any, _real: Any = real) -> Any:
                    nonlocal failed
                    if failed:
                        return _real(*args)
                    failed = True
                    raise OSError(code, os.strerror(code))

                mp.setattr(os, name, once)
            return op()

    return fail


@contextlib.contextmanager
def injected(monkeypatch: pytest.MonkeyPatch, inj: Injector) -> Iterator[Injector]:
    """Route the run's durable writes and Graph requests through ``inj``."""
    fail = _os_failure(inj)

    def wrap(owner: Any, name: str, label: str) -> None:
        real = getattr(owner, name)

        def patched(*args: Any, **kwargs: Any) -> Any:
            return inj.point(label, lambda: real(*args, **kwargs), fail)

        monkeypatch.setattr(owner, name, patched)

    wrap(local, "write_atomic", "state write")
    wrap(local.LocalStateStore, "_backup", "backup")
    wrap(journal_local, "write_atomic", "journal reset")
    wrap(journal_local.LocalJournalFile, "append", "journal append")
    wrap(journal_local.LocalJournalFile, "remove", "journal remove")
    wrap(lock.FileLock, "_take", "lock")
    real_release = lock.FileLock.release

    def release(self: lock.FileLock, lock_id: str) -> bool:
        if not inj.dead:
            return real_release(self, lock_id)
        # Killed: the kernel drops the OS lock and closes the file; the lock file stays.
        fd, self._fd, self._held = self._fd, None, None
        if fd is not None:
            lock._os_unlock(fd)
            os.close(fd)
        return True

    monkeypatch.setattr(lock.FileLock, "release", release)
    real_fetch = graph_client.fetch

    def fetch(session: Any, method: str, url: str, **kwargs: Any) -> Any:
        path = url.split("/v1.0", 1)[-1].split("?", 1)[0]
        parts = path.strip("/").split("/")
        label = f"{method} {'/chats' if path.startswith('/chats') else path.split('/')[1]}"
        if parts[0] == "chats" and len(parts) > 2:  # a chat's apps, tabs, members: by kind
            label = f"{method} /chats/{{}}/{parts[2]}"

        def lost(op: Callable[[], Any]) -> TransportFailure:
            # Before: refused, Graph saw nothing. After: Graph did the work, the answer is lost.
            if inj.when == BEFORE:
                return TransportFailure(sent=False, reason="connection refused (injected)")
            op()
            return TransportFailure(sent=True, reason="connection dropped (injected)")

        return inj.point(label, lambda: real_fetch(session, method, url, **kwargs), lost)

    monkeypatch.setattr(graph_client, "fetch", fetch)
    # A refused request or a lost answer is retried after the client's backoff (up to 0.5 s
    # at first, jittered); how long is not what these tests check, what is retried is.
    real_backoff = pacing.backoff_delay

    def short_backoff(attempt: int, **kwargs: Any) -> float:
        return real_backoff(attempt, base=0.005, **kwargs)

    monkeypatch.setattr(retry, "backoff_delay", short_backoff)
    monkeypatch.setattr(batch, "backoff_delay", short_backoff)
    yield inj
