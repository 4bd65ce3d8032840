"""The contract of the case record and feedback routes: validation, label checks, the OpenAPI parameters,
and OpenCHS's agent-feedback field names (openchlai/ai ai_service/app/api/agent_feedback_routes.py)."""

from __future__ import annotations

import pytest

from deployments.core import contract
from deployments.core.config import AppArgs, FeedbackArgs
from deployments.core.errors import ServiceError
from deployments.core.labels import BUNDLED_LABELS_DIR, LabelSet

LABELS = LabelSet.from_dir(BUNDLED_LABELS_DIR)
LIMITS = contract.Limits()


def refused(model, payload) -> ServiceError:
    with pytest.raises(ServiceError) as info:
        contract.parse_request(model, payload, LIMITS)
    return info.value


def test_call_ids_are_optional_checked_and_one_per_narrative():
    assert contract.parse_request(contract.ClassifyRequest, {"narrative": "x", "call_id": "c1"},
                                  LIMITS).call_id_list() == ["c1"]
    assert contract.parse_request(contract.ClassifyRequest, {"narrative": "x"}, LIMITS).call_id_list() == [None]
    batch = contract.parse_request(contract.BatchRequest, {"narratives": ["a", "b"], "call_ids": ["c1", None]}, LIMITS)
    assert batch.call_id_list() == ["c1", None]
    assert contract.parse_request(contract.BatchRequest, {"narratives": ["a"]}, LIMITS).call_id_list() == [None]
    assert refused(contract.ClassifyRequest, {"narrative": "x", "call_id": "c" * 129}).status == 422
    assert refused(contract.ClassifyRequest, {"narrative": "x", "call_id": 7}).status == 422
    err = refused(contract.BatchRequest, {"narratives": ["a", "b"], "call_ids": ["c1"]})
    assert err.status == 422 and "call_ids" in err.message


def test_feedback_labels_are_checked_against_the_served_set():
    body = contract.parse_request(contract.FeedbackRequest, {
        "case_id": "c", "corrections": {"main_category": "VANE", "priority": 3}, "rating": 4}, LIMITS)
    assert contract.check_corrections(body.corrections, LABELS) == {"main_category": "VANE", "priority": 3}
    bad = contract.parse_request(contract.FeedbackRequest, {"case_id": "c", "corrections": {"intervention": "X"}},
                                 LIMITS)
    with pytest.raises(ServiceError) as info:
        contract.check_corrections(bad.corrections, LABELS)
    assert info.value.status == 422 and "corrections.intervention" in info.value.message
    assert all(label in info.value.message for label in LABELS.intervention)  # a small set is listed
    big = contract.parse_request(contract.FeedbackRequest, {"case_id": "c", "corrections": {"sub_category": "X"}},
                                 LIMITS)
    with pytest.raises(ServiceError) as info:
        contract.check_corrections(big.corrections, LABELS)
    assert "GET /info" in info.value.message and LABELS.sub_category[0] not in info.value.message
    with pytest.raises(ServiceError):
        contract.check_corrections(contract.parse_request(contract.FeedbackRequest, {
            "case_id": "c", "corrections": {"priority": 7}}, LIMITS).corrections, LABELS)


@pytest.mark.parametrize("payload", [
    {"case_id": "c", "rating": 0}, {"case_id": "c", "rating": 6}, {"case_id": "c", "rating": "5"},
    {"case_id": ""}, {"rating": 3}, {"case_id": "c", "corrections": {"colour": "red"}},
    {"case_id": "c", "corrections": {"priority": "3"}}, {"case_id": "c\x00"}, {"case_id": "c", "reason": "a\x00"},
])
def test_malformed_feedback_is_a_422(payload):
    assert refused(contract.FeedbackRequest, payload).status == 422


def test_query_parameters_are_parsed_from_strings():
    assert contract.parse_request(contract.StatsParams, {"days": "7"}, LIMITS).days == 7
    assert contract.parse_request(contract.StatsParams, {}, LIMITS).days == 30
    assert refused(contract.StatsParams, {"days": "0"}).status == 422
    assert refused(contract.StatsParams, {"days": "many"}).status == 422
    assert str(contract.parse_request(contract.ExportParams, {"since": "2026-11-01"}, LIMITS).since) == "2026-11-01"
    assert refused(contract.ExportParams, {}).status == 422


def test_openapi_declares_parameters_and_label_enums():
    doc = contract.build_openapi(AppArgs(), LABELS)
    case = doc["paths"]["/cases/{id}"]["get"]
    assert case["parameters"][0]["in"] == "path" and case["parameters"][0]["required"] is True
    stats = {p["name"]: p for p in doc["paths"]["/feedback/stats"]["get"]["parameters"]}
    assert stats["days"]["in"] == "query" and stats["model"]["schema"]["type"] == "string"
    assert "201" in doc["paths"]["/feedback"]["post"]["responses"]
    assert {"404", "422"} <= set(doc["paths"]["/feedback"]["post"]["responses"])
    corrections = doc["components"]["schemas"]["Corrections"]["properties"]
    assert corrections["main_category"]["anyOf"][0]["enum"] == list(LABELS.main_category)
    assert corrections["priority"]["anyOf"][0]["enum"] == list(LABELS.priority)


def test_openchs_agent_feedback_routes_keep_their_field_names():
    paths = {op.path: op for op in contract.OPERATIONS}
    update = paths["/api/v1/agent-feedback/update"]
    assert update.method == "POST" and set(update.request.model_fields) == {"call_id", "task", "feedback", "reason"}
    assert set(update.response.model_fields) == {"id", "call_id", "task", "prediction", "feedback", "reason",
                                                 "created_at", "updated_at", "processing_mode", "model_version"}
    call = paths["/api/v1/agent-feedback/call/{call_id}"]
    assert call.method == "GET" and set(call.params.model_fields) == {"call_id", "task"}
    stats = paths["/api/v1/agent-feedback/statistics"]
    assert set(stats.params.model_fields) == {"task", "days"} and stats.params.model_fields["days"].default == 30
    assert set(stats.response.model_fields) == {"period_days", "tasks"}
    assert set(contract.OpenChsTaskStats.model_fields) == {"total_predictions", "rated_predictions",
                                                           "rating_coverage", "average_rating", "min_rating",
                                                           "max_rating"}
    assert refused(contract.OpenChsFeedbackUpdate, {"call_id": "c", "task": "classification", "feedback": 6}).status \
        == 422


def test_the_database_url_comes_from_the_config_then_the_environment(monkeypatch):
    monkeypatch.delenv("CHS_DATABASE_URL", raising=False)
    assert FeedbackArgs().resolved_database_url().endswith("/var/helpline.db")
    assert FeedbackArgs().resolved_database_url().startswith("sqlite:///")
    monkeypatch.setenv("CHS_DATABASE_URL", "postgresql://u:p@db:5432/helpline")
    assert FeedbackArgs().resolved_database_url() == "postgresql://u:p@db:5432/helpline"
    assert FeedbackArgs(database_url="sqlite:///x.db").resolved_database_url() == "sqlite:///x.db"
    assert (FeedbackArgs().keep_narratives, FeedbackArgs().retention_days) == (False, 90)
