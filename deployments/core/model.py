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
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        hidden = self.distilbert.embeddings(input_ids)
        mask = self.layer_mask(hidden, attention_mask)  # once: every layer but the last reads the same
        for index in range(self.n_layers - 1):
            hidden = self.encoder_layer(index, hidden, mask)
            if between_layers is not None:
                between_layers()
        return self.heads(hidden, attention_mask)

    @property
    def n_layers(self) -> int:
        return len(self.distilbert.transformer.layer)

    def layer_mask(self, hidden: torch.Tensor, attention_mask: torch.Tensor):
        """The attention mask in the form transformers' layers take (``encoder_layer``'s ``mask``)."""
        return create_bidirectional_mask(config=self.config, inputs_embeds=hidden, attention_mask=attention_mask)

    def encoder_layer(self, index: int, hidden: torch.Tensor, mask) -> torch.Tensor:
        """Encoder layer ``index`` (not the last), as transformers defines it. A stage of the ONNX export
        (``export.EncoderStage``) runs the same, so an exported engine can pause where this one does."""
        return self.distilbert.transformer.layer[index](hidden, mask)

    def heads(self, hidden: torch.Tensor, attention_mask: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The last layer's state at position 0 → ``pre_classifier`` → ReLU → dropout → the four heads."""
        pooled = self.dropout(torch.relu(self.pre_classifier(self.last_layer_first_token(hidden, attention_mask))))
        return tuple(getattr(self, HEAD_NAMES[task])(pooled) for task in TASKS)  # type: ignore[return-value]

    def last_layer_first_token(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The last encoder layer, at position 0 only.

        Only position 0's query, attention output and feed-forward are computed (keys and values
        still come from every token): the same numbers as the full layer, for about a seventh of the
        encoder's work less.
        """
        last = self.distilbert.transformer.layer[-1]
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
