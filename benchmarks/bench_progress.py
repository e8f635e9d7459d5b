"""How right apply's ETA is: predicted vs actual seconds left at 25, 50 and 75 % of the work.

    python benchmarks/bench_progress.py [--members-chats 150] [--members-each 5]
                                        [--creations 600] [--json FILE]

Two runs against the emulator enforcing Graph's documented Teams limits, unscaled (30 writes/s
per tenant, 1 request/s per chat, 4 member changes/min per chat), with 50-150 ms latency:

* member-heavy   150 existing group chats (created first, not measured) each gain 5
                 members: 750 member additions, paced by the per-chat member limit;
* creation-heavy 600 group chats created: paced by the tenant's write limit.

The apply runs in-process (operations.run_apply, as `provision apply` does) with a listener
that records every progress tick (0.2 s apart). At the first tick where the work done reaches
25/50/75 % of the plan's requests, the ETA shown then is compared with the time the run
actually still took. Reported: predicted, actual, error in seconds and in % of actual.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from provisioner.apply.control import ApplyListener, Progress

try:
    from _figures import Figure, write_figures  # run as a script: benchmarks/ is on sys.path
except ImportError:  # pragma: no cover
    from benchmarks._figures import Figure, write_figures

from provisioner.emulator import EmulatorServer
from provisioner.operations.apply import ApplySettings, NoHooks, load_target, run_apply
from provisioner.operations.clients import EmulatorToken

MARKS = (0.25, 0.50, 0.75)
#: The emulator's limits (--limits): Graph's documented ones, or a tenant slower than that
#: (0.7: 70 % of every documented rate, which provision is not told about).
LIMITS: str | float = "documented"


class Recorder(ApplyListener):
    def __init__(self) -> None:
        self.ticks: list[Progress] = []

    def tick(self, progress: Progress) -> None:
        self.ticks.append(progress)


class Hooks(NoHooks):
    def __init__(self, listener: ApplyListener | None) -> None:
        self.listener = listener


def _users(n: int, seed: str) -> list[str]:
    ns = uuid.uuid5(uuid.NAMESPACE_URL, seed)
    return [str(uuid.uuid5(ns, f"user-{i}")) for i in range(n)]


def _manifest(path: Path, chats: list[tuple[str, list[str]]]) -> str:
    lines = ["version: 1", "chats:"]
    for key, members in chats:
        lines += [f"  - key: {key}", "    chatType: group", f"    topic: Bench {key}"]
        lines += ["    members:", *(f"      - user: {m}" for m in members)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def _apply(server: EmulatorServer, manifest: str, state: str, listener: Recorder | None) -> Any:
    outcome = run_apply(
        load_target([manifest], None),
        state,
        None,
        graph_url=server.url,
        credential=EmulatorToken(),
        settings=ApplySettings(),
        hooks=Hooks(listener),
    )
    return outcome.result


def _marks(ticks: list[Progress], duration: float) -> list[dict[str, float | None]]:
    rows = []
    for mark in MARKS:
        tick = next(t for t in ticks if t.work_total and t.work_done >= mark * t.work_total)
        actual = duration - tick.elapsed
        predicted = tick.eta_s
        error = None if predicted is None else predicted - actual
        rows.append(
            {
                "mark": mark,
                "at_s": round(tick.elapsed, 1),
                "predicted_s": None if predicted is None else round(predicted, 1),
                "actual_s": round(actual, 1),
                "error_s": None if error is None else round(error, 1),
                "error_pct": None if error is None else round(100 * error / actual, 1),
            }
        )
    return rows


def member_heavy(chats: int, each: int) -> dict[str, Any]:
    with (
        tempfile.TemporaryDirectory() as tmp,
        EmulatorServer(
            limits=LIMITS,
            latency_ms=(50.0, 150.0),
            seed=1,
            invent_users=True,  # made-up users (a load test)
            list_delay_s=0,  # no ambiguous answers: the listing lag is measured elsewhere
        ) as server,
    ):
        users = _users(chats * (3 + each), "members")
        base = [(f"team-{i:04d}", users[i * (3 + each) : i * (3 + each) + 3]) for i in range(chats)]
        state = str(Path(tmp) / "state.json")
        _apply(server, _manifest(Path(tmp) / "a.yaml", base), state, None)
        grown = [
            (f"team-{i:04d}", users[i * (3 + each) : (i + 1) * (3 + each)]) for i in range(chats)
        ]
        recorder = Recorder()
        result = _apply(server, _manifest(Path(tmp) / "b.yaml", grown), state, recorder)
    return _report("member-heavy", f"{chats} chats gain {each} members each", recorder, result)


def creation_heavy(chats: int) -> dict[str, Any]:
    with (
        tempfile.TemporaryDirectory() as tmp,
        EmulatorServer(
            limits=LIMITS,
            latency_ms=(50.0, 150.0),
            seed=2,
            invent_users=True,  # made-up users (a load test)
            list_delay_s=0,  # no ambiguous answers: the listing lag is measured elsewhere
        ) as server,
    ):
        users = _users(chats + 2, "creations")
        new = [(f"new-{i:04d}", users[i : i + 3]) for i in range(chats)]
        recorder = Recorder()
        result = _apply(
            server, _manifest(Path(tmp) / "c.yaml", new), str(Path(tmp) / "s"), recorder
        )
    return _report("creation-heavy", f"{chats} group chats created", recorder, result)


def _report(name: str, what: str, recorder: Recorder, result: Any) -> dict[str, Any]:
    duration = result.duration_s
    first = next((t for t in recorder.ticks if t.done > 0), None)
    return {
        "run": name,
        "what": what,
        "duration_s": round(duration, 1),
        "planned_requests": result.work_total,
        "requests_sent": result.requests,
        "throttled": result.throttled,
        "first_chat_done_at_s": round(first.elapsed, 1) if first else None,
        "marks": _marks(recorder.ticks, duration),
        "worst": _worst(recorder.ticks, duration),
    }


def _worst(ticks: list[Progress], duration: float) -> dict[str, float]:
    """The largest ETA error over every tick between 10 and 90 % of the work (the marks fall
    where the work just advanced; this covers the pauses between member bursts too)."""
    errors = [
        (t.eta_s - (duration - t.elapsed), duration - t.elapsed)
        for t in ticks
        if t.eta_s is not None and t.work_total and 0.1 <= t.work_done / t.work_total <= 0.9
    ]
    worst_s = max(errors, key=lambda e: abs(e[0]))
    worst_pct = max(errors, key=lambda e: abs(e[0] / e[1]))
    return {
        "ticks": len(errors),
        "error_s": round(worst_s[0], 1),
        "error_pct": round(100 * worst_pct[0] / worst_pct[1], 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--members-chats", type=int, default=150)
    parser.add_argument("--members-each", type=int, default=5)
    parser.add_argument("--creations", type=int, default=600)
    parser.add_argument("--limits", default="documented", help="documented, or a scale: 0.7")
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args(argv)
    global LIMITS
    LIMITS = args.limits if args.limits == "documented" else float(args.limits)
    started = time.monotonic()
    runs = [member_heavy(args.members_chats, args.members_each), creation_heavy(args.creations)]
    for run in runs:
        print(f"{run['run']}: {run['what']}; {run['duration_s']}s, {run['planned_requests']} "
              f"planned requests, {run['requests_sent']} sent, {run['throttled']} throttled; "
              f"first chat done at {run['first_chat_done_at_s']}s")  # fmt: skip
        for m in run["marks"]:
            mark = int(m["mark"] * 100)
            print(f"  {mark}% at {m['at_s']}s: ETA {m['predicted_s']}s, actual "
                  f"{m['actual_s']}s, error {m['error_s']}s ({m['error_pct']}%)")  # fmt: skip
        worst = run["worst"]
        print(f"  worst over {worst['ticks']} ticks from 10 to 90 %: {worst['error_s']}s, "
              f"{worst['error_pct']}%")  # fmt: skip
    print(f"({time.monotonic() - started:.0f}s in all)")
    write_figures(args.json, "progress", [f for run in runs for f in figures(run)])
    return 0


def figures(run: dict[str, Any]) -> list[Figure]:
    """Each mark's ETA against the seconds the run then still took; held to within 20 %."""
    out = []
    for m in run["marks"]:
        predicted, actual = m["predicted_s"], m["actual_s"]
        ratio = predicted / actual if predicted is not None and actual else None
        out.append(
            Figure(
                f"ETA at {int(m['mark'] * 100)} % of the work, {run['what']}",
                predicted if predicted is not None else float("nan"),
                "s",
                actual,
                "seconds the run still took",
                ratio,
                "0.8 <= ratio <= 1.2",
                ratio is not None and 0.8 <= ratio <= 1.2,
            )
        )
    return out


if __name__ == "__main__":
    sys.exit(main())
