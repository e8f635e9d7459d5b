"""The Graph calls of a chat's workspace (issue 24): the app catalog, apps installed in a chat,
and its tabs. Each function takes the `GraphClient` (its send loop, retries and pacing).

Pages (microsoftgraph/microsoft-graph-docs-contrib, api-reference/v1.0/api/):

* ``appcatalogs-list-teamsapps.md``: ``GET /appCatalogs/teamsApps?$filter=...``, by
  ``externalId`` or ``displayName`` (AppCatalog.Read.All);
* ``chat-list-installedapps.md``: ``GET /chats/{id}/installedApps?$expand=teamsApp``;
* ``chat-post-installedapps.md``: ``POST /chats/{id}/installedApps`` with ``teamsApp@odata.bind``
  and, for an app with resource-specific consent, ``consentedPermissionSet``: "201 Created",
  no body, so the installation id is read back from the list;
* ``chat-delete-installedapps.md``: ``DELETE /chats/{id}/installedApps/{installation-id}``;
* ``chat-list-tabs.md``, ``chat-post-tabs.md`` ("The corresponding app must already be
  installed in the chat"; 201 with the tab), ``chat-patch-tabs.md``, ``chat-delete-tabs.md``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from provisioner.graph.routes import chat_path, odata_string

if TYPE_CHECKING:
    from provisioner.graph.client import GraphClient


def app_bind(base_url: str, app_id: str) -> str:
    """``teamsApp@odata.bind`` of a catalog app (chat-post-installedapps.md, chat-post-tabs.md)."""
    return f"{base_url}/appCatalogs/teamsApps/{quote(app_id, safe='')}"


def find_catalog_apps(client: GraphClient, by: str, value: str) -> list[dict[str, Any]]:
    """The catalog apps whose ``externalId`` or ``displayName`` is ``value``
    (appcatalogs-list-teamsapps.md, examples 2 and 3: ``$filter=externalId eq '...'``)."""
    field = {"externalId": "externalId", "name": "displayName"}[by]
    params = {"$filter": f"{field} eq {odata_string(value)}"}
    return client.pages("/appCatalogs/teamsApps", params)


def list_installed_apps(client: GraphClient, chat_id: str) -> list[dict[str, Any]]:
    """Apps installed in the chat, each with its ``teamsApp`` (id, externalId, displayName)."""
    return client.pages(f"{chat_path(chat_id)}/installedApps", {"$expand": "teamsApp"})


def install_app(
    client: GraphClient, chat_id: str, app_id: str, consent: Sequence[tuple[str, str]] = ()
) -> None:
    """Install a catalog app in the chat. Not retried blindly after a timeout: the caller
    lists the chat's apps first and installs only what is missing (``apply.workspace``)."""
    body: dict[str, Any] = {"teamsApp@odata.bind": app_bind(client.base_url, app_id)}
    if consent:
        body["consentedPermissionSet"] = {
            "resourceSpecificPermissions": [
                {"permissionValue": value, "permissionType": kind} for value, kind in consent
            ]
        }
    client.request("POST", f"{chat_path(chat_id)}/installedApps", json=body, idempotent=False)


def uninstall_app(client: GraphClient, chat_id: str, installation_id: str) -> None:
    path = f"{chat_path(chat_id)}/installedApps/{quote(installation_id, safe='')}"
    client.request("DELETE", path, idempotent=True)


def list_tabs(client: GraphClient, chat_id: str) -> list[dict[str, Any]]:
    """The chat's tabs, each with its ``teamsApp`` (chat-list-tabs.md, ``$expand=teamsApp``)."""
    return client.pages(f"{chat_path(chat_id)}/tabs", {"$expand": "teamsApp"})


def add_tab(
    client: GraphClient, chat_id: str, name: str, app_id: str, configuration: Mapping[str, Any]
) -> dict[str, Any]:
    """Pin a tab; Graph answers 201 with the tab. A POST is a new tab each time, so it is
    never retried blindly: the caller lists the tabs first and adopts one of the same name
    and app (``apply.workspace``)."""
    body = {
        "displayName": name,
        "teamsApp@odata.bind": app_bind(client.base_url, app_id),
        "configuration": dict(configuration),
    }
    response = client.request("POST", f"{chat_path(chat_id)}/tabs", json=body, idempotent=False)
    return response.body if isinstance(response.body, dict) else {}


def update_tab(
    client: GraphClient, chat_id: str, tab_id: str, name: str, configuration: Mapping[str, Any]
) -> None:
    path = f"{chat_path(chat_id)}/tabs/{quote(tab_id, safe='')}"
    body = {"displayName": name, "configuration": dict(configuration)}
    client.request("PATCH", path, json=body, idempotent=True)


def delete_tab(client: GraphClient, chat_id: str, tab_id: str) -> None:
    path = f"{chat_path(chat_id)}/tabs/{quote(tab_id, safe='')}"
    client.request("DELETE", path, idempotent=True)
