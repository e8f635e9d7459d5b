"""Issue 24: apps installed in chats and pinned tabs, declared, planned, applied, kept in sync;
driven through ``cli.main`` against the emulator (its catalog, installedApps and tabs)."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from lib import cli
from pytest_httpserver import HTTPServer
from werkzeug import Response

from provisioner.emulator import EmulatorServer
from provisioner.graph import workspace as api
from provisioner.graph.client import GraphClient
from provisioner.graph.errors import GraphPermissionError
from provisioner.operations.clients import EmulatorToken
from provisioner.states.local import LocalStateStore

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "incident-response" / "incidents.yaml"
WEB = "com.microsoft.teamspace.tab.web"


class World:
    def __init__(self, root: Path, server: EmulatorServer) -> None:
        self.root = root
        self.server = server
        self.client = GraphClient(server.url, EmulatorToken())

    def run(self, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
        return cli.run(capsys, *args)

    def chat_ids(self) -> dict[str, str]:
        state = LocalStateStore(self.root / "provision.state.json").read()
        return {key: record.chat_id for key, record in state.chats.items()}

    def tabs(self, chat_id: str) -> list[tuple[str, str]]:
        return sorted(
            (t["displayName"], t["teamsApp"]["id"]) for t in api.list_tabs(self.client, chat_id)
        )

    def apps(self, chat_id: str) -> list[str]:
        return sorted(
            a["teamsApp"]["displayName"] for a in api.list_installed_apps(self.client, chat_id)
        )


def world_with(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **options: object
) -> Iterator[World]:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PROVISION_STATE", raising=False)
    shutil.copy(EXAMPLE, tmp_path / "incidents.yaml")
    with EmulatorServer(seed=3, invent_users=True, list_delay_s=0, **options) as server:  # type: ignore[arg-type]
        monkeypatch.setenv("PROVISION_GRAPH_URL", server.url)
        monkeypatch.setenv("PROVISION_ACCESS_TOKEN", "test-token")
        yield World(tmp_path, server)
        assert server.tenant.counters.internal_errors_total == 0


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    yield from world_with(tmp_path, monkeypatch, limits="off")


def test_the_incident_example_is_made_kept_and_repaired(world: World, capsys) -> None:
    code, out, err = world.run(capsys, "apply", "incidents.yaml", "--auto-approve")
    assert code == 0, err
    assert "Apply complete: 10 created" in out
    ids = world.chat_ids()
    assert len(ids) == 10
    for chat_id in ids.values():
        assert world.apps(chat_id) == ["Incident Bot", "Ops Dashboard"]
        assert [name for name, _ in world.tabs(chat_id)] == ["Dashboard", "Runbook"]
    posts = world.server.tenant.counters.post_chats_total

    code, out, _ = world.run(capsys, "apply", "incidents.yaml", "--auto-approve")
    assert code == 0 and "No changes." in out
    assert world.server.tenant.counters.post_chats_total == posts

    # Someone unpins a tab in Teams: drift that plan shows and apply repairs, once.
    chat_id = ids["incident-03"]
    runbook = next(t for t in api.list_tabs(world.client, chat_id) if t["displayName"] == "Runbook")
    api.delete_tab(world.client, chat_id, runbook["id"])
    code, out, _ = world.run(capsys, "plan", "incidents.yaml", "--detailed-exitcode")
    assert code == 2
    assert "tab 'Runbook' was removed outside provision: pinned again" in out
    assert f'+ tab "Runbook" ({WEB})' in out
    code, out, err = world.run(capsys, "apply", "incidents.yaml", "--auto-approve")
    assert code == 0, err
    assert world.tabs(chat_id) == sorted(world.tabs(ids["incident-04"]))
    code, out, _ = world.run(capsys, "plan", "incidents.yaml", "--detailed-exitcode")
    assert code == 0


def test_tabs_and_apps_left_out_are_removed_only_if_provision_made_them(world, capsys) -> None:
    assert world.run(capsys, "apply", "incidents.yaml", "--auto-approve")[0] == 0
    chat_id = world.chat_ids()["incident-01"]
    # A tab pinned by a person stays; the manifest's Runbook leaves and is unpinned.
    api.add_tab(world.client, chat_id, "Notes", WEB, {"contentUrl": "https://notes.contoso.com"})
    text = (world.root / "incidents.yaml").read_text()
    (world.root / "incidents.yaml").write_text(
        re.sub(r"\n      - name: Runbook\n(        .*\n)+", "\n", text)
    )
    code, out, err = world.run(capsys, "apply", "incidents.yaml", "--auto-approve")
    assert code == 0, err
    assert '- tab "Runbook"' in out
    assert [n for n, _ in world.tabs(chat_id)] == ["Dashboard", "Notes"]


def test_answers_lost_after_the_change_never_double_an_app_or_a_tab(
    tmp_path, monkeypatch, capsys
) -> None:
    faults = [
        "504=1.0,method=POST,path=/chats/{chat-id}/tabs",
        "drop=1.0,method=POST,path=/chats/{chat-id}/installedApps",
    ]
    for world in world_with(tmp_path, monkeypatch, limits="off", faults=faults):
        code, _, err = world.run(capsys, "apply", "incidents.yaml", "--auto-approve")
        assert code == 0, err
        for chat_id in world.chat_ids().values():
            assert world.apps(chat_id) == ["Incident Bot", "Ops Dashboard"]
            assert [name for name, _ in world.tabs(chat_id)] == ["Dashboard", "Runbook"]
        state = LocalStateStore(world.root / "provision.state.json").read()
        assert all(len(w.tabs) == 2 and w.tabs[0].tab_id for w in state.workspaces.values())


def test_an_unknown_app_is_a_plan_error_before_anything_is_sent(world, capsys) -> None:
    text = (
        (world.root / "incidents.yaml")
        .read_text()
        .replace("name: Incident Bot", "name: Incident Bott", 1)
    )
    (world.root / "incidents.yaml").write_text(text)
    code, _, err = world.run(capsys, "apply", "incidents.yaml", "--auto-approve")
    assert code == 1
    assert "incidents.yaml:" in err and "has no app with name 'Incident Bott'" in err
    assert world.server.tenant.counters.post_chats_total == 0


def test_a_tab_of_an_app_not_declared_is_a_validation_error(world, capsys) -> None:
    text = (
        (world.root / "incidents.yaml")
        .read_text()
        .replace("app: Ops Dashboard", "app: Ops Dashbord", 1)
    )
    (world.root / "incidents.yaml").write_text(text)
    code, out, err = world.run(capsys, "validate", "incidents.yaml")
    assert code == 1
    assert "from app 'Ops Dashbord', which is neither one of this chat's apps" in out + err


@pytest.mark.parametrize(
    ("method", "call", "permission"),
    [
        (
            "POST",
            lambda c: api.install_app(c, "19:c@thread.v2", "app"),
            "TeamsAppInstallation.ReadWriteForChat.All",
        ),
        ("POST", lambda c: api.add_tab(c, "19:c@thread.v2", "T", "app", {}), "TeamsTab.Create"),
        (
            "PATCH",
            lambda c: api.update_tab(c, "19:c@thread.v2", "t", "T", {}),
            "TeamsTab.ReadWriteForChat.All",
        ),
        (
            "GET",
            lambda c: api.list_installed_apps(c, "19:c@thread.v2"),
            "TeamsAppInstallation.ReadForChat.All",
        ),
        ("GET", lambda c: api.find_catalog_apps(c, "name", "X"), "AppCatalog.Read.All"),
    ],
)
def test_a_403_names_the_missing_permission(
    httpserver: HTTPServer, method, call, permission
) -> None:
    body = {"error": {"code": "Forbidden", "message": "Missing role permissions on the request."}}
    httpserver.expect_request(re.compile(".*"), method=method).respond_with_response(
        Response(json.dumps(body), status=403, content_type="application/json")
    )
    client = GraphClient(httpserver.url_for("/v1.0"), EmulatorToken(), max_retries=0)
    with pytest.raises(GraphPermissionError) as err:
        call(client)
    assert permission in str(err.value)
