"""What a call to another deployment can raise, as the service's one error type.

``backend_error`` maps Ray's exceptions (backpressure, a dead replica, a timeout) and a
``ServiceError`` raised in another replica (Ray raises it wrapped: a ``RayTaskError`` whose
``cause`` is the ``ServiceError`` itself, which pickles by its fields) to a ``ServiceError``.
``serve_request_id`` reads the id Serve gave the request being handled. Both are injected into
the Ray-free HTTP plumbing (``deployments/ingress.py``) by the Preprocessor.
"""

from __future__ import annotations

import asyncio
import math
import uuid
from typing import Iterator

from ray import serve
from ray.exceptions import RayActorError, RayTaskError
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError, ReplicaUnavailableError
from starlette.requests import Request

from deployments.core.errors import ModelVersionMismatchError, ServiceError


def _causes(exc: BaseException | None) -> Iterator[BaseException]:
    """``exc`` and what it wraps: Serve raises a replica's death upstream as a plain
    RayServeException whose ``__cause__`` is the ActorDiedError."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        wrapped = exc.__cause__ or getattr(exc, "cause", None)  # RayTaskError.cause: the remote exception
        exc = wrapped if isinstance(wrapped, BaseException) else None


def backend_error(exc: BaseException) -> ServiceError:
    """Map what a downstream call can raise to the service's error type."""
    for cause in _causes(exc):
        if isinstance(cause, ServiceError):
            if not isinstance(cause, RayTaskError):
                return cause
            # Raised on purpose in another replica (a 404 from the case store, say): the caller's
            # answer. Ray's wrapper class is a ServiceError too; rebuilt from its fields, it renders plainly.
            return ServiceError(cause.status, cause.code, cause.message, dict(cause.headers))
        if isinstance(cause, BackPressureError):
            # The status and delay the full deployment's backpressure_config asks for.
            retry_after = cause.retry_after_s if cause.retry_after_s is not None else 1
            return ServiceError.overloaded(retry_after_s=math.ceil(retry_after), status=cause.status_code)
        if isinstance(cause, (asyncio.TimeoutError, TimeoutError)):
            return ServiceError.timeout()
        if isinstance(cause, (RayActorError, DeploymentUnavailableError, ReplicaUnavailableError)):
            return ServiceError.unavailable("A model replica went away; retry.", retry_after_s=1)
        if isinstance(cause, ModelVersionMismatchError):
            return ServiceError.unavailable("The model is being updated; retry.", retry_after_s=1)
    return ServiceError.backend()


def serve_request_id(request: Request) -> str:
    """The caller's X-Request-ID, else the one Serve made for this request, else a fresh one."""
    try:
        rid = serve.context._get_serve_request_context().request_id
    except Exception:
        rid = ""
    return request.headers.get("x-request-id") or rid or uuid.uuid4().hex
