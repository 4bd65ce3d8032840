"""The producer side of the durable intake: Celery settings and ``IntakeStore``, which the ingress uses.

``IntakeStore`` writes the task's record (id, call id, times: never the narrative), puts the case on
the queue before the caller gets its 202, reads a task's state, and refuses a submit with 503 when
the queue is full. Ray-free: it needs only Celery (and redis-py for a Redis broker).
"""

from __future__ import annotations

import logging
import os
import time
from typing import Optional

from celery import Celery
from celery.result import AsyncResult

from deployments.core import tasks
from deployments.core.config import IntakeArgs
from deployments.core.errors import ServiceError
from deployments.intake import fs_transport  # noqa: F401  (registers the embedded broker's chsfs:// transport)

logger = logging.getLogger("ray.serve")

# Celery settings shared by the producer and the consumer. Results hold no narrative and
# expire after result_ttl_s; JSON only, so no pickled payload is ever accepted.
def celery_settings(args: IntakeArgs, broker: tasks.BrokerSettings) -> dict:
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


def broker_transport_options(broker: tasks.BrokerSettings) -> dict:
    options = dict(broker.transport_options)
    if broker.embedded:
        # The worker's remote-control mailbox (used to stop it) lives beside the queue.
        control = broker.queue_dir.parent / "control"
        control.mkdir(parents=True, exist_ok=True)
        options["control_folder"] = str(control)
    return options


def producer_app(args: IntakeArgs, broker: tasks.BrokerSettings) -> Celery:
    app = Celery("chs-intake", broker=broker.broker_url, backend=broker.backend_url)
    app.conf.update(celery_settings(args, broker), broker_transport_options=broker_transport_options(broker))
    return app


class IntakeStore:
    """The ingress's side of the queue: submit, read, refuse when full. Blocking: call it in a thread."""

    def __init__(self, args: IntakeArgs, broker: tasks.BrokerSettings):
        self.args = args
        self.broker = broker
        self.app = producer_app(args, broker)
        self._redis = None
        if not broker.embedded:
            import redis

            self._redis = redis.Redis.from_url(broker.broker_url)

    # -- records ------------------------------------------------------------------------------

    def _get_record(self, task_id: str) -> Optional[tasks.TaskRecord]:
        raw = self.app.backend.get(tasks.record_key(task_id).encode())
        if raw is None:
            return None
        record = tasks.TaskRecord.loads(raw)
        if record.expired():
            self.forget(task_id)
            return None
        return record

    def forget(self, task_id: str) -> None:
        for key in (tasks.record_key(task_id), self.app.backend.get_key_for_task(task_id)):
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
            record = tasks.TaskRecord.new(task_id, call_id, self.args.result_ttl_s)
            self.app.backend.set(tasks.record_key(task_id).encode(), record.dumps())
            try:
                self.app.send_task(tasks.TASK_NAME, kwargs={"case": payload, "submitted_at": record.submitted_at,
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
        view = tasks.task_view(record, state, result, finished_at)
        if isinstance(result, dict):
            view["attempts"] = result.get("attempts")
        else:
            view["attempts"] = self.args.max_retries + 1 if state == "FAILURE" else None
        return view

    def queue_notification(self, url: str, envelope: dict) -> None:
        """A live call's notification, a task of its own on the same queue: durable, retried with backoff."""
        self.app.send_task(tasks.NOTIFY_TASK_NAME, kwargs={"url": url, "envelope": envelope},
                           queue=self.args.queue_name)

    def ping(self) -> None:
        self.queue_depth()

    def finished_view(self, task_id: str, outcome: dict) -> Optional[dict]:
        """The GET body of a task the consumer has just finished (before the queue stores its result)."""
        record = self._get_record(task_id)
        if record is None:
            return None
        view = tasks.task_view(record, "SUCCESS", outcome, time.time())
        view["attempts"] = outcome.get("attempts")
        return view

    def queue_callback(self, url: str, view: dict) -> None:
        """The callback is a task of its own on the same queue: durable, and retried with backoff."""
        self.app.send_task(tasks.CALLBACK_TASK_NAME, kwargs={"url": url, "task": view}, queue=self.args.queue_name)


def _listdir(folder) -> list[str]:

    try:
        return os.listdir(folder)
    except FileNotFoundError:
        return []
