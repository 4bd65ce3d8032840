"""The audit trail's paging and the reports' UTC-day counts on a real PostgreSQL server, no Ray."""

from __future__ import annotations

from datetime import date, timedelta

from deployments.core.store.audit_log import AuditFilter
from deployments.core.store.repository import CaseStore
from tests.unit.test_audit_reports import T0, event
from tests.unit.test_case_store import row


def test_audit_rows_and_report_counts_on_postgresql(postgres_url):
    store = CaseStore(postgres_url)
    try:
        store.add_audit([event(T0 + timedelta(seconds=i), case_ids=[f"case-{i % 3}"]) for i in range(5)])
        pages, cursor = [], None
        while True:
            page = store.audit_events(AuditFilter(limit=2, cursor=cursor))
            pages.append(len(page["events"]))
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert pages == [2, 2, 1]
        assert len(store.audit_events(AuditFilter(case_id="case-1"))["events"]) == 2
        # Sunday 23:30 UTC belongs to the week of Monday T0, whatever the server's time zone.
        store.add_cases([row(T0 + timedelta(minutes=i)) for i in range(4)]
                        + [row(T0 + timedelta(days=6, hours=15, minutes=30))]
                        + [row(T0 + timedelta(days=7, hours=-7, minutes=-50)) for _ in range(6)])
        summary = store.report_summary(date(2026, 11, 30), date(2026, 12, 13), "week", ("main_category",), 5)
        assert [[c["count"] for c in p["counts"]] for p in summary["periods"]] == [[5], [6]]
        assert store.report_summary(date(2026, 11, 30), date(2026, 12, 6), "week", ("sub_category",), 6)[
            "periods"][0]["counts"] == [{"group": {"sub_category": "Bullying"}, "count": "<6"}]
    finally:
        store.close()
