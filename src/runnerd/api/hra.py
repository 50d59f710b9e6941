"""The HorizontalRunnerAutoscaler kind: target, metrics, webhook triggers, reservations, schedules.

Conventions: :mod:`runnerd.api.meta`.
"""

# RUF009: ``field()`` below is this package's dataclass field specifier (it wraps
# ``dataclasses.field``), not a call evaluated once as a shared default.
# ruff: noqa: RUF009

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from runnerd.api import constants as c
from runnerd.api._codec import (
    FLOAT_PATTERN,
    GO_DURATION_PATTERN,
    JSON,
    ApiObject,
    ApiParseError,
    Rule,
    field,
    parse_go_duration,
)
from runnerd.api.meta import AGE, K8S_META, CustomResource, GitHubAPICredentialsFrom, PrinterColumn

# --- HorizontalRunnerAutoscaler --------------------------------------------------------------


@dataclass(kw_only=True)
class ScaleTargetRef(ApiObject):
    kind: str | None = field("kind", "RunnerDeployment (default) or RunnerSet.", enum=c.SCALE_TARGET_KINDS)
    name: str | None = field(
        "name", "Name of the scaled resource in the same namespace.", required=True, min_length=1
    )

    @property
    def effective_kind(self) -> str:
        return self.kind or c.DEFAULT_SCALE_TARGET_KIND


def _both_set(d: Mapping[str, Any], adjustment: str, factor: str) -> bool:
    return d.get(adjustment) not in (None, 0) and d.get(factor) not in (None, "")


def _parse_float(value: str | None, default: float, name: str) -> float:
    if value is None or value == "":
        return default
    try:
        return float(value)
    except ValueError:
        raise ApiParseError(f".{name}", f"cannot be parsed into a float: {value!r}") from None


@dataclass(kw_only=True)
class MetricSpec(ApiObject):
    RULES: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel="!has(self.scaleUpAdjustment) || self.scaleUpAdjustment == 0"
            " || !has(self.scaleUpFactor) || self.scaleUpFactor == ''",
            message="scaleUpAdjustment and scaleUpFactor cannot be specified together",
            check=lambda d: not _both_set(d, "scaleUpAdjustment", "scaleUpFactor"),
        ),
        Rule(
            cel="!has(self.scaleDownAdjustment) || self.scaleDownAdjustment == 0"
            " || !has(self.scaleDownFactor) || self.scaleDownFactor == ''",
            message="scaleDownAdjustment and scaleDownFactor cannot be specified together",
            check=lambda d: not _both_set(d, "scaleDownAdjustment", "scaleDownFactor"),
        ),
    )

    type: str | None = field("type", "The metric.", required=True, enum=c.METRIC_TYPES)
    repository_names: list[str] = field(
        "repositoryNames",
        "Repositories whose workflow runs are counted (needed for organization runners).",
        factory=list,
    )
    scale_up_threshold: str | None = field(
        "scaleUpThreshold",
        "Busy fraction at or above which to scale up (default 0.8).",
        pattern=FLOAT_PATTERN,
    )
    scale_down_threshold: str | None = field(
        "scaleDownThreshold", "Busy fraction below which to scale down (default 0.3).", pattern=FLOAT_PATTERN
    )
    scale_up_factor: str | None = field(
        "scaleUpFactor", "Multiplier applied on scale up (default 1.3).", pattern=FLOAT_PATTERN
    )
    scale_down_factor: str | None = field(
        "scaleDownFactor", "Multiplier applied on scale down (default 0.7).", pattern=FLOAT_PATTERN
    )
    scale_up_adjustment: int | None = field(
        "scaleUpAdjustment", "Runners added on scale up (instead of scaleUpFactor).", minimum=0
    )
    scale_down_adjustment: int | None = field(
        "scaleDownAdjustment", "Runners removed on scale down (instead of scaleDownFactor).", minimum=0
    )

    @property
    def effective_scale_up_threshold(self) -> float:
        return _parse_float(self.scale_up_threshold, c.DEFAULT_SCALE_UP_THRESHOLD, "scaleUpThreshold")

    @property
    def effective_scale_down_threshold(self) -> float:
        return _parse_float(self.scale_down_threshold, c.DEFAULT_SCALE_DOWN_THRESHOLD, "scaleDownThreshold")

    @property
    def effective_scale_up_factor(self) -> float:
        return _parse_float(self.scale_up_factor, c.DEFAULT_SCALE_UP_FACTOR, "scaleUpFactor")

    @property
    def effective_scale_down_factor(self) -> float:
        return _parse_float(self.scale_down_factor, c.DEFAULT_SCALE_DOWN_FACTOR, "scaleDownFactor")


@dataclass(kw_only=True)
class CheckRunSpec(ApiObject):
    types: list[str] = field("types", factory=list)
    status: str | None = field("status")
    names: list[str] = field("names", factory=list)
    repositories: list[str] = field("repositories", factory=list)


@dataclass(kw_only=True)
class PullRequestSpec(ApiObject):
    types: list[str] = field("types", factory=list)
    branches: list[str] = field("branches", factory=list)


@dataclass(kw_only=True)
class PushSpec(ApiObject):
    pass


@dataclass(kw_only=True)
class WorkflowJobSpec(ApiObject):
    pass


@dataclass(kw_only=True)
class GitHubEventScaleUpTriggerSpec(ApiObject):
    check_run: CheckRunSpec | None = field("checkRun", "Accepted for compatibility; ignored (as in ARC).")
    pull_request: PullRequestSpec | None = field(
        "pullRequest", "Accepted for compatibility; ignored (as in ARC)."
    )
    push: PushSpec | None = field("push", "Accepted for compatibility; ignored (as in ARC).")
    workflow_job: WorkflowJobSpec | None = field("workflowJob", "Scale on workflow_job webhook events.")


@dataclass(kw_only=True)
class ScaleUpTrigger(ApiObject):
    github_event: GitHubEventScaleUpTriggerSpec | None = field("githubEvent")
    amount: int | None = field("amount")
    duration: str | None = field(
        "duration",
        "How long a capacity reservation lasts, as a Go duration (default 10m).",
        pattern=GO_DURATION_PATTERN,
    )

    @property
    def effective_duration(self) -> dt.timedelta:
        """The reservation lifetime; absent or not positive means 10 minutes (as in ARC)."""
        value = parse_go_duration(self.duration) if self.duration else dt.timedelta(0)
        if value <= dt.timedelta(0):
            return dt.timedelta(seconds=c.DEFAULT_SCALE_UP_TRIGGER_DURATION_SECONDS)
        return value


@dataclass(kw_only=True)
class CapacityReservation(ApiObject):
    name: str | None = field("name")
    expiration_time: dt.datetime | None = field("expirationTime")
    replicas: int | None = field("replicas")
    effective_time: dt.datetime | None = field("effectiveTime")


@dataclass(kw_only=True)
class RecurrenceRule(ApiObject):
    frequency: str | None = field(
        "frequency",
        "Daily, Weekly, Monthly or Yearly; empty means the override happens once.",
        enum=c.RECURRENCE_FREQUENCIES,
    )
    until_time: dt.datetime | None = field("untilTime", "When the recurrence ends (default: never).")


@dataclass(kw_only=True)
class ScheduledOverride(ApiObject):
    start_time: dt.datetime | None = field("startTime", "Start of the first override.", required=True)
    end_time: dt.datetime | None = field("endTime", "End of the first override.", required=True)
    min_replicas: int | None = field(
        "minReplicas", "minReplicas while the override is active.", nullable=True, minimum=0
    )
    recurrence_rule: RecurrenceRule | None = field("recurrenceRule")


def _min_le_max(d: Mapping[str, Any]) -> bool:
    lo, hi = d.get("minReplicas"), d.get("maxReplicas")
    return not (isinstance(lo, int) and isinstance(hi, int)) or lo <= hi


def _metric_combination_ok(d: Mapping[str, Any]) -> bool:
    metrics = d.get("metrics")
    if not isinstance(metrics, list) or len(metrics) != 2:
        return True
    types = [m.get("type") if isinstance(m, Mapping) else None for m in metrics]
    return types == [
        c.METRIC_PERCENTAGE_RUNNERS_BUSY,
        c.METRIC_TOTAL_NUMBER_OF_QUEUED_AND_IN_PROGRESS_WORKFLOW_RUNS,
    ]


@dataclass(kw_only=True)
class HorizontalRunnerAutoscalerSpec(ApiObject):
    RULES: ClassVar[tuple[Rule, ...]] = (
        Rule(
            cel="!has(self.minReplicas) || !has(self.maxReplicas) || self.minReplicas <= self.maxReplicas",
            message="minReplicas must be less than or equal to maxReplicas",
            check=_min_le_max,
        ),
        Rule(
            cel="!has(self.metrics) || size(self.metrics) != 2 || (has(self.metrics[0].type) && "
            "has(self.metrics[1].type) && self.metrics[0].type == 'PercentageRunnersBusy' && "
            "self.metrics[1].type == 'TotalNumberOfQueuedAndInProgressWorkflowRuns')",
            message="two metrics can only be combined as metrics[0]=PercentageRunnersBusy and "
            "metrics[1]=TotalNumberOfQueuedAndInProgressWorkflowRuns",
            check=_metric_combination_ok,
        ),
    )

    scale_target_ref: ScaleTargetRef = field(
        "scaleTargetRef", "The RunnerDeployment or RunnerSet to scale.", required=True, factory=ScaleTargetRef
    )
    min_replicas: int | None = field("minReplicas", "Lower bound of the desired replicas.", minimum=0)
    max_replicas: int | None = field("maxReplicas", "Upper bound of the desired replicas.", minimum=0)
    scale_down_delay_seconds_after_scale_out: int | None = field(
        "scaleDownDelaySecondsAfterScaleOut",
        "Seconds to wait after a scale out before scaling down "
        "(default: the controller's --default-scale-down-delay).",
        minimum=0,
    )
    metrics: list[MetricSpec] = field(
        "metrics",
        "Pull-based metrics: one, or PercentageRunnersBusy then "
        "TotalNumberOfQueuedAndInProgressWorkflowRuns.",
        max_items=2,
        factory=list,
    )
    scale_up_triggers: list[ScaleUpTrigger] = field(
        "scaleUpTriggers", "Webhook-based scaling: one entry with githubEvent.workflowJob.", factory=list
    )
    capacity_reservations: list[CapacityReservation] = field(
        "capacityReservations",
        "Replicas added until they expire (written by the webhook server).",
        factory=list,
    )
    scheduled_overrides: list[ScheduledOverride] = field(
        "scheduledOverrides", "minReplicas overrides on a schedule; earlier entries win.", factory=list
    )
    github_api_credentials_from: GitHubAPICredentialsFrom | None = field("githubAPICredentialsFrom")

    @property
    def effective_min_replicas(self) -> int:
        """spec.minReplicas, where absent (or negative) means 1, as in ARC's HRA controller."""
        if self.min_replicas is None or self.min_replicas < 0:
            return c.DEFAULT_MIN_REPLICAS
        return self.min_replicas


@dataclass(kw_only=True)
class CacheEntry(ApiObject):
    key: str | None = field("key")
    value: int | None = field("value")
    expiration_time: dt.datetime | None = field("expirationTime")


@dataclass(kw_only=True)
class HorizontalRunnerAutoscalerStatus(ApiObject):
    observed_generation: int | None = field("observedGeneration", int64=True)
    desired_replicas: int | None = field("desiredReplicas", "Replicas last computed for the target.")
    last_successful_scale_out_time: dt.datetime | None = field("lastSuccessfulScaleOutTime", nullable=True)
    cache_entries: list[CacheEntry] = field("cacheEntries", "Unused (kept for ARC).", factory=list)
    scheduled_overrides_summary: str | None = field(
        "scheduledOverridesSummary", "Active and upcoming scheduled overrides, for kubectl get."
    )
    conditions: list[JSON] = field(
        "conditions",
        "ScalingActive, AbleToScale, ScalingLimited, GitHubAPIBudget, AmbiguousWebhookTarget "
        "(runnerd extension).",
        k8s=K8S_META + "Condition",
        factory=list,
    )


@dataclass(kw_only=True)
class HorizontalRunnerAutoscaler(CustomResource):
    KIND: ClassVar[str] = "HorizontalRunnerAutoscaler"
    PLURAL: ClassVar[str] = "horizontalrunnerautoscalers"
    SHORT_NAMES: ClassVar[tuple[str, ...]] = ("hra",)
    DESCRIPTION: ClassVar[str] = "Scales a RunnerDeployment or RunnerSet from GitHub metrics and webhooks."
    PRINTER_COLUMNS: ClassVar[tuple[PrinterColumn, ...]] = (
        PrinterColumn("Min", ".spec.minReplicas", "integer"),
        PrinterColumn("Max", ".spec.maxReplicas", "integer"),
        PrinterColumn("Desired", ".status.desiredReplicas", "integer"),
        PrinterColumn("Schedule", ".status.scheduledOverridesSummary", "string"),
        PrinterColumn("Target Kind", ".spec.scaleTargetRef.kind", "string", priority=1),
        PrinterColumn("Target", ".spec.scaleTargetRef.name", "string", priority=1),
        AGE,
    )

    spec: HorizontalRunnerAutoscalerSpec = field(
        "spec", required=True, factory=HorizontalRunnerAutoscalerSpec
    )
    status: HorizontalRunnerAutoscalerStatus = field("status", factory=HorizontalRunnerAutoscalerStatus)
