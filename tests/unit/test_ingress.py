"""The ingress's HTTP plumbing without Ray: routing, keys and roles, body limits, validation, errors.

``HttpIngress`` is driven through Starlette's ``TestClient``, with a handler for every operation
that records what it was given, so each refusal is seen as a caller sees it: status, headers and
the one JSON error body, with the request id.
"""

from __future__ import annotations

import json

import pytest
from starlette.requests import Request
from starlette.testclient import TestClient

from deployments.core import contract
from deployments.core.auth import ROLES, ApiKeys
from deployments.core.config import AppArgs
from deployments.ingress import HttpIngress, current_request_id, handlers_of

MAX_BODY = 4096
NARRATIVE = "A girl of 12 says her uncle beats her every night and she is afraid to go home."
KEYS = ",".join(f"{role}-desk:{role}:key-of-{role}" for role in ROLES)


class RecordingHandlers:
    """A handler for every operation: it records the call and answers a small JSON body."""

    def __init__(self):
        self.calls: list[tuple[str, tuple, dict]] = []

    def __getattr__(self, name: str):
        if name not in {op.id for op in contract.OPERATIONS}:
            raise AttributeError(name)

        async def handler(*inputs, **keywords):
            self.calls.append((name, inputs, keywords))
            return {"handled": name, "request_id": current_request_id()}

        return handler


def make_client(env: dict | None = None) -> tuple[TestClient, RecordingHandlers]:
    recorder = RecordingHandlers()
    ingress = HttpIngress(handlers_of(recorder), api_keys=ApiKeys.from_env(env or {}), max_body_bytes=MAX_BODY,
                          limits=contract.Limits.of(AppArgs(max_narrative_chars=1000, max_batch_narratives=4)))

    async def app(scope, receive, send):
        response = await ingress(Request(scope, receive))
        await response(scope, receive, send)

    return TestClient(app, raise_server_exceptions=True), recorder


@pytest.fixture
def client() -> TestClient:
    return make_client()[0]


def error_of(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    if "detail" in body:  # an OpenCHS route: their body (contract.ERROR_BODIES), our code in its detail if structured
        if isinstance(body["detail"], dict):
            assert body["detail"]["error"]["detail"] == code and body["detail"]["request_id"]
        return body
    assert body["success"] is False and body["error"]["code"] == code
    assert body["error"]["request_id"]
    return body["error"]


def test_a_good_request_reaches_its_handler_with_the_validated_model():
    client, recorder = make_client()
    response = client.post("/classify", json={"narrative": NARRATIVE}, headers={"X-Request-ID": "rid-1"})
    assert response.status_code == 200 and response.json() == {"handled": "classify", "request_id": "rid-1"}
    (name, (parsed,), _), = recorder.calls
    assert isinstance(parsed, contract.ClassifyRequest) and parsed.narrative == NARRATIVE


def test_path_parameters_and_headers_reach_the_handler():
    client, recorder = make_client()
    assert client.get("/tasks/abc").status_code == 200
    assert client.post("/tasks/classify", json={"narrative": NARRATIVE},
                       headers={"Idempotency-Key": "k-1"}).status_code == 202
    assert recorder.calls[0][2] == {"task_id": "abc"}
    assert recorder.calls[1][2] == {"idempotency_key": "k-1"}


def test_an_unknown_route_is_404(client):
    error = error_of(client.get("/nowhere", headers={"X-Request-ID": "rid-404"}), 404, "not_found")
    assert error["request_id"] == "rid-404"


def test_a_wrong_method_is_405_with_allow(client):
    response = client.get("/classify")
    error_of(response, 405, "method_not_allowed")
    assert response.headers["allow"] == "POST"


def test_a_body_that_is_not_json_is_415(client):
    response = client.post("/classify", content=NARRATIVE, headers={"content-type": "text/plain"})
    error_of(response, 415, "unsupported_media_type")


def test_a_body_over_the_limit_is_413_before_it_is_read_whole(client):
    body = json.dumps({"narrative": "x" * (2 * MAX_BODY)})
    error_of(client.post("/classify", content=body, headers={"content-type": "application/json"}), 413,
             "payload_too_large")


def test_a_narrative_over_its_limit_is_413(client):
    error_of(client.post("/classify", json={"narrative": "word " * 300}), 413, "payload_too_large")


@pytest.mark.parametrize("payload, code", [({"narrative": 5}, "invalid_request"), ({"narratives": "one"}, "missing_field"),
                                           ({"narrative": NARRATIVE, "call_id": ""}, "invalid_request")])
def test_a_body_of_the_wrong_shape_is_422(client, payload, code):
    error_of(client.post("/classify", json=payload), 422, code)


def test_malformed_json_is_400(client):
    error_of(client.post("/classify", content=b"{not json", headers={"content-type": "application/json"}), 400,
             "invalid_json")


def _call_id_routes() -> list[tuple[contract.Operation, str]]:
    routes = []
    for op in contract.OPERATIONS:
        for model in (op.request, op.params):
            if model is not None:
                routes += [(op, field) for field in model.model_fields if field in ("call_id", "call_ids")]
    return routes


@pytest.mark.parametrize("op, field", _call_id_routes(), ids=lambda v: getattr(v, "id", v))
def test_a_nul_in_a_call_id_is_422_on_every_route_that_takes_one(client, op, field):
    nul = "call\x00id"
    if op.request is not None and field in op.request.model_fields:
        body = {"narratives": [NARRATIVE]} if "narratives" in op.request.model_fields else {"narrative": NARRATIVE}
        if op.id == "openchs_feedback_update":
            body = {"feedback": 4, "task": "classification"}
        body[field] = [nul] if field == "call_ids" else nul
        response = client.request(op.method, op.path, json=body)
    else:
        response = client.request(op.method, op.path.replace("{call_id}", "x"), params={field: nul}) \
            if "{call_id}" not in op.path else client.request(op.method, op.path.replace("{call_id}", "call%00id"))
    error_of(response, 422, "invalid_request")


def test_the_nul_routes_are_found():
    ids = {op.id for op, _ in _call_id_routes()}
    assert {"classify", "classify_batch", "tasks_classify", "tasks_classify_batch", "openchs_feedback_update",
            "openchs_feedback_call"} <= ids


# -- keys and roles ------------------------------------------------------------------------------------


def test_no_key_is_401_when_keys_are_configured():
    client, recorder = make_client({"CHS_API_KEYS": KEYS})
    response = client.post("/classify", json={"narrative": NARRATIVE})
    error_of(response, 401, "unauthorized")
    assert response.headers["www-authenticate"] == "Bearer"
    error_of(client.post("/classify", json={"narrative": NARRATIVE}, headers={"Authorization": "Bearer wrong"}),
             401, "unauthorized")
    assert recorder.calls == []


def test_public_routes_need_no_key():
    client, _ = make_client({"CHS_API_KEYS": KEYS})
    for path in ("/health", "/", "/docs"):
        assert client.get(path).status_code == 200


def test_a_role_without_the_permission_is_403_naming_it():
    client, recorder = make_client({"CHS_API_KEYS": KEYS})
    response = client.get("/feedback/export", params={"since": "2026-01-01"},
                          headers={"Authorization": "Bearer key-of-supervisor"})
    error = error_of(response, 403, "forbidden")
    assert "'export'" in error["message"] and "admin" in error["message"] and "supervisor" in error["message"]
    assert recorder.calls == []


def _sample_request(op: contract.Operation) -> tuple[str, dict]:
    """A request each operation accepts (200-class from the recording handler)."""
    path = op.path.replace("{id}", "case-1").replace("{call_id}", "call-1").replace("{task_id}", "task-1")
    path = path.replace("{name}", "swagger-ui.css").replace("{case_id}", "case-1")
    kwargs: dict = {}
    if op.request is not None:
        fields = op.request.model_fields
        if op.id == "feedback":
            kwargs["json"] = {"case_id": "case-1", "rating": 4}
        elif "narratives" in fields:
            kwargs["json"] = {"narratives": [NARRATIVE]}
        elif "narrative" in fields:
            kwargs["json"] = {"narrative": NARRATIVE}
        elif "seq" in fields:  # a live call's piece
            kwargs["json"] = {"text": NARRATIVE, "seq": 0}
        else:
            kwargs["json"] = {"call_id": "call-1", "feedback": 4, "task": "classification"}
    if op.id == "feedback_export":
        kwargs["params"] = {"since": "2026-01-01"}
    return path, kwargs


@pytest.mark.parametrize("role", sorted(ROLES))
def test_each_role_reaches_exactly_the_operations_its_permissions_allow(role):
    client, recorder = make_client({"CHS_API_KEYS": KEYS})
    for op in contract.OPERATIONS:
        path, kwargs = _sample_request(op)
        response = client.request(op.method, path, headers={"Authorization": f"Bearer key-of-{role}"}, **kwargs)
        allowed = op.public or op.permission is None or op.permission in ROLES[role]
        if allowed:
            assert response.status_code == op.status, (op.id, role, response.text)
        else:
            assert response.status_code == 403, (op.id, role, response.text)


def test_with_no_keys_everything_is_open():
    client, _ = make_client()
    for op in contract.OPERATIONS:
        path, kwargs = _sample_request(op)
        assert client.request(op.method, path, **kwargs).status_code == op.status, op.id


def test_an_unexpected_handler_failure_is_a_500_without_a_trace():
    async def broken(*_, **__):
        raise RuntimeError("/work/secret/path.py narrative text")

    recorder = RecordingHandlers()
    handlers = handlers_of(recorder)
    handlers["classify"] = broken
    ingress = HttpIngress(handlers, api_keys=ApiKeys.from_env({}), max_body_bytes=MAX_BODY,
                          limits=contract.Limits())

    async def app(scope, receive, send):
        await (await ingress(Request(scope, receive)))(scope, receive, send)

    response = TestClient(app).post("/classify", json={"narrative": NARRATIVE})
    error = error_of(response, 500, "backend_error")
    assert "secret" not in response.text and "narrative text" not in error["message"]


def test_handlers_of_refuses_a_provider_without_every_operation():
    class Partial:
        async def classify(self):
            return {}

    with pytest.raises(ValueError, match="no handler for operation"):
        handlers_of(Partial())


def test_the_readme_role_table_is_what_the_service_enforces():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme.split("### API keys and roles", 1)[1].split("\n### ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    assert header == ["route", "permission", *ROLES]
    table = {}
    for line in lines[2:]:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        table[cells[0].strip("`")] = (cells[1], {role for role, mark in zip(ROLES, cells[2:]) if mark == "✓"})
    client, _ = make_client({"CHS_API_KEYS": KEYS})
    assert set(table) == {f"{op.method} {op.path}" for op in contract.OPERATIONS}
    for op in contract.OPERATIONS:
        permission, allowed = table[f"{op.method} {op.path}"]
        assert permission == ("public" if op.public else op.permission or "any key"), op.id
        path, kwargs = _sample_request(op)
        for role in ROLES:
            response = client.request(op.method, path, headers={"Authorization": f"Bearer key-of-{role}"}, **kwargs)
            assert (response.status_code != 403) == (role in allowed), (op.id, role, response.status_code)


def test_a_path_parameter_is_checked_as_the_server_decoded_it():
    from urllib.parse import quote

    client, recorder = make_client()
    too_long = "a\t" * 64 + "b"  # 129 characters, 64 of them tabs, which a parsed URL would drop
    error_of(client.post("/review/" + quote(too_long) + "/claim"), 422, "invalid_request")
    assert client.post("/review/" + "a" * 128 + "/claim").status_code == 200
    assert recorder.calls[-1][1][0].case_id == "a" * 128
def test_a_live_call_piece_over_the_narrative_limit_is_413_and_a_bad_seq_422(client):
    over = client.post("/calls/c-1/transcript", json={"text": "a" * 1001, "seq": 0})
    assert over.status_code == 413, over.text
    assert client.post("/calls/c-1/transcript", json={"text": "ok", "seq": -1}).status_code == 422
    assert client.post("/calls/c-1/transcript", json={"text": "ok", "seq": "0"}).status_code == 422
    assert client.post("/calls/c-1/transcript", json={"text": "", "seq": 0}).status_code == 200  # silence is a piece


def test_a_call_id_with_a_control_character_is_422(client):
    error_of(client.post("/calls/a%0Ab/end"), 422, "invalid_request")
    error_of(client.get("/calls/a%09b"), 422, "invalid_request")


def test_a_path_parameter_is_read_whole_control_characters_included(client):
    # urlsplit (under request.url) would drop the %0A and %09 and let a 130-character id pass as 128.
    long_id = "a%0A%09" + "b" * 127
    error_of(client.post(f"/calls/{long_id}/end"), 422, "invalid_request")
    assert "too long" in client.get(f"/cases/{long_id}").json()["error"]["message"]
