"""The service's own Prometheus metrics, declared once.

Each ``MetricSpec`` is a name, kind, description, tags and buckets; the
deployments create their metrics through ``ClassifierMetrics`` and
``RouterMetrics``, and tests/deploy/test_dashboard.py reads ``METRICS`` to
know which names the Grafana dashboard may query. Ray exports each under
``ray_<name>`` (histograms as ``_bucket``/``_count``/``_sum``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal, Optional

from ray.serve import metrics

from deployments.core.labels import TASKS
from deployments.core.review import gauge_values
from deployments.core.routing import Classification, Routing

CONFIDENCE_BUCKETS = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99]
SIZE_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256]
TOKEN_BUCKETS = [64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384]


@dataclass(frozen=True)
class MetricSpec:
    name: str
    kind: Literal["counter", "histogram", "gauge"]
    description: str
    tag_keys: tuple[str, ...] = ()
    boundaries: Optional[tuple[float, ...]] = None

    def create(self):
        """The Ray Serve metric (in a replica: Serve adds the deployment, replica and application tags)."""
        tags = self.tag_keys or None
        if self.kind == "counter":
            return metrics.Counter(self.name, description=self.description, tag_keys=tags)
        if self.kind == "gauge":
            return metrics.Gauge(self.name, description=self.description, tag_keys=tags)
        return metrics.Histogram(self.name, description=self.description, boundaries=list(self.boundaries),
                                 tag_keys=tags)


# lane: live (what a person waits on) or queued (the backlog, /classify/batch), core/lanes.py.
BATCH_SIZE = MetricSpec("chs_batch_size", "histogram", "Model windows per forward pass.",
                        tag_keys=("lane",), boundaries=tuple(SIZE_BUCKETS))
BATCH_TOKENS = MetricSpec("chs_batch_tokens", "histogram", "Real (unpadded) tokens per forward pass.",
                          tag_keys=("lane",), boundaries=tuple(TOKEN_BUCKETS))
CASES = MetricSpec("chs_cases_total", "counter", "Cases classified.", tag_keys=("main_category", "priority", "queue"))
ESCALATIONS = MetricSpec("chs_escalations_total", "counter", "Cases escalated.")
HUMAN_REVIEW = MetricSpec("chs_human_review_total", "counter", "Cases sent to human review.")
CONFIDENCE = MetricSpec("chs_confidence", "histogram", "Top-label confidence per task.",
                        tag_keys=("task",), boundaries=tuple(CONFIDENCE_BUCKETS))
CHUNKS = MetricSpec("chs_chunks_per_case", "histogram", "Model windows per case.", boundaries=tuple(SIZE_BUCKETS))
GROUP_SIZE = MetricSpec("chs_coalesced_group_size", "histogram",
                        "Single-case /classify requests per call the ingress sent on to the classifier and router.",
                        boundaries=tuple(SIZE_BUCKETS))
FEEDBACK = MetricSpec("chs_feedback_total", "counter",
                      "Counsellors' feedback per task; agreed=true when the model's label was kept.",
                      tag_keys=("task", "agreed", "model"))

AGE_BUCKETS = [0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 14400, 86400]
INTAKE_DEPTH = MetricSpec("chs_intake_queue_depth", "gauge", "Cases waiting in the intake queue (seen at submit).")
INTAKE_AGE = MetricSpec("chs_intake_task_age_seconds", "histogram", "A queued case's age when a consumer starts it.",
                        boundaries=tuple(AGE_BUCKETS))
INTAKE_FINISHED = MetricSpec("chs_intake_tasks_total", "counter", "Queued cases by final state.", tag_keys=("state",))
INTAKE_RETRIES = MetricSpec("chs_intake_retries_total", "counter", "Retries of queued cases after a transient failure.",
                            tag_keys=("code",))

# The worklist: gauges the Router sets from the case store every review.metrics_interval_s (each Router
# replica sees the same database, so dashboards take the max over replicas), histograms at each claim
# and resolve. 1 minute (an escalation's deadline) to a week (a low priority's).
REVIEW_BUCKETS = [10, 30, 60, 300, 900, 3600, 4 * 3600, 24 * 3600, 48 * 3600, 72 * 3600, 7 * 24 * 3600]
REVIEW_CASES = MetricSpec("chs_review_cases", "gauge", "Worklist cases not resolved, by status (open, claimed).",
                          tag_keys=("queue", "priority", "escalated", "status"))
REVIEW_OVERDUE = MetricSpec("chs_review_overdue", "gauge", "Worklist cases past their due time and not resolved.",
                            tag_keys=("queue", "priority", "escalated"))
REVIEW_TIME_TO_CLAIM = MetricSpec("chs_review_time_to_claim_seconds", "histogram",
                                  "From a case's creation to its claim.", tag_keys=("escalated",),
                                  boundaries=tuple(REVIEW_BUCKETS))
REVIEW_TIME_TO_RESOLVE = MetricSpec("chs_review_time_to_resolve_seconds", "histogram",
                                    "From a case's creation to its resolution.", tag_keys=("escalated",),
                                    boundaries=tuple(REVIEW_BUCKETS))

METRICS: tuple[MetricSpec, ...] = (BATCH_SIZE, BATCH_TOKENS, CASES, ESCALATIONS, HUMAN_REVIEW, CONFIDENCE, CHUNKS,
                                   GROUP_SIZE, FEEDBACK, INTAKE_DEPTH, INTAKE_AGE, INTAKE_FINISHED, INTAKE_RETRIES,
                                   REVIEW_CASES, REVIEW_OVERDUE, REVIEW_TIME_TO_CLAIM, REVIEW_TIME_TO_RESOLVE)


class ClassifierMetrics:
    """The classifier replica's: how full each forward pass was, by lane (``core/lanes.py``)."""

    def __init__(self):
        self.batch_size = BATCH_SIZE.create()
        self.batch_tokens = BATCH_TOKENS.create()

    def forward_recorder(self, lane: str) -> Callable[[int, int], None]:
        """``on_microbatch`` for one lane's batches: (rows, tokens) of each forward pass."""
        tags = {"lane": lane}

        def record(rows: int, tokens: int) -> None:
            self.batch_size.observe(rows, tags=tags)
            self.batch_tokens.observe(tokens, tags=tags)

        return record


class CoalescingMetrics:
    """The ingress's: how many single cases each group carried."""

    def __init__(self):
        self.group_size = GROUP_SIZE.create()

    def record_group(self, cases: int) -> None:
        self.group_size.observe(cases)


class RouterMetrics:
    """The router replica's: what was decided for each case."""

    def __init__(self):
        self.cases = CASES.create()
        self.escalations = ESCALATIONS.create()
        self.human_review = HUMAN_REVIEW.create()
        self.confidence = CONFIDENCE.create()
        self.chunks = CHUNKS.create()
        self.feedback = FEEDBACK.create()

    def record_case(self, classification: Classification, routing: Routing, chunks: int) -> None:
        self.cases.inc(tags={"main_category": str(classification.main_category.label),
                             "priority": str(classification.priority.label), "queue": routing.queue})
        if routing.escalate:
            self.escalations.inc()
        if routing.human_review:
            self.human_review.inc()
        for task in TASKS:
            self.confidence.observe(classification.for_task(task).confidence, tags={"task": task})
        self.chunks.observe(chunks)

    def record_feedback(self, agreed: dict[str, bool], model: str) -> None:
        for task, kept in agreed.items():
            self.feedback.inc(tags={"task": task, "agreed": "true" if kept else "false", "model": model})

class IntakeMetrics:
    """The intake consumer's: how old a case is when it starts, how it ended, how often it was retried."""

    def __init__(self):
        self.age = INTAKE_AGE.create()
        self.finished_total = INTAKE_FINISHED.create()
        self.retries = INTAKE_RETRIES.create()

    def started(self, age_s: float) -> None:
        self.age.observe(age_s)

    def finished(self, state: str) -> None:
        self.finished_total.inc(tags={"state": state})

    def retried(self, code: str) -> None:
        self.retries.inc(tags={"code": code})


class IntakeDepth:
    """The ingress's view of the queue's depth."""

    def __init__(self):
        self.depth = INTAKE_DEPTH.create()

    def set(self, depth: int) -> None:
        self.depth.set(depth)


class ReviewMetrics:
    """The Router's view of the worklist: its counts, and how long cases waited to be claimed and resolved."""

    def __init__(self):
        self.cases = REVIEW_CASES.create()
        self.overdue = REVIEW_OVERDUE.create()
        self.time_to_claim = REVIEW_TIME_TO_CLAIM.create()
        self.time_to_resolve = REVIEW_TIME_TO_RESOLVE.create()
        self._seen: set[tuple] = set()  # tag sets set before: a count that fell to nothing reads 0, not its last value

    def set_counts(self, counts: list[dict]) -> None:
        cases, overdue = gauge_values(counts, self._seen)
        for (queue, priority, escalated, status), n in cases.items():
            self.cases.set(n, tags={"queue": queue, "priority": priority, "escalated": escalated, "status": status})
        for (queue, priority, escalated), n in overdue.items():
            self.overdue.set(n, tags={"queue": queue, "priority": priority, "escalated": escalated})
        self._seen = set(cases) | set(overdue)

    def claimed(self, escalated: bool, waited_s: float) -> None:
        self.time_to_claim.observe(max(waited_s, 0.0), tags={"escalated": "true" if escalated else "false"})

    def resolved(self, escalated: bool, took_s: float) -> None:
        self.time_to_resolve.observe(max(took_s, 0.0), tags={"escalated": "true" if escalated else "false"})
