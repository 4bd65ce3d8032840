import json

import pytest

from deployments.core.errors import ServiceError
from deployments.requests import check_content_type, decode_json, parse_batch, parse_classify


def status_of(fn, *args, **kwargs):
    with pytest.raises(ServiceError) as err:
        fn(*args, **kwargs)
    return err.value.status, err.value.code


def test_valid_single_request():
    req = parse_classify({"narrative": "a child", "include_confidence": False, "extra": 1}, max_chars=100)
    assert req.narratives == ["a child"] and req.include_confidence is False and req.include_chunks is False


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
    assert status_of(parse_classify, payload, max_chars=100)[0] == status


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
    assert status_of(parse_batch, payload, max_chars=100, max_items=10)[0] == status


def test_batch_error_names_the_item():
    with pytest.raises(ServiceError, match=r"narratives\[1\]"):
        parse_batch({"narratives": ["ok", ""]}, max_chars=100, max_items=10)


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
