"""``moved:`` entries: chain resolution (the checks are golden cases under tests/data)."""

from __future__ import annotations

from provisioner.manifest.moves import resolve
from provisioner.models import Move


def test_resolve_follows_chains() -> None:
    moves = [Move("a", "b"), Move("b", "c"), Move("x", "y")]
    assert resolve(moves) == {"a": "c", "b": "c", "x": "y"}


def test_resolve_order_does_not_matter() -> None:
    assert resolve([Move("b", "c"), Move("a", "b")]) == {"a": "c", "b": "c"}


def test_resolve_terminates_on_a_cycle() -> None:
    # check() reports cycles; resolve must still end if given one.
    result = resolve([Move("a", "b"), Move("b", "a")])
    assert set(result) == {"a", "b"}
