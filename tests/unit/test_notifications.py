"""Live call notifications in OpenCHS's envelope (deployments/core/notifications.py): shape, modes, hosts."""

from datetime import datetime, timezone

import pytest

from deployments.core import notifications

BODY = {"classification": {"priority": {"label": 3, "confidence": 0.9}}, "routing": {"escalate": True}, "seq": 7,
        "changed": ["priority"], "language": {"code": "en"}, "escalated_at": "2026-01-01T00:00:00+00:00",
        "escalation": {"at": "2026-01-01T00:00:00+00:00", "seq": 7, "reasons": ["x"]}}
NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


def test_an_escalation_is_a_critical_classification_in_the_v2_envelope():
    e = notifications.envelope("escalation", "call-9", BODY, site_id="ke-116", now=NOW, message_id="m-1")
    assert set(e) == {"version", "message_id", "timestamp", "processing_mode", "call_metadata", "notification_type",
                      "payload", "status", "error", "ui_metadata"}
    assert e["version"] == "2.0" and e["notification_type"] == "streaming_classification"
    assert e["call_metadata"] == {"call_id": "call-9", "site_id": "ke-116"} and e["timestamp"] == NOW.isoformat()
    assert e["ui_metadata"] == {"priority": 1, "display_panel": "classification", "requires_action": True,
                                "alert_type": "critical"}
    assert e["payload"]["escalation"]["seq"] == 7 and e["payload"]["classification"] == BODY["classification"]


def test_an_update_is_info_and_the_end_carries_the_case():
    update = notifications.envelope("update", "c", BODY, site_id="s", now=NOW)
    end = notifications.envelope("end", "c", {**BODY, "case_id": "case-1", "timeline": [], "reason": "idle"},
                                 site_id="s", now=NOW)
    assert update["ui_metadata"]["alert_type"] == "info" and update["ui_metadata"]["requires_action"] is False
    assert end["notification_type"] == "streaming_call_end"
    assert end["payload"]["case_id"] == "case-1" and end["payload"]["reason"] == "idle"
    assert update["message_id"] != end["message_id"]


@pytest.mark.parametrize("mode, sent", [
    ("all", {"update", "escalation", "end"}), ("results_only", {"update", "escalation", "end"}),
    ("critical_only", {"escalation", "end"}), ("disabled", set())])
def test_modes_filter_by_importance_as_openchs_does(mode, sent):
    assert {k for k in ("update", "escalation", "end") if notifications.wanted(mode, k)} == sent


def test_only_allow_listed_hosts_are_called():
    assert notifications.refusal("https://helpline.example.org/notify", ["helpline.example.org"]) is None
    assert "allow" in notifications.refusal("https://evil.example.com/x", ["helpline.example.org"])
    assert notifications.refusal("https://helpline.example.org/x", []) is not None
    assert notifications.refusal("ftp://helpline.example.org/x", ["helpline.example.org"]) is not None
    assert notifications.refusal("https://u:p@helpline.example.org/x", ["helpline.example.org"]) is not None
    assert notifications.refusal(None, ["helpline.example.org"]) is not None
