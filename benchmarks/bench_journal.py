"""Apply at Graph's rate whatever the state's size: the journal's figures (issue 16).

    python benchmarks/bench_journal.py [--new 300] [--sizes 10000,100000]
        [--azurite-sizes 10000] [--repeat 2] [--json FILE]

Prints, all measured in this run:

1. ``provision apply --no-refresh --auto-approve`` of ``--new`` new group chats against the
   emulator enforcing Graph's documented write limit (30/s, includes/throttling-teams.md) with
   400 ms latency on every request, on top of a state that already manages 0, 10,000 and
   100,000 chats (in the manifests too, so only the new chats change). The apply's own time is
   its wall time minus that of ``provision plan --no-refresh`` on the same files and state
   (reading the manifests and the state grows with them, whatever the journal does; it is
   reported apart). Rate = new chats / that time, as a ratio to the same run from an empty
   state (target >= 0.95), and the tool's CPU per new chat beyond the plan's (it should not
   grow with the state). Best of ``--repeat``.
2. The same with the state in Azure Blob Storage (Azurite on loopback): rate as a ratio to the
   local file's at the same size (target >= 0.9).
3. Replaying a journal of 10,000 records (what a run killed after 10,000 changes leaves), and
   one compaction (the full write of a 100,000-chat state, marker and backup included).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from lib.azurite_support import Azurite, find_azurite

from provisioner.emulator import EmulatorServer
from provisioner.states.journal import encode, header, parse, replay
from provisioner.states.journal_writer import JournalWriter
from provisioner.states.records import ChatRecord, MemberRecord, State
from provisioner.states.store import local_store, open_store

try:
    from _figures import Figure, write_figures  # run as a script: benchmarks/ is on sys.path
except ImportError:  # pragma: no cover
    from benchmarks._figures import Figure, write_figures

FIGURES: list[Figure] = []
LATENCY_MS = (400.0, 400.0)


@dataclass
class Run:
    wall: float  # seconds, whole command
    cpu: float  # seconds of the command's CPU (user + system)
    duration: float = 0.0  # apply's own duration_s (first request to last answer)


def guid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128)))


def write_files(directory: Path, size: int, new: int, seed: int = 1) -> State:
    """``base.yaml`` (``size`` managed group chats), ``new.yaml`` (``new`` group chats) and
    the state managing the base chats, returned (not written)."""
    rng = random.Random(seed)
    users = [guid(rng) for _ in range(200)]
    state = State()
    for name, count, prefix in (("base.yaml", size, "base"), ("new.yaml", new, "new")):
        lines = ["version: 1", "chats:"]
        for i in range(count):
            members = sorted(rng.sample(users, 3))
            key, topic = f"{prefix}-{i:06d}", f"{prefix.title()} {i}"
            lines += [f"  - key: {key}", "    chatType: group", f"    topic: {topic}"]
            lines += ["    members:", *(f"      - user: {u}" for u in members)]
            if prefix == "base":
                records = tuple(MemberRecord(u, "owner", object_id=u) for u in members)
                state.put_chat(
                    key, ChatRecord(f"19:{prefix}{i}@thread.v2", "group", records, topic)
                )
        if not count:
            lines[-1] = "chats: []"
        (directory / name).write_text("\n".join(lines) + "\n")
    return state


def timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[Run, str]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode not in (0, 2):
        raise SystemExit(f"{' '.join(cmd[2:4])} failed ({proc.returncode}): {proc.stderr[-800:]}")
    return Run(wall, cpu), proc.stdout


def _wall(run: Run) -> float:
    return run.wall


def write_state(spec: str, env: dict[str, str], state: State) -> None:
    if spec.startswith("azblob://"):
        from provisioner.states.azblob.store import open_azblob_store

        open_azblob_store(spec, env=env).write(state.copy())
    else:
        open_store(spec).write(state.copy())


def one_size(
    directory: Path, state: State, new: int, where: str, env: dict[str, str], repeat: int
) -> tuple[Run, Run]:
    """(plan, apply) at one size and store: the fastest plan and the fastest apply of
    ``repeat`` runs each (every apply with the state rewritten and a fresh emulator)."""
    files = ["base.yaml", "new.yaml"]
    best: tuple[Run, Run] | None = None
    for n in range(repeat):
        spec = where.replace("state.json", f"state-{n}.json")  # a fresh state each time
        write_state(spec, env, state)
        with EmulatorServer(
            limits=1.0,
            latency_ms=LATENCY_MS,
            seed=7,
            invent_users=True,  # 200 made-up users (a load test)
            list_delay_s=0,  # no ambiguous answers here: the listing lag is measured elsewhere
        ) as server:
            run_env = dict(env, PROVISION_GRAPH_URL=server.url, PROVISION_ACCESS_TOKEN="bench")
            cli = [sys.executable, "-m", "provisioner"]
            plan, _ = timed(
                [*cli, "plan", *files, "--state", spec, "--no-refresh"], directory, run_env
            )
            apply, out = timed(
                [*cli, "apply", *files, "--state", spec, "--no-refresh", "--auto-approve",
                 "--format", "json", "--quiet"],
                directory, run_env,
            )  # fmt: skip
        doc = json.loads(out)
        if doc["summary"]["created"] != new or doc["summary"]["failed"]:
            raise SystemExit(f"apply did not create the {new} chats: {doc['summary']}")
        apply.duration = float(doc["stats"]["duration_s"])
        if best is None:
            best = (plan, apply)
        else:
            best = (min(best[0], plan, key=_wall), min(best[1], apply, key=_wall))
    assert best is not None
    return best


def apply_section(args: argparse.Namespace, tmp: Path, azurite: Azurite | None) -> None:
    sizes = [0, *[int(s) for s in args.sizes.split(",") if s]]
    blob_sizes = {int(s) for s in args.azurite_sizes.split(",") if s} if azurite else set()
    print(
        f"1. apply of {args.new} new group chats, 30 writes/s, {LATENCY_MS[0]:.0f} ms latency, "
        "--no-refresh; apply's own time = apply wall - plan wall on the same files"
    )
    env = dict(os.environ)
    env.pop("PROVISION_STATE", None)
    empty: tuple[float, float] | None = None  # rate, CPU per chat from an empty state
    for size in sizes:
        directory = tmp / f"size-{size}"
        directory.mkdir()
        state = write_files(directory, size, args.new)
        stores = [("local", str(directory / "state.json"), env)]
        if azurite is not None and size in blob_sizes:
            spec = f"azblob://devstoreaccount1/{azurite.new_container()}/state.json"
            stores.append(("azblob", spec, dict(env, **azurite.env)))
        local_rate = 0.0
        for name, spec, store_env in stores:
            plan, apply = one_size(directory, state, args.new, spec, store_env, args.repeat)
            own = apply.wall - plan.wall
            rate, cpu = args.new / own, (apply.cpu - plan.cpu) / args.new * 1000
            print(
                f"   {size:>7,} chats, {name:6}: apply {apply.wall:6.2f} s, plan {plan.wall:5.2f} "
                f"s -> own {own:5.2f} s = {rate:4.1f} chats/s (executor {apply.duration:.2f} s), "
                f"CPU beyond plan {cpu:4.1f} ms/chat"
            )
            if name == "azblob":
                FIGURES.append(
                    Figure.compared(
                        f"apply rate, state in Azurite, {size:,} chats", rate, "chats/s",
                        local_rate, "the same with the local state file", min_ratio=0.9,
                    )
                )  # fmt: skip
                print(f"      azblob / local: {rate / local_rate:.2f} (target >= 0.9)")
                continue
            local_rate = rate
            if empty is None:
                empty = (rate, cpu)
                continue
            FIGURES.append(
                Figure.compared(
                    f"apply rate of {args.new} new chats on a {size:,}-chat state", rate,
                    "chats/s", empty[0], "the same from an empty state", min_ratio=0.95,
                )
            )  # fmt: skip
            FIGURES.append(
                Figure.compared(
                    f"apply CPU per new chat on a {size:,}-chat state", cpu, "ms", empty[1],
                    "the same from an empty state",
                )
            )  # fmt: skip
            print(f"      of the empty-state rate: {rate / empty[0]:.2f} (target >= 0.95)")


def journal_section(args: argparse.Namespace, tmp: Path) -> None:
    print(f"\n2. replay of a {args.records:,}-record journal; one compaction of {args.big:,}")
    rng = random.Random(3)
    users = [guid(rng) for _ in range(200)]
    base = State()
    raw = header(base.lineage, 0)
    for i in range(args.records):
        members = tuple(MemberRecord(u, "owner", object_id=u) for u in rng.sample(users, 3))
        record = ChatRecord(f"19:j{i}@thread.v2", "group", members, f"Journal {i}")
        raw += encode([("chat", f"j-{i:06d}", record)])
    timings = []
    for _ in range(3):
        state = State(lineage=base.lineage)
        start = time.perf_counter()
        applied = replay(state, parse(raw, "journal"), "journal", "state")
        timings.append(time.perf_counter() - start)
    assert applied == args.records and len(state.chats) == args.records
    replay_s = min(timings)
    print(
        f"   replay: {replay_s * 1000:7.1f} ms for {args.records:,} records "
        f"({len(raw) / 1e6:.2f} MB, {replay_s / args.records * 1e6:.1f} us per record)"
    )
    FIGURES.append(Figure(f"replay of a {args.records:,}-record journal", replay_s, "s"))
    big = tmp / "big"
    big.mkdir()
    path = str(big / "state.json")
    local_store(path).write(write_files(big, args.big, 0))
    store = local_store(path)
    state = store.read()  # a fresh read: the compaction encodes every chat (cold)
    writer = JournalWriter(store, state)
    writer.start()
    writer.update(lambda s: s.put_users({"bench@contoso.com": guid(rng)}))
    start = time.perf_counter()
    writer.close()  # marker, full write (with backup), journal removed
    compaction = time.perf_counter() - start
    size = os.path.getsize(path)
    print(
        f"   compaction of {args.big:,} chats: {compaction:6.2f} s ({size / 1e6:.1f} MB, "
        f"{compaction / args.big * 1e6:.1f} us per chat)"
    )
    FIGURES.append(Figure(f"one compaction of a {args.big:,}-chat state", compaction, "s"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--new", type=int, default=300)
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--azurite-sizes", default="10000", help="'' for none")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--big", type=int, default=100_000)
    parser.add_argument("--json", metavar="FILE", help="also write the figures here")
    args = parser.parse_args(argv)
    azurite = None
    if args.azurite_sizes:
        executable = find_azurite()
        if executable is None:
            print("Azurite is not installed: skipping the azblob rows", file=sys.stderr)
        else:
            azurite = Azurite(executable)
            azurite.start()
    try:
        with tempfile.TemporaryDirectory(prefix="bench-journal-") as tmp:
            apply_section(args, Path(tmp), azurite)
            journal_section(args, Path(tmp))
    finally:
        if azurite is not None:
            azurite.stop()
    write_figures(args.json, "journal", FIGURES)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
