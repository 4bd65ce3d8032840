"""Live first: the order in which the model replica's lanes take their forward passes.

The Classifier has three lanes of work, each forming its own batches (its own ``batch_queue.BatchQueue``):

- ``live``: what a person waits on and the model reads in one window: a single short ``/classify``
  (and each coalesced group of them), and every piece of a live call;
- ``long``: a single ``/classify`` of several windows. A person waits on it too, but its own
  windows take several passes;
- ``queued``: what nobody waits on at the moment: the intake's backlog and ``/classify/batch``.

The two lower lanes run in small passes (``batching.yield_batch_tokens``, one 512-token window on a
CPU), so a short case that arrives meanwhile waits for one of them, never for a transcript's every
window or a batch of the backlog.

This gate orders their micro-batches through the one model: a waiting pass of a higher lane goes
before every waiting pass of a lower one. A live case therefore waits at most for the micro-batch
already running (and one lower pass more, when a lower lane is owed its share, below).

Where the engine runs two passes at once (OpenVINO on two or more threads, ``engines.OpenVinoEngine``)
the gate has two slots: a pass that finds the model idle and nothing else waiting takes both (all the
threads), otherwise one, so under load two passes run side by side, each on half the threads, and a
live case that finds one slot free goes at once.

A lower pass also makes way *within* itself: ``turn`` hands the pass a ``make_way`` callback, which
every engine calls between the encoder's layers (eager PyTorch between its modules, ONNX Runtime and
OpenVINO between the export's graphs, one per layer). When a higher pass waits there, the lower one
steps aside, the higher one runs, and the lower one resumes where it was (its layers' state stays in
memory). So a short case waits for about one layer of a 512-token window, not for the whole window
(~130 ms on a 2-core Xeon, ~220 ms on a 2-core EPYC). Only a checkpoint's own single ONNX graph runs
whole.

The backlog also waits for a quiet moment: a queued pass does not start within ``quiet_s`` of a
live or long pass's end (unless it is owed its share). Live work comes in bursts through the
ingress, and between two of its passes the gate is briefly empty; without the pause, a queued pass
would take that gap and the next live pass would wait for it.

The lower lanes are not starved, and a share is counted in the model's time, not in passes (a
queued pass of long windows costs many live passes of one short window): when a lane waits and has
had less than its share of the model's recent time (decaying over ``horizon_s``), one of its passes
goes first. Under a steady live overload the backlog still gets about ``queued_share`` of the model
and long transcripts about ``long_share``; otherwise the order holds. The intake's
``consumer_concurrency`` bounds the backlog's share from above, as before.
"""

from __future__ import annotations

import math
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator

LIVE = "live"
LONG = "long"
QUEUED = "queued"
LANES = (LIVE, LONG, QUEUED)  # highest first
# The Classifier's pause between a person's pass and the backlog's next (LaneGate.quiet_s): a few of
# the ingress's hops, so the next piece of a burst finds the model free.
QUIET_S = 0.05


def lane_for(*, queued: bool, windows: int) -> str:
    """The lane a call of ``windows`` windows goes in: ``queued`` (the intake's case, a batch request)
    whatever its size; otherwise live for one window, long for several."""
    if queued:
        return QUEUED
    return LONG if windows > 1 else LIVE


@dataclass
class Held:
    """What a forward pass holds while it runs: where it may pause (``make_way``, None for the live lane),
    and how many of the gate's slots. A pass that made way takes its slots anew when it resumes, so its
    width may change between two layers: an engine asks ``beside`` before each of its graphs."""

    make_way: Callable[[], None] | None = None
    took: int = 1
    slots: int = 1

    def beside(self) -> bool:
        """Whether another pass may run beside this one (it holds one slot of several): the engine then
        runs it on its share of the threads."""
        return self.took < self.slots


class LaneGate:
    """``slots`` forward passes at a time (one unless the engine runs more at once), live before long
    before queued. Thread-safe: each lane's batch runs in a worker thread of its own and takes a turn per
    micro-batch.

    With several slots, a pass that finds the model idle and nothing else waiting takes every slot (all
    the threads); otherwise it takes one and runs beside the others. Under load two passes run at once,
    each on its share of the threads; a lone case still gets all of them."""

    def __init__(self, queued_share: float = 0.1, long_share: float = 0.25, horizon_s: float = 30.0,
                 quiet_s: float = 0.0, slots: int = 1, clock: Callable[[], float] = time.monotonic):
        if not (0.0 <= queued_share and 0.0 <= long_share and queued_share + long_share < 1.0):
            raise ValueError("queued_share and long_share must be at least 0, and together below 1")
        if horizon_s <= 0:
            raise ValueError("horizon_s must be positive")
        if quiet_s < 0:
            raise ValueError("quiet_s must be at least 0")
        if slots < 1:
            raise ValueError("slots must be at least 1")
        self.slots = slots
        self.quiet_s = quiet_s
        self._person_pass_ended = -math.inf  # when the last live or long pass ended
        self.shares = {LIVE: 0.0, LONG: long_share, QUEUED: queued_share}
        self.horizon_s, self._clock = horizon_s, clock
        self._cond = threading.Condition()
        self._busy = 0  # slots taken
        self._waiting = {lane: 0 for lane in LANES}
        self._model_s = {lane: 0.0 for lane in LANES}  # each lane's recent model time, decayed
        self._stamp = clock()

    def next_lane(self, also: str | None = None) -> str | None:
        """The lane whose waiting pass goes next: the highest owed its share, else the highest waiting.
        ``also``: a lane counted as waiting (a running pass asking whether to make way)."""
        waiting = [lane for lane in LANES if self._waiting[lane] or lane == also]
        total = sum(self._model_s.values())
        owed = [lane for lane in waiting if self._owed(lane, total)]
        return (owed or waiting or [None])[0]

    def _owed(self, lane: str, total: float) -> bool:
        return total > 0 and self._model_s[lane] < self.shares[lane] * total

    def _may_go(self, lane: str) -> bool:
        if self._busy >= self.slots or self.next_lane() != lane:
            return False
        if lane == QUEUED and not self._owed(QUEUED, sum(self._model_s.values())):
            return self._clock() - self._person_pass_ended >= self.quiet_s
        return True

    def _account(self, lane: str, started: float, took: int) -> None:
        now = self._clock()
        fade = math.exp(-max(0.0, now - self._stamp) / self.horizon_s)
        for name in LANES:
            self._model_s[name] *= fade
        self._model_s[lane] += max(0.0, now - started) * took / self.slots  # its share of the model
        self._stamp = now
        if lane != QUEUED:
            self._person_pass_ended = now

    def _wait_turn(self, lane: str) -> int:
        # Called with the condition held; returns the slots it took: all of them when nothing runs and
        # nothing else waits, else one. A pass that made way and waits to resume counts as waiting, so the
        # pass it let go takes one slot and it resumes in the other, beside it.
        self._waiting[lane] += 1
        while not self._may_go(lane):
            # A queued pass held for quiet is let go by the clock, not by another pass's end.
            self._cond.wait(timeout=self.quiet_s or None)
        self._waiting[lane] -= 1
        take = self.slots if self._busy == 0 and not any(self._waiting.values()) else 1
        self._busy += take
        if self._busy < self.slots:  # the next in line may now take the slot left (it waited behind this one)
            self._cond.notify_all()
        return take

    def _release(self, lane: str, started: float, took: int) -> None:
        # Called with the condition held.
        self._account(lane, started, took)
        self._busy -= took
        self._cond.notify_all()

    @contextmanager
    def turn(self, lane: str) -> Iterator[Held]:
        """Hold the model for one forward pass of ``lane``. The pass may call the ``make_way`` it is given
        at any point where it can pause, to let a waiting higher pass go first. The live lane, which makes
        way for none, is given None: its pass runs whole (on an exported engine, the one graph of the whole
        model, which runs faster than the graphs per layer)."""
        if lane not in LANES:
            raise ValueError(f"unknown lane {lane!r}")
        higher = LANES[:LANES.index(lane)]
        held = Held(slots=self.slots)
        started = 0.0

        def make_way() -> None:
            nonlocal started
            if not any(self._waiting[h] for h in higher):  # the common case, without the lock
                return
            with self._cond:
                if self.next_lane(also=lane) == lane:  # owed its share: it keeps the model
                    return
                self._release(lane, started, held.took)
                held.took = self._wait_turn(lane)
            started = self._clock()

        with self._cond:
            held.took = self._wait_turn(lane)
        held.make_way = make_way if higher else None
        started = self._clock()
        try:
            yield held
        finally:
            with self._cond:
                self._release(lane, started, held.took)
