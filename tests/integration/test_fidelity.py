"""The service must give the model card's answers: same labels, same confidences (fp32, 1e-4).

The reference below re-implements the model card's ``classify_multitask_case``
independently of our code: its own module class, its own preprocessing,
per-request tokenization padded and truncated to 256 tokens, no batching.

The default profile reads every token, so it equals the card on narratives that fit the card's 256
tokens; the card profile (serve_config.card.yaml: 256 tokens, truncation) equals it on any narrative,
the long ones over 256 tokens included.
"""

import json
import re

import pytest
import torch
from safetensors.torch import load_file
from torch import nn
from transformers import AutoTokenizer, DistilBertConfig, DistilBertModel

NARRATIVES = [
    "A 12-year-old student reports being bullied at school. Classmates are calling names and excluding from "
    "activities. The student feels sad and doesn't want to go to school anymore.",
    "Parent asking for information about drug abuse prevention programs for teenagers in the community.",
    "Neighbour reports that a girl aged 9 is locked in the house every day and is not going to school.",
    "My uncle touches me at night and says I must not tell mama. I am 13.",
    "Caller wants to know the opening hours of the helpline.",
    "Mtoto wa miaka 6 ana utapiamlo, mama hana chakula. Baby is very thin and weak!!",
    "The boy (15) was arrested by police in Kisumu on Friday & has not been released; family asks for legal help.",
]


class CardModel(nn.Module):
    """The model card's MultiTaskDistilBert, as its example defines it."""

    def __init__(self, config, n_main, n_sub, n_interv, n_priority):
        super().__init__()
        self.distilbert = DistilBertModel(config)
        self.pre_classifier = nn.Linear(config.dim, config.dim)
        self.classifier_main = nn.Linear(config.dim, n_main)
        self.classifier_sub = nn.Linear(config.dim, n_sub)
        self.classifier_interv = nn.Linear(config.dim, n_interv)
        self.classifier_priority = nn.Linear(config.dim, n_priority)
        self.dropout = nn.Dropout(config.seq_classif_dropout)

    def forward(self, input_ids, attention_mask):
        hidden = self.distilbert(input_ids=input_ids, attention_mask=attention_mask)[0]
        pooled = self.dropout(nn.ReLU()(self.pre_classifier(hidden[:, 0])))
        return (self.classifier_main(pooled), self.classifier_sub(pooled),
                self.classifier_interv(pooled), self.classifier_priority(pooled))


def card_preprocess(text):
    return re.sub(r"[^a-z0-9\s]", "", text.lower().strip())


@pytest.fixture(scope="module")
def card(tiny_checkpoint):
    path = tiny_checkpoint
    labels = {name: json.loads((path / f"{name}.json").read_text())
              for name in ("main_categories", "sub_categories", "interventions", "priorities")}
    config = DistilBertConfig.from_pretrained(str(path))
    config._attn_implementation = "eager"
    model = CardModel(config, *(len(labels[n]) for n in ("main_categories", "sub_categories", "interventions",
                                                        "priorities")))
    model.load_state_dict(load_file(str(path / "model.safetensors")))
    model.eval()
    tokenizer = AutoTokenizer.from_pretrained(str(path))

    def classify_multitask_case(text):
        inputs = tokenizer(card_preprocess(text), truncation=True, padding="max_length", max_length=256,
                           return_tensors="pt")
        with torch.no_grad():
            logits = model(inputs["input_ids"], inputs["attention_mask"])
        out = {}
        for task, names, lg in zip(("main_category", "sub_category", "intervention", "priority"),
                                   ("main_categories", "sub_categories", "interventions", "priorities"), logits):
            probs = torch.softmax(lg, dim=1)[0]
            i = int(torch.argmax(probs))
            out[task] = (labels[names][i], float(probs[i]))
        return out

    return classify_multitask_case


@pytest.mark.app("tiny")
def test_service_equals_the_model_card_reference(serve_session, tiny_checkpoint, card):
    import httpx

    url = serve_session.deploy(model=str(tiny_checkpoint), dtype="fp32")
    with httpx.Client(base_url=url, timeout=60) as client:
        info = client.get("/info").json()
        assert info["engine"] == info["engine_auto"]["choice"]  # the engine measured fastest on this host
        batch = client.post("/classify/batch", json={"narratives": NARRATIVES}).json()["results"]
        for narrative, batched in zip(NARRATIVES, batch):
            single = client.post("/classify", json={"narrative": narrative}).json()
            expected = card(narrative)
            for served in (single, batched):
                for task, (label, confidence) in expected.items():
                    got = served["classification"][task]
                    assert got["label"] == label, (task, narrative[:30])
                    assert got["confidence"] == pytest.approx(confidence, abs=1e-4)


# Long calls: every narrative above, strung together in another order each, 270 to 690 tokens.
LONG_NARRATIVES = [" ".join((NARRATIVES[i:] + NARRATIVES[:i]) * (2 + i)) for i in range(4)]


@pytest.mark.app("card")
def test_the_card_profile_gives_the_cards_answers_on_long_narratives(serve_session, tiny_checkpoint, card):
    import httpx

    from bench.card_profile import card_profile

    profile = card_profile()
    assert profile == {"max_length": 256, "long_narratives": "truncate"}
    url = serve_session.deploy(model=str(tiny_checkpoint), dtype="fp32", **profile)
    with httpx.Client(base_url=url, timeout=60) as client:
        batch = client.post("/classify/batch", json={"narratives": LONG_NARRATIVES + NARRATIVES}).json()["results"]
        for narrative, batched in zip(LONG_NARRATIVES + NARRATIVES, batch):
            single = client.post("/classify", json={"narrative": narrative}).json()
            expected = card(narrative)
            long = narrative in LONG_NARRATIVES
            for served in (single, batched):
                assert (served["tokens"] > 256) == long and served["truncated"] is long and served["chunks"] == 1
                for task, (label, confidence) in expected.items():
                    got = served["classification"][task]
                    assert got["label"] == label, (task, narrative[:30])
                    assert got["confidence"] == pytest.approx(confidence, abs=1e-4)
