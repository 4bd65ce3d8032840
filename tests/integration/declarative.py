"""Deploy the app the way ``serve deploy serve_config.yaml`` does, in the test session's cluster.

``serve deploy`` PUTs the config to the dashboard, whose handler calls
``ServeControllerClient.deploy_apps``; the session cluster runs without a
dashboard, so this calls ``deploy_apps`` directly: the same controller path
(``apply_config``), the same per-deployment overrides (``max_queued_requests``,
``backpressure_config``, ``user_config``...), the same in-place update when only
a deployment's config changes and rolling replacement when the code or args do.

The starting point is the shipped ``serve_config.yaml`` itself, with the model
pointed at a test checkpoint and sized for the 2-core test machine.
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path

import httpx
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVE_CONFIG = REPO_ROOT / "serve_config.yaml"
APP_NAME = "helpline"
KEY_PREFIX = "declarative:"
# As ServeSession.deploy: small CPU asks, one torch thread, fp32.
TEST_ARGS = {"dtype": "fp32", "torch_threads": 1, "classifier_num_cpus": 0.5}


def shipped_config() -> dict:
    return yaml.safe_load(SERVE_CONFIG.read_text())


def app_config(model: str | Path, *, args: dict | None = None, deployments: list[dict] | None = None,
               runtime_env: dict | None = None) -> dict:
    """serve_config.yaml's application, for ``model``, with ``args`` merged over its args and each of
    ``deployments`` merged over the entry of the same name (a value of None removes that option).

    The classifier runs one replica (the shipped autoscaling is replaced) unless ``deployments`` says otherwise.
    """
    (app,) = copy.deepcopy(shipped_config()["applications"])
    app["args"].update({**TEST_ARGS, "model": str(model), **(args or {})})
    by_name = {d["name"]: d for d in app["deployments"]}
    overrides = [{"name": "Classifier", "num_replicas": 1, "autoscaling_config": None}] + list(deployments or [])
    for override in overrides:
        entry = by_name.setdefault(override["name"], {"name": override["name"]})
        for key, value in override.items():
            if value is None:
                entry.pop(key, None)
            else:
                entry[key] = value
    app["deployments"] = list(by_name.values())
    if runtime_env:
        app["runtime_env"] = runtime_env
    return app


def serve_deploy(serve_session, app: dict, *, wait: bool = True, timeout_s: float = 240) -> str:
    """Apply ``app`` as the session's one application; return the base URL.

    An app ``ServeSession.deploy`` made is deleted first; one this function made is
    updated in place, as ``serve deploy`` would (use ``wait=False`` to keep traffic
    running through the update, then ``wait_running``).
    """
    from ray import serve
    from ray.serve.schema import ServeDeploySchema

    from tests.conftest import record_deploy

    started = time.monotonic()
    if serve_session.current is not None and not serve_session.current.startswith(KEY_PREFIX):
        serve_session.undeploy()
    config = ServeDeploySchema.model_validate(
        {"applications": [app], "logging_config": shipped_config().get("logging_config")}
    )
    serve.context._get_global_client().deploy_apps(config)
    # ServeSession.deploy sees a key it did not make, so its next call replaces this app.
    serve_session.current = KEY_PREFIX + json.dumps(app, sort_keys=True, default=str)
    serve_session.args = dict(app["args"])
    if wait:
        wait_running(serve_session, timeout_s=timeout_s)
    record_deploy(time.monotonic() - started, serve_session.current if wait else serve_session.current + " (no wait)")
    return serve_session.url


def app_status(app_name: str = APP_NAME) -> str | None:
    from ray import serve

    status = serve.status().applications.get(app_name)
    return None if status is None else str(status.status.value if hasattr(status.status, "value") else status.status)


def wait_running(serve_session, *, timeout_s: float = 240, app_name: str = APP_NAME) -> None:
    """Until the app is RUNNING and answers /health (bounded)."""
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = app_status(app_name)
        if last == "RUNNING":
            try:
                if httpx.get(f"{serve_session.url}/health", timeout=10).status_code == 200:
                    return
            except httpx.TransportError:
                pass
        elif last == "DEPLOY_FAILED":
            from ray import serve

            raise AssertionError(f"deploy failed: {serve.status().applications[app_name].message}")
        time.sleep(0.5)
    raise AssertionError(f"application not RUNNING after {timeout_s}s (last status {last})")


def replicas(deployment: str, app_name: str = APP_NAME) -> list[dict]:
    """The controller's view of a deployment's replicas: replica_id, state, actor_name, actor_id, pid..."""
    from ray import serve

    details = serve.context._get_global_client().get_serve_details()
    app = details["applications"].get(app_name) or {}
    return list(((app.get("deployments") or {}).get(deployment) or {}).get("replicas") or [])
