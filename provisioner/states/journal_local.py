"""The journal of a local state: ``<state>.journal`` (see ``states.journal`` for its records)."""

from __future__ import annotations

import os

from provisioner.errors import StateError
from provisioner.fsutil import write_atomic


class LocalJournalFile:
    """``<state>.journal``: appended with ``O_APPEND`` and made durable with ``fdatasync``;
    ``reset`` is an atomic write (temp file, fsync, rename)."""

    atomic_reset = True

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None

    @property
    def location(self) -> str:
        return self.path

    def read(self) -> bytes | None:
        try:
            with open(self.path, "rb") as f:
                return f.read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StateError(f"cannot read the journal {self.path}: {exc.strerror}") from exc

    def append(self, data: bytes) -> None:
        try:
            if self._fd is None:
                self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view) :]
            _sync(self._fd)
        except OSError as exc:
            raise StateError(
                f"cannot write the journal {self.path}: {exc.strerror or exc}",
                hint="the changes made so far are in the state or in the journal",
            ) from exc

    def reset(self, data: bytes) -> None:
        self.close()
        try:
            write_atomic(self.path, data)
        except OSError as exc:
            raise StateError(f"cannot write the journal {self.path}: {exc.strerror}") from exc

    def remove(self) -> None:
        self.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise StateError(f"cannot remove the journal {self.path}: {exc.strerror}") from exc

    def keep(self, data: bytes, suffix: str) -> str:
        try:
            write_atomic(self.path + suffix, data)
        except OSError as exc:
            raise StateError(f"cannot write {self.path + suffix}: {exc.strerror}") from exc
        return self.path + suffix

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)


def _sync(fd: int) -> None:
    # fdatasync: the file's data and size, without the metadata an append does not need.
    sync = getattr(os, "fdatasync", os.fsync)
    sync(fd)
