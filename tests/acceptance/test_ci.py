"""CI runs what the README tells a contributor to run, and the soaks stay out of it."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[2]


def readme_test_command() -> str:
    """The part after the venv of the README's second command (its test command)."""
    line = next(line for line in (ROOT / "README.md").read_text().splitlines() if "pytest" in line)
    return line.split("bin/activate && ", 1)[1]


def test_ci_runs_the_readmes_test_command() -> None:
    command = readme_test_command()
    assert command.startswith("pip install -e '.[test]' && python -m pytest")
    assert command in (ROOT / ".ci" / "run").read_text()


def test_the_default_run_leaves_the_soaks_out_and_has_deadlines() -> None:
    settings = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]
    pytest_ini = settings["pytest"]["ini_options"]
    assert "-m 'not slow'" in pytest_ini["addopts"]
    assert any(m.startswith("slow:") for m in pytest_ini["markers"])
    assert 0 < pytest_ini["timeout"] <= 300
    assert "--cov" in readme_test_command() and settings["coverage"]["report"]["fail_under"] > 0


def test_the_lint_tools_are_pinned_exactly() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lint = extras["optional-dependencies"]["lint"]
    assert lint and all(re.fullmatch(r"[A-Za-z0-9_.-]+==[0-9][0-9A-Za-z.]*", r) for r in lint)
