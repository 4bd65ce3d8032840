"""One case's path through the Classifier and Router handles, shared by the HTTP ingress and the queue's consumer.

``CasePipeline.classify`` tokenizes and windows the narratives, sends the windows to the
classifier a slice at a time (so short cases interleave with long ones) and hands the last
slice's probabilities to the router unawaited. Live requests and queued cases call the same
handles, so they share the classifier's batches.
"""

from __future__ import annotations

import asyncio
import time
import uuid

from ray.serve.handle import DeploymentHandle

from deployments.core import contract
from deployments.core.config import AppArgs
from deployments.core.errors import ServiceError
from deployments.core.loading import load_labels, load_tokenizer, read_checkpoint_info, resolve_checkpoint
from deployments.core.preprocess import NarrativeTokenizer, prepare_cases
from deployments.core.text import normalize_narrative
from deployments.ingress import backend_error, current_request_id


def model_key(info) -> str:
    """What the response's ``model`` field names: id and revision, the same for every stage of one version.

    During a rolling update (a new model path through ``serve deploy``) each deployment rolls on
    its own, so a new ingress can reach an old classifier; the router refuses such a mix.
    """
    return f"{info.model_id}@{info.revision or ''}"


class CasePipeline:
    def __init__(self, args: AppArgs, classifier: DeploymentHandle, router: DeploymentHandle):
        self.args = args
        path = resolve_checkpoint(args.model, args.revision)
        self.tokenizer = NarrativeTokenizer(load_tokenizer(path))
        self.labels = load_labels(path)
        self.checkpoint = read_checkpoint_info(path, args.model, args.revision)
        self.model_ref = contract.ModelRef(id=args.model, revision=self.checkpoint.revision)
        self.model_key = model_key(self.checkpoint)
        self.classifier = classifier
        self.router = router

    def check(self, narratives: list[str]) -> None:
        """Raise the 400 /classify would answer for a narrative empty after normalization."""
        prepare_cases(narratives, self.tokenizer, max_length=self.args.max_length, overlap=self.args.window_overlap,
                      truncate=True, include_confidence=True, include_chunks=False, is_batch=len(narratives) > 1)

    async def classify(self, parsed: contract.ClassifyRequest | contract.BatchRequest, *,
                       task_id: str | None = None) -> list[dict]:
        """The case bodies, in order; the Router records each case (``task_id`` for a queued one)."""
        windows, plans = prepare_cases(
            parsed.narratives, self.tokenizer, max_length=self.args.max_length, overlap=self.args.window_overlap,
            truncate=self.args.long_narratives == "truncate", include_confidence=parsed.include_confidence,
            include_chunks=parsed.include_chunks, is_batch=parsed.is_batch,
        )
        if len(windows) > self.args.max_batch_windows:
            raise ServiceError.too_large(
                f"The request needs {len(windows)} model windows; the limit is {self.args.max_batch_windows}."
            )
        meta = {
            "case_ids": [str(uuid.uuid4()) for _ in plans], "call_ids": parsed.call_id_list(),
            "request_id": current_request_id() or None, "task_id": task_id, "is_batch": parsed.is_batch,
            # The record keeps the text only when the operator turned keep_narratives on.
            "narratives": ([normalize_narrative(n) for n in parsed.narratives]
                           if self.args.feedback.keep_narratives else None),
        }
        step = self.args.windows_per_call
        # One deadline for the whole request, however many slices: a draining replica
        # (graceful_shutdown_timeout_s > backend_timeout_s, see build_app) answers every request it took.
        deadline = time.monotonic() + self.args.backend_timeout_s

        def left() -> float:
            return max(0.0, deadline - time.monotonic())

        try:
            done = []
            for start in range(0, len(windows) - step, step):
                done.append(await asyncio.wait_for(
                    self.classifier.classify.remote(windows.slice(start, start + step)), left()
                ))
            last_start = len(done) * step
            last = windows if last_start == 0 else windows.slice(last_start, len(windows))
            # The last classifier response goes to the router unawaited: Ray hands it over directly.
            response = self.router.route.remote(plans, self.model_key, meta, *done,
                                                self.classifier.classify.remote(last))
            return await asyncio.wait_for(response, left())
        except Exception as exc:
            raise backend_error(exc) from None

    async def classify_one(self, parsed: contract.ClassifyRequest, *,
                           task_id: str | None = None) -> contract.ClassifyResponse:
        """Exactly the /classify response body."""
        started = time.perf_counter()
        (case,) = await self.classify(parsed, task_id=task_id)
        return contract.ClassifyResponse(success=True, **case, model=self.model_ref,
                                         processing_time_seconds=round(time.perf_counter() - started, 6))
