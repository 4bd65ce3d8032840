"""Typed results: dataclasses that mirror the service's JSON responses.

``from_dict`` is tolerant: a prediction sent with ``include_confidence=false``
is a bare label and becomes ``Prediction(label, None)``; fields a newer server
adds are kept in ``raw`` and otherwise ignored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Union

Label = Union[str, int]

TASKS = ("main_category", "sub_category", "sub_category_2", "intervention", "priority")


@dataclass(frozen=True)
class Prediction:
    label: Label
    confidence: Optional[float] = None

    @classmethod
    def from_value(cls, value: Any) -> "Prediction":
        if isinstance(value, Mapping):
            conf = value.get("confidence")
            return cls(value.get("label"), None if conf is None else float(conf))
        return cls(value, None)


@dataclass(frozen=True)
class Routing:
    queue: str
    escalate: bool
    human_review: bool
    reasons: tuple[str, ...] = ()

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Routing":
        return cls(
            queue=str(d.get("queue", "")),
            escalate=bool(d.get("escalate", False)),
            human_review=bool(d.get("human_review", False)),
            reasons=tuple(d.get("reasons") or ()),
        )


@dataclass(frozen=True)
class ModelRef:
    id: str
    revision: Optional[str] = None

    @classmethod
    def from_dict(cls, d: Optional[Mapping[str, Any]]) -> Optional["ModelRef"]:
        if not d:
            return None
        return cls(id=str(d.get("id", "")), revision=d.get("revision"))


@dataclass(frozen=True)
class ClassifyResult:
    """One classified case: four labels plus the runner-up sub category, and its routing."""

    main_category: Prediction
    sub_category: Prediction
    sub_category_2: Prediction
    intervention: Prediction
    priority: Prediction
    routing: Routing
    chunks: int = 1
    truncated: bool = False
    tokens: Optional[int] = None
    model: Optional[ModelRef] = None
    # Server-side time for this request; for a case from a batch, the whole batch's time.
    processing_time_seconds: Optional[float] = None
    chunk_details: Optional[list] = None
    # The X-Request-ID the server answered with (correlates with its logs).
    request_id: Optional[str] = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, model: Optional[Mapping[str, Any]] = None,
                  processing_time_seconds: Optional[float] = None,
                  request_id: Optional[str] = None) -> "ClassifyResult":
        c = d.get("classification") or {}
        t = d.get("processing_time_seconds", processing_time_seconds)
        return cls(
            **{task: Prediction.from_value(c.get(task)) for task in TASKS},
            routing=Routing.from_dict(d.get("routing") or {}),
            chunks=int(d.get("chunks", 1)),
            truncated=bool(d.get("truncated", False)),
            tokens=d.get("tokens"),
            model=ModelRef.from_dict(d.get("model", model)),
            processing_time_seconds=None if t is None else float(t),
            chunk_details=d.get("chunk_details"),
            request_id=request_id,
            raw=dict(d),
        )

    def labels(self) -> dict[str, Label]:
        return {task: getattr(self, task).label for task in TASKS}

    def confidences(self) -> dict[str, Optional[float]]:
        return {task: getattr(self, task).confidence for task in TASKS}


@dataclass(frozen=True)
class Limits:
    max_narrative_chars: Optional[int] = None
    max_body_bytes: Optional[int] = None
    max_batch_narratives: Optional[int] = None
    max_batch_windows: Optional[int] = None

    @classmethod
    def from_dict(cls, d: Optional[Mapping[str, Any]]) -> "Limits":
        d = d or {}
        return cls(**{k: d.get(k) for k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class Info:
    """GET /info: model, labels and serving settings."""

    model: ModelRef
    labels: Mapping[str, list]
    max_length: Optional[int]
    device: Optional[str]
    dtype: Optional[str]
    limits: Limits
    auth: Optional[str]
    engine: Optional[str] = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Info":
        return cls(
            model=ModelRef.from_dict(d.get("model")) or ModelRef(""),
            labels=d.get("labels") or {},
            max_length=d.get("max_length"),
            device=d.get("device"),
            dtype=d.get("dtype"),
            limits=Limits.from_dict(d.get("limits")),
            engine=d.get("engine"),
            auth=d.get("auth"),
            raw=dict(d),
        )


@dataclass(frozen=True)
class Health:
    ok: bool
    status: str
    deployments: Mapping[str, str] = field(default_factory=dict)
    http_status: int = 200


TERMINAL = ("succeeded", "failed")


@dataclass(frozen=True)
class TaskStatus:
    """A queued task (GET /tasks/{id}): ``result`` once succeeded, ``error`` ({code, message}) once failed."""

    task_id: str
    status: str
    call_id: Optional[str] = None
    result: Optional[ClassifyResult] = None
    error: Optional[dict] = None
    submitted_at: Optional[str] = None
    finished_at: Optional[str] = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def done(self) -> bool:
        return self.status in TERMINAL

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "TaskStatus":
        result = d.get("result")
        return cls(task_id=d["task_id"], status=d.get("status", "queued"), call_id=d.get("call_id"),
                   result=ClassifyResult.from_dict(result) if result else None, error=d.get("error"),
                   submitted_at=d.get("submitted_at"), finished_at=d.get("finished_at"), raw=dict(d))
