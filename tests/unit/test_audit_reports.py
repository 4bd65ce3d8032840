"""The audit trail and the anonymous reports, Ray-free: the pure rules (deployments/core/audit.py,
deployments/core/reports.py) and the store's tables on a real SQLite file, with times the test sets."""

from __future__ import annotations

import csv
import io
import json
import uuid
from datetime import date, datetime, timedelta, timezone

import pytest

from deployments.core import contract
from deployments.core.audit import AUDITED_PERMISSIONS, audit_row, audited, case_ids_in, subject_of
from deployments.core.auth import ROLES, Permission, Principal
from deployments.core.errors import ServiceError
from deployments.core.reports import CHI_MAP_PATH, ChiMap, DayCount, period_starts, summarize, to_csv
from deployments.core.store.audit_log import AuditFilter
from deployments.core.store.repository import CaseStore
from deployments.core.store.writer import RecordWriter
from tests.unit.test_case_store import row

T0 = datetime(2026, 11, 30, 8, 0, tzinfo=timezone.utc)  # a Monday
SUPERVISOR = Principal("sam", "supervisor", ROLES["supervisor"])


# -- which calls are audited, and what a row holds ----------------------------------------------------


def test_audited_follows_the_permission_so_new_routes_of_a_kind_need_no_edit():
    assert AUDITED_PERMISSIONS == {Permission.READ_CASE, Permission.WORKLIST, Permission.FEEDBACK, Permission.EXPORT,
                                   Permission.STATS, Permission.REPORTS, Permission.AUDIT}
    assert not audited(Permission.CLASSIFY) and not audited(Permission.TASKS) and not audited(None)
    by_route = {f"{op.method} {op.path}": audited(op.permission) for op in contract.OPERATIONS}
    assert by_route["GET /cases/{id}"] and by_route["POST /feedback"] and by_route["GET /feedback/export"]
    assert by_route["GET /audit"] and by_route["GET /reports/summary"] and by_route["GET /feedback/stats"]
    assert not by_route["POST /classify"] and not by_route["GET /health"] and not by_route["GET /console/reports"]


def test_case_ids_are_collected_from_anywhere_in_an_answer_once_each():
    answer = {"success": True, "case": {"case_id": "c1", "feedback": [{"case_id": "c1", "id": 3}]},
              "examples": [{"case_id": "c2", "narrative": "text"}, {"case_id": "c3"}, {"case_id": "c2"}],
              "items": [[{"case_id": "c4"}]], "other": {"case_id": 7}}
    assert case_ids_in(answer) == ["c1", "c2", "c3", "c4"]
    assert case_ids_in(None) == [] and case_ids_in({"periods": []}) == []


def test_the_subject_is_the_id_the_path_or_the_body_names():
    class Body:
        case_id = "case-9"
        narrative = "never read"

    assert subject_of({"id": "call-1"}) == "call-1"
    assert subject_of({}, Body()) == "case-9"
    assert subject_of({"call_id": "c" * 300}) == "c" * 128
    assert subject_of({"name": "x"}) is None


def test_a_row_names_key_role_route_status_and_never_a_body():
    r = audit_row(route="GET /cases/{id}", permission="read_case", principal=SUPERVISOR, status=404,
                  error_code="case_not_found", case_ids=[], subject="c1", request_id="rid", at=T0)
    assert {k: r[k] for k in ("key_name", "role", "route", "status", "error_code", "subject")} == {
        "key_name": "sam", "role": "supervisor", "route": "GET /cases/{id}", "status": 404,
        "error_code": "case_not_found", "subject": "c1"}
    unauthenticated = audit_row(route="GET /audit", permission="audit", principal=None, status=401,
                                error_code="unauthorized", case_ids=[], subject=None, request_id="", at=T0)
    assert unauthenticated["key_name"] is None and unauthenticated["role"] is None
    assert set(r) == {"id", "at", "key_name", "role", "route", "permission", "subject", "case_ids", "status",
                      "error_code", "request_id"}


# -- reports: periods, CHI's categories, suppression, CSV -----------------------------------------------


def day_count(day, n, main="Advice and Counselling", sub="Bullying", priority=2, queue="q", language="en"):
    return DayCount(day, main, sub, priority, queue, language, n)


def test_periods_are_days_iso_weeks_from_monday_and_calendar_months():
    assert period_starts(date(2026, 12, 2), date(2026, 12, 3), "day") == [date(2026, 12, 2), date(2026, 12, 3)]
    assert period_starts(date(2026, 12, 2), date(2026, 12, 14), "week") == [
        date(2026, 11, 30), date(2026, 12, 7), date(2026, 12, 14)]
    assert period_starts(date(2026, 11, 15), date(2027, 1, 1), "month") == [
        date(2026, 11, 1), date(2026, 12, 1), date(2027, 1, 1)]


def test_counts_under_min_count_are_shown_as_under_and_chi_categories_replace_ours():
    chi = ChiMap.bundled()
    rows = [day_count(date(2026, 11, 30), 4, sub="Bullying"), day_count(date(2026, 12, 1), 3, sub="Physical Abuse",
                                                                        main="VANE"),
            day_count(date(2026, 12, 2), 2, sub="Peer Relationships"), day_count(date(2026, 12, 8), 1, sub="Bullying"),
            day_count(date(2026, 12, 8), 9, sub="Albinism", main="Disability"),
            day_count(date(2027, 1, 5), 50, sub="Bullying")]  # after 'last': not counted
    out = summarize(rows, first=date(2026, 11, 30), last=date(2026, 12, 13), period="week", by=("main_category",),
                    min_count=5, chi=chi)
    first, second = out["periods"]
    assert (first["start"], first["end"], second["start"]) == ("2026-11-30", "2026-12-06", "2026-12-07")
    # Bullying and Physical Abuse are both CHI's "Abuse and Violence": 4 + 3 = 7, shown; 2 alone is hidden.
    assert first["counts"] == [{"group": {"main_category": "Abuse and Violence"}, "count": 7},
                               {"group": {"main_category": "Peer Relationships"}, "count": "<5"}]
    assert second["counts"] == [{"group": {"main_category": "Disability"}, "count": 9},
                                {"group": {"main_category": "Abuse and Violence"}, "count": "<5"}]
    assert out["taxonomy"]["kept_as_ours"] == ["Disability"] and "Child Helpline International" in out["taxonomy"]["name"]
    # min_count 0: every count as it is.
    exact = summarize(rows, first=date(2026, 11, 30), last=date(2026, 12, 6), period="week",
                      by=("sub_category", "priority"), min_count=0, chi=chi)
    assert {(tuple(c["group"].values()), c["count"]) for c in exact["periods"][0]["counts"]} == {
        (("Bullying", "2"), 4), (("Physical Abuse", "2"), 3), (("Peer Relationships", "2"), 2)}


def test_the_csv_parses_into_the_same_cells():
    rows = [day_count(date(2026, 12, 1), 6, language=None), day_count(date(2026, 12, 1), 2, queue="vane")]
    out = summarize(rows, first=date(2026, 12, 1), last=date(2026, 12, 2), period="day", by=("queue", "language"),
                    min_count=5, chi=None)
    parsed = list(csv.DictReader(io.StringIO(to_csv(out, ("queue", "language")))))
    assert parsed == [{"period_start": "2026-12-01", "period_end": "2026-12-01", "queue": "q", "language": "unknown",
                       "count": "6"},
                      {"period_start": "2026-12-01", "period_end": "2026-12-01", "queue": "vane", "language": "en",
                       "count": "<5"}]
    assert out["taxonomy"] is None and len(out["periods"]) == 2 and out["periods"][1]["counts"] == []


def test_the_chi_map_states_its_source_and_names_only_served_sub_categories():
    doc = json.loads(CHI_MAP_PATH.read_text(encoding="utf-8"))
    assert "Child Helpline International" in doc["source"] and doc["sub_category_to_chi"]
    served = set(json.loads((CHI_MAP_PATH.parent / "labels" / "openchs-2025-09" / "sub_categories.json").read_text()))
    assert set(doc["sub_category_to_chi"]) <= served


@pytest.mark.parametrize("query, message", [({"by": "main_category,narrative"}, "narrative"),
                                            ({"by": "queue,queue"}, "at most once"),
                                            ({"period": "year"}, "period"),
                                            ({"from": "1999-12-31"}, "from")])
def test_report_parameters_are_refused_with_a_422_naming_the_problem(query, message):
    with pytest.raises(ServiceError) as caught:
        contract.parse_request(contract.ReportParams, query, contract.Limits())
    assert caught.value.status == 422 and message in caught.value.message


# -- the store: audit rows and report counts on a real SQLite file -------------------------------------


@pytest.fixture
def store(tmp_path):
    s = CaseStore(f"sqlite:///{tmp_path / 'helpline.db'}")
    yield s
    s.close()


def event(at, key="sam", role="supervisor", route="GET /cases/{id}", status=200, case_ids=(), subject=None):
    principal = Principal(key, role, ROLES[role]) if key else None
    return audit_row(route=route, permission="read_case", principal=principal, status=status,
                     error_code=None if status < 400 else "x", case_ids=case_ids, subject=subject,
                     request_id=uuid.uuid4().hex, at=at)


def test_audit_rows_are_filtered_and_paged_newest_first_without_repeats(store):
    rows = [event(T0 + timedelta(minutes=i), case_ids=[f"case-{i}"]) for i in range(7)]
    rows += [event(T0 + timedelta(minutes=3), key="ada", role="admin", route="GET /audit", status=403,
                   subject="case-1"),
             event(T0, key=None, role="admin", status=401)]
    writer = RecordWriter(store.add_audit, interval_s=0.01, max_rows=3, what="audit rows")
    writer.submit(rows)
    assert writer.close()  # the shutdown path: everything queued is written
    everything = store.audit_events(AuditFilter(limit=1000))["events"]
    assert len(everything) == 9
    assert [e["at"] for e in everything] == sorted((e["at"] for e in everything), reverse=True)
    pages, cursor = [], None
    while True:
        page = store.audit_events(AuditFilter(limit=4, cursor=cursor))
        pages.append([e["id"] for e in page["events"]])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [len(p) for p in pages] == [4, 4, 1] and sum(pages, []) == [e["id"] for e in everything]
    by = lambda **kw: store.audit_events(AuditFilter(limit=100, **kw))["events"]  # noqa: E731
    assert [e["key_name"] for e in by(role="admin")] == ["ada"]
    assert [e["status"] for e in by(route="GET /audit")] == [403]
    assert {e["subject"] or e["case_ids"][0] for e in by(case_id="case-1")} == {"case-1"} and len(by(case_id="case-1")) == 2
    assert len(by(since=T0 + timedelta(minutes=5))) == 2 and len(by(until=T0 + timedelta(minutes=1))) == 2
    assert by(status=401)[0]["key_name"] is None
    with pytest.raises(ServiceError) as caught:
        store.audit_events(AuditFilter(cursor="not-a-cursor"))
    assert caught.value.status == 422


def test_report_counts_come_from_the_case_record_by_utc_day(store):
    # 6 bullying cases on Monday, 2 on Sunday 23:30 UTC (the same ISO week), 1 the next Monday at 00:10.
    monday = T0
    store.add_cases([row(monday + timedelta(minutes=i)) for i in range(6)]
                    + [row(monday + timedelta(days=6, hours=15, minutes=30 + i)) for i in range(2)]
                    + [row(monday + timedelta(days=7, hours=-7, minutes=-50))])
    summary = store.report_summary(date(2026, 11, 30), date(2026, 12, 13), "week", ("main_category", "language"),
                                   5)
    assert [p["start"] for p in summary["periods"]] == ["2026-11-30", "2026-12-07"]
    assert summary["periods"][0]["counts"] == [{"group": {"main_category": "Abuse and Violence", "language": "unknown"},
                                                "count": 8}]
    assert summary["periods"][1]["counts"] == [{"group": {"main_category": "Abuse and Violence", "language": "unknown"},
                                                "count": "<5"}]
    daily = store.report_summary(date(2026, 12, 6), date(2026, 12, 7), "day", ("priority",), 0)
    assert [[c["count"] for c in p["counts"]] for p in daily["periods"]] == [[2], [1]]
    # Defaults: the 12 weeks up to today.
    recent = store.report_summary(None, None, "week", ("queue",), 5, now=datetime(2026, 12, 9, tzinfo=timezone.utc))
    assert (recent["from"], recent["to"]) == ("2026-09-17", "2026-12-09")
    with pytest.raises(ServiceError):
        store.report_summary(date(2026, 12, 9), date(2026, 12, 1), "week", ("queue",), 5)
    with pytest.raises(ServiceError) as caught:
        store.report_summary(date(2000, 1, 1), date(2026, 12, 1), "day", ("queue",), 5)
    assert caught.value.status == 422 and "at most" in caught.value.message
