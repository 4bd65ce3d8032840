"""Filling a template's slots (``{pron}``, ``{The_child}`` ...) from a call's context."""

from __future__ import annotations

import random
import re
from typing import Mapping, Sequence

_SLOT_RE = re.compile(r"\{([A-Za-z_]+)\}")


class _MissingSlot(KeyError):
    pass


def render(text: str, ctx: Mapping[str, str], depth: int = 0) -> str:
    def sub(m: re.Match) -> str:
        key = m.group(1)
        cap = False
        if key in ctx:
            val = ctx[key]
        else:
            low = key[0].lower() + key[1:]
            if key[0].isupper() and low in ctx:
                val, cap = ctx[low], True
            else:
                raise _MissingSlot(key)
        if "{" in val:
            if depth > 5:
                raise ValueError(f"slot nesting too deep in {text!r}")
            val = render(val, ctx, depth + 1)
        if cap:
            val = val[:1].upper() + val[1:]
        return val

    return _SLOT_RE.sub(sub, text)


def sentence(text: str, ctx: Mapping[str, str]) -> str | None:
    """Render one sentence; None if a slot is not available in this context."""
    try:
        out = render(text, ctx)
    except _MissingSlot:
        return None
    out = re.sub(r"\s+", " ", out).strip()
    out = _fix_articles(out)
    return out[:1].upper() + out[1:]


_AN_RE = re.compile(r"\b([Aa]) (?=(?:8|11|18)\b|(?:8|11|18)-|S\d|eight|eleven|(?!one|uni|use)[aeiouAEIOU])")


def _fix_articles(text: str) -> str:
    """'a 8-year-old' -> 'an 8-year-old', 'a infant' -> 'an infant'."""
    return _AN_RE.sub(lambda m: m.group(1) + "n ", text)


def first_rendering(rng: random.Random, patterns: Sequence[str], ctx: Mapping[str, str]) -> str | None:
    order = list(patterns)
    rng.shuffle(order)
    for p in order:
        s = sentence(p, ctx)
        if s is not None:
            return s
    return None


def count_words(text: str) -> int:
    return len(text.split())
