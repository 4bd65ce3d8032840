"""Split a tokenized narrative into overlapping model windows.

The model reads at most ``max_length`` tokens including [CLS] and [SEP]. A
longer narrative becomes several windows that overlap by ``overlap`` tokens,
so that every token is read at least once, and a sentence cut at one window's
edge is read whole by the next. Windows travel to the classifier as one flat
int32 array plus offsets (``TokenWindows``): cheap to serialize between
replicas, unlike Python lists of ints.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np


@dataclass(frozen=True)
class WindowSpan:
    start: int  # first content token (0-based, specials excluded)
    end: int  # one past the last content token

    @property
    def length(self) -> int:
        return self.end - self.start


def window_spans(n_tokens: int, max_length: int, overlap: int) -> list[WindowSpan]:
    """Spans of content tokens, each at most ``max_length - 2`` long."""
    content = max_length - 2
    if content <= 0:
        raise ValueError("max_length must leave room for [CLS] and [SEP]")
    if not 0 <= overlap < content:
        raise ValueError(f"overlap must be in [0, {content}), got {overlap}")
    if n_tokens <= 0:
        # Nothing left after normalization: one window of [CLS] [SEP], as the card's recipe reads "".
        return [WindowSpan(0, 0)]
    step = content - overlap
    spans = []
    start = 0
    while True:
        end = min(start + content, n_tokens)
        spans.append(WindowSpan(start, end))
        if end == n_tokens:
            return spans
        start += step


@dataclass(frozen=True)
class TokenWindows:
    """Windows of token ids, ready for the model: [CLS] ids [SEP] per row."""

    ids: np.ndarray  # int32, all windows back to back
    offsets: np.ndarray  # int32, len = n_windows + 1

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def window(self, i: int) -> np.ndarray:
        return self.ids[self.offsets[i] : self.offsets[i + 1]]

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @classmethod
    def from_rows(cls, rows: Sequence[np.ndarray]) -> "TokenWindows":
        lengths = [len(r) for r in rows]
        offsets = np.zeros(len(rows) + 1, dtype=np.int32)
        np.cumsum(lengths, out=offsets[1:])
        ids = np.concatenate(rows).astype(np.int32, copy=False) if rows else np.zeros(0, np.int32)
        return cls(ids, offsets)

    @classmethod
    def concat(cls, parts: Iterable["TokenWindows"]) -> "TokenWindows":
        parts = list(parts)
        return cls.from_rows([p.window(i) for p in parts for i in range(len(p))])

    def slice(self, start: int, stop: int) -> "TokenWindows":
        return TokenWindows.from_rows([self.window(i) for i in range(start, stop)])


def tokenize_windows(
    token_ids: Sequence[int], *, cls_id: int, sep_id: int, max_length: int, overlap: int
) -> tuple[list[np.ndarray], list[WindowSpan]]:
    """Windows (with specials) and their content-token spans for one narrative."""
    content = np.asarray(token_ids, dtype=np.int32)
    spans = window_spans(len(content), max_length, overlap)
    head = np.array([cls_id], dtype=np.int32)
    tail = np.array([sep_id], dtype=np.int32)
    rows = [np.concatenate([head, content[s.start : s.end], tail]) for s in spans]
    return rows, spans
