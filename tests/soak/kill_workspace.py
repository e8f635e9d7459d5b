"""The kill soak's apps and tabs (issue 24, ``kill_soak.py --workspace N``): the incident
example's chats as the manifest, ambiguous installs and tab POSTs, and the count of apps
installed twice, tabs doubled, declared ones missing and ones the state does not record."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from provisioner.emulator import EmulatorServer
from provisioner.states.store import local_store

WORKSPACE_FAULTS = (
    "504=0.05,method=POST,path=/chats/{chat-id}/tabs",
    "drop=0.05,method=POST,path=/chats/{chat-id}/tabs",
    "504=0.05,method=POST,path=/chats/{chat-id}/installedApps",
    "drop=0.05,method=POST,path=/chats/{chat-id}/installedApps",
)
WEB_TAB = "com.microsoft.teamspace.tab.web"
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "incident-response" / "incidents.yaml"


def write_incidents(path: Path, n: int) -> list[dict]:
    """The first ``n`` chats of the incident example (at most 10), with what each must hold:
    its apps (catalog ids) and tabs ((name, app id))."""
    from provisioner.emulator.workspace import CATALOG

    text = EXAMPLE.read_text()
    if n < 10:
        text = text[: text.index(f"  - key: incident-{n + 1:02d}\n")]
    path.write_text(text)
    app = {a.display_name: a.id for a in CATALOG}
    members = ["megan.bowen@contoso.com", "alex.wilber@contoso.com", "nestor.wilke@contoso.com"]
    return [
        {
            "type": "group",
            "topic": f"Incident {i:02d} war room",
            "members": members,
            "apps": sorted([app["Incident Bot"], app["Ops Dashboard"]]),
            "tabs": sorted([("Dashboard", app["Ops Dashboard"]), ("Runbook", WEB_TAB)]),
        }
        for i in range(1, min(n, 10) + 1)
    ]


def check_workspaces(
    server: EmulatorServer, chats: list[dict], state_path: Path, report: Any
) -> None:
    """Each chat's apps and tabs in the emulator, once each, and recorded in the state."""
    state = local_store(str(state_path)).read()
    key_of = {rec.chat_id: key for key, rec in state.chats.items()}
    for chat in chats:
        found = server.tenant.find_chats(topic=chat["topic"], members=chat["members"])
        if len(found) != 1:
            continue  # counted by _check_tenant
        live = found[0]
        apps = [app_id for _, app_id in live.apps]
        tabs = [(str(t[1]), str(t[2])) for t in live.tabs]
        report.app_duplicates += len(apps) - len(set(apps))
        report.tab_duplicates += len(tabs) - len(set(tabs))
        report.workspace_missing += len(set(chat["apps"]) - set(apps))
        report.workspace_missing += len(set(chat["tabs"]) - set(tabs))
        ws = state.workspaces.get(key_of.get(live.id, ""))
        recorded_apps = {(a.installation_id, a.app_id) for a in ws.apps} if ws else set()
        recorded_tabs = {t.tab_id for t in ws.tabs} if ws else set()
        report.workspace_unrecorded += len(set(live.apps) - recorded_apps)
        report.workspace_unrecorded += len({str(t[0]) for t in live.tabs} - recorded_tabs)


def workspace_figures(r: Any) -> str:
    return (
        f"apps installed twice {r.app_duplicates}, tabs doubled {r.tab_duplicates}, "
        f"apps/tabs missing {r.workspace_missing}, unrecorded {r.workspace_unrecorded}, "
    )
