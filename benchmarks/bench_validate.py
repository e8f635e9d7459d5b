"""How long `provision validate` takes on a 10,000-chat manifest, relative to parsing it.

Generates a manifest of 10,000 chats (half oneOnOne, half group with 4 members, one of them a
guest), then times, interleaved and repeated, in the same run:

* baseline: ``yaml.load(f, Loader=yaml.CSafeLoader)`` of the file, and
* ``provisioner.manifest.load.validate_paths([file])`` (everything `validate` does but printing),

in-process, and both again through the command line (a fresh interpreter each:
``python -c 'import yaml; yaml.load(...)'`` against ``python -m provisioner validate FILE``).
Prints best-of-N and median times and their ratios. Target (issue 2): ratio <= 1.2.
Also printed, for context: the ratio against ``yaml.load`` with the garbage collector paused
(validate pauses it while loading) and the error path's cost (one typo -> jsonschema runs).

Usage: python benchmarks/bench_validate.py [--chats N] [--repeat N] [--keep DIR] [--json FILE]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import yaml

from provisioner.manifest.load import validate_paths

try:
    from _figures import Figure, write_figures  # run as a script: benchmarks/ is on sys.path
except ImportError:  # pragma: no cover
    from benchmarks._figures import Figure, write_figures


def generate(path: Path, chats: int) -> None:
    ids = (str(uuid.UUID(int=i * 7919 + 12345, version=4)) for i in range(10 * chats))
    lines = [
        "# yaml-language-server: $schema=../schemas/manifest.schema.json",
        "version: 1",
        "chats:",
    ]
    half = chats // 2
    for i in range(half):
        lines += [
            "  - chatType: oneOnOne",
            "    members:",
            f"      - user: {next(ids)}",
            f"      - user: user{i}@contoso.com",
        ]
    for i in range(chats - half):
        lines += [
            f"  - key: team-{i}",
            "    chatType: group",
            f"    topic: Team {i} planning",
            "    members:",
            f"      - user: {next(ids)}",
            f"      - user: {next(ids)}",
            f"      - user: lead{i}@contoso.com",
            f"      - user: {next(ids)}",
            "        role: guest",
        ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def timed(fn: Callable[[], object]) -> float:
    gc.collect()  # neither side inherits the other's garbage
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def compare(
    name: str, base: Callable[[], object], ours: Callable[[], object], repeat: int
) -> tuple[float, float, float]:
    """Best-of ratio, and the best times of ours and the baseline."""
    base_t: list[float] = []
    ours_t: list[float] = []
    for _ in range(repeat):  # interleaved, so machine noise hits both alike
        base_t.append(timed(base))
        ours_t.append(timed(ours))
    best = min(ours_t) / min(base_t)
    median = statistics.median(ours_t) / statistics.median(base_t)
    print(
        f"{name}: yaml.load best {min(base_t):.3f}s median {statistics.median(base_t):.3f}s | "
        f"validate best {min(ours_t):.3f}s median {statistics.median(ours_t):.3f}s | "
        f"ratio best {best:.2f}x median {median:.2f}x"
    )
    return best, min(ours_t), min(base_t)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chats", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--keep", type=Path, help="write the manifest here and keep it")
    parser.add_argument("--json", metavar="FILE", help="also write the figures here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        path = (args.keep or Path(tmp)) / "bench-chats.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        generate(path, args.chats)
        size = path.stat().st_size
        print(f"manifest: {path.name}, {args.chats} chats, {size / 1e6:.1f} MB")

        result = validate_paths([str(path)])
        assert result.ok and result.chats == args.chats, result.diagnostics[:3]

        def load() -> object:
            with path.open(encoding="utf-8") as fh:
                return yaml.load(fh, Loader=yaml.CSafeLoader)

        def validate() -> object:
            return validate_paths([str(path)])

        in_process, ours_s, base_s = compare("in-process", load, validate, args.repeat)

        # For transparency: how much of the gain is pausing the garbage collector (which
        # validate does while loading, see manifest/gcpause.py), and what the error path costs
        # (one typo in the last chat sends the whole file through jsonschema).
        def load_no_gc() -> object:
            gc.disable()
            try:
                return load()
            finally:
                gc.enable()

        _, nogc_s, nogc_base_s = compare(
            "in-process vs yaml.load with gc paused", load_no_gc, validate, args.repeat
        )
        broken = path.with_name("bench-chats-broken.yaml")
        text = path.read_text(encoding="utf-8")
        cut = text.rindex("chatType: group")
        broken.write_text(text[:cut] + "chatTyp" + text[cut + len("chatType") :], "utf-8")
        errors = validate_paths([str(broken)])
        assert len(errors.diagnostics) == 1, errors.diagnostics
        compare("error path (1 typo)", load, lambda: validate_paths([str(broken)]), 3)

        load_cmd = [
            sys.executable,
            "-c",
            "import sys, yaml; yaml.load(open(sys.argv[1], encoding='utf-8'), "
            "Loader=yaml.CSafeLoader)",
            str(path),
        ]
        validate_cmd = [sys.executable, "-m", "provisioner", "validate", str(path)]

        def run(cmd: list[str]) -> Callable[[], object]:
            return lambda: subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)

        cli, cli_s, cli_base_s = compare(
            "cli", run(load_cmd), run(validate_cmd), max(3, args.repeat // 2)
        )
    target = 1.2
    verdict = "ok" if max(in_process, cli) <= target else "OVER TARGET"
    print(f"target <= {target}x: in-process {in_process:.2f}x, cli {cli:.2f}x -> {verdict}")
    n = f"{args.chats:,} chats"
    write_figures(
        args.json,
        "validate",
        [
            Figure.compared(
                f"validate {n}, in-process",
                ours_s,
                "s",
                base_s,
                "yaml.load (CSafeLoader), in-process",
                max_ratio=target,
            ),
            Figure.compared(
                f"provision validate {n} (command line)",
                cli_s,
                "s",
                cli_base_s,
                "python -c 'yaml.load(...)' (CSafeLoader)",
                max_ratio=target,
            ),
            Figure.compared(
                f"validate {n}, in-process (fairer baseline)",
                nogc_s,
                "s",
                nogc_base_s,
                "yaml.load (CSafeLoader) with the cyclic GC paused",
                max_ratio=target,
            ),
        ],
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
