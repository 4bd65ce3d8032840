"""Combine the windows of one narrative into one classification.

``weighted_mean`` (the default) averages each task's probabilities over the
windows, weighted by how many content tokens each window holds, so a short
tail window does not count as much as a full one. ``mean`` weighs windows
equally. ``max`` takes, per task, the window most confident in its own top
label. Priority defaults to ``max`` over the windows' predicted levels: a
disclosure of danger anywhere in a call raises the whole case. Every method
returns rows that are still probability distributions.
"""

from __future__ import annotations

from typing import Callable, Literal, Mapping, Sequence

import numpy as np

Aggregation = Literal["weighted_mean", "mean", "max"]
PriorityAggregation = Literal["max", "weighted_mean", "mean"]


def aggregate_task(probs: np.ndarray, weights: Sequence[float], method: Aggregation) -> np.ndarray:
    """``probs``: (n_windows, n_labels) → (n_labels,)."""
    probs = np.asarray(probs, dtype=np.float64)
    if probs.shape[0] == 1:
        return probs[0]
    if method == "weighted_mean":
        w = np.asarray(weights, dtype=np.float64)
        return (probs * (w / w.sum())[:, None]).sum(axis=0)
    if method == "mean":
        return probs.mean(axis=0)
    if method == "max":
        return probs[int(np.argmax(probs.max(axis=1)))]
    raise ValueError(f"unknown aggregation {method!r}")


def aggregate_priority(
    probs: np.ndarray, weights: Sequence[float], levels: Sequence[int], method: PriorityAggregation,
    urgency: Callable[[int], int] = int,
) -> np.ndarray:
    """Priority: by default, the window that predicts the most urgent level wins (``urgency`` orders the
    levels: the value itself for the model card's 'High (3)', its negative when 1 is the most urgent)."""
    probs = np.asarray(probs, dtype=np.float64)
    if method != "max" or probs.shape[0] == 1:
        return aggregate_task(probs, weights, method if method != "max" else "weighted_mean")
    levels_arr = np.asarray([urgency(level) for level in levels])
    predicted = levels_arr[np.argmax(probs, axis=1)]
    top = predicted.max()
    candidates = np.flatnonzero(predicted == top)
    # Among windows at the top level, the most confident one speaks for the case.
    best = candidates[int(np.argmax(probs[candidates].max(axis=1)))]
    return probs[best]


def aggregate_windows(
    window_probs: Mapping[str, np.ndarray],
    token_counts: Sequence[int],
    priority_levels: Sequence[int],
    method: Aggregation = "weighted_mean",
    priority_method: PriorityAggregation = "max",
    urgency: Callable[[int], int] = int,
) -> dict[str, np.ndarray]:
    out = {}
    for task, probs in window_probs.items():
        if task == "priority":
            out[task] = aggregate_priority(probs, token_counts, priority_levels, priority_method, urgency)
        else:
            out[task] = aggregate_task(probs, token_counts, method)
    return out
