"""Live accuracy from the counsellors' feedback. Pure: rows in, the /feedback/stats body out.

Per task, over the feedback received in the window:

* ``feedback``: feedback records that reviewed the case;
* ``corrections``: how many changed this task's label;
* ``agreement_rate``: the share where the model's label was kept (a task
  left out of ``corrections``, or corrected to the same label, counts as kept);
* ``confusions``: the most common (predicted → corrected) pairs;
* ``mean_rating``: the mean 1–5 rating of those feedback records that have one.

The same, per model version (``model_id@revision``), under ``by_model``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Mapping, Optional

from deployments.core.labels import TASKS

TOP_CONFUSIONS = 5


@dataclass(frozen=True)
class StatRow:
    """One current feedback: the model's labels, the labels after correction, and the rating."""

    model: str
    predicted: Mapping[str, object]
    final: Mapping[str, object]
    rating: Optional[int]


def _mean(values: list[int]) -> Optional[float]:
    return round(sum(values) / len(values), 4) if values else None


def _task_stats(rows: list[StatRow], task: str) -> dict:
    changed = [(str(r.predicted[task]), str(r.final[task])) for r in rows if r.final[task] != r.predicted[task]]
    n = len(rows)
    return {
        "feedback": n,
        "corrections": len(changed),
        "agreement_rate": round(1 - len(changed) / n, 4) if n else None,
        "confusions": [{"predicted": p, "corrected": c, "count": k}
                       for (p, c), k in sorted(Counter(changed).items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_CONFUSIONS]],
        "mean_rating": _mean([r.rating for r in rows if r.rating is not None]),
    }


def _group(rows: list[StatRow]) -> dict:
    return {
        "feedback": len(rows),
        "mean_rating": _mean([r.rating for r in rows if r.rating is not None]),
        "tasks": {task: _task_stats(rows, task) for task in TASKS},
    }


def feedback_stats(rows: Iterable[StatRow]) -> dict:
    rows = list(rows)
    by_model: dict[str, list[StatRow]] = {}
    for r in rows:
        by_model.setdefault(r.model, []).append(r)
    return {**_group(rows), "by_model": {m: _group(rs) for m, rs in sorted(by_model.items())}}


def agreement(predicted: Mapping[str, object], final: Mapping[str, object]) -> dict[str, bool]:
    """Per task: whether the model's label was kept."""
    return {task: final[task] == predicted[task] for task in TASKS}
