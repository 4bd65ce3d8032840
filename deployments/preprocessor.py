"""The Preprocessor deployment: the HTTP ingress.

Every request enters here. ``HttpIngress`` (``deployments/ingress.py``, Ray-free) routes, checks
and renders it; the handler of each ``contract.OPERATIONS`` entry is the method named by the
operation's id, on this class or on one of the handler objects it composes:

- classify: ``/classify`` (coalesced, ``deployments/pipeline.py``) and ``/classify/batch``, here;
- the case store's routes: ``CaseStoreHandlers`` (``deployments/store_handlers.py``);
- the durable intake's routes: ``IntakeHandlers`` (``deployments/intake/handlers.py``);
- the worklist, its page and ``/whoami``: ``ReviewHandlers`` (``deployments/review_handlers.py``);
- the live call routes: ``CallHandlers`` (``deployments/calls.py``);
- health, info, the OpenAPI document and the pages for people, here.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from ray import serve
from ray.serve.handle import DeploymentHandle
from starlette.requests import Request
from starlette.responses import Response

from deployments.calls import CallHandlers
from deployments.core import contract, openchs, tasks
from deployments.core.auth import ApiKeys
from deployments.core.config import CALLBACK_SECRET_ENV_VAR, DEPLOYMENT_OPTIONS, AppArgs
from deployments.core.errors import ServiceError
from deployments.core.pages import Page, Pages
from deployments.ingress import HttpIngress, handlers_of
from deployments.intake.handlers import IntakeHandlers
from deployments.intake.producer import IntakeStore
from deployments.metrics import CoalescingMetrics, IntakeDepth
from deployments.pipeline import CaseCoalescer, CasePipeline
from deployments.ray_errors import serve_request_id
from deployments.review_handlers import ReviewHandlers
from deployments.store_handlers import CaseStoreHandlers

SERVICE_VERSION = "1.0.0"  # the API's version, as /openapi.json names it
# What /health names; each must answer for a 200.
HEALTH_PARTS = ("Preprocessor", "Classifier", "Router", "IntakeQueue")


@serve.deployment(name="Preprocessor", **DEPLOYMENT_OPTIONS["Preprocessor"])
class Preprocessor:
    """HTTP ingress: validate, normalize, tokenize, window; hand token ids to the classifier."""

    def __init__(self, classifier: DeploymentHandle, router: DeploymentHandle, args: AppArgs,
                 consumer: DeploymentHandle | None = None, translator: DeploymentHandle | None = None):
        self.args = args
        self.consumer = consumer  # bound so it deploys with the app; it takes its work from the queue
        self.classifier = classifier
        self.router = router
        self.translator = translator
        self.pipeline = CasePipeline(args, classifier, router, translator)
        self.coalescer = CaseCoalescer(self.pipeline, args.coalescing, CoalescingMetrics().record_group)
        self.labels = self.pipeline.labels
        self.checkpoint = self.pipeline.checkpoint
        self.document = contract.build_openapi(args, self.labels)
        self.pages = Pages()
        self.store_handlers = CaseStoreHandlers(router, self.labels, args.backend_timeout_s,
                                                report_min_count=args.reports.min_count)
        intake_store = IntakeStore(args.intake, tasks.resolve_broker(args.intake))
        self.intake = IntakeHandlers(intake_store, model_info=self._openchs_model_info, on_depth=IntakeDepth().set)
        self._model_info: dict | None = None  # OpenCHS's get_model_info(), once the classifier has answered
        api_keys = ApiKeys.from_env()
        self.review_handlers = ReviewHandlers(self.store_handlers, self.pages, api_keys)
        self.calls = CallHandlers(self.pipeline, self.store_handlers, args, intake_store)
        self.calls.start_sweeper()  # on this replica's event loop, where Serve runs the constructor
        self.http = HttpIngress(
            handlers_of(self, self.store_handlers, self.intake, self.review_handlers, self.calls),
            api_keys=api_keys, max_body_bytes=args.max_body_bytes,
            limits=contract.Limits.of(args, callback_secret=os.environ.get(CALLBACK_SECRET_ENV_VAR)),
            request_id_of=serve_request_id, audit=self.store_handlers.record_audit,
        )

    async def __call__(self, request: Request) -> Response:
        return await self.http(request)

    async def classify(self, parsed: contract.ClassifyRequest) -> contract.ClassifyResponse:
        return await self.coalescer.classify_one(parsed)

    async def classify_batch(self, parsed: contract.BatchRequest) -> contract.BatchResponse:
        started = time.perf_counter()
        results = await self.pipeline.classify(parsed)
        return contract.BatchResponse(success=True, results=results, model=self.pipeline.model_ref,
                                      processing_time_seconds=round(time.perf_counter() - started, 6))

    async def console(self) -> Page:
        return self.pages.console

    async def reports_page(self) -> Page:
        return self.pages.reports

    async def docs(self) -> Page:
        return self.pages.docs

    async def docs_asset(self, params: contract.AssetParams) -> Page:
        return self.pages.asset(params.name)

    async def openapi(self) -> dict:
        return self.document

    async def _downstream_ready(self) -> dict:
        calls = [self.classifier.describe.remote(), self.router.ready.remote()]
        if self.translator is not None:
            calls.append(self.translator.describe.remote())
        try:
            described, *_ = await asyncio.wait_for(asyncio.gather(*calls), 10)
        except Exception:
            raise ServiceError.unavailable("The classifier, router or translator is not ready.") from None
        return described

    async def health(self) -> contract.Health:
        await self._downstream_ready()
        await self.intake.ping()
        parts = HEALTH_PARTS + (("Translator",) if self.translator is not None else ())
        return contract.Health(status="healthy", model=self.args.model,
                               deployments={part: "ready" for part in parts})

    async def info(self) -> contract.Info:
        described = await self._downstream_ready()
        ck, args = self.checkpoint, self.args
        return contract.Info(
            model=contract.ModelInfo(id=ck.model_id, revision=ck.revision, untrained=ck.untrained, note=ck.note or None,
                                     evaluation=ck.evaluation),
            labels=contract.Labels(**self.labels.to_json()),
            max_length=args.max_length,
            window_overlap=args.window_overlap,
            aggregation=args.aggregation,
            priority_aggregation=args.priority_aggregation,
            long_narratives=args.long_narratives,
            device=described["device"],
            engine=described["engine"],
            dtype=described["dtype"],
            passes_at_once=described.get("passes_at_once", 1),
            engine_auto=described.get("engine_auto"),
            agreement=described.get("agreement"),
            recheck_margin=described.get("recheck_margin"),
            limits=contract.InfoLimits(
                max_narrative_chars=args.max_narrative_chars,
                max_body_bytes=args.max_body_bytes,
                max_batch_narratives=args.max_batch_narratives,
                max_batch_windows=args.max_batch_windows,
            ),
            auth="api_key" if self.http.api_keys.enabled else "none",
            taxonomy=dict(self.labels.sub_to_main) if self.labels.sub_to_main else None,
            taxonomy_source=contract.TaxonomySource(**self.labels.taxonomy_source),
            priority_high=self.labels.most_urgent,
            priority_names={str(p): self.labels.priority_name(p) for p in self.labels.priority},
        )

    # -- OpenCHS ai-service's model and health routes (deployments/core/openchs.py shapes them) ------

    async def _openchs_model_info(self) -> dict:
        if self._model_info is None:
            described = await self._downstream_ready()
            self._model_info = openchs.model_info(
                model=self.args.model, path=self.checkpoint.path, local=Path(self.args.model).expanduser().is_dir(),
                loaded_at=described.get("loaded_at"), device=described["device"], max_length=self.args.max_length,
                categories={"main": len(self.labels.main_category), "sub": len(self.labels.sub_category),
                            "intervention": len(self.labels.intervention), "priority": len(self.labels.priority)},
                truncates=self.args.long_narratives == "truncate")
        return self._model_info

    async def openchs_info(self) -> contract.OpenchsClassifierInfo:
        return contract.OpenchsClassifierInfo(status="ready", model_info=await self._openchs_model_info())

    async def _openchs_state(self) -> tuple[bool, int | None, str, str | None]:
        """Whether the classifier answers, the queue's depth, the device, and what is wrong if anything."""
        try:
            info = await self._openchs_model_info()
        except ServiceError as err:
            return False, None, "unknown", err.message
        try:
            depth = await self.intake.queue_depth()
        except ServiceError as err:
            return False, None, info["device"], err.message
        return True, depth, info["device"], None

    async def openchs_health_models(self) -> contract.OpenchsHealthModels:
        ready, depth, _, why = await self._openchs_state()
        return contract.OpenchsHealthModels(**openchs.health_models(ready, depth, why))

    async def openchs_health_detailed(self) -> contract.OpenchsHealthDetailed:
        ready, depth, device, why = await self._openchs_state()
        return contract.OpenchsHealthDetailed(**openchs.health_detailed(
            ready, depth, self.args.intake.max_queued, SERVICE_VERSION, device, why))
