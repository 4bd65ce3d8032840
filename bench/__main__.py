"""Side-by-side throughput and latency benchmark, in one run on one machine.

    python -m bench [--quick] [--out FILE.json] [--checkpoint DIR] [--engine E] [--dtype D]
                    [--app-arg KEY=VALUE ...]
    python -m bench --agreement     every engine and precision against eager PyTorch fp32
    python -m bench --engines       the engine candidates' bare throughput, side by side
    python -m bench --token-budgets the tokens per forward pass: throughput, and how long one pass
                                    holds the model (bench/budgets.py)
    python -m bench --review        what POST /review/next costs the case store at 10,000 open cases,
                                    SQLite and PostgreSQL (bench/review.py)
    python -m bench --live-calls N  live call piece latency, N calls at once, alone and under a backlog
                                    (bench/live_calls.py)

Phases, all on the same checkpoint (``base``: the real model's size) and corpus:

1. bare            our in-process pipeline's batched forward: no Ray, no HTTP (the limit), for
                   eager PyTorch fp32, the default engine and the int8 opt-in
2. seed_recipe     the model card's recipe (bench/seed_recipe_server.py) over HTTP
3. pipeline        our Ray Serve app over HTTP, one case a request, best concurrency, after one
                   untimed pass over the corpus (its rate: pipeline_cold); then int8
4. pipeline_batch  our /classify/batch, 32 cases a request
5. latency_at_10k  the pipeline under an open-loop 10,000 cases/hour
6. litserve        LitServe around our in-process pipeline (bench/litserve_server.py): eager
                   PyTorch, and our default engine
7. int8_agreement  the int8 opt-in's agreement on the demo model's held-out set (models/demo,
                   built if absent)
8. gated_precision the faster precision behind the startup gate (bf16, close calls rechecked) on the
                   demo: its agreement and its rate against the exact engine

and, always, what screening a narrative costs per case on the corpus (language, the safety lexicon,
length: ``lexicon_ms_per_case_*``, ``screening_ms_per_case_*``).

It writes FILE.json and a markdown table beside it (FILE.md). Timings live
here, never in pass/fail tests. The parts: ``servers`` (start and stop what is
measured), ``drivers`` (closed-loop HTTP load), ``phases``, ``agreement``,
``corpus``, ``cpu`` (CPU per process), ``machine`` and ``report``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Sequence

import yaml

from bench import agreement, budgets, engines, lexicon
from bench.common import DEFAULT_CHECKPOINT, DEFAULT_DEMO, ROOT, say
from bench.corpus import make_corpus
from bench.phases import PHASES, measure
from bench.report import add_ratios, header, markdown, write


def ensure_checkpoint(path: Path) -> None:
    """A random checkpoint of the real model's size, built once where none is."""
    if (path / "config.json").is_file():
        return
    say(f"building the base checkpoint at {path}")
    from training.hub_layout import build_random
    from deployments.core.labels import BUNDLED_LABELS_DIR, LabelSet

    build_random("base", path, LabelSet.from_dir(BUNDLED_LABELS_DIR))


def ensure_demo(path: Path) -> None:
    """The trained demo model (its held-out set measures agreement), built as `make demo` builds it."""
    if (path / "config.json").is_file():
        return
    import subprocess

    say(f"building the demo model at {path} (about two minutes)")
    subprocess.run([sys.executable, "-m", "training.checkpoint", "--size", "demo", "--out", str(path)], cwd=ROOT,
                   check=True, stdout=subprocess.DEVNULL)


def resolved_engine(engine: str, dtype: str) -> tuple[str, str]:
    """What ``--engine`` and ``--dtype`` mean on this machine's default device: the precision resolved, the engine
    too unless it is 'auto' on a CPU, which each replica measures at startup (deployments/core/engine_choice.py)."""
    from deployments.core.engines import resolve
    from deployments.core.loading import resolve_device

    choice = resolve(engine, dtype, resolve_device("auto"))
    return choice.engine, choice.dtype


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short phases: under 5 minutes on 2 cores")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "bench.json")
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT,
                        help="built with `python -m training.checkpoint --size base` if absent")
    parser.add_argument("--demo-checkpoint", type=Path, default=DEFAULT_DEMO,
                        help="the demo model, for agreement on its held-out set; built if absent")
    parser.add_argument("--engine", default="auto", choices=["auto", "torch", "onnxruntime", "openvino"])
    parser.add_argument("--dtype", default="auto", choices=["auto", "fp32", "bf16", "fp16"])
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--phases", default=",".join(PHASES),
                        help=f"comma-separated subset of {','.join(PHASES)}")
    parser.add_argument("--app-arg", action="append", default=[], metavar="KEY=VALUE",
                        help="the pipeline's app arg KEY (dotted, e.g. coalescing.max_cases) set to VALUE (YAML) "
                             "instead of serve_config.yaml's; repeatable")
    parser.add_argument("--agreement", action="store_true",
                        help="only report each engine and precision's agreement with eager PyTorch fp32")
    parser.add_argument("--engines", action="store_true", help="only compare the engine candidates' bare throughput")
    parser.add_argument("--token-budgets", action="store_true",
                        help="only compare tokens per forward pass: throughput and the longest pass")
    parser.add_argument("--rounds", type=int, default=3, help="--engines, --token-budgets: interleaved rounds")
    parser.add_argument("--live-calls", type=int, default=None, metavar="N",
                        help="only measure N concurrent live calls' piece latency (bench/live_calls.py)")
    parser.add_argument("--backlog", type=int, default=2000, help="--live-calls: cases queued for the second run")
    parser.add_argument("--pieces", type=int, default=12, help="--live-calls: pieces per call")
    parser.add_argument("--every", type=float, default=3.0, help="--live-calls: seconds between a call's pieces")
    parser.add_argument("--cases", type=int, default=None,
                        help="corpus size (default 300 quick, 1000 full; --engines and --token-budgets 128, "
                             "--agreement 200; "
                             "--review: open cases, 10000)")
    parser.add_argument("--review", action="store_true",
                        help="only time the worklist's claim of the next case on SQLite and PostgreSQL")
    parser.add_argument("--calls", type=int, default=1000, help="--review: timed claims per database")
    parser.add_argument("--database-url", default=None,
                        help="--review: the PostgreSQL to measure; default: a throwaway local server")
    args = parser.parse_args(argv)
    args.app_args = {}
    for item in args.app_arg:
        key, sep, value = item.partition("=")
        if not sep or not key:
            parser.error(f"--app-arg {item!r}: expected KEY=VALUE")
        args.app_args[key] = yaml.safe_load(value)
    unknown = set(args.phases.split(",")) - set(PHASES)
    if unknown:
        parser.error(f"unknown phase(s) {','.join(sorted(unknown))}; choose from {','.join(PHASES)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if args.review:
        return report_review(args)
    ensure_checkpoint(args.checkpoint)

    if args.agreement:
        return report_agreement(args)
    if args.live_calls:
        from bench import live_calls

        out = args.out.with_name(f"live_calls_{args.live_calls}.json") if args.out.name == "bench.json" else args.out
        return live_calls.main(args.live_calls, list(argv if argv is not None else sys.argv[1:]), args.checkpoint,
                               args.threads, args.dtype, args.backlog, args.pieces, args.every, out)
    if args.token_budgets:
        corpus = make_corpus(args.checkpoint, args.cases or 128)
        table = budgets.run_budgets(args.checkpoint, corpus, args.engine, args.threads, args.rounds)
        return write_table(args, "budgets", table, budgets.markdown(table))
    if args.engines:
        corpus = make_corpus(args.checkpoint, args.cases or 128)
        table = engines.run_engines(args.checkpoint, corpus, args.threads, args.rounds)
        return write_table(args, "engines", table, engines.markdown(table))

    n = args.cases or (300 if args.quick else 1000)
    corpus = make_corpus(args.checkpoint, n)
    say(f"corpus: {n} cases, median {corpus.median_tokens:.0f} tokens, {corpus.share_over_512:.0%} over 512")
    out_dir = args.out.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    command = "python -m bench " + " ".join(argv if argv is not None else sys.argv[1:])
    result = header(command, *resolved_engine(args.engine, args.dtype), args.threads, corpus)
    started = time.monotonic()
    phases = set(args.phases.split(","))
    if phases & {"int8_agreement", "gated_precision"}:
        ensure_demo(args.demo_checkpoint)
    measure(result, phases, args.checkpoint, corpus, args.engine, args.dtype, args.threads, args.quick, out_dir,
            demo=args.demo_checkpoint, app_args=args.app_args)
    # The ingress's screen of each narrative before the model (deployments/core/screening.py), in process.
    result.update(lexicon.screening_cost(corpus.narratives))
    add_ratios(result, time.monotonic() - started)
    md = write(result, args.out)
    print(markdown(result))
    say(f"wrote {args.out} and {md} in {result['elapsed_s']} s")
    return 0


def write_table(args: argparse.Namespace, name: str, table: dict, markdown_text: str) -> int:
    """A single-purpose mode's result: its JSON (``name``.json beside the default --out, or --out itself),
    its markdown on stdout."""
    args.out.parent.mkdir(parents=True, exist_ok=True)
    out = args.out.with_name(f"{name}.json") if args.out.name == "bench.json" else args.out
    out.write_text(json.dumps(table, indent=2))
    print(markdown_text)
    say(f"wrote {out}")
    return 0


def report_review(args: argparse.Namespace) -> int:
    """The worklist's /review/next at --cases open cases, on SQLite and PostgreSQL."""
    from bench import review
    from bench.machine import cpu_name, git_commit

    cases = args.cases or 10_000
    say(f"worklist: {cases} open cases, {args.calls} timed claims per database")
    result = {"machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "commit": git_commit()},
              **review.run(cases, args.calls, args.database_url)}
    return write_table(args, "review", result, review.markdown({k: v for k, v in result.items() if k != "machine"}))


def report_agreement(args: argparse.Namespace) -> int:
    """The agreement tables: the demo's held-out set and the bench corpus, every CPU candidate."""
    from bench.machine import cpu_supports_bf16

    ensure_demo(args.demo_checkpoint)
    bf16 = engines.BF16_CANDIDATES if cpu_supports_bf16() else []
    candidates = list(agreement.CPU_CANDIDATES) + bf16
    corpus = make_corpus(args.checkpoint, args.cases or 200, seed=1)
    sets = {"demo held-out set": (args.demo_checkpoint, agreement.heldout_narratives(args.demo_checkpoint)),
            "bench corpus": (args.checkpoint, corpus.narratives)}
    tables = {}
    for name, (checkpoint, narratives) in sets.items():
        say(f"agreement on the {name}: {len(narratives)} cases")
        tables[name] = agreement.run_agreement(checkpoint, narratives, candidates, args.threads)
    return write_table(args, "agreement", tables,
                       "\n".join(agreement.markdown(name, table) for name, table in tables.items()))


if __name__ == "__main__":
    raise SystemExit(main())
