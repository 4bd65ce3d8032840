"""The supervisors' worklist (``/review*``) and ``/whoami``: parameters, bodies, responses."""

from __future__ import annotations

from typing import Annotated, Literal, Optional, Union

from pydantic import Field

from deployments.core.contract.records import StoredFeedback, TaskName
from deployments.core.contract.requests import Corrections
from deployments.core.contract.responses import Signal, _Succeeded
from deployments.core.contract.validation import CaseRef, FreeText, QueryText, Rating, Timestamp, _Body, _Request

ReviewStatus = Literal["open", "claimed", "resolved"]
Cursor = Annotated[str, Field(min_length=1, max_length=700, description="The next_cursor of the previous page.")]


class ReviewParams(_Request):
    queue: Optional[QueryText] = Field(None, description="Only this queue.")
    status: Optional[ReviewStatus] = Field(None, description="Only this status; default: open and claimed.")
    priority: Optional[int] = Field(None, ge=0, le=1000, description="Only this priority level.")
    overdue: Optional[bool] = Field(None, description="true: only cases past due_at and not resolved; false: the "
                                                      "others.")
    cursor: Optional[Cursor] = None
    limit: int = Field(50, ge=1, le=500, description="Items per page.")


class ReviewNextParams(_Request):
    queue: Optional[QueryText] = Field(None, description="Take the next case of this queue only.")


class ReviewCaseParams(_Request):
    case_id: CaseRef


class ResolveRequest(_Request):
    """The supervisor's corrections (checked against the served labels), as ``POST /feedback`` takes them."""

    corrections: Corrections = Field(default_factory=Corrections)
    rating: Optional[Rating] = None
    reason: Optional[FreeText] = None


class ReviewItem(_Body):
    case_id: str
    call_id: Optional[str]
    queue: str
    labels: dict[TaskName, Union[str, int]] = Field(description="The model's four labels.")
    priority: int
    escalate: bool
    reasons: list[str]
    signals: list[Signal] = Field(description="The evidence of each reason: where, never the words.")
    created_at: Timestamp
    due_at: Timestamp = Field(description="created_at plus review.deadlines' time for an escalation or the priority.")
    overdue: bool = Field(description="Past due_at and not resolved.")
    status: ReviewStatus
    claimed_by: Optional[str] = Field(description="The name of the key that claimed it.")
    claimed_at: Optional[Timestamp]
    resolved_by: Optional[str]
    resolved_at: Optional[Timestamp]


class ReviewList(_Succeeded):
    items: list[ReviewItem] = Field(description="Escalated first, then by due_at, then by age.")
    next_cursor: Optional[str] = Field(description="Pass as 'cursor' for the next page; null on the last page.")


class ReviewNext(_Succeeded):
    item: Optional[ReviewItem] = Field(description="The case now claimed for the caller; null when none is open.")


class ReviewAction(_Succeeded):
    item: ReviewItem


class ReviewResolved(_Succeeded):
    item: ReviewItem
    feedback: StoredFeedback = Field(description="The feedback stored, as POST /feedback answers it.")


class WhoAmI(_Succeeded):
    auth: Literal["api_key", "none"]
    name: str = Field(description="The key's name ('anonymous' when no keys are configured).")
    role: str
    permissions: list[str]
