"""Graph's documented rates, raised for tests that are not about pacing.

The client paces itself by `provisioner.graph.pacing.DOCUMENTED_LIMITS` whatever the server's
limits are: one call per second per chat, four member changes per minute per chat, 350
directory reads per second. A functional test against the emulator (its own limits off) that
makes several calls per chat would spend most of its time waiting for that second. Pacing
itself is tested with fake clocks (``tests/graph/test_pacing.py``) and measured by
``benchmarks/``; these tests raise the rates instead.
"""

from __future__ import annotations

import dataclasses

import pytest

from provisioner.graph import pacing


def fast_pacing(monkeypatch: pytest.MonkeyPatch, rate: float = 500.0) -> None:
    """Every scope of the client's pacer runs at ``rate`` requests per second for the rest
    of the test (undone with ``monkeypatch``). The table is changed in place, so that every
    module that imported it by name sees the test's rates."""
    for kind, limit in list(pacing.DOCUMENTED_LIMITS.items()):
        fast = dataclasses.replace(limit, rate=rate, source="test: faster than documented")
        monkeypatch.setitem(pacing.DOCUMENTED_LIMITS, kind, fast)
