"""How often the card profile (serve_config.card.yaml: the first 256 tokens) and the default (every token,
in overlapping windows) agree on long cases, in process:

    python -m bench.card_profile [--checkpoint models/demo] [--cases 1000] [--seed 0] [--out FILE.json]

The cases are the benchmark corpus's (``training.corpus.benchmark_corpus``, as ``python -m bench``
uses), kept where the two can differ: over the card's 254 content tokens. The comparison is
``bench.agreement.compare`` with the default as the reference: identical labels per task and on all
four, the largest confidence difference, and the escalations and reviews either one turned on or off.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Sequence

import yaml

from bench.agreement import TASKS, compare

ROOT = Path(__file__).resolve().parents[1]
CARD_CONTENT_TOKENS = 254  # the card's 256, less [CLS] and [SEP]


def card_profile() -> dict:
    """The args serve_config.card.yaml sets to other values than serve_config.yaml."""
    def args_of(name: str) -> dict:
        (app,) = yaml.safe_load((ROOT / name).read_text(encoding="utf-8"))["applications"]
        return app["args"]

    card, default = args_of("serve_config.card.yaml"), args_of("serve_config.yaml")
    return {key: value for key, value in card.items() if default.get(key) != value}


def measure(checkpoint: Path, cases: int, seed: int, threads: int) -> dict:
    from bench.corpus import make_corpus
    from deployments.core.config import AppArgs
    from deployments.core.in_process import InProcessPipeline

    corpus = make_corpus(checkpoint, cases, seed)
    long = [text for text, n in zip(corpus.narratives, corpus.tokens) if n > CARD_CONTENT_TOKENS]
    tokens = sorted(n for n in corpus.tokens if n > CARD_CONTENT_TOKENS)
    default = InProcessPipeline.from_args(AppArgs(model=str(checkpoint), accelerator="cpu", torch_threads=threads))
    profile = card_profile()
    card = default.replace(**profile)
    result = compare(default.classify_cases(long), card.classify_cases(long))
    return {"checkpoint": str(checkpoint), "corpus_cases": cases, "seed": seed, "profile": profile,
            "long_cases": len(long), "long_share": round(len(long) / cases, 4),
            "long_tokens_median": tokens[len(tokens) // 2] if tokens else None,
            "engine": f"{default.engine_name} {default.dtype_name}", **result}


def markdown(row: dict) -> str:
    same, changed = row["identical_labels"], row["routing_changed"]
    return "\n".join([
        f"Card profile against the default on the {row['long_cases']} long cases (over {CARD_CONTENT_TOKENS} "
        f"tokens, median {row['long_tokens_median']}) of a {row['corpus_cases']}-case corpus, "
        f"{row['checkpoint']}, {row['engine']}:", "",
        "| main | sub | intervention | priority | all four | max Δ confidence | escalate changed | review changed |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
        "| " + " | ".join(f"{same[t]:.2%}" for t in TASKS) + f" | {row['all_four_identical']:.2%} | "
        f"{row['max_confidence_difference']:.3f} | "
        + " | ".join(f"+{changed[d]['turned_on']}/−{changed[d]['turned_off']}" for d in ("escalate", "human_review"))
        + " |", ""])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.card_profile", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, default=ROOT / "models" / "demo")
    parser.add_argument("--cases", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "card_profile.json")
    args = parser.parse_args(argv)
    row = measure(args.checkpoint, args.cases, args.seed, args.threads)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(row, indent=2), encoding="utf-8")
    args.out.with_suffix(".md").write_text(markdown(row), encoding="utf-8")
    print(markdown(row))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
