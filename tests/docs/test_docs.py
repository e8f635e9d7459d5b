"""The documentation site (issue 25, item 6): its generated reference covers every command,
option and manifest field, the README stays the two commands plus a page of links that all
resolve, and `mkdocs build --strict` passes where MkDocs is installed (.ci/run installs it)."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest

from provisioner.cli.main import cli
from provisioner.manifest.schema import load_schema, shipped_schemas

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("docs_reference", ROOT / "tools/docs_reference.py")
assert _spec is not None and _spec.loader is not None
reference = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(reference)


def test_the_command_reference_has_every_command_and_option() -> None:
    page = reference.command_reference(cli)
    for path, command in reference._commands(cli, "provision"):
        assert f"## {path}\n" in page
        for param in command.params:
            if isinstance(param, click.Option) and not param.hidden:
                assert f"`{param.opts[0]}`" in page, (path, param.opts)
    assert "`PROVISION_LOCK_TIMEOUT`" in page and "## provision doctor" in page


def test_the_manifest_reference_has_every_field() -> None:
    schema = dict(load_schema())
    page = reference.manifest_reference(schema)
    fields = set(schema["properties"])
    for spec in schema["$defs"].values():
        fields |= set(spec.get("properties", {}))
    for name in fields:
        assert f"| `{name}` |" in page, name
    assert "a oneOnOne chat has exactly two members" in page


def test_the_json_page_lists_every_shipped_schema() -> None:
    page = reference.json_reference(shipped_schemas())
    for name in shipped_schemas():
        assert f"`provision schema {name}`" in page


def test_the_readme_is_the_two_commands_and_links_that_resolve() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 60
    (block,) = re.findall(r"```sh\n(.*?)```", readme, re.S)
    assert [line.split(" && ")[-1] for line in block.splitlines()] == [
        "provision apply examples/chats.yaml --emulator --auto-approve",
        "python -m pytest -q -n auto --cov",
    ]
    links = re.findall(r"\]\(([^)#]+)\)", readme)
    assert links
    for link in links:
        assert (ROOT / link).exists(), link


@pytest.mark.skipif(shutil.which("mkdocs") is None and importlib.util.find_spec("mkdocs") is None,
                    reason="MkDocs is not installed (pip install -e '.[docs]')")  # fmt: skip
def test_the_site_builds_strictly(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={"NO_MKDOCS_2_WARNING": "1", "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    commands = (tmp_path / "site/reference/commands/index.html").read_text(encoding="utf-8")
    assert "provision doctor" in commands
