"""examples/azure-devops/azure-pipelines.yml: valid for Azure Pipelines; its steps work.

Checked against check-jsonschema's built-in Azure Pipelines schema (offline) and with
shellcheck; the scripts run with bash here: validate's `##vso[task.logissue]` annotations,
the OIDC token request against a loopback stand-in for Azure DevOps, plan's output variable
and summary, and the pull request comment thread against a loopback stand-in for the Azure
DevOps REST API.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from lib.pipeline_support import (
    AZURE_PIPELINE,
    ROOT,
    SHELLCHECK,
    base_env,
    load,
    needs_jq,
    run_bash,
)
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from provisioner.emulator import EmulatorServer

MARKER = "<!-- provision-plan -->"


def _check(path: Path) -> subprocess.CompletedProcess[str]:
    # --data-transform azure-pipelines: understand ${{ }} template expressions.
    # --regex-variant nonunicode: the vendored schema has a pattern that ECMAScript's unicode
    # mode rejects ("Invalid character escape"), which check-jsonschema would report as a crash.
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--builtin-schema",
            "vendor.azure-pipelines",
            "--data-transform",
            "azure-pipelines",
            "--regex-variant",
            "nonunicode",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def _steps(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        if "script" in node or "task" in node or "publish" in node or "download" in node:
            yield node
        for value in node.values():
            yield from _steps(value)
    elif isinstance(node, list):
        for value in node:
            yield from _steps(value)


def _stage(name: str) -> dict[str, Any]:
    (stage,) = [s for s in load(AZURE_PIPELINE)["stages"] if s["stage"] == name]
    return dict(stage)


def _script(stage: str, name: str) -> str:
    (step,) = [s for s in _steps(_stage(stage)) if s.get("name") == name]
    return str(step["script"])


# --- the file ----------------------------------------------------------------------------------


def test_validates_against_the_azure_pipelines_schema() -> None:
    done = _check(AZURE_PIPELINE)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_schema_check_catches_a_broken_pipeline(tmp_path: Path) -> None:
    broken = load(AZURE_PIPELINE)
    broken["stages"][2]["jobs"][0]["enviroment"] = broken["stages"][2]["jobs"][0].pop("environment")
    path = tmp_path / "broken.yml"
    path.write_text(yaml.safe_dump(broken), encoding="utf-8")
    assert _check(path).returncode == 1


def test_plan_then_manual_approval_then_apply_of_that_plan() -> None:
    pipeline = load(AZURE_PIPELINE)
    assert [s["stage"] for s in pipeline["stages"]] == ["Plan", "Approve", "Apply", "Drift"]
    # The scheduled run only looks for drift: no plan to approve, nothing applied.
    assert _stage("Plan")["condition"] == "ne(variables['Build.Reason'], 'Schedule')"
    assert _stage("Drift")["condition"] == "eq(variables['Build.Reason'], 'Schedule')"
    assert pipeline["schedules"][0]["branches"]["include"] == ["main"]
    assert pipeline["lockBehavior"] == "sequential"
    assert pipeline["trigger"]["branches"]["include"] == ["main"]
    assert pipeline["pr"]["branches"]["include"] == ["main"]

    approve = _stage("Approve")
    (job,) = approve["jobs"]
    assert job["pool"] == "server"  # an agentless job: waiting costs no agent
    (task,) = job["steps"]
    assert task["task"] == "ManualValidation@1"
    assert task["inputs"]["onTimeout"] == "reject"
    for stage in (approve, _stage("Apply")):
        assert "eq(variables['Build.SourceBranch'], 'refs/heads/main')" in stage["condition"]
        assert "ne(variables['Build.Reason'], 'PullRequest')" in stage["condition"]
    assert "dependencies.Plan.outputs['Plan.plan.changes']" in approve["condition"]

    (deploy,) = _stage("Apply")["jobs"]
    assert deploy["environment"] == "teams-production"
    steps = deploy["strategy"]["runOnce"]["deploy"]["steps"]
    assert {"download": "current", "artifact": "provision-plan"} in steps
    publish = [s for s in _steps(_stage("Plan")) if "publish" in s]
    assert publish[0]["artifact"] == "provision-plan"
    # Apply applies the saved plan file from this run, nothing else.
    assert 'provision apply "$PIPELINE_WORKSPACE/provision-plan/provision.plan"' in _script(
        "Apply", "apply"
    )


def test_workload_identity_without_a_secret() -> None:
    assert "AZURE_CLIENT_SECRET" not in AZURE_PIPELINE.read_text(encoding="utf-8")
    tasks = {s["task"].split("@")[0] for s in _steps(load(AZURE_PIPELINE)) if "task" in s}
    assert tasks == {"UsePythonVersion", "ManualValidation"}  # no AzureCLI / AzurePowerShell
    # provision signs in through the service connection itself: no step fetches a token.
    assert load(AZURE_PIPELINE)["variables"]["PROVISION_AUTH"] == "azure-pipelines"
    assert "AZURESUBSCRIPTION_SERVICE_CONNECTION_ID" in load(AZURE_PIPELINE)["variables"]
    for step in _steps(load(AZURE_PIPELINE)):
        script = str(step.get("script", ""))
        assert "SYSTEM_OIDCREQUESTURI" not in script and "FEDERATED_TOKEN" not in script
        if step.get("name") in ("plan", "apply", "comment", "drift"):
            # System.AccessToken reaches a script only when mapped explicitly.
            assert step["env"]["SYSTEM_ACCESSTOKEN"] == "$(System.AccessToken)"


@pytest.mark.skipif(SHELLCHECK is None, reason="shellcheck is not installed")
def test_every_script_passes_shellcheck() -> None:
    for step in _steps(load(AZURE_PIPELINE)):
        if "script" in step:
            done = subprocess.run(
                [str(SHELLCHECK), "--shell=bash", "-"],
                input=step["script"],
                capture_output=True,
                text=True,
            )
            assert done.returncode == 0, f"{step.get('name')}:\n{done.stdout}"


# --- the scripts -------------------------------------------------------------------------------


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = base_env(tmp_path, extra)
    env["AGENT_TEMPDIRECTORY"] = env["RUNNER_TEMP"]
    return env


@needs_jq
def test_validate_reports_each_problem_at_file_line_and_column(tmp_path: Path) -> None:
    chats = tmp_path / "chats"
    chats.mkdir()
    (chats / "ops.yaml").write_text(
        "version: 1\nchats:\n  - key: ops\n    chatTyp: group\n"
        "    members: [{user: a@contoso.com}, {user: b@contoso.com}]\n",
        encoding="utf-8",
    )
    done = run_bash(_script("Plan", "validate"), _env(tmp_path, MANIFESTS="chats/"), cwd=tmp_path)
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert (
        "##vso[task.logissue type=error;sourcepath=chats/ops.yaml;linenumber=4;columnnumber=5]"
        "'chatTyp' is not a known field" in lines
    )
    assert "chats/ops.yaml:4:5: error: 'chatTyp' is not a known field" in lines
    assert "1 files, 1 chats, 1 errors" in lines


@needs_jq
def test_validate_passes_valid_manifests(tmp_path: Path) -> None:
    env = _env(tmp_path, MANIFESTS=str(ROOT / "examples/chats.yaml"))
    done = run_bash(_script("Plan", "validate"), env, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "##vso[task.logissue" not in done.stdout


@needs_jq
@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_plan_sets_the_output_variable_and_the_summary(tmp_path: Path) -> None:
    env = _env(
        tmp_path,
        MANIFESTS=str(ROOT / "examples/chats.yaml"),
        PROVISION_STATE=str(tmp_path / "state.json"),
    )
    assert "--check-users" in _script("Plan", "plan")
    with EmulatorServer(limits="off", list_delay_s=0) as server:  # the examples' users
        env.update(PROVISION_GRAPH_URL=server.url, PROVISION_ACCESS_TOKEN="emulator")
        done = run_bash(_script("Plan", "plan"), env)
    assert done.returncode == 0, done.stderr
    out = Path(env["AGENT_TEMPDIRECTORY"]) / "provision"
    lines = done.stdout.splitlines()
    assert "##vso[task.setvariable variable=changes;isOutput=true]true" in lines
    assert f"##vso[task.uploadsummary]{out}/plan.md" in lines
    assert (out / "plan.md").read_text(encoding="utf-8").startswith("### provision plan")
    assert json.loads((out / "provision.plan").read_text())["kind"] == "provision-plan"


class FakeBoards:
    """The work item calls of the drift step (WIQL, create, update), on a loopback server."""

    def __init__(self, server: HTTPServer, open_items: list[int]) -> None:
        self.open_items = open_items
        self.writes: list[tuple[str, str, Any]] = []
        base = "/contoso/proj-id/_apis/wit"
        server.expect_request(f"{base}/wiql", method="POST").respond_with_handler(self._wiql)
        server.expect_request(f"{base}/workitems/$Issue", method="POST").respond_with_handler(
            self._write
        )
        for n in open_items:
            server.expect_request(f"{base}/workitems/{n}", method="PATCH").respond_with_handler(
                self._write
            )
        self.collection = server.url_for("/contoso/")

    def _wiql(self, request: Request) -> Response:
        assert request.headers["Authorization"] == "Bearer job-access-token"
        query = json.loads(request.data)["query"]
        assert "CONTAINS 'provision-drift'" in query and "<> 'Done'" in query
        items = [{"id": n} for n in self.open_items]
        return Response(json.dumps({"workItems": items}), content_type="application/json")

    def _write(self, request: Request) -> Response:
        assert request.args["api-version"] == "7.1"
        assert request.headers["Content-Type"] == "application/json-patch+json"
        self.writes.append((request.method, request.path, json.loads(request.data)))
        return Response("{}", content_type="application/json")


DRIFT_MANIFEST = (
    "version: 1\nchats:\n  - key: launch\n    chatType: group\n    topic: Launch\n"
    "    members:\n      - user: megan.bowen@contoso.com\n      - user: alex.wilber@contoso.com\n"
)


def _drift(
    tmp_path: Path, httpserver: HTTPServer, *, drift: bool, open_items: list[int]
) -> tuple[subprocess.CompletedProcess[str], FakeBoards]:
    """Apply, maybe rename the chat in Teams, then run the Drift stage's script."""
    boards = FakeBoards(httpserver, open_items)
    manifest = tmp_path / "chats.yaml"
    manifest.write_text(DRIFT_MANIFEST, encoding="utf-8")
    variables = load(AZURE_PIPELINE)["variables"]
    env = _env(
        tmp_path,
        MANIFESTS=str(manifest),
        PROVISION_STATE=str(tmp_path / "s.json"),
        SYSTEM_COLLECTIONURI=boards.collection,
        SYSTEM_TEAMPROJECTID="proj-id",
        BUILD_BUILDID="99",
        SYSTEM_ACCESSTOKEN="job-access-token",
        **{k: variables[k] for k in ("DRIFT_TAG", "DRIFT_WORK_ITEM_TYPE", "DRIFT_CLOSED_STATE")},
    )
    with EmulatorServer(limits="off", list_delay_s=0) as server:
        env.update(PROVISION_GRAPH_URL=server.url, PROVISION_ACCESS_TOKEN="emulator")
        applied = run_bash('provision apply "$MANIFESTS" --auto-approve', env)
        assert applied.returncode == 0, applied.stderr
        if drift:  # renamed in Teams, not in the manifest
            (chat,) = server.tenant.chats(include_deleted=False)
            server.tenant.update_topic(chat.id, "Launch (renamed in Teams)")
        done = run_bash(_script("Drift", "drift"), env)
    assert done.returncode == 0, done.stdout + done.stderr
    report = Path(env["AGENT_TEMPDIRECTORY"]) / "drift.md"
    assert f"##vso[task.uploadsummary]{report}" in done.stdout
    return done, boards


@needs_jq
@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_drift_opens_a_work_item(tmp_path: Path, httpserver: HTTPServer) -> None:
    done, boards = _drift(tmp_path, httpserver, drift=True, open_items=[])
    assert "##vso[task.logissue type=warning]Chats changed outside provision" in done.stdout
    ((method, path, ops),) = boards.writes
    assert (method, path) == ("POST", "/contoso/proj-id/_apis/wit/workitems/$Issue")
    fields = {op["path"]: op["value"] for op in ops}
    assert fields["/fields/System.Tags"] == "provision-drift"
    assert "Launch (renamed in Teams)" in fields["/fields/System.Description"]
    assert "buildId=99" in fields["/fields/System.Description"]


@needs_jq
@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_drift_comments_on_the_open_work_item(tmp_path: Path, httpserver: HTTPServer) -> None:
    done, boards = _drift(tmp_path, httpserver, drift=True, open_items=[41])
    ((method, path, ops),) = boards.writes
    assert (method, path) == ("PATCH", "/contoso/proj-id/_apis/wit/workitems/41")
    assert [op["path"] for op in ops] == ["/fields/System.History"]
    assert "Updated the drift work item 41." in done.stdout


@needs_jq
@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_no_drift_closes_the_work_item(tmp_path: Path, httpserver: HTTPServer) -> None:
    done, boards = _drift(tmp_path, httpserver, drift=False, open_items=[41])
    ((method, path, ops),) = boards.writes
    assert (method, path) == ("PATCH", "/contoso/proj-id/_apis/wit/workitems/41")
    assert {op["path"]: op["value"] for op in ops}["/fields/System.State"] == "Done"
    assert "Closed the drift work item 41." in done.stdout


class FakeDevOps:
    """The three pull request thread calls of the comment step, on a loopback server."""

    def __init__(self, server: HTTPServer, threads: list[dict[str, Any]]) -> None:
        self.threads = threads
        self.writes: list[tuple[str, str, Any]] = []
        base = "/contoso/proj-id/_apis/git/repositories/repo-id/pullRequests/7/threads"
        server.expect_request(base, method="GET").respond_with_handler(self._list)
        server.expect_request(base, method="POST").respond_with_handler(self._write)
        server.expect_request(f"{base}/31/comments/1", method="PATCH").respond_with_handler(
            self._write
        )
        self.collection = server.url_for("/contoso/")

    def _list(self, request: Request) -> Response:
        assert request.headers["Authorization"] == "Bearer job-access-token"
        return Response(json.dumps({"value": self.threads}), content_type="application/json")

    def _write(self, request: Request) -> Response:
        assert request.args["api-version"] == "7.1"
        self.writes.append((request.method, request.path, json.loads(request.data)))
        return Response("{}", content_type="application/json")


def _comment_env(tmp_path: Path, devops: FakeDevOps, result: str = "Succeeded") -> dict[str, str]:
    env = _env(
        tmp_path,
        SYSTEM_COLLECTIONURI=devops.collection,
        SYSTEM_TEAMPROJECTID="proj-id",
        BUILD_REPOSITORY_ID="repo-id",
        SYSTEM_PULLREQUEST_PULLREQUESTID="7",
        BUILD_BUILDID="88",
        BUILD_SOURCEVERSION="abc123",
        SYSTEM_ACCESSTOKEN="job-access-token",
        PLAN_RESULT=result,
    )
    out = Path(env["AGENT_TEMPDIRECTORY"]) / "provision"
    out.mkdir(parents=True)
    (out / "plan.md").write_text("### provision plan\n\nnew plan\n", encoding="utf-8")
    return env


@needs_jq
@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_comment_thread_is_edited_in_place(tmp_path: Path, httpserver: HTTPServer) -> None:
    devops = FakeDevOps(
        httpserver,
        [
            {"id": 30, "comments": [{"id": 1, "content": "Please rename the topic"}]},
            {"id": 31, "comments": [{"id": 1, "content": f"{MARKER}\nold plan"}]},
            {"id": 32, "comments": [{"id": 1, "content": None}]},  # a system thread
        ],
    )
    done = run_bash(_script("Plan", "comment"), _comment_env(tmp_path, devops))
    assert done.returncode == 0, done.stderr
    ((method, path, body),) = devops.writes
    assert (method, path.rsplit("/threads", 1)[1]) == ("PATCH", "/31/comments/1")
    assert body["content"].startswith(f"{MARKER}\n### provision plan\n\nnew plan\n")
    assert "buildId=88" in body["content"]


@needs_jq
@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_first_comment_thread_is_created(tmp_path: Path, httpserver: HTTPServer) -> None:
    devops = FakeDevOps(httpserver, [])
    done = run_bash(_script("Plan", "comment"), _comment_env(tmp_path, devops, "Failed"))
    assert done.returncode == 0, done.stderr
    ((method, _, body),) = devops.writes
    assert method == "POST"
    assert body["status"] == "closed"
    (comment,) = body["comments"]
    assert comment["content"].startswith(MARKER)
    assert "**Planning failed**" in comment["content"]


@needs_jq
def test_apply_step_applies_the_approved_plan_and_reports(tmp_path: Path) -> None:
    env = _env(tmp_path, PIPELINE_WORKSPACE=str(tmp_path / "ws"))
    result = {
        "status": "ok",
        "summary": {"created": 2, "failed": 0},
        "outcomes": [{"key": "launch", "status": "created", "error": None}],
    }
    fake = tmp_path / "bin/provision"
    fake.write_text(
        "#!/bin/sh\n"
        f'[ "$2" = "{tmp_path}/ws/provision-plan/provision.plan" ] || exit 64\n'
        '[ "$3 $4" = "--format json" ] || exit 65\n'
        f"cat <<'EOF'\n{json.dumps(result)}\nEOF\n",
        encoding="utf-8",
    )
    fake.chmod(0o755)
    done = run_bash(_script("Apply", "apply"), env)
    assert done.returncode == 0, done.stdout + done.stderr
    summary_file = Path(env["AGENT_TEMPDIRECTORY"]) / "apply.md"
    assert f"##vso[task.uploadsummary]{summary_file}" in done.stdout.splitlines()
    summary = summary_file.read_text(encoding="utf-8")
    assert "### provision apply: ok" in summary and "| created | 2 |" in summary
