"""The HTTP contract, declared once.

The pydantic models below are the request and response shapes of the API.
The same declarations

* validate requests (``parse_request``: a decoded JSON payload in, a model
  out, or the one ``ServiceError`` with today's status and code),
* render responses (the router and the ingress build these models and dump
  them, so no second hand-written shape exists), and
* produce the served ``/openapi.json`` (``build_openapi``), with the
  config-dependent limits filled in from ``AppArgs`` and the ``LabelSet``.

``OPERATIONS`` lists the routes: the ingress dispatches on it and the OpenAPI
paths are built from it. Pure: imports only pydantic and ``deployments.core``.
"""

from __future__ import annotations

import json
import numbers
import re
from datetime import date
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal, Mapping, Optional, TypeVar, Union

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
    model_validator,
    RootModel,
    StrictInt,
)
from pydantic.json_schema import JsonSchemaValue, models_json_schema
from pydantic_core import PydanticCustomError, core_schema

from deployments.core import callbacks
from deployments.core.config import AppArgs
from deployments.core.errors import ServiceError
from deployments.core.labels import LabelSet

OPENAPI_VERSION = "3.1.0"  # JSON Schema 2020-12, what pydantic writes
REF_TEMPLATE = "#/components/schemas/{model}"
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


# -- requests ---------------------------------------------------------------------------------


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


class _Request(BaseModel):
    # Unknown fields are ignored, so clients of the model card's FastAPI example keep working.
    # Fields are validated in the order declared and the first error is the one reported:
    # the narrative(s) before the flags.
    model_config = ConfigDict(extra="ignore", frozen=True, json_schema_extra={"additionalProperties": True})


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


class ClassifyRequest(_Request):
    is_batch: ClassVar[bool] = False

    narrative: Narrative
    include_confidence: IncludeConfidence
    include_chunks: IncludeChunks
    call_id: Optional[DescribedCallId] = None

    @property
    def narratives(self) -> list[str]:
        return [self.narrative]

    def call_id_list(self) -> list[Optional[str]]:
        return [self.call_id]


class BatchRequest(_Request):
    is_batch: ClassVar[bool] = True

    narratives: Annotated[
        list[Narrative], Strict(), BeforeValidator(_check_count), Field(min_length=1),
        FromConfig("maxItems", "max_batch_narratives"),
    ]
    include_confidence: IncludeConfidence
    include_chunks: IncludeChunks
    call_ids: Optional[Annotated[list[Optional[DescribedCallId]], Strict()]] = Field(
        None, description="One call id (or null) per narrative, in order.")

    @model_validator(mode="after")
    def _one_call_id_each(self) -> "BatchRequest":
        if self.call_ids is not None and len(self.call_ids) != len(self.narratives):
            raise PydanticCustomError("call_ids_length", "has {got} items in 'call_ids'; send one per narrative ({want}).",
                                      {"got": len(self.call_ids), "want": len(self.narratives)})
        return self

    def call_id_list(self) -> list[Optional[str]]:
        return list(self.call_ids) if self.call_ids is not None else [None] * len(self.narratives)


def _check_callback(value: Optional[str], info: ValidationInfo) -> Optional[str]:
    if value is not None:
        limits = _limits(info)
        why = callbacks.refusal(value, limits.callback_allow_hosts, limits.callback_secret)
        if why:
            raise PydanticCustomError("callback_not_allowed", why)
    return value


CallbackUrl = Annotated[
    Optional[Annotated[str, Strict(), NoNul]], AfterValidator(_check_callback),
    Field(default=None, description="Where the finished task (the GET /tasks/{id} body) is POSTed, signed "
                                    "with X-Helpline-Signature: sha256=<HMAC>. Only hosts on the allow-list."),
]


class TaskClassifyRequest(ClassifyRequest):
    """POST /tasks/classify: the /classify body, plus the caller's own id for the case."""

    call_id: Optional[CallId] = None  # as /classify's; the served document gives it no description
    callback_url: CallbackUrl


class TaskBatchRequest(BatchRequest):
    """POST /tasks/classify/batch: one task per narrative; call_ids, when given, one per narrative."""

    # Unlike /classify/batch's, no call id may be null; BatchRequest's validator checks there is one each.
    call_ids: Optional[Annotated[list[CallId], Strict()]] = None
    callback_url: CallbackUrl


class OpenchsClassifyRequest(_Request):
    """OpenCHS ai-service's ClassifierRequest."""

    narrative: Narrative


# -- responses --------------------------------------------------------------------------------


def _six_places(value: Any) -> Any:
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return round(float(value), 6)
    return value


def _absent_not_null(schema: dict) -> None:
    """Schema of an ``_omitted`` field: its type alone; the key is left out rather than null."""
    schema.pop("default", None)
    variants = [v for v in schema.pop("anyOf", []) if v != {"type": "null"}]
    if len(variants) == 1:
        schema.update(variants[0])
    elif variants:
        schema["anyOf"] = variants


def _omitted() -> Any:
    """A field left out of the response (not ``null``) when it has no value."""
    return Field(default=None, exclude_if=lambda v: v is None, json_schema_extra=_absent_not_null)


# Rounded before the bounds are checked, so a float32 sum a hair over 1 reads 1.0.
Confidence = Annotated[float, Field(ge=0, le=1), BeforeValidator(_six_places)]
PriorityLabel = Annotated[int, FromConfig("enum", "priority_labels")]
BARE = "With include_confidence (the default) an object; otherwise the bare label."
SUB_PARENT = (" 'parent' is the main category this sub category belongs to in the checkpoint's taxonomy"
              " (sub_to_main.json); absent when the checkpoint ships none.")


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Prediction(_Body):
    label: str
    confidence: Confidence


class SubCategoryPrediction(Prediction):
    parent: Optional[str] = _omitted()


class PriorityPrediction(_Body):
    label: PriorityLabel
    confidence: Confidence


class Classification(_Body):
    main_category: Union[Prediction, str] = Field(description=BARE)
    sub_category: Union[SubCategoryPrediction, str] = Field(description=BARE + SUB_PARENT)
    sub_category_2: Union[SubCategoryPrediction, str] = Field(
        description="The runner-up sub category. " + BARE + SUB_PARENT)
    intervention: Union[Prediction, str] = Field(description=BARE)
    priority: Union[PriorityPrediction, PriorityLabel] = Field(description=BARE)


class Routing(_Body):
    queue: str
    escalate: bool
    human_review: bool
    reasons: list[str]


class ChunkDetail(_Body):
    index: int = Field(ge=0)
    token_span: list[int] = Field(min_length=2, max_length=2, description="[start, end) of the window's tokens.")
    classification: Classification


class CaseResult(_Body):
    classification: Classification
    routing: Routing
    chunks: int = Field(ge=1, description="Model windows the narrative was read in.")
    truncated: bool = Field(description="True only when long_narratives is 'truncate' and text was cut.")
    tokens: int = Field(ge=0)
    chunk_details: Optional[list[ChunkDetail]] = _omitted()


class ModelRef(_Body):
    id: str
    revision: Optional[str]


class _Succeeded(_Body):
    success: Literal[True]


ProcessingTime = Annotated[float, Field(ge=0)]


# _Succeeded last among the bases puts 'success' first in the body, as the model card's example has it.
CaseId = Annotated[str, Field(description="The id of this case's record: send feedback for it, GET /cases/{id}.")]


class ClassifiedCase(CaseResult):
    case_id: CaseId


class ClassifyResponse(ClassifiedCase, _Succeeded):
    model: ModelRef
    processing_time_seconds: ProcessingTime


class BatchResponse(_Succeeded):
    results: list[ClassifiedCase]
    model: ModelRef
    processing_time_seconds: ProcessingTime


class Health(_Body):
    status: Literal["healthy"]
    model: str = Field(description="The model served, as the model card's health answer names it.")
    deployments: dict[str, Literal["ready"]]


TaskStatusName = Literal["queued", "processing", "succeeded", "failed"]


class TaskAccepted(_Body):
    success: Literal[True]
    task_id: str
    status: TaskStatusName = Field(description="'queued' for a new task; a repeated submission gets its task as it is.")
    status_url: str


class TaskRef(_Body):
    task_id: str
    status: TaskStatusName
    status_url: str


class TaskBatchAccepted(_Body):
    success: Literal[True]
    tasks: list[TaskRef] = Field(description="One task per narrative, in the same order.")


class TaskError(_Body):
    code: str
    message: str


class TaskStatus(_Body):
    task_id: str
    call_id: Optional[str]
    status: TaskStatusName
    result: Optional[ClassifyResponse] = Field(description="Exactly the /classify response body, once succeeded.")
    error: Optional[TaskError]
    submitted_at: str = Field(description="ISO 8601, UTC.")
    finished_at: Optional[str] = Field(description="ISO 8601, UTC.")
    attempts: Optional[int] = Field(default=None, description="Attempts the consumer made, once finished.")


# OpenCHS ai-service (openchlai/ai, ai_service/app/api/classifier_route.py): their models, their field names.


class OpenchsConfidenceScores(_Body):
    main_category: Optional[float] = None
    sub_category: Optional[float] = None
    sub_category_2: Optional[float] = None
    intervention: Optional[float] = None
    priority: Optional[float] = None


class OpenchsClassifierResponse(_Body):
    main_category: str
    sub_category: str
    sub_category_2: Optional[str] = None
    intervention: str
    priority: str
    confidence_scores: OpenchsConfidenceScores
    chunks_processed: int
    chunk_predictions: Optional[list[dict[str, Any]]] = None
    processing_time: float
    model_info: dict[str, Any]
    timestamp: str


class OpenchsTaskResponse(_Body):
    task_id: str
    status: Literal["queued"]
    message: str
    estimated_time: str
    status_endpoint: str


class OpenchsTaskStatusResponse(_Body):
    task_id: str
    status: Literal["pending", "processing", "success", "failed"]
    result: Optional[OpenchsClassifierResponse] = None
    error: Optional[str] = None
    progress: Optional[dict[str, Any]] = None


class ModelInfo(_Body):
    id: str
    revision: Optional[str]
    untrained: bool
    note: Optional[str] = _omitted()
    evaluation: Optional[dict[str, Any]] = _omitted()


class Labels(_Body):
    main_category: list[str]
    sub_category: list[str]
    intervention: list[str]
    priority: list[int]


class InfoLimits(_Body):
    max_narrative_chars: int
    max_body_bytes: int
    max_batch_narratives: int
    max_batch_windows: int


class Info(_Body):
    model: ModelInfo
    labels: Labels
    max_length: int
    window_overlap: int
    aggregation: AppArgs.model_fields["aggregation"].annotation  # type: ignore[valid-type]
    priority_aggregation: AppArgs.model_fields["priority_aggregation"].annotation  # type: ignore[valid-type]
    long_narratives: AppArgs.model_fields["long_narratives"].annotation  # type: ignore[valid-type]
    device: str
    engine: str = Field(description="What runs the model, resolved: torch, onnxruntime or openvino.")
    dtype: str
    limits: InfoLimits
    auth: Literal["api_key", "none"]
    taxonomy: Optional[dict[str, str]] = Field(
        default=None, exclude_if=lambda v: v is None, json_schema_extra=_absent_not_null,
        description="Sub category → main category, when the checkpoint ships sub_to_main.json.")


# -- the case record and feedback ------------------------------------------------------------------

TaskName = Literal["main_category", "sub_category", "intervention", "priority"]
CaseRef = Annotated[str, Field(min_length=1, max_length=128, description="A case id, call id, task id or request id."),
                    NoNul]
FreeText = Annotated[str, Strict(), Field(max_length=2000), NoNul]
QueryText = Annotated[str, Field(min_length=1, max_length=700), NoNul]
Rating = Annotated[int, Strict(), Field(ge=1, le=5, description="1 (poor) to 5 (excellent).")]
Timestamp = Annotated[str, Field(description="ISO 8601, UTC.")]


class Corrections(_Body):
    """The labels a counsellor set; a task left out keeps the model's label. Checked against the served labels."""

    main_category: Optional[Annotated[str, Strict(), FromConfig("enum", "main_category_labels")]] = None
    sub_category: Optional[Annotated[str, Strict(), FromConfig("enum", "sub_category_labels")]] = None
    intervention: Optional[Annotated[str, Strict(), FromConfig("enum", "intervention_labels")]] = None
    priority: Optional[Annotated[StrictInt, FromConfig("enum", "priority_labels")]] = None

    def given(self) -> dict[str, Any]:
        return {k: v for k, v in self.model_dump().items() if v is not None}


class FeedbackRequest(_Request):
    case_id: CaseRef
    corrections: Corrections = Field(default_factory=Corrections)
    rating: Optional[Rating] = None
    reason: Optional[FreeText] = None
    reviewer: Optional[Annotated[str, Strict(), Field(min_length=1, max_length=200), NoNul]] = None
    narrative: Optional[Narrative] = Field(
        None, description="The case's narrative, when the case-management system sends it: the correction then "
        "becomes a training example. Stored normalized, purged after feedback.retention_days.")


class AssetParams(_Request):
    name: Annotated[str, Field(min_length=1, max_length=64)]


class CaseParams(_Request):
    id: CaseRef


class StatsParams(_Request):
    days: int = Field(30, ge=1, le=3650, description="Feedback received in the last this many days.")
    model: Optional[QueryText] = Field(None, description="Only this model version (id@revision) or model id.")


class ExportParams(_Request):
    since: date = Field(description="Feedback received on or after this day (UTC), YYYY-MM-DD.")
    model: Optional[QueryText] = None


class RecordedPrediction(_Body):
    label: Union[str, int]
    confidence: Confidence


class RecordedChunk(_Body):
    index: int
    token_span: list[int]
    classification: dict[str, RecordedPrediction]


class HistoryEntry(_Body):
    version: int
    corrections: dict[str, Union[str, int]]
    rating: Optional[int]
    reason: Optional[str]
    reviewer: Optional[str]
    source: Literal["feedback", "openchs"]
    recorded_at: Timestamp


class StoredFeedback(_Body):
    id: int
    case_id: str
    call_id: Optional[str]
    task: str
    corrections: dict[str, Union[str, int]]
    labels: dict[TaskName, Union[str, int]] = Field(description="The labels after correction.")
    predicted: dict[TaskName, Union[str, int]] = Field(description="The model's labels.")
    agreed: dict[TaskName, bool] = Field(description="Per task: the model's label was kept.")
    rating: Optional[int]
    reason: Optional[str]
    reviewer: Optional[str]
    narrative_stored: bool
    model: ModelRef
    source: Literal["feedback", "openchs"]
    version: int = Field(ge=1, description="1 for the first feedback; each replacement adds one.")
    created_at: Timestamp
    updated_at: Timestamp
    history: list[HistoryEntry] = Field(description="Every version, oldest first, the current one last.")


class FeedbackResponse(_Succeeded):
    feedback: StoredFeedback


class CaseRecord(_Body):
    case_id: str
    request_id: Optional[str]
    task_id: Optional[str]
    call_id: Optional[str]
    batch_index: Optional[int]
    created_at: Timestamp
    model: ModelRef
    classification: dict[Literal["main_category", "sub_category", "sub_category_2", "intervention", "priority"],
                         RecordedPrediction]
    routing: Routing
    chunks: int
    tokens: int
    truncated: bool
    chunk_details: list[RecordedChunk]
    narrative_stored: bool
    feedback: list[StoredFeedback]


class CaseResponse(_Succeeded):
    case: CaseRecord


class Confusion(_Body):
    predicted: str
    corrected: str
    count: int


class TaskStats(_Body):
    feedback: int = Field(description="Feedback records that reviewed the case.")
    corrections: int = Field(description="Of those, how many changed this task's label.")
    agreement_rate: Optional[float] = Field(description="Share where the model's label was kept; null without feedback.")
    confusions: list[Confusion] = Field(description="Most common (predicted → corrected) pairs.")
    mean_rating: Optional[float]


class StatsGroup(_Body):
    feedback: int
    mean_rating: Optional[float]
    tasks: dict[TaskName, TaskStats]


class FeedbackStats(_Succeeded):
    days: int
    model: Optional[str]
    since: Timestamp
    feedback: int
    mean_rating: Optional[float]
    tasks: dict[TaskName, TaskStats]
    by_model: dict[str, StatsGroup] = Field(description="The same, per model version (id@revision).")


class TrainingExample(_Body):
    """One line of the export: what ``python -m training.finetune --train`` reads, plus provenance."""

    narrative: str
    main_category: str
    sub_category: str
    intervention: str
    priority: int
    case_id: str
    model: str
    corrected: list[str]


class ExportResponse(_Succeeded):
    since: str
    examples: list[TrainingExample]
    skipped_without_narrative: int = Field(description="Corrections without a narrative: not training examples.")


# OpenCHS's agent-feedback routes (openchlai/ai ai_service/app/api/agent_feedback_routes.py), same field names.
OPENCHS_FEEDBACK_TASKS = ("transcription", "classification", "ner", "summarization", "translation", "qa", "insights")


class OpenChsFeedbackUpdate(_Request):
    call_id: CallId
    task: Literal["classification"] = Field(description="This service serves only OpenCHS's 'classification' task.")
    feedback: Rating
    reason: Optional[FreeText] = None


class OpenChsCallParams(_Request):
    call_id: CallId
    task: Optional[Annotated[str, Field(max_length=32), NoNul]] = None


class OpenChsStatsParams(_Request):
    task: Optional[Annotated[str, Field(max_length=32), NoNul]] = None
    days: int = Field(30, ge=1, le=3650)


class OpenChsFeedback(_Body):
    id: int
    call_id: str
    task: str
    prediction: dict[str, Any]
    feedback: Optional[int]
    reason: Optional[str]
    created_at: Timestamp
    updated_at: Optional[Timestamp]
    processing_mode: Optional[str]
    model_version: Optional[str]


class OpenChsFeedbackList(RootModel[list[OpenChsFeedback]]):
    pass


class OpenChsTaskStats(_Body):
    total_predictions: int
    rated_predictions: int
    rating_coverage: float
    average_rating: Optional[float]
    min_rating: Optional[int]
    max_rating: Optional[int]


class OpenChsStatistics(_Body):
    period_days: int
    tasks: dict[str, OpenChsTaskStats]


class ErrorDetail(_Body):
    code: str
    message: str
    request_id: Optional[str] = _omitted()


class Error(_Body):
    success: Literal[False]
    error: ErrorDetail

    @classmethod
    def of(cls, err: ServiceError, request_id: str | None) -> "Error":
        return cls(success=False, error=ErrorDetail(code=err.code, message=err.message, request_id=request_id or None))


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


# Pydantic error type → (status, code, text after the field's name). The custom types raised above
# carry their own text. The first error (validation order: the fields as declared) is reported.
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


# Label lists at most this long are quoted whole in a 422 for a label not in them.
SMALL_LABEL_SET = 20


def check_corrections(corrections: Corrections, labels: LabelSet) -> dict[str, Any]:
    """The corrections given, each checked against the served label set; a 422 names a bad one."""
    given = corrections.given()
    for task, value in given.items():
        allowed = labels.for_task(task)
        if value not in allowed:
            message = f"'corrections.{task}' is not a label this model serves."
            if len(allowed) <= SMALL_LABEL_SET:
                message += " Allowed: " + ", ".join(json.dumps(a) for a in allowed) + "."
            else:
                message += f" It has {len(allowed)} labels; GET /info lists them."
            raise ServiceError.invalid(message, code="unknown_label")
    return given


# -- routes and the OpenAPI document ------------------------------------------------------------

ERRORS = {
    400: "Malformed body: empty, not UTF-8, not JSON, or a narrative empty after normalization.",
    401: "Missing or wrong API key (only when API keys are configured).",
    404: "No such route, or no such task (never submitted, or its result expired).",
    409: "The id names several cases (a batch's request id): use the case id or call id.",
    413: "Body, narrative or batch over its configured limit.",
    415: "Content-Type is not application/json.",
    422: "Well-formed JSON that does not match the request schema.",
    429: "Overloaded: retry after Retry-After seconds.",
    500: "The classifier failed on this request.",
    503: "Overloaded or not ready: retry after Retry-After seconds.",
    504: "The classifier did not answer in time.",
}
CLASSIFY_ERRORS = (400, 413, 415, 422, 429, 500, 503, 504)
SUBMIT_ERRORS = (400, 413, 415, 422, 503)
TASK_ERRORS = (404, 503)


@dataclass(frozen=True)
class Operation:
    """One route: what it takes, what it answers, and how it can fail (401 unless ``public``)."""

    id: str
    method: str
    path: str
    summary: str
    ok: str
    response: Optional[type[BaseModel]]  # None: the OpenAPI document itself
    request: Optional[type[BaseModel]] = None
    errors: tuple[int, ...] = ()
    public: bool = False
    # Path ({name} in ``path``) and query parameters, validated as one model. Without one, the
    # path's {name} segments reach the handler as keyword arguments, as strings.
    params: Optional[type[BaseModel]] = None
    status: int = 200
    # False for the pages for people (HTML, CSS, JS): served, but not part of the API document.
    documented: bool = True
    # Request headers the handler receives, as keyword arguments (idempotency-key → idempotency_key).
    headers: tuple[str, ...] = ()

    def path_names(self) -> tuple[str, ...]:
        return tuple(re.findall(r"{(\w+)}", self.path))

    def statuses(self) -> list[int]:
        return sorted(set(self.errors) | (set() if self.public else {401}))


OPERATIONS: tuple[Operation, ...] = (
    Operation("classify", "POST", "/classify", "Classify one narrative.", "Classified.",
              ClassifyResponse, ClassifyRequest, CLASSIFY_ERRORS),
    Operation("classify_batch", "POST", "/classify/batch", "Classify narratives in order.", "Classified.",
              BatchResponse, BatchRequest, CLASSIFY_ERRORS),
    Operation("health", "GET", "/health", "200 when the model is loaded and every deployment is ready.", "Ready.",
              Health, errors=(503,), public=True),
    Operation("info", "GET", "/info", "Model, labels and serving settings.", "Info.", Info, errors=(503,)),
    Operation("openapi", "GET", "/openapi.json", "This document.", "OpenAPI 3 document.", None),
    Operation("console", "GET", "/", "The console: classify a narrative, correct the labels.", "HTML page.", None,
              public=True, documented=False),
    Operation("docs", "GET", "/docs", "Swagger UI for /openapi.json.", "HTML page.", None, public=True,
              documented=False),
    Operation("docs_asset", "GET", "/docs/{name}", "Swagger UI's vendored assets.", "CSS or JavaScript.", None,
              errors=(404,), params=AssetParams, public=True, documented=False),
    Operation("get_case", "GET", "/cases/{id}", "What the service answered for a case (by case, call, task or "
              "request id), with its feedback.", "The case record.", CaseResponse, errors=(404, 409, 422, 503),
              params=CaseParams),
    Operation("feedback", "POST", "/feedback", "A counsellor's corrections and rating for a case; a second one "
              "for the same case replaces the first (both stay in its history).", "Stored.", FeedbackResponse,
              FeedbackRequest, (400, 404, 409, 413, 415, 422, 503), status=201),
    Operation("feedback_stats", "GET", "/feedback/stats", "Live accuracy per task from the feedback, also per model "
              "version.", "Statistics.", FeedbackStats, errors=(422, 503), params=StatsParams),
    Operation("feedback_export", "GET", "/feedback/export", "Corrections with narratives, as training examples.",
              "Training examples.", ExportResponse, errors=(422, 503), params=ExportParams),
    Operation("openchs_feedback_update", "POST", "/api/v1/agent-feedback/update", "OpenCHS: rate a call's "
              "classification (1-5) with a reason.", "Updated.", OpenChsFeedback, OpenChsFeedbackUpdate,
              (400, 404, 413, 415, 422, 503)),
    Operation("openchs_feedback_call", "GET", "/api/v1/agent-feedback/call/{call_id}", "OpenCHS: the feedback "
              "entries of a call.", "Feedback entries.", OpenChsFeedbackList, errors=(404, 422, 503),
              params=OpenChsCallParams),
    Operation("openchs_feedback_statistics", "GET", "/api/v1/agent-feedback/statistics", "OpenCHS: ratings per "
              "task over the last days.", "Statistics.", OpenChsStatistics, errors=(422, 503),
              params=OpenChsStatsParams),
    Operation("tasks_classify", "POST", "/tasks/classify",
              "Queue one narrative durably; the 202 comes once it is in the queue.", "Queued.",
              TaskAccepted, TaskClassifyRequest, SUBMIT_ERRORS, status=202, headers=("idempotency-key",)),
    Operation("tasks_classify_batch", "POST", "/tasks/classify/batch",
              "Queue narratives durably, one task each, in order.", "Queued.",
              TaskBatchAccepted, TaskBatchRequest, SUBMIT_ERRORS, status=202, headers=("idempotency-key",)),
    Operation("task_status", "GET", "/tasks/{task_id}", "A queued task's state and, once done, its result.",
              "The task.", TaskStatus, errors=TASK_ERRORS),
    Operation("openchs_classify", "POST", "/classifier/classify",
              "OpenCHS ai-service compatible: queue one narrative.", "Queued.",
              OpenchsTaskResponse, OpenchsClassifyRequest, SUBMIT_ERRORS),
    Operation("openchs_task", "GET", "/classifier/task/{task_id}",
              "OpenCHS ai-service compatible: a task's state and result.", "The task.",
              OpenchsTaskStatusResponse, errors=TASK_ERRORS),
)


def _fill(node: Any, values: Mapping[str, Any]) -> Any:
    """Replace every ``CONFIG_KEY`` marker with the config values it names."""
    if isinstance(node, dict):
        out = {k: _fill(v, values) for k, v in node.items() if k != CONFIG_KEY}
        for keyword, setting in node.get(CONFIG_KEY, {}).items():
            out[keyword] = values[setting]
        return out
    if isinstance(node, list):
        return [_fill(v, values) for v in node]
    return node


def _json_content(schema: dict) -> dict:
    return {"application/json": {"schema": schema}}


def _ref(model: type[BaseModel]) -> dict:
    return {"$ref": REF_TEMPLATE.format(model=model.__name__)}


def _parameters(op: Operation, document: dict) -> list[dict]:
    """OpenAPI parameters from a params model: its ``{name}`` fields in the path, the rest in the query."""
    (schema,) = [v for k, v in document.get("$defs", {}).items() if k == op.params.__name__] or [document]
    required = set(schema.get("required", ()))
    out = []
    for name, prop in schema["properties"].items():
        where = "path" if name in op.path_names() else "query"
        prop = _fill({k: v for k, v in prop.items() if k != "title"}, {})
        if any(v == {"type": "null"} for v in prop.get("anyOf", ())):
            _absent_not_null(prop)  # a query parameter is left out, never null
        out.append({"name": name, "in": where, "required": where == "path" or name in required, "schema": prop})
    return out


def build_openapi(args: AppArgs, labels: LabelSet) -> dict:
    """The OpenAPI 3.1 document served at /openapi.json, from the models and the live config."""
    models = [(op.request, "validation") for op in OPERATIONS if op.request is not None]
    models += [(op.response, "serialization") for op in OPERATIONS if op.response is not None]
    models.append((Error, "serialization"))
    params = {op.params: models_json_schema([(op.params, "validation")], ref_template=REF_TEMPLATE)[1]
              for op in OPERATIONS if op.params is not None}
    _, top = models_json_schema(models, ref_template=REF_TEMPLATE)
    schemas = _fill(top["$defs"], {
        "max_narrative_chars": args.max_narrative_chars,
        "max_batch_narratives": args.max_batch_narratives,
        "priority_labels": list(labels.priority),
        "main_category_labels": list(labels.main_category),
        "sub_category_labels": list(labels.sub_category),
        "intervention_labels": list(labels.intervention),
    })
    paths: dict[str, dict] = {}
    for op in OPERATIONS:
        if not op.documented:
            continue
        responses = {str(op.status): {"description": op.ok,
                             "content": _json_content(_ref(op.response) if op.response else {"type": "object"})}}
        for status in op.statuses():
            responses[str(status)] = {"description": ERRORS[status], "content": _json_content(_ref(Error))}
        operation: dict[str, Any] = {"operationId": op.id, "summary": op.summary, "responses": responses}
        if op.params is not None:
            parameters = _parameters(op, params[op.params])
        else:
            parameters = [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                          for name in op.path_names()]
        parameters += [{"name": name, "in": "header", "required": False, "schema": {"type": "string", "maxLength": 256}}
                       for name in op.headers]
        if parameters:
            operation["parameters"] = parameters
        if op.request is not None:
            operation["requestBody"] = {"required": True, "content": _json_content(_ref(op.request))}
        paths.setdefault(op.path, {})[op.method.lower()] = operation
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "helpline-serve",
            "version": "1.0.0",
            "description": "OpenCHS child-helpline case classifier: four labels and a routing decision per narrative.",
        },
        "paths": paths,
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}, "schemas": schemas},
    }
