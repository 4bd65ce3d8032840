"""Every route and every error of the pipeline issue, over real HTTP to a real Serve app."""

import json

import pytest

from deployments.core.labels import BUNDLED_LABELS_DIR, LabelSet

BULLYING = ("A 12-year-old student reports being bullied at school. Classmates are calling names and "
            "excluding from activities. The student feels sad and doesn't want to go to school anymore.")
TASKS = ("main_category", "sub_category", "sub_category_2", "intervention", "priority")
LABELS = LabelSet.from_dir(BUNDLED_LABELS_DIR)


def post(http, path, payload, **kw):
    return http.post(path, content=json.dumps(payload), headers={"content-type": "application/json"}, **kw)


def assert_case_shape(case, labels=LABELS):
    c = case["classification"]
    assert set(c) == set(TASKS)
    assert c["main_category"]["label"] in labels.main_category
    assert c["sub_category"]["label"] in labels.sub_category
    assert c["sub_category_2"]["label"] in labels.sub_category
    assert c["sub_category_2"]["label"] != c["sub_category"]["label"]
    assert c["sub_category_2"]["confidence"] <= c["sub_category"]["confidence"]
    assert c["intervention"]["label"] in labels.intervention
    assert c["priority"]["label"] in labels.priority
    for task in TASKS:
        assert 0.0 <= c[task]["confidence"] <= 1.0
    r = case["routing"]
    assert set(r) == {"queue", "escalate", "human_review", "reasons", "signals"}
    assert isinstance(r["reasons"], list) and all(isinstance(x, str) for x in r["reasons"])
    assert len(r["signals"]) == len(r["reasons"]), "every reason comes from one signal"
    assert set(case["language"]) == {"code", "name", "confidence"}
    if r["escalate"]:
        assert r["human_review"]
    if r["human_review"]:
        assert r["reasons"]
    assert case["chunks"] == 1 and case["truncated"] is False


def test_classify_answers_with_the_full_shape(http, tiny_checkpoint):
    r = post(http, "/classify", {"narrative": BULLYING})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["success"] is True
    assert_case_shape(body)
    assert body["model"] == {"id": str(tiny_checkpoint), "revision": None}
    assert body["processing_time_seconds"] > 0
    assert r.headers["x-request-id"]


def test_bare_labels_without_confidence(http):
    with_conf = post(http, "/classify", {"narrative": BULLYING}).json()["classification"]
    bare = post(http, "/classify", {"narrative": BULLYING, "include_confidence": False}).json()["classification"]
    assert bare == {task: with_conf[task]["label"] for task in TASKS}


def test_batch_returns_results_in_order_equal_to_single_requests(http):
    narratives = [BULLYING, "my baby is not eating well and is losing weight", "what time does the helpline open",
                  "a girl of fourteen is being married off by her father next week"]
    r = post(http, "/classify/batch", {"narratives": narratives})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert len(results) == len(narratives)
    for narrative, result in zip(narratives, results):
        single = post(http, "/classify", {"narrative": narrative}).json()
        for task in TASKS:
            assert result["classification"][task]["label"] == single["classification"][task]["label"]
            assert result["classification"][task]["confidence"] == pytest.approx(
                single["classification"][task]["confidence"], abs=1e-5)
        assert result["routing"] == single["routing"]


def test_health_and_info(http, tiny_checkpoint):
    assert http.get("/health").json()["status"] == "healthy"
    info = http.get("/info").json()
    assert info["model"]["id"] == str(tiny_checkpoint)
    assert info["model"]["untrained"] is True
    assert "meaningless" in info["model"]["note"]
    assert info["labels"] == LABELS.to_json()
    assert info["max_length"] == 512
    assert info["device"] == "cpu" and info["dtype"] == "fp32"
    # engine auto on CPU: the replica measured the candidates, serves the fastest and says so.
    auto = info["engine_auto"]
    assert info["engine"] == auto["choice"] and auto["dtype"] == "fp32"
    assert set(auto["rates_windows_per_s"]) == {"torch", "onnxruntime", "openvino"}
    assert "agreement" not in info  # fp32 passes no gate


def test_openapi_document_describes_routes_and_errors(http):
    doc = http.get("/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    assert {"/classify", "/classify/batch", "/health", "/info", "/openapi.json"} <= set(doc["paths"])
    responses = doc["paths"]["/classify"]["post"]["responses"]
    assert {"200", "400", "413", "415", "422", "503"} <= set(responses)
    assert doc["components"]["schemas"]["ClassifyRequest"]["additionalProperties"] is True


@pytest.mark.parametrize(
    "path, content, content_type, status, code",
    [
        ("/classify", b"{not json", "application/json", 400, "invalid_json"),
        ("/classify", b"", "application/json", 400, "empty_body"),
        ("/classify", b'{"text": "hello"}', "application/json", 422, "missing_field"),
        ("/classify", b'{"narrative": 42}', "application/json", 422, "invalid_request"),
        ("/classify", b'{"narrative": ""}', "application/json", 400, "empty_narrative"),
        ("/classify", b'{"narrative": "hello"}', "text/plain", 415, "unsupported_media_type"),
        ("/classify/batch", b'{"narratives": "hello"}', "application/json", 422, "invalid_request"),
        ("/classify/batch", b'{"narratives": []}', "application/json", 400, "empty_narrative"),
    ],
)
def test_bad_input_gets_a_clear_4xx(http, path, content, content_type, status, code):
    r = http.post(path, content=content, headers={"content-type": content_type})
    assert r.status_code == status, r.text
    body = r.json()
    assert body["success"] is False
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    assert body["error"]["request_id"] == r.headers["x-request-id"]


def test_over_long_body_and_batch_get_413(http):
    r = http.post("/classify", content=b'{"narrative": "' + b"a" * 1_100_000 + b'"}',
                  headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"
    r = post(http, "/classify/batch", {"narratives": ["hello"] * 257})
    assert r.status_code == 413 and "257" in r.json()["error"]["message"]


def test_unknown_route_and_method(http):
    assert http.get("/nope").status_code == 404
    r = http.get("/classify")
    assert r.status_code == 405 and r.headers["allow"] == "POST"


@pytest.mark.app("tiny-7-65")
def test_another_release_serves(serve_session, checkpoints):
    url = serve_session.deploy(model=str(checkpoints["tiny_7_65"]))
    import httpx

    labels = LabelSet.from_dir(checkpoints["tiny_7_65"])
    assert labels.sizes() == {"main_category": 7, "sub_category": 65, "intervention": 5, "priority": 3}
    with httpx.Client(base_url=url, timeout=60) as client:
        body = post(client, "/classify", {"narrative": BULLYING}).json()
        assert_case_shape(body, labels)
        assert client.get("/info").json()["labels"] == labels.to_json()


def test_transformers_4x_checkpoint_serves(serve_session, checkpoints):
    url = serve_session.deploy(model=str(checkpoints["tiny_legacy"]))
    import httpx

    with httpx.Client(base_url=url, timeout=60) as client:
        r = post(client, "/classify", {"narrative": BULLYING})
        assert r.status_code == 200
        assert_case_shape(r.json())
