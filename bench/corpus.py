"""The benchmark's narratives, their token counts, and the request bodies made of them."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path

WINDOW_TOKENS = 510  # the default 512-token window, less [CLS] and [SEP]


@dataclass
class Corpus:
    narratives: list[str]
    tokens: list[int]

    @property
    def median_tokens(self) -> float:
        return statistics.median(self.tokens)

    def needs_several_windows(self, i: int) -> bool:
        return self.tokens[i] > WINDOW_TOKENS

    @property
    def share_over_512(self) -> float:
        return sum(map(self.needs_several_windows, range(len(self.tokens)))) / len(self.tokens)


def make_corpus(checkpoint: Path, n: int, seed: int = 0) -> Corpus:
    from training.corpus import benchmark_corpus
    from deployments.core.loading import load_narrative_tokenizer
    from deployments.core.text import normalize_narrative

    narratives = benchmark_corpus(n, seed)
    tok = load_narrative_tokenizer(checkpoint)
    tokens = [len(ids) for ids in tok.encode([normalize_narrative(t) for t in narratives])]
    return Corpus(narratives, tokens)


def single_bodies(corpus: Corpus) -> list[tuple[dict, int]]:
    """One ``/classify`` body per case, with the number of cases it carries."""
    return [({"narrative": t}, 1) for t in corpus.narratives]


def batch_bodies(corpus: Corpus, size: int) -> list[tuple[dict, int]]:
    """``/classify/batch`` bodies of ``size`` cases each (a last, shorter one is left out)."""
    n = corpus.narratives
    return [({"narratives": n[i:i + size]}, len(n[i:i + size])) for i in range(0, len(n) - size + 1, size)]
