"""OpenCHS's shapes from ours, free of Ray and HTTP: what their ai-service's routes answer, built from
this service's /classify body, task views and case records.

Read against openchlai/ai at 6c5353a3b1f299e34de8c21a22b6121146c96f41 (February 2026):

* ``ai_service/app/api/classifier_route.py``: the task and its status (``openchs_submitted``,
  ``openchs_status``, ``openchs_result``); an id never seen reads ``pending`` there (Celery's
  ``AsyncResult`` of an unknown id is PENDING).
* ``ai_service/app/model_scripts/classifier_model.py``: the flat prediction of ``classify()``
  (``flat_prediction``: string priority, confidences to 3 places, their mean as ``confidence``) and
  ``get_model_info()``'s keys (``model_info``).
* ``ai_service/app/tasks/model_tasks.py`` with ``app/utils/text_utils.py``: ``chunk_predictions``, one
  per window of a narrative read in more than one, with their chunker's fields (``chunk_predictions``,
  ``window_sentence_counts``).
* ``ai_service/app/api/health_routes.py``: ``/health/detailed`` and ``/health/models``.
"""

from __future__ import annotations

import os
import re
from datetime import datetime, timezone
from typing import Any, Callable, Mapping, Optional, Sequence

OPENCHS_STATUS = {"queued": "pending", "processing": "processing", "succeeded": "success", "failed": "failed"}
OPENCHS_LABEL_TASKS = ("main_category", "sub_category", "sub_category_2", "intervention", "priority")
# The four tasks whose confidences their overall ``confidence`` averages (sub_category_2 is not one).
MEAN_TASKS = ("main_category", "sub_category", "intervention", "priority")
# A case classified from the whole narrative after the call (their ProcessingMode.POST_CALL).
PROCESSING_MODE = "post_call"
# Their /classifier/demo's narrative, word for word (classifier_route.py).
DEMO_NARRATIVE = (
    "On 2023-05-15 a girl (age 16) from District X called to report sexual abuse by her stepfather. "
    "She is currently 2 months pregnant and being forced to abort. The stepfather has threatened to "
    "kill her if she doesn't comply. Her mother is also being abused."
)
# Their sentence splitter (text_utils.BaseChunker.split_into_sentences).
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")


def iso_now() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


def _three(value: Optional[float]) -> Optional[float]:
    return None if value is None else round(float(value), 3)


def _label_and_confidence(value: Any) -> tuple[Optional[str], Optional[float]]:
    if value is None:
        return None, None
    if isinstance(value, dict):
        return str(value["label"]), value.get("confidence")
    return str(value), None


def _labels_and_scores(classification: Mapping[str, Any]) -> tuple[dict, dict]:
    labels, scores = {}, {}
    for task in OPENCHS_LABEL_TASKS:
        labels[task], confidence = _label_and_confidence(classification.get(task))
        scores[task] = _three(confidence)
    return labels, scores


def flat_prediction(classification: Mapping[str, Any]) -> dict:
    """What their ``classify()`` returns, from our classification ({task: {label, confidence}})."""
    labels, scores = _labels_and_scores(classification)
    known = [classification[t]["confidence"] for t in MEAN_TASKS if isinstance(classification.get(t), dict)]
    return {**labels, "confidence": round(sum(known) / len(known), 3) if known else 0.0,
            "confidence_breakdown": scores, "confidence_scores": dict(scores)}


# -- the classifier's task ------------------------------------------------------------------------


def openchs_submitted(task_id: str, estimated_time: str) -> dict:
    return {"task_id": task_id, "status": "queued",
            "message": "Classification task queued; poll status_endpoint for the result.",
            "estimated_time": estimated_time, "status_endpoint": f"/classifier/task/{task_id}"}


def split_sentences(text: str) -> list[str]:
    """Their splitter, exactly: whitespace collapsed, cut after . ! ? before a capital."""
    return [s.strip() for s in _SENTENCE_END.split(re.sub(r"\s+", " ", text)) if s.strip()]


def window_sentence_counts(narrative: str, spans: Sequence[tuple[int, int]],
                           token_count: Callable[[list[str]], list[int]]) -> list[int]:
    """Per window [start, end) of content tokens, the sentences of the narrative it reads, whole or in part.

    ``token_count``: the model's tokens of each normalized sentence. Normalization keeps every word
    whole and in order, so the sentences' tokens laid end to end are the narrative's tokens."""
    sentences = split_sentences(narrative)
    bounds, at = [], 0
    for n in token_count(sentences) if sentences else []:
        bounds.append((at, at + n))
        at += n
    return [sum(1 for s, e in bounds if e > s and s < end and e > start) for start, end in spans]


def chunk_predictions(body: Mapping[str, Any], sentences: Optional[Sequence[int]]) -> Optional[list[dict]]:
    """Their ``chunk_predictions``: one per window when there is more than one (null for one, as theirs)."""
    details = body.get("chunk_details") or []
    if len(details) < 2:
        return None
    out = []
    for i, detail in enumerate(details):
        labels, scores = _labels_and_scores(detail["classification"])
        start, end = detail["token_span"]
        out.append({"chunk_index": detail["index"], "token_count": end - start + 2,  # [CLS] and [SEP], as theirs
                    "sentence_count": sentences[i] if sentences and i < len(sentences) else 0,
                    "position_ratio": detail["index"] / max(len(details) - 1, 1), **labels,
                    "confidence_scores": scores})
    return out


def openchs_result(body: dict, model_info: dict, sentences: Optional[Sequence[int]] = None) -> dict:
    """Their ClassifierResponse fields from our /classify body."""
    labels, scores = _labels_and_scores(body["classification"])
    return {
        **labels,
        "confidence_scores": scores,
        "chunks_processed": body["chunks"],
        "chunk_predictions": chunk_predictions(body, sentences),
        "processing_time": body.get("processing_time_seconds", 0.0),
        "model_info": model_info,
        "timestamp": iso_now(),
    }


def openchs_status(view: Optional[dict], model_info: dict, task_id: str = "") -> dict:
    """Their ClassifierTaskStatusResponse from our GET /tasks/{id} body; None (no such task): pending."""
    if view is None:
        return {"task_id": task_id, "status": "pending", "result": None, "error": None,
                "progress": {"message": "Task is queued"}}
    status = OPENCHS_STATUS[view["status"]]
    message = {"pending": "Task is queued", "processing": "Task is being classified",
               "success": "Task finished", "failed": "Task failed"}[status]
    return {
        "task_id": view["task_id"], "status": status,
        "result": openchs_result(view["result"], model_info, view.get("window_sentences")) if view["result"] else None,
        "error": view["error"]["message"] if view["error"] else None,
        "progress": {"message": message},
    }


# -- model info and health --------------------------------------------------------------------------


def model_info(*, model: str, path: str, local: bool, loaded_at: Optional[str], device: str, max_length: int,
               categories: Mapping[str, int], truncates: bool) -> dict:
    """Their ``get_model_info()``: ``model_path`` the checkpoint's directory, ``hf_repo_id`` the Hub id served."""
    return {
        "model_type": "classifier", "model_path": path, "hf_repo_id": None if local else model, "loaded": True,
        "load_time": loaded_at, "device": device, "error": None,
        "details": {
            "model_class": "MultiTaskDistilBert", "tokenizer_class": "DistilBertTokenizerFast",
            "max_length": max_length, "top_k_subcategories": True,
            "chunking": {"supported": not truncates, "strategy": "overlapping_windows",
                         "priority_escalation": True},
            "categories": dict(categories),
        },
    }


def health_models(ready: bool, queued: Optional[int], why: Optional[str] = None) -> dict:
    """Their ``GET /health/models`` (standalone mode): this service has one model, the classifier."""
    details = {"classifier_model": {"loaded": ready, "error": why, "queued": queued}}
    return {
        "timestamp": iso_now(), "mode": "standalone", "status": "healthy" if ready else "unhealthy",
        "system_capabilities": {"models": ["classifier_model"]},
        "summary": {"total": 1, "ready": int(ready), "implementable": 0, "blocked": 0},
        "ready_models": ["classifier_model"] if ready else [], "implementable_models": [], "blocked_models": [],
        "missing_dependencies": {}, "details": details,
    }


def health_detailed(ready: bool, queued: Optional[int], max_queued: int, version: str, device: str,
                    why: Optional[str] = None) -> dict:
    """Their ``GET /health/detailed``: ``unhealthy`` with the reason in ``issues`` when the model cannot answer."""
    models = health_models(ready, queued, why)
    issues = [] if ready else [why or "No models are ready or implementable"]
    return {
        "status": "healthy" if ready else "unhealthy", "timestamp": iso_now(), "version": version,
        "site_id": "helpline-serve", "issues": issues,
        "system": {"cpu_count": os.cpu_count(), "load_average_1m": os.getloadavg()[0]}, "gpu": {"device": device},
        "queue": {"queue_size": queued or 0, "max_queue_size": max_queued},
        "models": {**models["summary"], "ready_models": models["ready_models"],
                   "implementable_models": [], "blocked_models": [], "details": models["details"]},
        "capabilities": models["system_capabilities"],
    }
