"""Mixed soak (issue 20): the faults of the second reliability pass, mixed on one tenant.

Each seed writes a manifest and runs `provision apply` (a subprocess, opaque bearer token) in
rounds against an in-process emulator whose tenant lives in a data file (so it can be
restarted with other options between rounds), with group creations answered ambiguously now
and then (504 or a dropped connection *after* the chat was made). Each round draws one fault:

* ``bitflip``: the run is SIGKILLed once its journal holds records, and one bit of a record
  that is not the last is flipped. The next command must refuse the journal; ``provision
  state repair`` must then keep every record (a record counts as lost when a chat or pending
  creation it journaled is not in the repaired state);
* ``zerotail``: the same kill, then zeros appended to the journal (a power-loss leftover):
  no refusal, no record lost;
* ``tenant``: the state (bound to tenant A) is applied against another tenant's emulator with
  the same opaque token: it must stop; every chat created there is a duplicate;
* ``clock``: the host's clock 10 minutes ahead of Graph's or behind it (the emulator's
  ``clock_offset_s``: its ``Date`` header and ``createdDateTime``) for a run that is killed,
  then, half the time, 20 minutes further back before the rerun (Graph's clock stays
  continuous: a host clock that jumps back shows as Graph's offset growing);
* ``retryafter``: 503s with ``Retry-After: 99999`` on some requests: the run must end (any
  exit) within ``--hang-after`` seconds, else it is counted as a hang and killed;
* ``lease`` (when Azurite is installed): a run on an ``azblob://`` state whose lease is broken
  (as ``provision force-unlock`` does) after a few creations, while the run that takes over
  starts at once; chats the old run created after the break are counted, and duplicates.

Members are object ids only: with UPN members, a oneOnOne chat recorded while its plan had
not resolved them (killed runs, reruns) fails a later refreshed plan with "members cannot
change" (seen while writing this soak; not one of issue 20's faults, left to its own issue).

Then runs without faults until one finishes, and counts from the emulator's side: duplicates
(chats made more than once, in either tenant), lost chats (desired, missing), lost records,
hangs and crashes (a run that ends in an internal error). ``provision plan
--detailed-exitcode`` must find nothing to do. By hand (marked ``slow`` in pytest)::

    python tests/soak/mixed_soak.py --seeds 3 --rounds 8 --groups 20 --pairs 10

``--code DIR`` runs `provision` from another source tree (``git archive COMMIT``) with this
harness and emulator: the figures before a fix. Seeds are printed; one line per seed and a
figure line; ``--json`` adds a JSON line. Exit
status 1 if anything was duplicated, lost, hung or crashed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

try:  # tests/ is on sys.path under pytest; tests/soak/ when run as a script
    from soak.kill_soak import write_manifest
except ImportError:  # pragma: no cover
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from soak.kill_soak import write_manifest

from provisioner.emulator import EmulatorServer
from provisioner.states.store import local_store

AMBIGUOUS = [
    "504=0.08,method=POST,path=/chats,chat-type=group",
    "drop=0.04,method=POST,path=/chats",
]
CLOCK_FAULTS = ["504=0.4,method=POST,path=/chats,chat-type=group"]
KINDS = ("bitflip", "zerotail", "tenant", "clock", "retryafter", "lease")
TENANT_B = "5b7c2d1e-0000-4000-8000-00000000000b"
MARK = b'[["compact",'
_UPN = re.compile(r"user\d+\.\d+@contoso\.com")
BROKEN = ("Traceback", "internal error", "This is a bug")


@dataclass
class Figures:
    seed: int
    runs: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    duplicates: int = 0
    lost: int = 0  # desired chats missing at the end
    lost_records: int = 0
    refusals_missed: int = 0  # damage that was not refused (read on as if torn)
    harm: Counter[str] = field(default_factory=Counter)  # "KIND duplicates|hangs" per round
    hangs: int = 0
    crashes: int = 0
    plan_exit: int = -1
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        bad = self.duplicates + self.lost + self.lost_records + self.hangs + self.crashes
        return bad == 0 and self.plan_exit == 0 and not self.errors


# --- Graph's clock ----------------------------------------------------------------------------

_OFFSET = [0.0]  # seconds Graph's clock is ahead of this host's (the next emulator started)


# --- one seed -------------------------------------------------------------------------------


class Seed:
    def __init__(self, workdir: Path, seed: int, args: argparse.Namespace) -> None:
        self.dir = workdir
        self.rng = random.Random(seed)
        self.args = args
        self.fig = Figures(seed)
        self.chats = write_manifest(workdir / "all.yaml", self.rng, args.groups, args.pairs)
        # Object ids only: a oneOnOne chat recorded with UPN members while the plan never
        # resolved them fails the next refreshed plan ("members cannot change"), a fault of
        # its own (see the module docstring), not one of this soak's.
        text = _UPN.sub(
            lambda m: str(uuid.uuid5(uuid.NAMESPACE_DNS, m.group(0))),
            (workdir / "all.yaml").read_text(),
        )
        (workdir / "all.yaml").write_text(text)
        for chat in self.chats:
            chat["members"] = [
                _UPN.sub(lambda m: str(uuid.uuid5(uuid.NAMESPACE_DNS, m.group(0))), u)
                for u in chat["members"]
            ]
        head, *entries = text.split("\n  - ")
        self.entries = [head, *(f"  - {e}" for e in entries)]
        self.state = workdir / "state.json"
        self.desired = 0
        self.kind = "start"  # the round's fault, for the figures per kind
        self.seen_duplicates = 0

    def grow(self, share: float) -> None:
        """Desire the first ``share`` of the chats (more each round: each run has work)."""
        n = self.desired = max(2, round(share * (len(self.entries) - 1)))
        text = "\n".join(self.entries[: n + 1]).rstrip("\n") + "\n"
        (self.dir / "chats.yaml").write_text(text)

    def env(self, url: str, **extra: str) -> dict[str, str]:
        env = dict(os.environ, PROVISION_GRAPH_URL=url, PROVISION_ACCESS_TOKEN="opaque-soak")
        env["PROVISION_CONSISTENCY_WINDOW"] = str(self.args.window)
        env.pop("PROVISION_STATE", None)
        if self.args.code:  # `provision` from another checkout (the harness stays this one)
            env["PYTHONPATH"] = os.pathsep.join(
                filter(None, [self.args.code, env.get("PYTHONPATH")])
            )
        env.update(extra)
        return env

    @contextlib.contextmanager
    def emulator(self, name: str = "a", **options: Any) -> Iterator[EmulatorServer]:
        with EmulatorServer(
            data_path=self.dir / f"emulator-{name}.json",
            seed=self.rng.randrange(10**6),
            limits="off",
            invent_users=True,
            list_delay_s=(0.1, 0.6),
            tenant_id=TENANT_B if name == "b" else "8f2a7c1e-0000-4000-8000-00000000000a",
            clock_offset_s=_OFFSET[0],
            **options,
        ) as server:
            yield server
            if name == "a":  # what this round's fault duplicated in tenant A
                made = sum(len(g) - 1 for g in server.tenant.duplicate_group_chats())
                if made > self.seen_duplicates:
                    self.fig.harm[f"{self.kind} duplicates"] += made - self.seen_duplicates
                    self.seen_duplicates = made

    def apply(
        self,
        url: str,
        *,
        state: str | None = None,
        kill_when: int = 0,
        env: dict[str, str] | None = None,
    ) -> tuple[int | None, str]:
        """One `provision apply`; SIGKILLed once the journal holds ``kill_when`` records
        (0: never). Returns (exit code or None when killed or hung, stderr)."""
        cmd = [sys.executable, "-m", "provisioner", "apply", "chats.yaml", "--auto-approve"]
        cmd += ["--state", state or str(self.state), "--quiet", "--max-rps", "40"]
        proc = subprocess.Popen(
            cmd, cwd=self.dir, env=env or self.env(url), stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.fig.runs += 1
        deadline = time.monotonic() + self.args.hang_after
        journal = Path(str(self.state) + ".journal")
        # Records of this run: a run starts a fresh journal (header only) once it has read
        # the state, so count from the first time the journal holds fewer than at the start.
        before, fresh = _records(journal), not journal.exists()
        while proc.poll() is None and time.monotonic() < deadline:
            now = _records(journal)
            fresh = fresh or now < before or not journal.exists()
            if kill_when and fresh and now >= kill_when:
                proc.send_signal(signal.SIGKILL)
                proc.communicate()
                return None, ""
            time.sleep(0.005)
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
            self.fig.hangs += 1
            self.fig.harm[f"{self.kind} hangs"] += 1
            self.fig.errors.append(f"a run did not end within {self.args.hang_after:g}s")
            return None, ""
        _, err = proc.communicate()
        if self.args.verbose:
            print(f"    apply exited {proc.returncode}: {err.strip()[-300:]}", flush=True)
        if any(word in err for word in BROKEN):
            self.fig.crashes += 1
            self.fig.errors.append(f"crash: {err[-400:]}")
        return proc.returncode, err

    def provision(self, *args: str, url: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "provisioner", *args, "--state", str(self.state)],
            cwd=self.dir, env=self.env(url), capture_output=True, text=True, check=False,
        )  # fmt: skip

    # -- the faults ------------------------------------------------------------------------

    def damage(self, url: str, kind: str) -> None:
        journal = Path(str(self.state) + ".journal")
        self.apply(url, kill_when=self.rng.randint(2, 3))
        if not journal.exists():
            return  # the run finished before it could be killed
        raw = bytearray(journal.read_bytes())
        frames = _frames(bytes(raw))  # the header's, then each record's
        expected = _journaled(self.state)
        at, absorbed = -1, False
        if kind == "zerotail":
            journal.write_bytes(bytes(raw) + b"\0" * self.rng.choice((7, 512, 4096)))
        elif len(frames) >= 3:
            # Any frame but the last (the header included): a good record follows the damage.
            index = self.rng.randrange(len(frames) - 1)
            start, end = frames[index]
            at = self.rng.randrange(start, end)
            # Damage before a compaction marker the state already honours changes nothing.
            markers = [i for i, (a, b) in enumerate(frames) if raw[a + 8 : b].startswith(MARK)]
            absorbed = bool(markers) and index < markers[-1]
            raw[at] ^= 1 << self.rng.randrange(8)
            journal.write_bytes(bytes(raw))
        else:
            return
        self.fig.faults[kind] += 1
        seen = self.provision("state", "list", url=url)
        if self.args.verbose:
            print(
                f"    {kind} at byte {at if kind == 'bitflip' else len(raw)} of {len(raw)}: "
                f"state list exited {seen.returncode}",
                flush=True,
            )
        if kind == "bitflip":
            if seen.returncode == 0:
                self.fig.refusals_missed += not absorbed
            elif "state repair" not in seen.stderr:
                self.fig.errors.append(
                    f"a refusal without the repair hint (exit {seen.returncode}): "
                    f"{seen.stderr[-300:]}{seen.stdout[-300:]}"
                )
            fixed = self.provision("state", "repair", url=url)
            if fixed.returncode != 0:
                self.fig.errors.append(f"state repair failed: {fixed.stderr[-300:]}")
        self.fig.lost_records += _missing(self.state, expected)

    def tenant_switch(self) -> None:
        with self.emulator("b") as other:
            self.fig.faults["tenant"] += 1
            self.apply(other.url)
            made = len(other.tenant.chats(include_deleted=False))
            self.fig.duplicates += made  # every chat made in B exists in A (or will)
            self.fig.harm["tenant duplicates"] += made
            if made:
                self.fig.errors.append(f"{made} chats created in another tenant")

    def lease_break(self, azurite: Any) -> None:
        from provisioner.states.azblob.store import open_azblob_store

        spec = f"azblob://devstoreaccount1/{azurite.new_container()}/s.json"
        with self.emulator(f"lease{self.fig.faults['lease']}", faults=AMBIGUOUS) as server:
            self.fig.faults["lease"] += 1
            env = self.env(server.url, **azurite.env)
            codes: list[int | None] = []

            def break_then_take_over() -> None:
                # As soon as the old run made two chats: force-unlock, and a new run at once.
                store = open_azblob_store(spec, env=azurite.env)
                deadline = time.monotonic() + self.args.hang_after
                while len(server.tenant.chats()) < 2 and time.monotonic() < deadline:
                    time.sleep(0.002)
                holder = store.current_lock()
                if holder is not None:
                    store.force_unlock(holder.id)
                codes.append(self.apply("", state=spec, env=env)[0])

            rescuer = threading.Thread(target=break_then_take_over)
            rescuer.start()
            self.apply("", state=spec, env=env)
            rescuer.join()
            for _ in range(3):  # then until one run finishes
                if codes[-1] == 0:
                    break
                codes.append(self.apply("", state=spec, env=env)[0])
            duplicates, missing = count_chats(server, self.chats[: self.desired])
            self.fig.harm["lease duplicates"] += duplicates
            self.fig.duplicates += duplicates
            self.fig.lost += missing

    # -- the seed --------------------------------------------------------------------------

    def run(self, azurite: Any) -> Figures:
        started = time.monotonic()
        kinds = [k for k in self.args.kinds.split(",") if k != "lease" or azurite is not None]
        order = self.rng.sample(kinds, len(kinds))
        self.grow(0.2)
        with self.emulator(faults=AMBIGUOUS) as server:
            self.apply(server.url)  # the state learns its tenant (from the chats Graph returns)
        for n in range(self.args.rounds):
            self.grow(0.2 + 0.8 * (n + 1) / self.args.rounds)
            # --cycle: every kind in turn (in a seeded order), else drawn at random.
            kind = order[n % len(order)] if self.args.cycle else self.rng.choice(kinds)
            self.kind = kind
            print(f"  seed {self.fig.seed}: {kind}", flush=True)
            if kind == "tenant":
                self.tenant_switch()
            elif kind == "lease":
                self.lease_break(azurite)
            elif kind == "clock":
                self.fig.faults["clock"] += 1
                # The host 10 min ahead of Graph or behind it for a killed run, then its clock
                # jumps back 20 min (or not at all) before the rerun. Only the host's clock may
                # jump: Graph's stays continuous, so the jump shows as Graph's offset growing.
                # Many ambiguous creations: each must be matched across the offset.
                _OFFSET[0] = self.rng.choice((-600.0, 600.0))
                with self.emulator(faults=CLOCK_FAULTS) as server:
                    self.apply(server.url, kill_when=self.rng.randint(3, 6))
                _OFFSET[0] += self.rng.choice((0.0, 1200.0))
                with self.emulator(faults=CLOCK_FAULTS) as server:
                    self.apply(server.url)
                _OFFSET[0] = 0.0
            elif kind == "retryafter":
                self.fig.faults["retryafter"] += 1
                with self.emulator(faults=["503=0.05"], fault_retry_after_s=99999) as server:
                    self.apply(server.url)
            else:
                with self.emulator(faults=AMBIGUOUS) as server:
                    self.damage(server.url, kind)
        self.kind = "final"
        with self.emulator() as server:
            for _ in range(4):
                code, _ = self.apply(server.url)
                if code == 0:
                    break
            duplicates, missing = count_chats(server, self.chats)
            self.fig.duplicates += duplicates
            self.fig.lost += missing
            plan = self.provision("plan", "chats.yaml", "--detailed-exitcode", url=server.url)
            self.fig.plan_exit = plan.returncode
            if plan.returncode != 0:
                self.fig.errors.append(f"plan exited {plan.returncode}: {plan.stderr[-300:]}")
        self.fig.seconds = time.monotonic() - started
        return self.fig


def count_chats(server: EmulatorServer, chats: list[dict[str, Any]]) -> tuple[int, int]:
    """(duplicates, missing) of ``chats``, from the emulator's side only (a state that cannot
    be read does not hide anything)."""
    tenant = server.tenant
    duplicates = sum(len(g) - 1 for g in tenant.duplicate_group_chats())
    missing = 0
    for chat in chats:
        found = tenant.find_chats(
            chat_type=chat["type"], topic=chat["topic"], members=chat["members"]
        )
        missing += not found
        if len(found) > 1 and chat["type"] != "group":  # groups: counted above
            duplicates += len(found) - 1
    return duplicates, missing


def _frames(raw: bytes) -> list[tuple[int, int]]:
    """(start, end) of each whole frame (4-byte length, 4-byte CRC, payload): read here, not
    with the code under test, so the damage does not depend on how it reads."""
    out, at = [], 0
    while at + 8 <= len(raw):
        end = at + 8 + int.from_bytes(raw[at : at + 4], "big")
        if end > len(raw) or end == at + 8:  # cut short, or zeros (a tail of no records)
            break
        out.append((at, end))
        at = end
    return out


def _records(journal: Path) -> int:
    try:
        return max(0, len(_frames(journal.read_bytes())) - 1)
    except OSError:  # not there yet
        return 0


def _journaled(state: Path) -> dict[str, str | None]:
    """What the state and its journal hold right now: key -> chat id (None: pending)."""
    try:
        seen = local_store(str(state)).read()
    except Exception:
        return {}
    held: dict[str, str | None] = {k: None for k in seen.intents}
    held.update({k: r.chat_id for k, r in seen.chats.items()})
    return held


def _missing(state: Path, expected: dict[str, str | None]) -> int:
    now = _journaled(state)
    return sum(
        1 for k, chat_id in expected.items() if k not in now or (chat_id and now[k] != chat_id)
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--first-seed", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--groups", type=int, default=16)
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--window", type=float, default=2.0)
    parser.add_argument("--hang-after", type=float, default=90.0)
    parser.add_argument("--kinds", default=",".join(KINDS), help="the faults to draw from")
    parser.add_argument("--cycle", action="store_true", help="every kind in turn")
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--code", default="", help="run `provision` from this source tree (e.g. an older "
        "commit, to measure the before); the harness and the emulator stay this checkout's",
    )  # fmt: skip
    parser.add_argument("--keep", action="store_true", help="keep each seed's directory")
    parser.add_argument("--verbose", action="store_true", help="each run's exit and stderr")
    args = parser.parse_args(argv)
    first = (
        args.first_seed if args.first_seed is not None else random.SystemRandom().randrange(10**6)
    )
    azurite = _azurite()
    total: list[Figures] = []
    started = time.monotonic()
    try:
        for seed in range(first, first + args.seeds):
            print(f"seed {seed}", flush=True)
            if args.keep:  # to look at what a failing seed left
                tmp = tempfile.mkdtemp(prefix=f"mixed-soak-{seed}-")
                print(f"  workdir {tmp}", flush=True)
                fig = Seed(Path(tmp), seed, args).run(azurite)
            else:
                with tempfile.TemporaryDirectory(prefix="mixed-soak-") as tmp:
                    fig = Seed(Path(tmp), seed, args).run(azurite)
            total.append(fig)
            print(_line(f"seed {seed}:", [fig]), flush=True)
            for error in fig.errors:
                print(f"  ! {error}", flush=True)
    finally:
        if azurite is not None:
            azurite.stop()
    print(_line(f"mixed soak (seeds {first}..{first + args.seeds - 1}):", total))
    if args.json:
        print(json.dumps(_figures(total, time.monotonic() - started)))
    return 0 if all(f.ok for f in total) else 1


def _azurite() -> Any:
    try:
        from lib.azurite_support import Azurite, find_azurite
    except ImportError:
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
        from lib.azurite_support import Azurite, find_azurite
    executable = find_azurite()
    if executable is None:
        print("Azurite not installed: no lease rounds", flush=True)
        return None
    azurite = Azurite(executable)
    azurite.start()
    return azurite


def _figures(figs: list[Figures], seconds: float) -> dict[str, Any]:
    faults: Counter[str] = Counter()
    harm: Counter[str] = Counter()
    for f in figs:
        faults.update(f.faults)
        harm.update(f.harm)
    return {
        "soak": "mixed",
        "seeds": [f.seed for f in figs],
        "runs": sum(f.runs for f in figs),
        "faults": sum(faults.values()),
        "by_kind": dict(sorted(faults.items())),
        "harm": dict(sorted(harm.items())),  # duplicates and hangs, by the round's fault
        "duplicates": sum(f.duplicates for f in figs),
        "lost": sum(f.lost for f in figs),
        "lost_records": sum(f.lost_records for f in figs),
        "refusals_missed": sum(f.refusals_missed for f in figs),
        "hangs": sum(f.hangs for f in figs),
        # RELIABILITY.md's "crashes": runs that ended in an internal error or without a result.
        "crashes": sum(f.crashes + f.hangs for f in figs),
        "seconds": round(seconds, 1),
    }


def _line(prefix: str, figs: list[Figures]) -> str:
    d = _figures(figs, sum(f.seconds for f in figs))
    kinds = ", ".join(f"{k} {n}" for k, n in d["by_kind"].items())
    return (
        f"{prefix} runs {d['runs']}, faults injected {d['faults']} ({kinds}), duplicates "
        f"{d['duplicates']}, lost chats {d['lost']}, lost records {d['lost_records']}, damage "
        f"read on as torn {d['refusals_missed']}, hangs {d['hangs']}, crashes "
        f"{d['crashes'] - d['hangs']}, "
        f"{d['seconds']:.0f}s"
    )


if __name__ == "__main__":
    sys.exit(main())
