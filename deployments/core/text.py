"""Narrative normalization, exactly as the model was trained.

Training lower-cased, stripped, then deleted every character outside
``[a-z0-9]`` and whitespace. Serving must do the same, or the model sees text
it never saw in training. Note that accented letters and non-Latin scripts are
deleted too: that is the training recipe, not a bug of ours.
"""

from __future__ import annotations

import re

_OUTSIDE_VOCAB = re.compile(r"[^a-z0-9\s]")


def normalize_narrative(text: str) -> str:
    return _OUTSIDE_VOCAB.sub("", text.lower().strip())
