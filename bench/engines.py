"""The engine candidates side by side: the same checkpoint, corpus, batches and threads, interleaved rounds.

    python -m bench --engines [--cases N] [--rounds R]

Each candidate runs our in-process batched forward (as the ``bare`` phase does) over the same
pre-tokenized windows; the rounds alternate candidates so that a drifting machine slows
all of them alike. ``torch.compile`` is measured here only: it is no serving option unless
it pays (bench/RESULTS.md, "Engines").
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from pathlib import Path

from bench.common import interleaved_walls, prepared_chunks, say
from bench.corpus import Corpus
from bench.machine import cpu_supports_bf16

CPU_CANDIDATES = [("torch", "fp32"), ("torch_compile", "fp32"), ("onnxruntime", "fp32"), ("openvino", "fp32"),
                  ("torch", "int8"), ("onnxruntime", "int8")]
# Where the CPU runs bf16 natively: bf16 plain, and with its close calls rerun in fp32 (AppArgs.recheck_margin).
RECHECK_MARGIN = 0.05
BF16_CANDIDATES = [("torch", "bf16"), ("openvino", "bf16"), ("torch", "bf16", RECHECK_MARGIN),
                   ("openvino", "bf16", RECHECK_MARGIN)]


def key_of(candidate: tuple) -> str:
    engine, dtype, *margin = candidate
    return f"{engine} {dtype}" + (f" recheck {margin[0]}" if margin else "")


def _candidate(base, engine: str, dtype: str, recheck_margin: float = 0.0):
    """``base`` (a InProcessPipeline on eager PyTorch fp32) moved onto another engine, same model and settings."""
    import torch

    from deployments.core.in_process import InProcessPipeline
    from deployments.core.engines import TorchEngine

    if engine == "torch_compile":
        model = torch.compile(base.backend.engine.model, dynamic=True)
        backend = dataclasses.replace(base.backend, engine=TorchEngine(model, base.device, "fp32"))
        backend.engine.name = "torch_compile"
        return InProcessPipeline(base.args, backend, base.tokenizer, base.assembler, base.preparer)
    return base.replace(engine=engine, dtype=dtype, recheck_margin=recheck_margin)


def run_engines(checkpoint: Path, corpus: Corpus, threads: int, rounds: int, chunk: int = 32) -> dict:
    from deployments.core.in_process import InProcessPipeline
    from deployments.core.config import AppArgs

    # min_agreement 0: throughput alone here (the base checkpoint is random and has no held-out set).
    base = InProcessPipeline.from_args(AppArgs(model=str(checkpoint), accelerator="cpu", engine="torch", dtype="fp32",
                                            torch_threads=threads, min_agreement=0))
    candidates = list(CPU_CANDIDATES) + (BF16_CANDIDATES if cpu_supports_bf16() else [])
    chunks = prepared_chunks(base, corpus.narratives, chunk)
    built, rows = {}, {}
    for candidate in candidates:
        started = time.perf_counter()
        clf = _candidate(base, *candidate)
        clf.forward(chunks[:1])  # export, compile and warm the kernels: not part of the figure
        key = key_of(candidate)
        resolved = key_of((clf.engine_name, clf.dtype_name, *candidate[2:]))
        rows[key] = {"engine": clf.engine_name, "dtype": clf.dtype_name, "ready_s": round(time.perf_counter() - started, 1)}
        if resolved != key:
            rows[key]["fell_back_to"] = resolved
        built[key] = clf
        say(f"engines: {key} ready in {rows[key]['ready_s']} s")
    runs = {key: (lambda clf=clf: [clf.forward([windows]) for windows in chunks]) for key, clf in built.items()}
    for key, walls in interleaved_walls(runs, rounds, "engines").items():
        rows[key]["walls_s"] = walls
    reference = statistics.median(rows["torch fp32"]["walls_s"])
    for row in rows.values():
        wall = statistics.median(row["walls_s"])
        row["cases_per_hour"] = round(len(corpus.narratives) / wall * 3600, 1)
        row["vs_torch_fp32"] = round(reference / wall, 3)
    for key, clf in built.items():
        engine = clf.backend.engine
        if hasattr(engine, "rechecked"):  # the share of windows the close-call recheck ran again in fp32
            row = rows[key]
            row["rechecked_share"] = round(engine.rechecked / max(engine.windows, 1), 4)
    return {"cases": len(corpus.narratives), "rounds": rounds, "torch_threads": threads, "candidates": rows}


def markdown(table: dict) -> str:
    lines = [f"{table['cases']} cases, {table['rounds']} interleaved rounds, {table['torch_threads']} threads:", "",
             "| engine dtype | ready (export, compile) s | cases/hour (median) | vs eager fp32 | walls s |",
             "|---|---:|---:|---:|---|"]
    for key, row in table["candidates"].items():
        note = f" (fell back to {row['fell_back_to']})" if "fell_back_to" in row else ""
        if "rechecked_share" in row:
            note += f" ({row['rechecked_share']:.1%} of windows rerun in fp32)"
        lines.append(f"| {key}{note} | {row['ready_s']} | {row['cases_per_hour']:,.0f} | {row['vs_torch_fp32']} | "
                     f"{', '.join(map(str, row['walls_s']))} |")
    return "\n".join(lines) + "\n"
