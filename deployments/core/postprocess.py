"""From window probabilities to the response body of each case. Pure.

The router deployment calls ``CaseAssembler.assemble``: it splits the
windows back into their cases, aggregates each case's windows, picks labels,
applies the ``RoutingPolicy`` and renders each case as the contract's
``CaseResult`` (``deployments/core/contract/``), dumped to the JSON body.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from deployments.core import contract
from deployments.core.aggregation import aggregate_windows
from deployments.core.config import AppArgs
from deployments.core.labels import TASKS, LabelSet
from deployments.core.language import UNDETERMINED
from deployments.core.preprocess import CasePlan
from deployments.core.routing import Classification, Prediction, Routing, RoutingPolicy, classify_probabilities

RESULT_TASKS = ("main_category", "sub_category", "sub_category_2", "intervention", "priority")


def concat_window_probs(parts: Sequence[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    if len(parts) == 1:
        return dict(parts[0])
    return {task: np.concatenate([p[task] for p in parts]) for task in TASKS}


SUB_CATEGORY_TASKS = ("sub_category", "sub_category_2")


def render_classification(c: Classification, include_confidence: bool, labels: LabelSet) -> contract.Classification:
    """The API's classification: each task as {label, confidence} (a sub category also with its
    parent main category, from the taxonomy), or the bare label."""

    def one(task: str):
        p: Prediction = c.for_task(task)
        label = int(p.label) if isinstance(p.label, (int, np.integer)) else p.label
        if not include_confidence:
            return label
        if task == "priority":
            return contract.PriorityPrediction(label=label, confidence=p.confidence)
        if task in SUB_CATEGORY_TASKS:
            return contract.SubCategoryPrediction(label=label, confidence=p.confidence, parent=labels.parent_of(label))
        return contract.Prediction(label=label, confidence=p.confidence)

    return contract.Classification(**{task: one(task) for task in RESULT_TASKS})


class CaseAssembler:
    def __init__(self, labels: LabelSet, policy: RoutingPolicy, aggregation: str, priority_aggregation: str):
        self.labels = labels
        self.policy = policy
        self.aggregation = aggregation
        self.priority_aggregation = priority_aggregation

    @classmethod
    def from_args(cls, labels: LabelSet, args: AppArgs) -> "CaseAssembler":
        """The assembler the service uses under ``args``: its routing policy and aggregations."""
        return cls(labels, RoutingPolicy(args.routing, labels), args.aggregation, args.priority_aggregation)

    def assemble(
        self, plans: Sequence[CasePlan], window_probs: Mapping[str, np.ndarray]
    ) -> list[tuple[dict, Classification, Routing]]:
        """One (body, classification, routing) per plan, in order."""
        return [(body, c, r) for body, c, r, _ in self._assemble(plans, window_probs, recorded=False)]

    def assemble_with_records(
        self, plans: Sequence[CasePlan], window_probs: Mapping[str, np.ndarray]
    ) -> list[tuple[dict, Classification, Routing, dict]]:
        """As ``assemble``, each also rendered for the case record: with confidences and every window."""
        return self._assemble(plans, window_probs, recorded=True)

    def _chunk_details(self, plan: CasePlan, case: Mapping[str, np.ndarray], include_confidence: bool):
        return [
            contract.ChunkDetail(
                index=i,
                token_span=[span.start, span.end],
                classification=render_classification(
                    classify_probabilities({t: case[t][i] for t in TASKS}, self.labels), include_confidence,
                    self.labels,
                ),
            )
            for i, span in enumerate(plan.spans)
        ]

    def _assemble(self, plans, window_probs, recorded: bool) -> list[tuple[dict, Classification, Routing, dict]]:
        total = sum(p.n_windows for p in plans)
        got = len(window_probs["main_category"])
        if got != total:
            raise RuntimeError(f"router expected {total} windows but the classifier returned {got}")
        out = []
        start = 0
        for plan in plans:
            stop = start + plan.n_windows
            case = {task: window_probs[task][start:stop] for task in TASKS}
            probs = aggregate_windows(
                case, plan.token_counts(), self.labels.priority, self.aggregation, self.priority_aggregation,
                self.labels.urgency,
            )
            classification = classify_probabilities(probs, self.labels)
            routing = self.policy.decide(classification, plan.signals, case["priority"])

            def render(include_confidence: bool, include_chunks: bool) -> dict:
                return contract.CaseResult(
                    classification=render_classification(classification, include_confidence, self.labels),
                    routing=contract.Routing(queue=routing.queue, escalate=routing.escalate,
                                             human_review=routing.human_review, reasons=routing.reasons,
                                             signals=[s.to_json() for s in routing.signals]),
                    # A plan made without a screen (prepare_cases called directly) has no language to report.
                    language=plan.language or UNDETERMINED.to_json(),
                    translation=plan.translation,
                    chunks=plan.n_windows,
                    truncated=plan.truncated,
                    tokens=plan.n_tokens,
                    chunk_details=self._chunk_details(plan, case, include_confidence) if include_chunks else None,
                ).model_dump()

            body = render(plan.include_confidence, plan.include_chunks)
            record = render(True, True) if recorded else None
            out.append((body, classification, routing, record))
            start = stop
        return out
