"""The ingress's handlers of the intake routes: /tasks/* and OpenCHS's /classifier/*. Ray-free.

A case is validated by the contract here (what ``/classify`` would refuse is refused now, never
queued to fail later), then put on the durable queue through ``IntakeStore``, whose blocking calls run in a
worker thread; a broker that cannot be reached is a 503.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable, Optional

from deployments.core import contract, openchs, tasks
from deployments.core.errors import ServiceError
from deployments.intake.producer import IntakeStore

logger = logging.getLogger("ray.serve")


class IntakeHandlers:
    def __init__(self, store: IntakeStore, model_info: Callable[[], Awaitable[dict]], on_depth: Callable[[int], None]):
        self.store = store
        self.model_info = model_info  # OpenCHS's get_model_info() of the served model
        self.on_depth = on_depth  # told the queue's depth at each submit

    async def _on_store(self, fn, *args):
        """Run a blocking IntakeStore call in a thread; a broker that cannot be reached is a 503."""
        try:
            return await asyncio.to_thread(fn, *args)
        except ServiceError:
            raise
        except Exception as exc:
            logger.warning("intake store call failed: %s", type(exc).__name__)
            raise ServiceError.unavailable("The intake queue cannot be reached; retry.") from None

    async def ping(self) -> None:
        await self._on_store(self.store.ping)

    async def queue_depth(self) -> int:
        return await self._on_store(self.store.queue_depth)

    async def _submit(self, narratives: list[str], call_ids: list, parsed, key: Optional[str],
                      callback_url: Optional[str] = None, for_openchs: bool = False) -> list[dict]:
        cases = []
        for i, (narrative, call_id) in enumerate(zip(narratives, call_ids)):
            item_key = None if key is None else (key if len(narratives) == 1 and not parsed.is_batch else f"{key}#{i}")
            payload = {"narrative": narrative, "include_confidence": parsed.include_confidence,
                       "include_chunks": parsed.include_chunks, "call_id": call_id}
            if for_openchs:  # the consumer counts each window's sentences for their chunk_predictions
                payload["openchs"] = True
            cases.append((tasks.task_id_for(item_key, call_id, narrative), call_id, payload))
        views = await self._on_store(self.store.submit, cases, callback_url)
        self.on_depth(await self._on_store(self.store.queue_depth))
        return views

    async def tasks_classify(self, parsed: contract.TaskClassifyRequest,
                             idempotency_key: Optional[str] = None) -> contract.TaskAccepted:
        (view,) = await self._submit([parsed.narrative], [parsed.call_id], parsed, idempotency_key,
                                     parsed.callback_url)
        return contract.TaskAccepted(success=True, task_id=view["task_id"], status=view["status"],
                                     status_url=f"/tasks/{view['task_id']}")

    async def tasks_classify_batch(self, parsed: contract.TaskBatchRequest,
                                   idempotency_key: Optional[str] = None) -> contract.TaskBatchAccepted:
        call_ids = parsed.call_ids or [None] * len(parsed.narratives)
        views = await self._submit(parsed.narratives, call_ids, parsed, idempotency_key, parsed.callback_url)
        return contract.TaskBatchAccepted(success=True, tasks=[
            contract.TaskRef(task_id=v["task_id"], status=v["status"], status_url=f"/tasks/{v['task_id']}")
            for v in views])

    async def _view(self, task_id: str) -> dict:
        if not tasks.is_task_id(task_id):
            raise ServiceError.task_not_found()
        view = await self._on_store(self.store.view, task_id)
        if view is None:
            raise ServiceError.task_not_found()
        return view

    async def task_status(self, task_id: str) -> contract.TaskStatus:
        view = await self._view(task_id)
        view.pop("window_sentences", None)  # kept for OpenCHS's chunk_predictions only
        return contract.TaskStatus(**view)

    async def openchs_classify(self, parsed: contract.OpenchsClassifyRequest) -> contract.OpenchsTaskResponse:
        # Every window's labels are kept with the task: their status answer lists them as chunk_predictions.
        request = contract.ClassifyRequest(narrative=parsed.narrative, include_chunks=True)
        (view,) = await self._submit([parsed.narrative], [parsed.call_id], request, None, for_openchs=True)
        depth = await self._on_store(self.store.queue_depth)
        return contract.OpenchsTaskResponse(**openchs.openchs_submitted(view["task_id"], f"{depth} cases ahead"))

    async def openchs_demo(self) -> contract.OpenchsTaskResponse:
        return await self.openchs_classify(contract.OpenchsClassifyRequest(narrative=openchs.DEMO_NARRATIVE))

    async def openchs_task(self, task_id: str) -> contract.OpenchsTaskStatusResponse:
        # Their AsyncResult reads an id it never saw as PENDING: so does this route (ours, /tasks/{id}, says 404).
        view = await self._on_store(self.store.view, task_id) if tasks.is_task_id(task_id) else None
        info = await self.model_info() if view is not None and view["result"] else {}
        return contract.OpenchsTaskStatusResponse(**openchs.openchs_status(view, info, task_id))
