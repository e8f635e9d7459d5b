"""A small run of the mixed soak (``mixed_soak.py``, issue 20): every fault kind at least
once, no duplicate, no lost chat or record, no hang, no crash. Marked ``slow`` (about a
minute); the seed is printed, and a failure names it."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from soak.mixed_soak import KINDS, Seed  # tests/ is on sys.path (pyproject: pythonpath)


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
    # Which faults a round manages to inject depends on where its kill lands (a bit flip
    # needs a journal to flip): the next seeds run until every kind was injected at least
    # once; each seed must leave no duplicate, nothing lost, no hang and no crash.
    injected: set[str] = set()
    for n in range(4):
        print(f"mixed soak seed {seed + n}")
        workdir = tmp_path / str(seed + n)
        workdir.mkdir()
        fig = Seed(workdir, seed + n, args).run(azurite)
        assert fig.duplicates == 0 and fig.lost == 0 and fig.lost_records == 0, fig
        assert fig.hangs == 0 and fig.crashes == 0 and fig.plan_exit == 0, fig
        assert fig.ok, fig.errors
        injected |= set(fig.faults)
        if injected >= set(kinds):
            break
    assert injected == set(kinds), injected  # each kind was injected
