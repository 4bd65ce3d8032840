"""The agreement gate: a precision below fp32 starts only when enough cases keep all four labels."""

import json
import shutil

import numpy as np
import pytest
import torch

from deployments.core import precision_gate
from deployments.core.config import AppArgs
from deployments.core.engines import TorchEngine
from deployments.core.errors import ModelUnavailableError
from deployments.core.inference import ModelRunner
from deployments.core.loading import load_labels, load_model, load_tokenizer
from deployments.core.preprocess import NarrativeTokenizer
from training.corpus import load_heldout

CPU = torch.device("cpu")
MARKED = "urgent"  # a case starting with this word is the one the flipping engine answers otherwise


@pytest.fixture()
def checkpoint(tiny_checkpoint, tmp_path):
    path = tmp_path / "tiny"
    shutil.copytree(tiny_checkpoint, path, ignore=shutil.ignore_patterns("onnx-cache"))
    return path


def write_cases(path, narratives):
    path.write_text("".join(json.dumps({"id": str(i), "narrative": n}) + "\n" for i, n in enumerate(narratives)))
    return path


def test_the_operators_file_comes_first_then_the_shipped_set_then_the_one_eval_json_names(checkpoint, tmp_path):
    assert precision_gate.find_cases(checkpoint, None) is None
    (checkpoint / "eval.json").write_text(json.dumps({"dataset": "heldout.jsonl"}))
    narratives, source = precision_gate.find_cases(checkpoint, None)
    assert source == "data/heldout.jsonl" and narratives == [ex.narrative for ex in load_heldout()]
    write_cases(checkpoint / "heldout.jsonl", ["shipped one", "shipped two"])
    assert precision_gate.find_cases(checkpoint, None) == (["shipped one", "shipped two"],
                                                          str(checkpoint / "heldout.jsonl"))
    named = write_cases(tmp_path / "mine.jsonl", ["the operator's"])
    assert precision_gate.find_cases(checkpoint, str(named)) == (["the operator's"], str(named))
    with pytest.raises(ModelUnavailableError, match="is not a file"):
        precision_gate.find_cases(checkpoint, str(tmp_path / "absent.jsonl"))


def test_eval_json_naming_a_path_outside_the_data_folder_is_not_followed(checkpoint):
    (checkpoint / "eval.json").write_text(json.dumps({"dataset": "../heldout.jsonl"}))
    assert precision_gate.find_cases(checkpoint, None) is None


def test_a_line_without_a_narrative_is_named(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"narrative": "fine"}\n\n{"text": "no narrative"}\n')
    with pytest.raises(ModelUnavailableError, match="line 3: no 'narrative'"):
        precision_gate.read_narratives(path)


class FlipMarked:
    """fp32 PyTorch, except that a row starting with MARKED gets its main category's logits reversed."""

    name, dtype_name, passes_at_once = "flip", "int8", 1

    def __init__(self, reference, marked_id):
        self.reference, self.marked_id = reference, marked_id

    def logits(self, ids, mask, between_layers=None, beside=None):
        heads = [np.array(h) for h in self.reference.logits(ids, mask)]
        rows = ids[:, 1] == self.marked_id
        heads[0][rows] = -heads[0][rows]
        return heads


@pytest.fixture()
def parts(checkpoint):
    labels = load_labels(checkpoint)
    hf = load_tokenizer(checkpoint)
    reference = TorchEngine(load_model(checkpoint, labels), CPU, "fp32")
    return reference, FlipMarked(reference, hf.convert_tokens_to_ids(MARKED)), labels, NarrativeTokenizer.from_hf(hf)


NARRATIVES = [
    f"{MARKED} a girl of 9 is locked in the house every day by her uncle",
    "a 12 year old student is bullied at school and does not want to go back",
    "caller asks for the opening hours of the helpline",
    "neighbour reports a boy working on a farm instead of going to school. " * 60,  # several windows
]


def test_agreement_is_the_share_of_cases_keeping_all_four_labels(parts):
    reference, flipped, labels, tokenizer = parts
    gate = precision_gate.PrecisionGate()
    assert precision_gate.agreement(reference, reference, NARRATIVES, tokenizer, labels, gate) == 1.0
    assert precision_gate.agreement(flipped, reference, NARRATIVES, tokenizer, labels, gate) == 0.75


def test_under_the_bar_the_replica_refuses_with_the_figure(parts, checkpoint, tmp_path):
    reference, flipped, labels, tokenizer = parts
    cases = str(write_cases(tmp_path / "cases.jsonl", NARRATIVES))
    with pytest.raises(precision_gate.AgreementTooLowError, match=r"flip int8 keeps all four labels of fp32 on 75\.00% "
                       r"of the 4 cases of .*cases\.jsonl, under min_agreement 99\.00%"):
        precision_gate.PrecisionGate(cases).check(flipped, reference, checkpoint, labels, tokenizer, required=True)
    figure = precision_gate.PrecisionGate(cases, min_agreement=0.75).check(flipped, reference, checkpoint, labels,
                                                                          tokenizer, required=True)
    assert figure == {"agreement": 0.75, "cases": 4, "source": cases, "min_agreement": 0.75}


def test_without_cases_an_asked_precision_is_refused_unless_the_bar_is_zero(parts, checkpoint):
    reference, flipped, labels, tokenizer = parts
    with pytest.raises(precision_gate.AgreementTooLowError, match="name a JSONL of narratives in agreement_cases"):
        precision_gate.PrecisionGate().check(flipped, reference, checkpoint, labels, tokenizer, required=True)
    assert precision_gate.PrecisionGate(min_agreement=0).check(flipped, reference, checkpoint, labels, tokenizer,
                                                               required=True) is None
    # 'auto' precision (a half type on CUDA) without cases is served unmeasured.
    assert precision_gate.PrecisionGate().check(flipped, reference, checkpoint, labels, tokenizer,
                                                required=False) is None


def test_the_replica_measures_int8_at_startup_and_reports_it(checkpoint, tmp_path):
    cases = str(write_cases(tmp_path / "cases.jsonl", NARRATIVES))
    runner = ModelRunner.from_args(AppArgs(model=str(checkpoint), accelerator="cpu", engine="torch", dtype="int8",
                                           torch_threads=1, agreement_cases=cases, min_agreement=0))
    figure = runner.selection["agreement"]
    assert runner.dtype_name == "int8" and figure["cases"] == 4 and figure["source"] == cases
    assert 0 <= figure["agreement"] <= 1
    # fp32 passes no gate: nothing to report.
    exact = ModelRunner.from_args(AppArgs(model=str(checkpoint), accelerator="cpu", engine="torch", torch_threads=1,
                                          agreement_cases=cases))
    assert "agreement" not in exact.selection


def test_the_replica_refuses_int8_on_a_checkpoint_without_cases(checkpoint):
    with pytest.raises(ModelUnavailableError, match="ships no held-out set"):
        ModelRunner.from_args(AppArgs(model=str(checkpoint), accelerator="cpu", engine="torch", dtype="int8",
                                      torch_threads=1))
