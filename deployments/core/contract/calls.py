"""The live call routes' shapes: a transcript piece, the answer to it, the closed call's answer and the
call's state (``POST /calls/{call_id}/transcript``, ``/end``, ``GET /calls/{call_id}``; the logic is
``deployments/core/calls.py``)."""

from __future__ import annotations

from typing import Annotated, Literal, Optional, Union

from pydantic import AfterValidator, Field, RootModel, Strict, StrictBool, StrictInt, ValidationInfo
from pydantic_core import PydanticCustomError

from deployments.core.contract.responses import CaseResult, ClassifyResponse, _Succeeded
from deployments.core.contract.validation import CallId, FromConfig, NoNul, Timestamp, _Body, _limits, _Request


def _check_piece(value: str, info: ValidationInfo) -> str:
    limit = _limits(info).max_narrative_chars
    if len(value) > limit:  # the same refusal (413) as an over-long narrative
        raise PydanticCustomError("narrative_too_long", "has {chars} characters; the limit is {limit} a piece.",
                                  {"chars": len(value), "limit": limit})
    return value


PieceText = Annotated[str, Strict(), NoNul, AfterValidator(_check_piece), FromConfig("maxLength", "max_narrative_chars"),
                      Field(description="The transcript's new text since the last piece, as transcribed; the call's "
                                        "transcript is the pieces joined as sent.")]


class CallPiece(_Request):
    text: PieceText
    seq: Annotated[StrictInt, Field(ge=0, le=1_000_000, description="The piece's number, from 0. A repeat with the "
                                    "same text is answered again; a gap or other text: 409.")]
    final: StrictBool = Field(False, description="True: this piece ends the call (as POST /calls/{call_id}/end).")


class CallParams(_Request):
    # No control characters: a path segment's \r, \n or \t do not survive every HTTP hop unchanged.
    call_id: Annotated[CallId, Field(pattern=r"^[^\x00-\x1f\x7f]+$",
                                     description="The case-management system's call id (no control characters).")]


class EventParams(CallParams):
    last_event_id: Optional[Annotated[StrictInt, Field(ge=0)]] = Field(
        None, description="Replay only the events after this id (as the Last-Event-ID header does).")


class Escalation(_Body):
    at: Timestamp
    seq: int = Field(ge=0, description="The piece at which the call escalated.")
    reasons: list[str] = Field(description="The routing reasons that raised it, as they were then.")


class TimelineEntry(_Body):
    seq: int = Field(ge=0)
    at: Timestamp
    task: str
    label: Union[str, int]
    previous: Optional[Union[str, int]] = Field(description="The label before this piece (null at the first).")


STICKY = ("Once a call escalates it stays escalated: 'escalation' keeps when and why, even when the model's "
          "latest view ('routing') is lower.")


class CallUpdate(CaseResult, _Succeeded):
    call_id: str
    seq: int = Field(ge=0)
    status: Literal["open"]
    windows: int = Field(ge=0, description="Model windows this piece classified ('chunks': the call's so far).")
    changed: list[str] = Field(description="The tasks whose label changed with this piece.")
    escalated_at: Optional[Timestamp] = Field(description="When the call first escalated; null until then.")
    escalation: Optional[Escalation] = Field(description=STICKY)


class CallEnded(ClassifyResponse):
    """The /classify body for the whole transcript, with the call's case id, timeline and escalation."""

    call_id: str
    status: Literal["closed"]
    timeline: list[TimelineEntry]
    escalated_at: Optional[Timestamp]
    escalation: Optional[Escalation] = Field(description=STICKY)


class CallAnswer(RootModel[Union[CallUpdate, CallEnded]]):
    """A piece's answer: the call so far, or, for a final piece, the closed call's body."""


class CallState(_Succeeded):
    call_id: str
    status: Literal["open", "closed"]
    next_seq: int = Field(ge=0, description="The seq the next piece must carry.")
    opened_at: Timestamp
    updated_at: Timestamp
    closed_at: Optional[Timestamp]
    case_id: Optional[str] = Field(description="The call's case record, once closed.")
    current: Optional[dict] = Field(description="The last answer (or the final body), its lexicon words left out.")
    timeline: list[TimelineEntry]
    escalated_at: Optional[Timestamp]
    escalation: Optional[Escalation] = Field(description=STICKY)
