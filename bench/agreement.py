"""How far an engine or precision moves the answers, against eager PyTorch fp32, in process.

For each candidate (engine, dtype) and each case set: the share of identical labels per
task and on all four together, the largest confidence difference, and how many routing
decisions (escalate, human review) changed, in which direction.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

TASKS = ("main_category", "sub_category", "intervention", "priority")
REFERENCE = ("torch", "fp32")
# What `python -m bench --agreement` compares on a CPU (and bf16 where the CPU runs it natively).
CPU_CANDIDATES = (("onnxruntime", "fp32"), ("openvino", "fp32"), ("onnxruntime", "int8"), ("torch", "int8"))


def compare(reference: Sequence, candidate: Sequence) -> dict:
    """``reference`` and ``candidate``: ``CaseResult`` lists for the same narratives, in order."""
    n = len(reference)
    same = {t: sum(a.classification.for_task(t).label == b.classification.for_task(t).label
                   for a, b in zip(reference, candidate)) for t in TASKS}
    all_four = sum(a.labels() == b.labels() for a, b in zip(reference, candidate))
    gap = max((abs(a.classification.for_task(t).confidence - b.classification.for_task(t).confidence)
               for a, b in zip(reference, candidate) for t in TASKS), default=0.0)
    changed = {}
    for decision in ("escalate", "human_review"):
        on = sum(not getattr(a.routing, decision) and getattr(b.routing, decision) for a, b in zip(reference, candidate))
        off = sum(getattr(a.routing, decision) and not getattr(b.routing, decision) for a, b in zip(reference, candidate))
        changed[decision] = {"turned_on": on, "turned_off": off}
    return {"cases": n, "identical_labels": {t: round(v / n, 4) for t, v in same.items()},
            "all_four_identical": round(all_four / n, 4), "all_four_identical_cases": all_four,
            "max_confidence_difference": round(gap, 6), "routing_changed": changed}


def run_agreement(checkpoint: Path, narratives: Sequence[str], candidates: Iterable[tuple[str, str]],
                  threads: int) -> dict:
    """Every candidate, (engine, dtype) or (engine, dtype, recheck_margin), against eager PyTorch fp32 on
    ``narratives``, through ``InProcessPipeline``."""
    from deployments.core.in_process import InProcessPipeline
    from deployments.core.config import AppArgs

    # min_agreement 0: this measures the agreement the serving gate would refuse, rather than refusing it.
    args = AppArgs(model=str(checkpoint), accelerator="cpu", torch_threads=threads, min_agreement=0)
    reference_clf = InProcessPipeline.from_args(args, engine=REFERENCE[0], dtype=REFERENCE[1])
    reference = reference_clf.classify_cases(narratives)
    rows = {}
    for engine, dtype, *margin in candidates:
        clf = reference_clf.replace(engine=engine, dtype=dtype, recheck_margin=margin[0] if margin else 0.0)
        note = f" recheck {margin[0]}" if margin else ""
        resolved = f"{clf.engine_name} {clf.dtype_name}"
        if resolved != f"{engine} {dtype}":  # a fallback: the row would measure PyTorch against itself
            rows[f"{engine} {dtype}{note}"] = {"unavailable": f"fell back to {resolved}"}
            continue
        rows[resolved + note] = compare(reference, clf.classify_cases(narratives))
    return {"reference": " ".join(REFERENCE), "checkpoint": checkpoint.name, "candidates": rows}


def heldout_narratives(checkpoint: Path) -> list[str]:
    """The demo's held-out set (data/heldout.jsonl), the cases eval.json is measured on."""
    from deployments.core.labels import LabelSet
    from training.demo import heldout_examples

    return [ex.narrative for ex in heldout_examples(LabelSet.from_dir(checkpoint))]


def markdown(name: str, table: dict) -> str:
    lines = [f"{name} ({table['checkpoint']}), against {table['reference']}:", "",
             "| engine dtype | cases | main | sub | intervention | priority | all four | max Δ confidence | "
             "escalate changed | review changed |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for key, row in table["candidates"].items():
        if "unavailable" in row:
            lines.append(f"| {key} | {row['unavailable']} |||||||||")
            continue
        same, changed = row["identical_labels"], row["routing_changed"]
        lines.append(
            f"| {key} | {row['cases']} | " + " | ".join(f"{same[t]:.2%}" for t in TASKS)
            + f" | {row['all_four_identical']:.2%} | {row['max_confidence_difference']:.1e} | "
            + " | ".join(f"+{changed[d]['turned_on']}/−{changed[d]['turned_off']}" for d in ("escalate", "human_review"))
            + " |")
    return "\n".join(lines) + "\n"
