"""The Python clients against the real served app."""

from __future__ import annotations

import asyncio
import json

import pytest

from clients import AsyncHelplineClient, ClassifyResult, HelplineClient, HelplineError, RetryPolicy
from clients.loadtest import FALLBACK_NARRATIVES
from tests.conftest import API_KEYS, SMALL_LIMITS, free_port

NARRATIVES = list(FALLBACK_NARRATIVES)


class RequestLog:
    """httpx event hook: every request the client puts on the wire, counted independently of its own stats."""

    def __init__(self):
        self.requests = []

    def __call__(self, request):
        body = json.loads(request.content) if request.content else None
        self.requests.append((request.method, request.url.path, body))

    def paths(self):
        return [p for _, p, _ in self.requests]


def client_for(url, log=None, **kwargs):
    options = {"event_hooks": {"request": [log]}} if log else None
    return HelplineClient(url, httpx_options=options, **kwargs)


def same_case(a: ClassifyResult, b: ClassifyResult) -> None:
    assert a.labels() == b.labels()
    for task, conf in a.confidences().items():
        assert conf == pytest.approx(b.confidences()[task], abs=1e-4), task
    assert (a.routing.queue, a.routing.escalate, a.routing.human_review) == (
        b.routing.queue, b.routing.escalate, b.routing.human_review)
    assert (a.chunks, a.truncated) == (b.chunks, b.truncated)


def test_classify_returns_a_typed_result(served_tiny, tiny_checkpoint):
    with HelplineClient(served_tiny) as client:
        info = client.info()
        result = client.classify(NARRATIVES[0], request_id="client-test-1")
        bare = client.classify(NARRATIVES[0], include_confidence=False)
    assert isinstance(result, ClassifyResult)
    assert result.main_category.label in info.labels["main_category"]
    assert result.sub_category.label in info.labels["sub_category"]
    assert result.sub_category_2.label in info.labels["sub_category"]
    assert result.intervention.label in info.labels["intervention"]
    assert result.priority.label in (1, 2, 3)
    assert all(0.0 <= c <= 1.0 for c in result.confidences().values())
    assert result.routing.queue and isinstance(result.routing.reasons, tuple)
    assert result.chunks == 1 and result.truncated is False and result.tokens > 0
    assert result.model.id == str(tiny_checkpoint)
    assert result.processing_time_seconds >= 0
    assert result.request_id == "client-test-1"
    # Without confidences the server sends bare labels; the same labels.
    assert bare.labels() == result.labels()
    assert all(c is None for c in bare.confidences().values())


def test_health_and_info(served_tiny):
    with HelplineClient(served_tiny) as client:
        health = client.health()
        info = client.info()
    assert health.ok and health.http_status == 200
    assert set(health.deployments) == {"Preprocessor", "Classifier", "Router", "IntakeQueue"}
    assert info.limits.max_batch_narratives == 256
    assert info.limits.max_batch_windows > 0
    assert info.auth == "none"
    assert set(info.labels) >= {"main_category", "sub_category", "intervention", "priority"}


def test_health_of_an_unreachable_server_is_not_ok():
    with HelplineClient(f"http://127.0.0.1:{free_port()}", timeout=5) as client:
        health = client.health()
    assert not health.ok and health.status == "unreachable"


def test_bad_input_raises_a_typed_error_without_retry(served_tiny):
    log = RequestLog()
    with client_for(served_tiny, log, retry=RetryPolicy(backoff_base_s=0.01)) as client:
        with pytest.raises(HelplineError) as empty:
            client.classify("   \n  ")
        with pytest.raises(HelplineError) as nul:
            client.classify("a \x00 b")
        with pytest.raises(HelplineError) as in_batch:
            client.classify_batch(["fine", ""], batch_size=10)
    assert (empty.value.status, empty.value.code) == (400, "empty_narrative")
    assert empty.value.request_id
    assert (nul.value.status, nul.value.code) == (422, "invalid_request")
    assert in_batch.value.status == 400 and "narratives[1]" in in_batch.value.message
    assert log.paths() == ["/classify", "/classify", "/classify/batch"]
    assert client.stats.retries == 0 and client.stats.failures == 3


def test_unreachable_server_is_retried_then_raises():
    log = RequestLog()
    url = f"http://127.0.0.1:{free_port()}"
    with client_for(url, log, max_retries=2, retry=RetryPolicy(backoff_base_s=0.01), timeout=5) as client:
        with pytest.raises(HelplineError) as info:
            client.classify("text")
    assert info.value.status is None and info.value.code == "connection_error"
    assert len(log.requests) == 3
    assert client.stats.retries == 2 and client.stats.requests == 3


@pytest.mark.app("small-limits")
def test_batch_is_split_to_the_server_limit_and_keeps_order(serve_session, tiny_checkpoint):
    url = serve_session.deploy(model=str(tiny_checkpoint), **SMALL_LIMITS)  # max_batch_narratives=4
    narratives = NARRATIVES  # 10: batches of 4, 4, 2
    log = RequestLog()
    with client_for(url, log) as client:
        batched = client.classify_batch(narratives)
        assert client.max_batch_narratives == 4  # read from /info
        one_by_one = [client.classify(n) for n in narratives]
    batch_sizes = [len(body["narratives"]) for _, path, body in log.requests if path == "/classify/batch"]
    assert batch_sizes == [4, 4, 2]
    assert log.paths().count("/info") == 1
    assert len(batched) == len(narratives)
    for a, b in zip(batched, one_by_one):
        same_case(a, b)
    # Order really is input order: the token counts follow the narratives.
    assert [r.tokens for r in batched] == [r.tokens for r in one_by_one]
    assert len({r.tokens for r in batched}) > 1
    assert client.stats.retries == 0


@pytest.mark.app("small-limits")
def test_async_client_matches_the_sync_one(serve_session, tiny_checkpoint):
    url = serve_session.deploy(model=str(tiny_checkpoint), **SMALL_LIMITS)

    async def go():
        async with AsyncHelplineClient(url) as client:
            health = await client.health()
            batched = await client.classify_batch(NARRATIVES, concurrency=3)
            single = await asyncio.gather(*(client.classify(n) for n in NARRATIVES[:3]))
            with pytest.raises(HelplineError) as bad:
                await client.classify("")
            return health, batched, single, bad.value, client.stats

    health, batched, single, bad, stats = asyncio.run(go())
    assert health.ok
    with HelplineClient(url) as sync:
        expected = sync.classify_batch(NARRATIVES)
    assert len(batched) == len(expected) == len(NARRATIVES)
    for a, b in zip(batched, expected):
        same_case(a, b)
    for a, b in zip(single, expected[:3]):
        same_case(a, b)
    assert bad.status == 400 and stats.retries == 0


def test_api_key(served_with_keys, monkeypatch):
    url = served_with_keys  # its keys: API_KEYS
    monkeypatch.delenv("CHS_API_KEY", raising=False)
    log = RequestLog()
    with client_for(url, log) as anonymous:
        assert anonymous.health().ok  # health stays open for probes
        with pytest.raises(HelplineError) as denied:
            anonymous.classify(NARRATIVES[0])
    assert (denied.value.status, denied.value.code) == (401, "unauthorized")
    assert log.paths() == ["/health", "/classify"]  # 401 is not retried
    with HelplineClient(url, api_key=API_KEYS[1]) as keyed:
        assert keyed.info().auth == "api_key"
        assert keyed.classify(NARRATIVES[0]).main_category.label
    with HelplineClient(url, api_key="wrong") as wrong:
        with pytest.raises(HelplineError) as bad_key:
            wrong.classify(NARRATIVES[0])
    assert bad_key.value.status == 401
    monkeypatch.setenv("CHS_API_KEY", API_KEYS[0])
    with HelplineClient(url) as from_env:
        assert from_env.classify_batch(NARRATIVES[:2])[1].routing.queue
