"""The metric families a runnerd process records as things happen, declared once each.

Each :class:`Family` is a Prometheus kind, name, help text, label names (and histogram buckets); the
names and labels are ARC's wherever ARC has an equivalent (``runnerd_`` otherwise) and are pinned by
tests and ``docs/metrics.md``. :class:`runnerd.web.metrics.Metrics` builds every family here into its
own registry, in this order (which is the order of ``/metrics``); the gauges read at scrape time are
:mod:`runnerd.web.metrics`'s collectors.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

HRA_LABELS = ("horizontalrunnerautoscaler", "namespace")
"""ARC's labels of the HRA spec/status gauges."""
HRA_TARGET_LABELS = (*HRA_LABELS, "enterprise", "organization", "repository", "kind", "name")
"""ARC's labels of the per-metric HRA gauges (the scale target's scope, kind and name)."""
JOB_LABELS = (
    "runs_on",
    "job_name",
    "organization",
    "repository",
    "repository_full_name",
    "owner",
    "workflow_name",
    "head_branch",
)
"""ARC's (actions metrics server) labels of the ``github_workflow_job*`` metrics."""

JOB_DURATION_BUCKETS = (
    0.5, 1, 2, 5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 240, 300, 420, 600, 900, 1200, 1800, 2700, 3600,
)  # fmt: skip
LATENCY_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300,
)  # fmt: skip
STARTUP_BUCKETS = (0.25, 0.5, 1, 2, 3, 5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 300, 600)


M = TypeVar("M", Gauge, Counter, Histogram)


@dataclass(frozen=True)
class Family(Generic[M]):
    """One metric family: its kind (Gauge, Counter or Histogram), name, help text, labels, buckets."""

    kind: Callable[..., M]
    name: str
    doc: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()

    def build(self, registry: CollectorRegistry) -> M:
        """The metric, registered in ``registry``."""
        extra: dict[str, Any] = {"buckets": self.buckets} if self.buckets else {}
        return self.kind(self.name, self.doc, self.labels, registry=registry, **extra)


# ARC: PercentageRunnersBusy observations
REPLICAS_DESIRED = Family(
    Gauge,
    "horizontalrunnerautoscaler_replicas_desired",
    "replicas_desired of PercentageRunnersBusy",
    HRA_TARGET_LABELS,
)
RUNNERS = Family(
    Gauge, "horizontalrunnerautoscaler_runners", "num_runners of PercentageRunnersBusy", HRA_TARGET_LABELS
)
RUNNERS_REGISTERED = Family(
    Gauge,
    "horizontalrunnerautoscaler_runners_registered",
    "num_runners_registered of PercentageRunnersBusy",
    HRA_TARGET_LABELS,
)
RUNNERS_BUSY = Family(
    Gauge,
    "horizontalrunnerautoscaler_runners_busy",
    "num_runners_busy of PercentageRunnersBusy",
    HRA_TARGET_LABELS,
)
TERMINATING_BUSY = Family(
    Gauge,
    "horizontalrunnerautoscaler_terminating_busy",
    "num_terminating_busy of PercentageRunnersBusy",
    HRA_TARGET_LABELS,
)

# ARC: TotalNumberOfQueuedAndInProgressWorkflowRuns observations (ARC counts jobs here)
NECESSARY_REPLICAS = Family(
    Gauge,
    "horizontalrunnerautoscaler_necessary_replicas",
    "necessary_replicas of QueuedAndInProgressWorkflowRuns",
    HRA_TARGET_LABELS,
)
WORKFLOW_RUNS_COMPLETED = Family(
    Gauge,
    "horizontalrunnerautoscaler_workflow_runs_completed",
    "workflow_runs_completed of QueuedAndInProgressWorkflowRuns (jobs of the active runs)",
    HRA_TARGET_LABELS,
)
WORKFLOW_RUNS_IN_PROGRESS = Family(
    Gauge,
    "horizontalrunnerautoscaler_workflow_runs_in_progress",
    "workflow_runs_in_progress of QueuedAndInProgressWorkflowRuns (jobs)",
    HRA_TARGET_LABELS,
)
WORKFLOW_RUNS_QUEUED = Family(
    Gauge,
    "horizontalrunnerautoscaler_workflow_runs_queued",
    "workflow_runs_queued of QueuedAndInProgressWorkflowRuns (jobs)",
    HRA_TARGET_LABELS,
)
WORKFLOW_RUNS_UNKNOWN = Family(
    Gauge,
    "horizontalrunnerautoscaler_workflow_runs_unknown",
    "workflow_runs_unknown of QueuedAndInProgressWorkflowRuns (jobs in another status)",
    HRA_TARGET_LABELS,
)

# runnerd: the decision's parts
RESERVED_REPLICAS = Family(
    Gauge,
    "runnerd_horizontalrunnerautoscaler_reserved_replicas",
    "Replicas held by unexpired capacity reservations (webhooks and the safety-net poll)",
    HRA_LABELS,
)
SCALE_DOWN_HELD = Family(
    Gauge,
    "runnerd_horizontalrunnerautoscaler_scale_down_held",
    "1 while a scale-down is held by scaleDownDelaySecondsAfterScaleOut",
    HRA_LABELS,
)
RECONCILES = Family(
    Counter,
    "runnerd_horizontalrunnerautoscaler_reconciles",
    "HRA reconciles by outcome (scaled, unchanged, error, target_missing, invalid)",
    ("outcome",),
)

# ARC (actions metrics server): workflow_job events
JOB_QUEUE_DURATION = Family(
    Histogram,
    "github_workflow_job_queue_duration_seconds",
    "Queue times for workflow jobs in seconds (queued until a runner started it)",
    JOB_LABELS,
    JOB_DURATION_BUCKETS,
)
JOB_RUN_DURATION = Family(
    Histogram,
    "github_workflow_job_run_duration_seconds",
    "Run times for workflow jobs in seconds",
    (*JOB_LABELS, "job_conclusion"),
    JOB_DURATION_BUCKETS,
)
JOB_CONCLUSIONS = Family(
    Counter,
    "github_workflow_job_conclusions_total",
    "Conclusions for tracked workflow jobs",
    (*JOB_LABELS, "job_conclusion"),
)
JOBS_QUEUED = Family(
    Counter,
    "github_workflow_jobs_queued_total",
    "Total count of workflow jobs queued (events where job_status=queued)",
    JOB_LABELS,
)
JOBS_STARTED = Family(
    Counter,
    "github_workflow_jobs_started_total",
    "Total count of workflow jobs started (events where job_status=in_progress)",
    JOB_LABELS,
)
JOBS_COMPLETED = Family(
    Counter,
    "github_workflow_jobs_completed_total",
    "Total count of workflow jobs completed (events where job_status=completed)",
    JOB_LABELS,
)

# runnerd: webhook server
WEBHOOK_DELIVERIES = Family(
    Counter, "runnerd_webhook_deliveries_total", "Webhook requests by event and outcome", ("event", "outcome")
)
WEBHOOK_REQUEST_DURATION = Family(
    Histogram,
    "runnerd_webhook_request_duration_seconds",
    "Time to answer a webhook request (reservation written when it returns)",
    ("event",),
    LATENCY_BUCKETS,
)
JOBS_UNMATCHED = Family(
    Counter,
    "runnerd_workflow_jobs_unmatched_total",
    "Queued self-hosted workflow_job deliveries that no HorizontalRunnerAutoscaler matched",
    ("runs_on",),
)
RESERVATION_WRITES = Family(
    Counter,
    "runnerd_capacity_reservation_writes_total",
    "Patches of HRA spec.capacityReservations by outcome (written, conflict, failed)",
    ("outcome",),
)
RESERVATION_EVENTS = Family(
    Counter,
    "runnerd_capacity_reservation_events_total",
    "workflow_job events applied to reservations, by source (webhook, poll) and effect",
    ("source", "effect"),
)

# runnerd: latency histograms ARC lacks
WEBHOOK_TO_POD_CREATE = Family(
    Histogram,
    "runnerd_webhook_to_pod_create_seconds",
    "From a queued workflow_job delivery that reserved a runner to its runner pod being created",
    (),
    LATENCY_BUCKETS,
)
RUNNER_STARTUP = Family(
    Histogram,
    "runnerd_runner_startup_seconds",
    "From a runner pod being created to its runner registered and online in GitHub",
    (),
    STARTUP_BUCKETS,
)

# runnerd: safety-net poll
POLL_RUNS = Family(
    Counter,
    "runnerd_safety_net_polls_total",
    "Safety-net polls of a repository by outcome (changed, unchanged, rate_limited, failed)",
    ("outcome",),
)
POLL_JOBS_RECOVERED = Family(
    Counter,
    "runnerd_safety_net_jobs_recovered_total",
    "Queued jobs the safety-net poll reserved a runner for before any webhook did",
)
POLL_JOBS_RECHECKED = Family(
    Counter,
    "runnerd_safety_net_jobs_rechecked_total",
    "Queued jobs a recheck gave a new runner after their sized runner went before the job finished",
)
POLL_INTERVAL = Family(
    Gauge, "runnerd_safety_net_poll_interval_seconds", "Current interval between two polls of one repository"
)
POLL_REPOSITORIES = Family(
    Gauge, "runnerd_safety_net_repositories", "Repositories the safety-net poll covers"
)
POLL_BUDGET_PER_HOUR = Family(
    Gauge,
    "runnerd_safety_net_budget_calls_per_hour",
    "The configured ceiling of safety-net API calls per hour",
)
AUDIT_PASSES = Family(
    Counter,
    "runnerd_webhook_audit_passes_total",
    "Passes of the webhook delivery audit over the hook's deliveries by outcome (ok, failed, budget)",
    ("outcome",),
)
AUDIT_REDELIVERIES = Family(
    Counter,
    "runnerd_webhook_audit_redeliveries_total",
    "Failed workflow_job deliveries the audit asked GitHub to redeliver",
)
AUDIT_HEALTHY = Family(
    Gauge,
    "runnerd_webhook_audit_healthy",
    "1 while the webhook delivery audit's last pass succeeded within two intervals (the safety-net poll"
    " may stretch to the audit's long bound), else 0",
)
AUDIT_HOOKS = Family(
    Gauge,
    "runnerd_webhook_audit_hooks",
    "Hooks the webhook delivery audit reads (named by --webhook-audit, or found by its discovery)",
)
AUDIT_DISCOVERIES = Family(
    Counter,
    "runnerd_webhook_audit_discoveries_total",
    "Discoveries of the hooks that deliver workflow_job events (--webhook-audit auto) by outcome"
    " (covered, partial, unavailable, failed)",
    ("outcome",),
)

# runnerd: sized jobs (docs/gpu-sizing.md, "Wiring"); the runnerd_sized_jobs gauge is read at scrape time
SIZED_JOBS_REFUSED = Family(
    Counter,
    "runnerd_sized_jobs_refused_total",
    "Sized jobs the intake refused, by pool and rule (grammar, cap, product, mig, unsupported, no_policy)",
    ("namespace", "pool", "rule"),
)

# runnerd: capacity-aware admission of sized jobs (docs/gpu-sizing.md)
ADMISSION_WAIT = Family(
    Histogram,
    "runnerd_admission_wait_seconds",
    "From a sized job being queued to admission giving it a runner pod (placed or admitted Pending)",
    ("namespace", "pool"),
    JOB_DURATION_BUCKETS,
)
GPU_ALLOCATABLE = Family(
    Gauge,
    "runnerd_gpu_allocatable",
    "GPUs (nvidia.com/gpu, and MIG slices per resource) the nodes offer, by resource and GPU product",
    ("resource", "gpu_product"),
)
GPU_REQUESTED = Family(
    Gauge,
    "runnerd_gpu_requested",
    "GPUs requested by the pods bound (or admitted) to the nodes, by resource and GPU product",
    ("resource", "gpu_product"),
)
