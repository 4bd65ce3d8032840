"""The checkpoint as ONNX graphs, exported once and kept, keyed by the checkpoint's content.

The model is exported twice: as one graph, and in stages, one graph per encoder layer
(``EncoderStage``: the embeddings and layer 0, each middle layer, then the last layer at position 0
and the four heads; each stage's first output is the next one's input). A pass that may have to make
way for a more urgent one (``lanes.LaneGate``'s ``make_way``) runs the stages and can pause between
layers, as eager PyTorch does; otherwise a short case would wait for all of a 512-token window
(~220 ms on a 2-core EPYC). A pass that never pauses (the live lane, bare use) runs the one graph,
which is faster: in-process the graphs per layer cost OpenVINO 1-4% and ONNX Runtime 5-10%
(bench/RESULTS.md, "Exported engines make way too").

Each graph is the model's own code (torch.onnx's dynamo exporter). onnxruntime's transformer
optimizer then fuses the residual LayerNorms and the GELUs; int8 is onnxruntime's dynamic
quantization of the MatMuls (weights int8, activations quantized per batch), graph by graph.

Where the files live:
- a checkpoint that ships ``onnx/model.onnx`` (a Hub repo exported with Optimum, say)
  is used as it is, one graph that always runs whole, and its int8 is made from it;
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
from dataclasses import dataclass
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
WHOLE_FILE = "model.onnx"
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


@dataclass(frozen=True)
class Graphs:
    """An export's files for one dtype: the whole model as one graph, and the same model as one graph per
    encoder layer, in the order they run (none for a checkpoint's own single graph)."""

    whole: Path
    stages: tuple[Path, ...]

    @property
    def files(self) -> list[Path]:
        return [self.whole, *self.stages]


def onnx_graphs(checkpoint: Path, dtype: str, load_model: Callable[[], torch.nn.Module]) -> Graphs:
    """The ONNX graphs for ``dtype`` ('fp32', 'bf16' or 'int8'), exported (and quantized) now if not yet
    kept. bf16 (OpenVINO) compiles the fp32 graphs with a lower inference precision: no files of its own.
    ``load_model`` is called only when an export is needed.
    """
    shipped = checkpoint / SHIPPED_ONNX
    folder = cache_root(checkpoint) / content_key(checkpoint)
    if shipped.is_file():
        sources = Graphs(shipped, ())
    else:
        sources = Graphs(folder / WHOLE_FILE, tuple(folder / stage_file(i) for i in range(_n_layers(checkpoint))))
    targets = sources
    if dtype == "int8":
        targets = Graphs(folder / int8_file(sources.whole), tuple(folder / int8_file(s) for s in sources.stages))
    if all(target.is_file() for target in targets.files):
        return targets
    from filelock import FileLock

    folder.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder / ".lock"), timeout=900):
        missing = [(index, source) for index, source in zip([None, *range(len(sources.stages))], sources.files)
                   if not source.is_file()]  # another replica may have exported some meanwhile
        if missing:
            logger.info("exporting the checkpoint to ONNX (once; kept in %s)", folder)
            model = load_model().float().cpu().eval()
            for index, source in missing:
                _atomic(source, lambda tmp: export_graph(model, index, tmp))
        for source, target in zip(sources.files, targets.files):
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
        return self.model.encoder_layer(self.index, hidden, self.model.layer_mask(hidden, attention_mask))


def export_graph(model: torch.nn.Module, stage: int | None, out: Path) -> None:
    """Export ``model`` whole (``stage`` None: ids, mask → the four heads' logits) or its stage ``stage``
    (``EncoderStage``), batch and length dynamic, then fuse for BERT."""
    from onnxruntime.transformers.optimizer import optimize_model

    raw = out.parent / "raw" / out.name
    raw.parent.mkdir(exist_ok=True)
    ids = torch.full((2, 16), 1000, dtype=torch.long)
    mask = torch.ones_like(ids)
    mask[1, 8:] = 0
    x = ids
    if stage is None:
        module, first_input, last = model, IDS, True
    else:
        with torch.inference_mode():  # a sample input for the stage: what the stages before it give
            for earlier in range(stage):
                x = EncoderStage(model, earlier)(x, mask)
        x = x.clone()  # out of inference mode, for the exporter
        module = EncoderStage(model, stage).eval()
        first_input, last = IDS if stage == 0 else HIDDEN, module.is_last
    batch, length = torch.export.Dim("batch"), torch.export.Dim("length", max=512)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the exporter's notes on renaming the shared dims
        torch.onnx.export(
            module, (x, mask), str(raw), input_names=[first_input, MASK],
            output_names=list(TASKS) if last else [HIDDEN_OUT],
            dynamic_shapes=({0: batch, 1: length}, {0: batch, 1: length}),
            dynamo=True, opset_version=OPSET, external_data=True, verbose=False,
        )
    config = model.config
    fused = optimize_model(str(raw), model_type="bert", num_heads=config.n_heads, hidden_size=config.dim)
    fused.save_model_to_file(str(out))  # one file: the base model's weights are well under 2 GB
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
