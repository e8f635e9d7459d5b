"""Saved plan files: a plan written with a digest over its content, read back, and refused
when stale.

A saved plan file carries a sha256 digest over its own content, so a hand edit or a truncated
copy is detected. The digest is not a signature: it protects against accidents, not attackers.
Plan files hold no secrets (no tokens ever reach the planner). ``check_applicable`` compares the
state lineage and serial the plan was made against, including "no state yet" (``state_lineage``
None, serial 0): Terraform skipped its staleness check in that case and let one plan be applied
twice (hashicorp/terraform#21785); this check does not.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from typing import Any

from provisioner import __version__
from provisioner.errors import PlanError
from provisioner.fsutil import loads_json, write_atomic
from provisioner.plans.types import PLAN_FILE_KIND, PLAN_FORMAT_VERSION, Plan
from provisioner.states.records import State


def _canonical(payload: Mapping[str, Any]) -> bytes:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def plan_digest(payload: Mapping[str, Any]) -> str:
    return "sha256:" + hashlib.sha256(_canonical(payload)).hexdigest()


def save_plan(plan: Plan, path: str | os.PathLike[str]) -> None:
    """Write ``plan`` to ``path`` atomically with mode 0600 and a digest over its content."""
    path = os.fspath(path)
    payload = plan.to_dict()
    document = {
        "kind": PLAN_FILE_KIND,
        "format_version": plan.format_version,
        "digest": plan_digest(payload),
        "plan": payload,
    }
    data = (json.dumps(document, indent=1, ensure_ascii=False) + "\n").encode("utf-8")
    try:
        write_atomic(path, data)
    except OSError as exc:
        raise PlanError(f"cannot write plan file {path}: {exc.strerror or exc}") from exc


def is_plan_file(path: str | os.PathLike[str]) -> bool:
    """True for a file saved by ``provision plan --out`` (JSON with ``kind: provision-plan``)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        return False
    try:
        with open(path, "rb") as f:
            if f.read(1) != b"{":
                return False
            f.seek(0)
            document = loads_json(f.read())
    except (OSError, ValueError):
        return False
    return isinstance(document, dict) and document.get("kind") == PLAN_FILE_KIND


def check_plan_out(out: str, *, force: bool, state_path: str | None = None) -> None:
    """Refuse (PlanError) to save a plan over a file that is not a plan of ours (a manifest,
    the state...) unless ``force``; over the state file itself, always."""
    local_state = state_path is not None and "://" not in state_path
    if local_state and os.path.realpath(out) == os.path.realpath(str(state_path)):
        raise PlanError(
            f"--out {out} is the state file: saving the plan there would destroy the state",
            hint="save the plan to another file",
        )
    if force or not os.path.lexists(out) or is_plan_file(out):
        return
    kind = "a directory" if os.path.isdir(out) else "a file that is not a provision plan"
    raise PlanError(
        f"refusing to save the plan to {out}: it is {kind}",
        hint="choose another --out, or pass --force to overwrite it",
    )


def load_plan(path: str | os.PathLike[str]) -> Plan:
    """Read a saved plan; PlanError if it is not ours, was edited, or is from a newer version."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise PlanError(f"cannot read plan file {path}: {exc.strerror or exc}") from exc
    not_ours = f"{path} is not a provision plan file"
    try:
        document = loads_json(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PlanError(f"{not_ours} (not JSON: {exc})") from exc
    except ValueError as exc:  # NaN, a 5,000-digit number, 100,000 levels of nesting
        raise PlanError(f"{not_ours} ({exc})") from exc
    if not isinstance(document, dict) or document.get("kind") != PLAN_FILE_KIND:
        raise PlanError(not_ours, hint="make one with: provision plan PATH... --out FILE")
    version = document.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise PlanError(f"{not_ours} (no valid format_version)")
    if version > PLAN_FORMAT_VERSION:
        raise PlanError(
            f"the plan file {path} has format version {version}, made by a newer provision; "
            f"this provision {__version__} reads up to version {PLAN_FORMAT_VERSION}",
            hint="apply it with the provision version that made it, or plan again",
        )
    payload = document.get("plan")
    if not isinstance(payload, dict) or document.get("digest") != plan_digest(payload):
        raise PlanError(
            f"the plan file {path} was modified after it was written (its digest does not "
            f"match its content)",
            hint="plans cannot be edited by hand; change the manifest and plan again",
        )
    try:
        return Plan.from_dict(payload, version)
    except (KeyError, TypeError, ValueError, AttributeError, RecursionError) as exc:
        raise PlanError(f"{not_ours} (unexpected content: {exc!r})") from exc


def check_applicable(plan: Plan, state: State, graph_url: str) -> None:
    """Refuse (PlanError) a saved plan that no longer matches the world it was made for."""
    if plan.graph_url.rstrip("/") != graph_url.rstrip("/"):
        raise PlanError(
            f"the plan was made for Graph at {plan.graph_url}, but this run targets {graph_url}",
            hint="apply it with the same --graph-url/--cloud, or plan again",
        )
    if plan.tool_version != __version__:
        raise PlanError(
            f"the plan was made by provision {plan.tool_version}; this is provision {__version__}",
            hint="plan again with this version",
        )
    again = "run provision plan again and review the new plan"
    if plan.state_lineage is None:
        if state.exists:
            raise PlanError(
                f"the plan was made when no state existed, but the state now exists (serial "
                f"{state.serial}): the plan was applied already or another run changed things",
                hint=again,
            )
        return
    if not state.exists:
        raise PlanError(
            f"the plan was made against state serial {plan.state_serial} (lineage "
            f"{plan.state_lineage}), but there is no state now",
            hint="check --state (or PROVISION_STATE) points at the right file; " + again,
        )
    if state.lineage != plan.state_lineage:
        raise PlanError(
            f"the plan was made against another state (lineage {plan.state_lineage}); this "
            f"state has lineage {state.lineage}",
            hint="check --state (or PROVISION_STATE) points at the right file; " + again,
        )
    if state.last_plan_id == plan.plan_id:
        raise PlanError(
            f"this plan was already applied (the state is now at serial {state.serial})",
            hint=again,
        )
    if state.serial != plan.state_serial:
        raise PlanError(
            f"the state has changed since the plan was made (plan: serial {plan.state_serial}, "
            f"state: serial {state.serial})",
            hint=again,
        )


# --- helpers for from_dict -----------------------------------------------------------------
