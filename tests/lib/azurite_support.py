"""Run Azurite's blob service (installed from npm) on a free loopback port, in memory.

Where Azurite is looked for, in order: ``$AZURITE_BLOB`` (path to the ``azurite-blob``
executable), the cache ``.cache/azurite`` of this checkout (gitignored), then
``azurite-blob`` on PATH. :func:`ensure_azurite` installs the pinned version into the cache
with npm when none is found and node is available, so ``python -m pytest`` runs the Azure Blob
tests on a fresh machine too (``AZURITE_NO_INSTALL=1`` turns that off). ``.ci/run`` warms the
cache with ``python tests/lib/azurite_support.py install``.

Used by the tests (a session fixture in ``conftest.py``) and by ``benchmarks/``.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
AZURITE_VERSION = "3.35.0"
CACHE = REPO / ".cache" / "azurite"
CACHED = CACHE / "node_modules" / ".bin" / "azurite-blob"
INSTALL_HELP = (
    "Azurite is not installed and could not be installed: it needs node >= 18 and npm "
    "(then `python tests/lib/azurite_support.py install`), or set AZURITE_BLOB to an "
    "azurite-blob executable"
)
# Azurite's well-known development account (public, emulator-only; see Azurite's README).
ACCOUNT = "devstoreaccount1"
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
_LISTENING = re.compile(rb"successfully listens on http://127\.0\.0\.1:(\d+)")


def _cached_version() -> str | None:
    try:
        package = CACHE / "node_modules" / "azurite" / "package.json"
        return str(json.loads(package.read_text(encoding="utf-8"))["version"])
    except (OSError, ValueError, KeyError):
        return None


def find_azurite() -> str | None:
    """An installed azurite-blob, without installing anything."""
    explicit = os.environ.get("AZURITE_BLOB")
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    if os.access(CACHED, os.X_OK) and _cached_version() == AZURITE_VERSION:
        return str(CACHED)
    return shutil.which("azurite-blob")


def install(timeout: float = 600.0) -> str:
    """Install the pinned Azurite into the cache with npm (once, under a file lock, so two
    test sessions do not install over each other); return the executable."""
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        raise RuntimeError(INSTALL_HELP)
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _cached_version() != AZURITE_VERSION or not os.access(CACHED, os.X_OK):
            done = subprocess.run(
                [
                    npm,
                    "install",
                    "--prefix",
                    str(CACHE),
                    "--no-audit",
                    "--no-fund",
                    "--loglevel=error",
                    f"azurite@{AZURITE_VERSION}",
                ],
                capture_output=True,
                text=True,
                timeout=timeout,
                stdin=subprocess.DEVNULL,
            )
            if done.returncode != 0:
                raise RuntimeError(
                    f"npm install azurite@{AZURITE_VERSION} failed:\n{done.stderr[-2000:]}"
                )
    return str(CACHED)


def ensure_azurite() -> str | None:
    """An azurite-blob executable: found, or installed now where npm is available. None when
    neither (or ``AZURITE_NO_INSTALL=1`` and none is installed)."""
    found = find_azurite()
    if found is not None or os.environ.get("AZURITE_BLOB"):
        return found
    if os.environ.get("AZURITE_NO_INSTALL") == "1" or shutil.which("npm") is None:
        return None
    return install()


class Azurite:
    """One Azurite blob service process. ``start()`` returns once it accepts connections."""

    def __init__(self, executable: str) -> None:
        self.executable = executable
        self.port = 0
        self._dir = tempfile.mkdtemp(prefix="provision-azurite-")
        self._log = os.path.join(self._dir, "azurite.log")
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        """The account URL (path-style, as Azurite serves it)."""
        return f"http://127.0.0.1:{self.port}/{ACCOUNT}"

    @property
    def env(self) -> dict[str, str]:
        """Environment for a store talking to this Azurite with the development key."""
        return {"AZURE_STORAGE_KEY": KEY, "PROVISION_STATE_ENDPOINT": self.endpoint}

    def start(self, timeout: float = 60.0) -> None:
        with open(self._log, "wb") as log:
            self._proc = subprocess.Popen(
                [
                    self.executable,
                    "--blobHost",
                    "127.0.0.1",
                    "--blobPort",
                    "0",  # the OS picks a free port; Azurite prints it
                    "--inMemoryPersistence",
                    "--disableTelemetry",  # no traffic beyond loopback
                    "--skipApiVersionCheck",  # the Python SDK may be newer than Azurite
                    "--silent",
                ],
                cwd=self._dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with open(self._log, "rb") as f:
                match = _LISTENING.search(f.read())
            if match:
                self.port = int(match.group(1))
                return
            if self._proc.poll() is not None:
                break
            time.sleep(0.05)
        output = Path(self._log).read_text(errors="replace")[-2000:]
        self.stop()
        raise RuntimeError(f"Azurite did not start ({self.executable}):\n{output}")

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=10)
        self._proc = None
        shutil.rmtree(self._dir, ignore_errors=True)

    def new_container(self) -> str:
        """A fresh container (one per test keeps tests independent)."""
        from azure.storage.blob import BlobServiceClient

        name = f"state-{uuid.uuid4().hex[:16]}"
        service = BlobServiceClient(
            self.endpoint, credential={"account_name": ACCOUNT, "account_key": KEY}
        )
        service.create_container(name)
        return name


if __name__ == "__main__":
    if sys.argv[1:] != ["install"]:
        sys.exit("usage: python tests/lib/azurite_support.py install")
    print(install())
