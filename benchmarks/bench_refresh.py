"""Refresh of N managed chats against the emulator at Graph's documented read limits.

    python benchmarks/bench_refresh.py [--chats 1000] [--latency-ms 0] [--scale 1] [--json FILE]

The baseline is the minimum the read limits allow, computed for the same run: every chat read
costs one of the 30 reads per second per app per tenant ("Other GET API calls for Microsoft
Teams", includes/throttling-teams.md), and a ``$batch`` item counts as one read
(concepts/json-batching.md), so N chats need at least N / 30 s, and at least ceil(N / 20)
HTTP requests (20 per batch). The script reports the time refresh took and the requests it
made, each as a ratio to that minimum (the issue's target: time <= 1.15x), plus the 429s the
emulator answered (pacing should keep that at 0).

The emulator enforces the documented limits itself (``limits="documented"``: 30-token buckets
refilled at 30 per second, 1 request per second per chat), so a client that reads faster is
throttled, and one that paces badly is visibly slow. ``--scale N`` makes the emulator's and the
client's limits N times faster for a quick run (the ratio is then against N * 30 per second).
``--latency-ms`` adds latency to every emulator request (batches in flight then matter).
"""

from __future__ import annotations

import argparse
import math
import time
import uuid

from provisioner.emulator import EmulatorServer
from provisioner.emulator.server import parse_latency
from provisioner.emulator.tenant import NewMember
from provisioner.graph.batch import BATCH_LIMIT
from provisioner.graph.client import GraphClient
from provisioner.graph.pacing import CHAT, DOCUMENTED_LIMITS, TENANT_READ, Pacer
from provisioner.operations.refresh import CHAT_BATCH, refresh
from provisioner.signin.chooser import StaticToken
from provisioner.states.records import ChatRecord, MemberRecord, State

try:
    from _figures import Figure, write_figures  # run as a script: benchmarks/ is on sys.path
except ImportError:  # pragma: no cover
    from benchmarks._figures import Figure, write_figures

USERS = ("adele@contoso.com", "megan@contoso.com", "lee@contoso.com")


def cover_run(n: int, latency: object, seed: int = 26) -> tuple[float, int, int, int, bool]:
    """Issue 26: N group chats sharing an owner (each with two members of its own), refreshed
    through covering lists. Returns the time, the list pages, the single reads (batch items),
    the 429s, and whether the live view has every chat."""
    ns = uuid.UUID(int=seed)
    with EmulatorServer(
        limits="documented", latency_ms=latency, seed=seed, invent_users=True, list_delay_s=0
    ) as server:
        tenant = server.tenant
        owner = str(uuid.uuid5(ns, "owner"))
        state = State()
        for i in range(n):
            ids = (owner, str(uuid.uuid5(ns, f"a{i}")), str(uuid.uuid5(ns, f"b{i}")))
            people = [tenant.directory.resolve(u) for u in ids]
            members = [NewMember(p, "owner", tenant.tenant_id) for p in people if p is not None]
            chat, _ = tenant.create_chat("group", f"Chat {i}", members)
            records = tuple(MemberRecord(u, object_id=u) for u in ids)
            state.put_chat(f"chat-{i:05d}", ChatRecord(chat.id, "group", records, f"Chat {i}"))
        tenant.reset_counters()
        client = GraphClient(server.url, StaticToken("bench"), pacer=Pacer())
        started = time.perf_counter()
        live = refresh(client, state)
        elapsed = time.perf_counter() - started
        counters = tenant.counters
        client.close()
    pages = counters.by_route["GET /users/{user-id}/chats"]
    complete = len(live) == n and not any(c.gone for c in live.values())
    return elapsed, pages, counters.batch_items_total, counters.throttled_total, complete


def cover_figures(n: int, latency: object) -> list[Figure]:
    elapsed, pages, singles, throttled, complete = cover_run(n, latency)
    read_rate = DOCUMENTED_LIMITS[TENANT_READ].rate
    reads = pages + singles
    print(f"covering lists, {n} chats sharing an owner: {elapsed:.2f} s, {pages} list pages + "
          f"{singles} single reads, {throttled} answered 429, complete: {complete}")  # fmt: skip
    minimum = n / read_rate
    time_fig = Figure.compared(
        f"drift check of {n} chats sharing an owner, covering lists: time",
        elapsed, "s", minimum, f"per-chat minimum: N reads / {read_rate:g} per s",
        max_ratio=0.3,
    )  # fmt: skip
    reads_fig = Figure.compared(
        f"drift check of {n} chats sharing an owner, covering lists: reads",
        reads, "reads", n, "per-chat minimum: one read per chat", max_ratio=0.3,
    )  # fmt: skip
    if not complete:
        time_fig.ok = reads_fig.ok = False
        time_fig.name += " (INCOMPLETE VIEW)"
    return [time_fig, reads_fig]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chats", type=int, default=1000)
    parser.add_argument("--latency-ms", default="0", help="N or LO-HI milliseconds")
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--batch", type=int, default=CHAT_BATCH, help="chats per $batch")
    parser.add_argument("--json", metavar="FILE", help="also write the figures here")
    parser.add_argument(
        "--cover-chats", type=int, default=10_000,
        help="chats sharing an owner for the covering-list drift check (0: skip it)",
    )  # fmt: skip
    args = parser.parse_args()
    n = args.chats
    limits = "documented" if args.scale == 1 else f"x{args.scale:g}"
    read_rate = DOCUMENTED_LIMITS[TENANT_READ].rate * args.scale

    latency = parse_latency(args.latency_ms)
    with EmulatorServer(
        limits=limits, latency_ms=latency, seed=1, invent_users=True, list_delay_s=0
    ) as server:
        tenant = server.tenant
        people = [tenant.directory.resolve(u) for u in USERS]
        state = State()
        for i in range(n):  # made inside the emulator: setting up is not what is measured
            members = [NewMember(p, "owner", tenant.tenant_id) for p in people if p is not None]
            chat, _ = tenant.create_chat("group", f"Chat {i}", members)
            state.put_chat(
                f"chat-{i:05d}",
                ChatRecord(chat.id, "group", tuple(MemberRecord(u) for u in USERS), f"Chat {i}"),
            )
        tenant.reset_counters()
        pacer = Pacer(
            limits={
                TENANT_READ: read_rate,
                CHAT: DOCUMENTED_LIMITS[CHAT].rate * args.scale,
            }
        )
        client = GraphClient(server.url, StaticToken("bench"), pacer=pacer)
        started = time.perf_counter()
        live = refresh(client, state, batch_size=args.batch, cover=False)
        elapsed = time.perf_counter() - started
        counters = tenant.counters
        client.close()

    assert len(live) == n and not any(c.gone for c in live.values())
    min_time = n / read_rate
    min_requests = math.ceil(n / BATCH_LIMIT)  # the fewest $batch calls Graph allows
    http = counters.by_route["POST /$batch"]
    print(
        f"refresh of {n} chats, emulator limits {limits}, latency {args.latency_ms} ms, "
        f"{args.batch} per batch"
    )
    print(f"  read limit           {read_rate:g} reads/s (includes/throttling-teams.md)")
    print(f"  minimum time         {min_time:.2f} s  (N / read limit)")
    print(f"  refresh time         {elapsed:.2f} s  ratio {elapsed / min_time:.3f}x")
    print(f"  minimum requests     {min_requests}  (ceil(N / {BATCH_LIMIT}) $batch calls)")
    print(
        f"  requests made        {http} $batch calls, {counters.batch_items_total} items"
        f"  ratio {http / min_requests:.3f}x"
    )
    print(f"  throttled (429)      {counters.throttled_total}")
    throttled = Figure(f"refresh {n} chats: answered 429", counters.throttled_total, "requests")
    throttled.target, throttled.ok = "value = 0", counters.throttled_total == 0
    covering = cover_figures(args.cover_chats, latency) if args.cover_chats else []
    write_figures(
        args.json,
        "refresh",
        [
            Figure.compared(
                f"refresh {n} chats at the documented read limit ({limits})",
                elapsed, "s", min_time, f"minimum the read limit allows (N / {read_rate:g}/s)",
                max_ratio=1.15,
            ),
            Figure.compared(
                f"refresh {n} chats: HTTP requests", http, "requests", min_requests,
                f"minimum: ceil(N / {BATCH_LIMIT}) $batch calls",
            ),
            throttled,
            *covering,
        ],
    )  # fmt: skip


if __name__ == "__main__":
    main()
