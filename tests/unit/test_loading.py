"""Loading real checkpoints written on disk in the Hub layout."""

import json
import numpy as np
import pytest
import torch

from deployments.core.errors import LabelHeadMismatchError, ModelUnavailableError
from deployments.core.inference import ModelRunner
from deployments.core.loading import load_labels, load_model, resolve_checkpoint
from deployments.core.windowing import TokenWindows


def test_tiny_checkpoint_has_the_hub_layout(tiny_checkpoint):
    names = {p.name for p in tiny_checkpoint.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "vocab.txt",
            "main_categories.json", "sub_categories.json", "interventions.json", "priorities.json"} <= names
    config = json.loads((tiny_checkpoint / "config.json").read_text())
    assert config["model_type"] == "distilbert" and config["chs_untrained"] is True


@pytest.mark.parametrize("name, sizes", [("tiny", (8, 66, 4, 3)), ("tiny_7_65", (7, 65, 5, 3)),
                                         ("tiny_legacy", (8, 66, 4, 3))])
def test_each_release_and_layout_loads_and_classifies(checkpoints, name, sizes):
    clf = ModelRunner.load(str(checkpoints[name]), accelerator="cpu", dtype="fp32")
    (out,) = clf.classify([TokenWindows.from_rows([np.array([101, 2082, 102])])], max_rows=4, max_tokens=512)
    assert tuple(out[t].shape[1] for t in ("main_category", "sub_category", "intervention", "priority")) == sizes
    for p in out.values():
        assert p.sum() == pytest.approx(1.0, abs=1e-5)


def test_legacy_checkpoint_carries_the_old_buffer_and_still_loads(checkpoints):
    state = torch.load(checkpoints["tiny_legacy"] / "pytorch_model.bin", weights_only=True)
    assert "distilbert.embeddings.position_ids" in state
    model = load_model(checkpoints["tiny_legacy"], load_labels(checkpoints["tiny_legacy"]))
    assert model.classifier_sub.out_features == 66


def test_label_head_mismatch_refuses_to_start_naming_both_numbers(tiny_checkpoint, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_checkpoint, broken)
    subs = json.loads((broken / "sub_categories.json").read_text())
    (broken / "sub_categories.json").write_text(json.dumps(subs[:-1]))
    with pytest.raises(LabelHeadMismatchError, match=r"sub_categories.json lists 65 labels .* has 66 outputs"):
        ModelRunner.load(str(broken), accelerator="cpu", dtype="fp32")


def test_missing_local_directory_fails_with_guidance(tmp_path):
    with pytest.raises(ModelUnavailableError, match="does not exist.*CHS_MODEL"):
        resolve_checkpoint(str(tmp_path / "nope"))


def test_unreachable_hub_fails_fast_naming_the_model(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelUnavailableError) as err:
        resolve_checkpoint("openchs/cls-gbv-distilbert-v1", "main")
    assert "openchs/cls-gbv-distilbert-v1" in str(err.value)
    assert "CHS_MODEL" in str(err.value)
