"""Live call sessions (deployments/core/calls.py) on the tiny model in process: no Ray, no network.

The call's state goes through JSON between pieces, as it does through the case store."""

import json
import random
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from deployments.core.calls import CLOSED, CallSessions, Piece, digest
from deployments.core.config import AppArgs
from deployments.core.errors import ServiceError
from deployments.core.in_process import InProcessPipeline

SENTENCES = [
    "The caller says her daughter aged eleven has not been to school for three weeks.",
    "She explains that the father drinks every evening and shouts at the children.",
    "The girl told her teacher that she is afraid to go home after classes.",
    "Neighbours in the village have heard crying late at night, more than once!",
    "The mother asks what she can do and whether someone can visit the family.",
]
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def transcript(words: int) -> str:
    out, n, i = [], 0, 0
    while n < words:
        out.append(SENTENCES[i % len(SENTENCES)])
        n += len(out[-1].split())
        i += 1
    return " ".join(out)


def cut(text: str, pieces: int, seed: int = 0) -> list[str]:
    """``text`` in ``pieces`` consecutive parts cut at random characters, mid-word included."""
    rng = random.Random(seed)
    points = sorted(rng.sample(range(1, len(text)), pieces - 1))
    return [text[a:b] for a, b in zip([0, *points], [*points, len(text)])]


@pytest.fixture(scope="module")
def pipeline(tiny_checkpoint) -> InProcessPipeline:
    return InProcessPipeline.from_args(AppArgs(model=str(tiny_checkpoint), accelerator="cpu", dtype="fp32",
                                            torch_threads=1))


def sessions_of(pipeline) -> CallSessions:
    return CallSessions(pipeline.preparer, pipeline.assembler)


def send(sessions, pipeline, state, seq, text, now=T0, counter=None):
    """One piece through the session, the model read in process; the state round-trips through JSON."""
    assert sessions.check(state, Piece(seq, text))
    work = sessions.advance(state, text)
    if counter is not None:
        counter.append(len(work.windows))
    probs = pipeline.forward([work.windows])[0] if len(work.windows) else {}
    state, answer = sessions.settle(work, probs, seq, digest(text), now + timedelta(seconds=seq))
    return json.loads(json.dumps(state)), answer


def run_call(pipeline, pieces, counter=None):
    sessions = sessions_of(pipeline)
    state, answers = sessions.open("call-1", T0), []
    for seq, text in enumerate(pieces):
        state, answer = send(sessions, pipeline, state, seq, text, counter=counter)
        answers.append(answer)
    plan, probs = sessions.final_case(state)
    (final,) = pipeline.assemble([plan], probs)
    return sessions, state, answers, final.body


def assert_close(a, b, tol=1e-4, path=""):
    if isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for k in a:
            assert_close(a[k], b[k], tol, f"{path}.{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_close(x, y, tol, f"{path}[{i}]")
    elif isinstance(a, float) and not isinstance(b, str):
        assert a == pytest.approx(b, abs=tol), path
    else:
        assert a == b, path


def test_1500_words_in_12_pieces_end_equal_to_the_whole_text(pipeline):
    text = transcript(1500)
    counter = []
    _, _, answers, final = run_call(pipeline, cut(text, 12), counter)
    (whole,) = pipeline.classify([text])
    assert whole["chunks"] >= 4
    assert_close(final, whole)
    # Each piece read only the windows its text touched, never the whole call again.
    assert sum(counter) < 12 * whole["chunks"]
    assert max(counter) <= 3
    assert answers[-1]["chunks"] == whole["chunks"] and answers[-1]["tokens"] == whole["tokens"]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_any_cut_of_the_text_ends_equal(pipeline, seed):
    text = transcript(700) + " ok"
    rng = random.Random(seed)
    _, _, _, final = run_call(pipeline, cut(text, rng.randint(2, 30), seed))
    assert_close(final, pipeline.classify([text])[0])


def test_truncate_reads_the_first_window_only(pipeline):
    truncating = pipeline.replace(long_narratives="truncate")
    text = transcript(1000)
    _, state, _, final = run_call(truncating, cut(text, 6))
    whole = truncating.classify([text])[0]
    assert final["truncated"] is True and final["chunks"] == 1
    assert_close(final, whole)
    assert state["carry"] == []


def test_a_lexicon_phrase_cut_between_pieces_is_found_and_escalates(pipeline):
    before = transcript(300)
    pieces = [before + " and then she said I want to ", "kill myself tonight because nobody cares"]
    _, state, answers, final = run_call(pipeline, pieces)
    whole = pipeline.classify(["".join(pieces)])[0]
    lexicon = [s for s in final["routing"]["signals"] if s["source"] == "lexicon"]
    assert lexicon and lexicon == [s for s in whole["routing"]["signals"] if s["source"] == "lexicon"]
    assert answers[0]["escalation"] is None or answers[0]["escalation"]["seq"] == 0
    assert answers[1]["escalation"] is not None and answers[1]["routing"]["escalate"]
    assert state["escalation"]["seq"] == 1 and answers[1]["escalated_at"] == state["escalation"]["at"]
    assert [e["event"] for e in state["events"]][-2:] == ["update", "escalation"]


def test_escalation_is_sticky_when_later_pieces_read_lower(pipeline):
    sessions = sessions_of(pipeline)
    state = sessions.open("c", T0)
    state, first = send(sessions, pipeline, state, 0, "I want to kill myself tonight. ")
    assert first["routing"]["escalate"] and first["escalation"]["seq"] == 0
    # The lexicon phrase stays in the transcript, so the model's view stays escalated too; the
    # escalation's own record (time, seq, reasons) is never replaced by a later piece's.
    state, second = send(sessions, pipeline, state, 1, transcript(200))
    assert second["escalation"] == first["escalation"]
    assert sum(e["event"] == "escalation" for e in state["events"]) == 1


def test_repeats_gaps_and_conflicts(pipeline):
    sessions = sessions_of(pipeline)
    state = sessions.open("c", T0)
    state, _ = send(sessions, pipeline, state, 0, "hello there ")
    assert sessions.check(state, Piece(0, "hello there ")) is False  # a repeat: answer again
    with pytest.raises(ServiceError) as conflict:
        sessions.check(state, Piece(0, "other text"))
    assert conflict.value.status == 409 and conflict.value.code == "piece_conflict"
    with pytest.raises(ServiceError) as gap:
        sessions.check(state, Piece(2, "skipped one"))
    assert gap.value.status == 409 and gap.value.code == "piece_gap"


def test_timeline_lists_each_label_change_with_its_piece(pipeline):
    _, state, answers, _ = run_call(pipeline, ["help ", transcript(120), " I want to kill myself"])
    first = answers[0]
    assert set(first["changed"]) == {"main_category", "sub_category", "sub_category_2", "intervention", "priority"}
    assert [e for e in state["timeline"] if e["seq"] == 0] and all(e["previous"] is None for e in state["timeline"]
                                                                   if e["seq"] == 0)
    for answer in answers[1:]:
        changes = [e["task"] for e in state["timeline"] if e["seq"] == answer["seq"]]
        assert changes == answer["changed"]


def test_closed_call_keeps_no_text(pipeline):
    marker = "zebraquokka"
    sessions, state, _, final = run_call(pipeline, [f"my name is {marker} ", "I want to kill myself tonight"])
    case = {**final, "case_id": "case-1"}
    closed = sessions.close(state, sessions.final_body(state, case), T0 + timedelta(minutes=5))
    dumped = json.dumps(closed)
    assert marker not in dumped and "kill myself" not in dumped
    assert closed["status"] == CLOSED and closed["case_id"] == "case-1" and closed["events"][-1]["event"] == "end"
    assert closed["escalation"] == state["escalation"]
    with pytest.raises(ServiceError) as err:
        sessions.check(closed, Piece(2, "more"))
    assert err.value.code == "call_closed"


def test_an_empty_call_ends_as_an_empty_narrative_reads(pipeline):
    sessions = sessions_of(pipeline)
    state = sessions.open("c", T0)
    state, answer = send(sessions, pipeline, state, 0, "...")
    plan, probs = sessions.final_case(state)
    (final,) = pipeline.assemble([plan], probs)
    assert final.body["tokens"] == 0 and final.body["chunks"] == 1
    assert np.isfinite(final.body["classification"]["priority"]["confidence"])
