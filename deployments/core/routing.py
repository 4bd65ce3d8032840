"""Turn per-task probabilities into labels, confidences and a routing decision.

The policy is data (``RoutingArgs``): which queue each main category goes to,
which sub categories are critical, and the confidence under which a human
must look. ``RoutingPolicy`` has no Ray in it and is unit-tested directly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from deployments.core.config import RoutingArgs
from deployments.core.labels import PRIORITY_NAMES, TASKS, LabelSet


@dataclass(frozen=True)
class Prediction:
    label: str | int
    confidence: float


@dataclass(frozen=True)
class Classification:
    main_category: Prediction
    sub_category: Prediction
    sub_category_2: Prediction
    intervention: Prediction
    priority: Prediction

    def for_task(self, task: str) -> Prediction:
        return getattr(self, task)


@dataclass(frozen=True)
class Routing:
    queue: str
    escalate: bool
    human_review: bool
    reasons: list[str] = field(default_factory=list)


def queue_slug(main_category: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", main_category.lower()).strip("-") or "general"


def classify_probabilities(probs: Mapping[str, np.ndarray], labels: LabelSet) -> Classification:
    """Top label per task, plus the runner-up sub category."""
    preds = {}
    for task in TASKS:
        p = np.asarray(probs[task])
        i = int(np.argmax(p))
        preds[task] = Prediction(labels.for_task(task)[i], float(p[i]))
    sub = np.asarray(probs["sub_category"])
    if len(sub) > 1:
        second = int(np.argsort(sub)[-2])
        sub2 = Prediction(labels.sub_category[second], float(sub[second]))
    else:
        sub2 = Prediction(labels.sub_category[0], 0.0)
    return Classification(sub_category_2=sub2, **preds)


class RoutingPolicy:
    def __init__(self, config: RoutingArgs, labels: LabelSet):
        self.config = config
        self.labels = labels
        self.escalate_priority = (
            config.escalate_priority if config.escalate_priority is not None else max(labels.priority)
        )
        self.critical = frozenset(config.critical_sub_categories)
        self.queues = {main: config.queues.get(main, queue_slug(main)) for main in labels.main_category}

    def decide(self, c: Classification) -> Routing:
        reasons = []
        escalate = False
        if c.priority.label == self.escalate_priority:
            escalate = True
            name = PRIORITY_NAMES.get(int(c.priority.label), str(c.priority.label))
            reasons.append(f"Priority is {c.priority.label} ({name}), the escalation level.")
        if c.sub_category.label in self.critical:
            escalate = True
            reasons.append(f"Sub category '{c.sub_category.label}' is on the critical list.")
        low = [
            task
            for task in TASKS
            if c.for_task(task).confidence < self.config.review_threshold
        ]
        for task in low:
            reasons.append(
                f"Confidence in {task.replace('_', ' ')} is {c.for_task(task).confidence:.2f}, "
                f"under the review threshold {self.config.review_threshold:.2f}."
            )
        mismatch = self._taxonomy_mismatch(c)
        if mismatch:
            reasons.append(mismatch)
        human_review = escalate or bool(low) or bool(mismatch)
        if escalate:
            reasons.append("Escalated cases always get human review.")
        queue = self.queues.get(str(c.main_category.label), self.config.default_queue)
        return Routing(queue=queue, escalate=escalate, human_review=human_review, reasons=reasons)

    def _taxonomy_mismatch(self, c: Classification) -> str | None:
        """The model card's "sub-category confusion": two heads that contradict the taxonomy need a human."""
        if self.config.taxonomy_mismatch == "off":
            return None
        parent = self.labels.parent_of(str(c.sub_category.label))
        if parent is None or parent == c.main_category.label:
            return None
        return (f"Sub category '{c.sub_category.label}' belongs to '{parent}', "
                f"but the main category is '{c.main_category.label}'.")
