"""Serve's autoscaling and independent scaling, deployed the way ``serve deploy`` does.

Two cores cannot show throughput rising with replicas, so this checks the mechanism
only: under sustained load the classifier grows from one replica to its maximum on
its own, while the ingress keeps the fixed count it was given and the router stays at one.
"""

from __future__ import annotations

import threading
import time

import httpx

from tests.integration.declarative import app_config, replicas, serve_deploy

# look_back_period_s must exceed Serve's 10 s metrics interval.
AUTOSCALING = {"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 2,
               "upscale_delay_s": 1, "downscale_delay_s": 600, "look_back_period_s": 11}


def running(deployment: str) -> int:
    return sum(r["state"] == "RUNNING" for r in replicas(deployment))


def test_classifier_scales_out_under_load_independently_of_the_ingress(serve_session, tiny_checkpoint):
    url = serve_deploy(serve_session, app_config(tiny_checkpoint, deployments=[
        {"name": "Preprocessor", "num_replicas": 2},
        {"name": "Classifier", "num_replicas": None, "autoscaling_config": AUTOSCALING},
    ]))
    assert (running("Preprocessor"), running("Classifier"), running("Router")) == (2, 1, 1)

    stop = threading.Event()
    statuses: list[int] = []

    def load():
        # Long narratives keep many windows in flight, above target_ongoing_requests.
        body = {"narratives": ["a long call about a child at risk " * 300] * 4}
        with httpx.Client(base_url=url, timeout=60) as client:
            while not stop.is_set():
                statuses.append(client.post("/classify/batch", json=body).status_code)

    workers = [threading.Thread(target=load) for _ in range(6)]
    for w in workers:
        w.start()
    try:
        deadline = time.monotonic() + 90
        while running("Classifier") < 2 and time.monotonic() < deadline:
            time.sleep(0.5)
        scaled = running("Classifier")
    finally:
        stop.set()
        for w in workers:
            w.join()

    assert scaled == 2, "the classifier did not scale out to max_replicas under load"
    assert running("Preprocessor") == 2 and running("Router") == 1
    assert statuses and set(statuses) <= {200, 429, 503}, sorted(set(statuses))
    assert statuses.count(200) > 0
