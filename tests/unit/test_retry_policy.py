"""The client's retry policy, directly; and the retry loop it drives, over an in-process HTTP transport."""

from __future__ import annotations

import asyncio
import email.utils
import json
import random

import httpx
import pytest

from clients import AsyncHelplineClient, HelplineClient, HelplineError, RetryPolicy, parse_retry_after


class MaxRandom(random.Random):
    """Always the top of the range: makes the jitter's ceiling visible."""

    def uniform(self, a, b):
        return b


# ----------------------------------------------------------------------------- Retry-After

@pytest.mark.parametrize("value, expected", [("3", 3.0), (" 1.5 ", 1.5), ("0", 0.0), ("-4", 0.0)])
def test_retry_after_seconds(value, expected):
    assert parse_retry_after(value) == expected


def test_retry_after_http_date():
    now = 1_700_000_000.0
    later = email.utils.formatdate(now + 10, usegmt=True)
    earlier = email.utils.formatdate(now - 10, usegmt=True)
    assert parse_retry_after(later, now=now) == pytest.approx(10.0, abs=1.0)
    assert parse_retry_after(earlier, now=now) == 0.0


@pytest.mark.parametrize("value", [None, "", "soon", "Mon, 99 Foo"])
def test_retry_after_unreadable_is_none(value):
    assert parse_retry_after(value) is None


# ----------------------------------------------------------------------------- what is retried

@pytest.mark.parametrize("status", [429, 502, 503, 504])
def test_overload_and_gateway_statuses_are_retried(status):
    assert RetryPolicy().next_delay(0, status=status) is not None


@pytest.mark.parametrize("status", [400, 401, 404, 413, 415, 422, 500])
def test_input_errors_and_500_are_not_retried(status):
    assert RetryPolicy().next_delay(0, status=status) is None


def test_input_errors_stay_unretried_even_if_listed():
    policy = RetryPolicy(retry_statuses=frozenset({422, 503}))
    assert policy.next_delay(0, status=422) is None
    assert policy.next_delay(0, status=503) is not None


@pytest.mark.parametrize("exc", [httpx.ConnectError("refused"), httpx.RemoteProtocolError("reset"),
                                 httpx.ReadError("reset"), httpx.ConnectTimeout("slow"), httpx.PoolTimeout("full")])
def test_transport_failures_are_retried(exc):
    assert RetryPolicy().next_delay(0, exc=exc) is not None


def test_read_timeouts_are_retried_only_when_asked():
    exc = httpx.ReadTimeout("slow")
    assert RetryPolicy().next_delay(0, exc=exc) is None
    assert RetryPolicy(retry_timeouts=True).next_delay(0, exc=exc) is not None


def test_other_exceptions_are_not_retried():
    assert RetryPolicy().next_delay(0, exc=ValueError("bug")) is None
    assert RetryPolicy().next_delay(0) is None


def test_retries_stop_at_max_retries():
    policy = RetryPolicy(max_retries=2)
    assert policy.next_delay(0, status=503) is not None
    assert policy.next_delay(1, status=503) is not None
    assert policy.next_delay(2, status=503) is None
    assert RetryPolicy(max_retries=0).next_delay(0, status=503) is None


def test_negative_settings_are_refused():
    with pytest.raises(ValueError):
        RetryPolicy(max_retries=-1)
    with pytest.raises(ValueError):
        RetryPolicy(backoff_base_s=-0.1)


# ----------------------------------------------------------------------------- how long to wait

def test_backoff_ceiling_doubles_up_to_the_cap():
    policy = RetryPolicy(backoff_base_s=0.5, backoff_max_s=5.0)
    ceilings = [policy.backoff(n, MaxRandom()) for n in range(7)]
    assert ceilings == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 5.0]


def test_backoff_is_full_jitter_within_the_ceiling():
    policy = RetryPolicy(backoff_base_s=1.0, backoff_max_s=8.0)
    rng = random.Random(7)
    for n in range(6):
        samples = [policy.backoff(n, rng) for _ in range(300)]
        ceiling = min(8.0, 2.0 ** n)
        assert all(0.0 <= s <= ceiling for s in samples)
        # Full jitter spreads over the whole range, not just near the ceiling.
        assert min(samples) < 0.2 * ceiling and max(samples) > 0.8 * ceiling


def test_huge_retry_numbers_do_not_overflow():
    assert RetryPolicy(backoff_max_s=3.0).backoff(10_000, MaxRandom()) == 3.0


def test_retry_after_is_a_floor_plus_jitter():
    policy = RetryPolicy(max_retries=10, backoff_base_s=0.5, backoff_max_s=4.0)
    rng = random.Random(1)
    for n in range(6):
        d = policy.next_delay(n, status=503, retry_after=2.0, rng=rng)
        assert 2.0 <= d <= 2.0 + min(4.0, 0.5 * 2 ** n)


def test_retry_after_is_capped():
    policy = RetryPolicy(backoff_base_s=0.0, max_retry_after_s=30.0)
    assert policy.next_delay(0, status=429, retry_after=3600.0) == 30.0


# ----------------------------------------------------------------------------- the client's loop

OK_CASE = {
    "classification": {
        "main_category": {"label": "VANE", "confidence": 0.9},
        "sub_category": {"label": "Physical Abuse", "confidence": 0.8},
        "sub_category_2": {"label": "Neglect", "confidence": 0.1},
        "intervention": {"label": "Counselling", "confidence": 0.7},
        "priority": {"label": 3, "confidence": 0.6},
    },
    "routing": {"queue": "vane", "escalate": True, "human_review": True, "reasons": ["r"]},
    "chunks": 1, "truncated": False, "tokens": 12,
}


def scripted(responses):
    """A transport answering from a list: (status, body, headers) or an exception to raise."""
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        item = responses[min(len(seen) - 1, len(responses) - 1)]
        if isinstance(item, Exception):
            raise item
        status, body, headers = item
        return httpx.Response(status, json=body, headers=headers)

    return httpx.MockTransport(handler), seen


def err(code):
    return {"success": False, "error": {"code": code, "message": f"{code} happened", "request_id": "rid-1"}}


def test_client_retries_503_honouring_retry_after():
    transport, seen = scripted([
        (503, err("overloaded"), {"Retry-After": "0.05"}),
        (429, err("overloaded"), {"Retry-After": "0.02"}),
        (200, {"success": True, **OK_CASE, "model": {"id": "m"}, "processing_time_seconds": 0.1}, {}),
    ])
    waits = []
    policy = RetryPolicy(backoff_base_s=0.001)
    with HelplineClient("http://h", retry=policy, on_retry=lambda n, d, why: waits.append((n, d, why)),
                        httpx_options={"transport": transport}) as client:
        result = client.classify("text")
    assert result.main_category.label == "VANE" and result.priority.label == 3
    assert len(seen) == 3
    assert client.stats.retries == 2 and client.stats.requests == 3 and client.stats.failures == 0
    assert [n for n, _, _ in waits] == [0, 1]
    assert waits[0][1] >= 0.05 and waits[1][1] >= 0.02
    assert waits[0][2] == "503 overloaded"


@pytest.mark.parametrize("status, code", [(400, "empty_narrative"), (401, "unauthorized"), (413, "payload_too_large"),
                                          (415, "unsupported_media_type"), (422, "invalid_request")])
def test_client_raises_input_errors_at_once(status, code):
    transport, seen = scripted([(status, err(code), {})])
    with HelplineClient("http://h", retry=RetryPolicy(backoff_base_s=0.001),
                        httpx_options={"transport": transport}) as client:
        with pytest.raises(HelplineError) as info:
            client.classify("text")
    assert (info.value.status, info.value.code, info.value.request_id) == (status, code, "rid-1")
    assert info.value.message == f"{code} happened"
    assert len(seen) == 1 and client.stats.retries == 0 and client.stats.failures == 1


def test_client_gives_up_after_max_retries_on_connection_errors():
    transport, seen = scripted([httpx.ConnectError("refused")])
    with HelplineClient("http://h", max_retries=2, retry=RetryPolicy(backoff_base_s=0.001),
                        httpx_options={"transport": transport}) as client:
        with pytest.raises(HelplineError) as info:
            client.classify("text")
    assert info.value.status is None and info.value.code == "connection_error"
    assert len(seen) == 3 and client.stats.retries == 2


def test_error_without_json_body_is_still_typed():
    def handler(request):
        return httpx.Response(502, text="Bad Gateway from the load balancer")

    with HelplineClient("http://h", max_retries=1, retry=RetryPolicy(backoff_base_s=0.001),
                        httpx_options={"transport": httpx.MockTransport(handler)}) as client:
        with pytest.raises(HelplineError) as info:
            client.info()
    assert info.value.status == 502 and info.value.code == "http_502"
    assert "Bad Gateway" in info.value.message
    assert client.stats.retries == 1


def test_batch_over_the_server_limit_is_halved_not_retried():
    calls = []

    def handler(request):
        narratives = json.loads(request.content)["narratives"]
        calls.append(len(narratives))
        if len(narratives) > 2:
            return httpx.Response(413, json=err("payload_too_large"))
        results = [{**OK_CASE, "tokens": len(n)} for n in narratives]
        return httpx.Response(200, json={"success": True, "results": results, "model": {"id": "m"},
                                         "processing_time_seconds": 0.1})

    with HelplineClient("http://h", httpx_options={"transport": httpx.MockTransport(handler)}) as client:
        out = client.classify_batch(["a", "bb", "ccc", "dddd", "eeeee"], batch_size=5)
    assert [r.tokens for r in out] == [1, 2, 3, 4, 5]
    assert calls == [5, 2, 3, 1, 2]
    assert client.stats.splits == 2 and client.stats.retries == 0
    assert all(r.model.id == "m" for r in out)


def test_bare_labels_without_confidence():
    case = {**OK_CASE, "classification": {k: v["label"] for k, v in OK_CASE["classification"].items()}}
    from clients import ClassifyResult

    r = ClassifyResult.from_dict(case)
    assert r.main_category.label == "VANE" and r.main_category.confidence is None
    assert r.priority.label == 3 and r.routing.escalate is True


def test_async_client_retries_the_same_way():
    transport, seen = scripted([
        httpx.ConnectError("refused"),
        (503, err("unavailable"), {"Retry-After": "0"}),
        (200, {"success": True, **OK_CASE, "model": {"id": "m"}, "processing_time_seconds": 0.1}, {}),
    ])

    async def go():
        async with AsyncHelplineClient("http://h", retry=RetryPolicy(backoff_base_s=0.001),
                                       httpx_options={"transport": transport}) as client:
            result = await client.classify("text")
            return result, client.stats

    result, stats = asyncio.run(go())
    assert result.routing.queue == "vane"
    assert stats.retries == 2 and len(seen) == 3


def test_api_key_from_env_is_sent_and_not_shown(monkeypatch):
    monkeypatch.setenv("CHS_API_KEY", "sekrit-key")
    transport, seen = scripted([(200, {"status": "ok", "deployments": {}}, {})])
    with HelplineClient("http://h", httpx_options={"transport": transport}) as client:
        assert client.health().ok
        assert "sekrit" not in repr(client)
    assert seen[0].headers["authorization"] == "Bearer sekrit-key"
