"""The response bodies of this service's own routes (OpenCHS's are in ``openchs``; the case record and the
feedback in ``records``): classification, queued tasks, health, info, and the one error body."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Optional, Union

from pydantic import Field

from deployments.core.config import AppArgs
from deployments.core.contract.validation import Confidence, FromConfig, _Body
from deployments.core.errors import ServiceError
from deployments.core.signals import Source


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


PriorityLabel = Annotated[int, FromConfig("enum", "priority_labels")]
BARE = "With include_confidence (the default) an object; otherwise the bare label."
SUB_PARENT = (" 'parent' is the main category this sub category belongs to in the checkpoint's taxonomy"
              " (sub_to_main.json); absent when the checkpoint ships none.")


# -- classification ---------------------------------------------------------------------------


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


class Signal(_Body):
    source: Source
    category: str = Field(description="What it found: a lexicon category, a task, 'priority', a language code...")
    text: Optional[str] = Field(description="The matched words as they appear in the narrative sent (lexicon only; "
                                            "never kept in the case record).")
    start: Optional[int] = Field(ge=0, description="Character offset of the match in the narrative sent.")
    end: Optional[int] = Field(ge=0, description="End (exclusive) of the match in the narrative sent.")
    window: Optional[int] = Field(ge=0, description="The model window that drove an escalation (source 'model').")


class Routing(_Body):
    queue: str
    escalate: bool
    human_review: bool
    reasons: list[str] = Field(description="One plain-words reason per signal, in order.")
    signals: list[Signal] = Field(description="The evidence behind escalate and human_review.")


class ChunkDetail(_Body):
    index: int = Field(ge=0)
    token_span: list[int] = Field(min_length=2, max_length=2, description="[start, end) of the window's tokens.")
    classification: Classification


class Language(_Body):
    code: str = Field(description="ISO 639-1 code ('en', 'sw', ...); 'und' when the text has no letters to judge.")
    name: str
    confidence: float = Field(ge=0, le=1)


class Translation(_Body):
    source_language: str = Field(description="The narrative's language, which the Translator read.")
    model: str = Field(description="The translation model; the classifier read its English.")


class CaseResult(_Body):
    classification: Classification
    routing: Routing
    language: Language = Field(description="The narrative's language, as identified before the model read it.")
    # Present when the classifier read a machine translation of the narrative (translation.model).
    translation: Optional[Translation] = _omitted()
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
CaseId = Annotated[str, Field(description="The id of this case's record: send feedback for it, GET /cases/{id}.")]


class ClassifiedCase(CaseResult):
    case_id: CaseId


# _Succeeded last among the bases puts 'success' first in the body, as the model card's example has it.
class ClassifyResponse(ClassifiedCase, _Succeeded):
    model: ModelRef
    processing_time_seconds: ProcessingTime


class BatchResponse(_Succeeded):
    results: list[ClassifiedCase]
    model: ModelRef
    processing_time_seconds: ProcessingTime


# -- queued tasks -----------------------------------------------------------------------------

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


# -- the service ------------------------------------------------------------------------------


class Health(_Body):
    status: Literal["healthy"]
    model: str = Field(description="The model served, as the model card's health answer names it.")
    deployments: dict[str, Literal["ready"]]


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


class EngineAuto(_Body):
    dtype: str
    rates_windows_per_s: dict[str, Optional[float]] = Field(
        description="Probe windows per second per candidate engine; null: it could not be built exactly.")
    choice: str
    host: dict = Field(description="What the figures hold for: CPU model, threads, the engines' versions.")
    cached: bool = Field(description="Kept from an earlier start on the same kind of host, not measured now.")


class Agreement(_Body):
    agreement: float = Field(description="Share of the cases whose four labels are fp32's.")
    cases: int
    source: str = Field(description="Where the cases came from.")
    min_agreement: float


class TaxonomySource(_Body):
    source: Literal["config", "checkpoint", "bundled", "off"]
    detail: str


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
    passes_at_once: int = Field(
        default=1, ge=1, description="Forward passes the model replica runs at once: two on a CPU where OpenVINO "
                                     "serves on two or more threads (each pass on its share of them), else one.")
    engine_auto: Optional["EngineAuto"] = Field(
        default=None, exclude_if=lambda v: v is None, json_schema_extra=_absent_not_null,
        description="With engine 'auto' on a CPU: each candidate's measured rate and the choice.")
    agreement: Optional["Agreement"] = Field(
        default=None, exclude_if=lambda v: v is None, json_schema_extra=_absent_not_null,
        description="Below fp32: the share of agreement cases keeping all four labels of fp32, measured at startup.")
    recheck_margin: Optional[float] = Field(
        default=None, exclude_if=lambda v: v is None, json_schema_extra=_absent_not_null,
        description="Below fp32: windows this close to a tie in any task are decided in fp32.")
    limits: InfoLimits
    auth: Literal["api_key", "none"]
    taxonomy: Optional[dict[str, str]] = Field(
        default=None, exclude_if=lambda v: v is None, json_schema_extra=_absent_not_null,
        description="Sub category → main category, when the checkpoint ships sub_to_main.json.")
    priority_high: int = Field(description="The most urgent priority label (labels.priority_high): escalation and "
                               "priority_aggregation 'max' follow it.")
    priority_names: dict[str, str] = Field(description="Each priority label's name by urgency: High, Medium, Low.")
    taxonomy_source: "TaxonomySource" = Field(
        description="Where the taxonomy came from (labels.taxonomy_file, the checkpoint, the bundled release), or "
        "'off' and why.")


# -- errors -----------------------------------------------------------------------------------


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
