"""``gc.freeze()`` is the command edge's decision (manifest/gcpause.py): below ``cli/``,
collection may be paused (``gc_paused(freeze=False)``) but nothing is frozen."""

from __future__ import annotations

import ast
from pathlib import Path

import provisioner

ROOT = Path(provisioner.__file__).parent


def _freezes(tree: ast.AST) -> list[int]:
    lines = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        if name == "freeze" and isinstance(func, ast.Attribute):
            lines.append(node.lineno)  # gc.freeze()
        if name == "gc_paused":
            off = [k for k in node.keywords if k.arg == "freeze"]
            if not (off and isinstance(off[0].value, ast.Constant) and off[0].value.value is False):
                lines.append(node.lineno)  # gc_paused() freezes by default
    return lines


def test_nothing_below_the_cli_freezes_the_collector() -> None:
    found = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT)
        if rel.parts[0] == "cli" or rel == Path("manifest/gcpause.py"):
            continue
        found += [f"{rel}:{n}" for n in _freezes(ast.parse(path.read_text()))]
    assert found == [], "gc.freeze() below cli/ (use gc_paused(freeze=False)): " + ", ".join(found)


def test_the_check_sees_a_freeze() -> None:
    assert _freezes(ast.parse("gc_paused()\ngc.freeze()\ngc_paused(freeze=False)\n")) == [1, 2]
