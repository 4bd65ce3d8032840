"""What the safety lexicon costs per case, and how big it is.

    python -m bench.lexicon [--cases N] [--coverage]

Prints the machine, the time to load the lexicon, its size per language and category, and the
milliseconds ``Lexicon.match`` takes per case on

- 100-word narratives (the synthetic corpus's narratives, cut or run on to exactly 100 words),
- 2,000-word call transcripts (one call each, ``training.corpus.transcript``), and
- a worst case: 2,000 words made of many abuse narratives back to back, so that most anchors occur.

Each case is timed as the best of a few runs (the machine's other load only ever adds time), and
the median and the 95th percentile over the cases are printed. ``--coverage`` also prints, per
sub category of the synthetic corpus and of ``data/heldout.jsonl``, the share of narratives the
lexicon escalates. The narratives are synthetic; none is printed.
"""

from __future__ import annotations

import argparse
import platform
import random
import statistics
import sys
import time
import timeit
from collections import Counter
from typing import Sequence

from deployments.core.engine_choice import cpu_model
from deployments.core.lexicon import CATEGORIES, Lexicon


def exactly(words: list[str], n: int) -> str:
    return " ".join((words * (n // max(1, len(words)) + 1))[:n])


def narratives_100(count: int, seed: int) -> list[str]:
    from training.corpus.generate import generate_corpus
    items = generate_corpus(count, seed=seed)
    return [exactly(it.narrative.split(), 100) for it in items]


def transcripts_2000(count: int, seed: int) -> list[str]:
    from training.corpus.transcript import make_transcript
    rng = random.Random(seed)
    return [exactly(make_transcript(rng, 2000).narrative.split(), 2000) for _ in range(count)]


def worst_case_2000(count: int, seed: int) -> list[str]:
    from training.corpus.generate import generate_corpus
    items = [it for it in generate_corpus(600, seed=seed) if it.main_category in ("VANE", "GBV")]
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        rng.shuffle(items)
        words: list[str] = []
        for it in items:
            words += it.narrative.split()
            if len(words) >= 2000:
                break
        out.append(exactly(words, 2000))
    return out


def per_case_ms(lexicon: Lexicon, texts: Sequence[str], repeat: int = 5, number: int = 3) -> list[float]:
    return [min(timeit.repeat(lambda: lexicon.match(t), number=number, repeat=repeat)) / number * 1000
            for t in texts]


def size_table(lexicon: Lexicon) -> str:
    sizes = lexicon.size()
    patterns = lexicon.pattern_count()
    languages = list(sizes)
    lines = ["| category | " + " | ".join(languages) + " |", "|---|" + "---|" * len(languages)]
    for c in CATEGORIES:
        lines.append(f"| {c} | " + " | ".join(str(sizes[lang][c]) for lang in languages) + " |")
    lines.append("| entries | " + " | ".join(str(sum(sizes[lang].values())) for lang in languages) + " |")
    lines.append("| patterns | " + " | ".join(str(patterns[lang]) for lang in languages) + " |")
    return "\n".join(lines)


def coverage(lexicon: Lexicon, seed: int) -> str:
    from training.corpus.generate import generate_corpus
    from training.corpus.jsonl import load_heldout
    lines = []
    for name, items in (("synthetic corpus", generate_corpus(3000, seed=seed)), ("data/heldout.jsonl", load_heldout())):
        total, hit = Counter(), Counter()
        for it in items:
            total[it.sub_category] += 1
            hit[it.sub_category] += bool(lexicon.match(it.narrative))
        lines.append(f"\n{name}: {sum(hit.values())} of {sum(total.values())} narratives escalated")
        for sub in sorted(total, key=lambda s: (-hit[s] / total[s], s)):
            if hit[sub]:
                lines.append(f"  {sub:40s} {hit[sub]:4d} / {total[sub]}")
    return "\n".join(lines)


def screening_cost(narratives: Sequence[str]) -> dict:
    """What ``python -m bench`` reports: the lexicon alone and the whole screen (language, lexicon,
    length) per case on the bench corpus, median and p99 in ms."""
    from deployments.core.config import AppArgs
    from deployments.core.screening import NarrativeScreen

    screen = NarrativeScreen.from_args(AppArgs())
    out = {}
    for key, run in (("lexicon", screen.lexicon.match), ("screening", screen.screen)):
        ms = sorted(min(timeit.repeat(lambda: run(t), number=1, repeat=3)) * 1000 for t in narratives)
        out[f"{key}_ms_per_case_median"] = round(statistics.median(ms), 4)
        out[f"{key}_ms_per_case_p99"] = round(ms[min(len(ms) - 1, int(0.99 * len(ms)))], 4)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.lexicon", description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=100, help="100-word narratives to time (default 100)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--coverage", action="store_true", help="also print the share escalated per sub category")
    args = parser.parse_args(argv)

    print(f"CPU: {cpu_model()}; Python {platform.python_version()}")
    started = time.perf_counter()
    lexicon = Lexicon.load()
    print(f"load: {(time.perf_counter() - started) * 1000:.0f} ms ({len(lexicon.files)} files)")
    print()
    print(size_table(lexicon))
    print()
    rows = [("100 words", narratives_100(args.cases, args.seed)),
            ("2,000-word transcript", transcripts_2000(max(3, args.cases // 10), args.seed)),
            ("2,000 words, worst case", worst_case_2000(max(3, args.cases // 20), args.seed))]
    print("| narrative | cases | median ms/case | p95 ms/case | cases with a match |")
    print("|---|---|---|---|---|")
    for name, texts in rows:
        ms = sorted(per_case_ms(lexicon, texts))
        p95 = ms[min(len(ms) - 1, int(0.95 * len(ms)))]
        matched = sum(bool(lexicon.match(t)) for t in texts)
        print(f"| {name} | {len(texts)} | {statistics.median(ms):.3f} | {p95:.3f} | {matched} |")
    if args.coverage:
        print(coverage(lexicon, args.seed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
