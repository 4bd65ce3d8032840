"""The audit trail's rows: who called which audited route, on which cases, when, with what outcome. Pure.

An operation is audited when its permission is one of ``AUDITED_PERMISSIONS``: reading a case, the
worklist, feedback, exports, statistics, reports and the audit trail itself. The rule follows the
permission, so a new route of one of these kinds is audited without naming it anywhere else.

A row holds the caller's key name and role (``anonymous`` with no keys configured; null for a call
with no valid key, refused with 401), the route (method and path template), the id the request named,
the case ids the answer carried, the time, the HTTP status and the error code. It never holds a body,
a query string or any text a caller wrote: no narrative, reason or reviewer can reach it.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Iterable, Mapping, Optional

from deployments.core.auth import Permission, Principal

AUDITED_PERMISSIONS = frozenset({Permission.READ_CASE, Permission.WORKLIST, Permission.FEEDBACK, Permission.EXPORT,
                                 Permission.STATS, Permission.REPORTS, Permission.AUDIT})
# Path parameters and body fields that name the case a request is about.
SUBJECT_FIELDS = ("id", "case_id", "call_id")
SUBJECT_CHARS = 128
# An export can carry thousands of cases; each id is kept (the trail is for "who took what").
CASE_ID_KEY = "case_id"


def audited(permission: Optional[str]) -> bool:
    return permission in AUDITED_PERMISSIONS


def case_ids_in(answer: Any) -> list[str]:
    """Every ``case_id`` value in a response body (nested anywhere), once each, in order."""
    found: dict[str, None] = {}
    stack = [answer]
    while stack:
        node = stack.pop()
        if isinstance(node, Mapping):
            value = node.get(CASE_ID_KEY)
            if isinstance(value, str):
                found.setdefault(value, None)
            stack.extend(reversed([v for k, v in node.items() if k != CASE_ID_KEY and isinstance(v, (Mapping, list))]))
        elif isinstance(node, list):
            stack.extend(reversed([v for v in node if isinstance(v, (Mapping, list))]))
    return list(found)


def subject_of(path_params: Mapping[str, str], body: Any = None) -> Optional[str]:
    """The case (or call) id a request names, in its path or its body; None if it names none."""
    for name in SUBJECT_FIELDS:
        value = path_params.get(name)
        if value is None and body is not None:
            value = getattr(body, name, None)
        if isinstance(value, str) and value:
            return value[:SUBJECT_CHARS]
    return None


def audit_row(*, route: str, permission: str, principal: Optional[Principal], status: int,
              error_code: Optional[str], case_ids: Iterable[str], subject: Optional[str], request_id: str,
              at: datetime) -> dict:
    """One ``audit_events`` row (its case ids also go to ``audit_cases``, for the filter by case)."""
    return {"id": uuid.uuid4().hex, "at": at, "key_name": principal.name if principal else None,
            "role": principal.role if principal else None, "route": route, "permission": permission,
            "subject": subject, "case_ids": list(case_ids), "status": int(status), "error_code": error_code,
            "request_id": request_id[:SUBJECT_CHARS] if request_id else None}
