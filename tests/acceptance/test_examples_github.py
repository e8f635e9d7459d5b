"""examples/github-actions/provision.yml: valid for GitHub, and its steps do what they say.

The workflow is checked against GitHub's workflow schema (check-jsonschema's built-in copy,
offline), its shell steps with shellcheck, and the steps that carry logic are run with bash
here: plan through this repository's action (action.yml) with the real provision, the sticky
comment and the reviewed-plan lookup with a fake `gh`, the comparison that refuses a plan
nobody reviewed, and the apply report. Sign-in needs no step of its own: provision fetches
GitHub's OIDC token itself (tests/graph).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from pipeline_support import (
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
    outputs,
    preinstall_action,
    provision,
    run_bash,
    run_workflow_action,
    write_manifest,
)

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
    assert "reviewed_run" in on["workflow_dispatch"]["inputs"]
    assert wf["permissions"] == {"contents": "read"}
    jobs = wf["jobs"]
    # Validate needs no credentials; plan and main get an OIDC token.
    assert "permissions" not in jobs["validate"]
    assert jobs["plan"]["permissions"]["id-token"] == "write"
    assert jobs["plan"]["permissions"]["pull-requests"] == "write"
    assert jobs["main"]["permissions"]["id-token"] == "write"
    assert jobs["main"]["environment"] == "teams-production"
    # Main's runs share one group and are never cancelled: no two applies overlap.
    group = wf["concurrency"]["group"]
    assert "'provision-main'" in group
    assert wf["concurrency"]["cancel-in-progress"] == "${{ github.event_name == 'pull_request' }}"
    # The state lives in Blob Storage; each job signs in with its own app registration.
    assert wf["env"]["PROVISION_STATE"] == "${{ vars.PROVISION_STATE }}"
    assert jobs["plan"]["env"]["AZURE_CLIENT_ID"] == "${{ vars.AZURE_PLAN_CLIENT_ID }}"
    assert jobs["main"]["env"]["AZURE_CLIENT_ID"] == "${{ vars.AZURE_CLIENT_ID }}"


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
        ("main", "plan"),
        ("main", "apply"),
    }
    assert all(re.fullmatch(r"OWNER/provision@[0-9a-f]{40}", u) for _, _, u in uses)


def test_saved_plans_are_kept_as_artifacts() -> None:
    for job in ("plan", "main"):
        uploads = [
            s
            for s in load(GITHUB_WORKFLOW)["jobs"][job]["steps"]
            if str(s.get("uses", "")).startswith("actions/upload-artifact@")
        ]
        assert any(u["with"]["name"] == "provision-plan" for u in uploads)


@pytest.mark.skipif(SHELLCHECK is None, reason="shellcheck is not installed")
def test_every_shell_step_passes_shellcheck() -> None:
    for where, script in iter_github_scripts():
        assert "${{" not in script, f"{where}: pass values through env:, not into the script"
        done = subprocess.run(
            [str(SHELLCHECK), "--shell=bash", "-"], input=script, capture_output=True, text=True
        )
        assert done.returncode == 0, f"{where}:\n{done.stdout}"


# --- plan --------------------------------------------------------------------------------------


def _plan_env(tmp_path: Path, manifests: Path) -> dict[str, str]:
    env = base_env(
        tmp_path,
        {"MANIFESTS": str(manifests), "PROVISION_STATE": str(tmp_path / "state.json")},
    )
    preinstall_action(env)
    return env


@pytest.mark.parametrize("job", ["plan", "main"])
def test_plan_step_saves_the_plan_and_reports_changes(tmp_path: Path, job: str) -> None:
    env = _plan_env(tmp_path, ROOT / "examples/chats.yaml")
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


def test_plan_step_with_nothing_to_do(tmp_path: Path) -> None:
    empty = tmp_path / "chats/none.yaml"
    empty.parent.mkdir()
    empty.write_text("version: 1\nchats: []\n", encoding="utf-8")
    env = _plan_env(tmp_path, empty.parent)
    done = run_workflow_action("plan", "plan", env)
    assert done.returncode == 0, done.stderr
    assert (done.outputs["exitcode"], done.outputs["changes"]) == ("0", "false")


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
def test_comment_of_a_5000_chat_plan_fits_githubs_limit(tmp_path: Path) -> None:
    """End to end: `provision plan --format markdown` of 5,000 creations, through the
    workflow's plan and comment steps, gives a comment GitHub accepts."""
    manifests = write_manifest(tmp_path / "chats/big.yaml", 5000).parent
    env = _comment_env(tmp_path, "")
    env.update(MANIFESTS=str(manifests), PROVISION_STATE=str(tmp_path / "state.json"))
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


# --- apply on main: only the reviewed plan -------------------------------------------------------


def _saved_plan(tmp_path: Path, name: str, manifest_text: str, state: Path) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "chats.yaml").write_text(manifest_text, encoding="utf-8")
    plan_file = folder / "provision.plan"
    done = provision(
        "plan",
        str(folder / "chats.yaml"),
        "--no-refresh",
        "--state",
        str(state),
        "--out",
        str(plan_file),
        env=base_env(tmp_path),
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    return plan_file


MANIFEST = """\
version: 1
chats:
  - key: launch
    chatType: group
    topic: Launch
    members:
      - user: adele@contoso.com
      - user: alex@contoso.com
"""


def _compare(
    tmp_path: Path, reviewed: Path | None, fresh: Path
) -> tuple[subprocess.CompletedProcess[str], dict[str, str]]:
    env = base_env(tmp_path, {"REVIEWED_PLAN": str(reviewed) if reviewed else ""})
    target = Path(env["RUNNER_TEMP"]) / "provision"
    target.mkdir(exist_ok=True)
    shutil.copy(fresh, target / "provision.plan")
    return run_bash(github_step("main", "compare")["run"], env), env


@needs_jq
def test_compare_accepts_the_reviewed_changes_even_if_lines_moved(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    reviewed = _saved_plan(tmp_path, "pr", MANIFEST, state)
    moved = "# a comment added on main moves every line\n\n" + MANIFEST
    fresh = _saved_plan(tmp_path, "main", moved, state)
    done, _ = _compare(tmp_path, reviewed, fresh)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "main's plan is the reviewed plan" in done.stdout


@needs_jq
def test_compare_refuses_changes_nobody_reviewed(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    reviewed = _saved_plan(tmp_path, "pr", MANIFEST, state)
    fresh = _saved_plan(tmp_path, "main", MANIFEST.replace("Launch", "Launch day"), state)
    done, env = _compare(tmp_path, reviewed, fresh)
    assert done.returncode == 1
    assert "differs from the reviewed plan" in done.stdout
    summary = Path(env["GITHUB_STEP_SUMMARY"]).read_text(encoding="utf-8")
    assert "Refused" in summary and "reviewed_run=4242" in summary
    diff = [line.replace(" ", "") for line in summary.splitlines()]
    assert '-"topic":"Launch"' in diff and '+"topic":"Launchday"' in diff


@needs_jq
def test_compare_refuses_without_a_reviewed_plan(tmp_path: Path) -> None:
    fresh = _saved_plan(tmp_path, "main", MANIFEST, tmp_path / "state.json")
    done, _ = _compare(tmp_path, None, fresh)
    assert done.returncode == 1
    assert "No reviewed plan" in done.stdout


@needs_jq
def test_reviewed_plan_of_a_merged_pull_request_is_fetched(tmp_path: Path) -> None:
    env = base_env(
        tmp_path,
        {
            "GITHUB_EVENT_NAME": "push",
            "GITHUB_SHA": "merge123",
            "GITHUB_WORKFLOW_REF": "contoso/teams/.github/workflows/provision.yml@refs/heads/main",
            "REVIEWED_RUN": "",
        },
    )
    world = {
        "api": {
            "repos/contoso/teams/commits/merge123/pulls": [
                {"number": 7, "merged_at": "2026-01-02T03:04:05Z", "head": {"sha": "head7"}}
            ]
        },
        "runs": [
            {
                "databaseId": 99,
                "workflow": "provision.yml",
                "event": "pull_request",
                "headSha": "head7",
                "status": "success",
            }
        ],
        "artifacts": {"99/provision-plan": {"provision.plan": "{}", "plan.md": "# plan"}},
    }
    log = install_fake_gh(tmp_path, world, env)
    done = run_bash(github_step("main", "reviewed")["run"], env)
    assert done.returncode == 0, done.stderr
    assert "pull request #7, run 99" in done.stdout
    result = outputs(env["GITHUB_OUTPUT"])
    assert result["found"] == "true"
    assert Path(result["plan"]).read_text() == "{}"
    assert gh_log(log) == [{"method": "download", "run": "99", "name": "provision-plan"}]


@needs_jq
def test_a_direct_push_has_no_reviewed_plan(tmp_path: Path) -> None:
    env = base_env(
        tmp_path,
        {
            "GITHUB_EVENT_NAME": "push",
            "GITHUB_SHA": "direct1",
            "GITHUB_WORKFLOW_REF": "contoso/teams/.github/workflows/provision.yml@refs/heads/main",
            "REVIEWED_RUN": "",
        },
    )
    install_fake_gh(tmp_path, {"api": {"repos/contoso/teams/commits/direct1/pulls": []}}, env)
    done = run_bash(github_step("main", "reviewed")["run"], env)
    assert done.returncode == 0, done.stderr
    assert outputs(env["GITHUB_OUTPUT"]) == {"found": "false"}


# --- apply's report (apply itself runs against the emulator in test_examples_apply.py) -------

FAKE_APPLY_RESULT = {
    "status": "failed",
    "summary": {"created": 1, "updated": 0, "failed": 1},
    "outcomes": [
        {"key": "launch", "status": "created", "error": None},
        {
            "key": "partners",
            "status": "failed",
            "error": {"message": "Graph 404 NotFound on POST /chats", "request_id": "rid-1"},
        },
    ],
}


@needs_jq
def test_report_step_lists_outcomes_and_failures(tmp_path: Path) -> None:
    result = tmp_path / "apply-result.json"
    result.write_text(json.dumps(FAKE_APPLY_RESULT), encoding="utf-8")
    env = base_env(tmp_path, {"RESULT": str(result)})
    done = run_bash(github_step("main", "report")["run"], env)
    assert done.returncode == 0, done.stderr
    summary = Path(env["GITHUB_STEP_SUMMARY"]).read_text(encoding="utf-8")
    assert "### provision apply: failed" in summary
    assert "| created | 1 |" in summary and "| failed | 1 |" in summary
    assert "| updated |" not in summary
    assert "- `partners`: Graph 404 NotFound on POST /chats (request-id `rid-1`)" in summary


def test_report_step_without_a_result_adds_nothing(tmp_path: Path) -> None:
    env = base_env(tmp_path, {"RESULT": ""})
    done = run_bash(github_step("main", "report")["run"], env)
    assert done.returncode == 0, done.stderr
    assert Path(env["GITHUB_STEP_SUMMARY"]).read_text(encoding="utf-8") == ""
