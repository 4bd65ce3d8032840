"""deployments/core/openchs.py and OpenCHS's error bodies: their shapes from ours, Ray-free.

The served routes are checked against their own pydantic models in tests/integration/test_openchs_contract.py."""

from __future__ import annotations

import pytest
from starlette.requests import Request
from starlette.testclient import TestClient

from deployments.core import contract, openchs, tasks
from deployments.core.auth import ApiKeys
from deployments.core.errors import ServiceError
from deployments.ingress import HttpIngress

RECORD = tasks.TaskRecord.new("t1", "c1", ttl_s=60, now=1_700_000_000.0)


def pred(label, confidence):
    return {"label": label, "confidence": confidence}


def classification(main="VANE", priority=3, conf=0.7123456):
    return {"main_category": pred(main, conf), "sub_category": pred("Physical Abuse", 0.6),
            "sub_category_2": pred("Neglect", 0.1), "intervention": pred("Referral", 0.9),
            "priority": pred(priority, 0.8)}


def classify_body(windows: int = 1) -> dict:
    details = [{"index": i, "token_span": [i * 382, i * 382 + 510],
                "classification": classification(main="VANE" if i else "Information", priority=3 - i % 2)}
               for i in range(windows)]
    return {"success": True, "classification": classification(),
            "routing": {"queue": "vane", "escalate": True, "human_review": True, "reasons": []},
            "chunks": windows, "truncated": False, "tokens": 700, "model": {"id": "m", "revision": None},
            "processing_time_seconds": 0.12, "chunk_details": details}


MODEL_INFO = openchs.model_info(model="models/x", path="/m/x", local=True, loaded_at="2026-01-01T00:00:00+00:00",
                                device="cpu", max_length=512, categories={"main": 8}, truncates=False)


def test_a_finished_task_reads_as_theirs_string_priority_three_places():
    view = tasks.task_view(RECORD, "SUCCESS", tasks.succeeded(classify_body()), 1_700_000_001.0)
    status = contract.OpenchsTaskStatusResponse(**openchs.openchs_status(view, MODEL_INFO)).model_dump()
    assert status["status"] == "success" and status["error"] is None
    result = status["result"]
    assert result["priority"] == "3" and result["main_category"] == "VANE"
    assert result["confidence_scores"]["main_category"] == 0.712  # theirs: round(x, 3)
    assert result["chunks_processed"] == 1 and result["chunk_predictions"] is None  # one window: null, as theirs
    assert result["processing_time"] == 0.12
    assert set(result["model_info"]) == {"model_type", "model_path", "hf_repo_id", "loaded", "load_time", "device",
                                         "error", "details"}
    assert result["model_info"]["hf_repo_id"] is None and result["model_info"]["model_path"] == "/m/x"


def test_each_window_is_a_chunk_prediction_with_their_chunker_fields():
    raw = {**tasks.succeeded(classify_body(windows=3)), "window_sentences": [4, 5, 2]}
    view = tasks.task_view(RECORD, "SUCCESS", raw, 1.0)
    result = contract.OpenchsTaskStatusResponse(**openchs.openchs_status(view, MODEL_INFO)).model_dump()["result"]
    chunks = result["chunk_predictions"]
    assert [c["chunk_index"] for c in chunks] == [0, 1, 2]
    assert [c["position_ratio"] for c in chunks] == [0.0, 0.5, 1.0]
    assert [c["sentence_count"] for c in chunks] == [4, 5, 2]
    assert [c["token_count"] for c in chunks] == [512, 512, 512]
    assert [c["main_category"] for c in chunks] == ["Information", "VANE", "VANE"]
    assert [c["priority"] for c in chunks] == ["3", "2", "3"]


@pytest.mark.parametrize(("state", "theirs"), [("PENDING", "pending"), ("STARTED", "processing"), ("FAILURE", "failed")])
def test_their_statuses(state, theirs):
    status = openchs.openchs_status(tasks.task_view(RECORD, state, None, None), {})
    assert status["status"] == theirs and status["result"] is None
    assert (status["error"] is not None) == (theirs == "failed")


def test_an_id_never_seen_is_pending_as_celery_says():
    status = contract.OpenchsTaskStatusResponse(**openchs.openchs_status(None, {}, "nope")).model_dump()
    assert (status["task_id"], status["status"], status["result"]) == ("nope", "pending", None)


def test_the_submission_points_at_their_status_route():
    body = contract.OpenchsTaskResponse(**openchs.openchs_submitted("t9", "3 cases ahead")).model_dump()
    assert body["status"] == "queued" and body["status_endpoint"] == "/classifier/task/t9"


def test_the_flat_prediction_is_what_their_classify_returns():
    flat = contract.OpenChsPrediction(**openchs.flat_prediction(classification())).model_dump()
    assert flat["main_category"] == "VANE" and flat["priority"] == "3"
    assert flat["confidence"] == round((0.7123456 + 0.6 + 0.9 + 0.8) / 4, 3)
    assert flat["confidence_breakdown"] == flat["confidence_scores"]
    assert flat["confidence_breakdown"]["sub_category_2"] == 0.1


def test_sentences_per_window_follow_their_splitter():
    narrative = "The girl called. She was hit at home! Nobody helps her? the end came late"
    assert openchs.split_sentences(narrative) == ["The girl called.", "She was hit at home!",
                                                  "Nobody helps her? the end came late"]
    words = lambda sentences: [len(s.split()) for s in sentences]  # noqa: E731  one token a word
    # Sentences of 3, 5 and 7 tokens: tokens [0,3) [3,8) [8,15).
    assert openchs.window_sentence_counts(narrative, [(0, 4), (2, 3), (8, 15), (3, 8)], words) == [2, 1, 1, 1]


def test_their_feedback_coerces_a_string_rating_and_takes_their_task_names():
    body = contract.parse_request(contract.OpenChsFeedbackUpdate,
                                  {"call_id": "c", "task": "ner", "feedback": "4"}, contract.Limits())
    assert body.feedback == 4 and body.task == "ner"
    with pytest.raises(ServiceError) as err:
        contract.parse_request(contract.OpenChsFeedbackUpdate,
                               {"call_id": "c", "task": "classification", "feedback": "6"}, contract.Limits())
    assert err.value.status == 422


def client_of(err: ServiceError) -> TestClient:
    """The ingress with every handler raising ``err``."""
    handlers = {op.id: getattr(Raising(err), op.id) for op in contract.OPERATIONS}
    ingress = HttpIngress(handlers, api_keys=ApiKeys(), max_body_bytes=1000, limits=contract.Limits())

    async def app(scope, receive, send):
        response = await ingress(Request(scope, receive))
        await response(scope, receive, send)

    return TestClient(app)


class Raising:
    def __init__(self, err):
        self.err = err

    def __getattr__(self, name):
        async def handler(*args, **kwargs):
            raise self.err
        return handler


@pytest.mark.parametrize(("path", "body", "style"), [
    ("/classifier/task/x", None, "openchs"), ("/api/v1/agent-feedback/call/c1", None, "openchs_text"),
    ("/cases/c1", None, "service")])
def test_errors_on_their_routes_take_their_body_and_ours_keep_ours(path, body, style):
    err = ServiceError.unavailable("The intake queue cannot be reached; retry.")
    r = client_of(err).get(path, headers={"x-request-id": "rid-9"})
    assert r.status_code == 503 and r.headers["retry-after"] == "5"
    got = r.json()
    if style == "openchs":
        detail = contract.OpenchsError(**got).detail
        assert (detail.status, detail.request_id, detail.error.error_code) == ("error", "rid-9", "SERVICE_UNAVAILABLE")
    elif style == "openchs_text":
        assert got == {"detail": err.message}
    else:
        assert got == {"success": False, "error": {"code": "unavailable", "message": err.message, "request_id": "rid-9"}}


def test_an_empty_narrative_on_their_route_names_the_field_as_theirs():
    r = client_of(ServiceError.backend()).post("/classifier/classify", json={"narrative": "  "})
    assert r.status_code == 400
    error = contract.OpenchsError(**r.json()).detail.error
    assert (error.error_code, error.field) == ("INVALID_INPUT", "narrative")


def test_a_refused_key_on_their_route_keeps_our_body_their_service_has_no_keys():
    handlers = {op.id: getattr(Raising(ServiceError.backend()), op.id) for op in contract.OPERATIONS}
    ingress = HttpIngress(handlers, api_keys=ApiKeys.from_env({"CHS_API_KEYS": "svc:service:k1"}),
                          max_body_bytes=1000, limits=contract.Limits())

    async def app(scope, receive, send):
        response = await ingress(Request(scope, receive))
        await response(scope, receive, send)

    r = TestClient(app).get("/api/v1/agent-feedback/statistics")
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
