"""Run Azurite's blob service (installed from npm) on a free loopback port, in memory.

Where Azurite is looked for, in order: ``$AZURITE_BLOB`` (path to the ``azurite-blob``
executable), ``.ci/azurite/node_modules/.bin/azurite-blob`` (what ``.ci/run`` installs with
``npm install --prefix .ci/azurite azurite``), then ``azurite-blob`` on PATH.

Used by the tests (a session fixture in ``conftest.py``) and by ``benchmarks/``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CI_INSTALL = REPO / ".ci" / "azurite" / "node_modules" / ".bin" / "azurite-blob"
INSTALL_HELP = (
    "Azurite is not installed: run `npm install --prefix .ci/azurite azurite` "
    "(node >= 18), or set AZURITE_BLOB to an azurite-blob executable"
)
# Azurite's well-known development account (public, emulator-only; see Azurite's README).
ACCOUNT = "devstoreaccount1"
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
_LISTENING = re.compile(rb"successfully listens on http://127\.0\.0\.1:(\d+)")


def find_azurite() -> str | None:
    explicit = os.environ.get("AZURITE_BLOB")
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    if os.access(CI_INSTALL, os.X_OK):
        return str(CI_INSTALL)
    return shutil.which("azurite-blob")


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
