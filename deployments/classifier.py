"""The Classifier deployment: the model replica, dynamically batched, GPU-pinned when there is one.

Token windows in (int32 arrays from the Preprocessor), per-task probabilities out. The model and
its engine are ``deployments/core/inference.py``'s ``ModelRunner``; this shell batches the calls
of every ingress replica and the intake's consumer (``core/batch_queue.py``: a lane's next batch is
taken when its last is done), and takes its batching live through ``reconfigure``. ``classify``
takes each call in one of three lanes, each batched on its own: ``live`` for the short cases a
person waits on, ``long`` for a single case of several windows, ``queued`` for the backlog and
/classify/batch; ``core/lanes.py`` orders their passes, live first, and the two lower lanes run in
small passes (``batching.yield_batch_tokens``) that make way between the encoder's layers, so a short
case never waits long behind one.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from functools import partial

from ray import serve

from deployments.core.batch_queue import BatchQueue
from deployments.core.config import DEPLOYMENT_OPTIONS, AppArgs, BatchingArgs
from deployments.core.inference import ModelRunner
from deployments.core.lanes import LANES, LIVE, QUIET_S, LaneGate
from deployments.core.windowing import TokenWindows
from deployments.metrics import ClassifierMetrics
from deployments.pipeline import MODEL_KEY, model_key


@serve.deployment(name="Classifier", **DEPLOYMENT_OPTIONS["Classifier"])
class Classifier:
    """The model replica: dynamically batched windows in, per-task probabilities out."""

    def __init__(self, args: AppArgs):
        self.backend = ModelRunner.from_args(args)
        self.model_key = model_key(self.backend.info)
        self.loaded_at = datetime.now(timezone.utc).isoformat()
        self.batching = args.batching
        metrics = ClassifierMetrics()
        self.record_forward = {lane: metrics.forward_recorder(lane) for lane in LANES}
        # Two passes at once where the engine runs them so (OpenVINO on two or more threads), else one.
        self.lanes = LaneGate(quiet_s=QUIET_S, slots=self.backend.passes_at_once)
        # One batch of each lane at a time: the next is taken when it is done, with all that came meanwhile.
        self.queues = {lane: BatchQueue(partial(self._run, lane=lane), max_size=self.batching.max_batch_size,
                                        wait_s=self.batching.batch_wait_timeout_s, size_fn=len)
                       for lane in LANES}

    def reconfigure(self, user_config: dict) -> None:
        self.batching = BatchingArgs(**user_config)
        for queue in self.queues.values():
            queue.max_size = self.batching.max_batch_size
            queue.wait_s = self.batching.batch_wait_timeout_s

    async def classify(self, windows: TokenWindows, lane: str = LIVE) -> dict:
        """``windows``' per-task probabilities, batched in ``lane`` (``core/lanes.lane_for`` names it)."""
        return await self.queues[lane](windows)

    async def _run(self, requests: list[TokenWindows], lane: str) -> list[dict]:
        # The live lane's passes are the largest the CPU runs at full speed; the other two yield to it
        # often (batching.yield_batch_tokens).
        max_tokens = self.batching.max_batch_tokens if lane == LIVE else self.batching.yield_batch_tokens
        # In a worker thread, so the event loop keeps queueing the next batch meanwhile; each
        # micro-batch takes its turn at the model through the gate.
        probs = await asyncio.to_thread(
            self.backend.classify,
            requests,
            max_rows=self.batching.max_batch_size,
            max_tokens=max_tokens,
            pass_cost_tokens=self.batching.pass_cost_tokens,
            on_microbatch=self.record_forward[lane],
            turn=lambda: self.lanes.turn(lane),
        )
        return [{**p, MODEL_KEY: self.model_key} for p in probs]

    def check_health(self) -> None:
        self.backend.health_check()

    def describe(self) -> dict:
        return {"device": str(self.backend.device), "engine": self.backend.engine_name,
                "dtype": self.backend.dtype_name, "passes_at_once": self.backend.passes_at_once,
                "loaded_at": self.loaded_at, **self.backend.selection}
