"""What a refreshing plan reads for chats' workspaces (issue 24): the catalog ids of the apps
the manifests name by ``externalId`` or ``name`` (``GET /appCatalogs/teamsApps?$filter=``,
appcatalogs-list-teamsapps.md), and, for each managed chat that has or should have apps or
tabs, what is installed and pinned now (``GET /chats/{id}/installedApps?$expand=teamsApp``,
``GET /chats/{id}/tabs?$expand=teamsApp``, read in ``$batch``es like the chats themselves).

An app the catalog does not know is a plan error before anything is sent, at the manifest
line that names it. Chats without apps or tabs on either side cost nothing more to refresh.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from provisioner.errors import Diagnostic, ValidationFailed
from provisioner.graph import workspace as api
from provisioner.graph.reads import READ_CONCURRENCY, BatchClient, batched_gets
from provisioner.graph.routes import chat_path
from provisioner.models import App, DesiredState
from provisioner.plans.workspace import LiveWorkspace, tab_record
from provisioner.states.records import State


def resolve_apps(client: Any, desired: DesiredState, state: State) -> dict[str, str]:
    """``externalId:X`` / ``name:X`` -> catalog id for every app of the manifests that the
    state does not remember; ValidationFailed naming each one the catalog does not have (or
    has more than once)."""
    known = {a.ref for w in state.workspaces.values() for a in w.apps}
    wanted: dict[str, App] = {}
    for chat in desired.chats:
        for app in chat.apps:
            if app.by in ("externalId", "name") and app.ref not in known:
                wanted.setdefault(app.ref, app)
    refs: dict[str, str] = {}
    problems = []
    for ref, app in sorted(wanted.items()):
        found = api.find_catalog_apps(client, app.by, app.value)
        ids = sorted({str(a["id"]) for a in found if isinstance(a, dict) and a.get("id")})
        if len(ids) == 1:
            refs[ref] = ids[0]
            continue
        what = "no app" if not ids else f"{len(ids)} apps ({', '.join(ids)})"
        source = app.source
        problems.append(
            Diagnostic(
                source.file if source else "",
                source.line if source else 0,
                source.col if source else 0,
                f"the tenant's app catalog has {what} with {app.by} {app.value!r}",
                hint="name the app by its catalog id (id: ...), as GET /appCatalogs/teamsApps "
                "lists it"
                if ids
                else "check the name, and that the app is published to the organisation's catalog",
            )
        )
    if problems:
        raise ValidationFailed(problems)
    return refs


def read_workspaces(
    client: BatchClient,
    state: State,
    desired: DesiredState,
    *,
    concurrency: int = READ_CONCURRENCY,
) -> dict[str, LiveWorkspace]:
    """What is installed in and pinned to each managed chat that has (in the state) or should
    have (in the manifests) apps or tabs, by state key; a chat Graph does not find is left out
    (the chat's own refresh reports it gone)."""
    declared = {c.key for c in desired.chats if c.apps or c.tabs}
    keys = sorted(k for k in state.chats if k in declared or k in state.workspaces)
    urls: list[str] = []
    for key in keys:
        path = chat_path(state.chats[key].chat_id)
        urls += [f"{path}/installedApps?$expand=teamsApp", f"{path}/tabs?$expand=teamsApp"]

    def handle(index: int, answer: dict[str, Any]) -> list[dict[str, Any]] | None:
        body = answer.get("body")
        if int(answer.get("status", 0)) == 200 and isinstance(body, Mapping):
            value = body.get("value")
            return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []
        if int(answer.get("status", 0)) == 404:
            return None
        # Anything else on its own, so the client's retries and typed errors (a 403 names the
        # permission) apply.
        path = urls[index].split("?", 1)[0]
        reader = api.list_installed_apps if path.endswith("/installedApps") else api.list_tabs
        chat_id = state.chats[keys[index // 2]].chat_id
        return reader(client, chat_id)  # type: ignore[arg-type]

    answers = batched_gets(client, urls, handle, concurrency=concurrency, batch_size=15)
    out: dict[str, LiveWorkspace] = {}
    for i, key in enumerate(keys):
        apps, tabs = answers[2 * i], answers[2 * i + 1]
        if apps is None or tabs is None:
            continue
        out[key] = LiveWorkspace(_apps(apps), tuple(t for t in map(tab_record, tabs) if t))
    return out


def _apps(items: list[dict[str, Any]]) -> tuple[tuple[str, str], ...]:
    out = []
    for item in items:
        app = item.get("teamsApp")
        if isinstance(app, dict) and app.get("id") and item.get("id"):
            out.append((str(item["id"]), str(app["id"])))
    return tuple(out)
