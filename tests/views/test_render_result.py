"""The apply report: text for people, JSON (checked against the shipped schema) for scripts."""

from __future__ import annotations

import json
from importlib import resources

import jsonschema

from provisioner.apply.results import ApplyResult, Failure, Outcome
from provisioner.plans.types import Action
from provisioner.views.result import outcome_line, render_json, render_text, run_status

SCHEMA = json.loads(
    resources.files("provisioner").joinpath("schemas/apply-result.schema.json").read_text()
)

FORBIDDEN = Failure(
    message="Graph 403 Forbidden on POST /chats: Missing role permissions (request-id: r1)",
    status=403,
    code="Forbidden",
    request_id="r1",
    client_request_id="c1",
    hint="this call needs the Microsoft Graph permission Chat.Create",
    permission="Chat.Create",
)


def result(*outcomes: Outcome, **kw: object) -> ApplyResult:
    return ApplyResult(plan_id="p1", outcomes=list(outcomes), duration_s=2.0, requests=10, **kw)  # type: ignore[arg-type]


def test_complete_run() -> None:
    r = result(
        Outcome("a", Action.CREATE, "created", "19:a"),
        Outcome("b", Action.UPDATE, "updated", "19:b"),
        work_total=6,
        work_done=6,
        throttled=3,
        retries=1,
    )
    assert run_status(r) == "ok"
    text = render_text(r)
    assert text.startswith(
        "Apply complete: 1 created, 0 adopted, 1 updated, 0 deleted, 0 forgotten."
    )
    assert "6/6 planned requests done; 10 sent in 2.0s (5.0/s)" in text
    # Throttled answers were retried too: the report says so, as the --verbose log did.
    assert "3 throttled and retried, 1 retried after errors" in text
    assert "To continue" not in text


def test_failures_name_code_ids_and_hint() -> None:
    r = result(
        Outcome("a", Action.CREATE, "failed", error=FORBIDDEN),
        Outcome("b", Action.CREATE, "skipped"),
        stopped="GraphPermissionError",
        stop_error=FORBIDDEN,
    )
    assert run_status(r) == "failed"
    text = render_text(r)
    assert "Apply finished with errors: 0 created" in text and ", 1 failed." in text
    assert "Left undone: 1 not started." in text
    assert "Stopped early: Graph 403 Forbidden" in text and "Chat.Create" in text
    assert "  a (create): Graph 403 Forbidden on POST /chats" in text
    doc = json.loads(render_json(r))
    jsonschema.Draft202012Validator(SCHEMA).validate(doc)
    assert doc["outcomes"][0]["error"]["request_id"] == "r1"
    assert doc["outcomes"][0]["error"]["permission"] == "Chat.Create"
    assert doc["stopped"] == {
        "reason": "GraphPermissionError",
        "error": doc["outcomes"][0]["error"],
    }


def test_interrupted_run_says_how_to_continue_and_lists_duplicates() -> None:
    r = result(
        Outcome("a", Action.RECONCILE, "adopted", "19:old", duplicates=("19:new",)),
        Outcome("b", Action.UPDATE, "interrupted", "19:b"),
        stopped="SIGTERM",
        lookups=2,
        lookup_requests=3,
        settle_seconds=12.34,
    )
    resume = "provision apply chats.yaml"
    assert run_status(r) == "interrupted"
    text = render_text(r, resume=resume)
    assert text.startswith("Apply interrupted (SIGTERM): 0 created, 1 adopted")
    assert "Left undone: 1 interrupted mid-way." in text
    assert "a: kept 19:old; also 19:new" in text and "NOT deleted" in text
    assert (
        "Looked up 2 unfinished creation(s): 3 extra requests (1.5 per lookup), 12s waiting "
        "for Graph to list them (other chats went on)." in text
    )
    assert text.rstrip().endswith(f"To continue, run: {resume}")
    doc = json.loads(render_json(r, resume=resume))
    jsonschema.Draft202012Validator(SCHEMA).validate(doc)
    assert doc["status"] == "interrupted" and doc["resume"] == resume
    assert doc["stats"]["reconciliation"] == {
        "lookups": 2,
        "requests": 3,
        "requests_per_lookup": 1.5,
        "seconds": 12.3,
    }


def test_text_from_graph_cannot_drive_the_terminal() -> None:
    bad = Failure(message="evil \x1b[2J topic\x07")
    line = outcome_line(Outcome("a", Action.CREATE, "failed", error=bad))
    assert "\x1b" not in line and "\x07" not in line
    assert "\x1b" not in render_text(result(Outcome("a", Action.CREATE, "failed", error=bad)))
