"""engine 'auto' on a CPU: the choice from measured rates, the measuring on a real checkpoint, and its cache."""

import json
import logging
import shutil

import numpy as np
import pytest
import torch

from deployments.core import engine_choice, export
from deployments.core.engines import EngineChoice
from deployments.core.inference import ModelRunner, build_engine
from deployments.core.loading import load_labels, load_model

CPU = torch.device("cpu")


@pytest.mark.parametrize("rates, want", [
    ({"torch": 10.0, "onnxruntime": 20.0, "openvino": 15.0}, "onnxruntime"),
    ({"torch": 10.0, "onnxruntime": 9.0, "openvino": 15.0}, "openvino"),
    ({"torch": 10.0, "onnxruntime": 5.0, "openvino": 9.0}, "torch"),
    # Within MIN_GAIN of PyTorch: PyTorch, which needs no export.
    ({"torch": 10.0, "onnxruntime": 10.2, "openvino": 10.1}, "torch"),
    ({"torch": 10.0, "onnxruntime": 10.31}, "onnxruntime"),
    # A candidate that could not be built exactly is never chosen.
    ({"torch": 10.0, "onnxruntime": None, "openvino": 12.0}, "openvino"),
    ({"torch": 10.0, "onnxruntime": None, "openvino": None}, "torch"),
    # Without PyTorch among them (it failed): the fastest of the others.
    ({"onnxruntime": 7.0, "openvino": 7.1}, "openvino"),
    ({"torch": None, "onnxruntime": None}, "torch"),
    ({}, "torch"),
    ({"torch": 0.0, "openvino": 0.0}, "torch"),
])
def test_choose_takes_the_fastest_exact_engine(rates, want):
    assert engine_choice.choose(rates) == want


@pytest.fixture()
def checkpoint(exported_tiny, tmp_path):
    """A private copy, its export already made (conftest): each test still measures from scratch."""
    path = tmp_path / "tiny"
    shutil.copytree(exported_tiny, path)
    return path


@pytest.fixture()
def builder(checkpoint):
    """build(name) as ModelRunner.load makes it, recording what was built."""
    net = load_model(checkpoint, load_labels(checkpoint))
    built = []

    def build(name, dtype="fp32"):
        built.append(name)
        return build_engine(EngineChoice(name, dtype), net, checkpoint, CPU, 1, 0)

    build.built = built
    build.batches = engine_choice.probe_batches(net.config.vocab_size, 0)
    return build


def test_pick_measures_every_candidate_then_keeps_the_figures_for_the_next_start(checkpoint, builder):
    candidates = ["torch", "onnxruntime", "openvino"]
    engine, measured = engine_choice.pick(checkpoint, "fp32", candidates, builder, builder.batches, 1)
    assert builder.built == candidates and not measured.cached
    assert set(measured.rates) == set(candidates) and all(r > 0 for r in measured.rates.values())
    assert measured.choice == engine_choice.choose(measured.rates) == engine.name
    assert measured.host["cpu"] == engine_choice.cpu_model() and measured.host["threads"] == 1
    kept = json.loads(engine_choice.cache_file(checkpoint).read_text())
    assert engine_choice.cache_file(checkpoint).parent == checkpoint / "onnx-cache" / export.content_key(checkpoint)
    (entry,) = kept.values()
    assert entry["rates"] == measured.rates and entry["choice"] == measured.choice

    builder.built.clear()
    again, cached = engine_choice.pick(checkpoint, "fp32", candidates, builder, builder.batches, 1)
    assert builder.built == [measured.choice] and cached.cached and again.name == measured.choice
    assert cached.rates == measured.rates

    # Another thread count (or CPU, or library version) is another host: measured anew, both kept.
    builder.built.clear()
    _, two_threads = engine_choice.pick(checkpoint, "fp32", candidates, builder, builder.batches, 2)
    assert builder.built == candidates and not two_threads.cached
    assert len(json.loads(engine_choice.cache_file(checkpoint).read_text())) == 2
    # fp32 has nothing to recheck: a margin leaves its figures where they are.
    builder.built.clear()
    _, same = engine_choice.pick(checkpoint, "fp32", candidates, builder, builder.batches, 2, recheck_margin=0.05)
    assert same.cached and builder.built == [two_threads.choice]


def test_a_candidate_that_falls_back_is_not_measured(checkpoint, builder):
    (checkpoint / "onnx").mkdir()
    (checkpoint / "onnx" / "model.onnx").write_bytes(b"not an onnx graph")  # both exported engines fail
    engine, measured = engine_choice.pick(checkpoint, "fp32", ["torch", "onnxruntime", "openvino"], builder,
                                          builder.batches, 1)
    assert measured.rates["onnxruntime"] is None and measured.rates["openvino"] is None
    assert measured.choice == "torch" and (engine.name, engine.dtype_name) == ("torch", "fp32")


def test_int8_candidates_are_measured_at_int8(checkpoint, builder):
    def build(name):
        return builder(name, "int8")

    engine, measured = engine_choice.pick(checkpoint, "int8", ["torch", "onnxruntime"], build, builder.batches, 1)
    assert set(measured.rates) == {"torch", "onnxruntime"} and all(measured.rates.values())
    assert engine.dtype_name == "int8" and engine.name == measured.choice
    # A recheck margin changes what is timed: its figures are kept apart.
    builder.built.clear()
    _, rechecked = engine_choice.pick(checkpoint, "int8", ["torch", "onnxruntime"], build, builder.batches, 1,
                                      recheck_margin=0.05)
    assert not rechecked.cached and rechecked.host["recheck_margin"] == 0.05
    assert builder.built == ["torch", "onnxruntime"]


def test_the_replica_reports_the_rates_and_the_choice_and_logs_them(checkpoint, caplog):
    with caplog.at_level(logging.INFO, logger="ray.serve"):
        runner = ModelRunner.load(str(checkpoint), accelerator="cpu", torch_threads=1)
    auto = runner.selection["engine_auto"]
    assert auto["choice"] == runner.engine_name and auto["dtype"] == "fp32"
    assert set(auto["rates_windows_per_s"]) == {"torch", "onnxruntime", "openvino"}
    assert any(r.getMessage().startswith(f"engine auto (fp32): {runner.engine_name}; windows/s") for r in caplog.records)
    runner.health_check()


def test_an_explicit_engine_is_never_measured(checkpoint):
    runner = ModelRunner.load(str(checkpoint), accelerator="cpu", engine="openvino", torch_threads=1)
    assert runner.engine_name == "openvino" and "engine_auto" not in runner.selection
    assert not engine_choice.cache_file(checkpoint).exists()


def test_an_unreadable_cache_is_measured_again(checkpoint, builder):
    engine_choice.cache_file(checkpoint).parent.mkdir(parents=True, exist_ok=True)
    engine_choice.cache_file(checkpoint).write_text("{not json")
    _, measured = engine_choice.pick(checkpoint, "fp32", ["torch", "openvino"], builder, builder.batches, 1)
    assert not measured.cached and builder.built == ["torch", "openvino"]
    assert len(json.loads(engine_choice.cache_file(checkpoint).read_text())) == 1


def test_the_candidates_take_turns_and_each_ones_fastest_pass_counts():
    now, calls = [0.0], []

    class Costing:
        def __init__(self, name, costs):
            self.name, self.costs = name, iter(costs)

        def logits(self, ids, mask, between_layers=None):
            calls.append(self.name)
            now[0] += next(self.costs)
            return []

    batches = [(np.zeros((8, 4), dtype=np.int64), None), (np.zeros((2, 4), dtype=np.int64), None)]
    # Per batch: warm-up (2 batches), then 3 passes of 2 batches. "b" is slowed once, in its second pass.
    a = Costing("a", [9, 9] + [1, 1] * 3)
    b = Costing("b", [9, 9] + [2, 3, 50, 50, 2, 3])
    rates = engine_choice.time_engines({"a": a, "b": b}, batches, passes=3, clock=lambda: now[0])
    assert rates == {"a": 10 / 2, "b": 10 / 5}
    assert calls == ["a", "a", "b", "b"] + ["a", "a", "b", "b"] * 3
