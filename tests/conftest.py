from __future__ import annotations

import importlib.util
import os
import subprocess
from collections.abc import Iterator

import pytest
from lib.azurite_support import INSTALL_HELP, Azurite, ensure_azurite
from lib.pacing import fast_pacing


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


@pytest.fixture(autouse=True)
def _fast_pacing(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """The client in this process paces every scope at 500 requests per second, not at
    Graph's documented rates (one call per second per chat, four member changes per minute):
    a functional test would spend most of its time waiting for them. A test that is about the
    pace, or whose clock the documented rates drive, says so with
    ``@pytest.mark.documented_pace``. The soaks (marked ``slow``) run as a real run would,
    and CLI runs in a subprocess keep the documented rates too."""
    node = request.node
    if (
        node.get_closest_marker("documented_pace") is None
        and node.get_closest_marker("slow") is None
    ):
        fast_pacing(monkeypatch)
