"""``provision doctor``: a read-only pre-flight check of everything a plan and an apply need,
reported at once: the manifests, the state (reachable, of this tenant and cloud, lockable),
the sign-in (tenant and identity from the token's claims), the Graph permissions the token
carries against what the manifests need (``operations.permissions``), and every user the
manifests name (looked up in the directory). Nothing is written: the lock is taken and
released at once, the plan is made from the state alone and dropped.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from provisioner.errors import ProvisionError, ValidationFailed
from provisioner.models import GUID_RE
from provisioner.operations import permissions

if TYPE_CHECKING:
    from provisioner.graph.client import GraphClient
    from provisioner.models import DesiredState
    from provisioner.plans.types import Plan
    from provisioner.states.records import State
    from provisioner.states.store import StateStore

OK, WARN, FAIL, SKIP = "ok", "warn", "fail", "skip"


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # ok | warn | fail | skip
    summary: str
    details: tuple[str, ...] = ()


@dataclass
class Report:
    graph_url: str
    checks: list[Check] = field(default_factory=list)

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if c.status == FAIL]

    def add(self, name: str, status: str, summary: str, details: Sequence[str] = ()) -> None:
        self.checks.append(Check(name, status, summary, tuple(details)))


def run_doctor(
    paths: Sequence[str],
    state_path: str,
    state_endpoint: str | None,
    *,
    graph_url: str,
    connect: Callable[[], GraphClient],
    prune: bool = False,
    lock_timeout: float = 0.0,
    now: Callable[[], float] = time.time,
) -> Report:
    """Every check, in the order a run meets them; a failing one does not stop the others
    unless they depend on it (no manifests: no permission or user checks)."""
    report = Report(graph_url)
    desired = _manifests(report, paths)
    store, state = _state(report, state_path, state_endpoint, graph_url, lock_timeout)
    plan = None
    if desired is not None and state is not None:
        from provisioner.plans.planner import make_plan

        plan = make_plan(desired, state, prune=prune, graph_url=graph_url)
        report.add("plan", OK, _plan_line(plan))
    try:
        client = connect()
    except ProvisionError as exc:
        report.add("sign-in", FAIL, exc.message, [f"hint: {exc.hint}"] if exc.hint else [])
        return report
    try:
        claims = _sign_in(report, client, now)
        if claims is None:
            return report
        if store is not None and state is not None:
            _tenant(report, state, store, client)
        if desired is not None:
            _permissions(report, desired, plan, claims)
            _users(report, client, desired)
    finally:
        client.close()
    return report


def _manifests(report: Report, paths: Sequence[str]) -> DesiredState | None:
    if not paths:
        report.add("manifests", SKIP, "no PATH given: permissions and users not checked")
        return None
    from provisioner.manifest.load import load_desired

    try:
        desired = load_desired(paths)
    except ValidationFailed as exc:
        report.add(
            "manifests", FAIL, exc.summary or "not valid", [str(d) for d in exc.diagnostics[:10]]
        )
        return None
    except ProvisionError as exc:
        report.add("manifests", FAIL, exc.message)
        return None
    groups = sum(1 for c in desired.chats if c.chat_type == "group")
    files = len(desired.files)
    report.add(
        "manifests",
        OK,
        f"{files} file{'s' * (files != 1)}, {len(desired.chats)} chats "
        f"({groups} group, {len(desired.chats) - groups} oneOnOne), valid",
    )
    return desired


def _state(
    report: Report, path: str, endpoint: str | None, graph_url: str, lock_timeout: float
) -> tuple[StateStore | None, State | None]:
    from provisioner.operations.state import locked
    from provisioner.states.home import check_home
    from provisioner.states.store import open_store

    try:
        store = open_store(path, endpoint, lock_timeout=lock_timeout)
        state = store.read()
        check_home(state, store.location, graph_url=graph_url)
    except ProvisionError as exc:
        report.add(
            "state", FAIL, f"{path}: {exc.message}", [f"hint: {exc.hint}"] if exc.hint else []
        )
        return None, None
    what = f"{len(state.chats)} chats, serial {state.serial}" if state.exists else "no state yet"
    try:
        with locked(store, "doctor"):
            pass  # taken and released: an apply could take it now
    except ProvisionError as exc:
        report.add("state", FAIL, f"{store.location}: {what}; cannot take the lock", [exc.message])
        return store, state
    report.add("state", OK, f"{store.location}: {what}; the lock can be taken")
    return store, state


def _plan_line(plan: Plan) -> str:
    from provisioner.plans.summary import summary_line

    return summary_line(plan).rstrip(".") + " (from the state alone, without refresh)"


def _sign_in(
    report: Report, client: GraphClient, now: Callable[[], float]
) -> dict[str, Any] | None:
    try:
        claims = client.token_claims()
    except ProvisionError as exc:
        report.add("sign-in", FAIL, exc.message, [f"hint: {exc.hint}"] if exc.hint else [])
        return None
    if not claims:
        report.add(
            "sign-in",
            WARN,
            "a token that is not a JWT: tenant, identity and permissions "
            "cannot be read from it (Graph will say at the first call)",
        )
        return claims
    who = _identity(claims)
    tid = claims.get("tid")
    tenant = f"in tenant {tid}" if tid else "(the token names no tenant)"
    expiry = claims.get("exp")
    left = ""
    if isinstance(expiry, (int, float)):
        minutes = int((expiry - now()) // 60)
        left = f"; token valid for {minutes} more minutes" if minutes > 0 else "; token EXPIRED"
    status = FAIL if left == "; token EXPIRED" else OK
    report.add("sign-in", status, f"{who} {tenant}{left}")
    return claims


def _identity(claims: dict[str, Any]) -> str:
    if claims.get("scp"):
        user = claims.get("upn") or claims.get("preferred_username") or claims.get("oid", "?")
        return f"user {user} (delegated)"
    app = claims.get("app_displayname") or claims.get("appid") or claims.get("azp") or "?"
    return f"app {app} (application)"


def _tenant(report: Report, state: State, store: StateStore, client: GraphClient) -> None:
    from provisioner.operations.state import check_client_home

    try:
        check_client_home(state, store.location, client)
    except ProvisionError as exc:
        report.add("tenant", FAIL, exc.message)


def _permissions(
    report: Report, desired: DesiredState, plan: Plan | None, claims: dict[str, Any]
) -> None:
    got = permissions.granted(claims)
    if got is None:
        report.add("permissions", SKIP, "the token lists no roles or scopes")
        return
    kind, have = got
    changes = plan.changes if plan is not None else ()
    counts = plan.summary if plan is not None else {}
    renames = sum(1 for c in changes if c.topic_change is not None)
    deletes = sum(1 for c in changes if c.action.value == "delete")
    wanted = permissions.needs(desired.chats, counts, renames=renames, prune_deletes=deletes)
    missing = [n for n in wanted if n.required and not permissions.met(n.permission, kind, have)]
    later = [n for n in wanted if not n.required and not permissions.met(n.permission, kind, have)]
    details = [f"missing {n.permission}: {n.feature}" for n in missing]
    details += [f"not granted {n.permission}: {n.feature} will fail" for n in later]
    details.append(f"the token has ({kind}): {', '.join(sorted(have))}")
    status = FAIL if missing else WARN if later else OK
    names = ", ".join(sorted({n.permission for n in wanted if n.required}))
    summary = (
        f"{len(missing)} missing of {names}"
        if missing
        else f"has what the manifests need ({names})"
    )
    report.add("permissions", status, summary, details)


def _users(report: Report, client: GraphClient, desired: DesiredState) -> None:
    from provisioner.operations.users import check_users

    refs = {m.user.lower() for c in desired.chats for m in c.members if not m.tenant_id}
    upns = sum(1 for r in refs if not GUID_RE.match(r))
    try:
        check_users(client, desired)
    except ValidationFailed as exc:
        lines = [f"{d.location}: {d.message.split(' (Graph')[0]}" for d in exc.diagnostics]
        report.add("users", FAIL, f"{exc.summary} (of {len(refs)})", lines[:20])
        return
    except ProvisionError as exc:
        report.add("users", FAIL, f"cannot look users up: {exc.message}")
        return
    report.add("users", OK, f"all {len(refs)} users found ({upns} by UPN)")
