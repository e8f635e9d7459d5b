"""Keep CPython's cyclic garbage collector out of bulk loading and planning.

A plan of 100,000 chats allocates millions of small containers (manifest nodes, state records,
changes). Every few hundred allocations CPython runs a collection, and the older generations are
re-scanned again and again while everything built so far is still alive, so collection alone
costs several times the work itself (``benchmarks/bench_plan.py`` shows the baseline YAML load
spending half its time there; composing a 10,000-chat manifest, ~300,000 objects, measured the
collector at about 70% of the parse time in ``benchmarks/bench_validate.py``). None of these
objects need the collector: reference counting frees them as usual.

Two uses, one pause:

* ``gc_paused()`` for a whole command at the CLI edge (plan): collection is off for the block,
  then what exists is *frozen* (moved to the permanent generation) before collection is turned
  back on, so the first collection afterwards does not walk all of it once more. Only cyclic
  garbage made inside the block is left for good, which is fine for a command about to exit.
* ``gc_paused(freeze=False)`` inside the core (``load.validate_paths``): the node trees die
  with the loader's locals, and cycles such as self-referencing anchors are collected once
  collection is back on.

A small module of its own because both layers (and the benchmarks) use it: the loader must not
reach up to the command edge, and the command edge should not borrow a private helper of the
loader.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def gc_paused(*, freeze: bool = True) -> Iterator[None]:
    """Collection off for the block, back on (if it was) afterwards; ``freeze`` first moves
    everything alive to the permanent generation."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if freeze:
            gc.freeze()
        if enabled:
            gc.enable()
