"""Run every benchmark and soak; write BENCHMARKS.md and RELIABILITY.md.

    python -m benchmarks                  # everything, full size (15-25 minutes on 2 cores)
    python -m benchmarks --quick          # small sizes, to check the harness (a few minutes)
    python -m benchmarks --only validate,startup --no-soak
    benchmarks/run                        # the same as python -m benchmarks, from anywhere

Each ``benchmarks/bench_*.py`` runs in its own process, one after another (the machine's cores
are shared: running two at once would measure each other), with ``--json FILE``; its usual
report is shown as it runs and the figures it writes go into the table: value, the baseline
measured in the same run, the ratio, the target and whether it was met. The start-up figure
(``provision --help`` against ``python -c 'import click'``) is measured here.

The soaks (``tests/soak/``) are run the same way and their figure lines go to RELIABILITY.md.
``--quick`` output goes to ``bench-out/`` unless ``--out``/``--reliability-out`` say otherwise,
so a quick run never overwrites the committed figures.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"
SOAK = ROOT / "tests" / "soak"

try:
    from benchmarks._figures import Figure
    from benchmarks.issue20 import table as issue20_table
except ImportError:  # pragma: no cover - run as benchmarks/__main__.py
    sys.path.insert(0, str(BENCH))
    from _figures import Figure  # type: ignore[no-redef]
    from issue20 import table as issue20_table  # type: ignore[no-redef]


@dataclass
class Bench:
    name: str
    script: str
    full: list[str]
    quick: list[str]
    what: str  # one line for the table's section heading
    needs: Callable[[], str | None] = lambda: None  # a reason to skip, or None


def _azurite_missing() -> str | None:
    sys.path.insert(0, str(ROOT / "tests"))
    try:
        from lib.azurite_support import ensure_azurite
    except ImportError as exc:  # the azure extra is not installed
        return f"the azure extra is missing ({exc.name})"
    try:
        found = ensure_azurite()
    except RuntimeError as exc:
        return str(exc)
    if found is None:
        return "Azurite is not installed (python tests/lib/azurite_support.py install)"
    return None


BENCHES = [
    Bench(
        "validate",
        "bench_validate.py",
        ["--repeat", "5"],
        ["--chats", "2000", "--repeat", "2"],
        "`provision validate` on a generated 10,000-chat manifest vs libyaml's `yaml.load`",
    ),
    Bench(
        "generate",
        "bench_generate.py",
        ["--repeat", "5"],
        ["--rows", "2000", "--repeat", "2"],
        "`validate` of a generator over a 10,000-row CSV vs the same 10,000 chats written by hand",
    ),
    Bench(
        "plan",
        "bench_plan.py",
        ["--repeat", "3"],
        ["--chats", "2000", "--big", "10000", "--repeat", "1"],
        "`plan` without refresh at 10,000 chats (CPU) vs `yaml.load`, and at 100,000 chats "
        "in a fresh process (time, peak RSS) vs `yaml.load` in a fresh process",
    ),
    Bench(
        "apply",
        "bench_apply.py",
        [],
        ["--quick"],
        "`provision apply` throughput against the emulator enforcing Graph's limits, at the "
        "documented and at half the limits, vs a naive client and a sequential one",
    ),
    Bench(
        "throughput",
        "bench_throughput.py",
        [],
        [],  # about a minute; its targets are for 300 chats (a fixed start-up cost weighs more)
        "`provision apply` of 300 chats from process start to exit against the emulator "
        "enforcing 30 writes/s with 400 ms answers, and an untold 15 writes/s; a refreshing "
        "apply's throttled reads (issue 26)",
    ),
    Bench(
        "progress",
        "bench_progress.py",
        [],
        ["--members-chats", "20", "--members-each", "2", "--creations", "120"],
        "apply's ETA at 25/50/75 % of a member-heavy and a creation-heavy run against the "
        "emulator's documented limits vs the time the run then still took",
    ),
    Bench(
        "refresh",
        "bench_refresh.py",
        ["--chats", "1000"],
        ["--chats", "200", "--scale", "4", "--cover-chats", "2000"],
        "refresh of managed chats at the documented read limits vs the minimum they allow; "
        "a drift check of 10,000 chats sharing an owner through covering lists vs the "
        "per-chat minimum",
    ),
    Bench(
        "emulator",
        "bench_emulator.py",
        ["--seconds", "3"],
        ["--seconds", "1"],
        "emulator requests/s vs a bare stdlib HTTP server, same clients",
    ),
    Bench(
        "journal",
        "bench_journal.py",
        [],
        ["--new", "90", "--sizes", "10000", "--repeat", "1", "--big", "20000"],
        "`apply` of 300 new chats at Graph's rate on 10,000- and 100,000-chat states vs the same "
        "from an empty state; the state in Azurite vs the local file; journal replay and "
        "compaction",
    ),
    Bench(
        "state_azblob",
        "bench_state_azblob.py",
        [],
        ["--chats", "2000", "--changes", "300", "--repeat", "2", "--threaded-changes", "0"],
        "state in Azure Blob Storage (Azurite) vs the local file",
        _azurite_missing,
    ),
]


# -- machine and version ------------------------------------------------------------------------


def machine() -> dict[str, str]:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 0
    try:
        memory = Path("/proc/meminfo").read_text().split("\n", 1)[0].split()[1]
        mem = f"{int(memory) / 1024 / 1024:.1f} GiB"
    except (OSError, IndexError, ValueError):
        mem = "?"
    return {
        "cpus": f"{cores} usable ({os.cpu_count()} online)",
        "cpu model": model,
        "memory": mem,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "os": f"{platform.system()} {platform.release()}",
    }


def version() -> str:
    from provisioner import __version__

    try:
        commit = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return __version__
    return f"{__version__} (git {commit}{' + local changes' if dirty else ''})"


# -- start-up time -------------------------------------------------------------------------------


def provision_command() -> list[str]:
    """The installed console script next to this interpreter, else ``python -m provisioner``."""
    script = Path(sys.executable).with_name("provision")
    if script.exists():
        return [str(script)]
    found = shutil.which("provision")
    return [found] if found else [sys.executable, "-m", "provisioner"]


def startup(repeat: int) -> list[Figure]:
    """``provision --help`` vs ``python -c 'import click'``: interleaved, best of ``repeat``."""
    cases = {
        "provision": [*provision_command(), "--help"],
        "click": [sys.executable, "-c", "import click"],
        "python": [sys.executable, "-c", "pass"],
    }
    times: dict[str, list[float]] = {name: [] for name in cases}
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="")
    for cmd in cases.values():  # warm the page cache and the .pyc files first
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env)
    for _ in range(repeat):
        for name, cmd in cases.items():
            start = time.perf_counter()
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env)
            times[name].append(time.perf_counter() - start)
    best = {name: min(t) for name, t in times.items()}
    median = {name: statistics.median(t) for name, t in times.items()}
    print(
        "start-up, best of {n} (median): provision --help {p:.3f}s ({pm:.3f}s), "
        "python -c 'import click' {c:.3f}s ({cm:.3f}s), python -c pass {b:.3f}s -> "
        "ratio {r:.2f}x (median {rm:.2f}x), target <= 2x".format(
            n=repeat,
            p=best["provision"],
            pm=median["provision"],
            c=best["click"],
            cm=median["click"],
            b=best["python"],
            r=best["provision"] / best["click"],
            rm=median["provision"] / median["click"],
        ),
        flush=True,
    )
    return [
        Figure.compared(
            "`provision --help` start-up (best)",
            best["provision"] * 1000,
            "ms",
            best["click"] * 1000,
            "`python -c 'import click'`",
            max_ratio=2.0,
        ),
        Figure.compared(
            "`provision --help` start-up (median)",
            median["provision"] * 1000,
            "ms",
            median["click"] * 1000,
            "`python -c 'import click'`",
            max_ratio=2.0,
        ),
    ]


# -- running the scripts -------------------------------------------------------------------------


@dataclass
class Section:
    name: str
    what: str
    command: str
    figures: list[Figure] = field(default_factory=list)
    skipped: str | None = None
    seconds: float = 0.0


def run_bench(bench: Bench, quick: bool) -> Section:
    script = BENCH / bench.script
    args = bench.quick if quick else bench.full
    shown = " ".join(["python", f"benchmarks/{bench.script}", *args])
    section = Section(bench.name, bench.what, shown)
    if not script.exists():
        section.skipped = f"benchmarks/{bench.script} is not in this tree yet"
        return section
    reason = bench.needs()
    if reason:
        section.skipped = reason
        return section
    print(f"\n=== {bench.name}: {shown}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "figures.json"
        start = time.monotonic()
        proc = subprocess.run([sys.executable, str(script), *args, "--json", str(out)], cwd=ROOT)
        section.seconds = time.monotonic() - start
        if proc.returncode != 0 or not out.exists():
            section.skipped = f"the benchmark failed (exit {proc.returncode})"
            return section
        doc = json.loads(out.read_text())
    section.figures = [Figure(**f) for f in doc["figures"]]
    return section


@dataclass
class Soak:
    name: str
    command: list[str]
    quick: list[str]
    parse: Callable[[str], dict[str, Any]]
    what: str


def _json_line(prefix: str) -> Callable[[str], dict[str, Any]]:
    def parse(output: str) -> dict[str, Any]:
        for line in output.splitlines():
            if line.startswith("{") and f'"soak": "{prefix}' in line:
                return dict(json.loads(line))
        raise ValueError(f"no {prefix} figures in the output")

    return parse


def _kill_figures(output: str) -> dict[str, Any]:
    """kill_soak.py's total line (its own format: that script belongs to the apply work)."""
    total = next(line for line in output.splitlines() if line.startswith("total:"))

    def number(pattern: str) -> int:
        found = re.search(pattern, total)
        return int(found.group(1)) if found else 0

    return {
        "runs": number(r"(\d+) runs"),
        "kills": number(r"(\d+) kill cycles"),
        # SIGKILLs plus ambiguous answers (504/drop after the change); kill_soak.py does not
        # count the 503s it also injects.
        "faults": number(r"(\d+) kill cycles") + number(r"(\d+) ambiguous faults injected"),
        "duplicates": number(r"duplicates (\d+)"),
        "lost": number(r"missing (\d+)"),
        # A run that was not killed yet printed no result: it crashed.
        "crashes": output.count("without a JSON result"),
        "failed": output.count("FAILED"),
    }


SOAKS = [
    Soak(
        "kill",
        ["tests/soak/kill_soak.py", "--seeds", "5", "--kills", "5"],
        [
            "tests/soak/kill_soak.py",
            "--seeds",
            "1",
            "--kills",
            "2",
            "--groups",
            "15",
            "--pairs",
            "10",
        ],
        _kill_figures,
        "`provision apply` SIGKILLed at random moments, rerun until done, against an emulator "
        "answering group creations ambiguously (504/drop after the change) and 5 % 503s; "
        "faults counted: the SIGKILLs and the ambiguous answers",
    ),
    Soak(
        "fault",
        ["tests/soak/fault_soak.py", "--seeds", "3", "--json"],
        [
            "tests/soak/fault_soak.py",
            "--seeds",
            "1",
            "--groups",
            "15",
            "--pairs",
            "10",
            "--token-lifetime",
            "1",
            "--json",
        ],
        _json_line("fault"),
        "one `provision apply` through 429 storms, 503s, ambiguous 504s/drops and token expiry "
        "(real MSAL refresh), then the tenant is counted and `plan` must find nothing to do",
    ),
    Soak(
        "lock",
        ["tests/soak/lock_soak.py", "--rounds", "12", "--groups", "20", "--pairs", "10", "--json"],
        ["tests/soak/lock_soak.py", "--rounds", "2", "--groups", "6", "--pairs", "3", "--json"],
        _json_line("lock"),
        "two `provision apply` runs started at the same instant on one state, through a "
        "symlink and its target, some rounds SIGKILLing the lock holder; one must stop (or "
        "find nothing to do), never both create chats (issue 15)",
    ),
    Soak(
        "fuzz (hypothesis)",
        ["tests/soak/fuzz_soak.py", "--examples", "5000", "--atheris-runs", "0", "--json"],
        ["tests/soak/fuzz_soak.py", "--examples", "100", "--atheris-runs", "0", "--json"],
        _json_line("fuzz-hypothesis"),
        "the manifest loader's properties (any document/text/bytes validates without a crash; "
        "fast path == JSON Schema path) with a large example budget",
    ),
    Soak(
        "fuzz (atheris)",
        ["tests/soak/fuzz_soak.py", "--examples", "0", "--atheris-runs", "200000", "--json"],
        ["tests/soak/fuzz_soak.py", "--examples", "0", "--atheris-runs", "2000", "--json"],
        _json_line("fuzz-atheris"),
        "coverage-guided (libFuzzer) mutations of the golden manifests through validate",
    ),
    Soak(
        "mixed (issue 20)",
        ["tests/soak/mixed_soak.py", "--seeds", "3", "--rounds", "12", "--cycle", "--json"],
        ["tests/soak/mixed_soak.py", "--seeds", "1", "--rounds", "6", "--cycle", "--json"],
        _json_line("mixed"),
        "`provision apply` rounds on one tenant, each with one fault of issue 20: journal bit "
        "flips and zero tails after a SIGKILL (then `state repair`), an opaque-token run "
        "against another tenant, Graph's clock +-10 min with a jump before the rerun, a blob "
        "lease broken while a new run takes over at once (Azurite), 503s with Retry-After "
        "99999; faults counted: the rounds that injected one",
    ),
]


@dataclass
class SoakResult:
    soak: Soak
    command: str
    figures: dict[str, Any] = field(default_factory=dict)
    line: str = ""
    seconds: float = 0.0
    exit_code: int = 0
    skipped: str | None = None


def run_soak(soak: Soak, quick: bool) -> SoakResult:
    args = soak.quick if quick else soak.command
    result = SoakResult(soak, " ".join(["python", *args]))
    if not (ROOT / args[0]).exists():
        result.skipped = f"{args[0]} is not in this tree yet"
        return result
    if "atheris" in soak.name and "--atheris-runs" in args:
        probe = subprocess.run([sys.executable, "-c", "import atheris"], capture_output=True)
        if probe.returncode != 0:
            result.skipped = "atheris is not installed (pip install -e '.[fuzz]')"
            return result
    print(f"\n=== soak {soak.name}: {result.command}", flush=True)
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, env=_soak_env()
    )
    result.seconds = time.monotonic() - start
    result.exit_code = proc.returncode
    print(proc.stdout[-4000:], proc.stderr[-2000:], sep="", flush=True)
    try:
        result.figures = soak.parse(proc.stdout)
    except (ValueError, StopIteration):
        result.skipped = f"no figures (exit {proc.returncode}): {proc.stderr[-300:]}"
        return result
    lines = [
        ln
        for ln in proc.stdout.splitlines()
        if re.match(r"^(fuzz soak|fault soak|mixed soak|total)", ln)
    ]
    result.line = lines[-1] if lines else ""
    return result


def _soak_env() -> dict[str, str]:
    env = dict(os.environ)
    for name in list(env):  # the soaks configure their own Graph, state and credentials
        if name.startswith(("PROVISION_", "AZURE_")):
            del env[name]
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


# -- the reports ---------------------------------------------------------------------------------


def _num(value: float | None, unit: str = "") -> str:
    if value is None:
        return "–"
    if abs(value) >= 1000:
        text = f"{value:,.0f}"
    elif abs(value) >= 100:
        text = f"{value:.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.3g}"
    return f"{text} {unit}".strip()


def _verdict(ok: bool | None) -> str:
    return "–" if ok is None else ("pass" if ok else "**miss**")


def header(title: str, started: datetime.datetime, quick: bool, elapsed: float) -> list[str]:
    info = machine()
    lines = [
        f"# {title}",
        "",
        "Generated by `benchmarks/run` (`python -m benchmarks`); do not edit by hand, run it "
        "again." + (" **Quick run: small sizes, not the figures to quote.**" if quick else ""),
        "",
        f"- date: {started:%Y-%m-%d %H:%M} UTC ({elapsed / 60:.1f} minutes)",
        f"- provision: {version()}",
    ]
    lines += [f"- {key}: {value}" for key, value in info.items()]
    return lines


def benchmarks_md(
    sections: list[Section], started: datetime.datetime, quick: bool, elapsed: float
) -> str:
    lines = header("Benchmarks", started, quick, elapsed)
    lines += [
        "",
        "Every ratio is against a baseline measured in the same run, on the same machine, "
        "interleaved where the script can. Times are best-of-N unless the figure says median. "
        "A target of `–` means the figure is context, not a goal.",
        "",
        "| figure | value | baseline (same run) | ratio | target | result |",
        "| --- | ---: | --- | ---: | --- | --- |",
    ]
    for s in sections:
        if s.skipped or not s.figures:
            continue
        for f in s.figures:
            base = (
                f"{_num(f.baseline, f.unit)}: {f.baseline_name}" if f.baseline is not None else "–"
            )
            ratio = f"{f.ratio:.2f}x" if f.ratio is not None else "–"
            lines.append(
                f"| {f.name} | {_num(f.value, f.unit)} | {base} | {ratio} | {f.target or '–'} "
                f"| {_verdict(f.ok)} |"
            )
    lines += ["", "## How each figure was measured", ""]
    for s in sections:
        took = f" ({s.seconds:.0f} s)" if s.seconds else ""
        lines.append(f"- **{s.name}**{took}: {s.what}. `{s.command}`")
        if s.skipped:
            lines.append(f"  Not measured in this run: {s.skipped}.")
    missed = [f.name for s in sections for f in s.figures if f.ok is False]
    lines += [
        "",
        f"Targets missed in this run: {', '.join(missed)}." if missed else "Every target met.",
        "",
    ]
    notes = BENCH / "notes.md"
    if notes.exists():
        lines += [notes.read_text(encoding="utf-8").rstrip(), ""]
    return "\n".join(lines)


def reliability_md(
    results: list[SoakResult], started: datetime.datetime, quick: bool, elapsed: float
) -> str:
    lines = header("Reliability", started, quick, elapsed)
    lines += [
        "",
        "What the soaks did to `provision` in this run, and what came out. *Duplicates* are "
        "chats created more than once, *lost chats* desired chats missing at the end (both "
        "counted from the emulator's side, not from provision's state), *crashes* runs that "
        "ended in an internal error or without a result (a loader fuzz crash is any exception "
        "or a diagnostic without a position).",
        "",
        "| soak | runs | faults injected | duplicates | lost chats | crashes | time |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        if r.skipped:
            lines.append(f"| {r.soak.name} | not run: {r.skipped} | | | | | |")
            continue
        f = r.figures
        na = "n/a" if "fuzz" in r.soak.name else None
        lines.append(
            f"| {r.soak.name} | {f.get('runs', 0):,} | {f.get('faults', 0):,} | "
            f"{na or f.get('duplicates', 0)} | {na or f.get('lost', 0)} | {f.get('crashes', 0)} "
            f"| {r.seconds:.0f} s |"
        )
    mixed = next(
        (r.figures for r in results if r.soak.name.startswith("mixed") and r.figures), None
    )
    lines += ["", *issue20_table(mixed)]
    lines += ["", "## The soaks, and how to run them again", ""]
    for r in results:
        lines.append(f"- **{r.soak.name}**: {r.soak.what}.")
        lines.append(f"  Command: `{r.command}`")
        if r.line:
            lines.append(f"  Its figure line: `{r.line}`")
        if r.exit_code and not r.skipped:
            lines.append(f"  It exited {r.exit_code}: see its output.")
    lines += [
        "",
        "Run them all and regenerate this file with `benchmarks/run --no-bench` (or "
        "`python -m benchmarks --no-bench`). Each harness also runs on its own, with larger "
        "sizes: see the docstrings of `tests/soak/kill_soak.py`, `tests/soak/fault_soak.py`, "
        "`tests/soak/lock_soak.py`, `tests/soak/fuzz_soak.py` and `tests/soak/mixed_soak.py`.",
        "",
        "## In every test run",
        "",
        "Short versions run in the default `python -m pytest -q` (CI), in seconds:",
        "",
        "- `tests/apply/test_apply_faults.py`: every crash point of an apply, deterministically "
        "(each durable write and Graph request stopped or failed before or after it, then a "
        "rerun: no duplicate, nothing lost);",
        "- `tests/states/test_journal_machine.py`, `tests/plans/test_planner_machine.py` and "
        "the other Hypothesis properties (codec, retry policy);",
        "- marked `slow` (`pytest -m slow`, seeds printed): `tests/apply/test_apply_kill.py` "
        "(three seeds of the kill soak) and `tests/acceptance/test_soak.py` (a small fault soak, "
        "two rounds of the lock soak, the fuzz soak with a small budget);",
        "- `tests/soak/test_mixed_soak.py` (marked `slow`): one seed of the mixed soak, every "
        "fault of issue 20 once;",
        "- `tests/acceptance/test_accidents.py`: the accidents and hostile answers of issue 15, "
        "each with its exit code and message;",
        "- `tests/manifest/test_manifest_fuzz.py`: the loader properties "
        "(`PROVISION_FUZZ_EXAMPLES`, "
        "default 150);",
        "- `tests/acceptance/test_security.py`: the access token and client secret never appear in "
        "output, logs at DEBUG, plan or state files or error text (real commands against the "
        "emulator, and a failing sign-in whose login endpoint echoes the secret); state and "
        "plan files are 0600; plain http:// only for loopback; YAML tags are never "
        "constructed.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (checks the harness)")
    parser.add_argument("--only", help="comma-separated benchmark names (and 'startup')")
    parser.add_argument("--no-bench", action="store_true", help="soaks only")
    parser.add_argument("--no-soak", action="store_true", help="benchmarks only")
    parser.add_argument("--out", type=Path, help="BENCHMARKS.md path")
    parser.add_argument("--reliability-out", type=Path, help="RELIABILITY.md path")
    args = parser.parse_args(argv)
    default_dir = ROOT / "bench-out" if args.quick else ROOT
    out = args.out or default_dir / "BENCHMARKS.md"
    rel_out = args.reliability_out or default_dir / "RELIABILITY.md"
    only = set(args.only.split(",")) if args.only else None
    started = datetime.datetime.now(datetime.timezone.utc)
    clock = time.monotonic()

    if not args.no_bench:
        sections: list[Section] = []
        for bench in BENCHES:
            if only is None or bench.name in only:
                sections.append(run_bench(bench, args.quick))
        if only is None or "startup" in only:
            start = time.monotonic()
            figures = startup(5 if args.quick else 20)
            sections.append(
                Section(
                    "startup",
                    "`provision --help` vs `python -c 'import click'`, each a fresh "
                    "interpreter, interleaved (msal, requests and jsonschema must not be "
                    "imported for it)",
                    "python -m benchmarks --only startup",
                    figures,
                    seconds=time.monotonic() - start,
                )
            )
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(benchmarks_md(sections, started, args.quick, time.monotonic() - clock))
        print(f"\nwrote {out}")
    if not args.no_soak:
        soak_clock = time.monotonic()
        results = [run_soak(soak, args.quick) for soak in SOAKS]
        rel_out.parent.mkdir(parents=True, exist_ok=True)
        rel_out.write_text(
            reliability_md(results, started, args.quick, time.monotonic() - soak_clock)
        )
        print(f"wrote {rel_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
