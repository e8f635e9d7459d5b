"""action.yml, the composite GitHub Action: valid for GitHub, and its steps do what its inputs
and outputs say, run with bash as the runner would (tests/lib/pipeline_support.run_action).

The install step runs for real once, offline: pip gets a wheelhouse (tests/lib/wheelhouse.py)
holding a wheel of this checkout and its dependencies, and no index.
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
from lib.pipeline_support import (
    ACTION,
    ROOT,
    SHELLCHECK,
    base_env,
    load,
    outputs,
    preinstall_action,
    run_action,
)

from provisioner import __version__

GOOD = "version: 1\nchats:\n  - key: launch\n    chatType: group\n    topic: Launch\n" + (
    "    members:\n      - user: adele@contoso.com\n      - user: alex@contoso.com\n"
)


SCHEMA = "vendor.github-actions"
WORKFLOWS = "vendor.github-workflows"


def _check_jsonschema(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", SCHEMA, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_validates_against_githubs_action_schema() -> None:
    done = _check_jsonschema(ACTION)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_schema_check_catches_a_broken_action(tmp_path: Path) -> None:
    broken = load(ACTION)
    broken["runs"]["using"] = "composit"
    path = tmp_path / "action.yml"
    path.write_text(yaml.safe_dump(broken), encoding="utf-8")
    assert _check_jsonschema(path).returncode == 1


def test_installs_this_version_by_default_and_documents_every_input() -> None:
    action = load(ACTION)
    assert action["inputs"]["version"]["default"] == __version__
    for name, spec in {**action["inputs"], **action["outputs"]}.items():
        assert spec.get("description"), name


@pytest.mark.skipif(SHELLCHECK is None, reason="shellcheck is not installed")
def test_every_step_passes_shellcheck_and_takes_values_through_env() -> None:
    for step in load(ACTION)["runs"]["steps"]:
        assert "${{" not in step["run"], f"{step['id']}: pass values through env:"
        done = subprocess.run(
            [str(SHELLCHECK), "--shell=bash", "-"],
            input=step["run"],
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, f"{step['id']}:\n{done.stdout}"


# --- the run step (provision already installed) -------------------------------------------------


@pytest.fixture
def job(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "chats").mkdir()
    (tmp_path / "chats/launch.yaml").write_text(GOOD, encoding="utf-8")
    env = base_env(tmp_path)
    preinstall_action(env)
    return env


def test_unknown_command_fails_with_one_error(tmp_path: Path, job: dict[str, str]) -> None:
    done = run_action({"command": "destroy"}, job, cwd=tmp_path)
    assert done.returncode == 1
    assert "::error::provision action: command must be validate, plan or apply" in done.stdout


def test_validate_writes_the_output_file_and_exit_code(tmp_path: Path, job: dict[str, str]) -> None:
    done = run_action({"command": "validate", "format": "json"}, job, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.outputs["exitcode"] == "0"
    out = Path(done.outputs["output"])
    assert out.parent == Path(job["RUNNER_TEMP"]) and '"valid": true' in out.read_text()
    # The installed provision is on PATH for the job's later steps.
    path_file = Path(job["RUNNER_TEMP"]) / "GITHUB_PATH"
    assert path_file.read_text().splitlines() == [
        str(Path(job["RUNNER_TEMP"]) / f"teams-provision-{__version__}/bin")
    ]
    assert f"provision, version {__version__}" in done.stdout


def test_plan_then_apply_the_saved_plan_against_the_emulator(
    tmp_path: Path, job: dict[str, str]
) -> None:
    state = str(tmp_path / "teams.state.json")
    plan = run_action(
        {
            "command": "plan",
            "args": "--emulator",
            "state": state,
            "plan-file": str(tmp_path / "out/provision.plan"),
            "format": "text",
        },
        job,
        cwd=tmp_path,
    )
    assert plan.returncode == 0, plan.stderr
    assert (plan.outputs["exitcode"], plan.outputs["changes"]) == ("2", "true")
    assert "Plan: 1 to create" in plan.stdout
    # Not markdown: nothing for the job summary.
    assert Path(job["GITHUB_STEP_SUMMARY"]).read_text() == ""
    applied = run_action(
        {"command": "apply", "paths": plan.outputs["plan-file"], "args": "--emulator"}
        | {"state": state, "format": "json"},
        job,
        cwd=tmp_path,
    )
    assert applied.returncode == 0, applied.stderr
    assert '"status": "ok"' in Path(applied.outputs["output"]).read_text()
    again = run_action({"command": "plan", "args": "--emulator", "state": state}, job, cwd=tmp_path)
    assert (again.returncode, again.outputs["changes"]) == (0, "false"), again.stderr


def test_auth_is_passed_to_plan_and_apply_only(tmp_path: Path, job: dict[str, str]) -> None:
    done = run_action(
        {"command": "plan", "auth": "no-such-mode", "args": "--refresh"}, job, cwd=tmp_path
    )
    assert done.returncode == 1
    assert "--auth" in done.stderr
    validated = run_action({"command": "validate", "auth": "no-such-mode"}, job, cwd=tmp_path)
    assert validated.returncode == 0, validated.stderr


# --- the install step, for real (offline) ---------------------------------------------------------


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheelhouse with a wheel of this checkout (built from a copy, so no build/ or
    .egg-info lands in the checkout) and everything it needs, azure extra included."""
    base = tmp_path_factory.mktemp("action-install")
    folder = base / "wheels"
    wheelhouse.build(folder, extras=("azure",))
    source = base / "source"
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", ".cache", "*-cache", "__pycache__", "bench-out"
        ),
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_NO_INDEX="1", PIP_FIND_LINKS=str(folder))
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(folder), str(source)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    return folder


@pytest.mark.timeout(300)  # a virtualenv and a pip install from the wheelhouse, twice
def test_install_step_installs_the_pinned_version_once(tmp_path: Path, wheels: Path) -> None:
    env = base_env(tmp_path)
    env = {k: v for k, v in env.items() if not k.startswith("PIP_")}
    env.update(
        PIP_CONFIG_FILE=os.devnull,
        PIP_NO_INDEX="1",
        PIP_FIND_LINKS=str(wheels),
        PIP_DISABLE_PIP_VERSION_CHECK="1",
    )
    (tmp_path / "chats").mkdir()
    (tmp_path / "chats/launch.yaml").write_text(GOOD, encoding="utf-8")
    first = run_action({"command": "validate", "python": sys.executable}, env, cwd=tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    venv = Path(env["RUNNER_TEMP"]) / f"teams-provision-{__version__}"
    assert (venv / "bin/provision").resolve() != (Path(sys.executable).parent / "provision")
    # The azure extra came along: the blob state can be used.
    probe = subprocess.run(
        [str(venv / "bin/python"), "-c", "import azure.identity, azure.storage.blob"],
        capture_output=True,
        text=True,
    )
    assert probe.returncode == 0, probe.stderr
    # Used again in the same job: nothing is installed again (pip would fail: no index).
    env["PIP_FIND_LINKS"] = str(tmp_path / "no-wheels")
    again = run_action({"command": "validate", "python": sys.executable}, env, cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert outputs(Path(env["RUNNER_TEMP"]) / "output-install") == {}


def test_the_readme_workflow_is_valid_and_uses_only_declared_inputs(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    (block,) = [
        b.split("\n", 1)[1]
        for b in readme.split("```")
        if b.startswith("yaml\njobs:") and "/provision@" in b
    ]
    workflow = {"on": "pull_request", **yaml.safe_load(block)}
    path = tmp_path / "readme.yml"
    path.write_text(yaml.safe_dump(workflow), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", WORKFLOWS, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout
    declared = set(load(ACTION)["inputs"])
    for step in workflow["jobs"]["plan"]["steps"]:
        if "/provision@" in step.get("uses", ""):
            assert step["uses"] == f"OWNER/provision@v{__version__}"
            assert set(step["with"]) <= declared
