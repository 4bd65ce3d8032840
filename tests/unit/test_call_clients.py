"""The client side of live calls, without a server: the SSE parser and chs-replay's pieces and lines."""

from clients.calls import EventParser
from clients.replay import describe, pieces_of, replay


def test_event_parser_reads_ids_names_and_json_data_and_skips_comments():
    parser = EventParser()
    lines = [": connected", "", "id: 3", "event: update", 'data: {"seq": 0}', "", "id: 4", "event: end",
             'data: {"case_id": "c"}', ""]
    events = [e for e in (parser.feed(line) for line in lines) if e is not None]
    assert events == [(3, "update", {"seq": 0}), (4, "end", {"case_id": "c"})]


def test_pieces_cut_after_a_space_and_join_back_to_the_text():
    text = "the caller says " * 40 + "unbrokenwordwithoutanyspaceatall" * 10
    pieces = pieces_of(text, 150)
    assert "".join(pieces) == text
    assert all(len(p) <= 150 for p in pieces)
    assert all(p.endswith(" ") for p in pieces[:-3])


class FakeCall:
    def __init__(self):
        self.sent = []

    def send(self, text):
        seq = len(self.sent)
        self.sent.append(text)
        escalation = {"seq": 1, "at": "t1", "reasons": ["A phrase of suicide (safety lexicon, en)."]} if seq >= 1 else None
        return {"seq": seq, "changed": ["priority"] if seq == 1 else [], "windows": 1, "tokens": 10 * (seq + 1),
                "classification": {"priority": {"label": 3 if seq else 1, "confidence": 0.9}},
                "routing": {"queue": "vane"}, "escalation": escalation}

    def end(self):
        return {"case_id": "case-1", "escalated_at": "t1",
                "classification": {t: {"label": "x", "confidence": 1.0} for t in
                                   ("main_category", "sub_category", "intervention", "priority")}}


class FakeClient:
    def __init__(self):
        self.made = FakeCall()

    def call(self, call_id):
        return self.made


def test_replay_prints_each_update_and_one_alert_and_never_the_text():
    lines, slept = [], []
    client = FakeClient()
    final = replay(client, "call-7", ["hello there ", "I want to die ", "ok "], 2.5, out=lines.append,
                   sleep=slept.append)
    assert final["case_id"] == "case-1" and client.made.sent == ["hello there ", "I want to die ", "ok "]
    assert slept == [2.5, 2.5]
    assert lines[0].startswith("piece 0: no change") and lines[1].startswith("piece 1: priority=3")
    assert [line for line in lines if line.startswith("ALERT")] == [
        "ALERT call call-7 escalated at piece 1 (t1): A phrase of suicide (safety lexicon, en)."]
    assert lines[-1].startswith("ended call call-7: case case-1")
    assert not any("want to die" in line for line in lines)
    assert describe(client.made.send("x")).startswith("piece 3:")
