"""The trained demo model, served over real HTTP: its answers make sense.

These are tests of meaning, not of plumbing: a held-out set written by hand
(not by the generator the model was trained on) and a few narratives whose
right answer any counsellor would agree on.
"""

from __future__ import annotations

from collections import Counter

import httpx
import pytest

from training.corpus import load_heldout
from training.demo import DEMO_NOTE
from clients.scoring import TASKS, evaluation_report

pytestmark = [pytest.mark.slow, pytest.mark.app("demo")]

# The model card's two widget examples, verbatim (openchs/cls-gbv-distilbert-v1, README front matter).
CARD_SCHOOL_BULLYING = (
    "Hello, I've been trying to find help for my son Ken. He's only ten years old and he's been going through a "
    "terrible time at school. There's this boy who keeps harassing him. It started with name-calling and teasing, "
    "but it's escalated to physical violence. I don't know what to do. I can't bear to see my child suffer like this."
)
CARD_YOUTH_DRUG_EDUCATION = (
    "On November 15th, the helpline received a call from a 17-year-old who wanted to understand why drug use among "
    "youth is harmful. The counselor explained the physical, social, and legal risks involved with drug abuse."
)
SEXUAL_ABUSE = [
    "A 10 year old girl called crying. She says her stepfather comes into her room at night, touches her private "
    "parts and forces her to have sex with him. He told her he will kill her mother if she tells anyone. "
    "It happened again last night.",
    "My 8 year old daughter told me that her uncle has been touching her private parts when I leave her with him "
    "after school. She is scared and he told her it is their secret.",
]
OPENING_HOURS = "Hello, I would like to know what time the helpline opens and whether the number is free to call."


def classify(client: httpx.Client, narrative: str) -> dict:
    r = client.post("/classify", json={"narrative": narrative})
    assert r.status_code == 200, r.text
    return r.json()


def label(body: dict, task: str):
    return body["classification"][task]["label"]


def test_info_reports_the_demo_note_and_its_held_out_evaluation(demo):
    model = demo.get("/info").json()["model"]
    assert model["untrained"] is False
    assert model["note"] == DEMO_NOTE
    evaluation = model["evaluation"]
    assert evaluation["dataset"] == "heldout.jsonl" and evaluation["n"] == len(load_heldout())
    assert evaluation["generator_seed"] == 0 and evaluation["training_examples"] >= 1000
    assert set(evaluation["tasks"]) == set(TASKS)
    assert evaluation["tasks"]["main_category"]["accuracy"] >= 0.7


def test_clearly_better_than_chance_on_the_hand_written_held_out_set(demo):
    heldout = load_heldout()
    r = demo.post("/classify/batch", json={"narratives": [ex.narrative for ex in heldout],
                                           "include_confidence": False})
    assert r.status_code == 200, r.text
    predicted = [{task: res["classification"][task] for task in TASKS} for res in r.json()["results"]]
    gold = [{task: getattr(ex, task) for task in TASKS} for ex in heldout]
    report = evaluation_report(gold, predicted)
    for task in TASKS:
        t = report["tasks"][task]
        majority = Counter(str(g[task]) for g in gold).most_common(1)[0][1] / len(gold)
        print(f"{task:<14} accuracy {t['accuracy']:.3f}  macro-F1 {t['macro_f1']:.3f}  "
              f"(majority-class baseline {majority:.3f}; n={t['n']})")
    main = report["tasks"]["main_category"]
    assert main["n"] == len(heldout)
    assert main["accuracy"] >= 0.7
    # Better than always answering the most common label, on every task.
    for task in TASKS:
        majority = Counter(str(g[task]) for g in gold).most_common(1)[0][1] / len(gold)
        assert report["tasks"][task]["accuracy"] > majority, task


@pytest.mark.parametrize("narrative", SEXUAL_ABUSE, ids=["stepfather", "uncle"])
def test_a_child_being_sexually_abused_escalates_and_asks_for_review(demo, narrative):
    body = classify(demo, narrative)
    print(body["classification"], body["routing"])
    assert label(body, "sub_category") in ("Sexual Abuse", "Sexual Violence")
    assert label(body, "priority") == 3
    assert body["routing"]["escalate"] is True
    assert body["routing"]["human_review"] is True


def test_a_question_about_opening_hours_neither_escalates_nor_needs_review(demo):
    body = classify(demo, OPENING_HOURS)
    print(body["classification"], body["routing"])
    assert label(body, "sub_category") == "Info on Helpline"
    assert label(body, "priority") == 1
    assert body["routing"]["escalate"] is False
    assert body["routing"]["human_review"] is False, body["routing"]["reasons"]


def test_model_card_widget_school_bullying(demo):
    body = classify(demo, CARD_SCHOOL_BULLYING)
    print(body["classification"], body["routing"])
    assert label(body, "main_category") == "Advice and Counselling"
    assert label(body, "sub_category") == "Bullying"
    assert body["classification"]["sub_category"]["parent"] == "Advice and Counselling"


def test_model_card_widget_youth_drug_education(demo):
    body = classify(demo, CARD_YOUTH_DRUG_EDUCATION)
    print(body["classification"], body["routing"])
    # Drug/Alcohol Abuse belongs to Advice and Counselling in the release's taxonomy.
    assert label(body, "main_category") == "Advice and Counselling"
    assert label(body, "sub_category") == "Drug/Alcohol Abuse"


def test_a_three_thousand_word_transcript_is_read_whole(demo):
    # The demo was trained on 128-token inputs; serving still reads every token, in windows.
    text = " ".join(["the caller says her daughter was taken out of school and is afraid to go home"] * 200)
    body = classify(demo, text)
    assert body["tokens"] > 3000 and body["chunks"] > 5 and body["truncated"] is False
