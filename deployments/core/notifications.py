"""Notifications of a live call to the helpline's own system, in OpenCHS's envelope. Free of Ray and HTTP.

OpenCHS's ai-service pushes each call's results to its helpline UI as a "v2.0" notification
(openchlai/ai: ``ai_service/app/services/enhanced_notification_service.py``, the types in
``ai_service/app/models/notification_types.py``): ``version``, ``message_id``, ``timestamp``,
``processing_mode``, ``call_metadata`` (``call_id``, ``site_id``), ``notification_type``, ``payload``,
``status``, ``error`` and ``ui_metadata`` (``priority``, ``display_panel``, ``requires_action``,
``alert_type``). We send the same envelope, so their UI shows our alerts as it shows theirs:

- a piece's update: ``streaming_classification``, ``alert_type`` "info";
- the call's escalation: ``streaming_classification``, ``alert_type`` "critical", ``requires_action``;
- the call's end: ``streaming_call_end``, with the final labels and the case id.

Their modes filter by importance (``NotificationImportance``: progress, result, critical):
``all`` sends everything, ``results_only`` results and critical ones (we send no progress, so the
same as ``all``), ``critical_only`` the escalation and the end, ``disabled`` nothing. An escalation is
critical here: OpenCHS's own escalation checks for "high"/"urgent" and never fires on priorities 1-3.

The POST carries ``Authorization: Bearer <CHS_NOTIFY_TOKEN>`` and, when ``CHS_CALLBACK_SECRET`` is
set, the body's HMAC signature (``deployments/core/callbacks.py``). Only hosts on
``calls.notify_allow_hosts`` are ever called. The payload never holds words of the transcript.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Iterable, Literal, Optional

from deployments.core import callbacks

Kind = Literal["update", "escalation", "end"]
Mode = Literal["all", "results_only", "critical_only", "disabled"]

# OpenCHS's NotificationType values we send.
CLASSIFICATION_TYPE = "streaming_classification"
CALL_END_TYPE = "streaming_call_end"
IMPORTANCE = {"update": "result", "escalation": "critical", "end": "critical"}
SENT_BY_MODE = {"all": {"progress", "result", "critical"}, "results_only": {"result", "critical"},
                "critical_only": {"critical"}, "disabled": set()}


def wanted(mode: Mode, kind: Kind) -> bool:
    return IMPORTANCE[kind] in SENT_BY_MODE[mode]


def refusal(url: Optional[str], allow_hosts: Iterable[str]) -> Optional[str]:
    """Why notifications may not go to ``url``, or None when they may."""
    if not url:
        return "no calls.notify_url is configured."
    why = callbacks.destination_refusal(url, allow_hosts, "calls.notify_allow_hosts")
    return None if why is None else f"calls.notify_url {why}"


def envelope(kind: Kind, call_id: str, body: dict, *, site_id: str, now: datetime,
             message_id: Optional[str] = None) -> dict:
    """OpenCHS's v2.0 notification of one call event; ``body`` is text-free (``CallSessions.public``)."""
    payload = {"classification": body.get("classification"), "routing": body.get("routing"),
               "language": body.get("language"), "seq": body.get("seq"), "changed": body.get("changed"),
               "escalated_at": body.get("escalated_at"), "escalation": body.get("escalation")}
    if kind == "end":
        payload.update(case_id=body.get("case_id"), timeline=body.get("timeline"), reason=body.get("reason"))
    critical = kind == "escalation"
    return {
        "version": "2.0",
        "message_id": message_id or str(uuid.uuid4()),
        "timestamp": now.isoformat(),
        "processing_mode": "streaming",
        "call_metadata": {"call_id": call_id, "site_id": site_id},
        "notification_type": CALL_END_TYPE if kind == "end" else CLASSIFICATION_TYPE,
        "payload": payload,
        "status": "success",
        "error": None,
        "ui_metadata": {"priority": 1, "display_panel": "classification", "requires_action": critical,
                        "alert_type": "critical" if critical else "info"},
    }
