"""``CaseStore``: every read and write of the case record and the feedback.

One engine per store. SQLite (the embedded default) runs in WAL mode with a
busy timeout, so several replicas on one machine can share the file;
PostgreSQL is reached with psycopg 3 (a plain ``postgresql://`` URL is read as
``postgresql+psycopg://``). The schema is brought to the latest Alembic
revision when the store opens. Narrative text is stored only where the
caller passes it (``feedback.keep_narratives``, or a narrative sent with the
feedback) and ``purge_narratives`` deletes it past the retention period.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, func, insert, select, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from deployments.core import reports
from deployments.core.errors import ServiceError
from deployments.core.labels import TASKS
from deployments.core.review import Deadlines, review_fields
from deployments.core.store import audit_log, report_counts
from deployments.core.openchs import PROCESSING_MODE, flat_prediction
from deployments.core.store.stats import StatRow, agreement, feedback_stats
from deployments.core.store.tables import CallSession, Case, Feedback, FeedbackHistory, aware

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
CLASSIFICATION = "classification"  # the feedback task of the four labels (OpenCHS's name for it)
PREDICTED_TASKS = ("main_category", "sub_category", "sub_category_2", "intervention", "priority")
MIGRATION_LOCK = 0x43485331  # pg_advisory_xact_lock key: one replica migrates at a time


class CaseNotFound(ServiceError):
    """No case has this id: the caller's 404."""

    def __init__(self, ref: str | None = None):
        err = ServiceError.case_not_found()
        super().__init__(err.status, err.code, err.message)


class AmbiguousCase(ServiceError):
    """A request id that names several cases (a batch): ask by case id or call id. The caller's 409."""

    def __init__(self, ref: str | None = None):
        err = ServiceError.ambiguous_case()
        super().__init__(err.status, err.code, err.message)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _iso(value: Optional[datetime]) -> Optional[str]:
    value = aware(value)
    return value.isoformat() if value is not None else None


def normalize_url(url: str) -> str:
    """SQLAlchemy's URL for a standard one: ``postgresql://`` and ``postgres://`` use psycopg 3."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def redacted(url: str) -> str:
    """The URL with its password hidden, fit for a log line."""
    return make_url(url).render_as_string(hide_password=True)


def model_version(model_id: str, revision: Optional[str]) -> str:
    return f"{model_id}@{revision or ''}"


@dataclass(frozen=True)
class ExportResult:
    examples: list[dict]
    skipped_without_narrative: int


class CaseStore:
    def __init__(self, url: str):
        self.url = normalize_url(url)
        parsed = make_url(self.url)
        self.dialect = parsed.get_backend_name()
        if self.dialect == "sqlite":
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            self.engine: Engine = create_engine(self.url, connect_args={"timeout": 30})
            event.listen(self.engine, "connect", _sqlite_pragmas)
        else:
            self.engine = create_engine(self.url, pool_pre_ping=True, pool_size=5, max_overflow=5)
        self.migrate()

    # -- schema ----------------------------------------------------------------------------------

    def migrate(self) -> None:
        """Bring the schema to the latest revision (several replicas starting at once: one wins, the rest wait)."""
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        for attempt in range(5):
            try:
                with self.engine.begin() as connection:
                    if self.dialect == "postgresql":
                        connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK})
                    config.attributes["connection"] = connection
                    command.upgrade(config, "head")
                return
            except (OperationalError, IntegrityError):
                if attempt == 4:
                    raise
                time.sleep(0.2 * (attempt + 1))  # another replica was migrating the SQLite file

    def revision(self) -> Optional[str]:
        with self.engine.connect() as connection:
            return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()

    def close(self) -> None:
        self.engine.dispose()

    # -- cases -----------------------------------------------------------------------------------

    def add_cases(self, records: Sequence[Mapping[str, Any]]) -> None:
        if not records:
            return
        with Session(self.engine) as session, session.begin():
            session.execute(insert(Case), [dict(r) for r in records])

    def _find(self, session: Session, ref: str) -> Case:
        for column in (Case.id, Case.call_id, Case.task_id, Case.request_id):
            found = session.scalars(select(Case).where(column == ref).order_by(Case.created_at.desc()).limit(2)).all()
            if not found:
                continue
            if column is Case.request_id and len(found) > 1 and found[0].batch_index is not None:
                raise AmbiguousCase(ref)
            return found[0]
        raise CaseNotFound(ref)

    def get_case(self, ref: str) -> dict:
        """The record for a case id, call id, task id or request id (latest first); CaseNotFound otherwise."""
        with Session(self.engine) as session:
            case = self._find(session, ref)
            current = session.scalars(select(Feedback).where(Feedback.case_id == case.id)).all()
            return {**case_dict(case), "feedback": [self._feedback_dict(session, f, case) for f in current]}

    # -- live call sessions (deployments/core/calls.py) -------------------------------------------

    def get_call(self, call_id: str) -> Optional[dict]:
        """``{"state", "version"}`` of a call, or None when it never sent a piece."""
        with Session(self.engine) as session:
            row = session.get(CallSession, call_id)
            return None if row is None else {"state": row.state, "version": row.version}

    def save_call(self, call_id: str, state: Mapping[str, Any], version: int, now: Optional[datetime] = None) -> bool:
        """Write the call's state if it is still at ``version`` (0: new); False when another piece won."""
        now = now or utcnow()
        values = {"status": state["status"], "state": dict(state), "version": version + 1, "updated_at": now}
        try:
            with Session(self.engine) as session, session.begin():
                if version == 0:
                    session.execute(insert(CallSession), [{"call_id": call_id, **values}])
                    return True
                done = session.execute(update(CallSession).where(CallSession.call_id == call_id,
                                                                 CallSession.version == version).values(**values))
                if done.rowcount != 1:
                    return False
        except IntegrityError:
            return False
        if state["status"] != "open":
            self._forget_old_versions()
        return True

    def _forget_old_versions(self) -> None:
        """Once a call closes, the copies of its open state's pages that the database still holds go too:
        SQLite's write-ahead log is checkpointed and truncated (the rows themselves were zeroed in place,
        secure_delete); PostgreSQL's dead row versions go at the table's next vacuum."""
        if self.dialect != "sqlite":
            return
        try:
            with self.engine.connect() as connection:
                connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        except OperationalError:
            pass  # a reader held the log: the next close truncates it

    def idle_calls(self, idle_since: datetime, limit: int = 100) -> list[str]:
        """Open calls whose last piece came before ``idle_since``, oldest first."""
        with Session(self.engine) as session:
            return list(session.scalars(select(CallSession.call_id).where(
                CallSession.status == "open", CallSession.updated_at < idle_since)
                .order_by(CallSession.updated_at).limit(limit)))

    # -- feedback --------------------------------------------------------------------------------

    def put_feedback(self, ref: str, *, corrections: Optional[Mapping[str, Any]] = None, rating: Optional[int] = None,
                     reason: Optional[str] = None, reviewer: Optional[str] = None, narrative: Optional[str] = None,
                     task: str = CLASSIFICATION, source: str = "feedback", merge: bool = False,
                     now: Optional[datetime] = None) -> dict:
        """Store the feedback for a case (a second one replaces the first, which stays in the history).

        ``merge``: fields left None keep the current feedback's values (OpenCHS's rating update).
        """
        for attempt in range(2):
            try:
                return self._put_feedback(ref, corrections, rating, reason, reviewer, narrative, task, source, merge,
                                          now or utcnow())
            except IntegrityError:  # two first feedbacks for one case at once: the second becomes an update
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def _put_feedback(self, ref, corrections, rating, reason, reviewer, narrative, task, source, merge, now) -> dict:
        with Session(self.engine) as session, session.begin():
            case = self._find(session, ref)
            query = select(Feedback).where(Feedback.case_id == case.id, Feedback.task == task)
            if self.dialect == "postgresql":
                query = query.with_for_update()
            current = session.scalars(query).first()
            if current is not None and merge:
                corrections = current.corrections if corrections is None else corrections
                rating = current.rating if rating is None else rating
                reason = current.reason if reason is None else reason
                reviewer = current.reviewer if reviewer is None else reviewer
                narrative = current.narrative if narrative is None else narrative
            values = dict(corrections=dict(corrections or {}), rating=rating, reason=reason, reviewer=reviewer,
                          narrative=narrative, source=source, updated_at=now)
            if current is None:
                current = Feedback(case_id=case.id, task=task, call_id=case.call_id, model_id=case.model_id,
                                   model_revision=case.model_revision, version=1, created_at=now, **values)
                session.add(current)
            else:
                for key, value in values.items():
                    setattr(current, key, value)
                current.version += 1
            session.flush()
            session.add(FeedbackHistory(feedback_id=current.id, case_id=case.id, task=task, version=current.version,
                                        corrections=values["corrections"], rating=rating, reason=reason,
                                        reviewer=reviewer, source=source, recorded_at=now))
            session.flush()
            return self._feedback_dict(session, current, case)

    def feedback_for_call(self, call_id: str, task: Optional[str] = None) -> list[dict]:
        with Session(self.engine) as session:
            query = select(Feedback, Case).join(Case, Feedback.case_id == Case.id).where(Case.call_id == call_id)
            if task:
                query = query.where(Feedback.task == task)
            return [self._feedback_dict(session, f, c) for f, c in session.execute(query.order_by(Feedback.id)).all()]

    def openchs_call(self, call_id: str, task: Optional[str] = None) -> list[dict]:
        """OpenCHS's ``GET /call/{call_id}``: the call's feedback entries in their shape.

        The call is named as ``/update`` names it: by call id, else a task id or case id (a case queued through
        ``/classifier/classify`` without a call id is rated and read back by its task id)."""
        with Session(self.engine) as session:
            for column in (Case.call_id, Case.task_id, Case.id):
                query = select(Feedback, Case).join(Case, Feedback.case_id == Case.id).where(column == call_id)
                if task:
                    query = query.where(Feedback.task == task)
                rows = session.execute(query.order_by(Feedback.id)).all()
                if rows:
                    return [openchs_feedback(self._feedback_dict(session, f, c), case_dict(c), call_id)
                            for f, c in rows]
        return []

    def openchs_update(self, call_id: str, rating: int, reason: Optional[str]) -> dict:
        """OpenCHS's ``POST /update``: rate the latest case of the call; corrections already given stay."""
        stored = self.put_feedback(call_id, rating=rating, reason=reason, source="openchs", merge=True)
        with Session(self.engine) as session:
            case = case_dict(session.get(Case, stored["case_id"]))
        return openchs_feedback(stored, case, call_id)

    def openchs_statistics(self, days: int, task: Optional[str] = None, now: Optional[datetime] = None) -> dict:
        """OpenCHS's ``GET /statistics``: per task, predictions made and how they were rated."""
        since = (now or utcnow()) - timedelta(days=days)
        out: dict[str, Any] = {"period_days": days, "tasks": {}}
        if task not in (None, CLASSIFICATION):
            return out
        with Session(self.engine) as session:
            total = session.scalar(select(func.count(Case.id)).where(Case.created_at >= since)) or 0
            ratings = session.scalars(select(Feedback.rating).where(
                Feedback.task == CLASSIFICATION, Feedback.updated_at >= since, Feedback.rating.is_not(None))).all()
        if total or ratings:
            out["tasks"][CLASSIFICATION] = {
                "total_predictions": total, "rated_predictions": len(ratings),
                "rating_coverage": round(len(ratings) / total * 100, 2) if total else 0,
                "average_rating": round(sum(ratings) / len(ratings), 2) if ratings else None,
                "min_rating": min(ratings) if ratings else None, "max_rating": max(ratings) if ratings else None,
            }
        return out

    def _feedback_dict(self, session: Session, fb: Feedback, case: Case) -> dict:
        predicted = predicted_labels(case)
        final = final_labels(predicted, fb.corrections)
        history = session.scalars(select(FeedbackHistory).where(FeedbackHistory.feedback_id == fb.id)
                                  .order_by(FeedbackHistory.version)).all()
        return {
            "id": fb.id, "case_id": case.id, "call_id": case.call_id, "task": fb.task,
            "corrections": dict(fb.corrections), "labels": final, "predicted": predicted,
            "agreed": agreement(predicted, final), "rating": fb.rating, "reason": fb.reason,
            "reviewer": fb.reviewer, "narrative_stored": fb.narrative is not None,
            "model": {"id": fb.model_id, "revision": fb.model_revision}, "source": fb.source, "version": fb.version,
            "created_at": _iso(fb.created_at), "updated_at": _iso(fb.updated_at),
            "history": [{"version": h.version, "corrections": dict(h.corrections), "rating": h.rating,
                         "reason": h.reason, "reviewer": h.reviewer, "source": h.source,
                         "recorded_at": _iso(h.recorded_at)} for h in history],
        }

    # -- live accuracy, export, retention --------------------------------------------------------------

    def _current_feedback(self, session: Session, since: datetime, model: Optional[str]):
        query = (select(Feedback, Case).join(Case, Feedback.case_id == Case.id)
                 .where(Feedback.task == CLASSIFICATION, Feedback.updated_at >= since).order_by(Feedback.id))
        for fb, case in session.execute(query).all():
            version = model_version(fb.model_id, fb.model_revision)
            if model and model not in (version, fb.model_id):
                continue
            yield fb, case, version

    def stats(self, days: int, model: Optional[str] = None, now: Optional[datetime] = None) -> dict:
        since = (now or utcnow()) - timedelta(days=days)
        with Session(self.engine) as session:
            rows = []
            for fb, case, version in self._current_feedback(session, since, model):
                predicted = predicted_labels(case)
                rows.append(StatRow(version, predicted, final_labels(predicted, fb.corrections), fb.rating))
        return {"days": days, "model": model, "since": since.isoformat(), **feedback_stats(rows)}

    def export(self, since: datetime, model: Optional[str] = None) -> ExportResult:
        """Training examples: the narrative with the corrected labels (uncorrected tasks keep the model's)."""
        examples, skipped = [], 0
        with Session(self.engine) as session:
            for fb, case, version in self._current_feedback(session, since, model):
                narrative = fb.narrative or case.narrative
                if not narrative:
                    skipped += 1
                    continue
                labels = final_labels(predicted_labels(case), fb.corrections)
                examples.append({"narrative": narrative, **{t: labels[t] for t in TASKS}, "case_id": case.id,
                                 "model": version, "corrected": sorted(k for k in fb.corrections if k in TASKS)})
        return ExportResult(examples, skipped)

    def purge_narratives(self, retention_days: int, now: Optional[datetime] = None) -> int:
        """Delete stored narrative text older than the retention period; the number of texts deleted."""
        cutoff = (now or utcnow()) - timedelta(days=retention_days)
        with Session(self.engine) as session, session.begin():
            cases = session.execute(update(Case).where(Case.created_at < cutoff, Case.narrative.is_not(None))
                                    .values(narrative=None)).rowcount
            feedback = session.execute(update(Feedback).where(Feedback.updated_at < cutoff,
                                                              Feedback.narrative.is_not(None))
                                       .values(narrative=None)).rowcount
        return int(cases or 0) + int(feedback or 0)

    # -- the audit trail and the anonymous reports (store/audit_log.py, store/report_counts.py) --------

    def add_audit(self, rows: Sequence[Mapping[str, Any]]) -> None:
        audit_log.add_events(self.engine, rows)

    def audit_events(self, where: audit_log.AuditFilter) -> dict:
        return audit_log.list_events(self.engine, where)

    def report_summary(self, first: Optional[date], last: Optional[date], period: str, by: Sequence[str],
                       min_count: int, now: Optional[datetime] = None) -> dict:
        """Case counts per period by ``by`` from first to last (UTC days, included; default the last 12 weeks)."""
        last = last or (now or utcnow()).date()
        first = first or last - timedelta(weeks=12) + timedelta(days=1)
        if first > last:
            raise ServiceError.invalid("'from' is after 'to'.")
        try:
            report_periods = reports.period_starts(first, last, period)
            if len(report_periods) > reports.MAX_PERIODS:
                raise ValueError(f"{len(report_periods)} {period}s; at most {reports.MAX_PERIODS} in one report")
        except ValueError as exc:
            raise ServiceError.invalid(str(exc)) from None
        summary = reports.summarize(report_counts.day_counts(self.engine, first, last), first=first, last=last,
                                    period=period, by=by, min_count=min_count, chi=reports.ChiMap.bundled())
        return {"from": first.isoformat(), "to": last.isoformat(), "period": period, "by": list(by),
                "min_count": min_count, **summary}


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    # Deleted and rewritten rows are zeroed on disk, not left in free pages: a closed call's transcript
    # and a purged narrative are gone from the file, not only from the table.
    cursor.execute("PRAGMA secure_delete=ON")
    cursor.close()


def predicted_labels(case: Case) -> dict:
    return {task: getattr(case, task) for task in TASKS}


def final_labels(predicted: Mapping[str, Any], corrections: Mapping[str, Any]) -> dict:
    return {task: corrections.get(task, predicted[task]) for task in TASKS}


def case_dict(case: Case) -> dict:
    """The record as GET /cases/{id} answers it."""
    return {
        "case_id": case.id, "request_id": case.request_id, "task_id": case.task_id, "call_id": case.call_id,
        "batch_index": case.batch_index, "created_at": _iso(case.created_at),
        "model": {"id": case.model_id, "revision": case.model_revision},
        "classification": {task: {"label": getattr(case, task), "confidence": getattr(case, f"{task}_confidence")}
                           for task in PREDICTED_TASKS},
        "routing": {"queue": case.queue, "escalate": case.escalate, "human_review": case.human_review,
                    "reasons": list(case.reasons), "signals": list(case.signals or [])},
        "language": case.language,
        "chunks": case.chunks, "tokens": case.tokens, "truncated": case.truncated,
        "chunk_details": list(case.chunk_details), "narrative_stored": case.narrative is not None,
        "timeline": list(case.call_timeline) if case.call_timeline is not None else None,
        "escalated_at": _iso(case.escalated_at),
    }


def case_row(*, case_id: str, request_id: Optional[str], call_id: Optional[str], task_id: Optional[str],
             batch_index: Optional[int], created_at: datetime, model_id: str, model_revision: Optional[str],
             result: Mapping[str, Any], narrative: Optional[str], deadlines: Optional[Deadlines] = None,
             call_timeline: Optional[list] = None, escalated_at: Optional[datetime] = None) -> dict:
    """A ``cases`` row from a case result rendered with confidences and chunk details (a live call's
    with its timeline and escalation time).

    A case sent to review enters the worklist open, due by ``deadlines`` (default: review.deadlines' defaults).
    """
    c = result["classification"]
    row = {"id": case_id, "request_id": request_id, "call_id": call_id, "task_id": task_id,
           "batch_index": batch_index, "created_at": created_at, "model_id": model_id,
           "model_revision": model_revision, "narrative": narrative, "call_timeline": call_timeline,
           "escalated_at": escalated_at}
    for task in PREDICTED_TASKS:
        row[task] = c[task]["label"]
        row[f"{task}_confidence"] = float(c[task]["confidence"])
    r = result["routing"]
    row.update(queue=r["queue"], escalate=bool(r["escalate"]), human_review=bool(r["human_review"]),
               reasons=list(r["reasons"]),
               # The record keeps where the evidence is, never the words found there.
               signals=[{**s, "text": None} for s in r.get("signals") or []],
               language=(result.get("language") or {}).get("code"), chunks=int(result["chunks"]), tokens=int(result["tokens"]),
               truncated=bool(result["truncated"]),
               chunk_details=[{"index": d["index"], "token_span": list(d["token_span"]),
                               "classification": {t: {"label": d["classification"][t]["label"],
                                                      "confidence": float(d["classification"][t]["confidence"])}
                                                  for t in PREDICTED_TASKS}}
                              for d in result.get("chunk_details") or []])
    row.update(review_fields(human_review=row["human_review"], escalate=row["escalate"], priority=row["priority"],
                             created_at=created_at, deadlines=deadlines))
    return row


def call_fields(meta: Mapping[str, Any]) -> dict:
    """A live call's case record's extra columns, from the Router's ``meta`` (none for other cases)."""
    if "call_timeline" not in meta:
        return {}
    at = meta.get("escalated_at")
    return {"call_timeline": meta["call_timeline"], "escalated_at": datetime.fromisoformat(at) if at else None}


# -- OpenCHS's agent-feedback shapes (ai_service/app/api/agent_feedback_routes.py; the prediction as their
# classifier_model.py's classify() returns it) ------------------------------------------------------------

def openchs_feedback(fb: Mapping[str, Any], case: Mapping[str, Any], named: str) -> dict:
    """One of our feedback records as OpenCHS's ``FeedbackResponse``; ``named``: the id the caller named the call by."""
    return {"id": fb["id"], "call_id": fb["call_id"] or named, "task": fb["task"],
            "prediction": flat_prediction(case["classification"]),
            "feedback": fb["rating"], "reason": fb["reason"], "created_at": fb["created_at"],
            "updated_at": fb["updated_at"], "processing_mode": PROCESSING_MODE,
            "model_version": model_version(fb["model"]["id"], fb["model"]["revision"])}
