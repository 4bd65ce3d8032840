"""Dynamic batching that forms a batch when a batch can run: an asyncio queue, without Ray.

Ray Serve's ``@serve.batch`` forms its next batch as soon as the previous one has started, from what
arrives within its wait, and the batch then waits for a free slot. Under load, while the model is
busy, it keeps forming batches of one or two that queue up behind it: at 32 concurrent /classify
requests, 245 of 297 forward passes had a single row (bench/RESULTS.md). Here a batch is taken only
when one of ``max_in_flight`` slots is free, so what arrived meanwhile goes together, up to
``max_size``. An idle queue waits up to ``wait_s`` for company only when company is coming: when its
first item arrived within ``wait_s`` of the item before it (a burst, or steady load). The first item
after a quiet spell goes at once: at an offered 10,000 cases/h, cases ~360 ms apart, a wait would
find no company and only add ``wait_s`` to that case's latency, at each queue it passes.

Callers await ``queue(item)``; the handler takes a list of items and returns one result per item, in
order. A handler's exception reaches every caller of that batch, as with ``@serve.batch``. A caller
that is cancelled before its batch is taken is left out of it.
"""

from __future__ import annotations

import asyncio
import contextvars
import math
from dataclasses import dataclass, field
from typing import Awaitable, Callable, Generic, Sequence, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


@dataclass
class _Waiting(Generic[Item]):
    item: Item
    size: int
    arrived: float
    in_burst: bool  # arrived within wait_s of the item before it
    future: asyncio.Future = field(repr=False)


def take_batch(sizes: Sequence[int], max_size: int) -> int:
    """How many of the first waiting items (of these sizes, in arrival order) go in one batch: as many
    as fit in ``max_size``; the first goes even when it alone is larger."""
    total = 0
    for count, size in enumerate(sizes):
        if count and total + size > max_size:
            return count
        total += size
    return len(sizes)


class BatchQueue(Generic[Item, Result]):
    """``handler``'s calls, each over the items waiting when a slot is free.

    ``max_size`` and ``wait_s`` may be changed between batches (a deployment's ``reconfigure``).
    """

    def __init__(self, handler: Callable[[list[Item]], Awaitable[Sequence[Result]]], *, max_size: int,
                 wait_s: float, max_in_flight: int = 1, size_fn: Callable[[Item], int] = lambda item: 1):
        if max_size < 1 or max_in_flight < 1 or wait_s < 0:
            raise ValueError("max_size and max_in_flight must be at least 1, wait_s at least 0")
        self.handler, self.size_fn = handler, size_fn
        self.max_size, self.wait_s, self.max_in_flight = max_size, wait_s, max_in_flight
        self._waiting: list[_Waiting] = []
        self._arrival: asyncio.Event | None = None
        self._slots: asyncio.Semaphore | None = None
        self._dispatcher: asyncio.Task | None = None
        self._running: set[asyncio.Task] = set()
        self._last_arrival = -math.inf

    async def __call__(self, item: Item) -> Result:
        loop = asyncio.get_running_loop()
        if self._dispatcher is None or self._dispatcher.done():
            self._arrival, self._slots = asyncio.Event(), asyncio.Semaphore(self.max_in_flight)
            # A fresh context: the dispatcher outlives this caller, and must not carry its request's
            # context (Ray's request id) into the batches of others.
            self._dispatcher = loop.create_task(self._dispatch(), context=contextvars.Context())
        future, now = loop.create_future(), loop.time()
        in_burst = now - self._last_arrival <= self.wait_s
        self._last_arrival = now
        self._waiting.append(_Waiting(item, max(1, int(self.size_fn(item))), now, in_burst, future))
        self._arrival.set()
        return await future

    def _live_waiting(self) -> list[_Waiting]:
        self._waiting = [w for w in self._waiting if not w.future.done()]  # cancelled callers leave
        return self._waiting

    async def _dispatch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self._live_waiting():
                self._arrival.clear()
                await self._arrival.wait()
            await self._slots.acquire()
            # Idle: in a burst, wait for company, until the batch is full or the first caller has waited wait_s.
            while ((waiting := self._live_waiting()) and waiting[0].in_burst
                   and sum(w.size for w in waiting) < self.max_size):
                remaining = waiting[0].arrived + self.wait_s - loop.time()
                if remaining <= 0:
                    break
                self._arrival.clear()
                try:
                    await asyncio.wait_for(self._arrival.wait(), remaining)
                except asyncio.TimeoutError:
                    break
            waiting = self._live_waiting()
            count = take_batch([w.size for w in waiting], self.max_size)
            batch, self._waiting = waiting[:count], waiting[count:]
            if not batch:
                self._slots.release()
                continue
            task = loop.create_task(self._run(batch))
            self._running.add(task)  # held, so the task is not collected mid-run
            task.add_done_callback(self._running.discard)

    async def _run(self, batch: list[_Waiting]) -> None:
        try:
            results = await self.handler([w.item for w in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"the batch handler returned {len(results)} results for {len(batch)} items")
        except asyncio.CancelledError:  # the replica is going away: its callers hear so
            for w in batch:
                w.future.cancel()
            raise
        except Exception as exc:
            for w in batch:
                if not w.future.done():
                    w.future.set_exception(exc)
        else:
            for w, result in zip(batch, results):
                if not w.future.done():
                    w.future.set_result(result)
        finally:
            self._slots.release()
