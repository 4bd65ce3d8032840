"""The worklist over real HTTP on the served app, on SQLite and on PostgreSQL.

Twenty supervisors ask ``POST /review/next`` at once (twenty threads, twenty connections, each
released at the same barrier): every one gets a case, and no case is handed out twice. Then a
claimed case is resolved with a correction: ``/feedback/stats`` counts it and it leaves the open
list. Every case goes to review here (``routing.review_threshold`` 1.0: no confidence reaches it).
"""

from __future__ import annotations

import threading

import httpx
import pytest

from tests.integration.test_api import BULLYING
from tests.integration.test_metrics import delta, poll, scrape

CASES = 25
SUPERVISORS = 20


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'var' / 'helpline.db'}"
    return request.getfixturevalue("postgres_url")


def test_twenty_concurrent_next_calls_hand_each_case_out_once(serve_session, tiny_checkpoint, database_url):
    url = serve_session.deploy(model=str(tiny_checkpoint), routing={"review_threshold": 1.0},
                               feedback={"database_url": database_url}, review={"metrics_interval_s": 0.5})
    before = scrape(serve_session.metrics_url)
    with httpx.Client(base_url=url, timeout=60) as http:
        classified = http.post("/classify/batch", json={"narratives": [f"{BULLYING} case {i}" for i in range(CASES)]})
        assert classified.status_code == 200, classified.text
        case_ids = {r["case_id"] for r in classified.json()["results"]}
        assert all(r["routing"]["human_review"] for r in classified.json()["results"])
        listed = http.get("/review", params={"limit": 100}).json()
        assert {i["case_id"] for i in listed["items"]} == case_ids and listed["next_cursor"] is None

    answers, start = [], threading.Barrier(SUPERVISORS)

    def take_next():
        with httpx.Client(base_url=url, timeout=60) as own:
            start.wait()
            answers.append(own.post("/review/next"))

    threads = [threading.Thread(target=take_next) for _ in range(SUPERVISORS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r.status_code for r in answers] == [200] * SUPERVISORS, [r.text for r in answers if r.status_code != 200]
    taken = [r.json()["item"]["case_id"] for r in answers]
    assert len(set(taken)) == SUPERVISORS and set(taken) <= case_ids
    assert all(r.json()["item"]["status"] == "claimed" for r in answers)

    with httpx.Client(base_url=url, timeout=60) as http:
        still_open = {i["case_id"] for i in http.get("/review", params={"status": "open"}).json()["items"]}
        assert still_open == case_ids - set(taken)
        # A claimed case is resolved with a correction: live accuracy counts it, and it leaves the open list.
        info = http.get("/info").json()
        case_id = taken[0]
        record = http.get(f"/cases/{case_id}").json()["case"]
        predicted = record["classification"]["priority"]["label"]
        corrected = next(p for p in info["labels"]["priority"] if p != predicted)
        bad = http.post(f"/review/{case_id}/resolve", json={"corrections": {"priority": 99}})
        assert bad.status_code == 422 and "corrections.priority" in bad.json()["error"]["message"]
        done = http.post(f"/review/{case_id}/resolve", json={"corrections": {"priority": corrected}, "rating": 2})
        assert done.status_code == 200, done.text
        assert done.json()["item"]["status"] == "resolved" and done.json()["feedback"]["agreed"]["priority"] is False
        stats = http.get("/feedback/stats", params={"days": 1}).json()
        assert stats["feedback"] == 1 and stats["tasks"]["priority"]["corrections"] == 1
        unresolved = {i["case_id"] for i in http.get("/review", params={"limit": 100}).json()["items"]}
        assert case_id not in unresolved and len(unresolved) == CASES - 1
        assert http.post(f"/review/{case_id}/claim").status_code == 409
        assert http.post("/review/no-such-case/claim").status_code == 404
        # Five left open: five more takes, then nothing.
        rest = [http.post("/review/next").json()["item"] for _ in range(CASES - SUPERVISORS + 1)]
        assert rest[-1] is None and {r["case_id"] for r in rest[:-1]} == still_open

    # The metrics, from Ray's Prometheus export: a claim observed per case handed out, one resolve, and the
    # Router's count of the worklist: nothing open, every case but the resolved one claimed.
    def observe(b, a):
        # This app's Router replica: the one that observed the resolve (a replica of an earlier deploy may
        # still have its last values exported).
        router = {dict(labels).get("replica") for (name, labels), value in a.items()
                  if name == "ray_chs_review_time_to_resolve_seconds_count" and value > b.get((name, labels), 0)}
        worklist = {"open": 0.0, "claimed": 0.0}  # summed over queues, priorities and escalation
        for (name, labels), value in a.items():
            if name == "ray_chs_review_cases" and dict(labels).get("replica") in router:
                worklist[dict(labels)["status"]] += value
        return {"claims": delta(b, a, "ray_chs_review_time_to_claim_seconds_count"),
                "resolves": delta(b, a, "ray_chs_review_time_to_resolve_seconds_count"), **worklist}

    expected = {"claims": CASES, "resolves": 1, "open": 0, "claimed": CASES - 1}
    assert poll(serve_session.metrics_url, before, expected, observe, timeout_s=60) == expected
