"""A chat's workspace in the plan (issue 24): which apps to install or remove and which tabs to
pin, change or unpin, so that the chat matches its ``apps:`` and ``tabs:``.

Pure, like the planner: the apps' catalog ids come in resolved (``refs``: the manifest's
``name:Incident Bot`` -> catalog id, looked up by refresh or remembered in the state), and
what the chat holds now comes from the state (``Workspace``: what provision installed and
pinned) or, refreshed, from Graph (``LiveWorkspace``: everything installed and pinned).

Rules: apps are installed before tabs (chat-post-tabs.md: "The corresponding app must already
be installed in the chat"); tabs are matched by name (case-insensitive) and app; only what
provision installed or pinned is removed when it leaves the manifest, everything undeclared
with ``--prune``; an app or tab provision manages that someone removed is put back (drift).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from provisioner.models import BUILTIN_TAB_APPS, App, Chat, Tab
from provisioner.states.records import AppRecord, TabRecord, Workspace


@dataclass(frozen=True, slots=True)
class AppInstall:
    """An app to install: catalog id, the manifest's reference, the consent to give."""

    app_id: str
    ref: str
    consent: tuple[tuple[str, str], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"app_id": self.app_id, "ref": self.ref}
        if self.consent:
            data["consent"] = [{"permission": p, "type": k} for p, k in self.consent]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AppInstall:
        consent = tuple((str(c["permission"]), str(c["type"])) for c in data.get("consent", ()))
        return cls(str(data["app_id"]), str(data["ref"]), consent)


@dataclass(frozen=True, slots=True)
class LiveWorkspace:
    """What a chat holds now, read from Graph: ``apps`` as (installation id, catalog id)."""

    apps: tuple[tuple[str, str], ...] = ()
    tabs: tuple[TabRecord, ...] = ()


@dataclass(frozen=True, slots=True)
class WorkspaceChange:
    """The workspace part of a chat's change; ``after`` is what the state records once done
    (tab ids of new tabs and installation ids of new apps are filled in by apply)."""

    install: tuple[AppInstall, ...] = ()
    uninstall: tuple[AppRecord, ...] = ()
    add_tabs: tuple[TabRecord, ...] = ()
    update_tabs: tuple[TabRecord, ...] = ()  # the tab's id, with its new name and configuration
    remove_tabs: tuple[TabRecord, ...] = ()
    after: Workspace = field(default_factory=Workspace)
    notes: tuple[str, ...] = ()
    # ``after`` differs from what the state records, seen in a refreshed chat: a tab or app a
    # stopped run made but never recorded (found pinned or installed), or a record of one no
    # longer there. Apply records ``after`` even when nothing else is to be done, so that
    # provision keeps track of what it made (and removes it when it leaves the manifest).
    adopt: bool = False

    def __bool__(self) -> bool:
        return bool(
            self.install or self.uninstall or self.add_tabs or self.update_tabs or self.remove_tabs
        )

    @property
    def requests(self) -> int:
        """The Graph calls apply makes (with the lists it reads first)."""
        apps = (1 if self.install or self.uninstall else 0) + (1 if self.install else 0)
        lists = apps + (1 if self.add_tabs or self.update_tabs or self.remove_tabs else 0)
        changes = len(self.install) + len(self.uninstall) + len(self.add_tabs)
        return lists + changes + len(self.update_tabs) + len(self.remove_tabs)

    def to_dict(self) -> dict[str, Any]:
        return {
            "install": [a.to_dict() for a in self.install],
            "uninstall": [a.to_dict() for a in self.uninstall],
            "add_tabs": [t.to_dict() for t in self.add_tabs],
            "update_tabs": [t.to_dict() for t in self.update_tabs],
            "remove_tabs": [t.to_dict() for t in self.remove_tabs],
            "after": self.after.to_dict(),
            "notes": list(self.notes),
            "adopt": self.adopt,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WorkspaceChange:
        from provisioner.states.codec import workspace_from_json

        def tabs(name: str) -> tuple[TabRecord, ...]:
            return workspace_from_json({"tabs": data.get(name, [])}, f"workspace.{name}").tabs

        uninstall = workspace_from_json({"apps": data.get("uninstall", [])}, "workspace").apps
        return cls(
            install=tuple(AppInstall.from_dict(a) for a in data.get("install", ())),
            uninstall=uninstall,
            add_tabs=tabs("add_tabs"),
            update_tabs=tabs("update_tabs"),
            remove_tabs=tabs("remove_tabs"),
            after=workspace_from_json(data.get("after", {}), "workspace.after"),
            notes=tuple(str(n) for n in data.get("notes", ())),
            adopt=bool(data.get("adopt", False)),
        )


class Unresolved(Exception):
    """An app of the manifest whose catalog id is not known (refresh looks it up)."""


def app_id_of(app: App, refs: Mapping[str, str]) -> str:
    if app.by == "id":
        return app.value
    found = refs.get(app.ref)
    if found is None:
        raise Unresolved(app.ref)
    return found


def tab_app_id(tab: Tab, chat: Chat, refs: Mapping[str, str]) -> str:
    """The catalog id of a tab's app: a built-in tab app, or one of the chat's apps."""
    if tab.app in BUILTIN_TAB_APPS:
        return tab.app
    for app in chat.apps:
        if app.value == tab.app:
            return app_id_of(app, refs)
    raise Unresolved(tab.app)  # the manifest rules refuse this; kept for plans made by hand


def plan_workspace(
    chat: Chat,
    refs: Mapping[str, str],
    recorded: Workspace,
    live: LiveWorkspace | None,
    *,
    prune: bool = False,
) -> WorkspaceChange:
    """What to do so the chat holds ``chat.apps`` and ``chat.tabs`` (raises `Unresolved`)."""
    install, uninstall, apps_after, notes = _apps(chat, refs, recorded, live, prune)
    add, update, remove, tabs_after, tab_notes = _tabs(chat, refs, recorded, live, prune)
    change = WorkspaceChange(
        install=install,
        uninstall=uninstall,
        add_tabs=add,
        update_tabs=update,
        remove_tabs=remove,
        after=Workspace(apps_after, tabs_after),
        notes=notes + tab_notes,
    )
    if change or live is None:  # a change records ``after`` as it goes (apply.workspace)
        return change
    adopt = _adopted(recorded, change.after)
    return replace(change, notes=change.notes + adopt, adopt=bool(adopt))


def _adopted(recorded: Workspace, after: Workspace) -> tuple[str, ...]:
    """Notes for what the state must learn to equal ``after`` (order aside): declared apps and
    tabs found in the chat that it does not record (or records under another id)."""
    if set(recorded.apps) == set(after.apps) and set(recorded.tabs) == set(after.tabs):
        return ()
    apps = {a.app_id: a.installation_id for a in recorded.apps}
    tabs = {t.tab_id for t in recorded.tabs}
    notes = [
        f"app {a.ref.split(':', 1)[-1]} found installed in the chat: recorded in the state"
        for a in after.apps
        if a.installation_id and apps.get(a.app_id) != a.installation_id
    ]
    notes += [
        f"tab {t.name!r} found pinned in the chat: recorded in the state"
        for t in after.tabs
        if t.tab_id and t.tab_id not in tabs
    ]
    return tuple(notes) or ("the state's record of apps and tabs brought up to date",)


def _apps(
    chat: Chat,
    refs: Mapping[str, str],
    recorded: Workspace,
    live: LiveWorkspace | None,
    prune: bool,
) -> tuple[tuple[AppInstall, ...], tuple[AppRecord, ...], tuple[AppRecord, ...], tuple[str, ...]]:
    now = (
        {app_id: inst for inst, app_id in live.apps}
        if live is not None
        else {a.app_id: a.installation_id or "" for a in recorded.apps}
    )
    managed = {a.app_id for a in recorded.apps}
    install: list[AppInstall] = []
    after: list[AppRecord] = []
    notes: list[str] = []
    wanted: set[str] = set()
    for app in chat.apps:
        app_id = app_id_of(app, refs)
        wanted.add(app_id)
        if app_id in now:
            after.append(AppRecord(app_id, app.ref, now[app_id] or None))
            continue
        install.append(AppInstall(app_id, app.ref, app.consent))
        after.append(AppRecord(app_id, app.ref))
        if app_id in managed and live is not None:
            notes.append(f"app {app.value} was removed outside provision: installed again")
    uninstall = [
        a for a in recorded.apps if a.app_id not in wanted and (live is None or a.app_id in now)
    ]
    if prune and live is not None:
        uninstall += [
            AppRecord(app_id, f"id:{app_id}", inst)
            for inst, app_id in live.apps
            if app_id not in wanted and app_id not in managed
        ]
    # Live installation ids win over remembered ones (an app reinstalled by hand).
    uninstall = [
        AppRecord(a.app_id, a.ref, now.get(a.app_id) or a.installation_id) for a in uninstall
    ]
    return tuple(install), tuple(uninstall), tuple(after), tuple(notes)


def _tabs(
    chat: Chat,
    refs: Mapping[str, str],
    recorded: Workspace,
    live: LiveWorkspace | None,
    prune: bool,
) -> tuple[
    tuple[TabRecord, ...],
    tuple[TabRecord, ...],
    tuple[TabRecord, ...],
    tuple[TabRecord, ...],
    tuple[str, ...],
]:
    current = list(live.tabs if live is not None else recorded.tabs)
    managed = {t.tab_id for t in recorded.tabs}
    add: list[TabRecord] = []
    update: list[TabRecord] = []
    after: list[TabRecord] = []
    notes: list[str] = []
    matched: set[str] = set()
    for tab in chat.tabs:
        app_id = tab_app_id(tab, chat, refs)
        wanted = TabRecord(
            "", tab.name, app_id, tab.entity_id, tab.content_url, tab.website_url, tab.remove_url
        )
        found = next(
            (
                t
                for t in current
                if t.tab_id not in matched
                and t.name.casefold() == tab.name.casefold()
                and t.app_id == app_id
            ),
            None,
        )
        if found is None:
            add.append(wanted)
            after.append(wanted)
            gone = [t for t in recorded.tabs if t.name.casefold() == tab.name.casefold()]
            if live is not None and gone:
                notes.append(f"tab {tab.name!r} was removed outside provision: pinned again")
            continue
        matched.add(found.tab_id)
        kept = TabRecord(found.tab_id, *tab_fields(wanted))
        if tab_fields(found) != tab_fields(wanted):
            update.append(kept)
        after.append(kept)
    remove = [t for t in current if t.tab_id not in matched and (t.tab_id in managed or prune)]
    return tuple(add), tuple(update), tuple(remove), tuple(after), tuple(notes)


def tab_fields(tab: TabRecord) -> tuple[str, str, str | None, str | None, str | None, str | None]:
    """A tab as compared and copied: everything but its id."""
    return (
        tab.name,
        tab.app_id,
        tab.entity_id,
        tab.content_url,
        tab.website_url,
        tab.remove_url,
    )


def tab_record(item: dict[str, Any]) -> TabRecord | None:
    """A tab as Graph lists it (chat-list-tabs.md, with ``$expand=teamsApp``)."""
    app = item.get("teamsApp") or {}
    conf = item.get("configuration") or {}
    if not item.get("id") or not isinstance(app, dict) or not isinstance(conf, dict):
        return None

    def text(name: str) -> str | None:
        value = conf.get(name)
        return str(value) if value is not None else None

    return TabRecord(
        str(item["id"]),
        str(item.get("displayName") or ""),
        str(app.get("id") or ""),
        text("entityId"),
        text("contentUrl"),
        text("websiteUrl"),
        text("removeUrl"),
    )
