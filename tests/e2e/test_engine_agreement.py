"""The engines on the trained demo model's held-out set, against eager PyTorch fp32 (in process).

The exact engines must keep every label and stay within 1e-3; int8 must keep at least the
share of cases with all four labels that README and bench/RESULTS.md report for it.
"""

import pytest

from bench.agreement import compare, heldout_narratives
from deployments.core.in_process import InProcessPipeline
from deployments.core.config import AppArgs

# The reported figures (bench/RESULTS.md "Agreement" and "The gated faster precision"), the lower as a
# floor: 74 of 81 on a 2-core AVX2 EPYC and 73 of 81 on a 2-core AMX Xeon, whose VNNI int8 kernels round
# differently, at 2,048 tokens a pass; 72 of 81 (0.889) on the AMX Xeon at today's default of 1,024. They
# hold for the default batching only: int8 scales activations per micro-batch.
INT8_ALL_FOUR_REPORTED = 0.88


@pytest.fixture(scope="module")
def reference(demo_checkpoint):
    # min_agreement 0: these tests hold the figures themselves, under the serving gate's bar.
    clf = InProcessPipeline.from_args(AppArgs(model=str(demo_checkpoint), accelerator="cpu", engine="torch",
                                           dtype="fp32", torch_threads=2, min_agreement=0))
    narratives = heldout_narratives(demo_checkpoint)
    return clf, narratives, clf.classify_cases(narratives)


@pytest.mark.parametrize("engine", ["onnxruntime", "openvino"])
def test_an_exact_engine_keeps_every_label(reference, engine):
    clf, narratives, want = reference
    candidate = clf.replace(engine=engine)
    assert (candidate.engine_name, candidate.dtype_name) == (engine, "fp32")
    row = compare(want, candidate.classify_cases(narratives))
    assert row["all_four_identical"] == 1.0
    assert row["max_confidence_difference"] <= 1e-3
    assert row["routing_changed"] == {"escalate": {"turned_on": 0, "turned_off": 0},
                                      "human_review": {"turned_on": 0, "turned_off": 0}}


def test_the_default_engine_is_exact_on_cpu(reference):
    clf, narratives, want = reference
    default = clf.replace(engine="auto", dtype="auto")
    assert default.dtype_name == "fp32"
    assert compare(want, default.classify_cases(narratives))["all_four_identical"] == 1.0


def test_int8_keeps_what_its_figures_promise(reference):
    clf, narratives, want = reference
    int8 = clf.replace(engine="onnxruntime", dtype="int8")
    assert (int8.engine_name, int8.dtype_name) == ("onnxruntime", "int8")
    row = compare(want, int8.classify_cases(narratives))
    assert row["all_four_identical"] >= INT8_ALL_FOUR_REPORTED, row


@pytest.mark.parametrize("engine", ["torch", "openvino"])
def test_bf16_with_its_close_calls_rechecked_passes_the_serving_gate(demo_checkpoint, engine):
    """The recipe README gives for bf16: recheck_margin 0.05 keeps the demo's labels (bench/RESULTS.md)."""
    from deployments.core.inference import ModelRunner

    runner = ModelRunner.from_args(AppArgs(model=str(demo_checkpoint), accelerator="cpu", engine=engine, dtype="bf16",
                                           torch_threads=2, recheck_margin=0.05))
    figure = runner.selection["agreement"]
    assert (runner.engine_name, runner.dtype_name) == (engine, "bf16")
    assert figure["source"] == "data/heldout.jsonl" and figure["cases"] == 81
    assert figure["agreement"] >= figure["min_agreement"] == 0.99
