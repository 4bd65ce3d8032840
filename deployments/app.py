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
import time

import ray
from ray import serve
from ray.serve.handle import DeploymentHandle
from starlette.requests import Request
from starlette.responses import Response

from deployments.core import contract
from deployments.core.auth import ApiKeys
from deployments.core.batching import window_count
from deployments.core.config import AppArgs, BatchingArgs, RoutingArgs
from deployments.core.errors import ModelVersionMismatchError, ServiceError
from deployments.core.inference import BatchClassifier
from deployments.core.loading import load_labels, load_tokenizer, read_checkpoint_info, resolve_checkpoint
from deployments.core.postprocess import CaseAssembler, concat_window_probs
from deployments.core.preprocess import NarrativeTokenizer, prepare_cases
from deployments.core.routing import RoutingPolicy
from deployments.core.windowing import TokenWindows
from deployments.ingress import HttpIngress, backend_error
from deployments.metrics import ClassifierMetrics, RouterMetrics

logger = logging.getLogger("ray.serve")

# Every queue is bounded: past max_queued_requests a caller gets this status with Retry-After.
# serve_config.yaml sets the same; these are the defaults for a bare `serve.run(build_app(...))`.
BACKPRESSURE = {"status_code": 503, "retry_after_s": 1}

# The key, in each classifier result, naming the model that computed it.
MODEL_KEY = "model"


def model_key(info) -> str:
    """What the response's ``model`` field names: id and revision, the same for every stage of one version.

    During a rolling update (a new model path through ``serve deploy``) each deployment rolls on
    its own, so a new ingress can reach an old classifier; the router refuses such a mix.
    """
    return f"{info.model_id}@{info.revision or ''}"


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

    def __init__(self, classifier: DeploymentHandle, router: DeploymentHandle, args: dict):
        self.args = AppArgs(**args)
        self.model_id = self.args.model
        path = resolve_checkpoint(self.model_id, self.args.revision)
        self.tokenizer = NarrativeTokenizer(load_tokenizer(path))
        self.labels = load_labels(path)
        self.checkpoint = read_checkpoint_info(path, self.model_id, self.args.revision)
        self.classifier = classifier
        self.router = router
        self.openapi = contract.build_openapi(self.args, self.labels)
        self.model_ref = contract.ModelRef(id=self.model_id, revision=self.checkpoint.revision)
        self.model_key = model_key(self.checkpoint)
        self.http = HttpIngress(
            {"classify": self.classify, "classify_batch": self.classify_batch, "health": self.health,
             "info": self.info, "openapi": self.openapi_doc},
            api_keys=ApiKeys.from_env(), max_body_bytes=self.args.max_body_bytes,
            limits=contract.Limits.of(self.args),
        )

    async def __call__(self, request: Request) -> Response:
        return await self.http(request)

    async def _classify_cases(self, parsed: contract.ClassifyRequest | contract.BatchRequest) -> list[dict]:
        windows, plans = prepare_cases(
            parsed.narratives, self.tokenizer, max_length=self.args.max_length, overlap=self.args.window_overlap,
            truncate=self.args.long_narratives == "truncate", include_confidence=parsed.include_confidence,
            include_chunks=parsed.include_chunks, is_batch=parsed.is_batch,
        )
        if len(windows) > self.args.max_batch_windows:
            raise ServiceError.too_large(
                f"The request needs {len(windows)} model windows; the limit is {self.args.max_batch_windows}."
            )
        step = self.args.windows_per_call
        # One deadline for the whole request, however many slices: a draining replica
        # (graceful_shutdown_timeout_s > backend_timeout_s, see build_app) answers every request it took.
        deadline = time.monotonic() + self.args.backend_timeout_s

        def left() -> float:
            return max(0.0, deadline - time.monotonic())

        try:
            # Long work goes to the classifier one slice at a time, so short cases that
            # arrive meanwhile queue between the slices instead of behind all of them.
            done = []
            for start in range(0, len(windows) - step, step):
                done.append(await asyncio.wait_for(
                    self.classifier.classify.remote(windows.slice(start, start + step)), left()
                ))
            last_start = len(done) * step
            last = windows if last_start == 0 else windows.slice(last_start, len(windows))
            # The last classifier response goes to the router unawaited: Ray hands it over directly.
            response = self.router.route.remote(plans, self.model_key, *done, self.classifier.classify.remote(last))
            return await asyncio.wait_for(response, left())
        except Exception as exc:
            raise backend_error(exc) from None

    async def classify(self, parsed: contract.ClassifyRequest) -> contract.ClassifyResponse:
        started = time.perf_counter()
        (case,) = await self._classify_cases(parsed)
        return contract.ClassifyResponse(success=True, **case, model=self.model_ref,
                                         processing_time_seconds=round(time.perf_counter() - started, 6))

    async def classify_batch(self, parsed: contract.BatchRequest) -> contract.BatchResponse:
        started = time.perf_counter()
        results = await self._classify_cases(parsed)
        return contract.BatchResponse(success=True, results=results, model=self.model_ref,
                                      processing_time_seconds=round(time.perf_counter() - started, 6))

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
        return contract.Health(status="ok", deployments={"Preprocessor": "ready", "Classifier": "ready",
                                                         "Router": "ready"})

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
    return ingress.bind(classifier, router, args.model_dump())
