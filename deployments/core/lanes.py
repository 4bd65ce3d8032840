"""Live first: the order in which the model replica's two lanes take their forward passes.

The Classifier has two lanes of work. ``live`` carries what a person is waiting on: a single
``/classify`` (and each coalesced group of them) and every piece of a live call. ``queued`` carries
what nobody waits on at the moment: the intake's backlog and ``/classify/batch``. Each lane forms its
own batches (its own ``@serve.batch`` queue), so a live case is never queued behind a batch of
queued ones, and this gate orders their micro-batches through the one model: a waiting live
micro-batch goes before every waiting queued one. A live case therefore waits for at most the one
micro-batch already running, never for a whole queued batch or a long transcript's every window.

The queued lane is not starved: after ``max_live_streak`` live turns in a row while queued work
waited, one queued micro-batch goes. Under a steady live load that bounds the backlog's share from
below (1 in ``max_live_streak + 1`` forward passes); the intake's ``consumer_concurrency`` bounds it
from above, as before.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator

LIVE = "live"
QUEUED = "queued"
LANES = (LIVE, QUEUED)


class LaneGate:
    """One forward pass at a time, live before queued. Thread-safe: each lane's batch runs in a
    worker thread of its own and takes a turn per micro-batch."""

    def __init__(self, max_live_streak: int = 8):
        if max_live_streak < 1:
            raise ValueError("max_live_streak must be at least 1")
        self.max_live_streak = max_live_streak
        self._cond = threading.Condition()
        self._busy = False
        self._waiting = {lane: 0 for lane in LANES}
        self._live_streak = 0  # live turns in a row taken while queued work waited

    def _may_go(self, lane: str) -> bool:
        if self._busy:
            return False
        queued_is_due = self._waiting[QUEUED] > 0 and self._live_streak >= self.max_live_streak
        if lane == LIVE:
            return not queued_is_due
        return self._waiting[LIVE] == 0 or queued_is_due

    @contextmanager
    def turn(self, lane: str) -> Iterator[None]:
        """Hold the model for one forward pass of ``lane``."""
        if lane not in LANES:
            raise ValueError(f"unknown lane {lane!r}")
        with self._cond:
            self._waiting[lane] += 1
            while not self._may_go(lane):
                self._cond.wait()
            self._waiting[lane] -= 1
            self._busy = True
            if lane == QUEUED:
                self._live_streak = 0
            elif self._waiting[QUEUED] > 0:
                self._live_streak += 1
        try:
            yield
        finally:
            with self._cond:
                self._busy = False
                self._cond.notify_all()
