"""The cost counters: read at scrape time from the ledger the leader last wrote, with the ledger's
bounded label values, money per repository/workflow/pool, and nothing where no ledger is offered."""

from __future__ import annotations

from decimal import Decimal

import pytest

from runnerd.reconcile.cost import OTHER, CardinalityLimits, Ledger, PriceTable, RunnerFacts, fold
from runnerd.web.metrics import Metrics

D = Decimal
T0 = 1_796_000_400
H100, A100 = "NVIDIA-H100-80GB-HBM3", "NVIDIA-A100-SXM4-80GB"
PRICES = PriceTable("EUR", D("0.04"), {H100: D(3)})
FACTS = [
    RunnerFacts("a", "octo/ml", "train", "gpu", T0, T0 + 1800, D(16), D(4), H100),
    RunnerFacts("b", "octo/ml", "train", "gpu", T0, T0 + 3600, D(2), D(1), A100),  # no price: unpriced
    RunnerFacts("c", "octo/web", "ci", "cpu", T0, T0 + 3600, D(1), D(0), ""),
]
LEDGER = fold(Ledger(), FACTS, {"a", "b", "c"}, T0 + 7200)
TRAIN = {"repository": "octo/ml", "workflow": "train", "pool": "gpu"}
CI = {"repository": "octo/web", "workflow": "ci", "pool": "cpu"}


@pytest.mark.parametrize(
    ("name", "labels", "value"),
    [
        ("runnerd_runner_seconds_total", TRAIN, 1800 + 3600),
        ("runnerd_cpu_core_seconds_total", TRAIN, 16 * 1800 + 2 * 3600),
        ("runnerd_gpu_seconds_total", {**TRAIN, "gpu_product": H100}, 4 * 1800),
        ("runnerd_gpu_seconds_total", {**TRAIN, "gpu_product": A100}, 3600),
        # 8 core-hours + 2 core-hours at 0.04, 2 H100-hours at 3; the A100 hour has no price
        ("runnerd_cost_total", {**TRAIN, "currency": "EUR"}, 10 * 0.04 + 2 * 3),
        ("runnerd_runner_seconds_total", CI, 3600),
        ("runnerd_cost_total", {**CI, "currency": "EUR"}, 0.04),
        ("runnerd_gpu_seconds_total", {**CI, "gpu_product": ""}, None),  # no GPU, no series
    ],
)
def test_counters_are_the_ledgers_all_time_totals(
    name: str, labels: dict[str, str], value: float | None
) -> None:
    metrics = Metrics()
    metrics.watch_cost(lambda: (LEDGER, PRICES))
    found = metrics.sample(name, labels)
    assert found == (pytest.approx(value) if value is not None else None)


def test_nothing_is_exported_without_a_ledger() -> None:
    metrics = Metrics()
    assert metrics.sample("runnerd_runner_seconds_total", TRAIN) is None
    assert b"# TYPE runnerd_cost_total counter" in metrics.render()  # declared, no series
    assert metrics.cost_snapshot() is None


def test_label_values_are_bounded_by_the_ledger() -> None:
    facts = [RunnerFacts(str(i), f"octo/r{i}", "ci", "cpu", T0, T0 + 60, D(1)) for i in range(5)]
    ledger = fold(Ledger(), facts, set(), T0 + 120, CardinalityLimits(repository=2))
    metrics = Metrics()
    metrics.watch_cost(lambda: (ledger, PRICES))
    repos = {
        s.labels["repository"]
        for f in metrics.families()
        if f.name == "runnerd_runner_seconds"
        for s in f.samples
    }
    assert repos == {"octo/r0", "octo/r1", OTHER}
    assert (
        metrics.sample("runnerd_runner_seconds_total", {"repository": OTHER, "workflow": "ci", "pool": "cpu"})
        == 180
    )
