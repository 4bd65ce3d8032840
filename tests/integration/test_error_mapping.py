"""Failure mapping and the classifier's health check, without Ray actors (one test uses a real one)."""

from __future__ import annotations

import asyncio

import pytest
import torch
from ray.exceptions import RayActorError
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError

from deployments.ray_errors import backend_error
from deployments.core.errors import ServiceError
from deployments.core.inference import ModelRunner


@pytest.mark.parametrize("status, retry_after_s, want_header", [(503, 1, "1"), (429, 2.5, "3"), (503, None, "1")])
def test_backpressure_maps_to_the_configured_status_and_retry_after(status, retry_after_s, want_header):
    err = backend_error(BackPressureError(num_queued_requests=8, max_queued_requests=8, status_code=status,
                                          retry_after_s=retry_after_s))
    assert (err.status, err.code) == (status, "overloaded")
    assert err.headers["Retry-After"] == want_header


@pytest.mark.parametrize("exc, status, code", [
    (asyncio.TimeoutError(), 504, "timeout"),
    (RayActorError(), 503, "unavailable"),
    (DeploymentUnavailableError("Classifier"), 503, "unavailable"),
    (ValueError("/work/main/deployments/x.py secret internals"), 500, "backend_error"),
])
def test_backend_failures_map_to_one_error_type(exc, status, code):
    err = backend_error(exc)
    assert isinstance(err, ServiceError)
    assert (err.status, err.code) == (status, code)
    if status == 503:
        assert int(err.headers["Retry-After"]) >= 1
    assert "/work/" not in err.message and ".py" not in err.message


def test_service_errors_pass_through_unchanged():
    original = ServiceError.too_large("x")
    assert backend_error(original) is original


@pytest.mark.parametrize("err", [ServiceError.too_large("x"), ServiceError.case_not_found(),
                                 ServiceError.unauthorized(), ServiceError.overloaded(3, status=429)])
def test_a_service_error_survives_pickling_and_ray_s_wrapper(err):
    # What a replica raises reaches the caller's replica pickled, inside a RayTaskError.
    import pickle

    from ray.exceptions import RayTaskError

    copied = pickle.loads(pickle.dumps(err))
    assert (copied.status, copied.code, copied.message, copied.headers) == (err.status, err.code, err.message,
                                                                            err.headers)
    wrapped = RayTaskError("call_store", "traceback", copied).as_instanceof_cause()
    for exc in (copied, wrapped):
        mapped = backend_error(exc)
        assert type(mapped) is ServiceError
        assert (mapped.status, mapped.code, mapped.message, mapped.headers) == (err.status, err.code, err.message,
                                                                                err.headers)


def test_a_service_error_raised_in_a_real_actor_comes_back_as_itself(serve_session):
    # A real Ray actor in the test session's cluster: the case store's 404 crosses the hop as an error.
    import ray

    from deployments.core.store.repository import CaseNotFound

    @ray.remote(num_cpus=0)
    class Store:
        def get_case(self, ref):
            raise CaseNotFound(ref)

    store = Store.remote()
    with pytest.raises(Exception) as caught:
        ray.get(store.get_case.remote("nope"))
    err = backend_error(caught.value)
    assert (err.status, err.code, err.message) == (404, "case_not_found", "No case has this id.")
    ray.kill(store)


@pytest.fixture
def backend(tiny_checkpoint) -> ModelRunner:
    # Eager PyTorch, so the test can break the very weights the health check runs on.
    return ModelRunner.load(str(tiny_checkpoint), accelerator="cpu", engine="torch", dtype="fp32",
                                torch_threads=1)


def test_health_check_passes_on_a_loaded_model(backend):
    backend.health_check()


def test_health_check_fails_when_the_weights_are_broken(backend):
    with torch.no_grad():
        next(backend.engine.model.parameters()).fill_(float("nan"))
    with pytest.raises(RuntimeError, match="health check"):
        backend.health_check()



def test_a_replica_death_reported_upstream_is_unavailable_not_a_failure():
    # Ray 2.60's router raises a dead upstream replica as a plain RayServeException
    # whose __cause__ is the ActorDiedError: that is retryable (503), not a 500.
    from ray.exceptions import ActorDiedError
    from ray.serve.exceptions import RayServeException

    wrapped = RayServeException("Request to deployment 'Router' failed because an upstream actor died")
    wrapped.__cause__ = ActorDiedError()
    err = backend_error(wrapped)
    assert (err.status, err.code) == (503, "unavailable")
    assert err.headers["Retry-After"] == "1"
    assert backend_error(RayServeException("something else")).status == 500


def test_wrapped_backpressure_keeps_its_status():
    outer = RuntimeError("wrapper")
    outer.__cause__ = BackPressureError(num_queued_requests=1, max_queued_requests=1, status_code=429, retry_after_s=4)
    err = backend_error(outer)
    assert (err.status, err.headers["Retry-After"]) == (429, "4")


def test_a_mix_of_model_versions_is_retryable():
    # The router refuses probabilities from another model version (mid rolling update);
    # the error comes back from its replica wrapped in a RayTaskError.
    from ray.exceptions import RayTaskError

    from deployments.core.errors import ModelVersionMismatchError

    cause = ModelVersionMismatchError("the stages of this request ran different model versions")
    wrapped = RayTaskError("route", "traceback", cause).as_instanceof_cause()
    for exc in (cause, wrapped):
        err = backend_error(exc)
        assert (err.status, err.code, err.headers["Retry-After"]) == (503, "unavailable", "1")


@pytest.mark.parametrize("backend_timeout_s", [0.5, 60.0, 300.0])
def test_a_draining_ingress_outlives_its_longest_request(tiny_checkpoint, backend_timeout_s):
    # Serve force-kills a replica still busy after graceful_shutdown_timeout_s; the proxy then
    # answers a bare 500. The ingress must get to answer (200, or its own retryable 504) first.
    from deployments.app import build_app
    from deployments.core.config import AppArgs

    app = build_app(AppArgs(model=str(tiny_checkpoint), accelerator="cpu", backend_timeout_s=backend_timeout_s))
    grace = app._bound_deployment._deployment_config.graceful_shutdown_timeout_s
    assert grace > backend_timeout_s + 10
