"""Find, check and load a checkpoint: from the Hugging Face Hub or a local directory.

Kept apart from the model class so the same network can be built from a Hub
snapshot, a local export or the project's own builder. Every failure here
names the model and says how to point at a local checkpoint: a replica that
cannot get its model must fail fast, not retry for ever.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deployments.core.errors import ModelUnavailableError
from deployments.core.config import LabelArgs
from deployments.core.labels import LabelSet, resolve_taxonomy
from deployments.core.preprocess import NarrativeTokenizer

# torch and transformers are imported where the weights or a transformers tokenizer are loaded, not
# here: the ingress, the Router and the intake's consumer read labels and tokenize but never run the
# model, and importing both cost each of those replicas ~5 CPU-s at every start.
if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase

    from deployments.core.model import MultiTaskDistilBert

logger = logging.getLogger("ray.serve")

# model.pt: a plain torch state dict, the layout of an open OpenCHS pull request (with label_maps.json).
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.pt")
# Buffers that transformers 4.x saved but the current model recomputes.
IGNORED_KEYS = ("distilbert.embeddings.position_ids",)
# onnx/model.onnx: a repo that ships an export is served from it (deployments.core.export).
HUB_FILE_PATTERNS = ["*.json", "*.txt", "*.safetensors", "pytorch_model.bin", "model.pt", "*.model",
                     "onnx/model.onnx", "onnx/model.onnx_data"]

HOW_TO_FIX = (
    "Point CHS_MODEL (or the 'model' argument) at a local checkpoint directory, for example "
    "`python -m training.checkpoint --size demo --out models/demo` and then CHS_MODEL=models/demo."
)


@dataclass(frozen=True)
class CheckpointInfo:
    """What /info says about the checkpoint, read from its files."""

    model_id: str
    revision: str | None
    path: str
    untrained: bool
    note: str | None
    evaluation: dict[str, Any] | None = field(default=None)


def resolve_checkpoint(model: str, revision: str | None = None) -> Path:
    """A local directory as is; a Hub repo id through the HF cache (HF_HOME, HF_HUB_OFFLINE)."""
    local = Path(model).expanduser()
    if local.is_dir():
        return local.resolve()
    if model.startswith((".", "/", "~")) or os.sep in model.strip("/").split("/", 1)[-1]:
        raise ModelUnavailableError(f"Model directory '{model}' does not exist. {HOW_TO_FIX}")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id=model, revision=revision, allow_patterns=HUB_FILE_PATTERNS))
    except Exception as exc:  # offline, unreachable, missing repo or revision: all the same to the operator
        raise ModelUnavailableError(
            f"Cannot load model '{model}'"
            + (f" at revision '{revision}'" if revision else "")
            + f" from the Hugging Face Hub or its cache ({type(exc).__name__}). {HOW_TO_FIX}"
        ) from None


def read_checkpoint_info(path: Path, model_id: str, revision: str | None) -> CheckpointInfo:
    config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    evaluation = None
    if (path / "eval.json").is_file():
        evaluation = json.loads((path / "eval.json").read_text(encoding="utf-8"))
    return CheckpointInfo(
        model_id=model_id,
        revision=revision or config.get("chs_revision"),
        path=str(path),
        untrained=bool(config.get("chs_untrained", False)),
        note=config.get("chs_note"),
        evaluation=evaluation,
    )


def load_labels(path: Path, label_args: LabelArgs | None = None) -> LabelSet:
    """The checkpoint's labels, with the taxonomy ``label_args`` says to take (``labels.resolve_taxonomy``)."""
    try:
        labels = LabelSet.from_dir(path)
    except FileNotFoundError as exc:
        raise ModelUnavailableError(f"Checkpoint at {path} is incomplete: {exc}") from None
    label_args = label_args or LabelArgs()
    labels = resolve_taxonomy(labels, path, label_args.taxonomy_file, label_args.bundled_taxonomy)
    return labels.with_priority_high(label_args.priority_high)


def load_tokenizer(path: Path) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path))


def load_narrative_tokenizer(path: Path) -> NarrativeTokenizer:
    """The tokenizer the request path uses. A tokenizer saved by transformers 5 (``"backend":
    "tokenizers"`` in tokenizer_config.json, as ``training.checkpoint`` writes it) is its tokenizer.json
    as is, read with the Rust library alone; any other is built by transformers, which may convert or
    adjust it (tests/unit/test_preprocess.py holds the two ways equal)."""
    config_file, tokenizer_file = path / "tokenizer_config.json", path / "tokenizer.json"
    config = json.loads(config_file.read_text(encoding="utf-8")) if config_file.is_file() else {}
    if config.get("backend") != "tokenizers" or not tokenizer_file.is_file():
        return NarrativeTokenizer.from_hf(load_tokenizer(path))
    from tokenizers import Tokenizer

    backend = Tokenizer.from_file(str(tokenizer_file))

    def token_id(name: str, default: str) -> int | None:
        token = config.get(name, default)
        token = token.get("content") if isinstance(token, dict) else token
        return backend.token_to_id(token) if token else None

    cls_id, sep_id = token_id("cls_token", "[CLS]"), token_id("sep_token", "[SEP]")
    if cls_id is None or sep_id is None:
        raise ModelUnavailableError(f"Checkpoint at {path}: its tokenizer has no [CLS] or [SEP] token.")
    return NarrativeTokenizer(backend, cls_id=cls_id, sep_id=sep_id, pad_id=token_id("pad_token", "[PAD]") or 0)


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    import torch

    for name in WEIGHT_FILES:
        file = path / name
        if file.is_file():
            if name.endswith(".safetensors"):
                from safetensors.torch import load_file

                state = load_file(str(file))
            else:
                try:
                    state = torch.load(str(file), map_location="cpu", weights_only=True)
                except Exception as exc:  # a pickled module, not a state dict: never unpickle code
                    raise ModelUnavailableError(
                        f"{file} is not a plain state dict of tensors ({type(exc).__name__}).") from None
            if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
                raise ModelUnavailableError(f"{file} is not a state dict of tensors.")
            return {k: v for k, v in state.items() if k not in IGNORED_KEYS}
    raise ModelUnavailableError(f"Checkpoint at {path} has no weights ({' or '.join(WEIGHT_FILES)}).")


def load_model(path: Path, labels: LabelSet) -> MultiTaskDistilBert:
    """Build the network from config.json, check heads against labels, load weights."""
    from transformers import DistilBertConfig

    from deployments.core.model import MultiTaskDistilBert, head_sizes_from_state_dict

    if not (path / "config.json").is_file():
        raise ModelUnavailableError(f"Checkpoint at {path} has no config.json: the encoder's dimensions are not "
                                    "guessed from its weights.")
    config = DistilBertConfig.from_pretrained(str(path))
    config._attn_implementation = "sdpa"
    state = load_state_dict(path)
    try:
        heads = head_sizes_from_state_dict(state)
    except KeyError as exc:
        raise ModelUnavailableError(f"Checkpoint at {path}: {exc.args[0]}") from None
    labels.check_heads(heads)
    model = MultiTaskDistilBert(config, heads)
    # As their from_pretrained: keys the network has no use for are listed once and skipped; a missing
    # key (of the encoder, the pre-classifier or a head) would leave it random, so it refuses to start.
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys:
        raise ModelUnavailableError(
            f"Checkpoint at {path} lacks {len(result.missing_keys)} weights the network needs: "
            + ", ".join(result.missing_keys[:10]) + (" ..." if len(result.missing_keys) > 10 else ""))
    if result.unexpected_keys:
        logger.warning("checkpoint at %s has %d weights the network does not use, skipped: %s", path,
                       len(result.unexpected_keys), ", ".join(sorted(result.unexpected_keys)))
    return model.eval()


def resolve_device(accelerator: str) -> torch.device:
    import torch

    if accelerator == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda")
    if accelerator == "cuda":
        raise RuntimeError("accelerator is 'cuda' but CUDA is not available on this replica's node")
    logger.warning("accelerator 'auto': CUDA is absent on this node, the classifier runs on CPU")
    return torch.device("cpu")
