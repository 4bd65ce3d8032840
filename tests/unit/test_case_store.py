"""The case store on a real SQLite file: migrations, records, feedback and its history, stats, export, purge."""

from __future__ import annotations

import sqlite3
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from alembic.script import ScriptDirectory

from deployments.core.store.repository import (MIGRATIONS, AmbiguousCase, CaseNotFound, CaseStore, case_row,
                                               normalize_url, redacted)
from deployments.core.store.writer import RecordWriter

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)


def head_revision() -> str:
    """The newest revision of the migrations folder: what a store opened today is migrated to."""
    return ScriptDirectory(str(MIGRATIONS)).get_current_head()


def result(main="Advice and Counselling", sub="Bullying", priority=2, chunks=1):
    pred = lambda label, conf: {"label": label, "confidence": conf}  # noqa: E731
    classification = {"main_category": pred(main, 0.9), "sub_category": pred(sub, 0.8),
                      "sub_category_2": pred("Peer Relationships", 0.1), "intervention": pred("Counselling", 0.7),
                      "priority": pred(priority, 0.55)}
    return {"classification": classification,
            "routing": {"queue": "advice-and-counselling", "escalate": False, "human_review": True,
                        "reasons": ["Confidence in priority is 0.55, under the review threshold 0.60."]},
            "chunks": chunks, "truncated": False, "tokens": 32,
            "chunk_details": [{"index": i, "token_span": [0, 32], "classification": classification}
                              for i in range(chunks)]}


def row(store_time=NOW, **kw):
    args = dict(case_id=str(uuid.uuid4()), request_id="req-1", call_id=None, task_id=None, batch_index=None,
                created_at=store_time, model_id="models/demo", model_revision=None, result=result(), narrative=None)
    args.update(kw)
    return case_row(**args)


@pytest.fixture
def store(tmp_path):
    s = CaseStore(f"sqlite:///{tmp_path / 'var' / 'helpline.db'}")
    yield s
    s.close()


def test_the_schema_is_migrated_and_the_file_is_in_wal_mode(store, tmp_path):
    assert store.revision() == head_revision()
    with sqlite3.connect(tmp_path / "var" / "helpline.db") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"cases", "feedback", "feedback_history", "alembic_version"} <= tables
    CaseStore(store.url).close()  # opening again is a no-op migration


def test_a_case_is_found_by_case_request_and_call_id(store):
    r = row(call_id="call-7", result=result(chunks=2))
    store.add_cases([r])
    for ref in (r["id"], "req-1", "call-7"):
        got = store.get_case(ref)
        assert got["case_id"] == r["id"]
    assert got["classification"]["sub_category"] == {"label": "Bullying", "confidence": 0.8}
    assert got["classification"]["sub_category_2"]["label"] == "Peer Relationships"
    assert got["routing"]["reasons"] and got["chunks"] == 2 and len(got["chunk_details"]) == 2
    assert got["model"] == {"id": "models/demo", "revision": None} and got["narrative_stored"] is False
    assert got["created_at"].startswith("2026-12-01T09:00:00")
    with pytest.raises(CaseNotFound):
        store.get_case("nope")


def test_a_batch_request_id_is_ambiguous(store):
    store.add_cases([row(request_id="b", batch_index=0), row(request_id="b", batch_index=1)])
    with pytest.raises(AmbiguousCase):
        store.get_case("b")


def test_a_second_feedback_replaces_the_first_and_both_stay_in_the_history(store):
    r = row(call_id="c1")
    store.add_cases([r])
    first = store.put_feedback(r["id"], corrections={"sub_category": "Emotional Abuse"}, rating=2, now=NOW)
    assert first["version"] == 1 and first["agreed"]["sub_category"] is False and first["agreed"]["priority"]
    second = store.put_feedback("c1", corrections={"priority": 3}, rating=4, reviewer="counsellor-9", now=NOW)
    assert second["id"] == first["id"] and second["version"] == 2
    assert second["labels"]["sub_category"] == "Bullying" and second["labels"]["priority"] == 3
    assert [h["corrections"] for h in second["history"]] == [{"sub_category": "Emotional Abuse"}, {"priority": 3}]
    # OpenCHS's update changes the rating and reason only.
    third = store.put_feedback("c1", rating=5, reason="good", source="openchs", merge=True, now=NOW)
    assert third["corrections"] == {"priority": 3} and third["rating"] == 5 and third["version"] == 3
    assert [f["id"] for f in store.feedback_for_call("c1")] == [first["id"]]
    assert store.get_case("c1")["feedback"][0]["version"] == 3
    with pytest.raises(CaseNotFound):
        store.put_feedback("missing", rating=3)


def test_stats_count_corrections_agreement_confusions_and_ratings_per_model(store):
    a, b, c = row(), row(), row(model_revision="v2")
    store.add_cases([a, b, c])
    store.put_feedback(a["id"], corrections={"sub_category": "Emotional Abuse"}, rating=2, now=NOW)
    store.put_feedback(b["id"], corrections={"sub_category": "Bullying"}, rating=4, now=NOW)  # kept
    store.put_feedback(c["id"], corrections={"sub_category": "Emotional Abuse", "priority": 3}, now=NOW)
    stats = store.stats(days=30, now=NOW + timedelta(days=1))
    sub = stats["tasks"]["sub_category"]
    assert (stats["feedback"], sub["feedback"], sub["corrections"], sub["agreement_rate"]) == (3, 3, 2, 0.3333)
    assert sub["confusions"] == [{"predicted": "Bullying", "corrected": "Emotional Abuse", "count": 2}]
    assert stats["mean_rating"] == 3.0 and stats["tasks"]["main_category"]["agreement_rate"] == 1.0
    assert set(stats["by_model"]) == {"models/demo@", "models/demo@v2"}
    assert stats["by_model"]["models/demo@v2"]["tasks"]["priority"]["corrections"] == 1
    only_v2 = store.stats(days=30, model="models/demo@v2", now=NOW)
    assert only_v2["feedback"] == 1
    assert store.stats(days=30, now=NOW + timedelta(days=31))["feedback"] == 0


def test_export_needs_a_narrative_and_keeps_the_models_uncorrected_labels(store):
    kept, sent, neither = row(narrative="a child is bullied"), row(), row()
    store.add_cases([kept, sent, neither])
    store.put_feedback(kept["id"], corrections={"priority": 3}, now=NOW)
    store.put_feedback(sent["id"], corrections={"main_category": "VANE"}, narrative="text from the cms", now=NOW)
    store.put_feedback(neither["id"], corrections={"priority": 1}, now=NOW)
    out = store.export(NOW - timedelta(days=1))
    assert out.skipped_without_narrative == 1
    by_text = {e["narrative"]: e for e in out.examples}
    assert by_text["a child is bullied"]["priority"] == 3
    assert by_text["a child is bullied"]["sub_category"] == "Bullying"
    assert by_text["text from the cms"]["main_category"] == "VANE"
    assert set(by_text["text from the cms"]) >= {"narrative", "main_category", "sub_category", "intervention",
                                                 "priority"}


def test_purge_deletes_text_past_retention_only(store):
    old, new = row(narrative="old text", store_time=NOW - timedelta(days=91)), row(narrative="new text")
    store.add_cases([old, new])
    assert store.purge_narratives(90, now=NOW) == 1
    assert store.get_case(old["id"])["narrative_stored"] is False
    assert store.get_case(new["id"])["narrative_stored"] is True


def test_the_writer_batches_and_close_loses_nothing(store):
    batches = []

    def write(records):
        batches.append(len(records))
        store.add_cases(records)

    writer = RecordWriter(write, interval_s=5, max_rows=1000)  # nothing written before close
    rows = [row(request_id=f"r{i}") for i in range(50)]
    for r in rows:
        writer.submit([r])
    assert writer.close()
    assert sum(batches) == 50 and len(batches) < 50
    for r in rows:
        assert store.get_case(r["id"])["request_id"] == r["request_id"]
    with pytest.raises(RuntimeError):
        writer.submit([row()])


def test_the_writer_retries_a_failed_write():
    calls = []

    def flaky(records):
        calls.append(len(records))
        if len(calls) == 1:
            raise ConnectionError("down")

    writer = RecordWriter(flaky, interval_s=0.01)
    writer.submit([{"x": 1}])
    assert writer.flush(timeout_s=30)
    writer.close()
    assert calls == [1, 1]


def test_urls():
    assert normalize_url("postgresql://u:p@h:5432/db") == "postgresql+psycopg://u:p@h:5432/db"
    assert normalize_url("postgres://u:p@h/db").startswith("postgresql+psycopg://")
    assert "secret" not in redacted("postgresql://u:secret@h/db")


def test_openchs_update_call_and_statistics(store):
    r = row(call_id="call-42")
    store.add_cases([r, row()])
    updated = store.openchs_update("call-42", 4, "mostly right")
    assert set(updated) == {"id", "call_id", "task", "prediction", "feedback", "reason", "created_at", "updated_at",
                            "processing_mode", "model_version"}
    assert (updated["call_id"], updated["task"], updated["feedback"]) == ("call-42", "classification", 4)
    # Their prediction is the flat dict their classify() returns, their processing mode a case's after the call.
    assert updated["prediction"]["sub_category"] == "Bullying" and isinstance(updated["prediction"]["priority"], str)
    assert updated["processing_mode"] == "post_call"
    assert [e["id"] for e in store.openchs_call("call-42")] == [updated["id"]]
    assert store.openchs_call("call-42", task="ner") == []
    stats = store.openchs_statistics(30, now=NOW)
    assert stats["period_days"] == 30
    assert stats["tasks"]["classification"]["total_predictions"] == 2
    assert stats["tasks"]["classification"]["rated_predictions"] == 1
    assert stats["tasks"]["classification"]["average_rating"] == 4.0
    assert store.openchs_statistics(30, task="ner") == {"period_days": 30, "tasks": {}}


def test_a_case_without_a_call_id_is_rated_and_read_back_by_its_task_id(store):
    store.add_cases([row(task_id="task-7"), row(call_id="other")])
    updated = store.openchs_update("task-7", 5, None)
    assert updated["call_id"] == "task-7"
    (entry,) = store.openchs_call("task-7")
    assert (entry["id"], entry["feedback"], entry["call_id"]) == (updated["id"], 5, "task-7")
    assert store.openchs_call("other") == []  # a call nobody rated has no entry, as theirs until rated


def test_a_record_renders_as_the_contracts_case_record(store):
    from deployments.core import contract

    r = result(chunks=2)
    for d in r["chunk_details"]:
        d["classification"] = {**d["classification"], "sub_category": {"label": "Bullying", "confidence": 0.8,
                                                                       "parent": "Advice and Counselling"}}
    case = row(call_id="render", result=r)
    store.add_cases([case])
    store.put_feedback("render", corrections={"priority": 3}, rating=4)
    contract.CaseResponse(success=True, case=store.get_case("render"))
    contract.FeedbackStats(success=True, **store.stats(30))
    out = store.export(NOW - timedelta(days=1))
    contract.ExportResponse(success=True, since="x", examples=out.examples,
                            skipped_without_narrative=out.skipped_without_narrative)
    (entry,) = store.openchs_call("render")
    contract.OpenChsFeedbackList([entry])
    contract.OpenChsStatistics(**store.openchs_statistics(30, now=NOW))


def test_a_call_session_is_written_only_at_the_version_read(store):
    from datetime import timedelta

    from deployments.core.store.repository import utcnow

    state = {"call_id": "call-1", "status": "open", "n": 0}
    assert store.get_call("call-1") is None
    assert store.save_call("call-1", state, 0) is True
    assert store.save_call("call-1", state, 0) is False  # a second "first piece" loses
    assert store.get_call("call-1") == {"state": state, "version": 1}
    assert store.save_call("call-1", {**state, "n": 1}, 1) is True
    assert store.save_call("call-1", {**state, "n": 2}, 1) is False  # raced: the other replica's stands
    assert store.get_call("call-1")["state"]["n"] == 1
    now = utcnow()
    assert store.idle_calls(now + timedelta(seconds=1)) == ["call-1"]
    assert store.idle_calls(now - timedelta(minutes=5)) == []
    assert store.save_call("call-1", {**state, "status": "closed"}, 2) is True
    assert store.idle_calls(now + timedelta(seconds=1)) == []  # a closed call is never swept


def test_a_call_case_keeps_its_timeline_and_escalation_time(store):
    from deployments.core.store.repository import call_fields

    timeline = [{"seq": 0, "at": "2026-01-01T00:00:00+00:00", "task": "priority", "label": 3, "previous": None}]
    meta = {"call_timeline": timeline, "escalated_at": "2026-01-01T00:00:05+00:00"}
    store.add_cases([row(case_id="c-call", call_id="live-1", **call_fields(meta))])
    case = store.get_case("live-1")
    assert case["timeline"] == timeline and case["escalated_at"].startswith("2026-01-01T00:00:05")
    store.add_cases([row(case_id="c-plain")])
    assert store.get_case("c-plain")["timeline"] is None and store.get_case("c-plain")["escalated_at"] is None
