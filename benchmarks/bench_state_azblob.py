"""State round-trips for a 10,000-chat state: Azure Blob Storage (Azurite) vs the local file.

Prints, all measured in this run:

1. Round-trip (read + conditional write, the write including its backup) of a 10,000-chat
   state: local file vs Azurite, as a ratio, and the bytes sent and received per blob round-trip.
2. An apply's state cost per change (the issue's budget: Graph's 30 requests/s for chat creation
   leave ~33 ms per change, concepts/throttling-limits.md): writing the whole state after every
   change vs the journal (``JournalWriter``: every change, group intents included, durable
   before it returns, as one appended record; the full state written by compaction and at
   the end, which is counted), for both stores. Graph time is simulated with a clock that
   advances 1/30 s per change, so only state work is timed.
3. The same in real time with worker threads, as the executor runs: Graph paced at 30 POST/s
   (each call simulated as a sleep), every change recorded through the journal's group commit
   (durable before the worker goes on); the achieved rate as a ratio to the same harness with
   no state at all.

Needs Azurite (see tests/lib/azurite_support.py) and the azure extra. Usage:
    python benchmarks/bench_state_azblob.py [--chats 10000] [--changes 3000] [--repeat 7]
        [--threaded-changes 300] [--workers 4,16] [--graph-latency 0.25] [--json FILE]
"""

from __future__ import annotations

import argparse
import base64
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from azure.storage.blob import BlobServiceClient
from lib.azurite_support import ACCOUNT, KEY, Azurite, ensure_azurite

from provisioner.states.azblob.conn import BlobLocation
from provisioner.states.azblob.store import AzureBlobStateStore
from provisioner.states.journal import JOURNAL_SUFFIX
from provisioner.states.journal_writer import JournalWriter
from provisioner.states.records import BACKUP_SUFFIX, ChatRecord, Intent, MemberRecord, State
from provisioner.states.store import JournaledStore, StateStore, local_store

try:
    from _figures import Figure, write_figures  # run as a script: benchmarks/ is on sys.path
except ImportError:  # pragma: no cover
    from benchmarks._figures import Figure, write_figures

FIGURES: list[Figure] = []  # for --json

GRAPH_RPS = 30.0  # POST /chats budget per tenant (concepts/throttling-limits.md)
BUDGET_MS = 1000.0 / GRAPH_RPS


def _guid() -> str:
    return str(uuid.uuid4())


def _membership_id(chat_id: str, user_id: str) -> str:
    # Graph's conversationMember ids are base64 of "1#<tenant>#<chat>#<user>"-like strings.
    raw = f"MCMjMSMj{_guid()}##{chat_id}##{user_id}".encode()
    return base64.b64encode(raw).decode()


def _member(n: int, chat_id: str, role: str = "owner") -> MemberRecord:
    oid = _guid()
    return MemberRecord(
        user=f"user{n}@contoso.com",
        role=role,
        object_id=oid,
        membership_id=_membership_id(chat_id, oid),
    )


def make_record(i: int) -> ChatRecord:
    """Seven in ten chats are oneOnOne, the rest groups of 3-8 members (a realistic mix)."""
    if i % 10 < 7:
        chat_id = f"19:{_guid()}_{_guid()}@unq.gbl.spaces"
        return ChatRecord(
            chat_id=chat_id,
            chat_type="oneOnOne",
            created_at="2024-05-01T10:00:00.000Z",
            members=(_member(2 * i, chat_id), _member(2 * i + 1, chat_id)),
        )
    chat_id = f"19:{uuid.uuid4().hex}@thread.v2"
    size = 3 + i % 6
    return ChatRecord(
        chat_id=chat_id,
        chat_type="group",
        topic=f"Project {i} coordination",
        created_at="2024-05-01T10:00:00.000Z",
        members=tuple(
            _member(1000 * i + k, chat_id, "guest" if k == size - 1 else "owner")
            for k in range(size)
        ),
    )


def make_state(chats: int) -> State:
    state = State()
    for i in range(chats):
        state.put_chat(f"chat-{i:06d}", make_record(i))
    return state


class Meter:
    """Counts payload bytes through the SDK's raw response hook (request bodies sent,
    response bodies by Content-Length)."""

    def __init__(self) -> None:
        self.sent = 0
        self.received = 0
        self.requests = 0

    def hook(self, response: Any) -> None:
        request = response.http_request
        body = request.body
        if body is not None and hasattr(body, "__len__"):
            self.sent += len(body)
        length = response.http_response.headers.get("Content-Length")
        if length and request.method == "GET":
            self.received += int(length)
        self.requests += 1


def blob_store(azurite: Azurite, container: str, name: str, meter: Meter) -> JournaledStore:
    service = BlobServiceClient(
        azurite.endpoint,
        credential={"account_name": ACCOUNT, "account_key": KEY},
        raw_response_hook=meter.hook,
    )
    client = service.get_container_client(container)
    store = AzureBlobStateStore(
        BlobLocation(ACCOUNT, container, name),
        client.get_blob_client(name),
        client.get_blob_client(name + BACKUP_SUFFIX),
        client.get_blob_client(name + JOURNAL_SUFFIX),
        endpoint=azurite.endpoint,
    )
    return JournaledStore(store, store.journal_file())


def round_trips(store: StateStore, repeat: int) -> tuple[float, float]:
    """Median seconds of (read, conditional write) over ``repeat`` round-trips."""
    reads, writes = [], []
    for _ in range(repeat):
        start = time.perf_counter()
        state = store.read()
        middle = time.perf_counter()
        state.users["bench@contoso.com"] = _guid()  # one change, then the conditional write
        store.write(state)
        end = time.perf_counter()
        reads.append(middle - start)
        writes.append(end - middle)
    return statistics.median(reads), statistics.median(writes)


def simulate_apply(
    store: JournaledStore, state: State, changes: int, *, journal: bool, group_every: int = 10
) -> tuple[float, int]:
    """Replay ``changes`` creations (one in ``group_every`` a group chat, its intent durable
    before its POST) on ``state``; returns (seconds spent in state calls, durable writes). The
    clock is simulated: 1/30 s per change."""
    now = [0.0]
    writer = JournalWriter(store, state, clock=lambda: now[0]) if journal else None
    records = [make_record(i) for i in range(changes)]
    spent = 0.0
    writes = 0
    if writer is not None:
        start = time.perf_counter()
        writer.start()
        spent += time.perf_counter() - start
    for i, record in enumerate(records):
        key = f"new-{i:06d}"
        is_group = i % group_every == 0

        def intent(s: State, key: str = key, record: ChatRecord = record) -> None:
            s.put_intent(
                Intent(key, "group", record.members, _guid(), "2024-05-01T10:00:00Z", record.topic)
            )

        def done(
            s: State, key: str = key, record: ChatRecord = record, group: bool = is_group
        ) -> None:
            if group:
                s.clear_intent(key)
            s.put_chat(key, record)

        for change in ([intent] if is_group else []) + [None, done]:
            if change is None:
                now[0] += 1.0 / GRAPH_RPS  # the POST /chats itself (Graph's time, not measured)
                continue
            start = time.perf_counter()
            if writer is not None:
                writer.update(change)
            else:
                change(state)
                store.inner.write(state)
                writes += 1
            spent += time.perf_counter() - start
    if writer is not None:
        start = time.perf_counter()
        writer.close()
        spent += time.perf_counter() - start
        writes = writer.writes
    return spent, writes


class Pacer:
    """Graph's budget: one POST every 1/30 s across all workers."""

    def __init__(self, rate: float) -> None:
        self.gap = 1.0 / rate
        self.next = time.monotonic()
        self.lock = threading.Lock()

    def wait(self) -> None:
        with self.lock:
            now = time.monotonic()
            slot = max(now, self.next)
            self.next = slot + self.gap
        time.sleep(max(0.0, slot - time.monotonic()))


def threaded_apply(
    record_change: Callable[[int], None] | None, changes: int, workers: int, latency: float
) -> tuple[float, float]:
    """Run ``changes`` simulated creations on ``workers`` threads; ``record_change(i)`` records
    one in state (None: no state). Returns (changes per second, mean seconds in state calls)."""
    pacer = Pacer(GRAPH_RPS)
    counter = iter(range(changes))
    counter_lock = threading.Lock()
    in_state: list[float] = []

    def work() -> None:
        while True:
            with counter_lock:
                i = next(counter, None)
            if i is None:
                return
            pacer.wait()
            time.sleep(latency)  # the POST /chats round-trip
            if record_change is not None:
                start = time.perf_counter()
                record_change(i)
                in_state.append(time.perf_counter() - start)

    start = time.perf_counter()
    threads = [threading.Thread(target=work) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    return changes / elapsed, (statistics.fmean(in_state) if in_state else 0.0)


def threaded_section(
    stores: dict[str, Callable[[], JournaledStore]], args: argparse.Namespace
) -> None:
    workers_list = [int(w) for w in args.workers.split(",")]
    n, latency = args.threaded_changes, args.graph_latency
    print(
        f"\n3. threaded apply, {n} changes, Graph paced at {GRAPH_RPS:.0f}/s with "
        f"{latency * 1000:.0f} ms per call; rate as a ratio to no state at all"
    )
    records = [make_record(i) for i in range(n)]
    for workers in workers_list:
        base_rate, _ = threaded_apply(None, n, workers, latency)
        print(
            f"   {workers:2} workers, no state            : {base_rate:5.1f} changes/s (baseline)"
        )
        for name, store_for in stores.items():
            store = store_for()
            writer = JournalWriter(store, store.read())
            writer.start()

            def group_commit(i: int, writer: JournalWriter = writer, w: int = workers) -> None:
                writer.update(lambda s: s.put_chat(f"t{w}-{i:06d}", records[i]))

            rate, wait = threaded_apply(group_commit, n, workers, latency)
            writer.close()
            print(
                f"   {workers:2} workers, {name:6} journal      : {rate:5.1f} changes/s "
                f"({rate / base_rate:.2f}x), {wait * 1000:6.1f} ms in state per change, "
                f"{writer.appends} appends, {writer.compactions} full writes"
            )
            FIGURES.append(
                Figure.compared(
                    f"threaded apply rate, {name} journal, {workers} workers", rate, "changes/s",
                    base_rate, "the same harness with no state",
                )
            )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chats", type=int, default=10_000)
    parser.add_argument("--changes", type=int, default=3_000)
    parser.add_argument("--every-change-changes", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--threaded-changes", type=int, default=300)
    parser.add_argument("--workers", default="4,16")
    parser.add_argument("--graph-latency", type=float, default=0.25)
    parser.add_argument("--json", metavar="FILE", help="also write the figures here")
    args = parser.parse_args(argv)

    executable = ensure_azurite()
    if executable is None:
        print("Azurite is not installed; see tests/lib/azurite_support.py", file=sys.stderr)
        return 1
    azurite = Azurite(executable)
    azurite.start()
    try:
        code = run(azurite, args)
    finally:
        azurite.stop()
    write_figures(args.json, "state_azblob", FIGURES)
    return code


def run(azurite: Azurite, args: argparse.Namespace) -> int:
    print(f"building a {args.chats:,}-chat state ...")
    seed = make_state(args.chats)
    size = len(seed.encode())
    print(f"state size: {size / 1e6:.2f} MB ({size / args.chats:.0f} bytes per chat)\n")

    with tempfile.TemporaryDirectory() as tmp:
        local_path = str(Path(tmp) / "provision.state.json")
        local = local_store(local_path)
        local.write(seed)
        container = azurite.new_container()
        meter = Meter()
        blob = blob_store(azurite, container, "provision.state.json", meter)
        blob.write(seed)
        blob.write(blob.read())  # so every measured write also makes a backup copy

        print("1. round-trip: read + conditional write (with backup), median of", args.repeat)
        local_r, local_w = round_trips(local, args.repeat)
        round_trips(blob, 1)  # warm-up
        before = (meter.sent, meter.received, meter.requests)
        blob_r, blob_w = round_trips(blob, args.repeat)
        sent = (meter.sent - before[0]) / args.repeat
        received = (meter.received - before[1]) / args.repeat
        requests = (meter.requests - before[2]) / args.repeat
        local_s, blob_s = local_r + local_w, blob_r + blob_w
        print(
            f"   local file : {local_s * 1000:8.1f} ms "
            f"(read {local_r * 1000:.1f} + write {local_w * 1000:.1f})"
        )
        print(
            f"   azblob     : {blob_s * 1000:8.1f} ms "
            f"(read {blob_r * 1000:.1f} + write {blob_w * 1000:.1f})   "
            f"ratio {blob_s / local_s:.2f}x local (write alone {blob_w / local_w:.2f}x)"
        )
        print(
            f"   azblob bytes per round-trip: {sent / 1e6:.2f} MB sent, "
            f"{received / 1e6:.2f} MB received, {requests:.0f} requests "
            f"(GET, backup copy, conditional PUT)\n"
        )
        FIGURES.append(
            Figure.compared(
                f"azblob state round-trip, {args.chats:,} chats (Azurite)", blob_s * 1000, "ms",
                local_s * 1000, "local state file round-trip",
            )
        )  # fmt: skip

        print(f"2. state time per change in an apply (budget {BUDGET_MS:.1f} ms per change)")
        rows = []
        for name, store_for in (
            ("local", lambda: local_store(local_path)),
            ("azblob", lambda: blob_store(azurite, container, "provision.state.json", meter)),
        ):
            for journal, changes in ((False, args.every_change_changes), (True, args.changes)):
                store = store_for()
                state = store.read()
                sent0 = meter.sent
                spent, writes = simulate_apply(store, state, changes, journal=journal)
                per_change = spent / changes * 1000
                label = "journal" if journal else "every change"
                sent_per_change = (meter.sent - sent0) / changes if name == "azblob" else 0.0
                rows.append((name, label, changes, writes, per_change, sent_per_change))
        for name, label, changes, writes, per_change, sent_per_change in rows:
            figure = Figure.compared(
                f"state time per change in an apply, {name}, {label}", per_change, "ms",
                BUDGET_MS, "Graph's time per creation (1/30 s)",
            )  # fmt: skip
            if label == "journal":
                figure.target, figure.ok = "ratio <= 1", per_change <= BUDGET_MS
            FIGURES.append(figure)
            verdict = "within budget" if per_change <= BUDGET_MS else "OVER budget"
            extra = f", {sent_per_change / 1e3:7.1f} kB sent/change" if name == "azblob" else ""
            print(
                f"   {name:6} {label:16}: {per_change:7.2f} ms/change "
                f"({per_change / BUDGET_MS * 100:5.1f}% of budget, {verdict}); "
                f"{writes} writes for {changes} changes{extra}"
            )
        if args.threaded_changes:
            threaded_section(
                {
                    "local": lambda: local_store(local_path),
                    "azblob": lambda: blob_store(azurite, container, "provision.state.json", meter),
                },
                args,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
