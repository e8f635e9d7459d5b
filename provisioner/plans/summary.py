"""The plan's one-line summary (``Plan: N to create, ...``): a fixed shape scripts can read
with one pattern (issue 25), shared by the plan views and ``provision doctor``."""

from __future__ import annotations

from provisioner.plans.types import Action, Plan

SUMMARY_ACTIONS = (Action.CREATE, Action.UPDATE, Action.DELETE, Action.FORGET, Action.RECONCILE)


def summary_line(plan: Plan) -> str:
    if plan.refresh_only:
        if not plan.drift:
            return "No changes outside provision. The chats match the state."
        n = len(plan.drift)
        return (
            f"Refresh: {n} chat{'s' if n != 1 else ''} changed outside provision. To repair "
            f"them, plan without --refresh-only; to accept them, save this plan (--out) and "
            f"apply it."
        )
    if not plan.has_changes:
        return "No changes. The chats match the manifest."
    # One fixed shape, every count in the same order (issue 25), so a script can read it with
    # one pattern: Plan: N to create, N to update, N to delete, N to forget, N to reconcile,
    # N to move, N to import, N protection changes.
    counts = plan.summary
    parts = [f"{counts[a.value]} to {a.value}" for a in SUMMARY_ACTIONS]
    parts.append(f"{len(plan.moves)} to move")
    parts.append(f"{len(plan.imports)} to import")
    # A new chat's `protect: true` is part of its creation ("+ protect true" in its lines), not
    # a change of an existing chat's protection (issue 17).
    protect = sum(
        1
        for c in plan.changes
        if c.protect_change is not None and c.action not in (Action.CREATE, Action.RECONCILE)
    )
    parts.append(f"{protect} protection changes")
    return "Plan: " + ", ".join(parts) + "."
