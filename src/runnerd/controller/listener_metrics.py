"""The listener's metrics under ARC's names (reference §15.1), as plain in-memory values.

The web layer exposes them (e.g. as Prometheus collectors) by reading :meth:`ListenerMetrics.samples`;
nothing here does I/O. Scale-set gauges carry ARC's labels ``name, namespace, repository,
organization, enterprise``; job counters and histograms ``enterprise, organization, repository,
job_name, event_name`` (+ ``job_result`` for completed jobs). runnerd's own listener counters
(``runnerd_listener_*``) say how the session and the long poll fare.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Final

from runnerd.github.actions.models import ScaleSetJob, ScaleSetStatistics

Labels = tuple[tuple[str, str], ...]

#: ARC's default histogram buckets (seconds)
BUCKETS: Final = (
    0.01, 0.05, 0.1, 0.5, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 15, 18, 20, 25, 30, 40, 50, 60, 70, 80,
    90, 100, 110, 120, 150, 180, 210, 240, 300, 360, 420, 480, 540, 600, 900, 1200, 1800, 2400, 3000, 3600,
)  # fmt: skip

STATISTIC_GAUGES: Final = (
    ("gha_assigned_jobs", "total_assigned_jobs"),
    ("gha_running_jobs", "total_running_jobs"),
    ("gha_registered_runners", "total_registered_runners"),
    ("gha_busy_runners", "total_busy_runners"),
    ("gha_idle_runners", "total_idle_runners"),
)


@dataclass
class Histogram:
    """Cumulative-bucket histogram: ``counts[i]`` observations ≤ ``BUCKETS[i]``."""

    counts: list[int] = field(default_factory=lambda: [0] * len(BUCKETS))
    total: int = 0
    sum: float = 0.0

    def observe(self, value: float) -> None:
        for i in range(bisect.bisect_left(BUCKETS, value), len(BUCKETS)):
            self.counts[i] += 1
        self.total += 1
        self.sum += value


@dataclass(frozen=True)
class Sample:
    name: str
    kind: str  # "gauge" | "counter" | "histogram"
    labels: Labels
    value: float | Histogram


class ListenerMetrics:
    """One listener's metrics; ``scale_set_labels`` are ARC's (``name`` = the EphemeralRunnerSet's)."""

    def __init__(self, scale_set_labels: Mapping[str, str]) -> None:
        self._labels: Labels = tuple(sorted(scale_set_labels.items()))
        self._enterprise = scale_set_labels.get("enterprise", "")
        self.gauges: dict[str, float] = {}
        self.counters: Counter[tuple[str, Labels]] = Counter()
        self.histograms: dict[tuple[str, Labels], Histogram] = {}
        #: runnerd's own: polls, failed polls, sessions opened, session conflicts, reconnects
        self.listener: Counter[str] = Counter()

    def publish_statistics(self, stats: ScaleSetStatistics) -> None:
        for name, attr in STATISTIC_GAUGES:
            self.gauges[name] = float(getattr(stats, attr))

    def publish_bounds(self, min_runners: int, max_runners: int) -> None:
        self.gauges["gha_min_runners"] = float(min_runners)
        self.gauges["gha_max_runners"] = float(max_runners)

    def publish_desired(self, desired: int) -> None:
        self.gauges["gha_desired_runners"] = float(desired)

    def _job_labels(self, job: ScaleSetJob, *extra: tuple[str, str]) -> Labels:
        return (
            ("enterprise", self._enterprise),
            ("event_name", job.event_name),
            ("job_name", job.job_display_name),
            ("organization", job.owner_name),
            ("repository", job.repository_name),
            *extra,
        )

    def job_started(self, job: ScaleSetJob) -> None:
        labels = self._job_labels(job)
        self.counters[("gha_started_jobs_total", labels)] += 1
        if job.runner_assign_time is not None and job.scale_set_assign_time is not None:
            seconds = float(int(job.runner_assign_time - job.scale_set_assign_time))
            self._observe("gha_job_startup_duration_seconds", labels, seconds)

    def job_completed(self, job: ScaleSetJob) -> None:
        labels = self._job_labels(job, ("job_result", job.result))
        self.counters[("gha_completed_jobs_total", labels)] += 1
        if job.finish_time is not None and job.runner_assign_time is not None:
            seconds = float(int(job.finish_time - job.runner_assign_time))
            self._observe("gha_job_execution_duration_seconds", labels, seconds)

    def _observe(self, name: str, labels: Labels, value: float) -> None:
        self.histograms.setdefault((name, labels), Histogram()).observe(value)

    def samples(self) -> Iterator[Sample]:
        for name, value in sorted(self.gauges.items()):
            yield Sample(name, "gauge", self._labels, value)
        for (name, labels), count in sorted(self.counters.items()):
            yield Sample(name, "counter", labels, float(count))
        for (name, labels), hist in sorted(self.histograms.items(), key=lambda item: item[0]):
            yield Sample(name, "histogram", labels, hist)
        for name, count in sorted(self.listener.items()):
            yield Sample(f"runnerd_listener_{name}_total", "counter", self._labels, float(count))
