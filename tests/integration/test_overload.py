"""Overload: bounded queues shed load with 429/503 + Retry-After; nothing fails, hangs or dies.

The app is deployed through the serve-deploy path from serve_config.yaml, with its
queues scaled down (so shedding starts within a second instead of after hundreds of
queued requests) and the classifier's backpressure set to 429 so the two places that
shed are told apart: the proxy, when the ingress is full (503), and the ingress,
when the classifier's queue is full (429, through ``backend_error``).
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import time
from dataclasses import dataclass

import httpx
import pytest

from tests.integration.declarative import REPO_ROOT, app_config, replicas, serve_deploy

pytestmark = pytest.mark.slow

SENTENCES = [
    "A 12-year-old girl says her stepfather beats her at home and she is afraid to go back.",
    "My neighbour's son of six is left alone all day without food while the mother drinks.",
    "A teacher reported that a pupil in class seven has been absent for three weeks and may have been married off.",
    "The caller wants to know how to get a birth certificate for her grandchild so he can join school.",
    "A boy of fifteen was arrested and is held with adults at the police station; he says he was beaten.",
    "Mama anasema mtoto wake wa miaka tisa ananyanyaswa na mjomba wake nyumbani.",
    "A girl, 14, is pregnant and her father has chased her from home; she is sleeping at a friend's place.",
    "Caller reports a child with a disability is locked in a room every day while the family goes to work.",
]
# Call transcripts of about five model windows each, sent as batches of CASES_PER_REQUEST. Each
# request is real work for the ingress (tokenizing, slicing), the classifier and the router, so the
# load generator and Serve's HTTP proxy, sharing the test machine's two cores with everything else,
# stay cheap next to the load they carry. With one-line /classify requests the proxy's own HTTP
# handling is the bottleneck on such a machine, and shedding at the queues is not what is measured.
NARRATIVES = [" ".join(SENTENCES[(i + j) % len(SENTENCES)] for j in range(8 * 9)) for i in range(len(SENTENCES))]
CASES_PER_REQUEST = 4
# Scaled-down queues: the ingress holds 32 requests and queues 32 more at the proxy; the classifier
# runs 16 and queues 16 at each caller's handle.
OVERLOAD_DEPLOYMENTS = [
    {"name": "Preprocessor", "max_ongoing_requests": 32, "max_queued_requests": 32,
     "backpressure_config": {"status_code": 503, "retry_after_s": 1}},
    {"name": "Classifier", "max_ongoing_requests": 16, "max_queued_requests": 16,
     "backpressure_config": {"status_code": 429, "retry_after_s": 2}},
]
OVERLOAD_ARGS = {"windows_per_call": 8, "batching": {"max_batch_size": 8, "batch_wait_timeout_s": 0.005,
                                                     "max_batch_tokens": 8192}}
REQUEST_TIMEOUT_S = 60  # the session proxy's http_options.request_timeout_s
OVERLOAD_FACTOR = 5
LOAD_SECONDS = 15
RESULTS = REPO_ROOT / "bench" / "out" / "overload.json"


@dataclass
class Outcome:
    status: int | None  # None: no HTTP answer (reset, timeout)
    latency_s: float
    problem: str = ""  # why this answer is not acceptable; "" when it is
    shed_by: str = ""  # "proxy" or "ingress" for a 429/503
    server_s: float | None = None  # the ingress's processing_time_seconds, for a 200


def request_cases(i: int) -> list[str]:
    return [NARRATIVES[(i + k) % len(NARRATIVES)] for k in range(CASES_PER_REQUEST)]


def judge(response: httpx.Response, narratives: list[str], reference: dict) -> tuple[str, str]:
    """("", shed_by) for an acceptable answer, (problem, "") otherwise."""
    if response.status_code == 200:
        body = response.json()
        if body.get("success") is not True or len(body.get("results", ())) != len(narratives):
            return f"200 without success: {response.text[:200]}", ""
        for narrative, result in zip(narratives, body["results"]):
            for task, want in reference[narrative].items():
                got = result["classification"][task]
                if got["label"] != want["label"] or abs(got["confidence"] - want["confidence"]) > 1e-5:
                    return f"200 with a different {task}: {got} != {want}", ""
        return "", ""
    if response.status_code in (429, 503):
        retry_after = response.headers.get("retry-after")
        if retry_after is None or int(retry_after) < 1:
            return f"{response.status_code} without Retry-After", ""
        try:
            code = response.json()["error"]["code"]
        except (ValueError, KeyError, TypeError):
            return "", "proxy"  # Serve's proxy refused it before the ingress: a plain-text body
        if code != "overloaded":
            return f"{response.status_code} {code}", ""
        return "", "ingress"
    return f"status {response.status_code}: {response.text[:200]}", ""


async def one(client: httpx.AsyncClient, i: int, reference: dict) -> Outcome:
    narratives = request_cases(i)
    started = time.perf_counter()
    try:
        # httpx's timeout is per phase; this bounds the whole exchange.
        response = await asyncio.wait_for(client.post("/classify/batch", json={"narratives": narratives}),
                                          REQUEST_TIMEOUT_S + 10)
    except (httpx.HTTPError, asyncio.TimeoutError) as exc:
        return Outcome(None, time.perf_counter() - started, f"{type(exc).__name__}: {exc}")
    latency = time.perf_counter() - started
    problem, shed_by = judge(response, narratives, reference)
    server_s = response.json().get("processing_time_seconds") if response.status_code == 200 and not problem else None
    return Outcome(response.status_code, latency, problem, shed_by, server_s)


def client_for(url: str) -> httpx.AsyncClient:
    # The client must not be the bottleneck: no pool limit, and a timeout just past the server's own.
    return httpx.AsyncClient(base_url=url, timeout=REQUEST_TIMEOUT_S + 10,
                             limits=httpx.Limits(max_connections=None, max_keepalive_connections=256))


async def closed_loop(url: str, reference: dict, concurrency: int, seconds: float) -> tuple[float, list[Outcome]]:
    outcomes: list[Outcome] = []
    deadline = time.perf_counter() + seconds
    async with client_for(url) as client:
        async def worker(w: int):
            i = w
            while time.perf_counter() < deadline:
                outcomes.append(await one(client, i, reference))
                i += concurrency
        started = time.perf_counter()
        await asyncio.gather(*(worker(w) for w in range(concurrency)))
        elapsed = time.perf_counter() - started
    return sum(o.status == 200 for o in outcomes) / elapsed, outcomes


async def loop_lag(lags: list[float], stop: asyncio.Event, tick: float = 0.05) -> None:
    """How late this process's event loop runs: the share of latency that is the client's own."""
    while not stop.is_set():
        started = time.perf_counter()
        await asyncio.sleep(tick)
        lags.append(time.perf_counter() - started - tick)


async def open_loop(url: str, reference: dict, rate: float, seconds: float,
                    lags: list[float]) -> tuple[float, list[Outcome]]:
    """Send at ``rate``/s for ``seconds`` whatever the answers; then wait for every answer (bounded)."""
    n = int(rate * seconds)
    stop = asyncio.Event()
    monitor = asyncio.create_task(loop_lag(lags, stop))
    async with client_for(url) as client:
        started = time.perf_counter()
        tasks = []
        for i in range(n):
            delay = started + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(client, i, reference)))
        sent_for = time.perf_counter() - started
        outcomes = await asyncio.gather(*tasks)  # each bounded by one()
    stop.set()
    await monitor
    return n / sent_for, list(outcomes)


def single_latency(url: str) -> float:
    started = time.perf_counter()
    r = httpx.post(f"{url}/classify/batch", json={"narratives": request_cases(0)}, timeout=REQUEST_TIMEOUT_S)
    assert r.status_code == 200, r.text
    return time.perf_counter() - started


def p(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))] if values else float("nan")


def test_overload_sheds_cleanly_and_recovers(serve_session, tiny_checkpoint):
    url = serve_deploy(serve_session, app_config(tiny_checkpoint, args=OVERLOAD_ARGS, deployments=OVERLOAD_DEPLOYMENTS))
    try:
        reference = {}
        for narrative in NARRATIVES:
            r = httpx.post(f"{url}/classify", json={"narrative": narrative}, timeout=60)
            assert r.status_code == 200, r.text
            reference[narrative] = r.json()["classification"]
        before = {d: {(r["replica_id"], r["actor_id"], r["pid"]) for r in replicas(d)}
                  for d in ("Preprocessor", "Classifier", "Router")}
        assert all(len(v) == 1 for v in before.values()), before

        baseline = statistics.median(single_latency(url) for _ in range(10))
        # Capacity: a closed loop under the ingress's 32-request limit, so nothing is shed.
        capacity, warm = asyncio.run(closed_loop(url, reference, concurrency=24, seconds=5))
        assert not [o.problem for o in warm if o.problem]
        rate = OVERLOAD_FACTOR * capacity

        lags: list[float] = []
        offered_rate, outcomes = asyncio.run(open_loop(url, reference, rate, LOAD_SECONDS, lags))
        load_stopped = time.monotonic()

        # Back to normal within 10 s of the load stopping: a request completes, and
        # bounded polling sees single-request latency back near the pre-load baseline.
        recovered_after = None
        latencies_after = []
        while time.monotonic() - load_stopped < 10:
            latencies_after.append(single_latency(url))
            if latencies_after[-1] <= max(5 * baseline, 0.05):
                recovered_after = time.monotonic() - load_stopped
                break
            time.sleep(0.2)

        accepted = [o for o in outcomes if o.status == 200 and not o.problem]
        shed = [o for o in outcomes if o.shed_by]
        problems = [o for o in outcomes if o.problem]
        figures = {
            "request": f"POST /classify/batch, {CASES_PER_REQUEST} transcripts of ~1300 words",
            "capacity_rps": round(capacity, 1),
            "offered_rps": round(offered_rate, 1),
            "offered_x_capacity": round(offered_rate / capacity, 2),
            "seconds": LOAD_SECONDS,
            "offered": len(outcomes),
            "accepted": len(accepted),
            "shed": len(shed),
            "shed_by_proxy_503": sum(o.shed_by == "proxy" for o in shed),
            "shed_by_ingress_429": sum(o.shed_by == "ingress" for o in shed),
            "failed": len(problems),
            "accepted_rps": round(len(accepted) / LOAD_SECONDS, 1),
            "p50_accepted_s": round(p([o.latency_s for o in accepted], 0.50), 4),
            "p99_accepted_s": round(p([o.latency_s for o in accepted], 0.99), 4),
            "max_accepted_s": round(max((o.latency_s for o in accepted), default=float("nan")), 4),
            "p99_shed_s": round(p([o.latency_s for o in shed], 0.99), 4),
            "p99_accepted_server_s": round(p([o.server_s for o in accepted if o.server_s is not None], 0.99), 4),
            "client_loop_lag_p99_s": round(p(lags, 0.99), 4),
            "client_loop_lag_max_s": round(max(lags, default=float("nan")), 4),
            "baseline_single_s": round(baseline, 4),
            "recovered_after_s": None if recovered_after is None else round(recovered_after, 2),
            "latencies_after_load_s": [round(x, 4) for x in latencies_after],
            "cpu_count": os.cpu_count(),
        }
        print("\noverload figures: " + json.dumps(figures))
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(figures, indent=2) + "\n")

        # Every request got an answer: a correct 200 or a 429/503 with Retry-After.
        assert not problems, [o.problem for o in problems[:10]]
        assert len(accepted) + len(shed) == len(outcomes)
        # The load really was an overload, and it really was shed.
        assert offered_rate >= 0.8 * OVERLOAD_FACTOR * capacity, figures
        assert shed and accepted, figures
        # Nothing hung: the slowest answer came well inside the request timeout.
        assert max(o.latency_s for o in outcomes) < REQUEST_TIMEOUT_S
        assert recovered_after is not None, figures

        # No replica died or was replaced: the same replicas, the same processes, all RUNNING.
        for deployment, ids in before.items():
            now = replicas(deployment)
            assert {(r["replica_id"], r["actor_id"], r["pid"]) for r in now} == ids, deployment
            assert all(r["state"] == "RUNNING" for r in now), now
            for _, _, pid in ids:
                os.kill(pid, 0)  # raises if the process is gone
    finally:
        serve_session.undeploy()


def test_a_full_classifier_queue_answers_with_its_backpressure_status(serve_session, tiny_checkpoint):
    """The classifier's own queue full: the ingress answers with the classifier's configured
    backpressure status and Retry-After, in the service's error body (``backend_error``).

    The classifier takes 2 calls and queues 1, and waits 2 s to fill each batch, so of 12
    simultaneous requests most find its queue full. Coalescing is off: on, the ingress would send
    the 12 as one group, one classifier call.
    """
    url = serve_deploy(serve_session, app_config(tiny_checkpoint, args={"coalescing": {"max_cases": 1}}, deployments=[{
        "name": "Classifier", "max_ongoing_requests": 2, "max_queued_requests": 1,
        "backpressure_config": {"status_code": 429, "retry_after_s": 3},
        "user_config": {"max_batch_size": 32, "batch_wait_timeout_s": 2.0, "max_batch_tokens": 8192}}]))
    try:
        async def burst():
            async with client_for(url) as client:
                return await asyncio.gather(*(client.post("/classify", json={"narrative": n})
                                              for n in (SENTENCES * 2)[:12]))

        responses = asyncio.run(burst())
        statuses = sorted(r.status_code for r in responses)
        assert set(statuses) <= {200, 429}, statuses
        refused = [r for r in responses if r.status_code == 429]
        assert len(refused) >= 6, statuses
        for r in refused:
            assert r.headers["retry-after"] == "3"
            error = r.json()["error"]
            assert error["code"] == "overloaded" and error["request_id"] == r.headers["x-request-id"]
        for r in responses:
            if r.status_code == 200:
                assert r.json()["success"] is True
        # Nothing stays stuck: once the burst is over the classifier answers again.
        assert httpx.post(f"{url}/classify", json={"narrative": SENTENCES[0]}, timeout=60).status_code == 200
    finally:
        serve_session.undeploy()
