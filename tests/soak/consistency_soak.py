"""Consistency soak (issue 14): `provision apply` against an emulator that lists new chats and
memberships late (up to 30 s), answers 30 % of group creations ambiguously (504 or a dropped
connection *after* making the chat) and 5 % of all requests with 503, over a manifest that
mixes 30-member chats, out-of-tenant members (object id + tenantId) and members named by UPN.

One seed: apply the manifest; change members (add to some chats, remove from others) and
apply again; then, while Graph's lists still lag, `plan --detailed-exitcode` (refreshing)
must find nothing to do. From the emulator's side: duplicates (must be 0), missing chats
(0), members wrongly removed (0: every desired member is in its chat), and what settling cost:
lookups, their extra requests, and the seconds chats waited for Graph's lists.

``tests/acceptance/test_soak.py`` runs a short version (lag up to 1.5 s, a 3 s window) in the
default test run. By hand, with Graph-like figures::

    python tests/soak/consistency_soak.py --seeds 3 --groups 40 --list-delay 1-30 --window 60
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from unittest import mock

from provisioner.cli.main import main as provision
from provisioner.emulator import EmulatorServer, User, made_up_user

FAULTS = (
    "504=0.15,method=POST,path=/chats,chat-type=group",
    "drop=0.15,method=POST,path=/chats,chat-type=group",
    "503=0.05",
)
PARTNER_TENANT = "4dc1fe35-8ac6-4f0d-904a-7ebcd364bea1"


@dataclass
class Chat:
    key: str
    topic: str
    members: list[tuple[str, str | None]]  # (GUID or UPN, tenantId of an external member)


@dataclass
class SoakReport:
    seed: int
    chats: int = 0
    members: int = 0
    ambiguous: int = 0  # 504 + drop injected on group creations
    faults: dict[str, int] = field(default_factory=dict)
    duplicates: int = 0
    missing: int = 0
    wrongly_removed: int = 0
    plan_exit: int = -1
    exit_codes: list[int] = field(default_factory=list)
    lookups: int = 0
    lookup_requests: int = 0
    settle_seconds: float = 0.0
    requests: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (
            self.duplicates == 0
            and self.missing == 0
            and self.wrongly_removed == 0
            and self.plan_exit == 0
            and all(code == 0 for code in self.exit_codes)
            and not self.errors
        )

    def line(self) -> str:
        return (
            f"seed {self.seed}: {self.chats} chats, {self.members} members, ambiguous group "
            f"creations {self.ambiguous}, faults {self.faults}, duplicates {self.duplicates}, "
            f"missing {self.missing}, members wrongly removed {self.wrongly_removed}, "
            f"plan exit {self.plan_exit}, lookups {self.lookups} costing "
            f"{self.lookup_requests} extra requests of {self.requests}, settling "
            f"{self.settle_seconds:.0f}s (summed over chats), {self.seconds:.0f}s"
            + ("" if self.ok else "  FAILED: " + "; ".join(self.errors))
        )


def directory(rng: random.Random, n: int) -> list[User]:
    """In-tenant users: UPNs (the manifest names half of them by UPN, half by object id)."""
    return [made_up_user(f"soak{i}.{rng.randrange(10**6)}@contoso.com") for i in range(n)]


def make_chats(rng: random.Random, users: list[User], groups: int) -> list[Chat]:
    chats = []
    for n in range(groups):
        size = 30 if n % 3 == 0 else rng.randint(3, 6)
        picked = rng.sample(users, size)
        members: list[tuple[str, str | None]] = [
            (u.user_principal_name if i % 2 else u.id, None) for i, u in enumerate(picked)
        ]
        if n % 3 == 1:  # a partner from another tenant, by object id (chat-post.md example 5)
            members.append((str(uuid.UUID(int=rng.getrandbits(128))), PARTNER_TENANT))
        chats.append(Chat(f"group-{n:03d}", f"Consistency {n}", members))
    return chats


def write_manifest(path: Path, chats: list[Chat]) -> None:
    lines = ["version: 1", "chats:"]
    for chat in chats:
        lines += [f"  - key: {chat.key}", "    chatType: group", f"    topic: {chat.topic}"]
        lines.append("    members:")
        for user, tenant in chat.members:
            lines.append(f"      - user: {user}")
            if tenant:
                lines.append(f"        tenantId: {tenant}")
    path.write_text("\n".join(lines) + "\n")


def change_members(rng: random.Random, chats: list[Chat], users: list[User]) -> None:
    """Add a member to every third chat, remove one (in-tenant) from every third other."""
    for n, chat in enumerate(chats):
        names = {u.lower() for u, _ in chat.members}
        if n % 3 == 0:
            extra = next(
                u
                for u in rng.sample(users, len(users))
                if u.id not in names and u.user_principal_name.lower() not in names
            )
            chat.members.append((extra.user_principal_name, None))
        elif n % 3 == 1 and len(chat.members) > 3:
            inside = [m for m in chat.members if m[1] is None]
            chat.members.remove(inside[-1])


@contextlib.contextmanager
def _environment(url: str, window: float, workdir: Path) -> Iterator[None]:
    env = {
        "PROVISION_GRAPH_URL": url,
        "PROVISION_ACCESS_TOKEN": "soak",
        "PROVISION_CONSISTENCY_WINDOW": str(window),
    }
    cleared = [n for n in os.environ if n.startswith(("PROVISION_", "AZURE_"))]
    before = os.getcwd()
    with mock.patch.dict(os.environ, env):
        for name in cleared:
            if name not in env:
                os.environ.pop(name, None)
        os.chdir(workdir)
        try:
            yield
        finally:
            os.chdir(before)


def _run(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = provision(list(args))
    return code, out.getvalue(), err.getvalue()


def soak_run(
    workdir: Path,
    *,
    seed: int,
    groups: int = 30,
    list_delay: tuple[float, float] = (1.0, 30.0),
    window: float = 60.0,
) -> SoakReport:
    rng = random.Random(seed)
    report = SoakReport(seed=seed)
    started = time.monotonic()
    users = directory(rng, max(40, groups))
    chats = make_chats(rng, users, groups)
    report.chats = len(chats)
    with (
        EmulatorServer(
            users=users,
            faults=list(FAULTS),
            seed=seed,
            limits="documented",
            list_delay_s=list_delay,
            fault_retry_after_s=0.2,
        ) as server,
        _environment(server.url, window, workdir),
    ):
        for phase in ("create", "change members"):
            if phase == "change members":
                change_members(rng, chats, users)
            write_manifest(workdir / "chats.yaml", chats)
            code, out, err = _run("apply", "chats.yaml", "--auto-approve", "--format", "json")
            report.exit_codes.append(code)
            _count(report, out, err, phase)
        server.set_faults([])  # the checks judge the tenant, not the client's retries
        counters = server.tenant.counters
        report.faults = dict(counters.faults)
        report.ambiguous = counters.faults["504"] + counters.faults["drop"]
        _check(server, chats, report)
        code, out, err = _run("plan", "chats.yaml", "--refresh", "--detailed-exitcode")
        report.plan_exit = code
        if code != 0:
            report.errors.append(f"plan exited {code}: {out[-400:]}{err[-300:]}")
    report.seconds = time.monotonic() - started
    return report


def _count(report: SoakReport, out: str, err: str, phase: str) -> None:
    try:
        doc = json.loads(out)
    except ValueError:
        report.errors.append(f"{phase}: no JSON result: {err[-400:]}")
        return
    stats = doc["stats"]
    report.requests += stats["requests"]
    report.lookups += stats["reconciliation"]["lookups"]
    report.lookup_requests += stats["reconciliation"]["requests"]
    report.settle_seconds += stats["reconciliation"].get("seconds", 0.0)
    failed = [o for o in doc["outcomes"] if o["status"] not in ("created", "adopted", "updated")]
    if failed:
        report.errors.append(f"{phase}: {[(o['key'], o['status']) for o in failed[:3]]}")


def _check(server: EmulatorServer, chats: list[Chat], report: SoakReport) -> None:
    tenant = server.tenant
    report.duplicates = sum(len(g) - 1 for g in tenant.duplicate_group_chats())
    for chat in chats:
        wanted = {tenant.user_id(u) or u.lower() for u, _ in chat.members}
        report.members += len(wanted)
        found = tenant.find_chats(chat_type="group", topic=chat.topic)
        if not found:
            report.missing += 1
            continue
        have = found[0].member_user_ids
        report.wrongly_removed += len(wanted - have)
        if have - wanted:
            report.errors.append(f"{chat.key}: members that should not be there: {have - wanted}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=1)
    parser.add_argument("--groups", type=int, default=30)
    parser.add_argument("--list-delay", default="1-30", help="LO-HI seconds")
    parser.add_argument("--window", type=float, default=60.0)
    parser.add_argument("--json", action="store_true", help="Print the figures as JSON too.")
    args = parser.parse_args(argv)
    lo, _, hi = args.list_delay.partition("-")
    lag = (float(lo), float(hi or lo))
    reports = []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        with tempfile.TemporaryDirectory(prefix="provision-consistency-") as tmp:
            report = soak_run(
                Path(tmp), seed=seed, groups=args.groups, list_delay=lag, window=args.window
            )
        reports.append(report)
        print(report.line(), flush=True)
    total = {
        "seeds": len(reports),
        "chats": sum(r.chats for r in reports),
        "ambiguous": sum(r.ambiguous for r in reports),
        "duplicates": sum(r.duplicates for r in reports),
        "missing": sum(r.missing for r in reports),
        "wrongly_removed": sum(r.wrongly_removed for r in reports),
        "plan_exit_nonzero": sum(1 for r in reports if r.plan_exit != 0),
        "lookups": sum(r.lookups for r in reports),
        "lookup_requests": sum(r.lookup_requests for r in reports),
        "requests": sum(r.requests for r in reports),
        "settle_seconds": round(sum(r.settle_seconds for r in reports), 1),
        "seconds": round(sum(r.seconds for r in reports), 1),
    }
    print("total: " + ", ".join(f"{k} {v}" for k, v in total.items()))
    if args.json:
        print(json.dumps({"soak": "consistency", **total}))
    return 0 if all(r.ok for r in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
