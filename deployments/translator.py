"""The Translator deployment: non-English narratives into the classifier's language, dynamically batched.

Deployed only when ``AppArgs.translation.model`` is set (``bind_translator`` gives None otherwise):
the demo ships no translation model. One narrative in, its translation out; the narratives of
every caller are batched together (``core/batch_queue.py``: the next batch is taken when the last is
done; size and wait from ``AppArgs.translation``, changed live through ``reconfigure``). The model
and its cutting of long narratives into sentences are ``deployments/core/translation.py``'s
``Translator``; this shell runs it in a worker thread so the event loop keeps queueing the next
batch. English narratives never reach it: the caller decides, by the narrative's language and
``translation.languages``.
Narrative text is never logged.
"""

from __future__ import annotations

import asyncio
from typing import Optional

from ray import serve

from deployments.core.batch_queue import BatchQueue
from deployments.core.config import DEPLOYMENT_OPTIONS, AppArgs, TranslationArgs
from deployments.core.translation import Translator as TranslationModel

# What reconfigure takes: the live part of AppArgs.translation.
LIVE_SETTINGS = ("max_batch_size", "batch_wait_timeout_s", "num_beams")


def translator_user_config(settings: TranslationArgs) -> dict:
    """The Translator's ``user_config`` from ``AppArgs.translation``."""
    return {name: getattr(settings, name) for name in LIVE_SETTINGS}


@serve.deployment(name="Translator", **DEPLOYMENT_OPTIONS["Translator"])
class Translator:
    """The translation model's replica: narratives in, translations out, batched across callers."""

    def __init__(self, args: AppArgs):
        self.settings = args.translation
        if not self.settings.model:
            raise ValueError("the Translator deployment needs translation.model; leave it out when translation is off")
        self.backend = TranslationModel.load(self.settings.model, self.settings.revision, device="cpu",
                                             num_beams=self.settings.num_beams,
                                             torch_threads=max(1, int(self.settings.num_cpus)))
        self.queue = BatchQueue(self._translate_batch, max_size=self.settings.max_batch_size,
                                wait_s=self.settings.batch_wait_timeout_s)
        self._apply(self.settings)

    def _apply(self, settings: TranslationArgs) -> None:
        self.settings = settings
        self.backend.num_beams = settings.num_beams
        self.queue.max_size = settings.max_batch_size
        self.queue.wait_s = settings.batch_wait_timeout_s

    def reconfigure(self, user_config: dict) -> None:
        """Batch size, batch wait and beam width, live; anything else is refused (the model needs a redeploy)."""
        unknown = set(user_config) - set(LIVE_SETTINGS)
        if unknown:
            raise ValueError(f"Translator user_config takes {', '.join(LIVE_SETTINGS)}, "
                             f"not {', '.join(sorted(unknown))}")
        self._apply(TranslationArgs.model_validate({**self.settings.model_dump(), **user_config}))

    async def translate(self, text: str) -> str:
        """One narrative per caller (``handle.translate.remote(text)``), its translation back."""
        return await self.queue(text)

    async def _translate_batch(self, texts: list[str]) -> list[str]:
        return await asyncio.to_thread(self.backend.translate, texts)

    async def check_health(self) -> None:
        # In a thread: a one-step forward, never queued behind the event loop.
        await asyncio.to_thread(self.backend.health_check)

    def describe(self) -> dict:
        return {"model": self.backend.info.model_id, "revision": self.backend.info.revision}


def bind_translator(args: AppArgs) -> Optional[serve.Application]:
    """The Translator bound to ``args`` with its CPUs and live settings, or None when translation is off."""
    if not args.translation.model:
        return None
    return Translator.options(
        ray_actor_options={"num_cpus": args.translation.num_cpus},
        user_config=translator_user_config(args.translation),
    ).bind(args)
