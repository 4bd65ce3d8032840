"""JSON logs: every replica log line about a request carries its request id, and no narrative text.

Deployed with ``logging_config={"encoding": "JSON"}`` (what ``logging_config:
encoding: JSON`` in serve_config.yaml does for every deployment), the replicas
write one JSON object per line to ``<session>/logs/serve/replica_<app>_<deployment>_<id>.log``;
Serve's context filter adds ``request_id`` (the caller's X-Request-ID when sent)
to every line logged while handling a request.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import httpx
import pytest

from clients.loadtest import FALLBACK_NARRATIVES

DEPLOYMENTS = ("helpline_Preprocessor", "helpline_Classifier", "helpline_Router")


def replica_logs(session_dir: Path) -> list[Path]:
    return sorted((session_dir / "logs" / "serve").glob("replica_helpline_*.log"))


def json_lines_for(session_dir: Path, request_ids: set[str]) -> dict[str, list[tuple[Path, dict]]]:
    found: dict[str, list] = {rid: [] for rid in request_ids}
    for path in replica_logs(session_dir):
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            if not line.startswith("{"):
                continue
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if record.get("request_id") in found:
                found[record["request_id"]].append((path, record))
    return found


@pytest.mark.app("json-logs")
def test_json_logs_carry_request_ids_and_never_the_narrative(serve_session, tiny_checkpoint):
    # Coalescing off: a coalesced group's Classifier and Router calls are made outside any one
    # request's context, so only the ingress's log line names each request id then.
    # max_batch_windows=6 (this test's batch is 2): test_long_transcripts' window-limit test shares the app.
    url = serve_session.deploy(model=str(tiny_checkpoint), max_batch_windows=6, logging_config={"encoding": "JSON"},
                               coalescing={"max_cases": 1})
    run = uuid.uuid4().hex[:12]
    marker = f"ZQXMARKER{run}"
    rid_ok, rid_batch, rid_bad, rid_empty = (f"log-{run}-{k}" for k in ("ok", "batch", "bad", "empty"))
    narrative = f"{FALLBACK_NARRATIVES[0]} {marker} {FALLBACK_NARRATIVES[2]}"

    with httpx.Client(base_url=url, timeout=60) as http:
        r = http.post("/classify", json={"narrative": narrative}, headers={"X-Request-ID": rid_ok})
        assert r.status_code == 200 and r.headers["x-request-id"] == rid_ok
        r = http.post("/classify/batch", json={"narratives": [narrative, f"{marker} second"]},
                      headers={"X-Request-ID": rid_batch})
        assert r.status_code == 200
        r = http.post("/classify", json={"narrative": f"{marker}\x00"}, headers={"X-Request-ID": rid_bad})
        assert r.status_code == 422 and r.json()["error"]["request_id"] == rid_bad
        assert marker not in r.text  # the error names the field, not its content
        r = http.post("/classify", content=f'{{"narrative": "{marker}"'.encode(), headers={
            "X-Request-ID": rid_empty, "Content-Type": "application/json"})
        assert r.status_code == 400 and marker not in r.text

    session_dir = serve_session.session_dir
    wanted = {rid_ok, rid_batch, rid_bad, rid_empty}
    deadline = time.monotonic() + 30
    while True:
        found = json_lines_for(session_dir, wanted)
        complete = {rec.get("deployment") for _, rec in found[rid_ok]} >= set(DEPLOYMENTS) and all(found.values())
        if complete or time.monotonic() > deadline:
            break
        time.sleep(1)

    # The classified request left a JSON line with its id in each of the three deployments.
    assert {rec["deployment"] for _, rec in found[rid_ok]} >= set(DEPLOYMENTS), found[rid_ok]
    assert {rec["deployment"] for _, rec in found[rid_batch]} >= set(DEPLOYMENTS)
    # Refused requests are logged (the access line) with their id, by the ingress.
    for rid, status in ((rid_bad, "422"), (rid_empty, "400")):
        lines = [rec for _, rec in found[rid]]
        assert lines and all(rec["deployment"] == "helpline_Preprocessor" for rec in lines)
        assert any(f" {status} " in rec["message"] for rec in lines), lines
    for _, rec in found[rid_ok]:
        assert {"asctime", "levelname", "message", "replica", "application"} <= set(rec)
        assert rec["application"] == "helpline"

    # Every line of those replicas' logs is one JSON object.
    files = {path for lines in found.values() for path, _ in lines}
    assert files
    for path in files:
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                json.loads(line)

    # The narrative reached no log of any process: replicas, proxy, controller, workers' stdout/stderr.
    leaked = [p for p in (session_dir / "logs").rglob("*")
              if p.is_file() and marker.encode() in p.read_bytes()]
    assert leaked == []
