"""The training loop: it learns, it is reproducible, and its shortcut computes the same network."""

import json

import pytest
import torch

from training.corpus import generate_corpus, write_jsonl
from deployments.core.labels import TASKS
from deployments.core.loading import load_labels, load_model, load_tokenizer
from training.finetune import (
    TrainConfig,
    cache_lower_states,
    encode_narratives,
    label_indices,
    main,
    pad,
    pad_states,
    train,
    upper_forward,
)


@pytest.fixture
def tiny(tiny_checkpoint):
    labels = load_labels(tiny_checkpoint)
    return load_model(tiny_checkpoint, labels), labels, load_tokenizer(tiny_checkpoint)


@pytest.fixture(scope="module")
def examples():
    return generate_corpus(12, seed=3)


def full_batch_loss(model, examples, labels, tokenizer) -> float:
    """Summed cross-entropy of the four tasks over all examples, dropout off."""
    model.eval()
    ids, mask = pad(encode_narratives([e.narrative for e in examples], tokenizer, 64), tokenizer.pad_token_id)
    y = label_indices(examples, labels)
    with torch.no_grad():
        logits = model(ids, mask)
    return float(sum(torch.nn.functional.cross_entropy(logits[t], y[:, t]) for t in range(len(TASKS))))


def test_two_steps_lower_the_loss(tiny, examples):
    model, labels, tokenizer = tiny
    before = full_batch_loss(model, examples, labels, tokenizer)
    result = train(model, examples, labels, tokenizer,
                   TrainConfig(max_steps=2, batch_size=12, lr=3e-3, warmup_ratio=0, max_length=64, progress=False))
    after = full_batch_loss(model, examples, labels, tokenizer)
    print(f"loss before {before:.3f}, after two steps {after:.3f}")
    assert result.steps == 2 and len(result.losses) == 2
    assert after < before - 0.05
    assert not model.training


def test_same_seed_same_weights_other_seed_other_weights(tiny_checkpoint, examples):
    def trained(seed):
        labels = load_labels(tiny_checkpoint)
        model = load_model(tiny_checkpoint, labels)
        train(model, examples, labels, load_tokenizer(tiny_checkpoint),
              TrainConfig(max_steps=3, batch_size=4, lr=1e-3, max_length=64, seed=seed, progress=False))
        return model.state_dict()

    a, b, c = trained(0), trained(0), trained(1)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)  # another shuffle order
    assert not torch.are_deterministic_algorithms_enabled()  # the global switch is restored


@pytest.mark.parametrize("n_frozen", [0, 1])
def test_frozen_prefix_shortcut_equals_the_full_forward(tiny, examples, n_frozen):
    model, _, tokenizer = tiny
    model.eval()
    rows = encode_narratives([e.narrative for e in examples[:5]], tokenizer, 64)
    ids, mask = pad(rows, tokenizer.pad_token_id)
    assert len({len(r) for r in rows}) > 1, "rows of several lengths, so padding is exercised"
    with torch.no_grad():
        full = model(ids, mask)
        states = cache_lower_states(model, rows, n_frozen, tokenizer.pad_token_id, torch.device("cpu"),
                                    progress=False)
        hidden, state_mask = pad_states(states)
        split = upper_forward(model, hidden, state_mask, n_frozen)
    assert torch.equal(state_mask, mask)
    for f, s in zip(full, split):
        torch.testing.assert_close(f, s, atol=1e-5, rtol=1e-5)


def test_top_layer_training_leaves_frozen_weights_alone(tiny, examples):
    model, labels, tokenizer = tiny
    frozen_before = {k: v.clone() for k, v in model.state_dict().items()
                     if k.startswith(("distilbert.embeddings.", "distilbert.transformer.layer.0."))}
    top_before = model.distilbert.transformer.layer[1].ffn.lin1.weight.clone()
    train(model, examples, labels, tokenizer,
          TrainConfig(max_steps=2, batch_size=6, lr=1e-3, trainable_layers=1, max_length=64, progress=False))
    state = model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in frozen_before.items())
    assert not torch.equal(model.distilbert.transformer.layer[1].ffn.lin1.weight, top_before)
    assert all(p.requires_grad for p in model.parameters())  # unfrozen again afterwards


def test_unknown_labels_are_refused_all_at_once(tiny, examples):
    _, labels, _ = tiny
    bad = [type(examples[0])("x", "Nope", examples[0].sub_category, "Never", 2)]
    with pytest.raises(ValueError, match="intervention='Never'.*main_category='Nope'"):
        label_indices(bad, labels)


def test_operator_command_writes_a_servable_checkpoint(tiny_checkpoint, examples, tmp_path):
    train_file = tmp_path / "export.jsonl"
    write_jsonl(train_file, examples)
    out = tmp_path / "ours"
    assert main(["--base", str(tiny_checkpoint), "--train", str(train_file), "--out", str(out),
                 "--max-steps", "2", "--batch-size", "4", "--max-length", "64", "--device", "cpu",
                 "--eval", str(train_file), "--no-progress"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["chs_untrained"] is False and "chs_size" not in config
    assert config["chs_training"]["examples"] == len(examples) and config["chs_training"]["steps"] == 2
    assert "fine-tuned from" in config["chs_note"]
    labels = load_labels(out)
    base_labels = load_labels(tiny_checkpoint)
    assert labels == base_labels
    model = load_model(out, labels)  # the Hub layout loads strictly
    base = load_model(tiny_checkpoint, base_labels)
    assert not torch.equal(model.classifier_main.weight, base.classifier_main.weight)
    report = json.loads((out / "eval.json").read_text())
    assert report["n"] == len(examples) and set(report["tasks"]) == set(TASKS)
