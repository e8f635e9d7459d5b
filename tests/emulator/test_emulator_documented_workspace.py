"""The emulator's answers for a chat's workspace (issue 24) have the documented shapes
(tests/data/graph-docs/: statuses, every field of the docs' example answers, with the same
JSON types) and validate against Graph's OpenAPI description of them (the extract in
tests/data/graph-openapi/workspace.json). The client reads the same files in
tests/graph/test_documented_workspace.py."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import requests
from lib.documented import assert_shape, documented, group

from provisioner.emulator import EmulatorServer
from provisioner.emulator.workspace import CATALOG

OPENAPI = Path(__file__).resolve().parents[1] / "data" / "graph-openapi" / "workspace.json"
GRAPH = "https://graph.microsoft.com/v1.0"
RSC_APP = next(a for a in CATALOG if a.rsc)
PLAIN_APP = next(a for a in CATALOG if not a.rsc and not a.builtin_tab)
WEB = "com.microsoft.teamspace.tab.web"


def _json_schema(node: Any) -> Any:
    """OpenAPI 3.0 to JSON Schema: ``nullable`` becomes a null type, refs point at $defs, and
    ``additionalProperties`` goes (the extract's PowerShell flavour puts ``{type: object}`` on
    every schema, which the docs' own examples break: ``sortOrderIndex`` is a string)."""
    if isinstance(node, list):
        return [_json_schema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _json_schema(v) for k, v in node.items() if k != "additionalProperties"}
    for key, prop in out.get("properties", {}).items():
        if set(prop) == {"$ref"}:
            # OpenAPI 3.0 cannot say "nullable" beside a $ref; in Graph's CSDL a property of a
            # complex type is nullable unless it says otherwise, and the docs print nulls
            # (teamsAppDefinition.createdBy in chat-list-installedapps.md, example 3).
            out["properties"][key] = {"anyOf": [prop, {"type": "null"}]}
    if "$ref" in out:
        out["$ref"] = "#/$defs/" + out["$ref"].rsplit("/", 1)[1]
    if out.pop("nullable", False):
        if "type" in out:
            out["type"] = [out["type"], "null"]
        else:
            out = {"anyOf": [out, {"type": "null"}]}
    return out


def openapi_check(name: str, body: Any) -> None:
    """Validate ``body`` against the component schema ``name`` of the extract."""
    spec = json.loads(OPENAPI.read_text())
    defs = {k: _json_schema(v) for k, v in spec["components"]["schemas"].items()}
    schema = {"$defs": defs, "$ref": f"#/$defs/{name}"}
    jsonschema.Draft202012Validator(schema).validate(body)


@pytest.fixture
def graph() -> Iterator[tuple[str, requests.Session]]:
    with EmulatorServer(limits="off", seed=3, list_delay_s=0) as server, requests.Session() as s:
        s.headers["Authorization"] = "Bearer docs"
        yield server.url, s
        assert server.tenant.counters.internal_errors_total == 0


def install(url: str, s: requests.Session, chat_id: str, app: Any) -> requests.Response:
    body: dict[str, Any] = {"teamsApp@odata.bind": f"{GRAPH}/appCatalogs/teamsApps/{app.id}"}
    if app.rsc:  # chat-post-installedapps.md, example 2
        perms = [{"permissionValue": v, "permissionType": t} for v, t in app.rsc]
        body["consentedPermissionSet"] = {"resourceSpecificPermissions": perms}
    return s.post(f"{url}/chats/{chat_id}/installedApps", json=body)


def pin(url: str, s: requests.Session, chat_id: str, app_id: str) -> requests.Response:
    body = dict(documented("add-tab.json")["body"])  # the docs' configuration, our app
    tab = {
        "displayName": body["displayName"],
        "teamsApp@odata.bind": f"{GRAPH}/appCatalogs/teamsApps/{app_id}",
        "configuration": body["configuration"],
    }
    return s.post(f"{url}/chats/{chat_id}/tabs", json=tab)


def test_installed_apps(graph: tuple[str, requests.Session]) -> None:
    url, s = graph
    chat_id = group(url, s)["id"]
    for app in (RSC_APP, PLAIN_APP):
        resp = install(url, s, chat_id, app)
        assert resp.status_code == documented("install-app.json")["status"], resp.text
        assert not resp.content  # "201 Created", no body
    plain = s.get(f"{url}/chats/{chat_id}/installedApps")
    assert plain.status_code == 200
    assert_shape(documented("list-installed-apps.json")["body"], plain.json())
    assert "teamsApp" not in plain.json()["value"][0]  # not asked for, not given
    expanded = s.get(f"{url}/chats/{chat_id}/installedApps", params={"$expand": "teamsApp"})
    doc = documented("list-installed-apps-expand-teamsapp.json")["body"]
    # The emulator keeps no app definitions (provision never expands them).
    items = [{k: v for k, v in item.items() if k != "teamsAppDefinition"} for item in doc["value"]]
    assert_shape({"value": items}, expanded.json())
    got = expanded.json()
    assert {i["teamsApp"]["id"] for i in got["value"]} == {RSC_APP.id, PLAIN_APP.id}
    openapi_check("microsoft.graph.teamsAppInstallationCollectionResponse", got)
    installation = got["value"][0]["id"]
    removed = s.delete(f"{url}/chats/{chat_id}/installedApps/{installation}")
    assert removed.status_code == documented("uninstall-app.json")["status"]
    assert not removed.content


def test_tabs(graph: tuple[str, requests.Session]) -> None:
    url, s = graph
    chat_id = group(url, s)["id"]
    assert install(url, s, chat_id, PLAIN_APP).status_code == 201
    created = pin(url, s, chat_id, PLAIN_APP.id)
    assert created.status_code == documented("add-tab.json")["status"], created.text
    assert_shape(documented("add-tab.json")["body"], created.json())
    openapi_check("microsoft.graph.teamsTab", created.json())
    assert pin(url, s, chat_id, WEB).status_code == 201  # a built-in tab app: no install

    listed = s.get(f"{url}/chats/{chat_id}/tabs", params={"$expand": "teamsApp"})
    assert listed.status_code == documented("list-tabs.json")["status"]
    assert_shape(documented("list-tabs.json")["body"], listed.json())
    openapi_check("microsoft.graph.teamsTabCollectionResponse", listed.json())
    web = listed.json()["value"][1]
    # The docs' Website tab: a store app with no externalId and no teamsAppId.
    doc_web = documented("list-tabs.json")["body"]["value"][1]
    assert web["teamsApp"] == doc_web["teamsApp"] | {"id": WEB}
    assert web["teamsAppId"] is None

    tab_id = created.json()["id"]
    body = documented("update-tab.json")
    patched = s.patch(f"{url}/chats/{chat_id}/tabs/{tab_id}", json={"displayName": "Renamed"})
    assert patched.status_code == body["status"]
    assert_shape(body["body"], patched.json())
    openapi_check("microsoft.graph.teamsTab", patched.json())
    assert patched.json()["displayName"] == "Renamed"
    assert patched.json()["configuration"] == created.json()["configuration"]  # kept

    deleted = s.delete(f"{url}/chats/{chat_id}/tabs/{tab_id}")
    assert deleted.status_code == documented("delete-tab.json")["status"]
    assert not deleted.content


def test_catalog_by_external_id(graph: tuple[str, requests.Session]) -> None:
    url, s = graph
    wanted = PLAIN_APP.external_id
    resp = s.get(f"{url}/appCatalogs/teamsApps", params={"$filter": f"externalId eq '{wanted}'"})
    assert resp.status_code == documented("list-catalog-apps-by-externalid.json")["status"]
    assert_shape(documented("list-catalog-apps-by-externalid.json")["body"], resp.json())
    openapi_check("microsoft.graph.teamsAppCollectionResponse", resp.json())
    assert [a["id"] for a in resp.json()["value"]] == [PLAIN_APP.id]


@pytest.mark.parametrize(
    ("name", "schema"),
    [
        ("list-installed-apps.json", "teamsAppInstallationCollectionResponse"),
        ("list-installed-apps-expand-teamsapp.json", "teamsAppInstallationCollectionResponse"),
        ("add-tab.json", "teamsTab"),
        ("update-tab.json", "teamsTab"),
        ("list-tabs.json", "teamsTabCollectionResponse"),
        ("list-catalog-apps-by-externalid.json", "teamsAppCollectionResponse"),
    ],
)
def test_the_documented_examples_fit_the_openapi_description(name: str, schema: str) -> None:
    # The two sources agree, so checking the emulator against both is checking one thing.
    openapi_check(f"microsoft.graph.{schema}", documented(name)["body"])
