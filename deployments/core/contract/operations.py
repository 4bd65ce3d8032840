"""The routes: ``OPERATIONS``, one ``Operation`` each (what it takes, answers and how it can fail), and
``ERRORS``, what each error status means. The ingress dispatches on the table; the OpenAPI paths are
built from it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

from pydantic import BaseModel

from deployments.core.auth import Permission

from deployments.core.contract.audit_reports import AuditParams, AuditResponse, ReportParams, ReportSummary
from deployments.core.contract.calls import CallAnswer, CallEnded, CallParams, CallPiece, CallState, EventParams
from deployments.core.contract.openchs import (
    OpenchsClassifierInfo,
    OpenchsError,
    OpenchsHealthDetailed,
    OpenchsHealthModels,
    OpenchsTextError,
    OpenChsCallParams,
    OpenChsFeedback,
    OpenChsFeedbackList,
    OpenChsFeedbackUpdate,
    OpenchsClassifyRequest,
    OpenChsStatistics,
    OpenChsStatsParams,
    OpenchsTaskResponse,
    OpenchsTaskStatusResponse,
)
from deployments.core.contract.records import CaseResponse, ExportResponse, FeedbackResponse, FeedbackStats
from deployments.core.contract.review import (
    ResolveRequest,
    ReviewAction,
    ReviewCaseParams,
    ReviewList,
    ReviewNext,
    ReviewNextParams,
    ReviewParams,
    ReviewResolved,
    WhoAmI,
)
from deployments.core.contract.requests import (
    AssetParams,
    BatchRequest,
    CaseParams,
    ClassifyRequest,
    ExportParams,
    FeedbackRequest,
    StatsParams,
    TaskBatchRequest,
    TaskClassifyRequest,
)
from deployments.core.contract.responses import (
    BatchResponse,
    ClassifyResponse,
    Error,
    Health,
    Info,
    TaskAccepted,
    TaskBatchAccepted,
    TaskStatus,
)

ERRORS = {
    400: "Malformed body: empty, not UTF-8, not JSON, or a narrative empty after normalization.",
    401: "Missing or wrong API key (only when API keys are configured).",
    403: "The API key's role lacks the permission this route needs (the message names it).",
    404: "No such route, or no such task (never submitted, or its result expired).",
    409: "The id names several cases (a batch's request id): use the case id or call id. On the worklist: the "
         "case's review state forbids the action (claimed by another key, resolved already, never sent to review). "
         "A live call: a piece out of order, a repeated seq with other text, or a call already closed.",
    413: "Body, narrative or batch over its configured limit.",
    415: "Content-Type is not application/json.",
    422: "Well-formed JSON that does not match the request schema.",
    429: "Overloaded: retry after Retry-After seconds.",
    500: "The classifier failed on this request.",
    503: "Overloaded or not ready: retry after Retry-After seconds.",
    504: "The classifier did not answer in time.",
}
CLASSIFY_ERRORS = (400, 413, 415, 422, 429, 500, 503, 504)
SUBMIT_ERRORS = (400, 413, 415, 422, 503)
TASK_ERRORS = (404, 503)
# How a route words its errors: this service's own body, or OpenCHS's {"detail": ...} on their routes
# (structured on their classifier and health routes, a sentence on their agent-feedback routes).
ERROR_BODIES: dict[str, type[BaseModel]] = {"service": Error, "openchs": OpenchsError, "openchs_text": OpenchsTextError}
CALL_ERRORS = (400, 409, 413, 415, 422, 429, 500, 503, 504)


@dataclass(frozen=True)
class Operation:
    """One route: what it takes, what it answers, who may call it, and how it can fail (401 unless ``public``)."""

    id: str
    method: str
    path: str
    summary: str
    ok: str
    response: Optional[type[BaseModel]]  # None: the OpenAPI document itself
    request: Optional[type[BaseModel]] = None
    errors: tuple[int, ...] = ()
    public: bool = False
    # Path ({name} in ``path``) and query parameters, validated as one model. Without one, the
    # path's {name} segments reach the handler as keyword arguments, as strings.
    params: Optional[type[BaseModel]] = None
    status: int = 200
    # False for the pages for people (HTML, CSS, JS): served, but not part of the API document.
    documented: bool = True
    # Request headers the handler receives, as keyword arguments (idempotency-key → idempotency_key).
    headers: tuple[str, ...] = ()
    # What a key's role must allow (deployments/core/auth.py); None: any valid key (or none, if public).
    permission: Optional[str] = None
    # Also answers text/csv, when the Accept header asks for it (the handler receives it: headers=("accept",)).
    csv: bool = False
    # Which of ERROR_BODIES the route's errors take (the ingress renders them; OpenAPI documents them).
    error_body: str = "service"
    # What a 200 carries: JSON, or a Server-Sent Events stream (the handler returns the response itself).
    media_type: str = "application/json"

    def path_names(self) -> tuple[str, ...]:
        return tuple(re.findall(r"{(\w+)}", self.path))

    def statuses(self) -> list[int]:
        auth = set() if self.public else {401} | ({403} if self.permission else set())
        return sorted(set(self.errors) | auth)


OPERATIONS: tuple[Operation, ...] = (
    Operation("classify", "POST", "/classify", "Classify one narrative.", "Classified.",
              ClassifyResponse, ClassifyRequest, CLASSIFY_ERRORS, permission=Permission.CLASSIFY),
    Operation("classify_batch", "POST", "/classify/batch", "Classify narratives in order.", "Classified.",
              BatchResponse, BatchRequest, CLASSIFY_ERRORS, permission=Permission.CLASSIFY),
    Operation("health", "GET", "/health", "200 when the model is loaded and every deployment is ready.", "Ready.",
              Health, errors=(503,), public=True),
    Operation("info", "GET", "/info", "Model, labels and serving settings.", "Info.", Info, errors=(503,)),
    Operation("openapi", "GET", "/openapi.json", "This document.", "OpenAPI 3 document.", None),
    Operation("console", "GET", "/", "The console: classify a narrative, correct the labels.", "HTML page.", None,
              public=True, documented=False),
    Operation("docs", "GET", "/docs", "Swagger UI for /openapi.json.", "HTML page.", None, public=True,
              documented=False),
    Operation("docs_asset", "GET", "/docs/{name}", "Swagger UI's vendored assets.", "CSS or JavaScript.", None,
              errors=(404,), params=AssetParams, public=True, documented=False),
    Operation("get_case", "GET", "/cases/{id}", "What the service answered for a case (by case, call, task or "
              "request id), with its feedback.", "The case record.", CaseResponse, errors=(404, 409, 422, 503),
              params=CaseParams, permission=Permission.READ_CASE),
    Operation("feedback", "POST", "/feedback", "A counsellor's corrections and rating for a case; a second one "
              "for the same case replaces the first (both stay in its history).", "Stored.", FeedbackResponse,
              FeedbackRequest, (400, 404, 409, 413, 415, 422, 503), status=201, permission=Permission.FEEDBACK),
    Operation("feedback_stats", "GET", "/feedback/stats", "Live accuracy per task from the feedback, also per model "
              "version.", "Statistics.", FeedbackStats, errors=(422, 503), params=StatsParams, permission=Permission.STATS),
    Operation("feedback_export", "GET", "/feedback/export", "Corrections with narratives, as training examples.",
              "Training examples.", ExportResponse, errors=(422, 503), params=ExportParams, permission=Permission.EXPORT),
    Operation("openchs_feedback_update", "POST", "/api/v1/agent-feedback/update", "OpenCHS: rate a call's "
              "classification (1-5) with a reason.", "Updated.", OpenChsFeedback, OpenChsFeedbackUpdate,
              (400, 404, 413, 415, 422, 503), permission=Permission.FEEDBACK, error_body="openchs_text"),
    Operation("openchs_feedback_call", "GET", "/api/v1/agent-feedback/call/{call_id}", "OpenCHS: the feedback "
              "entries of a call.", "Feedback entries.", OpenChsFeedbackList, errors=(404, 422, 503),
              params=OpenChsCallParams, permission=Permission.READ_CASE, error_body="openchs_text"),
    Operation("openchs_feedback_statistics", "GET", "/api/v1/agent-feedback/statistics", "OpenCHS: ratings per "
              "task over the last days.", "Statistics.", OpenChsStatistics, errors=(422, 503),
              params=OpenChsStatsParams, permission=Permission.STATS, error_body="openchs_text"),
    # The supervisors' worklist (deployments/review_handlers.py, deployments/core/store/worklist.py).
    Operation("review_list", "GET", "/review", "Cases sent to human review or escalated, escalated first, then by "
              "due time, then by age; filters and a cursor.", "A page of the worklist.", ReviewList,
              errors=(422, 503), params=ReviewParams, permission=Permission.WORKLIST),
    Operation("review_next", "POST", "/review/next", "Claim the most urgent open case for this key, atomically: two "
              "callers never get the same case.", "The claimed case, or null when none is open.", ReviewNext,
              errors=(409, 422, 503), params=ReviewNextParams, permission=Permission.WORKLIST),
    Operation("review_case", "GET", "/review/{case_id}", "One case's place on the worklist: status, due time, "
              "who holds it.", "The worklist entry.", ReviewAction, errors=(404, 409, 422, 503),
              params=ReviewCaseParams, permission=Permission.WORKLIST),
    Operation("review_claim", "POST", "/review/{case_id}/claim", "Claim this case for this key.", "Claimed.",
              ReviewAction, errors=(404, 409, 422, 503), params=ReviewCaseParams, permission=Permission.WORKLIST),
    Operation("review_release", "POST", "/review/{case_id}/release", "Put a claimed case back in the open list.",
              "Released.", ReviewAction, errors=(404, 409, 422, 503), params=ReviewCaseParams,
              permission=Permission.WORKLIST),
    Operation("review_resolve", "POST", "/review/{case_id}/resolve", "Resolve a case with the corrections: the same "
              "feedback as POST /feedback (reviewer: the key's name), counted in /feedback/stats.", "Resolved.",
              ReviewResolved, ResolveRequest, (400, 404, 409, 413, 415, 422, 503), params=ReviewCaseParams,
              permission=Permission.WORKLIST),
    Operation("review_page", "GET", "/worklist", "The worklist and case pages for supervisors.", "HTML page.", None,
              public=True, documented=False),
    Operation("whoami", "GET", "/whoami", "The calling key's name, role and permissions.", "The caller.", WhoAmI),
    Operation("tasks_classify", "POST", "/tasks/classify",
              "Queue one narrative durably; the 202 comes once it is in the queue.", "Queued.",
              TaskAccepted, TaskClassifyRequest, SUBMIT_ERRORS, status=202, headers=("idempotency-key",), permission=Permission.TASKS),
    Operation("tasks_classify_batch", "POST", "/tasks/classify/batch",
              "Queue narratives durably, one task each, in order.", "Queued.",
              TaskBatchAccepted, TaskBatchRequest, SUBMIT_ERRORS, status=202, headers=("idempotency-key",), permission=Permission.TASKS),
    Operation("task_status", "GET", "/tasks/{task_id}", "A queued task's state and, once done, its result.",
              "The task.", TaskStatus, errors=TASK_ERRORS, permission=Permission.TASKS),
    Operation("openchs_classify", "POST", "/classifier/classify",
              "OpenCHS ai-service compatible: queue one narrative.", "Queued.",
              OpenchsTaskResponse, OpenchsClassifyRequest, SUBMIT_ERRORS, status=202, permission=Permission.TASKS,
              error_body="openchs"),
    Operation("openchs_task", "GET", "/classifier/task/{task_id}",
              "OpenCHS ai-service compatible: a task's state and result ('pending' for an id never seen, as "
              "theirs).", "The task.", OpenchsTaskStatusResponse, errors=(503,), permission=Permission.TASKS,
              error_body="openchs"),
    Operation("openchs_info", "GET", "/classifier/info", "OpenCHS ai-service compatible: the classifier's model "
              "info.", "Model info.", OpenchsClassifierInfo, errors=(503,), error_body="openchs"),
    Operation("openchs_demo", "POST", "/classifier/demo", "OpenCHS ai-service compatible: queue their sample "
              "narrative.", "Queued.", OpenchsTaskResponse, errors=(503,), permission=Permission.TASKS,
              error_body="openchs"),
    Operation("openchs_health_detailed", "GET", "/health/detailed", "OpenCHS ai-service compatible: system, "
              "queue and model status.", "Status.", OpenchsHealthDetailed, errors=(503,), error_body="openchs"),
    Operation("openchs_health_models", "GET", "/health/models", "OpenCHS ai-service compatible: the models' "
              "status.", "Status.", OpenchsHealthModels, errors=(503,), error_body="openchs"),
    # -- the audit trail and the anonymous reports (deployments/core/audit.py, deployments/core/reports.py) --
    Operation("audit", "GET", "/audit", "The audit trail: who read a case, used the worklist, sent feedback, exported "
              "or queried statistics and reports; newest first, with filters.", "Audit rows.", AuditResponse,
              errors=(422, 503), params=AuditParams, permission=Permission.AUDIT),
    Operation("reports_summary", "GET", "/reports/summary", "Anonymous case counts per period and category (Child "
              "Helpline International's where our labels map to them); small counts suppressed; CSV with "
              "Accept: text/csv.", "Counts.", ReportSummary, errors=(422, 503), params=ReportParams,
              headers=("accept",), permission=Permission.REPORTS, csv=True),
    Operation("reports_page", "GET", "/console/reports", "The reports page: cases per week by main category.",
              "HTML page.", None, public=True, documented=False),
    Operation("call_transcript", "POST", "/calls/{call_id}/transcript",
              "A live call's next transcript piece: classified at once, only the windows its text touches.",
              "The call so far (for a final piece, the closed call's body).", CallAnswer, CallPiece, CALL_ERRORS,
              params=CallParams, permission=Permission.CALLS),
    Operation("call_end", "POST", "/calls/{call_id}/end", "End a live call: its case is recorded.",
              "The /classify body for the whole transcript, with the case id, timeline and escalation.", CallEnded,
              errors=(404, 409, 422, 500, 503, 504), params=CallParams, permission=Permission.CALLS),
    Operation("call_state", "GET", "/calls/{call_id}", "A live call's state and timeline, without text.",
              "The call.", CallState, errors=(404, 422, 503), params=CallParams, permission=Permission.CALLS),
    Operation("call_events", "GET", "/calls/{call_id}/events",
              "Server-Sent Events of a live call: 'update', 'escalation' and 'end'.", "An event stream.", None,
              errors=(404, 422, 503), params=EventParams, headers=("last-event-id",), permission=Permission.CALLS,
              media_type="text/event-stream"),
)
