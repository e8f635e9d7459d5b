"""The device-code sign-in's token cache (it holds a refresh token): encrypted at rest with
msal-extensions where the platform allows (Windows DPAPI, the macOS keychain, libsecret on
Linux), else a plain file readable only by the user, with a warning saying so (issue 25).

msal-extensions comes with the ``azure`` extra (Azure Identity needs it too), so encryption
costs no new dependency; without it, or without a keyring (a headless Linux box), the cache
is the 0600 file it always was, and the warning names why.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from provisioner.fsutil import write_atomic

log = logging.getLogger("provision.auth")


class TokenCache:
    """An MSAL token cache and how it is kept: ``encrypted`` (msal-extensions persists it on
    every change) or a plain private file (`save` writes it when it changed)."""

    def __init__(self, cache: Any, path: Path, *, encrypted: bool) -> None:
        self.cache = cache
        self.path = path
        self.encrypted = encrypted

    def save(self) -> None:
        if self.encrypted or not self.cache.has_state_changed:
            return
        try:
            write_private_file(self.path, self.cache.serialize())
            self.cache.has_state_changed = False
        except OSError as exc:
            log.warning("could not save the token cache %s: %s", self.path, exc)


def open_token_cache(path: Path, warn: Callable[[str], None] | None = None) -> TokenCache:
    """The cache at ``path``: encrypted (``path`` with the suffix ``.encrypted``) when
    msal-extensions and the platform's keyring are there, else plain, with ``warn`` told."""
    reason = _why_not_encrypted()
    if reason is None:
        encrypted = _encrypted(path.with_suffix(".encrypted"))
        if isinstance(encrypted, TokenCache):
            return encrypted
        reason = encrypted
    message = (
        f"the device-code token cache {path} is not encrypted ({reason}); it is a file only "
        "you can read"
    )
    log.warning(message)
    if warn is not None:
        warn(f"warning: {message}")
    return _plain(path)


def _why_not_encrypted() -> str | None:
    try:
        import msal_extensions  # noqa: F401
    except ImportError:
        return "msal-extensions is not installed: pip install 'teams-provision[azure]'"
    return None


def _encrypted(location: Path) -> TokenCache | str:
    """The encrypted cache, or why the platform cannot have one."""
    import msal_extensions
    from msal_extensions.persistence import PersistenceNotFound

    location.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        persistence = msal_extensions.build_encrypted_persistence(str(location))
        # A trial: a keyring that is not running fails here; nothing saved yet is fine.
        with contextlib.suppress(PersistenceNotFound):
            persistence.load()
        cache = msal_extensions.PersistedTokenCache(persistence)
    except Exception as exc:  # ImportError (no PyGObject), keyring errors, RuntimeError
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"no encryption on this platform: {first}"
    return TokenCache(cache, location, encrypted=True)


def _plain(path: Path) -> TokenCache:
    import msal

    cache = msal.SerializableTokenCache()
    try:
        cache.deserialize(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        pass
    except (OSError, ValueError) as exc:
        log.warning("ignoring unreadable token cache %s: %s", path, exc)
    return TokenCache(cache, path, encrypted=False)


def write_private_file(path: Path, text: str) -> None:
    """Write atomically with mode 0600, in a directory only the user can enter."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_atomic(path, text.encode("utf-8"))
