"""The safety lexicon: phrases that escalate a case whatever the model says. Pure.

The phrases are data (``data/lexicon/``, one file per language: ``en.yaml``, ``sw.yaml``,
``sheng.yaml``; its README.md describes the format). ``Lexicon.load`` reads, checks and compiles
them once; ``Lexicon.match`` then finds the phrases in a narrative *as the caller sent it*
(case-insensitive, tolerant of punctuation and extra spaces between words), so each match's
``start``/``end`` are character offsets into that string and ``narrative[start:end] == text``.
Every file is matched against every narrative: callers switch language mid-sentence.

A pattern runs only where the literal words any match of it must hold occur (its anchors, found
at load: ``deployments/core/lexicon_anchors.py``), so a narrative costs a dict lookup per distinct
word and a few short regex searches, not a few hundred regexes over the whole text.

A pattern is a Python regular expression with four conveniences, expanded at load:

- a space between words matches any run of spaces and punctuation (``[\\W_]+``); a space followed
  by ``?`` makes that run optional (``self ?harm``: "self harm", "self-harm", "selfharm");
- ``{~N}`` (with or without spaces around it) lets up to N other words stand between two words;
- ``{NAME}`` is a macro of the file (``macros:``), e.g. Swahili's subject and tense prefixes;
- ``'`` matches any apostrophe (``'``, ``’``, ``‘``, `````).

Every pattern is matched on whole words (no letter or digit right before or after it). A match an
exclusion pattern overlaps (the entry's own ``exclude``, or its language's) is dropped, and the
search goes on from the next character, so a figurative use ("my feet are killing me") never
escalates, while a real phrase next to it still does.

Nothing here logs: a narrative, or the words matched in it, never leave the caller's hands.
"""

from __future__ import annotations

import functools
import heapq
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, NamedTuple, Optional, Sequence, Union

import yaml

from deployments.core.lexicon_anchors import AnchorIndex, anchors, occurrences, searchable, windows, word_start

CATEGORIES: tuple[str, ...] = (
    "suicide_self_harm",
    "weapon_threat",
    "sexual_abuse",
    "abandoned_confined",
    "trafficking_exploitation",
    "forced_marriage",
    "missing_child",
    "fgm",
)

# The files shipped with the project: every *.yaml there is loaded unless a deployment says otherwise.
BUNDLED_LEXICON_DIR = Path(__file__).resolve().parents[2] / "data" / "lexicon"
LEXICON_SUFFIXES = (".yaml", ".yml", ".json")

# How far either side of a match an exclusion pattern is looked for (characters).
EXCLUSION_WINDOW = 120
# How far either side of an anchor a pattern's match is looked for (characters), for the rare
# pattern with no bound on the words it spans (the others' windows are counted in words).
MATCH_WINDOW = 150
MAX_GAP_WORDS = 8

_SEP = r"[\W_]+"
_SEP_OPTIONAL = r"[\W_]*"
_APOSTROPHE = "['\u2019\u2018`]"
_MACRO = re.compile(r"\{([A-Z][A-Z0-9_]*)\}")
_GAP = re.compile(r"\{~(\d{1,2})\}")
# Spaces right after "|" are layout (a long alternation folded over lines), not separators.
_ALTERNATION_SPACES = re.compile(r"\|\s+")
_FILE_KEYS = {"language", "notes", "macros", "exclude", "entries", "disable"}
_ENTRY_KEYS = {"id", "category", "patterns", "false_alarm", "exclude", "notes"}

PathLike = Union[str, Path]


@dataclass(frozen=True)
class LexiconMatch:
    category: str
    language: str
    text: str  # the matched words as the narrative has them
    start: int  # character offsets into the narrative: narrative[start:end] == text
    end: int
    entry_id: str

    def to_signal(self) -> dict:
        return {"source": "lexicon", "category": self.category, "text": self.text, "start": self.start,
                "end": self.end}


@dataclass(frozen=True)
class LexiconEntry:
    id: str
    category: str
    language: str
    patterns: tuple[str, ...]  # as written in the file
    false_alarm: str  # what a wrong match costs, and why the phrase is still worth it
    source: str  # the file it came from
    exclude: tuple[str, ...] = ()


class _Compiled(NamedTuple):
    entry: int  # index into Lexicon.entries
    regex: re.Pattern
    primary: frozenset  # anchors: one of these occurs in every match; the windows are cut around them
    checks: tuple[frozenset, ...]  # more such sets, each of which must occur too (a cheap filter)
    first_word: bool  # the primary anchors are in the match's first word: try it only where such a word starts
    words: Optional[int]  # the most word gaps a match spans (None: no bound): the windows' size


class Lexicon:
    """The loaded, checked and compiled lexicon. Build it with ``load`` or ``from_documents``."""

    def __init__(self, entries: Sequence[LexiconEntry], patterns: Sequence[Sequence[str]],
                 entry_excludes: Sequence[Optional[re.Pattern]], language_excludes: Mapping[str, re.Pattern],
                 files: Sequence[str]):
        self.entries: tuple[LexiconEntry, ...] = tuple(entries)
        self.files: tuple[str, ...] = tuple(files)
        self._entry_excludes = tuple(entry_excludes)
        self._language_excludes = dict(language_excludes)
        # Every pattern on its own, with the literal words any match of it must contain (its anchors).
        self._patterns: list[_Compiled] = []
        for index, expanded in enumerate(patterns):
            for source in expanded:
                self._patterns.append(_Compiled(index, _regex(_bounded(source)), *anchors(_bounded(source))))
        by_anchor: dict[str, list[int]] = {}
        for k, p in enumerate(self._patterns):
            for anchor in p.primary:
                by_anchor.setdefault(anchor, []).append(k)
        self._by_anchor = {a: tuple(ks) for a, ks in by_anchor.items()}
        self._index = AnchorIndex(set(by_anchor) | {a for p in self._patterns for s in p.checks for a in s})
        self._unanchored = tuple(k for k, p in enumerate(self._patterns) if not p.primary)

    # ------------------------------------------------------------------ loading

    @classmethod
    def load(cls, paths: Optional[Sequence[PathLike]] = None, *, bundled: bool = True) -> "Lexicon":
        """The bundled files (``data/lexicon/*.yaml``) and ``paths`` (files, or folders of them) after them.

        With ``bundled=False`` the ``paths`` alone: a deployment's replacement. Each file is YAML
        (``.yaml``/``.yml``) or JSON (``.json``). A bad file raises ValueError naming it.
        """
        files: list[Path] = []
        if bundled:
            files += _lexicon_files(BUNDLED_LEXICON_DIR)
        for path in paths or ():
            files += _lexicon_files(Path(path))
        unique: list[Path] = []
        seen: set[Path] = set()
        for f in files:
            if f.resolve() not in seen:
                seen.add(f.resolve())
                unique.append(f)
        if not unique:
            raise ValueError("no lexicon file to load: the bundled files are off and no other file was named")
        return cls.from_documents([(str(f), _read(f)) for f in unique])

    @classmethod
    def from_documents(cls, documents: Sequence[tuple[str, object]]) -> "Lexicon":
        """Build from already-read files: (name used in errors, the parsed YAML/JSON document)."""
        entries: list[LexiconEntry] = []
        patterns: list[list[str]] = []
        entry_excludes: list[Optional[re.Pattern]] = []
        language_exclude_sources: dict[str, list[str]] = {}
        where_defined: dict[str, str] = {}
        disabled: list[tuple[str, str]] = []
        for name, document in documents:
            doc = _check_file(name, document)
            language = doc["language"]
            macros = _check_macros(name, doc.get("macros") or {})
            for i, source in enumerate(_string_list(name, "file", "exclude", doc.get("exclude") or [])):
                expanded = _expand(source, macros, f"{name}: exclude #{i + 1}")
                _compile_one(expanded, f"{name}: exclude #{i + 1} ({source!r})")
                language_exclude_sources.setdefault(language, []).append(expanded)
            disabled += [(name, d) for d in _string_list(name, "file", "disable", doc.get("disable") or [])]
            for index, raw in enumerate(doc["entries"]):
                entry, expanded, exclude = _check_entry(name, index, raw, language, macros)
                if entry.id in where_defined:
                    raise ValueError(f"{name}: entry {entry.id!r}: the id is already used in {where_defined[entry.id]}")
                where_defined[entry.id] = name
                entries.append(entry)
                patterns.append(expanded)
                entry_excludes.append(exclude)
        for name, entry_id in disabled:
            if entry_id not in where_defined:
                raise ValueError(f"{name}: disable names {entry_id!r}, which no loaded file defines")
        off = {entry_id for _, entry_id in disabled}
        keep = [i for i, e in enumerate(entries) if e.id not in off]
        language_excludes = {lang: re.compile(_bounded("|".join(sources)), re.IGNORECASE)
                             for lang, sources in language_exclude_sources.items()}
        return cls([entries[i] for i in keep], [patterns[i] for i in keep], [entry_excludes[i] for i in keep],
                   language_excludes, [name for name, _ in documents])

    # ------------------------------------------------------------------ matching

    def match(self, text: str, *, exhaustive: bool = False) -> list[LexiconMatch]:
        """The lexicon's phrases in ``text``: non-overlapping, by start, offsets into ``text`` itself.

        Where two matches overlap, the one that starts first wins, then the longer, then the entry
        loaded first. A match an exclusion overlaps is dropped and its pattern tried again from the
        next character. ``exhaustive`` runs every pattern over the whole text, skipping the anchors
        (``deployments/core/lexicon_anchors.py``): slower, the same result; for tests.
        """
        if not text:
            return []
        n = len(text)
        lowered = text.lower()
        aligned = len(lowered) == n and not exhaustive  # İ lowers to two characters: then no windows
        padded = searchable(lowered)
        present = self._index.present(padded)
        candidates = set(self._unanchored)
        by_anchor = self._by_anchor
        for anchor in present:
            candidates.update(by_anchor.get(anchor, ()))
        heap: list[tuple[int, int, int, int, int, int]] = []  # (start, -end, entry, pattern, lo, hi)
        spots: dict[str, list[int]] = {}
        for k in (range(len(self._patterns)) if exhaustive else sorted(candidates)):
            p = self._patterns[k]
            if not exhaustive and any(present.isdisjoint(s) for s in p.checks):
                continue
            if aligned and p.first_word:
                starts = set()
                for anchor in p.primary & present:
                    found = spots.get(anchor)
                    if found is None:
                        found = spots[anchor] = occurrences(padded, anchor)
                    starts.update(word_start(text, i) for i in found)
                for start in sorted(starts):
                    m = p.regex.match(text, start)
                    if m is not None:
                        heap.append((m.start(), -m.end(), p.entry, k, start, n))
                continue
            spans = (windows(padded, p.primary & present, n, p.words, MATCH_WINDOW, spots)
                     if aligned and p.primary else [(0, n)])
            for lo, hi in spans:
                m = p.regex.search(text, lo, hi)
                while m is not None:
                    heap.append((m.start(), -m.end(), p.entry, k, lo, hi))
                    m = p.regex.search(text, m.end() if m.end() > m.start() else m.end() + 1, hi)
        if not heap:
            return []
        heapq.heapify(heap)
        found: list[LexiconMatch] = []
        last_end = 0
        seen: set[tuple[int, int, int]] = set()
        while heap:
            start, neg_end, index, k, lo, hi = heapq.heappop(heap)
            end = -neg_end
            if (start, end, k) in seen:
                continue
            if start < last_end:  # overlaps a match taken: look again after it
                again = self._patterns[k].regex.search(text, last_end, hi)
                if again is not None:
                    heapq.heappush(heap, (again.start(), -again.end(), index, k, lo, hi))
                continue
            seen.add((start, end, k))
            if self._excluded(index, text, start, end):
                again = self._patterns[k].regex.search(text, start + 1, hi)
                if again is not None:
                    heapq.heappush(heap, (again.start(), -again.end(), index, k, lo, hi))
                continue
            entry = self.entries[index]
            found.append(LexiconMatch(entry.category, entry.language, text[start:end], start, end, entry.id))
            last_end = end
        return found

    def _excluded(self, index: int, text: str, start: int, end: int) -> bool:
        lo, hi = max(0, start - EXCLUSION_WINDOW), min(len(text), end + EXCLUSION_WINDOW)
        for exclude in (self._entry_excludes[index], self._language_excludes.get(self.entries[index].language)):
            if exclude is None:
                continue
            for x in exclude.finditer(text, lo, hi):
                if x.start() < end and start < x.end():
                    return True
                if x.start() >= end:
                    break
        return False

    # ------------------------------------------------------------------ what it holds

    @property
    def languages(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(e.language for e in self.entries))

    @property
    def categories(self) -> tuple[str, ...]:
        """The categories with at least one entry, in ``CATEGORIES`` order."""
        present = {e.category for e in self.entries}
        return tuple(c for c in CATEGORIES if c in present)

    def size(self) -> dict[str, dict[str, int]]:
        """Entries per language and category (every category listed, 0 where none)."""
        sizes: dict[str, dict[str, int]] = {lang: dict.fromkeys(CATEGORIES, 0) for lang in self.languages}
        for e in self.entries:
            sizes[e.language][e.category] += 1
        return sizes

    def pattern_count(self) -> dict[str, int]:
        counts: dict[str, int] = {lang: 0 for lang in self.languages}
        for e in self.entries:
            counts[e.language] += len(e.patterns)
        return counts


# ---------------------------------------------------------------------- reading and checking

def _lexicon_files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in LEXICON_SUFFIXES)
    if not path.is_file():
        raise FileNotFoundError(f"lexicon file {path} does not exist")
    return [path]


def _read(path: Path) -> object:
    text = path.read_text(encoding="utf-8")
    try:
        return json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (yaml.YAMLError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: not valid {'JSON' if path.suffix.lower() == '.json' else 'YAML'}: {err}") from None


def _check_file(name: str, document: object) -> dict:
    if not isinstance(document, dict):
        raise ValueError(f"{name}: a lexicon file holds a mapping with 'language' and 'entries'")
    unknown = set(document) - _FILE_KEYS
    if unknown:
        raise ValueError(f"{name}: unknown key(s) {sorted(unknown)}; allowed: {sorted(_FILE_KEYS)}")
    language = document.get("language")
    if not isinstance(language, str) or not language.strip():
        raise ValueError(f"{name}: 'language' must name the file's language (e.g. en, sw, sheng)")
    entries = document.get("entries")
    if not isinstance(entries, list):
        raise ValueError(f"{name}: 'entries' must be a list")
    return document


def _check_macros(name: str, macros: object) -> dict[str, str]:
    if not isinstance(macros, dict):
        raise ValueError(f"{name}: 'macros' must map NAME to a pattern")
    for key, value in macros.items():
        if not isinstance(key, str) or not re.fullmatch(r"[A-Z][A-Z0-9_]*", key) or not isinstance(value, str):
            raise ValueError(f"{name}: macro {key!r}: names are UPPER_CASE and values are patterns")
    return {key: _ALTERNATION_SPACES.sub("|", value.strip()) for key, value in macros.items()}


def _string_list(name: str, where: str, key: str, value: object) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ValueError(f"{name}: {where}: {key!r} must be a list of non-empty strings")
    return value


def _check_entry(name: str, index: int, raw: object, language: str,
                 macros: Mapping[str, str]) -> tuple[LexiconEntry, list[str], Optional[re.Pattern]]:
    if not isinstance(raw, dict):
        raise ValueError(f"{name}: entry #{index + 1} is not a mapping")
    entry_id = raw.get("id")
    if not isinstance(entry_id, str) or not entry_id.strip():
        raise ValueError(f"{name}: entry #{index + 1} has no 'id'")
    where = f"{name}: entry {entry_id!r}"
    unknown = set(raw) - _ENTRY_KEYS
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(_ENTRY_KEYS)}")
    category = raw.get("category")
    if category not in CATEGORIES:
        raise ValueError(f"{where}: unknown category {category!r}; known: {', '.join(CATEGORIES)}")
    false_alarm = raw.get("false_alarm")
    if not isinstance(false_alarm, str) or not false_alarm.strip():
        raise ValueError(f"{where}: no 'false_alarm' note (what a wrong match costs, and why the phrase is "
                         "still worth it): every phrase is reviewed for the harm of a false alarm")
    patterns = _string_list(name, f"entry {entry_id!r}", "patterns", raw.get("patterns"))
    if not patterns:
        raise ValueError(f"{where}: 'patterns' is empty")
    expanded = []
    for source in patterns:
        one = _expand(source, macros, where)
        _compile_one(one, f"{where}: pattern {source!r}")
        expanded.append(one)
    excludes = _string_list(name, f"entry {entry_id!r}", "exclude", raw.get("exclude") or [])
    exclude_expanded = []
    for source in excludes:
        one = _expand(source, macros, where)
        _compile_one(one, f"{where}: exclude {source!r}")
        exclude_expanded.append(one)
    entry = LexiconEntry(entry_id, category, language, tuple(patterns), false_alarm.strip(), name, tuple(excludes))
    exclude = re.compile(_bounded("|".join(exclude_expanded)), re.IGNORECASE) if exclude_expanded else None
    return entry, expanded, exclude


def _bounded(alternation: str) -> str:
    return r"(?<!\w)(?:" + alternation + r")(?!\w)"


@functools.lru_cache(maxsize=4096)
def _regex(source: str) -> re.Pattern:
    """Compiled once per process: a lexicon loaded again (a test, a second replica's screen) reuses it."""
    return re.compile(source, re.IGNORECASE)


def _compile_one(expanded: str, where: str) -> re.Pattern:
    try:
        pattern = _regex(_bounded(expanded))
    except re.error as err:
        raise ValueError(f"{where}: does not compile: {err}") from None
    if pattern.groups:
        raise ValueError(f"{where}: has a capturing group; write (?:...) instead")
    if pattern.fullmatch(""):
        raise ValueError(f"{where}: matches the empty string")
    return pattern


def _expand(source: str, macros: Mapping[str, str], where: str) -> str:
    """A pattern as written in a file → the regular expression it stands for."""
    text = _ALTERNATION_SPACES.sub("|", source.strip())
    for _ in range(10):
        def one(m: re.Match) -> str:
            if m.group(1) not in macros:
                raise ValueError(f"{where}: unknown macro {{{m.group(1)}}} in {source!r}")
            return "(?:" + macros[m.group(1)] + ")"
        expanded = _MACRO.sub(one, text)
        if expanded == text:
            break
        text = expanded
    else:
        raise ValueError(f"{where}: macros nest too deep in {source!r}")
    return _spaces_and_apostrophes(text, source, where)


def _spaces_and_apostrophes(text: str, source: str, where: str) -> str:
    out: list[str] = []
    i, n = 0, len(text)
    in_class = False
    class_start = -1
    while i < n:
        c = text[i]
        if c == "\\":
            out.append(text[i:i + 2])
            i += 2
            continue
        if in_class:
            if c == "]" and i > class_start:
                in_class = False
            out.append(c)
            i += 1
            continue
        if c == "[":
            in_class = True
            class_start = i + 1
            if text[i + 1:i + 2] == "^":
                class_start += 1
            out.append(c)
            i += 1
            continue
        if c.isspace() or _GAP.match(text, i):
            gap, spaces = 0, False
            while i < n:
                g = _GAP.match(text, i)
                if g:
                    gap += int(g.group(1))
                    i = g.end()
                elif text[i].isspace():
                    spaces = True
                    i += 1
                else:
                    break
            if gap > MAX_GAP_WORDS:
                raise ValueError(f"{where}: a gap of {gap} words is over {MAX_GAP_WORDS} in {source!r}")
            if gap:
                out.append(_SEP + r"(?:\w+" + _SEP + r"){0," + str(gap) + "}")
            elif spaces and text[i:i + 1] == "?":
                out.append(_SEP_OPTIONAL)
                i += 1
            else:
                out.append(_SEP)
            continue
        out.append(_APOSTROPHE if c == "'" else c)
        i += 1
    return "".join(out)
