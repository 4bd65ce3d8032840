"""What the ingress finds in a narrative before the model reads it. Pure.

``NarrativeScreen.screen`` looks at the narrative as the caller sent it and returns its language
and the signals that do not depend on the model:

- a phrase of the safety lexicon (``deployments/core/lexicon.py``, ``data/lexicon/``): escalate and
  review, whatever the model says, with the words and their offsets in the narrative sent;
- a language the model does not read (``language.model_languages``): review, naming the language;
- nothing left for the model after normalization (punctuation, or a script with no a-z), or fewer
  words than ``routing.min_words``: review, as too little to judge.

A reason never quotes the narrative: it names the category and where the words are, so it can be
kept in the case record.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from deployments.core.config import AppArgs
from deployments.core.language import Language, LanguageIdentifier, unread_language_reason
from deployments.core.lexicon import Lexicon
from deployments.core.signals import Signal
from deployments.core.text import normalize_narrative

LEXICON_CATEGORY_NAMES = {
    "suicide_self_harm": "suicide or self-harm",
    "weapon_threat": "a weapon or a threat to kill",
    "sexual_abuse": "sexual abuse",
    "abandoned_confined": "a child abandoned or confined",
    "trafficking_exploitation": "trafficking or sexual exploitation",
    "forced_marriage": "a forced marriage",
    "missing_child": "a missing child",
    "fgm": "FGM",
}
_WORD = re.compile(r"[a-z0-9]+")
# Under min_words, a language is named only when identified at least this surely.
SHORT_TEXT_LANGUAGE_CONFIDENCE = 0.5


def count_words(normalized: str) -> int:
    """Words the model reads in a normalized narrative (runs of a-z and digits)."""
    return len(_WORD.findall(normalized))


@dataclass(frozen=True)
class Screened:
    language: Language
    signals: tuple[Signal, ...]


class NarrativeScreen:
    def __init__(self, identifier: LanguageIdentifier, lexicon: Lexicon, *, model_languages: Sequence[str],
                 min_words: int):
        self.identifier = identifier
        self.lexicon = lexicon
        self.model_languages = tuple(model_languages)
        self.min_words = min_words

    @classmethod
    def from_args(cls, args: AppArgs) -> "NarrativeScreen":
        files = [Path(f) for f in args.lexicon.files]
        lexicon = Lexicon.load(files, bundled=args.lexicon.bundled)
        return cls(LanguageIdentifier(), lexicon, model_languages=args.language.model_languages,
                   min_words=args.routing.min_words)

    def screen(self, narrative: str, normalized: Optional[str] = None,
               language: Optional[Language] = None) -> Screened:
        """``narrative`` as the caller sent it; ``normalized`` and ``language``, if already known (the
        ingress identifies the language before choosing to translate), are not computed again."""
        normalized = normalize_narrative(narrative) if normalized is None else normalized
        language = self.identifier.identify(narrative) if language is None else language
        lexicon = [self.lexicon_signal(m) for m in self.lexicon.match(narrative)]
        return self.judge(language, lexicon, count_words(normalized))

    def judge(self, language: Language, lexicon_signals: Sequence[Signal], words: int) -> Screened:
        """The screen's answer from its parts: a live call (``deployments/core/calls.py``) gathers them
        piece by piece and asks here, so its answer is the one ``screen`` gives for the whole text."""
        signals = list(lexicon_signals)
        if words == 0:
            signals.append(Signal("length", "nothing_to_read", "After normalization there is nothing the model "
                                  "can read (only letters a-z and digits are kept); a person must read the "
                                  "narrative.", review=True))
        elif words < self.min_words:
            signals.append(Signal("length", "too_short", f"The narrative has {words} words, under {self.min_words}: "
                                  "too short for the model to judge.", review=True))
        # A short text's language is a guess ("help me" reads as Afrikaans at 0.06): its length is the reason then.
        judged = words >= self.min_words or language.confidence >= SHORT_TEXT_LANGUAGE_CONFIDENCE
        unread = unread_language_reason(language, self.model_languages) if words and judged else None
        if unread:
            signals.append(Signal("language", language.code, unread[0].upper() + unread[1:] + ".", review=True))
        return Screened(language, tuple(signals))

    @staticmethod
    def lexicon_signal(match) -> Signal:
        what = LEXICON_CATEGORY_NAMES.get(match.category, match.category.replace("_", " "))
        return Signal("lexicon", match.category, f"A phrase of {what} (safety lexicon, {match.language}) at "
                      f"characters {match.start}-{match.end}.", escalate=True, review=True, text=match.text,
                      start=match.start, end=match.end)
