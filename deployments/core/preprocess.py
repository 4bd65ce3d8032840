"""From narratives to model windows: normalize, tokenize, window. Pure.

The ingress runs this on CPU, so the classifier replica only ever sees
compact int32 token arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from deployments.core.errors import ServiceError
from deployments.core.text import normalize_narrative
from deployments.core.windowing import TokenWindows, WindowSpan, tokenize_windows


@dataclass(frozen=True)
class CasePlan:
    """How one narrative was cut: what the router needs to put it back together."""

    spans: tuple[WindowSpan, ...]
    n_tokens: int
    truncated: bool
    include_confidence: bool = True
    include_chunks: bool = False

    @property
    def n_windows(self) -> int:
        return len(self.spans)

    def token_counts(self) -> list[int]:
        return [s.length for s in self.spans]


class NarrativeTokenizer:
    """The checkpoint's WordPiece tokenizer, called through its Rust backend for speed."""

    def __init__(self, hf_tokenizer):
        # A tokenizer.json can carry the truncation (and padding) its last user set,
        # e.g. one saved after a training loop tokenized with max_length=128; left on,
        # it would cut every narrative silently. Windowing is the only cut we make,
        # so a private copy of the backend runs with both off.
        backend = type(hf_tokenizer.backend_tokenizer).from_str(hf_tokenizer.backend_tokenizer.to_str())
        backend.no_truncation()
        backend.no_padding()
        self._backend = backend
        self.cls_id = int(hf_tokenizer.cls_token_id)
        self.sep_id = int(hf_tokenizer.sep_token_id)
        self.pad_id = int(hf_tokenizer.pad_token_id or 0)

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        if len(texts) == 1:
            return [self._backend.encode(texts[0], add_special_tokens=False).ids]
        return [e.ids for e in self._backend.encode_batch(list(texts), add_special_tokens=False)]


def prepare_cases(
    narratives: Sequence[str],
    tokenizer: NarrativeTokenizer,
    *,
    max_length: int,
    overlap: int,
    truncate: bool = False,
    include_confidence: bool = True,
    include_chunks: bool = False,
    is_batch: bool = False,
) -> tuple[TokenWindows, list[CasePlan]]:
    normalized = [normalize_narrative(n) for n in narratives]
    for i, text in enumerate(normalized):
        if not text.strip():
            where = f"'narratives[{i}]'" if is_batch else "'narrative'"
            raise ServiceError.empty(
                f"{where} is empty after normalization (only letters a-z, digits and spaces are kept)."
            )
    rows = []
    plans = []
    for ids in tokenizer.encode(normalized):
        windows, spans = tokenize_windows(
            ids, cls_id=tokenizer.cls_id, sep_id=tokenizer.sep_id, max_length=max_length, overlap=overlap
        )
        truncated = truncate and len(windows) > 1
        if truncated:
            windows, spans = windows[:1], spans[:1]
        rows.extend(windows)
        plans.append(CasePlan(tuple(spans), len(ids), truncated, include_confidence, include_chunks))
    return TokenWindows.from_rows(rows), plans
