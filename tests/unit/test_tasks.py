"""deployments/core/tasks.py: broker choice, task ids, records, state views, failure policy (OpenCHS's shapes:
tests/unit/test_openchs.py)."""

from __future__ import annotations

import json
import uuid

import pytest

from deployments.core import contract, tasks
from deployments.core.config import AppArgs, IntakeArgs
from deployments.core.errors import LabelHeadMismatchError, ModelVersionMismatchError, ServiceError

SECRET = "the caller said her uncle hurts her"


def test_the_config_url_wins_then_the_env_then_the_embedded_broker(tmp_path):
    configured = tasks.resolve_broker(IntakeArgs(broker_url="redis://cfg:6379/0"), env={"CHS_BROKER_URL": "redis://env/1"})
    assert configured.broker_url == configured.backend_url == "redis://cfg:6379/0" and not configured.embedded
    from_env = tasks.resolve_broker(IntakeArgs(), env={"CHS_BROKER_URL": "redis://env:6379/1"})
    assert from_env.broker_url == "redis://env:6379/1"
    embedded = tasks.resolve_broker(IntakeArgs(data_dir="var/intake"), env={}, cwd=tmp_path)
    assert embedded.embedded and embedded.queue_dir == tmp_path / "var/intake/queue" and embedded.queue_dir.is_dir()
    assert embedded.backend_url == f"file://{tmp_path / 'var/intake/results'}"


def test_redis_gets_this_workloads_visibility_timeout_not_an_hour():
    broker = tasks.resolve_broker(IntakeArgs(broker_url="redis://r:6379/0", visibility_timeout_s=90), env={})
    assert broker.transport_options == {"visibility_timeout": 90}


def test_a_broker_description_never_shows_a_password():
    broker = tasks.resolve_broker(IntakeArgs(broker_url="redis://:hunter2@redis.svc:6379/0"), env={})
    assert "hunter2" not in broker.describe() and "redis.svc" in broker.describe()


def test_only_redis_urls_are_brokers():
    with pytest.raises(ValueError, match="redis://"):
        tasks.resolve_broker(IntakeArgs(broker_url="amqp://x"), env={})


def test_task_ids_repeat_for_a_key_or_a_call_and_never_carry_the_narrative():
    by_key = tasks.task_id_for("key-1", None, SECRET)
    assert by_key == tasks.task_id_for("key-1", "other", "other text") != tasks.task_id_for("key-2", None, SECRET)
    by_call = tasks.task_id_for(None, "call-7", SECRET)
    assert by_call == tasks.task_id_for(None, "call-7", SECRET) != tasks.task_id_for(None, "call-7", SECRET + ".")
    assert tasks.task_id_for(None, None, SECRET) != tasks.task_id_for(None, None, SECRET)
    for task_id in (by_key, by_call):
        assert tasks.is_task_id(task_id) and "uncle" not in task_id
        assert "uncle" not in tasks.record_key(task_id)


def test_only_uuids_are_task_ids():
    assert tasks.is_task_id(str(uuid.uuid4()))
    for bad in ("../../etc/passwd", "abc", "", str(uuid.uuid4()).upper()):
        assert not tasks.is_task_id(bad)


def test_a_record_holds_no_narrative_and_expires_after_its_ttl():
    record = tasks.TaskRecord.new("t1", "c1", ttl_s=10, now=1000.0)
    assert tasks.TaskRecord.loads(record.dumps()) == record
    assert set(json.loads(record.dumps())) == {"task_id", "call_id", "submitted_at", "expires_at"}
    assert not record.expired(now=1009.9) and record.expired(now=1010.0)


RECORD = tasks.TaskRecord.new("t1", "c1", ttl_s=60, now=1_700_000_000.0)
BODY = {"success": True, "chunks": 1}


@pytest.mark.parametrize(("state", "raw", "status"), [
    ("PENDING", None, "queued"), ("RETRY", None, "queued"), ("STARTED", None, "processing"),
    ("SUCCESS", tasks.succeeded(BODY), "succeeded"), ("SUCCESS", tasks.failed("empty_narrative", "x"), "failed"),
    ("FAILURE", None, "failed"),
])
def test_the_queue_state_reads_as_four_statuses(state, raw, status):
    view = tasks.task_view(RECORD, state, raw, finished_at=1_700_000_005.0)
    assert view["status"] == status
    assert set(view) == {"task_id", "call_id", "status", "result", "error", "submitted_at", "finished_at"}
    assert view["submitted_at"] == "2023-11-14T22:13:20Z"
    assert (view["finished_at"] is None) == (status in ("queued", "processing"))
    assert (view["result"] == BODY) == (status == "succeeded")
    if status == "failed":
        assert set(view["error"]) == {"code", "message"}
    if state == "FAILURE":
        assert view["error"]["code"] == "retries_exhausted"


@pytest.mark.parametrize(("exc", "retryable", "code"), [
    (ServiceError.empty("empty"), False, "empty_narrative"),
    (ServiceError.too_large("big"), False, "payload_too_large"),
    (ServiceError.invalid("shape"), False, "invalid_request"),
    (LabelHeadMismatchError("heads"), False, "label_mismatch"),
    (ServiceError.overloaded(), True, "overloaded"),
    (ServiceError.timeout(), True, "timeout"),
    (ServiceError.unavailable("gone"), True, "unavailable"),
    (ServiceError.backend(), True, "backend_error"),
    (ModelVersionMismatchError("mid update"), True, "unavailable"),
    (RuntimeError(SECRET), True, "backend_error"),
])
def test_only_what_retrying_can_fix_is_retried(exc, retryable, code):
    failure = tasks.failure_of(exc)
    assert (failure.retryable, failure.code) == (retryable, code)
    assert "uncle" not in failure.message


def test_task_requests_validate_call_ids_and_refuse_callbacks():
    limits = contract.Limits()
    ok = contract.parse_request(contract.TaskClassifyRequest, {"narrative": "x", "call_id": "c" * 128}, limits)
    assert ok.call_id == "c" * 128
    for payload, code in (({"narrative": "x", "call_id": "c" * 129}, "invalid_request"),
                          ({"narrative": "x", "callback_url": "http://10.0.0.1/"}, "callback_not_allowed")):
        with pytest.raises(ServiceError) as err:
            contract.parse_request(contract.TaskClassifyRequest, payload, limits)
        assert (err.value.status, err.value.code) == (422, code)
    with pytest.raises(ServiceError) as err:
        contract.parse_request(contract.TaskBatchRequest, {"narratives": ["a", "b"], "call_ids": ["1"]}, limits)
    assert err.value.status == 422 and "call_ids" in err.value.message


def test_intake_config_defaults():
    args = AppArgs().intake
    assert args.broker_url is None and args.result_ttl_s == 7 * 24 * 3600 and args.visibility_timeout_s < 120
    assert args.max_retries >= 1 and args.max_queued >= 1


def test_callbacks_go_only_to_allowed_hosts_and_only_signed():
    from deployments.core import callbacks

    allow = ["hooks.example.org", "127.0.0.1"]
    assert callbacks.refusal("https://hooks.example.org/chs", allow, "s") is None
    assert callbacks.refusal("http://127.0.0.1:9000/cb", allow, "s") is None
    for url in ("http://169.254.169.254/latest/meta-data", "http://localhost/", "ftp://hooks.example.org/",
                "https://user:pw@hooks.example.org/", "https://hooks.example.org.evil.net/", "http://[::1]:80/",
                "https://hooks.example.org:99999/", "not a url"):
        assert callbacks.refusal(url, allow, "s"), url
    assert "allow-list" in callbacks.refusal("https://hooks.example.org/", [], "s")
    assert "CHS_CALLBACK_SECRET" in callbacks.refusal("https://hooks.example.org/", allow, None)


def test_a_callback_signature_verifies_only_for_its_body_and_secret():
    from deployments.core import callbacks

    body = callbacks.body_bytes({"task_id": "t", "status": "succeeded"})
    header = callbacks.sign(body, "secret")
    assert header.startswith("sha256=") and callbacks.verify(body, "secret", header)
    assert not callbacks.verify(body + b" ", "secret", header)
    assert not callbacks.verify(body, "other", header) and not callbacks.verify(body, "secret", None)


def test_callback_urls_are_checked_at_submit():
    limits = contract.Limits(callback_allow_hosts=("hooks.example.org",), callback_secret="s")
    ok = contract.parse_request(contract.TaskClassifyRequest,
                                {"narrative": "x", "callback_url": "https://hooks.example.org/a"}, limits)
    assert ok.callback_url == "https://hooks.example.org/a"
    with pytest.raises(ServiceError) as err:
        contract.parse_request(contract.TaskClassifyRequest,
                               {"narrative": "x", "callback_url": "http://10.0.0.1/"}, limits)
    assert (err.value.status, err.value.code) == (422, "callback_not_allowed")
