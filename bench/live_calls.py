"""Live call piece latency for N concurrent calls, alone and while a queued backlog drains.

    python -m bench --live-calls 10 [--checkpoint DIR] [--backlog 2000] [--out bench/out/live_calls.json]

Serves serve_config.yaml (the embedded broker in a folder of its own), then:

1. ``alone``: N calls at once, each sending a piece of about ``PIECE_CHARS`` characters (OpenCHS
   classifies every ~150 new characters) every ``--every`` seconds (each call starts at a random
   phase), ``--pieces`` pieces, then ``end``: piece latency p50 and p99, the windows each piece read
   against the windows of the whole transcript so far (what re-classifying it at each piece would
   read), and the CPU-ms per piece of every process of the server;
2. queues ``--backlog`` cases through POST /tasks/classify/batch, and runs the same calls while it
   drains (the queue takes at most ``intake.consumer_concurrency`` of the classifier's slots);
3. ``whole``: the same transcripts, each sent whole to /classify once per piece count, for the CPU-ms
   a re-classification of the whole transcript costs at the end of a call.

Timings live here, never in pass/fail tests.
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
import statistics
import time
import uuid
from pathlib import Path
from typing import Sequence

import httpx
import yaml

from bench.common import say
from bench.corpus import make_corpus
from bench.cpu import cpu_snapshot, cpu_used
from bench.intake import percentile
from bench.servers import PIPELINE_ENV, SERVE, Server, free_port, pipeline_config

PIECE_CHARS = 150


def transcripts(checkpoint: Path, n: int, pieces: int) -> list[list[str]]:
    """N transcripts of ``pieces`` pieces of about PIECE_CHARS characters, cut after a space."""
    from clients.replay import pieces_of

    corpus = make_corpus(checkpoint, 4 * n * pieces, seed=5)
    texts, out, i = corpus.narratives, [], 0
    for _ in range(n):
        text = ""
        while len(text) < pieces * PIECE_CHARS:
            text += texts[i % len(texts)] + " "
            i += 1
        out.append(pieces_of(text[:pieces * PIECE_CHARS + 40], PIECE_CHARS)[:pieces])
    return out


async def one_call(client: httpx.AsyncClient, pieces: list[str], every_s: float, rng: random.Random,
                   samples: list[dict]) -> None:
    call_id = f"bench-{uuid.uuid4()}"
    await asyncio.sleep(rng.uniform(0, every_s))
    for seq, text in enumerate(pieces):
        due = time.monotonic() + every_s
        started = time.perf_counter()
        r = await client.post(f"/calls/{call_id}/transcript", json={"text": text, "seq": seq})
        elapsed = time.perf_counter() - started
        body = r.json() if r.status_code == 200 else {}
        samples.append({"ms": 1000 * elapsed, "ok": r.status_code == 200, "windows": body.get("windows", 0),
                        "whole_windows": body.get("chunks", 0)})
        await asyncio.sleep(max(0.0, due - time.monotonic()))
    await client.post(f"/calls/{call_id}/end")


async def run_calls(url: str, calls: list[list[str]], every_s: float, session: int) -> dict:
    samples: list[dict] = []
    rng = random.Random(0)
    limits = httpx.Limits(max_connections=len(calls) + 4)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        before = cpu_snapshot(session)
        started = time.monotonic()
        await asyncio.gather(*(one_call(client, pieces, every_s, rng, samples) for pieces in calls))
        wall = time.monotonic() - started
        after = cpu_snapshot(session)
    latencies = [s["ms"] for s in samples if s["ok"]]
    return {"calls": len(calls), "pieces": len(samples), "errors": sum(not s["ok"] for s in samples),
            "wall_s": round(wall, 1), "p50_ms": round(statistics.median(latencies), 1),
            "p99_ms": round(percentile(latencies, 0.99), 1), "max_ms": round(max(latencies), 1),
            "windows_per_piece": round(statistics.mean(s["windows"] for s in samples), 2),
            "whole_windows_per_piece": round(statistics.mean(s["whole_windows"] for s in samples), 2),
            "cpu_ms_per_piece_all_processes": round(1000 * cpu_used(before, after) / max(len(samples), 1), 1)}


def whole_cost(client: httpx.Client, calls: list[list[str]], session: int) -> dict:
    """CPU-ms of one /classify of each whole transcript: what re-reading it costs at a call's last piece."""
    texts = ["".join(pieces) for pieces in calls]
    before = cpu_snapshot(session)
    latencies = []
    for text in texts:
        started = time.perf_counter()
        client.post("/classify", json={"narrative": text}).raise_for_status()
        latencies.append(1000 * (time.perf_counter() - started))
    after = cpu_snapshot(session)
    return {"requests": len(texts), "p50_ms": round(statistics.median(latencies), 1),
            "cpu_ms_per_request_all_processes": round(1000 * cpu_used(before, after) / len(texts), 1)}


def run(n_calls: int, checkpoint: Path, backlog: int, pieces: int, every_s: float, threads: int, dtype: str,
        out: Path, command: str) -> dict:
    out_dir = out.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    calls = transcripts(checkpoint, n_calls, pieces)
    backlog_texts = make_corpus(checkpoint, backlog, seed=9).narratives if backlog else []
    port = free_port()
    config_path = pipeline_config(checkpoint, port, "auto", dtype, threads, out_dir)
    config = yaml.safe_load(config_path.read_text())
    app_args = config["applications"][0]["args"]
    app_args["intake"].update({"data_dir": str((out_dir / f"intake-live-{int(time.time())}").resolve()),
                               "max_queued": max(app_args["intake"]["max_queued"], backlog)})
    app_args["feedback"] = {**app_args.get("feedback", {}),
                            "database_url": f"sqlite:///{(out_dir / f'live-{int(time.time())}.db').resolve()}"}
    config_path.write_text(yaml.safe_dump(config))
    say(f"serving {checkpoint} for {n_calls} live calls")
    server = Server([SERVE, "run", "--address", "local", str(config_path)], f"http://127.0.0.1:{port}",
                    env={**PIPELINE_ENV, "CHS_MODEL": str(checkpoint)}, log=out_dir / "serve.live_calls.log",
                    stop_signal=signal.SIGINT)
    with server, httpx.Client(base_url=server.url, timeout=300) as client:
        session = server.proc.pid
        asyncio.run(run_calls(server.url, transcripts(checkpoint, 2, 3), 0.2, session))  # warm-up
        alone = asyncio.run(run_calls(server.url, calls, every_s, session))
        say(f"alone: {alone}")
        whole = whole_cost(client, calls, session)
        say(f"whole transcript once: {whole}")
        under = None
        if backlog:
            ids: list[str] = []
            for start in range(0, len(backlog_texts), 256):
                r = client.post("/tasks/classify/batch", json={"narratives": backlog_texts[start:start + 256]})
                r.raise_for_status()
                ids += [t["task_id"] for t in r.json()["tasks"]]
            under = asyncio.run(run_calls(server.url, calls, every_s, session))
            left = sum(client.get(f"/tasks/{t}").json()["status"] in ("queued", "processing") for t in ids)
            under["backlog_queued"] = len(ids)
            under["backlog_left_after_calls"] = left
            say(f"under backlog: {under}")
    result = {"command": command, "checkpoint": str(checkpoint), "calls": n_calls, "pieces_per_call": pieces,
              "piece_chars": PIECE_CHARS, "every_s": every_s, "alone": alone, "under_backlog": under,
              "whole_transcript_classify": whole}
    out.write_text(json.dumps(result, indent=2) + "\n")
    return result


def main(n_calls: int, argv: Sequence[str], checkpoint: Path, threads: int, dtype: str, backlog: int, pieces: int,
         every_s: float, out: Path) -> int:
    result = run(n_calls, checkpoint, backlog, pieces, every_s, threads, dtype, out,
                 "python -m bench " + " ".join(argv))
    print(json.dumps(result, indent=2))
    say(f"wrote {out}")
    return 0
