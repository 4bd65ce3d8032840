"""The ingress's audit rows, without Ray: one row per call of an audited route, with the key's name and
role, the route, the ids, the time from a clock the test sets, and the outcome; none for other routes;
never a narrative; a 503 when the row cannot be handed over."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
from starlette.requests import Request
from starlette.testclient import TestClient

from deployments.core import contract
from deployments.core.audit import audited
from deployments.core.auth import ROLES, ApiKeys
from deployments.core.config import AppArgs
from deployments.core.errors import ServiceError
from deployments.ingress import HttpIngress, handlers_of
from tests.unit.test_ingress import KEYS, MAX_BODY, RecordingHandlers, _sample_request

AT = datetime(2026, 12, 1, 10, 30, tzinfo=timezone.utc)
MARKER = "zqxauditmarker"


class CaseHandlers(RecordingHandlers):
    """Answers /cases/{id} with a case id, and 404 for the id 'missing'."""

    def __getattr__(self, name: str):
        if name == "get_case":
            async def get_case(params):
                if params.id == "missing":
                    raise ServiceError.case_not_found()
                return {"success": True, "case": {"case_id": f"case-of-{params.id}", "narrative": MARKER}}
            return get_case
        return super().__getattr__(name)


def make_client(env: dict | None, sink=None):
    rows: list[dict] = []

    async def collect(batch):
        rows.extend(batch)

    ingress = HttpIngress(handlers_of(CaseHandlers()), api_keys=ApiKeys.from_env(env or {}), max_body_bytes=MAX_BODY,
                          limits=contract.Limits.of(AppArgs()), audit=sink or collect, clock=lambda: AT)

    async def app(scope, receive, send):
        await (await ingress(Request(scope, receive)))(scope, receive, send)

    return TestClient(app), rows


@pytest.mark.parametrize("role", sorted(ROLES))
def test_every_call_of_an_audited_route_leaves_one_row_with_the_key_role_and_outcome(role):
    client, rows = make_client({"CHS_API_KEYS": KEYS})
    expected = []
    for op in contract.OPERATIONS:
        path, kwargs = _sample_request(op)
        response = client.request(op.method, path, headers={"Authorization": f"Bearer key-of-{role}"}, **kwargs)
        if audited(op.permission):
            expected.append((f"{op.method} {op.path}", response.status_code,
                             None if response.status_code < 400 else "forbidden"))
    assert [(r["route"], r["status"], r["error_code"]) for r in rows] == expected
    assert {(r["key_name"], r["role"]) for r in rows} == {(f"{role}-desk", role)}
    assert all(r["at"] == AT for r in rows)
    assert any(status == 403 for _, status, _ in expected) == (role != "admin")


def test_the_row_carries_the_ids_and_never_the_text():
    client, rows = make_client({"CHS_API_KEYS": KEYS})
    admin = {"Authorization": "Bearer key-of-admin"}
    assert client.get("/cases/call-7", headers=admin).status_code == 200
    assert client.get("/cases/missing", headers=admin).status_code == 404
    assert client.post("/feedback", headers=admin, json={"case_id": "case-3", "reason": MARKER,
                                                         "narrative": f"a narrative {MARKER} here"}).status_code == 201
    assert client.get("/cases/x", headers={"Authorization": "Bearer wrong"}).status_code == 401
    found, missing, feedback, unauthenticated = rows
    assert (found["subject"], found["case_ids"], found["status"]) == ("call-7", ["case-of-call-7"], 200)
    assert (missing["subject"], missing["case_ids"], missing["error_code"]) == ("missing", [], "case_not_found")
    assert (feedback["route"], feedback["subject"], feedback["status"]) == ("POST /feedback", "case-3", 201)
    assert (unauthenticated["key_name"], unauthenticated["role"], unauthenticated["status"]) == (None, None, 401)
    assert unauthenticated["subject"] == "x"
    assert MARKER not in json.dumps(rows, default=str)


def test_with_no_keys_the_caller_is_recorded_as_anonymous():
    client, rows = make_client(None)
    assert client.get("/feedback/stats").status_code == 200
    assert client.post("/classify", json={"narrative": "not audited at all, classification"}).status_code == 200
    (row,) = rows
    assert (row["key_name"], row["role"], row["route"]) == ("anonymous", "admin", "GET /feedback/stats")


def test_a_call_whose_row_cannot_be_recorded_is_answered_503():
    async def broken(batch):
        raise ConnectionError("the router is gone")

    client, _ = make_client(None, sink=broken)
    response = client.get("/cases/c1")
    assert response.status_code == 503 and response.json()["error"]["code"] == "unavailable"
    assert "case-of-c1" not in response.text
    assert client.get("/health").status_code == 200  # not audited: the sink is never called
