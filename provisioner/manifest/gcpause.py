"""Keep CPython's cyclic garbage collector out of bulk loading and planning.

A plan of 100,000 chats allocates millions of small containers (manifest nodes, state records,
changes). Every few hundred allocations CPython runs a collection, and the older generations are
re-scanned again and again while everything built so far is still alive, so collection alone
costs several times the work itself (``benchmarks/bench_plan.py`` shows the baseline YAML load
spending half its time there). None of these objects form reference cycles: reference counting
frees them as usual, so the collector has nothing to find.

``gc_paused`` turns collection off for the block and then *freezes* what exists (moves it to
the permanent generation) before turning it back on, so the first collection afterwards does not
walk all of it once more. Only cyclic garbage made inside the block is left for good, which is
fine for a command that is about to exit; it is meant for the CLI edge, not for the core.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()
