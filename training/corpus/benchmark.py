"""The benchmark corpus: helpline-style narratives with a realistic length spread, for load tests.

About 4% very short calls (under 20 words: silent calls, prank calls, dropped
calls), about 11% long ones of 440-1,400 words (prose or a call transcript;
> 512 WordPiece tokens), and the rest drawn from a log-normal around 110 words
(clipped to 25-400).
"""

from __future__ import annotations

import math
import random

from training.corpus.calls import labelled_item, new_call, pick_scenario
from training.corpus.data import load_pools
from training.corpus.prose import compose
from training.corpus.records import LabelledNarrative
from training.corpus.rules import SIGNPOSTING
from training.corpus.transcript import transcript

# Benchmark length mix (see the module docstring).
BENCH_SHORT_FRACTION = 0.04
BENCH_LONG_FRACTION = 0.11
BENCH_LONG_RANGE = (440, 1400)
BENCH_MEDIAN_TARGET = 110
BENCH_SIGMA = 0.40
BENCH_CLIP = (25, 400)


def _bench_target(rng: random.Random) -> int | None:
    """None for a very short call; else a target length in words (see module docstring)."""
    u = rng.random()
    if u < BENCH_SHORT_FRACTION:
        return None
    if u < BENCH_SHORT_FRACTION + BENCH_LONG_FRACTION:
        return rng.randint(*BENCH_LONG_RANGE)
    t = round(rng.lognormvariate(math.log(BENCH_MEDIAN_TARGET), BENCH_SIGMA))
    return min(max(t, BENCH_CLIP[0]), BENCH_CLIP[1])


def benchmark_records(n: int, seed: int = 0) -> list[LabelledNarrative]:
    """Labelled version of :func:`benchmark_corpus` (very short calls are labelled Outside Mandate)."""
    rng = random.Random(f"benchmark-{seed}")
    pools = load_pools()
    out = []
    for _ in range(n):
        target = _bench_target(rng)
        if target is None:
            text = rng.choice(pools["short_calls"])
            out.append(LabelledNarrative(text, "Unknown", "Outside Mandate", SIGNPOSTING, 1))
            continue
        call = new_call(rng, pick_scenario(rng))
        if target > 420 and rng.random() < 0.5:
            text = transcript(rng, call, target)
        else:
            text = compose(rng, call, target_words=target)
        out.append(labelled_item(call, text))
    return out


def benchmark_corpus(n: int, seed: int = 0) -> list[str]:
    """``n`` helpline-style narratives with a realistic length spread (see module docstring)."""
    return [r.narrative for r in benchmark_records(n, seed)]
