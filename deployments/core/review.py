"""The worklist's rules, free of the database: deadlines, order, cursors. Pure.

A case the router sent to human review (every escalated case is one) enters the worklist
``open``; a supervisor claims it (``claimed``, by the key's name), may release it (``open``
again) and resolves it with corrections (``resolved``). Its ``due_at`` is fixed when the
case is recorded, from ``review.deadlines`` (``deployments/core/config.py``): an escalation
in a minute, else by priority, from OpenCHS's written deadlines.

The worklist's order is the urgency: escalated cases first, then the earliest ``due_at``,
then the oldest, then the case id (so the order is total and a cursor can resume it).
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Optional

from deployments.core.config import ReviewDeadlinesArgs
from deployments.core.errors import ServiceError
from deployments.core.store.tables import aware

OPEN, CLAIMED, RESOLVED = "open", "claimed", "resolved"
STATUSES = (OPEN, CLAIMED, RESOLVED)
# What the worklist shows when no status is asked for: the work not yet done.
UNRESOLVED = (OPEN, CLAIMED)


class Deadlines:
    """``due_at`` of a case from its creation, escalation and priority."""

    def __init__(self, args: Optional[ReviewDeadlinesArgs] = None):
        self.args = args or ReviewDeadlinesArgs()

    def seconds(self, escalate: bool, priority: int) -> int:
        if escalate:
            return self.args.escalated_s
        return self.args.priority_s.get(int(priority), self.args.default_s)

    def due_at(self, created_at: datetime, escalate: bool, priority: int) -> datetime:
        return created_at + timedelta(seconds=self.seconds(escalate, priority))


def review_fields(*, human_review: bool, escalate: bool, priority: int, created_at: datetime,
                  deadlines: Optional[Deadlines] = None) -> dict:
    """The review columns of a new case row: open with its deadline, or none for a case that needs no review."""
    if not (human_review or escalate):
        return {"review_status": None, "due_at": None}
    return {"review_status": OPEN,
            "due_at": (deadlines or Deadlines()).due_at(created_at, escalate, priority)}


def is_overdue(status: Optional[str], due_at: Optional[datetime], now: datetime) -> bool:
    return status in UNRESOLVED and due_at is not None and aware(due_at) < now


@dataclass(frozen=True)
class Position:
    """Where a page of the worklist ended: the last item's sort key."""

    escalate: bool
    due_at: datetime
    created_at: datetime
    case_id: str

    def encode(self) -> str:
        raw = json.dumps([int(self.escalate), aware(self.due_at).isoformat(), aware(self.created_at).isoformat(),
                          self.case_id], separators=(",", ":"))
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, cursor: str) -> "Position":
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
            escalate, due_at, created_at, case_id = json.loads(raw)
            return cls(bool(escalate), aware(datetime.fromisoformat(due_at)),
                       aware(datetime.fromisoformat(created_at)), str(case_id))
        except (binascii.Error, ValueError, TypeError, UnicodeDecodeError):
            raise ServiceError.invalid("'cursor' is not a cursor this service gave out; start again without it.",
                                       code="invalid_cursor") from None


def gauge_values(counts: list[dict], seen: set[tuple]) -> tuple[dict[tuple, int], dict[tuple, int]]:
    """The worklist gauges' values from ``Worklist.counts``: cases by (queue, priority, escalated, status),
    overdue by (queue, priority, escalated). A tag set in ``seen`` that is no longer counted reads 0, so a
    dashboard never keeps showing the last count of a queue that emptied."""
    cases: dict[tuple, int] = {}
    overdue: dict[tuple, int] = {}
    for c in counts:
        tags = (c["queue"], str(c["priority"]), "true" if c["escalate"] else "false")
        cases[tags + (c["status"],)] = c["cases"]
        overdue[tags] = overdue.get(tags, 0) + c["overdue"]
    for key in seen - set(cases) - set(overdue):
        (cases if len(key) == 4 else overdue)[key] = 0
    return cases, overdue


def conflict(message: str) -> ServiceError:
    """A worklist action the case's state forbids (claimed by another, already resolved, never in review)."""
    return ServiceError(409, "review_conflict", message)
