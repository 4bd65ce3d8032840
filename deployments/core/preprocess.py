"""From narratives to model windows: normalize, tokenize, window. Pure.

The ingress runs this on CPU, so the classifier replica only ever sees
compact int32 token arrays. ``CasePreparer`` is the one place the app's text
settings (max_length, window_overlap, long_narratives) and its window limit
are applied: the ingress's pipeline, its coalescer, the intake and the
in-process pipeline all prepare cases through it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Optional, Sequence

from deployments.core.config import AppArgs
from deployments.core.errors import ServiceError
from deployments.core.language import Language
from deployments.core.screening import NarrativeScreen
from deployments.core.signals import Signal
from deployments.core.text import normalize_narrative
from deployments.core.windowing import TokenWindows, WindowSpan, tokenize_windows


@dataclass(frozen=True)
class CasePlan:
    """How one narrative was cut, and what the ingress found in its text: what the router needs."""

    spans: tuple[WindowSpan, ...]
    n_tokens: int
    truncated: bool
    include_confidence: bool = True
    include_chunks: bool = False
    language: Optional[dict] = None  # {"code", "name", "confidence"}
    signals: tuple[Signal, ...] = ()  # found in the text: lexicon phrases, language, length
    translation: Optional[dict] = None  # {"source_language", "model"} when the model read a translation

    @property
    def n_windows(self) -> int:
        return len(self.spans)

    def token_counts(self) -> list[int]:
        return [s.length for s in self.spans]


class NarrativeTokenizer:
    """The checkpoint's WordPiece tokenizer, called through its Rust backend (a ``tokenizers.Tokenizer``)
    for speed; ``loading.load_narrative_tokenizer`` builds it from a checkpoint."""

    def __init__(self, backend, *, cls_id: int, sep_id: int, pad_id: int = 0):
        # A tokenizer.json can carry the truncation (and padding) its last user set,
        # e.g. one saved after a training loop tokenized with max_length=128; left on,
        # it would cut every narrative silently. Windowing is the only cut we make,
        # so a private copy of the backend runs with both off.
        backend = type(backend).from_str(backend.to_str())
        backend.no_truncation()
        backend.no_padding()
        self._backend = backend
        self.cls_id, self.sep_id, self.pad_id = int(cls_id), int(sep_id), int(pad_id)

    @classmethod
    def from_hf(cls, hf_tokenizer) -> "NarrativeTokenizer":
        """From a transformers tokenizer (its backend and special tokens)."""
        return cls(hf_tokenizer.backend_tokenizer, cls_id=hf_tokenizer.cls_token_id,
                   sep_id=hf_tokenizer.sep_token_id, pad_id=hf_tokenizer.pad_token_id or 0)

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
    screen: Optional[NarrativeScreen] = None,
    translations: Optional[Sequence[Optional[Translated]]] = None,
    languages: Optional[Sequence[Language]] = None,
) -> tuple[TokenWindows, list[CasePlan]]:
    """``screen``: what to look for in each narrative as sent (language, lexicon, length) besides the model.
    ``translations``: per narrative, the English the model reads instead, or None (screening reads the original).
    ``languages``: per narrative, its language where already identified, so the screen does not do it again."""
    translations = list(translations) if translations is not None else [None] * len(narratives)
    languages = list(languages) if languages is not None else [None] * len(narratives)
    normalized = [normalize_narrative(t.text if t is not None else n) for n, t in zip(narratives, translations)]
    rows = []
    plans = []
    for narrative, translated, language, text, ids in zip(narratives, translations, languages, normalized,
                                                         tokenizer.encode(normalized)):
        windows, spans = tokenize_windows(
            ids, cls_id=tokenizer.cls_id, sep_id=tokenizer.sep_id, max_length=max_length, overlap=overlap
        )
        truncated = truncate and len(windows) > 1
        if truncated:
            windows, spans = windows[:1], spans[:1]
        rows.extend(windows)
        found = (screen.screen(narrative, text if translated is None else None, language)
                 if screen is not None else None)
        plans.append(CasePlan(tuple(spans), len(ids), truncated, include_confidence, include_chunks,
                              language=found.language.to_json() if found else None,
                              signals=found.signals if found else (),
                              translation=translated.describe() if translated is not None else None))
    return TokenWindows.from_rows(rows), plans


@dataclass(frozen=True)
class Translated:
    """What the model reads instead of a narrative: its machine translation into English."""

    text: str
    source_language: str
    model: str

    def describe(self) -> dict:
        return {"source_language": self.source_language, "model": self.model}


@dataclass(frozen=True)
class SingleCase:
    """One /classify request's case, ready to join a group (``deployments/core/coalesce.py``)."""

    windows: TokenWindows
    plan: CasePlan
    call_id: Optional[str] = None
    request_id: Optional[str] = None  # captured in the caller's task: the group runs in another
    narrative: Optional[str] = None  # normalized; only when the operator keeps narratives
    case_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    @property
    def n_windows(self) -> int:
        return len(self.windows)


@dataclass(frozen=True)
class CasePreparer:
    """Narratives to windows and plans, under the app's text settings and window limit."""

    tokenizer: NarrativeTokenizer
    max_length: int
    overlap: int
    truncate: bool
    max_windows: Optional[int]  # None: no limit (offline, in one process)
    keep_narratives: bool = False
    screen: Optional[NarrativeScreen] = None

    @classmethod
    def from_args(cls, args: AppArgs, tokenizer: NarrativeTokenizer, *, limit_windows: bool = True) -> "CasePreparer":
        return cls(tokenizer, max_length=args.max_length, overlap=args.window_overlap,
                   truncate=args.long_narratives == "truncate",
                   max_windows=args.max_batch_windows if limit_windows else None,
                   keep_narratives=args.feedback.keep_narratives, screen=NarrativeScreen.from_args(args))

    def prepare(self, narratives: Sequence[str], *, include_confidence: bool = True, include_chunks: bool = False,
                translations: Optional[Sequence[Optional[Translated]]] = None,
                languages: Optional[Sequence[Language]] = None) -> tuple[TokenWindows, list[CasePlan]]:
        """The cases' windows and plans; raises the 413 (too many windows) the caller gets."""
        windows, plans = prepare_cases(narratives, self.tokenizer, max_length=self.max_length, overlap=self.overlap,
                                       truncate=self.truncate, include_confidence=include_confidence,
                                       include_chunks=include_chunks, screen=self.screen, translations=translations,
                                       languages=languages)
        if self.max_windows is not None and len(windows) > self.max_windows:
            raise ServiceError.too_large(
                f"The request needs {len(windows)} model windows; the limit is {self.max_windows}.")
        return windows, plans

    def single(self, narrative: str, *, include_confidence: bool = True, include_chunks: bool = False,
               call_id: Optional[str] = None, request_id: Optional[str] = None,
               translation: Optional[Translated] = None, language: Optional[Language] = None) -> SingleCase:
        """One /classify narrative as a ``SingleCase``; raises the 413 its caller gets."""
        windows, (plan,) = self.prepare([narrative], include_confidence=include_confidence,
                                        include_chunks=include_chunks, translations=[translation],
                                        languages=None if language is None else [language])
        return SingleCase(windows, plan, call_id=call_id, request_id=request_id,
                          narrative=self.kept([narrative])[0] if self.keep_narratives else None)

    def sentence_token_counts(self, sentences: Sequence[str]) -> list[int]:
        """The model's tokens in each sentence, normalized as a narrative is (OpenCHS's chunk_predictions)."""
        return [len(ids) for ids in self.tokenizer.encode([normalize_narrative(s) for s in sentences])]

    def language_of(self, narrative: str) -> Optional[Language]:
        """The narrative's language, for the choice to translate it (None without a screen)."""
        return self.screen.identifier.identify(narrative) if self.screen is not None else None

    def kept(self, narratives: Sequence[str]) -> Optional[list[str]]:
        """What the case record may keep of the text: the normalized narratives, only when the operator says so."""
        return [normalize_narrative(n) for n in narratives] if self.keep_narratives else None
