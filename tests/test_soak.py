"""Short versions of the soaks in tests/soak/ (seconds, so regressions show up in every run).

The long runs, and the figures they produce, are in RELIABILITY.md.
"""

from __future__ import annotations

from pathlib import Path

import pytest

try:  # tests/ is on sys.path in pytest's default import mode
    from soak import fuzz_soak
except ImportError:  # pragma: no cover
    from tests.soak import fuzz_soak


def test_fuzz_soak_hypothesis_short() -> None:
    report = fuzz_soak.hypothesis_soak(25)
    assert report.crashes == 0, report.failures
    # 3 loader properties x 25 and the fast-path comparison x 75, each example counted once
    assert report.runs >= 150
    assert 0 < report.refused < report.runs
    assert "crashes 0" in report.line()


@pytest.mark.skipif(not fuzz_soak.atheris_available(), reason="atheris is not installed")
def test_fuzz_soak_atheris_short(tmp_path: Path) -> None:
    report = fuzz_soak.atheris_soak(800, tmp_path / "crashes", max_seconds=60)
    assert report.crashes == 0, report.failures
    assert report.runs == 800
    assert report.refused > 0
