"""The inference engines the classifier can run the model on, and how one is chosen.

Every engine takes padded token ids and a mask (rows, cols) and returns the four
heads' logits, in ``TASKS`` order, as float32 arrays: ``ModelRunner`` turns
them into probabilities the same way whatever ran them.

- ``torch``        eager PyTorch: fp32, bf16/fp16 (autocast on CPU, half weights on CUDA), or int8
                   (dynamic quantization of the linear layers)
- ``onnxruntime``  the exported graphs (``deployments.core.export``: the whole model, and one per encoder
                   layer for passes that may pause), BERT-fused, fp32 or int8
- ``openvino``     the same exported fp32 graphs compiled by OpenVINO, on a CPU of two or more threads also
                   as two streams, so that two passes can run at once (``OpenVinoEngine``)

``resolve`` turns the settings (``engine``, ``dtype``) into one precision and the engines that
may run it on a device. ``auto`` on a CPU is measured on the host at startup
(``deployments.core.engine_choice``): the fastest of the engines that run the precision, for fp32
only exact ones (labels identical to fp32 PyTorch, confidences within ``EXACT_TOLERANCE``). It never
changes the precision: 'auto' is fp32 on a CPU, and a lower precision is an operator's opt-in that must
pass the agreement gate (``deployments.core.precision_gate``).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import threading
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Protocol, Sequence

import numpy as np
import torch

logger = logging.getLogger("ray.serve")

ENGINES = ("torch", "onnxruntime", "openvino")
# Precisions each engine can run, per device type.
SUPPORTED = {
    ("torch", "cpu"): ("fp32", "bf16", "int8"),
    ("torch", "cuda"): ("fp32", "bf16", "fp16"),
    ("onnxruntime", "cpu"): ("fp32", "int8"),
    # OpenVINO cannot read onnxruntime's int8 graph (its fused com.microsoft quantized MatMuls); its bf16 is
    # the fp32 graph compiled with a bf16 inference precision (AMX or AVX-512 bf16 matmuls).
    ("openvino", "cpu"): ("fp32", "bf16"),
}
# What "exact" means: a probability may move this much against fp32 PyTorch.
EXACT_TOLERANCE = 1e-3


@dataclass(frozen=True)
class EngineChoice:
    """``engine`` 'auto': the fastest of ``candidates``, measured on the host (engine_choice.pick)."""

    engine: str
    dtype: str
    candidates: tuple[str, ...] = ()


def auto_dtype(device: torch.device) -> str:
    """'auto' precision: fp32 on CPU (exact); on CUDA the half type the GPU runs fastest."""
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "fp32"


def resolve(engine: str, dtype: str, device: torch.device) -> EngineChoice:
    """The precision for ``device``, and the engine: a concrete one, or 'auto' with the ``candidates`` to measure
    (more than one engine runs the precision there). Raises ValueError for a pair that cannot run there."""
    precision = auto_dtype(device) if dtype == "auto" else dtype
    if engine == "auto":
        runnable = tuple(e for e in ENGINES if precision in SUPPORTED.get((e, device.type), ()))
        if len(runnable) > 1:  # on CUDA only PyTorch is installed (no onnxruntime-gpu, no TensorRT)
            return EngineChoice("auto", precision, runnable)
        engine = runnable[0] if runnable else "torch"
    supported = SUPPORTED.get((engine, device.type), ())
    if precision not in supported:
        can = ", ".join(supported) or "nothing"
        raise ValueError(f"engine '{engine}' on {device.type} runs {can}, not dtype '{precision}'")
    return EngineChoice(engine, precision, (engine,))


# Called by a forward pass between two of the encoder's layers (``lanes.LaneGate``'s ``make_way``).
BetweenLayers = Callable[[], None] | None
# Asked before each graph of a pass: whether another pass runs beside it (``lanes.Held.beside``; None: alone).
Beside = Callable[[], bool] | None


class Engine(Protocol):
    name: str
    dtype_name: str
    # How many forward passes it runs well at once (``lanes.LaneGate``'s slots): OpenVINO's can run two, each
    # on half the threads; the others one.
    passes_at_once: int

    def logits(self, ids: np.ndarray, mask: np.ndarray, between_layers: BetweenLayers = None,
               beside: Beside = None) -> Sequence[np.ndarray]:
        """Each head's logits. Given ``between_layers``, every engine calls it between the encoder's layers
        (the exported ones run their graphs per layer for it), except on a checkpoint's own single ONNX
        graph, which always runs whole. ``beside``: whether another pass runs at the same time, so that this
        one takes its share of the threads (an engine with ``passes_at_once`` 1 ignores it)."""


TORCH_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


class TorchEngine:
    name = "torch"
    passes_at_once = 1

    def __init__(self, model: torch.nn.Module, device: torch.device, dtype: str):
        self.device, self.dtype_name = device, dtype
        if dtype == "int8":
            model = quantize_linear_int8(model)  # CPU only (SUPPORTED)
        elif device.type == "cuda" and dtype != "fp32":
            model = model.to(TORCH_DTYPES[dtype])  # on GPU, half weights are the fast path
        self.model = model.to(device)

    def _autocast(self):
        # On CPU, bf16 autocast keeps LayerNorm and softmax in fp32 and runs the matmuls on AMX.
        if self.device.type == "cpu" and self.dtype_name == "bf16":
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    @torch.inference_mode()
    def logits(self, ids: np.ndarray, mask: np.ndarray, between_layers: BetweenLayers = None,
               beside: Beside = None) -> list[np.ndarray]:
        input_ids = torch.from_numpy(ids).to(self.device, non_blocking=True)
        attention = torch.from_numpy(mask).to(self.device, non_blocking=True)
        with self._autocast():
            out = self.model(input_ids, attention, between_layers=between_layers)
        return [head.float().cpu().numpy() for head in out]


def quantize_linear_int8(model: torch.nn.Module) -> torch.nn.Module:
    """Dynamic int8 quantization of every linear layer (weights int8, activations quantized per batch)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao's deprecation notice: the API still ships and works
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


def run_stages(run_stage: Callable[[int, np.ndarray, np.ndarray], Sequence[np.ndarray]], count: int,
               ids: np.ndarray, mask: np.ndarray, between_layers: Callable[[], None]) -> Sequence[np.ndarray]:
    """An exported model's ``count`` stages in order (``export.EncoderStage``): each one's first output is
    the next one's input, and ``between_layers`` is called between two of them. The last gives the heads."""
    x = ids
    for index in range(count):
        if index:
            between_layers()
        outputs = run_stage(index, x, mask)
        x = outputs[0]
    return outputs


class OnnxRuntimeEngine:
    """The export on ONNX Runtime: the one graph for a pass that cannot pause, the graphs per layer for one
    that may (``between_layers`` given)."""

    name = "onnxruntime"
    passes_at_once = 1

    def __init__(self, whole: Path, stages: Sequence[Path], dtype: str, threads: int | None):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.inter_op_num_threads = 1
        if threads:
            options.intra_op_num_threads = threads
        # Idle worker threads sleep instead of spinning: on a few shared cores the spinning
        # steals the CPU that Ray's proxy and the ingress need (like OMP_WAIT_POLICY=PASSIVE).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        sessions = [ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
                    for path in (whole, *stages)]
        self.whole, self.stages = sessions[0], sessions[1:]
        self.stage_inputs = [session.get_inputs()[0].name for session in self.stages]
        self.dtype_name = dtype
        self.paths = [whole, *stages]

    def logits(self, ids: np.ndarray, mask: np.ndarray, between_layers: BetweenLayers = None,
               beside: Beside = None) -> list[np.ndarray]:
        if between_layers is None or not self.stages:
            return self.whole.run(None, {"input_ids": ids, "attention_mask": mask})
        return run_stages(self._run_stage, len(self.stages), ids, mask, between_layers)

    def _run_stage(self, index: int, x: np.ndarray, mask: np.ndarray) -> list[np.ndarray]:
        return self.stages[index].run(None, {self.stage_inputs[index]: x, "attention_mask": mask})


class OpenVinoEngine:
    """The export compiled by OpenVINO: the one graph for a pass that cannot pause, the graphs per layer for
    one that may (``between_layers`` given).

    With ``passes_at_once`` 2 it compiles each graph twice: once on all the threads, for a pass that runs
    alone, and once as two streams of half the threads, for two passes at once (``beside``). On a 2-core
    host the serving processes preempt the model's threads all the time, and one pass on both cores stalls
    at each of its barriers whenever either thread is off its core; two one-thread passes each lose only
    what is taken from them: under a 20% load beside it, a set of passes took 28% longer on one stream of
    two threads and 10% longer on two streams of one (bench/RESULTS.md, "Two passes at once").
    """

    name = "openvino"

    def __init__(self, whole: Path, stages: Sequence[Path], dtype: str, threads: int | None, passes_at_once: int = 1):
        import openvino as ov

        # fp32 unless bf16 is asked for (OpenVINO would pick bf16 on its own on an AMX CPU), and no pinning of
        # its threads to cores: Ray's proxy and the ingress share those cores.
        alone = {"INFERENCE_PRECISION_HINT": "bf16" if dtype == "bf16" else "f32", "PERFORMANCE_HINT": "LATENCY",
                 "NUM_STREAMS": 1, "ENABLE_CPU_PINNING": False}
        if threads:
            alone["INFERENCE_NUM_THREADS"] = threads
        core = ov.Core()
        self.compiled = {False: self._compile(core, whole, stages, alone)}
        if passes_at_once > 1:  # the threads split between the streams
            self.compiled[True] = self._compile(core, whole, stages,
                                                {**alone, "NUM_STREAMS": passes_at_once, "PERFORMANCE_HINT": "THROUGHPUT"})
        self.passes_at_once = passes_at_once
        models = self.compiled[False]
        self.stage_count = len(models) - 1
        self.input_names = [model.inputs[0].any_name for model in models]
        # Outputs by name: the two compilations' output ports are distinct objects.
        self.output_names = [[output.any_name for output in model.outputs] for model in models]
        # Infer requests are not safe across threads, and a pass paused between stages keeps its hidden
        # state in its own requests' output memory while another lane's pass runs: a set per pass in flight,
        # of each compilation.
        self._idle_requests: list[dict[bool, list]] = []
        self._lock = threading.Lock()
        self.dtype_name = dtype
        self.paths = [whole, *stages]

    @staticmethod
    def _compile(core, whole: Path, stages: Sequence[Path], config: dict) -> list:
        """The whole graph, then the stages, compiled under ``config``."""
        return [core.compile_model(str(path), "CPU", config) for path in (whole, *stages)]

    def logits(self, ids: np.ndarray, mask: np.ndarray, between_layers: BetweenLayers = None,
               beside: Beside = None) -> list[np.ndarray]:
        with self._lock:
            requests = self._idle_requests.pop() if self._idle_requests else {
                narrow: [model.create_infer_request() for model in models] for narrow, models in self.compiled.items()}
        try:
            if between_layers is None or not self.stage_count:
                result = requests[self._narrow(beside)][0].infer({"input_ids": ids, "attention_mask": mask})
                heads = [result[name] for name in self.output_names[0]]
            else:
                heads = run_stages(partial(self._run_stage, requests, beside), self.stage_count, ids, mask,
                                   between_layers)
            return [np.array(head) for head in heads]  # out of the requests' memory, which the next pass reuses
        finally:
            with self._lock:
                self._idle_requests.append(requests)

    def _narrow(self, beside: Beside) -> bool:
        """Whether the next graph runs on the half-thread compilation: another pass runs beside this one."""
        return self.passes_at_once > 1 and beside is not None and beside()

    def _run_stage(self, requests: dict[bool, list], beside: Beside, index: int, x: np.ndarray,
                   mask: np.ndarray) -> list[np.ndarray]:
        # Shared, not copied: the inputs live until the call returns, and a stage's output is read only by
        # the next stage of the same pass (which may run on the other compilation: the pass holds requests
        # of both). Index 0 is the whole graph, the stages follow.
        request = requests[self._narrow(beside)][index + 1]
        result = request.infer({self.input_names[index + 1]: x, "attention_mask": mask},
                               share_inputs=True, share_outputs=True)
        return [result[name] for name in self.output_names[index + 1]]


class RecheckedEngine:
    """A precision below fp32 whose close calls are decided in fp32.

    bf16 and int8 move a probability by a few hundredths at most on the demo (bench/RESULTS.md,
    "Agreement"), so they can only change a label where fp32's top two are about that close. A window
    whose top two labels in any task are closer than ``margin`` in the fast engine's answer is run again
    on the exact engine, and fp32's logits replace the fast ones for it: the labels that a lower
    precision would flip are mostly the ones fp32 decides, at the cost of the share of windows rerun.
    """

    def __init__(self, fast: Engine, exact: Engine, margin: float):
        self.fast, self.exact, self.margin = fast, exact, margin
        self.name, self.dtype_name = fast.name, fast.dtype_name
        self.passes_at_once = min(fast.passes_at_once, exact.passes_at_once)
        self.windows = self.rechecked = 0  # counted for the measurement of the share rerun, not for serving

    def logits(self, ids: np.ndarray, mask: np.ndarray, between_layers: BetweenLayers = None,
               beside: Beside = None) -> list[np.ndarray]:
        heads = [np.array(head, dtype=np.float32) for head in self.fast.logits(ids, mask, between_layers, beside)]
        close = np.zeros(len(ids), dtype=bool)
        for head in heads:
            top_two = np.sort(softmax(head), axis=-1)[:, -2:]
            close |= top_two[:, 1] - top_two[:, 0] < self.margin
        self.windows += len(ids)
        if close.any():
            rows = np.flatnonzero(close)
            self.rechecked += len(rows)
            width = int(mask[rows].sum(axis=1).max())  # the rows rerun may need fewer padded columns
            exact = self.exact.logits(np.ascontiguousarray(ids[rows, :width]), np.ascontiguousarray(mask[rows, :width]),
                                      between_layers, beside)
            for head, replacement in zip(heads, exact):
                head[rows] = np.asarray(replacement, dtype=np.float32)
        return heads


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return (shifted / shifted.sum(axis=-1, keepdims=True)).astype(np.float32)


def probe_inputs(vocab_size: int, pad_id: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Fixed token rows for checking an engine against fp32 PyTorch: short, padded and long."""
    rng = np.random.default_rng(20261201)
    probes = []
    for rows, cols in ((1, 2), (3, 40), (2, 200)):
        ids = rng.integers(1000, vocab_size, size=(rows, cols), dtype=np.int64)
        mask = np.ones_like(ids)
        if rows > 1:
            mask[-1, cols // 3:] = 0
            ids[-1, cols // 3:] = pad_id
        probes.append((ids, mask))
    return probes


def largest_difference(engine: Engine, reference: Engine, probes) -> tuple[float, bool]:
    """(largest probability difference, every top label the same) of ``engine`` against ``reference``, for
    passes run whole and passes that may pause (an exported engine runs other graphs for those), alone and
    beside another (OpenVINO compiles those twice)."""
    gap, same = 0.0, True
    besides = (None, lambda: True) if engine.passes_at_once > 1 else (None,)
    for ids, mask in probes:
        want = reference.logits(ids, mask)
        for between_layers, beside in itertools.product((None, _no_pause), besides):
            for got, expected in zip(engine.logits(ids, mask, between_layers, beside), want):
                p, q = softmax(np.asarray(got)), softmax(np.asarray(expected))
                gap = max(gap, float(np.abs(p - q).max()))
                same = same and bool(np.array_equal(p.argmax(-1), q.argmax(-1)))
    return gap, same


def _no_pause() -> None:
    """A pass that may pause but is never asked to."""
