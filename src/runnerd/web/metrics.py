"""Prometheus metrics of one runnerd process, in its own registry (no global state).

ARC's metric names and label names are used wherever ARC has an equivalent, so that existing
dashboards keep working; metrics ARC lacks are prefixed ``runnerd_``. ``docs/metrics.md`` lists them.

Three kinds of sources:

* gauges derived from objects (HRA min/max/desired, RunnerDeployment/RunnerSet replicas) are read
  from the informer caches at scrape time (:meth:`Metrics.watch_objects`), so they never go stale and
  vanish with their object;
* the GitHub budget (rate-limit buckets, calls by endpoint and status, rate-limit waits) is read at
  scrape time from a :class:`BudgetSnapshot` callback (:meth:`Metrics.watch_github`);
* the cost counters are read at scrape time from the leader's last written cost ledger
  (:meth:`Metrics.watch_cost`, :mod:`runnerd.web.cost_metrics`);
* everything else is recorded by the autoscaler and the webhook server as it happens; those
  families are declared in :mod:`runnerd.web.metric_families`.
"""

from __future__ import annotations

import bisect
import contextlib
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from runnerd.reconcile.cost import Ledger, PriceTable
from runnerd.web import metric_families as f
from runnerd.web.cost_metrics import CostCollector, CostSource
from runnerd.web.metric_families import HRA_LABELS, JOB_LABELS

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass(frozen=True)
class RateLimitReading:
    """One rate-limit bucket (``core``, ``actions_runner_registration``, ...), as last read."""

    resource: str
    limit: int
    remaining: int
    reset_at: float  # seconds since the epoch
    used: int | None = None


@dataclass(frozen=True)
class BudgetSnapshot:
    """The GitHub client's budget and counters (see :class:`runnerd.github.CallStatsSnapshot`)."""

    rate_limits: Sequence[RateLimitReading] = ()
    calls: Mapping[tuple[str, str], int] = field(default_factory=dict)
    retries: Mapping[str, int] = field(default_factory=dict)
    gate_waits: int = 0
    gate_wait_seconds: float = 0.0
    gate_rejections: int = 0
    paused_until: Mapping[str, float] = field(default_factory=dict)  # gate key -> epoch seconds


def _replicas(obj: Mapping[str, Any], default: int | None) -> int | None:
    value = (obj.get("spec") or {}).get("replicas")
    if value is None:
        return default
    return int(value)


class _ObjectGauges(Collector):
    """HRA, RunnerDeployment and RunnerSet gauges read from the informer caches at scrape time."""

    def __init__(self) -> None:
        self.hras: Callable[[], Iterable[Mapping[str, Any]]] = list
        self.deployments: Callable[[], Iterable[Mapping[str, Any]]] = list
        self.runner_sets: Callable[[], Iterable[Mapping[str, Any]]] = list

    def describe(self) -> Iterable[Metric]:
        return self.collect()

    def collect(self) -> Iterable[Metric]:
        mins = GaugeMetricFamily(
            "horizontalrunnerautoscaler_spec_min_replicas",
            "minReplicas of HorizontalRunnerAutoscaler",
            labels=HRA_LABELS,
        )
        maxs = GaugeMetricFamily(
            "horizontalrunnerautoscaler_spec_max_replicas",
            "maxReplicas of HorizontalRunnerAutoscaler",
            labels=HRA_LABELS,
        )
        desired = GaugeMetricFamily(
            "horizontalrunnerautoscaler_status_desired_replicas",
            "desiredReplicas of HorizontalRunnerAutoscaler",
            labels=HRA_LABELS,
        )
        for hra in self.hras():
            meta = hra.get("metadata") or {}
            labels = [str(meta.get("name", "")), str(meta.get("namespace", ""))]
            spec, status = hra.get("spec") or {}, hra.get("status") or {}
            if isinstance(spec.get("minReplicas"), int):
                mins.add_metric(labels, spec["minReplicas"])
            if isinstance(spec.get("maxReplicas"), int):
                maxs.add_metric(labels, spec["maxReplicas"])
            if isinstance(status.get("desiredReplicas"), int):
                desired.add_metric(labels, status["desiredReplicas"])
        rd = GaugeMetricFamily(
            "runnerdeployment_spec_replicas",
            "replicas of RunnerDeployment",
            labels=("runnerdeployment", "namespace"),
        )
        for obj in self.deployments():
            meta = obj.get("metadata") or {}
            value = _replicas(obj, 1)
            assert value is not None
            rd.add_metric([str(meta.get("name", "")), str(meta.get("namespace", ""))], value)
        rs = GaugeMetricFamily(
            "runnerset_spec_replicas", "replicas of RunnerSet", labels=("runnerset", "namespace")
        )
        for obj in self.runner_sets():
            meta = obj.get("metadata") or {}
            value = _replicas(obj, 1)
            assert value is not None
            rs.add_metric([str(meta.get("name", "")), str(meta.get("namespace", ""))], value)
        return [mins, maxs, desired, rd, rs]


class _GitHubBudget(Collector):
    """The GitHub budget read at scrape time."""

    def __init__(self) -> None:
        self.source: Callable[[], BudgetSnapshot] | None = None

    def describe(self) -> Iterable[Metric]:
        return self._families(BudgetSnapshot())

    def collect(self) -> Iterable[Metric]:
        return self._families(self.source() if self.source is not None else BudgetSnapshot())

    @staticmethod
    def _families(snap: BudgetSnapshot) -> list[Metric]:
        limit = GaugeMetricFamily(
            "github_rate_limit",
            "The maximum number of requests permitted per rate-limit window, by resource",
            labels=("resource",),
        )
        remaining = GaugeMetricFamily(
            "github_rate_limit_remaining",
            "The number of requests remaining in the current rate-limit window, by resource",
            labels=("resource",),
        )
        reset = GaugeMetricFamily(
            "runnerd_github_rate_limit_reset_timestamp_seconds",
            "When the resource's rate-limit window resets (seconds since the epoch)",
            labels=("resource",),
        )
        for r in snap.rate_limits:
            limit.add_metric([r.resource], r.limit)
            remaining.add_metric([r.resource], r.remaining)
            reset.add_metric([r.resource], r.reset_at)
        paused = GaugeMetricFamily(
            "runnerd_github_rate_limit_paused_until_timestamp_seconds",
            "While calls are held back by a rate limit: until when (gate key '*' holds every call)",
            labels=("resource",),
        )
        for key, until in sorted(snap.paused_until.items()):
            paused.add_metric([key], until)
        calls = CounterMetricFamily(
            "runnerd_github_api_calls",
            "GitHub API responses by endpoint template and status ('error': no response)",
            labels=("endpoint", "status"),
        )
        for (endpoint, status), n in sorted(snap.calls.items()):
            calls.add_metric([endpoint, status], n)
        retries = CounterMetricFamily(
            "runnerd_github_api_retries",
            "GitHub API calls retried, by endpoint template",
            labels=("endpoint",),
        )
        for endpoint, n in sorted(snap.retries.items()):
            retries.add_metric([endpoint], n)
        waits = CounterMetricFamily(
            "runnerd_github_rate_limit_waits", "GitHub API calls that waited for a rate limit to lift"
        )
        waits.add_metric([], snap.gate_waits)
        wait_s = CounterMetricFamily(
            "runnerd_github_rate_limit_wait_seconds", "Seconds GitHub API calls waited for rate limits"
        )
        wait_s.add_metric([], snap.gate_wait_seconds)
        rejected = CounterMetricFamily(
            "runnerd_github_rate_limit_rejections",
            "GitHub API calls refused at once because the rate limit would hold them too long",
        )
        rejected.add_metric([], snap.gate_rejections)
        return [limit, remaining, reset, paused, calls, retries, waits, wait_s, rejected]


class _ProcessGauges(Collector):
    """Leadership and orphaned registrations, read at scrape time (controller processes only)."""

    def __init__(self) -> None:
        self.leading: Callable[[], bool] | None = None
        self.orphans: Callable[[], tuple[int, int]] | None = None  # (seen in the last sweep, removed)

    def describe(self) -> Iterable[Metric]:
        return self.collect()

    def collect(self) -> Iterable[Metric]:
        leader = GaugeMetricFamily("runnerd_leader", "1 while this process runs the controllers (leads)")
        seen = GaugeMetricFamily(
            "runnerd_orphan_registrations", "GitHub runner registrations with no Runner, in the last sweep"
        )
        removed = CounterMetricFamily(
            "runnerd_orphan_registrations_removed", "Orphaned GitHub runner registrations removed"
        )
        if self.leading is not None:
            leader.add_metric([], 1 if self.leading() else 0)
        if self.orphans is not None:
            suspected, gone = self.orphans()
            seen.add_metric([], suspected)
            removed.add_metric([], gone)
        return [leader, seen, removed]


SizedJobCounts = Mapping[tuple[str, str, str], int]
"""``(namespace, pool, state) -> jobs`` of ``runnerd_sized_jobs``."""


class _SizedJobs(Collector):
    """``runnerd_sized_jobs``: the sized jobs of each pool by state, read at scrape time."""

    def __init__(self) -> None:
        self.source: Callable[[], SizedJobCounts] = dict

    def describe(self) -> Iterable[Metric]:
        return self.collect()

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(
            "runnerd_sized_jobs",
            "Sized jobs by pool and state (waiting, pending, placed, refused)",
            labels=("namespace", "pool", "state"),
        )
        for (namespace, pool, state), value in sorted(self.source().items()):
            family.add_metric((namespace, pool, state), value)
        yield family


class BucketTotals:
    """One histogram's cumulative bucket counts summed over its labels, kept as it is observed.

    What ``sum by (le) (..._bucket)`` says, read in O(buckets) whatever the number of label sets
    (the dashboard samples the job queue-wait histogram, which has a child per job name,
    repository and branch, every 2 s). Bounds as Prometheus's: an observation counts in the first
    bucket whose upper bound is at least the value, and in ``+Inf``.
    """

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(float(b) for b in bounds)
        self._counts = [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        self._counts[bisect.bisect_left(self.bounds, value)] += 1

    def cumulative(self) -> dict[float, float]:
        """Each upper bound (``inf`` last) to the observations at or below it."""
        out: dict[float, float] = {}
        total = 0
        for bound, count in zip((*self.bounds, math.inf), self._counts, strict=True):
            total += count
            out[bound] = float(total)
        return out


class Metrics:
    """Every metric of a runnerd process (controller or webhook server) in one registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self._objects = _ObjectGauges()
        self._github = _GitHubBudget()
        self._process = _ProcessGauges()
        self._sized = _SizedJobs()
        self._cost = CostCollector()
        for collector in (self._objects, self._github, self._process, self._sized, self._cost):
            r.register(collector)

        self.replicas_desired = f.REPLICAS_DESIRED.build(r)
        self.runners = f.RUNNERS.build(r)
        self.runners_registered = f.RUNNERS_REGISTERED.build(r)
        self.runners_busy = f.RUNNERS_BUSY.build(r)
        self.terminating_busy = f.TERMINATING_BUSY.build(r)
        self.necessary_replicas = f.NECESSARY_REPLICAS.build(r)
        self.workflow_runs_completed = f.WORKFLOW_RUNS_COMPLETED.build(r)
        self.workflow_runs_in_progress = f.WORKFLOW_RUNS_IN_PROGRESS.build(r)
        self.workflow_runs_queued = f.WORKFLOW_RUNS_QUEUED.build(r)
        self.workflow_runs_unknown = f.WORKFLOW_RUNS_UNKNOWN.build(r)
        self.reserved_replicas = f.RESERVED_REPLICAS.build(r)
        self.scale_down_held = f.SCALE_DOWN_HELD.build(r)
        self.reconciles = f.RECONCILES.build(r)
        self.job_queue_duration = f.JOB_QUEUE_DURATION.build(r)
        self.job_queue_waits = BucketTotals(f.JOB_DURATION_BUCKETS)
        """``job_queue_duration``'s buckets summed over its labels (not exported: the dashboard's)."""
        self.job_run_duration = f.JOB_RUN_DURATION.build(r)
        self.job_conclusions = f.JOB_CONCLUSIONS.build(r)
        self.jobs_queued = f.JOBS_QUEUED.build(r)
        self.jobs_started = f.JOBS_STARTED.build(r)
        self.jobs_completed = f.JOBS_COMPLETED.build(r)
        self.webhook_deliveries = f.WEBHOOK_DELIVERIES.build(r)
        self.webhook_request_duration = f.WEBHOOK_REQUEST_DURATION.build(r)
        self.jobs_unmatched = f.JOBS_UNMATCHED.build(r)
        self.reservation_writes = f.RESERVATION_WRITES.build(r)
        self.reservation_events = f.RESERVATION_EVENTS.build(r)
        self.webhook_to_pod_create = f.WEBHOOK_TO_POD_CREATE.build(r)
        self.runner_startup = f.RUNNER_STARTUP.build(r)
        self.poll_runs = f.POLL_RUNS.build(r)
        self.poll_jobs_recovered = f.POLL_JOBS_RECOVERED.build(r)
        self.poll_jobs_rechecked = f.POLL_JOBS_RECHECKED.build(r)
        self.poll_interval = f.POLL_INTERVAL.build(r)
        self.poll_repositories = f.POLL_REPOSITORIES.build(r)
        self.poll_budget_per_hour = f.POLL_BUDGET_PER_HOUR.build(r)
        self.audit_passes = f.AUDIT_PASSES.build(r)
        self.audit_redeliveries = f.AUDIT_REDELIVERIES.build(r)
        self.audit_healthy = f.AUDIT_HEALTHY.build(r)
        self.audit_hooks = f.AUDIT_HOOKS.build(r)
        self.audit_discoveries = f.AUDIT_DISCOVERIES.build(r)
        self.sized_jobs_refused = f.SIZED_JOBS_REFUSED.build(r)
        self.admission_wait = f.ADMISSION_WAIT.build(r)
        self.gpu_allocatable = f.GPU_ALLOCATABLE.build(r)
        self.gpu_requested = f.GPU_REQUESTED.build(r)
        self._hra_series: dict[tuple[str, str], set[tuple[str, ...]]] = {}

    # sources read at scrape time

    def watch_objects(
        self,
        *,
        hras: Callable[[], Iterable[Mapping[str, Any]]] | None = None,
        deployments: Callable[[], Iterable[Mapping[str, Any]]] | None = None,
        runner_sets: Callable[[], Iterable[Mapping[str, Any]]] | None = None,
    ) -> None:
        if hras is not None:
            self._objects.hras = hras
        if deployments is not None:
            self._objects.deployments = deployments
        if runner_sets is not None:
            self._objects.runner_sets = runner_sets

    def watch_github(self, source: Callable[[], BudgetSnapshot]) -> None:
        self._github.source = source

    def watch_sized_jobs(self, source: Callable[[], SizedJobCounts]) -> None:
        """``runnerd_sized_jobs`` from ``source`` at scrape time."""
        self._sized.source = source

    def watch_cost(self, source: CostSource) -> None:
        """The cost counters (and the dashboard's Cost table) from ``source``: the ledger as last
        written and its prices, ``None`` while this process does not lead."""
        self._cost.source = source

    def cost_snapshot(self) -> tuple[Ledger, PriceTable] | None:
        return self._cost.source()

    def watch_process(self, *, leading: Callable[[], bool], orphans: Callable[[], tuple[int, int]]) -> None:
        """``orphans``: registrations seen with no Runner in the last sweep, and removed so far."""
        self._process.leading = leading
        self._process.orphans = orphans

    def set_gpu_capacity(self, totals: Mapping[tuple[str, str], tuple[float, float]]) -> None:
        """``(resource, gpu_product) -> (allocatable, requested)``; series no longer present vanish."""
        for gauge in (self.gpu_allocatable, self.gpu_requested):
            gauge.clear()
        for (resource, product), (allocatable, requested) in totals.items():
            self.gpu_allocatable.labels(resource, product).set(allocatable)
            self.gpu_requested.labels(resource, product).set(requested)

    # per-HRA series

    def set_busy_observation(
        self,
        hra: tuple[str, str],
        target: Sequence[str],
        *,
        desired: int,
        runners: int,
        registered: int,
        busy: int,
        terminating_busy: int,
    ) -> None:
        """``target``: enterprise, organization, repository, kind, name (ARC's label values)."""
        labels = (*hra, *target)
        self._remember(hra, labels)
        self.replicas_desired.labels(*labels).set(desired)
        self.runners.labels(*labels).set(runners)
        self.runners_registered.labels(*labels).set(registered)
        self.runners_busy.labels(*labels).set(busy)
        self.terminating_busy.labels(*labels).set(terminating_busy)

    def set_jobs_observation(
        self,
        hra: tuple[str, str],
        target: Sequence[str],
        *,
        necessary: int,
        completed: int,
        in_progress: int,
        queued: int,
        unknown: int,
    ) -> None:
        labels = (*hra, *target)
        self._remember(hra, labels)
        self.necessary_replicas.labels(*labels).set(necessary)
        self.workflow_runs_completed.labels(*labels).set(completed)
        self.workflow_runs_in_progress.labels(*labels).set(in_progress)
        self.workflow_runs_queued.labels(*labels).set(queued)
        self.workflow_runs_unknown.labels(*labels).set(unknown)

    def set_decision(self, hra: tuple[str, str], *, reserved: int, held: bool) -> None:
        self._remember(hra, hra)
        self.reserved_replicas.labels(*hra).set(reserved)
        self.scale_down_held.labels(*hra).set(1 if held else 0)

    def forget_hra(self, hra: tuple[str, str]) -> None:
        """Drop every series of an HRA that is gone."""
        for labels in self._hra_series.pop(hra, set()):
            for gauge in self._per_hra_gauges(len(labels)):
                with contextlib.suppress(KeyError):
                    gauge.remove(*labels)

    def _per_hra_gauges(self, arity: int) -> list[Gauge]:
        if arity == len(HRA_LABELS):
            return [self.reserved_replicas, self.scale_down_held]
        return [
            self.replicas_desired,
            self.runners,
            self.runners_registered,
            self.runners_busy,
            self.terminating_busy,
            self.necessary_replicas,
            self.workflow_runs_completed,
            self.workflow_runs_in_progress,
            self.workflow_runs_queued,
            self.workflow_runs_unknown,
        ]

    def _remember(self, hra: tuple[str, str], labels: tuple[str, ...]) -> None:
        self._hra_series.setdefault(hra, set()).add(labels)

    # workflow_job events (ARC's actions metrics)

    def observe_job_event(
        self,
        *,
        action: str,
        labels: Mapping[str, str],
        conclusion: str | None,
        created_at: float | None,
        started_at: float | None,
        completed_at: float | None,
    ) -> None:
        """``labels``: values for :data:`~runnerd.web.metric_families.JOB_LABELS`."""
        values = [labels.get(name, "") for name in JOB_LABELS]
        if action == "queued":
            self.jobs_queued.labels(*values).inc()
        elif action == "in_progress":
            self.jobs_started.labels(*values).inc()
            wait = _span(created_at, started_at)
            if wait is not None:
                self.job_queue_duration.labels(*values).observe(wait)
                self.job_queue_waits.observe(wait)
        elif action == "completed":
            self.jobs_completed.labels(*values).inc()
            result = conclusion or ""
            self.job_conclusions.labels(*values, result).inc()
            run = _span(started_at, completed_at)
            if run is not None:
                self.job_run_duration.labels(*values, result).observe(run)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def families(self) -> Iterator[Metric]:
        """Every metric family (for tests and the benchmark)."""
        return iter(self.registry.collect())

    def sample(self, name: str, labels: Mapping[str, str] | None = None) -> float | None:
        value = self.registry.get_sample_value(name, dict(labels or {}))
        return None if value is None or math.isnan(value) else value


def _span(start: float | None, end: float | None) -> float | None:
    if start is None or end is None or end < start:
        return None
    return end - start
