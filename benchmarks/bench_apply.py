"""`provision apply` against the emulator's throttling, beside a naive and a sequential client.

    python benchmarks/bench_apply.py [--chats 300] [--sequential-chats 60] [--seed 1] [--json FILE]

Setup (issue 5): 300 chats, half oneOnOne, half group (3 members); the emulator enforces Graph's
documented Teams limits unscaled (30 writes/s per tenant: 300 creations take >= 10 s) with
150-300 ms latency on every request. Each client gets a fresh emulator:

* provision   ``provision apply --auto-approve`` as a subprocess (its pacing, its defaults);
* naive       8 threads POSTing as fast as answers come, retrying a 429/503 only after its
              Retry-After, at most 3 times (what the Graph SDKs' retry handler does);
* sequential  one request after the other, same retries (on fewer chats: its rate does not
              depend on how many; 300 would take over a minute).

Then again with the emulator enforcing half the documented limit (15 writes/s), provision not
told (no --max-rps). Reported per client: achieved creation rate / enforced limit, and the share
of requests the emulator answered 429 (counted on its side). Targets: provision >= 95 % of the
limit with <= 2 % 429s at the documented limit, >= 85 % with <= 5 % at half.

The rate is creations per second over the client's apply phase (provision's own ``duration_s``,
from its first request to its last answer, without interpreter start-up and planning; the
loop's wall time for the others).
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from provisioner.emulator import EmulatorServer
from provisioner.graph.retry import parse_retry_after
from provisioner.models import Chat, Member

try:
    from _figures import Figure, write_figures  # run as a script: benchmarks/ is on sys.path
except ImportError:  # pragma: no cover
    from benchmarks._figures import Figure, write_figures

DOCUMENTED_WRITES = 30.0  # includes/throttling-teams.md: 30 rps per app per tenant
LATENCY_MS = (150.0, 300.0)


@dataclass
class Run:
    client: str
    limit: float
    chats: int
    created: int
    seconds: float
    requests: int
    throttled: int
    failed: int

    @property
    def rate(self) -> float:
        return self.created / self.seconds if self.seconds else 0.0

    @property
    def of_limit(self) -> float:
        return self.rate / self.limit

    @property
    def share_429(self) -> float:
        return self.throttled / self.requests if self.requests else 0.0


def make_chats(n: int, seed: int) -> list[Chat]:
    ns = uuid.UUID(int=seed)
    users = [str(uuid.uuid5(ns, f"user-{i}")) for i in range(n + 3)]
    chats = []
    for i in range(n // 2):
        a, b = users[i], users[i + 1]
        key = f"pair-{i:04d}"
        chats.append(Chat(key, "oneOnOne", (Member(a), Member(b))))
    for i in range(n - n // 2):
        members = tuple(Member(u) for u in users[i : i + 3])
        chats.append(Chat(f"group-{i:04d}", "group", members, topic=f"Bench {i}"))
    return chats


def manifest(chats: list[Chat]) -> str:
    lines = ["version: 1", "chats:"]
    for chat in chats:
        lines += [f"  - key: {chat.key}", f"    chatType: {chat.chat_type}"]
        if chat.topic:
            lines.append(f"    topic: {chat.topic}")
        lines += ["    members:", *(f"      - user: {m.user}" for m in chat.members)]
    return "\n".join(lines) + "\n"


def emulator(scale: float, seed: int) -> EmulatorServer:
    return EmulatorServer(
        limits=scale,
        latency_ms=LATENCY_MS,
        seed=seed,
        invent_users=True,  # thousands of made-up users (a load test)
        list_delay_s=0,  # no ambiguous answers here: the listing lag is measured elsewhere
    )


def run_provision(chats: list[Chat], scale: float, seed: int) -> Run:
    with tempfile.TemporaryDirectory(prefix="bench-apply-") as tmp, emulator(scale, seed) as server:
        Path(tmp, "chats.yaml").write_text(manifest(chats))
        env = dict(os.environ, PROVISION_GRAPH_URL=server.url, PROVISION_ACCESS_TOKEN="bench")
        env.pop("PROVISION_STATE", None)
        proc = subprocess.run(
            [sys.executable, "-m", "provisioner", "apply", "chats.yaml", "--auto-approve",
             "--format", "json", "--quiet"],
            cwd=tmp, env=env, capture_output=True, text=True, check=False,
        )  # fmt: skip
        try:
            doc = json.loads(proc.stdout)
        except ValueError:
            raise SystemExit(f"provision apply failed ({proc.returncode}): {proc.stderr}") from None
        counters = server.tenant.counters
        return Run(
            "provision",
            DOCUMENTED_WRITES * scale,
            len(chats),
            doc["summary"]["created"],
            doc["stats"]["duration_s"],
            counters.requests_total,
            counters.throttled_total,
            doc["summary"]["failed"],
        )


def run_simple(name: str, chats: list[Chat], scale: float, seed: int, threads: int) -> Run:
    """The naive (threads=8) and sequential (threads=1) clients."""
    with emulator(scale, seed) as server:
        work: queue.Queue[Chat] = queue.Queue()
        for chat in chats:
            work.put(chat)
        created = failed = 0
        lock = threading.Lock()

        def worker() -> None:
            nonlocal created, failed
            with requests.Session() as session:
                session.headers["Authorization"] = "Bearer bench"
                while True:
                    try:
                        chat = work.get_nowait()
                    except queue.Empty:
                        return
                    ok = _post_with_sdk_retries(session, server.url, chat)
                    with lock:
                        created += ok
                        failed += not ok

        started = time.monotonic()
        pool = [threading.Thread(target=worker) for _ in range(threads)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        seconds = time.monotonic() - started
        counters = server.tenant.counters
        return Run(
            name,
            DOCUMENTED_WRITES * scale,
            len(chats),
            created,
            seconds,
            counters.requests_total,
            counters.throttled_total,
            failed,
        )


def _post_with_sdk_retries(session: requests.Session, url: str, chat: Chat) -> bool:
    body: Any = chat.request_body(url)
    for _ in range(4):  # the first try and 3 retries, like the SDKs' RetryHandler default
        response = session.post(f"{url}/chats", json=body, timeout=60)
        if response.status_code < 400:
            return True
        if response.status_code not in (429, 503):
            return False
        time.sleep(parse_retry_after(response.headers.get("Retry-After")) or 0.0)
    return False


def report(runs: list[Run], targets: dict[str, tuple[float, float]]) -> None:
    head = f"{'client':<11} {'limit/s':>7} {'chats':>5} {'rate/s':>7} {'of limit':>8} "
    print(head + f"{'429 share':>9} {'failed':>6} {'seconds':>7}")
    for r in runs:
        print(
            f"{r.client:<11} {r.limit:7.1f} {r.chats:5d} {r.rate:7.2f} {r.of_limit:8.1%} "
            f"{r.share_429:9.2%} {r.failed:6d} {r.seconds:7.1f}"
        )
    tool = next(r for r in runs if r.client == "provision")
    naive = next(r for r in runs if r.client == "naive")
    rate_target, share_target = targets["provision"]
    verdict = (
        "met"
        if tool.of_limit >= rate_target and tool.share_429 <= share_target and not tool.failed
        else "MISSED"
    )
    print(
        f"provision / naive rate: {tool.rate / naive.rate:.2f}x; target >= {rate_target:.0%} "
        f"of the limit with <= {share_target:.0%} 429s: {verdict}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chats", type=int, default=300)
    parser.add_argument("--sequential-chats", type=int, default=60)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", metavar="FILE", help="also write the figures here")
    parser.add_argument("--quick", action="store_true", help="60 chats, 20 sequential")
    args = parser.parse_args(argv)
    if args.quick:
        args.chats, args.sequential_chats = 60, 20
    figures: list[Figure] = []
    chats = make_chats(args.chats, args.seed)
    few = chats[: args.sequential_chats // 2] + chats[-(args.sequential_chats // 2) :]
    for scale, label, target in (
        (1.0, "documented limit (30 writes/s)", (0.95, 0.02)),
        (0.5, "half the documented limit (15 writes/s), provision not told", (0.85, 0.05)),
    ):
        print(f"\n== {label}, latency {LATENCY_MS[0]:.0f}-{LATENCY_MS[1]:.0f} ms", flush=True)
        runs = [
            run_provision(chats, scale, args.seed),
            run_simple("naive", chats, scale, args.seed, threads=8),
            run_simple("sequential", few, scale, args.seed, threads=1),
        ]
        report(runs, {"provision": target})
        figures += apply_figures(runs, target, "documented" if scale == 1.0 else "half")
    write_figures(args.json, "apply", figures)
    return 0


def apply_figures(runs: list[Run], target: tuple[float, float], which: str) -> list[Figure]:
    """Each client's creation rate against the enforced limit; provision's 429 share."""
    rate_target, share_target = target
    figures = []
    for r in runs:
        label = {"provision": "provision apply", "naive": "naive client (8 threads, SDK "
                 "retries)", "sequential": "sequential client"}[r.client]  # fmt: skip
        figure = Figure.compared(
            f"{label}, {r.chats} chats, {which} limit ({r.limit:g} writes/s): creations/s",
            r.rate,
            "chats/s",
            r.limit,
            "the limit the emulator enforces",
        )
        if r.failed:
            figure.name += f" ({r.failed} failed)"
        if r.client == "provision":
            figure.target = f"ratio >= {rate_target:g}, no failures"
            figure.ok = r.of_limit >= rate_target and not r.failed
        figures.append(figure)
        share = Figure(f"{label}, {which} limit: requests answered 429", r.share_429 * 100, "%")
        if r.client == "provision":
            share.target, share.ok = f"value <= {share_target:.0%}", r.share_429 <= share_target
        figures.append(share)
    return figures


if __name__ == "__main__":
    sys.exit(main())
