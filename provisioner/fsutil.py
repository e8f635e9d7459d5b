"""Small filesystem and network helpers shared by the state, plan, token-cache and emulator files.

One atomic write for every file provision owns, so a crash at any instant leaves either the old
content or the new, never a mix: temp file in the same directory (so ``os.replace`` is a rename
on one filesystem), fsync, ``os.replace``, fsync the directory. Files are created 0600 because
state, plans and token caches describe a tenant and must not be world-readable.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
from collections.abc import Callable


def fsync_dir(directory: str | os.PathLike[str]) -> None:
    """Make a rename in ``directory`` durable; silently skipped where the platform can't."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_atomic(
    path: str | os.PathLike[str],
    data: bytes,
    *,
    before_replace: Callable[[], None] | None = None,
) -> None:
    """Replace ``path`` with ``data`` atomically, mode 0600.

    ``before_replace`` runs after the new content is durable and before the rename (the state
    store keeps its backup there). OSError propagates; the temp file never outlives a failure.
    """
    import tempfile  # here, not at the top: `provision --help` never writes a file

    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:  # mkstemp creates the file 0600
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if before_replace is not None:
            before_replace()
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(directory)


def is_loopback_host(host: str) -> bool:
    """127.0.0.0/8, ::1 or localhost: the only hosts plain http:// is accepted for."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
