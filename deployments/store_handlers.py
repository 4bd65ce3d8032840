"""The ingress's handlers of the case-store routes: case reads, feedback, stats, export, OpenCHS's agent feedback,
the audit trail and the anonymous reports.

Each handler validates what only the ingress knows (the served labels), calls the Router's
``call_store`` with the ``CaseStore`` method's name, and shapes the contract's response. A
``ServiceError`` the store raised (404, 409) arrives here as itself (``deployments/ray_errors.py``).
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from typing import Any

from ray.serve.handle import DeploymentHandle

from deployments.core import contract
from deployments.core.errors import ServiceError
from deployments.core.labels import LabelSet
from deployments.core.pages import Page
from deployments.core.reports import to_csv
from deployments.core.store.audit_log import AuditFilter
from deployments.core.store.repository import CLASSIFICATION
from deployments.core.text import normalize_narrative
from deployments.ray_errors import backend_error


class CaseStoreHandlers:
    def __init__(self, router: DeploymentHandle, labels: LabelSet, timeout_s: float, report_min_count: int = 5):
        self.router = router
        self.labels = labels
        self.timeout_s = timeout_s
        self.report_min_count = report_min_count

    async def call_store(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """``CaseStore.<method>(...)`` run by the Router (``Router.call_store``); its errors as ``ServiceError``."""
        try:
            return await asyncio.wait_for(self.router.call_store.remote(method, *args, **kwargs), self.timeout_s)
        except Exception as exc:
            raise backend_error(exc) from None

    async def get_case(self, params: contract.CaseParams) -> contract.CaseResponse:
        return contract.CaseResponse(success=True, case=await self.call_store("get_case", params.id))

    async def feedback(self, body: contract.FeedbackRequest) -> contract.FeedbackResponse:
        corrections = contract.check_corrections(body.corrections, self.labels)
        stored = await self.call_store(
            "put_feedback", body.case_id, corrections=corrections, rating=body.rating, reason=body.reason,
            reviewer=body.reviewer,
            narrative=normalize_narrative(body.narrative) if body.narrative is not None else None)
        return contract.FeedbackResponse(success=True, feedback=stored)

    async def feedback_stats(self, params: contract.StatsParams) -> contract.FeedbackStats:
        return contract.FeedbackStats(success=True, **await self.call_store("stats", params.days, params.model))

    async def feedback_export(self, params: contract.ExportParams) -> contract.ExportResponse:
        since = datetime.combine(params.since, datetime.min.time(), tzinfo=timezone.utc)
        exported = await self.call_store("export", since, params.model)
        return contract.ExportResponse(success=True, since=since.isoformat(), examples=exported.examples,
                                       skipped_without_narrative=exported.skipped_without_narrative)

    async def openchs_feedback_update(self, body: contract.OpenChsFeedbackUpdate) -> contract.OpenChsFeedback:
        if body.task != CLASSIFICATION:  # their task names are all accepted; this service holds one of them
            raise ServiceError(404, "not_found",
                               f"Feedback entry not found for call_id={body.call_id}, task={body.task}")
        return contract.OpenChsFeedback(**await self.call_store("openchs_update", body.call_id, body.feedback, body.reason))

    async def openchs_feedback_call(self, params: contract.OpenChsCallParams) -> contract.OpenChsFeedbackList:
        entries = await self.call_store("openchs_call", params.call_id, params.task)
        if not entries:  # their words (agent_feedback_routes.py)
            raise ServiceError(404, "not_found", f"No feedback found for call_id={params.call_id}")
        return contract.OpenChsFeedbackList(entries)

    async def openchs_feedback_statistics(self, params: contract.OpenChsStatsParams) -> contract.OpenChsStatistics:
        return contract.OpenChsStatistics(**await self.call_store("openchs_statistics", params.days, params.task))

    # -- the audit trail and the anonymous reports --------------------------------------------------

    async def record_audit(self, rows: list[dict]) -> None:
        """The ingress's audit sink: the rows join the Router's queue (an exception if they cannot)."""
        await asyncio.wait_for(self.router.record_audit.remote(rows), self.timeout_s)

    async def audit(self, params: contract.AuditParams) -> contract.AuditResponse:
        where = AuditFilter(key_name=params.key_name, role=params.role, route=params.route, case_id=params.case_id,
                            status=params.status, since=_utc(params.since), until=_utc(params.until),
                            limit=params.limit, cursor=params.cursor)
        return contract.AuditResponse(success=True, **await self.call_store("audit_events", where))

    async def reports_summary(self, params: contract.ReportParams, accept: str | None = None):
        summary = await self.call_store("report_summary", params.first, params.last, params.period, params.dimensions,
                                    self.report_min_count)
        if accept and "text/csv" in accept.lower():
            return Page(to_csv(summary, params.dimensions).encode("utf-8"), "text/csv; charset=utf-8")
        return contract.ReportSummary(success=True, **summary)


def _utc(value: datetime | None) -> datetime | None:
    """The time in UTC, the zone the trail is stored in (one without a zone is read as UTC)."""
    if value is None:
        return None
    try:
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
    except OverflowError:  # an offset that pushes year 1 or 9999 out of range
        raise ServiceError.invalid("'from' and 'to' must be times between the years 1 and 9999 in UTC.") from None
