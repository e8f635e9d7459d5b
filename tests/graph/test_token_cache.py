"""The device-code token cache (issue 25, item 3): encrypted with msal-extensions where the
platform can, else the private plain file with a warning that says why."""

from __future__ import annotations

import stat
import sys
from pathlib import Path

import pytest

from provisioner.signin.token_cache import open_token_cache


def test_without_a_keyring_the_cache_is_a_private_file_and_a_warning_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    msal_extensions = pytest.importorskip("msal_extensions")

    def unavailable(location: str) -> None:
        raise ImportError("Unable to import module 'gi'\nRuntime dependency ...")

    monkeypatch.setattr(msal_extensions, "build_encrypted_persistence", unavailable)
    path = tmp_path / "provision/msal_token_cache.json"
    warned: list[str] = []
    cache = open_token_cache(path, warn=warned.append)
    assert not cache.encrypted
    (warning,) = warned
    assert "is not encrypted (no encryption on this platform: Unable to import module 'gi')" in (
        warning
    )
    cache.cache.add({"client_id": "c", "scope": ["s"], "token_endpoint": "https://l/t",
                     "response": {"access_token": "at", "refresh_token": "rt-secret",
                                  "expires_in": 3600}})  # fmt: skip
    cache.save()
    assert "rt-secret" in path.read_text()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_with_a_keyring_the_cache_is_kept_by_msal_extensions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    msal_extensions = pytest.importorskip("msal_extensions")
    used: list[str] = []

    def keyring(location: str) -> object:
        used.append(location)  # the platform's encrypted persistence, stood in for by a file
        return msal_extensions.FilePersistence(location)

    monkeypatch.setattr(msal_extensions, "build_encrypted_persistence", keyring)
    path = tmp_path / "provision/msal_token_cache.json"
    warned: list[str] = []
    cache = open_token_cache(path, warn=warned.append)
    assert cache.encrypted and warned == []
    assert used == [str(tmp_path / "provision/msal_token_cache.encrypted")]
    cache.cache.add({"client_id": "c", "scope": ["s"], "token_endpoint": "https://l/t",
                     "response": {"access_token": "at", "refresh_token": "rt",
                                  "expires_in": 3600}})  # fmt: skip
    cache.save()
    assert not path.exists()  # nothing in the plain file
    again = open_token_cache(path, warn=warned.append)
    assert list(again.cache.search("RefreshToken"))  # read back through msal-extensions


def test_without_msal_extensions_the_warning_says_how_to_get_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "msal_extensions", None)  # import fails
    warned: list[str] = []
    cache = open_token_cache(tmp_path / "c.json", warn=warned.append)
    assert not cache.encrypted
    assert "pip install 'teams-provision[azure]'" in warned[0]
