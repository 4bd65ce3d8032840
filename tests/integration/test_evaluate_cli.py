"""``chs-evaluate`` against the served tiny app, as a subprocess: the report's counts are right.

The tiny model is untrained, so its answers are arbitrary but deterministic.
The gold labels are built from what the API answers: three cases copy its
answers, two get another main category, so the counts are known exactly.
"""

from __future__ import annotations

import json
import subprocess
import sys

from training.corpus import generate_corpus
from clients.scoring import TASKS


def run_evaluate(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "clients.evaluate", *args], capture_output=True, text=True,
                          timeout=300)


def test_report_counts_match_the_api_answers(http, served_tiny, tmp_path):
    narratives = [ex.narrative for ex in generate_corpus(5, seed=11)]
    r = http.post("/classify/batch", json={"narratives": narratives, "include_confidence": False})
    assert r.status_code == 200
    answers = [{task: res["classification"][task] for task in TASKS} for res in r.json()["results"]]
    labels = http.get("/info").json()["labels"]["main_category"]

    gold = [dict(a) for a in answers]
    for g in gold[3:]:  # two wrong main categories
        g["main_category"] = next(m for m in labels if m != g["main_category"])
    labelled = tmp_path / "labelled.jsonl"
    labelled.write_text("".join(json.dumps({"id": f"case-{i}", "narrative": n, **g}) + "\n"
                                for i, (n, g) in enumerate(zip(narratives, gold))))
    out = tmp_path / "reports" / "report.json"

    done = run_evaluate(str(labelled), "--url", served_tiny, "--out", str(out), "--batch-size", "2")
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    assert report["n"] == 5 and report["file"] == str(labelled) and report["url"] == served_tiny
    assert report["model"]["untrained"] is True
    main = report["tasks"]["main_category"]
    assert (main["n"], main["correct"], main["accuracy"]) == (5, 3, 0.6)
    expected_pairs = {(a["main_category"], g["main_category"]) for a, g in zip(answers[3:], gold[3:])}
    assert {(p["predicted"], p["gold"]) for p in main["most_confused"]} == expected_pairs
    assert sum(p["count"] for p in main["most_confused"]) == 2
    for task in ("sub_category", "intervention", "priority"):
        assert report["tasks"][task]["correct"] == 5 and report["tasks"][task]["macro_f1"] == 1.0
    assert "main_category" in done.stdout and "0.600" in done.stdout

    # The floor gate: 0.6 is under 0.7, so exit status 3, and the report is still printed.
    gated = run_evaluate(str(labelled), "--url", served_tiny, "--min-accuracy", "main_category=0.7")
    assert gated.returncode == 3, gated.stderr
    assert "under the accuracy floor: main_category 0.600 < 0.7" in gated.stderr


def test_unusable_input_is_refused_with_the_line_before_any_request(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"narrative": "x", "main_category": "VANE"}) + "\n")
    done = run_evaluate(str(bad), "--url", "http://127.0.0.1:9")  # nothing listens there
    assert done.returncode == 2
    assert "bad.jsonl:1: missing sub_category, intervention, priority" in done.stderr
