"""Issue 6's kill test: `provision apply` SIGKILLed at random moments against an emulator that
answers group creations ambiguously, rerun until done; no chat lost, none duplicated.

The harness is ``tests/soak/kill_soak.py`` (run it by hand for more seeds and kills).
"""

from __future__ import annotations

from pathlib import Path

import pytest

try:  # tests/ is on sys.path in pytest's default import mode
    from soak.kill_soak import kill_cycles
except ImportError:  # pragma: no cover
    from tests.soak.kill_soak import kill_cycles


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_killed_runs_never_lose_or_duplicate_a_chat(tmp_path: Path, seed: int) -> None:
    report = kill_cycles(
        tmp_path, seed=seed, kills=3, groups=30, pairs=20, max_rps=15.0, kill_window=(0.5, 1.6)
    )
    assert report.errors == []
    assert report.kills >= 2, report  # the runs were really cut short
    assert report.duplicates == 0
    assert report.missing == 0
    assert report.wrong == 0 and report.extra_chats == 0
    assert report.plan_exit == 0
    assert report.ambiguous_faults + report.recovered > 0  # there was something to recover
