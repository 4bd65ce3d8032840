"""The audit trail's table: rows written in batches by the Router's writer, read newest first with filters.

A page is at most ``limit`` rows; ``next_cursor`` (the last row's time and id) asks for the one after,
so a page never repeats or skips a row while new rows arrive.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Mapping, Optional, Sequence

from sqlalchemy import Engine, and_, insert, or_, select
from sqlalchemy.orm import Session

from deployments.core.errors import ServiceError
from deployments.core.store.tables import AuditCase, AuditEvent, aware


@dataclass(frozen=True)
class AuditFilter:
    key_name: Optional[str] = None
    role: Optional[str] = None
    route: Optional[str] = None
    case_id: Optional[str] = None  # the id the request named, or one of the case ids it answered with
    status: Optional[int] = None
    since: Optional[datetime] = None  # included
    until: Optional[datetime] = None  # excluded
    limit: int = 100
    cursor: Optional[str] = None


def encode_cursor(at: datetime, event_id: str) -> str:
    return f"{aware(at).isoformat()},{event_id}"


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    at, sep, event_id = cursor.rpartition(",")
    try:
        if not sep or not event_id:
            raise ValueError
        at_time = datetime.fromisoformat(at)
        return aware(at_time).astimezone(timezone.utc), event_id
    except (ValueError, OverflowError):
        raise ServiceError.invalid("'cursor' is not one this service gave out (next_cursor of a page).") from None


def add_events(engine: Engine, rows: Sequence[Mapping]) -> None:
    """One transaction for a batch of ``audit_row``s and their case ids."""
    if not rows:
        return
    cases = [{"event_id": r["id"], "case_id": case_id} for r in rows for case_id in r["case_ids"]]
    with Session(engine) as session, session.begin():
        session.execute(insert(AuditEvent), [dict(r) for r in rows])
        if cases:
            session.execute(insert(AuditCase), cases)


def event_dict(event: AuditEvent) -> dict:
    return {"id": event.id, "at": aware(event.at).isoformat(), "key_name": event.key_name, "role": event.role,
            "route": event.route, "permission": event.permission, "subject": event.subject,
            "case_ids": list(event.case_ids), "status": event.status, "error_code": event.error_code,
            "request_id": event.request_id}


def list_events(engine: Engine, where: AuditFilter) -> dict:
    """``{"events": [...], "next_cursor": str | None}``, newest first."""
    query = select(AuditEvent)
    for column, value in ((AuditEvent.key_name, where.key_name), (AuditEvent.role, where.role),
                          (AuditEvent.route, where.route), (AuditEvent.status, where.status)):
        if value is not None:
            query = query.where(column == value)
    if where.case_id is not None:
        query = query.where(or_(AuditEvent.subject == where.case_id, AuditEvent.id.in_(
            select(AuditCase.event_id).where(AuditCase.case_id == where.case_id))))
    if where.since is not None:
        query = query.where(AuditEvent.at >= where.since)
    if where.until is not None:
        query = query.where(AuditEvent.at < where.until)
    if where.cursor is not None:
        at, event_id = decode_cursor(where.cursor)
        query = query.where(or_(AuditEvent.at < at, and_(AuditEvent.at == at, AuditEvent.id < event_id)))
    query = query.order_by(AuditEvent.at.desc(), AuditEvent.id.desc()).limit(where.limit + 1)
    with Session(engine) as session:
        found = session.scalars(query).all()
    page = found[:where.limit]
    more = len(found) > where.limit
    return {"events": [event_dict(e) for e in page],
            "next_cursor": encode_cursor(page[-1].at, page[-1].id) if more else None}
