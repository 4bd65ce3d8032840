"""The run's result: its header (machine, commit, corpus), the ratios between phases, JSON and markdown."""

from __future__ import annotations

import json
from pathlib import Path

from bench.corpus import Corpus
from bench.machine import cpu_name, git_commit, gpu_name


def ratio(a, b):
    return round(a / b, 3) if a and b else None


def header(command: str, engine: str, dtype: str, threads: int, corpus: Corpus) -> dict:
    """What was measured, on what: the result before any phase ran."""
    return {
        "command": command,
        "commit": git_commit(), "cpu": cpu_name(), "gpu": gpu_name(), "engine": engine, "dtype": dtype,
        "torch_threads": threads, "cases_in_corpus": len(corpus.narratives),
        "tokens_per_case_median": corpus.median_tokens, "share_over_512_tokens": round(corpus.share_over_512, 3),
        "phases": {},
    }


def add_ratios(result: dict, elapsed_s: float) -> dict:
    get = result.get
    result.update({
        "pipeline_vs_bare": ratio(get("pipeline_cases_per_hour"), get("bare_cases_per_hour")),
        "pipeline_vs_bare_torch_fp32": ratio(get("pipeline_cases_per_hour"), get("bare_torch_fp32_cases_per_hour")),
        "bare_vs_bare_torch_fp32": ratio(get("bare_cases_per_hour"), get("bare_torch_fp32_cases_per_hour")),
        "pipeline_int8_vs_bare_torch_fp32": ratio(get("pipeline_int8_cases_per_hour"),
                                                  get("bare_torch_fp32_cases_per_hour")),
        "pipeline_vs_litserve_torch": ratio(get("pipeline_cases_per_hour"), get("litserve_torch_cases_per_hour")),
        "pipeline_vs_seed_recipe": ratio(get("pipeline_cases_per_hour"), get("seed_recipe_cases_per_hour")),
        "pipeline_batch_vs_bare": ratio(get("pipeline_batch_cases_per_hour"), get("bare_cases_per_hour")),
        "pipeline_vs_litserve": ratio(get("pipeline_cases_per_hour"), get("litserve_cases_per_hour")),
        "pipeline_batch_vs_litserve": ratio(get("pipeline_batch_cases_per_hour"), get("litserve_cases_per_hour")),
        "elapsed_s": round(elapsed_s, 1),
    })
    return result


def markdown(result: dict) -> str:
    rows = [
        ("bare_torch_fp32 (in-process batched forward, eager PyTorch fp32)",
         result.get("bare_torch_fp32_cases_per_hour")),
        ("bare (in-process batched forward, default engine)", result.get("bare_cases_per_hour")),
        ("bare_int8 (in-process, the int8 opt-in)", result.get("bare_int8_cases_per_hour")),
        ("seed_recipe (model card, per request, fp32, pad 256)", result.get("seed_recipe_cases_per_hour")),
        ("litserve_torch (LitServe around our model code, eager PyTorch fp32)",
         result.get("litserve_torch_cases_per_hour")),
        ("litserve (LitServe around our model code, default engine)", result.get("litserve_cases_per_hour")),
        ("pipeline (Ray Serve, 1 case/request)", result.get("pipeline_cases_per_hour")),
        ("pipeline_cold (its first pass over the corpus after the start, the warm-up)",
         result.get("pipeline_cold_cases_per_hour")),
        ("pipeline_batch (Ray Serve, 32 cases/request)", result.get("pipeline_batch_cases_per_hour")),
        ("pipeline_int8 (Ray Serve, 1 case/request, int8)", result.get("pipeline_int8_cases_per_hour")),
    ]
    lines = [f"Command: `{result['command']}`  ", f"Commit {result['commit']}, CPU {result['cpu']}, "
             f"GPU {result['gpu'] or 'none'}, engine {result.get('engine')}, dtype {result['dtype']}, "
             f"median {result['tokens_per_case_median']} tokens/case, "
             f"{result['share_over_512_tokens'] * 100:.0f}% over 512 tokens, {result['cases_in_corpus']} cases", "",
             "| phase | cases/hour |", "|---|---:|"]
    lines += [f"| {name} | {value:,.0f} |" for name, value in rows if value is not None]
    lines += ["", "| ratio | value |", "|---|---:|"]
    for key in ("pipeline_vs_bare_torch_fp32", "pipeline_vs_bare", "bare_vs_bare_torch_fp32", "pipeline_vs_litserve",
                "pipeline_vs_litserve_torch", "pipeline_batch_vs_litserve", "pipeline_batch_vs_bare",
                "pipeline_int8_vs_bare_torch_fp32", "pipeline_vs_seed_recipe", "int8_all_four_agreement",
                "gated_precision_agreement", "gated_precision_vs_exact"):
        if result.get(key) is not None:
            lines.append(f"| {key} | {result[key]} |")
    if result.get("machine_drift") is not None:
        lines += ["", f"bare again at the end of the run: {result['bare_recheck_cases_per_hour']:,.0f} cases/hour "
                      f"(drift {result['machine_drift']}); the ratios are no steadier than that."]
    if result.get("p50_ms_at_10k") is not None:
        lines += ["", f"At 10,000 cases/hour (open loop): p50 {result['p50_ms_at_10k']} ms, "
                      f"p99 {result['p99_ms_at_10k']} ms, errors {result['errors_at_10k']}"]
        split = result.get("phases", {}).get("latency_at_10k", {}).get("by_windows")
        for name, row in (split or {}).items():
            lines.append(f"- {name.replace('_', ' ')} cases (n={row['n']}): p50 {row['p50_ms']} ms, p99 {row['p99_ms']} ms")
    best = result.get("phases", {}).get("pipeline", {}).get("best")
    if best:
        lines += ["", f"CPU-ms per case, pipeline at concurrency {best['concurrency']}:", "",
                  "| process | CPU-ms/case |", "|---|---:|"]
        lines += [f"| {k} | {v} |" for k, v in best["cpu_ms_per_case"].items()]
        lines += ["", f"serving_cpu_ms_per_case (outside the model replica): "
                      f"{result['serving_cpu_ms_per_case']['total']}"]
    return "\n".join(lines) + "\n"


def write(result: dict, out: Path) -> Path:
    """FILE.json and its markdown table beside it (FILE.md); returns the markdown's path."""
    out.write_text(json.dumps(result, indent=2))
    md = out.with_suffix(".md")
    md.write_text(markdown(result))
    return md
