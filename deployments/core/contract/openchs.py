"""OpenCHS's own shapes, with their field names: the ai-service's classifier routes (a queued task and its
status) and the agent-feedback routes (a rating of a call's classification, per-task statistics)."""

from __future__ import annotations

import numbers
from datetime import datetime, timezone
from typing import Annotated, Any, Literal, Optional

from pydantic import BeforeValidator, Field, RootModel

from deployments.core.contract.validation import CallId, FreeText, Narrative, NoNul, Timestamp, _Body, _Request
from deployments.core.errors import ServiceError

# -- the classifier ---------------------------------------------------------------------------
# OpenCHS ai-service (openchlai/ai, ai_service/app/api/classifier_route.py): their models, their field names.
# Their confidences are rounded to 3 places (app/model_scripts/classifier_model.py), their priority is a string.


def _three_places(value: Any) -> Any:
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return round(float(value), 3)
    return value


OpenchsConfidence = Annotated[float, Field(ge=0, le=1), BeforeValidator(_three_places)]
# Their processing modes (app/models/notification_types.py ProcessingMode): a case classified from a whole
# narrative after the call is "post_call"; "streaming" is a live call's.
OpenchsProcessingMode = Literal["streaming", "post_call", "dual", "adaptive"]


class OpenchsClassifyRequest(_Request):
    """OpenCHS ai-service's ClassifierRequest, plus the call id their agent-feedback routes rate the case by.

    Other fields are ignored, as their pydantic model ignores them."""

    narrative: Narrative
    call_id: Optional[CallId] = Field(default=None, description="The call id to rate and read this case by on "
                                      "/api/v1/agent-feedback/* (its task id works too).")


class OpenchsConfidenceScores(_Body):
    main_category: Optional[OpenchsConfidence] = None
    sub_category: Optional[OpenchsConfidence] = None
    sub_category_2: Optional[OpenchsConfidence] = None
    intervention: Optional[OpenchsConfidence] = None
    priority: Optional[OpenchsConfidence] = None


class OpenchsChunkPrediction(_Body):
    """One model window, with the fields their ClassificationChunker gives a chunk (app/utils/text_utils.py)."""

    chunk_index: int = Field(ge=0)
    token_count: int = Field(ge=0, description="The window's tokens, [CLS] and [SEP] included.")
    sentence_count: int = Field(ge=0, description="Sentences of the narrative the window reads, whole or in part.")
    position_ratio: float = Field(ge=0, le=1, description="chunk_index / (chunks - 1).")
    main_category: str
    sub_category: str
    sub_category_2: Optional[str] = None
    intervention: str
    priority: str
    confidence_scores: OpenchsConfidenceScores


class OpenchsClassifierResponse(_Body):
    main_category: str
    sub_category: str
    sub_category_2: Optional[str] = None
    intervention: str
    priority: str
    confidence_scores: OpenchsConfidenceScores
    chunks_processed: int
    chunk_predictions: Optional[list[OpenchsChunkPrediction]] = Field(
        default=None, description="One per model window when the narrative took more than one, as theirs; else null.")
    processing_time: float
    model_info: "OpenchsModelInfo"
    timestamp: str


class OpenchsModelDetails(_Body):
    model_class: str
    tokenizer_class: str
    max_length: int
    top_k_subcategories: bool
    chunking: dict[str, Any]
    categories: dict[str, int]


class OpenchsModelInfo(_Body):
    """Their ClassifierModel.get_model_info() keys (app/model_scripts/classifier_model.py)."""

    model_type: Literal["classifier"]
    model_path: str
    hf_repo_id: Optional[str]
    loaded: bool
    load_time: Optional[str]
    device: str
    error: Optional[str]
    details: Optional[OpenchsModelDetails] = None


OpenchsClassifierResponse.model_rebuild()


class OpenchsTaskResponse(_Body):
    task_id: str
    status: Literal["queued"]
    message: str
    estimated_time: str
    status_endpoint: str


class OpenchsTaskStatusResponse(_Body):
    task_id: str
    status: Literal["pending", "processing", "success", "failed"] = Field(
        description="An id never submitted (or expired) reads 'pending', as Celery's AsyncResult does there.")
    result: Optional[OpenchsClassifierResponse] = None
    error: Optional[str] = None
    progress: Optional[dict[str, Any]] = None


class OpenchsClassifierInfo(_Body):
    """Their GET /classifier/info in standalone mode: ready with the model's info."""

    status: Literal["ready"]
    model_info: OpenchsModelInfo


# -- health (ai_service/app/api/health_routes.py: plain dicts there, their keys here) -----------


class OpenchsModelsSummary(_Body):
    total: int
    ready: int
    implementable: int
    blocked: int


class OpenchsHealthModels(_Body):
    """Their GET /health/models in standalone mode."""

    timestamp: str
    mode: Literal["standalone"]
    status: Literal["healthy", "unhealthy"]
    system_capabilities: dict[str, Any]
    summary: OpenchsModelsSummary
    ready_models: list[str]
    implementable_models: list[str]
    blocked_models: list[str]
    missing_dependencies: dict[str, Any]
    details: dict[str, Any]


class OpenchsModelsDetail(OpenchsModelsSummary):
    ready_models: list[str]
    implementable_models: list[str]
    blocked_models: list[str]
    details: dict[str, Any]


class OpenchsHealthDetailed(_Body):
    """Their GET /health/detailed."""

    status: Literal["healthy", "degraded", "unhealthy"]
    timestamp: str
    version: str
    site_id: str
    issues: list[str]
    system: dict[str, Any]
    gpu: dict[str, Any]
    queue: dict[str, int]
    models: OpenchsModelsDetail
    capabilities: dict[str, Any]


# -- their error bodies ---------------------------------------------------------------------------
# Their classifier routes raise HTTPException(detail=create_error_response(...).model_dump())
# (ai_service/app/api/models.py); their agent-feedback routes raise HTTPException(detail="text").

# Our codes as their ErrorCodes name them; any other is our code in capitals.
OPENCHS_ERROR_CODES = {
    "empty_narrative": "INVALID_INPUT", "empty_body": "INVALID_INPUT", "invalid_json": "INVALID_INPUT",
    "invalid_encoding": "INVALID_INPUT", "bad_request": "INVALID_INPUT", "invalid_request": "VALIDATION_ERROR",
    "missing_field": "MISSING_REQUIRED_FIELD", "payload_too_large": "VALIDATION_ERROR",
    "task_not_found": "TASK_NOT_FOUND", "case_not_found": "RESOURCE_NOT_FOUND", "not_found": "RESOURCE_NOT_FOUND",
    "unavailable": "SERVICE_UNAVAILABLE", "overloaded": "SERVICE_UNAVAILABLE", "queue_full": "SERVICE_UNAVAILABLE",
    "backend_error": "INTERNAL_ERROR", "timeout": "TIMEOUT",
}

# Their words where a client of theirs may match them (their test_classifier.py asserts the first).
OPENCHS_MESSAGES = {"empty_narrative": "Narrative input cannot be empty"}


class OpenchsErrorDetail(_Body):
    error_code: str
    message: str
    detail: Optional[str] = None
    field: Optional[str] = None
    timestamp: str


class OpenchsErrorResponse(_Body):
    error: OpenchsErrorDetail
    status: Literal["error"]
    request_id: Optional[str] = None


class OpenchsError(_Body):
    """The body of an error on their classifier and health routes."""

    detail: OpenchsErrorResponse

    @classmethod
    def of(cls, err: ServiceError, request_id: Optional[str]) -> "OpenchsError":
        return cls(detail=OpenchsErrorResponse(
            error=OpenchsErrorDetail(
                error_code=OPENCHS_ERROR_CODES.get(err.code, err.code.upper()),
                message=OPENCHS_MESSAGES.get(err.code, err.message), detail=err.code, field="narrative" if err.code == "empty_narrative" else None,
                timestamp=datetime.now(timezone.utc).isoformat()),
            status="error", request_id=request_id or None))


class OpenchsTextError(_Body):
    """The body of an error on their agent-feedback routes."""

    detail: str

    @classmethod
    def of(cls, err: ServiceError, request_id: Optional[str]) -> "OpenchsTextError":
        return cls(detail=err.message)


# -- agent feedback ---------------------------------------------------------------------------
# OpenCHS's agent-feedback routes (openchlai/ai ai_service/app/api/agent_feedback_routes.py), same field names.
# The kinds of task OpenCHS takes feedback on (not the label tasks: those are tasks.OPENCHS_LABEL_TASKS).
OPENCHS_FEEDBACK_TASKS = ("transcription", "classification", "ner", "summarization", "translation", "qa", "insights")


class OpenChsFeedbackUpdate(_Request):
    call_id: CallId = Field(description="The call id the case was classified with, or its task id or case id.")
    task: Literal[OPENCHS_FEEDBACK_TASKS] = Field(  # type: ignore[valid-type]
        description="Their task names; this service holds only 'classification' entries (any other: 404).")
    # Lax, as their FeedbackUpdateRequest: "4" reads 4.
    feedback: int = Field(ge=1, le=5, description="1 (poor) to 5 (excellent).")
    reason: Optional[FreeText] = None


class OpenChsCallParams(_Request):
    call_id: CallId
    task: Optional[Annotated[str, Field(max_length=32), NoNul]] = None


class OpenChsStatsParams(_Request):
    task: Optional[Annotated[str, Field(max_length=32), NoNul]] = None
    days: int = Field(30, ge=1, le=3650)


class OpenChsPrediction(_Body):
    """The flat dict their classifier's classify() returns, as their feedback rows store it."""

    main_category: str
    sub_category: str
    sub_category_2: Optional[str]
    intervention: str
    priority: str
    confidence: OpenchsConfidence = Field(description="The mean of the four tasks' confidences, as theirs.")
    confidence_breakdown: OpenchsConfidenceScores
    confidence_scores: OpenchsConfidenceScores = Field(description="The same as confidence_breakdown, under the "
                                                       "name their task results use.")


class OpenChsFeedback(_Body):
    id: int
    call_id: str
    task: str
    prediction: OpenChsPrediction
    feedback: Optional[int]
    reason: Optional[str]
    created_at: Timestamp
    updated_at: Optional[Timestamp]
    processing_mode: Optional[OpenchsProcessingMode]
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
