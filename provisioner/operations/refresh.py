"""Refresh: read every managed chat and its members back from Graph, to see drift.

``refresh(client, state)`` reads each chat of the state with ``GET /chats/{id}?$expand=members``
(api-reference/v1.0/api/chat-get.md, example 3: the chat "and all its members"), 20 per
``$batch``, paced under the read limits (``provisioner.graph.reads``). A 404 means the chat is gone
(deleted in Teams; Graph's soft-deleted chats are not found either). The result feeds
``planner.make_plan(live=...)``, which reports the differences as drift ("changed outside
provision") and plans the changes that bring the chats back to the manifest.

Does refresh update the state? Not by itself, like Terraform's plan: ``plan`` never writes the
state. The plan records the refreshed view (each drifted chat's ``Drift.record``; the changes'
``before``), and apply persists it (``operations.apply.record_plan_facts``) before making any
change, as Terraform's apply persists the refreshed state. So a ``plan`` is read-only, and a
saved plan applies exactly the view it was reviewed with; this module never writes the state.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from provisioner.graph.errors import GraphNotFound
from provisioner.graph.reads import READ_CONCURRENCY, BatchClient, batched_gets
from provisioner.graph.routes import chat_path
from provisioner.models import CHAT_TYPES, DesiredState
from provisioner.operations.groups import GroupReader, group_refs, read_groups, taught_users
from provisioner.operations.users import resolve_users
from provisioner.plans.live import LiveChat, live_chat
from provisioner.plans.planner import make_plan, refresh_only_plan
from provisioner.plans.types import Plan
from provisioner.states.home import check_home, check_not_found, claim_home
from provisioner.states.records import GroupRecord, State

#: Chats per ``$batch`` in refresh: 15, not Graph's maximum of 20 (json-batching.md). A batch
#: spends its reads at once, and network jitter can make two batches arrive together; at
#: 15 (half a second of the 30 reads per second) two of them still fit the limit's burst,
#: at 20 they do not. Measured with benchmarks/bench_refresh.py, 1,000 chats, documented
#: limits, 200-600 ms latency: 20 per batch took 1.16x the minimum time (2 items throttled,
#: each pausing all reads for its Retry-After); 15 per batch 1.00x, none throttled, for 67
#: requests instead of 50.
CHAT_BATCH = 15


def refresh(
    client: BatchClient,
    state: State,
    *,
    concurrency: int = READ_CONCURRENCY,
    batch_size: int = CHAT_BATCH,
    cover: bool = True,
) -> dict[str, LiveChat]:
    """The live view of every chat in ``state.chats``, by key (pending creations are left to
    apply's reconciliation). Graph errors other than 404 raise (``GraphError`` subclasses).

    With ``cover`` (and a client that lists users' chats), chats that share members are read
    through a few users' chat lists (`provisioner.operations.cover`), the rest one by one;
    the live view is the same either way."""
    from provisioner.operations.cover import ListClient, cover_refresh

    ids = {key: record.chat_id for key, record in state.chats.items()}
    found: dict[str, LiveChat] = {}
    rest: Iterable[str] = ids.values()
    if cover and isinstance(client, ListClient):
        found, rest = cover_refresh(client, state, concurrency=concurrency)
    if rest:
        found.update(read_chats(client, rest, concurrency=concurrency, batch_size=batch_size))
    return {key: found[chat_id] for key, chat_id in ids.items()}


def read_chats(
    client: BatchClient,
    chat_ids: Iterable[str],
    *,
    concurrency: int = READ_CONCURRENCY,
    batch_size: int = CHAT_BATCH,
) -> dict[str, LiveChat]:
    """Each chat (with all its members) by the id asked for; ``LiveChat.gone`` for a 404.

    Chat ids are compared case-folded: Graph has answered a chat under an id cased otherwise
    than the one asked for (issue 20: a KeyError on every refresh). The chat keeps the id it
    was asked (and recorded) under, so the state and the plan never see two spellings."""
    unique = list(dict.fromkeys(chat_ids))
    urls = [f"{chat_path(chat_id)}?$expand=members" for chat_id in unique]

    def handle(index: int, answer: dict[str, Any]) -> LiveChat:
        chat_id = unique[index]
        status = int(answer.get("status", 0))
        body = answer.get("body")
        if status == 200 and isinstance(body, dict):
            return _as_asked(live_chat(body, chat_id), chat_id)
        if status == 404:
            return LiveChat(chat_id=chat_id, gone=True)
        # Anything else (a 5xx Graph did not mark retryable, a 403...): read it on its own,
        # so the client's retry policy and typed errors (permission hints) apply.
        try:
            return _as_asked(live_chat(client.get_chat(chat_id), chat_id), chat_id)
        except GraphNotFound:
            return LiveChat(chat_id=chat_id, gone=True)

    chats = batched_gets(client, urls, handle, concurrency=concurrency, batch_size=batch_size)
    return dict(zip(unique, chats, strict=True))


def _as_asked(chat: LiveChat, chat_id: str) -> LiveChat:
    """``chat`` under the id it was asked for, when Graph's differs only in case."""
    if chat.chat_id != chat_id and chat.chat_id.casefold() == chat_id.casefold():
        return replace(chat, chat_id=chat_id)
    return chat


def read_from_graph(
    client: BatchClient,
    desired: DesiredState,
    state: State,
    *,
    graph_url: str,
    prune: bool = False,
    refresh_only: bool = False,
    location: str = "",
    tenant: str | None = None,
    groups: Mapping[str, GroupRecord] | None = None,
) -> Plan:
    """The plan of ``plan`` with refresh: resolve UPNs (the manifest's and the state's; an
    unknown manifest user raises ``ValidationFailed``), read every managed chat, and plan
    against that live view (or, ``refresh_only``, report the drift alone). ``state`` gets
    the resolved users in memory only; the plan carries them for apply to persist.

    ``tenant``: the run's, if established (`operations.state.check_client_home`); a chat read
    back establishes it too. Chats "not found" count as deleted only with that evidence, and
    never all of them at once (``states.home.check_not_found``, issue 20). ``groups``: the
    groups this plan read already (for generators, `operations.plan`), not read again."""
    # The groups read for generators pair their users' UPNs with object ids: no lookups.
    users = {u: oid for u, oid in taught_users(groups or {}).items() if state.users.get(u) != oid}
    state.users.update(users)
    users.update(resolve_users(client, state, None if refresh_only else desired))
    state.users.update(users)
    if groups is None and not refresh_only and group_refs(desired):
        if not isinstance(client, GroupReader):
            raise TypeError("this Graph client cannot read groups")
        groups = read_groups(client, desired, state.groups)
    live = refresh(client, state) if state.chats else {}
    imported = read_imports(client, desired, state) if not refresh_only else {}
    # Without a tid in the token, the chats say which tenant they are in (issue 15).
    read = [*live.values(), *imported.values()]
    seen = sorted({c.tenant_id for c in read if c.tenant_id})
    for found in seen:
        check_home(state, location, tenant=found)
        claim_home(state, tenant=found)
    gone = sorted(key for key, chat in live.items() if chat.gone)
    check_not_found(
        state, location, gone=gone, tenant=tenant or next(iter(seen), None), graph_url=graph_url
    )
    if refresh_only:
        plan = refresh_only_plan(state, live, graph_url=graph_url, desired=desired)
    else:
        from provisioner.operations.workspace import read_workspaces, resolve_apps

        plan = make_plan(
            desired,
            state,
            live=live,
            prune=prune,
            graph_url=graph_url,
            imported=imported,
            app_refs=resolve_apps(client, desired, state),
            workspaces=read_workspaces(client, state, desired),
            groups=groups,
        )
    return replace(plan, users={**users, **plan.users})


def read_imports(client: BatchClient, desired: DesiredState, state: State) -> dict[str, LiveChat]:
    """The chat of each ``import:`` entry the state does not hold yet, by key."""
    wanted = {i.key: i.chat_id for i in desired.imports if i.key not in state.chats}
    if not wanted:
        return {}
    found = read_chats(client, wanted.values())
    return {key: found[chat_id] for key, chat_id in wanted.items()}


def is_manageable(chat: LiveChat) -> bool:
    """Only oneOnOne and group chats can be managed (meeting chats belong to meetings)."""
    return chat.chat_type in CHAT_TYPES
