"""Side-by-side throughput and latency benchmark, in one run on one machine.

    python -m bench [--quick] [--out FILE.json] [--checkpoint DIR]
    python -m bench --agreement [--checkpoint DIR]

Phases, all on the same checkpoint (``base``: the real model's size) and corpus:

1. bare            our batched forward path in-process: no Ray, no HTTP (the limit)
2. seed_recipe     the model card's recipe (bench/seed_recipe_server.py) over HTTP
3. pipeline        our Ray Serve app over HTTP, one case a request, best concurrency
4. pipeline_batch  our /classify/batch, 32 cases a request
5. latency_at_10k  the pipeline under an open-loop 10,000 cases/hour
6. litserve        LitServe around our model code (bench/litserve_server.py)

It writes FILE.json and a markdown table beside it (FILE.md). Timings live
here, never in pass/fail tests.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import httpx
import yaml

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CHECKPOINT = ROOT / "models" / "base"
WINDOW_TOKENS = 510  # the default 512-token window, less [CLS] and [SEP]
PYTHON = sys.executable
SERVE = str(Path(sys.executable).with_name("serve"))

# Ray settings that cut per-request CPU on a small machine (measured in bench/RESULTS.md):
# Serve's throughput mode (direct ingress, gRPC between replicas, buffered request logs),
# passive OpenMP waits, fewer metric pushes, no per-request task events.
PIPELINE_ENV = {
    "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
    "OMP_WAIT_POLICY": "PASSIVE",
    "RAY_SERVE_METRICS_EXPORT_INTERVAL_MS": "1000",
    "RAY_SERVE_ENABLE_TASK_EVENTS": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
}


def say(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------- machine facts

def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} cores)"
    except OSError:
        pass
    return f"{platform.processor() or platform.machine()} ({os.cpu_count()} cores)"


def gpu_name() -> str | None:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
    except Exception:
        return "unknown"


# ---------------------------------------------------------------- per-process CPU

CLK_TCK = os.sysconf("SC_CLK_TCK")
PROCESS_ROLES = [
    ("ServeReplica:helpline:Classifier", "model replica"),
    ("ServeReplica:helpline:Preprocessor", "ingress"),
    ("ServeReplica:helpline:Router", "router"),
    ("ProxyActor", "proxy"),
    ("ServeController", "controller"),
]


def _stat(pid: int) -> tuple[int, float]:
    """(session id, CPU seconds) of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[3]), (int(fields[11]) + int(fields[12])) / CLK_TCK


def _role(cmdline: str) -> str | None:
    for needle, role in PROCESS_ROLES:
        if needle in cmdline:
            return role
    if any(name in cmdline for name in ("raylet", "gcs_server", "ray::", "ray/_private", "dashboard",
                                        "log_monitor", "serve run", "/serve ")):
        return "rest of ray"
    return None


def cpu_snapshot(session: int) -> dict[int, tuple[str, float]]:
    """CPU time of every process in one session: the server's, not other Ray clusters on the machine."""
    snap = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            sid, cpu = _stat(int(entry.name))
            if sid != session:
                continue
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            snap[int(entry.name)] = (_role(cmdline) or "rest of ray", cpu)
        except (OSError, IndexError, ValueError):
            continue
    return snap


def cpu_breakdown(before: dict, after: dict, cases: int, client_cpu_s: float) -> dict:
    per_role: Counter = Counter()
    for pid, (role, cpu) in after.items():
        per_role[role] += cpu - before.get(pid, (role, 0.0))[1]
    per_role["load generator"] += client_cpu_s
    return {role: round(1000 * cpu / max(cases, 1), 2) for role, cpu in sorted(per_role.items())}


# ---------------------------------------------------------------- corpus

@dataclass
class Corpus:
    narratives: list[str]
    tokens: list[int]

    @property
    def median_tokens(self) -> float:
        return statistics.median(self.tokens)

    def needs_several_windows(self, i: int) -> bool:
        return self.tokens[i] > WINDOW_TOKENS

    @property
    def share_over_512(self) -> float:
        return sum(map(self.needs_several_windows, range(len(self.tokens)))) / len(self.tokens)


def make_corpus(checkpoint: Path, n: int, seed: int = 0) -> Corpus:
    from training.corpus import benchmark_corpus
    from deployments.core.loading import load_tokenizer
    from deployments.core.preprocess import NarrativeTokenizer
    from deployments.core.text import normalize_narrative

    narratives = benchmark_corpus(n, seed)
    tok = NarrativeTokenizer(load_tokenizer(checkpoint))
    tokens = [len(ids) for ids in tok.encode([normalize_narrative(t) for t in narratives])]
    return Corpus(narratives, tokens)


# ---------------------------------------------------------------- phase: bare

def run_bare(checkpoint: Path, corpus: Corpus, dtype: str, threads: int, settings: Sequence[tuple[int, int]],
             chunk: int = 64) -> dict:
    """Our batched forward path, in-process; the best of a few batch settings."""
    import torch

    from deployments.core.config import AppArgs
    from deployments.core.inference import BatchClassifier
    from deployments.core.loading import load_tokenizer
    from deployments.core.preprocess import NarrativeTokenizer, prepare_cases

    backend = BatchClassifier.load(str(checkpoint), accelerator="auto", dtype=dtype, torch_threads=threads)
    tok = NarrativeTokenizer(load_tokenizer(checkpoint))
    defaults = AppArgs()
    chunks = []
    for i in range(0, len(corpus.narratives), chunk):
        windows, _ = prepare_cases(corpus.narratives[i:i + chunk], tok, max_length=defaults.max_length,
                                   overlap=defaults.window_overlap)
        chunks.append(windows)
    backend.classify(chunks[:1], max_rows=8, max_tokens=4096)  # warm up kernels
    results = []
    for max_rows, max_tokens in settings:
        started = time.perf_counter()
        for windows in chunks:
            backend.classify([windows], max_rows=max_rows, max_tokens=max_tokens)
        if backend.device.type == "cuda":
            torch.cuda.synchronize()
        wall = time.perf_counter() - started
        results.append({"max_rows": max_rows, "max_tokens": max_tokens,
                        "cases_per_hour": round(len(corpus.narratives) / wall * 3600, 1), "wall_s": round(wall, 2)})
        say(f"bare rows={max_rows} tokens={max_tokens}: {results[-1]['cases_per_hour']:.0f} cases/h")
    best = max(results, key=lambda r: r["cases_per_hour"])
    return {"cases_per_hour": best["cases_per_hour"], "best": best, "grid": results,
            "device": str(backend.device), "dtype": backend.dtype_name}


# ---------------------------------------------------------------- HTTP drivers

@dataclass
class ClosedLoopResult:
    cases: int = 0
    requests: int = 0
    wall_s: float = 0.0
    statuses: Counter = field(default_factory=Counter)
    latencies_s: list = field(default_factory=list)
    client_cpu_s: float = 0.0

    @property
    def cases_per_hour(self) -> float:
        return self.cases / self.wall_s * 3600 if self.wall_s else 0.0

    def record(self, status: str, cases: int, latency_s: float) -> None:
        self.requests += 1
        self.statuses[status] += 1
        if status == "200":
            self.cases += cases
            self.latencies_s.append(latency_s)

    def to_dict(self) -> dict:
        lat = sorted(self.latencies_s)
        pick = (lambda q: round(lat[min(len(lat) - 1, int(q * len(lat)))] * 1000, 1)) if lat else (lambda q: None)
        return {"cases_per_hour": round(self.cases_per_hour, 1), "cases": self.cases, "requests": self.requests,
                "wall_s": round(self.wall_s, 2), "statuses": dict(self.statuses),
                "p50_ms": pick(0.5), "p99_ms": pick(0.99)}


async def timed_post(client: httpx.AsyncClient, path: str, body: dict) -> tuple[str, float]:
    """(status code, or the transport error's name; seconds taken)."""
    sent = time.perf_counter()
    try:
        status = str((await client.post(path, json=body)).status_code)
    except httpx.HTTPError as exc:
        status = type(exc).__name__
    return status, time.perf_counter() - sent


def closed_loop(url: str, path: str, bodies: Sequence[tuple[dict, int]], concurrency: int, duration_s: float,
                warmup_s: float = 3.0) -> ClosedLoopResult:
    """``concurrency`` workers send back to back; cases answered during ``duration_s`` after a warm-up count.

    Counting by completion time keeps slow requests (a 32-case batch) from falling
    outside the window; whatever is still in flight at the end is cancelled.
    """

    async def run() -> ClosedLoopResult:
        result = ClosedLoopResult()
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as client:
            loop = asyncio.get_running_loop()
            counting_from = loop.time() + warmup_s
            stop_at = counting_from + duration_s
            counter = iter(range(10 ** 9))

            async def worker():
                while True:
                    body, cases = bodies[next(counter) % len(bodies)]
                    status, latency = await timed_post(client, path, body)
                    if counting_from <= loop.time() <= stop_at:
                        result.record(status, cases, latency)

            cpu0 = time.process_time()
            workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
            await asyncio.sleep(stop_at - loop.time())
            for w in workers:
                w.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            result.client_cpu_s = time.process_time() - cpu0
            result.wall_s = duration_s
        return result

    return asyncio.run(run())


def fixed_work(url: str, path: str, bodies: Sequence[tuple[dict, int]], concurrency: int) -> ClosedLoopResult:
    """Send every body once, ``concurrency`` at a time; the wall runs from the first send to the last answer.

    For large requests (32-case batches) a time window would count whole requests
    only; a fixed amount of work is exact.
    """

    async def run() -> ClosedLoopResult:
        result = ClosedLoopResult()
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as client:
            await client.post(path, json=bodies[0][0])  # warm-up, not counted
            queue = list(bodies)

            async def worker():
                while queue:
                    body, cases = queue.pop(0)
                    status, latency = await timed_post(client, path, body)
                    result.record(status, cases, latency)

            cpu0 = time.process_time()
            started = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            result.wall_s = time.perf_counter() - started
            result.client_cpu_s = time.process_time() - cpu0
        return result

    return asyncio.run(run())


def wait_healthy(url: str, proc: subprocess.Popen, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before it was healthy")
        try:
            if httpx.get(url + "/health", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise RuntimeError(f"{url} not healthy after {timeout_s} s")


class Server:
    """A server subprocess in its own process group, stopped whatever happens."""

    def __init__(self, cmd: list[str], url: str, env: dict | None = None, log: Path | None = None,
                 stop_signal: int = signal.SIGTERM):
        self.url = url
        self.stop_signal = stop_signal
        self.log = open(log, "w") if log else subprocess.DEVNULL
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **(env or {})}, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def __enter__(self) -> "Server":
        try:
            wait_healthy(self.url, self.proc)
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, self.stop_signal)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                pass
        # A worker the server forked can outlive it (LitServe's inference loop does) and
        # would eat the CPU of every later phase: nothing of the group may survive.
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()


def single_bodies(corpus: Corpus) -> list[tuple[dict, int]]:
    return [({"narrative": t}, 1) for t in corpus.narratives]


def batch_bodies(corpus: Corpus, size: int) -> list[tuple[dict, int]]:
    n = corpus.narratives
    return [({"narratives": n[i:i + size]}, len(n[i:i + size])) for i in range(0, len(n) - size + 1, size)]


# ---------------------------------------------------------------- phases over HTTP

def pipeline_config(checkpoint: Path, port: int, dtype: str, threads: int, out_dir: Path) -> Path:
    config = yaml.safe_load((ROOT / "serve_config.yaml").read_text())
    config["http_options"].update({"host": "127.0.0.1", "port": port})
    # Access logs cost CPU per request; the benchmark measures serving, not logging.
    config["logging_config"]["enable_access_log"] = False
    app = config["applications"][0]
    app["args"].update({"model": str(checkpoint), "dtype": dtype, "torch_threads": threads})
    path = out_dir / "serve_config.bench.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def run_pipeline_phases(checkpoint: Path, corpus: Corpus, dtype: str, threads: int, quick: bool,
                        out_dir: Path) -> dict:
    from clients.load import run_open_loop

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    config = pipeline_config(checkpoint, port, dtype, threads, out_dir)
    env = {**PIPELINE_ENV, "CHS_MODEL": str(checkpoint)}
    duration = 15 if quick else 45
    out: dict = {}
    say("starting the Ray Serve pipeline (serve run)")
    with Server([SERVE, "run", "--address", "local", str(config)], url, env=env, log=out_dir / "serve.log",
                stop_signal=signal.SIGINT) as server:
        singles = single_bodies(corpus)
        sweep = []
        for concurrency in ((32,) if quick else (8, 16, 32, 48, 64)):
            before = cpu_snapshot(server.proc.pid)
            r = closed_loop(server.url, "/classify", singles, concurrency, duration)
            after = cpu_snapshot(server.proc.pid)
            row = {"concurrency": concurrency, **r.to_dict(),
                   "cpu_ms_per_case": cpu_breakdown(before, after, r.cases, r.client_cpu_s)}
            sweep.append(row)
            say(f"pipeline c={concurrency}: {row['cases_per_hour']:.0f} cases/h, statuses {row['statuses']}")
        best = max(sweep, key=lambda r: r["cases_per_hour"])
        out["pipeline"] = {"cases_per_hour": best["cases_per_hour"], "best": best, "sweep": sweep}

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


def run_seed_recipe(checkpoint: Path, corpus: Corpus, threads: int, quick: bool, out_dir: Path) -> dict:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    say("starting the model card's recipe server")
    with Server([PYTHON, "bench/seed_recipe_server.py", "--model", str(checkpoint), "--port", str(port),
                 "--threads", str(threads)], url, env={"OMP_WAIT_POLICY": "PASSIVE"},
                log=out_dir / "seed_recipe.log"):
        r = closed_loop(url, "/classify", single_bodies(corpus), 2, 15 if quick else 45)
    say(f"seed_recipe: {r.cases_per_hour:.0f} cases/h")
    return r.to_dict()


def run_litserve(checkpoint: Path, corpus: Corpus, dtype: str, threads: int, quick: bool, out_dir: Path) -> dict:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    say("starting the LitServe peer")
    with Server([PYTHON, "bench/litserve_server.py", "--model", str(checkpoint), "--port", str(port),
                 "--dtype", dtype, "--threads", str(threads)], url, env={"OMP_WAIT_POLICY": "PASSIVE"},
                log=out_dir / "litserve.log") as server:
        sweep = []
        for concurrency in ((32,) if quick else (16, 32, 64)):
            before = cpu_snapshot(server.proc.pid)
            r = closed_loop(url, "/predict", single_bodies(corpus), concurrency, 15 if quick else 45)
            after = cpu_snapshot(server.proc.pid)
            used = sum(cpu - before.get(pid, ("", 0.0))[1] for pid, (_, cpu) in after.items())
            sweep.append({"concurrency": concurrency, **r.to_dict(),
                          "cpu_ms_per_case_all_processes": round(1000 * used / max(r.cases, 1), 2)})
            say(f"litserve c={concurrency}: {r.cases_per_hour:.0f} cases/h, statuses {dict(r.statuses)}")
    best = max(sweep, key=lambda r: r["cases_per_hour"])
    return {"cases_per_hour": best["cases_per_hour"], "best": best, "sweep": sweep}


# ---------------------------------------------------------------- agreement

def run_agreement(checkpoint: Path, corpus: Corpus, dtype: str, threads: int) -> dict:
    """Share of identical labels, and the largest confidence gap, between fp32 and ``dtype``."""
    from deployments.core.config import AppArgs, RoutingArgs
    from deployments.core.inference import BatchClassifier
    from deployments.core.loading import load_tokenizer
    from deployments.core.postprocess import CaseAssembler
    from deployments.core.preprocess import NarrativeTokenizer, prepare_cases
    from deployments.core.routing import RoutingPolicy

    tok = NarrativeTokenizer(load_tokenizer(checkpoint))
    defaults = AppArgs()
    outputs = {}
    for name in ("fp32", dtype):
        backend = BatchClassifier.load(str(checkpoint), accelerator="auto", dtype=name, torch_threads=threads)
        assembler = CaseAssembler(backend.labels, RoutingPolicy(RoutingArgs(), backend.labels), "weighted_mean", "max")
        cases = []
        for i in range(0, len(corpus.narratives), 32):
            windows, plans = prepare_cases(corpus.narratives[i:i + 32], tok, max_length=defaults.max_length,
                                           overlap=defaults.window_overlap)
            (probs,) = backend.classify([windows], max_rows=32, max_tokens=8192)
            cases += [c for _, c, _ in assembler.assemble(plans, probs)]
        outputs[name] = (backend.dtype_name, cases)
    resolved, low = outputs[dtype]
    _, ref = outputs["fp32"]
    tasks = ("main_category", "sub_category", "intervention", "priority")
    same = {t: sum(a.for_task(t).label == b.for_task(t).label for a, b in zip(ref, low)) / len(ref) for t in tasks}
    gap = max(abs(a.for_task(t).confidence - b.for_task(t).confidence) for a, b in zip(ref, low) for t in tasks)
    return {"reference": "fp32", "dtype": resolved, "cases": len(ref),
            "identical_labels": {t: round(v, 4) for t, v in same.items()},
            "all_four_identical": round(sum(all(a.for_task(t).label == b.for_task(t).label for t in tasks)
                                            for a, b in zip(ref, low)) / len(ref), 4),
            "max_confidence_difference": round(gap, 5)}


# ---------------------------------------------------------------- report

def ratio(a, b):
    return round(a / b, 3) if a and b else None


def markdown(result: dict) -> str:
    rows = [
        ("bare (in-process batched forward)", result.get("bare_cases_per_hour")),
        ("seed_recipe (model card, per request, fp32, pad 256)", result.get("seed_recipe_cases_per_hour")),
        ("litserve (LitServe around our model code)", result.get("litserve_cases_per_hour")),
        ("pipeline (Ray Serve, 1 case/request)", result.get("pipeline_cases_per_hour")),
        ("pipeline_batch (Ray Serve, 32 cases/request)", result.get("pipeline_batch_cases_per_hour")),
    ]
    lines = [f"Command: `{result['command']}`  ", f"Commit {result['commit']}, CPU {result['cpu']}, "
             f"GPU {result['gpu'] or 'none'}, dtype {result['dtype']}, "
             f"median {result['tokens_per_case_median']} tokens/case, "
             f"{result['share_over_512_tokens'] * 100:.0f}% over 512 tokens, {result['cases_in_corpus']} cases", "",
             "| phase | cases/hour |", "|---|---:|"]
    lines += [f"| {name} | {value:,.0f} |" for name, value in rows if value is not None]
    lines += ["", "| ratio | value |", "|---|---:|"]
    for key in ("pipeline_vs_bare", "pipeline_vs_seed_recipe", "pipeline_vs_litserve", "pipeline_batch_vs_litserve",
                "pipeline_batch_vs_bare"):
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
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short phases: under 5 minutes on 2 cores")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "bench.json")
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT,
                        help="built with `python -m training.checkpoint --size base` if absent")
    parser.add_argument("--dtype", default="auto", choices=["auto", "fp32", "bf16", "fp16"])
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--phases", default="bare,seed_recipe,pipeline,litserve",
                        help="comma-separated subset of bare,seed_recipe,pipeline,litserve")
    parser.add_argument("--agreement", action="store_true", help="only report fp32 vs --dtype label agreement")
    parser.add_argument("--cases", type=int, default=None, help="corpus size (default 300 quick, 1000 full)")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

    if not (args.checkpoint / "config.json").is_file():
        say(f"building the base checkpoint at {args.checkpoint}")
        from training.checkpoint import build_random
        from deployments.core.labels import BUNDLED_LABELS_DIR, LabelSet

        build_random("base", args.checkpoint, LabelSet.from_dir(BUNDLED_LABELS_DIR))
    n = args.cases or (300 if args.quick else 1000)
    corpus = make_corpus(args.checkpoint, n)
    say(f"corpus: {n} cases, median {corpus.median_tokens:.0f} tokens, {corpus.share_over_512:.0%} over 512")

    if args.agreement:
        report = run_agreement(args.checkpoint, make_corpus(args.checkpoint, args.cases or 200, seed=1),
                               args.dtype, args.threads)
        print(json.dumps(report, indent=2))
        return 0

    import torch

    from deployments.core.loading import resolve_device, resolve_dtype

    phases = set(args.phases.split(","))
    out_dir = args.out.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    dtype_name = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[
        resolve_dtype(args.dtype, resolve_device("auto"))]
    result: dict = {
        "command": "python -m bench " + " ".join(argv if argv is not None else sys.argv[1:]),
        "commit": git_commit(), "cpu": cpu_name(), "gpu": gpu_name(), "dtype": dtype_name,
        "torch_threads": args.threads, "cases_in_corpus": n,
        "tokens_per_case_median": corpus.median_tokens, "share_over_512_tokens": round(corpus.share_over_512, 3),
        "phases": {},
    }
    started = time.monotonic()
    if "bare" in phases:
        if args.quick:
            grid = [(64, 16384) if torch.cuda.is_available() else (16, 2048)]
        else:
            grid = [(16, 2048), (16, 4096), (32, 4096), (32, 8192), (64, 16384)]
        bare = run_bare(args.checkpoint, corpus, args.dtype, args.threads, grid)
        result["phases"]["bare"] = bare
        result["bare_cases_per_hour"] = bare["cases_per_hour"]
    if "seed_recipe" in phases:
        seed = run_seed_recipe(args.checkpoint, corpus, args.threads, args.quick, out_dir)
        result["phases"]["seed_recipe"] = seed
        result["seed_recipe_cases_per_hour"] = seed["cases_per_hour"]
    if "pipeline" in phases:
        pipe = run_pipeline_phases(args.checkpoint, corpus, args.dtype, args.threads, args.quick, out_dir)
        result["phases"].update(pipe)
        result["pipeline_cases_per_hour"] = pipe["pipeline"]["cases_per_hour"]
        result["pipeline_batch_cases_per_hour"] = pipe["pipeline_batch"]["cases_per_hour"]
        lat = pipe["latency_at_10k"]
        result.update({"p50_ms_at_10k": lat["latency_ms"]["p50"], "p95_ms_at_10k": lat["latency_ms"]["p95"],
                       "p99_ms_at_10k": lat["latency_ms"]["p99"], "errors_at_10k": lat["failed"]})
    if "litserve" in phases:
        lit = run_litserve(args.checkpoint, corpus, args.dtype, args.threads, args.quick, out_dir)
        result["phases"]["litserve"] = lit
        result["litserve_cases_per_hour"] = lit["cases_per_hour"]
    if "bare" in phases and len(phases) > 1:
        # This machine's speed drifts (shared host): the same bare run again at the end says by how much.
        best = result["phases"]["bare"]["best"]
        again = run_bare(args.checkpoint, corpus, args.dtype, args.threads, [(best["max_rows"], best["max_tokens"])])
        result["bare_recheck_cases_per_hour"] = again["cases_per_hour"]
        result["machine_drift"] = ratio(again["cases_per_hour"], result["bare_cases_per_hour"])
    get = result.get
    result.update({
        "pipeline_vs_bare": ratio(get("pipeline_cases_per_hour"), get("bare_cases_per_hour")),
        "pipeline_vs_seed_recipe": ratio(get("pipeline_cases_per_hour"), get("seed_recipe_cases_per_hour")),
        "pipeline_batch_vs_bare": ratio(get("pipeline_batch_cases_per_hour"), get("bare_cases_per_hour")),
        "pipeline_vs_litserve": ratio(get("pipeline_cases_per_hour"), get("litserve_cases_per_hour")),
        "pipeline_batch_vs_litserve": ratio(get("pipeline_batch_cases_per_hour"), get("litserve_cases_per_hour")),
        "elapsed_s": round(time.monotonic() - started, 1),
    })
    args.out.write_text(json.dumps(result, indent=2))
    args.out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))
    say(f"wrote {args.out} and {args.out.with_suffix('.md')} in {result['elapsed_s']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
