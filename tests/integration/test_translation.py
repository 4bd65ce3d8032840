"""Translation as a deployment of its own, over real HTTP on a real Ray cluster.

The Translator serves a tiny random MarianMT checkpoint the project builds offline in the Hub's
layout (``training/marian.py``): its English is gibberish by design, so these tests check the path,
not the translation. Which narratives reach the Translator is read from outside, from Serve's own
request counter of the deployment.
"""

from __future__ import annotations

import httpx
import pytest

from tests.integration.test_metrics import delta, poll, scrape, settled

pytestmark = pytest.mark.app("translation")

SWAHILI = ("Mtoto wa miaka kumi anasema mama yake wa kambo anampiga kila siku na hapewi chakula, "
           "anaogopa kurudi nyumbani baada ya shule.")
ENGLISH = ("A boy of ten says his stepmother beats him every day and gives him no food, and he is afraid "
           "to go home after school.")


@pytest.fixture(scope="module")
def marian(tmp_path_factory):
    from training.marian import build_tiny_marian

    return build_tiny_marian(tmp_path_factory.mktemp("marian") / "sw-en")


@pytest.fixture(scope="module")
def served(serve_session, tiny_checkpoint, marian):
    url = serve_session.deploy(model=str(tiny_checkpoint),
                               translation={"model": str(marian), "languages": ["sw"], "num_cpus": 0.25})
    with httpx.Client(base_url=url, timeout=120) as client:
        assert client.get("/health").json()["deployments"]["Translator"] == "ready"
        yield client


def translator_calls(before, after) -> float:
    return delta(before, after, "ray_serve_deployment_request_counter_total", deployment="Translator")


def test_a_swahili_narrative_is_translated_before_the_classifier_and_the_response_says_so(served, serve_session,
                                                                                           marian):
    before = settled(serve_session.metrics_url)
    r = served.post("/classify", json={"narrative": SWAHILI})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["language"]["code"] == "sw"
    assert body["translation"] == {"source_language": "sw", "model": str(marian)}
    poll(serve_session.metrics_url, before, True, lambda b, a: translator_calls(b, a) >= 1)
    # What the model read was the translation; the evidence still points into what the caller sent.
    for s in body["routing"]["signals"]:
        if s["text"] is not None:
            assert SWAHILI[s["start"]:s["end"]] == s["text"]


def test_english_narratives_never_reach_the_translator(served, serve_session):
    before = settled(serve_session.metrics_url)
    answers = [served.post("/classify", json={"narrative": f"{ENGLISH} Call {i}."}) for i in range(3)]
    batch = served.post("/classify/batch", json={"narratives": [ENGLISH, f"{ENGLISH} Again."]})
    assert all(a.status_code == 200 for a in answers) and batch.status_code == 200
    assert all("translation" not in a.json() for a in answers)
    assert all("translation" not in res for res in batch.json()["results"])
    # A Swahili one afterwards, so the counter is known to move within the wait.
    assert served.post("/classify", json={"narrative": SWAHILI}).status_code == 200
    poll(serve_session.metrics_url, before, True, lambda b, a: translator_calls(b, a) >= 1)
    assert translator_calls(before, scrape(serve_session.metrics_url)) == 1


def test_a_batch_translates_only_its_swahili_narratives(served):
    r = served.post("/classify/batch", json={"narratives": [ENGLISH, SWAHILI, ENGLISH]})
    assert r.status_code == 200, r.text
    assert ["translation" in res for res in r.json()["results"]] == [False, True, False]
