"""Short versions of the soaks in tests/soak/ (random faults and kills in real time).

Marked ``slow`` (issue 21): the default run covers the same crash points deterministically
(``tests/apply/test_apply_faults.py``); each prints its seed. The long runs, and the figures
they produce, are in RELIABILITY.md.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from soak import fuzz_soak  # tests/ is on sys.path (pyproject: pythonpath)

pytestmark = pytest.mark.slow


def test_fuzz_soak_hypothesis_short() -> None:
    print("fuzz soak: Hypothesis chooses (and prints a failing example's seed)")
    report = fuzz_soak.hypothesis_soak(25)
    assert report.crashes == 0, report.failures
    # 3 loader properties x 25 and the fast-path comparison x 75, each example counted once
    assert report.runs >= 150
    assert 0 < report.refused < report.runs
    assert "crashes 0" in report.line()


@pytest.mark.skipif(
    not fuzz_soak.atheris_available(),
    reason="atheris is not installed: the test extra has it only where it has a wheel "
    "(Linux x86-64, CPython 3.10-3.13)",
)
def test_fuzz_soak_atheris_short(tmp_path: Path) -> None:
    report = fuzz_soak.atheris_soak(800, tmp_path / "crashes", max_seconds=60)
    assert report.crashes == 0, report.failures
    assert report.runs == 800
    assert report.refused > 0


def test_fault_soak_short(tmp_path: Path) -> None:
    """One apply through 429 storms, 503s, ambiguous 504s/drops and token expiry."""
    from soak import fault_soak

    print("fault soak seed 4")
    # Graph lists new chats late (0.2-1 s); ambiguous creations settle within a 2 s window.
    report = fault_soak.fault_run(
        tmp_path,
        seed=4,
        groups=10,
        pairs=8,
        token_lifetime_s=1.0,
        storm_every_s=1.0,
        list_delay=(0.2, 1.0),
        window=2.0,
    )
    assert report.errors == [], report.errors
    assert report.crashes == 0 and report.exit_code == 0
    assert report.duplicates == 0 and report.missing == 0
    assert report.wrong == 0 and report.extra_chats == 0
    assert report.plan_exit == 0
    assert report.unauthorized >= 1 and report.tokens_issued >= 2  # the token was refreshed
    assert report.injected > report.unauthorized  # faults beyond expiry were injected too
    assert "duplicates 0, lost chats 0, crashes 0" in fault_soak.figure_line("x", [report])


def test_consistency_soak_short(tmp_path: Path) -> None:
    """Issue 14: lagging lists, 30 % ambiguous group creations, 503s; 30-member chats, external
    and UPN members; members changed; a refresh right after finds nothing to do."""
    from soak import consistency_soak

    # Seed 5: 3 of its 9 group creations are answered ambiguously (seed 3 drew none once the
    # run's first request became GET /organization, issue 20, which shifted the fault draws).
    print("consistency soak seed 5")
    report = consistency_soak.soak_run(
        tmp_path, seed=5, groups=9, list_delay=(0.2, 1.5), window=3.0
    )
    assert report.errors == [], report.errors
    assert report.exit_codes == [0, 0]
    assert report.duplicates == 0 and report.missing == 0 and report.wrongly_removed == 0
    assert report.plan_exit == 0
    assert report.ambiguous > 0 and report.lookups >= report.ambiguous  # settled each one
    assert "duplicates 0, missing 0, members wrongly removed 0" in report.line()


def test_lock_soak_short(tmp_path: Path) -> None:
    """Two applies started together on one state (a symlink and its target), then one with
    the lock holder SIGKILLed: never both run, no duplicate, nothing lost (issue 15)."""
    from soak import lock_soak

    for n, kill in enumerate((False, True)):
        print(f"lock soak seed {7 + n}")
        (tmp_path / str(n)).mkdir()
        figures = lock_soak.one_round(tmp_path / str(n), seed=7 + n, groups=4, pairs=2, kill=kill)
        assert figures["both_ran"] == 0 and figures["duplicates"] == 0, figures
        assert figures["lost"] == 0 and figures["crashes"] == 0 and figures["plan_exit"] == 0
        assert kill or figures["stopped"] == 1, figures  # one stopped at once, naming the lock
