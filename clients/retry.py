"""The retry policy: which failures are worth another try, and how long to wait.

Pure (no I/O, no clock except through arguments), so it is unit-tested directly.

* Retried: 429, 502, 503, 504 and transport failures where the request may
  not have reached the model (connection refused/reset, protocol errors).
* Never retried: any other status. A 4xx caused by the input (400, 401, 413,
  415, 422) would fail the same way again; a 500 is the model failing on this
  input. Read timeouts are not retried by default either: the server may still
  be working on the request, and a retry would double its load exactly when it
  is slowest.
* Waits: exponential backoff with full jitter, ``uniform(0, min(cap, base*2**n))``.
  When the server sends ``Retry-After`` the wait is at least that long (capped
  at ``max_retry_after_s``), plus the jitter, so clients told the same
  Retry-After do not all return in the same instant.
"""

from __future__ import annotations

import email.utils
import random
import time
from dataclasses import dataclass
from typing import Optional

import httpx

RETRY_STATUSES = frozenset({429, 502, 503, 504})
INPUT_ERROR_STATUSES = frozenset({400, 401, 403, 404, 405, 413, 415, 422})

# Failures where the request did not complete at the transport level. Timeouts
# other than connect/pool timeouts are opt-in (see ``retry_timeouts``).
_TRANSPORT_RETRYABLE = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.ReadError,
    httpx.WriteError,
    httpx.RemoteProtocolError,
)
_TIMEOUTS = (httpx.ReadTimeout, httpx.WriteTimeout)


def parse_retry_after(value: Optional[str], now: Optional[float] = None) -> Optional[float]:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date. None if absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    now = time.time() if now is None else now
    return max(0.0, when.timestamp() - now)


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 3
    backoff_base_s: float = 0.5
    backoff_max_s: float = 10.0
    max_retry_after_s: float = 60.0
    retry_statuses: frozenset = RETRY_STATUSES
    retry_timeouts: bool = False

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        if self.backoff_base_s < 0 or self.backoff_max_s < 0 or self.max_retry_after_s < 0:
            raise ValueError("backoff and Retry-After limits must be >= 0")

    def retryable_status(self, status: int) -> bool:
        return status in self.retry_statuses and status not in INPUT_ERROR_STATUSES

    def retryable_exception(self, exc: BaseException) -> bool:
        if isinstance(exc, _TRANSPORT_RETRYABLE):
            return True
        return self.retry_timeouts and isinstance(exc, _TIMEOUTS)

    def backoff(self, retry: int, rng: random.Random | None = None) -> float:
        """Full jitter for the ``retry``-th retry (0-based): uniform(0, min(cap, base * 2**retry))."""
        ceiling = min(self.backoff_max_s, self.backoff_base_s * (2 ** min(retry, 62)))
        return (rng or random).uniform(0.0, ceiling)

    def delay(self, retry: int, retry_after: Optional[float] = None, rng: random.Random | None = None) -> float:
        jitter = self.backoff(retry, rng)
        if retry_after is None:
            return jitter
        return min(retry_after, self.max_retry_after_s) + jitter

    def next_delay(self, retry: int, *, status: Optional[int] = None, exc: Optional[BaseException] = None,
                   retry_after: Optional[float] = None, rng: random.Random | None = None) -> Optional[float]:
        """Seconds to wait before retry number ``retry`` (0-based), or None: do not retry.

        Give either the response ``status`` or the transport ``exc``.
        """
        if retry >= self.max_retries:
            return None
        if exc is not None:
            ok = self.retryable_exception(exc)
        elif status is not None:
            ok = self.retryable_status(status)
        else:
            ok = False
        if not ok:
            return None
        return self.delay(retry, retry_after, rng)
