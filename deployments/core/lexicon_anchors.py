"""Anchors: the literal strings every match of a lexicon pattern must contain. Pure.

Running a few hundred regular expressions over every word of a long narrative costs milliseconds
in Python's regex engine; looking for a few hundred short strings with ``str in str`` costs
microseconds. So ``deployments/core/lexicon.py`` reads each pattern once, at load, for its
anchors, and runs the pattern only around where they occur.

An anchor is lowercase, and may start or end with a space, meaning the anchor starts or ends a
word: ``" end"`` for ``end(?:s|ed|ing)? ...`` (words starting "end"), ``"baka "`` for the
Swahili ``...bak(?:a|e|wa|we)`` (words ending "baka"). They are looked for in the narrative
lowered, with every character that is not a letter, digit or apostrophe turned into a space
(``searchable``), so the spaces line up with the word boundaries the patterns require.

``anchors(pattern)`` returns the best set of anchors (one of them occurs in every match: the
windows are cut around it) and up to two more such sets (all must occur, or the pattern cannot
match: a cheap filter).
"""

from __future__ import annotations

from typing import Optional, Sequence

try:  # Python 3.11+
    from re import _parser as _sre
except ImportError:  # pragma: no cover - Python 3.10
    import sre_parse as _sre  # type: ignore[no-redef]

import re

APOSTROPHES = "'\u2019\u2018`"
MAX_SET = 24
MAX_LITERAL = 24
CHECKS = 2

# Lowercase, and every character outside letters, digits and apostrophes (Latin-1 and general
# punctuation) made a space: one character for one, so offsets stay those of the narrative.
SEARCHABLE = {c: " " for c in list(range(0x250)) + list(range(0x2000, 0x2070)) + [0x3000, 0xFEFF]
              if not chr(c).isalnum() and chr(c) not in APOSTROPHES}

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


def anchors(expanded: str) -> tuple[frozenset, tuple[frozenset, ...]]:
    """(primary, checks) for a pattern (as compiled, with IGNORECASE): see the module's docstring."""
    try:
        parsed = _sre.parse(expanded, re.IGNORECASE)
    except re.error:  # pragma: no cover - compiled before, so this does not happen
        return frozenset(), ()
    _, required = _sequence(list(parsed), True, True)
    sets = sorted({_shrink(s) for s in required if s and all(a.strip() for a in s)}, key=_score, reverse=True)
    if not sets:
        return frozenset(), ()
    return sets[0], tuple(sets[1:1 + CHECKS])


class AnchorIndex:
    """Finds which of many anchors a narrative holds, word by word rather than anchor by anchor.

    A narrative of 2,000 words has a few hundred distinct words; each is looked up in three dicts
    (whole words, word starts, word ends: by their first or last three letters). Anchors inside
    words (no edge) and of fewer than three letters are looked for with ``in``.
    """

    def __init__(self, all_anchors):
        self.whole: dict[str, list[str]] = {}
        self.starts: dict[str, list[tuple[str, str]]] = {}
        self.ends: dict[str, list[tuple[str, str]]] = {}
        self.inner: list[tuple[str, str]] = []
        for a in sorted(set(all_anchors)):
            core, initial, final = a.strip(), a[:1] == " ", a[-1:] == " "
            if initial and final:
                self.whole.setdefault(core, []).append(a)
            elif initial and len(core) >= 3:
                self.starts.setdefault(core[:3], []).append((core, a))
            elif final and len(core) >= 3:
                self.ends.setdefault(core[-3:], []).append((core, a))
            else:
                self.inner.append((core, a))

    def present(self, padded: str) -> set[str]:
        """The anchors ``padded`` (``searchable(...)``) holds."""
        words = set(padded.split())
        found: set[str] = set()
        whole, starts, ends = self.whole, self.starts, self.ends
        for w in words & whole.keys():
            found.update(whole[w])
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


def windows(padded: str, anchor_set, n: int, radius: int) -> list[tuple[int, int]]:
    """Stretches of the narrative around every occurrence of the anchors, merged, ending at word ends.

    ``padded`` is ``searchable(lowered)``: its index i is the narrative's index i - 1.
    """
    spots: list[int] = []
    for anchor in anchor_set:
        core, initial, final = anchor.strip(), anchor[:1] == " ", anchor[-1:] == " "
        size = len(core)
        i = padded.find(core)
        while i >= 0:
            if (not initial or padded[i - 1] == " ") and (not final or padded[i + size] == " "):
                spots.append(i - 1)
            i = padded.find(core, i + size)
    spots.sort()
    found: list[tuple[int, int]] = []
    for spot in spots:
        lo, hi = max(0, spot - radius), min(n, spot + radius)
        while hi < n and padded[hi + 1] != " ":
            hi += 1
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
    """Fewer strings to look for: where several share a long enough start (or all an end), that alone.

    {"swallow", "swallowed", "drank", "drink"} becomes {"swallow", "drank", "drink"}: a text holding
    one of the first holds one of the second.
    """
    if len(strings) == 1:
        return strings
    suffix = _common_prefix([s[::-1] for s in strings])[::-1]
    if _letters(suffix) >= 4:
        return frozenset([suffix])
    groups: dict[str, list[str]] = {}
    for s in strings:
        groups.setdefault(s[:4], []).append(s)
    shrunk: set[str] = set()
    for group in groups.values():
        common = _common_prefix(group)
        shrunk.update([common] if len(group) > 1 and _letters(common) >= 4 else group)
    return frozenset(shrunk)


def _common_prefix(strings: list[str]) -> str:
    first, last = min(strings), max(strings)
    i = 0
    while i < len(first) and i < len(last) and first[i] == last[i]:
        i += 1
    return first[:i]


def _char(code: int) -> Optional[str]:
    """A literal character as the searchable text has it, or None where that is a space."""
    c = chr(code).lower()
    return c if (c.isalnum() or c in APOSTROPHES) else None


def _is_word_assert(op, av) -> bool:
    if op is not _sre.ASSERT_NOT:
        return False
    sub = list(av[1])
    return (len(sub) == 1 and sub[0][0] is _sre.IN
            and list(sub[0][1]) == [(_sre.CATEGORY, _sre.CATEGORY_WORD)])


def _is_boundary(op, av) -> bool:
    """Whether the item guarantees a word edge where it stands (it asserts or consumes a non-word character)."""
    if op is _sre.AT:
        return av is _sre.AT_BOUNDARY or av in (_sre.AT_BEGINNING, _sre.AT_END, _sre.AT_BEGINNING_STRING,
                                                _sre.AT_END_STRING)
    if _is_word_assert(op, av):
        return True
    if op is _sre.LITERAL:
        return _char(av) is None
    if op is _sre.IN:
        return _nonword_class(av)
    if op in (_sre.MAX_REPEAT, _sre.MIN_REPEAT) or op is getattr(_sre, "POSSESSIVE_REPEAT", None):
        low, _, sub = av
        sub = list(sub)
        return low >= 1 and len(sub) == 1 and _is_boundary(*sub[0])
    return False


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
    edge = [False] * (n + 1)  # edge[p]: a word edge between items p-1 and p
    edge[0], edge[n] = start_b, end_b
    for p in range(1, n):
        edge[p] = _is_boundary(*items[p - 1]) or _is_boundary(*items[p])
    for p in range(1, n + 1):  # zero-width items stand where their neighbours do
        if _zero_width(items[p - 1][0]):
            edge[p] = edge[p] or edge[p - 1]
    for p in range(n - 1, -1, -1):
        if _zero_width(items[p][0]):
            edge[p] = edge[p] or edge[p + 1]

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
            elif kind is _sre.RANGE and value[1] - value[0] < 8 and all(_char(c) for c in range(value[0], value[1] + 1)):
                chars.update(_char(c) for c in range(value[0], value[1] + 1))
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
        if low == 0:
            return None, []
        return (finite if once else None), required
    return None, []
