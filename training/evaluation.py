"""Evaluate a checkpoint in process, exactly as the service classifies; scored by ``clients.scoring``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from clients.scoring import TASKS, evaluation_report


def evaluate_checkpoint(
    path: str | Path, examples: Sequence, *, device: str = "cpu", max_length: int | None = None,
    overlap: int | None = None,
) -> dict[str, Any]:
    """Classify ``examples`` with the checkpoint at ``path`` exactly as the service does, in process.

    Same normalization, tokenizer, windows, batching and aggregation as the
    Ray deployments (``AppArgs`` defaults, eager PyTorch fp32; ``max_length`` and ``overlap``
    override the window settings), through ``InProcessPipeline``, without Ray.
    Returns :func:`evaluation_report` of the predictions.
    """
    from deployments.core.in_process import InProcessPipeline
    from deployments.core.config import AppArgs

    # Eager PyTorch, whose kernels training.kernels pins, so eval.json is the same on every host;
    # the exact engines agree with it within 1e-3 (deployments/core/engines.py).
    settings = {"model": str(path), "accelerator": "cuda" if str(device).startswith("cuda") else "cpu",
                "engine": "torch", "dtype": "fp32"}
    if max_length is not None:
        settings["max_length"] = max_length
    if overlap is not None:
        settings["window_overlap"] = overlap
    classifier = InProcessPipeline.from_args(AppArgs(**settings))
    predictions = classifier.predict_labels([ex.narrative for ex in examples], TASKS)
    gold = [{task: getattr(ex, task) for task in TASKS} for ex in examples]
    return evaluation_report(gold, predictions)
