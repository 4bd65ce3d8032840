"""The request bodies and the path and query parameters of this service's own routes (OpenCHS's are in
``openchs``), and the check of a feedback's corrections against the served labels."""

from __future__ import annotations

import json
from datetime import date
from typing import Annotated, Any, ClassVar, Optional

from pydantic import AfterValidator, BeforeValidator, Field, Strict, StrictInt, ValidationInfo, model_validator
from pydantic_core import PydanticCustomError

from deployments.core import callbacks
from deployments.core.contract.validation import (
    CallId,
    CaseRef,
    DescribedCallId,
    FreeText,
    FromConfig,
    IncludeChunks,
    IncludeConfidence,
    Narrative,
    NoNul,
    QueryText,
    Rating,
    _Body,
    _check_count,
    _limits,
    _Request,
)
from deployments.core.errors import ServiceError
from deployments.core.labels import LabelSet

# -- classification ---------------------------------------------------------------------------


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


# -- queued tasks -----------------------------------------------------------------------------


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


# -- feedback ---------------------------------------------------------------------------------


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


# -- path and query parameters ------------------------------------------------------------------


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
