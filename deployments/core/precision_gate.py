"""A precision below fp32 is served only when enough cases keep all four labels against fp32.

bf16 and int8 run faster but move the answers, by an amount that depends on the checkpoint and the
CPU (bench/RESULTS.md, "Agreement"), so the replica measures it at startup on real narratives: the
checkpoint's held-out set, or a JSONL the operator names (``AppArgs.agreement_cases``). Each case
goes through the windowing and aggregation the service applies, on the candidate engine and on
eager PyTorch fp32; the figure is the share of cases whose main category, sub category,
intervention and priority are all the same. Below ``min_agreement`` the replica refuses to start
(``AgreementTooLowError``, a ``ModelUnavailableError``: Serve stops retrying a constructor that
fails this way), and ``/info`` reports the figure of one that starts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from deployments.core.aggregation import aggregate_windows
from deployments.core.batching import run_batch
from deployments.core.engines import Beside, BetweenLayers, Engine, softmax
from deployments.core.errors import ModelUnavailableError
from deployments.core.labels import BUNDLED_LABELS_DIR, TASKS, LabelSet
from deployments.core.preprocess import NarrativeTokenizer, prepare_cases

# The precisions that must pass the gate; fp32 on any engine is exact (checked in inference.build_engine).
GATED = ("bf16", "fp16", "int8")
# The file a checkpoint ships its held-out narratives in ("narrative" per line).
SHIPPED_CASES = "heldout.jsonl"
# Where a checkpoint built by this repository (training/demo.py) took the held-out set its eval.json names.
DATA_DIR = BUNDLED_LABELS_DIR.parents[1]


class AgreementTooLowError(ModelUnavailableError):
    """Too few cases keep their labels at the asked precision: the replica must not serve it."""


def read_narratives(path: Path) -> list[str]:
    """The "narrative" of every line of a JSONL file (the held-out and feedback-export format)."""
    narratives = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            narratives.append(str(json.loads(line)["narrative"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise ModelUnavailableError(f"agreement cases {path}, line {number}: no 'narrative' ({exc})") from exc
    return narratives


def find_cases(checkpoint: Path, named: Optional[str]) -> Optional[tuple[list[str], str]]:
    """(narratives, where from): the operator's file, else the checkpoint's held-out set, else None.

    A checkpoint ships its held-out set as ``heldout.jsonl``, or names it in ``eval.json``'s "dataset"
    (the demo does: the repository's ``data/heldout.jsonl``, the cases its evaluation ran on).
    """
    if named:
        path = Path(named).expanduser()
        if not path.is_file():
            raise ModelUnavailableError(f"agreement_cases '{named}' is not a file")
        return read_narratives(path), str(path)
    if (checkpoint / SHIPPED_CASES).is_file():
        return read_narratives(checkpoint / SHIPPED_CASES), str(checkpoint / SHIPPED_CASES)
    try:
        dataset = json.loads((checkpoint / "eval.json").read_text(encoding="utf-8")).get("dataset")
    except (OSError, ValueError, AttributeError):
        return None
    if isinstance(dataset, str) and Path(dataset).name == dataset and (DATA_DIR / dataset).is_file():
        return read_narratives(DATA_DIR / dataset), f"data/{dataset}"
    return None


@dataclass(frozen=True)
class PrecisionGate:
    """What the gate needs besides the engines: the cases, the bar, and how the service windows and aggregates."""

    cases: Optional[str] = None
    min_agreement: float = 0.99
    max_length: int = 512
    window_overlap: int = 128
    aggregation: str = "weighted_mean"
    priority_aggregation: str = "max"

    @classmethod
    def from_args(cls, args) -> "PrecisionGate":
        return cls(args.agreement_cases, args.min_agreement, args.max_length, args.window_overlap, args.aggregation,
                   args.priority_aggregation)

    def check(self, candidate: Engine, reference: Engine, checkpoint: Path, labels: LabelSet,
              tokenizer: NarrativeTokenizer, *, required: bool) -> Optional[dict]:
        """The figure, {"agreement", "cases", "source", "min_agreement"}; raises ``AgreementTooLowError`` under
        the bar. Without cases: None when the precision was not asked for (``required`` False: 'auto' on a
        GPU) or the bar is 0; otherwise a refusal saying how to provide them."""
        found = find_cases(checkpoint, self.cases)
        if found is None or not found[0]:
            if not required or self.min_agreement <= 0:
                return None
            raise AgreementTooLowError(
                f"dtype {candidate.dtype_name} needs its agreement with fp32 measured, and the checkpoint ships no "
                f"held-out set: name a JSONL of narratives in agreement_cases, or set min_agreement 0 to serve it "
                f"unmeasured")
        narratives, source = found
        kept = agreement(candidate, reference, narratives, tokenizer, labels, self)
        figure = {"agreement": round(kept, 4), "cases": len(narratives), "source": source,
                  "min_agreement": self.min_agreement}
        if kept < self.min_agreement:
            raise AgreementTooLowError(
                f"{candidate.name} {candidate.dtype_name} keeps all four labels of fp32 on {kept:.2%} of the "
                f"{len(narratives)} cases of {source}, under min_agreement {self.min_agreement:.2%}: serve fp32, "
                f"or lower min_agreement knowingly")
        return figure


def case_labels(engine: Engine, narratives: Sequence[str], tokenizer: NarrativeTokenizer, labels: LabelSet,
                gate: PrecisionGate) -> list[tuple[int, ...]]:
    """Each case's top label per task (indices, ``TASKS`` order), windowed and aggregated as the service does."""
    windows, plans = prepare_cases(narratives, tokenizer, max_length=gate.max_length, overlap=gate.window_overlap)

    def forward(ids: np.ndarray, mask: np.ndarray, make_way: BetweenLayers = None,
                beside: Beside = None) -> dict[str, np.ndarray]:
        logits = engine.logits(ids, mask, make_way, beside)
        return {task: softmax(np.asarray(head)) for task, head in zip(TASKS, logits)}

    (probs,) = run_batch([windows], forward, max_rows=32, max_tokens=2048, pad_id=tokenizer.pad_id)
    out, start = [], 0
    for plan in plans:
        stop = start + plan.n_windows
        case = aggregate_windows({task: probs[task][start:stop] for task in TASKS}, plan.token_counts(),
                                 labels.priority, gate.aggregation, gate.priority_aggregation, labels.urgency)
        out.append(tuple(int(np.argmax(case[task])) for task in TASKS))
        start = stop
    return out


def agreement(candidate: Engine, reference: Engine, narratives: Sequence[str], tokenizer: NarrativeTokenizer,
              labels: LabelSet, gate: PrecisionGate) -> float:
    """The share of ``narratives`` whose four labels ``candidate`` gives as ``reference`` does."""
    want = case_labels(reference, narratives, tokenizer, labels, gate)
    got = case_labels(candidate, narratives, tokenizer, labels, gate)
    return sum(a == b for a, b in zip(want, got)) / len(narratives)
