"""The ingress's HTTP plumbing, on Starlette, free of Ray.

``HttpIngress`` dispatches a request to its handler through the route table
built from ``contract.OPERATIONS``: path and method (404/405), API key (401),
then, for a route that takes a body, the content type (415), the body read
with its size limit (413, refused before it is read whole), JSON decoding
(400) and the contract's validation (400/413/422). The handler gets the
validated request model and returns a contract response model.

``HttpIngress.__call__`` is the one place where a ``ServiceError``, or any
unexpected exception, becomes a JSON response: ``contract.Error`` with the
request id. Its Ray parts come in by injection: ``request_id_of`` (the
Preprocessor passes Serve's request id, ``deployments/ray_errors.py``), so
the whole of this module runs under Starlette's ``TestClient`` in unit tests.
"""

from __future__ import annotations

import contextvars
import logging
import re
import uuid
from typing import Any, Awaitable, Callable, Mapping

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from deployments.core import contract
from deployments.core.auth import ApiKeys
from deployments.core.errors import ServiceError
from deployments.core.pages import Page

logger = logging.getLogger("ray.serve")

# A handler takes the validated request model (routes with a body), then the validated
# parameters (routes with path or query parameters), and returns a contract model (or, for
# /openapi.json, the document as a dict).
Handler = Callable[..., Awaitable[Any]]

# The request id of the request being handled, for handlers that record it.
_REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")


def current_request_id() -> str:
    """The id of the request this task is handling ('' outside one)."""
    return _REQUEST_ID.get()


def header_request_id(request: Request) -> str:
    """The caller's X-Request-ID, else a fresh one (outside Serve, which makes its own)."""
    return request.headers.get("x-request-id") or uuid.uuid4().hex


def handlers_of(*providers: object) -> dict[str, Handler]:
    """Each operation's handler: the method named by its id, on the first provider that has one."""
    handlers = {}
    for op in contract.OPERATIONS:
        found = [getattr(p, op.id) for p in providers if callable(getattr(p, op.id, None))]
        if not found:
            raise ValueError(f"no handler for operation '{op.id}' ({op.method} {op.path})")
        handlers[op.id] = found[0]
    return handlers


async def read_body(request: Request, limit: int) -> bytes:
    """Read at most ``limit`` bytes: an over-long body is refused before it is read whole."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise ServiceError.bad_request("Content-Length is not a number.") from None
        if size > limit:
            raise ServiceError.too_large(f"The body is {size} bytes; the limit is {limit}.")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ServiceError.too_large(f"The body is over the limit of {limit} bytes.")
        chunks.append(chunk)
    return b"".join(chunks)


def error_response(err: ServiceError, rid: str, body: str = "service") -> JSONResponse:
    """``body``: the route's ``Operation.error_body`` (OpenCHS's routes word errors their way)."""
    if err.status >= 500:
        logger.warning("request %s answered %s %s", rid, err.status, err.code)
    # Ray's proxy already echoes the request id in the X-Request-ID header.
    return JSONResponse(contract.ERROR_BODIES[body].of(err, rid).model_dump(), status_code=err.status,
                        headers=err.headers)


class HttpIngress:
    """Route table, checks and rendering around the handlers of ``contract.OPERATIONS``."""

    def __init__(self, handlers: Mapping[str, Handler], *, api_keys: ApiKeys, max_body_bytes: int,
                 limits: contract.Limits, request_id_of: Callable[[Request], str] = header_request_id):
        ids = {op.id for op in contract.OPERATIONS}
        if set(handlers) != ids:
            raise ValueError(f"handlers {sorted(handlers)} do not match the contract's operations {sorted(ids)}")
        self.routes: dict[str, dict[str, tuple[contract.Operation, Handler]]] = {}
        # Paths with {name} segments: each segment matches one non-empty path segment.
        self.templates: list[tuple[re.Pattern, str]] = []
        for op in contract.OPERATIONS:
            self.routes.setdefault(op.path, {})[op.method] = (op, handlers[op.id])
            if op.path_names() and op.path not in {t for _, t in self.templates}:
                pattern = re.sub(r"\\{(\w+)\\}", r"(?P<\1>[^/]+)", re.escape(op.path))
                self.templates.append((re.compile(pattern + "$"), op.path))
        self.api_keys = api_keys
        self.max_body_bytes = max_body_bytes
        self.limits = limits
        self.request_id_of = request_id_of

    async def __call__(self, request: Request) -> Response:
        rid = self.request_id_of(request)
        _REQUEST_ID.set(rid)
        # An unknown route and a refused key (401/403: keys are this service's, OpenCHS's has none) are
        # answered in our body; past them, in the body the route declares (contract.ERROR_BODIES).
        body = "service"
        try:
            op, handler, path_params = self._route(request)
            if not op.public:
                self.api_keys.authorize(request.headers.get("authorization"), op.permission)
            body = op.error_body
            inputs, keywords = [], {}
            if op.request is not None:
                inputs.append(await self._parse(request, op.request))
            if op.params is not None:
                payload = {**dict(request.query_params), **path_params}
                inputs.append(contract.parse_request(op.params, payload, self.limits))
            else:
                keywords.update(path_params)
            for header in op.headers:
                value = request.headers.get(header)
                if value is not None and not 0 < len(value) <= 256:
                    raise ServiceError.invalid(f"The {header} header must have 1 to 256 characters.")
                keywords[header.replace("-", "_")] = value
            result = await handler(*inputs, **keywords)
            if isinstance(result, Page):
                return Response(result.body, media_type=result.media_type, status_code=op.status)
            return JSONResponse(result.model_dump() if isinstance(result, BaseModel) else result,
                                status_code=op.status)
        except ServiceError as err:
            return error_response(err, rid, body)
        except Exception as exc:  # never a trace in the body, never the narrative in the log
            logger.error("request %s failed: %s", rid, type(exc).__name__)
            return error_response(ServiceError.backend(), rid, body)

    def _route(self, request: Request) -> tuple[contract.Operation, Handler, dict[str, str]]:
        path = request.url.path.rstrip("/") or "/"
        methods, path_params = self.routes.get(path), {}
        if methods is None:
            for pattern, template in self.templates:
                matched = pattern.match(path)
                if matched:
                    methods, path_params = self.routes[template], matched.groupdict()
                    break
        if methods is None:
            raise ServiceError.not_found(request.url.path)
        found = methods.get(request.method)
        if found is None:
            raise ServiceError.method_not_allowed(request.method, list(methods))
        return (*found, path_params)

    async def _parse(self, request: Request, model: type[BaseModel]) -> BaseModel:
        contract.check_content_type(request.headers.get("content-type"))
        payload = contract.decode_json(await read_body(request, self.max_body_bytes))
        return contract.parse_request(model, payload, self.limits)
