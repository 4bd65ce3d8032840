"""The durable intake: Celery on Redis (or the embedded filesystem broker), consumed by Ray Serve's
asynchronous inference (``ray.serve.task_consumer``).

* ``IntakeStore`` is the producer side, used by the ingress: it writes the task's record (id,
  call id, times: never the narrative), puts the case on the queue before the caller gets its
  202, reads a task's state, and refuses a submit with 503 when the queue is full.
* ``make_consumer`` builds the ``IntakeConsumer`` deployment: a ``@task_consumer`` whose
  ``@task_handler`` classifies each case through the same Classifier and Router handles as
  ``/classify`` (``CasePipeline``). Ray's Celery adapter runs the Celery worker in the replica,
  with acks late and reject-on-worker-lost; ``consumer_concurrency`` worker threads (the
  deployment's ``max_ongoing_requests``) bound the queue's share of the classifier.

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

from celery import Celery, current_task
from celery.result import AsyncResult
from ray import serve
from ray.serve.handle import DeploymentHandle
from ray.serve.schema import CeleryAdapterConfig, TaskProcessorConfig
from ray.serve.task_consumer import task_consumer, task_handler

from deployments.core import callbacks, contract, intake
from deployments.core.config import AppArgs, IntakeArgs
from deployments.core.errors import LabelHeadMismatchError, ServiceError
from deployments.durable_fs import recover_inflight  # also registers the embedded broker's chsfs:// transport
from deployments.ingress import backend_error
from deployments.metrics import IntakeMetrics
from deployments.pipeline import CasePipeline

logger = logging.getLogger("ray.serve")

# Celery settings shared by the producer and the consumer. Results hold no narrative and
# expire after result_ttl_s; JSON only, so no pickled payload is ever accepted.
def celery_settings(args: IntakeArgs, broker: intake.BrokerSettings) -> dict:
    return {
        "result_expires": args.result_ttl_s,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_extended": False,  # never store a task's arguments (the narrative) with its result
        "task_track_started": True,  # 'processing' once a consumer takes the case
        "worker_prefetch_multiplier": 1,
        "broker_connection_retry_on_startup": True,
        "worker_hijack_root_logger": False,
        "worker_redirect_stdouts": False,
        "task_default_queue": args.queue_name,
    }


def broker_transport_options(broker: intake.BrokerSettings) -> dict:
    options = dict(broker.transport_options)
    if broker.embedded:
        # The worker's remote-control mailbox (used to stop it) lives beside the queue.
        control = broker.queue_dir.parent / "control"
        control.mkdir(parents=True, exist_ok=True)
        options["control_folder"] = str(control)
    return options


def producer_app(args: IntakeArgs, broker: intake.BrokerSettings) -> Celery:
    app = Celery("chs-intake", broker=broker.broker_url, backend=broker.backend_url)
    app.conf.update(celery_settings(args, broker), broker_transport_options=broker_transport_options(broker))
    return app


class IntakeStore:
    """The ingress's side of the queue: submit, read, refuse when full. Blocking: call it in a thread."""

    def __init__(self, args: IntakeArgs, broker: intake.BrokerSettings):
        self.args = args
        self.broker = broker
        self.app = producer_app(args, broker)
        self._redis = None
        if not broker.embedded:
            import redis

            self._redis = redis.Redis.from_url(broker.broker_url)

    # -- records ------------------------------------------------------------------------------

    def _get_record(self, task_id: str) -> Optional[intake.TaskRecord]:
        raw = self.app.backend.get(intake.record_key(task_id).encode())
        if raw is None:
            return None
        record = intake.TaskRecord.loads(raw)
        if record.expired():
            self.forget(task_id)
            return None
        return record

    def forget(self, task_id: str) -> None:
        for key in (intake.record_key(task_id), self.app.backend.get_key_for_task(task_id)):
            try:
                self.app.backend.delete(key.encode() if isinstance(key, str) else key)
            except FileNotFoundError:
                pass

    def queue_depth(self) -> int:
        if self._redis is not None:
            return int(self._redis.llen(self.args.queue_name))
        suffix = f".{self.args.queue_name}.msg"
        return sum(1 for name in _listdir(self.broker.queue_dir) if name.endswith(suffix))

    # -- the ingress's calls --------------------------------------------------------------------

    def submit(self, cases: list[tuple[str, Optional[str], dict]], callback_url: Optional[str] = None) -> list[dict]:
        """Queue (task_id, call_id, payload) cases; an id already known gives back its task unchanged."""
        known = {task_id: self._get_record(task_id) for task_id, _, _ in cases}
        new = [c for c in cases if known[c[0]] is None]
        if new and self.queue_depth() + len(new) > self.args.max_queued:
            raise ServiceError(503, "queue_full", "The intake queue is full; retry after the delay in Retry-After.",
                               {"Retry-After": str(self.args.retry_after_s)})
        queued: set[str] = set()
        for task_id, call_id, payload in new:
            if task_id in queued:  # the same key twice in one batch
                continue
            record = intake.TaskRecord.new(task_id, call_id, self.args.result_ttl_s)
            self.app.backend.set(intake.record_key(task_id).encode(), record.dumps())
            try:
                self.app.send_task(intake.TASK_NAME, kwargs={"case": payload, "submitted_at": record.submitted_at,
                                                             "callback_url": callback_url},
                                   task_id=task_id, queue=self.args.queue_name)
            except Exception:
                self.forget(task_id)
                raise ServiceError.unavailable("The intake queue cannot be reached; retry.") from None
            queued.add(task_id)
        return [self.view(task_id) for task_id, _, _ in cases]

    def view(self, task_id: str) -> Optional[dict]:
        record = self._get_record(task_id)
        if record is None:
            return None
        raw = AsyncResult(task_id, app=self.app)
        state = raw.state
        result = raw.result if state == "SUCCESS" else None
        done = raw.date_done
        finished_at = done.timestamp() if done is not None and state in ("SUCCESS", "FAILURE") else None
        view = intake.task_view(record, state, result, finished_at)
        if isinstance(result, dict):
            view["attempts"] = result.get("attempts")
        else:
            view["attempts"] = self.args.max_retries + 1 if state == "FAILURE" else None
        return view

    def ping(self) -> None:
        self.queue_depth()

    def finished_view(self, task_id: str, outcome: dict) -> Optional[dict]:
        """The GET body of a task the consumer has just finished (before the queue stores its result)."""
        record = self._get_record(task_id)
        if record is None:
            return None
        view = intake.task_view(record, "SUCCESS", outcome, time.time())
        view["attempts"] = outcome.get("attempts")
        return view

    def queue_callback(self, url: str, view: dict) -> None:
        """The callback is a task of its own on the same queue: durable, and retried with backoff."""
        self.app.send_task(intake.CALLBACK_TASK_NAME, kwargs={"url": url, "task": view}, queue=self.args.queue_name)


def _listdir(folder) -> list[str]:
    import os

    try:
        return os.listdir(folder)
    except FileNotFoundError:
        return []


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

    def __init__(self, classifier: DeploymentHandle, router: DeploymentHandle, args: dict):
        self.args = AppArgs(**args)
        self.pipeline = CasePipeline(self.args, classifier, router)
        self.limits = contract.Limits.of(self.args)
        self.loop = _LoopThread()
        self.metrics = IntakeMetrics()
        broker = intake.resolve_broker(self.args.intake)
        self.store = IntakeStore(self.args.intake, broker)
        self.callback_secret = os.environ.get(callbacks.SECRET_ENV_VAR)
        self.http = httpx.Client(timeout=self.args.intake.callback_timeout_s, follow_redirects=False)
        if broker.embedded:
            # The filesystem result store has no expiry of its own: drop what is past its TTL at startup.
            producer_app(self.args.intake, broker).backend.cleanup()
            # Cases a consumer took and never acknowledged (it was killed, or stopped holding them).
            recovered = recover_inflight(broker.queue_dir)
            if recovered:
                logger.info("intake consumer put %d unacknowledged cases back on the queue", recovered)
        logger.info("intake consumer on %s", broker.describe())

    @task_handler(name=intake.TASK_NAME)
    def classify(self, case: dict, submitted_at: float, callback_url: Optional[str] = None) -> dict:
        try:
            outcome = self._classify(case, submitted_at)
        except intake.TransientFailure:
            if callback_url and (current_task.request.retries or 0) >= self.args.intake.max_retries:
                exhausted = {"outcome": "failed", "error": dict(intake.RETRIES_EXHAUSTED),
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

    @task_handler(name=intake.CALLBACK_TASK_NAME)
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
            raise intake.TransientFailure("callback_failed")
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
            failure = intake.failure_of(
                exc if isinstance(exc, (ServiceError, LabelHeadMismatchError)) else backend_error(exc)
            )
            if not failure.retryable:
                self.metrics.finished("failed")
                return {**intake.failed(failure.code, failure.message), "attempts": attempt}
            if attempt > self.args.intake.max_retries:
                self.metrics.finished("failed")
            else:
                self.metrics.retried(failure.code)
            logger.warning("intake task %s attempt %d failed: %s", request.id, attempt, failure.code)
            raise intake.TransientFailure(failure.code) from None
        self.metrics.finished("succeeded")
        return {**intake.succeeded(body.model_dump()), "attempts": attempt}

    def check_health(self) -> None:
        if not self.loop.thread.is_alive():
            raise RuntimeError("the consumer's event loop stopped")


def task_processor_config(args: IntakeArgs, broker: intake.BrokerSettings) -> TaskProcessorConfig:
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
                "autoretry_for": (intake.TransientFailure,),
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
    broker = intake.resolve_broker(args.intake)
    consumer_cls = task_consumer(task_processor_config=task_processor_config(args.intake, broker))(IntakeConsumer)
    return serve.deployment(
        consumer_cls,
        name="IntakeConsumer",
        num_replicas=1,
        # The Celery worker's thread count: the queue's bounded share of the classifier.
        max_ongoing_requests=args.intake.consumer_concurrency,
        ray_actor_options={"num_cpus": args.intake.consumer_num_cpus,
                           "resources": dict(args.intake.consumer_resources)},
        health_check_period_s=10,
        graceful_shutdown_timeout_s=30,
    )
