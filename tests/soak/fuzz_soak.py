"""Fuzz soak of the manifest loader: hypothesis with a large example budget, and atheris
(coverage-guided, libFuzzer) when it is installed.

* **hypothesis** runs the properties of ``tests/manifest/test_manifest_fuzz.py`` (any YAML document,
  YAML-like text and raw bytes are validated without crashing, with every diagnostic carrying
  a message and a position; the fast path agrees with the JSON Schema path on mutated
  manifests) with ``--examples`` examples each, counting every example that ran.
* **atheris** feeds libFuzzer's mutations of a small seed corpus (the golden manifests) through
  ``validate_paths`` for ``--atheris-runs`` inputs. Any exception other than the loader's
  own outcome is a crash; its input is kept in ``--crash-dir``.

``tests/acceptance/test_soak.py`` runs a small version in the default test run. By hand::

    python tests/soak/fuzz_soak.py --examples 20000 --atheris-runs 200000

It ends with a figure line: runs (inputs tried), faults injected (inputs the loader had to
refuse), duplicates and lost chats (not applicable to a loader), crashes. Exit status 1 on
any crash.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TESTS = Path(__file__).resolve().parents[1]
GOLDEN = TESTS / "data" / "manifests"


@dataclass
class FuzzReport:
    engine: str
    runs: int = 0
    refused: int = 0  # inputs the loader reported problems for (the "faults" of a loader)
    crashes: int = 0
    seconds: float = 0.0
    failures: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (
            f"fuzz soak ({self.engine}): runs {self.runs}, faults injected {self.refused} "
            f"(malformed inputs refused), duplicates n/a, lost chats n/a, "
            f"crashes {self.crashes}, {self.seconds:.1f}s"
        )


# -- hypothesis ----------------------------------------------------------------------------------


def hypothesis_soak(examples: int) -> FuzzReport:
    """Every property of test_manifest_fuzz with ``examples`` examples (x3 for the fast-path
    comparison, as in the default run)."""
    for folder in (TESTS, TESTS / "manifest"):
        if str(folder) not in sys.path:
            sys.path.insert(0, str(folder))
    before = os.environ.get("PROVISION_FUZZ_EXAMPLES")
    os.environ["PROVISION_FUZZ_EXAMPLES"] = str(examples)
    try:
        sys.modules.pop("test_manifest_fuzz", None)  # the budget is read at import
        import test_manifest_fuzz as props
    finally:
        sys.modules.pop("test_manifest_fuzz", None)
        if before is None:
            del os.environ["PROVISION_FUZZ_EXAMPLES"]
        else:
            os.environ["PROVISION_FUZZ_EXAMPLES"] = before

    report = FuzzReport("hypothesis")
    started = time.monotonic()
    real_validate = props.validate_text

    def counted_validate(data: bytes) -> Any:
        result = real_validate(data)
        report.refused += 0 if result.ok else 1
        return result

    props.validate_text = counted_validate  # the properties look it up at call time
    try:
        for name in sorted(vars(props)):
            test = getattr(props, name)
            if not (name.startswith("test_") and hasattr(test, "hypothesis")):
                continue
            inner = test.hypothesis.inner_test

            def counting(*args: Any, _inner: Callable[..., Any] = inner, **kw: Any) -> Any:
                report.runs += 1
                return _inner(*args, **kw)

            test.hypothesis.inner_test = counting
            try:
                test()
            except Exception as exc:  # a falsifying example (already shrunk by hypothesis)
                report.crashes += 1
                report.failures.append(f"{name}: {type(exc).__name__}: {exc}")
            finally:
                test.hypothesis.inner_test = inner
    finally:
        props.validate_text = real_validate
    report.seconds = time.monotonic() - started
    return report


# -- atheris -------------------------------------------------------------------------------------


def atheris_available() -> bool:
    try:
        import atheris  # noqa: F401
    except ImportError:
        return False
    return True


def atheris_soak(runs: int, crash_dir: Path, max_seconds: int = 3600) -> FuzzReport:
    """libFuzzer in a child process (it exits the process when done); read its figures."""
    report = FuzzReport("atheris")
    crash_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="provision-atheris-") as tmp:
        corpus = Path(tmp) / "corpus"
        corpus.mkdir()
        for n, path in enumerate(sorted(GOLDEN.rglob("*.y*ml"))):
            (corpus / f"seed-{n}").write_bytes(path.read_bytes()[:4096])
        counts = Path(tmp) / "counts.json"
        cmd = [sys.executable, __file__, "--atheris-child", str(counts), str(crash_dir)]
        cmd += [f"-runs={runs}", f"-max_total_time={max_seconds}", "-max_len=4096"]
        cmd += ["-print_final_stats=1", str(corpus)]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp)
        done = re.search(r"Done (\d+) runs", proc.stderr)
        report.runs = int(done.group(1)) if done else 0
        if counts.exists():
            data = json.loads(counts.read_text())
            report.refused = data["refused"]
            report.runs = report.runs or data["runs"]
    crashes = sorted(crash_dir.glob("crash-*.txt"))
    report.crashes = len(crashes)
    report.failures = [p.read_text()[:500] for p in crashes[:3]]
    if proc.returncode != 0 and not crashes:
        report.crashes += 1
        report.failures.append(f"libFuzzer exited {proc.returncode}: {proc.stderr[-800:]}")
    report.seconds = time.monotonic() - started
    return report


def _atheris_child(counts_path: str, crash_dir: str, argv: list[str]) -> None:
    import atheris

    with atheris.instrument_imports():
        from provisioner.manifest.load import validate_paths

    workdir = Path(tempfile.mkdtemp(prefix="provision-fuzz-"))
    target = workdir / "m.yaml"
    counts = {"runs": 0, "refused": 0}

    def one_input(data: bytes) -> None:
        counts["runs"] += 1
        target.write_bytes(data)
        try:
            result = validate_paths([str(target)])
            for d in result.diagnostics:
                assert d.message and d.line >= 0 and d.col >= 0, d
            assert result.ok == (result.desired is not None)
        except Exception:
            n = len(list(Path(crash_dir).glob("crash-*.txt")))
            (Path(crash_dir) / f"crash-{n}.yaml").write_bytes(data)
            (Path(crash_dir) / f"crash-{n}.txt").write_text(traceback.format_exc())
        else:
            counts["refused"] += 0 if result.ok else 1
        if counts["runs"] % 500 == 0:
            Path(counts_path).write_text(json.dumps(counts))

    atheris.Setup([sys.argv[0], *argv], one_input)
    try:
        atheris.Fuzz()
    finally:
        Path(counts_path).write_text(json.dumps(counts))


# -- command line --------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--atheris-child"]:
        _atheris_child(argv[1], argv[2], argv[3:])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--examples", type=int, default=5000, help="hypothesis examples each (0: skip)"
    )
    parser.add_argument(
        "--atheris-runs", type=int, default=100000, help="0: skip atheris (also when missing)"
    )
    parser.add_argument("--crash-dir", type=Path, default=Path("fuzz-crashes"))
    parser.add_argument("--json", action="store_true", help="Print the figures as JSON too.")
    args = parser.parse_args(argv)
    reports = []
    if args.examples:
        reports.append(hypothesis_soak(args.examples))
        print(reports[0].line(), flush=True)
    if args.atheris_runs and atheris_available():
        reports.append(atheris_soak(args.atheris_runs, args.crash_dir))
        print(reports[-1].line(), flush=True)
    elif args.atheris_runs:
        print("fuzz soak (atheris): skipped, atheris is not installed (pip install atheris)")
    for r in reports:
        for failure in r.failures:
            print(f"  {r.engine} crash: {failure}")
    if args.json:
        for r in reports:
            print(json.dumps({"soak": f"fuzz-{r.engine}", "runs": r.runs, "faults": r.refused,
                              "crashes": r.crashes, "seconds": round(r.seconds, 1)}))  # fmt: skip
    return 1 if any(r.crashes for r in reports) else 0


if __name__ == "__main__":
    sys.exit(main())
