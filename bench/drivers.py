"""Closed-loop HTTP load: workers that send back to back, over a time window or a fixed amount of work.

The open-loop driver (a fixed arrival rate) is the project's own, ``clients.load.run_open_loop``.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Sequence

import httpx


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
