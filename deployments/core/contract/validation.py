"""What a request must be: the limits, the annotated field types, the model bases, and the mapping
from a failed validation (or an undecodable body) to the service's one ``ServiceError``."""

from __future__ import annotations

import json
import numbers
from dataclasses import dataclass
from typing import Annotated, Any, Optional, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    Strict,
    StrictBool,
    ValidationError,
    ValidationInfo,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import PydanticCustomError, core_schema

from deployments.core.config import AppArgs
from deployments.core.errors import ServiceError

JSON_MEDIA_TYPES = ("application/json",)

# -- limits that come from the live config ----------------------------------------------------

# The schema keyword under which a field names the config value that fills a schema keyword;
# build_openapi replaces it with the value (e.g. maxLength: max_narrative_chars).
CONFIG_KEY = "x-from-config"


@dataclass(frozen=True)
class FromConfig:
    """Annotation: schema keyword ``keyword`` takes the value of config setting ``setting``."""

    keyword: str
    setting: str

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = handler(schema)
        json_schema.setdefault(CONFIG_KEY, {})[self.keyword] = self.setting
        return json_schema


@dataclass(frozen=True)
class Limits:
    """The request limits validation enforces; passed as the validation context."""

    max_narrative_chars: int = AppArgs.model_fields["max_narrative_chars"].default
    max_batch_narratives: int = AppArgs.model_fields["max_batch_narratives"].default
    callback_allow_hosts: tuple[str, ...] = ()
    callback_secret: Optional[str] = None

    @classmethod
    def of(cls, args: AppArgs, callback_secret: Optional[str] = None) -> "Limits":
        return cls(max_narrative_chars=args.max_narrative_chars, max_batch_narratives=args.max_batch_narratives,
                   callback_allow_hosts=tuple(args.intake.callback_allow_hosts), callback_secret=callback_secret)


def _limits(info: ValidationInfo) -> Limits:
    context = info.context or {}
    return context.get("limits") or Limits()


# -- field types ------------------------------------------------------------------------------


def _check_narrative(value: str, info: ValidationInfo) -> str:
    limit = _limits(info).max_narrative_chars
    if len(value) > limit:
        raise PydanticCustomError(
            "narrative_too_long",
            "has {chars} characters; the limit is {limit}. Split the narrative or raise max_narrative_chars.",
            {"chars": len(value), "limit": limit},
        )
    if "\x00" in value:
        raise PydanticCustomError("narrative_nul", "contains a NUL character.")
    if not value.strip():
        raise PydanticCustomError("narrative_blank", "is empty.")
    return value


def _check_count(value: Any, info: ValidationInfo) -> Any:
    # Before the items are validated: a 10,000-item batch is refused for its size alone.
    limit = _limits(info).max_batch_narratives
    if isinstance(value, list) and len(value) > limit:
        raise PydanticCustomError(
            "too_many_narratives", "has {items} items; the limit is {limit} a request.",
            {"items": len(value), "limit": limit},
        )
    return value


Narrative = Annotated[
    str, Strict(), Field(min_length=1), AfterValidator(_check_narrative),
    FromConfig("maxLength", "max_narrative_chars"),
]
IncludeConfidence = Annotated[
    StrictBool, Field(default=True, description="Each task as {label, confidence}; false: the bare label."),
]
IncludeChunks = Annotated[
    StrictBool, Field(default=False, description="Add each model window's labels and token span."),
]


def _no_nul(value: str) -> str:
    # PostgreSQL refuses NUL in text: refused here with a 422, never a 500 from the store.
    if "\x00" in value:
        raise PydanticCustomError("text_nul", "contains a NUL character.")
    return value


NoNul = AfterValidator(_no_nul)
# Every call id a request carries: stored with the case (and the OpenCHS feedback), so never a NUL.
CallId = Annotated[str, Strict(), Field(min_length=1, max_length=128), NoNul]
# /classify's call id, described in the served document (the task and OpenCHS routes' carry no description).
DescribedCallId = Annotated[CallId, Field(description="The case-management system's call id, for GET /cases/{id}.")]
CaseRef = Annotated[str, Field(min_length=1, max_length=128, description="A case id, call id, task id or request id."),
                    NoNul]
FreeText = Annotated[str, Strict(), Field(max_length=2000), NoNul]
QueryText = Annotated[str, Field(min_length=1, max_length=700), NoNul]
Rating = Annotated[int, Strict(), Field(ge=1, le=5, description="1 (poor) to 5 (excellent).")]


def _six_places(value: Any) -> Any:
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return round(float(value), 6)
    return value


# Rounded before the bounds are checked, so a float32 sum a hair over 1 reads 1.0.
Confidence = Annotated[float, Field(ge=0, le=1), BeforeValidator(_six_places)]
Timestamp = Annotated[str, Field(description="ISO 8601, UTC.")]


# -- model bases ------------------------------------------------------------------------------


class _Request(BaseModel):
    # Unknown fields are ignored, so clients of the model card's FastAPI example keep working.
    # Fields are validated in the order declared and the first error is the one reported:
    # the narrative(s) before the flags.
    model_config = ConfigDict(extra="ignore", frozen=True, json_schema_extra={"additionalProperties": True})


class _Body(BaseModel):
    # Response bodies (and objects inside a request, such as its corrections): no field but those declared.
    model_config = ConfigDict(extra="forbid", frozen=True)


# -- request decoding and validation ------------------------------------------------------------


def check_content_type(content_type: str | None) -> None:
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media not in JSON_MEDIA_TYPES and not media.endswith("+json"):
        raise ServiceError.unsupported_media_type("Send the body as JSON with 'Content-Type: application/json'.")


def decode_json(body: bytes) -> Any:
    if not body:
        raise ServiceError.bad_request("The request body is empty; send a JSON object.", code="empty_body")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise ServiceError.bad_request("The request body is not valid UTF-8.", code="invalid_encoding") from None
    try:
        return json.loads(text)
    except RecursionError:
        raise ServiceError.bad_request("The JSON is nested too deeply.", code="invalid_json") from None
    except ValueError as exc:
        msg = getattr(exc, "msg", "malformed JSON")
        raise ServiceError.bad_request(f"The body is not valid JSON ({msg}).", code="invalid_json") from None


# Pydantic error type → (status, code, text after the field's name). The custom errors the field
# types above raise carry their own text. The first error (validation order: the fields as declared) is reported.
REFUSALS: dict[str, tuple[int, str, str | None]] = {
    "missing": (422, "missing_field", "is required."),
    "model_type": (422, "invalid_request", "must be a JSON object."),
    "model_attributes_type": (422, "invalid_request", "must be a JSON object."),
    "string_type": (422, "invalid_request", "must be a string."),
    "list_type": (422, "invalid_request", "must be a list of strings."),
    "bool_type": (422, "invalid_request", "must be true or false."),
    "string_too_short": (400, "empty_narrative", "is empty."),
    "too_short": (400, "empty_narrative", "is empty."),
    "narrative_blank": (400, "empty_narrative", None),
    "narrative_nul": (422, "invalid_request", None),
    "narrative_too_long": (413, "payload_too_large", None),
    "too_many_narratives": (413, "payload_too_large", None),
    "callback_not_allowed": (422, "callback_not_allowed", None),
    "call_ids_length": (422, "invalid_request", None),
    "string_too_long": (422, "invalid_request", "is too long (at most 128 characters)."),
    "text_nul": (422, "invalid_request", None),
}


def _where(loc: tuple) -> str:
    if not loc:
        return "The body"
    name, *index = loc
    return "'" + str(name) + "".join(f"[{i}]" for i in index) + "'"


def service_error(exc: ValidationError) -> ServiceError:
    """The one mapping from a failed validation to the service's error (never the input in the text)."""
    first = exc.errors(include_url=False, include_input=False)[0]
    status, code, text = REFUSALS.get(first["type"], (422, "invalid_request", None))
    if code == "empty_narrative" and first["loc"][:1] not in (("narrative",), ("narratives",)):
        status, code, text = 422, "invalid_request", "is empty."  # an id or other text, not a narrative
    message = f"{_where(first['loc'])} {text or first['msg']}"
    return ServiceError(status, code, message if message.endswith(".") else message + ".")


R = TypeVar("R", bound=BaseModel)


def parse_request(model: type[R], payload: Any, limits: Limits) -> R:
    """Validate a decoded JSON payload against a request model, or raise ``ServiceError``."""
    try:
        return model.model_validate(payload, context={"limits": limits})
    except ValidationError as exc:
        raise service_error(exc) from None
