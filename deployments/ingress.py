"""The ingress's HTTP plumbing, on Starlette, free of Ray.

``HttpIngress`` dispatches a request to its handler through the route table
built from ``contract.OPERATIONS``: path and method (404/405), API key (401),
then, for a route that takes a body, the content type (415), the body read
with its size limit (413, refused before it is read whole), JSON decoding
(400) and the contract's validation (400/413/422). The handler gets the
validated request model and returns a contract response model.

Each call of an audited operation (its permission is in ``deployments/core/audit.py``'s
``AUDITED_PERMISSIONS``) is handed to the ``audit`` sink as one row before it is answered, refusals
included; a call whose row cannot be handed over is answered 503 instead.

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
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable, Mapping

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from deployments.core import contract
from deployments.core.audit import audit_row, audited, case_ids_in, subject_of
from deployments.core.auth import ANONYMOUS, ApiKeys, Principal
from deployments.core.errors import ServiceError
from deployments.core.pages import Page

logger = logging.getLogger("ray.serve")

# A handler takes the validated request model (routes with a body), then the validated
# parameters (routes with path or query parameters), and returns a contract model (or, for
# /openapi.json, the document as a dict).
Handler = Callable[..., Awaitable[Any]]
# Takes the audit rows of a call (deployments/core/audit.py) into the trail; raises if it cannot.
AuditSink = Callable[[list[dict]], Awaitable[None]]

# The request id of the request being handled, for handlers that record it.
_REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")


def current_request_id() -> str:
    """The id of the request this task is handling ('' outside one)."""
    return _REQUEST_ID.get()


# Who sent the request being handled (ANONYMOUS when no keys are configured), for handlers that act as it.
_PRINCIPAL: contextvars.ContextVar[Principal] = contextvars.ContextVar("principal", default=ANONYMOUS)


def current_principal() -> Principal:
    """The key's name and role behind the request this task is handling."""
    return _PRINCIPAL.get()


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


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class _Call:
    """What the audit row of a call needs, gathered while it is handled."""

    def __init__(self) -> None:
        self.op: contract.Operation | None = None
        self.principal: Principal | None = None
        self.subject: str | None = None
        self.answer: Any = None
        self.error_code: str | None = None  # the ServiceError's code, whichever body style words it
        # An unknown route and a refused key (401/403: keys are this service's, OpenCHS's has none) are
        # answered in our body; past them, in the body the route declares (contract.ERROR_BODIES).
        self.error_body = "service"




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
                 limits: contract.Limits, request_id_of: Callable[[Request], str] = header_request_id,
                 audit: AuditSink | None = None, clock: Callable[[], datetime] = utcnow):
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
        # Every call of an operation whose permission is audited (deployments/core/audit.py) leaves a
        # row here, answered or refused; None: no trail (unit tests of other things).
        self.audit = audit
        self.clock = clock

    async def __call__(self, request: Request) -> Response:
        rid = self.request_id_of(request)
        _REQUEST_ID.set(rid)
        call, arrived = _Call(), self.clock()
        try:
            response = await self._handle(request, call)
        except ServiceError as err:
            call.error_code = err.code
            response = error_response(err, rid, call.error_body)
        except Exception as exc:  # never a trace in the body, never the narrative in the log
            logger.error("request %s failed: %s", rid, type(exc).__name__)
            err = ServiceError.backend()
            call.error_code = err.code
            response = error_response(err, rid, call.error_body)
        if self.audit is not None and call.op is not None and audited(call.op.permission):
            failed = response.status_code >= 400
            row = audit_row(route=f"{call.op.method} {call.op.path}", permission=call.op.permission,
                            principal=call.principal, status=response.status_code,
                            error_code=call.error_code if failed else None,
                            case_ids=[] if failed else case_ids_in(call.answer),
                            subject=call.subject, request_id=rid, at=arrived)
            try:
                await self.audit([row])
            except Exception as exc:  # nothing an audited route answers leaves without its row
                logger.error("request %s: its audit row was not recorded (%s)", rid, type(exc).__name__)
                return error_response(ServiceError.unavailable("The audit trail could not record this call; "
                                                               "retry."), rid, call.error_body)
        return response

    async def _handle(self, request: Request, call: _Call) -> Response:
        op, handler, path_params = self._route(request)
        call.op, call.subject = op, subject_of(path_params)  # a refused call names what it asked for too
        _PRINCIPAL.set(ANONYMOUS)
        if not op.public:
            authorization = request.headers.get("authorization")
            try:
                call.principal = self.api_keys.authorize(authorization, op.permission)
            except ServiceError:
                if audited(op.permission):  # a refused call is recorded with the key's name, if it has one
                    call.principal = self.api_keys.authenticate(authorization)
                raise
            _PRINCIPAL.set(call.principal)
        call.error_body = op.error_body
        inputs, keywords = [], {}
        # The path and query first (a bad call id is refused before its body is read); the handler
        # takes the body first.
        params = None
        if op.params is not None:
            payload = {**dict(request.query_params), **path_params}
            params = contract.parse_request(op.params, payload, self.limits)
        else:
            keywords.update(path_params)
        if op.request is not None:
            inputs.append(await self._parse(request, op.request))
            call.subject = call.subject or subject_of({}, inputs[-1])
        if params is not None:
            inputs.append(params)
        for header in op.headers:
            value = request.headers.get(header)
            if value is not None and not 0 < len(value) <= 256:
                raise ServiceError.invalid(f"The {header} header must have 1 to 256 characters.")
            keywords[header.replace("-", "_")] = value
        result = await handler(*inputs, **keywords)
        if isinstance(result, Response):  # a stream (GET /calls/{call_id}/events) renders itself
            return result
        if isinstance(result, Page):
            return Response(result.body, media_type=result.media_type, status_code=op.status)
        call.answer = result.model_dump() if isinstance(result, BaseModel) else result
        return JSONResponse(call.answer, status_code=op.status)

    def _route(self, request: Request) -> tuple[contract.Operation, Handler, dict[str, str]]:
        # The path as the server decoded it: ``request.url`` goes through urlsplit, which drops tabs and
        # newlines, so an over-long id with one in it would pass the length check a byte short.
        path = request.scope.get("path", request.url.path).rstrip("/") or "/"
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


