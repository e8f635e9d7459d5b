"""Lock soak: two `provision apply` runs started together on one state; never both run.

Each round starts two applies of the same manifest at the same instant against one emulator
(Graph's documented limits, some latency), on one state file reached by two spellings: a
symlink and its target (issue 15: a lock named after the path did not exclude the other
spelling, and a live lock was taken over as stale). One run must stop at once ("locked by
another run", exit 1) or find nothing left to do; never may both create chats. Some rounds
SIGKILL the run that holds the lock: the kernel releases its lock, and a third run takes over
and reconciles. Then the tenant is counted from the emulator's side (``kill_soak``'s checks):
every desired chat exactly once, and ``plan --detailed-exitcode`` finds nothing to do.

    python tests/soak/lock_soak.py --rounds 10 --groups 20 --pairs 10

It prints one line per round and a JSON figure line: runs, faults injected (the concurrent
second starts and the kills), duplicates, lost chats, crashes, and how often both ran
(must be 0). Exit status 1 if any round failed.
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
from pathlib import Path

try:  # tests/ is on sys.path under pytest; tests/soak/ when run as a script
    from soak.kill_soak import Report, _check_tenant, write_manifest
except ImportError:  # pragma: no cover
    from kill_soak import Report, _check_tenant, write_manifest  # type: ignore[no-redef, import-not-found]

from provisioner.emulator import EmulatorServer


def _created(out: bytes) -> int:
    try:
        doc = json.loads(out)
    except ValueError:
        return -1
    return int(doc.get("summary", {}).get("created", 0)) + int(
        doc.get("summary", {}).get("adopted", 0)
    )


def one_round(workdir: Path, seed: int, groups: int, pairs: int, kill: bool) -> dict[str, int]:
    rng = random.Random(seed)
    report = Report(seed=seed)
    chats = write_manifest(workdir / "chats.yaml", rng, groups, pairs)
    (workdir / "real").mkdir()
    real = workdir / "real" / "state.json"
    os.symlink("real/state.json", workdir / "state.json")
    figures = {"runs": 0, "faults": 1, "both_ran": 0, "stopped": 0, "crashes": 0}
    with EmulatorServer(
        seed=seed,
        limits="documented",
        latency_ms=(10, 40),
        invent_users=True,  # the kill soak's manifest names made-up users
        list_delay_s=0,  # no ambiguous answers here: the listing lag is the consistency soak's
    ) as server:
        env = dict(os.environ, PROVISION_GRAPH_URL=server.url, PROVISION_ACCESS_TOKEN="soak")
        env.pop("PROVISION_STATE", None)

        def apply(state: str) -> subprocess.Popen[bytes]:
            cmd = [sys.executable, "-m", "provisioner", "apply", "chats.yaml", "--auto-approve"]
            cmd += ["--state", state, "--format", "json", "--quiet", "--max-rps", "15"]
            return subprocess.Popen(
                cmd, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )

        procs = [apply("state.json"), apply(str(real))]  # both spellings, same instant
        figures["runs"] += 2
        if kill:
            time.sleep(rng.uniform(0.5, 1.5))
            for proc in procs:  # kill whichever is still working: the lock holder
                if proc.poll() is None:
                    proc.send_signal(signal.SIGKILL)
            figures["faults"] += 1
        results = [(p.wait(timeout=300), *p.communicate()) for p in procs]
        worked = 0
        for code, out, err in results:
            if code == -signal.SIGKILL:
                continue
            if b"locked by another run" in err:
                figures["stopped"] += 1
            elif code == 0 and _created(out) > 0:
                worked += 1
            elif code != 0 or b"internal error" in err:
                figures["crashes"] += 1
        figures["both_ran"] = int(worked > 1)
        final = apply("state.json")  # finishes what a stopped or killed run left
        figures["runs"] += 1
        code = final.wait(timeout=300)
        if code != 0:
            figures["crashes"] += 1
        _check_tenant(server, chats, real, report)
        plan = subprocess.run(
            [sys.executable, "-m", "provisioner", "plan", "chats.yaml", "--state", "state.json",
             "--detailed-exitcode"],
            cwd=workdir, env=env, capture_output=True,
        )  # fmt: skip
    figures["duplicates"] = report.duplicates
    figures["lost"] = report.missing
    figures["plan_exit"] = plan.returncode
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--groups", type=int, default=15)
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print the figure line as JSON")
    args = parser.parse_args(argv)
    total = {"runs": 0, "faults": 0, "duplicates": 0, "lost": 0, "crashes": 0, "both_ran": 0}
    failed = 0
    started = time.monotonic()
    for n in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="lock-soak-") as tmp:
            figures = one_round(Path(tmp), args.seed + n, args.groups, args.pairs, kill=n % 3 == 2)
        for key in total:
            total[key] += figures.get(key, 0)
        bad = figures["plan_exit"] != 0 or any(
            figures[k] for k in ("duplicates", "lost", "crashes", "both_ran")
        )
        failed += bad
        print(f"round {n}: {figures}{'  FAILED' if bad else ''}", flush=True)
    line = {"soak": "lock", **total, "seconds": round(time.monotonic() - started, 1)}
    print(
        f"lock soak: runs {total['runs']}, faults injected {total['faults']} (concurrent "
        f"starts and kills), duplicates {total['duplicates']}, lost chats {total['lost']}, "
        f"crashes {total['crashes']}, both ran {total['both_ran']} (must be 0)"
    )
    if args.json:
        print(json.dumps(line))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
