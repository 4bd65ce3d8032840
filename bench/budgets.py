"""The token budget per forward pass, side by side: throughput, and how long one pass holds the model.

    python -m bench --token-budgets [--cases N] [--rounds R] [--engine E]

The same in-process batched forward as the ``bare`` phase, over the same pre-tokenized windows (the
corpus in chunks of 32 cases, as the replica sees them), cut into micro-batches under each budget;
the rounds alternate budgets so that a drifting machine slows all of them alike. Two figures per
budget: cases/hour, and the longest and 90th-percentile single pass. A short case that arrives
while a pass runs waits for it: the budget trades throughput against that wait
(``batching.max_batch_tokens`` and ``batching.yield_batch_tokens``).
"""

from __future__ import annotations

import statistics
import time
from contextlib import contextmanager
from pathlib import Path

from bench.common import interleaved_walls, prepared_chunks
from bench.corpus import Corpus

BUDGETS = (256, 512, 1024, 2048, 4096, 8192)
MAX_ROWS = 64


def run_budgets(checkpoint: Path, corpus: Corpus, engine: str, threads: int, rounds: int, chunk: int = 32) -> dict:
    from clients.load import percentile
    from deployments.core.config import AppArgs
    from deployments.core.in_process import InProcessPipeline

    pipeline = InProcessPipeline.from_args(AppArgs(model=str(checkpoint), accelerator="cpu", engine=engine,
                                                   dtype="fp32", torch_threads=threads))
    runner = pipeline.backend
    chunks = prepared_chunks(pipeline, corpus.narratives, chunk)
    runner.classify(chunks[:1], max_rows=MAX_ROWS, max_tokens=2048)  # warm the kernels
    passes: dict[int, list[float]] = {budget: [] for budget in BUDGETS}  # each forward pass's seconds

    def run(budget: int) -> None:
        @contextmanager
        def timed():
            started = time.perf_counter()
            yield
            passes[budget].append(time.perf_counter() - started)

        for windows in chunks:
            runner.classify([windows], max_rows=MAX_ROWS, max_tokens=budget, turn=timed)

    walls = interleaved_walls({budget: (lambda budget=budget: run(budget)) for budget in BUDGETS}, rounds, "budgets")
    out = {}
    for budget in BUDGETS:
        wall = statistics.median(walls[budget])
        timed_passes = sorted(passes[budget])
        out[str(budget)] = {"cases_per_hour": round(len(corpus.narratives) / wall * 3600, 1),
                            "passes_per_round": len(timed_passes) // rounds,
                            "pass_p90_ms": round(1000 * percentile(timed_passes, 90), 1),
                            "pass_max_ms": round(1000 * timed_passes[-1], 1), "walls_s": walls[budget]}
    return {"cases": len(corpus.narratives), "rounds": rounds, "torch_threads": threads, "max_rows": MAX_ROWS,
            "engine": runner.engine_name, "budgets": out}


def markdown(table: dict) -> str:
    lines = [f"{table['cases']} cases, engine {table['engine']} fp32, {table['torch_threads']} threads, "
             f"{table['rounds']} interleaved rounds, at most {table['max_rows']} rows a pass:", "",
             "| tokens per pass | cases/hour (median) | passes a round | pass p90 ms | longest pass ms | walls s |",
             "|---:|---:|---:|---:|---:|---|"]
    for budget, row in table["budgets"].items():
        lines.append(f"| {int(budget):,} | {row['cases_per_hour']:,.0f} | {row['passes_per_round']} | "
                     f"{row['pass_p90_ms']} | {row['pass_max_ms']} | {', '.join(map(str, row['walls_s']))} |")
    return "\n".join(lines) + "\n"
