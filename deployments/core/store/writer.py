"""The batching write queue for case records: the request path only appends to a list.

A background thread writes what has queued every ``interval_s``, or at once
when ``max_rows`` are waiting, in one transaction per batch. ``flush()``
returns when everything submitted before it is written (a read that must see
its own writes calls it first); ``close()`` flushes and stops, so a clean
shutdown loses no record. A failed write is retried on the next tick; the
log line names the error type and the count, never a record's content.
"""

from __future__ import annotations

import logging
import threading
from typing import Callable, Sequence

logger = logging.getLogger(__name__)

# Past this many unwritten records (a store down for long), the oldest are dropped, and counted.
MAX_PENDING = 100_000


class RecordWriter:
    def __init__(self, write: Callable[[Sequence[dict]], None], *, interval_s: float = 0.05, max_rows: int = 256,
                 what: str = "case records"):
        self._write = write
        self._what = what  # what the records are, for the log lines
        self._interval = interval_s
        self._max_rows = max_rows
        self._pending: list[dict] = []
        self._submitted = 0  # records ever submitted
        self._written = 0  # of those, written (or dropped)
        self.dropped = 0
        self._cond = threading.Condition()
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="case-record-writer", daemon=True)
        self._thread.start()

    def submit(self, records: Sequence[dict]) -> None:
        with self._cond:
            if self._closing:
                raise RuntimeError("the record writer is closed")
            self._pending.extend(records)
            self._submitted += len(records)
            overflow = len(self._pending) - MAX_PENDING
            if overflow > 0:
                del self._pending[:overflow]
                self.dropped += overflow
                self._written += overflow
                logger.error("case store unreachable: dropped %d %s", overflow, self._what)
            if len(self._pending) >= self._max_rows:
                self._cond.notify_all()

    def flush(self, timeout_s: float | None = 30) -> bool:
        """Wait until every record submitted so far is written; False on timeout."""
        with self._cond:
            target = self._submitted
            self._cond.notify_all()
            return self._cond.wait_for(lambda: self._written >= target, timeout=timeout_s)

    def close(self, timeout_s: float | None = 30) -> bool:
        flushed = self.flush(timeout_s)
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout_s)
        return flushed

    @property
    def pending(self) -> int:
        with self._cond:
            return len(self._pending)

    def _run(self) -> None:
        failures = 0
        while True:
            with self._cond:
                if not self._pending and not self._closing:
                    self._cond.wait(self._interval)
                if not self._pending:
                    if self._closing:
                        return
                    continue
                batch = self._pending[: max(self._max_rows, 1) * 4]
            try:
                self._write(batch)
            except Exception as exc:  # the store is down or refused: keep them, retry next tick
                failures += 1
                logger.warning("writing %d %s failed (%s); retrying", len(batch), self._what, type(exc).__name__)
                with self._cond:
                    if self._closing and failures >= 3:
                        logger.error("shutting down with %d %s unwritten", len(self._pending), self._what)
                        self.dropped += len(self._pending)
                        self._written += len(self._pending)
                        self._pending.clear()
                        self._cond.notify_all()
                        return
                    self._cond.wait(min(self._interval * 2 ** min(failures, 6), 5.0))
                continue
            failures = 0
            with self._cond:
                del self._pending[: len(batch)]
                self._written += len(batch)
                self._cond.notify_all()
