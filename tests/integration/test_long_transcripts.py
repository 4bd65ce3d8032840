"""Long transcripts are read whole, in overlapping windows that share batches with short cases."""

import asyncio

import httpx
import pytest
from transformers import AutoTokenizer

from deployments.core.text import normalize_narrative
from deployments.core.windowing import window_spans
from tests.conftest import SMALL_LIMITS

SENTENCES = [
    "The caller says her daughter aged eleven has not been to school for three weeks.",
    "She explains that the father drinks every evening and shouts at the children.",
    "The girl told her teacher that she is afraid to go home after classes.",
    "Neighbours in the village have heard crying late at night more than once.",
    "The mother asks what she can do and whether someone can visit the family.",
]


def transcript(words: int) -> str:
    out, n, i = [], 0, 0
    while n < words:
        s = SENTENCES[i % len(SENTENCES)]
        out.append(s)
        n += len(s.split())
        i += 1
    return " ".join(out)


def expected_chunks(checkpoint, text, max_length=512, overlap=128):
    tok = AutoTokenizer.from_pretrained(str(checkpoint))
    n = len(tok(normalize_narrative(text), add_special_tokens=False)["input_ids"])
    return len(window_spans(n, max_length, overlap)), n


def test_five_windows_worth_answers_with_the_right_chunks(http, tiny_checkpoint):
    text = transcript(1900)
    chunks, n_tokens = expected_chunks(tiny_checkpoint, text)
    assert chunks >= 5
    r = http.post("/classify", json={"narrative": text, "include_chunks": True})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["chunks"] == chunks and body["tokens"] == n_tokens and body["truncated"] is False
    details = body["chunk_details"]
    assert [d["index"] for d in details] == list(range(chunks))
    assert details[0]["token_span"][0] == 0 and details[-1]["token_span"][1] == n_tokens
    for a, b in zip(details, details[1:]):
        assert a["token_span"][1] - b["token_span"][0] == 128  # the configured overlap
    for d in details:
        for task, pred in d["classification"].items():
            assert 0 <= pred["confidence"] <= 1
    # Priority is the maximum over windows: no window predicts a higher level than the case.
    assert body["classification"]["priority"]["label"] == max(
        d["classification"]["priority"]["label"] for d in details)


def test_three_thousand_word_transcript_is_classified_whole(http):
    r = http.post("/classify", json={"narrative": transcript(3000)})
    assert r.status_code == 200
    body = r.json()
    assert body["chunks"] > 1 and body["truncated"] is False
    assert "chunk_details" not in body


def test_batch_mixing_long_and_short_keeps_order_and_equals_single_requests(http):
    narratives = ["short call about bullying at school", transcript(1200), "baby not eating", transcript(700),
                  "what are the helpline opening hours"]
    batch = http.post("/classify/batch", json={"narratives": narratives})
    assert batch.status_code == 200, batch.text
    results = batch.json()["results"]
    assert [r["chunks"] > 1 for r in results] == [False, True, False, True, False]
    for narrative, result in zip(narratives, results):
        single = http.post("/classify", json={"narrative": narrative}).json()
        assert result["chunks"] == single["chunks"]
        for task, pred in single["classification"].items():
            assert result["classification"][task]["label"] == pred["label"]
            assert result["classification"][task]["confidence"] == pytest.approx(pred["confidence"], abs=1e-5)


@pytest.mark.app("small-limits")
def test_length_bound_answers_413(serve_session, tiny_checkpoint):
    url = serve_session.deploy(model=str(tiny_checkpoint), **SMALL_LIMITS)  # max_narrative_chars=5000
    with httpx.Client(base_url=url, timeout=60) as client:
        assert client.post("/classify", json={"narrative": "a " * 2400}).status_code == 200
        r = client.post("/classify", json={"narrative": "a " * 2600})
        assert r.status_code == 413
        assert "5000" in r.json()["error"]["message"]
        r = client.post("/classify/batch", json={"narratives": ["fine", "a " * 2600]})
        assert r.status_code == 413


@pytest.mark.app("json-logs")
def test_batch_cost_limit_counts_windows_not_requests(serve_session, tiny_checkpoint):
    # test_logging's JSON logs and coalescing off (nothing here depends on them): one app for both.
    url = serve_session.deploy(model=str(tiny_checkpoint), max_batch_windows=6, logging_config={"encoding": "JSON"},
                               coalescing={"max_cases": 1})
    with httpx.Client(base_url=url, timeout=60) as client:
        assert client.post("/classify/batch", json={"narratives": ["short"] * 6}).status_code == 200
        r = client.post("/classify/batch", json={"narratives": [transcript(1900), "short", "short"]})
        assert r.status_code == 413 and "windows" in r.json()["error"]["message"]


@pytest.mark.app("truncate")
def test_truncate_mode_reports_the_truncation(serve_session, tiny_checkpoint):
    url = serve_session.deploy(model=str(tiny_checkpoint), long_narratives="truncate")
    with httpx.Client(base_url=url, timeout=60) as client:
        body = client.post("/classify", json={"narrative": transcript(1200)}).json()
        assert body["chunks"] == 1 and body["truncated"] is True
        assert client.post("/classify", json={"narrative": "short"}).json()["truncated"] is False


@pytest.mark.app("small-windows")
def test_one_long_case_does_not_block_short_ones_behind_it(serve_session, tiny_checkpoint):
    # Small windows and slices make the long case hundreds of classifier calls; short
    # cases sent while it runs must queue between its slices, not behind all of them.
    # The taxonomy check off (no answer here depends on it): test_taxonomy's test of that shares the app.
    url = serve_session.deploy(model=str(tiny_checkpoint), max_length=64, window_overlap=16, windows_per_call=4,
                               routing={"taxonomy_mismatch": "off"})
    long_text = transcript(17_000)  # under max_narrative_chars (100,000)

    async def run():
        # Short cases go out one every 50 ms for as long as the long one runs, rather than at one
        # fixed moment: on a fast host the long case can be done before any fixed delay is up.
        finished = []
        async with httpx.AsyncClient(base_url=url, timeout=120) as client:
            async def send(name, text):
                r = await client.post("/classify", json={"narrative": text})
                assert r.status_code == 200, r.text
                finished.append((name, r.json()["chunks"]))

            long_case = asyncio.create_task(send("long", long_text))
            shorts = []
            while not long_case.done() and len(shorts) < 400:
                await asyncio.sleep(0.05)
                shorts.append(asyncio.create_task(send(f"short{len(shorts)}", "a short call")))
            await asyncio.gather(long_case, *shorts)
        return finished

    finished = asyncio.run(run())
    order = [name for name, _ in finished]
    assert dict(finished)["long"] > 300
    # Behind the whole long case, no short one could finish first.
    assert order.index("long") >= 3, order
