"""Every crash point of an apply, deterministically (issue 21; the random kill soaks are in
``test_apply_kill.py``, marked slow).

A state already manages two chats; the manifest changes one's topic and members and adds two
group chats (one with a UPN member) and a one-on-one chat. For each crash point N of that run
(every durable write and every Graph request, see ``tests/fault_points.py``), and each of
stop/fail before/after the operation, the run is made again with the Nth point injected, then
rerun without injection; the emulator must then hold every desired chat exactly once, with the
state naming it (no duplicate, nothing lost), no intent left, and a plan with nothing to do.
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from fault_points import AFTER, BEFORE, FAIL, STOP, Injector, Killed, injected

from provisioner.cli.main import main
from provisioner.emulator import EmulatorServer
from provisioner.states.store import local_store

USERS = [str(uuid.UUID(int=n + 1)) for n in range(6)]
UPN = "upn.member@contoso.com"


def _group(key: str, topic: str, members: list[str]) -> list[str]:
    lines = [f"  - key: {key}", "    chatType: group", f"    topic: {topic}", "    members:"]
    return lines + [f"      - user: {m}" for m in members]


def _pair(a: str, b: str) -> list[str]:
    return ["  - chatType: oneOnOne", "    members:", f"      - user: {a}", f"      - user: {b}"]


BEFORE_CHATS = [
    ("group", "Kept", USERS[:3]),
    ("group", "Renamed", USERS[1:4]),
]
AFTER_CHATS = [
    ("group", "Kept", USERS[:3]),
    # Only the topic: a member change too would wait out the per-chat pacing (1 s).
    ("group", "Renamed later", USERS[1:4]),
    ("group", "New one", USERS[2:5]),
    ("group", "New with UPN", [USERS[0], USERS[5], UPN]),
    ("oneOnOne", None, USERS[:2]),
]


def _manifest(path: Path, chats: Sequence[tuple[str, str | None, list[str]]]) -> None:
    lines = ["version: 1", "chats:"]
    for n, (chat_type, topic, members) in enumerate(chats):
        if chat_type == "group":
            lines += _group(f"g{n}", str(topic), members)
        else:
            lines += _pair(*members)
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture(autouse=True)
def _quiet_killed_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    # A worker thread "killed" at a crash point just ends, as it would with the process.
    previous = threading.excepthook

    def hook(args: threading.ExceptHookArgs) -> None:
        if not isinstance(args.exc_value, Killed):
            previous(args)

    monkeypatch.setattr(threading, "excepthook", hook)


class Scenario:
    """One fresh emulator and state with the two chats, per injected run."""

    def __init__(self, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.workdir = workdir
        self.monkeypatch = monkeypatch
        self.state = workdir / "state.json"
        _manifest(workdir / "before.yaml", BEFORE_CHATS)
        _manifest(workdir / "after.yaml", AFTER_CHATS)

    @contextlib.contextmanager
    def server(self) -> Iterator[EmulatorServer]:
        with EmulatorServer(limits="off", invent_users=True, list_delay_s=0.0) as server:
            self.monkeypatch.setenv("PROVISION_GRAPH_URL", server.url)
            self.monkeypatch.setenv("PROVISION_ACCESS_TOKEN", "t")
            # Instant lists here: the lookups of an unknown creation find it at once, and one
            # that was never made is created again after this short window.
            self.monkeypatch.setenv("PROVISION_CONSISTENCY_WINDOW", "0.01")
            self.monkeypatch.delenv("PROVISION_STATE", raising=False)
            self.monkeypatch.chdir(self.workdir)
            yield server

    def apply(self, manifest: str, *more: str) -> int:
        args = ["apply", manifest, "--auto-approve", "--state", str(self.state), *more]
        return main([*args, "--concurrency", "1", "--quiet"])

    def plan(self) -> int:
        return main(["plan", "after.yaml", "--state", str(self.state), "--detailed-exitcode"])


def _check(server: EmulatorServer, state_path: Path, before: dict[str, str]) -> list[str]:
    """What is wrong with the tenant and the state after the rerun (empty: nothing)."""
    tenant = server.tenant
    problems = [f"duplicate {g[0].topic}" for g in tenant.duplicate_group_chats()]
    state = local_store(str(state_path)).read()
    recorded = {rec.chat_id for rec in state.chats.values()}
    for chat_type, topic, members in AFTER_CHATS:
        found = tenant.find_chats(chat_type=chat_type, topic=topic, members=members)
        if len(found) != 1:
            problems.append(f"{topic or members}: {len(found)} chats")
        elif found[0].id not in recorded:
            problems.append(f"{topic or members}: not in the state")
    if len(tenant.chats(include_deleted=False)) != len(AFTER_CHATS):
        problems.append(f"{len(tenant.chats(include_deleted=False))} chats in the tenant")
    for key, chat_id in before.items():  # records the run started from are never lost
        if key not in state.chats or state.chats[key].chat_id != chat_id:
            problems.append(f"record {key} lost")
    if state.intents:
        problems.append(f"intents left: {sorted(state.intents)}")
    return problems


def _one(scenario: Scenario, inj: Injector, capsys: pytest.CaptureFixture[str]) -> list[str]:
    """The scenario with ``inj``: the faulted run, one clean rerun, the checks."""
    for leftover in scenario.workdir.glob("state.json*"):
        leftover.unlink()
    with scenario.server() as server:
        assert scenario.apply("before.yaml") == 0, capsys.readouterr().err
        before = {k: r.chat_id for k, r in local_store(str(scenario.state)).read().chats.items()}
        with pytest.MonkeyPatch.context() as mp, injected(mp, inj):
            try:
                # No refresh (here and in the rerun): its read of a chat would hold the
                # topic change back by the per-chat pacing (1 s); the plan refreshes.
                code = scenario.apply("after.yaml", "--no-refresh")
            except Killed:
                code = -9
        err = capsys.readouterr().err
        problems = []
        if inj.kind == FAIL and code not in (0, 1):
            problems.append(f"exit {code}")
        if "Traceback" in err or "internal error" in err:
            problems.append(f"not one line: {err[-300:]}")
        rerun = scenario.apply("after.yaml", "--no-refresh")
        err = capsys.readouterr().err
        if rerun != 0:
            return [*problems, f"rerun exit {rerun}: {err[-300:]}"]
        problems += _check(server, scenario.state, before)
        if scenario.plan() != 0:
            problems.append("plan after the rerun has changes")
        capsys.readouterr()
    return problems


@pytest.mark.parametrize("kind", [STOP, FAIL])
@pytest.mark.parametrize("when", [BEFORE, AFTER])
def test_every_crash_point_leaves_no_duplicate_and_loses_nothing(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    kind: str,
    when: str,
) -> None:
    scenario = Scenario(tmp_path, monkeypatch)
    failures: dict[str, list[str]] = {}
    covered: list[str] = []
    n = 0
    while True:
        n += 1
        inj = Injector(target=n, kind=kind, when=when)
        problems = _one(scenario, inj, capsys)
        if inj.fired is None:  # the run had fewer than n points: all were covered
            assert not problems, problems
            break
        covered.append(inj.fired)
        if problems:
            failures[inj.fired] = problems
        assert n < 200, "the run never completes"
    print(f"{kind} {when}: {len(covered)} crash points covered")
    assert not failures, failures
    # Each step of a group creation is a point: its intent's append (stopped after it: before
    # the POST), the POST (after it: the chat made, the answer lost), its answer's append
    # (before it: answered, not recorded; after it: done).
    labels = inj.labels
    posts = [i for i, label in enumerate(labels) if label == "POST /chats"]
    assert len(posts) == 3, labels  # two group chats and the one-on-one
    group_posts = [i for i in posts if labels[i - 1] == labels[i + 1] == "journal append"]
    assert len(group_posts) >= 2, labels
    assert {"lock", "state write", "backup", "journal reset", "journal remove"} <= set(labels)
