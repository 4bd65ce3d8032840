"""The service's own metrics, scraped from Ray's real Prometheus endpoint.

Ray exports a replica's metrics to its metrics agent every
``metrics_report_interval_ms`` (10 s by default, 2 s in the test session), so the test first waits for
the counters to settle (nothing in flight from earlier tests), then sends
known requests and polls, with a bounded wait, until the deltas arrive; the
deltas must then equal what the responses say exactly.

Exported names (Ray prefixes ``ray_``; a counter named ``*_total`` keeps its
name, histograms get ``_bucket``/``_count``/``_sum``):
ray_chs_cases_total, ray_chs_escalations_total, ray_chs_human_review_total,
ray_chs_confidence_*, ray_chs_batch_size_*, ray_chs_batch_tokens_*,
ray_chs_chunks_per_case_*.

A histogram's ``_count`` and ``_bucket`` series are exact; its ``_sum`` is not:
Ray 2.60 ships bucket counts from the replica and the agent rebuilds the
observations from bucket midpoints (OpenTelemetryMetricRecorder.
record_histogram_aggregated_batch), so only counts and buckets are asserted.
"""

from __future__ import annotations

import re
import time
from collections import Counter

import httpx

from clients import HelplineClient, HelplineError
from clients.loadtest import FALLBACK_NARRATIVES
from deployments.metrics import SIZE_BUCKETS
from deployments.core.labels import TASKS  # the model's four heads: chs_confidence's 'task' tag
from tests.conftest import METRICS_REPORT_INTERVAL_S

APP = "helpline"
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
REPORT_INTERVAL_S = METRICS_REPORT_INTERVAL_S  # the session cluster's metrics_report_interval_ms


def scrape(url: str) -> dict:
    """{(name, frozenset(labels)): value} for every sample of the helpline app."""
    samples = {}
    for line in httpx.get(url, timeout=10).text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        if not m:
            continue
        labels = dict(LABEL.findall(m.group(2) or ""))
        if labels.get("application") != APP:
            continue
        samples[(m.group(1), frozenset(labels.items()))] = float(m.group(3))
    return samples


def delta(before: dict, after: dict, name: str, **match) -> float:
    """Increase of ``name`` over the series that match; series of replicas gone since are ignored."""
    total = 0.0
    for (n, labels), value in after.items():
        if n == name and all((k, v) in labels for k, v in match.items()):
            total += value - before.get((n, labels), 0.0)
    return total


def settled(url: str, timeout_s: float = 60.0) -> dict:
    """A scrape after which nothing is still on its way: unchanged for longer than one report interval."""
    def ours(s):
        return {k: v for k, v in s.items() if k[0].startswith(("ray_chs_", "ray_serve_num_http_requests"))}

    deadline = time.monotonic() + timeout_s
    last, since = ours(scrape(url)), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(1.0)
        now = ours(scrape(url))
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since > REPORT_INTERVAL_S + 1.5:
            return scrape(url)
    raise AssertionError("the metrics kept changing; is something else sending requests?")


def poll(url: str, before: dict, expected: dict, observe, timeout_s: float = 40.0) -> dict:
    """Scrape until ``observe(before, after) == expected`` or the time is up; return the last observation."""
    deadline = time.monotonic() + timeout_s
    while True:
        got = observe(before, scrape(url))
        if got == expected or time.monotonic() > deadline:
            return got
        time.sleep(1.0)


def test_case_metrics_count_exactly_what_was_served(served_tiny, serve_session):
    metrics_url = serve_session.metrics_url
    long_one = " ".join([FALLBACK_NARRATIVES[0]] * 30)  # several model windows
    singles = list(FALLBACK_NARRATIVES) + [long_one]
    batch = list(FALLBACK_NARRATIVES[:5])

    before = settled(metrics_url)
    with HelplineClient(served_tiny, max_retries=0) as client:
        results = [client.classify(n) for n in singles]
        results += client.classify_batch(batch, batch_size=len(batch))
        try:
            client.classify("   ")
        except HelplineError as err:
            assert err.status == 400
    assert max(r.chunks for r in results) > 1

    cases = Counter((str(r.main_category.label), str(r.priority.label), r.routing.queue) for r in results)
    windows = sum(r.chunks for r in results)
    expected = {
        "cases": dict(cases),
        "escalations": sum(r.routing.escalate for r in results),
        "human_review": sum(r.routing.human_review for r in results),
        "confidence_count": {task: len(results) for task in TASKS},
        "chunks_count": len(results),
        # Cumulative buckets: how many cases took at most `le` windows.
        "chunks_buckets": {b: sum(r.chunks <= b for r in results) for b in SIZE_BUCKETS[:5]},
        "http_200": len(singles) + 1,
        "http_400": 1,
        # The classifier reports its own metrics, on its own interval: wait for its passes too.
        "forward_passes_reported": True,
    }

    def observe(b, a):
        return {
            "cases": {key: delta(b, a, "ray_chs_cases_total", main_category=key[0], priority=key[1], queue=key[2])
                      for key in cases},
            "escalations": delta(b, a, "ray_chs_escalations_total"),
            "human_review": delta(b, a, "ray_chs_human_review_total"),
            "confidence_count": {t: delta(b, a, "ray_chs_confidence_count", task=t) for t in TASKS},
            "chunks_count": delta(b, a, "ray_chs_chunks_per_case_count"),
            "chunks_buckets": {le: delta(b, a, "ray_chs_chunks_per_case_bucket", le=str(float(le)))
                               for le in SIZE_BUCKETS[:5]},
            "http_200": delta(b, a, "ray_serve_num_http_requests_total", status_code="200"),
            "http_400": delta(b, a, "ray_serve_num_http_requests_total", status_code="400"),
            "forward_passes_reported": delta(b, a, "ray_chs_batch_size_count") >= len(singles) + 1,
        }

    got = poll(metrics_url, before, expected, observe)
    assert got == expected

    after = scrape(metrics_url)
    # Counted by tags: no case of a label combination that was not served.
    assert delta(before, after, "ray_chs_cases_total") == len(results)
    # Forward passes: at least one per request (they were sent one after another), at most one per window.
    passes = delta(before, after, "ray_chs_batch_size_count")
    assert len(singles) + 1 <= passes <= windows
    assert delta(before, after, "ray_chs_batch_size_bucket", le="+Inf") == passes
    assert delta(before, after, "ray_chs_batch_tokens_count") == passes
    # Histogram buckets are cumulative and end in +Inf == count.
    inf = delta(before, after, "ray_chs_confidence_bucket", task="priority", le="+Inf")
    assert inf == len(results)


def test_forward_passes_are_counted_by_lane(served_tiny, serve_session):
    """What a person waits on goes in the classifier's live lane, a single case of several windows in
    its long lane, the rest in its queued lane (core/lanes.py): three single short cases, one after
    another, are three live passes; a long case is long passes; a queued case and a batch are neither."""
    metrics_url = serve_session.metrics_url
    before = settled(metrics_url)
    with httpx.Client(base_url=served_tiny, timeout=60) as http:
        for narrative in FALLBACK_NARRATIVES[:3]:
            assert http.post("/classify", json={"narrative": narrative}).status_code == 200
        long = http.post("/classify", json={"narrative": " ".join([FALLBACK_NARRATIVES[0]] * 40)})
        assert long.status_code == 200 and long.json()["chunks"] > 1
        task = http.post("/tasks/classify", json={"narrative": FALLBACK_NARRATIVES[3]}).json()["task_id"]
        assert http.post("/classify/batch", json={"narratives": list(FALLBACK_NARRATIVES[4:6])}).status_code == 200
        deadline = time.monotonic() + 60
        while http.get(f"/tasks/{task}").json()["status"] != "succeeded":
            assert time.monotonic() < deadline, "the queued case never finished"
            time.sleep(0.2)
    expected = {"live": 3.0, "long_passes_at_least_1": True, "queued_passes_at_least_2": True}

    def observe(b, a):
        return {"live": delta(b, a, "ray_chs_batch_size_count", lane="live"),
                "long_passes_at_least_1": delta(b, a, "ray_chs_batch_size_count", lane="long") >= 1,
                "queued_passes_at_least_2": delta(b, a, "ray_chs_batch_size_count", lane="queued") >= 2}

    assert poll(metrics_url, before, expected, observe) == expected


def test_feedback_is_counted_per_task_agreement_and_model(served_tiny, serve_session):
    metrics_url = serve_session.metrics_url
    with httpx.Client(base_url=served_tiny, timeout=60) as http:
        labels = http.get("/info").json()["labels"]
        cases = http.post("/classify/batch", json={"narratives": list(FALLBACK_NARRATIVES[:2])}).json()["results"]
        before = settled(metrics_url)
        predicted_sub = cases[1]["classification"]["sub_category"]["label"]
        other = next(s for s in labels["sub_category"] if s != predicted_sub)
        assert http.post("/feedback", json={"case_id": cases[0]["case_id"], "rating": 5}).status_code == 201
        assert http.post("/feedback", json={"case_id": cases[1]["case_id"],
                                            "corrections": {"sub_category": other}}).status_code == 201
        model = http.get(f"/cases/{cases[0]['case_id']}").json()["case"]["model"]
    version = f"{model['id']}@{model['revision'] or ''}"
    expected = {"sub_category": {"true": 1, "false": 1}, "main_category": {"true": 2, "false": 0},
                "priority": {"true": 2, "false": 0}}

    def observe(b, a):
        return {task: {agreed: delta(b, a, "ray_chs_feedback_total", task=task, agreed=agreed, model=version)
                       for agreed in ("true", "false")} for task in expected}

    assert poll(metrics_url, before, expected, observe) == expected
