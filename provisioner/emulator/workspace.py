"""A chat's workspace in the emulator (issue 24): the tenant's app catalog, apps installed in
chats and their tabs, answered as the pages describe them (api-reference/v1.0/api/
appcatalogs-list-teamsapps.md, chat-list-installedapps.md, chat-post-installedapps.md,
chat-delete-installedapps.md, chat-list-tabs.md, chat-post-tabs.md, chat-patch-tabs.md,
chat-delete-tabs.md).

What the pages say and this follows: installing answers "201 Created" without a body; a tab
answers 201 with the tab; "The corresponding app must already be installed in the chat" (a tab
of an app that is not is refused, 400, except Teams' built-in tab apps); an app that needs
resource-specific consent is installed only with a ``consentedPermissionSet`` matching its
definition ("The permissions consented to during the installation must match the
resource-specific permissions defined in the teamsAppDefinition"), else 400. What they do not
say: installing an app that is already installed, answered here 409 Conflict (one installation
per app and chat); clients must not depend on it (provision lists before it installs).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, replace
from urllib.parse import quote, unquote

from provisioner.emulator.chats import json_object, json_ok
from provisioner.emulator.errors import GraphError, bad_request, not_found
from provisioner.emulator.messages import Request, Response
from provisioner.emulator.model import ChatView
from provisioner.emulator.protocol import Context
from provisioner.emulator.routes import Match


@dataclass(frozen=True)
class CatalogApp:
    id: str
    external_id: str | None
    display_name: str
    distribution: str = "organization"
    rsc: tuple[tuple[str, str], ...] = ()  # (permissionValue, permissionType) it requires
    builtin_tab: bool = False  # Teams' built-in tab apps: tabs need no installation

    def to_graph(self) -> dict[str, object]:
        return {
            "id": self.id,
            "externalId": self.external_id,
            "displayName": self.display_name,
            "distributionMethod": self.distribution,
        }


#: The emulated tenant's catalog: a few organisation apps (one needing resource-specific
#: consent) and Teams' built-in tab apps ("Configuring the built-in tab types").
CATALOG = (
    CatalogApp(
        "5a1f0e1c-9f63-4c5e-9d0a-3b6d2d7f0a11",
        "contoso-incident-bot",
        "Incident Bot",
        rsc=(("ChatMessage.Read.Chat", "Application"), ("ChatMember.Read.Chat", "Application")),
    ),
    CatalogApp("8c2b7d4e-1a35-4f0b-8e6c-2f9d4a7b5c22", "ops-dashboard", "Ops Dashboard"),
    CatalogApp("2e9c4b1a-6d7f-4a3e-b5c8-1d0f9e8a7b33", "contoso-onboarding", "Onboarding"),
    CatalogApp("com.microsoft.teamspace.tab.web", None, "Website", "store", builtin_tab=True),
    *(
        CatalogApp(
            f"com.microsoft.teamspace.tab.file.staticviewer.{kind}",
            None,
            kind.title(),
            "store",
            builtin_tab=True,
        )
        for kind in ("word", "excel", "powerpoint", "pdf")
    ),
)
_BY_ID = {app.id: app for app in CATALOG}
_FILTER = re.compile(r"^\s*(externalId|displayName|id)\s+eq\s+'((?:[^']|'')*)'\s*$")
_BIND = re.compile(r"/appCatalogs/teamsApps/(?P<id>[^/?#]+)$")


def list_catalog(api: Context, req: Request, m: Match) -> Response:
    apps: list[CatalogApp] = list(CATALOG)
    text = req.query.get("$filter")
    if text is not None:
        found = _FILTER.match(text)
        if found is None:
            raise bad_request(f"Invalid filter clause: {text}")
        name, value = found.group(1), found.group(2).replace("''", "'")
        field = {"externalId": "external_id", "displayName": "display_name", "id": "id"}[name]
        apps = [a for a in apps if getattr(a, field) == value]
    # appcatalogs-list-teamsapps.md, example 3: the collection names its context.
    context = f"{req.base_url}/$metadata#appCatalogs/teamsApps"
    return json_ok(200, {"@odata.context": context, "value": [a.to_graph() for a in apps]})


def _app_of(body: dict[str, object]) -> CatalogApp:
    bind = body.get("teamsApp@odata.bind")
    found = _BIND.search(bind) if isinstance(bind, str) else None
    if found is None:
        raise bad_request("teamsApp@odata.bind is required: the catalog app to use.")
    app = _BY_ID.get(unquote(found.group("id")))
    if app is None:
        raise not_found(f"The app '{unquote(found.group('id'))}' was not found in the catalog.")
    return app


def _installed(chat: ChatView, req: Request, expand: bool = True) -> list[dict[str, object]]:
    out = []
    for installation_id, app_id in chat.apps:
        item: dict[str, object] = {"id": installation_id}
        if expand or "teamsApp" in req.query.get("$expand", ""):
            item["teamsApp"] = _BY_ID[app_id].to_graph()
        out.append(item)
    return out


def list_installed(api: Context, req: Request, m: Match) -> Response:
    chat = api.tenant.live_chat(m.params["chat-id"])
    # chat-list-installedapps.md, example 1: the collection names its context.
    context = f"{req.base_url}/$metadata#chats('{quote(chat.id, safe='')}')/installedApps"
    return json_ok(200, {"@odata.context": context, "value": _installed(chat, req, expand=False)})


def install(api: Context, req: Request, m: Match) -> Response:
    body = json_object(req)
    app = _app_of(body)
    tenant = api.tenant
    with tenant.lock:
        chat = tenant.live_chat(m.params["chat-id"])
        if any(app_id == app.id for _, app_id in chat.apps):
            raise GraphError(409, "Conflict", f"The app '{app.id}' is already installed.")
        _check_consent(app, body)
        installation = str(uuid.UUID(int=tenant.random_bits(128)))
        tenant.commit(replace(chat, apps=(*chat.apps, (installation, app.id))))
    return Response(201)  # chat-post-installedapps.md: "201 Created", no body


def _check_consent(app: CatalogApp, body: dict[str, object]) -> None:
    if not app.rsc:
        return
    given = body.get("consentedPermissionSet")
    perms = given.get("resourceSpecificPermissions") if isinstance(given, dict) else None
    pairs = set()
    for p in perms if isinstance(perms, list) else ():
        if isinstance(p, dict):
            pairs.add((p.get("permissionValue"), p.get("permissionType")))
    if pairs != set(app.rsc):
        raise bad_request(
            "The consented permission set must match the resource-specific permissions the "
            f"app '{app.display_name}' requires."
        )


def uninstall(api: Context, req: Request, m: Match) -> Response:
    tenant = api.tenant
    installation = m.params["teamsAppInstallation-id"]
    with tenant.lock:
        chat = tenant.live_chat(m.params["chat-id"])
        kept = tuple(a for a in chat.apps if a[0] != installation)
        if len(kept) == len(chat.apps):
            raise not_found(f"The app installation '{installation}' was not found.")
        tenant.commit(replace(chat, apps=kept))
    return Response(204)


def _tab_graph(tab: tuple[str | None, ...], position: int, expand: bool) -> dict[str, object]:
    tab_id, name, app_id, entity_id, content_url, website_url, remove_url = tab
    app = _BY_ID[str(app_id)]
    body: dict[str, object] = {
        "id": tab_id,
        "displayName": name,
        # chat-list-tabs.md, chat-patch-tabs.md: the app's id again (null for Teams' built-in
        # Website tab in the list example), and the tab's place as a string of digits that
        # grows with each tab ("20", "10000100", ...).
        "teamsAppId": None if app.builtin_tab else app.id,
        "sortOrderIndex": str((position + 1) * 100),
        "configuration": {
            "entityId": entity_id,
            "contentUrl": content_url,
            "websiteUrl": website_url,
            "removeUrl": remove_url,
        },
        "webUrl": f"https://teams.microsoft.com/l/entity/{app_id}/{tab_id}",
    }
    if expand:
        body["teamsApp"] = app.to_graph()
    return body


def list_tabs(api: Context, req: Request, m: Match) -> Response:
    chat = api.tenant.live_chat(m.params["chat-id"])
    expand = "teamsApp" in req.query.get("$expand", "")
    tabs = [_tab_graph(t, i, expand) for i, t in enumerate(chat.tabs)]
    return json_ok(200, {"value": tabs})


def _configuration(body: dict[str, object]) -> tuple[str | None, ...]:
    conf = body.get("configuration")
    conf = conf if isinstance(conf, dict) else {}
    return tuple(
        str(conf[k]) if conf.get(k) is not None else None
        for k in ("entityId", "contentUrl", "websiteUrl", "removeUrl")
    )


def add_tab(api: Context, req: Request, m: Match) -> Response:
    body = json_object(req)
    app = _app_of(body)
    name = body.get("displayName")
    if not isinstance(name, str) or not name.strip():
        raise bad_request("displayName is required.")
    tenant = api.tenant
    with tenant.lock:
        chat = tenant.live_chat(m.params["chat-id"])
        if not app.builtin_tab and all(app_id != app.id for _, app_id in chat.apps):
            # chat-post-tabs.md: "The corresponding app must already be installed in the chat."
            raise bad_request(f"The app '{app.id}' is not installed in this chat.")
        tab = (str(uuid.UUID(int=tenant.random_bits(128))), name, app.id, *_configuration(body))
        tenant.commit(replace(chat, tabs=(*chat.tabs, tab)))
    return json_ok(201, _tab_graph(tab, len(chat.tabs), False))


def _tab_index(chat: ChatView, tab_id: str) -> int:
    for i, tab in enumerate(chat.tabs):
        if tab[0] == tab_id:
            return i
    raise not_found(f"The tab '{tab_id}' was not found.")


def update_tab(api: Context, req: Request, m: Match) -> Response:
    body = json_object(req)
    tenant = api.tenant
    with tenant.lock:
        chat = tenant.live_chat(m.params["chat-id"])
        i = _tab_index(chat, m.params["teamsTab-id"])
        old = chat.tabs[i]
        name = body.get("displayName", old[1])
        conf = _configuration(body) if "configuration" in body else old[3:]
        tab = (old[0], str(name), old[2], *conf)
        tenant.commit(replace(chat, tabs=(*chat.tabs[:i], tab, *chat.tabs[i + 1 :])))
    return json_ok(200, _tab_graph(tab, i, False))


def delete_tab(api: Context, req: Request, m: Match) -> Response:
    tenant = api.tenant
    with tenant.lock:
        chat = tenant.live_chat(m.params["chat-id"])
        i = _tab_index(chat, m.params["teamsTab-id"])
        tenant.commit(replace(chat, tabs=(*chat.tabs[:i], *chat.tabs[i + 1 :])))
    return Response(204)


HANDLERS = {
    "GET /appCatalogs/teamsApps": list_catalog,
    "GET /chats/{chat-id}/installedApps": list_installed,
    "POST /chats/{chat-id}/installedApps": install,
    "DELETE /chats/{chat-id}/installedApps/{teamsAppInstallation-id}": uninstall,
    "GET /chats/{chat-id}/tabs": list_tabs,
    "POST /chats/{chat-id}/tabs": add_tab,
    "PATCH /chats/{chat-id}/tabs/{teamsTab-id}": update_tab,
    "DELETE /chats/{chat-id}/tabs/{teamsTab-id}": delete_tab,
}
