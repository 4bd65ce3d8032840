"""Score predictions against labels: accuracy, macro-F1, the most confused pairs.

Pure Python, here in the httpx-only client package so that ``chs-evaluate``
(which classifies through the HTTP API) can use it; the demo build and
``python -m training.finetune --eval`` (which classify in process, see
``training.evaluation``) call the same :func:`evaluation_report`. Labels are compared as
strings, so a priority of ``3`` and ``"3"`` are the same class.

Macro-F1 averages the per-class F1 over every class that occurs in the gold
labels or the predictions (scikit-learn's default), so predicting a class that
never occurs costs F1 too. A class's F1 is ``2·TP / (2·TP + FP + FN)``.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Mapping, Sequence

TASKS = ("main_category", "sub_category", "intervention", "priority")


def accuracy(gold: Sequence, predicted: Sequence) -> float:
    _check(gold, predicted)
    if not gold:
        return 0.0
    return sum(str(g) == str(p) for g, p in zip(gold, predicted)) / len(gold)


def per_class_f1(gold: Sequence, predicted: Sequence) -> dict[str, dict[str, float | int]]:
    """Per class: tp, fp, fn, support (gold count) and f1."""
    _check(gold, predicted)
    gold_s = [str(g) for g in gold]
    pred_s = [str(p) for p in predicted]
    classes = sorted(set(gold_s) | set(pred_s))
    out = {}
    for c in classes:
        tp = sum(1 for g, p in zip(gold_s, pred_s) if g == c and p == c)
        fp = sum(1 for g, p in zip(gold_s, pred_s) if g != c and p == c)
        fn = sum(1 for g, p in zip(gold_s, pred_s) if g == c and p != c)
        denominator = 2 * tp + fp + fn
        out[c] = {"tp": tp, "fp": fp, "fn": fn, "support": tp + fn, "f1": 2 * tp / denominator if denominator else 0.0}
    return out


def macro_f1(gold: Sequence, predicted: Sequence) -> float:
    per_class = per_class_f1(gold, predicted)
    if not per_class:
        return 0.0
    return sum(c["f1"] for c in per_class.values()) / len(per_class)


def confused_pairs(gold: Sequence, predicted: Sequence, top: int = 5) -> list[dict[str, Any]]:
    """The most frequent (gold, predicted) mistakes, most frequent first, ties by name."""
    _check(gold, predicted)
    counts = Counter((str(g), str(p)) for g, p in zip(gold, predicted) if str(g) != str(p))
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return [{"gold": g, "predicted": p, "count": n} for (g, p), n in ranked[:top]]


def task_report(gold: Sequence, predicted: Sequence, top_confused: int = 5) -> dict[str, Any]:
    correct = sum(str(g) == str(p) for g, p in zip(gold, predicted))
    return {
        "n": len(gold),
        "correct": correct,
        "accuracy": round(accuracy(gold, predicted), 4),
        "macro_f1": round(macro_f1(gold, predicted), 4),
        "classes": len(per_class_f1(gold, predicted)),
        "most_confused": confused_pairs(gold, predicted, top_confused),
    }


def evaluation_report(
    gold: Sequence[Mapping[str, Any]], predicted: Sequence[Mapping[str, Any]], top_confused: int = 5
) -> dict[str, Any]:
    """Gold records and predictions (mappings with the four task keys) → the report shared by all tools."""
    _check(gold, predicted)
    return {
        "n": len(gold),
        "tasks": {
            task: task_report([g[task] for g in gold], [p[task] for p in predicted], top_confused)
            for task in TASKS
        },
    }


def _check(gold: Sequence, predicted: Sequence) -> None:
    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold labels but {len(predicted)} predictions")


