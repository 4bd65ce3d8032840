"""The case record, feedback and live accuracy over real HTTP, on SQLite and on PostgreSQL.

A case is classified, looked up, corrected through /feedback and rated through
OpenCHS's route; the app is then shut down cleanly and deployed again, and the
record, the feedback (with its history) and the stats are all still there.
Records are written every 5 s here, so the cases classified just before the
shutdown are still queued when it starts: the Router's shutdown hook must
write them, and the audit rows queued beside them.
"""

from __future__ import annotations

import httpx
import pytest

from tests.integration.test_api import BULLYING

LABELS = ("main_category", "sub_category", "intervention", "priority")


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'var' / 'helpline.db'}"
    return request.getfixturevalue("postgres_url")


def other_label(info: dict, task: str, label):
    return next(x for x in info["labels"][task] if x != label)


def test_cases_feedback_and_stats_survive_a_restart(serve_session, tiny_checkpoint, database_url):
    args = {"model": str(tiny_checkpoint), "feedback": {"database_url": database_url, "flush_interval_s": 5}}
    url = serve_session.deploy(**args)
    with httpx.Client(base_url=url, timeout=60) as http:
        info = http.get("/info").json()
        r = http.post("/classify", json={"narrative": BULLYING, "call_id": "call-001"},
                      headers={"X-Request-ID": "req-case-001"})
        assert r.status_code == 200, r.text
        case = r.json()
        case_id = case["case_id"]
        predicted = {t: case["classification"][t]["label"] for t in LABELS}

        # The record answers by case id, call id and request id, and never holds the narrative.
        for ref in (case_id, "call-001", "req-case-001"):
            got = http.get(f"/cases/{ref}")
            assert got.status_code == 200, got.text
            record = got.json()["case"]
            assert record["case_id"] == case_id
        assert (record["call_id"], record["request_id"]) == ("call-001", "req-case-001")
        assert record["classification"]["sub_category_2"]["label"] == case["classification"]["sub_category_2"]["label"]
        assert record["routing"] == case["routing"]
        assert record["model"] == case["model"] and record["narrative_stored"] is False
        assert len(record["chunk_details"]) == record["chunks"] == 1
        assert http.get("/cases/no-such-case").status_code == 404

        # Labels are checked against the served set: the 422 names the bad one and lists a small set.
        bad = http.post("/feedback", json={"case_id": case_id, "corrections": {"main_category": "Astrology"}})
        assert bad.status_code == 422, bad.text
        message = bad.json()["error"]["message"]
        assert "corrections.main_category" in message and info["labels"]["main_category"][0] in message
        bad_sub = http.post("/feedback", json={"case_id": case_id, "corrections": {"sub_category": "Nope"}})
        assert bad_sub.status_code == 422 and "corrections.sub_category" in bad_sub.json()["error"]["message"]
        assert http.post("/feedback", json={"case_id": case_id, "rating": 9}).status_code == 422
        assert http.post("/feedback", json={"case_id": "no-such-case", "rating": 3}).status_code == 404

        corrected_sub = other_label(info, "sub_category", predicted["sub_category"])
        first = http.post("/feedback", json={"case_id": case_id, "corrections": {"sub_category": corrected_sub},
                                             "rating": 2, "reviewer": "counsellor-7"})
        assert first.status_code == 201, first.text
        assert first.json()["feedback"]["agreed"]["sub_category"] is False
        corrected_priority = other_label(info, "priority", predicted["priority"])
        second = http.post("/feedback", json={"case_id": case_id, "corrections": {
            "sub_category": corrected_sub, "priority": corrected_priority}, "rating": 3,
            "narrative": BULLYING})
        assert second.status_code == 201, second.text
        stored = second.json()["feedback"]
        assert stored["version"] == 2 and [h["version"] for h in stored["history"]] == [1, 2]
        assert stored["labels"] == {**predicted, "sub_category": corrected_sub, "priority": corrected_priority}

        # OpenCHS's route rates the call; the corrections stay.
        openchs = http.post("/api/v1/agent-feedback/update",
                            json={"call_id": "call-001", "task": "classification", "feedback": 4, "reason": "close"})
        assert openchs.status_code == 200, openchs.text
        assert (openchs.json()["feedback"], openchs.json()["call_id"]) == (4, "call-001")
        assert http.post("/api/v1/agent-feedback/update",
                         json={"call_id": "no-such-call", "task": "classification", "feedback": 4}).status_code == 404
        # Their task names are accepted as theirs are; this service holds only 'classification' entries.
        assert http.post("/api/v1/agent-feedback/update",
                         json={"call_id": "call-001", "task": "ner", "feedback": 4}).status_code == 404
        assert http.post("/api/v1/agent-feedback/update",
                         json={"call_id": "call-001", "task": "nothing", "feedback": 4}).status_code == 422

        # A batch: one case id per result, call ids in order; the batch's request id is ambiguous.
        batch = http.post("/classify/batch", json={"narratives": ["a child is hungry", "school fees help"],
                                                   "call_ids": ["call-b1", "call-b2"]},
                          headers={"X-Request-ID": "req-batch-001"})
        assert batch.status_code == 200, batch.text
        batch_ids = [x["case_id"] for x in batch.json()["results"]]
        assert len(set(batch_ids)) == 2
        assert http.post("/classify/batch", json={"narratives": ["a"], "call_ids": ["x", "y"]}).status_code == 422
        # Classified just before the shutdown: still queued (written every 5 s) when it starts.
        queued = [http.post("/classify", json={"narrative": f"case number {i} a child needs help",
                                               "call_id": f"call-q{i}"}).json()["case_id"] for i in range(5)]
        stats_call = http.get("/feedback/stats", params={"days": 30})
        stats_before = stats_call.json()

    serve_session.undeploy()  # a clean shutdown
    url = serve_session.deploy(**args)
    with httpx.Client(base_url=url, timeout=60) as http:
        record = http.get("/cases/call-001").json()["case"]
        assert record["case_id"] == case_id
        (fb,) = record["feedback"]
        assert (fb["version"], fb["rating"], fb["reason"], fb["source"]) == (3, 4, "close", "openchs")
        assert fb["corrections"] == {"sub_category": corrected_sub, "priority": corrected_priority}
        assert [h["source"] for h in fb["history"]] == ["feedback", "feedback", "openchs"]
        assert http.get("/cases/req-batch-001").status_code == 409
        for i, batch_id in enumerate(batch_ids):
            got = http.get(f"/cases/call-b{i + 1}").json()["case"]
            assert (got["case_id"], got["batch_index"], got["request_id"]) == (batch_id, i, "req-batch-001")
        for i, queued_id in enumerate(queued):
            assert http.get(f"/cases/call-q{i}").json()["case"]["case_id"] == queued_id
        # The audit row of the last call before the shutdown was queued like the records, and written too.
        trail = http.get("/audit", params={"route": "GET /feedback/stats"}).json()["events"]
        assert stats_call.headers["x-request-id"] in {e["request_id"] for e in trail}
        assert {(e["key_name"], e["status"]) for e in trail} == {("anonymous", 200)}

        stats = http.get("/feedback/stats", params={"days": 30}).json()
        assert stats == {**stats_before, "since": stats["since"]}
        sub = stats["tasks"]["sub_category"]
        assert (stats["feedback"], sub["corrections"], sub["agreement_rate"]) == (1, 1, 0.0)
        assert sub["confusions"] == [{"predicted": predicted["sub_category"], "corrected": corrected_sub, "count": 1}]
        assert stats["tasks"]["main_category"]["agreement_rate"] == 1.0 and stats["mean_rating"] == 4.0
        model_version = f"{case['model']['id']}@{case['model']['revision'] or ''}"
        assert stats["by_model"][model_version]["tasks"]["priority"]["corrections"] == 1
        assert http.get("/feedback/stats", params={"model": "another@v9"}).json()["feedback"] == 0
        assert http.get("/feedback/stats", params={"days": 0}).status_code == 422

        calls = http.get("/api/v1/agent-feedback/call/call-001")
        assert calls.status_code == 200 and calls.json()[0]["feedback"] == 4
        assert http.get("/api/v1/agent-feedback/call/call-b1").status_code == 404  # classified, never rated
        openchs_stats = http.get("/api/v1/agent-feedback/statistics", params={"days": 30}).json()
        assert openchs_stats["period_days"] == 30
        assert openchs_stats["tasks"]["classification"]["rated_predictions"] == 1
        assert openchs_stats["tasks"]["classification"]["total_predictions"] == 8

        # The narrative came with the feedback, so the correction is a training example.
        export = http.get("/feedback/export", params={"since": "2000-01-01"}).json()
        (example,) = export["examples"]
        assert example["sub_category"] == corrected_sub and example["priority"] == corrected_priority
        assert example["main_category"] == predicted["main_category"] and example["narrative"].startswith("a 12")
    serve_session.undeploy()
