"""The checkpoint as an ONNX graph, exported once and kept, keyed by the checkpoint's content.

The model is exported in stages, one graph per encoder layer (``EncoderStage``): the embeddings
and layer 0, each middle layer, then the last layer at position 0 and the four heads. Each stage's
first output is the next one's input. So an exported engine, like eager PyTorch, can pause between
layers for a more urgent pass (``lanes.LaneGate``'s ``make_way``); one graph of the whole model runs
whole, and a short case would wait for all of a 512-token window (~220 ms on a 2-core EPYC).
Running six graphs instead of one costs OpenVINO about 1% (bench/RESULTS.md).

Each stage is the model's own code (torch.onnx's dynamo exporter). onnxruntime's transformer
optimizer then fuses the residual LayerNorms and the GELUs; int8 is onnxruntime's dynamic
quantization of the MatMuls (weights int8, activations quantized per batch), stage by stage.

Where the files live:
- a checkpoint that ships ``onnx/model.onnx`` (a Hub repo exported with Optimum, say)
  is used as it is, one graph that runs whole, and its int8 is made from it;
- otherwise ``<checkpoint>/onnx-cache/<key>/`` when the checkpoint is a writable local
  directory, else ``$HF_HOME/helpline-serve/onnx/<key>/`` (never inside a Hub
  snapshot); ``CHS_ENGINE_CACHE`` names another root.

``<key>`` hashes the weights, config.json and ``EXPORT_FORMAT``, so a changed
checkpoint or exporter gets a new export and a replica restart never re-exports. A file
lock makes replicas that start together on one node export once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Callable

import torch

from deployments.core.config import ENGINE_CACHE_ENV_VAR
from deployments.core.labels import TASKS
from deployments.core.loading import WEIGHT_FILES

logger = logging.getLogger("ray.serve")

# Bump when the exported graph changes (exporter settings, fusions, the model's forward).
EXPORT_FORMAT = "chs-onnx-3"
CACHE_ENV_VAR = ENGINE_CACHE_ENV_VAR
SHIPPED_ONNX = Path("onnx") / "model.onnx"
OPSET = 18
# A stage's inputs and outputs: the first takes token ids, the others the previous stage's output.
IDS, HIDDEN, HIDDEN_OUT, MASK = "input_ids", "hidden", "hidden_out", "attention_mask"


def content_key(checkpoint: Path) -> str:
    """sha256 of what the export depends on: the export format, config.json and the weights."""
    digest = hashlib.sha256(EXPORT_FORMAT.encode())
    weights = next((checkpoint / n for n in WEIGHT_FILES if (checkpoint / n).is_file()), None)
    for file in (checkpoint / "config.json", weights):
        if file is None:
            continue
        digest.update(file.name.encode())
        with open(file, "rb") as stream:
            for block in iter(lambda: stream.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:24]


def cache_root(checkpoint: Path) -> Path:
    if os.environ.get(CACHE_ENV_VAR):
        return Path(os.environ[CACHE_ENV_VAR])
    from huggingface_hub import constants

    hub_cache = Path(constants.HF_HUB_CACHE).resolve()
    in_hub_cache = hub_cache == checkpoint or hub_cache in checkpoint.parents
    if not in_hub_cache and os.access(checkpoint, os.W_OK):
        return checkpoint / "onnx-cache"
    return Path(constants.HF_HOME) / "helpline-serve" / "onnx"


def onnx_stages(checkpoint: Path, dtype: str, load_model: Callable[[], torch.nn.Module]) -> list[Path]:
    """The ONNX graphs for ``dtype`` ('fp32', 'bf16' or 'int8'), in the order they run, exported (and
    quantized) now if not yet kept: one per encoder layer, or the checkpoint's own single graph.

    bf16 (OpenVINO) compiles the fp32 graphs with a lower inference precision: no files of its own.
    ``load_model`` is called only when an export is needed.
    """
    shipped = checkpoint / SHIPPED_ONNX
    folder = cache_root(checkpoint) / content_key(checkpoint)
    sources = [shipped] if shipped.is_file() else [folder / stage_file(i) for i in range(_n_layers(checkpoint))]
    targets = [folder / int8_file(source) for source in sources] if dtype == "int8" else sources
    if all(target.is_file() for target in targets):
        return targets
    from filelock import FileLock

    folder.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder / ".lock"), timeout=900):
        if not all(source.is_file() for source in sources):  # another replica may have exported meanwhile
            logger.info("exporting the checkpoint to ONNX (once; kept in %s)", folder)
            model = load_model().float().cpu().eval()
            for index, source in enumerate(sources):
                if not source.is_file():
                    _atomic(source, lambda tmp: export_stage(model, index, tmp))
        for source, target in zip(sources, targets):
            if not target.is_file():
                _atomic(target, lambda tmp: quantize_int8(source, tmp))
        _write_manifest(folder, checkpoint)
    return targets


def stage_file(index: int) -> str:
    return f"stage-{index}.onnx"


def int8_file(fp32: Path) -> str:
    return f"{fp32.stem}_int8.onnx"


def _n_layers(checkpoint: Path) -> int:
    config = json.loads((checkpoint / "config.json").read_text(encoding="utf-8"))
    return int(config["n_layers"])


class EncoderStage(torch.nn.Module):
    """Stage ``index`` of ``MultiTaskDistilBert.forward``: the embeddings and layer 0 (index 0), layer
    ``index``, or, for the last index, the last layer at position 0 and the four heads. Each is the
    model's own code, so the stages in order compute what ``forward`` does."""

    def __init__(self, model: torch.nn.Module, index: int):
        super().__init__()
        self.model, self.index = model, index

    @property
    def is_last(self) -> bool:
        return self.index == self.model.n_layers - 1

    def forward(self, x: torch.Tensor, attention_mask: torch.Tensor):
        hidden = self.model.distilbert.embeddings(x) if self.index == 0 else x
        if self.is_last:
            return self.model.heads(hidden, attention_mask)
        return self.model.encoder_layer(self.index, hidden, attention_mask)


def export_stage(model: torch.nn.Module, index: int, out: Path) -> None:
    """Export stage ``index`` of ``model`` (``EncoderStage``), batch and length dynamic, then fuse for BERT."""
    from onnxruntime.transformers.optimizer import optimize_model

    raw = out.parent / "raw" / out.name
    raw.parent.mkdir(exist_ok=True)
    ids = torch.full((2, 16), 1000, dtype=torch.long)
    mask = torch.ones_like(ids)
    mask[1, 8:] = 0
    x = ids
    with torch.inference_mode():  # a sample input for the stage: what the stages before it give
        for earlier in range(index):
            x = EncoderStage(model, earlier)(x, mask)
    x = x.clone()  # out of inference mode, for the exporter
    stage = EncoderStage(model, index).eval()
    batch, length = torch.export.Dim("batch"), torch.export.Dim("length", max=512)
    outputs = list(TASKS) if stage.is_last else [HIDDEN_OUT]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the exporter's notes on renaming the shared dims
        torch.onnx.export(
            stage, (x, mask), str(raw), input_names=[IDS if index == 0 else HIDDEN, MASK], output_names=outputs,
            dynamic_shapes={"x": {0: batch, 1: length}, "attention_mask": {0: batch, 1: length}},
            dynamo=True, opset_version=OPSET, external_data=True, verbose=False,
        )
    config = model.config
    fused = optimize_model(str(raw), model_type="bert", num_heads=config.n_heads, hidden_size=config.dim)
    fused.save_model_to_file(str(out))  # one file: a stage's weights are well under 2 GB
    shutil.rmtree(raw.parent, ignore_errors=True)


def _atomic(target: Path, write: Callable[[Path], None]) -> None:
    """Write through a temporary file in the same folder, then rename: a reader never sees half a file."""
    scratch = Path(tempfile.mkdtemp(prefix=".export-", dir=target.parent))
    try:
        tmp = scratch / target.name
        write(tmp)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def quantize_int8(fp32: Path, out: Path) -> None:
    """Dynamic int8: per-channel weight scales, and 7-bit weights (``reduce_range``).

    On CPUs without VNNI (AVX2 only, AVX-512 without VNNI) the u8×s8 products go through
    vpmaddubsw, which saturates full-range weights; 7-bit weights never saturate. On the
    held-out set of the demo build of the time, that took the cases keeping all four labels
    from 82.7% to 95.1% (bench/RESULTS.md, "Agreement").
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(fp32), str(out), weight_type=QuantType.QInt8, per_channel=True, reduce_range=True)


def _write_manifest(folder: Path, checkpoint: Path) -> None:
    import onnxruntime

    manifest = {"format": EXPORT_FORMAT, "checkpoint": str(checkpoint), "torch": torch.__version__,
                "onnxruntime": onnxruntime.__version__, "opset": OPSET,
                "files": sorted(p.name for p in folder.glob("*.onnx"))}
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
