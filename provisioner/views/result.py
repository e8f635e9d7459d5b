"""Views of an apply's result: a text summary for people, one JSON object for scripts.

The JSON document is described by ``schemas/apply-result.schema.json`` (shipped in the package
as ``provisioner/schemas/apply-result.schema.json``). Pure functions; the CLI prints.
"""

from __future__ import annotations

import json
import re
from typing import Any

from provisioner.apply.results import (
    ADOPTED,
    CREATED,
    DELETED,
    FAILED,
    FORGOTTEN,
    INTERRUPTED,
    SKIPPED,
    UPDATED,
    ApplyResult,
    Failure,
    Outcome,
)

RESULT_FORMAT_VERSION = 1
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _clean(text: str) -> str:
    """Text from Graph, safe for a terminal (no escape sequences)."""
    return _CONTROL.sub("?", text)


def run_status(result: ApplyResult) -> str:
    """``ok`` (every change made), ``failed`` (some failed or were left undone), or
    ``interrupted`` (stopped by a signal)."""
    if result.stopped in ("SIGINT", "SIGTERM"):
        return "interrupted"
    return "ok" if result.complete and result.unsaved is None else "failed"


# --- JSON --------------------------------------------------------------------------------------


def _failure(f: Failure | None) -> dict[str, Any] | None:
    if f is None:
        return None
    return {
        "message": f.message,
        "status": f.status,
        "code": f.code,
        "request_id": f.request_id,
        "client_request_id": f.client_request_id,
        "date": f.date,
        "hint": f.hint,
        "permission": f.permission,
    }


def _outcome(o: Outcome) -> dict[str, Any]:
    return {
        "key": o.key,
        "action": o.action.value,
        "status": o.status,
        "chat_id": o.chat_id,
        "error": _failure(o.error),
        "duplicates": list(o.duplicates),
        "notes": list(o.notes),
    }


def result_document(result: ApplyResult, *, resume: str | None = None) -> dict[str, Any]:
    per_lookup = result.lookup_requests / result.lookups if result.lookups else None
    return {
        "format_version": RESULT_FORMAT_VERSION,
        "plan_id": result.plan_id,
        "status": run_status(result),
        "summary": result.counts,
        "outcomes": [_outcome(o) for o in result.outcomes],
        "stopped": (
            {"reason": result.stopped, "error": _failure(result.stop_error)}
            if result.stopped
            else None
        ),
        "stats": {
            "duration_s": round(result.duration_s, 3),
            "requests": result.requests,
            "planned_requests": result.work_total,
            "planned_requests_done": result.work_done,
            "throttled": result.throttled,
            "retries": result.retries,
            "token_refreshes": result.token_refreshes,
            "state_writes": result.state_writes,
            "reconciliation": {
                "lookups": result.lookups,
                "requests": result.lookup_requests,
                "requests_per_lookup": round(per_lookup, 2) if per_lookup is not None else None,
                "seconds": round(result.settle_seconds, 1),
            },
        },
        "resume": resume,
    } | ({"unsaved": _failure(result.unsaved)} if result.unsaved is not None else {})


def render_json(result: ApplyResult, *, resume: str | None = None) -> str:
    return json.dumps(result_document(result, resume=resume), indent=2, ensure_ascii=False) + "\n"


# --- text --------------------------------------------------------------------------------------

_DONE = (CREATED, ADOPTED, UPDATED, DELETED, FORGOTTEN)
SYMBOLS = {
    CREATED: "+",
    ADOPTED: "+",
    UPDATED: "~",
    DELETED: "-",
    FORGOTTEN: ".",
    FAILED: "!",
    SKIPPED: " ",
    INTERRUPTED: "?",
}


def outcome_line(o: Outcome) -> str:
    """One line per key, for ``--verbose`` progress."""
    where = f" ({o.chat_id})" if o.chat_id else ""
    text = f"  {SYMBOLS[o.status]} {o.key} {o.status}{where}"
    if o.error is not None:
        text += f": {_clean(o.error.message)}"
    return text


def failure_text(f: Failure) -> str:
    text = _clean(f.message)
    if f.hint:
        text += f"\n      hint: {_clean(f.hint)}"
    return text


def render_text(result: ApplyResult, *, resume: str | None = None) -> str:
    counts = result.counts
    status = run_status(result)
    done = ", ".join(f"{counts[s]} {s}" for s in _DONE)
    if status == "ok":
        head = f"Apply complete: {done}."
    elif status == "interrupted":
        head = f"Apply interrupted ({result.stopped}): {done}."
    else:
        head = f"Apply finished with errors: {done}, {counts[FAILED]} failed."
    lines = [head]
    undone = [
        f"{counts[s]} {label}"
        for s, label in ((SKIPPED, "not started"), (INTERRUPTED, "interrupted mid-way"))
        if counts[s]
    ]
    if undone:
        lines.append(f"Left undone: {', '.join(undone)}.")
    if result.stop_error is not None and status != "interrupted":
        lines.append(f"Stopped early: {failure_text(result.stop_error)}")
    if result.unsaved is not None:
        lines.append(
            "The state could not be written at the end: the records of these changes are in "
            "its journal (see the error below)."
        )
    failed = result.failed
    if failed:
        lines += ["", "Failed:"]
        for o in failed:
            assert o.error is not None
            lines.append(f"  {o.key} ({o.action.value}): {failure_text(o.error)}")
    dupes = [o for o in result.outcomes if o.duplicates]
    if dupes:
        lines += ["", "Duplicate chats found (NOT deleted: review them in Teams):"]
        for o in dupes:
            lines.append(f"  {o.key}: kept {o.chat_id}; also {', '.join(o.duplicates)}")
    rate = result.requests / result.duration_s if result.duration_s > 0 else 0.0
    # The same counters the progress display showed: the plan's requests done of its total,
    # then everything sent. "throttled" answers were waited out and retried; other retries
    # (5xx, dropped connections) are counted apart, as the --verbose log names them.
    lines += [
        "",
        f"{result.work_done}/{result.work_total} planned requests done; {result.requests} "
        f"sent in {result.duration_s:.1f}s ({rate:.1f}/s), {result.throttled} throttled and "
        f"retried, {result.retries} retried after errors; {result.state_writes} durable state "
        "writes (journal appends and full writes).",
    ]
    if result.lookups:
        lines.append(
            f"Looked up {result.lookups} unfinished creation(s): {result.lookup_requests} extra "
            f"requests ({result.lookup_requests / result.lookups:.1f} per lookup), "
            f"{result.settle_seconds:.0f}s waiting for Graph to list them (other chats went on)."
        )
    if resume and result.unsaved is not None:
        lines.append(f"Once the state can be written, save these records with: {resume}")
    elif resume:
        lines.append(f"The state is saved. To continue, run: {resume}")
    return "\n".join(lines) + "\n"
