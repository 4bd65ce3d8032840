"""The three Ray Serve deployments and the one entry point, ``build_app``.

    HTTP → Preprocessor (ingress) → Classifier (batched model) → Router → back to the caller

Each deployment is a thin shell: its constructor loads state, its methods are
the request path, and the logic it calls lives in Ray-free modules. The HTTP
contract (request and response models, the OpenAPI document) is
``deployments/core/contract.py``; the ingress's HTTP plumbing (routing, body limits,
errors as responses) is ``deployments/ingress.py``; the metrics are declared in
``deployments/metrics.py``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time

import ray
from ray import serve
from ray.serve.handle import DeploymentHandle
from starlette.requests import Request
from starlette.responses import Response

from deployments.core import callbacks, contract, intake
from deployments.core.auth import ApiKeys
from deployments.core.batching import window_count
from deployments.core.config import AppArgs, BatchingArgs, RoutingArgs
from deployments.core.errors import ModelVersionMismatchError, ServiceError
from deployments.core.inference import BatchClassifier
from deployments.core.loading import load_labels, read_checkpoint_info, resolve_checkpoint
from deployments.core.postprocess import CaseAssembler, concat_window_probs
from deployments.core.routing import RoutingPolicy
from deployments.core.windowing import TokenWindows
from deployments.ingress import HttpIngress
from deployments.intake import IntakeStore, make_consumer
from deployments.metrics import ClassifierMetrics, IntakeDepth, RouterMetrics
from deployments.pipeline import CasePipeline, model_key

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

    def __init__(self, model: str, revision: str | None, accelerator: str, dtype: str,
                 torch_threads: int | None, windows_per_call: int):
        self.backend = BatchClassifier.load(
            model, revision, accelerator=accelerator, dtype=dtype, torch_threads=torch_threads
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
        return {"device": str(self.backend.device), "dtype": self.backend.dtype_name}


@serve.deployment(name="Router", ray_actor_options={"num_cpus": 0.1}, max_ongoing_requests=256, max_queued_requests=512,
                  backpressure_config=BACKPRESSURE, graceful_shutdown_timeout_s=30)
class Router:
    """Labels, confidences and the routing decision, from probabilities."""

    def __init__(self, model: str, revision: str | None, routing: dict, aggregation: str, priority_aggregation: str):
        path = resolve_checkpoint(model, revision)
        labels = load_labels(path)
        self.model_key = model_key(read_checkpoint_info(path, model, revision))
        policy = RoutingPolicy(RoutingArgs(**routing), labels)
        self.assembler = CaseAssembler(labels, policy, aggregation, priority_aggregation)
        self.metrics = RouterMetrics()

    async def route(self, plans: list, ingress_model: str, *window_probs: dict) -> list[dict]:
        computed_by = {p.pop(MODEL_KEY, None) for p in window_probs}
        if computed_by != {self.model_key} or ingress_model != self.model_key:
            # Mid-update: labels from one version, probabilities from another. The ingress answers 503.
            raise ModelVersionMismatchError("the stages of this request ran different model versions")
        results = self.assembler.assemble(plans, concat_window_probs(window_probs))
        for body, classification, routing in results:
            self.metrics.record_case(classification, routing, body["chunks"])
        return [body for body, _, _ in results]

    def ready(self) -> bool:
        return True


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
        self.labels = self.pipeline.labels
        self.checkpoint = self.pipeline.checkpoint
        self.classifier = classifier
        self.router = router
        self.openapi = contract.build_openapi(self.args, self.labels)
        self.model_ref = self.pipeline.model_ref
        self.intake = IntakeStore(self.args.intake, intake.resolve_broker(self.args.intake))
        self.intake_depth = IntakeDepth()
        self.http = HttpIngress(
            {"classify": self.classify, "classify_batch": self.classify_batch, "health": self.health,
             "info": self.info, "openapi": self.openapi_doc, "tasks_classify": self.tasks_classify,
             "tasks_classify_batch": self.tasks_classify_batch, "task_status": self.task_status,
             "openchs_classify": self.openchs_classify, "openchs_task": self.openchs_task},
            api_keys=ApiKeys.from_env(), max_body_bytes=self.args.max_body_bytes,
            limits=contract.Limits.of(self.args, callback_secret=os.environ.get(callbacks.SECRET_ENV_VAR)),
        )

    async def __call__(self, request: Request) -> Response:
        return await self.http(request)

    async def classify(self, parsed: contract.ClassifyRequest) -> contract.ClassifyResponse:
        return await self.pipeline.classify_one(parsed)

    async def classify_batch(self, parsed: contract.BatchRequest) -> contract.BatchResponse:
        started = time.perf_counter()
        results = await self.pipeline.classify(parsed)
        return contract.BatchResponse(success=True, results=results, model=self.model_ref,
                                      processing_time_seconds=round(time.perf_counter() - started, 6))

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
                       "include_chunks": parsed.include_chunks}
            cases.append((intake.task_id_for(item_key, call_id, narrative), call_id, payload))
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
        if not intake.is_task_id(task_id):
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
        return contract.OpenchsTaskResponse(**intake.openchs_submitted(view["task_id"], f"{depth} cases ahead"))

    async def openchs_task(self, task_id: str) -> contract.OpenchsTaskStatusResponse:
        view = await self._view(task_id)
        model_info = {"model": self.model_id, "revision": self.checkpoint.revision}
        return contract.OpenchsTaskStatusResponse(**intake.openchs_status(view, model_info))

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
    ).bind(model, args.revision, args.accelerator, args.dtype, args.torch_threads, args.windows_per_call)
    router = Router.bind(model, args.revision, args.routing.model_dump(), args.aggregation, args.priority_aggregation)
    # An ingress replica being replaced (a redeploy, a scale-down) keeps running until its last
    # request is answered: it must outlive backend_timeout_s, or Serve force-kills it mid-request
    # and the proxy answers a bare 500 (seen when a new Router took 30 s to start on a busy node).
    ingress = Preprocessor.options(graceful_shutdown_timeout_s=max(30.0, args.backend_timeout_s + 15))
    # The queue's consumer: an ingress-less deployment beside the others, calling the same handles.
    consumer = make_consumer(args).bind(classifier, router, args.model_dump())
    return ingress.bind(classifier, router, args.model_dump(), consumer)
