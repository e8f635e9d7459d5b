"""Benchmark: planning 10,000 chats, and 100,000 chats within a memory bound.

Prints, for a generated manifest of N chats (half group chats of 3-6 members, half oneOnOne):

- the baseline: a bare ``yaml.load(f, Loader=yaml.CSafeLoader)`` of the manifest;
- plan (a) against no state and (b) against a state holding every chat, without refresh:
  manifest loading (``provisioner.manifest.load_desired``) + state read + ``make_plan``, as a
  ratio to the baseline measured in the same run (target: <= 1.5x for both);
- the state store's own costs on that state: read, first write (everything encoded) and a
  write after one changed chat (what the apply executor pays after every change);
- for 100,000 chats, in a child process: the same plan (b) and its peak RSS (target < 1.5 GB).

Usage: python benchmarks/bench_plan.py [--chats 10000] [--big 100000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from provisioner.models import Chat, DesiredState, Member, one_on_one_key
from provisioner.plan import Action, Plan
from provisioner.planner import make_plan
from provisioner.state import ChatRecord, LocalStateStore, MemberRecord

try:  # the manifest loader (issue 3); without it the benchmark times planner + state only
    from provisioner.manifest import load_desired
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


def best(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def plan_once(manifest: Path, state_path: Path) -> Plan:
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

        t_yaml, _ = best(baseline, repeat)
        t_load, desired = best(lambda: load(manifest), repeat)
        t_empty, plan_a = best(lambda: plan_once(manifest, empty_state), repeat)
        write_full_state(full_state, plan_a)
        t_full, plan_b = best(lambda: plan_once(manifest, full_state), repeat)
        assert plan_a.summary["create"] == chats and not plan_b.has_changes

        # Planner + state alone (manifest already loaded).
        t_core_a, _ = best(lambda: make_plan(desired, LocalStateStore(empty_state).read()), repeat)
        t_core_b, _ = best(lambda: make_plan(desired, LocalStateStore(full_state).read()), repeat)

        # State store costs on the full state.
        store = LocalStateStore(full_state)
        t_read, state = best(store.read, repeat)
        start = time.perf_counter()
        store.write(state)  # cold: every chat encoded once
        t_write_cold = time.perf_counter() - start
        key = next(iter(state.chats))
        warm = []
        for n in range(20):
            rec = state.chats[key]
            state.put_chat(key, ChatRecord(rec.chat_id, rec.chat_type, rec.members, f"T{n}"))
            start = time.perf_counter()
            store.write(state)
            warm.append(time.perf_counter() - start)
        warm.sort()
        return {
            "chats": chats,
            "loader": "load_desired" if load_desired is not None else "stand-in (no validation)",
            "yaml_s": t_yaml,
            "load_s": t_load,
            "plan_empty_s": t_empty,
            "plan_full_s": t_full,
            "core_empty_s": t_core_a,
            "core_full_s": t_core_b,
            "state_bytes": full_state.stat().st_size,
            "state_read_s": t_read,
            "state_write_cold_s": t_write_cold,
            "state_write_warm_median_s": warm[len(warm) // 2],
            "state_write_warm_max_s": warm[-1],
        }


def child_big(chats: int) -> None:
    """Runs in a child process so its peak RSS is its own."""
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        manifest = d / "chats.yaml"
        write_manifest(manifest, chats)
        full_state = d / "full.json"
        plan_a = plan_once(manifest, d / "none.json")
        write_full_state(full_state, plan_a)
        del plan_a
        gc.collect()
        start = time.perf_counter()
        plan_b = plan_once(manifest, full_state)
        elapsed = time.perf_counter() - start
        assert not plan_b.has_changes
        peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
        print(json.dumps({"chats": chats, "plan_full_s": elapsed, "peak_rss_mib": peak_kib / 1024}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chats", type=int, default=10_000)
    parser.add_argument("--big", type=int, default=100_000, help="0 to skip")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child-big", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_big:
        child_big(args.child_big)
        return

    r = main_bench(args.chats, args.repeat)
    base = r["yaml_s"]
    print(f"plan benchmark: {r['chats']:,} chats; manifest loader: {r['loader']}")
    print(f"  baseline yaml.load(CSafeLoader)        {base * 1000:9.1f} ms   1.00x")
    for label, key in [
        ("manifest loading alone", "load_s"),
        ("(a) plan, no state", "plan_empty_s"),
        ("(b) plan, state holds all", "plan_full_s"),
        ("    planner+state only, (a)", "core_empty_s"),
        ("    planner+state only, (b)", "core_full_s"),
    ]:
        print(f"  {label:<38} {r[key] * 1000:9.1f} ms  {r[key] / base:5.2f}x")
    print(f"  targets: (a) and (b) <= 1.50x")
    print(f"state store, {r['chats']:,} chats, {r['state_bytes'] / 1e6:.1f} MB file:")
    print(f"  read                                   {r['state_read_s'] * 1000:9.1f} ms")
    print(f"  write, first (encode everything)       {r['state_write_cold_s'] * 1000:9.1f} ms")
    print(
        f"  write after one change (median / max)  {r['state_write_warm_median_s'] * 1000:9.1f}"
        f" ms / {r['state_write_warm_max_s'] * 1000:.1f} ms  (incl. fsync of file + dir)"
    )
    if args.big:
        out = subprocess.run(
            [sys.executable, __file__, "--child-big", str(args.big)],
            check=True,
            capture_output=True,
            text=True,
            env={**os.environ},
        ).stdout
        big = json.loads(out)
        verdict = "ok" if big["peak_rss_mib"] < 1536 else "OVER"
        print(
            f"{big['chats']:,} chats: plan (b) {big['plan_full_s']:.1f} s, peak RSS "
            f"{big['peak_rss_mib']:,.0f} MiB (target < 1,536 MiB: {verdict})"
        )


if __name__ == "__main__":
    main()
