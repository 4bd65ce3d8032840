"""The classifier's batched forward path, without Ray.

``ModelRunner`` owns a model, on one device and one engine
(``deployments.core.engines``), and runs windows through it with the batching policy of
``deployments.core.batching``. The Ray replica, the
benchmark's in-process baseline and the LitServe peer all call this same
code, so comparisons measure the serving machinery, not the model code.
"""

from __future__ import annotations

import copy
import logging
import os
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from deployments.core import engine_choice, engines, export
from deployments.core.batching import PASS_COST_TOKENS, run_batch
from deployments.core.engines import Engine, EngineChoice, TorchEngine
from deployments.core.labels import TASKS, LabelSet
from deployments.core.loading import (
    CheckpointInfo,
    load_labels,
    load_model,
    load_narrative_tokenizer,
    read_checkpoint_info,
    resolve_checkpoint,
    resolve_device,
)
from deployments.core.precision_gate import GATED, PrecisionGate
from deployments.core.windowing import TokenWindows

logger = logging.getLogger("ray.serve")


@dataclass
class ModelRunner:
    engine: Engine
    labels: LabelSet
    info: CheckpointInfo
    device: torch.device
    pad_id: int = 0
    # How the engine was chosen and admitted, for /info: each candidate's measured rate, the agreement figure.
    selection: dict = field(default_factory=dict)

    @classmethod
    def load(
        cls,
        model: str,
        revision: str | None = None,
        *,
        accelerator: str = "auto",
        engine: str = "auto",
        dtype: str = "auto",
        torch_threads: int | None = None,
        gate: PrecisionGate | None = None,
        recheck_margin: float = 0.0,
    ) -> "ModelRunner":
        """``gate``: the agreement a precision below fp32 must reach (``precision_gate``); None admits any.
        ``recheck_margin``: below fp32 on CPU, windows this close to a tie are decided in fp32 (``build_engine``)."""
        if torch_threads:
            torch.set_num_threads(torch_threads)
        path = resolve_checkpoint(model, revision)
        labels = load_labels(path)
        device = resolve_device(accelerator)
        choice = engines.resolve(engine, dtype, device)
        pad_id = _pad_id(path)
        net = load_model(path, labels)
        gated = gate is not None and choice.dtype in GATED
        # On CUDA a half engine converts the weights in place: the gate's fp32 reference keeps a copy.
        reference = TorchEngine(copy.deepcopy(net) if device.type == "cuda" else net, device, "fp32") if gated else None

        def build(name: str) -> Engine:
            return build_engine(EngineChoice(name, choice.dtype), net, path, device, torch_threads, pad_id,
                                recheck_margin)

        selection: dict = {}
        if choice.engine == "auto":
            backend, measured = engine_choice.pick(
                path, choice.dtype, list(choice.candidates), build,
                engine_choice.probe_batches(net.config.vocab_size, pad_id), torch_threads, recheck_margin)
            logger.info("%s", measured.summary())
            selection["engine_auto"] = measured.to_json()
        else:
            backend = build(choice.engine)
        if gated and backend.dtype_name in GATED:
            figure = gate.check(backend, reference, path, labels, load_narrative_tokenizer(path),
                                required=dtype != "auto")
            if figure is not None:
                logger.info("%s %s keeps all four labels of fp32 on %.2f%% of %d cases (%s); min_agreement %.2f%%",
                            backend.name, backend.dtype_name, 100 * figure["agreement"], figure["cases"],
                            figure["source"], 100 * figure["min_agreement"])
            selection["agreement"] = figure
        if isinstance(backend, engines.RecheckedEngine):
            selection["recheck_margin"] = backend.margin
        return cls(backend, labels, read_checkpoint_info(path, model, revision), device, pad_id, selection)

    @classmethod
    def from_args(cls, args) -> "ModelRunner":
        """The model as ``AppArgs`` ``args`` name it, its precision gated as they say."""
        return cls.load(args.model, args.revision, accelerator=args.accelerator, engine=args.engine, dtype=args.dtype,
                        torch_threads=args.torch_threads, gate=PrecisionGate.from_args(args),
                        recheck_margin=args.recheck_margin)

    @property
    def engine_name(self) -> str:
        return self.engine.name

    @property
    def dtype_name(self) -> str:
        return self.engine.dtype_name

    @property
    def passes_at_once(self) -> int:
        return self.engine.passes_at_once

    def forward(self, ids: np.ndarray, mask: np.ndarray, between_layers: engines.BetweenLayers = None,
                beside: engines.Beside = None) -> dict[str, np.ndarray]:
        """Padded ids and mask (rows, cols) → per-task probabilities (rows, n_labels), float32.
        ``between_layers``: called between the encoder's layers, where the engine runs them one by one;
        ``beside``: asked before each graph, whether another pass runs at the same time (``lanes.Held``)."""
        logits = self.engine.logits(ids, mask, between_layers, beside)
        return {task: engines.softmax(np.asarray(l)) for task, l in zip(TASKS, logits)}

    def classify(
        self,
        requests: Sequence[TokenWindows],
        *,
        max_rows: int,
        max_tokens: int,
        pass_cost_tokens: int = PASS_COST_TOKENS,
        on_microbatch: Callable[[int, int], None] | None = None,
        turn: Callable[[], AbstractContextManager] = nullcontext,
    ) -> list[dict[str, np.ndarray]]:
        return run_batch(
            requests, self.forward, max_rows=max_rows, max_tokens=max_tokens, pass_cost_tokens=pass_cost_tokens,
            pad_id=self.pad_id,
            on_microbatch=on_microbatch, turn=turn,
        )

    def health_check(self) -> None:
        """A real one-row forward pass; raises if the model cannot run."""
        ids = np.array([[101, 102]], dtype=np.int64)
        probs = self.forward(ids, np.ones_like(ids))
        for task, p in probs.items():
            if not np.all(np.isfinite(p)) or abs(float(p.sum()) - 1.0) > 1e-3:
                raise RuntimeError(f"health check: {task} probabilities are not a distribution")


def openvino_passes_at_once(threads: int | None) -> int:
    """Two passes at once where each can have a thread of its own (``engines.OpenVinoEngine``), else one."""
    return 2 if (threads or os.cpu_count() or 1) >= 2 else 1


def build_engine(choice: EngineChoice, model: torch.nn.Module, checkpoint: Path, device: torch.device,
                 threads: int | None, pad_id: int, recheck_margin: float = 0.0) -> Engine:
    """``choice`` ready to run. An exported engine that cannot be built, or that is not exact in fp32,
    falls back to eager PyTorch fp32 with a warning: a slower replica, never a dead one. ``recheck_margin``
    (CPU, below fp32): close calls run again on the same engine in fp32 (``engines.RecheckedEngine``)."""
    fast = _build(choice, model, checkpoint, device, threads, pad_id)
    if recheck_margin > 0 and device.type == "cpu" and fast.dtype_name != "fp32":
        exact = _build(EngineChoice(fast.name, "fp32"), model, checkpoint, device, threads, pad_id)
        return engines.RecheckedEngine(fast, exact, recheck_margin)
    return fast


def _build(choice: EngineChoice, model: torch.nn.Module, checkpoint: Path, device: torch.device,
           threads: int | None, pad_id: int) -> Engine:
    if choice.engine == "torch":
        return TorchEngine(model, device, choice.dtype)
    try:
        graphs = export.onnx_graphs(checkpoint, choice.dtype, lambda: model)
        if choice.engine == "onnxruntime":
            built = engines.OnnxRuntimeEngine(graphs.whole, graphs.stages, choice.dtype, threads)
        else:
            built = engines.OpenVinoEngine(graphs.whole, graphs.stages, choice.dtype, threads,
                                           passes_at_once=openvino_passes_at_once(threads))
        reference = TorchEngine(model, device, "fp32")
        gap, same = engines.largest_difference(built, reference, engines.probe_inputs(model.config.vocab_size, pad_id))
        if choice.dtype == "fp32" and (gap > engines.EXACT_TOLERANCE or not same):
            raise RuntimeError(f"its probabilities differ from PyTorch's by {gap:.2e} (labels identical: {same})")
        logger.info("engine %s %s from %s and %d graphs per layer; largest probability difference from PyTorch "
                    "fp32 on the probes %.2e", choice.engine, choice.dtype, graphs.whole, len(graphs.stages), gap)
        return built
    except Exception as exc:
        logger.warning("engine %s %s is unavailable (%s: %s); serving with eager PyTorch fp32 instead",
                       choice.engine, choice.dtype, type(exc).__name__, str(exc)[:300])
        return TorchEngine(model, device, "fp32")


def _pad_id(path: Path) -> int:
    import json

    cfg = path / "config.json"
    return int(json.loads(cfg.read_text()).get("pad_token_id", 0) or 0)
