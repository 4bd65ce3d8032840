"""For the same AppArgs and checkpoint, InProcessPipeline in process answers what the served /classify answers."""

import httpx
import pytest

from deployments.core.in_process import InProcessPipeline
from deployments.core.config import AppArgs

SENTENCES = [
    "The caller says her daughter aged eleven has not been to school for three weeks.",
    "She explains that the father drinks every evening and shouts at the children.",
    "The girl told her teacher that she is afraid to go home after classes.",
    "Neighbours in the village have heard crying late at night more than once.",
]
NARRATIVES = [
    "A 12-year-old student reports being bullied at school. Classmates are calling names and excluding from "
    "activities. The student feels sad and doesn't want to go to school anymore.",
    "My uncle touches me at night and says I must not tell mama. I am 13.",
    "Caller wants to know the opening hours of the helpline.",
    "Mtoto wa miaka 6 ana utapiamlo, mama hana chakula. Baby is very thin and weak!!",
    " ".join(SENTENCES * 30),  # several 512-token windows
]
# Only in the HTTP response, not in a case body.
RESPONSE_ONLY = {"success", "model", "processing_time_seconds", "case_id"}


def assert_same_case(served: dict, local: dict, tol: float = 1e-5) -> None:
    """Labels, routing, counts exactly; confidences (rounded to 6 places in both) within ``tol``."""
    assert served.keys() == local.keys()
    for key in served:
        a, b = served[key], local[key]
        if isinstance(a, dict):
            assert_same_case(a, b, tol)
        elif isinstance(a, float) or isinstance(b, float):
            assert a == pytest.approx(b, abs=tol), key
        elif isinstance(a, list) and a and isinstance(a[0], dict):
            assert len(a) == len(b), key
            for x, y in zip(a, b):
                assert_same_case(x, y, tol)
        else:
            assert a == b, key


def served_and_local(serve_session, **args):
    url = serve_session.deploy(**args)
    local = InProcessPipeline.from_args(AppArgs(**serve_session.args))
    return httpx.Client(base_url=url, timeout=120), local


def check_every_narrative(client: httpx.Client, local: InProcessPipeline, include_chunks: bool) -> None:
    for text in NARRATIVES:
        r = client.post("/classify", json={"narrative": text, "include_chunks": include_chunks})
        assert r.status_code == 200, r.text
        served = {k: v for k, v in r.json().items() if k not in RESPONSE_ONLY}
        (expected,) = local.classify([text], include_chunks=include_chunks)
        assert_same_case(served, expected)


@pytest.mark.app("tiny")
def test_default_settings_match_the_service(serve_session, tiny_checkpoint):
    client, local = served_and_local(serve_session, model=str(tiny_checkpoint))
    with client:
        check_every_narrative(client, local, include_chunks=False)
        check_every_narrative(client, local, include_chunks=True)
        # The long one really is several windows, so aggregation was exercised.
        assert local.classify([NARRATIVES[-1]])[0]["chunks"] > 1
        r = client.post("/classify/batch", json={"narratives": NARRATIVES, "include_confidence": False})
        assert r.status_code == 200, r.text
        for served, expected in zip(r.json()["results"], local.classify(NARRATIVES, include_confidence=False)):
            assert_same_case({k: v for k, v in served.items() if k not in RESPONSE_ONLY}, expected)


@pytest.mark.app("in-process-settings", "truncate")
def test_other_settings_match_the_service(serve_session, tiny_checkpoint):
    settings = {"max_length": 128, "window_overlap": 16, "aggregation": "max", "priority_aggregation": "mean",
                "routing": {"review_threshold": 0.9, "queues": {"VANE": "child-protection"}}}
    client, local = served_and_local(serve_session, model=str(tiny_checkpoint), **settings)
    with client:
        assert (local.args.max_length, local.args.aggregation) == (128, "max")
        check_every_narrative(client, local, include_chunks=True)
    client, local = served_and_local(serve_session, model=str(tiny_checkpoint), long_narratives="truncate")
    with client:
        check_every_narrative(client, local, include_chunks=False)
        (body,) = local.classify([NARRATIVES[-1]])
        assert body["chunks"] == 1 and body["truncated"] is True
