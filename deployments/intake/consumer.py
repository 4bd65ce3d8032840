"""The consumer side of the durable intake: the ``IntakeConsumer`` deployment.

``make_consumer`` builds a ``@task_consumer`` (``ray.serve.task_consumer``) whose ``@task_handler``
classifies each case through the same Classifier and Router handles as ``/classify``
(``CasePipeline``). Ray's Celery adapter runs the Celery worker in the replica, with acks late and
reject-on-worker-lost; ``consumer_concurrency`` worker threads (the deployment's
``max_ongoing_requests``) bound the queue's share of the classifier.

Ray 2.60's adapter fixes the task options at decoration time, so the consumer class is decorated
in ``make_consumer`` from the app's config; it retries only ``TransientFailure`` (the adapter's
default would retry every exception, bad input included), with exponential backoff.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from typing import Optional

import httpx

from celery import current_task
from ray import serve
from ray.serve.handle import DeploymentHandle
from ray.serve.schema import CeleryAdapterConfig, TaskProcessorConfig
from ray.serve.task_consumer import task_consumer, task_handler

from deployments.core import callbacks, contract, notifications, openchs, tasks
from deployments.core.config import DEPLOYMENT_OPTIONS, NOTIFY_TOKEN_ENV_VAR, AppArgs, IntakeArgs
from deployments.core.errors import LabelHeadMismatchError, ServiceError
from deployments.intake.fs_transport import recover_inflight  # also registers the embedded broker's chsfs:// transport
from deployments.intake.producer import IntakeStore, broker_transport_options, celery_settings, producer_app
from deployments.metrics import IntakeMetrics
from deployments.pipeline import CasePipeline
from deployments.ray_errors import backend_error

logger = logging.getLogger("ray.serve")


class _LoopThread:
    """An event loop of the consumer's own, in a thread: Celery's worker threads run the async pipeline on it."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="chs-intake-loop", daemon=True)
        self.thread.start()

    def run(self, coro, timeout: float):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)


class IntakeConsumer:
    """Takes queued cases and classifies them through the Classifier and Router handles."""

    def __init__(self, classifier: DeploymentHandle, router: DeploymentHandle, args: AppArgs,
                 translator: DeploymentHandle | None = None):
        self.args = args
        self.pipeline = CasePipeline(self.args, classifier, router, translator)
        self.limits = contract.Limits.of(self.args)
        self.loop = _LoopThread()
        self.metrics = IntakeMetrics()
        broker = tasks.resolve_broker(self.args.intake)
        self.store = IntakeStore(self.args.intake, broker)
        self.callback_secret = os.environ.get(callbacks.SECRET_ENV_VAR)
        self.notify_token = os.environ.get(NOTIFY_TOKEN_ENV_VAR)
        self.http = httpx.Client(timeout=self.args.intake.callback_timeout_s, follow_redirects=False)
        if broker.embedded:
            # The filesystem result store has no expiry of its own: drop what is past its TTL at startup.
            producer_app(self.args.intake, broker).backend.cleanup()
            # Cases a consumer took and never acknowledged (it was killed, or stopped holding them).
            recovered = recover_inflight(broker.queue_dir)
            if recovered:
                logger.info("intake consumer put %d unacknowledged cases back on the queue", recovered)
        logger.info("intake consumer on %s", broker.describe())

    @task_handler(name=tasks.TASK_NAME)
    def classify(self, case: dict, submitted_at: float, callback_url: Optional[str] = None) -> dict:
        try:
            outcome = self._classify(case, submitted_at)
        except tasks.TransientFailure:
            if callback_url and (current_task.request.retries or 0) >= self.args.intake.max_retries:
                exhausted = {"outcome": "failed", "error": dict(tasks.RETRIES_EXHAUSTED),
                             "attempts": self.args.intake.max_retries + 1}
                view = self.store.finished_view(current_task.request.id, exhausted)
                if view is not None:
                    self.store.queue_callback(callback_url, view)
            raise
        if callback_url:
            view = self.store.finished_view(current_task.request.id, outcome)
            if view is not None:
                self.store.queue_callback(callback_url, view)
        return outcome

    @task_handler(name=tasks.CALLBACK_TASK_NAME)
    def callback(self, url: str, task: dict) -> dict:
        """POST the finished task to its callback_url, signed; a non-2xx answer or no answer is retried."""
        why = callbacks.refusal(url, self.args.intake.callback_allow_hosts, self.callback_secret)
        if why:  # the allow-list or the secret changed since the submit: never call it
            return {"outcome": "failed", "error": {"code": "callback_not_allowed", "message": why}}
        body = callbacks.body_bytes(task)
        try:
            response = self.http.post(url, content=body, headers={
                "content-type": "application/json",
                callbacks.SIGNATURE_HEADER: callbacks.sign(body, self.callback_secret)})
            status = response.status_code
        except httpx.HTTPError:
            status = None
        if status is None or not 200 <= status < 300:
            logger.warning("callback for task %s answered %s; retrying", task.get("task_id"), status or "nothing")
            raise tasks.TransientFailure("callback_failed")
        return {"outcome": "delivered", "status": status}

    @task_handler(name=tasks.NOTIFY_TASK_NAME)
    def notify(self, url: str, envelope: dict) -> dict:
        """POST a live call's notification to the helpline; a non-2xx answer or no answer is retried."""
        why = notifications.refusal(url, self.args.calls.notify_allow_hosts)
        if why:  # the allow-list changed since it was queued: never call it
            return {"outcome": "failed", "error": {"code": "notify_not_allowed", "message": why}}
        body = callbacks.body_bytes(envelope)
        headers = {"content-type": "application/json"}
        if self.notify_token:
            headers["authorization"] = f"Bearer {self.notify_token}"
        if self.callback_secret:
            headers[callbacks.SIGNATURE_HEADER] = callbacks.sign(body, self.callback_secret)
        try:
            status = self.http.post(url, content=body, headers=headers).status_code
        except httpx.HTTPError:
            status = None
        if status is None or not 200 <= status < 300:
            logger.warning("notification %s answered %s; retrying", envelope.get("message_id"), status or "nothing")
            raise tasks.TransientFailure("notify_failed")
        return {"outcome": "delivered", "status": status}

    def _classify(self, case: dict, submitted_at: float) -> dict:
        request = current_task.request
        attempt = (request.retries or 0) + 1
        if attempt == 1:
            self.metrics.started(max(0.0, time.time() - submitted_at))
        try:
            parsed = contract.parse_request(contract.ClassifyRequest, case, self.limits)
            body = self.loop.run(self.pipeline.classify_one(parsed, task_id=request.id),
                                 self.args.intake.task_timeout_s)
        except Exception as exc:
            failure = tasks.failure_of(
                exc if isinstance(exc, (ServiceError, LabelHeadMismatchError)) else backend_error(exc)
            )
            if not failure.retryable:
                self.metrics.finished("failed")
                return {**tasks.failed(failure.code, failure.message), "attempts": attempt}
            if attempt > self.args.intake.max_retries:
                self.metrics.finished("failed")
            else:
                self.metrics.retried(failure.code)
            logger.warning("intake task %s attempt %d failed: %s", request.id, attempt, failure.code)
            raise tasks.TransientFailure(failure.code) from None
        self.metrics.finished("succeeded")
        outcome = {**tasks.succeeded(body.model_dump()), "attempts": attempt}
        if case.get("openchs") and body.translation is None and body.chunk_details and len(body.chunk_details) > 1:
            # Their chunk_predictions count each window's sentences; the narrative is not kept, so now.
            outcome["window_sentences"] = openchs.window_sentence_counts(
                case["narrative"], [tuple(d.token_span) for d in body.chunk_details],
                self.pipeline.preparer.sentence_token_counts)
        return outcome

    def check_health(self) -> None:
        if not self.loop.thread.is_alive():
            raise RuntimeError("the consumer's event loop stopped")


def task_processor_config(args: IntakeArgs, broker: tasks.BrokerSettings) -> TaskProcessorConfig:
    app_config = {k: v for k, v in celery_settings(args, broker).items()}
    return TaskProcessorConfig(
        queue_name=args.queue_name,
        adapter_config=CeleryAdapterConfig(
            broker_url=broker.broker_url,
            backend_url=broker.backend_url,
            broker_transport_options=broker_transport_options(broker),
            app_custom_config=app_config,
            task_custom_config={
                # Only what retrying can fix is retried; a bad case ends 'failed' at once.
                "autoretry_for": (tasks.TransientFailure,),
                "retry_backoff": 2,
                "retry_backoff_max": args.retry_backoff_max_s,
                "retry_jitter": True,
                "acks_late": True,
                "reject_on_worker_lost": True,
            },
        ),
        max_retries=args.max_retries,
    )


def make_consumer(args: AppArgs) -> serve.Deployment:
    """The IntakeConsumer deployment, its queue settings taken from ``args.intake``."""
    broker = tasks.resolve_broker(args.intake)
    consumer_cls = task_consumer(task_processor_config=task_processor_config(args.intake, broker))(IntakeConsumer)
    return serve.deployment(
        consumer_cls,
        name="IntakeConsumer",
        **DEPLOYMENT_OPTIONS["IntakeConsumer"],
        # The Celery worker's thread count: the queue's bounded share of the classifier.
        max_ongoing_requests=args.intake.consumer_concurrency,
        ray_actor_options={"num_cpus": args.intake.consumer_num_cpus,
                           "resources": dict(args.intake.consumer_resources)},
    )
