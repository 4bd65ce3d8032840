"""The classifier's batched forward path, without Ray.

``BatchClassifier`` owns a loaded model on one device and runs windows through
it with the batching policy of ``deployments.core.batching``. The Ray replica, the
benchmark's in-process baseline and the LitServe peer all call this same
code, so comparisons measure the serving machinery, not the model code.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from deployments.core.batching import run_batch
from deployments.core.labels import TASKS, LabelSet
from deployments.core.loading import (
    CheckpointInfo,
    load_labels,
    load_model,
    read_checkpoint_info,
    resolve_checkpoint,
    resolve_device,
    resolve_dtype,
)
from deployments.core.windowing import TokenWindows

DTYPE_NAMES = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}


@dataclass
class BatchClassifier:
    model: torch.nn.Module
    labels: LabelSet
    info: CheckpointInfo
    device: torch.device
    dtype: torch.dtype
    pad_id: int = 0

    @classmethod
    def load(
        cls,
        model: str,
        revision: str | None = None,
        *,
        accelerator: str = "auto",
        dtype: str = "auto",
        torch_threads: int | None = None,
    ) -> "BatchClassifier":
        if torch_threads:
            torch.set_num_threads(torch_threads)
        path = resolve_checkpoint(model, revision)
        labels = load_labels(path)
        device = resolve_device(accelerator)
        torch_dtype = resolve_dtype(dtype, device)
        net = load_model(path, labels).to(device)
        if device.type == "cuda" and torch_dtype != torch.float32:
            net = net.to(torch_dtype)  # on GPU, half weights are the fast path
        pad_id = _pad_id(path)
        return cls(net, labels, read_checkpoint_info(path, model, revision), device, torch_dtype, pad_id)

    @property
    def dtype_name(self) -> str:
        return DTYPE_NAMES[self.dtype]

    def _autocast(self):
        # On CPU, bf16 autocast keeps LayerNorm and softmax in fp32 and runs the matmuls on AMX.
        if self.device.type == "cpu" and self.dtype != torch.float32:
            return torch.autocast("cpu", dtype=self.dtype)
        return contextlib.nullcontext()

    @torch.inference_mode()
    def forward(self, ids: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
        """Padded ids and mask (rows, cols) → per-task probabilities (rows, n_labels), float32."""
        input_ids = torch.from_numpy(ids).to(self.device, non_blocking=True)
        attention = torch.from_numpy(mask).to(self.device, non_blocking=True)
        with self._autocast():
            logits = self.model(input_ids, attention)
        return {task: torch.softmax(l.float(), dim=-1).cpu().numpy() for task, l in zip(TASKS, logits)}

    def classify(
        self,
        requests: Sequence[TokenWindows],
        *,
        max_rows: int,
        max_tokens: int,
        on_microbatch: Callable[[int, int], None] | None = None,
    ) -> list[dict[str, np.ndarray]]:
        return run_batch(
            requests, self.forward, max_rows=max_rows, max_tokens=max_tokens, pad_id=self.pad_id,
            on_microbatch=on_microbatch,
        )

    def health_check(self) -> None:
        """A real one-row forward pass; raises if the model cannot run."""
        ids = np.array([[101, 102]], dtype=np.int64)
        probs = self.forward(ids, np.ones_like(ids))
        for task, p in probs.items():
            if not np.all(np.isfinite(p)) or abs(float(p.sum()) - 1.0) > 1e-3:
                raise RuntimeError(f"health check: {task} probabilities are not a distribution")


def _pad_id(path: Path) -> int:
    import json

    cfg = path / "config.json"
    return int(json.loads(cfg.read_text()).get("pad_token_id", 0) or 0)
