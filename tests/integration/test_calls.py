"""Live calls over real HTTP on the served app: equality with /classify, repeats and gaps, the timeline,
escalation on the event stream, the ingress replica killed and the app redeployed mid-call, privacy,
and the idle timeout."""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest
import ray

from deployments.core import callbacks
from tests.conftest import CALLBACK_SECRET, NOTIFY_TOKEN, free_port
from tests.integration.declarative import replicas, wait_running

SENTENCES = [
    "The caller says her daughter aged eleven has not been to school for three weeks.",
    "She explains that the father drinks every evening and shouts at the children.",
    "The girl told her teacher that she is afraid to go home after classes.",
    "Neighbours in the village have heard crying late at night, more than once!",
    "The mother asks what she can do and whether someone can visit the family.",
]
TASKS = ("main_category", "sub_category", "sub_category_2", "intervention", "priority")
DANGER = " Then she whispered that she wants to kill herself tonight. "
# The tiny model is random: with no priority that escalates and no critical sub category, only the
# safety lexicon escalates a call, so the test knows the piece it must escalate at.
# Notifications go to a real HTTP server of the test's, on this port (a host on the allow-list).
NOTIFY_PORT = free_port()
CALLS_APP = {"routing": {"escalate_priority": 99, "critical_sub_categories": []},
             "calls": {"notify_url": f"http://127.0.0.1:{NOTIFY_PORT}/helpline/notify",
                       "notify_allow_hosts": ["127.0.0.1"], "notify_mode": "critical_only"}}
IDLE_APP = {**CALLS_APP, "calls": {**CALLS_APP["calls"], "idle_timeout_s": 4, "sweep_interval_s": 0.5}}
# The same app but for a setting the test does not look at: deploying it replaces the whole app.
REDEPLOYED_APP = {**CALLS_APP, "calls": {**CALLS_APP["calls"], "events_poll_s": 0.25}}


def transcript(words: int, salt: str = "") -> str:
    out, n, i = [], 0, 0
    while n < words:
        out.append(SENTENCES[i % len(SENTENCES)])
        n += len(out[-1].split())
        i += 1
    return f"{salt} " + " ".join(out) if salt else " ".join(out)


def cut(text: str, pieces: int, seed: int = 0) -> list[str]:
    points = sorted(random.Random(seed).sample(range(1, len(text)), pieces - 1))
    return [text[a:b] for a, b in zip([0, *points], [*points, len(text)])]


class Helpline:
    """The helpline's receiving server: checks each notification's token and signature, keeps its envelope."""

    def __init__(self, port: int):
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        received, refused = [], []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["content-length"]))
                ok = (self.path == "/helpline/notify"
                      and self.headers.get("authorization") == f"Bearer {NOTIFY_TOKEN}"
                      and callbacks.verify(body, CALLBACK_SECRET, self.headers.get(callbacks.SIGNATURE_HEADER)))
                (received if ok else refused).append(json.loads(body))
                self.send_response(200 if ok else 401)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.received, self.refused = received, refused
        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def of_call(self, call_id: str) -> list[dict]:
        return [e for e in self.received if e["call_metadata"]["call_id"] == call_id]

    def wait_for(self, call_id: str, notification_type: str, timeout_s: float = 120) -> dict:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = [e for e in self.of_call(call_id) if e["notification_type"] == notification_type]
            if found:
                return found[0]
            time.sleep(0.2)
        raise AssertionError(f"no {notification_type} notification for {call_id}; got {self.of_call(call_id)}")


@pytest.fixture(scope="module")
def helpline():
    server = Helpline(NOTIFY_PORT)
    yield server
    server.server.shutdown()


@pytest.fixture
def calls_url(serve_session, tiny_checkpoint, helpline) -> str:
    return serve_session.deploy(model=str(tiny_checkpoint), **CALLS_APP)


def send(http, call_id, seq, text, final=False, attempts_s: float = 0.0):
    """One piece; with ``attempts_s``, retried on 5xx and connection errors for that long (a replica away)."""
    deadline = time.monotonic() + attempts_s
    while True:
        try:
            r = http.post(f"/calls/{call_id}/transcript", json={"text": text, "seq": seq, "final": final})
            if r.status_code < 500 or time.monotonic() > deadline:
                return r
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.5)


def assert_equal_to_classify(ended: dict, whole: dict) -> None:
    for task in TASKS:
        assert ended["classification"][task]["label"] == whole["classification"][task]["label"], task
        assert abs(ended["classification"][task]["confidence"] - whole["classification"][task]["confidence"]) <= 1e-4
    for key in ("chunks", "tokens", "truncated"):
        assert ended[key] == whole[key], key
    assert ended["language"]["code"] == whole["language"]["code"]
    assert {k: ended["routing"][k] for k in ("queue", "escalate", "human_review")} == \
        {k: whole["routing"][k] for k in ("queue", "escalate", "human_review")}
    assert [s["category"] for s in ended["routing"]["signals"]] == [s["category"] for s in whole["routing"]["signals"]]


@pytest.mark.app("calls")
def test_1500_words_in_12_pieces_end_equal_to_classify_and_are_recorded_once(calls_url):
    call_id = f"call-{uuid.uuid4()}"
    text = transcript(1500)
    pieces = cut(text, 12)
    with httpx.Client(base_url=calls_url, timeout=60) as http:
        answers = []
        for seq, piece in enumerate(pieces):
            r = send(http, call_id, seq, piece)
            assert r.status_code == 200, r.text
            answers.append(r.json())
        assert all(a["status"] == "open" and a["seq"] == i for i, a in enumerate(answers))
        assert max(a["windows"] for a in answers) <= 3  # each piece read only the windows its text touched
        ended = http.post(f"/calls/{call_id}/end")
        assert ended.status_code == 200, ended.text
        ended = ended.json()
        whole = http.post("/classify", json={"narrative": text}).json()
        assert whole["chunks"] >= 4
        assert_equal_to_classify(ended, whole)
        assert ended["call_id"] == call_id and ended["status"] == "closed" and ended["escalated_at"] is None
        assert {e["task"] for e in ended["timeline"] if e["seq"] == 0} == set(TASKS)
        # One case record for the call, with its timeline; GET /calls gives the state without text.
        case = http.get(f"/cases/{call_id}").json()["case"]
        assert case["case_id"] == ended["case_id"] and case["call_id"] == call_id
        assert case["timeline"] == ended["timeline"] and case["escalated_at"] is None
        state = http.get(f"/calls/{call_id}").json()
        assert state["status"] == "closed" and state["case_id"] == ended["case_id"] and state["next_seq"] == 12
        # Ending again, or repeating the last piece, answers the same closed call; a new piece is refused.
        assert http.post(f"/calls/{call_id}/end").json()["case_id"] == ended["case_id"]
        assert send(http, call_id, 11, pieces[11]).json()["case_id"] == ended["case_id"]
        refused = send(http, call_id, 12, "more")
        assert refused.status_code == 409 and refused.json()["error"]["code"] == "call_closed"


@pytest.mark.app("calls")
def test_a_repeat_is_answered_without_classifying_again_and_a_gap_is_409(calls_url):
    call_id = f"call-{uuid.uuid4()}"
    with httpx.Client(base_url=calls_url, timeout=60) as http:
        first = send(http, call_id, 0, "my son is not eating ")
        assert first.status_code == 200
        again = send(http, call_id, 0, "my son is not eating ")
        assert again.status_code == 200 and again.json() == first.json()
        assert http.get(f"/calls/{call_id}").json()["next_seq"] == 1  # still one piece taken
        gap = send(http, call_id, 2, "and sleeping")
        assert gap.status_code == 409 and gap.json()["error"]["code"] == "piece_gap"
        conflict = send(http, call_id, 0, "other text")
        assert conflict.status_code == 409 and conflict.json()["error"]["code"] == "piece_conflict"
        assert send(http, call_id, 1, "and sleeping", final=True).json()["status"] == "closed"
        assert http.get("/calls/never-sent").status_code == 404
        assert http.post("/calls/never-sent/end").status_code == 404


class EventReader(threading.Thread):
    """Reads a call's SSE stream into a list of (event, data) until the 'end' event."""

    def __init__(self, url: str):
        super().__init__(daemon=True)
        self.url, self.events, self.error = url, [], None

    def run(self) -> None:
        try:
            with httpx.stream("GET", self.url, timeout=120) as response:
                assert response.headers["content-type"].startswith("text/event-stream")
                event = None
                for line in response.iter_lines():
                    if line.startswith("event: "):
                        event = line[7:]
                    elif line.startswith("data: "):
                        self.events.append((event, json.loads(line[6:])))
                        if event == "end":
                            return
        except Exception as exc:  # reported by the test
            self.error = exc


@pytest.mark.app("calls")
def test_danger_in_piece_7_escalates_at_piece_7_on_the_event_stream_and_sticks(calls_url, helpline):
    call_id = f"call-{uuid.uuid4()}"
    pieces = cut(transcript(600), 11, seed=3)
    pieces.insert(7, DANGER)
    with httpx.Client(base_url=calls_url, timeout=60) as http:
        assert send(http, call_id, 0, pieces[0]).status_code == 200
        reader = EventReader(f"{calls_url}/calls/{call_id}/events")
        reader.start()
        answers = [None]
        for seq, piece in enumerate(pieces[1:], start=1):
            answers.append(send(http, call_id, seq, piece).json())
        ended = http.post(f"/calls/{call_id}/end").json()
        reader.join(60)
    assert reader.error is None and not reader.is_alive()
    assert all(a["escalated_at"] is None for a in answers[1:7])
    assert answers[7]["escalation"]["seq"] == 7 and answers[7]["routing"]["escalate"]
    assert all(a["escalation"] == answers[7]["escalation"] for a in answers[8:])
    names = [name for name, _ in reader.events]
    assert names.count("escalation") == 1 and names[-1] == "end"
    escalation = dict(reader.events)["escalation"]
    assert escalation["seq"] == 7 and escalation["at"] == answers[7]["escalated_at"]
    # Before the escalation, the stream carried the updates of pieces 0 (replayed) to 7.
    updates = [data["seq"] for name, data in reader.events[:names.index("escalation")] if name == "update"]
    assert updates == list(range(8))
    assert ended["escalated_at"] == answers[7]["escalated_at"] and ended["routing"]["escalate"]
    assert ended["escalation"]["reasons"] and any("safety lexicon" in r for r in ended["escalation"]["reasons"])
    # The helpline got one critical alert, from piece 7, in OpenCHS's envelope, and the call's end.
    alert = helpline.wait_for(call_id, "streaming_classification")
    end = helpline.wait_for(call_id, "streaming_call_end")
    assert alert["version"] == "2.0" and alert["processing_mode"] == "streaming" and alert["status"] == "success"
    assert alert["ui_metadata"]["alert_type"] == "critical" and alert["ui_metadata"]["requires_action"] is True
    assert alert["payload"]["seq"] == 7 and alert["payload"]["escalation"]["seq"] == 7
    assert alert["call_metadata"] == {"call_id": call_id, "site_id": "helpline"}
    assert end["payload"]["case_id"] == ended["case_id"] and end["ui_metadata"]["alert_type"] == "info"
    assert [e["notification_type"] for e in helpline.of_call(call_id)].count("streaming_classification") == 1
    assert helpline.refused == []
    # critical_only: no update was sent, and no envelope carries the transcript's words.
    assert all(e["ui_metadata"]["alert_type"] == "critical" or e["notification_type"] == "streaming_call_end"
               for e in helpline.of_call(call_id))
    assert "kill herself" not in json.dumps(helpline.of_call(call_id))


def ingress_replica() -> dict:
    (replica,) = [r for r in replicas("Preprocessor") if r["state"] == "RUNNING"]
    return replica


@pytest.mark.app("calls")
def test_the_ingress_replica_killed_between_pieces_5_and_6_the_call_goes_on(calls_url, serve_session):
    call_id = f"call-{uuid.uuid4()}"
    text = transcript(900)
    pieces = cut(text, 10, seed=5)
    with httpx.Client(base_url=calls_url, timeout=60) as http:
        for seq in range(6):
            assert send(http, call_id, seq, pieces[seq]).status_code == 200
        victim = ingress_replica()
        ray.kill(ray.get_actor(victim["actor_name"], namespace="serve"), no_restart=True)
        wait_running(serve_session, timeout_s=180)
        assert ingress_replica()["replica_id"] != victim["replica_id"]
        for seq in range(6, 10):
            r = send(http, call_id, seq, pieces[seq], attempts_s=120)
            assert r.status_code == 200, r.text
            assert r.json()["seq"] == seq
        ended = http.post(f"/calls/{call_id}/end").json()
        assert_equal_to_classify(ended, http.post("/classify", json={"narrative": text}).json())


def store_and_broker_files(serve_session) -> list:

    db = Path(serve_session.database_url.removeprefix("sqlite:///"))
    files = [p for p in db.parent.glob(db.name + "*") if p.is_file()]
    files += [p for p in Path(serve_session.var_dir).rglob("*") if p.is_file()]
    files += [p for p in (serve_session.session_dir / "logs").rglob("*") if p.is_file()]
    return files


def holds(path: Path, marker: str) -> bool:
    """Whether the file holds the marker; one the broker consumed since it was listed holds nothing."""
    try:
        return marker.encode() in path.read_bytes()
    except FileNotFoundError:
        return False


@pytest.mark.app("calls", "calls-redeployed")
def test_the_app_redeployed_mid_call_goes_on_and_a_closed_call_leaves_no_text(serve_session, tiny_checkpoint,
                                                                              helpline):
    marker = f"quokka{uuid.uuid4().hex[:8]}"
    call_id = f"call-{uuid.uuid4()}"
    text = transcript(700, salt=f"the boy called {marker} said")
    pieces = cut(text, 10, seed=7)
    url = serve_session.deploy(model=str(tiny_checkpoint), **CALLS_APP)
    with httpx.Client(base_url=url, timeout=60) as http:
        for seq in range(6):
            assert send(http, call_id, seq, pieces[seq]).status_code == 200
    # The whole app deleted and deployed again, on the same store.
    url = serve_session.deploy(model=str(tiny_checkpoint), **REDEPLOYED_APP)
    with httpx.Client(base_url=url, timeout=60) as http:
        for seq in range(6, 10):
            r = send(http, call_id, seq, pieces[seq], attempts_s=60)
            assert r.status_code == 200, r.text
        ended = http.post(f"/calls/{call_id}/end").json()
        assert ended["status"] == "closed"
        # Searched before anything else sends the text: the closed call left it nowhere.
        found = [str(p) for p in store_and_broker_files(serve_session) if holds(p, marker)]
        assert found == []
        assert_equal_to_classify(ended, http.post("/classify", json={"narrative": text}).json())


@pytest.mark.app("calls-idle")
def test_an_idle_call_is_closed_by_itself(serve_session, tiny_checkpoint, helpline):
    url = serve_session.deploy(model=str(tiny_checkpoint), **IDLE_APP)
    call_id = f"call-{uuid.uuid4()}"
    with httpx.Client(base_url=url, timeout=60) as http:
        assert send(http, call_id, 0, transcript(80)).status_code == 200
        deadline = time.monotonic() + 120
        state = http.get(f"/calls/{call_id}").json()
        while state["status"] == "open" and time.monotonic() < deadline:
            time.sleep(0.5)
            state = http.get(f"/calls/{call_id}").json()
        assert state["status"] == "closed" and state["case_id"]
        assert http.get(f"/cases/{call_id}").json()["case"]["case_id"] == state["case_id"]
        refused = send(http, call_id, 1, "more")
        assert refused.status_code == 409


@pytest.mark.app("calls")
def test_the_clients_call_session_sync_and_async_and_chs_replay(calls_url, tmp_path, capsys):
    import asyncio

    from clients import AsyncHelplineClient, HelplineClient
    from clients.replay import main as replay_main

    pieces = cut(transcript(300), 4, seed=11)
    with HelplineClient(calls_url) as client:
        call = client.call(f"sync-{uuid.uuid4()}")
        events: list = []
        answers = [call.send(pieces[0])]
        reader = threading.Thread(target=lambda: events.extend(call.events()), daemon=True)
        reader.start()
        answers += [call.send(p) for p in pieces[1:]]
        final = call.end()
        reader.join(60)
        assert [a["seq"] for a in answers] == [0, 1, 2, 3] and final["status"] == "closed"
        assert [name for name, _ in events] == ["update"] * 4 + ["end"]
        assert events[-1][1]["case_id"] == final["case_id"] and call.state()["status"] == "closed"

    async def async_call() -> tuple[dict, list]:
        async with AsyncHelplineClient(calls_url) as client:
            call = client.call(f"async-{uuid.uuid4()}")
            await call.send(pieces[0])

            async def read():
                return [name async for name, _ in call.events()]

            reading = asyncio.create_task(read())
            for piece in pieces[1:]:
                await call.send(piece)
            return await call.end(), await asyncio.wait_for(reading, 60)

    final_async, names = asyncio.run(async_call())
    assert final_async["case_id"] != final["case_id"] and names == ["update"] * 4 + ["end"]
    for task in TASKS:  # the same transcript, the same answer
        assert final_async["classification"][task]["label"] == final["classification"][task]["label"]

    text_file = tmp_path / "call.txt"
    text_file.write_text(transcript(200) + DANGER + transcript(40), encoding="utf-8")
    assert replay_main([str(text_file), "--url", calls_url, "--chars", "300", "--every", "0",
                        "--call-id", f"replay-{uuid.uuid4()}"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("piece 0:") and lines[-1].startswith("ended call replay-")
    alerts = [line for line in lines if line.startswith("ALERT")]
    assert len(alerts) == 1 and "safety lexicon" in alerts[0]
    assert "kill herself" not in "\n".join(lines)
