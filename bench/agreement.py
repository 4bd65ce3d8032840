"""How far a lower precision moves the answers: fp32 against ``--dtype``, through the in-process pipeline."""

from __future__ import annotations

from pathlib import Path

from bench.corpus import Corpus

TASKS = ("main_category", "sub_category", "intervention", "priority")


def run_agreement(checkpoint: Path, corpus: Corpus, dtype: str, threads: int) -> dict:
    """Share of identical labels, and the largest confidence gap, between fp32 and ``dtype``."""
    from deployments.core.classifier import CaseClassifier
    from deployments.core.config import AppArgs

    args = AppArgs(model=str(checkpoint), torch_threads=threads)
    outputs = {}
    for name in ("fp32", dtype):
        classifier = CaseClassifier.from_args(args, dtype=name)
        cases = [r.classification for r in classifier.classify_cases(corpus.narratives)]
        outputs[name] = (classifier.dtype_name, cases)
    resolved, low = outputs[dtype]
    _, ref = outputs["fp32"]
    same = {t: sum(a.for_task(t).label == b.for_task(t).label for a, b in zip(ref, low)) / len(ref) for t in TASKS}
    gap = max(abs(a.for_task(t).confidence - b.for_task(t).confidence) for a, b in zip(ref, low) for t in TASKS)
    return {"reference": "fp32", "dtype": resolved, "cases": len(ref),
            "identical_labels": {t: round(v, 4) for t, v in same.items()},
            "all_four_identical": round(sum(all(a.for_task(t).label == b.for_task(t).label for t in TASKS)
                                            for a, b in zip(ref, low)) / len(ref), 4),
            "max_confidence_difference": round(gap, 5)}
