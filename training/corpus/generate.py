"""The labelled training corpus: balanced over the covered sub categories, deterministic for a seed."""

from __future__ import annotations

import random

from training.corpus.calls import labelled_item, new_call
from training.corpus.prose import compose
from training.corpus.records import GeneratedRecord, LabelledNarrative
from training.corpus.scenarios import load_scenarios


def _schedule(rng: random.Random, n: int) -> list[str]:
    """Balanced sub-category order: weighted round-robin, reshuffled every cycle."""
    scen = load_scenarios()
    cycle = [s for s in scen for _ in range(scen[s].weight)]
    out: list[str] = []
    while len(out) < n:
        c = list(cycle)
        rng.shuffle(c)
        out.extend(c)
    return out[:n]


def generate_records(n: int, seed: int = 0) -> list[GeneratedRecord]:
    """Like :func:`generate_corpus`, with each narrative's kind, noise flag, caller and template."""
    if n < 0:
        raise ValueError("n must be >= 0")
    rng = random.Random(seed)
    scen = load_scenarios()
    out = []
    for sub in _schedule(rng, n):
        call = new_call(rng, scen[sub])
        text = compose(rng, call)
        out.append(GeneratedRecord(item=labelled_item(call, text), kind=call.kind, noisy=call.noisy,
                                   caller=call.caller, template=call.template_index))
    return out


def generate_corpus(n: int, seed: int = 0) -> list[LabelledNarrative]:
    """``n`` labelled narratives, balanced over the covered sub categories, deterministic for ``seed``."""
    return [r.item for r in generate_records(n, seed)]
