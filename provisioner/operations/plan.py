"""``provision plan``: the manifests compared with the state, and (with refresh) with Graph.

The refresh policy lives here once, for ``plan`` and for ``apply`` (which plans first):
``refresh`` True always reads from Graph, None reads when the state holds chats, False never.
Reading means resolving UPNs and refreshing every managed chat (``operations.refresh``,
issue 7); a plan is read-only either way (``apply`` records what it learned).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from provisioner.errors import PlanError
from provisioner.operations.state import OnTakeover, check_client_home, locked, read_unlocked

if TYPE_CHECKING:
    from collections.abc import Mapping

    from provisioner.graph.client import GraphClient
    from provisioner.graph.reads import BatchClient
    from provisioner.models import DesiredState
    from provisioner.plans.types import Plan
    from provisioner.signin.chooser import SignIn
    from provisioner.states.records import GroupRecord, State

#: Added to the lock error of a refreshing plan: how to plan without the lock.
NO_REFRESH_HINT = "`plan --no-refresh` plans from the state alone, without taking the lock"

#: Told how many managed chats a refresh is about to read, and from where.
OnRefresh = Callable[[int, str], None]


def should_refresh(refresh: bool | None, state: State, desired: DesiredState | None = None) -> bool:
    """The refresh policy: ``--refresh`` always, ``--no-refresh`` never, by default when the
    state holds chats, or the manifests import one, name an app the state does not know, or
    name groups, in member entries or as a generator's source (whose members only Graph
    knows; otherwise a first plan needs no Graph access)."""
    return refresh is True or (
        refresh is None and (bool(state.chats) or (desired is not None and _reads(desired, state)))
    )


def _reads(desired: DesiredState, state: State) -> bool:
    """A first plan still needs Graph for ``import:`` entries, for apps named by externalId
    or name that the state does not know (looked up in the app catalog), and for ``group:``
    entries (issue 22) and generators reading a group (issue 23)."""
    if any(i.key not in state.chats for i in desired.imports) or desired.deferred:
        return True
    if any(c.groups for c in desired.chats):
        return True
    known = {a.ref for w in state.workspaces.values() for a in w.apps}
    return any(a.by != "id" and a.ref not in known for c in desired.chats for a in c.apps)


def plan_from(
    client: BatchClient,
    desired: DesiredState,
    state: State,
    *,
    refresh: bool | None,
    graph_url: str,
    prune: bool = False,
    refresh_only: bool = False,
    location: str = "",
    tenant: str | None = None,
    targets: Sequence[str] = (),
    groups: Mapping[str, GroupRecord] | None = None,
) -> Plan:
    """The plan of ``desired`` against ``state``, read back from Graph first when the refresh
    policy says so (``state`` then gets the resolved users, in memory only). ``tenant``: the
    run's, as ``check_client_home`` established it (None: unknown; then nothing "not found"
    counts, ``states.home.check_not_found``). ``targets`` (``--target``) narrows both sides
    first (`provisioner.plans.targets`), after the generators reading groups made their chats
    (``groups``: the groups this plan read already)."""
    from dataclasses import replace

    from provisioner.plans.planner import make_plan
    from provisioner.plans.targets import narrow
    from provisioner.states.home import check_not_found

    if desired.deferred and not refresh_only:
        # Decided once, before the generators' chats are made: they may change the answer.
        refresh = should_refresh(refresh, state, desired)
        desired, groups = _with_generated(client, desired, state, refresh)
    if targets:
        desired, state = narrow(desired, state, targets)
        plan = plan_from(
            client,
            desired,
            state,
            refresh=refresh,
            graph_url=graph_url,
            prune=prune,
            refresh_only=refresh_only,
            location=location,
            tenant=tenant,
            groups=groups,
        )
        return replace(plan, targets=tuple(targets))
    if not should_refresh(refresh, state, desired):
        check_not_found(state, location, gone=[], tenant=tenant, graph_url=graph_url)
        plan = make_plan(desired, state, prune=prune, graph_url=graph_url)
    else:
        from provisioner.operations.refresh import read_from_graph

        plan = read_from_graph(
            client,
            desired,
            state,
            graph_url=graph_url,
            prune=prune,
            refresh_only=refresh_only,
            location=location,
            tenant=tenant,
            groups=groups,
        )
    check_signed_in_user(client, plan, state)
    return plan


def _with_generated(
    client: object, desired: DesiredState, state: State, refresh: bool | None
) -> tuple[DesiredState, Mapping[str, GroupRecord] | None]:
    """``desired`` with the chats of the generators reading groups (issue 23), and the groups
    read for them (with those of ``group:`` entries: each group once), or None when the plan
    does not refresh and takes them from the state."""
    from provisioner.operations.generated import expand_deferred

    if not should_refresh(refresh, state, desired):
        return expand_deferred(desired, state.groups), None
    from provisioner.operations.groups import GroupReader, read_groups

    if not isinstance(client, GroupReader):
        raise TypeError("this Graph client cannot read groups")
    groups = read_groups(client, desired, state.groups)
    return expand_deferred(desired, groups), groups


def check_signed_in_user(client: object, plan: Plan, state: State) -> None:
    """Delegated mode (the token names a person): refuse, before anything is sent, a plan
    that creates chats without that person, which Graph would refuse one by one at apply."""
    signed_in_user = getattr(client, "signed_in_user", None)
    who = signed_in_user() if callable(signed_in_user) else None
    if not who:
        return
    from provisioner.plans.live import without_signed_in_user

    users = {**state.users, **plan.users}
    keys = without_signed_in_user(plan.changes, who, users)
    if keys:
        raise PlanError(
            f"signed in as {who} (delegated), but these new chats do not include you: "
            + ", ".join(keys),
            hint="Graph creates a chat in delegated mode only with the signed-in user among "
            "its members (of a chat over 200, among the first 200, which the creation sends): "
            "add yourself to them, or sign in as the app (application permissions)",
        )


def run_plan(
    paths: Sequence[str],
    state_path: str,
    state_endpoint: str | None,
    *,
    refresh: bool | None,
    graph_url: str,
    connect: Callable[[], GraphClient] | None = None,
    prune: bool = False,
    refresh_only: bool = False,
    on_takeover: OnTakeover | None = None,
    on_refresh: OnRefresh | None = None,
    lock_timeout: float = 0.0,
    targets: Sequence[str] = (),
    sign_in: SignIn | None = None,
    check_users: bool = False,
) -> Plan:
    """``provision plan``: load the manifests, read the state, plan. A refresh (``connect``
    builds the client; None: never refresh) holds the state's lock, so no apply changes the
    chats while they are read; otherwise the state is only read, without the lock.
    ``check_users``: look every user of the manifests up first (`operations.users.check_users`),
    without the lock, so a plan without refresh still fails on a user Graph does not know."""
    from provisioner.manifest.load import load_desired
    from provisioner.plans.planner import make_plan
    from provisioner.states.home import check_home
    from provisioner.states.store import open_store

    desired = load_desired(paths)
    store = open_store(state_path, state_endpoint, lock_timeout=lock_timeout, sign_in=sign_in)
    state = read_unlocked(store)  # without the lock: consistent even while an apply writes
    check_home(state, store.location, graph_url=graph_url)  # the cloud, offline (issue 15)
    if check_users and connect is not None:
        _check_users(connect, desired)
    if connect is None or not should_refresh(refresh, state, desired):
        from dataclasses import replace

        from provisioner.operations.generated import expand_deferred
        from provisioner.plans.targets import narrow

        if not refresh_only:
            desired = expand_deferred(desired, state.groups)  # as the state recorded them

        desired, state = narrow(desired, state, targets)
        plan = make_plan(desired, state, prune=prune, graph_url=graph_url)
        return replace(plan, targets=tuple(targets))
    client = connect()
    try:
        with locked(store, "plan", on_takeover=on_takeover, hint=NO_REFRESH_HINT) as state:
            tenant = check_client_home(state, store.location, client)  # another: stop here
            count = _targeted_count(state, targets)
            if count and on_refresh is not None:
                on_refresh(count, client.base_url)
            # Decided above: this plan reads from Graph even if the state emptied meanwhile.
            return plan_from(
                client,
                desired,
                state,
                refresh=True,
                graph_url=graph_url,
                prune=prune,
                refresh_only=refresh_only,
                location=store.location,
                tenant=tenant,
                targets=targets,
            )
    finally:
        client.close()


def _check_users(connect: Callable[[], GraphClient], desired: DesiredState) -> None:
    from provisioner.operations.users import check_users

    client = connect()
    try:
        check_users(client, desired)
    finally:
        client.close()


def _targeted_count(state: State, targets: Sequence[str]) -> int:
    """How many managed chats a (targeted) refresh reads."""
    from provisioner.plans.targets import matches

    return sum(1 for key in state.chats if matches(key, targets))
