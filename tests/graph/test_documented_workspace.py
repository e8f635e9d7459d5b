"""Graph's documented example answers for a chat's workspace (issue 24; tests/data/graph-docs/:
installedApps, tabs, the app catalog) through the client's calls (graph/workspace.py) and the
parsing that reads them (plans.workspace.tab_record, the installed apps read by apply and
refresh); the requests the client sends have the documented bodies' shape."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote

import pytest
from lib.documented import documented_file as documented
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from provisioner.apply import workspace as apply_workspace
from provisioner.graph import workspace as api
from provisioner.graph.client import GraphClient
from provisioner.operations import workspace as refresh_workspace
from provisioner.operations.clients import EmulatorToken
from provisioner.plans.workspace import tab_record


def serve(server: HTTPServer, name: str) -> tuple[dict[str, Any], list[Any]]:
    """Answer the documented request with the documented answer; returns the file and the
    JSON bodies the client sent."""
    doc = documented(name)
    path = unquote(doc["request"]["path"].split("?")[0])  # the docs percent-encode some ids
    sent: list[Any] = []
    answer = doc["response"]

    def handler(request: Request) -> Response:
        sent.append(request.get_json(silent=True))
        body = answer["body"]
        return Response(
            None if body is None else json.dumps(body),
            status=answer["status"],
            headers=answer["headers"],
        )

    server.expect_request(f"/v1.0{path}", method=doc["request"]["method"]).respond_with_handler(
        handler
    )
    return doc, sent


def chat_of(doc: dict[str, Any]) -> str:
    return unquote(doc["request"]["path"]).split("/")[2]


def keys(body: Any) -> Any:
    """A JSON value's shape: its keys, recursively (lists by their first item)."""
    if isinstance(body, dict):
        return {k: keys(v) for k, v in body.items()}
    if isinstance(body, list):
        return [keys(body[0])] if body else []
    return None


@pytest.fixture
def client(httpserver: HTTPServer) -> GraphClient:
    return GraphClient(httpserver.url_for("/v1.0"), EmulatorToken(), max_retries=0)


def test_install_sends_the_documented_body_and_takes_a_201_without_one(
    httpserver: HTTPServer, client: GraphClient
) -> None:
    doc, sent = serve(httpserver, "install-app.json")
    documented_body = doc["request"]["body"]
    perms = documented_body["consentedPermissionSet"]["resourceSpecificPermissions"]
    consent = [(p["permissionValue"], p["permissionType"]) for p in perms]
    app_id = documented_body["teamsApp@odata.bind"].rsplit("/", 1)[1]
    assert api.install_app(client, chat_of(doc), app_id, consent) is None
    assert keys(sent[0]) == keys(documented_body)
    assert sent[0]["consentedPermissionSet"] == documented_body["consentedPermissionSet"]
    assert sent[0]["teamsApp@odata.bind"].endswith(f"/appCatalogs/teamsApps/{app_id}")


def test_installed_apps_are_read_from_the_expanded_list(
    httpserver: HTTPServer, client: GraphClient
) -> None:
    doc, _ = serve(httpserver, "list-installed-apps-expand-teamsapp.json")
    items = api.list_installed_apps(client, chat_of(doc))
    (item,) = doc["response"]["body"]["value"]
    pair = (item["id"], item["teamsApp"]["id"])
    assert refresh_workspace._apps(items) == (pair,)  # refresh: (installation id, app id)
    installed = apply_workspace._installed(client, chat_of(doc))  # apply: app id -> installation
    assert installed == {pair[1]: pair[0]}
    # The docs warn the two ids differ (chat-list-installedapps.md): never mixed up.
    assert pair[0] != pair[1]


def test_an_unexpanded_list_names_no_app(httpserver: HTTPServer, client: GraphClient) -> None:
    # Example 1 (no $expand): installation ids only. Nothing can be said of the apps, so
    # nothing is taken as installed (provision always asks with $expand=teamsApp).
    doc, _ = serve(httpserver, "list-installed-apps.json")
    items = api.list_installed_apps(client, chat_of(doc))
    assert [i["id"] for i in items] == [i["id"] for i in doc["response"]["body"]["value"]]
    assert refresh_workspace._apps(items) == ()


def test_uninstall_and_delete_tab_take_a_204(httpserver: HTTPServer, client: GraphClient) -> None:
    doc, _ = serve(httpserver, "uninstall-app.json")
    chat_id, installation = chat_of(doc), unquote(doc["request"]["path"]).rsplit("/", 1)[1]
    assert api.uninstall_app(client, chat_id, installation) is None
    doc, _ = serve(httpserver, "delete-tab.json")
    assert api.delete_tab(client, chat_of(doc), doc["request"]["path"].rsplit("/", 1)[1]) is None
    assert len(httpserver.log) == 2


def test_a_pinned_tab_is_read_from_the_201(httpserver: HTTPServer, client: GraphClient) -> None:
    doc, sent = serve(httpserver, "add-tab.json")
    documented_body = doc["request"]["body"]
    app_id = documented_body["teamsApp@odata.bind"].rsplit("/", 1)[1]
    created = api.add_tab(
        client, chat_of(doc), documented_body["displayName"], app_id,
        documented_body["configuration"],
    )  # fmt: skip
    assert created["id"] == doc["response"]["body"]["id"]
    assert keys(sent[0]) == keys(documented_body)
    assert sent[0]["configuration"] == documented_body["configuration"]


def test_listed_tabs_become_records(httpserver: HTTPServer, client: GraphClient) -> None:
    doc, _ = serve(httpserver, "list-tabs.json")
    items = api.list_tabs(client, chat_of(doc))
    records = [tab_record(item) for item in items]
    value = doc["response"]["body"]["value"]
    assert [(r.tab_id, r.name, r.app_id) for r in records if r] == [
        (t["id"], t["displayName"], t["teamsApp"]["id"]) for t in value
    ]
    web = records[1]
    assert web is not None and web.app_id == "com.microsoft.teamspace.tab.web"
    # Nulls stay None; fields the record does not keep (dateAdded) are left out.
    assert (web.entity_id, web.remove_url, web.content_url) == (None, None, "https://www.bing.com")
    assert records[0] is not None and records[0].configuration() == value[0]["configuration"]


def test_update_tab_sends_name_and_takes_the_200(
    httpserver: HTTPServer, client: GraphClient
) -> None:
    doc, sent = serve(httpserver, "update-tab.json")
    tab_id = doc["request"]["path"].rsplit("/", 1)[1]
    answer = doc["response"]["body"]
    assert api.update_tab(client, chat_of(doc), tab_id, answer["displayName"], {}) is None
    assert sent[0]["displayName"] == doc["request"]["body"]["displayName"]


def test_a_catalog_app_is_found_by_external_id(httpserver: HTTPServer, client: GraphClient) -> None:
    doc, _ = serve(httpserver, "list-catalog-apps-by-externalid.json")
    (app,) = doc["response"]["body"]["value"]
    found = api.find_catalog_apps(client, "externalId", app["externalId"])
    assert [a["id"] for a in found] == [app["id"]]
    (request, _), *_ = httpserver.log
    assert request.args["$filter"] == f"externalId eq '{app['externalId']}'"


def test_an_install_answered_with_a_body_is_taken_too(
    httpserver: HTTPServer, client: GraphClient
) -> None:
    # Graph's OpenAPI description gives the install's 2XX a teamsAppInstallation body, the
    # page none (chat-post-installedapps.md): both are a done install, the id read back later.
    chat_id = "19:ea28e88c00e94c7786b065394a61f296@thread.v2"
    httpserver.expect_request(
        f"/v1.0/chats/{chat_id}/installedApps", method="POST"
    ).respond_with_json({"id": "NjRiOWM3NDYtYjE1NS00MDQyLThkNDctOTQxYmQzODE2ODFi"}, status=201)
    assert api.install_app(client, chat_id, "2b524e28-95ce-4c9b-9773-4a5bd6ec1770") is None
    assert len(httpserver.log) == 1
