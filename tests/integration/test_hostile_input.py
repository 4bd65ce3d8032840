"""Hostile and malformed input, over real HTTP (and raw sockets where httpx would be too polite).

Every refusal is a 4xx with the one error body ``{"success": false, "error":
{"code", "message", "request_id"}}``; never a 500, never a trace or an internal path.
"""

from __future__ import annotations

import json
import select
import socket
import time
from urllib.parse import urlsplit

import pytest

from deployments.core.config import AppArgs

NARRATIVE = "A 12-year-old girl says her stepfather beats her at home and she is afraid to go back."
LIMIT = AppArgs().max_body_bytes  # the default, 1 MiB
JSON = {"content-type": "application/json"}


def assert_error(r, status: int, code: str | None = None) -> dict:
    """A refusal in the service's one error shape, with nothing internal in it."""
    assert r.status_code == status, (r.status_code, r.text[:500])
    for leak in ("Traceback", "/work/", ".py", "File \""):
        assert leak not in r.text, f"{leak!r} in the body: {r.text[:500]}"
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert body["success"] is False
    error = body["error"]
    assert isinstance(error["code"], str) and error["code"]
    assert isinstance(error["message"], str) and error["message"]
    assert error["request_id"] == r.headers["x-request-id"]
    if code is not None:
        assert error["code"] == code, body
    return error


def post_raw(http, path: str, content: bytes, headers=JSON):
    return http.post(path, content=content, headers=headers)


# -- the body as a whole -------------------------------------------------------------------------


def test_no_body(http):
    assert_error(post_raw(http, "/classify", b""), 400, "empty_body")
    assert_error(post_raw(http, "/classify/batch", b""), 400, "empty_body")


@pytest.mark.parametrize("content", [b"{", b"{'narrative': 'x'}", b"narrative=x", b'{"narrative": "x"} trailing',
                                     b"\xef\xbb\xbf{\"narrative\": \"x\"}", b"[1, 2,]", b"NaN-ish"])
def test_invalid_json(http, content):
    assert_error(post_raw(http, "/classify", content), 400, "invalid_json")


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x", "application/jsonx", "json"])
def test_wrong_content_type(http, content_type):
    headers = {} if content_type is None else {"content-type": content_type}
    # httpx sets no content type for raw bytes, so None really sends none.
    r = http.post("/classify", content=json.dumps({"narrative": NARRATIVE}).encode(), headers=headers)
    assert_error(r, 415, "unsupported_media_type")


def test_json_content_type_variants_are_accepted(http):
    body = json.dumps({"narrative": NARRATIVE}).encode()
    for content_type in ("application/json; charset=utf-8", "Application/JSON", "application/problem+json"):
        r = http.post("/classify", content=body, headers={"content-type": content_type})
        assert r.status_code == 200, (content_type, r.text)


@pytest.mark.parametrize("opener, closer", [("[", "]"), ('{"a":', "}")])
def test_json_nested_10000_deep(http, opener, closer):
    depth = 10_000
    assert_error(post_raw(http, "/classify", (opener * depth + closer * depth).encode()), 400, "invalid_json")
    nested_in_field = '{"narrative": ' + opener * depth + "1" + closer * depth + "}"
    assert_error(post_raw(http, "/classify", nested_in_field.encode()), 400, "invalid_json")


def test_invalid_utf8(http):
    for bad in (b'{"narrative": "caf\xe9 au lait"}', b'{"narrative": "\xff\xfe"}', b'{"narrative": "\xed\xa0\x80"}'):
        assert_error(post_raw(http, "/classify", bad), 400, "invalid_encoding")


def test_nul_bytes(http):
    # Raw NUL is a control character JSON does not allow inside a string, nor outside one.
    assert_error(post_raw(http, "/classify", b'{"narrative": "child\x00abuse"}'), 400, "invalid_json")
    assert_error(post_raw(http, "/classify", b'{"narrative": "child abuse"}\x00'), 400, "invalid_json")
    # The escaped form is valid JSON whose string holds a NUL: the schema refuses it.
    assert_error(post_raw(http, "/classify", b'{"narrative": "child\\u0000abuse"}'), 422)
    assert_error(post_raw(http, "/classify/batch", b'{"narratives": ["ok text", "bad\\u0000"]}'), 422)


# -- size limits -------------------------------------------------------------------------------


def test_body_over_the_limit_with_content_length(http):
    body = json.dumps({"narrative": "a" * (LIMIT + 10)}).encode()
    assert_error(post_raw(http, "/classify", body), 413, "payload_too_large")


def _address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname, parts.port


def _read_response(sock: socket.socket, deadline: float) -> tuple[int, dict, bytes]:
    """One HTTP/1.1 response (Content-Length framed) from a raw socket."""
    data = b""
    while b"\r\n\r\n" not in data:
        sock.settimeout(max(0.1, deadline - time.monotonic()))
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    want = int(headers.get("content-length", "0"))
    while len(body) < want:
        sock.settimeout(max(0.1, deadline - time.monotonic()))
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return status, headers, body


class _Raw:
    """Wrap a raw response so ``assert_error`` reads it like an httpx one."""

    def __init__(self, status, headers, body):
        self.status_code, self.headers, self.content = status, headers, body
        self.text = body.decode("utf-8", "replace")

    def json(self):
        return json.loads(self.content)


def test_huge_declared_content_length_is_refused_without_reading_the_body(served_tiny):
    """Content-Length says 10 GB and 20 bytes follow: the answer must come without waiting for the rest."""
    host, port = _address(served_tiny)
    with socket.create_connection((host, port), timeout=30) as sock:
        sock.sendall(b"POST /classify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 10000000000\r\n\r\n" + b'{"narrative": "aaaa')
        status, headers, body = _read_response(sock, time.monotonic() + 30)
    assert_error(_Raw(status, headers, body), 413, "payload_too_large")


def test_chunked_body_over_the_limit_is_refused_before_it_ends(served_tiny):
    """A chunked body (no Content-Length) that never ends: the 413 must come once the limit is passed."""
    host, port = _address(served_tiny)
    chunk = b"a" * 65536
    sent = 0
    with socket.create_connection((host, port), timeout=30) as sock:
        sock.sendall(b"POST /classify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")
        sock.sendall(b'10\r\n{"narrative": "a\r\n')
        # Up to 4x the limit, and never the terminating 0-chunk: a server that waited for
        # the whole body would never answer.
        while sent < 4 * LIMIT:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                break
            try:
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(chunk)
        status, headers, body = _read_response(sock, time.monotonic() + 30)
    assert sent > LIMIT  # the server did not answer before the limit was passed
    assert_error(_Raw(status, headers, body), 413, "payload_too_large")


def test_narrative_over_max_chars(http):
    # Under the body limit but over max_narrative_chars (100,000 by default).
    r = post_raw(http, "/classify", json.dumps({"narrative": "word " * 25_000}).encode())
    assert_error(r, 413, "payload_too_large")


def test_a_10000_item_batch(http):
    r = post_raw(http, "/classify/batch", json.dumps({"narratives": ["a child"] * 10_000}).encode())
    assert_error(r, 413, "payload_too_large")


# -- the schema --------------------------------------------------------------------------------


@pytest.mark.parametrize("narrative", [None, 42, 1.5, True, ["text"], {"text": "x"}])
def test_narrative_not_a_string(http, narrative):
    assert_error(post_raw(http, "/classify", json.dumps({"narrative": narrative}).encode()), 422)


@pytest.mark.parametrize("payload", [[], "text", 42, None, {}, {"narratives": ["x"]}])
def test_body_not_a_classify_object(http, payload):
    assert_error(post_raw(http, "/classify", json.dumps(payload).encode()), 422)


@pytest.mark.parametrize("payload", [{"narratives": "text"}, {"narratives": [1, 2]}, {"narratives": None},
                                     {"narrative": "x"}, {"narratives": ["x"], "include_confidence": "yes"}])
def test_batch_not_matching_the_schema(http, payload):
    assert_error(post_raw(http, "/classify/batch", json.dumps(payload).encode()), 422)


@pytest.mark.parametrize("narrative", ["", "   ", "\n\t"])
def test_a_blank_narrative_is_400(http, narrative):
    assert_error(post_raw(http, "/classify", json.dumps({"narrative": narrative}).encode()), 400, "empty_narrative")


@pytest.mark.parametrize("narrative", ["!!! ??? ...", "-- // ** ++", "\u3002\uff01", "\U0001F622\U0001F622",
                                       "\u041c\u0430\u043c\u0430 \u0431\u044c\u0451\u0442"])
def test_a_narrative_that_normalizes_to_nothing_is_classified_and_reviewed(http, narrative):
    # As the card's recipe would read it: one window of [CLS] [SEP]; a human must look, and is told why.
    r = post_raw(http, "/classify", json.dumps({"narrative": narrative}).encode())
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["routing"]["human_review"] is True and body["tokens"] == 0 and body["chunks"] == 1
    (signal,) = [s for s in body["routing"]["signals"] if s["category"] == "nothing_to_read"]
    assert signal["source"] == "length"
    assert any("nothing the model can read" in reason for reason in body["routing"]["reasons"])


def test_a_batch_with_one_unreadable_narrative_reviews_that_one(http):
    r = post_raw(http, "/classify/batch", json.dumps({"narratives": [NARRATIVE, "?!", NARRATIVE]}).encode())
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [res["tokens"] == 0 for res in results] == [False, True, False]
    assert results[1]["routing"]["human_review"] is True


def test_empty_batch(http):
    assert_error(post_raw(http, "/classify/batch", json.dumps({"narratives": []}).encode()), 400, "empty_narrative")


# -- routes ------------------------------------------------------------------------------------


@pytest.mark.parametrize("method, path, allow", [
    ("GET", "/classify", "POST"), ("PUT", "/classify", "POST"), ("DELETE", "/classify/batch", "POST"),
    ("POST", "/health", "GET"), ("PATCH", "/info", "GET"), ("POST", "/openapi.json", "GET"),
])
def test_method_not_allowed(http, method, path, allow):
    r = http.request(method, path, content=json.dumps({"narrative": NARRATIVE}).encode(), headers=JSON)
    assert_error(r, 405, "method_not_allowed")
    assert r.headers["allow"] == allow


def test_unknown_route(http):
    assert_error(http.get("/classify/everything"), 404, "not_found")


# -- what must be accepted ---------------------------------------------------------------------


def test_unknown_fields_are_ignored(http):
    plain = post_raw(http, "/classify", json.dumps({"narrative": NARRATIVE}).encode())
    extra = post_raw(http, "/classify", json.dumps({
        "narrative": NARRATIVE, "caller_id": 7, "metadata": {"channel": "sms", "nested": [1, {"x": None}]},
        "language": "sw", "include_chunk": True,
    }).encode())
    assert plain.status_code == extra.status_code == 200, extra.text
    assert extra.json()["classification"] == plain.json()["classification"]
    batch = post_raw(http, "/classify/batch", json.dumps({"narratives": [NARRATIVE], "source": "web"}).encode())
    assert batch.status_code == 200, batch.text
    assert batch.json()["results"][0]["classification"] == plain.json()["classification"]


@pytest.mark.parametrize("narrative", [
    "Mtoto wa miaka kumi amepigwa na baba yake nyumbani na anaogopa kurudi shuleni.",  # Swahili
    "La niña está muy asustada; su padrastro la golpeó en la cabeza. Ça ne va pas à l'école.",  # accents
    "My daughter \U0001F622 was beaten \U0001F494 at school today \U0001F3EB\U0001F6A8 please help",  # emoji
    "Mtoto 孩子 child ребёнок طفل बच्चा was hurt by a neighbour",  # mixed scripts
    "Z\u0351\u0368a\u0352l\u036cg\u0364o child text \u202eright-to-left\u202c and \u200bzero\u200dwidth",
    "a" * 99_000,  # just under max_narrative_chars: one very long token
])
def test_international_and_odd_text_classifies(http, narrative):
    r = post_raw(http, "/classify", json.dumps({"narrative": narrative}).encode())
    assert r.status_code == 200, r.text[:500]
    body = r.json()
    assert body["success"] is True and set(body["classification"]) >= {"main_category", "priority"}


def test_raw_utf8_and_escaped_unicode_give_the_same_answer(http):
    text = "Mtoto wa miaka kumi amepigwa \u2014 la niña está asustada \U0001F622"
    raw = post_raw(http, "/classify", json.dumps({"narrative": text}, ensure_ascii=False).encode("utf-8"))
    escaped = post_raw(http, "/classify", json.dumps({"narrative": text}, ensure_ascii=True).encode())
    assert raw.status_code == escaped.status_code == 200
    assert raw.json()["classification"] == escaped.json()["classification"]
