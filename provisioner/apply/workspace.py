"""Apply's steps for a chat's workspace (issue 24): apps first, then tabs.

Why this route (api-reference/v1.0/api/chat-post-installedapps.md, chat-post-tabs.md): an
install answers "201 Created" with no body, and a tab POST makes a new tab every time, so
neither can be retried blindly, and a run killed after Graph made the change but before the
state recorded it must not do it again. So each phase *reads first*: the chat's installed apps
(``$expand=teamsApp``) before installing, its tabs before pinning. An app already installed is
recorded, not installed again; a tab of the same name and app is adopted (and changed if its
configuration differs), not pinned twice. An install whose answer was lost is read back
before anything else happens, and the installation id (absent from the 201) comes from that
read. Every step is recorded in the state as soon as it is done (``State.put_workspace``), so
nothing Graph made is lost track of. Creating a chat with ``installedApps`` in its body (the
"Create chat" page's example, 202 Accepted with an operation to follow) would tie the group
chat's journaled creation to an asynchronous operation provision cannot look up after a
crash; installing after the creation keeps the two recoverable separately.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from provisioner.apply.context import StepContext
from provisioner.graph import workspace as api
from provisioner.graph.errors import AmbiguousOutcome, GraphError, GraphNotFound
from provisioner.graph.pacing import CHAT
from provisioner.plans.types import Change
from provisioner.plans.workspace import WorkspaceChange, tab_fields, tab_record
from provisioner.states.records import AppRecord, State, TabRecord, Workspace


def workspace_steps(ctx: StepContext, change: Change, chat_id: str) -> Iterator[float]:
    """Install, pin, change and remove what ``change.workspace`` says, recording each step."""
    ws = change.workspace
    if ws is None:
        return
    client: Any = ctx.client  # a GraphClient (graph.workspace's calls), or a test double
    run = _Run(ctx, change.key, ws, chat_id)
    if ws.install or ws.uninstall:
        yield from run.pace()
        installed = _installed(client, chat_id)
        missing = [app for app in ws.install if app.app_id not in installed]
        for app in missing:
            yield from run.pace()
            try:
                api.install_app(client, chat_id, app.app_id, app.consent)
            except AmbiguousOutcome:
                pass  # read back below: installed or not
            except GraphError as exc:
                if exc.status != 409:  # 409: already installed (not documented; tolerated)
                    raise
        if missing:  # the installation ids (a 201 has no body), and what a lost answer did
            yield from run.pace()
            installed = _installed(client, chat_id)
        for app in ws.install:
            # Not listed yet (a lagging list, or a lost answer that made nothing): recorded
            # without its installation id; the next refresh reads the chat and reinstalls
            # it if it is really missing.
            run.apps[app.app_id] = AppRecord(app.app_id, app.ref, installed.get(app.app_id))
        run.save()
        for old in ws.uninstall:
            installation = installed.get(old.app_id) or old.installation_id
            if installation:
                yield from run.pace()
                with contextlib.suppress(GraphNotFound):  # removed meanwhile
                    api.uninstall_app(client, chat_id, installation)
            run.apps.pop(old.app_id, None)
            run.save()
    if ws.add_tabs or ws.update_tabs or ws.remove_tabs:
        yield from _tabs(client, chat_id, ws, run)
    run.save()


def _tabs(client: Any, chat_id: str, ws: WorkspaceChange, run: _Run) -> Iterator[float]:
    yield from run.pace()
    live = _live_tabs(client, chat_id)
    taken = {t.tab_id for t in run.tabs.values()}
    for tab in ws.add_tabs:
        found = _same(live, tab, taken)
        if found is None:
            yield from run.pace()
            try:
                created = api.add_tab(client, chat_id, tab.name, tab.app_id, tab.configuration())
                found = TabRecord(str(created.get("id") or ""), *tab_fields(tab))
            except AmbiguousOutcome:
                yield from run.pace()
                found = _same(_live_tabs(client, chat_id), tab, taken)  # made or not?
                if found is None:
                    raise
        # A tab adopted from an earlier run may have another configuration: bring it along.
        if found.tab_id and tab_fields(found) != tab_fields(tab):
            yield from run.pace()
            api.update_tab(client, chat_id, found.tab_id, tab.name, tab.configuration())
        kept = TabRecord(found.tab_id, *tab_fields(tab))
        taken.add(kept.tab_id)
        run.tabs[kept.tab_id] = kept
        run.save()
    for tab in ws.update_tabs:
        yield from run.pace()
        api.update_tab(client, chat_id, tab.tab_id, tab.name, tab.configuration())
        run.tabs[tab.tab_id] = tab
        run.save()
    for tab in ws.remove_tabs:
        yield from run.pace()
        with contextlib.suppress(GraphNotFound):  # unpinned meanwhile
            api.delete_tab(client, chat_id, tab.tab_id)
        run.tabs.pop(tab.tab_id, None)
        run.save()


class _Run:
    """The workspace as recorded so far: starts from what the plan expects to keep, and is
    written to the state after every step."""

    def __init__(self, ctx: StepContext, key: str, ws: WorkspaceChange, chat_id: str) -> None:
        self.ctx = ctx
        self.key = key
        self.chat_id = chat_id
        # The chat was just created or updated: its next call waits one per-chat interval
        # (one request per second per chat, includes/throttling-teams.md).
        self.next_call = ctx.clock() + 1.05 * ctx.interval(CHAT, chat_id)
        adding = {a.app_id for a in ws.install}
        self.apps = {a.app_id: a for a in ws.after.apps if a.app_id not in adding}
        self.apps.update({a.app_id: a for a in ws.uninstall})  # until removed
        self.tabs = {t.tab_id: t for t in ws.after.tabs if t.tab_id}
        self.tabs.update({t.tab_id: t for t in ws.remove_tabs})

    def pace(self) -> Iterator[float]:
        """Wait (put aside, not asleep) for this chat's next call, then take it."""
        if self.ctx.clock() < self.next_call:
            yield self.next_call
        # 5 % over the interval: two calls sent a second apart can reach Graph closer than
        # that (network jitter), and a 429 costs its Retry-After.
        gap = 1.05 * self.ctx.interval(CHAT, self.chat_id)
        self.next_call = max(self.ctx.clock(), self.next_call) + gap

    def save(self) -> None:
        workspace = Workspace(tuple(self.apps.values()), tuple(self.tabs.values()))

        def write(state: State) -> None:
            if self.key in state.chats:
                state.put_workspace(self.key, workspace)

        self.ctx.record(write)


def _installed(client: Any, chat_id: str) -> dict[str, str]:
    out = {}
    for item in api.list_installed_apps(client, chat_id):
        app = item.get("teamsApp") or {}
        if isinstance(app, dict) and app.get("id") and item.get("id"):
            out[str(app["id"])] = str(item["id"])
    return out


def _live_tabs(client: Any, chat_id: str) -> list[TabRecord]:
    return [tab for item in api.list_tabs(client, chat_id) if (tab := tab_record(item))]


def _same(live: list[TabRecord], tab: TabRecord, taken: set[str]) -> TabRecord | None:
    for t in live:
        same = t.app_id == tab.app_id and t.name.casefold() == tab.name.casefold()
        if same and t.tab_id not in taken:
            return t
    return None
