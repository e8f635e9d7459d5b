"""The example pipelines' apply steps, run with bash against the Graph emulator: they apply the
saved plan, their `apply --format json` output matches the shipped JSON Schema, and their
summary lists each failure with Graph's request-id while the step fails."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from lib.pipeline_support import (
    ROOT,
    ActionRun,
    base_env,
    load,
    needs_jq,
    preinstall_action,
    provision,
    run_bash,
    run_workflow_action,
)

from provisioner.emulator import EmulatorServer
from provisioner.emulator.users import User
from provisioner.manifest.schema import shipped_schemas

ADELE = User("0b4e34c5-5d6f-4d0a-9a53-1c5c4bd5e0a1", "adele@contoso.com", "Adele Vance")
ALEX = User("6e7b7d0c-47a0-4d1b-8f33-0f0b8e5c7f12", "alex@contoso.com", "Alex Wilber")
# In the directory when the plan looks users up (--check-users), gone by the apply.
LEAVER = User("9d1f2c3b-4a5e-4f60-8a7b-6c5d4e3f2a1b", "nobody@contoso.com", "No Body")

MANIFEST = """\
version: 1
chats:
  - key: launch
    chatType: group
    topic: Launch
    members:
      - user: adele@contoso.com
      - user: alex@contoso.com
  - chatType: oneOnOne
    members:
      - user: adele@contoso.com
      - user: alex@contoso.com
"""
# A member the tenant does not have: Graph refuses that chat, the others are made.
WITH_A_STRANGER = (
    MANIFEST
    + """\
  - key: partners
    chatType: group
    topic: Partners
    members:
      - user: adele@contoso.com
      - user: nobody@contoso.com
"""
)


@pytest.fixture
def graph() -> Iterator[EmulatorServer]:
    users = [ADELE, ALEX, LEAVER]
    server = EmulatorServer(limits="off", seed=7, users=users, list_delay_s=0).start()
    try:
        yield server
    finally:
        server.stop()


def _apply_result_schema() -> dict[str, Any]:
    path = shipped_schemas()["apply-result"]
    return dict(json.loads(path.read_text(encoding="utf-8")))


def _azure_apply_script() -> str:
    pipeline = load(ROOT / "examples/azure-devops/azure-pipelines.yml")
    (apply_stage,) = [s for s in pipeline["stages"] if s["stage"] == "Apply"]
    steps = apply_stage["jobs"][0]["strategy"]["runOnce"]["deploy"]["steps"]
    (step,) = [s for s in steps if s.get("name") == "apply"]
    return str(step["script"])


def _setup(tmp_path: Path, graph: EmulatorServer, manifest: str) -> dict[str, str]:
    (tmp_path / "chats").mkdir()
    (tmp_path / "chats/chats.yaml").write_text(manifest, encoding="utf-8")
    env = base_env(
        tmp_path,
        {
            "MANIFESTS": "chats/",
            "PROVISION_STATE": str(tmp_path / "state.json"),
            "PROVISION_GRAPH_URL": graph.url,
            "PROVISION_ACCESS_TOKEN": "emulator",
        },
    )
    preinstall_action(env)
    done = run_workflow_action("plan-main", "plan", env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    graph.tenant.directory.remove(LEAVER.id)
    return env


def _github_apply(env: dict[str, str], cwd: Path) -> tuple[ActionRun, Path]:
    """The apply job's apply step (the action, which adds its run report to the summary)."""
    applied = run_workflow_action("apply", "apply", env, cwd=cwd)
    return applied, Path(applied.outputs["output"])


@needs_jq
def test_github_apply_step_applies_the_plan_and_reports_per_key(
    tmp_path: Path, graph: EmulatorServer
) -> None:
    env = _setup(tmp_path, graph, MANIFEST)
    done, result_file = _github_apply(env, tmp_path)
    assert done.returncode == 0, done.stderr
    assert result_file == Path(env["RUNNER_TEMP"]) / "provision/apply-result.json"
    result = json.loads(result_file.read_text())
    jsonschema.validate(result, _apply_result_schema())
    # As a later pipeline step would check it, with the schema provision prints.
    schema = provision("schema", "apply-result", env=env, cwd=tmp_path)
    checked = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--schemafile", "-", str(result_file)],
        input=schema.stdout,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert result["status"] == "ok"
    assert {o["key"]: o["status"] for o in result["outcomes"]}["launch"] == "created"
    summary = Path(env["GITHUB_STEP_SUMMARY"]).read_text(encoding="utf-8")
    assert "### provision apply: ok" in summary
    assert "| created | 2 |" in summary
    assert "```mermaid\nxychart-beta" in summary  # the action's run report (issue 25)
    # Applied: planning again finds nothing to do.
    again = provision(
        "plan", "chats/", "--no-refresh", "--detailed-exitcode", env=env, cwd=tmp_path
    )
    assert again.returncode == 0, again.stdout + again.stderr


@needs_jq
@pytest.mark.parametrize("pipeline", ["github", "azure"])
def test_apply_step_fails_and_names_the_request_id(
    tmp_path: Path, graph: EmulatorServer, pipeline: str
) -> None:
    env = _setup(tmp_path, graph, WITH_A_STRANGER)
    done: ActionRun | subprocess.CompletedProcess[str]
    if pipeline == "github":
        done, result_file = _github_apply(env, tmp_path)
    else:
        env["AGENT_TEMPDIRECTORY"] = env["RUNNER_TEMP"]
        workspace = tmp_path / "pipeline"
        (workspace / "provision-plan").mkdir(parents=True)
        (Path(env["RUNNER_TEMP"]) / "provision/provision.plan").rename(
            workspace / "provision-plan/provision.plan"
        )
        env["PIPELINE_WORKSPACE"] = str(workspace)
        result_file = Path(env["RUNNER_TEMP"]) / "apply-result.json"
        done = run_bash(_azure_apply_script(), env, cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    result = json.loads(result_file.read_text(encoding="utf-8"))
    jsonschema.validate(result, _apply_result_schema())
    assert result["status"] == "failed"
    (failed,) = [o for o in result["outcomes"] if o["status"] == "failed"]
    assert failed["key"] == "partners"
    assert failed["error"]["request_id"]
    if pipeline == "github":
        summary = Path(env["GITHUB_STEP_SUMMARY"]).read_text(encoding="utf-8")
        assert isinstance(done, ActionRun) and done.outputs["exitcode"] == "1"
    else:
        summary = (Path(env["RUNNER_TEMP"]) / "apply.md").read_text(encoding="utf-8")
        assert f"##vso[task.uploadsummary]{env['RUNNER_TEMP']}/apply.md" in done.stdout
    assert "### provision apply: failed" in summary
    assert f"- `partners`: {failed['error']['message']}" in summary
    assert f"(request-id `{failed['error']['request_id']}`)" in summary
