"""A chat that follows an Entra ID group, through the CLI, against the emulator at Graph's
documented limits (issue 22).

    python benchmarks/bench_groups.py [--size 30] [--changes] [--latency-ms 0]

Three steps, each counted in Graph requests (the emulator's count: plain requests and each
``$batch`` item) and wall time:

1. ``apply`` of a manifest with one group chat whose members are ``group: <id>`` (a group of
   ``--size`` users): the group is read, the chat created;
2. ``plan`` right after, the group unchanged: what a refresh costs;
3. with ``--changes``: two users join the group and one leaves, then ``apply``: three member
   changes, at Graph's pace of 4 per minute per chat (so about 30 s by design).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import tempfile
import time
import uuid
from pathlib import Path

from provisioner.cli.main import main as cli
from provisioner.emulator import EmulatorServer
from provisioner.emulator.server import parse_latency


def step(server: EmulatorServer, name: str, *args: str) -> None:
    before = server.tenant.counters
    started = time.perf_counter()
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        code = cli(list(args))
    took = time.perf_counter() - started
    after = server.tenant.counters
    routes = after.by_route - before.by_route
    shown = ", ".join(f"{k} x{v}" for k, v in sorted(routes.items()))
    requests = after.requests_total - before.requests_total
    print(f"{name}: exit {code}, {requests} requests in {took:.2f} s ({shown})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=30)
    parser.add_argument("--changes", action="store_true", help="also time 3 member changes")
    parser.add_argument("--latency-ms", default="0", help="N or LO-HI milliseconds")
    args = parser.parse_args()
    people = [str(uuid.uuid5(uuid.NAMESPACE_DNS, f"bench-{n}")) for n in range(args.size + 2)]
    with (
        tempfile.TemporaryDirectory() as tmp,
        EmulatorServer(
            limits="documented",
            latency_ms=parse_latency(args.latency_ms),
            invent_users=True,
            list_delay_s=0,
            seed=1,
        ) as server,
    ):
        os.chdir(tmp)
        os.environ["PROVISION_GRAPH_URL"] = server.url
        os.environ["PROVISION_ACCESS_TOKEN"] = "bench"
        group = server.tenant.groups.add("Bench-Team", people[: args.size])
        Path("chats.yaml").write_text(
            "version: 1\nchats:\n  - key: team\n    chatType: group\n    topic: Team\n"
            f"    members:\n      - group: {group.id}\n"
        )
        step(server, f"apply (group of {args.size})", "apply", "chats.yaml", "--auto-approve")
        step(server, "plan, group unchanged", "plan", "chats.yaml")
        if args.changes:
            server.tenant.groups.add_members(group.id, *people[args.size :])
            server.tenant.groups.remove_members(group.id, people[0])
            step(server, "apply, 2 joined 1 left", "apply", "chats.yaml", "--auto-approve")


if __name__ == "__main__":
    main()
