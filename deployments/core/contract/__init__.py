"""The HTTP contract, declared once.

The pydantic models of this package are the request and response shapes of the API.
The same declarations

* validate requests (``parse_request``: a decoded JSON payload in, a model
  out, or the one ``ServiceError`` with today's status and code),
* render responses (the router and the ingress build these models and dump
  them, so no second hand-written shape exists), and
* produce the served ``/openapi.json`` (``build_openapi``), with the
  config-dependent limits filled in from ``AppArgs`` and the ``LabelSet``.

What lives where (each module imports only those above it in this list):

* ``validation``: the request limits (``Limits``, ``FromConfig``), the annotated
  field types (``Narrative``, ``CallId``, ``NoNul``, ``Confidence``, ...), the
  model bases, and request decoding (``check_content_type``, ``decode_json``)
  with the one mapping of a failed validation to a ``ServiceError``
  (``REFUSALS``, ``service_error``, ``parse_request``).
* ``requests``: this service's request bodies (``ClassifyRequest``,
  ``BatchRequest``, ``Task*Request``, ``FeedbackRequest``), its path and query
  parameters (``*Params``) and ``check_corrections``.
* ``responses``: its response bodies (``ClassifyResponse``, ``BatchResponse``,
  ``Task*``, ``Health``, ``Info``) and the error body (``Error``).
* ``records``: the case record and its feedback (``CaseRecord``,
  ``StoredFeedback``, the statistics, the training-example export).
* ``review``: the worklist's parameters, bodies and responses, and ``/whoami``'s.
* ``openchs``: OpenCHS's own shapes (its classifier's and agent-feedback
  routes' requests and responses).
* ``audit_reports``: the audit trail's and the anonymous reports' shapes
  (``AuditParams``, ``AuditResponse``, ``ReportParams``, ``ReportSummary``).
* ``calls``: the live call routes' shapes (``CallPiece``, ``CallUpdate``,
  ``CallEnded``, ``CallState``).
* ``operations``: the route table (``Operation``, ``OPERATIONS``; the ingress
  dispatches on it) and what each error status means (``ERRORS``).
* ``openapi``: ``build_openapi``.

Everything is re-exported here: use ``contract.X``. Pure: imports only pydantic
and ``deployments.core``.
"""

from deployments.core.contract.audit_reports import (
    AuditEntry,
    AuditParams,
    AuditResponse,
    ReportCell,
    ReportParams,
    ReportPeriod,
    ReportSummary,
    ReportTaxonomy,
)
from deployments.core.contract.calls import (
    CallAnswer,
    CallEnded,
    CallParams,
    CallPiece,
    CallState,
    CallUpdate,
    Escalation,
    EventParams,
    TimelineEntry,
)
from deployments.core.contract.openapi import OPENAPI_VERSION, REF_TEMPLATE, build_openapi
from deployments.core.contract.openchs import (
    OPENCHS_ERROR_CODES,
    OPENCHS_FEEDBACK_TASKS,
    OpenchsChunkPrediction,
    OpenchsClassifierInfo,
    OpenchsError,
    OpenchsErrorDetail,
    OpenchsErrorResponse,
    OpenchsHealthDetailed,
    OpenchsHealthModels,
    OpenchsModelDetails,
    OpenchsModelInfo,
    OpenchsModelsDetail,
    OpenchsModelsSummary,
    OpenChsPrediction,
    OpenchsProcessingMode,
    OpenchsTextError,
    OpenChsCallParams,
    OpenchsClassifierResponse,
    OpenchsClassifyRequest,
    OpenchsConfidenceScores,
    OpenChsFeedback,
    OpenChsFeedbackList,
    OpenChsFeedbackUpdate,
    OpenChsStatistics,
    OpenChsStatsParams,
    OpenchsTaskResponse,
    OpenChsTaskStats,
    OpenchsTaskStatusResponse,
)
from deployments.core.contract.operations import (
    CLASSIFY_ERRORS,
    ERROR_BODIES,
    ERRORS,
    OPERATIONS,
    SUBMIT_ERRORS,
    TASK_ERRORS,
    Operation,
)
from deployments.core.contract.records import (
    CaseRecord,
    CaseResponse,
    Confusion,
    ExportResponse,
    FeedbackResponse,
    FeedbackStats,
    HistoryEntry,
    RecordedChunk,
    RecordedPrediction,
    StatsGroup,
    StoredFeedback,
    TaskName,
    TaskStats,
    TrainingExample,
)
from deployments.core.contract.requests import (
    SMALL_LABEL_SET,
    AssetParams,
    BatchRequest,
    CallbackUrl,
    CaseParams,
    ClassifyRequest,
    Corrections,
    ExportParams,
    FeedbackRequest,
    StatsParams,
    TaskBatchRequest,
    TaskClassifyRequest,
    check_corrections,
)
from deployments.core.contract.responses import (
    BARE,
    SUB_PARENT,
    Agreement,
    BatchResponse,
    CaseId,
    CaseResult,
    ChunkDetail,
    Classification,
    ClassifiedCase,
    ClassifyResponse,
    EngineAuto,
    Error,
    ErrorDetail,
    Health,
    Info,
    InfoLimits,
    Labels,
    Language,
    ModelInfo,
    ModelRef,
    Prediction,
    PriorityLabel,
    PriorityPrediction,
    ProcessingTime,
    Routing,
    Signal,
    Translation,
    SubCategoryPrediction,
    TaxonomySource,
    TaskAccepted,
    TaskBatchAccepted,
    TaskError,
    TaskRef,
    TaskStatus,
    TaskStatusName,
)
from deployments.core.contract.review import (
    ResolveRequest,
    ReviewAction,
    ReviewCaseParams,
    ReviewItem,
    ReviewList,
    ReviewNext,
    ReviewNextParams,
    ReviewParams,
    ReviewResolved,
    WhoAmI,
)
from deployments.core.contract.validation import (
    CONFIG_KEY,
    JSON_MEDIA_TYPES,
    REFUSALS,
    CallId,
    CaseRef,
    Confidence,
    DescribedCallId,
    FreeText,
    FromConfig,
    IncludeChunks,
    IncludeConfidence,
    Limits,
    Narrative,
    NoNul,
    QueryText,
    Rating,
    Timestamp,
    check_content_type,
    decode_json,
    parse_request,
    service_error,
)

__all__ = [
    # calls
    "CallAnswer", "CallEnded", "CallParams", "CallPiece", "CallState", "CallUpdate", "Escalation",
    "EventParams", "TimelineEntry",
    # validation
    "CONFIG_KEY", "JSON_MEDIA_TYPES", "REFUSALS", "CallId", "CaseRef", "Confidence", "DescribedCallId", "FreeText",
    "FromConfig", "IncludeChunks", "IncludeConfidence", "Limits", "Narrative", "NoNul", "QueryText", "Rating",
    "Timestamp", "check_content_type", "decode_json", "parse_request", "service_error",
    # requests
    "SMALL_LABEL_SET", "AssetParams", "BatchRequest", "CallbackUrl", "CaseParams", "ClassifyRequest", "Corrections",
    "ExportParams", "FeedbackRequest", "StatsParams", "TaskBatchRequest", "TaskClassifyRequest", "check_corrections",
    # responses
    "BARE", "SUB_PARENT", "Agreement", "BatchResponse", "CaseId", "CaseResult", "ChunkDetail", "Classification", "ClassifiedCase",
    "ClassifyResponse", "EngineAuto", "Error", "ErrorDetail", "Health", "Info", "InfoLimits", "Labels", "Language", "ModelInfo", "ModelRef",
    "Prediction", "PriorityLabel", "PriorityPrediction", "ProcessingTime", "Routing", "Signal", "Translation", "SubCategoryPrediction", "TaxonomySource",
    "TaskAccepted", "TaskBatchAccepted", "TaskError", "TaskRef", "TaskStatus", "TaskStatusName",
    # records
    "CaseRecord", "CaseResponse", "Confusion", "ExportResponse", "FeedbackResponse", "FeedbackStats", "HistoryEntry",
    "RecordedChunk", "RecordedPrediction", "StatsGroup", "StoredFeedback", "TaskName", "TaskStats", "TrainingExample",
    # openchs
    "OPENCHS_FEEDBACK_TASKS", "OpenChsCallParams", "OpenchsClassifierResponse", "OpenchsClassifyRequest",
    "OpenchsConfidenceScores", "OpenChsFeedback", "OpenChsFeedbackList", "OpenChsFeedbackUpdate", "OpenChsStatistics",
    "OpenChsStatsParams", "OpenchsTaskResponse", "OpenChsTaskStats", "OpenchsTaskStatusResponse",
    "OPENCHS_ERROR_CODES", "OpenchsChunkPrediction", "OpenchsClassifierInfo", "OpenchsError", "OpenchsErrorDetail",
    "OpenchsErrorResponse", "OpenchsHealthDetailed", "OpenchsHealthModels", "OpenchsModelDetails", "OpenchsModelInfo",
    "OpenchsModelsDetail", "OpenchsModelsSummary", "OpenChsPrediction", "OpenchsProcessingMode", "OpenchsTextError",
    # review
    "ResolveRequest", "ReviewAction", "ReviewCaseParams", "ReviewItem", "ReviewList", "ReviewNext", "ReviewNextParams",
    "ReviewParams", "ReviewResolved", "WhoAmI",
    # audit_reports
    "AuditEntry", "AuditParams", "AuditResponse", "ReportCell", "ReportParams", "ReportPeriod", "ReportSummary",
    "ReportTaxonomy",
    # operations
    "CLASSIFY_ERRORS", "ERROR_BODIES", "ERRORS", "OPERATIONS", "SUBMIT_ERRORS", "TASK_ERRORS", "Operation",
    # openapi
    "OPENAPI_VERSION", "REF_TEMPLATE", "build_openapi",
]
