"""The project's own synthetic helpline corpus: labelled narratives for training
and evaluating a demo model, and unlabelled narratives for benchmarks.

``python -m training.corpus``: write the corpus as JSONL, or print its statistics.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

from training.corpus.benchmark import benchmark_records
from training.corpus.generate import generate_corpus
from training.corpus.jsonl import write_jsonl
from training.corpus.records import LabelledNarrative
from training.corpus.render import count_words


def corpus_stats(items: Sequence[LabelledNarrative]) -> dict[str, Any]:
    lengths = sorted(count_words(i.narrative) for i in items)

    def pct(p: float) -> int:
        return lengths[min(len(lengths) - 1, int(p * len(lengths)))] if lengths else 0

    return {
        "n": len(items),
        "main_category": dict(sorted(Counter(i.main_category for i in items).items())),
        "sub_categories": len({i.sub_category for i in items}),
        "intervention": dict(sorted(Counter(i.intervention for i in items).items())),
        "priority": dict(sorted(Counter(i.priority for i in items).items())),
        "words": {"min": lengths[0] if lengths else 0, "median": statistics.median(lengths) if lengths else 0,
                  "p90": pct(0.9), "max": lengths[-1] if lengths else 0,
                  "over_420": sum(1 for x in lengths if x > 420)},
    }


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.corpus", description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=2000, help="number of labelled narratives to generate")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, help="write labelled JSONL here")
    ap.add_argument("--benchmark", type=int, metavar="N",
                    help="write N benchmark narratives (ids bench-000001..., labelled) instead")
    ap.add_argument("--stats", action="store_true", help="print corpus statistics as JSON")
    args = ap.parse_args(argv)

    if args.benchmark is not None:
        items = benchmark_records(args.benchmark, args.seed)
        prefix = "bench"
    else:
        items = generate_corpus(args.n, args.seed)
        prefix = "gen"
    if args.out:
        n = write_jsonl(args.out, items, id_prefix=prefix)
        print(f"wrote {n} narratives to {args.out}", file=sys.stderr)
    if args.stats or not args.out:
        print(json.dumps(corpus_stats(items), indent=2))
    return 0
