"""Case counts per day and label combination, for the anonymous reports (``deployments/core/reports.py``).

The database counts (one row per day and combination, never per case); the day is taken in UTC, the
zone the records are written in, on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from deployments.core.reports import DayCount
from deployments.core.store.tables import Case


def day_counts(engine: Engine, first: date, last: date) -> list[DayCount]:
    """Counts of the cases created on the days first..last (both included, UTC)."""
    if engine.dialect.name == "postgresql":
        day = func.date(func.timezone("UTC", Case.created_at))
    else:  # SQLite keeps the UTC time as text: its date() reads the day off it
        day = func.date(Case.created_at)
    dims = (Case.main_category, Case.sub_category, Case.priority, Case.queue, Case.language)
    since = datetime.combine(first, time.min, tzinfo=timezone.utc)
    until = datetime.combine(last + timedelta(days=1), time.min, tzinfo=timezone.utc)
    query = (select(day.label("day"), *dims, func.count().label("n"))
             .where(Case.created_at >= since, Case.created_at < until).group_by(day, *dims))
    with Session(engine) as session:
        rows = session.execute(query).all()
    return [DayCount(r.day if isinstance(r.day, date) else date.fromisoformat(str(r.day)), r.main_category,
                     r.sub_category, int(r.priority), r.queue, r.language, int(r.n)) for r in rows]
