from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator

import pytest
from azurite_support import INSTALL_HELP, Azurite, find_azurite


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    """Azurite's blob service on a free loopback port, for the whole session (started on
    first use only). Skipped where it is not installed, except under CI, which must run these
    tests (.ci/run installs Azurite)."""
    executable = find_azurite()
    missing = None
    if importlib.util.find_spec("azure.storage.blob") is None:
        missing = "the Azure SDK is not installed: pip install -e '.[test]'"
    elif executable is None:
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
