"""Turn per-task probabilities into labels, confidences and a routing decision.

The policy is data (``RoutingArgs``): which queue each main category goes to,
which sub categories are critical, and the confidence under which a human
must look. ``RoutingPolicy`` has no Ray in it and is unit-tested directly.

The decision is made of ``Signal`` s (``deployments/core/signals.py``): what the
model said (the escalation priority, a critical sub category, a confidence under
its threshold, heads that contradict the taxonomy) and what the ingress found in
the text (passed in as ``text_signals``). Each signal gives one reason.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Mapping, Optional, Sequence

import numpy as np

from deployments.core.config import RoutingArgs
from deployments.core.labels import TASKS, LabelSet
from deployments.core.signals import Signal


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
    signals: list[Signal] = field(default_factory=list)

    @property
    def reasons(self) -> list[str]:
        return [s.reason for s in self.signals]


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
            config.escalate_priority if config.escalate_priority is not None else labels.most_urgent
        )
        self.critical = frozenset(config.critical_sub_categories)
        self.queues = {main: config.queues.get(main, queue_slug(main)) for main in labels.main_category}

    def threshold(self, task: str) -> float:
        return self.config.review_thresholds.get(task, self.config.review_threshold)

    def decide(self, c: Classification, text_signals: Sequence[Signal] = (),
               window_priority: Optional[np.ndarray] = None) -> Routing:
        """``window_priority``: each window's priority probabilities, to name the window behind an escalation."""
        signals = []
        if c.priority.label == self.escalate_priority:
            name = self.labels.priority_name(c.priority.label)
            window = None
            if window_priority is not None and len(window_priority):
                column = list(self.labels.priority).index(c.priority.label)
                window = int(np.argmax(np.asarray(window_priority)[:, column]))
            where = f" (window {window} reads it most strongly)" if window is not None and len(window_priority) > 1 else ""
            signals.append(Signal("model", "priority", f"Priority is {c.priority.label} ({name}), the escalation "
                                  f"level{where}.", escalate=True, review=True, window=window))
        if c.sub_category.label in self.critical:
            signals.append(Signal("model", "critical_sub_category",
                                  f"Sub category '{c.sub_category.label}' is on the critical list.", escalate=True,
                                  review=True))
        for task in TASKS:
            threshold = self.threshold(task)
            if c.for_task(task).confidence < threshold:
                signals.append(Signal("threshold", task, f"Confidence in {task.replace('_', ' ')} is "
                                      f"{c.for_task(task).confidence:.2f}, under the review threshold "
                                      f"{threshold:.2f}.", review=True))
        mismatch = self._taxonomy_mismatch(c)
        if mismatch:
            signals.append(Signal("taxonomy", "sub_category_parent", mismatch, review=True))
        signals.extend(text_signals)
        queue = self.queues.get(str(c.main_category.label), self.config.default_queue)
        escalate = any(s.escalate for s in signals)
        # Escalated cases always get human review.
        human_review = escalate or any(s.review for s in signals)
        return Routing(queue=queue, escalate=escalate, human_review=human_review, signals=signals)

    def _taxonomy_mismatch(self, c: Classification) -> str | None:
        """The model card's "sub-category confusion": two heads that contradict the taxonomy need a human."""
        if self.config.taxonomy_mismatch == "off":
            return None
        parent = self.labels.parent_of(str(c.sub_category.label))
        if parent is None or parent == c.main_category.label:
            return None
        return (f"Sub category '{c.sub_category.label}' belongs to '{parent}', "
                f"but the main category is '{c.main_category.label}'.")
