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


# -- the forms OpenCHS's checkpoints come in (training/hub_layout.py LABEL_FORMS builds each) -------------------


@pytest.fixture(scope="module")
def checkpoint_forms(tmp_path_factory):
    from deployments.core.labels import BUNDLED_LABELS_DIR, LabelSet
    from training.hub_layout import LABEL_FORMS, build_random

    root = tmp_path_factory.mktemp("forms")
    bundled = LabelSet.from_dir(BUNDLED_LABELS_DIR)
    return {form: build_random("tiny", root / form, bundled, seed=3, label_form=form) for form in LABEL_FORMS}


def test_the_forms_are_really_written_differently(checkpoint_forms):
    assert json.loads((checkpoint_forms["lists"] / "priorities.json").read_text()) == [1, 2, 3]
    assert json.loads((checkpoint_forms["id_maps"] / "priorities.json").read_text()) == {"0": "1", "1": "2", "2": "3"}
    assert set(json.loads((checkpoint_forms["id_to"] / "main_categories.json").read_text())) == {"id_to_main"}
    model_pt = {p.name for p in checkpoint_forms["model_pt"].iterdir()}
    assert {"model.pt", "label_maps.json"} <= model_pt and not {"model.safetensors", "main_categories.json"} & model_pt


@pytest.mark.parametrize("form", ["id_maps", "id_to", "model_pt", "extra_weights"])
def test_every_form_loads_the_same_labels_and_the_same_network(checkpoint_forms, form, caplog):
    import logging

    reference = checkpoint_forms["lists"]
    labels = load_labels(checkpoint_forms[form])
    assert labels == load_labels(reference) and labels.priority == (1, 2, 3)
    ids = torch.tensor([[101, 2082, 2003, 102]])
    with caplog.at_level(logging.WARNING, logger="ray.serve"):
        model = load_model(checkpoint_forms[form], labels)
    expected = load_model(reference, labels)
    with torch.no_grad():
        for got, want in zip(model(ids), expected(ids)):
            assert torch.equal(got, want)
    warnings = [r.getMessage() for r in caplog.records if "does not use" in r.getMessage()]
    if form == "extra_weights":  # listed in one warning, not fatal
        (warning,) = warnings
        assert "pooler.dense.weight" in warning and "loss_weights.priority" in warning
    else:
        assert warnings == []


def test_a_missing_head_or_encoder_weight_refuses_to_start(checkpoint_forms, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    for missing in ("classifier_priority.weight", "distilbert.transformer.layer.0.ffn.lin1.bias"):
        broken = tmp_path / missing
        shutil.copytree(checkpoint_forms["lists"], broken)
        state = load_file(str(broken / "model.safetensors"))
        del state[missing]
        save_file(state, str(broken / "model.safetensors"))
        with pytest.raises(ModelUnavailableError, match=missing.replace(".", r"\.")):
            load_model(broken, load_labels(broken))


@pytest.mark.parametrize(("content", "match"), [
    ({"0": "a", "2": "b"}, "without a gap"), ({"x": "a"}, "integers"), ([], "non-empty"),
])
def test_a_label_file_in_no_known_form_is_refused_clearly(checkpoint_forms, tmp_path, content, match):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(checkpoint_forms["lists"], broken)
    (broken / "interventions.json").write_text(json.dumps(content))
    with pytest.raises(ValueError, match=match):
        load_labels(broken)


def test_a_model_pt_that_is_not_a_state_dict_is_refused(checkpoint_forms, tmp_path):
    import shutil

    broken = tmp_path / "pickled"
    shutil.copytree(checkpoint_forms["model_pt"], broken)
    torch.save({"model": [1, 2]}, broken / "model.pt")
    with pytest.raises(ModelUnavailableError, match="model.pt"):
        load_model(broken, load_labels(broken))
