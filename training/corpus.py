"""The project's own synthetic helpline corpus: labelled narratives for training
and evaluating a demo model, and unlabelled narratives for benchmarks.

Everything here is standard library only (no torch, no Ray), deterministic for
a seed (every function takes or builds its own ``random.Random``; the global
``random`` state is never used), and reads its hand-written material from
``data/corpus/*.json``:

* ``pools.json`` -- places, callers, openings, closings, filler sentences and
  the turn pools for call transcripts;
* ``scenarios_*.json`` -- one entry per covered sub category, each with a
  default *kind*, at least four scenario templates with slots (``{the_child}``,
  ``{pron}``, ``{poss}``, ``{obj}``, ``{place}``, ``{when}`` ... and per-scenario
  slots such as ``{perp}``), detail sentences and referral targets.

The main category of a narrative is always ``sub_to_main[sub_category]`` from
``data/labels/openchs-2025-09/sub_to_main.json``.

Kinds and the labelling rules
-----------------------------
Every template is tagged with one kind (the scenario's default, or its own):

========== ====================================== ==================================== ========
kind       describes                              intervention (base)                  priority
========== ====================================== ==================================== ========
danger     immediate danger or abuse              Referral                             3
ongoing    ongoing harm / needs support           the scenario's ``intervention``      2
                                                  (Counselling or Referral; default
                                                  Counselling)
help       a request for help or advice           Counselling                          2 when the child
                                                                                       calls about
                                                                                       themself, else 1
info       a request for information              Awareness/Information Provided       1
outside    outside the helpline's mandate         Signposting                          1
========== ====================================== ==================================== ========

Noise: with probability ``NOISE_RATE`` (10%) the intervention is replaced by a
plausible alternative (:data:`ALTERNATIVES`): danger -> Counselling; ongoing ->
the other of Counselling/Referral; help -> Referral or Awareness/Information
Provided; info -> Counselling or Signposting; outside -> Awareness/Information
Provided.  Priority is never noised.  The closing sentence of a narrative
(present in about three quarters of them) describes the *final* intervention,
as a counsellor's note would.  :func:`base_labels` is the rule without noise;
:func:`assign_labels` applies it with noise.

Narrative lengths
-----------------
* :func:`generate_corpus` (training): an opening, the scenario sentence, 0-3
  detail sentences, 0-5 filler sentences and usually a closing; roughly 20-160
  words, median about 80 (p90 about 110).
* :func:`benchmark_corpus` (load tests): helpline-style narratives with a
  realistic spread -- about 4% very short calls (under 20 words: silent calls,
  prank calls, dropped calls), about 11% long ones of 440-1,400 words (prose or
  a call transcript; > 512 WordPiece tokens), and the rest drawn from a
  log-normal around 110 words (clipped to 25-400).  The result has a median of
  about 110-130 words (roughly 150 WordPiece tokens) and about 10% of
  narratives over 420 words.
* :func:`make_transcript`: a counsellor/caller call transcript of at least
  ``target_words`` words, all on one scenario, so its labels are known.

Command line::

    python -m training.corpus --n 2000 --seed 0 --out FILE.jsonl
    python -m training.corpus --benchmark 500 --seed 0 --out bench.jsonl
    python -m training.corpus --n 2000 --stats
"""

from __future__ import annotations

import argparse
import json
import math
import random
import re
import statistics
import sys
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

DATA_DIR = Path(__file__).resolve().parents[1] / "data"
LABELS_DIR = DATA_DIR / "labels" / "openchs-2025-09"
CORPUS_DIR = DATA_DIR / "corpus"
HELDOUT_PATH = DATA_DIR / "heldout.jsonl"

AWARENESS = "Awareness/Information Provided"
COUNSELLING = "Counselling"
REFERRAL = "Referral"
SIGNPOSTING = "Signposting"

KINDS: tuple[str, ...] = ("danger", "ongoing", "help", "info", "outside")
NOISE_RATE = 0.10

#: Plausible alternative interventions used for the documented noise.
ALTERNATIVES: dict[str, tuple[str, ...]] = {
    "danger": (COUNSELLING,),
    "help": (REFERRAL, AWARENESS),
    "info": (COUNSELLING, SIGNPOSTING),
    "outside": (AWARENESS,),
    # "ongoing" is the other one of Counselling/Referral; see plausible_alternatives().
}

#: Sub categories that must always be covered (child-protection critical).
CRITICAL_SUBS: frozenset[str] = frozenset({
    "Sexual Abuse", "Sexual Violence", "Child Trafficking", "Child Abduction", "OCSEA",
    "Female Genital Mutilation", "Child Marriage", "Physical Abuse", "Unlawful Confinement",
    "Missing Child",
})

LABEL_FIELDS: tuple[str, ...] = ("main_category", "sub_category", "intervention", "priority")

# Benchmark length mix (see module docstring).
BENCH_SHORT_FRACTION = 0.04
BENCH_LONG_FRACTION = 0.11
BENCH_LONG_RANGE = (440, 1400)
BENCH_MEDIAN_TARGET = 110
BENCH_SIGMA = 0.40
BENCH_CLIP = (25, 400)

_NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
                 "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen")
_SLOT_RE = re.compile(r"\{([A-Za-z_]+)\}")
_PARENT_ROLES = {"mother", "father", "grandmother", "grandfather", "aunt", "uncle", "guardian"}


# --------------------------------------------------------------------------- records

@dataclass(frozen=True)
class LabelledNarrative:
    narrative: str
    main_category: str
    sub_category: str
    intervention: str
    priority: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "narrative": self.narrative,
            "main_category": self.main_category,
            "sub_category": self.sub_category,
            "intervention": self.intervention,
            "priority": self.priority,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "LabelledNarrative":
        """Build from a mapping; extra keys (such as ``id``) are ignored."""
        return cls(
            narrative=str(d["narrative"]),
            main_category=str(d["main_category"]),
            sub_category=str(d["sub_category"]),
            intervention=str(d["intervention"]),
            priority=int(d["priority"]),
        )


@dataclass(frozen=True)
class GeneratedRecord:
    """A generated narrative with how it was made (for tests and analysis)."""

    item: LabelledNarrative
    kind: str
    noisy: bool
    caller: str  # "self", "parent" or "other"
    template: int


@dataclass(frozen=True)
class _Template:
    text: str
    kind: str
    gender: str | None


@dataclass(frozen=True)
class _Detail:
    text: str
    kind: str


@dataclass(frozen=True)
class Scenario:
    sub_category: str
    main_category: str
    kind: str
    frame: str  # "child" or "caller"
    child: str  # "standard" or "infant"
    gender: str  # "girl", "boy" or "any"
    age: tuple[int, int]
    callers: tuple[str, ...]
    parent_roles: tuple[str, ...] | None
    intervention: str  # preferred intervention for "ongoing" templates
    weight: int
    slots: Mapping[str, Any]
    templates: tuple[_Template, ...]
    details: tuple[_Detail, ...]
    refer: tuple[str, ...]

    @property
    def kinds(self) -> frozenset[str]:
        return frozenset(t.kind for t in self.templates)


# --------------------------------------------------------------------------- loading

def _read_json(path: Path) -> Any:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


@lru_cache(maxsize=None)
def load_label_lists() -> dict[str, Any]:
    """The authoritative label lists: the four task lists plus ``sub_to_main``."""
    return {
        "main_category": tuple(_read_json(LABELS_DIR / "main_categories.json")),
        "sub_category": tuple(_read_json(LABELS_DIR / "sub_categories.json")),
        "intervention": tuple(_read_json(LABELS_DIR / "interventions.json")),
        "priority": tuple(int(p) for p in _read_json(LABELS_DIR / "priorities.json")),
        "sub_to_main": dict(_read_json(LABELS_DIR / "sub_to_main.json")),
    }


@lru_cache(maxsize=None)
def load_pools() -> dict[str, Any]:
    return _read_json(CORPUS_DIR / "pools.json")


def _parse_scenario(sub: str, raw: Mapping[str, Any], sub_to_main: Mapping[str, str]) -> Scenario:
    if sub not in sub_to_main:
        raise ValueError(f"scenario {sub!r} is not a known sub category")
    kind = raw["kind"]
    if kind not in KINDS:
        raise ValueError(f"scenario {sub!r}: unknown kind {kind!r}")
    templates = []
    for t in raw["templates"]:
        if isinstance(t, str):
            templates.append(_Template(t, kind, None))
        else:
            k = t.get("kind", kind)
            if k not in KINDS:
                raise ValueError(f"scenario {sub!r}: unknown kind {k!r}")
            templates.append(_Template(t["text"], k, t.get("gender")))
    if len(templates) < 4:
        raise ValueError(f"scenario {sub!r} needs at least 4 templates")
    details = []
    for d in raw.get("details", []):
        if isinstance(d, str):
            details.append(_Detail(d, kind))
        else:
            details.append(_Detail(d["text"], d.get("kind", kind)))
    frame = raw.get("frame", "child")
    callers = tuple(raw.get("callers", ("self", "parent", "other")))
    child = raw.get("child", "standard")
    age = tuple(raw.get("age", (6, 17)))
    if child == "infant" or age[1] < 8:
        callers = tuple(c for c in callers if c != "self") or ("other",)
    preferred = raw.get("intervention", COUNSELLING)
    if preferred not in (COUNSELLING, REFERRAL):
        raise ValueError(f"scenario {sub!r}: preferred intervention must be Counselling or Referral")
    return Scenario(
        sub_category=sub,
        main_category=sub_to_main[sub],
        kind=kind,
        frame=frame,
        child=child,
        gender=raw.get("gender", "any"),
        age=(int(age[0]), int(age[1])),
        callers=callers,
        parent_roles=tuple(raw["parent_roles"]) if "parent_roles" in raw else None,
        intervention=preferred,
        weight=int(raw.get("weight", 1)),
        slots=raw.get("slots", {}),
        templates=tuple(templates),
        details=tuple(details),
        refer=tuple(raw.get("refer", ())),
    )


@lru_cache(maxsize=None)
def load_scenarios() -> dict[str, Scenario]:
    """All scenarios from ``data/corpus/scenarios_*.json``, keyed by sub category (sorted)."""
    sub_to_main = load_label_lists()["sub_to_main"]
    out: dict[str, Scenario] = {}
    for path in sorted(CORPUS_DIR.glob("scenarios_*.json")):
        for sub, raw in _read_json(path).items():
            if sub.startswith("_"):
                continue
            if sub in out:
                raise ValueError(f"scenario {sub!r} defined twice")
            out[sub] = _parse_scenario(sub, raw, sub_to_main)
    return dict(sorted(out.items()))


# --------------------------------------------------------------------------- label rules

def plausible_alternatives(kind: str, base_intervention: str) -> tuple[str, ...]:
    """Interventions the documented noise may substitute for ``base_intervention``."""
    if kind == "ongoing":
        return (REFERRAL,) if base_intervention == COUNSELLING else (COUNSELLING,)
    return ALTERNATIVES[kind]


def base_labels(kind: str, preferred: str | None = None, caller_is_child: bool = False) -> tuple[str, int]:
    """The documented rule without noise: ``(intervention, priority)`` for a kind."""
    if kind == "danger":
        return REFERRAL, 3
    if kind == "ongoing":
        return (preferred if preferred in (COUNSELLING, REFERRAL) else COUNSELLING), 2
    if kind == "help":
        return COUNSELLING, (2 if caller_is_child else 1)
    if kind == "info":
        return AWARENESS, 1
    if kind == "outside":
        return SIGNPOSTING, 1
    raise ValueError(f"unknown kind {kind!r}")


def assign_labels(kind: str, rng: random.Random, preferred: str | None = None,
                  caller_is_child: bool = False, noise: float = NOISE_RATE) -> tuple[str, int, bool]:
    """The rule with noise: ``(intervention, priority, noisy)``.  Always draws from ``rng``."""
    intervention, priority = base_labels(kind, preferred, caller_is_child)
    noisy = rng.random() < noise
    if noisy:
        intervention = rng.choice(plausible_alternatives(kind, intervention))
    return intervention, priority, noisy


def covered_labels() -> dict[str, set]:
    """The label sets the generator can produce, per task."""
    scen = load_scenarios()
    interventions: set[str] = set()
    priorities: set[int] = set()
    for s in scen.values():
        for kind in s.kinds:
            for child in (False, True):
                inter, prio = base_labels(kind, s.intervention, child)
                interventions.add(inter)
                interventions.update(plausible_alternatives(kind, inter))
                priorities.add(prio)
    return {
        "main_category": {s.main_category for s in scen.values()},
        "sub_category": set(scen),
        "intervention": interventions,
        "priority": priorities,
    }


def label_problems(item: LabelledNarrative | Mapping[str, Any]) -> list[str]:
    """Problems with an item's labels against the label files (empty list if valid)."""
    if not isinstance(item, LabelledNarrative):
        item = LabelledNarrative.from_dict(item)
    lists = load_label_lists()
    problems = []
    if not item.narrative.strip():
        problems.append("empty narrative")
    for task in LABEL_FIELDS:
        value = getattr(item, task)
        if value not in lists[task]:
            problems.append(f"{task} {value!r} not in the label list")
    expected = lists["sub_to_main"].get(item.sub_category)
    if expected is not None and expected != item.main_category:
        problems.append(f"main_category {item.main_category!r} but sub_to_main says {expected!r}")
    return problems


# --------------------------------------------------------------------------- rendering

class _MissingSlot(KeyError):
    pass


def _render(text: str, ctx: Mapping[str, str], depth: int = 0) -> str:
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
            val = _render(val, ctx, depth + 1)
        if cap:
            val = val[:1].upper() + val[1:]
        return val

    return _SLOT_RE.sub(sub, text)


def _sentence(text: str, ctx: Mapping[str, str]) -> str | None:
    """Render one sentence; None if a slot is not available in this context."""
    try:
        out = _render(text, ctx)
    except _MissingSlot:
        return None
    out = re.sub(r"\s+", " ", out).strip()
    out = _fix_articles(out)
    return out[:1].upper() + out[1:]


_AN_RE = re.compile(r"\b([Aa]) (?=(?:8|11|18)\b|(?:8|11|18)-|S\d|eight|eleven|(?!one|uni|use)[aeiouAEIOU])")


def _fix_articles(text: str) -> str:
    """'a 8-year-old' -> 'an 8-year-old', 'a infant' -> 'an infant'."""
    return _AN_RE.sub(lambda m: m.group(1) + "n ", text)


def _first_rendering(rng: random.Random, patterns: Sequence[str], ctx: Mapping[str, str]) -> str | None:
    order = list(patterns)
    rng.shuffle(order)
    for p in order:
        s = _sentence(p, ctx)
        if s is not None:
            return s
    return None


def _words(text: str) -> int:
    return len(text.split())


_PRONOUNS = {
    "girl": {"pron": "she", "poss": "her", "obj": "her", "refl": "herself", "kid": "daughter"},
    "boy": {"pron": "he", "poss": "his", "obj": "him", "refl": "himself", "kid": "son"},
}


@dataclass
class _Call:
    """One call being composed: the scenario, template, slot context and labels."""

    scenario: Scenario
    template: _Template
    template_index: int
    ctx: dict[str, str]
    caller: str
    has_child: bool
    gender: str
    kind: str = ""
    intervention: str = ""
    priority: int = 0
    noisy: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def _grade(rng: random.Random, age: int) -> str | None:
    if age < 6:
        return None
    if age <= 13:
        n = min(max(age - 5, 1), 8)
        return rng.choice(["class {w}", "grade {w}", "standard {w}", "class {n}", "grade {n}", "P{n}"]).format(
            w=_NUMBER_WORDS[n], n=n)
    n = min(age - 13, 4)
    return rng.choice(["form {w}", "form {n}", "S{n}", "senior {w}"]).format(w=_NUMBER_WORDS[n], n=n)


def _pick_slot_value(rng: random.Random, values: Any, gender: str, role: str | None) -> str:
    if isinstance(values, Mapping):
        values = values[gender]
    values = list(values)
    if role in _PARENT_ROLES:
        kept = [v for v in values if not re.search(rf"\b{re.escape(role)}\b", v, re.IGNORECASE)]
        values = kept or values
    return rng.choice(values)


def _new_call(rng: random.Random, scen: Scenario, template_index: int | None = None) -> _Call:
    pools = load_pools()
    if template_index is None:
        template_index = rng.randrange(len(scen.templates))
    tmpl = scen.templates[template_index]
    gender = tmpl.gender or scen.gender
    if gender == "any":
        gender = rng.choice(("girl", "boy"))

    weights = {"self": 0.35, "parent": 0.3, "other": 0.35}
    callers = list(scen.callers)
    caller = rng.choices(callers, weights=[weights[c] for c in callers])[0]

    ctx: dict[str, str] = dict(_PRONOUNS[gender])
    town = rng.choice(pools["towns"])
    # A town given as "X in Y" is already specific; only plain towns get forms like "a village near X".
    ctx["place"] = town if " in " in town else _render(rng.choice(pools["place_forms"]), {"town": town})
    ctx["when"] = rng.choice(pools["when"])
    ctx["refer"] = rng.choice(scen.refer or pools["default_refer"])
    ctx["signpost"] = rng.choice(pools["signpost"])

    role = None
    if caller == "parent":
        options = pools["callers"]["parent"]
        if scen.parent_roles:
            options = [c for c in options if c["role"] in scen.parent_roles] or options
        c = rng.choice(options)
        role = c["role"]
        ctx["caller"] = c["np"]
        ctx["cposs"] = c["cposs"]
        if f"kid_{gender}" in c:
            ctx["kid"] = c[f"kid_{gender}"]
    elif caller == "other":
        c = rng.choice(pools["callers"]["other"])
        role = c["role"]
        ctx["caller"] = c["np"]

    has_child = scen.frame == "child" or caller == "self"
    if has_child:
        infant = scen.child == "infant"
        if not infant:
            lo, hi = scen.age
            if caller == "self":
                lo = max(lo, 8)
            age = rng.randint(lo, max(lo, hi))
            if age == 0:
                infant = True
        if infant:
            ctx["months"] = str(rng.randint(1, 11))
            ctx["child_word"] = gender
        else:
            ctx["age"] = str(age)
            ctx["age_words"] = _NUMBER_WORDS[age]
            grade = _grade(rng, age)
            if grade:
                ctx["grade"] = grade
                ctx["schoolage"] = ""
                ctx["child_word"] = rng.choice(pools[f"{gender}_words"])
            else:
                ctx["child_word"] = gender
        ctx["the_child"] = rng.choice(pools["the_child"]["infant" if infant else "standard"])
        ctx["guardian"] = rng.choice(pools["guardian"])
        ctx["home"] = rng.choice(pools["home"])
        np_key = ("infant" if infant else "standard")
        if caller == "parent":
            np_key = "infant_parent" if infant else "parent"
        child_np = _first_rendering(rng, pools["child_np"][np_key], ctx)
        if child_np is None:  # pragma: no cover - pools always have a slot-free pattern
            raise ValueError(f"no child description fits {scen.sub_category}")
        ctx["child"] = child_np[:1].lower() + child_np[1:]
        if caller == "parent":  # the same child as the caller would say it: "my 12-year-old daughter"
            mine = _first_rendering(rng, pools["child_np"][np_key], {**ctx, "cposs": "my"})
            ctx["my_child"] = mine[:1].lower() + mine[1:]

    for name, values in scen.slots.items():
        ctx[name] = _pick_slot_value(rng, values, gender, role)

    call = _Call(scenario=scen, template=tmpl, template_index=template_index, ctx=ctx,
                 caller=caller, has_child=has_child, gender=gender, kind=tmpl.kind)
    call.intervention, call.priority, call.noisy = assign_labels(
        tmpl.kind, rng, preferred=scen.intervention, caller_is_child=(caller == "self"))
    return call


def _opening(rng: random.Random, call: _Call) -> str:
    pools = load_pools()
    frame = "child" if call.scenario.frame == "child" else "caller"
    s = _first_rendering(rng, pools["openings"][frame][call.caller], call.ctx)
    assert s is not None
    return s


def _closing(rng: random.Random, call: _Call) -> str | None:
    return _first_rendering(rng, load_pools()["closings"][call.intervention], call.ctx)


def _candidates(rng: random.Random, call: _Call, groups: Iterable[str], limit: int | None = None) -> list[str]:
    """Rendered, de-duplicated sentences from the named groups, each group shuffled (at most ``limit``)."""
    if limit is not None and limit <= 0:
        return []
    pools = load_pools()
    scen = call.scenario
    out: list[str] = []
    for g in groups:
        if g == "details":
            texts = [d.text for d in scen.details if d.kind == call.kind]
        elif g == "templates":
            texts = [t.text for i, t in enumerate(scen.templates)
                     if i != call.template_index and t.kind == call.kind
                     and t.gender in (None, call.gender)]
        elif g == "family":
            texts = pools["fillers"]["family"] if call.has_child else []
        else:
            texts = pools["fillers"][g]
        texts = list(texts)
        rng.shuffle(texts)
        for t in texts:
            s = _sentence(t, call.ctx)
            if s is not None and s not in out:
                out.append(s)
                if limit is not None and len(out) >= limit:
                    return out
    return out


def _compose(rng: random.Random, call: _Call, target_words: int | None = None) -> str:
    """Compose a prose narrative for ``call``; with ``target_words``, grow it to at least that."""
    pools = load_pools()
    core = _sentence(call.template.text, call.ctx)
    if core is None:
        raise ValueError(f"template of {call.scenario.sub_category} has a slot this call cannot fill: "
                         f"{call.template.text!r}")
    opening = _opening(rng, call) if (target_words is not None or rng.random() < 0.92) else None
    closing = _closing(rng, call) if (target_words is not None or rng.random() < 0.75) else None

    if target_words is None:
        body = [core] + _candidates(rng, call, ["details"], rng.choice([0, 1, 1, 2, 2, 3]))
        fillers = (_candidates(rng, call, [call.kind], rng.choice([0, 0, 1, 1, 2]))
                   + _candidates(rng, call, ["family"], rng.choice([0, 0, 1, 1, 2]))
                   + _candidates(rng, call, ["call"], rng.choice([0, 0, 0, 1, 1, 2])))
        if len(body) > 1 and rng.random() < 0.25:
            rest = body[1:]
            rng.shuffle(rest)
            body = rest[:1] + [core] + rest[1:]
        for f in fillers:
            body.insert(rng.randint(1, len(body)), f)
        parts = ([opening] if opening else []) + body + ([closing] if closing else [])
        text = " ".join(parts)
        if rng.random() < 0.06:
            text = rng.choice(pools["prefixes"]) + text
        return text

    # Target length: keep adding sentences from one scenario until long enough.
    details = _candidates(rng, call, ["details"])
    parts = [opening, core]
    budget = target_words - (_words(closing) if closing else 0)
    queue = details + _candidates(rng, call, ["templates"])
    mixed = _candidates(rng, call, [call.kind, "family", "call"])
    rng.shuffle(mixed)
    # interleave: scenario sentences first, fillers sprinkled in
    ordered: list[str] = []
    while queue or mixed:
        if queue and (not mixed or rng.random() < 0.55):
            ordered.append(queue.pop(0))
        else:
            ordered.append(mixed.pop(0))
    count = sum(_words(p) for p in parts)
    for s in ordered:
        if count >= budget:
            break
        parts.append(s)
        count += _words(s)
    text = " ".join(parts)
    if count < budget:
        turns = _transcript_turns(rng, call, budget - count)
        text += " Part of the call went as follows. " + " ".join(turns)
    if closing:
        text += " " + closing
    return text


# --------------------------------------------------------------------------- transcripts

def _lower_first(s: str) -> str:
    first = s.split(" ", 1)[0]
    if first in ("I", "I'm") or (len(first) > 1 and first.isupper()):
        return s
    return s[:1].lower() + s[1:]


def _transcript_turns(rng: random.Random, call: _Call, target_words: int) -> list[str]:
    """Alternating counsellor/caller turns on ``call``'s scenario, at least ``target_words`` words."""
    tp = load_pools()["transcript"]
    # Details, not other templates: the whole call stays on one incident.
    content_groups = ["details", call.kind, "family"]
    content: list[str] = []
    fillers: list[str] = []
    questions: list[str] = []
    turns: list[str] = []
    count = 0
    while count < target_words:
        if not questions:
            questions = list(tp["questions_general"]) + (list(tp["questions_child"]) if call.has_child else [])
            questions += list(tp["reflections"])
            rng.shuffle(questions)
        c_turn = "Counsellor: " + questions.pop()
        if rng.random() < 0.6:
            if not content:
                content = _candidates(rng, call, content_groups)
            s = content.pop(0)
            prefix = rng.choice(tp["prefixes"])
            if prefix.endswith(", ") or prefix.endswith("so "):
                s = _lower_first(s)
            r_turn = "Caller: " + prefix + s
        else:
            if not fillers:
                fillers = list(tp["caller_fillers"])
                rng.shuffle(fillers)
            r_turn = "Caller: " + fillers.pop()
        turns += [c_turn, r_turn]
        count += _words(c_turn) + _words(r_turn)
    return turns


def _caller_intro(rng: random.Random, call: _Call) -> str:
    intros = load_pools()["transcript"]["caller_intro"]
    frame = "child" if call.scenario.frame == "child" else "caller"
    s = _first_rendering(rng, intros[frame][call.caller], call.ctx)
    assert s is not None
    return s


def _transcript(rng: random.Random, call: _Call, target_words: int) -> str:
    tp = load_pools()["transcript"]
    head = ["Counsellor: " + rng.choice(tp["counsellor_open"]),
            "Caller: " + rng.choice(tp["caller_open"]),
            "Counsellor: " + rng.choice(tp["reflections"]),
            "Caller: " + _caller_intro(rng, call),
            "Counsellor: Can you tell me what is happening?",
            "Caller: " + _sentence(call.template.text, call.ctx)]
    close_c = "Counsellor: " + _first_rendering(rng, tp["counsellor_close"][call.intervention], call.ctx)
    close_r = "Caller: " + rng.choice(tp["caller_close"])
    fixed = sum(_words(t) for t in head) + _words(close_c) + _words(close_r)
    middle = _transcript_turns(rng, call, max(0, target_words - fixed)) if target_words > fixed else []
    return "\n".join(head + middle + [close_c, close_r])


def _pick_scenario(rng: random.Random, sub_category: str | None = None) -> Scenario:
    scen = load_scenarios()
    if sub_category is not None:
        return scen[sub_category]
    subs = list(scen)
    return scen[rng.choices(subs, weights=[scen[s].weight for s in subs])[0]]


def _item(call: _Call, narrative: str) -> LabelledNarrative:
    return LabelledNarrative(narrative=narrative, main_category=call.scenario.main_category,
                             sub_category=call.scenario.sub_category, intervention=call.intervention,
                             priority=call.priority)


def make_transcript(rng: random.Random, target_words: int = 3000,
                    sub_category: str | None = None) -> LabelledNarrative:
    """A multi-turn counsellor/caller transcript of at least ``target_words`` words.

    The whole call stays on one scenario (one sub category, one child, one set of
    slot values), so the returned labels hold for the entire text.
    """
    scen = _pick_scenario(rng, sub_category)
    call = _new_call(rng, scen)
    return _item(call, _transcript(rng, call, target_words))


# --------------------------------------------------------------------------- corpora

def _schedule(rng: random.Random, n: int) -> list[str]:
    """Balanced sub-category order: weighted round-robin, reshuffled every cycle."""
    scen = load_scenarios()
    cycle = [s for s in scen for _ in range(scen[s].weight)]
    out: list[str] = []
    while len(out) < n:
        c = list(cycle)
        rng.shuffle(c)
        out.extend(c)
    return out[:n]


def generate_records(n: int, seed: int = 0) -> list[GeneratedRecord]:
    """Like :func:`generate_corpus`, with each narrative's kind, noise flag, caller and template."""
    if n < 0:
        raise ValueError("n must be >= 0")
    rng = random.Random(seed)
    scen = load_scenarios()
    out = []
    for sub in _schedule(rng, n):
        call = _new_call(rng, scen[sub])
        text = _compose(rng, call)
        out.append(GeneratedRecord(item=_item(call, text), kind=call.kind, noisy=call.noisy,
                                   caller=call.caller, template=call.template_index))
    return out


def generate_corpus(n: int, seed: int = 0) -> list[LabelledNarrative]:
    """``n`` labelled narratives, balanced over the covered sub categories, deterministic for ``seed``."""
    return [r.item for r in generate_records(n, seed)]


def _bench_target(rng: random.Random) -> int | None:
    """None for a very short call; else a target length in words (see module docstring)."""
    u = rng.random()
    if u < BENCH_SHORT_FRACTION:
        return None
    if u < BENCH_SHORT_FRACTION + BENCH_LONG_FRACTION:
        return rng.randint(*BENCH_LONG_RANGE)
    t = round(rng.lognormvariate(math.log(BENCH_MEDIAN_TARGET), BENCH_SIGMA))
    return min(max(t, BENCH_CLIP[0]), BENCH_CLIP[1])


def benchmark_records(n: int, seed: int = 0) -> list[LabelledNarrative]:
    """Labelled version of :func:`benchmark_corpus` (very short calls are labelled Outside Mandate)."""
    rng = random.Random(f"benchmark-{seed}")
    pools = load_pools()
    out = []
    for _ in range(n):
        target = _bench_target(rng)
        if target is None:
            text = rng.choice(pools["short_calls"])
            out.append(LabelledNarrative(text, "Unknown", "Outside Mandate", SIGNPOSTING, 1))
            continue
        call = _new_call(rng, _pick_scenario(rng))
        if target > 420 and rng.random() < 0.5:
            text = _transcript(rng, call, target)
        else:
            text = _compose(rng, call, target_words=target)
        out.append(_item(call, text))
    return out


def benchmark_corpus(n: int, seed: int = 0) -> list[str]:
    """``n`` helpline-style narratives with a realistic length spread (see module docstring)."""
    return [r.narrative for r in benchmark_records(n, seed)]


# --------------------------------------------------------------------------- JSONL

def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """The raw records of a JSONL file (blank lines skipped)."""
    out = []
    with open(path, encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, 1):
            line = line.strip()
            if not line:
                continue
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{line_no}: {exc}") from exc
    return out


def load_jsonl(path: str | Path) -> list[LabelledNarrative]:
    """Labelled narratives from a JSONL file with fields id, narrative, main_category, sub_category,
    intervention, priority (``id`` is not kept; use :func:`read_jsonl` for it)."""
    return [LabelledNarrative.from_dict(r) for r in read_jsonl(path)]


def write_jsonl(path: str | Path, items: Iterable[LabelledNarrative | Mapping[str, Any]],
                id_prefix: str = "gen") -> int:
    """Write labelled JSONL; items without an ``id`` get ``{id_prefix}-000001``... Returns the count."""
    path = Path(path)
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with open(path, "w", encoding="utf-8") as fh:
        for i, item in enumerate(items, 1):
            if isinstance(item, LabelledNarrative):
                rec = {"id": f"{id_prefix}-{i:06d}", **item.to_dict()}
            else:
                rec = dict(item)
                rec.setdefault("id", f"{id_prefix}-{i:06d}")
                rec = {"id": rec.pop("id"), **rec}
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
            n += 1
    return n


def load_heldout() -> list[LabelledNarrative]:
    """The hand-written held-out set, ``data/heldout.jsonl``."""
    return load_jsonl(HELDOUT_PATH)


# --------------------------------------------------------------------------- CLI

def corpus_stats(items: Sequence[LabelledNarrative]) -> dict[str, Any]:
    lengths = sorted(_words(i.narrative) for i in items)

    def pct(p: float) -> int:
        return lengths[min(len(lengths) - 1, int(p * len(lengths)))] if lengths else 0

    return {
        "n": len(items),
        "main_category": dict(sorted(Counter(i.main_category for i in items).items())),
        "sub_categories": len({i.sub_category for i in items}),
        "intervention": dict(sorted(Counter(i.intervention for i in items).items())),
        "priority": dict(sorted(Counter(i.priority for i in items).items())),
        "words": {"min": lengths[0] if lengths else 0, "median": statistics.median(lengths) if lengths else 0,
                  "p90": pct(0.9), "max": lengths[-1] if lengths else 0,
                  "over_420": sum(1 for x in lengths if x > 420)},
    }


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.corpus", description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=2000, help="number of labelled narratives to generate")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, help="write labelled JSONL here")
    ap.add_argument("--benchmark", type=int, metavar="N",
                    help="write N benchmark narratives (ids bench-000001..., labelled) instead")
    ap.add_argument("--stats", action="store_true", help="print corpus statistics as JSON")
    args = ap.parse_args(argv)

    if args.benchmark is not None:
        items = benchmark_records(args.benchmark, args.seed)
        prefix = "bench"
    else:
        items = generate_corpus(args.n, args.seed)
        prefix = "gen"
    if args.out:
        n = write_jsonl(args.out, items, id_prefix=prefix)
        print(f"wrote {n} narratives to {args.out}", file=sys.stderr)
    if args.stats or not args.out:
        print(json.dumps(corpus_stats(items), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
