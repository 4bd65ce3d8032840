"""Single /classify requests that reach the ingress together travel as one group, each answered as if alone.

The app is deployed with a long coalescing wait, so requests sent at once are sure to meet in a
group, and with a small ``windows_per_call``: the one-window cases that met are packed into groups
of at most that many windows, and a case of several windows goes alone, in the Classifier's long lane.
That groups formed is read from outside: the ingress's group-size histogram and the Router's
request counter on Ray's Prometheus endpoint (see test_metrics.py for how they are scraped).
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from clients.loadtest import FALLBACK_NARRATIVES
from tests.integration.test_api import TASKS
from tests.integration.test_metrics import delta, poll, scrape, settled

MAX_CASES = 8
WINDOWS_PER_CALL = 4
SHORT = [f"{FALLBACK_NARRATIVES[i % len(FALLBACK_NARRATIVES)]} This is call number {i}." for i in range(21)]
TWO_WINDOWS = " ".join([FALLBACK_NARRATIVES[1]] * 25)  # several windows: sent alone
LONG = " ".join([FALLBACK_NARRATIVES[0]] * 90)  # over windows_per_call: sent alone, a slice at a time
# Over the request's window limit (MAX_WINDOWS): refused with 413 in its own caller's task, never grouped.
INVALID = " ".join([FALLBACK_NARRATIVES[0]] * 200)  # 13 windows
MAX_WINDOWS = 8  # LONG needs 6
NARRATIVES = SHORT[:10] + [TWO_WINDOWS, INVALID, LONG] + SHORT[10:]
BAD = NARRATIVES.index(INVALID)


def rid(i: int) -> str:
    return f"coalesce-{i}"


def classify(http: httpx.Client, i: int, barrier: threading.Barrier | None = None) -> httpx.Response:
    if barrier is not None:
        barrier.wait()
    return http.post("/classify", json={"narrative": NARRATIVES[i], "call_id": f"coalesce-call-{i}"},
                     headers={"X-Request-ID": rid(i)})


def assert_same_answer(got: dict, alone: dict) -> None:
    for task in TASKS:
        assert got["classification"][task]["label"] == alone["classification"][task]["label"]
        assert got["classification"][task]["confidence"] == pytest.approx(
            alone["classification"][task]["confidence"], abs=1e-5)
    assert got["routing"] == alone["routing"]
    assert (got["chunks"], got["tokens"], got["truncated"]) == (alone["chunks"], alone["tokens"], alone["truncated"])


def test_concurrent_singles_are_coalesced_and_each_answered_as_if_alone(serve_session, tiny_checkpoint):
    url = serve_session.deploy(model=str(tiny_checkpoint), windows_per_call=WINDOWS_PER_CALL,
                               max_batch_windows=MAX_WINDOWS, coalescing={"max_cases": MAX_CASES, "wait_timeout_s": 0.25})
    metrics_url = serve_session.metrics_url
    n = len(NARRATIVES)
    with httpx.Client(base_url=url, timeout=60) as http:
        assert http.get("/health").status_code == 200
        before = settled(metrics_url)
        barrier = threading.Barrier(n)
        with ThreadPoolExecutor(n) as pool:
            responses = list(pool.map(lambda i: classify(http, i, barrier), range(n)))

        # Read from outside: groups held several cases, and the Router was called once per group,
        # plus once for each of the two cases of several windows, which went alone.
        valid = n - 1

        def observe(b, a):
            return {"cases": delta(b, a, "ray_chs_cases_total"),
                    "groups": delta(b, a, "ray_chs_coalesced_group_size_count"),
                    "router_calls": delta(b, a, "ray_serve_deployment_request_counter_total", deployment="Router")}

        def done(b, a):
            got = observe(b, a)
            return got["cases"] == valid and got["groups"] > 0 and got["router_calls"] == got["groups"] + 2

        poll(metrics_url, before, True, done)
        after = scrape(metrics_url)
        seen = observe(before, after)
        groups = seen["groups"]
        assert seen == {"cases": valid, "groups": groups, "router_calls": groups + 2}
        assert 0 < groups < valid - 2
        # Cumulative buckets: not every group was a lone case, and none held more than fit one call.
        assert delta(before, after, "ray_chs_coalesced_group_size_bucket", le="1.0") < groups
        assert delta(before, after, "ray_chs_coalesced_group_size_bucket", le=str(float(WINDOWS_PER_CALL))) == groups

        bad = responses[BAD]
        assert bad.status_code == 413, bad.text
        assert bad.json()["success"] is False
        assert bad.json()["error"]["code"] == "payload_too_large"
        assert bad.json()["error"]["request_id"] == rid(BAD) == bad.headers["x-request-id"]

        answered = {i: r for i, r in enumerate(responses) if i != BAD}
        for i, r in answered.items():
            assert r.status_code == 200, r.text
            assert r.headers["x-request-id"] == rid(i)
            assert r.json()["processing_time_seconds"] > 0
        bodies = {i: r.json() for i, r in answered.items()}
        assert len({b["case_id"] for b in bodies.values()}) == valid
        assert bodies[NARRATIVES.index(TWO_WINDOWS)]["chunks"] == 2
        assert bodies[NARRATIVES.index(LONG)]["chunks"] > WINDOWS_PER_CALL

        # Each case is its own record: its own request id and call id, no batch index.
        for i, body in bodies.items():
            record = http.get(f"/cases/{body['case_id']}")
            assert record.status_code == 200, record.text
            case = record.json()["case"]
            assert (case["case_id"], case["request_id"], case["call_id"]) == (
                body["case_id"], rid(i), f"coalesce-call-{i}")
            assert case["batch_index"] is None
            by_request = http.get(f"/cases/{rid(i)}")
            assert by_request.status_code == 200 and by_request.json()["case"]["case_id"] == body["case_id"]

        # The same narratives one at a time, each a group of one.
        for i, body in bodies.items():
            alone = http.post("/classify", json={"narrative": NARRATIVES[i]})
            assert alone.status_code == 200, alone.text
            assert_same_answer(body, alone.json())
            assert alone.json()["case_id"] != body["case_id"]
