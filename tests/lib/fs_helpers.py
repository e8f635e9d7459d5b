"""Test helpers shared by the state, lock, plan and CLI tests."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest


@pytest.fixture
def make_readonly(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[Path], None]]:
    """Make a directory read-only: nothing can be created in it any more.

    chmod alone does not stop root (CI containers often run as root), so creating files in it
    through ``os.open`` (which is how provision creates every file) is refused too, as the
    kernel would for anyone else.
    """
    made: list[Path] = []
    real_open = os.open

    def guarded_open(path, flags, *args, **kwargs):
        parent = Path(os.fspath(path)).absolute().parent
        if flags & os.O_CREAT and parent in made:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fspath(path))
        return real_open(path, flags, *args, **kwargs)

    def make(directory: Path) -> None:
        directory = directory.absolute()
        made.append(directory)
        directory.chmod(stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP)
        monkeypatch.setattr(os, "open", guarded_open)

    yield make
    for directory in made:
        directory.chmod(0o755)


def snapshot(directory: Path) -> dict[str, bytes]:
    """Every file in ``directory`` with its bytes, to prove nothing changed."""
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


#: The password of `netrc_with_default`'s entry: it must reach no request.
NETRC_PASSWORD = "netrc-password-42"


def netrc_with_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A ``.netrc`` whose ``default`` entry matches every host, named by ``NETRC`` (where
    ``requests`` looks first): what a session that trusts it would send as Basic credentials
    in place of the request's own ``Authorization`` (psf/requests#3929)."""
    netrc = tmp_path / "netrc"
    netrc.write_text(f"default login someone password {NETRC_PASSWORD}\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
