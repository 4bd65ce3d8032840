"""Anchors: the literal strings every match of a lexicon pattern must contain. Pure.

Running a few hundred regular expressions over every word of a long narrative costs milliseconds
in Python's regex engine; finding which of a few hundred short strings a narrative holds costs a
dict lookup per distinct word. So ``deployments/core/lexicon.py`` reads each pattern once, at
load, for its anchors, and runs the pattern only where they occur.

An anchor is lowercase, and may start or end with a space, meaning the anchor starts or ends a
word: ``" end"`` for ``end(?:s|ed|ing)? ...`` (words starting "end"), ``"baka "`` for the
Swahili ``...bak(?:a|e|wa|we)`` (words ending "baka"). They are looked for in the narrative
lowered, with every character that is not a letter or digit turned into a space
(``searchable``), so the spaces line up with the word boundaries the patterns require.

``anchors(pattern)`` gives the primary set (one of its anchors occurs in every match), up to
``CHECKS`` more such sets (each must occur, or the pattern cannot match: a filter that costs
nothing more), whether the primary anchors lie in the match's first word (then the pattern is
tried only at the start of each word holding one) and the most word gaps a match spans (the size
of the window searched around an anchor otherwise). Nothing here changes what matches: the tests
compare with running every pattern over the whole text.
"""

from __future__ import annotations

import functools
import re
from typing import NamedTuple, Optional

try:  # Python 3.11+
    from re import _parser as _sre
except ImportError:  # pragma: no cover - Python 3.10
    import sre_parse as _sre  # type: ignore[no-redef]

MAX_SET = 128
MIN_LETTERS = 3
MAX_LITERAL = 24
CHECKS = 8
# A match tried at a word's start costs a small part of a search over a window: the first word's
# anchors are preferred even when this many times more frequent than the best ones.
FIRST_WORD_FACTOR = 16

# Every character outside letters and digits (Latin-1 and general punctuation) made a space, as the
# patterns' word separator [\W_]+ sees it: one character for one, so offsets stay the narrative's.
SEARCHABLE = {c: " " for c in list(range(0x250)) + list(range(0x2000, 0x2070)) + [0x3000, 0xFEFF]
              if not chr(c).isalnum()}

# The most frequent words of helpline narratives (English from this project's synthetic corpus,
# Swahili and Sheng function words added), most frequent first: an anchor that occurs in them is a
# poor filter. Only used to choose among a pattern's anchor sets, at load.
_FREQUENT = """
    the a to and caller in is was of from has counsellor for girl her boy with call on about family child at
    called asked said not mother helpline old home an school but year minor near she been who his that
    village case no by as up information have years he children aged schoolgirl father back follow know it
    received had support parents be explained there whether because talk wanted given centre how being them
    schoolboy time area outside wants relatives if phone someone two will other they local can police action
    does referred food details after town before reported cannot feels would pupil offered him very estate
    money when outskirts line trading are works shared county church using needs only contacted number nearby
    more rural help several informed taken house gave class also concerning fishing says encouraged through
    matter one calling teacher where first known questions grandmother during free young reached told kept
    changed regarding son made daughter advice end health office clinic spoke water provided casual without
    referral problem get afraid want report market foster situation done what lives concern officer chief
    long talking months main going man speak born counselling since keeps go some same point always tried
    took take directly small away again moved needed hospital any emergency already short ago adult siblings
    legal now helped this contacts day like agreed location phoned month started progress switched court
    public sub toll nothing possible down linked mainly five enough younger older separated next out
    station fears comes escalated scheduled calm do baby road term used relevant minutes living worse getting
    stay things lost involving were left care nearest right identified anything friends leaves answers
    last early sent described community neighbour listened relationship second over education household form
    think many others did quiet walk seen relative worried found sells never evening little goes every night
    three work neighbours struggling husband taking once group give say while name gone later jobs fees
    meeting single heard or beaten fear another plot safe issue ways reason my me i you we us our your their
    na ya wa za la kwa ni ku katika kuwa yake wake huyo hiyo hii sana mtoto watoto mama baba nyumbani
    shule alisema amesema kwamba lakini pia sasa tu hata bado kama hakuna yeye wao sisi mimi wewe
    siku jana leo kesho nini ili hadi tena pale hapa huko mpaka sijui ako iko niko uko
"""
_TIERS = (0.05, 0.01, 0.003)  # weight of one occurrence in the first 50 words, the next 150, the rest
_FREQUENT_WORDS = _FREQUENT.split()
_FREQUENT_BLOBS = tuple(" " + "  ".join(words) + " " for words in
                        (_FREQUENT_WORDS[:50], _FREQUENT_WORDS[50:200], _FREQUENT_WORDS[200:]))

Decorated = frozenset  # of anchor strings, possibly with a leading/trailing space


def searchable(lowered: str) -> str:
    """The lowered narrative, padded with a space each side, every non-word character a space."""
    return " " + lowered.translate(SEARCHABLE) + " "


class Anchors(NamedTuple):
    primary: frozenset  # one of these occurs in every match
    checks: tuple[frozenset, ...]  # more such sets: each must occur too (a cheap filter)
    first_word: bool  # the primary anchors lie in the match's first word: it starts where that word does
    words: Optional[int]  # the most word gaps a match (with its lookarounds) spans; None: no bound


@functools.lru_cache(maxsize=4096)
def anchors(expanded: str) -> Anchors:
    """A pattern's anchors (the pattern as compiled, with IGNORECASE): see the module's docstring."""
    try:
        parsed = _sre.parse(expanded, re.IGNORECASE)
    except re.error:  # pragma: no cover - compiled before, so this does not happen
        return Anchors(frozenset(), (), False, None)
    try:
        return _anchors(list(parsed))
    finally:
        _MEMO.clear()


def _anchors(items: list) -> Anchors:
    _, required = _sequence(items, True, True)
    sets = _usable(required)
    if not sets:
        return Anchors(frozenset(), (), False, None)
    # The anchors of the pattern's first word, if good enough, are the best primary: the match is
    # tried only at the start of each word holding one, not searched for around it.
    cut = next((i for i, item in enumerate(items) if not _word_only(*item)), len(items))
    after = items[cut] if cut < len(items) else None
    edge_after = after is None or (_edge_at(*after, True) and not _may_be_empty(*after))
    first = _usable(_sequence(items[:cut], True, edge_after)[1])
    first_word = bool(first) and _score(first[0]) >= FIRST_WORD_FACTOR * _score(sets[0])
    primary = first[0] if first_word else sets[0]
    # A check is looked up for every narrative the primary anchors let through: keep it cheap, with
    # anchors at a word's edge (dict lookups), or a single one inside words (one ``in``).
    cheap = [s for s in sets if s != primary and (len(s) == 1 or all(a[:1] == " " or a[-1:] == " " for a in s))]
    return Anchors(primary, tuple(cheap[:CHECKS]), first_word, _gaps(items))


def _usable(required: list[Decorated]) -> list[Decorated]:
    """The sets worth looking for, best first. An anchor of one or two letters filters nothing."""
    return sorted({_shrink(s) for s in required if s and all(_letters(a) >= MIN_LETTERS for a in s)},
                  key=_score, reverse=True)


def word_start(text: str, i: int) -> int:
    """Where the word holding ``text[i]`` starts, as the regex ``\\w`` sees words."""
    while i > 0 and (text[i - 1].isalnum() or text[i - 1] == "_"):
        i -= 1
    return i


class AnchorIndex:
    """Finds which of many anchors a narrative holds, word by word rather than anchor by anchor.

    A narrative of 2,000 words has a few hundred distinct words; each is looked up in three dicts
    (whole words, word starts, word ends: by their first or last three letters). Anchors inside
    words (no edge) are looked for with ``in``. Every anchor has at least three letters.
    """

    def __init__(self, all_anchors):
        self.whole: dict[str, str] = {}
        self.starts: dict[str, list[tuple[str, str]]] = {}
        self.ends: dict[str, list[tuple[str, str]]] = {}
        self.inner: list[tuple[str, str]] = []
        for a in sorted(set(all_anchors)):
            core, initial, final = a.strip(), a[:1] == " ", a[-1:] == " "
            if initial and final:
                self.whole[core] = a
            elif initial:
                self.starts.setdefault(core[:3], []).append((core, a))
            elif final:
                self.ends.setdefault(core[-3:], []).append((core, a))
            else:
                self.inner.append((core, a))

    def present(self, padded: str) -> set[str]:
        """The anchors ``padded`` (``searchable(...)``) holds."""
        words = set(padded.split())
        whole, starts, ends = self.whole, self.starts, self.ends
        found = {" " + w + " " for w in words & whole.keys()}
        for w in words:
            for core, a in starts.get(w[:3], ()):
                if w.startswith(core):
                    found.add(a)
            for core, a in ends.get(w[-3:], ()):
                if w.endswith(core):
                    found.add(a)
        if self.inner:
            text = padded if len(padded) < 2000 else " ".join(words)
            found.update(a for core, a in self.inner if core in text)
        return found


def occurrences(padded: str, anchor: str) -> list[int]:
    """Where the anchor occurs, as indexes into the narrative (``padded``'s index less one)."""
    core, initial, final = anchor.strip(), anchor[:1] == " ", anchor[-1:] == " "
    size = len(core)
    spots = []
    i = padded.find(core)
    while i >= 0:
        if (not initial or padded[i - 1] == " ") and (not final or padded[i + size] == " "):
            spots.append(i - 1)
        i = padded.find(core, i + size)
    return spots


def windows(padded: str, anchor_set, n: int, words: Optional[int], radius: int, cache: dict) -> list[tuple[int, int]]:
    """Stretches of the narrative around every occurrence of the anchors, merged.

    With ``words`` (the most word gaps a match spans), each stretch runs from ``words`` words
    before the anchor's word to ``words`` after it; else ``radius`` characters each side, out to a
    word's end. ``padded`` is ``searchable(lowered)``; ``cache`` keeps each anchor's occurrences.
    """
    spots: list[int] = []
    for anchor in anchor_set:
        found = cache.get(anchor)
        if found is None:
            found = cache[anchor] = occurrences(padded, anchor)
        spots.extend(found)
    spots.sort()
    found: list[tuple[int, int]] = []
    size = len(padded)
    for spot in spots:
        if words is None:
            lo, hi = max(0, spot - radius), min(n, spot + radius)
            while hi < n and padded[hi + 1] != " ":
                hi += 1
        else:  # padded index = narrative index + 1; words are the runs between spaces
            p = padded.rfind(" ", 0, spot + 1) + 1
            for _ in range(words):
                q = p - 1
                while q > 0 and padded[q] == " ":
                    q -= 1
                if q <= 0:
                    break
                p = padded.rfind(" ", 0, q) + 1
            e = padded.find(" ", spot + 1)
            for _ in range(words):
                while e < size and padded[e] == " ":
                    e += 1
                if e >= size:
                    break
                e = padded.find(" ", e)
            lo, hi = max(0, p - 1), min(n, e - 1) if e >= 0 else n
        if found and lo <= found[-1][1]:
            found[-1] = (found[-1][0], max(found[-1][1], hi))
        else:
            found.append((lo, hi))
    return found


# ---------------------------------------------------------------------- reading a parsed pattern

def _letters(anchor: str) -> int:
    return len(anchor.strip())


def _score(strings: Decorated) -> float:
    """How selective a set is (higher is better): minus the estimated rate of words holding one of it."""
    return -sum(_rate(a) for a in strings)


def _rate(anchor: str) -> float:
    """A rough rate of words holding the anchor: short ones and ones inside frequent words are common."""
    letters, edges = _letters(anchor), (anchor[:1] == " ") + (anchor[-1:] == " ")
    base = 4.0 ** -(letters + edges)
    return base + sum(w * blob.count(anchor) for w, blob in zip(_TIERS, _FREQUENT_BLOBS))


def _shrink(strings: Decorated) -> Decorated:
    """The set without anchors another of its anchors already implies.

    "baka " (a word ending in baka) implies "nibaka "; " kill" (a word starting with kill) implies
    " killed "; "keket" (anywhere) implies "keketwa ". A text holding one of the removed holds one
    of the kept.
    """
    def implied_by(big: str, small: str) -> bool:
        if big == small:
            return False
        core, initial, final = small.strip(), small[:1] == " ", small[-1:] == " "
        if initial and final:
            return False
        if initial:
            return big.startswith(" " + core)
        if final:
            return big.endswith(core + " ")
        return core in big
    kept = [a for a in strings if not any(implied_by(a, b) for b in strings)]
    # Anchors inside words cost a text search each: those sharing an end of 4+ letters become that end
    # ("kudump", "mdump", "wadump" become "dump").
    inner = [a for a in kept if a.strip() == a]
    groups: dict[str, list[str]] = {}
    for a in inner:
        groups.setdefault(a[-4:], []).append(a)
    for group in groups.values():
        common = _common_prefix([a[::-1] for a in group])[::-1]
        if len(group) > 1 and len(common) >= 4:
            kept = [a for a in kept if a not in group] + [common]
    return frozenset(kept)


def _common_prefix(strings: list[str]) -> str:
    first, last = min(strings), max(strings)
    i = 0
    while i < len(first) and i < len(last) and first[i] == last[i]:
        i += 1
    return first[:i]


def _char(code: int) -> Optional[str]:
    """A literal character as the searchable text has it, or None where that is a space."""
    c = chr(code).lower()
    return c if c.isalnum() else None


def _is_word_assert(op, av) -> bool:
    if op is not _sre.ASSERT_NOT:
        return False
    sub = list(av[1])
    return (len(sub) == 1 and sub[0][0] is _sre.IN
            and list(sub[0][1]) == [(_sre.CATEGORY, _sre.CATEGORY_WORD)])


def _is_repeat(op) -> bool:
    return op in (_sre.MAX_REPEAT, _sre.MIN_REPEAT) or op is getattr(_sre, "POSSESSIVE_REPEAT", None)


def _edge_item(op, av) -> bool:
    """A zero-width item that asserts a word edge: ``\\b``, ``(?<!\\w)``, ``(?!\\w)``, start or end."""
    if op is _sre.AT:
        return av in (_sre.AT_BOUNDARY, _sre.AT_BEGINNING, _sre.AT_END, _sre.AT_BEGINNING_STRING, _sre.AT_END_STRING)
    return _is_word_assert(op, av)


# Parsed patterns nest deeply (macros inside macros); what each node can do is asked many times.
# Keyed by the node's identity, for the one ``anchors`` call that holds the parse.
_MEMO: dict = {}


def _edge_at(op, av, first: bool) -> bool:
    key = ("edge", id(av), op, first)
    if key not in _MEMO:
        _MEMO[key] = _edge_at_uncached(op, av, first)
    return _MEMO[key]


def _may_be_empty(op, av) -> bool:
    key = ("empty", id(av), op)
    if key not in _MEMO:
        _MEMO[key] = _may_be_empty_uncached(op, av)
    return _MEMO[key]


def _word_only(op, av) -> bool:
    key = ("word", id(av), op)
    if key not in _MEMO:
        _MEMO[key] = _word_only_uncached(op, av)
    return _MEMO[key]


def _parts(op, av) -> Optional[list[list]]:
    """The item's alternatives as item lists (one for a group or a repeat), or None for a leaf."""
    if op is _sre.SUBPATTERN:
        return [list(av[-1])]
    if op is getattr(_sre, "ATOMIC_GROUP", None):
        return [list(av)]
    if op is _sre.BRANCH:
        return [list(alt) for alt in av[1]]
    if _is_repeat(op):
        return [list(av[2])]
    return None


def _edge_at_uncached(op, av, first: bool) -> bool:
    """Whether whatever the item consumes starts (``first``) or ends with a non-word character."""
    if _edge_item(op, av):
        return True
    if op is _sre.LITERAL:
        return _char(av) is None
    if op is _sre.IN:
        return _nonword_class(av)
    parts = _parts(op, av)
    if not parts:
        return False
    for items in parts:
        consuming = [it for it in items if not _zero_width(it[0])]
        if not consuming or not _edge_at(*(consuming[0] if first else consuming[-1]), first):
            return False
    return True


def _gaps(items: list) -> Optional[int]:
    """The most runs of non-word characters (word gaps) the items can consume, lookarounds included."""
    total = 0
    for op, av in items:
        if op in (_sre.ASSERT, _sre.ASSERT_NOT):
            n = _gaps(list(av[1]))
        elif op is _sre.AT:
            n = 0
        elif op is _sre.LITERAL:
            n = 0 if _char(av) is not None else 1
        elif op is _sre.IN:
            n = 0 if _word_only(op, av) else 1
        elif _is_repeat(op):
            low, high, sub = av
            sub = list(sub)
            if len(sub) == 1 and sub[0][0] in (_sre.IN, _sre.LITERAL) and _gaps(sub) == 1:
                n = 1  # a run of separators is one gap
            else:
                inner = _gaps(sub)
                n = None if inner is None else 0 if inner == 0 else None if high == _sre.MAXREPEAT else inner * high
        elif _parts(op, av) is not None:
            counts = [_gaps(part) for part in _parts(op, av)]
            n = None if any(c is None for c in counts) else max(counts)
        else:  # ., [^x] and the like: a character that may be a separator
            n = 1
        if n is None:
            return None
        total += n
    return total


def _word_only_uncached(op, av) -> bool:
    """Whether the item only ever consumes word characters (so it stays inside one word)."""
    if _zero_width(op):
        return True
    if op is _sre.LITERAL:
        return _char(av) is not None
    if op is _sre.IN:
        return all((k is _sre.LITERAL and _char(v) is not None) or (k is _sre.CATEGORY and v is _sre.CATEGORY_WORD)
                   or (k is _sre.RANGE and all(_char(c) for c in range(v[0], v[1] + 1))) for k, v in av)
    parts = _parts(op, av)
    return bool(parts) and all(_word_only(*it) for items in parts for it in items)


def _may_be_empty_uncached(op, av) -> bool:
    if _zero_width(op):
        return True
    if _is_repeat(op):
        return av[0] == 0 or all(_may_be_empty(*it) for it in av[2])
    parts = _parts(op, av)
    return bool(parts) and any(all(_may_be_empty(*it) for it in items) for items in parts)


def _nonword_class(av) -> bool:
    kinds = list(av)
    if any(k is _sre.CATEGORY and v is _sre.CATEGORY_WORD for k, v in kinds) or any(k is _sre.NEGATE for k, _ in kinds):
        return False
    for kind, value in kinds:
        if kind is _sre.CATEGORY and value is _sre.CATEGORY_NOT_WORD:
            continue
        if kind is _sre.LITERAL and _char(value) is None:
            continue
        return False
    return True


def _zero_width(op) -> bool:
    return op in (_sre.AT, _sre.ASSERT, _sre.ASSERT_NOT)


def _sequence(items: list, start_b: bool, end_b: bool) -> tuple[Optional[frozenset], list[Decorated]]:
    """(the few literal strings it can match, if so; sets of anchors one of which every match holds).

    ``start_b``/``end_b``: whether a word edge is guaranteed right before/after the sequence.
    """
    n = len(items)
    left = [start_b] + [False] * n  # left[p]: what items before p consumed ends with a non-word character
    for p in range(1, n + 1):
        op, av = items[p - 1]
        if _edge_item(op, av):
            left[p] = True
        elif _may_be_empty(op, av):
            left[p] = left[p - 1] and (_zero_width(op) or _edge_at(op, av, False))
        else:
            left[p] = _edge_at(op, av, False)
    right = [False] * n + [end_b]  # right[p]: what items from p on consume starts with one
    for p in range(n - 1, -1, -1):
        op, av = items[p]
        if _edge_item(op, av):
            right[p] = True
        elif _may_be_empty(op, av):
            right[p] = right[p + 1] and (_zero_width(op) or _edge_at(op, av, True))
        else:
            right[p] = _edge_at(op, av, True)
    edge = [a or b for a, b in zip(left, right)]  # edge[p]: a word edge between items p-1 and p

    required: list[Decorated] = []
    whole: Optional[frozenset] = frozenset([""])
    run: frozenset = frozenset([""])
    run_start = 0

    def close(end: int) -> None:
        if run != frozenset([""]) and "" not in run:
            left, right = (" " if edge[run_start] else ""), (" " if edge[end] else "")
            required.append(frozenset(left + s + right for s in run))

    for i, (op, av) in enumerate(items):
        finite, inner = _item(op, av, edge[i], edge[i + 1])
        required.extend(inner)
        if finite is not None:
            joined = frozenset(a + b for a in run for b in finite)
            if len(joined) <= MAX_SET and all(len(x) <= MAX_LITERAL for x in joined):
                run = joined
                whole = joined if whole is not None else None
                continue
            close(i)
            run, run_start, whole = finite, i, None
            continue
        close(i)
        run, run_start, whole = frozenset([""]), i + 1, None
    close(n)
    return whole, required


def _item(op, av, start_b: bool, end_b: bool) -> tuple[Optional[frozenset], list[Decorated]]:
    if op is _sre.LITERAL:
        c = _char(av)
        return (frozenset([c]) if c is not None else None), []
    if _zero_width(op):
        return frozenset([""]), []
    if op is _sre.IN:
        chars = set()
        for kind, value in av:
            if kind is _sre.LITERAL and _char(value) is not None:
                chars.add(_char(value))
            elif kind is _sre.RANGE and value[1] - value[0] < 8:
                span = [_char(c) for c in range(value[0], value[1] + 1)]
                if not all(span):
                    return None, []
                chars.update(span)
            else:
                return None, []
        return (frozenset(chars), []) if len(chars) <= 8 else (None, [])
    if op is _sre.SUBPATTERN:
        return _sequence(list(av[-1]), start_b, end_b)
    if op is getattr(_sre, "ATOMIC_GROUP", None):
        return _sequence(list(av), start_b, end_b)
    if op is _sre.BRANCH:
        results = [_sequence(list(alt), start_b, end_b) for alt in av[1]]
        finite = None
        if all(f is not None for f, _ in results):
            union = frozenset().union(*(f for f, _ in results))
            finite = union if len(union) <= MAX_SET else None
        best = []
        for f, req in results:
            options = [s for s in req if "" not in s]
            if f is not None and "" not in f:
                options.append(frozenset((" " if start_b else "") + s + (" " if end_b else "") for s in f))
            if not options:
                return finite, []
            best.append(max(options, key=_score))
        union = frozenset().union(*best)
        return finite, ([union] if len(union) <= 4 * MAX_SET else [])
    if op in (_sre.MAX_REPEAT, _sre.MIN_REPEAT) or op is getattr(_sre, "POSSESSIVE_REPEAT", None):
        low, high, sub = av
        once = low == high == 1
        finite, required = _sequence(list(sub), start_b and once, end_b and once)
        if low == 0:  # optional: no anchor of its own, but "x(?:y)?" still spells {x, xy}
            return (finite | {""} if high == 1 and finite is not None else None), []
        return (finite if once else None), required
    return None, []
