"""The one config schema: ``AppArgs`` is what ``serve_config.yaml`` (and the
k8s ``serveConfigV2``) pass as the application's ``args``. Ray validates them
against this model before any replica starts, so a typo fails the deploy.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, model_validator

from deployments.core.batching import PASS_COST_TOKENS

DEFAULT_MODEL_ID = "openchs/cls-gbv-distilbert-v1"

# Every environment variable the service reads, declared here once and listed in the README's
# "Environment" table (tests/unit/test_config.py holds the two in step). Secrets and per-host
# settings come this way, never from serve_config.yaml.
MODEL_ENV_VAR = "CHS_MODEL"
DATABASE_ENV_VAR = "CHS_DATABASE_URL"
BROKER_ENV_VAR = "CHS_BROKER_URL"
API_KEYS_ENV_VAR = "CHS_API_KEYS"
API_KEYS_FILE_ENV_VAR = "CHS_API_KEYS_FILE"
CALLBACK_SECRET_ENV_VAR = "CHS_CALLBACK_SECRET"
ENGINE_CACHE_ENV_VAR = "CHS_ENGINE_CACHE"
NOTIFY_TOKEN_ENV_VAR = "CHS_NOTIFY_TOKEN"
ENV_VARS = (MODEL_ENV_VAR, DATABASE_ENV_VAR, BROKER_ENV_VAR, API_KEYS_ENV_VAR, API_KEYS_FILE_ENV_VAR,
            CALLBACK_SECRET_ENV_VAR, ENGINE_CACHE_ENV_VAR, NOTIFY_TOKEN_ENV_VAR)

# Each deployment's Serve options, in one place: the decorators in deployments/ apply them, and
# serve_config.yaml (and k8s/rayservice.yaml) may override them per deployment
# (tests/deploy/test_serve_config.py holds the YAML's values equal to these where both name one).
# Every queue is bounded: past max_queued_requests a caller gets this status with Retry-After.
BACKPRESSURE = {"status_code": 503, "retry_after_s": 1}
# A stopping replica sleeps this long before it first counts its ongoing requests (Ray's default is
# 2 s): an idle replica leaves a redeploy or a downscale 1.5 s sooner; a busy one still drains fully
# within graceful_shutdown_timeout_s.
SHUTDOWN_WAIT_LOOP_S = 0.5
DEPLOYMENT_OPTIONS: dict[str, dict] = {
    "Preprocessor": {
        "ray_actor_options": {"num_cpus": 0.25}, "max_ongoing_requests": 128, "max_queued_requests": 256,
        "backpressure_config": BACKPRESSURE, "graceful_shutdown_timeout_s": 30, "max_constructor_retry_count": 3,
        "graceful_shutdown_wait_loop_s": SHUTDOWN_WAIT_LOOP_S,
    },
    "Classifier": {
        # The resources come from AppArgs (classifier_num_cpus, num_gpus): 'auto' decides GPUs at build time.
        "ray_actor_options": {"num_cpus": 1}, "max_ongoing_requests": 64, "max_queued_requests": 256,
        "backpressure_config": BACKPRESSURE, "health_check_period_s": 10, "health_check_timeout_s": 30,
        "graceful_shutdown_timeout_s": 30, "max_constructor_retry_count": 3,
        "graceful_shutdown_wait_loop_s": SHUTDOWN_WAIT_LOOP_S,
    },
    "Router": {
        "ray_actor_options": {"num_cpus": 0.1}, "max_ongoing_requests": 256, "max_queued_requests": 512,
        "backpressure_config": BACKPRESSURE, "graceful_shutdown_timeout_s": 30,
        "graceful_shutdown_wait_loop_s": SHUTDOWN_WAIT_LOOP_S,
    },
    # Its concurrency and resources come from AppArgs.intake (the queue's share of the classifier).
    "IntakeConsumer": {"num_replicas": 1, "health_check_period_s": 10, "graceful_shutdown_timeout_s": 30,
                       "graceful_shutdown_wait_loop_s": SHUTDOWN_WAIT_LOOP_S},
    # Deployed only when AppArgs.translation.model is set; its CPUs come from AppArgs.translation.num_cpus.
    "Translator": {
        "ray_actor_options": {"num_cpus": 1}, "max_ongoing_requests": 64, "max_queued_requests": 256,
        "backpressure_config": BACKPRESSURE, "health_check_period_s": 10, "health_check_timeout_s": 30,
        "graceful_shutdown_timeout_s": 30, "max_constructor_retry_count": 3,
        "graceful_shutdown_wait_loop_s": SHUTDOWN_WAIT_LOOP_S,
    },
}
# The embedded default store: an SQLite file under the project's var/ folder (gitignored).
DEFAULT_DATABASE_PATH = Path(__file__).resolve().parents[2] / "var" / "helpline.db"

DEFAULT_CRITICAL_SUB_CATEGORIES = [
    "Sexual Abuse",
    "Sexual Violence",
    "Child Trafficking",
    "Child Abduction",
    "OCSEA",
    "Female Genital Mutilation",
    "Child Marriage",
    "Physical Abuse",
    "Unlawful Confinement",
    "Missing Child",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class BatchingArgs(_Strict):
    """The classifier's ``user_config``: changed live through ``reconfigure``."""

    max_batch_size: int = Field(32, ge=1, description="Windows per batch the classifier takes, and rows per forward pass.")
    batch_wait_timeout_s: float = Field(
        0.005, ge=0, description="How long a batch waits to fill, in a burst; after a quiet spell it goes at once.")
    # The rule (bench/RESULTS.md, "Token budget per pass"): on a CPU, the smallest budget at full
    # throughput. A 2-core AMX Xeon peaked at 1024 (2048 9% slower, 4096 30%); a 2-core AVX2 EPYC had
    # 1024 within 3% of 2048. A GPU wants large passes (k8s: 8192).
    max_batch_tokens: int = Field(
        1024, ge=512, description="Padded tokens per forward pass; a batch is cut into micro-batches under it."
    )
    # The passes a short live case may find running when it arrives are held to this size: those of
    # a single case of several windows and of the backlog (the Classifier's long and queued lanes,
    # deployments/core/lanes.py). A pass's time grows with its tokens while a CPU's throughput is
    # flat from 512 to 2048 tokens (bench/RESULTS.md, "Token budget per pass"), so one 512-token
    # window a pass costs the backlog little and caps a short case's wait. A GPU's pass is cheap (k8s: 8192).
    yield_batch_tokens: int = Field(
        512, ge=64, description="Padded tokens per forward pass of the long and queued lanes (what a short case "
                                "may wait behind)."
    )
    # Measured on a CPU (bench/RESULTS.md); a GPU's pass costs far more than its tokens (k8s: 8192, the
    # fewest passes).
    pass_cost_tokens: int = Field(
        PASS_COST_TOKENS, ge=0, description="A forward pass's fixed cost in padded tokens: passes are split "
                                            "where padding would cost more than one more pass."
    )


class CoalescingArgs(_Strict):
    """Single-case /classify requests that reach one ingress replica together travel as one group."""

    # 16 one-window cases fill one classifier call at serve_config.yaml's windows_per_call.
    max_cases: int = Field(16, ge=1, description="Cases per group; 1 turns coalescing off.")
    wait_timeout_s: float = Field(
        0.005, ge=0, description="How long a group waits to fill, in a burst; after a quiet spell it goes at once.")


class RoutingArgs(_Strict):
    """Routing policy, as data."""

    review_threshold: float = Field(0.60, ge=0, le=1, description="Any task under this confidence needs a human.")
    review_thresholds: dict[Literal["main_category", "sub_category", "intervention", "priority"], float] = Field(
        default_factory=dict, description="Per task, a threshold other than review_threshold (0 turns review by "
        "confidence off for that task). Empty: review_threshold for every task.")
    escalate_priority: Optional[int] = Field(None, description="Priority that escalates; default: the most urgent "
                                             "level (labels.priority_high).")
    critical_sub_categories: list[str] = Field(default_factory=lambda: list(DEFAULT_CRITICAL_SUB_CATEGORIES))
    queues: dict[str, str] = Field(
        default_factory=dict, description="Main category → queue name; unlisted categories get a slug of their name."
    )
    default_queue: str = "general"
    min_words: int = Field(
        8, ge=0, description="A narrative of fewer words goes to review as too short to judge (OpenCHS's own "
        "evaluation found short texts the weakest); 0 turns this off.")
    taxonomy_mismatch: Literal["review", "off"] = Field(
        "review",
        description="'review': a sub category whose parent (the checkpoint's sub_to_main.json) is not the "
        "predicted main category sends the case to human review, with a reason naming both.",
    )


class LabelArgs(_Strict):
    """Where the taxonomy comes from, and which priority is the urgent one."""

    taxonomy_file: Optional[str] = Field(
        None, description="A sub_to_main.json (sub category → main category) to use instead of the checkpoint's; "
        "OpenCHS's published checkpoint ships none.")
    bundled_taxonomy: bool = Field(
        True, description="Without a taxonomy_file or a checkpoint map: use the bundled release's map "
        "(data/labels/openchs-2025-09) when the checkpoint's main and sub category lists are that release's.")
    priority_high: int = Field(
        3, description="The most urgent priority label: the model card's 'High (3)'. OpenCHS's dataset card "
        "calls 1 the highest: set 1 for a model trained that way. Escalation, priority_aggregation 'max' and the "
        "console follow it.")


class LanguageArgs(_Strict):
    """What the model reads: a narrative identified as another language goes to review, saying which."""

    model_languages: list[str] = Field(
        default_factory=lambda: ["en"], min_length=1,
        description="ISO 639-1 codes of the languages the model was trained on.")


class LexiconArgs(_Strict):
    """The safety lexicon (data/lexicon/): phrases that escalate a case whatever the model says."""

    bundled: bool = Field(True, description="Use the bundled files (data/lexicon/*.yaml).")
    files: list[str] = Field(default_factory=list,
                             description="More lexicon files (a country's own), added to the bundled ones or, with "
                             "bundled false, used alone.")


class TranslationArgs(_Strict):
    """Machine translation into the model's language before the classifier (deployments/translator.py).

    Off by default: the demo ships no translation model. A narrative identified as one of
    ``languages`` is translated, and the response says so; English never passes through it.
    """

    model: Optional[str] = Field(
        None, description="Hub repo id (e.g. OpenCHS's sw→en 'openchs/sw-en-opus-mt-mul-en-v1') or local directory "
        "of a seq2seq (MarianMT) checkpoint; null: translation is off.")
    revision: Optional[str] = None
    languages: list[str] = Field(
        default_factory=lambda: ["sw"], description="ISO 639-1 codes of the source languages it translates; a "
        "narrative in another language goes to review untranslated.")
    max_batch_size: int = Field(16, ge=1, description="Narratives per translation batch (user_config, live).")
    batch_wait_timeout_s: float = Field(0.01, ge=0, description="How long a batch waits to fill, in a burst (user_config, live).")
    num_beams: int = Field(1, ge=1, description="Beam width; 1 is greedy, the fastest (user_config, live).")
    num_cpus: float = Field(1.0, gt=0, description="CPUs per translator replica.")


class FeedbackArgs(_Strict):
    """The case record and counsellors' feedback (deployments/core/store)."""

    database_url: Optional[str] = Field(
        None, description="SQLAlchemy URL of the store; default: CHS_DATABASE_URL, else sqlite file var/helpline.db. "
        "Keep passwords out of this file: set CHS_DATABASE_URL from a Secret instead.")
    keep_narratives: bool = Field(
        False, description="Keep each case's normalized narrative (for retraining) for retention_days.")
    retention_days: int = Field(90, ge=1, description="Stored narrative text older than this is purged.")
    flush_interval_s: float = Field(0.05, gt=0, le=10, description="How often queued case records are written.")
    flush_max_rows: int = Field(256, ge=1, description="Queued records that trigger a write at once.")

    def resolved_database_url(self) -> str:
        return self.database_url or os.environ.get(DATABASE_ENV_VAR) or f"sqlite:///{DEFAULT_DATABASE_PATH}"
class ReportsArgs(_Strict):
    """The anonymous reports (/reports/summary, deployments/core/reports.py)."""

    min_count: int = Field(5, ge=0, description="Counts under this show as '<min_count', so a rare case cannot be "
                           "singled out; 0 or 1 shows every count.")


class IntakeArgs(_Strict):
    """The asynchronous intake: /tasks/* and /classifier/* on a durable queue (deployments/intake/)."""

    broker_url: Optional[str] = Field(
        None, description="redis://host:port/db for broker and result store; null: CHS_BROKER_URL, else the embedded "
        "filesystem broker under var/intake (one machine, survives a restart of `make serve`)."
    )
    data_dir: str = Field("var/intake", description="Where the embedded broker keeps its queue and results.")
    queue_name: str = Field("chs-intake", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    result_ttl_s: int = Field(7 * 24 * 3600, ge=1, description="How long a finished task (never its narrative) is kept.")
    max_queued: int = Field(10_000, ge=1, description="Queued cases past which a submit gets 503 with Retry-After.")
    retry_after_s: int = Field(5, ge=1, description="Retry-After of the full-queue 503.")
    visibility_timeout_s: int = Field(
        90, ge=10, description="Redis: a case taken by a consumer that died is redelivered after this long."
    )
    max_retries: int = Field(
        5, ge=0, description="Retries of a transient failure, with exponential backoff (2, 4, 8, 16, 30 s: a minute, "
        "long enough for a replaced classifier replica to start)."
    )
    retry_backoff_max_s: int = Field(30, ge=1, description="Largest delay between two retries.")
    task_timeout_s: float = Field(120.0, gt=0, description="The consumer's wait for one case's classification.")
    consumer_concurrency: int = Field(
        8, ge=1, description="Cases the consumer has in flight at once: the queued share of the classifier's batches."
    )
    callback_allow_hosts: list[str] = Field(
        default_factory=list, description="Hosts a callback_url may name; empty: callbacks are refused (422)."
    )
    callback_timeout_s: float = Field(10.0, gt=0, description="One callback POST's timeout; failures retry with backoff.")
    consumer_num_cpus: float = Field(0.25, gt=0)
    consumer_resources: dict[str, float] = Field(
        default_factory=dict, description="Ray custom resources of the consumer, e.g. {'cpu_pool': 0.01} on k8s."
    )


class ReviewDeadlinesArgs(_Strict):
    """When a case sent to human review is due, from its creation (OpenCHS's written deadlines:
    ai_docs/docs/user-guides/for-helpline-operators/case-management-guide.md and
    for-supervisors-managers/team-workflow-management.md in openchlai/ai)."""

    escalated_s: int = Field(
        60, ge=1, description="An escalated case: supervisors answer an emergency escalation within 1 minute.")
    priority_s: dict[int, int] = Field(
        default_factory=lambda: {3: 24 * 3600, 2: 48 * 3600, 1: 7 * 24 * 3600},
        description="Per priority level, a case sent to review but not escalated: high the same day (24 h), medium "
        "48-72 hours (the earlier end, 48 h), low within a week.")
    default_s: int = Field(
        7 * 24 * 3600, ge=1, description="A priority level priority_s does not name (another checkpoint's labels).")


class ReviewArgs(_Strict):
    """The supervisors' worklist over the case record (/review*, deployments/core/review.py)."""

    deadlines: ReviewDeadlinesArgs = Field(default_factory=ReviewDeadlinesArgs)
    metrics_interval_s: float = Field(
        15.0, gt=0, description="How often the Router counts open and overdue cases for the metrics.")
class CallsArgs(_Strict):
    """Live call sessions (POST /calls/{call_id}/transcript, deployments/core/calls.py)."""

    idle_timeout_s: float = Field(1800.0, gt=0, description="A call with no piece for this long is closed, as if ended.")
    sweep_interval_s: float = Field(30.0, gt=0, description="How often each ingress replica looks for idle calls.")
    events_poll_s: float = Field(0.5, gt=0, description="How often an SSE stream looks for the call's new events.")
    # Below http_options.request_timeout_s (60): the stream ends cleanly before the proxy would cut it.
    events_max_s: float = Field(
        45.0, gt=0, description="An SSE stream ends after this long (the client reconnects with Last-Event-ID).")
    notify_url: Optional[str] = Field(
        None, description="The helpline's endpoint for call notifications (OpenCHS's envelope); null: none sent.")
    notify_mode: Literal["all", "results_only", "critical_only", "disabled"] = Field(
        "critical_only", description="'all'/'results_only': every update, the escalation and the end; "
        "'critical_only': the escalation and the end; 'disabled': none.")
    notify_allow_hosts: list[str] = Field(
        default_factory=list, description="Hosts notify_url may name; empty: notifications are never sent.")
    site_id: str = Field("helpline", description="call_metadata.site_id of each notification.")


class AppArgs(_Strict):
    # Model source: a Hub repo id or a local directory; CHS_MODEL overrides.
    model: str = DEFAULT_MODEL_ID
    revision: Optional[str] = None

    # Text and windows.
    max_length: int = Field(512, ge=16, le=512, description="Tokens per model window, specials included.")
    window_overlap: int = Field(128, ge=0, description="Tokens shared by consecutive windows.")
    long_narratives: Literal["window", "truncate"] = Field(
        "window", description="'truncate' reads only the first window, and says so in the response."
    )
    aggregation: Literal["weighted_mean", "mean", "max"] = "weighted_mean"
    priority_aggregation: Literal["max", "weighted_mean", "mean"] = "max"

    # Request limits.
    max_narrative_chars: int = Field(100_000, ge=1)
    max_body_bytes: int = Field(1_048_576, ge=1024)
    max_batch_narratives: int = Field(256, ge=1, description="Narratives per /classify/batch request.")
    max_batch_windows: int = Field(2048, ge=1, description="Model windows per /classify/batch request.")
    windows_per_call: int = Field(
        16, ge=1, description="Windows the ingress sends per classifier call; long work is sliced so short cases interleave."
    )
    # Below http_options.request_timeout_s (60), so the ingress answers a retryable 504 before the proxy times out.
    backend_timeout_s: float = Field(50.0, gt=0)

    # Hardware.
    accelerator: Literal["auto", "cuda", "cpu"] = "auto"
    num_gpus: float = Field(1.0, ge=0, description="GPUs per classifier replica when it runs on CUDA.")
    # The classifier's resources live here, not in its ray_actor_options, because
    # 'auto' decides num_gpus when the app is built (a config's ray_actor_options
    # would replace them whole).
    classifier_num_cpus: float = Field(1.0, gt=0, description="CPUs per classifier replica.")
    classifier_resources: dict[str, float] = Field(
        default_factory=dict,
        description="Ray custom resources per classifier replica, e.g. {'gpu_pool': 1} to pin it to a node pool.",
    )
    engine: Literal["auto", "torch", "onnxruntime", "openvino"] = Field(
        "auto", description="What runs the model (deployments/core/engines.py). 'auto': on CPU, the fastest of the "
        "engines that run the dtype exactly, timed by the replica at startup on its own checkpoint and kept per CPU "
        "model beside the ONNX export (deployments/core/engine_choice.py); on CUDA, PyTorch. An export that fails "
        "falls back to eager PyTorch."
    )
    dtype: Literal["auto", "fp32", "bf16", "fp16", "int8"] = Field(
        "auto", description="'auto': fp32 on CPU, bf16 (else fp16) on CUDA. 'bf16' and 'int8' on CPU are opt-ins, "
        "served only when their agreement with fp32 reaches min_agreement; 'auto' never picks them on CPU."
    )
    torch_threads: Optional[int] = Field(None, ge=1)
    min_agreement: float = Field(
        0.99, ge=0, le=1, description="Below fp32, the share of agreement cases that must keep all four labels of "
        "fp32, measured at startup; under it the replica refuses to start. 0 admits any precision unmeasured.")
    recheck_margin: float = Field(
        0.0, ge=0, le=1, description="Below fp32 on CPU: a window whose top two labels in any task are closer than "
        "this at the lower precision is run again in fp32, so near ties are decided as fp32 decides them; 0: off.")
    agreement_cases: Optional[str] = Field(
        None, description="A JSONL of narratives ('narrative' per line) to measure agreement on; null: the "
        "checkpoint's held-out set (its heldout.jsonl, or the set its eval.json names).")

    batching: BatchingArgs = Field(default_factory=BatchingArgs)
    coalescing: CoalescingArgs = Field(default_factory=CoalescingArgs)
    routing: RoutingArgs = Field(default_factory=RoutingArgs)
    labels: LabelArgs = Field(default_factory=LabelArgs)
    language: LanguageArgs = Field(default_factory=LanguageArgs)
    lexicon: LexiconArgs = Field(default_factory=LexiconArgs)
    translation: TranslationArgs = Field(default_factory=TranslationArgs)
    feedback: FeedbackArgs = Field(default_factory=FeedbackArgs)
    intake: IntakeArgs = Field(default_factory=IntakeArgs)
    review: ReviewArgs = Field(default_factory=ReviewArgs)
    reports: ReportsArgs = Field(default_factory=ReportsArgs)
    calls: CallsArgs = Field(default_factory=CallsArgs)

    @model_validator(mode="after")
    def _consistent(self) -> "AppArgs":
        if self.window_overlap >= self.max_length - 2:
            raise ValueError(f"window_overlap ({self.window_overlap}) must be below max_length - 2 ({self.max_length - 2})")
        if self.engine == "onnxruntime" and self.dtype in ("bf16", "fp16"):
            raise ValueError(f"engine 'onnxruntime' runs fp32 or int8, not {self.dtype}: use engine 'torch' for it")
        if self.engine == "openvino" and self.dtype in ("fp16", "int8"):
            raise ValueError(f"engine 'openvino' runs fp32 or bf16, not {self.dtype}")
        if self.windows_per_call > self.batching.max_batch_size:
            raise ValueError(
                f"windows_per_call ({self.windows_per_call}) must not exceed batching.max_batch_size "
                f"({self.batching.max_batch_size}): a call larger than a batch would go alone, its slice never "
                "sharing a batch with short cases"
            )
        return self

    def resolved_model(self) -> str:
        return os.environ.get(MODEL_ENV_VAR) or self.model
