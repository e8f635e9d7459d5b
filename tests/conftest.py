from __future__ import annotations

import importlib.util
import os
import subprocess
from collections.abc import Iterator

import pytest
from lib.azurite_support import INSTALL_HELP, Azurite, ensure_azurite


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    """Azurite's blob service on a free loopback port, for the whole session (started on
    first use only; installed with npm into .cache/azurite first where it is missing and node
    is available). Skipped where it cannot be had, except under CI, which must run these
    tests."""
    missing = None
    executable = None
    if importlib.util.find_spec("azure.storage.blob") is None:
        missing = "the Azure SDK is not installed: pip install -e '.[test]'"
    else:
        try:
            executable = ensure_azurite()
        except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
            missing = str(exc)
        if executable is None and missing is None:
            missing = INSTALL_HELP
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the azblob:// state tests, but {missing}")
        pytest.skip(missing)
    assert executable is not None
    server = Azurite(executable)
    server.start()
    try:
        yield server
    finally:
        server.stop()
