"""The service's one error type.

Every failure a caller can see is a ``ServiceError``. The ingress
(``deployments/ingress.py``) is the only place that turns it into an HTTP
response, the contract's ``Error`` body (``{"success": false, "error":
{"code", "message", "request_id"}}``), so status codes and bodies cannot
drift apart.

A ``ServiceError`` raised in one replica reaches the caller in another as
itself: it pickles by its fields (an Exception pickles by ``args``, which
here is the formatted message alone), so Ray carries it across the hop and
``deployments/ray_errors.py`` hands it on unchanged, as LitServe ships its
``HTTPException`` between processes.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ServiceError(Exception):
    status: int
    code: str
    message: str
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__(f"{self.status} {self.code}: {self.message}")

    def __reduce__(self):
        return ServiceError, (self.status, self.code, self.message, dict(self.headers))

    # Constructors named for the failure, so call sites read as policy.
    @classmethod
    def invalid(cls, message: str, code: str = "invalid_request") -> "ServiceError":
        return cls(422, code, message)

    @classmethod
    def bad_request(cls, message: str, code: str = "bad_request") -> "ServiceError":
        return cls(400, code, message)

    @classmethod
    def empty(cls, message: str) -> "ServiceError":
        return cls(400, "empty_narrative", message)

    @classmethod
    def too_large(cls, message: str) -> "ServiceError":
        return cls(413, "payload_too_large", message)

    @classmethod
    def unsupported_media_type(cls, message: str) -> "ServiceError":
        return cls(415, "unsupported_media_type", message)

    @classmethod
    def unauthorized(cls) -> "ServiceError":
        return cls(401, "unauthorized", "A valid API key is required: send 'Authorization: Bearer <key>'.",
                   {"WWW-Authenticate": "Bearer"})

    @classmethod
    def forbidden(cls, message: str) -> "ServiceError":
        """A valid key whose role lacks the operation's permission (``auth.ApiKeys.authorize`` words it)."""
        return cls(403, "forbidden", message)

    @classmethod
    def not_found(cls, path: str) -> "ServiceError":
        return cls(404, "not_found", f"No route {path}.")

    @classmethod
    def case_not_found(cls) -> "ServiceError":
        return cls(404, "case_not_found", "No case has this id.")

    @classmethod
    def ambiguous_case(cls) -> "ServiceError":
        return cls(409, "ambiguous_case", "This request id names several cases (a batch); use a case id or call id.")

    @classmethod
    def task_not_found(cls) -> "ServiceError":
        return cls(404, "task_not_found", "No such task: it never existed, or its result expired.")

    @classmethod
    def method_not_allowed(cls, method: str, allowed: list[str]) -> "ServiceError":
        return cls(405, "method_not_allowed", f"Method {method} is not allowed here; use {', '.join(allowed)}.",
                   {"Allow": ", ".join(allowed)})

    @classmethod
    def overloaded(cls, retry_after_s: int = 1, status: int = 503) -> "ServiceError":
        return cls(status, "overloaded", "The service is at capacity; retry after the delay in Retry-After.",
                   {"Retry-After": str(max(1, int(retry_after_s)))})

    @classmethod
    def unavailable(cls, message: str, retry_after_s: int = 5) -> "ServiceError":
        return cls(503, "unavailable", message, {"Retry-After": str(retry_after_s)})

    @classmethod
    def backend(cls, message: str = "The classifier failed on this request.") -> "ServiceError":
        return cls(500, "backend_error", message)

    @classmethod
    def timeout(cls) -> "ServiceError":
        return cls(504, "timeout", "The classifier did not answer in time.")


class ModelUnavailableError(RuntimeError):
    """The checkpoint cannot be had: startup must fail fast with this message."""


class LabelHeadMismatchError(ValueError):
    """A label file and its classifier head disagree in size."""


class ModelVersionMismatchError(RuntimeError):
    """One request's stages ran different model versions (mid rolling update): retryable, never an answer."""
