"""Benchmark: planning 10,000 chats, and 100,000 chats within a memory bound.

Prints, for a generated manifest of N chats (half group chats of 3-6 members, half oneOnOne):

- the baseline: a bare ``yaml.load(f, Loader=yaml.CSafeLoader)`` of the manifest;
- plan (a) against no state and (b) against a state holding every chat, without refresh:
  manifest loading (``provisioner.manifest.load.load_desired``) + state read + ``make_plan``, as a
  ratio to the baseline measured in the same run (target: <= 1.5x for both);
- the state store's own costs on that state: read, first write (everything encoded) and a
  write after one changed chat (what the apply executor pays after every change);
- for 100,000 chats, in a child process: the same plan (b) and its peak RSS (target < 1.5 GB).

Usage: python benchmarks/bench_plan.py [--chats 10000] [--big 100000] [--repeat 3] [--json FILE]

For 100,000 chats the baseline is ``yaml.load`` of the same manifest in a fresh process too
(its time and peak RSS), so the memory figure has a same-run reference.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import resource
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from provisioner.manifest.gcpause import gc_paused
from provisioner.models import Chat, DesiredState, Member, one_on_one_key
from provisioner.plans.planner import make_plan
from provisioner.plans.types import Action, Plan
from provisioner.states.local import LocalStateStore
from provisioner.states.records import ChatRecord, MemberRecord, State
from provisioner.states.writer import StateWriter

try:
    from _figures import Figure, write_figures  # run as a script: benchmarks/ is on sys.path
except ImportError:  # pragma: no cover
    from benchmarks._figures import Figure, write_figures

try:  # the manifest loader (issue 3); without it the benchmark times planner + state only
    from provisioner.manifest.load import load_desired
except ImportError:  # pragma: no cover - depends on the branch
    load_desired = None


def write_manifest(path: Path, chats: int, seed: int = 1) -> None:
    rng = random.Random(seed)
    lines = ["version: 1", "chats:"]
    for i in range(chats):
        if i % 2:
            lines += ["  - chatType: oneOnOne", "    members:"]
            lines += [f"      - user: {uuid.UUID(int=rng.getrandbits(128), version=4)}"]
            lines += [f"      - user: user{i:06d}@contoso.com"]
        else:
            lines += [
                f"  - key: chat-{i:06d}",
                "    chatType: group",
                f"    topic: Project {i} review",
                "    members:",
            ]
            for j in range(rng.randint(3, 6)):
                lines.append(f"      - user: {uuid.UUID(int=rng.getrandbits(128), version=4)}")
                if j == 1:
                    lines.append("        role: guest")
    path.write_text("\n".join(lines) + "\n")


def desired_from_yaml(path: Path) -> DesiredState:
    """Stand-in for load_desired when it is not available: no validation, no positions."""
    with open(path, "rb") as f:
        data = yaml.load(f, Loader=yaml.CSafeLoader)
    chats = []
    for entry in data["chats"]:
        members = tuple(Member(m["user"], m.get("role", "owner")) for m in entry["members"])
        key = entry.get("key") or one_on_one_key(members[0].user, members[1].user)
        chats.append(Chat(key, entry["chatType"], members, entry.get("topic")))
    return DesiredState(chats=tuple(sorted(chats, key=lambda c: c.key)), digest="sha256:-")


def load(path: Path) -> DesiredState:
    if load_desired is not None:
        return load_desired([str(path)])
    return desired_from_yaml(path)


def fake_membership_id(rng: random.Random) -> str:
    # Graph membership ids are ~150-character base64 strings; use the real size so state
    # file sizes and write times are honest.
    return (
        "MCMj"
        + "".join(
            rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
            for _ in range(148)
        )
        + "=="
    )


def write_full_state(path: Path, plan: Plan) -> None:
    rng = random.Random(2)
    store = LocalStateStore(path)
    state = store.read()
    for change in plan.changes:
        if change.action is not Action.CREATE:
            continue
        members = tuple(
            MemberRecord(
                user=m.user,
                role=m.role,
                object_id=m.object_id,
                tenant_id=m.tenant_id,
                membership_id=fake_membership_id(rng),
            )
            for m in change.members
        )
        state.put_chat(
            change.key,
            ChatRecord(
                chat_id=f"19:{uuid.UUID(int=rng.getrandbits(128)).hex}@thread.v2",
                chat_type=change.chat_type,
                members=members,
                topic=change.topic,
                created_at="2024-05-01T10:00:00.123Z",
            ),
        )
    store.write(state)


@dataclass
class Timing:
    cpu: float  # CPU seconds of this process: what the ratios use
    wall: float  # wall seconds: includes whatever else the (shared) machine was doing


def best(fn: Callable[[], Any], repeat: int) -> tuple[Timing, Any]:
    """The fastest of ``repeat`` runs. Ratios use CPU time: on a shared machine wall time
    mostly measures the neighbours. Wall time is printed alongside."""
    cpus, walls, result = [], [], None
    for _ in range(repeat):
        result = None
        gc.unfreeze()  # undo gc_paused's freeze so that every run starts alike
        gc.collect()
        cpu, wall = time.process_time(), time.perf_counter()
        result = fn()
        cpus.append(time.process_time() - cpu)
        walls.append(time.perf_counter() - wall)
    return Timing(min(cpus), min(walls)), result


def plan_once(manifest: Path, state_path: Path) -> Plan:
    """What ``provision plan --no-refresh`` does, without rendering (operations.plan.run_plan)."""
    with gc_paused():
        desired = load(manifest)
        state = LocalStateStore(state_path).read()
        return make_plan(desired, state)


def main_bench(chats: int, repeat: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        manifest = d / "chats.yaml"
        write_manifest(manifest, chats)
        empty_state, full_state = d / "none.json", d / "full.json"

        def baseline() -> object:
            with open(manifest, "rb") as f:
                return yaml.load(f, Loader=yaml.CSafeLoader)

        def baseline_no_gc() -> object:
            with gc_paused():
                return baseline()

        t: dict[str, Timing] = {}
        t["yaml"], _ = best(baseline, repeat)
        t["yaml_nogc"], _ = best(baseline_no_gc, repeat)
        t["load"], desired = best(lambda: load(manifest), repeat)
        t["plan_a"], plan_a = best(lambda: plan_once(manifest, empty_state), repeat)
        write_full_state(full_state, plan_a)
        t["plan_b"], plan_b = best(lambda: plan_once(manifest, full_state), repeat)
        assert plan_a.summary["create"] == chats and not plan_b.has_changes

        # Planner + state alone (manifest already loaded), the way the CLI runs them.
        def core(path: Path) -> Plan:
            with gc_paused():
                return make_plan(desired, LocalStateStore(path).read())

        t["core_a"], _ = best(lambda: core(empty_state), repeat)
        t["core_b"], _ = best(lambda: core(full_state), repeat)

        # The state store on the full state (wall time: these are I/O).
        store = LocalStateStore(full_state)
        t["read"], state = best(store.read, repeat)
        start = time.perf_counter()
        store.write(state)  # cold: every chat encoded once
        write_cold = time.perf_counter() - start
        key = next(iter(state.chats))
        warm = []
        for n in range(20):
            rec = state.chats[key]
            state.put_chat(key, ChatRecord(rec.chat_id, rec.chat_type, rec.members, f"T{n}"))
            start = time.perf_counter()
            store.write(state)
            warm.append(time.perf_counter() - start)
        warm.sort()
        rates = {
            name: durable_changes_per_second(store, state, grouped)
            for name, grouped in (("one write per change", False), ("StateWriter", True))
        }
        return {
            "chats": chats,
            "loader": "load_desired" if load_desired is not None else "stand-in (no validation)",
            "t": t,
            "rates": rates,
            "state_bytes": full_state.stat().st_size,
            "write_cold_s": write_cold,
            "write_warm_median_s": warm[len(warm) // 2],
            "write_warm_max_s": warm[-1],
        }


GRAPH_LATENCY = 0.3  # seconds per Graph write, as seen from one worker
WORKERS = 20  # 20 workers x 1/0.3 s: ~67 changes/s offered, over Graph's documented ~30/s


def durable_changes_per_second(store: LocalStateStore, state: State, grouped: bool) -> float:
    """The executor's pattern: WORKERS threads each wait GRAPH_LATENCY for Graph, then record
    the change durably, either with one lock-protected full write per change or through
    StateWriter's group commit. Returns durable changes per second: it must not fall below
    Graph's ~30 writes/s, or state writing, not Graph, would set the pace of an apply."""
    lock = threading.Lock()
    writer = StateWriter(store, state)
    keys = sorted(state.chats)[: WORKERS * 10]

    def change(key: str, n: int) -> None:
        rec = state.chats[key]
        state.put_chat(key, ChatRecord(rec.chat_id, rec.chat_type, rec.members, f"W{n}"))

    def worker(part: list[str]) -> None:
        for n, key in enumerate(part):
            time.sleep(GRAPH_LATENCY)
            if grouped:
                writer.update(lambda s, key=key, n=n: change(key, n))
            else:
                with lock:
                    change(key, n)
                    store.write(state)

    threads = [threading.Thread(target=worker, args=(keys[i::WORKERS],)) for i in range(WORKERS)]
    start = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return len(keys) / (time.perf_counter() - start)


def child_prepare(directory: Path, chats: int) -> None:
    manifest = directory / "chats.yaml"
    write_manifest(manifest, chats)
    write_full_state(directory / "full.json", plan_once(manifest, directory / "none.json"))


def child_measure(directory: Path, state_name: str) -> None:
    """Plans in a fresh process, so the peak RSS is that of one ``provision plan``."""
    start = time.perf_counter()
    plan = plan_once(directory / "chats.yaml", directory / state_name)
    elapsed = time.perf_counter() - start
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(json.dumps({"s": elapsed, "mib": peak_kib / 1024, "changes": plan.has_changes}))


def child_yaml(directory: Path) -> None:
    """The baseline for the big run: yaml.load of the same manifest in a fresh process."""
    start = time.perf_counter()
    with open(directory / "chats.yaml", "rb") as f:
        yaml.load(f, Loader=yaml.CSafeLoader)
    elapsed = time.perf_counter() - start
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"s": elapsed, "mib": peak_kib / 1024}))


def big(chats: int) -> list[Figure]:
    def child(*args: str) -> str:
        cmd = [sys.executable, __file__, *args]
        return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout

    figures = []
    with tempfile.TemporaryDirectory() as tmp:
        child("--child", "prepare", tmp, str(chats))
        base = json.loads(child("--child", "yaml", tmp))
        print(
            f"{chats:,} chats, baseline yaml.load (CSafeLoader): {base['s']:.1f} s wall, peak "
            f"RSS {base['mib']:,.0f} MiB"
        )
        for label, name in (("(a) no state", "none.json"), ("(b) full state", "full.json")):
            r = json.loads(child("--child", "measure", tmp, name))
            verdict = "ok" if r["mib"] < 1536 else "OVER"
            print(
                f"{chats:,} chats, plan {label}: {r['s']:.1f} s wall, peak RSS "
                f"{r['mib']:,.0f} MiB (target < 1,536 MiB: {verdict})"
            )
            memory = Figure.compared(
                f"plan {chats:,} chats {label}: peak RSS", r["mib"], "MiB", base["mib"],
                "yaml.load of the manifest, fresh process",
            )  # fmt: skip
            memory.target, memory.ok = "value < 1536 MiB", r["mib"] < 1536
            figures.append(memory)
            figures.append(
                Figure.compared(
                    f"plan {chats:,} chats {label}: time (wall)",
                    r["s"],
                    "s",
                    base["s"],
                    "yaml.load of the manifest, fresh process",
                )
            )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chats", type=int, default=10_000)
    parser.add_argument("--big", type=int, default=100_000, help="0 to skip")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--json", metavar="FILE", help="also write the figures here")
    args = parser.parse_args()
    if args.child:
        if args.child[0] == "prepare":
            child_prepare(Path(args.child[1]), int(args.child[2]))
        elif args.child[0] == "yaml":
            child_yaml(Path(args.child[1]))
        else:
            child_measure(Path(args.child[1]), args.child[2])
        return

    r = main_bench(args.chats, args.repeat)
    t = r["t"]
    base = t["yaml"].cpu
    print(f"plan benchmark: {r['chats']:,} chats; manifest loader: {r['loader']}")
    print("  (CPU time, best of runs; the ratio is to the baseline; wall time in brackets)")
    for label, key in [
        ("baseline: yaml.load(CSafeLoader)", "yaml"),
        ("  the same with cyclic GC paused", "yaml_nogc"),
        ("manifest loading alone (load_desired)", "load"),
        ("(a) plan, no state", "plan_a"),
        ("(b) plan, state holds every chat", "plan_b"),
        ("  planner+state only, (a)", "core_a"),
        ("  planner+state only, (b)", "core_b"),
    ]:
        print(
            f"  {label:<36} {t[key].cpu * 1000:8.0f} ms  {t[key].cpu / base:5.2f}x"
            f"   [{t[key].wall * 1000:6.0f} ms wall]"
        )
    print("  targets: (a) and (b) <= 1.50x")
    print(f"state store, {r['chats']:,} chats, a {r['state_bytes'] / 1e6:.1f} MB file (wall time):")
    print(f"  read                                 {t['read'].wall * 1000:8.0f} ms")
    print(f"  first write (encodes every chat)     {r['write_cold_s'] * 1000:8.0f} ms")
    print(
        f"  write after one change, median/max   {r['write_warm_median_s'] * 1000:8.0f} ms /"
        f" {r['write_warm_max_s'] * 1000:.0f} ms (with fsync of file and directory)"
    )
    for name, rate in r["rates"].items():
        print(
            f"  {WORKERS} workers, {GRAPH_LATENCY * 1000:.0f} ms Graph latency, {name:<21}"
            f" {rate:5.1f} durable changes/s (offered {WORKERS / GRAPH_LATENCY:.0f}/s)"
        )
    n = f"{r['chats']:,} chats"
    figures = [
        Figure.compared(
            f"plan {n} {label} (CPU)",
            t[key].cpu,
            "s",
            t[base_key].cpu,
            base_name,
            max_ratio=1.5,
        )
        for base_key, base_name in (
            ("yaml", "yaml.load (CSafeLoader), CPU"),
            ("yaml_nogc", "yaml.load (CSafeLoader) with the cyclic GC paused, CPU"),
        )
        for label, key in (("(a) no state", "plan_a"), ("(b) full state", "plan_b"))
    ]
    if args.big:
        figures += big(args.big)
    write_figures(args.json, "plan", figures)


if __name__ == "__main__":
    main()
