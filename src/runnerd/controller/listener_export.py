"""The running listeners' metrics on the process's ``/metrics``, under ARC's names (reference §15.1).

:class:`ListenerCollector` is a Prometheus collector read at scrape time: every running listener's
:meth:`~runnerd.controller.listener_metrics.ListenerMetrics.samples`, grouped into one family per
name, so a stopped listener's series vanish with it. Registered once per metrics registry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from runnerd.controller.listener_metrics import BUCKETS, Histogram, ListenerMetrics, Sample

HELP = {
    "gha_assigned_jobs": "Number of jobs assigned to this scale set",
    "gha_running_jobs": "Number of jobs running (or about to run)",
    "gha_registered_runners": "Number of runners registered by the scale set",
    "gha_busy_runners": "Number of registered runners running a job",
    "gha_idle_runners": "Number of registered runners not running a job",
    "gha_min_runners": "Minimum number of runners",
    "gha_max_runners": "Maximum number of runners",
    "gha_desired_runners": "Number of runners desired by the scale set",
    "gha_started_jobs_total": "Total number of jobs started",
    "gha_completed_jobs_total": "Total number of jobs completed",
    "gha_job_startup_duration_seconds": "Time spent waiting for a job to start on a runner",
    "gha_job_execution_duration_seconds": "Time spent executing jobs",
}


class ListenerCollector(Collector):
    """See the module docstring. ``source`` yields the running listeners' metrics."""

    def __init__(self, source: Callable[[], Iterable[ListenerMetrics]]) -> None:
        self.source = source

    def describe(self) -> Iterable[Metric]:
        return ()

    def collect(self) -> Iterator[Metric]:
        families: dict[str, Metric] = {}
        for metrics in self.source():
            for sample in metrics.samples():
                family = families.get(sample.name)
                if family is None:
                    family = families[sample.name] = _family(sample)
                _add(family, sample)
        yield from families.values()


def _family(sample: Sample) -> Metric:
    name = sample.name
    labels = [k for k, _ in sample.labels]
    text = HELP.get(name, f"runnerd listener: {name.removeprefix('runnerd_listener_')}")
    if sample.kind == "gauge":
        return GaugeMetricFamily(name, text, labels=labels)
    if sample.kind == "counter":
        return CounterMetricFamily(name.removesuffix("_total"), text, labels=labels)
    return HistogramMetricFamily(name, text, labels=labels)


def _add(family: Metric, sample: Sample) -> None:
    values = [v for _, v in sample.labels]
    if isinstance(family, HistogramMetricFamily):
        assert isinstance(sample.value, Histogram)
        hist = sample.value
        buckets = [(str(float(b)), float(n)) for b, n in zip(BUCKETS, hist.counts, strict=True)]
        buckets.append(("+Inf", float(hist.total)))
        family.add_metric(values, buckets, hist.sum)
    elif isinstance(family, GaugeMetricFamily | CounterMetricFamily):
        assert isinstance(sample.value, float)
        family.add_metric(values, sample.value)
