"""The whole case pipeline in one process: no Ray, no HTTP.

    normalize → tokenize → window → batched forward → aggregate → route

``InProcessPipeline`` wires the same functions the three Ray deployments call
(``deployments/``: the Preprocessor's ``CasePreparer``, the
Classifier's ``ModelRunner.classify``, the Router's ``CaseAssembler``),
and reads every setting from one ``AppArgs``, so a body it returns is the body
the service's ``/classify`` answers for the same narrative and the same args.
Offline evaluation, the benchmark's in-process phases and the LitServe peer
all classify through it.

``args.model`` is used as given: unlike ``build_app``, ``CHS_MODEL`` does not
override it here (pass ``args.model_copy(update={"model": args.resolved_model()})``
to get the service's choice). The request limits of ``AppArgs`` (body bytes,
narratives and windows a request) belong to the HTTP front and are not applied.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, NamedTuple, Sequence

import numpy as np
import torch

from deployments.core.config import AppArgs
from deployments.core.inference import ModelRunner
from deployments.core.labels import TASKS, LabelSet, resolve_taxonomy
from deployments.core.loading import CheckpointInfo, load_narrative_tokenizer, resolve_checkpoint
from deployments.core.postprocess import CaseAssembler, concat_window_probs
from deployments.core.preprocess import CasePlan, CasePreparer, NarrativeTokenizer
from deployments.core.routing import Classification, Routing
from deployments.core.windowing import TokenWindows

# The AppArgs fields that decide which model is loaded, where and how: changing any of them needs a new load.
LOAD_FIELDS = ("model", "revision", "accelerator", "engine", "dtype", "torch_threads", "min_agreement",
               "agreement_cases", "recheck_margin")


class CaseResult(NamedTuple):
    """One case: the response body, and the objects it was rendered from."""

    body: dict
    classification: Classification
    routing: Routing

    def labels(self, tasks: Sequence[str] = TASKS) -> dict[str, Any]:
        """Top label per task."""
        return {task: self.classification.for_task(task).label for task in tasks}


def _validated(args: AppArgs | Mapping[str, Any], overrides: Mapping[str, Any]) -> AppArgs:
    base = args.model_dump() if isinstance(args, AppArgs) else dict(args)
    return AppArgs.model_validate({**base, **overrides})


@dataclass(frozen=True, eq=False)
class InProcessPipeline:
    args: AppArgs
    backend: ModelRunner
    tokenizer: NarrativeTokenizer
    assembler: CaseAssembler
    # As the ingress prepares and screens cases; the request limits belong to the HTTP front: none here.
    preparer: CasePreparer

    @classmethod
    def from_args(cls, args: AppArgs | Mapping[str, Any], **overrides: Any) -> "InProcessPipeline":
        """Load the model ``args`` name. ``overrides`` are AppArgs fields (``dtype="fp32"``), validated with the rest."""
        args = _validated(args, overrides)
        backend = ModelRunner.from_args(args)
        tokenizer = load_narrative_tokenizer(resolve_checkpoint(args.model, args.revision))
        return cls(args, backend, tokenizer, cls._assembler(args, backend),
                   CasePreparer.from_args(args, tokenizer, limit_windows=False))

    @staticmethod
    def _assembler(args: AppArgs, backend: ModelRunner) -> CaseAssembler:
        # The taxonomy as the service resolves it under these args (the runner's labels take the defaults).
        labels = resolve_taxonomy(backend.labels, Path(backend.info.path), args.labels.taxonomy_file,
                                  args.labels.bundled_taxonomy).with_priority_high(args.labels.priority_high)
        return CaseAssembler.from_args(labels, args)

    def replace(self, **overrides: Any) -> "InProcessPipeline":
        """The same pipeline with other settings; the loaded model is kept unless a load setting changed."""
        args = _validated(self.args, overrides)
        if any(getattr(args, f) != getattr(self.args, f) for f in LOAD_FIELDS):
            return InProcessPipeline.from_args(args)
        return InProcessPipeline(args, self.backend, self.tokenizer, self._assembler(args, self.backend),
                                 CasePreparer.from_args(args, self.tokenizer, limit_windows=False))

    # ------------------------------------------------------------ facts

    @property
    def labels(self) -> LabelSet:
        return self.backend.labels

    @property
    def info(self) -> CheckpointInfo:
        return self.backend.info

    @property
    def device(self) -> torch.device:
        return self.backend.device

    @property
    def engine_name(self) -> str:
        return self.backend.engine_name

    @property
    def dtype_name(self) -> str:
        return self.backend.dtype_name

    # ------------------------------------------------------------ the three stages

    def prepare(
        self, narratives: Sequence[str], *, include_confidence: bool = True, include_chunks: bool = False
    ) -> tuple[TokenWindows, list[CasePlan]]:
        """Normalize, tokenize and window, as the ingress does."""
        if isinstance(narratives, str):
            raise TypeError("narratives must be a sequence of strings, not one string")
        return self.preparer.prepare(list(narratives), include_confidence=include_confidence,
                                     include_chunks=include_chunks)

    def forward(
        self, requests: Sequence[TokenWindows], *, on_microbatch: Callable[[int, int], None] | None = None
    ) -> list[dict[str, np.ndarray]]:
        """Per-task window probabilities of each request, batched as the model replica batches."""
        return self.backend.classify(
            requests, max_rows=self.args.batching.max_batch_size, max_tokens=self.args.batching.max_batch_tokens,
            pass_cost_tokens=self.args.batching.pass_cost_tokens, on_microbatch=on_microbatch,
        )

    def assemble(
        self, plans: Sequence[CasePlan], window_probs: Mapping[str, np.ndarray] | Sequence[Mapping[str, np.ndarray]]
    ) -> list[CaseResult]:
        """Aggregate each case's windows, pick labels and route, as the router does.

        ``window_probs``: the probabilities of every window of ``plans``, in order, in one
        mapping or in several (the parts are concatenated).
        """
        if not isinstance(window_probs, Mapping):
            window_probs = concat_window_probs(window_probs)
        return [CaseResult(*r) for r in self.assembler.assemble(plans, window_probs)]

    # ------------------------------------------------------------ all of it

    def classify_cases(
        self, narratives: Sequence[str], *, include_confidence: bool = True, include_chunks: bool = False
    ) -> list[CaseResult]:
        """One ``CaseResult`` per narrative, in order."""
        if len(narratives) == 0:
            return []
        windows, plans = self.prepare(narratives, include_confidence=include_confidence,
                                      include_chunks=include_chunks)
        (probs,) = self.forward([windows])
        return self.assemble(plans, probs)

    def classify(
        self, narratives: Sequence[str], *, include_confidence: bool = True, include_chunks: bool = False
    ) -> list[dict]:
        """Per narrative, the case body ``/classify`` answers (without ``success``, ``model`` and timing)."""
        return [r.body for r in self.classify_cases(narratives, include_confidence=include_confidence,
                                                    include_chunks=include_chunks)]

    def predict_labels(self, narratives: Sequence[str], tasks: Sequence[str] = TASKS) -> list[dict[str, Any]]:
        """Per narrative, the top label of each of ``tasks``."""
        return [r.labels(tasks) for r in self.classify_cases(narratives, include_confidence=False)]
