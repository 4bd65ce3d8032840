"""The ingress's handlers of the live call routes: ``POST /calls/{call_id}/transcript``, ``/end``,
``GET /calls/{call_id}`` and its Server-Sent Events, and the sweep that closes idle calls.

The logic is Ray-free (``deployments/core/calls.py``); this shell loads and saves each call's state in
the case store through the Router (``call_store``: ``get_call``, ``save_call``, ``idle_calls``), sends
the piece's windows to the Classifier, and, when the call closes, hands the whole call's windows to the
Router's ``route`` as ``/classify`` does, which records its one case.

Why the case store and not the broker: a call's state is read and rewritten at every piece, must
survive any replica and a redeploy, and must be gone, text and all, when the call closes; the store is
transactional, its conditional update (``version``) settles two replicas racing for one call, and its
row is replaced by the text-free summary in the same write that closes the call. The broker is a
queue: it has neither a read by key nor a conditional write.

Every state write is conditional on the version read, so two pieces of one call never both land;
within a replica, a lock per call serializes them first.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from datetime import datetime, timedelta
from typing import AsyncIterator, Optional

import numpy as np
from starlette.responses import StreamingResponse

from deployments.core import contract, notifications
from deployments.core.calls import CLOSED, OPEN, CallSessions, Piece, digest
from deployments.core.config import AppArgs
from deployments.core.errors import ServiceError
from deployments.core.lanes import LIVE
from deployments.core.postprocess import CaseAssembler
from deployments.core.store.repository import utcnow
from deployments.intake.producer import IntakeStore
from deployments.pipeline import MODEL_KEY, CasePipeline
from deployments.ray_errors import backend_error
from deployments.store_handlers import CaseStoreHandlers

logger = logging.getLogger("ray.serve")

# Conditional writes lost to another replica before a piece gives up with a 409 the caller may retry.
SAVE_ATTEMPTS = 3


def call_not_found() -> ServiceError:
    return ServiceError(404, "call_not_found", "No call has this id: it never sent a piece.")


class CallHandlers:
    def __init__(self, pipeline: CasePipeline, store: CaseStoreHandlers, args: AppArgs,
                 intake: Optional[IntakeStore] = None):
        self.pipeline = pipeline
        self.store = store  # the call's state lives in the case store, through the Router
        self.args = args
        self.intake = intake  # where notifications are queued (None: never sent)
        refused = notifications.refusal(args.calls.notify_url, args.calls.notify_allow_hosts)
        if args.calls.notify_url and refused:
            logger.warning("live call notifications are off: %s", refused)
        self.notify_to = None if refused or intake is None else args.calls.notify_url
        self.sessions = CallSessions(pipeline.preparer, CaseAssembler.from_args(pipeline.labels, args))
        self.locks: dict[str, asyncio.Lock] = {}
        self._sweeper: Optional[asyncio.Task] = None

    # -- the routes ----------------------------------------------------------------------------------

    async def call_transcript(self, piece: contract.CallPiece, params: contract.CallParams):
        self.start_sweeper()
        started = time.perf_counter()
        call_id = params.call_id
        async with self._lock(call_id):
            for _ in range(SAVE_ATTEMPTS):
                loaded = await self.store.call_store("get_call", call_id)
                state, version = (loaded["state"], loaded["version"]) if loaded else (self.sessions.open(call_id, utcnow()), 0)
                if not self.sessions.check(state, Piece(piece.seq, piece.text, piece.final)):
                    return self._again(state)  # a repeat: answered again, never classified twice
                work = self.sessions.advance(state, piece.text)
                probs = await self._classify(work.windows)
                state, answer = self.sessions.settle(work, probs, piece.seq, digest(piece.text), utcnow())
                if piece.final:
                    ended = await self._close(state, version, started, piece_answer=answer)
                    if ended is not None:
                        return ended
                    continue
                if await self.store.call_store("save_call", call_id, state, version):
                    escalated = answer["escalation"] is not None and answer["escalation"]["seq"] == piece.seq
                    await self._notify(call_id, answer, ("update", "escalation") if escalated else ("update",))
                    return contract.CallUpdate(success=True, **answer)
        raise ServiceError(409, "call_busy", "Another piece of this call was being taken at the same time; retry.")

    async def call_end(self, params: contract.CallParams) -> contract.CallEnded:
        self.start_sweeper()
        started = time.perf_counter()
        async with self._lock(params.call_id):
            for _ in range(SAVE_ATTEMPTS):
                loaded = await self.store.call_store("get_call", params.call_id)
                if loaded is None:
                    raise call_not_found()
                if loaded["state"]["status"] == CLOSED:
                    return self._ended(loaded["state"])  # ending twice answers the same
                ended = await self._close(loaded["state"], loaded["version"], started)
                if ended is not None:
                    return ended
        raise ServiceError(409, "call_busy", "A piece of this call was being taken at the same time; retry.")

    async def call_state(self, params: contract.CallParams) -> contract.CallState:
        self.start_sweeper()
        loaded = await self.store.call_store("get_call", params.call_id)
        if loaded is None:
            raise call_not_found()
        s = loaded["state"]
        current = s.get("final") or s.get("last")
        if current is not None:
            current = self.sessions.public(current)
        return contract.CallState(success=True, call_id=s["call_id"], status=s["status"], next_seq=s["next_seq"],
                                  opened_at=s["opened_at"], updated_at=s["updated_at"], closed_at=s.get("closed_at"),
                                  case_id=s.get("case_id"), current=current, timeline=s["timeline"],
                                  escalated_at=(s["escalation"] or {}).get("at"), escalation=s["escalation"])

    async def call_events(self, params: contract.EventParams, last_event_id: Optional[str] = None) -> StreamingResponse:
        self.start_sweeper()
        after = params.last_event_id
        if after is None and last_event_id is not None:
            after = int(last_event_id) if last_event_id.isascii() and last_event_id.isdigit() else None
        loaded = await self.store.call_store("get_call", params.call_id)
        if loaded is None:
            raise call_not_found()
        return StreamingResponse(self._events(params.call_id, after or 0, loaded["state"]),
                                 media_type="text/event-stream", headers={"cache-control": "no-cache"})

    # -- the idle sweep ------------------------------------------------------------------------------

    def start_sweeper(self) -> None:
        """Start the idle sweep on this replica's event loop, once (the constructor may run outside it)."""
        if self._sweeper is None or self._sweeper.done():
            try:
                self._sweeper = asyncio.get_running_loop().create_task(self._sweep_forever())
            except RuntimeError:
                self._sweeper = None

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.args.calls.sweep_interval_s)
            try:
                await self.close_idle(utcnow())
            except Exception as exc:  # the next sweep tries again; never the call's text in the log
                logger.warning("idle call sweep failed (%s)", type(exc).__name__)

    async def close_idle(self, now: datetime) -> int:
        """Close every call idle since before ``now - calls.idle_timeout_s``; how many this replica closed."""
        closed = 0
        idle_since = now - timedelta(seconds=self.args.calls.idle_timeout_s)
        for call_id in await self.store.call_store("idle_calls", idle_since):
            async with self._lock(call_id):
                loaded = await self.store.call_store("get_call", call_id)
                if loaded is None or loaded["state"]["status"] != OPEN:
                    continue
                if datetime.fromisoformat(loaded["state"]["updated_at"]) >= idle_since:
                    continue  # a piece came in meanwhile
                if await self._close(loaded["state"], loaded["version"], time.perf_counter(), reason="idle"):
                    closed += 1
        return closed

    # -- helpers -------------------------------------------------------------------------------------

    def _lock(self, call_id: str) -> asyncio.Lock:
        lock = self.locks.get(call_id)
        if lock is None:
            if len(self.locks) > 10_000:  # forget the locks nobody holds
                self.locks = {k: v for k, v in self.locks.items() if v.locked()}
            lock = self.locks[call_id] = asyncio.Lock()
        return lock

    async def _classify(self, windows) -> dict:
        if len(windows) == 0:
            return {}
        step, parts = self.args.windows_per_call, []
        try:
            for start in range(0, len(windows), step):
                part = windows if len(windows) <= step else windows.slice(start, min(start + step, len(windows)))
                parts.append(await asyncio.wait_for(self.pipeline.classifier.classify.remote(part, LIVE),
                                                    self.args.backend_timeout_s))
        except Exception as exc:
            raise backend_error(exc) from None
        if {p.pop(MODEL_KEY, None) for p in parts} != {self.pipeline.model_key}:
            raise ServiceError.unavailable("The model is being updated; retry.", retry_after_s=1)
        return {task: np.concatenate([p[task] for p in parts]) for task in parts[0]}

    async def _close(self, state: dict, version: int, started: float, reason: str = "end",
                     piece_answer: Optional[dict] = None) -> Optional[contract.CallEnded]:
        """Record the call's case through the Router, as /classify would, and keep only its summary.

        None when another replica changed the call meanwhile (the caller reads it again)."""
        plan, probs = self.sessions.final_case(state)
        meta = {"case_ids": [self.sessions.new_case_id()], "call_ids": [state["call_id"]], "request_ids": [None],
                "task_id": None, "is_batch": False, "narratives": None, "call_timeline": state["timeline"],
                "escalated_at": (state["escalation"] or {}).get("at")}
        try:
            (case,) = await asyncio.wait_for(self.pipeline.router.route.remote(
                [plan], self.pipeline.model_key, meta, {**probs, MODEL_KEY: self.pipeline.model_key}),
                self.args.backend_timeout_s)
        except Exception as exc:
            raise backend_error(exc) from None
        body = self.sessions.final_body(state, case)
        closed = self.sessions.close(state, body, utcnow(), reason=reason)
        if not await self.store.call_store("save_call", state["call_id"], closed, version):
            return None
        if piece_answer is not None:
            escalated = piece_answer["escalation"] is not None and piece_answer["escalation"]["seq"] == piece_answer["seq"]
            await self._notify(state["call_id"], piece_answer, ("update", "escalation") if escalated else ("update",))
        await self._notify(state["call_id"], {**body, "reason": reason}, ("end",))
        return contract.CallEnded(success=True, **body, model=self.pipeline.model_ref,
                                  processing_time_seconds=round(time.perf_counter() - started, 6))

    async def _notify(self, call_id: str, body: dict, kinds: tuple) -> None:
        """Queue the call's notifications this configuration wants; the consumer delivers them."""
        if self.notify_to is None:
            return
        now = utcnow()
        for kind in kinds:
            if not notifications.wanted(self.args.calls.notify_mode, kind):
                continue
            message = notifications.envelope(kind, call_id, self.sessions.public(body), site_id=self.args.calls.site_id,
                                             now=now)
            try:
                await asyncio.to_thread(self.intake.queue_notification, self.notify_to, message)
            except Exception as exc:  # the piece is taken and on the event stream; the queue was away
                logger.warning("call notification %s could not be queued (%s)", message["message_id"],
                               type(exc).__name__)

    def _again(self, state: dict):
        if state["status"] == CLOSED:
            return self._ended(state)
        return contract.CallUpdate(success=True, **state["last"])

    def _ended(self, state: dict) -> contract.CallEnded:
        return contract.CallEnded(success=True, **state["final"], model=self.pipeline.model_ref,
                                  processing_time_seconds=0.0)

    async def _events(self, call_id: str, after: int, state: dict) -> AsyncIterator[str]:
        deadline = time.monotonic() + self.args.calls.events_max_s
        yield ": connected\n\n"
        while True:
            for event in state.get("events", []):
                if event["id"] > after:
                    after = event["id"]
                    yield f"id: {event['id']}\nevent: {event['event']}\ndata: {json.dumps(event['data'])}\n\n"
            if state["status"] == CLOSED or time.monotonic() > deadline:
                return
            await asyncio.sleep(self.args.calls.events_poll_s)
            try:
                loaded = await self.store.call_store("get_call", call_id)
            except ServiceError:
                continue  # the store is briefly away (a redeploy): the stream goes on
            if loaded is not None:
                state = loaded["state"]
