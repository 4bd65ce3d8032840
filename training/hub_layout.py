"""Write a checkpoint in the Hub repo's exact layout; build the randomly initialised ones.

``save_checkpoint`` is the one writer of a checkpoint directory (config.json,
weights, tokenizer files, the four label files), used by the random builds
here, the demo build (``training.demo``) and fine-tuning
(``training.finetune``). ``tiny`` (a few MB) is for tests and ``base`` has the
real model's dimensions, for benchmarks: both are randomly initialised and
marked untrained, so their labels are meaningless.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import DistilBertConfig, DistilBertTokenizerFast

from deployments.core.labels import LabelSet
from deployments.core.model import MultiTaskDistilBert
from training.vocabulary import build_tokenizer, vocab_path

SIZES = {
    # dim, layers, heads, ffn
    "tiny": dict(dim=32, n_layers=2, n_heads=2, hidden_dim=64),
    "base": dict(dim=768, n_layers=6, n_heads=12, hidden_dim=3072),
}
UNTRAINED_NOTE = "randomly initialised checkpoint: its labels are meaningless (for tests and benchmarks only)"


def distilbert_config(size: str, vocab_size: int, **overrides) -> DistilBertConfig:
    dims = SIZES[size] if size in SIZES else {}
    return DistilBertConfig(vocab_size=vocab_size, max_position_embeddings=512, **{**dims, **overrides})


def save_checkpoint(
    out: Path,
    model: MultiTaskDistilBert,
    tokenizer: DistilBertTokenizerFast,
    labels: LabelSet,
    extra_config: dict,
    legacy_layout: bool = False,
    label_form: str = "lists",
) -> None:
    """Write the Hub layout: config.json, weights, tokenizer files, label files.

    ``legacy_layout`` writes what transformers 4.x wrote: pytorch_model.bin
    with the position_ids buffer, and only the slow tokenizer's files.
    ``label_form`` (``LABEL_FORMS``): how the labels and weights are written, in each form OpenCHS's
    checkpoints have used, so the loader is tested on each.
    """
    out.mkdir(parents=True, exist_ok=True)
    config = model.config.to_dict()
    config.update(extra_config)
    config["architectures"] = ["MultiTaskDistilBert"]
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    if legacy_layout:
        config["transformers_version"] = "4.46.3"
        n = model.config.max_position_embeddings
        state["distilbert.embeddings.position_ids"] = torch.arange(n).expand((1, -1)).clone()
        torch.save(state, out / "pytorch_model.bin")
        (out / "vocab.txt").write_text(vocab_path().read_text(encoding="utf-8"), encoding="utf-8")
        (out / "tokenizer_config.json").write_text(
            json.dumps({"do_lower_case": True, "model_max_length": 512, "tokenizer_class": "DistilBertTokenizer"}),
            encoding="utf-8",
        )
    else:
        save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
        # Training tokenizes with truncation=True, which the fast tokenizer keeps in its
        # backend state; the published tokenizer.json must not carry it.
        tokenizer.backend_tokenizer.no_truncation()
        tokenizer.backend_tokenizer.no_padding()
        tokenizer.save_pretrained(str(out))
        # The Hub repos also carry vocab.txt, which slow-tokenizer clients read.
        (out / "vocab.txt").write_text(vocab_path().read_text(encoding="utf-8"), encoding="utf-8")
    (out / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True), encoding="utf-8")
    write_labels(out, labels, label_form, state)
    make_readable(out)


# lists: the trainer's plain lists. id_maps: {"id": label} objects, priorities as strings. id_to: one
# {"id_to_<task>": {...}} object a file. model_pt: model.pt + label_maps.json (an open OpenCHS pull
# request's layout), no label files. extra_weights: the lists, and weights the network does not use.
LABEL_FORMS = ("lists", "id_maps", "id_to", "model_pt", "extra_weights")
_ID_TO = {"main_category": "id_to_main", "sub_category": "id_to_sub", "intervention": "id_to_interv",
          "priority": "id_to_priority"}


def write_labels(out: Path, labels: LabelSet, form: str, state: dict) -> None:
    from deployments.core.labels import LABEL_FILES, LABEL_MAPS_FILE, TAXONOMY_FILE

    def id_map(task: str) -> dict:
        return {str(i): (str(v) if task == "priority" else v) for i, v in enumerate(labels.for_task(task))}

    if form in ("lists", "extra_weights"):
        labels.write(out)
        if form == "extra_weights":  # as a checkpoint saved with a pooler or a training-only head
            save_file({**state, "pooler.dense.weight": torch.zeros(2, 2), "loss_weights.priority": torch.ones(3)},
                      str(out / "model.safetensors"), metadata={"format": "pt"})
    elif form in ("id_maps", "id_to"):
        for task, filename in LABEL_FILES.items():
            body = id_map(task) if form == "id_maps" else {_ID_TO[task]: id_map(task)}
            (out / filename).write_text(json.dumps(body, indent=1), encoding="utf-8")
    elif form == "model_pt":
        (out / "model.safetensors").unlink()
        torch.save(state, out / "model.pt")
        (out / LABEL_MAPS_FILE).write_text(json.dumps({_ID_TO[t]: id_map(t) for t in LABEL_FILES}, indent=1),
                                           encoding="utf-8")
    else:
        raise ValueError(f"label_form must be one of {LABEL_FORMS}")
    if form != "lists" and labels.sub_to_main:
        (out / TAXONOMY_FILE).write_text(json.dumps(dict(labels.sub_to_main), indent=1, sort_keys=True),
                                         encoding="utf-8")


def make_readable(directory: Path) -> None:
    """mkdtemp makes 0700 and safetensors writes 0600: let a serving user other than the builder read it."""
    umask = os.umask(0)
    os.umask(umask)
    directory.chmod(0o777 & ~umask)
    for f in directory.iterdir():
        f.chmod(0o666 & ~umask)


def build_random(size: str, out: Path, labels: LabelSet, seed: int = 0, legacy_layout: bool = False,
                 label_form: str = "lists") -> Path:
    """A randomly initialised ``tiny`` or ``base`` checkpoint at ``out``, marked untrained."""
    torch.manual_seed(seed)
    tokenizer = build_tokenizer()
    # A wider init for tiny spreads its random outputs, so tests see distinct labels, not near-ties.
    overrides = {"initializer_range": 0.5} if size == "tiny" else {}
    config = distilbert_config(size, len(tokenizer.get_vocab()), **overrides)
    model = MultiTaskDistilBert(config, labels.sizes())
    save_checkpoint(
        out, model, tokenizer, labels, {"chs_untrained": True, "chs_note": UNTRAINED_NOTE, "chs_size": size},
        legacy_layout=legacy_layout, label_form=label_form,
    )
    return out
