"""The durable intake over real HTTP on a real Ray cluster, once on the embedded filesystem broker and
once on a real redis-server (Debian's, started here on a free port in a temporary directory).

The restart test: 200 cases submitted, the Classifier replica killed while they run, then the whole
application deleted and deployed again on the same broker. Every task must end ``succeeded`` with
exactly the /classify answer for its narrative. Its figures go to bench/out/intake_restart.json.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import ray

from tests.conftest import CALLBACK_SECRET, REPO_ROOT, free_port
from tests.integration.declarative import replicas

RESULTS = REPO_ROOT / "bench" / "out" / "intake_restart.json"
MAX_QUEUED = 250
RESTART_CASES = 200
# A classifier that waits up to a second to fill a batch: the backlog drains over tens of
# seconds, so the kill and the redeploy both land while cases are queued and in flight.
SLOW_FILL = {"max_batch_size": 32, "batch_wait_timeout_s": 1.0, "max_batch_tokens": 8192}

def start_redis(folder) -> tuple[subprocess.Popen, str]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is absent: `apt-get install -y redis-server` (.ci/run installs it)")
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder), "--appendonly", "yes",
         "--save", "", "--daemonize", "no", "--loglevel", "warning"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    import redis

    client = redis.Redis(port=port)
    for _ in range(100):
        try:
            if client.ping():
                return proc, f"redis://127.0.0.1:{port}/0"
        except redis.ConnectionError:
            time.sleep(0.1)
    proc.kill()
    pytest.fail("redis-server did not start")


@pytest.fixture(scope="module", params=["embedded", "redis"])
def intake_broker(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(f"intake-{request.param}")
    if request.param == "embedded":
        yield request.param, {"data_dir": str(folder)}
        return
    proc, url = start_redis(folder)
    try:
        # The cases a deleted consumer held come back after the visibility timeout: 45 s, not the
        # default 90, so the restart test waits half as long for them (the longest retry countdown,
        # 30 s, stays under it: a countdown held past it would be delivered twice).
        yield request.param, {"data_dir": str(folder), "broker_url": url, "visibility_timeout_s": 45}
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="module")
def intake_args(intake_broker, tiny_checkpoint):
    _, broker = intake_broker
    return {"model": str(tiny_checkpoint), "batching": SLOW_FILL,
            "intake": {**broker, "max_queued": MAX_QUEUED, "consumer_concurrency": 8,
                       "callback_allow_hosts": ["127.0.0.1"]}}


@pytest.fixture
def served(serve_session, intake_args):
    url = serve_session.deploy(**intake_args)
    with httpx.Client(base_url=url, timeout=60) as client:
        yield client


def wait_done(client: httpx.Client, task_ids: list[str], timeout_s: float = 300) -> dict[str, dict]:
    done: dict[str, dict] = {}
    deadline = time.monotonic() + timeout_s
    while len(done) < len(task_ids) and time.monotonic() < deadline:
        for task_id in task_ids:
            if task_id in done:
                continue
            r = client.get(f"/tasks/{task_id}")
            if r.status_code == 200 and r.json()["status"] in ("succeeded", "failed"):
                done[task_id] = r.json()
        if len(done) < len(task_ids):
            time.sleep(0.5 if len(task_ids) < 10 else 2)
    return done


def live_answer(client: httpx.Client, narrative: str) -> dict:
    r = client.post("/classify", json={"narrative": narrative})
    assert r.status_code == 200, r.text
    return r.json()


def close(a, b) -> bool:
    """Equal, floats within 1e-5: the same windows batched with different neighbours (padding to
    another length) move fp32 sums in the last bits, as test_faults allows too."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(close(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(close(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float):
        return abs(a - b) <= 1e-5
    return a == b


def same_answer(result: dict, live: dict) -> bool:
    """The /classify body: every label, routing decision and field identical; confidences within 1e-5.

    Each classification is a case record of its own, so its case_id differs, as its time does."""
    strip = lambda body: {k: v for k, v in body.items() if k not in ("processing_time_seconds", "case_id")}  # noqa: E731
    return close(strip(result), strip(live))


def narratives(n: int, salt: str) -> list[str]:
    base = ["a child reports being hit at home by an uncle",
            "caller asks about the helpline opening hours",
            "a girl was taken out of school to be married",
            "boy bullied by classmates and feels sad every day " * 3]
    return [f"{base[i % len(base)]} case {salt} {i}" for i in range(n)]


def test_a_queued_case_gets_exactly_the_classify_answer(served):
    texts = narratives(3, "exact")
    r = served.post("/tasks/classify", json={"narrative": texts[0], "call_id": "exact-1"})
    assert r.status_code == 202
    body = r.json()
    assert body["success"] is True and body["status"] == "queued"
    assert body["status_url"] == f"/tasks/{body['task_id']}"
    batch = served.post("/tasks/classify/batch", json={"narratives": texts[1:], "call_ids": ["exact-2", "exact-3"]})
    assert batch.status_code == 202
    ids = [body["task_id"]] + [t["task_id"] for t in batch.json()["tasks"]]
    assert len(set(ids)) == 3
    done = wait_done(served, ids)
    for task_id, text, call_id in zip(ids, texts, ["exact-1", "exact-2", "exact-3"]):
        view = done[task_id]
        assert set(view) >= {"task_id", "call_id", "status", "result", "error", "submitted_at", "finished_at"}
        assert (view["status"], view["call_id"], view["error"]) == ("succeeded", call_id, None)
        assert view["submitted_at"].endswith("Z") and view["finished_at"].endswith("Z")
        assert same_answer(view["result"], live_answer(served, text))
        # The queued case is recorded like a live one: its record answers to the task id and the call id.
        record = served.get(f"/cases/{task_id}")
        assert record.status_code == 200, record.text
        case = record.json()["case"]
        assert (case["case_id"], case["task_id"], case["call_id"]) == (view["result"]["case_id"], task_id, call_id)


def test_the_same_key_or_call_gives_back_the_same_task(served):
    text = narratives(1, "idem")[0]
    first = served.post("/tasks/classify", json={"narrative": text}, headers={"Idempotency-Key": "k-" + uuid.uuid4().hex})
    again = served.post("/tasks/classify", json={"narrative": text + " other"},
                        headers={"Idempotency-Key": first.request.headers["idempotency-key"]})
    assert first.status_code == again.status_code == 202
    assert first.json()["task_id"] == again.json()["task_id"]
    call = "call-" + uuid.uuid4().hex
    a = served.post("/tasks/classify", json={"narrative": text, "call_id": call}).json()["task_id"]
    b = served.post("/tasks/classify", json={"narrative": text, "call_id": call}).json()["task_id"]
    c = served.post("/tasks/classify", json={"narrative": text + " more", "call_id": call}).json()["task_id"]
    assert a == b != c
    plain = {served.post("/tasks/classify", json={"narrative": text}).json()["task_id"] for _ in range(2)}
    assert len(plain) == 2, "without a key or call id every submission is its own task"


@pytest.mark.parametrize(("path", "payload", "status", "code"), [
    ("/tasks/classify", {"narrative": "  "}, 400, "empty_narrative"),
    ("/tasks/classify", {"narrative": "ok", "call_id": "x" * 129}, 422, "invalid_request"),
    ("/tasks/classify", {"narrative": "ok", "call_id": 5}, 422, "invalid_request"),
    ("/tasks/classify", {"narrative": "ok", "callback_url": "http://169.254.169.254/latest"}, 422,
     "callback_not_allowed"),
    ("/tasks/classify/batch", {"narratives": ["a", "b"], "call_ids": ["1"]}, 422, "invalid_request"),
    ("/tasks/classify/batch", {"narratives": ["a", " \n "]}, 400, "empty_narrative"),
])
def test_bad_submissions_get_a_clear_4xx(served, path, payload, status, code):
    r = served.post(path, json=payload)
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code


def test_unknown_tasks_are_404(served):
    for path in (f"/tasks/{uuid.uuid4()}", "/tasks/not-a-task", "/tasks/..%2F..%2Fetc"):
        r = served.get(path)
        assert r.status_code == 404, path
        assert r.json()["error"]["code"] in ("task_not_found", "not_found")


def test_a_full_queue_refuses_with_503_and_keeps_nothing(served):
    texts = narratives(MAX_QUEUED + 1, "full-" + uuid.uuid4().hex[:6])
    call_ids = [f"full-{i}" for i in range(len(texts))]
    r = served.post("/tasks/classify/batch", json={"narratives": texts, "call_ids": call_ids})
    assert r.status_code == 503
    assert r.json()["error"]["code"] == "queue_full" and int(r.headers["retry-after"]) >= 1
    # Nothing of the refused batch was accepted: resubmitting one of its cases is a new task.
    one = served.post("/tasks/classify", json={"narrative": texts[0], "call_id": call_ids[0]}).json()
    assert one["status"] == "queued"
    wait_done(served, [one["task_id"]])


def test_a_case_retrying_cannot_fix_ends_failed_at_once(served, serve_session, intake_args):
    """Bad input that slipped past the ingress (put on the queue by the producer itself) fails once, no retries."""
    from deployments.core import tasks
    from deployments.core.config import IntakeArgs
    from deployments.intake.producer import IntakeStore

    args = IntakeArgs(**intake_args["intake"])
    store = IntakeStore(args, tasks.resolve_broker(args))
    task_id = str(uuid.uuid4())
    store.submit([(task_id, None, {"narrative": " \t ", "include_confidence": True, "include_chunks": False})])
    view = wait_done(served, [task_id])[task_id]
    assert view["status"] == "failed" and view["result"] is None
    assert view["error"]["code"] == "empty_narrative" and view["attempts"] == 1


def test_restart_loses_no_case(served, serve_session, intake_args, intake_broker):
    from ray import serve

    texts = narratives(RESTART_CASES, "restart-" + uuid.uuid4().hex[:6])
    ids: list[str] = []
    for start in range(0, len(texts), 50):
        r = served.post("/tasks/classify/batch", json={"narratives": texts[start:start + 50]})
        assert r.status_code == 202, r.text
        ids += [t["task_id"] for t in r.json()["tasks"]]
    assert len(set(ids)) == RESTART_CASES

    def finished() -> int:
        return sum(served.get(f"/tasks/{t}").json()["status"] in ("succeeded", "failed") for t in ids)

    # Kill the Classifier replica while the backlog runs through it.
    deadline = time.monotonic() + 120
    while finished() < 10 and time.monotonic() < deadline:
        time.sleep(0.5)
    (victim,) = [r for r in replicas("Classifier") if r["state"] == "RUNNING"]
    ray.kill(ray.get_actor(victim["actor_name"], namespace="serve"), no_restart=True)
    finished_at_kill = finished()

    # Then, with cases still queued, delete the whole application and deploy it again on the same broker.
    deadline = time.monotonic() + 180
    while finished() < RESTART_CASES // 2 and time.monotonic() < deadline:
        time.sleep(1)
    finished_at_delete = finished()
    serve.delete("helpline")
    serve_session.current = None
    serve_session.deploy(**intake_args)

    done = wait_done(served, ids, timeout_s=420)
    succeeded = [t for t in ids if done.get(t, {}).get("status") == "succeeded"]
    # As many at once as one classifier batch holds: fewer, and each batch waits out SLOW_FILL's
    # batch_wait_timeout_s (200 cases, 4 at a time, took 55 s of that waiting).
    with ThreadPoolExecutor(SLOW_FILL["max_batch_size"]) as pool:
        live = list(pool.map(lambda text: live_answer(served, text), texts))
    mismatched = [t for t, text_live in zip(ids, live) if t in done and done[t]["status"] == "succeeded"
                  and not same_answer(done[t]["result"], text_live)]
    figures = {
        "broker": intake_broker[0], "submitted": len(ids), "succeeded": len(succeeded),
        "failed": sum(done.get(t, {}).get("status") == "failed" for t in ids),
        "lost": len(ids) - len(done), "retried": sum((done[t].get("attempts") or 1) > 1 for t in done),
        "finished_before_kill": finished_at_kill, "finished_before_delete": finished_at_delete,
        "mismatched": len(mismatched),
    }
    print(f"\nintake restart: {json.dumps(figures)}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    existing = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    RESULTS.write_text(json.dumps({**existing, intake_broker[0]: figures}, indent=2) + "\n")
    assert figures["lost"] == 0 and figures["failed"] == 0, figures
    assert len(succeeded) == RESTART_CASES and not mismatched, figures


def test_clients_submit_then_wait(served):
    import asyncio

    from clients import AsyncHelplineClient, HelplineClient

    texts = narratives(3, "client-" + uuid.uuid4().hex[:6])
    url = str(served.base_url)
    with HelplineClient(url) as client:
        one = client.submit(texts[0], call_id="client-one")
        assert client.submit(texts[0], call_id="client-one") == one
        many = client.submit_batch(texts[1:], batch_size=1)
        statuses = [client.wait(t, timeout=120, poll_s=0.5) for t in [one, *many]]
    assert [s.status for s in statuses] == ["succeeded"] * 3
    assert statuses[0].call_id == "client-one"
    live = live_answer(served, texts[0])
    assert statuses[0].result.sub_category.label == live["classification"]["sub_category"]["label"]

    async def run():
        async with AsyncHelplineClient(url) as client:
            task_id = await client.submit(texts[1])
            return await client.wait(task_id, timeout=120, poll_s=0.5)

    status = asyncio.run(run())
    assert status.done and status.result is not None


def test_chs_classify_async_queues_then_collects_and_resumes_from_saved_task_ids(served, tmp_path):
    from clients.cli import classify_main

    texts = narratives(4, "cli-" + uuid.uuid4().hex[:6])
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"id": f"r{i}", "narrative": t}) + "\n" for i, t in enumerate(texts))
                      + json.dumps({"id": "bad", "narrative": "   "}) + "\n")
    out = tmp_path / "out.jsonl"
    args = [str(source), "-o", str(out), "--async", "--url", str(served.base_url), "--no-progress"]
    assert classify_main(args) == 1  # the blank row fails, the rest succeed
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in records] == ["r0", "r1", "r2", "r3", "bad"]
    assert all("error" not in r for r in records[:4]) and records[4]["error"]["code"] == "empty_narrative"
    saved = [json.loads(line) for line in (tmp_path / "out.jsonl.tasks.jsonl").read_text().splitlines()]
    assert [s["id"] for s in saved] == ["r0", "r1", "r2", "r3"]
    live = live_answer(served, texts[0])["classification"]
    assert records[0]["sub_category"] == live["sub_category"]["label"]
    # Interrupted before writing r2 and r3: --resume collects them from their saved task ids.
    out.write_text("".join(json.dumps(r) + "\n" for r in records[:2]))
    assert classify_main(args + ["--resume"]) == 1
    again = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in again] == ["r0", "r1", "r2", "r3", "bad"]
    assert again[2] == records[2] and again[3] == records[3]
    assert len((tmp_path / "out.jsonl.tasks.jsonl").read_text().splitlines()) == 4, "nothing was queued twice"


class Receiver:
    """A real HTTP server that answers 500 to the first callback and 200 after."""

    def __init__(self):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.calls: list[tuple[int, bytes, dict]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                status = 500 if not receiver.calls else 200
                receiver.calls.append((status, body, dict(self.headers)))
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/chs-callback"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def test_a_callback_is_signed_and_retried_after_a_500(served):
    from deployments.core import callbacks

    receiver = Receiver()
    try:
        r = served.post("/tasks/classify", json={"narrative": narratives(1, "cb")[0], "callback_url": receiver.url})
        assert r.status_code == 202, r.text
        task_id = r.json()["task_id"]
        deadline = time.monotonic() + 120
        while len(receiver.calls) < 2 and time.monotonic() < deadline:
            time.sleep(0.5)
    finally:
        receiver.server.shutdown()
    assert [status for status, _, _ in receiver.calls] == [500, 200], "retried once after the 500, then stopped"
    _, body, headers = receiver.calls[1]
    signature = {k.lower(): v for k, v in headers.items()}["x-helpline-signature"]
    assert callbacks.verify(body, CALLBACK_SECRET, signature)
    assert not callbacks.verify(body, "another secret", signature)
    sent = json.loads(body)
    view = served.get(f"/tasks/{task_id}").json()
    assert sent["task_id"] == task_id and sent["status"] == "succeeded"
    assert sent["result"] == view["result"] and set(sent) == set(view)
    assert "narrative" not in body.decode() and "cb 0" not in body.decode()


def test_no_narrative_stays_in_the_broker_or_reaches_a_log(served, serve_session, intake_broker):
    marker = "zqxjmarker" + uuid.uuid4().hex[:8]
    r = served.post("/tasks/classify", json={"narrative": f"a child says {marker} hurt her", "call_id": "privacy"})
    assert r.status_code == 202
    wait_done(served, [r.json()["task_id"]])
    kind, broker = intake_broker
    if kind == "embedded":
        from pathlib import Path

        for path in Path(broker["data_dir"]).rglob("*"):
            if path.is_file():
                assert marker.encode() not in path.read_bytes(), f"the narrative stayed in {path}"
    else:
        import redis

        client = redis.Redis.from_url(broker["broker_url"])
        for key in client.scan_iter(count=1000):
            assert marker.encode() not in key
            kind_of = client.type(key)
            values = {b"string": lambda: [client.get(key)], b"list": lambda: client.lrange(key, 0, -1),
                      b"hash": lambda: list(client.hgetall(key).values()),
                      b"zset": lambda: client.zrange(key, 0, -1), b"set": lambda: list(client.smembers(key))}
            for value in values.get(kind_of, lambda: [])():
                assert marker.encode() not in (value or b""), f"the narrative stayed in redis key {key!r}"
    for path in (serve_session.session_dir / "logs").rglob("*"):
        if path.is_file():
            assert marker.encode() not in path.read_bytes(), f"the narrative reached {path}"
