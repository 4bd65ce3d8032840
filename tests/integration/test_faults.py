"""Faults under steady load: a classifier replica killed, the app redeployed in place and with a new model.

A steady stream of distinct cases goes through the retrying client
(``clients.AsyncHelplineClient``: retries 429/503/connection errors, honouring
Retry-After). Every case must end with exactly one result, equal to what the
model it names gives that narrative when nothing is failing.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import dataclass, field

import httpx
import pytest
import ray

from clients.client import AsyncHelplineClient, HelplineClient
from clients.retry import RetryPolicy
from tests.integration.declarative import REPO_ROOT, app_config, replicas, serve_deploy, wait_running

pytestmark = pytest.mark.slow

SENTENCES = [
    "a girl of {n} says her stepfather beats her at home and she is afraid to go back",
    "the neighbour's son is left alone all day without food while the mother drinks",
    "a teacher reports a pupil absent for {n} days who may have been married off",
    "the caller asks how to get a birth certificate for her grandchild",
    "a boy of {n} is held with adults at the police station and says he was beaten",
    "a child with a disability is locked in a room every day while the family works",
    "she is pregnant and her father chased her from home {n} days ago",
    "the mother wants advice on feeding a baby who keeps losing weight",
]
TASKS = ("main_category", "sub_category", "sub_category_2", "intervention", "priority")
RATE = 4.0  # cases a second
RETRY = RetryPolicy(max_retries=12, backoff_base_s=0.25, backoff_max_s=2.0, max_retry_after_s=5.0)
RESULTS = REPO_ROOT / "bench" / "out" / "faults.json"


def narratives(n: int, salt: str) -> list[str]:
    """``n`` distinct narratives (the case number and salt are spelled out as words in them)."""
    out = []
    for i in range(n):
        a, b = SENTENCES[i % len(SENTENCES)], SENTENCES[(i * 3 + 1) % len(SENTENCES)]
        out.append(f"case {salt} number {i} {a.format(n=i % 17 + 2)} and {b.format(n=i % 5 + 1)}")
    return out


def reference(url: str, texts: list[str]) -> dict[str, dict]:
    """What the serving model says for each narrative, with nothing failing: {narrative: {task: (label, conf)}}."""
    with HelplineClient(url, max_retries=0) as client:
        results = client.classify_batch(texts, batch_size=64)
        model = client.info().model.id
    return {t: {"model": model, **{task: (getattr(r, task).label, getattr(r, task).confidence) for task in TASKS}}
            for t, r in zip(texts, results)}


@dataclass
class Steady:
    """Open-loop steady load through the retrying client; one entry per case, whatever happened."""

    url: str
    texts: list[str]
    results: dict = field(default_factory=dict)  # index -> ClassifyResult
    errors: dict = field(default_factory=dict)  # index -> repr of the final exception
    retry_reasons: list = field(default_factory=list)
    stats: dict = field(default_factory=dict)

    async def run(self, during) -> None:
        """Send every case at RATE/s; ``during(elapsed_s)`` is awaited alongside (the fault to inject)."""
        on_retry = lambda n, delay, reason: self.retry_reasons.append(reason)  # noqa: E731
        async with AsyncHelplineClient(self.url, retry=RETRY, timeout=60, on_retry=on_retry) as client:
            async def case(i: int, text: str):
                try:
                    self.results[i] = await client.classify(text)
                except Exception as exc:  # recorded and asserted on: a lost case
                    self.errors[i] = repr(exc)

            async def send():
                started = time.perf_counter()
                tasks = []
                for i, text in enumerate(self.texts):
                    delay = started + i / RATE - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    tasks.append(asyncio.create_task(case(i, text)))
                await asyncio.gather(*tasks)

            await asyncio.wait_for(asyncio.gather(send(), during()), timeout=len(self.texts) / RATE + 240)
            self.stats = client.stats.as_dict()

    def check(self, references: dict[str, dict]) -> dict:
        """Every case: exactly one result, equal (labels; confidences within 1e-5) to its model's reference."""
        assert not self.errors, f"lost cases: {dict(list(self.errors.items())[:5])}"
        assert sorted(self.results) == list(range(len(self.texts)))
        by_model = {}
        for i, result in self.results.items():
            text = self.texts[i]
            model = result.model.id
            want = references[model][text]
            by_model[model] = by_model.get(model, 0) + 1
            for task in TASKS:
                got = getattr(result, task)
                label, confidence = want[task]
                assert got.label == label, (i, task, model, got, want[task])
                assert abs(got.confidence - confidence) <= 1e-5, (i, task, model, got, want[task])
        return by_model


def classifier_replica() -> dict:
    (replica,) = [r for r in replicas("Classifier") if r["state"] == "RUNNING"]
    return replica


def pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def record(name: str, figures: dict) -> None:
    print(f"\n{name}: " + json.dumps(figures))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    existing = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    RESULTS.write_text(json.dumps({**existing, name: figures}, indent=2) + "\n")


# A classifier that waits up to a second to fill each batch: at 4 cases/s there are always cases
# inside the replica, so the kill certainly takes some with it (the worst moment to die).
SLOW_FILL = {"max_batch_size": 32, "batch_wait_timeout_s": 1.0, "max_batch_tokens": 8192}


def test_killed_classifier_replica_is_replaced_and_no_case_is_lost(serve_session, tiny_checkpoint):
    url = serve_deploy(serve_session, app_config(tiny_checkpoint, deployments=[
        {"name": "Classifier", "user_config": SLOW_FILL}]))
    try:
        texts = narratives(int(RATE * 20), salt="kill")
        references = {str(tiny_checkpoint): reference(url, texts)}
        # A kill almost always takes cases with it (SLOW_FILL), but on a busy host it can fall between
        # batches; then the replacement is killed again, up to three times, so the retry path is proven.
        for _ in range(3):
            victim = classifier_replica()
            killed_at = {}

            async def kill_after(seconds=5.0, victim=victim):
                await asyncio.sleep(seconds)
                handle = ray.get_actor(victim["actor_name"], namespace="serve")
                ray.kill(handle, no_restart=True)
                killed_at["t"] = time.monotonic()

            steady = Steady(url, texts)
            asyncio.run(steady.run(kill_after))

            # Serve replaced it: a new replica in a new process, the app RUNNING again.
            wait_running(serve_session, timeout_s=120)
            replacement = classifier_replica()
            assert replacement["replica_id"] != victim["replica_id"]
            assert replacement["actor_id"] != victim["actor_id"]
            assert pid_gone(victim["pid"])
            by_model = steady.check(references)
            figures = {"cases": len(texts), "results": len(steady.results), "lost": len(steady.errors),
                       "retries": steady.stats.get("retries"), "http_attempts": steady.stats.get("requests"),
                       "retry_reasons": sorted(set(steady.retry_reasons)), "by_model": by_model}
            record("classifier_killed", figures)
            if steady.stats["retries"] >= 1:
                break
        # The kill did take cases with it, and the client's retries brought every one of them back.
        assert steady.stats["retries"] >= 1, figures
    except BaseException:
        serve_session.undeploy()
        raise
    # Passed: the app stays, and the next test's deploy (the shipped batching) updates it in place
    # instead of starting every replica again.


def test_redeploy_under_load_loses_nothing(serve_session, checkpoints):
    """``serve deploy``'s path: a changed user_config (in place), then a changed model (rolling update)."""
    first, second = checkpoints["tiny"], checkpoints["tiny_legacy"]
    url = serve_deploy(serve_session, app_config(first))
    try:
        texts = narratives(int(RATE * 45), salt="redeploy")
        references = {str(first): reference(url, texts)}
        before = {d: {r["replica_id"] for r in replicas(d)} for d in ("Preprocessor", "Classifier", "Router")}
        events = {}

        async def redeploy():
            await asyncio.sleep(4)
            # 1. Only the classifier's user_config changes: Serve reconfigures the running replica.
            batching = {"max_batch_size": 48, "batch_wait_timeout_s": 0.01, "max_batch_tokens": 4096}
            await asyncio.to_thread(serve_deploy, serve_session, app_config(first, deployments=[
                {"name": "Classifier", "user_config": batching}]), wait=False)
            await asyncio.to_thread(wait_running, serve_session, timeout_s=120)
            events["reconfigured_replicas"] = {d: {r["replica_id"] for r in replicas(d)} for d in before}
            await asyncio.sleep(3)
            # 2. A new model path: the app is rebuilt and every deployment rolls to new replicas.
            await asyncio.to_thread(serve_deploy, serve_session, app_config(second), wait=False)
            events["model_change_sent"] = time.monotonic()
            await asyncio.to_thread(wait_running, serve_session, timeout_s=180)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:  # until the old replicas have drained and stopped
                now = {d: [r for r in replicas(d)] for d in before}
                if all(len(rs) == 1 and rs[0]["state"] == "RUNNING" and rs[0]["replica_id"] not in before[d]
                       for d, rs in now.items()):
                    break
                await asyncio.sleep(0.5)
            events["rolled_replicas"] = {d: {r["replica_id"] for r in replicas(d)} for d in before}

        steady = Steady(url, texts)
        asyncio.run(steady.run(redeploy))

        # The user_config change was applied in place: the same replicas.
        assert events["reconfigured_replicas"] == before
        # The model change replaced every replica, and the app serves the new model.
        for d, ids in events["rolled_replicas"].items():
            assert ids and not ids & before[d], d
        with httpx.Client(base_url=url, timeout=60) as http:
            assert http.get("/info").json()["model"]["id"] == str(second)
        references[str(second)] = reference(url, texts)
        by_model = steady.check(references)
        figures = {"cases": len(texts), "results": len(steady.results), "lost": len(steady.errors),
                   "retries": steady.stats.get("retries"), "http_attempts": steady.stats.get("requests"),
                   "retry_reasons": sorted(set(steady.retry_reasons)), "by_model": by_model,
                   "path": "ServeControllerClient.deploy_apps (what `serve deploy` calls)"}
        record("redeploy_under_load", figures)
        assert len(by_model) == 2, by_model  # the stream really spanned the model change
    finally:
        serve_session.undeploy()
