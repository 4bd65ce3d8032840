"""The checkpoint as an ONNX graph, exported once and kept, keyed by the checkpoint's content.

The graph is ``MultiTaskDistilBert.forward`` itself (torch.onnx's dynamo exporter), so
the four heads and the last layer computed at position 0 only survive the export.
onnxruntime's transformer optimizer then fuses the embeddings' LayerNorm, the
residual LayerNorms and the GELUs; int8 is onnxruntime's dynamic quantization of the
MatMuls (weights int8, activations quantized per batch).

Where the files live:
- a checkpoint that ships ``onnx/model.onnx`` (a Hub repo exported with Optimum, say)
  is used as it is, and its int8 is made from it;
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
EXPORT_FORMAT = "chs-onnx-2"
CACHE_ENV_VAR = ENGINE_CACHE_ENV_VAR
SHIPPED_ONNX = Path("onnx") / "model.onnx"
# bf16 (OpenVINO) compiles the fp32 graph with a lower inference precision: no file of its own.
FILE_FOR = {"fp32": "model.onnx", "bf16": "model.onnx", "int8": "model_int8.onnx"}
OPSET = 18


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


def onnx_model(checkpoint: Path, dtype: str, load_model: Callable[[], torch.nn.Module]) -> Path:
    """The ONNX file for ``dtype`` ('fp32' or 'int8'), exported (and quantized) now if not yet kept.

    ``load_model`` is called only when an export is needed.
    """
    shipped = checkpoint / SHIPPED_ONNX
    if FILE_FOR[dtype] == FILE_FOR["fp32"] and shipped.is_file():
        return shipped
    folder = cache_root(checkpoint) / content_key(checkpoint)
    target = folder / FILE_FOR[dtype]
    if target.is_file():
        return target
    from filelock import FileLock

    folder.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder / ".lock"), timeout=900):
        if target.is_file():  # another replica exported it while this one waited
            return target
        fp32 = shipped if shipped.is_file() else folder / FILE_FOR["fp32"]
        if not fp32.is_file():
            logger.info("exporting the checkpoint to ONNX (once; kept in %s)", folder)
            _atomic(fp32, lambda tmp: export_fp32(load_model(), tmp))
        if dtype == "int8":
            _atomic(target, lambda tmp: quantize_int8(fp32, tmp))
        _write_manifest(folder, checkpoint)
    return target


def _atomic(target: Path, write: Callable[[Path], None]) -> None:
    """Write through a temporary file in the same folder, then rename: a reader never sees half a file."""
    scratch = Path(tempfile.mkdtemp(prefix=".export-", dir=target.parent))
    try:
        tmp = scratch / target.name
        write(tmp)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def export_fp32(model: torch.nn.Module, out: Path) -> None:
    """Export ``model`` (ids, mask → four heads' logits), batch and length dynamic, then fuse for BERT."""
    from onnxruntime.transformers.optimizer import optimize_model

    model = model.float().cpu().eval()
    raw = out.parent / "raw" / "model.onnx"
    raw.parent.mkdir(exist_ok=True)
    ids = torch.full((2, 16), 1000, dtype=torch.long)
    mask = torch.ones_like(ids)
    mask[1, 8:] = 0
    batch, length = torch.export.Dim("batch"), torch.export.Dim("length", max=512)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the exporter's notes on renaming the shared dims
        torch.onnx.export(
            model, (ids, mask), str(raw), input_names=["input_ids", "attention_mask"], output_names=list(TASKS),
            dynamic_shapes={"input_ids": {0: batch, 1: length}, "attention_mask": {0: batch, 1: length}},
            dynamo=True, opset_version=OPSET, external_data=True, verbose=False,
        )
    config = model.config
    fused = optimize_model(str(raw), model_type="bert", num_heads=config.n_heads, hidden_size=config.dim)
    fused.save_model_to_file(str(out))  # one file: the base model's weights are well under 2 GB
    shutil.rmtree(raw.parent, ignore_errors=True)


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
