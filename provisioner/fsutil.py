"""Small filesystem and network helpers shared by the state, plan, token-cache and emulator files.

One atomic write for every file provision owns, so a crash at any instant leaves either the old
content or the new, never a mix: temp file in the same directory (so ``os.replace`` is a rename
on one filesystem), fsync, ``os.replace``, fsync the directory. New files are created 0600
because state, plans and token caches describe a tenant and must not be world-readable; a file
that exists keeps its owner, and a state its mode too (a 0644 state shared by a team stays so,
even when root rewrites it). Temp files a killed run left are swept by ``sweep_temp_files``
under the lock.

``loads_json`` is ``json.loads`` with bounds, for every file provision reads back: NaN and
infinity are refused, integers are limited to 20 digits and nesting depth to what the parser
survives, each as a ValueError instead of an exception the CLI would report as a bug.
"""

from __future__ import annotations

import contextlib
import glob
import ipaddress
import json
import os
import stat
from collections.abc import Callable
from typing import Any

#: Longest integer literal accepted in a file we read (serials, pids, format versions).
MAX_INT_DIGITS = 20


class NotRegularFile(OSError):
    """A path provision reads whole names a FIFO, a device or a socket: reading one hangs
    (a FIFO with no writer) or never ends (``/dev/zero``)."""


class FileTooLarge(OSError):
    """A file is larger than what provision reads of it."""


def special_file(path: str | os.PathLike[str]) -> str | None:
    """What ``path`` is when it exists and is neither a regular file nor a directory (``a
    FIFO``, ``a device``, ``a socket``), else None. Symlinks are followed."""
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return None
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    return "a socket" if stat.S_ISSOCK(mode) else "a device"


def read_regular(path: str | os.PathLike[str], *, limit: int) -> bytes:
    """The whole of the regular file ``path``, refusing anything else and more than ``limit``
    bytes. Raises what ``open`` raises (FileNotFoundError, IsADirectoryError...),
    `NotRegularFile` or `FileTooLarge`; never blocks on a FIFO (opened non-blocking, then
    refused)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | getattr(os, "O_NONBLOCK", 0))
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(21, "Is a directory", os.fspath(path))
        if not stat.S_ISREG(mode):
            raise NotRegularFile(f"{os.fspath(path)} is not a regular file")
        chunks, size = [], 0
        while chunk := os.read(fd, 1 << 20):
            size += len(chunk)
            if size > limit:
                raise FileTooLarge(f"{os.fspath(path)} is larger than {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


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
    keep_mode: bool = False,
) -> None:
    """Replace ``path`` with ``data`` atomically, mode 0600; an existing file keeps its owner,
    and with ``keep_mode`` its mode too (the state: a team may share it 0640 on purpose; a
    plan or token cache is always made private again).

    ``before_replace`` runs after the new content is durable and before the rename (the state
    store keeps its backup there). OSError propagates; the temp file never outlives a failure.
    """
    import tempfile  # here, not at the top: `provision --help` never writes a file

    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    try:
        old: os.stat_result | None = os.stat(path)
    except OSError:
        old = None
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:  # mkstemp creates the file 0600
            if old is not None:
                keep_mode_and_owner(f.fileno(), old, mode=keep_mode)
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


def keep_mode_and_owner(fd: int, old: os.stat_result, *, mode: bool = True) -> None:
    """Give the file open as ``fd`` the owner (and ``mode``: the mode) of ``old``, as far as
    we may."""
    if mode and hasattr(os, "fchmod"):
        with contextlib.suppress(OSError):
            os.fchmod(fd, old.st_mode & 0o7777)
    if hasattr(os, "fchown"):
        mine = os.fstat(fd)
        if (mine.st_uid, mine.st_gid) != (old.st_uid, old.st_gid):
            with contextlib.suppress(OSError):  # only root may give a file away
                os.fchown(fd, old.st_uid, old.st_gid)


def temp_files_of(path: str | os.PathLike[str]) -> list[str]:
    """Temp files ``write_atomic`` (or the backup beside ``path``) may leave when killed."""
    path = os.path.abspath(os.fspath(path))
    directory, name = os.path.split(path)
    pattern = glob.escape(name)
    found = glob.glob(os.path.join(glob.escape(directory), f".{pattern}.*.tmp"))
    found += glob.glob(os.path.join(glob.escape(directory), f"{pattern}.*.tmp"))
    return sorted(set(found))


def sweep_temp_files(*paths: str | os.PathLike[str]) -> int:
    """Remove what killed runs left beside ``paths``; call it holding their lock (no live
    writer then exists). Returns how many files were removed."""
    removed = 0
    for path in paths:
        for tmp in temp_files_of(path):
            with contextlib.suppress(OSError):
                os.unlink(tmp)
                removed += 1
    return removed


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number provision writes")


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise ValueError(f"a number of {len(text)} digits is out of range")
    return int(text)


def loads_json(raw: str | bytes) -> Any:
    """``json.loads`` with bounds (see the module docstring); ValueError for what is refused
    (json.JSONDecodeError, its subclass, for malformed text)."""
    try:
        return json.loads(raw, parse_constant=_no_constant, parse_int=_bounded_int)
    except RecursionError as exc:
        raise ValueError("nested too deeply") from exc


def is_loopback_host(host: str) -> bool:
    """127.0.0.0/8, ::1 or localhost: the only hosts plain http:// is accepted for."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
