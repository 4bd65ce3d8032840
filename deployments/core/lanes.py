"""Live first: the order in which the model replica's two lanes take their forward passes.

The Classifier has two lanes of work. ``live`` carries what a person is waiting on: a single
``/classify`` (and each coalesced group of them) and every piece of a live call. ``queued`` carries
what nobody waits on at the moment: the intake's backlog and ``/classify/batch``. Each lane forms its
own batches (its own ``@serve.batch`` queue), so a live case is never queued behind a batch of
queued ones, and this gate orders their micro-batches through the one model: a waiting live
micro-batch goes before every waiting queued one. A live case therefore waits for the micro-batch
already running (and at most one queued pass more, when the backlog is owed its share, below), never
for a whole queued batch or a long transcript's every window.

The queued lane is not starved, and its share is counted in the model's time, not in passes (a
queued pass of long windows costs many live passes of one short window): when both lanes wait and
the queued lane has had less than ``queued_share`` of the model's recent time (decaying over
``horizon_s``), one queued pass goes. Under a steady live overload the backlog still gets about
``queued_share`` of the model; otherwise live goes first. The intake's ``consumer_concurrency``
bounds the backlog's share from above, as before.
"""

from __future__ import annotations

import math
import threading
import time
from contextlib import contextmanager
from typing import Callable, Iterator

LIVE = "live"
QUEUED = "queued"
LANES = (LIVE, QUEUED)


class LaneGate:
    """One forward pass at a time, live before queued. Thread-safe: each lane's batch runs in a
    worker thread of its own and takes a turn per micro-batch."""

    def __init__(self, queued_share: float = 0.1, horizon_s: float = 30.0,
                 clock: Callable[[], float] = time.monotonic):
        if not 0.0 <= queued_share < 1.0:
            raise ValueError("queued_share must be in [0, 1)")
        if horizon_s <= 0:
            raise ValueError("horizon_s must be positive")
        self.queued_share, self.horizon_s, self._clock = queued_share, horizon_s, clock
        self._cond = threading.Condition()
        self._busy = False
        self._waiting = {lane: 0 for lane in LANES}
        self._model_s = {lane: 0.0 for lane in LANES}  # each lane's recent model time, decayed
        self._stamp = clock()

    def _queued_is_due(self) -> bool:
        total = self._model_s[LIVE] + self._model_s[QUEUED]
        return self._waiting[QUEUED] > 0 and total > 0 and self._model_s[QUEUED] < self.queued_share * total

    def _may_go(self, lane: str) -> bool:
        if self._busy:
            return False
        if lane == LIVE:
            return not self._queued_is_due()
        return self._waiting[LIVE] == 0 or self._queued_is_due()

    def _account(self, lane: str, started: float) -> None:
        now = self._clock()
        fade = math.exp(-max(0.0, now - self._stamp) / self.horizon_s)
        for name in LANES:
            self._model_s[name] *= fade
        self._model_s[lane] += max(0.0, now - started)
        self._stamp = now

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
        started = self._clock()
        try:
            yield
        finally:
            with self._cond:
                self._account(lane, started)
                self._busy = False
                self._cond.notify_all()
