"""Issue 24, "Done when": a run stopped at any point while it installs apps and pins tabs
leaves no app installed twice, no tab doubled, nothing lost, and a clean plan afterwards.

Deterministic crash points, in-process (``tests/fault_points.py``, issue 21's harness): every
Graph request and every durable write (lock, state write, backup, journal reset/append/remove)
of one ``provision apply`` of three chats of the incident example (each: the chat, two apps,
two tabs) is numbered; the run is made again with the Nth of them injected, for N = 1, 2, ...
until a run meets no Nth point:

- ``stop``: the process dies there (before the operation, or just after it). From then on
  every request and durable write raises `Killed`, a BaseException no ``except Exception``
  swallows, and the lock is let go as the kernel does for a killed process (its file stays):
  whatever the dying code still runs cannot change what the next run sees, so this stands in
  for ``kill -9``;
- ``fail`` (requests only): that one request is refused before it is sent (Graph saw nothing)
  or its answer is lost after Graph did the work, and the run goes on.

After each, one clean rerun (with its refresh) must leave in the emulator each chat once, each
declared app installed once and each declared tab pinned once; the state must record them
(the installation ids and tab ids Graph has), no intent may be left, and
``plan --detailed-exitcode`` must find nothing to do. Runs use one worker, so the Nth point is
the same one in every run. The random ``kill -9`` soak is ``tests/soak/kill_soak.py
--workspace``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from lib.fault_points import AFTER, BEFORE, FAIL, STOP, Injector, Killed, injected

from provisioner.cli.main import main
from provisioner.emulator import EmulatorServer
from provisioner.states.store import local_store

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "incident-response" / "incidents.yaml"
CHATS = 3
STATUS = "https://status.contoso.com/incidents"


@pytest.fixture(autouse=True)
def _quiet_killed_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    # (Pacing is raised for every test but those marked documented_pace: tests/conftest.py.)
    # A worker thread "killed" at a crash point just ends, as it would with the process.
    previous = threading.excepthook

    def hook(args: threading.ExceptHookArgs) -> None:
        if not isinstance(args.exc_value, Killed):
            previous(args)

    monkeypatch.setattr(threading, "excepthook", hook)


def _manifest(path: Path, updated: bool = False) -> None:
    """The first ``CHATS`` chats of the incident example, as written there; ``updated``: each
    without the incident bot (uninstalled), its Dashboard tab's contentUrl changed (PATCH),
    its Runbook tab gone (DELETE) and a Status tab instead (POST)."""
    text = EXAMPLE.read_text()
    text = text[: text.index(f"  - key: incident-{CHATS + 1:02d}\n")]
    if updated:
        text = re.sub(
            r"      - name: Incident Bot\n        consent:\n(          - .*\n)+", "", text
        )
        text = text.replace("/dashboard\n", "/dashboard?v=2\n").replace(
            "name: Runbook", "name: Status"
        )
        text = text.replace("https://wiki.contoso.com/runbooks/incident-response", STATUS)
    path.write_text(text)


@dataclass(frozen=True)
class Wanted:
    topic: str
    apps: tuple[str, ...]  # catalog ids
    tabs: tuple[tuple[str, str], ...]  # (name, app id)
    dashboard: str  # the Dashboard tab's contentUrl


def _wanted(updated: bool) -> list[Wanted]:
    from provisioner.emulator.workspace import CATALOG

    by_name = {app.display_name: app.id for app in CATALOG}
    web = "com.microsoft.teamspace.tab.web"
    ops = by_name["Ops Dashboard"]
    return [
        Wanted(
            f"Incident {n:02d} war room",
            (ops,) if updated else (by_name["Incident Bot"], ops),
            (("Dashboard", ops), ("Status" if updated else "Runbook", web)),
            f"https://ops.contoso.com/incidents/{n:02d}/dashboard{'?v=2' if updated else ''}",
        )
        for n in range(1, CHATS + 1)
    ]


def check(server: EmulatorServer, state_path: Path, updated: bool = False) -> list[str]:
    """What is wrong with the tenant and the state (empty: nothing)."""
    tenant = server.tenant
    problems = [f"duplicate chat {g[0].topic}" for g in tenant.duplicate_group_chats()]
    state = local_store(str(state_path)).read()
    by_chat = {rec.chat_id: key for key, rec in state.chats.items()}
    for want in _wanted(updated):
        found = tenant.find_chats(chat_type="group", topic=want.topic)
        if len(found) != 1:
            problems.append(f"{want.topic}: {len(found)} chats")
            continue
        chat = found[0]
        apps = Counter(app_id for _, app_id in chat.apps)
        tabs = Counter((str(t[1]), str(t[2])) for t in chat.tabs)
        if apps != Counter(want.apps):
            problems.append(f"{want.topic}: apps {dict(apps)}")
        if tabs != Counter(want.tabs):
            problems.append(f"{want.topic}: tabs {dict(tabs)}")
        key = by_chat.get(chat.id)
        if key is None:
            problems.append(f"{want.topic}: not in the state")
            continue
        ws = state.workspaces.get(key)
        installed = {app_id: inst for inst, app_id in chat.apps}
        recorded_apps = {a.app_id: a.installation_id for a in ws.apps} if ws else {}
        if recorded_apps != {a: installed.get(a) for a in want.apps}:
            problems.append(f"{want.topic}: state apps {recorded_apps}")
        live_tabs = {str(t[0]): (str(t[1]), str(t[2]), t[4]) for t in chat.tabs}
        recorded_tabs = {t.tab_id: (t.name, t.app_id, t.content_url) for t in ws.tabs} if ws else {}
        if want.dashboard not in {t[2] for t in live_tabs.values()}:
            problems.append(f"{want.topic}: no Dashboard tab showing {want.dashboard}")
        if recorded_tabs != live_tabs:
            problems.append(f"{want.topic}: state tabs {recorded_tabs} != {live_tabs}")
    live = len(tenant.chats(include_deleted=False))
    if live != CHATS:
        problems.append(f"{live} chats in the tenant")
    if state.intents:
        problems.append(f"intents left: {sorted(state.intents)}")
    return problems


class Scenario:
    def __init__(self, workdir: Path, monkeypatch: pytest.MonkeyPatch, updated: bool = False):
        self.workdir = workdir
        self.mp = monkeypatch
        self.state = workdir / "state.json"
        self.updated = updated  # the run changes what an earlier run made
        _manifest(workdir / "incidents.yaml", updated)
        _manifest(workdir / "before.yaml")

    @contextlib.contextmanager
    def server(self) -> Iterator[EmulatorServer]:
        for leftover in self.workdir.glob("state.json*"):
            leftover.unlink()
        with EmulatorServer(seed=3, limits="off", invent_users=True, list_delay_s=0.0) as server:
            self.mp.setenv("PROVISION_GRAPH_URL", server.url)
            self.mp.setenv("PROVISION_ACCESS_TOKEN", "t")
            # Instant lists: a lost creation is found at once, one never made is made again
            # after this short window.
            self.mp.setenv("PROVISION_CONSISTENCY_WINDOW", "0.01")
            self.mp.delenv("PROVISION_STATE", raising=False)
            self.mp.chdir(self.workdir)
            if self.updated:
                assert self.apply("before.yaml") == 0
            yield server
            assert server.tenant.counters.internal_errors_total == 0

    def apply(self, manifest: str = "incidents.yaml") -> int:
        args = ["apply", manifest, "--auto-approve", "--state", str(self.state)]
        return main([*args, "--concurrency", "1", "--quiet"])

    def plan(self) -> int:
        return main(["plan", "incidents.yaml", "--state", str(self.state), "--detailed-exitcode"])


def one(scenario: Scenario, inj: Injector, capsys: pytest.CaptureFixture[str]) -> list[str]:
    """The injected run, one clean rerun, the checks."""
    with scenario.server() as server:
        with pytest.MonkeyPatch.context() as mp, injected(mp, inj):
            try:
                code = scenario.apply()
            except Killed:
                code = -9
        err = capsys.readouterr().err
        problems = []
        if inj.kind == FAIL and code not in (0, 1):
            problems.append(f"exit {code}")
        if "Traceback" in err or "internal error" in err:
            problems.append(f"not one line: {err[-300:]}")
        rerun = scenario.apply()
        err = capsys.readouterr().err
        if rerun != 0:
            return [*problems, f"rerun exit {rerun}: {err[-300:]}"]
        problems += check(server, scenario.state, scenario.updated)
        if scenario.plan() != 0:
            problems.append(f"plan after the rerun: {capsys.readouterr().out[-400:]}")
        capsys.readouterr()
    return problems


def sweep(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], **kw: Any
) -> tuple[list[str], dict[str, list[str]], list[str]]:
    """Every crash point of the run: (covered points, failures, the labels of a whole run)."""
    scenario = Scenario(tmp_path, monkeypatch, kw.pop("updated", False))
    covered: list[str] = []
    failures: dict[str, list[str]] = {}
    n = 0
    while True:
        n += 1
        inj = Injector(target=n, **kw)
        problems = one(scenario, inj, capsys)
        if inj.fired is None:  # fewer than n points: all covered, and a clean run is clean
            assert not problems, problems
            return covered, failures, inj.labels
        covered.append(inj.fired)
        if problems:
            failures[inj.fired] = problems
        assert n < 300, "the run never completes"


def test_the_scenario_without_faults_is_clean(tmp_path, monkeypatch, capsys) -> None:
    scenario = Scenario(tmp_path, monkeypatch)
    inj = Injector(target=None, kind=STOP, when=BEFORE)
    assert one(scenario, inj, capsys) == []
    labels = Counter(inj.labels)
    # Each chat: two installs and two tab POSTs, its apps read before and after installing,
    # its tabs read before pinning.
    assert labels["POST /chats/{}/installedApps"] == 2 * CHATS
    assert labels["POST /chats/{}/tabs"] == 2 * CHATS
    assert labels["GET /chats/{}/installedApps"] == 2 * CHATS
    assert labels["GET /chats/{}/tabs"] == CHATS
    assert labels["journal append"] >= 5 * CHATS  # each install phase and tab recorded


@pytest.mark.parametrize("when", [BEFORE, AFTER])
def test_a_run_stopped_at_any_point_leaves_each_app_and_tab_once(
    tmp_path, monkeypatch, capsys, when: str
) -> None:
    covered, failures, labels = sweep(tmp_path, monkeypatch, capsys, kind=STOP, when=when)
    print(f"stop {when}: {len(covered)} crash points covered")
    assert not failures, failures
    assert len(covered) == len(labels)
    assert {"lock", "state write", "journal append", "POST /chats/{}/tabs"} <= set(labels)


@pytest.mark.parametrize("when", [BEFORE, AFTER])
def test_a_request_refused_or_its_answer_lost_never_doubles_an_app_or_a_tab(
    tmp_path, monkeypatch, capsys, when: str
) -> None:
    covered, failures, labels = sweep(
        tmp_path, monkeypatch, capsys, kind=FAIL, when=when, requests_only=True
    )
    print(f"fail {when}: {len(covered)} requests covered")
    assert not failures, failures
    assert Counter(labels)["POST /chats/{}/installedApps"] == 2 * CHATS


def test_a_tab_pinned_but_not_recorded_is_recorded_without_pinning_again(
    tmp_path, monkeypatch, capsys
) -> None:
    # What a run stopped between a tab's 201 and its journal entry leaves: the tab in the
    # chat, not in the state. Before: "No changes", the state never learnt the tab (so it was
    # neither repaired if unpinned nor unpinned when it left the manifest).
    scenario = Scenario(tmp_path, monkeypatch)
    with scenario.server() as server:
        assert scenario.apply() == 0
        store = local_store(str(scenario.state))
        state = store.read()
        ws = state.workspaces["incident-02"]
        runbook = next(t for t in ws.tabs if t.name == "Runbook")
        state.put_workspace("incident-02", dataclasses.replace(ws, tabs=(ws.tabs[0],)))
        store.write(state)
        capsys.readouterr()
        assert scenario.plan() == 2
        out = capsys.readouterr().out
        assert "incident-02: apps and tabs recorded in the state" in out
        assert "tab 'Runbook' found pinned in the chat: recorded in the state" in out
        assert "Plan: 0 to create, 0 to update, 0 to delete" in out  # only the state changes
        posts = server.tenant.counters.by_route["POST /chats/{chat-id}/tabs"]
        assert scenario.apply() == 0
        assert server.tenant.counters.by_route["POST /chats/{chat-id}/tabs"] == posts
        assert runbook in local_store(str(scenario.state)).read().workspaces["incident-02"].tabs
        assert check(server, scenario.state) == []
        capsys.readouterr()
        assert scenario.plan() == 0


@pytest.mark.parametrize("when", [BEFORE, AFTER])
def test_a_run_stopped_while_changing_apps_and_tabs_loses_and_doubles_nothing(
    tmp_path, monkeypatch, capsys, when: str
) -> None:
    # What an earlier run made is changed: an app uninstalled, a tab PATCHed, one unpinned,
    # one pinned; stopped at every point, then rerun.
    covered, failures, labels = sweep(
        tmp_path, monkeypatch, capsys, kind=STOP, when=when, updated=True
    )
    print(f"stop {when} (update): {len(covered)} crash points covered")
    assert not failures, failures
    methods = Counter(labels)
    assert methods["DELETE /chats/{}/installedApps"] == methods["PATCH /chats/{}/tabs"] == CHATS
    assert methods["DELETE /chats/{}/tabs"] == methods["POST /chats/{}/tabs"] == CHATS
