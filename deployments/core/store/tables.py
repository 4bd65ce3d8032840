"""The store's schema. Changing it means a new Alembic revision under ``migrations/versions``."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Optional

from sqlalchemy import JSON, Boolean, DateTime, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

ID_CHARS = 128  # request ids, call ids and task ids: the contract's limit
LABEL_CHARS = 200


def aware(value: Optional[datetime]) -> Optional[datetime]:
    """A time read back from a ``DateTime`` column, in UTC: SQLite hands them back naive; all were written in UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value


class Base(DeclarativeBase):
    pass


class Case(Base):
    """What the service answered for one case. ``narrative`` only with feedback.keep_narratives."""

    __tablename__ = "cases"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)  # the case_id of the response
    request_id: Mapped[Optional[str]] = mapped_column(String(ID_CHARS), index=True)
    task_id: Mapped[Optional[str]] = mapped_column(String(ID_CHARS), index=True)  # queued intake's task
    call_id: Mapped[Optional[str]] = mapped_column(String(ID_CHARS), index=True)
    batch_index: Mapped[Optional[int]] = mapped_column(Integer)  # position in /classify/batch, else null
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    model_id: Mapped[str] = mapped_column(String(512))
    model_revision: Mapped[Optional[str]] = mapped_column(String(ID_CHARS))
    main_category: Mapped[str] = mapped_column(String(LABEL_CHARS))
    main_category_confidence: Mapped[float] = mapped_column(Float)
    sub_category: Mapped[str] = mapped_column(String(LABEL_CHARS))
    sub_category_confidence: Mapped[float] = mapped_column(Float)
    sub_category_2: Mapped[str] = mapped_column(String(LABEL_CHARS))
    sub_category_2_confidence: Mapped[float] = mapped_column(Float)
    intervention: Mapped[str] = mapped_column(String(LABEL_CHARS))
    intervention_confidence: Mapped[float] = mapped_column(Float)
    priority: Mapped[int] = mapped_column(Integer)
    priority_confidence: Mapped[float] = mapped_column(Float)
    queue: Mapped[str] = mapped_column(String(LABEL_CHARS))
    escalate: Mapped[bool] = mapped_column(Boolean)
    human_review: Mapped[bool] = mapped_column(Boolean)
    reasons: Mapped[list[str]] = mapped_column(JSON)
    # The evidence of each reason: source, category, offsets, window; never the matched words.
    signals: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    language: Mapped[Optional[str]] = mapped_column(String(16))  # the narrative's language code
    chunks: Mapped[int] = mapped_column(Integer)
    tokens: Mapped[int] = mapped_column(Integer)
    truncated: Mapped[bool] = mapped_column(Boolean)
    chunk_details: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    narrative: Mapped[Optional[str]] = mapped_column(Text)
    # The worklist (migration 0003, deployments/core/review.py): null for a case that needs no review,
    # else open, claimed or resolved; due_at from review.deadlines; claimed_by is the key's name.
    review_status: Mapped[Optional[str]] = mapped_column(String(16))
    due_at: Mapped[Optional[datetime]] = mapped_column(DateTime(timezone=True))
    claimed_by: Mapped[Optional[str]] = mapped_column(String(LABEL_CHARS))
    claimed_at: Mapped[Optional[datetime]] = mapped_column(DateTime(timezone=True))
    resolved_by: Mapped[Optional[str]] = mapped_column(String(LABEL_CHARS))
    resolved_at: Mapped[Optional[datetime]] = mapped_column(DateTime(timezone=True))

    __table_args__ = (Index("ix_cases_worklist", "review_status", text("escalate DESC"), "due_at", "created_at", "id"),)
    # A live call's case (POST /calls/{call_id}/...): each label change with its piece, and when it escalated.
    call_timeline: Mapped[Optional[list[dict[str, Any]]]] = mapped_column(JSON)
    escalated_at: Mapped[Optional[datetime]] = mapped_column(DateTime(timezone=True))


class Feedback(Base):
    """The current feedback for one case and task; every version is also in ``feedback_history``."""

    __tablename__ = "feedback"
    __table_args__ = (UniqueConstraint("case_id", "task", name="uq_feedback_case_task"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[str] = mapped_column(ForeignKey("cases.id", ondelete="CASCADE"), index=True)
    task: Mapped[str] = mapped_column(String(32))
    call_id: Mapped[Optional[str]] = mapped_column(String(ID_CHARS), index=True)
    corrections: Mapped[dict[str, Any]] = mapped_column(JSON)
    rating: Mapped[Optional[int]] = mapped_column(Integer)
    reason: Mapped[Optional[str]] = mapped_column(Text)
    reviewer: Mapped[Optional[str]] = mapped_column(String(LABEL_CHARS))
    narrative: Mapped[Optional[str]] = mapped_column(Text)
    model_id: Mapped[str] = mapped_column(String(512))
    model_revision: Mapped[Optional[str]] = mapped_column(String(ID_CHARS))
    source: Mapped[str] = mapped_column(String(32))  # "feedback" or "openchs"
    version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class FeedbackHistory(Base):
    """Every version of every feedback, the current one included. No narrative text here."""

    __tablename__ = "feedback_history"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    feedback_id: Mapped[int] = mapped_column(ForeignKey("feedback.id", ondelete="CASCADE"), index=True)
    case_id: Mapped[str] = mapped_column(String(36))
    task: Mapped[str] = mapped_column(String(32))
    version: Mapped[int] = mapped_column(Integer)
    corrections: Mapped[dict[str, Any]] = mapped_column(JSON)
    rating: Mapped[Optional[int]] = mapped_column(Integer)
    reason: Mapped[Optional[str]] = mapped_column(Text)
    reviewer: Mapped[Optional[str]] = mapped_column(String(LABEL_CHARS))
    source: Mapped[str] = mapped_column(String(32))
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class AuditEvent(Base):
    """One audited call (``deployments/core/audit.py``): who, which route, which cases, when, the outcome.
    Never a body, a query string or any text the caller wrote."""

    __tablename__ = "audit_events"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # uuid4 hex, made by the ingress
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    key_name: Mapped[Optional[str]] = mapped_column(String(LABEL_CHARS), index=True)  # null: no valid key (401)
    role: Mapped[Optional[str]] = mapped_column(String(32))
    route: Mapped[str] = mapped_column(String(LABEL_CHARS), index=True)  # "GET /cases/{id}"
    permission: Mapped[str] = mapped_column(String(32))
    subject: Mapped[Optional[str]] = mapped_column(String(ID_CHARS), index=True)  # the id the request named
    case_ids: Mapped[list[str]] = mapped_column(JSON)  # the case ids the answer carried
    status: Mapped[int] = mapped_column(Integer)
    error_code: Mapped[Optional[str]] = mapped_column(String(64))
    request_id: Mapped[Optional[str]] = mapped_column(String(ID_CHARS))


class AuditCase(Base):
    """One case id of one audited call, so the trail can be searched by case."""

    __tablename__ = "audit_cases"

    event_id: Mapped[str] = mapped_column(ForeignKey("audit_events.id", ondelete="CASCADE"), primary_key=True)
    case_id: Mapped[str] = mapped_column(String(ID_CHARS), primary_key=True, index=True)
class CallSession(Base):
    """A live call between its pieces (``deployments/core/calls.py``): tokens and probabilities while it is
    open, only its text-free summary once closed. ``version`` makes each piece's write conditional."""

    __tablename__ = "call_sessions"

    call_id: Mapped[str] = mapped_column(String(ID_CHARS), primary_key=True)
    status: Mapped[str] = mapped_column(String(16))
    version: Mapped[int] = mapped_column(Integer)
    state: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
