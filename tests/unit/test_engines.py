"""The engines: how one is chosen, the ONNX export and its cache, int8, and the fallback to PyTorch."""

import itertools
import json
import logging
import shutil
import threading

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from deployments.core import engines, export
from deployments.core.in_process import InProcessPipeline
from deployments.core.config import AppArgs
from deployments.core.inference import ModelRunner

CPU, CUDA = torch.device("cpu"), torch.device("cuda")
NARRATIVES = [
    "A 12-year-old student reports being bullied at school and does not want to go back.",
    "Neighbour reports that a girl aged 9 is locked in the house every day. " * 30,  # several windows
    "Caller wants to know the opening hours of the helpline.",
]


@pytest.mark.parametrize("engine, dtype, device, want", [
    ("auto", "auto", CPU, ("auto", "fp32", ("torch", "onnxruntime", "openvino"))),
    ("auto", "fp32", CPU, ("auto", "fp32", ("torch", "onnxruntime", "openvino"))),
    ("auto", "int8", CPU, ("auto", "int8", ("torch", "onnxruntime"))),
    ("auto", "bf16", CPU, ("auto", "bf16", ("torch", "openvino"))),
    ("torch", "auto", CPU, ("torch", "fp32", ("torch",))),
    ("torch", "int8", CPU, ("torch", "int8", ("torch",))),
    ("openvino", "auto", CPU, ("openvino", "fp32", ("openvino",))),
    ("openvino", "bf16", CPU, ("openvino", "bf16", ("openvino",))),
    ("auto", "fp16", CUDA, ("torch", "fp16", ("torch",))),
    ("auto", "fp32", CUDA, ("torch", "fp32", ("torch",))),
    ("torch", "bf16", CUDA, ("torch", "bf16", ("torch",))),
])
def test_resolve_gives_the_precision_and_the_engines_to_measure(engine, dtype, device, want):
    """'auto' on a CPU leaves the engine to the host's measurement; on CUDA it is PyTorch, the one installed."""
    choice = engines.resolve(engine, dtype, device)
    assert (choice.engine, choice.dtype, choice.candidates) == want


@pytest.mark.parametrize("engine, dtype, device", [
    ("torch", "fp16", CPU), ("onnxruntime", "bf16", CPU), ("openvino", "int8", CPU), ("onnxruntime", "fp32", CUDA),
    ("openvino", "fp16", CPU),
    ("torch", "int8", CUDA),
])
def test_resolve_refuses_what_cannot_run_there(engine, dtype, device):
    with pytest.raises(ValueError, match=f"engine '{engine}' on {device.type} runs"):
        engines.resolve(engine, dtype, device)


@pytest.mark.parametrize("engine", ["auto", "torch", "onnxruntime", "openvino"])
def test_auto_precision_is_never_int8(engine):
    assert engines.resolve(engine, "auto", CPU).dtype == "fp32"


def test_app_args_refuse_a_half_precision_on_an_exported_engine():
    with pytest.raises(ValueError, match="runs fp32 or int8, not bf16"):
        AppArgs(engine="onnxruntime", dtype="bf16")
    with pytest.raises(ValueError, match="runs fp32 or bf16, not int8"):
        AppArgs(engine="openvino", dtype="int8")
    assert AppArgs(engine="onnxruntime", dtype="int8").dtype == "int8"
    assert AppArgs(engine="openvino", dtype="bf16").dtype == "bf16"


@pytest.fixture()
def checkpoint(exported_tiny, tmp_path):
    """A private copy, its export already made: these tests write beside it."""
    path = tmp_path / "tiny"
    shutil.copytree(exported_tiny, path)
    return path


@pytest.fixture()
def unexported(tiny_checkpoint, tmp_path):
    """A private copy with no export yet, for the tests of making one."""
    path = tmp_path / "unexported"
    shutil.copytree(tiny_checkpoint, path, ignore=shutil.ignore_patterns("onnx-cache"))
    return path


def never_load():
    raise AssertionError("the model was loaded for an export that was already on disk")


@pytest.mark.parametrize("engine", ["onnxruntime", "openvino"])
def test_an_exported_engine_answers_what_pytorch_answers(checkpoint, engine):
    args = AppArgs(model=str(checkpoint), accelerator="cpu", torch_threads=1)
    reference = InProcessPipeline.from_args(args, engine="torch", dtype="fp32")
    exported = InProcessPipeline.from_args(args, engine=engine, dtype="fp32")
    assert (exported.engine_name, exported.dtype_name) == (engine, "fp32")
    for want, got in zip(reference.classify_cases(NARRATIVES), exported.classify_cases(NARRATIVES)):
        assert got.labels() == want.labels()
        for task in ("main_category", "sub_category", "intervention", "priority"):
            assert got.classification.for_task(task).confidence == pytest.approx(
                want.classification.for_task(task).confidence, abs=1e-5)


def test_the_export_is_kept_beside_the_checkpoint_and_never_redone(unexported):
    graphs = export.onnx_graphs(unexported, "fp32", lambda: ModelRunner.load(
        str(unexported), accelerator="cpu", engine="torch").engine.model)
    folder = unexported / "onnx-cache" / export.content_key(unexported)
    # The whole model, and one graph per layer of the tiny model.
    assert graphs == export.Graphs(folder / "model.onnx", (folder / "stage-0.onnx", folder / "stage-1.onnx"))
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["format"] == export.EXPORT_FORMAT
    assert manifest["files"] == ["model.onnx", "stage-0.onnx", "stage-1.onnx"]
    stamps = [path.stat().st_mtime_ns for path in graphs.files]
    assert export.onnx_graphs(unexported, "fp32", never_load) == graphs
    assert export.onnx_graphs(unexported, "bf16", never_load) == graphs  # OpenVINO's bf16 compiles the fp32 graphs
    int8 = export.onnx_graphs(unexported, "int8", never_load)  # made from the kept fp32 export
    assert [p.name for p in int8.files] == ["model_int8.onnx", "stage-0_int8.onnx", "stage-1_int8.onnx"]
    assert [path.stat().st_mtime_ns for path in graphs.files] == stamps
    # A replica start finds both on disk: no model load for the export, no second export.
    clf = ModelRunner.load(str(unexported), accelerator="cpu", engine="onnxruntime", dtype="int8")
    assert (clf.engine_name, clf.dtype_name) == ("onnxruntime", "int8") and clf.engine.paths == int8.files
    assert [path.stat().st_mtime_ns for path in graphs.files] == stamps


def test_a_graph_lost_from_the_cache_is_exported_again(checkpoint):
    load = lambda: ModelRunner.load(str(checkpoint), accelerator="cpu", engine="torch").engine.model  # noqa: E731
    graphs = export.onnx_graphs(checkpoint, "fp32", load)
    stamp = graphs.whole.stat().st_mtime_ns
    graphs.stages[-1].unlink()
    assert export.onnx_graphs(checkpoint, "fp32", load) == graphs and graphs.stages[-1].is_file()
    assert graphs.whole.stat().st_mtime_ns == stamp  # only the missing graph was redone


def test_graphs_per_layer_that_differ_from_pytorch_fall_back_to_it(checkpoint, tmp_path, caplog):
    """The startup check runs the graphs per layer too, not only the one graph: a wrong stage is caught."""
    other = tmp_path / "other"
    shutil.copytree(checkpoint, other)
    state = load_file(str(other / "model.safetensors"))
    state["pre_classifier.bias"] = state["pre_classifier.bias"] + 1.0  # read by the last stage only
    save_file(state, str(other / "model.safetensors"))
    theirs = export.onnx_graphs(other, "fp32", lambda: ModelRunner.load(
        str(other), accelerator="cpu", engine="torch").engine.model)
    ours = export.onnx_graphs(checkpoint, "fp32", lambda: ModelRunner.load(
        str(checkpoint), accelerator="cpu", engine="torch").engine.model)
    shutil.copy(theirs.stages[-1], ours.stages[-1])
    with caplog.at_level(logging.WARNING, logger="ray.serve"):
        clf = ModelRunner.load(str(checkpoint), accelerator="cpu", engine="onnxruntime")
    assert clf.engine_name == "torch"
    assert any("engine onnxruntime fp32 is unavailable" in r.getMessage() for r in caplog.records)


def test_the_cache_key_follows_the_weights(checkpoint):
    before = export.content_key(checkpoint)
    state = load_file(str(checkpoint / "model.safetensors"))
    state["pre_classifier.bias"] = state["pre_classifier.bias"] + 1.0
    save_file(state, str(checkpoint / "model.safetensors"))
    assert export.content_key(checkpoint) != before


def test_a_hub_snapshot_is_never_written_into(checkpoint, tmp_path, monkeypatch):
    from huggingface_hub import constants

    snapshot = tmp_path / "hub" / "models--openchs--x" / "snapshots" / "abc"
    shutil.copytree(checkpoint, snapshot)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HOME", str(tmp_path / "hf"))
    assert export.cache_root(snapshot.resolve()) == tmp_path / "hf" / "helpline-serve" / "onnx"
    monkeypatch.setenv(export.CACHE_ENV_VAR, str(tmp_path / "elsewhere"))
    assert export.cache_root(snapshot.resolve()) == tmp_path / "elsewhere"


def test_a_shipped_onnx_export_is_used_as_it_is(checkpoint, unexported):
    made = export.onnx_graphs(checkpoint, "fp32", never_load)
    (unexported / "onnx").mkdir()
    shutil.copy(made.whole, unexported / "onnx" / "model.onnx")  # one graph, as a Hub repo's Optimum export ships
    shipped = unexported / "onnx" / "model.onnx"
    assert export.onnx_graphs(unexported, "fp32", never_load) == export.Graphs(shipped, ())
    assert not (unexported / "onnx-cache").exists()
    clf = ModelRunner.load(str(unexported), accelerator="cpu", engine="onnxruntime")
    assert clf.engine_name == "onnxruntime" and clf.engine.paths == [shipped]
    pauses = []
    clf.engine.logits(np.full((1, 5), 1000), np.ones((1, 5), dtype=np.int64), lambda: pauses.append(1))
    assert pauses == []  # one graph runs whole


@pytest.mark.parametrize("dtype", ["fp32", "int8"])
def test_a_broken_export_falls_back_to_pytorch_with_a_warning(unexported, caplog, dtype):
    (unexported / "onnx").mkdir()
    (unexported / "onnx" / "model.onnx").write_bytes(b"not an onnx graph")
    with caplog.at_level(logging.WARNING, logger="ray.serve"):
        clf = ModelRunner.load(str(unexported), accelerator="cpu", engine="onnxruntime", dtype=dtype)
    assert (clf.engine_name, clf.dtype_name) == ("torch", "fp32")
    assert any(f"engine onnxruntime {dtype} is unavailable" in r.getMessage() for r in caplog.records)
    clf.health_check()


def test_an_unwritable_cache_falls_back_to_pytorch(checkpoint, tmp_path, monkeypatch, caplog):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv(export.CACHE_ENV_VAR, str(blocker))
    with caplog.at_level(logging.WARNING, logger="ray.serve"):
        clf = ModelRunner.load(str(checkpoint), accelerator="cpu")
    assert clf.engine_name == "torch"
    assert any("serving with eager PyTorch fp32" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("engine", ["torch", "onnxruntime"])
def test_int8_serves_probabilities(checkpoint, engine):
    # min_agreement 0: the tiny checkpoint is random and ships no held-out set to measure agreement on.
    clf = InProcessPipeline.from_args(AppArgs(model=str(checkpoint), accelerator="cpu", engine=engine, dtype="int8",
                                           torch_threads=1, min_agreement=0))
    assert (clf.engine_name, clf.dtype_name) == (engine, "int8")
    (probs,) = clf.forward([clf.prepare(NARRATIVES)[0]])
    for p in probs.values():
        assert np.all(np.isfinite(p)) and np.allclose(p.sum(axis=1), 1.0, atol=1e-5)


def test_the_probes_catch_an_engine_that_is_not_exact(checkpoint):
    model = ModelRunner.load(str(checkpoint), accelerator="cpu", engine="torch").engine.model
    reference = engines.TorchEngine(model, CPU, "fp32")
    probes = engines.probe_inputs(model.config.vocab_size, 0)
    assert engines.largest_difference(reference, reference, probes) == (0.0, True)
    int8 = engines.TorchEngine(ModelRunner.load(str(checkpoint), accelerator="cpu", engine="torch").engine.model,
                               CPU, "int8")
    gap, _ = engines.largest_difference(int8, reference, probes)
    assert gap > 0


class Fixed:
    """An engine answering fixed logits per row, recording the rows and columns it was asked."""

    passes_at_once = 1

    def __init__(self, name, dtype, heads):
        self.name, self.dtype_name, self.heads, self.calls = name, dtype, heads, []

    def logits(self, ids, mask, between_layers=None, beside=None):
        self.calls.append(ids.shape)
        return [h[ids[:, 0]] for h in self.heads]  # column 0 carries the row's index


def test_a_close_call_is_decided_in_fp32_and_a_clear_one_is_not():
    # Row 0: clear in every task. Row 1: its second head's top two 0.02 apart. Row 2: clear, padded short.
    fast_heads = [np.log(np.array([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3]], dtype=np.float32)),
                  np.log(np.array([[0.1, 0.9], [0.51, 0.49], [0.2, 0.8]], dtype=np.float32))]
    exact_heads = [np.log(np.array([[0.88, 0.12], [0.79, 0.21], [0.71, 0.29]], dtype=np.float32)),
                   np.log(np.array([[0.12, 0.88], [0.48, 0.52], [0.21, 0.79]], dtype=np.float32))]
    fast, exact = Fixed("openvino", "bf16", fast_heads), Fixed("openvino", "fp32", exact_heads)
    rechecked = engines.RecheckedEngine(fast, exact, margin=0.05)
    ids = np.array([[0, 7, 7, 7], [1, 7, 0, 0], [2, 7, 7, 0]], dtype=np.int64)
    mask = (np.arange(4) < np.array([[4], [2], [3]])).astype(np.int64)
    heads = rechecked.logits(ids, mask)
    assert (rechecked.name, rechecked.dtype_name) == ("openvino", "bf16")
    np.testing.assert_allclose(heads[1][1], exact_heads[1][1])  # the close call: fp32's answer, label flipped back
    np.testing.assert_allclose(heads[0][1], exact_heads[0][1])  # every head of that row comes from fp32
    np.testing.assert_allclose(heads[0][[0, 2]], fast_heads[0][[0, 2]])
    assert exact.calls == [(1, 2)]  # only that row, without its padding columns
    assert (rechecked.windows, rechecked.rechecked) == (3, 1)
    engines.RecheckedEngine(fast, exact, margin=0.01).logits(ids, mask)
    assert exact.calls == [(1, 2)]  # 0.02 apart is not close under a 0.01 margin


@pytest.mark.parametrize("engine", ["torch", "onnxruntime"])
def test_recheck_margin_wraps_a_lower_precision_with_the_same_engine_in_fp32(checkpoint, engine):
    runner = ModelRunner.load(str(checkpoint), accelerator="cpu", engine=engine, dtype="int8", torch_threads=1,
                              recheck_margin=0.2)
    assert isinstance(runner.engine, engines.RecheckedEngine) and runner.selection["recheck_margin"] == 0.2
    assert (runner.engine.exact.name, runner.engine.exact.dtype_name) == (engine, "fp32")
    assert (runner.engine_name, runner.dtype_name) == (engine, "int8")
    runner.health_check()
    # fp32 has nothing to recheck.
    exact = ModelRunner.load(str(checkpoint), accelerator="cpu", engine=engine, torch_threads=1, recheck_margin=0.2)
    assert not isinstance(exact.engine, engines.RecheckedEngine) and "recheck_margin" not in exact.selection


@pytest.mark.parametrize("engine, dtype", [("torch", "fp32"), ("torch", "int8"), ("onnxruntime", "fp32"),
                                           ("onnxruntime", "int8"), ("openvino", "fp32")])
def test_every_engine_pauses_between_layers_and_another_pass_may_run_there(checkpoint, engine, dtype):
    """The pauses a long pass offers a live one (lanes.LaneGate's make_way): one after every layer but the
    last, on the exported engines too (a graph per layer), and a pass that runs in a pause changes no
    number of the paused one, nor is changed by it."""
    runner = ModelRunner.load(str(checkpoint), accelerator="cpu", engine=engine, dtype=dtype, torch_threads=1)
    assert (runner.engine_name, runner.dtype_name) == (engine, dtype)
    config = json.loads((checkpoint / "config.json").read_text())
    rng, vocab = np.random.default_rng(0), config["vocab_size"]
    long_ids = rng.integers(1000, vocab, size=(3, 60), dtype=np.int64)
    long_mask = np.ones_like(long_ids)
    long_mask[-1, 20:] = 0
    short_ids = rng.integers(1000, vocab, size=(1, 9), dtype=np.int64)
    short_mask = np.ones_like(short_ids)
    long_alone = runner.engine.logits(long_ids, long_mask)
    short_alone = runner.engine.logits(short_ids, short_mask)
    in_pauses = []

    def make_way():  # a live pass at every pause, on the same engine
        in_pauses.append(runner.engine.logits(short_ids, short_mask))

    paused = runner.engine.logits(long_ids, long_mask, make_way)
    assert len(in_pauses) == config["n_layers"] - 1
    for got, want in zip(paused, long_alone):
        np.testing.assert_array_equal(got, want)
    for short in in_pauses:
        for got, want in zip(short, short_alone):
            np.testing.assert_array_equal(got, want)


def test_openvino_runs_two_passes_at_once_each_answering_as_alone(checkpoint):
    """On two threads OpenVINO compiles its graphs a second time as two streams of one thread (for
    lanes.LaneGate's two slots): a pass there, whole or paused between layers, one that moves between the
    two compilations from layer to layer, and two such passes at once in two threads, answer what the pass
    on both threads does."""
    runner = ModelRunner.load(str(checkpoint), accelerator="cpu", engine="openvino", dtype="fp32", torch_threads=2)
    assert runner.passes_at_once == 2
    config = json.loads((checkpoint / "config.json").read_text())
    rng = np.random.default_rng(1)
    batches = []
    for rows, cols in ((1, 9), (3, 60)):
        ids = rng.integers(1000, config["vocab_size"], size=(rows, cols), dtype=np.int64)
        mask = np.ones_like(ids)
        mask[-1, cols // 2:] = 0
        batches.append((ids, mask))
    alone = [runner.engine.logits(ids, mask) for ids, mask in batches]
    for (ids, mask), want in zip(batches, alone):
        switching = itertools.cycle([True, False])  # a pass whose width changes between its layers
        for between_layers, beside in ((None, lambda: True), (lambda: None, lambda: True),
                                       (lambda: None, lambda: next(switching))):
            for got, expected in zip(runner.engine.logits(ids, mask, between_layers, beside), want):
                np.testing.assert_allclose(got, expected, atol=1e-5)
    answers: dict[int, list] = {}

    def run_beside(index: int) -> None:
        ids, mask = batches[index]
        answers[index] = [runner.engine.logits(ids, mask, lambda: None, beside=lambda: True) for _ in range(5)]

    threads = [threading.Thread(target=run_beside, args=(index,)) for index in range(len(batches))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for index, want in enumerate(alone):
        for answer in answers[index]:
            for got, expected in zip(answer, want):
                np.testing.assert_allclose(got, expected, atol=1e-5)


def test_one_thread_and_the_other_engines_run_one_pass_at_a_time(checkpoint):
    assert ModelRunner.load(str(checkpoint), accelerator="cpu", engine="openvino", dtype="fp32",
                            torch_threads=1).passes_at_once == 1
    for engine in ("torch", "onnxruntime"):
        assert ModelRunner.load(str(checkpoint), accelerator="cpu", engine=engine, dtype="fp32",
                                torch_threads=2).passes_at_once == 1
