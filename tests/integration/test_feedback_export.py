"""The retraining loop on real components: corrections → chs-feedback-export → fine-tuning → chs-evaluate.

The service keeps narratives here (feedback.keep_narratives), so the
corrections of cases classified earlier become training examples with no text
sent again; one feedback also carries its own narrative. The exported file is
fed to ``python -m training.finetune`` (two steps, on the tiny checkpoint), the
result is served, and ``chs-evaluate`` scores it on the same file.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timezone

import httpx

from training.corpus import generate_corpus


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=600)


def test_export_feeds_finetuning_and_the_result_is_evaluated(serve_session, tiny_checkpoint, tmp_path):
    database_url = f"sqlite:///{tmp_path / 'var' / 'helpline.db'}"
    url = serve_session.deploy(model=str(tiny_checkpoint),
                               feedback={"database_url": database_url, "keep_narratives": True})
    examples = generate_corpus(4, seed=5)
    with httpx.Client(base_url=url, timeout=60) as http:
        labels = http.get("/info").json()["labels"]
        r = http.post("/classify/batch", json={"narratives": [e.narrative for e in examples],
                                               "call_ids": [f"exp-{i}" for i in range(len(examples))]})
        assert r.status_code == 200, r.text
        results = r.json()["results"]
        assert http.get("/cases/exp-0").json()["case"]["narrative_stored"] is True
        for i, (example, case) in enumerate(zip(examples, results)):
            corrections = {"main_category": example.main_category, "priority": example.priority}
            body = {"case_id": case["case_id"], "corrections": corrections, "rating": 3}
            if i == 0:
                body["narrative"] = example.narrative + " (sent by the case-management system)"
            assert http.post("/feedback", json=body).status_code == 201
        assert set(labels["main_category"]) >= {e.main_category for e in examples}

    out = tmp_path / "train.jsonl"
    today = datetime.now(timezone.utc).date().isoformat()
    done = run("-m", "clients.feedback_export", "--since", today, "-o", str(out), "--url", url)
    assert done.returncode == 0, done.stderr
    assert "4 training examples" in done.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 4
    by_id = {line["id"]: line for line in lines}
    for example, case in zip(examples, results):
        line = by_id[case["case_id"]]
        assert (line["main_category"], line["priority"]) == (example.main_category, example.priority)
        # The tasks nobody corrected keep the model's labels.
        assert line["sub_category"] == case["classification"]["sub_category"]["label"]
        assert line["intervention"] == case["classification"]["intervention"]["label"]
    assert by_id[results[0]["case_id"]]["narrative"].endswith("sent by the casemanagement system")
    assert run("-m", "clients.feedback_export", "--since", "yesterday", "-o", str(out)).returncode == 2

    retrained = tmp_path / "retrained"
    done = run("-m", "training.finetune", "--base", str(tiny_checkpoint), "--train", str(out), "--out",
               str(retrained), "--max-steps", "2", "--batch-size", "2", "--max-length", "128", "--device", "cpu",
               "--no-progress")
    assert done.returncode == 0, done.stderr[-3000:]
    assert (retrained / "config.json").is_file()

    url = serve_session.deploy(model=str(retrained), feedback={"database_url": database_url})
    report = tmp_path / "report.json"
    done = run("-m", "clients.evaluate", str(out), "--url", url, "--out", str(report))
    assert done.returncode == 0, done.stderr
    assert json.loads(report.read_text())["n"] == 4
