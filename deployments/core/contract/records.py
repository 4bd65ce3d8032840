"""The case record (what the service answered for a case, GET /cases/{id}) and its feedback: the stored
feedback, the live statistics and the training-example export."""

from __future__ import annotations

from typing import Any, Literal, Optional, Union

from pydantic import Field

from deployments.core.contract.responses import ModelRef, Routing, _Succeeded
from deployments.core.contract.validation import Confidence, Timestamp, _Body

TaskName = Literal["main_category", "sub_category", "intervention", "priority"]


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
    language: Optional[str] = Field(description="The narrative's language code (null for cases recorded before "
                                                "language identification).")
    chunks: int
    tokens: int
    truncated: bool
    chunk_details: list[RecordedChunk]
    narrative_stored: bool
    feedback: list[StoredFeedback]
    timeline: Optional[list[dict[str, Any]]] = Field(None, description="A live call's label changes, each with "
                                                    "its piece's seq and time (null for other cases).")
    escalated_at: Optional[Timestamp] = Field(None, description="When a live call first escalated (null otherwise).")


class CaseResponse(_Succeeded):
    case: CaseRecord


# -- statistics and export ---------------------------------------------------------------------


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
