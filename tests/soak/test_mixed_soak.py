"""A small run of the mixed soak (``mixed_soak.py``, issue 20): every fault kind at least
once, no duplicate, no lost chat or record, no hang, no crash. Marked ``slow`` (about a
minute); the seed is printed, and a failure names it."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

try:  # tests/ is on sys.path in pytest's default import mode
    from soak.mixed_soak import KINDS, Seed
except ImportError:  # pragma: no cover
    from tests.soak.mixed_soak import KINDS, Seed


@pytest.mark.slow
@pytest.mark.parametrize("seed", [20])
def test_mixed_faults_make_no_duplicate_and_lose_nothing(
    tmp_path: Path, seed: int, request: pytest.FixtureRequest
) -> None:
    try:
        azurite = request.getfixturevalue("azurite")
    except pytest.skip.Exception:
        azurite = None  # no lease rounds without Azurite
    kinds = [k for k in KINDS if k != "lease" or azurite is not None]
    args = argparse.Namespace(
        groups=8, pairs=4, window=2.0, hang_after=60.0, verbose=False,
        rounds=len(kinds), kinds=",".join(kinds), cycle=True, code="",
    )  # fmt: skip
    print(f"mixed soak seed {seed}")
    fig = Seed(tmp_path, seed, args).run(azurite)
    assert set(fig.faults) == set(kinds), fig  # each kind was injected
    assert fig.duplicates == 0 and fig.lost == 0 and fig.lost_records == 0, fig
    assert fig.hangs == 0 and fig.crashes == 0 and fig.plan_exit == 0, fig
    assert fig.ok, fig.errors
