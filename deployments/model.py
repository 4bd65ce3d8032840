"""The OpenCHS multi-task DistilBERT, as one readable class.

The first token's hidden state → ``pre_classifier`` → ReLU → dropout → four
linear heads. Parameter names match the published checkpoint
(``distilbert.*``, ``pre_classifier.*``, ``classifier_*.*``). Loading lives in
``deployments.loading``; this module only defines the network.
"""

from __future__ import annotations

from typing import Mapping

import torch
from torch import nn
from transformers import DistilBertConfig, DistilBertModel
from transformers.models.distilbert.modeling_distilbert import DistilBertPreTrainedModel

from deployments.labels import TASKS

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
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        hidden = self.distilbert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        pooled = self.dropout(torch.relu(self.pre_classifier(hidden[:, 0])))
        return tuple(getattr(self, HEAD_NAMES[task])(pooled) for task in TASKS)  # type: ignore[return-value]


def head_sizes_from_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, int]:
    sizes = {}
    for task, name in HEAD_NAMES.items():
        key = f"{name}.weight"
        if key not in state_dict:
            raise KeyError(f"checkpoint has no {key}: is this a multi-task OpenCHS checkpoint?")
        sizes[task] = int(state_dict[key].shape[0])
    return sizes
