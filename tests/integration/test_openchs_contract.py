"""OpenCHS's contract on their routes, checked against their own models, over real HTTP on a real Ray cluster.

Their models are copied below from OpenCHS's source, repository openchlai/ai at commit
6c5353a3b1f299e34de8c21a22b6121146c96f41 (7 February 2026, merged unchanged into
BITZ-IT-Consulting-LTD/openchsai), from these files:

* ``ai_service/app/api/classifier_route.py``: ConfidenceScores, ChunkPrediction, ClassifierResponse,
  ClassifierTaskResponse, ClassifierTaskStatusResponse, and what /classifier/info answers;
* ``ai_service/app/api/models.py``: ErrorDetail, ErrorResponse (the ``detail`` of their classifier's errors);
* ``ai_service/app/api/agent_feedback_routes.py``: FeedbackResponse, FeedbackStatisticsResponse;
* ``ai_service/app/model_scripts/classifier_model.py``: the keys of ``get_model_info()`` and of the flat
  prediction ``classify()`` returns;
* ``ai_service/app/api/health_routes.py``: the dicts /health/detailed and /health/models return (plain
  dicts there; written here as models with the same keys);
* ``ai_service/app/models/notification_types.py``: ProcessingMode's values.

Every response of ours on their routes is validated by their model, and its keys must be exactly
their model's fields (their models would ignore a field of ours they lack; a client would not see it).
"""

from __future__ import annotations

import shutil
import time
import uuid
from datetime import datetime
from enum import Enum
from typing import Any, Dict, List, Optional

import httpx
import pytest
from pydantic import BaseModel, ConfigDict, Field


# -- copied from ai_service/app/api/classifier_route.py --------------------------------------------------------
class ConfidenceScores(BaseModel):
    main_category: Optional[float] = None
    sub_category: Optional[float] = None
    sub_category_2: Optional[float] = None
    intervention: Optional[float] = None
    priority: Optional[float] = None


class ChunkPrediction(BaseModel):
    chunk_index: int
    token_count: int
    sentence_count: int
    position_ratio: float
    main_category: str
    sub_category: str
    sub_category_2: Optional[str] = None
    intervention: str
    priority: str
    confidence_scores: ConfidenceScores


class ClassifierResponse(BaseModel):
    main_category: str
    sub_category: str
    sub_category_2: Optional[str] = None
    intervention: str
    priority: str
    confidence_scores: ConfidenceScores
    chunks_processed: int
    chunk_predictions: Optional[List[ChunkPrediction]] = None
    processing_time: float
    model_info: dict
    timestamp: str


class ClassifierTaskResponse(BaseModel):
    task_id: str
    status: str
    message: str
    estimated_time: str
    status_endpoint: str


class ClassifierTaskStatusResponse(BaseModel):
    task_id: str
    status: str
    result: Optional[ClassifierResponse] = None
    error: Optional[str] = None
    progress: Optional[Dict] = None


# -- copied from ai_service/app/api/models.py (descriptions and examples left out) ----------------------------
class ErrorDetail(BaseModel):
    error_code: str
    message: str
    detail: Optional[str] = None
    field: Optional[str] = None
    timestamp: str = Field(default_factory=lambda: datetime.now().isoformat())


class ErrorResponse(BaseModel):
    error: ErrorDetail
    status: str = "error"
    request_id: Optional[str] = None


# -- copied from ai_service/app/api/agent_feedback_routes.py ----------------------------------------------------
class FeedbackResponse(BaseModel):
    id: int
    call_id: str
    task: str
    prediction: Any
    feedback: Optional[int]
    reason: Optional[str]
    created_at: datetime
    updated_at: Optional[datetime]
    processing_mode: Optional[str] = None
    model_version: Optional[str] = None


class FeedbackStatisticsResponse(BaseModel):
    period_days: int
    tasks: dict


# -- copied from ai_service/app/models/notification_types.py -------------------------------------------------
class ProcessingMode(str, Enum):
    STREAMING = "streaming"
    POST_CALL = "post_call"
    DUAL = "dual"
    ADAPTIVE = "adaptive"


# -- their HTTPException bodies: FastAPI answers {"detail": <the detail raised>} ---------------------------------
class ClassifierError(BaseModel):  # classifier_route.py: detail=create_error_response(...).model_dump()
    detail: ErrorResponse


class FeedbackError(BaseModel):  # agent_feedback_routes.py: detail=f"..."
    detail: str


# -- the dicts of classifier_model.py and health_routes.py, written as models with their keys ---------------------
class ModelInfo(BaseModel):  # ClassifierModel.get_model_info()
    model_config = ConfigDict(protected_namespaces=())
    model_type: str
    model_path: str
    hf_repo_id: Optional[str]
    loaded: bool
    load_time: Optional[str]
    device: str
    error: Optional[str]
    details: Dict


class Prediction(BaseModel):  # ClassifierModel._classify_single()'s result
    main_category: str
    sub_category: str
    sub_category_2: Optional[str]
    intervention: str
    priority: str
    confidence: float
    confidence_breakdown: ConfidenceScores


class ClassifierInfo(BaseModel):  # get_classifier_info(), standalone mode, model ready
    model_config = ConfigDict(protected_namespaces=())
    status: str
    model_info: ModelInfo


class HealthModels(BaseModel):  # models_health(), standalone mode
    timestamp: str
    mode: str
    status: str
    system_capabilities: Any
    summary: Dict
    ready_models: List
    implementable_models: List
    blocked_models: List
    missing_dependencies: Any
    details: Any


class HealthDetailed(BaseModel):  # detailed_health()
    status: str
    timestamp: str
    version: str
    site_id: str
    issues: List
    system: Any
    gpu: Any
    queue: Dict
    models: Dict
    capabilities: Any


# -----------------------------------------------------------------------------------------------------------------

EXTRA_OF_OURS = {Prediction: {"confidence_scores"}}  # the task results' name for confidence_breakdown, also given


def theirs(model: type[BaseModel], data: Any) -> BaseModel:
    """``data`` validated by their model, its keys exactly their fields (recursively through their models)."""
    parsed = model.model_validate(data)
    assert set(data) - EXTRA_OF_OURS.get(model, set()) == set(model.model_fields), (model.__name__, sorted(data))
    for name in model.model_fields:
        value = getattr(parsed, name)
        if isinstance(value, BaseModel):
            theirs(type(value), data[name])
        elif isinstance(value, list):
            for item, raw in zip(value, data[name]):
                if isinstance(item, BaseModel):
                    theirs(type(item), raw)
    return parsed


def three_places(scores: dict) -> bool:
    return all(v is None or round(v, 3) == v for v in scores.values())


LONG = " ".join(f"Sentence {i} says the girl was beaten at home by her uncle and is afraid." for i in range(12))
SHORT = "A boy asks about the helpline opening hours. He is fine."


@pytest.fixture(scope="module")
def app_args(tiny_checkpoint, tmp_path_factory):
    # As OpenCHS's published checkpoint: no sub_to_main.json (the taxonomy comes from the bundled release).
    checkpoint = tmp_path_factory.mktemp("openchs") / "no-taxonomy"
    shutil.copytree(tiny_checkpoint, checkpoint)
    (checkpoint / "sub_to_main.json").unlink()
    # Windows of 64 tokens: the long narrative takes several, so chunk_predictions has one per window.
    return {"model": str(checkpoint), "max_length": 64, "window_overlap": 16}


@pytest.fixture
def client(serve_session, app_args):
    url = serve_session.deploy(**app_args)
    with httpx.Client(base_url=url, timeout=60) as c:
        yield c


def finished(client: httpx.Client, task_id: str, timeout_s: float = 120) -> ClassifierTaskStatusResponse:
    deadline = time.monotonic() + timeout_s
    while True:
        r = client.get(f"/classifier/task/{task_id}")
        assert r.status_code == 200, r.text
        status = theirs(ClassifierTaskStatusResponse, r.json())
        if status.status in ("success", "failed") or time.monotonic() > deadline:
            return status
        assert status.status in ("pending", "processing") and status.result is None
        time.sleep(0.3)


def test_their_classifier_routes_answer_their_models(client):
    call_id = "openchs-" + uuid.uuid4().hex
    r = client.post("/classifier/classify", json={"narrative": LONG, "call_id": call_id, "their_extra": 1})
    assert r.status_code == 202, r.text  # theirs: status_code=HTTP_202_ACCEPTED
    submitted = theirs(ClassifierTaskResponse, r.json())
    assert submitted.status == "queued" and submitted.status_endpoint == f"/classifier/task/{submitted.task_id}"
    status = finished(client, submitted.task_id)
    assert status.status == "success", status.error
    result = status.result
    raw = client.get(submitted.status_endpoint).json()["result"]
    assert three_places(raw["confidence_scores"])
    theirs(ModelInfo, raw["model_info"])
    assert raw["model_info"]["model_type"] == "classifier" and raw["model_info"]["loaded"] is True

    # The labels are the case record's (ours), as strings; one chunk prediction per window, in order.
    case = client.get(f"/cases/{submitted.task_id}").json()["case"]
    assert case["call_id"] == call_id
    for task in ("main_category", "sub_category", "sub_category_2", "intervention", "priority"):
        assert getattr(result, task) == str(case["classification"][task]["label"])
    assert result.chunks_processed == case["chunks"] > 1
    chunks = result.chunk_predictions
    assert [c.chunk_index for c in chunks] == list(range(case["chunks"]))
    assert chunks[0].position_ratio == 0.0 and chunks[-1].position_ratio == 1.0
    assert all(c.token_count <= 64 and c.sentence_count >= 1 for c in chunks)
    assert sum(c.token_count - 2 for c in chunks) > case["tokens"]  # overlapping windows cover every token
    for chunk, detail, raw_chunk in zip(chunks, case["chunk_details"], raw["chunk_predictions"]):
        assert chunk.main_category == detail["classification"]["main_category"]["label"]
        assert chunk.priority == str(detail["classification"]["priority"]["label"])
        assert three_places(raw_chunk["confidence_scores"])

    # A short narrative: one window, chunk_predictions null, as theirs.
    short = theirs(ClassifierTaskResponse, client.post("/classifier/classify", json={"narrative": SHORT}).json())
    done = finished(client, short.task_id)
    assert done.status == "success" and done.result.chunks_processed == 1 and done.result.chunk_predictions is None

    # An id never submitted reads pending, as Celery's AsyncResult does there; ours keeps its 404.
    unknown = str(uuid.uuid4())
    pending = theirs(ClassifierTaskStatusResponse, client.get(f"/classifier/task/{unknown}").json())
    assert (pending.task_id, pending.status, pending.result) == (unknown, "pending", None)
    assert client.get(f"/tasks/{unknown}").status_code == 404

    info = theirs(ClassifierInfo, client.get("/classifier/info").json())
    assert info.status == "ready" and info.model_info.details["categories"]["main"] > 0
    demo = client.post("/classifier/demo")
    assert demo.status_code == 200  # their demo route declares no status code
    assert finished(client, theirs(ClassifierTaskResponse, demo.json()).task_id).status == "success"


def test_their_errors_keep_their_body_and_ours_keep_ours(client):
    r = client.post("/classifier/classify", json={"narrative": ""})
    assert r.status_code == 400
    error = theirs(ClassifierError, r.json()).detail
    theirs(ErrorResponse, r.json()["detail"])
    theirs(ErrorDetail, r.json()["detail"]["error"])
    # Their own test's assertion (ai_service/tests/api/routes/test_classifier.py, test_classify_text_empty).
    assert "Narrative input cannot be empty" in error.error.message and error.error.field == "narrative"
    assert error.request_id

    r = client.post("/classifier/classify", content=b"{", headers={"content-type": "application/json"})
    assert r.status_code == 400 and theirs(ClassifierError, r.json()).detail.error.error_code == "INVALID_INPUT"

    r = client.get(f"/api/v1/agent-feedback/call/nobody-{uuid.uuid4().hex}")
    assert r.status_code == 404 and theirs(FeedbackError, r.json()).detail.startswith("No feedback found for call_id=")

    # Our own routes keep our body.
    r = client.post("/classify", json={"narrative": ""})
    assert r.status_code == 400 and r.json()["success"] is False and r.json()["error"]["code"] == "empty_narrative"


def test_a_case_classified_there_is_rated_and_read_back_by_call_id_and_by_task_id(client):
    call_id = "rate-" + uuid.uuid4().hex
    with_call = theirs(ClassifierTaskResponse,
                       client.post("/classifier/classify", json={"narrative": SHORT, "call_id": call_id}).json())
    without = theirs(ClassifierTaskResponse, client.post("/classifier/classify", json={"narrative": LONG}).json())
    results = {t: finished(client, t).result for t in (with_call.task_id, without.task_id)}

    for named, task_id in ((call_id, with_call.task_id), (without.task_id, without.task_id)):
        # Their request model is lax: "4" is 4.
        r = client.post("/api/v1/agent-feedback/update",
                        json={"call_id": named, "task": "classification", "feedback": "4", "reason": "close"})
        assert r.status_code == 200, r.text
        updated = theirs(FeedbackResponse, r.json())
        assert (updated.call_id, updated.feedback, updated.reason) == (named, 4, "close")
        assert ProcessingMode(updated.processing_mode) is ProcessingMode.POST_CALL
        prediction = theirs(Prediction, updated.prediction)
        assert prediction.main_category == results[task_id].main_category  # clients read prediction["main_category"]
        assert prediction.priority == results[task_id].priority
        assert three_places(r.json()["prediction"]["confidence_breakdown"])

        r = client.get(f"/api/v1/agent-feedback/call/{named}")
        assert r.status_code == 200, r.text
        (entry,) = [theirs(FeedbackResponse, e) for e in r.json()]
        assert (entry.id, entry.feedback, entry.call_id) == (updated.id, 4, named)
        assert client.get(f"/api/v1/agent-feedback/call/{named}", params={"task": "ner"}).status_code == 404

    # Their other task names are theirs to rate: this service holds no such entry.
    r = client.post("/api/v1/agent-feedback/update", json={"call_id": call_id, "task": "ner", "feedback": 3})
    assert r.status_code == 404
    assert theirs(FeedbackError, r.json()).detail == f"Feedback entry not found for call_id={call_id}, task=ner"
    r = client.post("/api/v1/agent-feedback/update", json={"call_id": call_id, "task": "classification", "feedback": 6})
    assert r.status_code == 422 and isinstance(theirs(FeedbackError, r.json()).detail, str)

    stats = theirs(FeedbackStatisticsResponse, client.get("/api/v1/agent-feedback/statistics").json())
    assert stats.period_days == 30 and stats.tasks["classification"]["rated_predictions"] >= 2


def test_their_health_routes_answer_their_keys(client):
    models = theirs(HealthModels, client.get("/health/models").json())
    assert models.status == "healthy" and models.mode == "standalone"
    assert models.ready_models == ["classifier_model"] and models.summary["ready"] == 1
    detailed = theirs(HealthDetailed, client.get("/health/detailed").json())
    assert detailed.status == "healthy" and detailed.issues == []
    assert set(detailed.models) == {"total", "ready", "implementable", "blocked", "ready_models",
                                    "implementable_models", "blocked_models", "details"}
    assert set(detailed.queue) == {"queue_size", "max_queue_size"}


def test_without_sub_to_main_the_taxonomy_is_the_bundled_releases_and_info_says_so(client):
    from deployments.core.labels import load_sub_to_main

    info = client.get("/info").json()
    assert info["taxonomy_source"]["source"] == "bundled", info["taxonomy_source"]
    assert info["taxonomy"] == load_sub_to_main()
