"""The three Ray Serve deployments and the one entry point, ``build_app``.

    HTTP → Preprocessor (ingress) → Classifier (batched model) → Router → back to the caller
                                                                   └─▶ case store (SQLite / PostgreSQL)

The Router owns the case store (``deployments/core/store``): it renders each
case anyway, so it queues the case record in memory on the way back (a
background thread writes the queue in batches) and answers the store's reads
and feedback writes in worker threads, off its event loop.

Each deployment is a thin shell: its constructor loads state, its methods are
the request path, and the logic it calls lives in Ray-free modules. The HTTP
contract (request and response models, the OpenAPI document) is
``deployments/core/contract/``; the ingress's HTTP plumbing (routing, body limits,
errors as responses) is ``deployments/ingress.py``; the metrics are declared in
``deployments/metrics.py``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import os
import time
import uuid
from datetime import datetime, timezone
from typing import Any, Callable, Optional

import ray
from ray import serve
from ray.serve.handle import DeploymentHandle
from starlette.requests import Request
from starlette.responses import Response

from deployments.core import callbacks, contract, tasks
from deployments.core.auth import ApiKeys
from deployments.core.batching import window_count
from deployments.core.config import AppArgs, BatchingArgs, FeedbackArgs, RoutingArgs
from deployments.core.errors import ModelVersionMismatchError, ServiceError
from deployments.core.inference import ModelRunner
from deployments.core.loading import load_labels, read_checkpoint_info, resolve_checkpoint
from deployments.core.pages import Page, Pages
from deployments.core.postprocess import CaseAssembler, concat_window_probs
from deployments.core.routing import RoutingPolicy
from deployments.core.store.repository import (AmbiguousCase, CaseNotFound, CaseStore, case_row, model_version,
                                               redacted, utcnow)
from deployments.core.store.writer import RecordWriter
from deployments.core.text import normalize_narrative
from deployments.core.windowing import TokenWindows
from deployments.ingress import HttpIngress, backend_error
from deployments.intake.consumer import make_consumer
from deployments.intake.producer import IntakeStore
from deployments.metrics import ClassifierMetrics, CoalescingMetrics, IntakeDepth, RouterMetrics
from deployments.pipeline import CaseCoalescer, CasePipeline, model_key

logger = logging.getLogger("ray.serve")

# Every queue is bounded: past max_queued_requests a caller gets this status with Retry-After.
# serve_config.yaml sets the same; these are the defaults for a bare `serve.run(build_app(...))`.
BACKPRESSURE = {"status_code": 503, "retry_after_s": 1}

# The key, in each classifier result, naming the model that computed it.
MODEL_KEY = "model"


@serve.deployment(
    name="Classifier",
    ray_actor_options={"num_cpus": 1},
    max_ongoing_requests=64,
    max_queued_requests=256,
    backpressure_config=BACKPRESSURE,
    health_check_period_s=10,
    health_check_timeout_s=30,
    graceful_shutdown_timeout_s=30,
    max_constructor_retry_count=3,
)
class Classifier:
    """The model replica: dynamically batched windows in, per-task probabilities out."""

    def __init__(self, model: str, revision: str | None, accelerator: str, engine: str, dtype: str,
                 torch_threads: int | None, windows_per_call: int):
        self.backend = ModelRunner.load(
            model, revision, accelerator=accelerator, engine=engine, dtype=dtype, torch_threads=torch_threads
        )
        self.model_key = model_key(self.backend.info)
        self.windows_per_call = windows_per_call
        self.batching = BatchingArgs()
        self.metrics = ClassifierMetrics()

    def reconfigure(self, user_config: dict) -> None:
        self.batching = BatchingArgs(**user_config)
        # Ray refuses a call larger than a batch; never go below what the ingress sends.
        self.classify.set_max_batch_size(max(self.batching.max_batch_size, self.windows_per_call))
        self.classify.set_batch_wait_timeout_s(self.batching.batch_wait_timeout_s)

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.005, batch_size_fn=window_count)
    async def classify(self, requests: list[TokenWindows]) -> list[dict]:
        # In a worker thread, so the event loop keeps queueing the next batch meanwhile.
        probs = await asyncio.to_thread(
            self.backend.classify,
            requests,
            max_rows=self.batching.max_batch_size,
            max_tokens=self.batching.max_batch_tokens,
            on_microbatch=self.metrics.record_forward,
        )
        return [{**p, MODEL_KEY: self.model_key} for p in probs]

    def check_health(self) -> None:
        self.backend.health_check()

    def describe(self) -> dict:
        return {"device": str(self.backend.device), "engine": self.backend.engine_name,
                "dtype": self.backend.dtype_name}


# How often the Router deletes stored narrative text past feedback.retention_days.
PURGE_INTERVAL_S = 3600.0


def _stored(call: Callable[[], Any]) -> dict:
    """Run a store call; its outcome as data (exceptions do not cross replicas intact)."""
    try:
        return {"value": call()}
    except CaseNotFound:
        return {"error": [404, "case_not_found", "No case has this id."]}
    except AmbiguousCase:
        return {"error": [409, "ambiguous_case", "This request id names several cases (a batch); use a case id "
                                                 "or call id."]}


@serve.deployment(name="Router", ray_actor_options={"num_cpus": 0.1}, max_ongoing_requests=256, max_queued_requests=512,
                  backpressure_config=BACKPRESSURE, graceful_shutdown_timeout_s=30)
class Router:
    """Labels, confidences and the routing decision, from probabilities; and the case store."""

    def __init__(self, model: str, revision: str | None, routing: dict, aggregation: str, priority_aggregation: str,
                 feedback: dict | None = None):
        path = resolve_checkpoint(model, revision)
        labels = load_labels(path)
        self.checkpoint = read_checkpoint_info(path, model, revision)
        self.model_key = model_key(self.checkpoint)
        policy = RoutingPolicy(RoutingArgs(**routing), labels)
        self.assembler = CaseAssembler(labels, policy, aggregation, priority_aggregation)
        self.metrics = RouterMetrics()
        self.feedback_args = FeedbackArgs(**(feedback or {}))
        url = self.feedback_args.resolved_database_url()
        self.store = CaseStore(url)
        logger.info("case store at %s, schema revision %s", redacted(self.store.url), self.store.revision())
        self.writer = RecordWriter(self.store.add_cases, interval_s=self.feedback_args.flush_interval_s,
                                   max_rows=self.feedback_args.flush_max_rows)
        self._stop = threading.Event()
        self._purger = threading.Thread(target=self._purge_loop, name="narrative-purge", daemon=True)
        self._purger.start()

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
                                 model_revision=self.checkpoint.revision, result=record, narrative=narratives[i]))
            bodies.append({**body, "case_id": case_id})
        self.writer.submit(rows)  # an in-memory append: the writer thread does the I/O
        return bodies

    async def _read(self, call: Callable[[], Any]) -> dict:
        def run():
            self.writer.flush()  # this replica's queued records first, so a case is readable at once
            outcome = _stored(call)
            if outcome.get("error", [0])[0] == 404:
                # Another Router replica may have classified it and not written it yet: it writes
                # within flush_interval_s. One more look after that, then the 404 stands.
                time.sleep(2 * self.feedback_args.flush_interval_s)
                outcome = _stored(call)
            return outcome

        return await asyncio.to_thread(run)

    async def get_case(self, ref: str) -> dict:
        return await self._read(lambda: self.store.get_case(ref))

    async def put_feedback(self, ref: str, fields: dict) -> dict:
        outcome = await self._read(lambda: self.store.put_feedback(ref, **fields))
        if "value" in outcome:
            stored = outcome["value"]
            self.metrics.record_feedback(stored["agreed"], model_version(stored["model"]["id"],
                                                                         stored["model"]["revision"]))
        return outcome

    async def feedback_stats(self, days: int, model: Optional[str]) -> dict:
        return await self._read(lambda: self.store.stats(days, model))

    async def feedback_export(self, since, model: Optional[str]) -> dict:
        def export():
            result = self.store.export(since, model)
            return {"examples": result.examples, "skipped_without_narrative": result.skipped_without_narrative}

        return await self._read(export)

    async def openchs_update(self, call_id: str, rating: int, reason: Optional[str]) -> dict:
        return await self._read(lambda: self.store.openchs_update(call_id, rating, reason))

    async def openchs_call(self, call_id: str, task: Optional[str]) -> dict:
        return await self._read(lambda: self.store.openchs_call(call_id, task))

    async def openchs_statistics(self, days: int, task: Optional[str]) -> dict:
        return await self._read(lambda: self.store.openchs_statistics(days, task))

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
        self.store.close()


@serve.deployment(
    name="Preprocessor",
    ray_actor_options={"num_cpus": 0.25},
    max_ongoing_requests=128,
    max_queued_requests=256,
    backpressure_config=BACKPRESSURE,
    graceful_shutdown_timeout_s=30,
    max_constructor_retry_count=3,
)
class Preprocessor:
    """HTTP ingress: validate, normalize, tokenize, window; hand token ids to the classifier."""

    def __init__(self, classifier: DeploymentHandle, router: DeploymentHandle, args: dict,
                 consumer: DeploymentHandle | None = None):
        self.args = AppArgs(**args)
        self.model_id = self.args.model
        self.consumer = consumer  # bound so it deploys with the app; it takes its work from the queue
        self.pipeline = CasePipeline(self.args, classifier, router)
        self.coalescer = CaseCoalescer(self.pipeline, self.args.coalescing, CoalescingMetrics().record_group)
        self.labels = self.pipeline.labels
        self.checkpoint = self.pipeline.checkpoint
        self.classifier = classifier
        self.router = router
        self.openapi = contract.build_openapi(self.args, self.labels)
        self.pages = Pages()
        self.model_ref = self.pipeline.model_ref
        self.intake = IntakeStore(self.args.intake, tasks.resolve_broker(self.args.intake))
        self.intake_depth = IntakeDepth()
        self.http = HttpIngress(
            {"classify": self.classify, "classify_batch": self.classify_batch, "health": self.health,
             "info": self.info, "openapi": self.openapi_doc, "get_case": self.get_case, "feedback": self.feedback,
             "feedback_stats": self.feedback_stats, "feedback_export": self.feedback_export,
             "openchs_feedback_update": self.openchs_feedback_update,
             "openchs_feedback_call": self.openchs_feedback_call,
             "openchs_feedback_statistics": self.openchs_feedback_statistics,
             "console": self.console, "docs": self.docs, "docs_asset": self.docs_asset,
             "tasks_classify": self.tasks_classify, "tasks_classify_batch": self.tasks_classify_batch,
             "task_status": self.task_status, "openchs_classify": self.openchs_classify,
             "openchs_task": self.openchs_task},
            api_keys=ApiKeys.from_env(), max_body_bytes=self.args.max_body_bytes,
            limits=contract.Limits.of(self.args, callback_secret=os.environ.get(callbacks.SECRET_ENV_VAR)),
        )

    async def __call__(self, request: Request) -> Response:
        return await self.http(request)

    async def classify(self, parsed: contract.ClassifyRequest) -> contract.ClassifyResponse:
        return await self.coalescer.classify_one(parsed)

    async def classify_batch(self, parsed: contract.BatchRequest) -> contract.BatchResponse:
        started = time.perf_counter()
        results = await self.pipeline.classify(parsed)
        return contract.BatchResponse(success=True, results=results, model=self.model_ref,
                                      processing_time_seconds=round(time.perf_counter() - started, 6))

    async def console(self) -> Page:
        return self.pages.console

    async def docs(self) -> Page:
        return self.pages.docs

    async def docs_asset(self, params: contract.AssetParams) -> Page:
        return self.pages.asset(params.name)

    async def _store(self, method: str, *args) -> Any:
        """A call to the Router's case store; its refusals (404, 409) become ServiceErrors here."""
        try:
            outcome = await asyncio.wait_for(getattr(self.router, method).remote(*args), self.args.backend_timeout_s)
        except Exception as exc:
            raise backend_error(exc) from None
        if "error" in outcome:
            raise ServiceError(*outcome["error"])
        return outcome["value"]

    async def get_case(self, params: contract.CaseParams) -> contract.CaseResponse:
        return contract.CaseResponse(success=True, case=await self._store("get_case", params.id))

    async def feedback(self, body: contract.FeedbackRequest) -> contract.FeedbackResponse:
        corrections = contract.check_corrections(body.corrections, self.labels)
        fields = {"corrections": corrections, "rating": body.rating, "reason": body.reason,
                  "reviewer": body.reviewer,
                  "narrative": normalize_narrative(body.narrative) if body.narrative is not None else None}
        return contract.FeedbackResponse(success=True, feedback=await self._store("put_feedback", body.case_id, fields))

    async def feedback_stats(self, params: contract.StatsParams) -> contract.FeedbackStats:
        return contract.FeedbackStats(success=True, **await self._store("feedback_stats", params.days, params.model))

    async def feedback_export(self, params: contract.ExportParams) -> contract.ExportResponse:
        since = datetime.combine(params.since, datetime.min.time(), tzinfo=timezone.utc)
        exported = await self._store("feedback_export", since, params.model)
        return contract.ExportResponse(success=True, since=since.isoformat(), **exported)

    async def openchs_feedback_update(self, body: contract.OpenChsFeedbackUpdate) -> contract.OpenChsFeedback:
        return contract.OpenChsFeedback(**await self._store("openchs_update", body.call_id, body.feedback, body.reason))

    async def openchs_feedback_call(self, params: contract.OpenChsCallParams) -> contract.OpenChsFeedbackList:
        entries = await self._store("openchs_call", params.call_id, params.task)
        if not entries:
            raise ServiceError(404, "not_found", "No feedback for this call.")
        return contract.OpenChsFeedbackList(entries)

    async def openchs_feedback_statistics(self, params: contract.OpenChsStatsParams) -> contract.OpenChsStatistics:
        return contract.OpenChsStatistics(**await self._store("openchs_statistics", params.days, params.task))

    # -- the durable intake ---------------------------------------------------------------------

    async def _on_intake(self, fn, *args):
        """Run a blocking IntakeStore call in a thread; a broker that cannot be reached is a 503."""
        try:
            return await asyncio.to_thread(fn, *args)
        except ServiceError:
            raise
        except Exception as exc:
            logger.warning("intake store call failed: %s", type(exc).__name__)
            raise ServiceError.unavailable("The intake queue cannot be reached; retry.") from None

    async def _submit(self, narratives: list[str], call_ids: list, parsed, key: str | None,
                      callback_url: str | None = None) -> list[dict]:
        # Refused here with the 400 /classify would give, never queued to fail later.
        self.pipeline.check(narratives)
        cases = []
        for i, (narrative, call_id) in enumerate(zip(narratives, call_ids)):
            item_key = None if key is None else (key if len(narratives) == 1 and not parsed.is_batch else f"{key}#{i}")
            payload = {"narrative": narrative, "include_confidence": parsed.include_confidence,
                       "include_chunks": parsed.include_chunks, "call_id": call_id}
            cases.append((tasks.task_id_for(item_key, call_id, narrative), call_id, payload))
        views = await self._on_intake(self.intake.submit, cases, callback_url)
        depth = await self._on_intake(self.intake.queue_depth)
        self.intake_depth.set(depth)
        return views

    async def tasks_classify(self, parsed: contract.TaskClassifyRequest,
                             idempotency_key: str | None = None) -> contract.TaskAccepted:
        (view,) = await self._submit([parsed.narrative], [parsed.call_id], parsed, idempotency_key,
                                     parsed.callback_url)
        return contract.TaskAccepted(success=True, task_id=view["task_id"], status=view["status"],
                                     status_url=f"/tasks/{view['task_id']}")

    async def tasks_classify_batch(self, parsed: contract.TaskBatchRequest,
                                   idempotency_key: str | None = None) -> contract.TaskBatchAccepted:
        call_ids = parsed.call_ids or [None] * len(parsed.narratives)
        views = await self._submit(parsed.narratives, call_ids, parsed, idempotency_key, parsed.callback_url)
        return contract.TaskBatchAccepted(success=True, tasks=[
            contract.TaskRef(task_id=v["task_id"], status=v["status"], status_url=f"/tasks/{v['task_id']}")
            for v in views])

    async def _view(self, task_id: str) -> dict:
        if not tasks.is_task_id(task_id):
            raise ServiceError.task_not_found()
        view = await self._on_intake(self.intake.view, task_id)
        if view is None:
            raise ServiceError.task_not_found()
        return view

    async def task_status(self, task_id: str) -> contract.TaskStatus:
        return contract.TaskStatus(**await self._view(task_id))

    async def openchs_classify(self, parsed: contract.OpenchsClassifyRequest) -> contract.OpenchsTaskResponse:
        request = contract.ClassifyRequest(narrative=parsed.narrative)
        (view,) = await self._submit([parsed.narrative], [None], request, None)
        depth = await self._on_intake(self.intake.queue_depth)
        return contract.OpenchsTaskResponse(**tasks.openchs_submitted(view["task_id"], f"{depth} cases ahead"))

    async def openchs_task(self, task_id: str) -> contract.OpenchsTaskStatusResponse:
        view = await self._view(task_id)
        model_info = {"model": self.model_id, "revision": self.checkpoint.revision}
        return contract.OpenchsTaskStatusResponse(**tasks.openchs_status(view, model_info))

    async def _downstream_ready(self) -> dict:
        try:
            described, _ = await asyncio.wait_for(
                asyncio.gather(self.classifier.describe.remote(), self.router.ready.remote()), 10
            )
        except Exception:
            raise ServiceError.unavailable("The classifier or router is not ready.") from None
        return described

    async def health(self) -> contract.Health:
        await self._downstream_ready()
        await self._on_intake(self.intake.ping)
        return contract.Health(status="healthy", model=self.model_id,
                               deployments={"Preprocessor": "ready", "Classifier": "ready", "Router": "ready",
                                            "IntakeQueue": "ready"})

    async def info(self) -> contract.Info:
        described = await self._downstream_ready()
        ck = self.checkpoint
        return contract.Info(
            model=contract.ModelInfo(id=ck.model_id, revision=ck.revision, untrained=ck.untrained, note=ck.note or None,
                                     evaluation=ck.evaluation),
            labels=contract.Labels(**self.labels.to_json()),
            max_length=self.args.max_length,
            window_overlap=self.args.window_overlap,
            aggregation=self.args.aggregation,
            priority_aggregation=self.args.priority_aggregation,
            long_narratives=self.args.long_narratives,
            device=described["device"],
            engine=described["engine"],
            dtype=described["dtype"],
            limits=contract.InfoLimits(
                max_narrative_chars=self.args.max_narrative_chars,
                max_body_bytes=self.args.max_body_bytes,
                max_batch_narratives=self.args.max_batch_narratives,
                max_batch_windows=self.args.max_batch_windows,
            ),
            auth="api_key" if self.http.api_keys.enabled else "none",
            taxonomy=dict(self.labels.sub_to_main) if self.labels.sub_to_main else None,
        )

    async def openapi_doc(self) -> dict:
        return self.openapi


def _cluster_has_gpus() -> bool:
    try:
        return ray.is_initialized() and ray.cluster_resources().get("GPU", 0) > 0
    except Exception:
        return False


def build_app(args: AppArgs) -> serve.Application:
    """Compose Preprocessor → Classifier → Router from one validated ``AppArgs``."""
    if isinstance(args, dict):
        args = AppArgs(**args)
    # CHS_MODEL is read once, here, so every deployment serves the same model.
    args = args.model_copy(update={"model": args.resolved_model()})
    model = args.model
    use_gpu = args.accelerator == "cuda" or (args.accelerator == "auto" and _cluster_has_gpus())
    if args.accelerator == "auto" and not use_gpu:
        logger.warning("accelerator 'auto': the cluster has no GPUs, so the classifier asks for none and runs on CPU")
    classifier = Classifier.options(
        ray_actor_options={"num_cpus": args.classifier_num_cpus, "num_gpus": args.num_gpus if use_gpu else 0,
                           "resources": dict(args.classifier_resources)},
        user_config=args.batching.model_dump(),
    ).bind(model, args.revision, args.accelerator, args.engine, args.dtype, args.torch_threads,
            args.windows_per_call)
    router = Router.bind(model, args.revision, args.routing.model_dump(), args.aggregation, args.priority_aggregation,
                         args.feedback.model_dump())
    # An ingress replica being replaced (a redeploy, a scale-down) keeps running until its last
    # request is answered: it must outlive backend_timeout_s, or Serve force-kills it mid-request
    # and the proxy answers a bare 500 (seen when a new Router took 30 s to start on a busy node).
    ingress = Preprocessor.options(graceful_shutdown_timeout_s=max(30.0, args.backend_timeout_s + 15))
    # The queue's consumer: an ingress-less deployment beside the others, calling the same handles.
    consumer = make_consumer(args).bind(classifier, router, args.model_dump())
    return ingress.bind(classifier, router, args.model_dump(), consumer)
