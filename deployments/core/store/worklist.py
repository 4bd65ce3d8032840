"""``Worklist``: the supervisors' worklist over the case record (``/review*``).

Reads go through the case store's engine. Every change of review state goes through a
writing engine of its own, so that a claim is atomic on both databases:

* SQLite: each transaction starts ``BEGIN IMMEDIATE`` (the write lock first, waiting up to the
  busy timeout), so the read that picks the case and the update that claims it see one state;
* PostgreSQL: the pick is ``SELECT ... FOR UPDATE SKIP LOCKED``, so two supervisors asking at
  once lock different rows, and the update re-checks the status.

Either way the update is conditional (``WHERE review_status = 'open'``) and a claim that
finds its row taken tries the next one. Resolving writes the same feedback as ``POST
/feedback`` (``CaseStore.put_feedback``), so live accuracy counts it. Clock: every method
takes ``now`` (tests pass their own).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Callable, Mapping, Optional

from sqlalchemy import and_, case, create_engine, event, false, func, or_, select, update
from sqlalchemy.orm import Session

from deployments.core.review import CLAIMED, OPEN, RESOLVED, UNRESOLVED, Position, conflict, is_overdue
from deployments.core.store.repository import CaseNotFound, CaseStore, _iso, _sqlite_pragmas, utcnow
from deployments.core.store.tables import Case, aware

# A claim whose picked row was taken meanwhile tries again, at most this many times.
CLAIM_ATTEMPTS = 20
DONE = {"claim": "claimed", "release": "released", "resolve": "resolved"}
ORDER = (Case.escalate.desc(), Case.due_at, Case.created_at, Case.id)


def _begin_immediate(connection) -> None:
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def _sqlite_autocommit(dbapi_connection, record) -> None:
    # pysqlite's own implicit BEGIN is switched off so that ours, IMMEDIATE, is the one that runs.
    dbapi_connection.isolation_level = None
    _sqlite_pragmas(dbapi_connection, record)


def review_item(case: Case, now: datetime) -> dict:
    """One worklist entry (the contract's ``ReviewItem``)."""
    return {
        "case_id": case.id, "call_id": case.call_id, "queue": case.queue,
        "labels": {"main_category": case.main_category, "sub_category": case.sub_category,
                   "intervention": case.intervention, "priority": case.priority},
        "priority": case.priority, "escalate": bool(case.escalate), "reasons": list(case.reasons),
        "signals": list(case.signals or []), "created_at": _iso(case.created_at), "due_at": _iso(case.due_at),
        "overdue": is_overdue(case.review_status, case.due_at, now), "status": case.review_status,
        "claimed_by": case.claimed_by, "claimed_at": _iso(case.claimed_at), "resolved_by": case.resolved_by,
        "resolved_at": _iso(case.resolved_at),
    }


# Told (escalated, seconds since the case was created) at each claim and each resolve that happens.
Observer = Callable[[bool, float], None]


def _ignore(escalated: bool, seconds: float) -> None:
    pass


class Worklist:
    def __init__(self, store: CaseStore, *, on_claim: Observer = _ignore, on_resolve: Observer = _ignore):
        self.store = store
        self.on_claim, self.on_resolve = on_claim, on_resolve
        if store.dialect == "sqlite":
            self.writer = create_engine(store.url, connect_args={"timeout": 30})
            event.listen(self.writer, "connect", _sqlite_autocommit)
            event.listen(self.writer, "begin", _begin_immediate)
        else:
            self.writer = store.engine

    def close(self) -> None:
        if self.writer is not self.store.engine:
            self.writer.dispose()

    # -- reading -------------------------------------------------------------------------------------

    def list(self, *, queue: Optional[str] = None, status: Optional[str] = None, priority: Optional[int] = None,
             overdue: Optional[bool] = None, cursor: Optional[str] = None, limit: int = 50,
             now: Optional[datetime] = None) -> dict:
        """A page of the worklist in its order, and the cursor of the next page (None at the end)."""
        now = now or utcnow()
        query = select(Case).where(*self._filters(queue, status, priority, overdue, now))
        if cursor:
            p = Position.decode(cursor)
            # Escalated cases come first: after an escalated position, the rest of them, then every other.
            later_group = Case.escalate.is_(False) if p.escalate else false()
            query = query.where(or_(
                later_group,
                and_(Case.escalate.is_(p.escalate), or_(
                    Case.due_at > p.due_at,
                    and_(Case.due_at == p.due_at, or_(
                        Case.created_at > p.created_at,
                        and_(Case.created_at == p.created_at, Case.id > p.case_id)))))))
        with Session(self.store.engine) as session:
            found = session.scalars(query.order_by(*ORDER).limit(limit + 1)).all()
            items = [review_item(c, now) for c in found[:limit]]
            last = found[limit - 1] if len(found) > limit else None
            next_cursor = (Position(bool(last.escalate), aware(last.due_at), aware(last.created_at), last.id).encode()
                           if last is not None else None)
        return {"items": items, "next_cursor": next_cursor}

    def item(self, case_id: str, *, now: Optional[datetime] = None) -> dict:
        """One case's worklist entry; 409 for a case never sent to review."""
        with Session(self.store.engine) as session:
            found = self._get(session, case_id)
            if found.review_status is None:
                raise self._refusal(found, "claim")
            return review_item(found, now or utcnow())

    @staticmethod
    def _filters(queue, status, priority, overdue, now) -> list:
        where = [Case.review_status == status] if status else [Case.review_status.in_(UNRESOLVED)]
        if queue is not None:
            where.append(Case.queue == queue)
        if priority is not None:
            where.append(Case.priority == priority)
        if overdue is True:
            where += [Case.review_status.in_(UNRESOLVED), Case.due_at < now]
        elif overdue is False:
            where.append(or_(Case.review_status == RESOLVED, Case.due_at >= now))
        return where

    def counts(self, now: Optional[datetime] = None) -> list[dict]:
        """Per queue, priority, escalation and status (open, claimed): cases, and how many are overdue."""
        now = now or utcnow()
        overdue = func.sum(case((Case.due_at < now, 1), else_=0))
        query = (select(Case.queue, Case.priority, Case.escalate, Case.review_status, func.count(), overdue)
                 .where(Case.review_status.in_(UNRESOLVED))
                 .group_by(Case.queue, Case.priority, Case.escalate, Case.review_status))
        with Session(self.store.engine) as session:
            return [{"queue": q, "priority": int(p), "escalate": bool(e), "status": s, "cases": int(n),
                     "overdue": int(o or 0)} for q, p, e, s, n, o in session.execute(query).all()]

    # -- changing review state -----------------------------------------------------------------------

    def claim_next(self, who: str, *, queue: Optional[str] = None, now: Optional[datetime] = None) -> Optional[dict]:
        """Claim the most urgent open case for ``who``; None when no case is open. Atomic (see above)."""
        now = now or utcnow()
        pick = select(Case.id).where(Case.review_status == OPEN, *([Case.queue == queue] if queue else []))
        pick = pick.order_by(*ORDER).limit(1)
        if self.store.dialect == "postgresql":
            pick = pick.with_for_update(skip_locked=True)
        for _ in range(CLAIM_ATTEMPTS):
            with Session(self.writer) as session, session.begin():
                case_id = session.scalar(pick)
                if case_id is None:
                    return None
                if self._set(session, case_id, (OPEN,), review_status=CLAIMED, claimed_by=who, claimed_at=now):
                    claimed = review_item(self._get(session, case_id), now)
                    break
        else:
            raise conflict("Every open case was claimed by others while this claim tried; ask again.")
        self._observe(self.on_claim, claimed, now)
        return claimed

    def claim(self, case_id: str, who: str, *, now: Optional[datetime] = None) -> dict:
        """Claim this case for ``who`` (again, if ``who`` holds it already)."""
        now = now or utcnow()
        with Session(self.writer) as session, session.begin():
            taken = self._set(session, case_id, (OPEN,), review_status=CLAIMED, claimed_by=who, claimed_at=now)
            current = self._get(session, case_id)
            if not taken and not (current.review_status == CLAIMED and current.claimed_by == who):
                raise self._refusal(current, "claim")
            item = review_item(current, now)
        if taken:  # claiming again what one holds is no new claim
            self._observe(self.on_claim, item, now)
        return item

    def release(self, case_id: str, who: str, *, now: Optional[datetime] = None) -> dict:
        """Put a claimed case back in the open list (any supervisor may: one who left holds none)."""
        now = now or utcnow()
        with Session(self.writer) as session, session.begin():
            if not self._set(session, case_id, (CLAIMED,), review_status=OPEN, claimed_by=None, claimed_at=None):
                raise self._refusal(self._get(session, case_id), "release")
            return review_item(self._get(session, case_id), now)

    def resolve(self, case_id: str, who: str, *, corrections: Optional[Mapping[str, Any]] = None,
                rating: Optional[int] = None, reason: Optional[str] = None,
                now: Optional[datetime] = None) -> dict:
        """Write the feedback (as ``POST /feedback`` does, reviewer ``who``) and mark the case resolved.

        An open case is claimed and resolved at once; a case another holds, or resolved already, is refused.
        """
        now = now or utcnow()
        with Session(self.writer) as session, session.begin():
            taken = self._set(session, case_id, (OPEN,), review_status=CLAIMED, claimed_by=who, claimed_at=now)
            current = self._get(session, case_id)
            if not taken and not (current.review_status == CLAIMED and current.claimed_by == who):
                raise self._refusal(current, "resolve")
        feedback = self.store.put_feedback(case_id, corrections=corrections, rating=rating, reason=reason,
                                           reviewer=who, now=now)
        with Session(self.writer) as session, session.begin():
            if not self._set(session, case_id, (CLAIMED,), review_status=RESOLVED, resolved_by=who, resolved_at=now):
                raise self._refusal(self._get(session, case_id), "resolve")
            item = review_item(self._get(session, case_id), now)
        if taken:
            self._observe(self.on_claim, item, now)
        self._observe(self.on_resolve, item, now)
        return {"item": item, "feedback": feedback}

    @staticmethod
    def _observe(observer: Observer, item: dict, now: datetime) -> None:
        observer(item["escalate"], (now - datetime.fromisoformat(item["created_at"])).total_seconds())

    @staticmethod
    def _set(session: Session, case_id: str, when: tuple[str, ...], **values: Any) -> bool:
        done = session.execute(update(Case).where(Case.id == case_id, Case.review_status.in_(when))
                               .values(**values).execution_options(synchronize_session=False))
        return done.rowcount == 1

    @staticmethod
    def _get(session: Session, case_id: str) -> Case:
        found = session.get(Case, case_id, populate_existing=True)
        if found is None:
            raise CaseNotFound(case_id)
        return found

    @staticmethod
    def _refusal(current: Case, action: str):
        if current.review_status is None:
            return conflict("This case was not sent to review.")
        if current.review_status == RESOLVED:
            return conflict(f"This case was resolved by {current.resolved_by}; it cannot be {DONE[action]}.")
        if current.review_status == CLAIMED:
            return conflict(f"This case is claimed by {current.claimed_by}.")
        return conflict(f"This case is open: claim it before you {action} it.")
