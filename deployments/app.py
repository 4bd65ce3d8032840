"""The one entry point, ``build_app``: three deployments and the intake's consumer, wired from one ``AppArgs``.

    HTTP → Preprocessor (ingress) → Classifier (batched model) → Router → back to the caller
                                                                   └─▶ case store (SQLite / PostgreSQL)

Each deployment is a thin shell in a module of its own (``deployments/preprocessor.py``,
``classifier.py``, ``router.py``, ``intake/consumer.py``): its constructor loads state from the
``AppArgs`` it is given, its methods are the request path, and the logic it calls lives in Ray-free
modules (``deployments/core``). Each deployment's Serve options are declared once, in
``deployments/core/config.py``'s ``DEPLOYMENT_OPTIONS``.
"""

from __future__ import annotations

import logging

import ray
from ray import serve

from deployments.classifier import Classifier
from deployments.core.config import AppArgs
from deployments.intake.consumer import make_consumer
from deployments.preprocessor import Preprocessor
from deployments.router import Router
from deployments.translator import bind_translator

logger = logging.getLogger("ray.serve")


def _cluster_has_gpus() -> bool:
    try:
        return ray.is_initialized() and ray.cluster_resources().get("GPU", 0) > 0
    except Exception:
        return False


def build_app(args: AppArgs) -> serve.Application:
    """Compose Preprocessor → Classifier → Router (the intake's consumer, and the Translator when
    ``translation.model`` is set) from one validated ``AppArgs``."""
    if isinstance(args, dict):
        args = AppArgs(**args)
    # CHS_MODEL is read once, here, so every deployment serves the same model.
    args = args.model_copy(update={"model": args.resolved_model()})
    use_gpu = args.accelerator == "cuda" or (args.accelerator == "auto" and _cluster_has_gpus())
    if args.accelerator == "auto" and not use_gpu:
        logger.warning("accelerator 'auto': the cluster has no GPUs, so the classifier asks for none and runs on CPU")
    classifier = Classifier.options(
        ray_actor_options={"num_cpus": args.classifier_num_cpus, "num_gpus": args.num_gpus if use_gpu else 0,
                           "resources": dict(args.classifier_resources)},
        user_config=args.batching.model_dump(),
    ).bind(args)
    router = Router.bind(args)
    translator = bind_translator(args)  # None unless translation.model is set
    # An ingress replica being replaced (a redeploy, a scale-down) keeps running until its last
    # request is answered: it must outlive backend_timeout_s, or Serve force-kills it mid-request
    # and the proxy answers a bare 500 (seen when a new Router took 30 s to start on a busy node).
    ingress = Preprocessor.options(graceful_shutdown_timeout_s=max(30.0, args.backend_timeout_s + 15))
    # The queue's consumer: an ingress-less deployment beside the others, calling the same handles.
    consumer = make_consumer(args).bind(classifier, router, args, translator)
    return ingress.bind(classifier, router, args, consumer, translator)
