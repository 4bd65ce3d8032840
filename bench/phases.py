"""The measured phases, each on the same checkpoint and corpus.

- bare            our pipeline in-process (``InProcessPipeline``), timing its batched forward: no Ray, no HTTP;
                  eager PyTorch fp32, the default engine, and the int8 opt-in
- seed_recipe     the model card's recipe over HTTP
- pipeline        our Ray Serve app over HTTP, one case a request, the whole corpus at the best concurrency
                  (default engine, then int8)
- pipeline_batch  our /classify/batch, 32 cases a request
- latency_at_10k  the pipeline under an open-loop 10,000 cases/hour
- litserve        LitServe around our in-process pipeline: eager PyTorch, and our default engine
- int8_agreement  the int8 opt-in against eager PyTorch fp32 on the demo's held-out set
- gated_precision the faster precision the replica's startup gate admits on the demo (bf16 with its
                  close calls rechecked, where the CPU runs bf16 natively): its agreement, and its rate
                  against the exact engine 'auto' serves

``measure`` runs the selected ones and writes their figures into the result.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Collection, Sequence

from bench.common import interleaved_walls, prepared_chunks, say
from bench.corpus import Corpus, batch_bodies, single_bodies
from bench.cpu import cpu_breakdown, cpu_snapshot, cpu_used, serving_cpu
from bench.drivers import closed_loop, fixed_work
from bench.report import ratio
from bench.servers import litserve_server, pipeline_server, seed_recipe_server

PHASES = ("bare", "seed_recipe", "pipeline", "litserve", "int8_agreement", "gated_precision")
# The faster precision this project serves behind the gate (README, recheck_margin): bf16, close calls rerun in fp32.
GATED_PRECISION = {"dtype": "bf16", "recheck_margin": 0.05}


def bare_grid(quick: bool, cuda: bool) -> list[tuple[int, int]]:
    """(max_batch_size, max_batch_tokens) settings the bare phase tries."""
    if quick:  # the served default (batching: 32 windows, 1024 tokens on CPU); a GPU's larger passes
        return [(64, 16384) if cuda else (32, 1024)]
    return [(32, 512), (32, 1024), (32, 2048), (32, 4096), (32, 8192), (64, 16384)]


def with_batching(classifier, max_rows: int, max_tokens: int):
    """The same ``InProcessPipeline`` (same loaded model) under other batching settings; on a GPU a pass's
    fixed cost is its budget, the fewest passes, as k8s sets it (no GPU measurement of its own yet)."""
    args = classifier.args
    pass_cost = max_tokens if classifier.device.type == "cuda" else args.batching.pass_cost_tokens
    return classifier.replace(
        batching={**args.batching.model_dump(), "max_batch_size": max_rows, "max_batch_tokens": max_tokens,
                  "pass_cost_tokens": pass_cost},
        # In process there is no ingress slicing; AppArgs only asks that a slice fits a batch.
        windows_per_call=min(args.windows_per_call, max_rows),
    )


def run_bare(checkpoint: Path, corpus: Corpus, engine: str, dtype: str, threads: int,
             settings: Sequence[tuple[int, int]], chunk: int = 64) -> dict:
    """Our in-process pipeline's batched forward; the best of a few batch settings.

    Narratives are normalized, tokenized and windowed by the same ``InProcessPipeline``
    before the clock starts: the figure is the model's limit, what serving can approach.
    """
    import torch

    from deployments.core.in_process import InProcessPipeline
    from deployments.core.config import AppArgs

    # The base checkpoint is random weights: its speed is measured here, a precision's agreement on the demo's
    # held-out set (int8_agreement), so the startup gate does not apply.
    base = InProcessPipeline.from_args(AppArgs(model=str(checkpoint), engine=engine, dtype=dtype, torch_threads=threads,
                                               min_agreement=0))
    chunks = prepared_chunks(base, corpus.narratives, chunk)
    with_batching(base, *settings[0]).forward(chunks[:1])  # warm up kernels
    results = []
    for max_rows, max_tokens in settings:
        classifier = with_batching(base, max_rows, max_tokens)
        started = time.perf_counter()
        for windows in chunks:
            classifier.forward([windows])
        if classifier.device.type == "cuda":
            torch.cuda.synchronize()
        wall = time.perf_counter() - started
        results.append({"max_rows": max_rows, "max_tokens": max_tokens,
                        "cases_per_hour": round(len(corpus.narratives) / wall * 3600, 1), "wall_s": round(wall, 2)})
        say(f"bare {base.engine_name} {base.dtype_name} rows={max_rows} tokens={max_tokens}: "
            f"{results[-1]['cases_per_hour']:.0f} cases/h")
    best = max(results, key=lambda r: r["cases_per_hour"])
    return {"cases_per_hour": best["cases_per_hour"], "best": best, "grid": results,
            "device": str(base.device), "engine": base.engine_name, "dtype": base.dtype_name}


def latency_by_windows(report, corpus: Corpus) -> dict:
    """p50/p99 of one-window cases apart from longer ones: a long transcript's own compute sets the tail."""
    from clients.load import percentile

    groups: dict[str, list[float]] = {"one_window": [], "several_windows": []}
    for index, latency in report.answered:
        groups["several_windows" if corpus.needs_several_windows(index) else "one_window"].append(latency)
    out = {}
    for name, values in groups.items():
        values.sort()
        p50, p99 = percentile(values, 50), percentile(values, 99)
        out[name] = {"n": len(values), "p50_ms": p50 and round(1000 * p50, 1), "p99_ms": p99 and round(1000 * p99, 1)}
    return out


def warm_up(url: str, path: str, corpus: Corpus, name: str) -> float:
    """The corpus once at concurrency 32, untimed for the figure, as bare warms its kernels up before it
    times: a server's first pass over the corpus runs each new batch shape for the first time (OpenVINO
    compiles a kernel per shape; with two passes at once, for each of its two compilations). Returns that
    first pass's rate, reported apart as the cold figure."""
    r = fixed_work(url, path, single_bodies(corpus), 32)
    say(f"{name} warm-up (cold): {r.cases_per_hour:.0f} cases/h, statuses {dict(r.statuses)}")
    return r.cases_per_hour


def single_case_sweep(server, corpus: Corpus, quick: bool, name: str) -> dict:
    """Single-case /classify, every corpus case once, at a few concurrencies; the best, with CPU per case
    by process.

    The same work as bare, not a time window: the lanes put a long transcript behind short cases
    under overload, so a window counts more short cases than the corpus holds (40,080 cases/h in a
    15 s window against 34,018 for the whole corpus, same server, bench/RESULTS.md). After a warm-up."""
    cold = warm_up(server.url, "/classify", corpus, name)
    sweep = []
    for concurrency in ((32,) if quick else (8, 16, 32, 48, 64)):
        before = cpu_snapshot(server.proc.pid)
        r = fixed_work(server.url, "/classify", single_bodies(corpus), concurrency)
        after = cpu_snapshot(server.proc.pid)
        row = {"concurrency": concurrency, **r.to_dict(),
               "cpu_ms_per_case": cpu_breakdown(before, after, r.cases, r.client_cpu_s)}
        sweep.append(row)
        say(f"{name} c={concurrency}: {row['cases_per_hour']:.0f} cases/h, statuses {row['statuses']}")
    best = max(sweep, key=lambda r: r["cases_per_hour"])
    return {"cases_per_hour": best["cases_per_hour"], "best": best, "sweep": sweep, "cold_cases_per_hour": cold}


def run_pipeline_phases(checkpoint: Path, corpus: Corpus, engine: str, dtype: str, threads: int, quick: bool,
                        out_dir: Path, app_args: dict | None = None) -> dict:
    """pipeline, pipeline_batch and latency_at_10k, on one running Ray Serve app (``app_args``: overrides)."""
    import httpx

    from clients.load import run_open_loop

    out: dict = {}
    with pipeline_server(checkpoint, engine, dtype, threads, out_dir, app_args) as server:
        # What the Classifier serves, and with engine auto each candidate's rate it measured at startup.
        info = httpx.get(f"{server.url}/info", timeout=30).json()
        out["served_engine"] = {"engine": info["engine"], "dtype": info["dtype"], "engine_auto": info.get("engine_auto")}
        say(f"served engine {info['engine']} {info['dtype']}; auto measured {info.get('engine_auto')}")
        out["pipeline"] = single_case_sweep(server, corpus, quick, "pipeline")

        batches = batch_bodies(corpus, 32)[:5 if quick else None]
        before = cpu_snapshot(server.proc.pid)
        # The corpus (its first 160 cases with --quick), two requests in flight so the replica
        # never waits on the ingress.
        r = fixed_work(server.url, "/classify/batch", batches, 2)
        after = cpu_snapshot(server.proc.pid)
        out["pipeline_batch"] = {**r.to_dict(), "cases_per_request": 32, "concurrency": 2,
                                 "cpu_ms_per_case": cpu_breakdown(before, after, r.cases, r.client_cpu_s)}
        say(f"pipeline_batch: {r.cases_per_hour:.0f} cases/h, statuses {dict(r.statuses)}")

        seconds = 20 if quick else 60
        say(f"latency at 10,000 cases/hour, open loop, {seconds} s")
        report = run_open_loop(server.url, 10_000 / 3600, seconds, corpus.narratives)
        out["latency_at_10k"] = {**report.to_dict(), "by_windows": latency_by_windows(report, corpus)}
        say(f"latency_at_10k: p50 {report.p50_ms:.0f} ms, p99 {report.p99_ms:.0f} ms, errors {report.failed}")
    return out


def run_seed_recipe(checkpoint: Path, corpus: Corpus, threads: int, quick: bool, out_dir: Path) -> dict:
    with seed_recipe_server(checkpoint, threads, out_dir) as server:
        r = closed_loop(server.url, "/classify", single_bodies(corpus), 2, 15 if quick else 45)
    say(f"seed_recipe: {r.cases_per_hour:.0f} cases/h")
    return r.to_dict()


def run_pipeline_int8(checkpoint: Path, corpus: Corpus, engine: str, threads: int, quick: bool,
                      out_dir: Path, app_args: dict | None = None) -> dict:
    """The int8 opt-in served, one case a request."""
    # As in run_bare: speed on random weights; the agreement is the int8_agreement phase's.
    with pipeline_server(checkpoint, engine, "int8", threads, out_dir, {"min_agreement": 0, **(app_args or {})}) as server:
        return single_case_sweep(server, corpus, quick, "pipeline int8")


def run_litserve(checkpoint: Path, corpus: Corpus, engine: str, dtype: str, threads: int, quick: bool,
                 out_dir: Path) -> dict:
    with litserve_server(checkpoint, engine, dtype, threads, out_dir) as server:
        cold = warm_up(server.url, "/predict", corpus, f"litserve {engine} {dtype}")
        sweep = []
        for concurrency in ((32,) if quick else (16, 32, 64)):
            before = cpu_snapshot(server.proc.pid)
            r = fixed_work(server.url, "/predict", single_bodies(corpus), concurrency)  # as the pipeline
            after = cpu_snapshot(server.proc.pid)
            sweep.append({"concurrency": concurrency, **r.to_dict(),
                          "cpu_ms_per_case_all_processes": round(1000 * cpu_used(before, after) / max(r.cases, 1), 2)})
            say(f"litserve {engine} {dtype} c={concurrency}: {r.cases_per_hour:.0f} cases/h, "
                f"statuses {dict(r.statuses)}")
    best = max(sweep, key=lambda r: r["cases_per_hour"])
    return {"cases_per_hour": best["cases_per_hour"], "best": best, "sweep": sweep, "cold_cases_per_hour": cold}


def run_int8_agreement(demo: Path, threads: int) -> dict:
    """int8 on every engine that runs it (those 'auto' measures) against eager PyTorch fp32 on the demo's held-out set."""
    from bench.agreement import heldout_narratives, run_agreement
    from deployments.core.engines import resolve
    from deployments.core.loading import resolve_device

    int8 = resolve("auto", "int8", resolve_device("cpu"))
    table = run_agreement(demo, heldout_narratives(demo), [(engine, int8.dtype) for engine in int8.candidates], threads)
    for key, row in table["candidates"].items():
        say(f"{key} agreement on the demo's held-out set: {row.get('all_four_identical')} all four identical")
    return table


def run_gated_precision(demo: Path, corpus: Corpus, threads: int) -> dict:
    """The demo served as a replica would at ``GATED_PRECISION``: its startup gate (min_agreement 0.99 on the
    demo's held-out set) measures the agreement and refuses it if short; then its rate and the exact engine's
    ('auto', fp32), interleaved, over the corpus's narratives."""
    import statistics

    from bench.machine import cpu_supports_bf16
    from deployments.core.config import AppArgs
    from deployments.core.in_process import InProcessPipeline
    from deployments.core.precision_gate import AgreementTooLowError

    if not cpu_supports_bf16():  # bf16 would run emulated, slower than fp32: nothing to admit
        return {**GATED_PRECISION, "unavailable": "this CPU has no native bf16"}
    exact = InProcessPipeline.from_args(AppArgs(model=str(demo), accelerator="cpu", engine="auto", dtype="fp32",
                                                torch_threads=threads))
    try:
        gated = InProcessPipeline.from_args(AppArgs(model=str(demo), accelerator="cpu", engine="auto",
                                                    torch_threads=threads, **GATED_PRECISION))
    except AgreementTooLowError as err:
        say(f"gated precision refused: {err}")
        return {**GATED_PRECISION, "refused": str(err)}
    narratives = corpus.narratives[:128]
    chunks = prepared_chunks(exact, narratives)
    for clf in (exact, gated):
        clf.forward(chunks[:1])  # warm up kernels
    walls = interleaved_walls({name: (lambda clf=clf: [clf.forward([windows]) for windows in chunks])
                               for name, clf in (("exact", exact), ("gated", gated))}, 3, "gated precision")
    rate = {name: round(len(narratives) / statistics.median(w) * 3600, 1) for name, w in walls.items()}
    figure = gated.backend.selection.get("agreement") or {}
    out = {**GATED_PRECISION, "engine": gated.engine_name, "exact_engine": exact.engine_name,
           "agreement": figure.get("agreement"), "agreement_cases": figure.get("cases"),
           "min_agreement": figure.get("min_agreement"), "cases_per_hour": rate["gated"],
           "exact_cases_per_hour": rate["exact"], "vs_exact": ratio(rate["gated"], rate["exact"])}
    say(f"gated precision {gated.engine_name} {gated.dtype_name} recheck {GATED_PRECISION['recheck_margin']}: "
        f"agreement {out['agreement']} on {out['agreement_cases']} held-out cases, {out['vs_exact']}x "
        f"the exact {exact.engine_name} fp32")
    return out


def measure(result: dict, phases: Collection[str], checkpoint: Path, corpus: Corpus, engine: str, dtype: str,
            threads: int, quick: bool, out_dir: Path, demo: Path | None = None,
            app_args: dict | None = None) -> dict:
    """Run the selected phases in order; their figures go into ``result`` (and its ``phases``).

    ``app_args``: the pipeline's args that differ from serve_config.yaml, by dotted name.
    """
    import torch

    cuda = torch.cuda.is_available()
    grid = bare_grid(quick, cuda)
    if "bare" in phases:
        reference = run_bare(checkpoint, corpus, "torch", "fp32", threads, grid)
        bare = run_bare(checkpoint, corpus, engine, dtype, threads, grid)
        result["phases"].update({"bare_torch_fp32": reference, "bare": bare})
        result.update({"bare_torch_fp32_cases_per_hour": reference["cases_per_hour"],
                       "bare_cases_per_hour": bare["cases_per_hour"], "engine": bare["engine"], "dtype": bare["dtype"]})
        if not cuda:
            int8 = run_bare(checkpoint, corpus, engine, "int8", threads, grid)
            result["phases"]["bare_int8"] = int8
            result["bare_int8_cases_per_hour"] = int8["cases_per_hour"]
    if "seed_recipe" in phases:
        seed = run_seed_recipe(checkpoint, corpus, threads, quick, out_dir)
        result["phases"]["seed_recipe"] = seed
        result["seed_recipe_cases_per_hour"] = seed["cases_per_hour"]
    if "pipeline" in phases:
        pipe = run_pipeline_phases(checkpoint, corpus, engine, dtype, threads, quick, out_dir, app_args)
        result["phases"].update(pipe)
        result["pipeline_cases_per_hour"] = pipe["pipeline"]["cases_per_hour"]
        result["pipeline_cold_cases_per_hour"] = pipe["pipeline"]["cold_cases_per_hour"]
        result["pipeline_batch_cases_per_hour"] = pipe["pipeline_batch"]["cases_per_hour"]
        result["serving_cpu_ms_per_case"] = serving_cpu(pipe["pipeline"]["best"]["cpu_ms_per_case"])
        result["served_engine"] = pipe["served_engine"]
        lat = pipe["latency_at_10k"]
        by_windows = lat["by_windows"]
        result.update({"p50_ms_at_10k": lat["latency_ms"]["p50"], "p95_ms_at_10k": lat["latency_ms"]["p95"],
                       "p99_ms_at_10k": lat["latency_ms"]["p99"], "errors_at_10k": lat["failed"],
                       "p99_one_window_ms_at_10k": by_windows["one_window"]["p99_ms"],
                       "p50_one_window_ms_at_10k": by_windows["one_window"]["p50_ms"],
                       "p99_several_windows_ms_at_10k": by_windows["several_windows"]["p99_ms"],
                       "p50_several_windows_ms_at_10k": by_windows["several_windows"]["p50_ms"]})
        if not cuda:
            int8 = run_pipeline_int8(checkpoint, corpus, engine, threads, quick, out_dir, app_args)
            result["phases"]["pipeline_int8"] = int8
            result["pipeline_int8_cases_per_hour"] = int8["cases_per_hour"]
    if "litserve" in phases:
        lit_torch = run_litserve(checkpoint, corpus, "torch", "fp32", threads, quick, out_dir)
        lit = run_litserve(checkpoint, corpus, engine, dtype, threads, quick, out_dir)
        result["phases"].update({"litserve_torch": lit_torch, "litserve": lit})
        result["litserve_torch_cases_per_hour"] = lit_torch["cases_per_hour"]
        result["litserve_cases_per_hour"] = lit["cases_per_hour"]
    if "int8_agreement" in phases and demo is not None and not cuda:
        table = run_int8_agreement(demo, threads)
        result["phases"]["int8_agreement"] = table
        # One figure per engine that runs int8 ('auto' measures them all for speed at startup).
        result["int8_all_four_agreement"] = {key: row.get("all_four_identical")
                                             for key, row in table["candidates"].items()}
    if "gated_precision" in phases and demo is not None and not cuda:
        gated = run_gated_precision(demo, corpus, threads)
        result["phases"]["gated_precision"] = gated
        result.update({"gated_precision_agreement": gated.get("agreement"),
                       "gated_precision_vs_exact": gated.get("vs_exact")})
    if "bare" in phases and len(phases) > 1:
        # This machine's speed drifts (shared host): the same bare run again at the end says by how much.
        best = result["phases"]["bare"]["best"]
        again = run_bare(checkpoint, corpus, engine, dtype, threads, [(best["max_rows"], best["max_tokens"])])
        result["bare_recheck_cases_per_hour"] = again["cases_per_hour"]
        result["machine_drift"] = ratio(again["cases_per_hour"], result["bare_cases_per_hour"])
    return result
