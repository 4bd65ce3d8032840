"""Evaluate a checkpoint in process, exactly as the service classifies; scored by ``clients.scoring``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from clients.scoring import TASKS, evaluation_report


def read_labelled_jsonl(path: str | Path) -> list:
    """Labelled narratives (``training.corpus.LabelledNarrative``) from JSONL."""
    from training.corpus import load_jsonl

    return load_jsonl(path)


def evaluate_checkpoint(
    path: str | Path, examples: Sequence, *, device: str = "cpu", max_length: int = 512, overlap: int = 128,
) -> dict[str, Any]:
    """Classify ``examples`` with the checkpoint at ``path`` exactly as the service does, in process.

    Same normalization, tokenizer, windows, batching and aggregation as the
    Ray deployments (``AppArgs`` defaults), without Ray. Returns
    :func:`evaluation_report` of the predictions.
    """
    from deployments.core.config import RoutingArgs
    from deployments.core.inference import BatchClassifier
    from deployments.core.loading import load_tokenizer
    from deployments.core.postprocess import CaseAssembler
    from deployments.core.preprocess import NarrativeTokenizer, prepare_cases
    from deployments.core.routing import RoutingPolicy

    accelerator = "cuda" if str(device).startswith("cuda") else "cpu"
    backend = BatchClassifier.load(str(path), accelerator=accelerator, dtype="fp32")
    tokenizer = NarrativeTokenizer(load_tokenizer(Path(path)))
    assembler = CaseAssembler(backend.labels, RoutingPolicy(RoutingArgs(), backend.labels), "weighted_mean", "max")
    predictions = []
    for start in range(0, len(examples), 64):
        chunk = examples[start : start + 64]
        windows, plans = prepare_cases([ex.narrative for ex in chunk], tokenizer, max_length=max_length,
                                       overlap=overlap, is_batch=True)
        (probs,) = backend.classify([windows], max_rows=32, max_tokens=8192)
        for _, classification, _ in assembler.assemble(plans, probs):
            predictions.append({task: classification.for_task(task).label for task in TASKS})
    gold = [{task: getattr(ex, task) for task in TASKS} for ex in examples]
    return evaluation_report(gold, predictions)
