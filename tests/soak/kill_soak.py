"""Kill -9 `provision apply` at random moments against a faulty emulator; count what survives.

Issue 6's proof: ``provision apply`` runs as a subprocess against an emulator started here
(in-process, tenant in a data file) that answers ~10 % of group creations ambiguously (504 or a
dropped connection *after* making the chat) and ~5 % of all requests with 503. The run is
SIGKILLed at random moments several times, then rerun until it finishes. From the emulator's
side, every desired chat must exist exactly once with its exact members and topic, no group
chat may be duplicated, and ``provision plan --detailed-exitcode`` must find nothing to do.

``tests/apply/test_apply_kill.py`` runs a few seeds of this in the default test run; run it
longer by
hand::

    python tests/soak/kill_soak.py --seeds 20 --kills 6 --groups 60 --pairs 40

``--clock-offset -600`` sets Graph's (the emulator's) clock 10 minutes behind this host's, as a
host clock 10 minutes ahead would be (issue 20): matching must not depend on the two agreeing.

``--workspace 10`` uses the first 10 chats of examples/incident-response/incidents.yaml
instead (issue 24): each with two apps installed and two tabs pinned, the emulator answering
~10 % of installs and tab POSTs ambiguously; it then also counts, per chat, apps installed
twice, tabs pinned twice, apps or tabs missing, and those the state does not record (with the
ids Graph has): all must be 0.

``--base-chats 10000`` starts every seed from a state that already manages that many chats
(in the manifest too, so the next plan must leave them alone): the changes are journaled on top
of a big state (issue 16), and none of them may be lost either. Runs then use ``--no-refresh``
(refreshing 10,000 chats from the emulator on every rerun would only measure the refresh).

It prints, per seed and in total: kill cycles, runs, ambiguous faults injected, duplicates
(must be 0), missing chats (must be 0), and the extra requests reconciliation cost per
recovered intent. Exit status 1 if any seed lost or duplicated a chat.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from provisioner.emulator import EmulatorServer
from provisioner.states.records import ChatRecord, MemberRecord, State
from provisioner.states.store import local_store

if __package__ in (None, ""):  # run as a script: tests/ on the path, as under pytest
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from soak import kill_workspace as ws

FAULTS = (
    "504=0.06,method=POST,path=/chats,chat-type=group",
    "drop=0.04,method=POST,path=/chats,chat-type=group",
    "503=0.05",
)
LOOKUP_ROUTES = ("GET /users/{user-id}/chats", "GET /users/{user-id}")


@dataclass
class Report:
    seed: int
    kills: int = 0
    runs: int = 0
    ambiguous_faults: int = 0
    faults: dict[str, int] = field(default_factory=dict)
    duplicates: int = 0
    missing: int = 0
    wrong: int = 0  # chats in state that do not have the desired members/topic
    # --workspace (issue 24): apps installed / tabs pinned more than once, declared ones
    # missing, and ones the state does not record with the id Graph has.
    app_duplicates: int = 0
    tab_duplicates: int = 0
    workspace_missing: int = 0
    workspace_unrecorded: int = 0
    extra_chats: int = 0
    plan_exit: int = -1
    lookups: int = 0  # reported by the runs that finished (killed runs report nothing)
    lookup_requests: int = 0
    server_lookup_requests: int = 0  # counted by the emulator, all runs
    recovered: int = 0  # intents found in state at the start of a run, plus ambiguous answers
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (
            self.duplicates == 0
            and self.missing == 0
            and self.wrong == 0
            and self.extra_chats == 0
            and self.app_duplicates == self.tab_duplicates == 0
            and self.workspace_missing == self.workspace_unrecorded == 0
            and self.plan_exit == 0
            and not self.errors
        )


def write_manifest(path: Path, rng: random.Random, groups: int, pairs: int) -> list[dict]:
    seed_tag = rng.randrange(10**6)
    # Two in three users by object id, the others by UPN (which a lookup resolves first).
    users = [
        str(uuid.UUID(int=rng.getrandbits(128))) if n % 3 else f"user{n}.{seed_tag}@contoso.com"
        for n in range(max(8, groups // 2))
    ]
    chats: list[dict] = []
    lines = ["version: 1", "chats:"]
    for n in range(groups):
        members = rng.sample(users, rng.randint(2, 5))
        topic = f"Soak {n}"
        chats.append({"type": "group", "topic": topic, "members": members})
        lines += [f"  - key: group-{n:03d}", "    chatType: group", f"    topic: {topic}"]
        lines += ["    members:", *(f"      - user: {u}" for u in members)]
    seen: set[frozenset[str]] = set()
    while len(seen) < pairs:
        pair = frozenset(rng.sample(users, 2))
        if pair in seen:
            continue
        seen.add(pair)
        a, b = sorted(pair)
        chats.append({"type": "oneOnOne", "topic": None, "members": [a, b]})
        lines += [
            "  - chatType: oneOnOne",
            "    members:",
            f"      - user: {a}",
            f"      - user: {b}",
        ]
    path.write_text("\n".join(lines) + "\n")
    return chats


def kill_cycles(
    workdir: Path,
    *,
    seed: int,
    kills: int = 3,
    groups: int = 30,
    pairs: int = 20,
    max_rps: float = 20.0,
    kill_window: tuple[float, float] = (0.6, 2.2),
    max_runs: int = 12,
    base_chats: int = 0,
    list_delay: tuple[float, float] = (1.0, 4.0),
    window: float = 60.0,
    clock_offset: float = 0.0,
    workspace: int = 0,
) -> Report:
    """One seed: kill ``kills`` runs at random moments, rerun to completion, check.
    ``clock_offset``: seconds Graph's (the emulator's) clock is off this host's (issue 20:
    -600 is a host clock 10 minutes ahead of Graph). ``workspace``: that many chats of the
    incident example (apps and tabs) instead of ``groups`` and ``pairs``."""
    rng = random.Random(seed)
    report = Report(seed=seed)
    started = time.monotonic()
    if workspace:
        chats = ws.write_incidents(workdir / "chats.yaml", workspace)
    else:
        chats = write_manifest(workdir / "chats.yaml", rng, groups, pairs)
    state_path = workdir / "state.json"
    base = write_base(workdir, state_path, base_chats) if base_chats else {}
    with EmulatorServer(
        data_path=workdir / "emulator.json",
        faults=list(FAULTS + (ws.WORKSPACE_FAULTS if workspace else ())),
        seed=seed,
        limits="documented",
        invent_users=True,  # the manifest names made-up users
        list_delay_s=list_delay,  # Graph lists new chats late (issue 14)
        clock_offset_s=clock_offset,
    ) as server:
        env = dict(os.environ, PROVISION_GRAPH_URL=server.url, PROVISION_ACCESS_TOKEN="soak")
        env["PROVISION_CONSISTENCY_WINDOW"] = str(window)
        env.pop("PROVISION_STATE", None)
        manifests = ["chats.yaml", "base.yaml"] if base_chats else ["chats.yaml"]
        cmd = [sys.executable, "-m", "provisioner", "apply", *manifests, "--auto-approve"]
        cmd += ["--state", str(state_path), "--format", "json", "--quiet"]
        cmd += ["--max-rps", str(max_rps)]
        refresh = ["--no-refresh"] if base_chats else []
        cmd += refresh
        # Kill during the changes, not while the interpreter starts and the manifests (and a
        # big state) load: the window starts after what a plan of the same files takes now,
        # so a loaded machine does not turn every kill into one before the first change.
        t0 = time.monotonic()
        _plan(workdir, env, manifests, state_path, server.url, refresh)
        load = time.monotonic() - t0
        kill_window = (kill_window[0] + load, kill_window[1] + load)
        finished = False
        while report.runs < max_runs and not finished:
            report.recovered += _pending_intents(state_path)
            proc = subprocess.Popen(
                cmd, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
            report.runs += 1
            try:
                timeout = rng.uniform(*kill_window) if report.kills < kills else 120.0
                out, err = proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
                proc.communicate()
                report.kills += 1
                continue
            finished = _finished_run(proc.returncode, out, err, report)
        if not finished:
            report.errors.append(f"no run finished in {max_runs} runs")
        counters = server.tenant.counters
        report.faults = dict(counters.faults)
        report.ambiguous_faults = counters.faults["504"] + counters.faults["drop"]
        report.server_lookup_requests = sum(counters.by_route[r] for r in LOOKUP_ROUTES)
        _check_tenant(server, chats, state_path, report)
        if workspace:
            ws.check_workspaces(server, chats, state_path, report)
        kept = local_store(str(state_path)).read().chats
        report.missing += sum(1 for key, record in base.items() if kept.get(key) != record)
        plan = _plan(workdir, env, manifests, state_path, server.url, refresh)
    report.plan_exit = plan.returncode
    if plan.returncode != 0:
        report.errors.append(f"plan --detailed-exitcode exited {plan.returncode}: {plan.stdout}")
    report.seconds = time.monotonic() - started
    return report


def _plan(
    workdir: Path,
    env: dict[str, str],
    manifests: list[str],
    state_path: Path,
    url: str,
    refresh: list[str],
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "provisioner", "plan", *manifests, "--state", str(state_path),
         "--detailed-exitcode", "--graph-url", url, *refresh],
        cwd=workdir, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip


def write_base(workdir: Path, state_path: Path, n: int) -> dict[str, ChatRecord]:
    """``n`` group chats already managed: in ``base.yaml`` and in the state (not in the
    emulator: with ``--no-refresh`` nothing reads them from Graph)."""
    rng = random.Random(n)
    users = [str(uuid.UUID(int=rng.getrandbits(128))) for _ in range(50)]
    state = State()
    lines = ["version: 1", "chats:"]
    for i in range(n):
        members = sorted(rng.sample(users, 3))
        key = f"base-{i:06d}"
        lines += [f"  - key: {key}", "    chatType: group", f"    topic: Base {i}", "    members:"]
        lines += [f"      - user: {u}" for u in members]
        records = tuple(MemberRecord(u, "owner", object_id=u) for u in members)
        state.put_chat(key, ChatRecord(f"19:base{i}@thread.v2", "group", records, f"Base {i}"))
    (workdir / "base.yaml").write_text("\n".join(lines) + "\n")
    local_store(str(state_path)).write(state)
    return dict(state.chats)


def _pending_intents(state_path: Path) -> int:
    # What the next run starts from: the state and any journal a killed run left.
    try:
        return len(local_store(str(state_path)).read().intents)
    except Exception:  # an unreadable state is reported by the run itself
        return 0


def _finished_run(code: int, out: bytes, err: bytes, report: Report) -> bool:
    try:
        doc = json.loads(out)
    except ValueError:
        report.errors.append(f"run exited {code} without a JSON result: {err.decode()[-500:]}")
        return True
    stats = doc["stats"]["reconciliation"]
    report.lookups += stats["lookups"]
    report.lookup_requests += stats["requests"]
    # A run that failed some chat (e.g. its retries ran out) is simply run again.
    return code == 0


def _check_tenant(
    server: EmulatorServer, chats: list[dict], state_path: Path, report: Report
) -> None:
    tenant = server.tenant
    report.duplicates = sum(len(g) - 1 for g in tenant.duplicate_group_chats())
    state = local_store(str(state_path)).read()
    recorded = {rec.chat_id for rec in state.chats.values()}
    for chat in chats:
        found = tenant.find_chats(
            chat_type=chat["type"], topic=chat["topic"], members=chat["members"]
        )
        if not found:
            report.missing += 1
        elif len(found) > 1:
            report.duplicates += len(found) - 1
        elif found[0].id not in recorded:
            report.wrong += 1
    live = tenant.chats(include_deleted=False)
    report.extra_chats = max(0, len(live) - len(chats))
    if state.intents:
        report.errors.append(f"intents left in state: {sorted(state.intents)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--first-seed", type=int, default=1)
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--groups", type=int, default=40)
    parser.add_argument("--pairs", type=int, default=30)
    parser.add_argument("--max-rps", type=float, default=20.0)
    parser.add_argument("--base-chats", type=int, default=0)
    parser.add_argument(
        "--list-delay", default="1-4", help="the emulator's listing lag, LO-HI seconds"
    )
    parser.add_argument(
        "--window", type=float, default=60.0, help="apply's --consistency-window, seconds"
    )
    parser.add_argument(
        "--clock-offset", type=float, default=0.0,
        help="seconds Graph's clock is off this host's (-600: the host 10 minutes ahead)",
    )  # fmt: skip
    parser.add_argument(
        "--kill-window", default="0.6-2.2",
        help="when a run is killed, LO-HI seconds after it starts changing things",
    )  # fmt: skip
    parser.add_argument(
        "--workspace", type=int, default=0, metavar="N",
        help="the first N (up to 10) chats of the incident example, with apps and tabs "
        "(replaces --groups and --pairs)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    lo, _, hi = args.list_delay.partition("-")
    lag = (float(lo), float(hi or lo))
    k_lo, _, k_hi = args.kill_window.partition("-")
    window = (float(k_lo), float(k_hi or k_lo))
    reports = []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        with tempfile.TemporaryDirectory(prefix="provision-kill-") as tmp:
            r = kill_cycles(
                Path(tmp), seed=seed, kills=args.kills, groups=args.groups, pairs=args.pairs,
                max_rps=args.max_rps, list_delay=lag, window=args.window,
                base_chats=args.base_chats, clock_offset=args.clock_offset,
                workspace=args.workspace, kill_window=window,
            )  # fmt: skip
        reports.append(r)
        per = f"{r.lookup_requests / r.lookups:.2f}" if r.lookups else "-"
        print(
            f"seed {seed}: kills {r.kills}, runs {r.runs}, ambiguous faults {r.ambiguous_faults}, "
            f"duplicates {r.duplicates}, missing {r.missing}, wrong {r.wrong}, "
            f"extra {r.extra_chats}, plan exit {r.plan_exit}, recovered intents {r.recovered}, "
            f"{ws.workspace_figures(r) if args.workspace else ''}"
            f"lookups {r.lookups} costing {r.lookup_requests} requests ({per}/lookup), "
            f"{r.seconds:.1f}s{'' if r.ok else '  FAILED: ' + '; '.join(r.errors)}",
            flush=True,
        )
    lookups = sum(r.lookups for r in reports)
    requests = sum(r.lookup_requests for r in reports)
    print(
        f"total: {len(reports)} seeds, {sum(r.kills for r in reports)} kill cycles, "
        f"{sum(r.runs for r in reports)} runs, "
        f"{sum(r.ambiguous_faults for r in reports)} ambiguous faults injected, "
        f"duplicates {sum(r.duplicates for r in reports)} (must be 0), "
        f"missing {sum(r.missing for r in reports)} (must be 0), "
        + (
            f"apps installed twice {sum(r.app_duplicates for r in reports)}, "
            f"tabs doubled {sum(r.tab_duplicates for r in reports)}, "
            f"apps/tabs missing {sum(r.workspace_missing for r in reports)}, "
            f"unrecorded {sum(r.workspace_unrecorded for r in reports)} (all must be 0), "
            if args.workspace
            else ""
        )
        + f"{lookups} lookups in finished runs costing {requests} extra requests "
        f"({requests / lookups if lookups else 0:.2f} per recovered intent); "
        f"emulator-side lookup requests, all runs: "
        f"{sum(r.server_lookup_requests for r in reports)}"
    )
    return 0 if all(r.ok for r in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
