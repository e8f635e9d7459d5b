"""Fault soak: one `provision apply` through 429 storms, 503s, ambiguous 504s and dropped
connections, and token expiry; then count what the tenant holds.

The emulator (in-process, Graph's documented limits) injects, for the whole run:

* ``503`` with Retry-After on 4 % of all requests (nothing done);
* ``504`` and ``drop`` *after* the change on 5 % + 3 % of group creations (the ambiguous case a
  careless client turns into a duplicate) and 3 % + 2 % of oneOnOne creations;
* a 429 storm every few seconds: for ~0.6 s, 85 % of all requests are throttled "although no
  limit was reached" (``concepts/throttling-limits.md``), on top of the documented buckets;
* token expiry: every bearer token is refused with 401 ``token_lifetime_s`` after first use,
  so the run must refresh its token. The credential is the real MSAL client-credentials flow
  (``AZURE_CLIENT_SECRET``) with only its HTTP to the login host faked, as in the auth tests.

`provision apply` runs once, in-process (``cli.main``), then the tenant is checked from the
emulator's side with the kill soak's checks (``kill_soak._check_tenant``): every desired chat
exactly once, no duplicate group chat, nothing extra; and ``provision plan --detailed-exitcode``
(refreshing from Graph) must find nothing to do.

``tests/acceptance/test_soak.py`` runs a small version in the default test run. By hand::

    python tests/soak/fault_soak.py --seeds 5 --groups 150 --pairs 100

It prints one line per seed and a figure line: runs, faults injected (by kind), duplicates,
lost chats, crashes. Exit status 1 if any seed lost or duplicated a chat or crashed.
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
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import parse_qs

try:  # tests/ is on sys.path under pytest; tests/soak/ when run as a script
    from soak.kill_soak import Report, _check_tenant, write_manifest
except ImportError:  # pragma: no cover
    from kill_soak import Report, _check_tenant, write_manifest  # type: ignore[no-redef, import-not-found]

from provisioner.cli import options as cli_options
from provisioner.cli.main import main as provision
from provisioner.emulator import EmulatorServer

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
CLIENT = "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0"
BASE_FAULTS = (
    "503=0.04",
    "504=0.05,method=POST,path=/chats,chat-type=group",
    "drop=0.03,method=POST,path=/chats,chat-type=group",
    "504=0.03,method=POST,path=/chats,chat-type=oneOnOne",
    "drop=0.02,method=POST,path=/chats,chat-type=oneOnOne",
)
STORM = "429=0.85"


@dataclass
class FaultReport:
    seed: int
    chats: int = 0
    runs: int = 0
    exit_code: int = -1
    crashes: int = 0  # internal errors or exceptions out of `provision apply`
    storms: int = 0
    faults: Counter[str] = field(default_factory=Counter)  # injected by the emulator, by kind
    throttled_by_limits: int = 0  # 429 from the documented buckets
    unauthorized: int = 0  # 401s from token expiry
    tokens_issued: int = 0  # by the (fake) login endpoint: 1 + refreshes
    duplicates: int = 0
    missing: int = 0
    wrong: int = 0
    extra_chats: int = 0
    plan_exit: int = -1
    seconds: float = 0.0
    result: dict[str, Any] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    @property
    def injected(self) -> int:
        """Every fault a careful client had to survive: injected ones, 401s from expiry."""
        return sum(self.faults.values()) + self.unauthorized

    @property
    def ok(self) -> bool:
        return (
            self.exit_code == 0
            and self.crashes == 0
            and self.duplicates == 0
            and self.missing == 0
            and self.wrong == 0
            and self.extra_chats == 0
            and self.plan_exit == 0
            and not self.errors
        )


class FakeLogin:
    """The Microsoft Entra endpoints MSAL talks to: every client-credentials request gets a
    new token (so a refresh really is a new token the emulator has not seen)."""

    def __init__(self) -> None:
        self.issued = 0
        self._lock = threading.Lock()

    def get(self, url: str, params: Any = None, headers: Any = None, **kw: Any) -> _Answer:
        root = f"https://login.microsoftonline.com/{TENANT}"
        return _Answer(
            200,
            {
                "token_endpoint": f"{root}/oauth2/v2.0/token",
                "authorization_endpoint": f"{root}/oauth2/v2.0/authorize",
                "issuer": f"{root}/v2.0",
            },
        )

    def post(self, url: str, params: Any = None, data: Any = None, **kw: Any) -> _Answer:
        form = data if isinstance(data, dict) else {k: v[0] for k, v in parse_qs(data).items()}
        if form.get("grant_type") != "client_credentials":
            return _Answer(400, {"error": "unsupported_grant_type"})
        with self._lock:
            self.issued += 1
            n = self.issued
        return _Answer(
            200, {"access_token": f"soak-{n}", "expires_in": 3600, "token_type": "Bearer"}
        )


class _Answer:
    def __init__(self, status: int, body: Any) -> None:
        self.status_code = status
        self.text = json.dumps(body)
        self.headers = {"Content-Type": "application/json"}

    def json(self) -> Any:
        return json.loads(self.text)

    def raise_for_status(self) -> None:
        if self.status_code >= 400:
            raise RuntimeError(f"HTTP {self.status_code}")


@contextlib.contextmanager
def _environment(graph_url: str, login: FakeLogin, window: float) -> Iterator[None]:
    real = cli_options.credential_from_env

    def with_fake_login(*args: Any, **kwargs: Any) -> Any:
        return real(*args, **{**kwargs, "http_client": login})

    env = {
        "PROVISION_GRAPH_URL": graph_url,
        "AZURE_TENANT_ID": TENANT,
        "AZURE_CLIENT_ID": CLIENT,
        "AZURE_CLIENT_SECRET": "soak-secret",
        "PROVISION_CONSISTENCY_WINDOW": str(window),
    }
    cleared = [n for n in os.environ if n.startswith("PROVISION_") or n.startswith("AZURE_")]
    with (
        mock.patch.dict(os.environ, env),
        mock.patch.object(cli_options, "credential_from_env", with_fake_login),
    ):
        for name in cleared:
            if name not in env:
                os.environ.pop(name, None)
        yield


@contextlib.contextmanager
def _chdir(path: Path) -> Iterator[None]:  # contextlib.chdir is Python 3.11+
    before = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


def _run(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = provision(list(args))
    return code, out.getvalue(), err.getvalue()


class _Storms(threading.Thread):
    """Every ``every`` seconds, throttle nearly everything for ``length`` seconds."""

    def __init__(self, server: EmulatorServer, rng: random.Random, every: float, length: float):
        super().__init__(daemon=True)
        self.server, self.rng, self.every, self.length = server, rng, every, length
        self.count = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(self.rng.uniform(0.5, 1.5) * self.every):
            self.server.set_faults([*BASE_FAULTS, STORM])
            self.count += 1
            self.done.wait(self.length)
            self.server.set_faults(list(BASE_FAULTS))

    def stop(self) -> None:
        self.done.set()
        self.join()
        self.server.set_faults(list(BASE_FAULTS))


def fault_run(
    workdir: Path,
    *,
    seed: int,
    groups: int = 40,
    pairs: int = 30,
    token_lifetime_s: float = 2.0,
    storm_every_s: float = 3.0,
    storm_s: float = 0.6,
    concurrency: int | None = None,
    list_delay: tuple[float, float] = (1.0, 4.0),
    window: float = 60.0,
) -> FaultReport:
    """One seed: one `provision apply` through the faults, then the checks."""
    rng = random.Random(seed)
    report = FaultReport(seed=seed)
    started = time.monotonic()
    chats = write_manifest(workdir / "chats.yaml", rng, groups, pairs)
    report.chats = len(chats)
    state_path = workdir / "state.json"
    login = FakeLogin()
    with EmulatorServer(
        faults=list(BASE_FAULTS),
        seed=seed,
        limits="documented",
        token_lifetime_s=token_lifetime_s,
        fault_retry_after_s=0.2,
        invent_users=True,  # the manifest names made-up users
        list_delay_s=list_delay,  # Graph lists new chats late (issue 14)
    ) as server, _environment(server.url, login, window):  # fmt: skip
        storms = _Storms(server, rng, storm_every_s, storm_s)
        storms.start()
        args = ["apply", "chats.yaml", "--auto-approve", "--state", str(state_path)]
        args += ["--format", "json", "--quiet"]
        if concurrency is not None:
            args += ["--concurrency", str(concurrency)]
        with _chdir(workdir):
            try:
                report.runs = 1
                code, out, err = _run(*args)
            except BaseException as exc:  # a crash is a figure, not the end of the soak
                report.crashes += 1
                report.errors.append(f"apply raised {type(exc).__name__}: {exc}")
                code, out, err = -1, "", ""
            finally:
                storms.stop()
            report.exit_code = code
            report.storms = storms.count
            if "internal error" in err:
                report.crashes += 1
                report.errors.append(f"apply crashed: {err[-500:]}")
            try:
                report.result = json.loads(out) if out else {}
            except ValueError:
                report.errors.append(f"apply printed no JSON result: {err[-500:]}")
            if code != 0 and code != -1:
                report.errors.append(f"apply exited {code}: {_failures(report.result, err)}")
            counters = server.tenant.counters
            report.faults = Counter(counters.faults)
            report.throttled_by_limits = counters.throttled_total
            report.unauthorized = counters.unauthorized_total
            report.tokens_issued = login.issued
            # The checks run without faults: they judge the tenant, not the client's retries.
            server.set_faults([])
            checked = Report(seed=seed)
            _check_tenant(server, chats, state_path, checked)
            report.duplicates, report.missing = checked.duplicates, checked.missing
            report.wrong, report.extra_chats = checked.wrong, checked.extra_chats
            report.errors += checked.errors
            plan_code, plan_out, plan_err = _run(
                "plan", "chats.yaml", "--state", str(state_path), "--detailed-exitcode"
            )
            report.plan_exit = plan_code
            if plan_code != 0:
                report.errors.append(f"plan exited {plan_code}: {plan_out[-300:]}{plan_err[-300:]}")
    report.seconds = time.monotonic() - started
    return report


def _failures(result: dict[str, Any], err: str) -> str:
    failed = [o for o in result.get("outcomes", []) if o.get("status") == "failed"]
    if failed:
        return "; ".join(f"{o['key']}: {o['error']['message']}" for o in failed[:3])
    stopped = result.get("stopped")
    return json.dumps(stopped) if stopped else err[-300:]


def figure_line(name: str, reports: list[FaultReport]) -> str:
    faults: Counter[str] = Counter()
    for r in reports:
        faults.update(r.faults)
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(faults.items()))
    expiries = sum(r.unauthorized for r in reports)
    return (
        f"{name}: runs {sum(r.runs for r in reports)}, "
        f"faults injected {sum(r.injected for r in reports)} ({kinds}, 401 token expiry "
        f"{expiries}; plus {sum(r.throttled_by_limits for r in reports)} 429s from the "
        f"documented limits, {sum(r.storms for r in reports)} storms), "
        f"duplicates {sum(r.duplicates for r in reports)}, "
        f"lost chats {sum(r.missing for r in reports)}, "
        f"crashes {sum(r.crashes for r in reports)}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=1)
    parser.add_argument("--groups", type=int, default=100)
    parser.add_argument("--pairs", type=int, default=80)
    parser.add_argument("--token-lifetime", type=float, default=3.0)
    parser.add_argument("--json", action="store_true", help="Print the figures as JSON too.")
    args = parser.parse_args(argv)
    reports = []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        with tempfile.TemporaryDirectory(prefix="provision-faults-") as tmp:
            r = fault_run(
                Path(tmp), seed=seed, groups=args.groups, pairs=args.pairs,
                token_lifetime_s=args.token_lifetime,
            )  # fmt: skip
        reports.append(r)
        stats = r.result.get("stats", {})
        print(
            f"seed {seed}: {r.chats} chats, exit {r.exit_code}, faults {dict(r.faults)}, "
            f"401s {r.unauthorized}, tokens {r.tokens_issued}, storms {r.storms}, "
            f"throttled (seen by apply) {stats.get('throttled')}, retries {stats.get('retries')}, "
            f"lookups {stats.get('reconciliation', {}).get('lookups')}, "
            f"duplicates {r.duplicates}, missing {r.missing}, wrong {r.wrong}, "
            f"extra {r.extra_chats}, plan exit {r.plan_exit}, {r.seconds:.1f}s"
            f"{'' if r.ok else '  FAILED: ' + '; '.join(r.errors)}",
            flush=True,
        )
    print(figure_line("fault soak", reports))
    if args.json:
        print(json.dumps({"soak": "fault", **figures(reports)}))
    return 0 if all(r.ok for r in reports) else 1


def figures(reports: list[FaultReport]) -> dict[str, int]:
    return {
        "runs": sum(r.runs for r in reports),
        "faults": sum(r.injected for r in reports),
        "duplicates": sum(r.duplicates for r in reports),
        "lost": sum(r.missing for r in reports),
        "crashes": sum(r.crashes for r in reports),
        "chats": sum(r.chats for r in reports),
        "failed": sum(0 if r.ok else 1 for r in reports),
    }


if __name__ == "__main__":
    sys.exit(main())
