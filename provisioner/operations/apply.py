"""``provision apply``: plan (or take a saved plan), record what the plan learned, run it.

`run_apply` builds the paced Graph client, takes the state's lock, plans under it with the
refresh policy ``plan`` uses (`provisioner.operations.plan`), or checks that a saved plan still
applies, records the plan's facts, and runs the executor. It never prints or prompts: the
caller shows the plan and confirms in `ApplyHooks.review`, draws progress with its listener,
and turns signals into a stop in `ApplyHooks.running`.

The executor, the Graph client and the stores are imported when an apply runs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Protocol, Union

from provisioner.errors import ProvisionError, StateError
from provisioner.graph.pacing import DEFAULT_CONCURRENCY
from provisioner.operations.clients import DEFAULT_TIMEOUT
from provisioner.operations.state import check_client_home, locked

if TYPE_CHECKING:
    from provisioner.apply.control import ApplyListener, RequestStats, StopSignal
    from provisioner.apply.results import ApplyResult
    from provisioner.graph.client import GraphClient
    from provisioner.graph.pacing import Pacer
    from provisioner.models import DesiredState
    from provisioner.plans.types import Plan
    from provisioner.signin.chooser import Credential, SignIn
    from provisioner.states.journal_writer import JournalWriter
    from provisioner.states.lock import LockInfo
    from provisioner.states.records import State

#: What an apply starts from: a saved plan, or the manifests' desired state (planned here).
Target = Union["Plan", "DesiredState"]


class StopNow(Exception):
    """Raised by the caller's signal handler (a second signal) in the thread running the
    apply: stop at once. The journal keeps the next run safe."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


@dataclass(frozen=True)
class ApplySettings:
    """``refresh``: the refresh policy (`operations.plan.should_refresh`); ``refresh`` and
    ``prune`` are for planning, not for a saved plan. ``run_unchanged``: run the executor even
    for a plan without changes (so a machine-readable report has a result)."""

    concurrency: int = DEFAULT_CONCURRENCY
    max_rps: float | None = None
    timeout: float = DEFAULT_TIMEOUT
    refresh: bool | None = None
    prune: bool = False
    run_unchanged: bool = False
    #: How long Graph may take to list a new chat (``apply.reconcile``, issue 14); None: its
    #: default. (Not imported here: the CLI builds settings before it imports the executor.)
    consistency_window_s: float | None = None
    #: ``--target`` patterns (`provisioner.plans.targets`): plan only the matching keys.
    targets: tuple[str, ...] = ()


class ApplyHooks(Protocol):
    """How the caller takes part in an apply (the CLI: its plan display, confirmation prompt,
    progress display and signal handling). `NoHooks` does nothing."""

    #: Receives the executor's progress (None: nothing is shown).
    listener: ApplyListener | None

    def took_over(self, stale: LockInfo) -> None:
        """The run took over the stale lock ``stale`` (its holder died on this host)."""

    def review(self, plan: Plan) -> None:
        """A plan made by this run (not a saved one), before any change: show it, ask to go
        ahead; raise a ``ProvisionError`` to refuse (nothing is changed)."""

    def running(
        self, request_stop: Callable[[str], None]
    ) -> contextlib.AbstractContextManager[None]:
        """Held while the executor runs; ``request_stop(reason)`` stops it cleanly (e.g. from a
        signal handler). Raise `StopNow` inside it to stop at once."""


class NoHooks:
    """`ApplyHooks` for a library caller: no progress, no review, no signal handling."""

    listener: ApplyListener | None = None

    def took_over(self, stale: LockInfo) -> None:
        return None

    def review(self, plan: Plan) -> None:
        return None

    def running(
        self, request_stop: Callable[[str], None]
    ) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()


@dataclass(frozen=True)
class ApplyOutcome:
    """``result`` is None when nothing ran: the plan had no changes, or ``stopped_at_once``
    names the signal that stopped the run at once (the state holds what was done).
    ``unsaved``: the state could not be written at the end, after the run changed chats
    (issue 20): the report still stands, the error says where the records are; exit 1."""

    plan: Plan
    result: ApplyResult | None = None
    stopped_at_once: str | None = None
    unsaved: ProvisionError | None = None


def is_plan_file(path: str) -> bool:
    """True for a file saved by ``provision plan --out`` (JSON with ``kind: provision-plan``)."""
    from provisioner.plans.files import is_plan_file as check

    return check(path)


def plan_file_of(targets: Sequence[str]) -> str | None:
    """The saved plan among ``apply``'s targets (a single PLANFILE), if that is what they are."""
    return targets[0] if len(targets) == 1 and is_plan_file(targets[0]) else None


def load_target(targets: Sequence[str], plan_file: str | None) -> Target:
    """The saved plan ``plan_file``, or else the desired state of the manifests ``targets``."""
    if plan_file is not None:
        from provisioner.plans.files import load_plan

        return load_plan(plan_file)
    from provisioner.manifest.load import load_desired

    return load_desired(targets)


def record_plan_facts(plan: Plan, state: State, *, note_plan: bool = False) -> bool:
    """Record in ``state`` what ``plan`` learned, before apply makes any change: renamed keys
    (``moved:``), the refreshed view of drifted chats (a gone chat leaves the state), the
    resolved users, and protection changes, through ``State``'s methods (so an apply journals
    them), and with ``note_plan`` the plan's id when anything changed. Returns True when
    ``state`` changed. Safe to call twice (a resumed apply)."""
    changed = False
    for old, new in plan.moves:
        if old in state.chats and new not in state.chats:
            state.rename_chat(old, new)
            changed = True
    for change in plan.changes:  # import: entries, before the update that may follow
        imported = change.import_id is not None and change.before is not None
        if imported and change.key not in state.chats:
            assert change.before is not None
            state.put_chat(change.key, change.before)
            changed = True
    for drift in plan.drift:
        if drift.record is not None:
            if state.chats.get(drift.key) != drift.record:
                state.put_chat(drift.key, drift.record)
                changed = True
        elif drift.gone and drift.key in state.chats:
            state.remove_chat(drift.key)
            changed = True
    users = {upn: oid for upn, oid in plan.users.items() if state.users.get(upn) != oid}
    if users:
        state.put_users(users)
        changed = True
    for ref, group in sorted(plan.groups.items()):  # issue 22: the groups as this plan read
        if state.groups.get(ref) != group:
            state.put_group(ref, group)
            changed = True
    for change in plan.changes:
        if change.protect_change is None:
            continue
        protect = change.protect_change[1]
        if protect != (change.key in state.protected):
            state.set_protected(change.key, protect)
            changed = True
    for change in plan.changes:  # apps and tabs found in the chat, with nothing to do
        ws = change.workspace
        adopt = ws is not None and ws.adopt and not ws and change.key in state.chats
        if adopt and ws is not None and state.workspaces.get(change.key) != ws.after:
            state.put_workspace(change.key, ws.after)
            changed = True
    from provisioner.operations.restore import drop_lapsed

    if drop_lapsed(state, datetime.now(timezone.utc)):  # past Graph's restore period
        changed = True
    if changed and note_plan:
        state.set_last_plan(plan.plan_id)  # a saved plan is then refused as already applied
    return changed


def run_apply(
    target: Target,
    state_path: str,
    state_endpoint: str | None,
    *,
    graph_url: str,
    credential: Credential,
    settings: ApplySettings | None = None,
    hooks: ApplyHooks | None = None,
    lock_timeout: float = 0.0,
    sign_in: SignIn | None = None,
) -> ApplyOutcome:
    """Apply ``target`` to the chats at ``graph_url``, under the state's lock. Every change is
    saved as soon as Graph made it, appended to the state's journal; the whole state is
    written at the end, before the lock is released (`provisioner.states.journal_writer`)."""
    from provisioner.apply.control import RequestStats, StopSignal
    from provisioner.graph.pacing import Pacer
    from provisioner.manifest.gcpause import gc_paused
    from provisioner.operations.clients import apply_client
    from provisioner.states.journal_writer import JournalWriter
    from provisioner.states.store import open_store

    settings = settings or ApplySettings()
    hooks = hooks or NoHooks()
    stop = StopSignal()
    # The caller may watch every request and retry decision (`ApplyHooks.graph_events`).
    stats = RequestStats(forward=getattr(hooks, "graph_events", None))
    pacer = Pacer(max_rps=settings.max_rps, sleep=stop.sleep)
    client = apply_client(
        graph_url,
        credential,
        pacer,
        timeout=settings.timeout,
        pool=settings.concurrency,
        stats=stats,
    )
    try:
        store = open_store(state_path, state_endpoint, lock_timeout=lock_timeout, sign_in=sign_in)
        with locked(store, "apply", on_takeover=hooks.took_over) as state:
            # Before any change: the state's tenant and cloud are this run's (issue 15).
            tenant = check_client_home(state, store.location, client)
            # Collection off while the plan is built; the CLI freezes what the run keeps
            # (manifest/gcpause.py: freezing is the command edge's call, not the core's).
            with gc_paused(freeze=False):
                plan = _plan(
                    target, client, state, graph_url, settings, hooks, store.location, tenant
                )
            if not plan.has_changes and not settings.run_unchanged:
                return ApplyOutcome(plan)
            # Every change from here on is journaled (issue 16); leaving the block writes the
            # whole state, still under the lock.
            writer = JournalWriter(store, state)
            return _journaled(
                writer,
                store.journal.location,
                lambda: _execute(
                    plan, client, writer, hooks, settings, stats=stats, stop=stop, pacer=pacer
                ),
                plan,
            )
    finally:
        client.close()


def _journaled(
    writer: JournalWriter, journal: str, execute: Callable[[], ApplyOutcome], plan: Plan
) -> ApplyOutcome:
    """Run ``execute`` with ``writer`` journaling; the whole state is written at the end. A
    failure of that write after the run changed chats becomes the outcome's ``unsaved``
    (issue 20), so the report is still shown; before any change it is raised as it is."""
    from provisioner.apply.results import Failure

    done: ApplyOutcome | None = None
    try:
        with writer.running():
            # What the plan learned (refreshed chats, renamed keys, resolved users,
            # protection) is recorded before any change, as Terraform's apply persists its
            # refresh.
            writer.update(lambda s: record_plan_facts(plan, s, note_plan=True))
            done = execute()
    except ProvisionError as exc:
        if done is None:  # before any change to the chats: nothing to report
            raise
        error = unsaved(exc, done, journal)
        if done.result is not None:
            done.result.unsaved = Failure.of(error)
        return replace(done, unsaved=error)
    return done


def unsaved(exc: ProvisionError, done: ApplyOutcome, journal: str) -> StateError:
    """The final state write failed after the run (``done``) changed chats. Its records are
    in the journal, which every command replays until a write absorbs it (``states.store``):
    the error says so, and never "nothing was changed" (the store's own hint for a write)."""
    from provisioner.apply.results import FAILED, INTERRUPTED, SKIPPED

    outcomes = done.result.outcomes if done.result is not None else []
    changed = sum(o.status not in (FAILED, SKIPPED, INTERRUPTED) for o in outcomes)
    return StateError(
        f"{exc.message}; this run changed {changed} chat(s) (reported above) before the final "
        "state write",
        hint=f"their records are in the journal {journal}, which the next provision command "
        "reads: keep it, fix the cause (space, permission), then run the same command again "
        "to save them",
    )


def _plan(
    target: Target,
    client: GraphClient,
    state: State,
    graph_url: str,
    settings: ApplySettings,
    hooks: ApplyHooks,
    location: str = "",
    tenant: str | None = None,
) -> Plan:
    """The plan to apply: a saved plan if it still applies to ``state``, else a new plan (with
    the refresh policy of ``plan``), reviewed by the caller."""
    from provisioner.operations.plan import plan_from
    from provisioner.plans.files import check_applicable
    from provisioner.plans.types import Plan

    if isinstance(target, Plan):
        check_applicable(target, state, graph_url)
        return target
    # As plan does: drift, the refreshed view, UPNs resolved (issue 7).
    plan = plan_from(
        client,
        target,
        state,
        refresh=settings.refresh,
        graph_url=graph_url,
        prune=settings.prune,
        location=location,
        tenant=tenant,
        targets=settings.targets,
    )
    hooks.review(plan)
    return plan


def _execute(
    plan: Plan,
    client: GraphClient,
    writer: JournalWriter,
    hooks: ApplyHooks,
    settings: ApplySettings,
    *,
    stats: RequestStats,
    stop: StopSignal,
    pacer: Pacer,
) -> ApplyOutcome:
    from provisioner.apply.executor import ApplyOptions, Executor
    from provisioner.states.settling import DEFAULT_CONSISTENCY_WINDOW_S

    window = settings.consistency_window_s
    options = ApplyOptions(
        concurrency=settings.concurrency,
        consistency_window_s=DEFAULT_CONSISTENCY_WINDOW_S if window is None else window,
        # Delegated mode lists only the signed-in user's chats (chat-list.md): lookups use it.
        anchor=client.signed_in_user(),
    )
    executor = Executor(
        plan,
        client,
        writer,
        options=options,
        listener=hooks.listener,
        stats=stats,
        stop=stop,
        pacer=pacer,
    )
    try:
        with hooks.running(executor.request_stop):
            result = executor.run()
    except (StopNow, KeyboardInterrupt) as exc:
        return ApplyOutcome(
            plan, stopped_at_once=exc.name if isinstance(exc, StopNow) else "SIGINT"
        )
    return ApplyOutcome(plan, result)
