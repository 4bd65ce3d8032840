"""The OpenCHS multi-task DistilBERT, as one readable class.

The first token's hidden state → ``pre_classifier`` → ReLU → dropout → four
linear heads. Parameter names match the published checkpoint
(``distilbert.*``, ``pre_classifier.*``, ``classifier_*.*``). Loading lives in
``deployments.core.loading``; this module only defines the network.
"""

from __future__ import annotations

from typing import Callable, Mapping

import torch
import torch.nn.functional as F
from torch import nn
from transformers import DistilBertConfig, DistilBertModel
from transformers.masking_utils import create_bidirectional_mask
from transformers.models.distilbert.modeling_distilbert import DistilBertPreTrainedModel

from deployments.core.labels import TASKS

# Head attribute per task, in the checkpoint's names.
HEAD_NAMES = {
    "main_category": "classifier_main",
    "sub_category": "classifier_sub",
    "intervention": "classifier_interv",
    "priority": "classifier_priority",
}


class MultiTaskDistilBert(DistilBertPreTrainedModel):
    def __init__(self, config: DistilBertConfig, head_sizes: Mapping[str, int]):
        super().__init__(config)
        self.distilbert = DistilBertModel(config)
        self.pre_classifier = nn.Linear(config.dim, config.dim)
        self.classifier_main = nn.Linear(config.dim, head_sizes["main_category"])
        self.classifier_sub = nn.Linear(config.dim, head_sizes["sub_category"])
        self.classifier_interv = nn.Linear(config.dim, head_sizes["intervention"])
        self.classifier_priority = nn.Linear(config.dim, head_sizes["priority"])
        self.dropout = nn.Dropout(config.seq_classif_dropout)
        self.post_init()

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
        between_layers: Callable[[], None] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The four heads' logits. ``between_layers`` is called after each encoder layer but the last,
        where a long pass may pause for a more urgent one (``lanes.LaneGate``'s ``make_way``)."""
        first = self.first_token_state(input_ids, attention_mask, between_layers)
        pooled = self.dropout(torch.relu(self.pre_classifier(first)))
        return tuple(getattr(self, HEAD_NAMES[task])(pooled) for task in TASKS)  # type: ignore[return-value]

    def first_token_state(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
                          between_layers: Callable[[], None] | None = None) -> torch.Tensor:
        """The encoder's last hidden state at position 0, the only one the heads read.

        Every layer but the last runs as transformers defines it. In the last
        layer only position 0's query, attention output and feed-forward are
        computed (keys and values still come from every token): the same
        numbers as the full encoder, for about a seventh less work.
        """
        encoder = self.distilbert
        hidden = encoder.embeddings(input_ids)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        mask = create_bidirectional_mask(config=encoder.config, inputs_embeds=hidden, attention_mask=attention_mask)
        *layers, last = encoder.transformer.layer
        for layer in layers:
            hidden = layer(hidden, mask)
            if between_layers is not None:
                between_layers()
        att = last.attention
        batch, length, dim = hidden.shape
        heads, head_dim = att.n_heads, att.attention_head_size
        query = att.q_lin(hidden[:, :1]).view(batch, 1, heads, head_dim).transpose(1, 2)
        key = att.k_lin(hidden).view(batch, length, heads, head_dim).transpose(1, 2)
        value = att.v_lin(hidden).view(batch, length, heads, head_dim).transpose(1, 2)
        keep = attention_mask[:, None, None, :].to(torch.bool)
        context = F.scaled_dot_product_attention(
            query, key, value, attn_mask=keep, dropout_p=att.dropout.p if self.training else 0.0, scale=att.scaling
        )
        context = att.out_lin(context.transpose(1, 2).reshape(batch, 1, dim))
        state = last.sa_layer_norm(context + hidden[:, :1])
        state = last.output_layer_norm(last.ffn(state) + state)
        return state[:, 0]


def head_sizes_from_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, int]:
    sizes = {}
    for task, name in HEAD_NAMES.items():
        key = f"{name}.weight"
        if key not in state_dict:
            raise KeyError(f"checkpoint has no {key}: is this a multi-task OpenCHS checkpoint?")
        sizes[task] = int(state_dict[key].shape[0])
    return sizes
