"""How long validating a generator of 10,000 CSV rows takes, relative to the same 10,000 chats
written by hand (issue 23: "10,000 rows expand and validate in at most the time a 10,000-chat
hand-written manifest takes").

Writes, for N rows: ``hires.csv`` (name, upn, manager, buddy) with a manifest holding one
generator whose template makes a group chat per row (the new hire, their manager and buddy),
and ``by-hand.yaml`` with exactly those N group chats written out (the baseline). Checks that
both give the same chats, then times ``validate_paths`` on each, interleaved and repeated, in
the same run, and prints best-of-N and median times and their ratio. Target: ratio <= 1.0.

Usage: python benchmarks/bench_generate.py [--rows N] [--repeat N] [--json FILE]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import tempfile
import time
from pathlib import Path

from provisioner.manifest.load import validate_paths

try:
    from _figures import Figure, write_figures  # run as a script: benchmarks/ is on sys.path
except ImportError:  # pragma: no cover
    from benchmarks._figures import Figure, write_figures

GENERATOR = """\
version: 1
chats: []
generators:
  - name: onboarding
    source: {csv: hires.csv}
    chats:
      - key: onboarding-{upn|slug}
        chatType: group
        topic: Welcome {name}
        members:
          - user: "{upn}"
          - user: "{manager}"
          - user: "{buddy}"
"""


def write(root: Path, rows: int) -> tuple[Path, Path]:
    csv_lines = ["name,upn,manager,buddy"]
    hand = ["version: 1", "chats:"]
    for i in range(rows):
        upn, manager, buddy = (
            f"hire{i}@contoso.com",
            f"lead{i % 97}@contoso.com",
            f"b{i}@contoso.com",
        )
        csv_lines.append(f"Hire {i},{upn},{manager},{buddy}")
        hand += [
            f"  - key: onboarding-hire{i}-contoso.com",
            "    chatType: group",
            f"    topic: Welcome Hire {i}",
            "    members:",
            f'      - user: "{upn}"',
            f'      - user: "{manager}"',
            f'      - user: "{buddy}"',
        ]
    (root / "hires.csv").write_text("\n".join(csv_lines) + "\n", encoding="utf-8")
    generated = root / "generated.yaml"
    generated.write_text(GENERATOR, encoding="utf-8")
    by_hand = root / "by-hand.yaml"
    by_hand.write_text("\n".join(hand) + "\n", encoding="utf-8")
    return generated, by_hand


def timed(path: Path) -> float:
    gc.collect()
    start = time.perf_counter()
    result = validate_paths([str(path)])
    elapsed = time.perf_counter() - start
    assert result.ok, result.diagnostics[:3]
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", metavar="FILE", help="also write the figures here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        generated, by_hand = write(Path(tmp), args.rows)
        ours = validate_paths([str(generated)]).desired
        base = validate_paths([str(by_hand)]).desired
        assert ours is not None and base is not None
        assert ours.chats == base.chats, "the generator and the hand-written manifest differ"
        gen_t: list[float] = []
        hand_t: list[float] = []
        for _ in range(args.repeat):  # interleaved, so machine noise hits both alike
            hand_t.append(timed(by_hand))
            gen_t.append(timed(generated))
    best = min(gen_t) / min(hand_t)
    median = statistics.median(gen_t) / statistics.median(hand_t)
    print(
        f"{args.rows:,} chats: by hand best {min(hand_t):.3f}s median "
        f"{statistics.median(hand_t):.3f}s | generator best {min(gen_t):.3f}s median "
        f"{statistics.median(gen_t):.3f}s | ratio best {best:.2f}x median {median:.2f}x"
    )
    target = 1.0
    print(f"target <= {target}x: {best:.2f}x -> {'ok' if best <= target else 'OVER TARGET'}")
    write_figures(
        args.json,
        "generate",
        [
            Figure.compared(
                f"validate a generator of {args.rows:,} CSV rows, in-process",
                min(gen_t),
                "s",
                min(hand_t),
                f"validate the same {args.rows:,} chats written by hand",
                max_ratio=target,
            )
        ],
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
