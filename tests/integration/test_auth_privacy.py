"""Access and privacy: API keys on every route but /health and the static pages (the console and
/docs, which hold no data and ask for the key themselves), request ids on every answer, and no
narrative text (nor key) in any log file of the Ray session, the case record's and feedback's
routes included.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.conftest import API_KEYS

NARRATIVE = "A 12-year-old girl says her stepfather beats her at home and she is afraid to go back."
JSON = {"content-type": "application/json"}
PROTECTED = [("POST", "/classify", {"narrative": NARRATIVE}), ("POST", "/classify/batch", {"narratives": [NARRATIVE]}),
             ("GET", "/info", None), ("GET", "/openapi.json", None), ("GET", "/feedback/stats", None),
             ("GET", "/feedback/export?since=2026-01-01", None),
             ("GET", "/api/v1/agent-feedback/statistics?days=7", None)]
PUBLIC_PAGES = ["/", "/docs", "/docs/swagger-ui.css"]
# Ray's runtime-env agent logs a runtime_env whole, env_vars included, at INFO. The tests hand
# CHS_API_KEYS to the replica through runtime_env (their cluster is already running), so that one
# file is where a key passed that way shows up; a deployment must pass keys through the process
# environment (a Kubernetes Secret as env) or CHS_API_KEYS_FILE, never a serve config's runtime_env.
RUNTIME_ENV_AGENT_LOG = "runtime_env_agent"


def log_files(session_dir: Path) -> list[Path]:
    return [p for p in (session_dir / "logs").rglob("*") if p.is_file()]


def files_containing(session_dir: Path, needle: str) -> list[str]:
    """Every file under the session's logs/ holding ``needle`` (bytes, so any encoding of logs is read)."""
    raw = needle.encode()
    hits = []
    for path in log_files(session_dir):
        try:
            if raw in path.read_bytes():
                hits.append(str(path.relative_to(session_dir)))
        except OSError:  # a file rotated away while we read
            continue
    return hits


def wait_until_logged(session_dir: Path, needle: str, timeout_s: float = 30.0) -> list[str]:
    """Bounded wait until ``needle`` is in some log file: proves the logs were flushed and the search works."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        hits = files_containing(session_dir, needle)
        if hits:
            return hits
        time.sleep(0.5)
    raise AssertionError(f"{needle!r} never reached the logs within {timeout_s}s: the log search proves nothing")


def request(client: httpx.Client, method: str, path: str, payload, headers=None) -> httpx.Response:
    content = None if payload is None else json.dumps(payload).encode()
    return client.request(method, path, content=content, headers={**JSON, **(headers or {})})


def assert_no_secret(response: httpx.Response, secret: str) -> None:
    assert secret not in response.text
    assert all(secret not in value for value in response.headers.values())


# -- API keys ---------------------------------------------------------------------------------


def check_api_keys(url: str, keys: list[str], session_dir: Path) -> None:
    responses = []
    with httpx.Client(base_url=url, timeout=60) as client:
        health = client.get("/health")
        assert health.status_code == 200, health.text
        responses.append(health)
        for page in PUBLIC_PAGES:
            assert client.get(page).status_code == 200, page
        for method, path, payload in [("GET", "/cases/some-case", None),
                                      ("POST", "/feedback", {"case_id": "some-case", "rating": 3})]:
            assert request(client, method, path, payload).status_code == 401, path
        for method, path, payload in PROTECTED:
            for headers in ({}, {"authorization": "Bearer wrong-key"}, {"authorization": keys[0]},
                            {"authorization": f"Basic {keys[0]}"}, {"authorization": f"Bearer {keys[0]}x"},
                            {"authorization": f"Bearer {keys[0][:-1]}"}):
                r = request(client, method, path, payload, headers)
                assert r.status_code == 401, (method, path, headers, r.status_code, r.text)
                body = r.json()
                assert body["success"] is False and body["error"]["code"] == "unauthorized"
                assert body["error"]["request_id"] == r.headers["x-request-id"]
                assert r.headers["www-authenticate"] == "Bearer"
                responses.append(r)
            for key in keys:
                r = request(client, method, path, payload, {"authorization": f"Bearer {key}"})
                assert r.status_code == 200, (method, path, r.text)
                responses.append(r)
        # Refused before the body is even looked at: an unauthenticated caller learns nothing about validation.
        r = client.post("/classify", content=b"not json", headers={"content-type": "text/plain"})
        assert r.status_code == 401
        responses.append(r)
        assert client.get("/info", headers={"authorization": f"Bearer {keys[0]}"}).json()["auth"] == "api_key"
    for r in responses:
        for key in keys:
            assert_no_secret(r, key)


def test_api_keys_from_env(serve_session, served_with_keys):
    keys = list(API_KEYS)  # the session's keyed app, shared with the other tests of keys
    check_api_keys(served_with_keys, keys, serve_session.session_dir)
    time.sleep(2)  # let every process flush what it logged about those requests
    for key in keys:
        hits = [h for h in files_containing(serve_session.session_dir, key) if RUNTIME_ENV_AGENT_LOG not in h]
        assert not hits, f"an API key reached {hits}"


def test_api_keys_from_file_never_reach_any_log(serve_session, tiny_checkpoint, tmp_path):
    keys = [f"file-key-{uuid.uuid4().hex}", f"file-key-{uuid.uuid4().hex}"]
    keys_file = tmp_path / "api_keys"
    keys_file.write_text("# helpline API keys\n" + "\n".join(keys) + "\n", encoding="utf-8")
    url = serve_session.deploy(model=str(tiny_checkpoint), env={"CHS_API_KEYS_FILE": str(keys_file)})
    try:
        check_api_keys(url, keys, serve_session.session_dir)
        time.sleep(2)
        for key in keys:
            # Every file, no exception: only the file's path travelled through Ray.
            assert not files_containing(serve_session.session_dir, key)
    finally:
        serve_session.undeploy()


def test_without_keys_the_service_is_open(http):
    assert http.get("/info").json()["auth"] == "none"
    assert request(http, "POST", "/classify", {"narrative": NARRATIVE}).status_code == 200


# -- request ids ------------------------------------------------------------------------------


def test_request_ids_on_errors_and_successes(http):
    ok = request(http, "POST", "/classify", {"narrative": NARRATIVE})
    bad = request(http, "POST", "/classify", {"narrative": ""})
    assert ok.status_code == 200 and bad.status_code == 400
    assert ok.headers["x-request-id"] and bad.headers["x-request-id"]
    assert ok.headers["x-request-id"] != bad.headers["x-request-id"]
    assert bad.json()["error"]["request_id"] == bad.headers["x-request-id"]


@pytest.mark.parametrize("payload, status", [({"narrative": NARRATIVE}, 200), ({"narrative": " "}, 400),
                                             ({"narrative": 3}, 422), (None, 400)])
def test_a_client_request_id_is_echoed(http, payload, status):
    rid = f"caller-{uuid.uuid4()}"
    r = request(http, "POST", "/classify", payload, {"x-request-id": rid})
    assert r.status_code == status
    assert r.headers["x-request-id"] == rid
    if status != 200:
        assert r.json()["error"]["request_id"] == rid


# -- no narrative in any log ------------------------------------------------------------------


@pytest.mark.app("tiny", "backend-timeout")
def test_no_narrative_text_reaches_any_log(serve_session, tiny_checkpoint):
    """Narratives carry a unique marker; requests carry another one, as their X-Request-ID.

    The request-id marker must show up in the logs (Ray's access log records request
    ids): that proves the logs are written and searched. The narrative marker must not,
    for successes and for every kind of failure.
    """
    secret = f"zqx{uuid.uuid4().hex}"  # what a narrative would say; lower-case letters and digits survive normalization
    control = f"rid{uuid.uuid4().hex}"
    text = f"{NARRATIVE} {secret} she told the counsellor {secret}."
    session_dir = serve_session.session_dir
    seen = {}

    def send(client, path, content: bytes, content_type="application/json", n=[0]):
        n[0] += 1
        r = client.post(path, content=content, headers={"content-type": content_type,
                                                        "x-request-id": f"{control}-{n[0]}"})
        seen[f"{path} {r.status_code} {r.json().get('error', {}).get('code', 'ok')}"] = True
        assert secret not in r.text  # nor is the narrative echoed back
        return r

    url = serve_session.deploy(model=str(tiny_checkpoint))
    with httpx.Client(base_url=url, timeout=60) as client:
        codes = [
            send(client, "/classify", json.dumps({"narrative": text}).encode()).status_code,
            send(client, "/classify", json.dumps({"narrative": text, "include_chunks": True}).encode()).status_code,
            send(client, "/classify/batch", json.dumps({"narratives": [text, text]}).encode()).status_code,
            # Over max_narrative_chars (413), a batch with one blank (400), a NUL (422), an unknown flag type (422).
            send(client, "/classify", json.dumps({"narrative": (text + " ") * 1200}).encode()).status_code,
            send(client, "/classify/batch", json.dumps({"narratives": [text, "  \n "]}).encode()).status_code,
            send(client, "/classify", json.dumps({"narrative": text + "\u0000"}).encode()).status_code,
            send(client, "/classify", json.dumps({"narrative": text, "include_confidence": text}).encode()).status_code,
            # Broken JSON (400), wrong content type (415), body over 1 MiB (413), invalid UTF-8 (400).
            send(client, "/classify", ('{"narrative": "' + text).encode()).status_code,
            send(client, "/classify", json.dumps({"narrative": text}).encode(), "text/plain").status_code,
            send(client, "/classify", json.dumps({"narratives": [text] * 12_000}).encode()).status_code,
            send(client, "/classify", json.dumps({"narrative": text}).encode() + b"\xff").status_code,
        ]
        # The case record keeps no text by default; feedback may carry the narrative (stored, never logged).
        case_id = client.post("/classify", json={"narrative": text}).json()["case_id"]
        assert client.get(f"/cases/{case_id}").json()["case"]["narrative_stored"] is False
        codes.append(send(client, "/feedback", json.dumps({"case_id": case_id, "narrative": text,
                                                           "corrections": {"priority": 3}}).encode()).status_code)
        codes.append(send(client, "/feedback", json.dumps({"case_id": "unknown", "narrative": text}).encode()).status_code)
        codes.append(send(client, "/feedback", json.dumps({"case_id": case_id, "narrative": text,
                                                           "corrections": {"priority": 9}}).encode()).status_code)
    assert codes == [200, 200, 200, 413, 400, 422, 422, 400, 415, 413, 400, 201, 404, 422], seen

    # A server-side failure on a real narrative: the classifier cannot answer within the backend timeout (504).
    url = serve_session.deploy(model=str(tiny_checkpoint), backend_timeout_s=0.001)
    try:
        with httpx.Client(base_url=url, timeout=60) as client:
            r = send(client, "/classify", json.dumps({"narrative": text}).encode())
            assert (r.status_code, r.json()["error"]["code"]) == (504, "timeout")
            r = send(client, "/classify/batch", json.dumps({"narratives": [text, text]}).encode())
            assert r.status_code == 504
    finally:
        serve_session.undeploy()

    hits = wait_until_logged(session_dir, control)
    assert any("serve" in h for h in hits), hits  # Serve's own request log is among the searched files
    time.sleep(2)  # anything logged alongside the last requests has been flushed too
    assert len(log_files(session_dir)) > 10
    leaked = files_containing(session_dir, secret)
    assert not leaked, f"narrative text reached {leaked}"
