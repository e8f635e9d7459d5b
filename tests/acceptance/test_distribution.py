"""The distribution: its name is ours, and every place that names a version names this one.

The build itself (sdist, wheel, `twine check`, the wheel in a fresh virtual environment running
the README's main command) is `.ci/release-check`, which CI runs; it needs the package index.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from provisioner import __version__

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[2]
DIST = "teams-provision"
# Where users copy an install line or a version from.
PLACES = [
    "README.md",
    "docs/install.md",
    "docs/gitops.md",
    ".pre-commit-hooks.yaml",
    "action.yml",
    "examples/github-actions/provision.yml",
    "examples/azure-devops/azure-pipelines.yml",
]


def _text(name: str) -> str:
    path = ROOT / name
    return path.read_text(encoding="utf-8") if path.exists() else ""


def test_the_distribution_name_is_ours_and_the_command_stays() -> None:
    meta = tomllib.loads(_text("pyproject.toml"))["project"]
    assert meta["name"] == DIST
    assert meta["scripts"] == {"provision": "provisioner.cli.main:main"}
    assert meta["license"] == "MIT"
    assert _text("LICENSE").startswith("MIT License")


def test_no_install_line_names_the_other_projects_distribution() -> None:
    # `provision` on the index is an unrelated project: `pip install provision...` would
    # install it.
    wrong = re.compile(
        r"(pip|pipx) install(\s+-[-\w=]+)*\s+['\"]?provision(\[|==|['\"]?\s|$)", re.M
    )
    for name in PLACES:
        assert not wrong.search(_text(name)), name
        assert not re.search(r"(?<![-\w])provision\[azure\]", _text(name)), name


def test_no_place_pins_a_release_that_is_not_published() -> None:
    # Issue 25: `pipx install teams-provision`, `==0.1.0`, `rev: v0.1.0` and `@v0.1.0` all
    # failed, since no release existed. A concrete version may be pinned only once its
    # CHANGELOG section is dated; until then the places pin a commit or say vX.Y.Z.
    released = set(re.findall(r"^## ([\w.]+) - \d{4}-\d\d-\d\d", _text("CHANGELOG.md"), re.M))
    pins = []
    for name in PLACES:
        text = _text(name)
        pins += [(name, v) for v in re.findall(rf"{DIST}(?:\[[a-z,]+\])?==(\d[\w.]*)", text)]
        pins += [(name, v) for v in re.findall(r"\brev: v(\d[\w.]*)", text)]
        pins += [(name, v) for v in re.findall(r"uses: [\w-]+/provision@v(\d[\w.]*)", text)]
    assert [(name, v) for name, v in pins if v not in released] == []


def test_the_examples_pin_the_action_and_the_hook_by_commit() -> None:
    for name in PLACES:
        for ref in re.findall(r"uses: [\w-]+/provision@([\w.]+)", _text(name)):
            assert re.fullmatch(r"[0-9a-f]{40}|vX\.Y\.Z", ref), (name, ref)
        for ref in re.findall(r"\brev: ([\w.]+)", _text(name)):
            assert re.fullmatch(r"[0-9a-f]{40}|vX\.Y\.Z", ref), (name, ref)


def test_the_changelog_has_a_section_for_this_version() -> None:
    assert re.search(rf"^## {re.escape(__version__)} - ", _text("CHANGELOG.md"), re.M)
