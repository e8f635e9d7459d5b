"""The `provision-validate` pre-commit hook (.pre-commit-hooks.yaml), run for real.

A fixture git repository's .pre-commit-config.yaml names this repository (a one-commit copy of
the working tree) at its commit, as a user's names a release tag; `pre-commit run` installs it
into a virtualenv of its own with `pip install .` once (in the module's PRE_COMMIT_HOME) and
runs the hook. No package index is used: pip gets `PIP_NO_INDEX=1` and a wheelhouse built from
the running environment (tests/lib/wheelhouse.py).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from lib import wheelhouse

ROOT = Path(__file__).resolve().parents[2]
HOOKS_FILE = ROOT / ".pre-commit-hooks.yaml"

GOOD = """\
version: 1
chats:
  - key: launch
    chatType: group
    topic: Launch
    members:
      - user: adele@contoso.com
      - user: alex@contoso.com
"""
# Line 4, column 5: the misspelt field.
BAD = """\
version: 1
chats:
  - key: ops
    chatTyp: group
    members:
      - user: adele@contoso.com
      - user: alex@contoso.com
"""
BAD_LOCATION = "chats/ops.yaml:4:5: error: 'chatTyp' is not a known field"

pytestmark = [
    pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed"),
    # pre-commit builds a virtualenv and pip-installs the hook into it: ~12 s on an idle
    # machine, several times that on a loaded one
    pytest.mark.timeout(300),
]


def _git(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return done.stdout


def test_hooks_file_declares_the_hook() -> None:
    hooks = yaml.safe_load(HOOKS_FILE.read_text(encoding="utf-8"))
    (hook,) = hooks
    assert hook["id"] == "provision-validate"
    assert hook["entry"] == "provision validate"
    assert hook["language"] == "python"
    assert hook["require_serial"] is True
    assert hook["types"] == ["yaml"]


def _snapshot_of_this_repo(dest: Path) -> Path:
    """This working tree (tracked and new, unignored files) as a one-commit git repository, so
    that uncommitted edits are what the hook installs."""
    listed = _git(ROOT, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
    for rel in filter(None, listed.split("\0")):
        source = ROOT / rel
        if source.is_file():
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    _git(dest, "init", "-q")
    _git(dest, "add", "-A")
    _git(dest, "commit", "-q", "-m", "snapshot")
    return dest


def _fixture_repo(dest: Path) -> Path:
    (dest / "chats").mkdir(parents=True)
    (dest / "chats/launch.yaml").write_text(GOOD, encoding="utf-8")
    (dest / "chats/ops.yaml").write_text(BAD, encoding="utf-8")
    # Not under chats/ or provision/: YAML, but not a manifest, so never validated.
    (dest / "deploy").mkdir()
    (dest / "deploy/values.yaml").write_text("replicas: 3\n", encoding="utf-8")
    _git(dest, "init", "-q")
    _git(dest, "add", "-A")
    _git(dest, "commit", "-q", "-m", "fixture")
    return dest


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, str]]:
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout (its files are listed with git ls-files)")
    base = tmp_path_factory.mktemp("precommit")
    hook_repo = _snapshot_of_this_repo(base / "hook-repo")
    wheels = base / "wheels"
    wheelhouse.build(wheels)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PIP_", "PRE_COMMIT", "VIRTUALENV_", "GITHUB_"))
    }
    env.update(
        PRE_COMMIT_HOME=str(base / "pre-commit-home"),
        # pip: this wheelhouse only, no index, no user or machine configuration.
        PIP_CONFIG_FILE=os.devnull,
        PIP_NO_INDEX="1",
        PIP_FIND_LINKS=str(wheels),
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        # virtualenv: seed from its embedded wheels, never look for newer ones.
        VIRTUALENV_NO_PERIODIC_UPDATE="1",
        VIRTUALENV_OVERRIDE_APP_DATA=str(base / "virtualenv-data"),
        NO_COLOR="1",
    )
    return hook_repo, _fixture_repo(base / "project"), env


def _pre_commit(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pre_commit", *args, "--color", "never"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _config(project: Path, hook_repo: Path, files: str | None = None) -> None:
    """A .pre-commit-config.yaml using the hook from ``hook_repo`` at its commit (pre-commit
    installs it once per PRE_COMMIT_HOME, the module's: `try-repo` would install it again on
    every call), with the hook's own ``files`` pattern unless ``files`` is given."""
    rev = _git(hook_repo, "rev-parse", "HEAD").strip()
    text = (
        f"repos:\n  - repo: {hook_repo}\n    rev: {rev}\n    hooks:\n"
        "      - id: provision-validate\n"
    )
    if files is not None:
        text += f"        files: {files}\n"
    (project / ".pre-commit-config.yaml").write_text(text, encoding="utf-8")
    _git(project, "add", "-A")


def test_the_hook_fails_a_bad_manifest_with_its_location(
    setup: tuple[Path, Path, dict[str, str]],
) -> None:
    hook_repo, project, env = setup
    _config(project, hook_repo)
    done = _pre_commit(project, env, "run", "--all-files")
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    assert "provision validate" in out and "Failed" in out
    assert BAD_LOCATION in out
    assert "2 files, 2 chats, 1 error" in out  # both manifests, nothing else
    assert "values.yaml" not in out and ".pre-commit-config.yaml" not in out


def test_the_hook_passes_once_the_manifest_is_fixed_and_can_watch_another_folder(
    setup: tuple[Path, Path, dict[str, str]], tmp_path: Path
) -> None:
    hook_repo, _, env = setup
    project = tmp_path / "other"
    (project / "teams").mkdir(parents=True)
    (project / "teams/ops.yaml").write_text(BAD, encoding="utf-8")
    (project / "chats").mkdir()
    (project / "chats/ops.yaml").write_text(BAD, encoding="utf-8")  # not watched: teams/ is
    _git(project, "init", "-q")
    _config(project, hook_repo, "^teams/")
    done = _pre_commit(project, env, "run", "--all-files")
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    assert "teams/ops.yaml:4:5: error: 'chatTyp' is not a known field" in out
    assert "chats/ops.yaml" not in out and "1 file, 1 chat, 1 error" in out

    (project / "teams/ops.yaml").write_text(BAD.replace("chatTyp:", "chatType:"), encoding="utf-8")
    _git(project, "add", "-A")
    done = _pre_commit(project, env, "run", "--all-files")
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert "Passed" in out
