"""The HTTP contract: request validation (status and code of every refusal), response models, OpenAPI document."""

import json

import pytest

from deployments.core import contract
from deployments.core.contract import (
    BatchRequest,
    ClassifyRequest,
    Limits,
    build_openapi,
    check_content_type,
    decode_json,
    parse_request,
)
from deployments.core.config import AppArgs
from deployments.core.errors import ServiceError
from deployments.core.labels import BUNDLED_LABELS_DIR, LabelSet

LIMITS = Limits(max_narrative_chars=100, max_batch_narratives=10)


def status_of(fn, *args, **kwargs):
    with pytest.raises(ServiceError) as err:
        fn(*args, **kwargs)
    return err.value.status, err.value.code


def parse_classify(payload):
    return parse_request(ClassifyRequest, payload, LIMITS)


def parse_batch(payload):
    return parse_request(BatchRequest, payload, LIMITS)


def test_valid_single_request():
    req = parse_classify({"narrative": "a child", "include_confidence": False, "extra": 1})
    assert req.narratives == ["a child"] and req.include_confidence is False and req.include_chunks is False
    assert req.is_batch is False


def test_valid_batch_request():
    req = parse_batch({"narratives": ["a", "b"], "include_chunks": True, "source": "web"})
    assert req.narratives == ["a", "b"] and req.include_confidence is True and req.include_chunks is True
    assert req.is_batch is True


@pytest.mark.parametrize(
    "payload, status",
    [
        ({}, 422),
        ({"narrative": 5}, 422),
        ({"narrative": None}, 422),
        ({"narrative": ""}, 400),
        ({"narrative": "   "}, 400),
        ({"narrative": "ok", "include_confidence": "yes"}, 422),
        ({"narrative": "a\x00b"}, 422),
        ({"narrative": "x" * 101}, 413),
        ([], 422),
        ("text", 422),
    ],
)
def test_invalid_single_requests(payload, status):
    assert status_of(parse_classify, payload)[0] == status


@pytest.mark.parametrize(
    "payload, status",
    [
        ({"narratives": []}, 400),
        ({"narratives": "one"}, 422),
        ({"narratives": ["ok", 3]}, 422),
        ({"narratives": ["ok"] * 11}, 413),
        ({}, 422),
    ],
)
def test_invalid_batches(payload, status):
    assert status_of(parse_batch, payload)[0] == status


def test_batch_error_names_the_item():
    with pytest.raises(ServiceError, match=r"narratives\[1\]"):
        parse_batch({"narratives": ["ok", ""]})


@pytest.mark.parametrize("payload, code, field", [
    ({"text": "hello"}, "missing_field", "'narrative'"),
    ({"narrative": 42}, "invalid_request", "'narrative'"),
    ({"narrative": "ok", "include_chunks": 1}, "invalid_request", "'include_chunks'"),
])
def test_messages_name_the_field(payload, code, field):
    with pytest.raises(ServiceError) as err:
        parse_classify(payload)
    assert (err.value.status, err.value.code) == (422, code)
    assert err.value.message.startswith(field)


@pytest.mark.parametrize("payload, status", [
    # The first problem in field order is the one reported: the narrative before the flags,
    # the batch's size before its items, earlier items before later ones.
    ({"narrative": "x" * 101, "include_confidence": "yes"}, 413),
    ({"include_confidence": "yes"}, 422),
    ({"narratives": [1] * 11}, 413),
    ({"narratives": ["x" * 101, 3]}, 413),
    ({"narratives": [3, "x" * 101]}, 422),
])
def test_the_first_problem_decides(payload, status):
    model = BatchRequest if "narratives" in payload else ClassifyRequest
    assert status_of(parse_request, model, payload, LIMITS)[0] == status


def test_refusals_never_quote_the_narrative():
    secret = "MARKER-" + "y" * 200
    for payload in ({"narrative": secret}, {"narratives": [secret]}, {"narratives": ["ok", secret + "\x00"]}):
        model = BatchRequest if "narratives" in payload else ClassifyRequest
        with pytest.raises(ServiceError) as err:
            parse_request(model, payload, LIMITS)
        assert "MARKER" not in err.value.message


def test_limits_come_from_the_context():
    assert parse_request(ClassifyRequest, {"narrative": "x" * 101}, Limits(max_narrative_chars=200)).narrative
    assert Limits.of(AppArgs(max_narrative_chars=7)).max_narrative_chars == 7


@pytest.mark.parametrize(
    "body, code",
    [(b"", "empty_body"), (b"{", "invalid_json"), (b"\xff\xfe", "invalid_encoding"),
     (b"[" * 10_000 + b"]" * 10_000, "invalid_json")],
)
def test_decode_json_refuses_bad_bodies_with_400(body, code):
    assert status_of(decode_json, body) == (400, code)


def test_decode_json_accepts_deep_but_reasonable_json():
    assert decode_json(json.dumps({"narrative": "x", "meta": [[[1]]]}).encode())["meta"] == [[[1]]]


@pytest.mark.parametrize("ct", ["application/json", "application/json; charset=utf-8", "application/vnd.api+json"])
def test_json_content_types_pass(ct):
    check_content_type(ct)


@pytest.mark.parametrize("ct", [None, "", "text/plain", "multipart/form-data"])
def test_other_content_types_get_415(ct):
    assert status_of(check_content_type, ct)[0] == 415


# -- responses ---------------------------------------------------------------------------------


def test_error_body_shape():
    err = ServiceError.too_large("too big")
    assert contract.Error.of(err, "rid-1").model_dump() == {
        "success": False, "error": {"code": "payload_too_large", "message": "too big", "request_id": "rid-1"}}
    assert contract.Error.of(err, None).model_dump() == {
        "success": False, "error": {"code": "payload_too_large", "message": "too big"}}


def test_response_keys_in_the_documented_order():
    prediction = {"label": "x", "confidence": 0.5}
    tasks = ("main_category", "sub_category", "sub_category_2", "intervention")
    case = {"classification": {t: prediction for t in tasks} | {"priority": {"label": 2, "confidence": 0.1234567}},
            "routing": {"queue": "q", "escalate": False, "human_review": True, "reasons": ["r"],
                        "signals": [{"source": "threshold", "category": "priority", "text": None, "start": None,
                                     "end": None, "window": None}]},
            "language": {"code": "en", "name": "English", "confidence": 0.99},
            "chunks": 1, "truncated": False, "tokens": 3}
    body = contract.ClassifyResponse(success=True, **case, case_id="c-1", model=contract.ModelRef(id="m", revision=None),
                                     processing_time_seconds=0.1).model_dump()
    assert list(body) == ["success", "classification", "routing", "language", "chunks", "truncated", "tokens",
                          "case_id", "model", "processing_time_seconds"]
    assert body["classification"]["priority"] == {"label": 2, "confidence": 0.123457}
    assert body["model"] == {"id": "m", "revision": None}


# -- the OpenAPI document ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def doc():
    args = AppArgs(max_narrative_chars=1234, max_batch_narratives=17)
    return build_openapi(args, LabelSet.from_dir(BUNDLED_LABELS_DIR))


def test_openapi_fills_in_the_config(doc):
    schemas = doc["components"]["schemas"]
    assert schemas["ClassifyRequest"]["properties"]["narrative"]["maxLength"] == 1234
    narratives = schemas["BatchRequest"]["properties"]["narratives"]
    assert narratives["maxItems"] == 17 and narratives["items"]["maxLength"] == 1234
    assert schemas["PriorityPrediction"]["properties"]["label"]["enum"] == [1, 2, 3]
    assert contract.CONFIG_KEY not in json.dumps(doc)
    for name in ("ClassifyRequest", "BatchRequest"):
        assert schemas[name]["additionalProperties"] is True


def test_openapi_routes_and_their_errors(doc):
    error = {"$ref": "#/components/schemas/Error"}
    expected = {
        ("/classify", "post"): {400, 401, 403, 413, 415, 422, 429, 500, 503, 504},
        ("/classify/batch", "post"): {400, 401, 403, 413, 415, 422, 429, 500, 503, 504},
        ("/health", "get"): {503},
        ("/info", "get"): {401, 503},
        ("/openapi.json", "get"): {401},
    }
    for (path, method), statuses in expected.items():
        responses = doc["paths"][path][method]["responses"]
        assert set(responses) == {"200"} | {str(s) for s in statuses}
        for status in statuses:
            assert responses[str(status)]["content"]["application/json"]["schema"] == error
    refs = set()

    def walk(node):
        if isinstance(node, dict):
            if "$ref" in node:
                refs.add(node["$ref"].rsplit("/", 1)[1])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(doc)
    assert refs <= set(doc["components"]["schemas"])


def test_the_served_document_validates_real_bodies(doc):
    jsonschema = pytest.importorskip("jsonschema")
    schemas = {"components": doc["components"]}

    def validate(instance, name):
        schema = {"$ref": f"#/components/schemas/{name}", **schemas}
        jsonschema.validate(instance, schema, cls=jsonschema.Draft202012Validator)

    validate({"narrative": "x", "other": 1}, "ClassifyRequest")
    validate(contract.Error.of(ServiceError.timeout(), "r").model_dump(), "Error")
    with pytest.raises(jsonschema.ValidationError):
        validate({"narrative": "x" * 1235}, "ClassifyRequest")


# -- call ids never carry a NUL (PostgreSQL refuses NUL in text) --------------------------------

# A valid value for each field a request or parameters model may require; a new route's required field
# that is missing here fails the test below by name, so add it.
SAMPLES = {
    "narrative": "a child", "narratives": ["a child", "a boy"], "call_id": "call-1", "call_ids": ["call-1", "call-2"],
    "case_id": "case-1", "id": "case-1", "task": "classification", "feedback": 3, "since": "2025-01-01", "name": "x",
}


def call_id_fields(model) -> list[str]:
    return [name for name in model.model_fields if name in ("call_id", "call_ids")]


def operations_with_call_ids() -> list[tuple[contract.Operation, type]]:
    return [(op, model) for op in contract.OPERATIONS for model in (op.request, op.params)
            if model is not None and call_id_fields(model)]


def valid_payload(model) -> dict:
    fields = [n for n, f in model.model_fields.items() if f.is_required()] + call_id_fields(model)
    missing = [n for n in fields if n not in SAMPLES]
    assert not missing, f"{model.__name__}: add a valid sample for {missing} to SAMPLES"
    return {n: SAMPLES[n] for n in dict.fromkeys(fields)}


def test_the_call_id_routes_are_found():
    paths = {op.path for op, _ in operations_with_call_ids()}
    assert {"/classify", "/classify/batch", "/tasks/classify", "/tasks/classify/batch",
            "/api/v1/agent-feedback/update", "/api/v1/agent-feedback/call/{call_id}"} <= paths


@pytest.mark.parametrize("op, model", operations_with_call_ids(),
                         ids=[f"{op.id}-{model.__name__}" for op, model in operations_with_call_ids()])
def test_a_nul_in_a_call_id_is_a_422(op, model):
    payload = valid_payload(model)
    parse_request(model, payload, Limits())  # the payload is valid without the NUL
    for name in call_id_fields(model):
        bad = dict(payload)
        if isinstance(payload[name], list):
            bad[name] = [payload[name][0], "call\x00-2"] + payload[name][2:]
        else:
            bad[name] = "call\x00-1"
        with pytest.raises(ServiceError) as err:
            parse_request(model, bad, Limits())
        assert (err.value.status, err.value.code) == (422, "invalid_request"), (op.path, name)
        assert err.value.message.startswith(f"'{name}") and "NUL" in err.value.message


def test_both_batch_routes_refuse_a_call_ids_length_mismatch_alike():
    payload = {"narratives": ["a", "b"], "call_ids": ["c1"]}
    errors = []
    for model in (BatchRequest, contract.TaskBatchRequest):
        with pytest.raises(ServiceError) as err:
            parse_request(model, payload, LIMITS)
        errors.append((err.value.status, err.value.code, err.value.message))
    assert errors[0] == errors[1] and errors[0][:2] == (422, "invalid_request")


# -- the package: one definition per name, every name re-exported --------------------------------


def test_no_name_is_defined_twice_in_a_contract_module():
    import ast
    from pathlib import Path

    twice = []
    for path in sorted(Path(contract.__file__).parent.glob("*.py")):
        seen = set()
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                names = [node.name]
            elif isinstance(node, ast.Assign):
                names = [n.id for t in node.targets for n in ast.walk(t) if isinstance(n, ast.Name)]
                names += [t.value.id for t in node.targets  # ERRORS[404] = ... after the literal
                          if isinstance(t, ast.Subscript) and isinstance(t.value, ast.Name)]
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                names = [node.target.id]
            else:
                continue
            twice += [f"{path.name}: {n}" for n in names if n in seen]
            seen.update(names)
    assert not twice


def test_every_model_of_the_document_and_the_routes_is_exported(doc):
    models = {m for op in contract.OPERATIONS for m in (op.request, op.response, op.params) if m is not None}
    assert all(getattr(contract, m.__name__) is m for m in models)
    assert all(hasattr(contract, name) for name in doc["components"]["schemas"])
    assert set(contract.__all__) <= set(dir(contract))
