"""One case's path through the Classifier and Router handles, shared by the HTTP ingress and the queue's consumer.

``CasePipeline.classify`` tokenizes and windows the narratives, sends the windows to the
classifier a slice at a time (so short cases interleave with long ones) and hands the last
slice's probabilities to the router unawaited. Live requests and queued cases call the same
Classifier, each in its lane (``deployments/core/lanes.py``): live, long or queued.

``CaseCoalescer`` sits in front of it for the ingress's /classify: single one-window cases that
arrive together are merged (``deployments/core/coalesce.py``) and sent as one group.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Callable

from ray.serve.handle import DeploymentHandle

from deployments.core import contract
from deployments.core.batch_queue import BatchQueue
from deployments.core.coalesce import CaseOutcome, Group, merge_cases, pack_groups
from deployments.core.config import AppArgs, CoalescingArgs
from deployments.core.errors import ServiceError
from deployments.core.loading import load_labels, load_narrative_tokenizer, read_checkpoint_info, resolve_checkpoint
from deployments.core.language import Language
from deployments.core.lanes import LIVE, lane_for
from deployments.core.preprocess import CasePlan, CasePreparer, SingleCase, Translated
from deployments.core.windowing import TokenWindows
from deployments.ingress import current_request_id
from deployments.ray_errors import backend_error


# The key, in each classifier result, naming the model that computed it.
MODEL_KEY = "model"


def model_key(info) -> str:
    """What the response's ``model`` field names: id and revision, the same for every stage of one version.

    During a rolling update (a new model path through ``serve deploy``) each deployment rolls on
    its own, so a new ingress can reach an old classifier; the router refuses such a mix.
    """
    return f"{info.model_id}@{info.revision or ''}"


class CasePipeline:
    def __init__(self, args: AppArgs, classifier: DeploymentHandle, router: DeploymentHandle,
                 translator: DeploymentHandle | None = None):
        self.args = args
        self.translator = translator  # None: translation is off (translation.model null)
        path = resolve_checkpoint(args.model, args.revision)
        self.preparer = CasePreparer.from_args(args, load_narrative_tokenizer(path))
        self.labels = load_labels(path, args.labels)
        self.checkpoint = read_checkpoint_info(path, args.model, args.revision)
        self.model_ref = contract.ModelRef(id=args.model, revision=self.checkpoint.revision)
        self.model_key = model_key(self.checkpoint)
        self.classifier = classifier
        self.router = router

    async def translations(self, narratives: list[str]) -> tuple[list[Translated | None], list[Language] | None]:
        """The English the model reads for each narrative in a language the Translator takes (None for the
        rest), and the languages identified to choose (None when translation is off: the screen identifies).

        English narratives (and every other language not in ``translation.languages``) never reach it.
        """
        if self.translator is None:
            return [None] * len(narratives), None
        languages = [self.preparer.language_of(n) for n in narratives]
        todo = [i for i, lang in enumerate(languages) if lang.code in self.args.translation.languages]
        if not todo:
            return [None] * len(narratives), languages
        try:
            texts = await asyncio.wait_for(asyncio.gather(*(self.translator.translate.remote(narratives[i])
                                                            for i in todo)), self.args.backend_timeout_s)
        except Exception as exc:
            raise backend_error(exc) from None
        out: list[Translated | None] = [None] * len(narratives)
        for i, text in zip(todo, texts):
            out[i] = Translated(text, languages[i].code, self.args.translation.model)
        return out, languages

    async def prepare(self, parsed: contract.ClassifyRequest | contract.BatchRequest) -> tuple[TokenWindows, list[CasePlan]]:
        """The request's windows and plans; raises the 413 the caller gets."""
        translations, languages = await self.translations(parsed.narratives)
        return self.preparer.prepare(parsed.narratives, include_confidence=parsed.include_confidence,
                                     include_chunks=parsed.include_chunks, translations=translations,
                                     languages=languages)

    async def prepare_single(self, parsed: contract.ClassifyRequest) -> SingleCase:
        """A /classify request's case, with its request id taken here, in the caller's task."""
        (translation,), languages = await self.translations([parsed.narrative])
        return self.preparer.single(parsed.narrative, include_confidence=parsed.include_confidence,
                                    include_chunks=parsed.include_chunks, call_id=parsed.call_id,
                                    request_id=current_request_id() or None, translation=translation,
                                    language=languages[0] if languages else None)

    async def classify(self, parsed: contract.ClassifyRequest | contract.BatchRequest, *,
                       task_id: str | None = None) -> list[dict]:
        """The case bodies, in order; the Router records each case (``task_id`` for a queued one).

        A queued case and a batch go in the classifier's queued lane; a single case in its live lane."""
        windows, plans = await self.prepare(parsed)
        meta = {
            "case_ids": [str(uuid.uuid4()) for _ in plans], "call_ids": parsed.call_id_list(),
            "request_ids": [current_request_id() or None] * len(plans), "task_id": task_id,
            "is_batch": parsed.is_batch,
            # The record keeps the text only when the operator turned keep_narratives on.
            "narratives": self.preparer.kept(parsed.narratives),
        }
        return await self.send(windows, plans, meta,
                               lane=lane_for(queued=task_id is not None or parsed.is_batch, windows=len(windows)))

    async def send(self, windows: TokenWindows, plans: list[CasePlan], meta: dict, *, lane: str) -> list[dict]:
        """Windows to the classifier a slice at a time, then the plans to the router: the case bodies."""
        step = self.args.windows_per_call
        # One deadline for the whole request, however many slices: a draining replica
        # (graceful_shutdown_timeout_s > backend_timeout_s, see build_app) answers every request it took.
        deadline = time.monotonic() + self.args.backend_timeout_s

        def left() -> float:
            return max(0.0, deadline - time.monotonic())

        try:
            done = []
            for start in range(0, len(windows) - step, step):
                part = windows.slice(start, start + step)
                done.append(await asyncio.wait_for(self.classifier.classify.remote(part, lane), left()))
            last_start = len(done) * step
            last = windows if last_start == 0 else windows.slice(last_start, len(windows))
            # The last classifier response goes to the router unawaited: Ray hands it over directly.
            response = self.router.route.remote(plans, self.model_key, meta, *done,
                                                self.classifier.classify.remote(last, lane))
            return await asyncio.wait_for(response, left())
        except Exception as exc:
            raise backend_error(exc) from None

    async def send_group(self, group: Group, lane: str = LIVE) -> list[dict]:
        """A group of single cases through the classifier's ``lane`` and the router: one body per case,
        in the group's order."""
        return group.split(await self.send(group.windows, group.plans, group.meta, lane=lane))

    def response(self, case: dict, started: float) -> contract.ClassifyResponse:
        return contract.ClassifyResponse(success=True, **case, model=self.model_ref,
                                         processing_time_seconds=round(time.perf_counter() - started, 6))

    async def classify_one(self, parsed: contract.ClassifyRequest, *,
                           task_id: str | None = None) -> contract.ClassifyResponse:
        """Exactly the /classify response body."""
        started = time.perf_counter()
        (case,) = await self.classify(parsed, task_id=task_id)
        return self.response(case, started)


# Groups one ingress replica has out at the classifier and router at once; the next group is
# formed when one comes back, of the cases that arrived meanwhile. Eight groups of
# coalescing.max_cases (16) are the Preprocessor's max_ongoing_requests (128).
GROUPS_IN_FLIGHT = 8


class CaseCoalescer:
    """Single-case /classify requests that reach this replica together go on as one group.

    Ray's cost per call (serializing, scheduling, the replica's bookkeeping) is then paid once per
    group on the way to the classifier and to the router, not once per case.
    """

    def __init__(self, pipeline: CasePipeline, args: CoalescingArgs, on_group: Callable[[int], None]):
        self.pipeline = pipeline
        self.enabled = args.max_cases > 1
        self.on_group = on_group  # told the size of each group sent
        self._groups = BatchQueue(self._classify_group, max_size=args.max_cases, wait_s=args.wait_timeout_s,
                                  max_in_flight=GROUPS_IN_FLIGHT)

    async def classify_one(self, parsed: contract.ClassifyRequest) -> contract.ClassifyResponse:
        """Exactly the /classify response body, as ``CasePipeline.classify_one`` answers it."""
        started = time.perf_counter()
        case = await self.pipeline.prepare_single(parsed)  # a bad case is refused here, to its own caller only
        lane = lane_for(queued=False, windows=case.n_windows)
        if lane == LIVE and self.enabled:
            body = (await self._groups(case)).result()
        else:
            # A case of several windows goes alone, in the long lane's small passes, so it never
            # holds a group of short ones back, nor a short case's forward pass.
            (body,) = await self.pipeline.send_group(merge_cases([case]), lane=lane)
        return self.pipeline.response(body, started)

    async def _classify_group(self, cases: list[SingleCase]) -> list[CaseOutcome]:
        groups = pack_groups(cases, self.pipeline.args.windows_per_call)
        answers = await asyncio.gather(*(self._send(group) for group in groups))
        return [outcome for answer in answers for outcome in answer]

    async def _send(self, group: Group) -> list[CaseOutcome]:
        self.on_group(len(group.cases))
        try:
            bodies = await self.pipeline.send_group(group)
        except ServiceError as err:  # the classifier or router failed: every case of the group was in that call
            return [CaseOutcome(error=err) for _ in group.cases]
        return [CaseOutcome(body=body) for body in bodies]
