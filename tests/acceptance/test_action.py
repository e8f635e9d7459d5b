"""action.yml, the composite GitHub Action: valid for GitHub, and its steps do what its inputs
and outputs say, run with bash as the runner would (tests/lib/pipeline_support.run_action).

The install step runs for real once, offline, from a fresh copy of the checkout (the files a
clone has) as the runner's `github.action_path`: pip gets a wheelhouse (tests/lib/wheelhouse.py) of
the dependencies, and the copy's lock is rewritten to those wheels' hashes, so the step's
--require-hashes install is the one users get, only from other files.
"""

from __future__ import annotations

import hashlib
import os
import re
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
    action_venv,
    base_env,
    load,
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


def test_installs_its_own_checkout_and_documents_every_input() -> None:
    action = load(ACTION)
    # No version to install from an index: pinning the action (a commit) pins the tool.
    assert not {"version", "extras"} & set(action["inputs"])
    install = action["runs"]["steps"][0]
    assert install["env"]["ACTION_PATH"] == "${{ github.action_path }}"
    assert "--require-hashes" in install["run"] and "/bin/" not in install["run"]
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


def test_without_python3_on_path_the_install_step_takes_python(
    tmp_path: Path, job: dict[str, str]
) -> None:
    # Windows runners have `python` only: the default finds it (issue 25).
    tools = tmp_path / "only-python"
    tools.mkdir()
    for name in ("bash", "cat", "dirname", "mkdir", "mktemp", "rm", "touch"):
        (tools / name).symlink_to(shutil.which(name) or f"/bin/{name}")
    (tools / "python").symlink_to(sys.executable)
    job["PATH"] = str(tools)
    done = run_action({"command": "validate"}, job, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"provision, version {__version__}" in done.stdout
    (tools / "python").unlink()
    missing = run_action({"command": "validate"}, job, cwd=tmp_path)
    assert missing.returncode == 1
    assert "::error::provision action: no python3 or python on PATH" in missing.stdout


def test_unknown_command_fails_with_one_error(tmp_path: Path, job: dict[str, str]) -> None:
    done = run_action({"command": "destroy"}, job, cwd=tmp_path)
    assert done.returncode == 1
    assert (
        "::error::provision action: command must be validate, plan, apply or doctor" in done.stdout
    )


def test_validate_writes_the_output_file_and_exit_code(tmp_path: Path, job: dict[str, str]) -> None:
    done = run_action({"command": "validate", "format": "json"}, job, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.outputs["exitcode"] == "0"
    out = Path(done.outputs["output"])
    assert out.parent == Path(job["RUNNER_TEMP"]) and '"valid": true' in out.read_text()
    # The installed provision is on PATH for the job's later steps.
    path_file = Path(job["RUNNER_TEMP"]) / "GITHUB_PATH"
    assert path_file.read_text().splitlines() == [str(action_venv(job["RUNNER_TEMP"]) / "bin")]
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


def test_doctor_runs_the_pre_flight_check(tmp_path: Path, job: dict[str, str]) -> None:
    done = run_action({"command": "doctor", "args": "--emulator"}, job, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.outputs["exitcode"] == "0"
    report = Path(done.outputs["output"]).read_text(encoding="utf-8")
    assert "ok    users" in report and "Ready:" in report


def test_auth_is_passed_to_plan_and_apply_only(tmp_path: Path, job: dict[str, str]) -> None:
    done = run_action(
        {"command": "plan", "auth": "no-such-mode", "args": "--refresh"}, job, cwd=tmp_path
    )
    assert done.returncode == 1
    assert "--auth" in done.stderr
    validated = run_action({"command": "validate", "auth": "no-such-mode"}, job, cwd=tmp_path)
    assert validated.returncode == 0, validated.stderr


# --- the install step, for real (offline) ---------------------------------------------------------


def _fresh_copy(dest: Path) -> Path:
    """The files a clone of this checkout has (tracked, or new and not ignored)."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    return dest


def _lock_of(wheels: Path) -> str:
    """A lock in the committed lock's form (name==version --hash=...) for the wheelhouse."""
    lines = []
    for wheel in sorted(wheels.glob("*.whl")):
        name, version = wheel.name.split("-")[:2]
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        lines.append(f"{name}=={version} \\\n    --hash=sha256:{digest}")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh copy of the checkout whose lock names the wheels of an offline wheelhouse
    (this environment's dependencies, azure extra and setuptools included) in ./wheels."""
    base = tmp_path_factory.mktemp("action-install")
    wheels = base / "wheels"
    wheelhouse.build(wheels, extras=("azure",))
    source = _fresh_copy(base / "action")
    (source / "requirements/action.lock").write_text(_lock_of(wheels), encoding="utf-8")
    return source


def test_the_committed_lock_is_hash_checked_and_covers_the_action() -> None:
    lock = (ROOT / "requirements/action.lock").read_text(encoding="utf-8")
    pins = re.findall(r"^([a-z0-9][a-z0-9._-]*)==[^ ;\\]+", lock, re.M)
    entries = re.split(r"\n(?=[a-z0-9])", lock.split("\n", 2)[2].strip())
    assert all("--hash=sha256:" in entry for entry in entries)
    needed = {"pyyaml", "jsonschema", "msal", "msal-extensions", "requests", "click", "setuptools"}
    assert needed | {"azure-storage-blob", "azure-identity"} <= set(pins)


@pytest.mark.timeout(300)  # a virtualenv and a pip install from the wheelhouse, twice
def test_install_step_installs_the_checkout_once(tmp_path: Path, clone: Path) -> None:
    env = base_env(tmp_path)
    env = {k: v for k, v in env.items() if not k.startswith("PIP_")}
    env.update(
        PIP_CONFIG_FILE=os.devnull,
        PIP_NO_INDEX="1",
        PIP_FIND_LINKS=str(clone.parent / "wheels"),
        PIP_DISABLE_PIP_VERSION_CHECK="1",
    )
    (tmp_path / "chats").mkdir()
    (tmp_path / "chats/launch.yaml").write_text(GOOD, encoding="utf-8")
    with_ = {"command": "validate", "python": sys.executable}
    first = run_action(with_, env, cwd=tmp_path, action_path=clone)
    assert first.returncode == 0, first.stdout + first.stderr
    assert f"provision, version {__version__}" in first.stdout
    venv = action_venv(env["RUNNER_TEMP"], clone)
    installed = subprocess.run(
        [
            str(venv / "bin/python"),
            "-c",
            "import provisioner, azure.identity, azure.storage.blob;print(provisioner.__file__)",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    # The checkout itself, installed (not a link to this one), and the azure extra came along.
    assert installed.returncode == 0, installed.stderr
    assert str(venv) in installed.stdout
    # Used again in the same job: nothing is installed again (pip would fail: no wheels).
    env["PIP_FIND_LINKS"] = str(tmp_path / "no-wheels")
    again = run_action(with_, env, cwd=tmp_path, action_path=clone)
    assert again.returncode == 0, again.stdout + again.stderr


def test_a_wheel_that_does_not_match_the_lock_is_refused(tmp_path: Path, clone: Path) -> None:
    action = tmp_path / "action"
    shutil.copytree(clone, action)
    lock = action / "requirements/action.lock"
    lock.write_text(re.sub(r"sha256:[0-9a-f]{4}", "sha256:0000", lock.read_text()), "utf-8")
    env = {k: v for k, v in base_env(tmp_path).items() if not k.startswith("PIP_")}
    env.update(
        PIP_CONFIG_FILE=os.devnull, PIP_NO_INDEX="1", PIP_FIND_LINKS=str(clone.parent / "wheels")
    )
    done = run_action(
        {"command": "validate", "python": sys.executable}, env, cwd=tmp_path, action_path=action
    )
    assert done.returncode != 0
    assert "HASHES" in done.stderr or "hash" in done.stderr.lower()


def test_the_docs_workflow_is_valid_and_uses_only_declared_inputs(tmp_path: Path) -> None:
    readme = (ROOT / "docs/gitops.md").read_text(encoding="utf-8")
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
            assert re.fullmatch(r"OWNER/provision@[0-9a-f]{40}", step["uses"])
            assert set(step["with"]) <= declared
