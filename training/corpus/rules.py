"""The labelling rules: a narrative's kind gives its intervention and priority.

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
:func:`label_problems` checks an item's labels against the label files.
"""

from __future__ import annotations

import random
from typing import Any, Mapping

from deployments.core.labels import TASKS
from training.corpus.data import load_label_lists
from training.corpus.records import LabelledNarrative

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


def label_problems(item: LabelledNarrative | Mapping[str, Any]) -> list[str]:
    """Problems with an item's labels against the label files (empty list if valid)."""
    if not isinstance(item, LabelledNarrative):
        item = LabelledNarrative.from_dict(item)
    lists = load_label_lists()
    problems = []
    if not item.narrative.strip():
        problems.append("empty narrative")
    for task in TASKS:
        value = getattr(item, task)
        if value not in lists[task]:
            problems.append(f"{task} {value!r} not in the label list")
    expected = lists["sub_to_main"].get(item.sub_category)
    if expected is not None and expected != item.main_category:
        problems.append(f"main_category {item.main_category!r} but sub_to_main says {expected!r}")
    return problems
