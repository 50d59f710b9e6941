"""The cost counters, read at scrape time from the cost ledger the leader last wrote.

``runnerd_runner_seconds_total``, ``runnerd_cpu_core_seconds_total`` (``repository``, ``workflow``,
``pool``), ``runnerd_gpu_seconds_total`` (and ``gpu_product``) and ``runnerd_cost_total`` (and
``currency``) are the ledger's all-time totals (:func:`runnerd.reconcile.cost.all_time`), not
counters kept in this process: they survive a restart or a leader change because the ledger does
(docs/gpu-sizing.md, "Cost"). Their label values are the ledger's admitted values, bounded by its
``CardinalityLimits`` (later values are counted under ``(other)``).

Only the leader exports them (``source`` answers ``None`` elsewhere), so a sum over replicas never
counts a runner twice. No scrape reads the API server. Money excludes GPU time of a product without
a price (reported by ``runnerd status --cost`` as unpriced, never as free).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from decimal import Decimal

from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from runnerd.reconcile.cost import Ledger, PriceTable, Usage, all_time, money

CostSource = Callable[[], tuple[Ledger, PriceTable] | None]
"""The last written ledger and the prices it was written with; ``None``: export nothing."""

USAGE_LABELS = ("repository", "workflow", "pool")


class CostCollector(Collector):
    """The cost counters of :attr:`source`'s ledger (none while it answers ``None``)."""

    def __init__(self) -> None:
        self.source: CostSource = lambda: None

    def describe(self) -> Iterable[Metric]:
        return self._families(None)

    def collect(self) -> Iterable[Metric]:
        return self._families(self.source())

    @staticmethod
    def _families(snapshot: tuple[Ledger, PriceTable] | None) -> list[Metric]:
        runner = CounterMetricFamily(
            "runnerd_runner_seconds", "Runner pod seconds (runner container running)", labels=USAGE_LABELS
        )
        cpu = CounterMetricFamily(
            "runnerd_cpu_core_seconds", "Requested CPU cores times runner seconds", labels=USAGE_LABELS
        )
        gpu = CounterMetricFamily(
            "runnerd_gpu_seconds",
            "Requested GPUs (MIG slices count as GPUs) times runner seconds",
            labels=(*USAGE_LABELS, "gpu_product"),
        )
        cost = CounterMetricFamily(
            "runnerd_cost",
            "Money: CPU- and GPU-hours at the configured prices",
            labels=(*USAGE_LABELS, "currency"),
        )
        if snapshot is not None:
            ledger, prices = snapshot
            usage: dict[tuple[str, str, str], Usage] = {}
            cash: dict[tuple[str, str, str], Decimal] = {}
            for (repo, workflow, pool, product), u in sorted(all_time(ledger).items()):
                key = (repo, workflow, pool)
                usage[key] = usage.get(key, Usage()) + u
                cash[key] = cash.get(key, Decimal(0)) + money(u, product, prices)[0]
                if u.gpu_seconds:
                    gpu.add_metric([*key, product], float(u.gpu_seconds))
            for key, u in usage.items():
                runner.add_metric(list(key), float(u.runner_seconds))
                cpu.add_metric(list(key), float(u.cpu_seconds))
                cost.add_metric([*key, prices.currency], float(cash[key]))
        return [runner, cpu, gpu, cost]
