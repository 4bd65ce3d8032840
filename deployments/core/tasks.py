"""The asynchronous intake's logic, free of Ray, Celery and HTTP.

* Where the queue lives (``resolve_broker``): Redis from the config or
  ``CHS_BROKER_URL``, else the embedded filesystem broker under ``var/intake``.
* Which task a submission is (``task_id_for``): an ``Idempotency-Key``, or a
  ``call_id`` with its narrative, always names the same task; the id is a hash,
  so no narrative reaches a broker key.
* What a task is (``TaskRecord``: id, call id, times; never the narrative) and
  how the queue's raw state reads to a caller (``task_view``: ``queued``,
  ``processing``, ``succeeded``, ``failed``).
* What a failure means (``failure_of``): a transient one (a replica went away,
  overload, a timeout) is retried with backoff a bounded number of times; one
  that retrying cannot fix (bad input, a label mismatch) ends the task ``failed``.

OpenCHS's shapes of a task are ``deployments/core/openchs.py``'s.
"""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal, Mapping, Optional

from pydantic import BaseModel, ConfigDict

from deployments.core import config
from deployments.core.config import IntakeArgs
from deployments.core.errors import LabelHeadMismatchError, ModelVersionMismatchError, ServiceError

BROKER_ENV_VAR = config.BROKER_ENV_VAR
TASK_NAME = "chs.classify"
CALLBACK_TASK_NAME = "chs.callback"
NOTIFY_TASK_NAME = "chs.notify"  # a live call's notification to the helpline (deployments/core/notifications.py)
RECORD_PREFIX = "chs-intake-task-"
# A namespace of our own, so task ids from keys never collide with random ones.
TASK_ID_NAMESPACE = uuid.UUID("6f1c2d1e-3a54-4d0b-9a63-5c1f0e2b7a41")

Status = Literal["queued", "processing", "succeeded", "failed"]


# -- where the queue lives ----------------------------------------------------------------------


@dataclass(frozen=True)
class BrokerSettings:
    broker_url: str
    backend_url: str
    transport_options: dict = field(default_factory=dict)
    embedded: bool = False
    queue_dir: Optional[Path] = None
    results_dir: Optional[Path] = None

    def describe(self) -> str:
        """For logs: the kind and place, never a password."""
        if self.embedded:
            return f"embedded filesystem broker at {self.queue_dir}"
        scheme, _, rest = self.broker_url.partition("://")
        return f"{scheme} at {rest.rpartition('@')[2]}"


def resolve_broker(args: IntakeArgs, env: Mapping[str, str] | None = None, cwd: Path | None = None) -> BrokerSettings:
    """The config's broker_url, else ``CHS_BROKER_URL``, else the embedded broker under ``args.data_dir``."""
    env = os.environ if env is None else env
    url = args.broker_url or env.get(BROKER_ENV_VAR) or None
    if url:
        if not url.startswith(("redis://", "rediss://")):
            raise ValueError(f"{BROKER_ENV_VAR} / intake.broker_url must be a redis:// or rediss:// URL")
        return BrokerSettings(
            broker_url=url, backend_url=url,
            # Acknowledged only after success; a case its consumer took and never acknowledged
            # is delivered again after the visibility timeout (Redis's default would be an hour).
            transport_options={"visibility_timeout": args.visibility_timeout_s},
        )
    root = Path(args.data_dir)
    if not root.is_absolute():
        root = (cwd or Path.cwd()) / root
    queue_dir, results_dir = root / "queue", root / "results"
    for folder in (queue_dir, results_dir):
        folder.mkdir(parents=True, exist_ok=True)
    return BrokerSettings(
        broker_url="chsfs://", backend_url=f"file://{results_dir}",
        transport_options={"data_folder_in": str(queue_dir), "data_folder_out": str(queue_dir)},
        embedded=True, queue_dir=queue_dir, results_dir=results_dir,
    )


# -- which task a submission is -----------------------------------------------------------------


def task_id_for(idempotency_key: Optional[str], call_id: Optional[str], narrative: str) -> str:
    """The same key, or the same call id with the same narrative, gives the same task id; else a fresh one."""
    if idempotency_key:
        material = "key\0" + idempotency_key
    elif call_id:
        material = "call\0" + call_id + "\0" + hashlib.sha256(narrative.encode("utf-8")).hexdigest()
    else:
        return str(uuid.uuid4())
    return str(uuid.uuid5(TASK_ID_NAMESPACE, hashlib.sha256(material.encode("utf-8")).hexdigest()))


def is_task_id(value: str) -> bool:
    """Task ids are UUIDs: anything else is no task (and never reaches a broker key or a file name)."""
    try:
        return str(uuid.UUID(value)) == value
    except (ValueError, TypeError):
        return False


def record_key(task_id: str) -> str:
    return RECORD_PREFIX + task_id


class TaskRecord(BaseModel):
    """What the service keeps about a task besides the queue's own state: never the narrative."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    task_id: str
    call_id: Optional[str] = None
    submitted_at: float
    expires_at: float

    @classmethod
    def new(cls, task_id: str, call_id: Optional[str], ttl_s: float, now: float | None = None) -> "TaskRecord":
        now = time.time() if now is None else now
        return cls(task_id=task_id, call_id=call_id, submitted_at=now, expires_at=now + ttl_s)

    def expired(self, now: float | None = None) -> bool:
        return (time.time() if now is None else now) >= self.expires_at

    def dumps(self) -> str:
        return self.model_dump_json()

    @classmethod
    def loads(cls, raw: str | bytes) -> "TaskRecord":
        return cls.model_validate_json(raw)


def iso(ts: Optional[float]) -> Optional[str]:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat().replace("+00:00", "Z")


# -- what the consumer returns, and what a failure means ----------------------------------------


def succeeded(body: dict) -> dict:
    """The consumer's return value for a classified case: the /classify body."""
    return {"outcome": "succeeded", "result": body}


def failed(code: str, message: str) -> dict:
    """The consumer's return value for a case that retrying cannot fix."""
    return {"outcome": "failed", "error": {"code": code, "message": message}}


class TransientFailure(Exception):
    """Raised by the consumer so the queue retries the case with backoff. Its text names no input."""

    def __init__(self, code: str):
        super().__init__(code)
        self.code = code


@dataclass(frozen=True)
class Failure:
    retryable: bool
    code: str
    message: str


# 4xx: the input itself (retrying cannot fix it). 429/503/504 and a bare 500: the service, for now.
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})


def failure_of(exc: BaseException) -> Failure:
    """Whether a failure of one case is worth retrying, with the code and message its task ends with."""
    if isinstance(exc, LabelHeadMismatchError):
        return Failure(False, "label_mismatch", "The model's label files and its heads disagree.")
    if isinstance(exc, ModelVersionMismatchError):
        return Failure(True, "unavailable", "The model is being updated.")
    if isinstance(exc, ServiceError):
        return Failure(exc.status in RETRYABLE_STATUSES, exc.code, exc.message)
    return Failure(True, "backend_error", "The classifier failed on this case.")


RETRIES_EXHAUSTED = {"code": "retries_exhausted",
                     "message": "The case failed on every attempt of its bounded retries; submit it again later."}


# -- how the queue's state reads to a caller -----------------------------------------------------

# Celery's states: PENDING (in the queue), STARTED (a consumer took it), RETRY (waiting for its
# next attempt), SUCCESS (the consumer returned), FAILURE (retries exhausted).
_RAW_TO_STATUS: dict[str, Status] = {"PENDING": "queued", "RECEIVED": "queued", "RETRY": "queued",
                                     "STARTED": "processing"}


def task_view(record: TaskRecord, raw_state: str, raw_result: Any, finished_at: Optional[float]) -> dict:
    """The GET /tasks/{id} body from our record and the queue's state."""
    status: Status
    result = error = None
    extra = {}
    if raw_state == "SUCCESS" and isinstance(raw_result, dict) and raw_result.get("outcome") == "succeeded":
        status, result = "succeeded", raw_result["result"]
        if raw_result.get("window_sentences") is not None:  # an OpenCHS task's (openchs.chunk_predictions)
            extra["window_sentences"] = raw_result["window_sentences"]
    elif raw_state == "SUCCESS" and isinstance(raw_result, dict) and raw_result.get("outcome") == "failed":
        status, error = "failed", dict(raw_result["error"])
    elif raw_state in ("FAILURE", "REVOKED", "SUCCESS"):
        status, error = "failed", dict(RETRIES_EXHAUSTED)
    else:
        status, finished_at = _RAW_TO_STATUS.get(raw_state, "queued"), None
    return {"task_id": record.task_id, "call_id": record.call_id, "status": status, "result": result,
            "error": error, "submitted_at": iso(record.submitted_at), "finished_at": iso(finished_at), **extra}
