"""Tests for the project's synthetic corpus (training/corpus/, data/corpus/, data/heldout.jsonl)."""

from __future__ import annotations

import json
import random
import re
import statistics
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from training import corpus as C  # noqa: E402

REQUIRED_SUBS = set(C.CRITICAL_SUBS) | {
    "Bullying", "Drug/Alcohol Abuse", "Info on Helpline",
    # at least one sub of each main category named in the brief
    "Malnutrition", "Hearing impairment", "Custody", "Maintenance", "Sexual Violence", "Physical Violence",
    "Child Rights", "Outside Mandate",
}
BIG_MAINS = ["VANE", "GBV", "Advice and Counselling", "Information", "Nutrition",
             "Child Maintenance & Custody", "Disability"]


@pytest.fixture(scope="module")
def labels():
    return C.load_label_lists()


@pytest.fixture(scope="module")
def records():
    return C.generate_records(5000, seed=0)


@pytest.fixture(scope="module")
def heldout():
    return C.load_heldout()


# ------------------------------------------------------------------ generator basics

def test_deterministic_for_a_seed_and_different_for_another():
    a = C.generate_corpus(300, seed=0)
    b = C.generate_corpus(300, seed=0)
    c = C.generate_corpus(300, seed=1)
    assert a == b
    assert a != c
    assert sum(x.narrative != y.narrative for x, y in zip(a, c)) > 250


def test_does_not_touch_global_random():
    random.seed(1234)
    state = random.getstate()
    C.generate_corpus(50, seed=3)
    C.benchmark_corpus(20, seed=3)
    C.make_transcript(random.Random(3), 300)
    assert random.getstate() == state


def test_covers_every_main_category_and_required_subs(records, labels):
    items = [r.item for r in records]
    mains = {i.main_category for i in items}
    subs = {i.sub_category for i in items}
    assert mains == set(labels["main_category"])
    assert len(subs) >= 45
    assert REQUIRED_SUBS <= subs
    assert subs == C.covered_labels()["sub_category"]


def test_balanced_over_subs(records):
    counts = Counter(r.item.sub_category for r in records)
    weights = {s: sc.weight for s, sc in C.load_scenarios().items()}
    per_weight = [counts[s] / weights[s] for s in counts]
    assert max(per_weight) - min(per_weight) <= 1


def test_all_labels_valid_and_consistent(records, labels):
    for r in records:
        assert C.label_problems(r.item) == [], (r.item, C.label_problems(r.item))
        assert r.item.main_category == labels["sub_to_main"][r.item.sub_category]


def test_covered_labels_are_declared_and_valid(labels, records):
    cov = C.covered_labels()
    assert set(cov) == {"main_category", "sub_category", "intervention", "priority"}
    for task, values in cov.items():
        assert values <= set(labels[task]), task
    seen = {task: {getattr(r.item, task) for r in records} for task in cov}
    for task in cov:
        assert seen[task] <= cov[task], task
    assert cov["intervention"] == set(labels["intervention"])
    assert cov["priority"] == {1, 2, 3}


def test_no_unfilled_slots_and_sane_text(records):
    for r in records:
        text = r.item.narrative
        assert "{" not in text and "}" not in text, text
        assert "  " not in text
        assert text[0].isupper(), text
        assert not re.search(r"\ba (8|11|18)\b", text), text
        assert 10 <= len(text.split()) <= 400


def test_scenario_bank_contract(labels):
    scen = C.load_scenarios()
    assert len(scen) >= 45
    for sub, s in scen.items():
        assert len(s.templates) >= 4, sub
        assert s.main_category == labels["sub_to_main"][sub]
        assert s.kind in C.KINDS
    for sub in C.CRITICAL_SUBS:
        assert scen[sub].kinds == {"danger"}, sub
    assert scen["Outside Mandate"].kinds == {"outside"}
    assert "info" in scen["Drug/Alcohol Abuse"].kinds


# ------------------------------------------------------------------ label rules

def test_base_rule_table():
    assert C.base_labels("danger") == ("Referral", 3)
    assert C.base_labels("danger", "Counselling", True) == ("Referral", 3)
    assert C.base_labels("ongoing", "Referral") == ("Referral", 2)
    assert C.base_labels("ongoing", "Counselling") == ("Counselling", 2)
    assert C.base_labels("ongoing") == ("Counselling", 2)
    assert C.base_labels("help", caller_is_child=False) == ("Counselling", 1)
    assert C.base_labels("help", caller_is_child=True) == ("Counselling", 2)
    assert C.base_labels("info") == ("Awareness/Information Provided", 1)
    assert C.base_labels("outside") == ("Signposting", 1)
    with pytest.raises(ValueError):
        C.base_labels("nonsense")


def test_assign_labels_noise_is_only_among_alternatives():
    rng = random.Random(0)
    for kind in C.KINDS:
        for pref in ("Counselling", "Referral"):
            base = C.base_labels(kind, pref)
            assert C.assign_labels(kind, rng, pref, noise=0.0) == (*base, False)
            inter, prio, noisy = C.assign_labels(kind, rng, pref, noise=1.0)
            assert noisy and prio == base[1]
            assert inter in C.plausible_alternatives(kind, base[0])
            assert inter != base[0]
    assert C.plausible_alternatives("danger", "Referral") == ("Counselling",)
    assert C.plausible_alternatives("ongoing", "Counselling") == ("Referral",)
    assert C.plausible_alternatives("ongoing", "Referral") == ("Counselling",)


def test_generated_labels_follow_rules_except_documented_noise(records):
    scen = C.load_scenarios()
    for r in records:
        base_inter, base_prio = C.base_labels(r.kind, scen[r.item.sub_category].intervention, r.caller == "self")
        assert r.item.priority == base_prio  # priority is never noised
        if r.noisy:
            assert r.item.intervention in C.plausible_alternatives(r.kind, base_inter)
        else:
            assert r.item.intervention == base_inter
        if r.kind == "danger":
            assert r.item.priority == 3
            assert r.item.intervention == "Referral" or r.noisy
    rate = sum(r.noisy for r in records) / len(records)
    assert 0.07 <= rate <= 0.13
    danger = [r for r in records if r.kind == "danger"]
    assert len(danger) > 500
    assert sum(r.item.intervention == "Referral" for r in danger) / len(danger) >= 0.85


def test_critical_subs_are_high_priority(records):
    for r in records:
        if r.item.sub_category in C.CRITICAL_SUBS:
            assert r.item.priority == 3


# ------------------------------------------------------------------ held-out set

def test_heldout_size_and_labels(heldout, labels):
    assert len(heldout) >= 60
    covered = C.covered_labels()["sub_category"]
    for item in heldout:
        assert C.label_problems(item) == [], item
        assert item.sub_category in covered, item.sub_category
        assert item.main_category == labels["sub_to_main"][item.sub_category]


def test_heldout_ids_unique_and_well_formed():
    raw = C.read_jsonl(C.HELDOUT_PATH)
    ids = [r["id"] for r in raw]
    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"heldout-\d{3}", i) for i in ids)
    for r in raw:
        assert set(r) == {"id", "narrative", "main_category", "sub_category", "intervention", "priority"}


def test_heldout_coverage(heldout):
    mains = Counter(i.main_category for i in heldout)
    for m in BIG_MAINS:
        assert mains[m] >= 5, m
    assert mains["Unknown"] >= 2
    subs = {i.sub_category for i in heldout}
    assert set(C.CRITICAL_SUBS) <= subs
    assert any(i.sub_category == "Bullying" and "school" in i.narrative.lower() for i in heldout)
    assert any(i.sub_category == "Drug/Alcohol Abuse" and i.intervention == "Awareness/Information Provided"
               for i in heldout)
    assert any(i.sub_category == "Info on Helpline" and re.search(r"open|hours|time", i.narrative, re.I)
               for i in heldout)


def test_heldout_labels_follow_the_same_rules(heldout):
    scen = C.load_scenarios()
    for item in heldout:
        s = scen[item.sub_category]
        allowed = {C.base_labels(k, s.intervention, child) for k in s.kinds for child in (False, True)}
        assert (item.intervention, item.priority) in allowed, item


def _sentences(text: str) -> set[str]:
    out = set()
    for part in re.split(r"[.!?\n]+", text):
        words = re.findall(r"[a-z0-9']+", part.lower())
        if len(words) >= 8:
            out.add(" ".join(words))
    return out


def test_heldout_not_in_generated_corpus(heldout, records):
    generated = {r.item.narrative.strip().lower() for r in records}
    gen_sentences: set[str] = set()
    for r in records:
        gen_sentences |= _sentences(r.item.narrative)
    for item in heldout:
        assert item.narrative.strip().lower() not in generated
        shared = _sentences(item.narrative) & gen_sentences
        assert not shared, (item.narrative, shared)


def test_heldout_shares_no_sentence_with_the_scenario_bank(heldout):
    texts = []
    for path in sorted(C.CORPUS_DIR.glob("*.json")):
        texts.extend(re.findall(r'"([^"]{30,})"', path.read_text(encoding="utf-8")))
    bank: set[str] = set()
    for t in texts:
        bank |= _sentences(re.sub(r"\{[A-Za-z_]+\}", "x", t))
    for item in heldout:
        assert not (_sentences(item.narrative) & bank), item.narrative


# ------------------------------------------------------------------ benchmark corpus

def test_benchmark_length_distribution():
    texts = C.benchmark_corpus(1000, seed=0)
    assert len(texts) == 1000
    lengths = [len(t.split()) for t in texts]
    assert 90 <= statistics.median(lengths) <= 170
    over = sum(x > 420 for x in lengths) / len(lengths)
    assert 0.05 <= over <= 0.20
    assert sum(x < 20 for x in lengths) >= 5
    assert all("{" not in t for t in texts)


def test_benchmark_deterministic():
    assert C.benchmark_corpus(50, seed=7) == C.benchmark_corpus(50, seed=7)
    assert C.benchmark_corpus(50, seed=7) != C.benchmark_corpus(50, seed=8)


def test_benchmark_records_are_labelled_validly():
    for item in C.benchmark_records(200, seed=1):
        assert C.label_problems(item) == []


# ------------------------------------------------------------------ transcripts

@pytest.mark.parametrize("target", [300, 3000])
def test_make_transcript_length_and_labels(target):
    item = C.make_transcript(random.Random(target), target)
    assert isinstance(item, C.LabelledNarrative)
    assert len(item.narrative.split()) >= target
    assert len(item.narrative.split()) <= target + 200
    assert C.label_problems(item) == []
    lines = item.narrative.splitlines()
    assert lines[0].startswith("Counsellor: ") and lines[1].startswith("Caller: ")
    assert all(line.startswith(("Counsellor: ", "Caller: ")) for line in lines)
    assert "{" not in item.narrative


def test_make_transcript_deterministic_and_for_a_chosen_sub():
    a = C.make_transcript(random.Random(5), 1000, sub_category="Child Trafficking")
    b = C.make_transcript(random.Random(5), 1000, sub_category="Child Trafficking")
    assert a == b
    assert a.sub_category == "Child Trafficking" and a.main_category == "VANE"
    assert (a.intervention, a.priority) in {("Referral", 3), ("Counselling", 3)}


# ------------------------------------------------------------------ JSONL and CLI

def test_dataclass_round_trip():
    item = C.generate_corpus(1, seed=2)[0]
    d = item.to_dict()
    assert set(d) == {"narrative", "main_category", "sub_category", "intervention", "priority"}
    assert C.LabelledNarrative.from_dict({**d, "id": "x"}) == item


def test_jsonl_round_trip(tmp_path):
    items = C.generate_corpus(25, seed=4)
    path = tmp_path / "sub" / "gen.jsonl"
    assert C.write_jsonl(path, items) == 25
    raw = C.read_jsonl(path)
    assert [r["id"] for r in raw[:2]] == ["gen-000001", "gen-000002"]
    assert list(raw[0]) == ["id", "narrative", "main_category", "sub_category", "intervention", "priority"]
    assert C.load_jsonl(path) == items
    # dicts keep their own ids
    C.write_jsonl(path, [{"id": "a-1", **items[0].to_dict()}])
    assert C.read_jsonl(path)[0]["id"] == "a-1"


def test_cli_writes_labelled_jsonl(tmp_path):
    out = tmp_path / "corpus.jsonl"
    proc = subprocess.run([sys.executable, "-m", "training.corpus", "--n", "40", "--seed", "0", "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = out.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 40
    first = json.loads(lines[0])
    assert first["id"] == "gen-000001"
    assert C.load_jsonl(out) == C.generate_corpus(40, seed=0)
