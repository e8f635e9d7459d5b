"""Module names in the package's docstrings and comments name modules that exist (issue 21):
after the moves of issues 13 and 21, text still pointed readers to ``graph/auth.py``,
``apply_steps.py`` or ``provisioner.identity``."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import provisioner

PACKAGE = Path(provisioner.__file__).parent
ROOT = PACKAGE.parent
SUBPACKAGES = sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists())
MODULES = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__")

# provisioner.x.y (dotted, maybe ending in a class or function)
DOTTED = re.compile(r"\bprovisioner(?:\.[A-Za-z_][A-Za-z0-9_]*)+")
# `pkg.module` / ``pkg.module.Name`` with pkg one of our packages or top-level modules
_OURS = "|".join(SUBPACKAGES + MODULES)
SHORT = re.compile(r"`{1,2}((?:" + _OURS + r")(?:\.[A-Za-z_][A-Za-z0-9_]*)+)(?:\(\))?`{1,2}")
# a file: `name.py`, ``dir/name.py``, tests/..., benchmarks/...
FILES = re.compile(r"(?<![\w/.-])((?:[\w-]+/)*[\w-]+\.py)\b")


def resolve(dotted: str) -> bool:
    """True when ``dotted`` is a module of ours, or an attribute reachable from one."""
    parts = dotted.split(".")
    for n in range(len(parts), 0, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:n]))
        except ImportError:
            continue
        for name in parts[n:]:
            if not hasattr(obj, name):
                return False
            obj = getattr(obj, name)
        return True
    return False


def file_exists(name: str, here: Path) -> bool:
    if "/" not in name:  # a bare file name: anywhere in the package (or beside this one)
        return any(PACKAGE.rglob(name)) or (here.parent / name).exists()
    return any((base / name).exists() for base in (ROOT, PACKAGE, here.parent))


def stale_names(path: Path, text: str | None = None) -> list[str]:
    """``path:line: name`` for each name in ``path`` (or ``text``, as if it were in ``path``)
    that names nothing."""
    text = path.read_text(encoding="utf-8") if text is None else text
    found = []
    for m in DOTTED.finditer(text):
        if not resolve(m.group(0).rstrip(".")):
            found.append(m.group(0))
    for m in SHORT.finditer(text):
        if not resolve(f"provisioner.{m.group(1)}"):
            found.append(m.group(1))
    for m in FILES.finditer(text):
        if not file_exists(m.group(1), path):
            found.append(m.group(1))
    line = {n: text.count("\n", 0, text.find(n)) + 1 for n in found}
    return [f"{path.relative_to(ROOT)}:{line[n]}: {n}" for n in found]


def test_module_names_in_docstrings_exist() -> None:
    stale = [s for path in sorted(PACKAGE.rglob("*.py")) for s in stale_names(path)]
    assert stale == [], "names of modules that do not exist:\n" + "\n".join(stale)


def test_the_check_finds_a_stale_name() -> None:
    text = (
        '"""See ``graph.auth``, provisioner.identity, apply_steps.py, journal.py, '
        '``states.records.State`` and provisioner.signin.chooser.credential_from_env."""\n'
    )
    stale = stale_names(PACKAGE / "states" / "store.py", text)
    names = [s.rsplit(": ", 1)[1] for s in stale]
    assert names == ["provisioner.identity", "graph.auth", "apply_steps.py"]
