"""One call being composed: its scenario, template, caller, child, slot values and labels.

``new_call`` draws all of them from the generator's ``random.Random``;
``candidates`` renders the call's sentences (details, other templates, fillers)
that the prose (``training.corpus.prose``) and the transcripts
(``training.corpus.transcript``) are made of.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from training.corpus.data import load_pools
from training.corpus.records import LabelledNarrative
from training.corpus.render import first_rendering, render, sentence
from training.corpus.rules import assign_labels
from training.corpus.scenarios import Scenario, Template, load_scenarios

_NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
                 "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen")
_PARENT_ROLES = {"mother", "father", "grandmother", "grandfather", "aunt", "uncle", "guardian"}
_PRONOUNS = {
    "girl": {"pron": "she", "poss": "her", "obj": "her", "refl": "herself", "kid": "daughter"},
    "boy": {"pron": "he", "poss": "his", "obj": "him", "refl": "himself", "kid": "son"},
}


@dataclass
class Call:
    """One call being composed: the scenario, template, slot context and labels."""

    scenario: Scenario
    template: Template
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


def new_call(rng: random.Random, scen: Scenario, template_index: int | None = None) -> Call:
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
    ctx["place"] = town if " in " in town else render(rng.choice(pools["place_forms"]), {"town": town})
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
        child_np = first_rendering(rng, pools["child_np"][np_key], ctx)
        if child_np is None:  # pragma: no cover - pools always have a slot-free pattern
            raise ValueError(f"no child description fits {scen.sub_category}")
        ctx["child"] = child_np[:1].lower() + child_np[1:]
        if caller == "parent":  # the same child as the caller would say it: "my 12-year-old daughter"
            mine = first_rendering(rng, pools["child_np"][np_key], {**ctx, "cposs": "my"})
            ctx["my_child"] = mine[:1].lower() + mine[1:]

    for name, values in scen.slots.items():
        ctx[name] = _pick_slot_value(rng, values, gender, role)

    call = Call(scenario=scen, template=tmpl, template_index=template_index, ctx=ctx,
                 caller=caller, has_child=has_child, gender=gender, kind=tmpl.kind)
    call.intervention, call.priority, call.noisy = assign_labels(
        tmpl.kind, rng, preferred=scen.intervention, caller_is_child=(caller == "self"))
    return call


def candidates(rng: random.Random, call: Call, groups: Iterable[str], limit: int | None = None) -> list[str]:
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
            s = sentence(t, call.ctx)
            if s is not None and s not in out:
                out.append(s)
                if limit is not None and len(out) >= limit:
                    return out
    return out


def pick_scenario(rng: random.Random, sub_category: str | None = None) -> Scenario:
    scen = load_scenarios()
    if sub_category is not None:
        return scen[sub_category]
    subs = list(scen)
    return scen[rng.choices(subs, weights=[scen[s].weight for s in subs])[0]]


def labelled_item(call: Call, narrative: str) -> LabelledNarrative:
    return LabelledNarrative(narrative=narrative, main_category=call.scenario.main_category,
                             sub_category=call.scenario.sub_category, intervention=call.intervention,
                             priority=call.priority)
