"""The scenarios of ``data/corpus/scenarios_*.json``, one per covered sub category.

Each has a default *kind*, at least four scenario templates with slots
(``{the_child}``, ``{pron}``, ``{poss}``, ``{obj}``, ``{place}``, ``{when}`` ...
and per-scenario slots such as ``{perp}``), detail sentences and referral
targets. The main category of a narrative is always
``sub_to_main[sub_category]`` from
``data/labels/openchs-2025-09/sub_to_main.json``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Mapping

from training.corpus.data import CORPUS_DIR, load_label_lists, read_json
from training.corpus.rules import COUNSELLING, KINDS, REFERRAL, base_labels, plausible_alternatives

#: Sub categories that must always be covered (child-protection critical).
CRITICAL_SUBS: frozenset[str] = frozenset({
    "Sexual Abuse", "Sexual Violence", "Child Trafficking", "Child Abduction", "OCSEA",
    "Female Genital Mutilation", "Child Marriage", "Physical Abuse", "Unlawful Confinement",
    "Missing Child",
})


@dataclass(frozen=True)
class Template:
    text: str
    kind: str
    gender: str | None


@dataclass(frozen=True)
class Detail:
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
    templates: tuple[Template, ...]
    details: tuple[Detail, ...]
    refer: tuple[str, ...]

    @property
    def kinds(self) -> frozenset[str]:
        return frozenset(t.kind for t in self.templates)


def _parse_scenario(sub: str, raw: Mapping[str, Any], sub_to_main: Mapping[str, str]) -> Scenario:
    if sub not in sub_to_main:
        raise ValueError(f"scenario {sub!r} is not a known sub category")
    kind = raw["kind"]
    if kind not in KINDS:
        raise ValueError(f"scenario {sub!r}: unknown kind {kind!r}")
    templates = []
    for t in raw["templates"]:
        if isinstance(t, str):
            templates.append(Template(t, kind, None))
        else:
            k = t.get("kind", kind)
            if k not in KINDS:
                raise ValueError(f"scenario {sub!r}: unknown kind {k!r}")
            templates.append(Template(t["text"], k, t.get("gender")))
    if len(templates) < 4:
        raise ValueError(f"scenario {sub!r} needs at least 4 templates")
    details = []
    for d in raw.get("details", []):
        if isinstance(d, str):
            details.append(Detail(d, kind))
        else:
            details.append(Detail(d["text"], d.get("kind", kind)))
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
        for sub, raw in read_json(path).items():
            if sub.startswith("_"):
                continue
            if sub in out:
                raise ValueError(f"scenario {sub!r} defined twice")
            out[sub] = _parse_scenario(sub, raw, sub_to_main)
    return dict(sorted(out.items()))


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
