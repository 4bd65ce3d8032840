"""Clients for helpline-serve: Python (sync and asyncio), ``chs-classify`` and ``chs-loadtest``.

    from clients import HelplineClient

    with HelplineClient("http://127.0.0.1:8000") as client:
        result = client.classify("A 14 year old girl reports ...")
        print(result.main_category.label, result.priority.label, result.routing.queue)
"""

from clients.client import AsyncHelplineClient, ClientStats, HelplineClient, HelplineError
from clients.load import LoadReport, run_open_loop, run_open_loop_async
from clients.models import ClassifyResult, Health, Info, Limits, ModelRef, Prediction, Routing, TaskStatus
from clients.retry import RetryPolicy, parse_retry_after

__all__ = [
    "AsyncHelplineClient",
    "ClassifyResult",
    "ClientStats",
    "Health",
    "HelplineClient",
    "HelplineError",
    "Info",
    "Limits",
    "LoadReport",
    "ModelRef",
    "Prediction",
    "RetryPolicy",
    "Routing",
    "TaskStatus",
    "parse_retry_after",
    "run_open_loop",
    "run_open_loop_async",
]
