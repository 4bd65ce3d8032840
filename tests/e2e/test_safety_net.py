"""The safety net beyond the model, over real HTTP with the trained demo model.

A Swahili danger narrative is escalated and reviewed whatever the model makes of it, and names its
language and its phrase; an English figurative sentence is not escalated by the lexicon; and the
case record keeps where the evidence was, never the words.
"""

from __future__ import annotations

import sqlite3
import uuid

import httpx
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.app("demo")]

# A mother calls: her neighbour's girl was raped by her stepfather and is now locked in the house.
SWAHILI_DANGER = ("Habari, ninapiga simu kuhusu msichana wa jirani yangu, ana miaka kumi na tatu. Baba yake wa kambo "
                  "alimbaka wiki iliyopita na sasa anamfungia ndani ya nyumba kila siku. Naomba msaada haraka.")
ENGLISH_FIGURATIVE = ("My son is in form two and honestly he is killing it at school this year, his maths teacher "
                      "says he could be top of the class. I am calling to ask about holiday reading programmes.")


def classify(client: httpx.Client, narrative: str) -> dict:
    r = client.post("/classify", json={"narrative": narrative, "call_id": f"safety-{uuid.uuid4().hex[:8]}"})
    assert r.status_code == 200, r.text
    return r.json()


def test_a_swahili_danger_narrative_is_escalated_and_names_its_language_and_its_phrase(demo):
    body = classify(demo, SWAHILI_DANGER)
    routing = body["routing"]
    assert routing["escalate"] is True and routing["human_review"] is True
    assert body["language"]["code"] == "sw" and body["language"]["name"] == "Swahili"
    phrases = [s for s in routing["signals"] if s["source"] == "lexicon"]
    assert {s["category"] for s in phrases} >= {"sexual_abuse"}
    for s in phrases:
        assert SWAHILI_DANGER[s["start"]:s["end"]] == s["text"]
    (language,) = [s for s in routing["signals"] if s["source"] == "language"]
    assert language["category"] == "sw"
    assert any("Swahili" in reason for reason in routing["reasons"])
    assert len(routing["reasons"]) == len(routing["signals"])


def test_an_english_figurative_sentence_is_not_escalated_by_the_lexicon(demo):
    body = classify(demo, ENGLISH_FIGURATIVE)
    assert body["language"]["code"] == "en"
    assert [s for s in body["routing"]["signals"] if s["source"] == "lexicon"] == []


def test_the_case_record_keeps_where_the_evidence_is_never_the_words(demo, demo_app):
    marker = f"zqmarker{uuid.uuid4().hex[:10]}"
    narrative = f"{SWAHILI_DANGER} Jina lake ni {marker}."
    body = classify(demo, narrative)
    record = demo.get(f"/cases/{body['case_id']}").json()["case"]
    assert record["language"] == "sw"
    recorded = [s for s in record["routing"]["signals"] if s["source"] == "lexicon"]
    assert recorded and all(s["text"] is None and s["end"] > s["start"] for s in recorded)
    words = [s["text"] for s in body["routing"]["signals"] if s["text"]]
    path = demo_app["feedback"]["database_url"].removeprefix("sqlite:///")
    with sqlite3.connect(path) as db:
        dumped = "\n".join(db.iterdump())
    assert body["case_id"] in dumped  # the record is there
    assert marker not in dumped
    for w in words:
        assert w not in dumped, "a matched phrase reached the case store"
