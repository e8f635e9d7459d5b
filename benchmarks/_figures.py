"""The figures a benchmark reports to ``benchmarks/run`` (``--json FILE`` on every script).

Each figure is a measured value with the baseline measured in the same run, their ratio, the
target the ratio (or value) is held to, and whether it was met. ``python -m benchmarks`` turns
the files into BENCHMARKS.md; the scripts' printed reports stay as they are.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass
class Figure:
    name: str  # what was measured, e.g. "validate, 10,000 chats, in-process (CPU)"
    value: float
    unit: str  # "s", "ms", "req/s", "chats/s", "MiB"
    baseline: float | None = None
    baseline_name: str = ""  # e.g. "yaml.load (CSafeLoader)"
    ratio: float | None = None  # value / baseline unless the script says otherwise
    target: str = ""  # e.g. "ratio <= 1.2", "value < 1536"
    ok: bool | None = None  # None: no target, reported for context

    @classmethod
    def compared(
        cls,
        name: str,
        value: float,
        unit: str,
        baseline: float,
        baseline_name: str,
        *,
        max_ratio: float | None = None,
        min_ratio: float | None = None,
    ) -> Figure:
        """A figure whose target is a bound on value / baseline."""
        ratio = value / baseline if baseline else float("inf")
        target, ok = "", None
        if max_ratio is not None:
            target, ok = f"ratio <= {max_ratio:g}", ratio <= max_ratio
        elif min_ratio is not None:
            target, ok = f"ratio >= {min_ratio:g}", ratio >= min_ratio
        return cls(name, value, unit, baseline, baseline_name, ratio, target, ok)


def write_figures(path: str | Path | None, bench: str, figures: list[Figure]) -> None:
    """Write ``figures`` for ``benchmarks/run`` (nothing when ``path`` is None)."""
    if path is None:
        return
    doc = {"bench": bench, "figures": [asdict(f) for f in figures]}
    Path(path).write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
