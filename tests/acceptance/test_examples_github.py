"""examples/github-actions/provision.yml: valid for GitHub, and its steps do what they say.

The workflow is checked against GitHub's workflow schema (check-jsonschema's built-in copy,
offline), its shell steps with shellcheck, and the steps that carry logic are run with bash
here: plan through this repository's action (action.yml) with the real provision against a
local emulator (every user looked up), the sticky comment and the drift issue with a fake
`gh`, and the apply report. The process (issue 25): approval only after the plan, apply of
that saved plan only from a merge to main, one concurrency group on main, actions pinned by
commit without persisted credentials. Sign-in needs no step of its own: provision fetches
GitHub's OIDC token itself (tests/graph).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from lib.pipeline_support import (
    GITHUB_WORKFLOW,
    ROOT,
    SHELLCHECK,
    base_env,
    gh_log,
    github_step,
    install_fake_gh,
    iter_github_scripts,
    load,
    needs_jq,
    preinstall_action,
    run_bash,
    run_workflow_action,
    write_manifest,
)

from provisioner.emulator import EmulatorServer
from provisioner.views.plan import GITHUB_COMMENT_LIMIT

MARKER = "<!-- provision-plan -->"


def _check_jsonschema(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


# --- the file ----------------------------------------------------------------------------------


def test_validates_against_githubs_workflow_schema() -> None:
    done = _check_jsonschema("--builtin-schema", "vendor.github-workflows", str(GITHUB_WORKFLOW))
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_schema_check_catches_a_broken_workflow(tmp_path: Path) -> None:
    broken = load(GITHUB_WORKFLOW)
    broken["jobs"]["plan"]["permisions"] = broken["jobs"]["plan"].pop("permissions")
    path = tmp_path / "broken.yml"
    path.write_text(yaml.safe_dump(broken), encoding="utf-8")
    done = _check_jsonschema("--builtin-schema", "vendor.github-workflows", str(path))
    assert done.returncode == 1
    assert "permisions" in done.stdout


def test_triggers_permissions_and_concurrency() -> None:
    wf = load(GITHUB_WORKFLOW)
    on = wf[True] if True in wf else wf["on"]  # YAML 1.1 reads a bare `on` as true
    assert on["pull_request"]["branches"] == ["main"]
    assert on["push"]["branches"] == ["main"]
    assert on["schedule"] and on["workflow_dispatch"] == {}  # no input: nothing to apply
    assert wf["permissions"] == {"contents": "read"}
    jobs = wf["jobs"]
    # Validate needs no credentials; the others get an OIDC token.
    assert "permissions" not in jobs["validate"]
    assert jobs["plan"]["permissions"]["id-token"] == "write"
    assert jobs["plan"]["permissions"]["pull-requests"] == "write"
    # Only a push to main plans for an apply, and the approval (the environment) comes after
    # that plan: the apply job needs it and applies only when it has changes.
    assert jobs["plan-main"]["if"] == "github.event_name == 'push'"
    assert "environment" not in jobs["plan-main"]
    assert jobs["apply"]["needs"] == "plan-main"
    assert jobs["apply"]["if"] == "needs.plan-main.outputs.changes == 'true'"
    assert jobs["apply"]["environment"] == "teams-production"
    assert jobs["apply"]["permissions"] == {"id-token": "write"}
    assert jobs["drift"]["if"] == (
        "github.event_name == 'schedule' || github.event_name == 'workflow_dispatch'"
    )
    assert jobs["drift"]["permissions"]["issues"] == "write"
    # Main's runs share one group and are never cancelled: no two applies overlap.
    group = wf["concurrency"]["group"]
    assert "'provision-main'" in group
    assert wf["concurrency"]["cancel-in-progress"] == "${{ github.event_name == 'pull_request' }}"
    # The state lives in Blob Storage; plans sign in with the plan app, apply and drift with
    # the apply app.
    assert wf["env"]["PROVISION_STATE"] == "${{ vars.PROVISION_STATE }}"
    for job in ("plan", "plan-main"):
        assert jobs[job]["env"]["AZURE_CLIENT_ID"] == "${{ vars.AZURE_PLAN_CLIENT_ID }}"
    for job in ("apply", "drift"):
        assert jobs[job]["env"]["AZURE_CLIENT_ID"] == "${{ vars.AZURE_CLIENT_ID }}"


def test_every_action_is_pinned_by_commit_and_checkouts_keep_no_credentials() -> None:
    for name, job in load(GITHUB_WORKFLOW)["jobs"].items():
        for step in job["steps"]:
            uses = step.get("uses")
            if uses is None:
                continue
            assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", uses), (name, uses)
            if uses.startswith("actions/checkout@"):
                assert step["with"]["persist-credentials"] is False, name


def test_plans_look_every_user_up_and_apply_takes_the_saved_plan_of_this_run() -> None:
    jobs = load(GITHUB_WORKFLOW)["jobs"]
    for job in ("plan", "plan-main"):
        (step,) = [s for s in jobs[job]["steps"] if s.get("id") == "plan"]
        assert step["with"]["args"] == "--no-refresh --check-users"
    (upload,) = [
        s for s in jobs["plan-main"]["steps"] if "upload-artifact@" in str(s.get("uses", ""))
    ]
    (download,) = [
        s for s in jobs["apply"]["steps"] if "download-artifact@" in str(s.get("uses", ""))
    ]
    # Same name, no run-id: the artifact of this run, i.e. of this commit.
    assert download["with"]["name"] == upload["with"]["name"] == "provision-plan"
    assert "run-id" not in download["with"]
    (apply,) = [s for s in jobs["apply"]["steps"] if s.get("id") == "apply"]
    assert apply["with"]["paths"] == download["with"]["path"] + "provision.plan"


def test_workload_identity_without_azure_login_or_token_scripts() -> None:
    text = GITHUB_WORKFLOW.read_text(encoding="utf-8")
    assert "azure/login" not in text.replace("No azure/login", "")
    assert "client-secret" not in text.lower() and "AZURE_CLIENT_SECRET" not in text
    # provision fetches GitHub's OIDC token itself: no step handles one.
    for where, script in iter_github_scripts():
        assert "ACTIONS_ID_TOKEN_REQUEST" not in script, where
        assert "AZURE_FEDERATED_TOKEN_FILE" not in script, where


def test_provision_is_installed_and_run_by_the_pinned_action() -> None:
    for where, script in iter_github_scripts():
        assert "pip install" not in script, where
    uses = [
        (job, step.get("id"), step["uses"])
        for job, spec in load(GITHUB_WORKFLOW)["jobs"].items()
        for step in spec["steps"]
        if "/provision@" in str(step.get("uses", ""))
    ]
    assert {(job, sid) for job, sid, _ in uses} == {
        ("validate", "validate"),
        ("plan", "plan"),
        ("plan-main", "plan"),
        ("apply", "apply"),
        ("drift", "drift"),
    }
    assert all(re.fullmatch(r"OWNER/provision@[0-9a-f]{40}", u) for _, _, u in uses)


@pytest.mark.skipif(SHELLCHECK is None, reason="shellcheck is not installed")
def test_every_shell_step_passes_shellcheck() -> None:
    for where, script in iter_github_scripts():
        assert "${{" not in script, f"{where}: pass values through env:, not into the script"
        done = subprocess.run(
            [str(SHELLCHECK), "--shell=bash", "-"], input=script, capture_output=True, text=True
        )
        assert done.returncode == 0, f"{where}:\n{done.stdout}"


# --- plan --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def graph() -> Iterator[str]:
    """The directory the plans' --check-users looks users up in (made-up users: any GUID or
    UPN exists)."""
    with EmulatorServer(limits="off", invent_users=True, list_delay_s=0) as server:
        yield server.url


def _plan_env(tmp_path: Path, manifests: Path, graph: str = "") -> dict[str, str]:
    env = base_env(
        tmp_path,
        {"MANIFESTS": str(manifests), "PROVISION_STATE": str(tmp_path / "state.json")},
    )
    if graph:
        env.update(PROVISION_GRAPH_URL=graph, PROVISION_ACCESS_TOKEN="emulator")
    preinstall_action(env)
    return env


@pytest.mark.parametrize("job", ["plan", "plan-main"])
def test_plan_step_saves_the_plan_and_reports_changes(tmp_path: Path, job: str, graph: str) -> None:
    env = _plan_env(tmp_path, ROOT / "examples/chats.yaml", graph)
    done = run_workflow_action(job, "plan", env)
    assert done.returncode == 0, done.stderr
    out = Path(env["RUNNER_TEMP"]) / "provision"
    assert done.outputs == {
        "exitcode": "2",
        "changes": "true",
        "output": str(out / "plan.md"),
        "plan-file": str(out / "provision.plan"),
    }
    assert json.loads((out / "provision.plan").read_text())["kind"] == "provision-plan"
    summary = Path(env["GITHUB_STEP_SUMMARY"]).read_text(encoding="utf-8")
    assert summary == (out / "plan.md").read_text(encoding="utf-8")
    assert summary.startswith("### provision plan")


def test_plan_step_does_not_swallow_errors(tmp_path: Path) -> None:
    bad = tmp_path / "chats/bad.yaml"
    bad.parent.mkdir()
    bad.write_text("version: 2\nchats: []\n", encoding="utf-8")
    env = _plan_env(tmp_path, bad.parent)
    done = run_workflow_action("plan", "plan", env)
    assert done.returncode == 1
    assert "version" in done.stderr
    assert done.outputs["exitcode"] == "1"
    assert done.outputs["changes"] == "" and done.outputs["plan-file"] == ""
    assert Path(env["GITHUB_STEP_SUMMARY"]).read_text(encoding="utf-8") == ""


def test_plan_step_with_nothing_to_do(tmp_path: Path, graph: str) -> None:
    empty = tmp_path / "chats/none.yaml"
    empty.parent.mkdir()
    empty.write_text("version: 1\nchats: []\n", encoding="utf-8")
    env = _plan_env(tmp_path, empty.parent, graph)
    done = run_workflow_action("plan", "plan", env)
    assert done.returncode == 0, done.stderr
    assert (done.outputs["exitcode"], done.outputs["changes"]) == ("0", "false")


def test_plan_step_fails_on_a_user_the_directory_does_not_know(tmp_path: Path) -> None:
    chats = tmp_path / "chats/chats.yaml"
    chats.parent.mkdir()
    chats.write_text(
        "version: 1\nchats:\n  - chatType: oneOnOne\n    members:\n"
        "      - user: megan.bowen@contoso.com\n      - user: megan.bowne@contoso.com\n",
        encoding="utf-8",
    )
    with EmulatorServer(limits="off", list_delay_s=0) as server:  # the default directory
        env = _plan_env(tmp_path, chats.parent, server.url)
        done = run_workflow_action("plan", "plan", env)
    assert done.returncode == 1
    assert "chats.yaml:6:9: error: user 'megan.bowne@contoso.com' was not found" in done.stderr
    assert done.outputs["exitcode"] == "1" and done.outputs["plan-file"] == ""


def test_validate_step_fails_on_a_bad_manifest_with_annotations(tmp_path: Path) -> None:
    bad = tmp_path / "chats/bad.yaml"
    bad.parent.mkdir()
    bad.write_text("version: 1\nchats:\n  - chatTyp: group\n", encoding="utf-8")
    env = _plan_env(tmp_path, bad.parent)
    env["GITHUB_ACTIONS"] = "true"
    done = run_workflow_action("validate", "validate", env)
    assert done.returncode == 1
    assert f"::error file={bad}" in done.stdout
    assert done.outputs["exitcode"] == "1"


# --- the sticky comment ------------------------------------------------------------------------


def _comment_env(tmp_path: Path, plan_md: str, outcome: str = "success") -> dict[str, str]:
    env = base_env(
        tmp_path,
        {
            "PR_NUMBER": "7",
            "HEAD_SHA": "abc123",
            "PLAN_OUTCOME": outcome,
            "RUN_URL": "https://github.com/contoso/teams/actions/runs/4242",
            "GH_TOKEN": "not-used-by-the-fake",
        },
    )
    out = Path(env["RUNNER_TEMP"]) / "provision"
    out.mkdir(parents=True, exist_ok=True)
    (out / "plan.md").write_text(plan_md, encoding="utf-8")
    env["PLAN_MD"] = str(out / "plan.md")
    return env


def _comments(*items: tuple[int, str, str]) -> dict[str, Any]:
    return {
        "api": {
            "repos/contoso/teams/issues/7/comments": [
                {"id": i, "user": {"login": login}, "body": body} for i, login, body in items
            ]
        }
    }


@needs_jq
def test_comment_is_edited_in_place_not_duplicated(tmp_path: Path) -> None:
    env = _comment_env(tmp_path, "### provision plan\n\nnew plan\n")
    log = install_fake_gh(
        tmp_path,
        _comments(
            (1, "megan", "Looks good"),
            (2, "megan", f"{MARKER} quoting the bot is not the bot"),
            (3, "github-actions[bot]", f"{MARKER}\n### provision plan\n\nold plan"),
            (4, "github-actions[bot]", "some other bot comment"),
        ),
        env,
    )
    done = run_bash(github_step("plan", "comment")["run"], env)
    assert done.returncode == 0, done.stderr
    (write,) = gh_log(log)
    assert write["method"] == "PATCH"
    assert write["path"] == "repos/contoso/teams/issues/comments/3"
    body = write["body"]["body"]
    assert body.startswith(MARKER + "\n### provision plan\n\nnew plan\n")
    assert "abc123" in body and "runs/4242" in body


@needs_jq
def test_first_comment_is_created(tmp_path: Path) -> None:
    env = _comment_env(tmp_path, "### provision plan\n\nfirst\n")
    log = install_fake_gh(tmp_path, _comments((1, "megan", "hello")), env)
    done = run_bash(github_step("plan", "comment")["run"], env)
    assert done.returncode == 0, done.stderr
    (write,) = gh_log(log)
    assert (write["method"], write["path"]) == ("POST", "repos/contoso/teams/issues/7/comments")
    assert write["body"]["body"].startswith(MARKER)


@needs_jq
def test_a_failed_plan_replaces_the_old_comment_with_a_warning(tmp_path: Path) -> None:
    env = _comment_env(tmp_path, "stale", outcome="failure")
    log = install_fake_gh(
        tmp_path, _comments((3, "github-actions[bot]", f"{MARKER}\nold plan")), env
    )
    done = run_bash(github_step("plan", "comment")["run"], env)
    assert done.returncode == 0, done.stderr
    (write,) = gh_log(log)
    assert write["method"] == "PATCH"
    assert "**Planning failed** for abc123" in write["body"]["body"]
    assert "stale" not in write["body"]["body"]


@needs_jq
def test_comment_of_a_5000_chat_plan_fits_githubs_limit(tmp_path: Path, graph: str) -> None:
    """End to end: `provision plan --format markdown` of 5,000 creations, through the
    workflow's plan and comment steps, gives a comment GitHub accepts."""
    # 250 leads and 250 developers: the plan step's --check-users then makes 28 directory
    # batches, not the 503 (29 s at Graph's 350 reads per second) of 10,050 distinct users;
    # the comment's size does not depend on how many people there are.
    manifests = write_manifest(tmp_path / "chats/big.yaml", 5000, people=250).parent
    env = _comment_env(tmp_path, "")
    env.update(MANIFESTS=str(manifests), PROVISION_STATE=str(tmp_path / "state.json"))
    env.update(PROVISION_GRAPH_URL=graph, PROVISION_ACCESS_TOKEN="emulator")
    preinstall_action(env)
    planned = run_workflow_action("plan", "plan", env)
    assert planned.returncode == 0, planned.stderr
    env["PLAN_MD"] = planned.outputs["output"]
    plan_md = Path(planned.outputs["output"]).read_text(encoding="utf-8")
    assert "5000 to create" in plan_md
    assert "**Truncated:**" in plan_md and "of 5000 chats are shown" in plan_md
    log = install_fake_gh(tmp_path, _comments(), env)
    done = run_bash(github_step("plan", "comment")["run"], env)
    assert done.returncode == 0, done.stderr
    (write,) = gh_log(log)
    body = write["body"]["body"]
    assert len(body) < GITHUB_COMMENT_LIMIT
    # GitHub counts UTF-16 code units; these are the same for this ASCII plan, and the budget
    # leaves room for the difference anyway.
    assert len(body.encode("utf-16-le")) // 2 < GITHUB_COMMENT_LIMIT


# --- the drift issue ---------------------------------------------------------------------------

ISSUES = "repos/contoso/teams/issues?labels=provision-drift&state=open"


def _drift_env(tmp_path: Path, drift: str) -> dict[str, str]:
    report = tmp_path / "drift.md"
    report.write_text("### provision plan\n\n~ launch: topic changed in Teams\n", "utf-8")
    return base_env(
        tmp_path,
        {
            "DRIFT": drift,
            "DRIFT_MD": str(report),
            "RUN_URL": "https://github.com/contoso/teams/actions/runs/4242",
            "GH_TOKEN": "not-used-by-the-fake",
        },
    )


@needs_jq
def test_drift_opens_an_issue(tmp_path: Path) -> None:
    env = _drift_env(tmp_path, "true")
    log = install_fake_gh(tmp_path, {"api": {ISSUES: []}}, env)
    done = run_bash(github_step("drift", "issue")["run"], env)
    assert done.returncode == 0, done.stderr
    (write,) = gh_log(log)
    assert (write["method"], write["path"]) == ("POST", "repos/contoso/teams/issues")
    assert write["body"]["labels"] == ["provision-drift"]
    assert "topic changed in Teams" in write["body"]["body"]
    assert "runs/4242" in write["body"]["body"]


@needs_jq
def test_drift_updates_the_open_issue_rather_than_adding_one(tmp_path: Path) -> None:
    env = _drift_env(tmp_path, "true")
    log = install_fake_gh(tmp_path, {"api": {ISSUES: [{"number": 12}]}}, env)
    done = run_bash(github_step("drift", "issue")["run"], env)
    assert done.returncode == 0, done.stderr
    (write,) = gh_log(log)
    assert (write["method"], write["path"]) == ("PATCH", "repos/contoso/teams/issues/12")
    assert "Updated the drift issue #12" in done.stdout


@needs_jq
def test_no_drift_closes_the_open_issue_and_opens_none(tmp_path: Path) -> None:
    env = _drift_env(tmp_path, "false")
    log = install_fake_gh(tmp_path, {"api": {ISSUES: [{"number": 12}]}}, env)
    done = run_bash(github_step("drift", "issue")["run"], env)
    assert done.returncode == 0, done.stderr
    comment, close = gh_log(log)
    assert comment["path"] == "repos/contoso/teams/issues/12/comments"
    assert (close["method"], close["body"]) == ("PATCH", {"state": "closed"})
    again = tmp_path / "again"
    again.mkdir()
    env = _drift_env(again, "false")
    log = install_fake_gh(again, {"api": {ISSUES: []}}, env)
    done = run_bash(github_step("drift", "issue")["run"], env)
    assert done.returncode == 0 and gh_log(log) == [] and "No drift." in done.stdout


def test_the_drift_step_is_plan_refresh_only_through_the_action() -> None:
    step = github_step("drift", "drift")
    assert step["with"]["command"] == "plan" and step["with"]["args"] == "--refresh-only"
