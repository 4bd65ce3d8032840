"""The evidence behind a routing decision. Pure.

Every reason in ``routing.reasons`` comes from one ``Signal``; the response lists the signals in
``routing.signals`` so a counsellor sees which words, which window or which threshold made a case
urgent or sent it to review. A signal found in the text (a lexicon phrase) carries the words as
the caller sent them and their character offsets into that narrative; the case record keeps the
source, category and offsets only, never the words (``Signal.recorded``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

Source = Literal["lexicon", "model", "language", "taxonomy", "threshold", "length"]


@dataclass(frozen=True)
class Signal:
    source: Source
    category: str
    reason: str  # the plain words in routing.reasons
    escalate: bool = False
    review: bool = False
    text: Optional[str] = None  # the matched words, as they appear in the narrative the caller sent
    start: Optional[int] = None  # character offsets into that narrative
    end: Optional[int] = None
    window: Optional[int] = None  # the model's window that drove it (source "model")

    def to_json(self) -> dict:
        """The response's signal; the case record keeps it without ``text`` (store/repository.py: case_row)."""
        return {"source": self.source, "category": self.category, "text": self.text, "start": self.start,
                "end": self.end, "window": self.window}
