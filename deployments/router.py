"""The Router deployment: labels, confidences and the routing decision from probabilities; and the case store.

The Router owns the case store (``deployments/core/store``): it renders each case anyway, so it
queues the case record in memory on the way back (a background thread writes the queue in
batches) and answers the store's reads and feedback writes in worker threads, off its event loop.
A store route is three things: its ``Operation`` (``deployments/core/contract``), its ingress
handler (``deployments/store_handlers.py``) and its ``CaseStore`` method, which ``call_store``
runs by name; a ``ServiceError`` it raises (404, 409) crosses back to the ingress as itself. The
worklist's routes go the same way to its ``Worklist`` (``deployments/core/store/worklist.py``), and a
thread counts the worklist for the metrics every ``review.metrics_interval_s``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

from ray import serve

from deployments.core.config import DEPLOYMENT_OPTIONS, AppArgs
from deployments.core.errors import ModelVersionMismatchError
from deployments.core.loading import load_labels, read_checkpoint_info, resolve_checkpoint
from deployments.core.postprocess import CaseAssembler, concat_window_probs
from deployments.core.review import Deadlines
from deployments.core.store.repository import (CaseNotFound, CaseStore, call_fields, case_row, model_version,
                                                redacted, utcnow)
from deployments.core.store.worklist import Worklist
from deployments.core.store.writer import RecordWriter
from deployments.metrics import ReviewMetrics, RouterMetrics
from deployments.pipeline import MODEL_KEY, model_key

logger = logging.getLogger("ray.serve")

# How often the Router deletes stored narrative text past feedback.retention_days.
PURGE_INTERVAL_S = 3600.0

# The CaseStore methods the ingress may call through ``call_store``: reads, feedback and exports.
STORE_CALLS = frozenset({"get_case", "put_feedback", "stats", "export", "openchs_update", "openchs_call",
                         "openchs_statistics"})
# The worklist's calls through ``call_store``: the name the ingress sends → the ``Worklist`` method.
REVIEW_CALLS = {"review_list": "list", "review_case": "item", "review_claim_next": "claim_next", "review_claim": "claim",
                "review_release": "release", "review_resolve": "resolve"}
# The audit trail's reads and the reports (deployments/core/audit.py, deployments/core/reports.py).
AUDIT_READS = frozenset({"audit_events"})
STORE_CALLS = STORE_CALLS | AUDIT_READS | {"report_summary"}
# A live call's state between its pieces (deployments/calls.py).
STORE_CALLS |= {"get_call", "save_call", "idle_calls"}


@serve.deployment(name="Router", **DEPLOYMENT_OPTIONS["Router"])
class Router:
    """Labels, confidences and the routing decision, from probabilities; and the case store."""

    def __init__(self, args: AppArgs):
        path = resolve_checkpoint(args.model, args.revision)
        labels = load_labels(path, args.labels)
        self.checkpoint = read_checkpoint_info(path, args.model, args.revision)
        self.model_key = model_key(self.checkpoint)
        self.assembler = CaseAssembler.from_args(labels, args)
        self.metrics = RouterMetrics()
        self.feedback_args = args.feedback
        self.store = CaseStore(self.feedback_args.resolved_database_url())
        logger.info("case store at %s, schema revision %s", redacted(self.store.url), self.store.revision())
        self.writer = RecordWriter(self.store.add_cases, interval_s=self.feedback_args.flush_interval_s,
                                   max_rows=self.feedback_args.flush_max_rows)
        # Audit rows take the same road as case records: queued, written in batches, flushed on shutdown.
        self.audit_writer = RecordWriter(self.store.add_audit, interval_s=self.feedback_args.flush_interval_s,
                                         max_rows=self.feedback_args.flush_max_rows, what="audit rows")
        self._stop = threading.Event()
        self._purger = threading.Thread(target=self._purge_loop, name="narrative-purge", daemon=True)
        self._purger.start()
        self.review_args = args.review
        self.deadlines = Deadlines(args.review.deadlines)
        self.review_metrics = ReviewMetrics()
        self.worklist = Worklist(self.store, on_claim=self.review_metrics.claimed,
                                 on_resolve=self.review_metrics.resolved)
        self._counter = threading.Thread(target=self._count_loop, name="worklist-counts", daemon=True)
        self._counter.start()

    async def route(self, plans: list, ingress_model: str, meta: dict, *window_probs: dict) -> list[dict]:
        computed_by = {p.pop(MODEL_KEY, None) for p in window_probs}
        if computed_by != {self.model_key} or ingress_model != self.model_key:
            # Mid-update: labels from one version, probabilities from another. The ingress answers 503.
            raise ModelVersionMismatchError("the stages of this request ran different model versions")
        results = self.assembler.assemble_with_records(plans, concat_window_probs(window_probs))
        now, rows, bodies = utcnow(), [], []
        narratives = meta.get("narratives") or [None] * len(results)
        # One per case: a coalesced group holds several /classify requests. An older ingress sends one id.
        request_ids = meta.get("request_ids") or [meta.get("request_id")] * len(results)
        for i, (body, classification, routing, record) in enumerate(results):
            self.metrics.record_case(classification, routing, body["chunks"])
            case_id = meta["case_ids"][i]
            rows.append(case_row(case_id=case_id, request_id=request_ids[i], call_id=meta["call_ids"][i],
                                 task_id=meta.get("task_id"), batch_index=i if meta["is_batch"] else None,
                                 created_at=now, model_id=self.checkpoint.model_id,
                                 model_revision=self.checkpoint.revision, result=record, narrative=narratives[i],
                                 deadlines=self.deadlines, **call_fields(meta)))
            bodies.append({**body, "case_id": case_id})
        self.writer.submit(rows)  # an in-memory append: the writer thread does the I/O
        return bodies

    async def call_store(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Run ``CaseStore.<method>(...)`` in a worker thread; its ServiceError (404, 409) goes back as itself."""
        if method in REVIEW_CALLS:
            call = getattr(self.worklist, REVIEW_CALLS[method])
        elif method in STORE_CALLS:
            call = getattr(self.store, method)
        else:
            raise ValueError(f"'{method}' is not a case store call")

        def run():
            self.writer.flush()  # this replica's queued records first, so a case is readable at once
            if method in AUDIT_READS:
                self.audit_writer.flush()
            try:
                return call(*args, **kwargs)
            except CaseNotFound:
                # Another Router replica may have classified it and not written it yet: it writes
                # within flush_interval_s. One more look after that, then the 404 stands.
                time.sleep(2 * self.feedback_args.flush_interval_s)
                return call(*args, **kwargs)

        result = await asyncio.to_thread(run)
        if method == "put_feedback":
            self.metrics.record_feedback(result["agreed"], model_version(result["model"]["id"],
                                                                         result["model"]["revision"]))
        if method == "review_resolve":  # the worklist observed its times itself; the feedback is counted here
            feedback = result["feedback"]
            self.metrics.record_feedback(feedback["agreed"], model_version(feedback["model"]["id"],
                                                                           feedback["model"]["revision"]))
        return result

    def _count_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.review_metrics.set_counts(self.worklist.counts())
            except Exception as exc:
                logger.warning("counting the worklist failed (%s)", type(exc).__name__)
            self._stop.wait(self.review_args.metrics_interval_s)
    async def record_audit(self, rows: list[dict]) -> None:
        """Queue the ingress's audit rows (``deployments/core/audit.py``); the writer thread stores them."""
        self.audit_writer.submit(rows)

    def _purge_loop(self) -> None:
        while not self._stop.is_set():
            try:
                purged = self.store.purge_narratives(self.feedback_args.retention_days)
                if purged:
                    logger.info("purged %d stored narratives older than %d days", purged,
                                self.feedback_args.retention_days)
            except Exception as exc:
                logger.warning("narrative purge failed (%s); next try in %.0f s", type(exc).__name__,
                               PURGE_INTERVAL_S)
            self._stop.wait(PURGE_INTERVAL_S)

    def ready(self) -> bool:
        return True

    async def __del__(self) -> None:
        """Serve calls this on a graceful shutdown: every queued record is written before the replica goes."""
        if not hasattr(self, "writer"):  # the constructor failed before the store was open
            return
        self._stop.set()
        written = await asyncio.to_thread(self.writer.close)
        if not written:
            logger.error("shutdown: %d case records could not be written", self.writer.pending)
        self.worklist.close()
        if not await asyncio.to_thread(self.audit_writer.close):
            logger.error("shutdown: %d audit rows could not be written", self.audit_writer.pending)
        self.store.close()
