"""Live /classify latency while a queued backlog drains, and the queue's throughput.

    python -m bench.intake --checkpoint models/base --backlog 2000 --probes 100 --out bench/out/intake.json

Serves serve_config.yaml (embedded broker in a folder of its own under the output's folder, or
``--broker-url redis://...``), then:

1. ``idle``: ``--probes`` sequential POST /classify, nothing queued: p50, p99;
2. queues ``--backlog`` cases through POST /tasks/classify/batch;
3. ``backlog``: the same probes while the backlog drains: p50, p99;
4. waits until every task has finished: the queue's throughput in cases per hour, and how many
   succeeded and failed.

Queued cases take at most ``intake.consumer_concurrency`` of the classifier's slots (a bounded
share), so the live probes keep a place in every batch; this measures what that costs them.
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import time
from pathlib import Path
from typing import Sequence

import httpx
import yaml

from bench.common import DEFAULT_CHECKPOINT, say
from bench.corpus import make_corpus
from bench.servers import SERVE, PIPELINE_ENV, Server, free_port, pipeline_config


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def probe(client: httpx.Client, narratives: Sequence[str]) -> dict:
    latencies, errors = [], 0
    for text in narratives:
        started = time.perf_counter()
        r = client.post("/classify", json={"narrative": text})
        latencies.append(time.perf_counter() - started)
        errors += r.status_code != 200
    return {"requests": len(latencies), "errors": errors, "p50_ms": round(1000 * statistics.median(latencies), 1),
            "p99_ms": round(1000 * percentile(latencies, 0.99), 1)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.intake", description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    parser.add_argument("--backlog", type=int, default=2000)
    parser.add_argument("--probes", type=int, default=100)
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--broker-url", default=None, help="a Redis URL; default: the embedded broker")
    parser.add_argument("--out", type=Path, default=Path("bench/out/intake.json"))
    args = parser.parse_args(argv)
    out_dir = args.out.parent
    out_dir.mkdir(parents=True, exist_ok=True)

    corpus = make_corpus(args.checkpoint, max(args.backlog, args.probes) + args.probes, seed=3)
    texts = list(corpus.narratives)
    probes, backlog = texts[:args.probes], texts[args.probes:args.probes + args.backlog]
    port = free_port()
    config_path = pipeline_config(args.checkpoint, port, "auto", args.dtype, args.threads, out_dir)
    config = yaml.safe_load(config_path.read_text())
    intake = config["applications"][0]["args"]["intake"]
    intake.update({"data_dir": str((out_dir / f"intake-{int(time.time())}").resolve()),
                   "broker_url": args.broker_url, "max_queued": max(intake["max_queued"], args.backlog)})
    config_path.write_text(yaml.safe_dump(config))
    say("starting the Ray Serve pipeline with the intake (serve run)")
    server = Server([SERVE, "run", "--address", "local", str(config_path)], f"http://127.0.0.1:{port}",
                    env={**PIPELINE_ENV, "CHS_MODEL": str(args.checkpoint)}, log=out_dir / "serve.intake.log", stop_signal=signal.SIGINT)
    with server, httpx.Client(base_url=server.url, timeout=120) as client:
        probe(client, probes[:5])  # warm-up
        idle = probe(client, probes)
        say(f"idle: {idle}")
        ids: list[str] = []
        submitted_at = time.monotonic()
        for start in range(0, len(backlog), 256):
            r = client.post("/tasks/classify/batch", json={"narratives": backlog[start:start + 256]})
            r.raise_for_status()
            ids += [t["task_id"] for t in r.json()["tasks"]]
        submit_s = time.monotonic() - submitted_at
        under_backlog = probe(client, probes)
        say(f"backlog: {under_backlog}")
        while client.get(f"/tasks/{ids[-1]}").json()["status"] not in ("succeeded", "failed"):
            time.sleep(1)
        statuses = [client.get(f"/tasks/{t}").json()["status"] for t in ids]
        while any(s not in ("succeeded", "failed") for s in statuses):
            time.sleep(1)
            statuses = [client.get(f"/tasks/{t}").json()["status"] for t in ids]
        drain_s = time.monotonic() - submitted_at
    result = {
        "command": "python -m bench.intake " + " ".join(argv if argv is not None else __import__("sys").argv[1:]),
        "checkpoint": str(args.checkpoint), "broker": "redis" if args.broker_url else "embedded",
        "backlog": len(ids), "submit_s": round(submit_s, 2), "drain_s": round(drain_s, 1),
        "queue_cases_per_hour": round(len(ids) / drain_s * 3600),
        "succeeded": statuses.count("succeeded"), "failed": statuses.count("failed"),
        "live_idle": idle, "live_under_backlog": under_backlog,
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
