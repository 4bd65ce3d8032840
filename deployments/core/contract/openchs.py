"""OpenCHS's own shapes, with their field names: the ai-service's classifier routes (a queued task and its
status) and the agent-feedback routes (a rating of a call's classification, per-task statistics)."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Optional

from pydantic import Field, RootModel

from deployments.core.contract.validation import CallId, FreeText, Narrative, NoNul, Rating, Timestamp, _Body, _Request

# -- the classifier ---------------------------------------------------------------------------
# OpenCHS ai-service (openchlai/ai, ai_service/app/api/classifier_route.py): their models, their field names.


class OpenchsClassifyRequest(_Request):
    """OpenCHS ai-service's ClassifierRequest."""

    narrative: Narrative


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


# -- agent feedback ---------------------------------------------------------------------------
# OpenCHS's agent-feedback routes (openchlai/ai ai_service/app/api/agent_feedback_routes.py), same field names.
# The kinds of task OpenCHS takes feedback on (not the label tasks: those are tasks.OPENCHS_LABEL_TASKS).
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
