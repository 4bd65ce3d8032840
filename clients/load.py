"""Open-loop load: requests leave at fixed times whatever the server does.

A closed loop (send, wait, send) slows down when the server does and so hides
queueing; here request ``i`` is scheduled at ``start + i / rate`` and its
latency is measured from that scheduled time, so time spent waiting behind a
slow server (or a saturated client) counts, as it would for a real caller.

    report = run_open_loop("http://127.0.0.1:8000", rate_per_s=10_000 / 3600,
                           duration_s=60, narratives=texts)
    report.p95_ms, report.cases_per_hour, report.errors

No retries: a 503 is a result here, not something to hide.
"""

from __future__ import annotations

import asyncio
import math
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import httpx

from clients.client import API_KEY_ENV, USER_AGENT

# (outcome: "200", "503", "timeout", "connection_error"..., latency in seconds)
CompleteCallback = Callable[[str, float], None]

_RATE_UNITS = {"s": 1.0, "sec": 1.0, "second": 1.0, "m": 60.0, "min": 60.0, "minute": 60.0,
               "h": 3600.0, "hr": 3600.0, "hour": 3600.0}
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_rate(text: str) -> float:
    """Requests per second from '3/s', '180/min', '10000/h' or a bare number (per second)."""
    number, _, unit = text.strip().lower().partition("/")
    unit = unit.strip() or "s"
    if unit not in _RATE_UNITS and unit.endswith("s"):
        unit = unit[:-1]  # "hours", "mins", "secs"
    if not re.fullmatch(r"[0-9]*\.?[0-9]+", number.strip()) or unit not in _RATE_UNITS:
        raise ValueError(f"not a rate: {text!r} (try 3/s, 180/min or 10000/h)")
    rate = float(number) / _RATE_UNITS[unit]
    if rate <= 0:
        raise ValueError("the rate must be above 0")
    return rate


def parse_duration(text: str) -> float:
    """Seconds from '90', '30s', '5m', '1h30m' or '500ms'."""
    text = text.strip().lower()
    if re.fullmatch(r"[0-9]*\.?[0-9]+", text):
        seconds = float(text)
    else:
        parts = re.findall(r"([0-9]*\.?[0-9]+)(ms|s|m|h)", text)
        if not parts or "".join(n + u for n, u in parts) != text:
            raise ValueError(f"not a duration: {text!r} (try 30s, 5m or 1h)")
        seconds = sum(float(n) * _DURATION_UNITS[u] for n, u in parts)
    if seconds <= 0:
        raise ValueError("the duration must be above 0")
    return seconds


def percentile(sorted_values: Sequence[float], q: float) -> Optional[float]:
    """Linear-interpolated percentile (q in 0..100) of already sorted values; None when empty."""
    if not sorted_values:
        return None
    if len(sorted_values) == 1:
        return sorted_values[0]
    pos = (len(sorted_values) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


@dataclass
class LoadReport:
    url: str
    endpoint: str
    target_rate_per_s: float
    duration_s: float
    scheduled: int
    sent: int = 0
    ok: int = 0
    errors: dict = field(default_factory=dict)  # outcome ("503", "timeout", ...) -> count
    # (index into narratives, seconds from scheduled time) of each successful request
    answered: list = field(default_factory=list, repr=False)
    wall_s: float = 0.0  # first scheduled send to last answer
    max_send_lag_s: float = 0.0  # how far behind schedule the client ever sent (its own saturation)

    @property
    def latencies_s(self) -> list[float]:
        return [latency for _, latency in self.answered]

    @property
    def failed(self) -> int:
        return sum(self.errors.values())

    @property
    def achieved_rate_per_s(self) -> float:
        return self.ok / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def cases_per_hour(self) -> float:
        return self.achieved_rate_per_s * 3600.0

    def latency_ms(self, q: float) -> Optional[float]:
        value = percentile(sorted(self.latencies_s), q)
        return None if value is None else value * 1000.0

    @property
    def p50_ms(self) -> Optional[float]:
        return self.latency_ms(50)

    @property
    def p95_ms(self) -> Optional[float]:
        return self.latency_ms(95)

    @property
    def p99_ms(self) -> Optional[float]:
        return self.latency_ms(99)

    def to_dict(self) -> dict:
        return {
            "url": self.url, "endpoint": self.endpoint, "target_rate_per_s": self.target_rate_per_s,
            "duration_s": self.duration_s, "scheduled": self.scheduled, "sent": self.sent, "ok": self.ok,
            "failed": self.failed, "errors": dict(self.errors), "wall_s": round(self.wall_s, 3),
            "achieved_rate_per_s": round(self.achieved_rate_per_s, 4), "cases_per_hour": round(self.cases_per_hour, 1),
            "latency_ms": {k: None if v is None else round(v, 2) for k, v in
                           (("p50", self.p50_ms), ("p95", self.p95_ms), ("p99", self.p99_ms),
                            ("max", self.latency_ms(100)))},
            "max_send_lag_ms": round(self.max_send_lag_s * 1000.0, 2),
        }

    def summary(self) -> str:
        def ms(v):
            return "-" if v is None else f"{v:.1f} ms"

        errors = ", ".join(f"{k}: {v}" for k, v in sorted(self.errors.items())) or "none"
        return "\n".join([
            f"target        {self.target_rate_per_s:.3f}/s for {self.duration_s:g} s "
            f"({self.scheduled} requests to {self.url}{self.endpoint})",
            f"sent          {self.sent}   ok {self.ok}   failed {self.failed}",
            f"achieved      {self.achieved_rate_per_s:.3f} cases/s = {self.cases_per_hour:.0f} cases/hour "
            f"(over {self.wall_s:.1f} s)",
            f"latency       p50 {ms(self.p50_ms)}   p95 {ms(self.p95_ms)}   p99 {ms(self.p99_ms)}   "
            f"max {ms(self.latency_ms(100))}",
            f"errors        {errors}",
            f"send lag max  {self.max_send_lag_s * 1000.0:.1f} ms",
        ])


def _outcome(exc: BaseException) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    if isinstance(exc, httpx.TransportError):
        return "connection_error"
    return type(exc).__name__


async def run_open_loop_async(url: str, rate_per_s: float, duration_s: float, narratives: Sequence[str], *,
                              api_key: Optional[str] = None, endpoint: str = "/classify",
                              body: Optional[Callable[[str], dict]] = None, timeout_s: float = 60.0,
                              max_connections: int = 1000,
                              on_complete: Optional[CompleteCallback] = None) -> LoadReport:
    """Send ``floor(rate_per_s * duration_s)`` requests (at least one), request i at start + i/rate.

    ``narratives`` are used in turn (cycled). ``body(narrative)`` builds the
    JSON body (default ``{"narrative": narrative}``). ``api_key`` defaults to
    ``$CHS_API_KEY``. Returns after every request has answered or timed out.
    """
    if rate_per_s <= 0 or duration_s <= 0:
        raise ValueError("rate_per_s and duration_s must be above 0")
    if not narratives:
        raise ValueError("no narratives to send")
    make_body = body or (lambda text: {"narrative": text})
    n = max(1, int(rate_per_s * duration_s + 1e-9))
    report = LoadReport(url=url.rstrip("/"), endpoint=endpoint, target_rate_per_s=rate_per_s,
                        duration_s=duration_s, scheduled=n)
    key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
    headers = {"User-Agent": USER_AGENT}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    errors: Counter = Counter()
    limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=min(100, max_connections))
    loop = asyncio.get_running_loop()
    last_done = [0.0]

    async with httpx.AsyncClient(base_url=report.url, headers=headers, limits=limits,
                                 timeout=httpx.Timeout(timeout_s, connect=min(10.0, timeout_s))) as http:
        async def one(index: int, scheduled_at: float) -> None:
            try:
                r = await http.post(endpoint, json=make_body(narratives[index]))
                outcome = str(r.status_code)
            except Exception as exc:  # a failure is a data point, not a crash
                outcome = _outcome(exc)
            done = loop.time()
            last_done[0] = max(last_done[0], done)
            latency = done - scheduled_at
            if outcome.startswith("2"):
                report.ok += 1
                report.answered.append((index, latency))
            else:
                errors[outcome] += 1
            if on_complete is not None:
                on_complete(outcome, latency)

        tasks = []
        start = loop.time() + 0.01
        for i in range(n):
            at = start + i / rate_per_s
            wait = at - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            report.max_send_lag_s = max(report.max_send_lag_s, loop.time() - at)
            tasks.append(asyncio.create_task(one(i % len(narratives), at)))
            report.sent += 1
        await asyncio.gather(*tasks)
    report.errors = dict(errors)
    report.wall_s = max(last_done[0] - start, 1e-9)
    return report


def run_open_loop(url: str, rate_per_s: float, duration_s: float, narratives: Sequence[str],
                  **kwargs) -> LoadReport:
    """The blocking form of ``run_open_loop_async`` (same arguments); not for use inside a running event loop."""
    return asyncio.run(run_open_loop_async(url, rate_per_s, duration_s, narratives, **kwargs))
