"""The audit trail and the anonymous reports over real HTTP, with a key per role.

Each audited call (case reads, feedback, stats, exports, reports, the trail itself) leaves one row
with the key's name, its role, the route, the ids and the outcome, refusals included; the reports
hide counts under ``reports.min_count``, their CSV parses, and a marker sent in narratives, reasons
and feedback never appears in the trail nor in a report. ``chs-audit-export`` writes the trail as JSONL.
"""

from __future__ import annotations

import csv
import io
import json
import uuid
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from clients.audit_export import main as audit_export
from deployments.core.store.repository import CaseStore

KEYS = {role: f"{role}-key-{uuid.uuid4().hex}" for role in ("counsellor", "supervisor", "admin")}
NAMES = {role: f"{role}-desk" for role in KEYS}
MIN_COUNT = 3


def bearer(role: str) -> dict:
    return {"Authorization": f"Bearer {KEYS[role]}"}


@pytest.mark.app("audit-roles")
def test_an_audit_row_for_each_call_and_reports_that_hide_small_counts(serve_session, tiny_checkpoint, tmp_path):
    env = {"CHS_API_KEYS": ",".join(f"{NAMES[r]}:{r}:{k}" for r, k in KEYS.items())}
    url = serve_session.deploy(model=str(tiny_checkpoint), env=env, reports={"min_count": MIN_COUNT})
    marker = f"zqx{uuid.uuid4().hex}"
    narrative = f"A girl of twelve says her uncle beats her at home and {marker} she is afraid to go back."
    call_id = f"audit-call-{uuid.uuid4().hex[:8]}"
    started = datetime.now(timezone.utc).isoformat()
    with httpx.Client(base_url=url, timeout=60) as http:
        first = http.post("/classify", headers=bearer("counsellor"), json={"narrative": narrative, "call_id": call_id})
        assert first.status_code == 200, first.text
        case_id = first.json()["case_id"]
        for _ in range(MIN_COUNT + 1):  # the same labels again: a cell of at least MIN_COUNT + 2
            assert http.post("/classify", headers=bearer("counsellor"), json={"narrative": narrative}).status_code == 200
        calls = [  # (role or None for a wrong key, method, path, kwargs, expected status)
            ("counsellor", "GET", f"/cases/{call_id}", {}, 200),
            ("counsellor", "POST", "/feedback", {"json": {"case_id": case_id, "reason": f"because {marker}",
                                                          "narrative": narrative, "rating": 2}}, 201),
            ("counsellor", "GET", "/feedback/stats", {}, 403),
            ("supervisor", "GET", "/feedback/stats", {}, 200),
            ("supervisor", "GET", "/reports/summary", {"params": {"by": "main_category,sub_category"}}, 200),
            ("supervisor", "GET", "/audit", {}, 403),
            ("supervisor", "GET", "/cases/no-such-case", {}, 404),
            ("admin", "GET", "/feedback/export", {"params": {"since": "2026-01-01"}}, 200),
            (None, "GET", f"/cases/{case_id}", {}, 401),
        ]
        request_ids = []
        for role, method, path, kwargs, status in calls:
            headers = bearer(role) if role else {"Authorization": "Bearer not-a-key"}
            r = http.request(method, path, headers=headers, **kwargs)
            assert r.status_code == status, (path, r.text)
            request_ids.append(r.headers["x-request-id"])
        exported = http.get("/feedback/export", headers=bearer("admin"), params={"since": "2026-01-01"})
        assert case_id in {e["case_id"] for e in exported.json()["examples"]}

        trail = http.get("/audit", headers=bearer("admin"), params={"from": started, "limit": 1000})
        assert trail.status_code == 200, trail.text
        rows = {e["request_id"]: e for e in trail.json()["events"]}
        # The same instant written in another zone selects the same rows.
        east = datetime.fromisoformat(started).astimezone(timezone(timedelta(hours=3))).isoformat()
        assert http.get("/audit", headers=bearer("admin"), params={"from": east, "limit": 1000}).json()["events"][
            1:] == trail.json()["events"]
        for (role, method, path, _, status), rid in zip(calls, request_ids):
            row = rows[rid]
            assert (row["key_name"], row["role"]) == ((NAMES[role], role) if role else (None, None)), row
            assert (row["route"].split()[0], row["status"]) == (method, status), row
            assert (row["error_code"] is None) == (status < 400), row
        assert rows[request_ids[0]]["case_ids"] == [case_id] and rows[request_ids[0]]["subject"] == call_id
        assert rows[request_ids[1]]["route"] == "POST /feedback" and rows[request_ids[1]]["case_ids"] == [case_id]
        assert rows[request_ids[2]]["error_code"] == "forbidden"
        assert case_id in rows[request_ids[7]]["case_ids"]  # the export names every case it let out
        # Classifying is not audited; the call that read the trail is, once the next read comes.
        assert not any(e["route"] == "POST /classify" for e in trail.json()["events"])
        by_case = http.get("/audit", headers=bearer("admin"), params={"case_id": case_id}).json()["events"]
        assert {request_ids[1], request_ids[8]} <= {e["request_id"] for e in by_case}
        assert any(e["route"] == "GET /audit" and e["key_name"] == NAMES["admin"]
                   for e in http.get("/audit", headers=bearer("admin"), params={"route": "GET /audit"}).json()["events"])

        # Reports: the API's cells are the store's exact counts, those under MIN_COUNT hidden.
        report = http.get("/reports/summary", headers=bearer("supervisor"),
                          params={"period": "day", "by": "main_category,sub_category,priority,queue,language"})
        assert report.status_code == 200, report.text
        body = report.json()
        (today,) = [p for p in body["periods"] if p["start"] == datetime.now(timezone.utc).date().isoformat()]
        store = CaseStore(serve_session.database_url)
        try:
            exact = store.report_summary(datetime.now(timezone.utc).date(), datetime.now(timezone.utc).date(), "day",
                                         body["by"], 0)["periods"][0]["counts"]
        finally:
            store.close()
        assert [c["group"] for c in today["counts"]] == [c["group"] for c in sorted(
            exact, key=lambda c: (-c["count"] if c["count"] >= MIN_COUNT else 0, tuple(c["group"].values())))]
        shown = {tuple(c["group"].values()): c["count"] for c in today["counts"]}
        for cell in exact:
            expected = cell["count"] if cell["count"] >= MIN_COUNT else f"<{MIN_COUNT}"
            assert shown[tuple(cell["group"].values())] == expected
        assert any(isinstance(v, int) and v >= MIN_COUNT + 2 for v in shown.values())
        assert body["min_count"] == MIN_COUNT and "case_id" not in report.text and call_id not in report.text

        as_csv = http.get("/reports/summary", headers={**bearer("admin"), "Accept": "text/csv"},
                          params={"period": "day", "by": "main_category,sub_category,priority,queue,language"})
        assert as_csv.status_code == 200 and as_csv.headers["content-type"].startswith("text/csv")
        parsed = list(csv.DictReader(io.StringIO(as_csv.text)))
        assert {(r["main_category"], r["sub_category"], r["priority"], r["queue"], r["language"]): r["count"]
                for r in parsed if r["period_start"] == today["start"]} == {k: str(v) for k, v in shown.items()}
        assert http.get("/reports/summary", headers=bearer("counsellor")).status_code == 403

        # Privacy: the marker is in no audit row and no report.
        full_trail = http.get("/audit", headers=bearer("admin"), params={"limit": 1000}).text
        for text in (full_trail, report.text, as_csv.text):
            assert marker not in text

    out = tmp_path / "audit.jsonl"
    assert audit_export(["-o", str(out), "--url", url, "--api-key", KEYS["admin"], "--from", started,
                         "--key-name", NAMES["counsellor"]]) == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert {e["request_id"] for e in lines} >= set(request_ids[:3])
    assert {e["key_name"] for e in lines} == {NAMES["counsellor"]} and marker not in out.read_text()
    assert audit_export(["-o", str(out), "--url", url, "--api-key", KEYS["supervisor"]]) == 1  # 403: not an admin
