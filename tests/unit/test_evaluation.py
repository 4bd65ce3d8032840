"""Accuracy, macro-F1 and confusion pairs, against counts worked out by hand."""

import json

import pytest

from clients.scoring import accuracy, confused_pairs, evaluation_report, macro_f1, per_class_f1
from training.corpus import load_jsonl

# Six cases, three classes.
GOLD = ["A", "A", "A", "B", "B", "C"]
PRED = ["A", "A", "B", "B", "C", "A"]
# A: tp 2, fp 1 (the C case), fn 1 → F1 = 4 / (4 + 1 + 1) = 2/3
# B: tp 1, fp 1, fn 1           → F1 = 2 / 4 = 1/2
# C: tp 0, fp 1, fn 1           → F1 = 0
# accuracy 3/6; macro-F1 (2/3 + 1/2 + 0) / 3 = 7/18


def test_accuracy_and_per_class_counts():
    assert accuracy(GOLD, PRED) == pytest.approx(0.5)
    per = per_class_f1(GOLD, PRED)
    assert {c: (v["tp"], v["fp"], v["fn"], v["support"]) for c, v in per.items()} == {
        "A": (2, 1, 1, 3), "B": (1, 1, 1, 2), "C": (0, 1, 1, 1),
    }
    assert per["A"]["f1"] == pytest.approx(2 / 3)
    assert per["B"]["f1"] == pytest.approx(1 / 2)
    assert per["C"]["f1"] == 0.0
    assert macro_f1(GOLD, PRED) == pytest.approx(7 / 18)


def test_a_class_only_predicted_counts_in_macro_f1():
    # D never occurs in gold but is predicted once: F1(D) = 0 pulls the mean down.
    assert macro_f1(["A", "A"], ["A", "D"]) == pytest.approx((2 / 3 + 0) / 2)


def test_confused_pairs_most_frequent_first():
    gold = ["A", "A", "A", "B", "B", "C", "C"]
    pred = ["B", "B", "A", "A", "C", "A", "C"]
    assert confused_pairs(gold, pred) == [
        {"gold": "A", "predicted": "B", "count": 2},
        {"gold": "B", "predicted": "A", "count": 1},
        {"gold": "B", "predicted": "C", "count": 1},
        {"gold": "C", "predicted": "A", "count": 1},
    ]
    assert confused_pairs(gold, pred, top=1) == [{"gold": "A", "predicted": "B", "count": 2}]
    assert confused_pairs(["A"], ["A"]) == []


def test_priorities_compare_as_strings_and_lengths_must_match():
    assert accuracy([3, 2], ["3", 1]) == 0.5
    with pytest.raises(ValueError, match="2 gold labels but 1 predictions"):
        accuracy([1, 2], [1])


def test_report_from_a_labelled_file(tmp_path):
    rows = [
        {"narrative": "a", "main_category": "VANE", "sub_category": "Sexual Abuse", "intervention": "Referral", "priority": 3},
        {"narrative": "b", "main_category": "VANE", "sub_category": "Physical Abuse", "intervention": "Referral", "priority": 3},
        {"narrative": "c", "main_category": "Information", "sub_category": "Info on Helpline",
         "intervention": "Awareness/Information Provided", "priority": 1},
    ]
    path = tmp_path / "labelled.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    gold = load_jsonl(path)
    assert [g.priority for g in gold] == [3, 3, 1]
    predicted = [
        {"main_category": "VANE", "sub_category": "Sexual Abuse", "intervention": "Counselling", "priority": 3},
        {"main_category": "GBV", "sub_category": "Physical Violence", "intervention": "Referral", "priority": 2},
        {"main_category": "Information", "sub_category": "Info on Helpline",
         "intervention": "Awareness/Information Provided", "priority": 1},
    ]
    report = evaluation_report([{t: getattr(g, t) for t in ("main_category", "sub_category", "intervention",
                                                             "priority")} for g in gold], predicted)
    assert report["n"] == 3
    main = report["tasks"]["main_category"]
    assert (main["n"], main["correct"], main["accuracy"], main["classes"]) == (3, 2, pytest.approx(0.6667), 3)
    # VANE f1 = 2/(2+0+1) = 2/3, GBV 0, Information 1 → 5/9
    assert main["macro_f1"] == pytest.approx(5 / 9, abs=1e-4)
    assert main["most_confused"] == [{"gold": "VANE", "predicted": "GBV", "count": 1}]
    assert report["tasks"]["intervention"]["correct"] == 2
    assert report["tasks"]["priority"]["most_confused"] == [{"gold": "3", "predicted": "2", "count": 1}]
