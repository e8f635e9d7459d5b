"""ARCHITECTURE.md's rules that import contracts cannot express (those are in pyproject's
[tool.importlinter], checked by `lint-imports` in .ci/run; `--help`'s imports are checked by
tests/cli/test_startup.py).

Nothing below ``cli/`` prints: the core returns strings and raises errors, and ``cli/`` decides
what reaches the terminal (a library that prints cannot be used by another program, and its
output escapes --json).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "provisioner"

#: Calls that write to the terminal (or read from it): only cli/ may make them.
TERMINAL_CALLS = {
    "print",
    "input",
    "click.echo",
    "click.secho",
    "click.prompt",
    "click.confirm",
    "sys.stdout.write",
    "sys.stderr.write",
    "sys.stdout.buffer.write",
}


def dotted(node: ast.expr) -> str:
    """``sys.stdout.write`` for the call target ``sys.stdout.write``; '' for anything else."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = dotted(node.value)
        return f"{inner}.{node.attr}" if inner else ""
    return ""


def terminal_calls(source: str, filename: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Call) and dotted(node.func) in TERMINAL_CALLS:
            found.append(f"{filename}:{node.lineno}: {dotted(node.func)}(...)")
    return found


def below_cli() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "cli" not in p.relative_to(PACKAGE).parts)


def test_nothing_below_cli_prints() -> None:
    found = []
    for path in below_cli():
        found += terminal_calls(path.read_text(), str(path.relative_to(ROOT)))
    assert found == []


def test_the_print_check_sees_each_way_of_printing() -> None:
    # Without this, a check that finds nothing would pass however blind it is.
    source = (
        "import sys, click\n"
        "print('a')\nclick.echo('b')\nsys.stdout.write('c')\nsys.stderr.write('d')\n"
        "text = 'print(not a call)'\nlogger.info('fine')\n"
    )
    assert [line.split(": ")[1] for line in terminal_calls(source, "m.py")] == [
        "print(...)",
        "click.echo(...)",
        "sys.stdout.write(...)",
        "sys.stderr.write(...)",
    ]
    assert len(below_cli()) > 50 and not any("cli" in p.parts[-2:-1] for p in below_cli())


def test_every_folder_has_a_row_in_the_architecture_table() -> None:
    """A top-level folder has its own row; a folder inside one is named in its parent's row."""
    table = dict(
        re.findall(r"^\| `([a-z_]+)/` \|(.*)$", (ROOT / "ARCHITECTURE.md").read_text(), re.M)
    )
    folders = [p.parent.relative_to(PACKAGE) for p in PACKAGE.rglob("__init__.py")]
    top = sorted(f.parts[0] for f in folders if len(f.parts) == 1)
    assert sorted(table) == top
    for sub in (f for f in folders if len(f.parts) == 2):
        assert f"`{sub.parts[1]}/`" in table[sub.parts[0]], sub
