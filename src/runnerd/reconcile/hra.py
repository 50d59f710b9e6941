"""The HorizontalRunnerAutoscaler's scale decision (pure).

:func:`desired_replicas` follows ARC's HRA controller (``horizontalrunnerautoscaler_controller.go``,
``autoscaling.go``):

1. ``min`` = ``spec.minReplicas`` (absent or negative: 1), replaced by the first active scheduled
   override (:mod:`runnerd.reconcile.schedule`).
2. ``suggested`` from the metrics: none configured, or a single metric suggesting 0 or less, means
   ``min``. Allowed: one metric, or ``[PercentageRunnersBusy,
   TotalNumberOfQueuedAndInProgressWorkflowRuns]`` where the second one is consulted only when the
   first suggests 0 or less (and then its value is used as is, even 0, as in ARC).
3. ``reserved`` = the replicas of the capacity reservations that have not expired
   (``expirationTime > now``).
4. ``desired`` = ``suggested + reserved`` raised to ``min`` and capped at ``maxReplicas``.
5. A scale-down is held while ``lastSuccessfulScaleOutTime + scaleDownDelay > now``: the previous
   ``status.desiredReplicas`` is kept.
6. ``lastSuccessfulScaleOutTime`` becomes ``now`` when ``desired`` grows (from nothing: above 1).

Where this differs from ARC, on purpose:

* Metric combinations are checked up front (ARC notices a bad pair only when the first metric
  happens to suggest 0); more than two metrics or an unknown type is an error too.
* ``maxReplicas`` wins over a scheduled ``minReplicas`` above it (ARC lets the schedule exceed it),
  and a held scale-down never keeps more than ``maxReplicas`` (ARC keeps the old value even after
  ``maxReplicas`` was lowered). ``maxReplicas`` is required (as in ARC); ``minReplicas`` is not.
* PercentageRunnersBusy is computed exactly from the decimal strings (ARC multiplies float64s, so
  ``ceil(10 * 1.3)`` is 14 there and 13 here); it never fails on a target without ``replicas``
  (ARC dereferences a nil pointer in the steady band) nor on 0 replicas.
* TotalNumberOfQueuedAndInProgressWorkflowRuns compares labels case-insensitively, as GitHub routes
  jobs (ARC compares exactly here, yet case-insensitively in its webhook server); a job listed twice
  (same id) counts once; ``repositoryNames`` may also hold ``owner/name``.
* A job counted by the metric and named by a capacity reservation counts once (see
  :func:`desired_replicas`); how webhook deliveries change the reservations is
  :mod:`runnerd.reconcile.reservations`.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

from runnerd.api import (
    CapacityReservation,
    HorizontalRunnerAutoscalerSpec,
    HorizontalRunnerAutoscalerStatus,
    MetricSpec,
    RunnerConfig,
)
from runnerd.api import constants as c
from runnerd.reconcile.matching import job_fits_runner
from runnerd.reconcile.reservations import display_name, is_active, is_live, job_of
from runnerd.reconcile.schedule import ScheduleError, ScheduleState, evaluate_schedule, format_go_time

DEFAULT_SCALE_DOWN_DELAY = dt.timedelta(minutes=10)
"""ARC's ``--default-scale-down-delay``."""

TOTAL_JOBS = c.METRIC_TOTAL_NUMBER_OF_QUEUED_AND_IN_PROGRESS_WORKFLOW_RUNS
PERCENTAGE_BUSY = c.METRIC_PERCENTAGE_RUNNERS_BUSY
ALLOWED_PAIR = (PERCENTAGE_BUSY, TOTAL_JOBS)


class AutoscaleError(ValueError):
    """The HRA cannot be evaluated as configured (or an observation it needs is missing)."""


# --- observations (gathered by the controller) ----------------------------------------------------


@dataclass(frozen=True)
class JobObservation:
    """One workflow job as the REST API lists it."""

    status: str  # "queued", "in_progress", "completed", "waiting", ...
    labels: tuple[str, ...]
    id: int | None = None


@dataclass(frozen=True)
class RunnerObservation:
    """One runner of the scale target (a Runner object or RunnerSet pod) with GitHub's view of it."""

    name: str
    registered: bool = True  # present in GitHub's runner list
    busy: bool = False  # GitHub's busy flag
    terminating_busy: bool = False  # being removed, but GitHub refused the deregistration: busy


@dataclass(frozen=True)
class Observations:
    """What the metrics need. ``None`` means "not gathered"; a metric that needs it then fails."""

    target: RunnerConfig  # the scale target's runner config (scope, labels, ephemeral)
    target_replicas: int | None = None  # the target's spec.replicas (absent: 1)
    jobs: Mapping[str, Sequence[JobObservation]] | None = None  # by repository "owner/name"
    runners: Sequence[RunnerObservation] | None = None


# --- metric results -----------------------------------------------------------------------------


@dataclass(frozen=True)
class QueuedJobsSuggestion:
    suggested: int
    queued: int
    in_progress: int
    unmatched: int  # active jobs whose labels the target's runners lack
    repositories: tuple[str, ...]
    metric: str = TOTAL_JOBS
    job_ids: frozenset[int] = frozenset()  # the counted jobs that have an id

    @property
    def reason(self) -> str:
        return (
            f"{TOTAL_JOBS}: {self.queued} queued + {self.in_progress} in progress jobs fit the runners "
            f"in {', '.join(self.repositories)} ({self.unmatched} other active jobs do not): "
            f"suggests {self.suggested}"
        )


@dataclass(frozen=True)
class BusySuggestion:
    suggested: int
    desired_before: int
    runners: int
    registered: int
    busy: int
    terminating_busy: int
    band: Literal["up", "down", "steady"]
    detail: str
    metric: str = PERCENTAGE_BUSY

    @property
    def reason(self) -> str:
        return (
            f"{PERCENTAGE_BUSY}: {self.busy} busy + {self.terminating_busy} busy while terminating "
            f"of {self.desired_before} desired ({self.registered}/{self.runners} registered); {self.detail}"
        )


Suggestion = QueuedJobsSuggestion | BusySuggestion


def _parse(value: str | None, default: float, name: str) -> Fraction:
    if value is None or value == "":
        return Fraction(str(default))
    try:
        return Fraction(value.strip())
    except (ValueError, ZeroDivisionError):
        raise AutoscaleError(f"metrics[].{name} cannot be parsed into a number: {value!r}") from None


def _num(f: Fraction) -> str:
    return str(f.numerator) if f.denominator == 1 else f"{float(f):g}"


def metric_repositories(metric: MetricSpec, target: RunnerConfig) -> tuple[str, ...]:
    """The repositories (``owner/name``) whose jobs TotalNumberOfQueuedAndInProgressWorkflowRuns counts."""
    scope = target.scope
    if scope is None:
        raise AutoscaleError("the scale target needs exactly one of enterprise, organization or repository")
    if scope.kind == "repository":
        return (scope.name,)
    if scope.kind == "enterprise":
        raise AutoscaleError(
            f"{TOTAL_JOBS} does not support enterprise runners (enterprise {scope.name!r}); "
            f"use {PERCENTAGE_BUSY} or workflow_job webhooks"
        )
    if not metric.repository_names:
        raise AutoscaleError(
            f"{TOTAL_JOBS}: metrics[].repositoryNames is required for organization runners "
            f"(organization {scope.name!r})"
        )
    return tuple(n if "/" in n else f"{scope.name}/{n}" for n in metric.repository_names)


def suggest_by_queued_jobs(
    metric: MetricSpec, obs: Observations, *, default_labels: Collection[str] = ()
) -> QueuedJobsSuggestion:
    """Queued plus in-progress jobs (in the metric's repositories) that the target's runners fit."""
    repos = metric_repositories(metric, obs.target)
    if obs.jobs is None:
        raise AutoscaleError(f"{TOTAL_JOBS}: workflow jobs were not observed")
    by_repo = {k.casefold(): v for k, v in obs.jobs.items()}
    queued = in_progress = unmatched = 0
    seen: set[int] = set()
    counted: set[int] = set()
    for repo in repos:
        jobs = by_repo.get(repo.casefold())
        if jobs is None:
            raise AutoscaleError(f"{TOTAL_JOBS}: workflow jobs of {repo} were not observed")
        for job in jobs:
            if job.status not in ("queued", "in_progress"):
                continue
            if job.id is not None:
                if job.id in seen:
                    continue
                seen.add(job.id)
            if not job_fits_runner(job.labels, obs.target.labels, default_labels):
                unmatched += 1
                continue
            if job.id is not None:
                counted.add(job.id)
            if job.status == "queued":
                queued += 1
            else:
                in_progress += 1
    return QueuedJobsSuggestion(
        queued + in_progress, queued, in_progress, unmatched, repos, job_ids=frozenset(counted)
    )


def suggest_by_busy_runners(metric: MetricSpec, obs: Observations) -> BusySuggestion:
    """ARC's PercentageRunnersBusy: grow at the up threshold, shrink below the down one."""
    up_threshold = _parse(metric.scale_up_threshold, c.DEFAULT_SCALE_UP_THRESHOLD, "scaleUpThreshold")
    down_threshold = _parse(metric.scale_down_threshold, c.DEFAULT_SCALE_DOWN_THRESHOLD, "scaleDownThreshold")
    up_adj, down_adj = metric.scale_up_adjustment or 0, metric.scale_down_adjustment or 0
    for name, adj, factor in (
        ("scaleUp", up_adj, metric.scale_up_factor),
        ("scaleDown", down_adj, metric.scale_down_factor),
    ):
        if adj < 0:
            raise AutoscaleError(f"metrics[].{name}Adjustment cannot be lower than 0")
        if adj and factor not in (None, ""):
            raise AutoscaleError(f"metrics[]: {name}Adjustment and {name}Factor cannot be specified together")
    up_factor = _parse(metric.scale_up_factor, c.DEFAULT_SCALE_UP_FACTOR, "scaleUpFactor")
    down_factor = _parse(metric.scale_down_factor, c.DEFAULT_SCALE_DOWN_FACTOR, "scaleDownFactor")
    if obs.runners is None:
        raise AutoscaleError(f"{PERCENTAGE_BUSY}: the runners of the scale target were not observed")

    before = c.DEFAULT_REPLICAS if obs.target_replicas is None else obs.target_replicas
    registered = sum(1 for r in obs.runners if r.registered)
    busy = sum(1 for r in obs.runners if r.registered and r.busy)
    terminating = sum(1 for r in obs.runners if r.terminating_busy and not (r.registered and r.busy))
    occupied = busy + terminating

    # fraction = occupied / before; with 0 desired, any busy runner counts as "above every
    # threshold" and none as "steady" (Go's +Inf and NaN in ARC).
    if before > 0:
        fraction = Fraction(occupied, before)
        at_up = fraction >= up_threshold
        below_down = fraction < down_threshold
        shown = _num(fraction)
    else:
        at_up, below_down = occupied > 0, False
        shown = "inf" if occupied else "undefined"

    band: Literal["up", "down", "steady"]
    if at_up:
        band = "up"
        if up_adj > 0:
            suggested = before + up_adj
            how = f"+ scaleUpAdjustment {up_adj}"
        else:
            suggested = math.ceil(before * up_factor)
            how = f"x scaleUpFactor {_num(up_factor)}, rounded up"
        detail = (
            f"busy fraction {shown} >= scaleUpThreshold {_num(up_threshold)}: {before} {how} = {suggested}"
        )
    elif below_down:
        band = "down"
        if down_adj > 0:
            suggested = before - down_adj
            how = f"- scaleDownAdjustment {down_adj}"
        else:
            suggested = math.floor(before * down_factor)
            how = f"x scaleDownFactor {_num(down_factor)}, rounded down"
        detail = (
            f"busy fraction {shown} < scaleDownThreshold {_num(down_threshold)}: {before} {how} = {suggested}"
        )
    else:
        band = "steady"
        suggested = before
        detail = (
            f"busy fraction {shown} between scaleDownThreshold {_num(down_threshold)} and "
            f"scaleUpThreshold {_num(up_threshold)}: stays {before}"
        )
    return BusySuggestion(
        suggested=suggested,
        desired_before=before,
        runners=len(obs.runners),
        registered=registered,
        busy=busy,
        terminating_busy=terminating,
        band=band,
        detail=detail,
    )


def check_metrics(metrics: Sequence[MetricSpec]) -> None:
    """Raise :class:`AutoscaleError` for a metric list ARC's controller would not evaluate."""
    if len(metrics) > 2:
        raise AutoscaleError(f"too many autoscaling metrics: 0 to 2 allowed, got {len(metrics)}")
    for i, m in enumerate(metrics):
        if m.type not in c.METRIC_TYPES:
            raise AutoscaleError(
                f"metrics[{i}].type {m.type!r} is not supported (use {PERCENTAGE_BUSY} or {TOTAL_JOBS})"
            )
    types = tuple(m.type for m in metrics)
    if len(types) == 2 and types != ALLOWED_PAIR:
        raise AutoscaleError(
            f"metrics[0] of {types[0]} cannot be combined with metrics[1] of {types[1]}: the only allowed "
            f"combination is metrics[0]={PERCENTAGE_BUSY} and metrics[1]={TOTAL_JOBS}"
        )


def _suggest(metric: MetricSpec, obs: Observations, default_labels: Collection[str]) -> Suggestion:
    if metric.type == PERCENTAGE_BUSY:
        return suggest_by_busy_runners(metric, obs)
    return suggest_by_queued_jobs(metric, obs, default_labels=default_labels)


def suggest_replicas(
    metrics: Sequence[MetricSpec], obs: Observations, *, default_labels: Collection[str] = ()
) -> tuple[int | None, tuple[Suggestion, ...]]:
    """The metrics' suggestion (``None``: use minReplicas) and every metric evaluated on the way."""
    check_metrics(metrics)
    if not metrics:
        return None, ()
    first = _suggest(metrics[0], obs, default_labels)
    if first.suggested > 0:
        return first.suggested, (first,)
    if len(metrics) == 1:
        return None, (first,)
    second = _suggest(metrics[1], obs, default_labels)
    return second.suggested, (first, second)


# --- the decision ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScaleDecision:
    desired_replicas: int  # write to status.desiredReplicas and the target's spec.replicas
    computed_replicas: int  # before the scale-down hold
    min_replicas: int  # after the schedule
    max_replicas: int
    suggested_replicas: int
    metric: str | None  # the metric that gave ``suggested_replicas`` (None: minReplicas)
    reserved_replicas: int
    active_reservations: tuple[CapacityReservation, ...]
    scale_down_held_until: dt.datetime | None  # set when a scale-down is being held
    scaled_out: bool
    last_successful_scale_out_time: dt.datetime | None  # the new status value
    effective_time: dt.datetime | None  # the target's spec.effectiveTime (ephemeral targets only)
    requeue_after: dt.timedelta | None
    schedule: ScheduleState
    suggestions: tuple[Suggestion, ...]
    reasons: tuple[str, ...]

    @property
    def scheduled_overrides_summary(self) -> str | None:
        return self.schedule.summary

    @property
    def held(self) -> bool:
        return self.scale_down_held_until is not None


def desired_replicas(
    spec: HorizontalRunnerAutoscalerSpec,
    status: HorizontalRunnerAutoscalerStatus,
    now: dt.datetime,
    observations: Observations,
    *,
    default_scale_down_delay: dt.timedelta = DEFAULT_SCALE_DOWN_DELAY,
    default_labels: Collection[str] = (),
    count_jobs_twice: bool = False,
) -> ScaleDecision:
    """ARC's HRA decision for ``now`` (see the module docstring). Raises :class:`AutoscaleError`.

    A job known by its id is one job, whichever path saw it: when the suggestion comes from
    ``TotalNumberOfQueuedAndInProgressWorkflowRuns``, reservations named after a job that the metric
    already counted add nothing. ``count_jobs_twice=True`` is ARC's sum (every live reservation on
    top of the metric's count)."""
    if now.tzinfo is None:
        raise AutoscaleError("now must be timezone-aware")
    if spec.max_replicas is None:
        raise AutoscaleError("maxReplicas is required")
    max_replicas = max(spec.max_replicas, 0)
    reasons: list[str] = []

    try:
        schedule = evaluate_schedule(spec.scheduled_overrides, spec.effective_min_replicas, now)
    except ScheduleError as e:
        raise AutoscaleError(str(e)) from e
    min_replicas = schedule.min_replicas
    reasons.append(schedule.reason)

    value, suggestions = suggest_replicas(spec.metrics, observations, default_labels=default_labels)
    suggested, metric = _suggested(value, suggestions, min_replicas, reasons)
    counted = (
        suggestions[-1].job_ids
        if value is not None and isinstance(suggestions[-1], QueuedJobsSuggestion) and not count_jobs_twice
        else frozenset()
    )
    active, reserved = _reserved(spec.capacity_reservations, now, counted, reasons)
    computed = _clamped(suggested, reserved, min_replicas, max_replicas, reasons)
    desired, held_until = _held(spec, status, now, computed, max_replicas, default_scale_down_delay, reasons)

    before = status.desired_replicas
    last_out = status.last_successful_scale_out_time
    scaled_out = (before is None and desired > 1) or (before is not None and desired > before)

    effective_time: dt.datetime | None = None
    if observations.target.effective_ephemeral:
        times = [r.effective_time for r in spec.capacity_reservations if is_live(r) and r.effective_time]
        effective_time = max(times, default=None)

    wake = [r.expiration_time for r in active if r.expiration_time is not None]
    if schedule.next_transition is not None:
        wake.append(schedule.next_transition.at)
    if held_until is not None:
        wake.append(held_until)

    return ScaleDecision(
        desired_replicas=desired,
        computed_replicas=computed,
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        suggested_replicas=suggested,
        metric=metric,
        reserved_replicas=reserved,
        active_reservations=active,
        scale_down_held_until=held_until,
        scaled_out=scaled_out,
        last_successful_scale_out_time=now if scaled_out else last_out,
        effective_time=effective_time,
        requeue_after=min(wake) - now if wake else None,
        schedule=schedule,
        suggestions=suggestions,
        reasons=tuple(reasons),
    )


def _suggested(
    value: int | None, suggestions: tuple[Suggestion, ...], min_replicas: int, reasons: list[str]
) -> tuple[int, str | None]:
    """Step 2: the suggested replicas and the metric that gave them (``None``: minReplicas)."""
    reasons.extend(s.reason for s in suggestions)
    if value is not None:
        return value, suggestions[-1].metric
    if not suggestions:
        reasons.append(f"no metrics: suggested = minReplicas {min_replicas}")
    else:
        reasons.append(f"{suggestions[0].metric} suggests 0 or less: suggested = minReplicas {min_replicas}")
    return min_replicas, None


def _reserved(
    reservations: Sequence[CapacityReservation],
    now: dt.datetime,
    counted: frozenset[int],
    reasons: list[str],
) -> tuple[tuple[CapacityReservation, ...], int]:
    """Step 3: the active reservations and the replicas they add (jobs in ``counted`` add none)."""
    active = tuple(r for r in reservations if is_active(r, now) and is_live(r))
    overlap = tuple(r for r in active if job_of(r) in counted)
    reserved = sum(r.replicas or 0 for r in active if job_of(r) not in counted)
    expired = sum(1 for r in reservations if is_live(r) and not is_active(r, now))
    if active or expired:
        names = ", ".join(display_name(r) for r in active) or "none"
        reasons.append(
            f"{reserved} replicas reserved by {len(active)} capacity reservations ({names}); "
            f"{expired} expired"
            + (f"; {len(overlap)} of their jobs already counted by {TOTAL_JOBS}" if overlap else "")
        )
    return active, reserved


def _clamped(suggested: int, reserved: int, min_replicas: int, max_replicas: int, reasons: list[str]) -> int:
    """Step 4: suggested + reserved, raised to min and capped at max."""
    total = suggested + reserved
    computed = max(total, min_replicas)
    if computed > max_replicas:
        computed = max_replicas
    reasons.append(
        f"desired = {suggested} suggested + {reserved} reserved = {total}, "
        f"within minReplicas {min_replicas} and maxReplicas {max_replicas}: {computed}"
    )
    if min_replicas > max_replicas:
        reasons.append(f"minReplicas {min_replicas} exceeds maxReplicas {max_replicas}: maxReplicas wins")
    return computed


def _held(
    spec: HorizontalRunnerAutoscalerSpec,
    status: HorizontalRunnerAutoscalerStatus,
    now: dt.datetime,
    computed: int,
    max_replicas: int,
    default_delay: dt.timedelta,
    reasons: list[str],
) -> tuple[int, dt.datetime | None]:
    """Step 5: the desired replicas after the scale-down hold, and when the hold ends (``None``: none)."""
    before = status.desired_replicas
    delay_seconds = spec.scale_down_delay_seconds_after_scale_out
    delay = default_delay if delay_seconds is None else dt.timedelta(seconds=max(delay_seconds, 0))
    last_out = status.last_successful_scale_out_time
    if before is None or computed >= before or last_out is None or last_out + delay <= now:
        return computed, None
    held_until = last_out + delay
    desired = min(before, max_replicas)
    if desired <= computed:
        return computed, None  # the cap alone brought it down to the computed value
    reasons.append(
        f"scale-down from {before} to {computed} held until {format_go_time(held_until)} "
        f"({delay.total_seconds():g}s after the last scale-out at {format_go_time(last_out)})"
        + (f"; capped at maxReplicas {max_replicas}" if before > max_replicas else "")
    )
    return desired, held_until
