"""The intake's store on its real brokers, without Ray: results expire after their TTL, a full queue
keeps nothing. (The consumer is not running, so every case stays queued.)"""

from __future__ import annotations

import time
import uuid

import pytest

from tests.integration.test_intake import start_redis


@pytest.fixture(params=["embedded", "redis"])
def store_for(request, tmp_path):
    from deployments.core import tasks
    from deployments.core.config import IntakeArgs
    from deployments.intake.producer import IntakeStore

    proc = None
    broker = {"data_dir": str(tmp_path / "intake")}
    if request.param == "redis":
        proc, url = start_redis(tmp_path)
        broker["broker_url"] = url

    def make(**overrides) -> IntakeStore:
        args = IntakeArgs(**broker, **overrides)
        return IntakeStore(args, tasks.resolve_broker(args, env={}))

    yield make
    if proc is not None:
        proc.terminate()
        proc.wait(10)


def case(text: str) -> dict:
    return {"narrative": text, "include_confidence": True, "include_chunks": False}


def test_a_task_is_gone_after_its_ttl(store_for):
    store = store_for(result_ttl_s=1)
    task_id = str(uuid.uuid4())
    (view,) = store.submit([(task_id, "ttl", case("a child is hurt"))])
    assert view["status"] == "queued" and store.view(task_id) is not None
    time.sleep(1.2)
    assert store.view(task_id) is None, "expired: 404, and its record is deleted"
    assert store.view(task_id) is None


def test_a_full_queue_refuses_the_whole_submission_and_keeps_nothing(store_for):
    store = store_for(max_queued=3, retry_after_s=7)
    ids = [str(uuid.uuid4()) for _ in range(4)]
    store.submit([(ids[0], None, case("first case"))])
    with pytest.raises(Exception) as err:
        store.submit([(t, None, case(f"case {i}")) for i, t in enumerate(ids[1:])])
    assert (err.value.status, err.value.code, err.value.headers["Retry-After"]) == (503, "queue_full", "7")
    assert all(store.view(t) is None for t in ids[1:]) and store.queue_depth() == 1
    # A task already known is given back even when the queue is full.
    store.submit([(t, None, case(f"case {i}")) for i, t in enumerate(ids[1:3])])
    assert store.queue_depth() == 3
    (again,) = store.submit([(ids[0], None, case("first case"))])
    assert again["task_id"] == ids[0] and again["status"] == "queued"
