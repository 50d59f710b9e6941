"""The fleet model (runnerd.reconcile.fleet): runner states, targets, GPU time, queue-wait quantiles."""

from __future__ import annotations

import datetime as dt
import math

import pytest

from runnerd.reconcile import fleet
from runnerd.reconcile.fleet import (
    BUSY,
    DRAINING,
    FAILED,
    IDLE,
    STARTING,
    GpuLedger,
    QueueWaitSeries,
    RunnerInfo,
    histogram_quantile,
    pod_gpus,
    runner_state,
)
from tests.unit.web import objects as o

NOW = dt.datetime(2026, 1, 1, 12, 5, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("runner", "pod", "state"),
    [
        (o.runner("r", "rd"), None, STARTING),
        (o.runner("r", "rd"), o.pod("r", phase="Pending", node=None), STARTING),
        (o.runner("r", "rd", "Idle"), o.pod("r"), IDLE),
        (o.runner("r", "rd", "Running"), o.pod("r", ready=False), BUSY),
        # the pod's job signal (not Ready while the runner runs) is ahead of the Runner's status
        (o.runner("r", "rd", "Idle"), o.pod("r", ready=False), BUSY),
        (o.runner("r", "rd"), o.pod("r", ready=False), STARTING),
        (o.runner("r", "rd", "Failed"), o.pod("r"), FAILED),
        (o.runner("r", "rd", "Running", deleting=True), o.pod("r"), DRAINING),
        (o.runner("r", "rd", "Idle"), o.pod("r", deleting=True), DRAINING),
        # an ephemeral runner whose job is done: the Runner still says Running until it is removed
        (o.runner("r", "rd", "Running"), o.pod("r", exit_code=0), DRAINING),
        (o.runner("r", "rd", "Running"), o.pod("r", exit_code=3), FAILED),
        (o.runner("r", "rd", "Idle"), o.pod("r", phase="Failed", exit_code=137), FAILED),
        # RunnerSet runners have no Runner object: the pod's readiness says busy (runnerd's image)
        (None, o.runnerset_pod("s", "big"), IDLE),
        (None, o.runnerset_pod("s", "big", ready=False), BUSY),
        (None, o.runnerset_pod("s", "big", phase="Pending", node=None), STARTING),
        (None, o.runnerset_pod("s", "big", scheduled=False, phase="Pending", node=None), STARTING),
        (None, None, STARTING),
    ],
)
def test_runner_state(runner: dict[str, object] | None, pod: dict[str, object] | None, state: str) -> None:
    assert runner_state(runner, pod) == state


def test_runner_state_when_the_statefulset_is_deleted() -> None:
    assert runner_state(None, o.runnerset_pod("s", "big"), deleting=True) == DRAINING


def test_pod_gpus_counts_requests_and_limits_and_init_containers() -> None:
    pod = o.pod("p", gpus=2)
    assert pod_gpus(pod) == 2
    pod["spec"]["containers"].append({"name": "docker", "resources": {"requests": {"nvidia.com/gpu": 1}}})
    assert pod_gpus(pod) == 3
    pod["spec"]["initContainers"] = [{"name": "setup", "resources": {"limits": {"nvidia.com/gpu": "4"}}}]
    assert pod_gpus(pod) == 4
    assert pod_gpus(o.pod("cpu")) == 0
    assert pod_gpus(None) == 0


def test_snapshot_of_a_small_fleet() -> None:
    snap = fleet.snapshot(**o.fleet_objects(), now=NOW)
    by_name = {t.name: t for t in snap.targets}
    assert [t.key for t in snap.targets] == [
        ("ci", "RunnerDeployment", "cpu"),
        ("ci", "RunnerDeployment", "gpu"),
        ("ci", "RunnerSet", "big"),
    ]
    cpu, gpu, big = by_name["cpu"], by_name["gpu"], by_name["big"]
    assert cpu.runners == {STARTING: 0, IDLE: 1, BUSY: 1, DRAINING: 1, FAILED: 1}
    assert (cpu.desired, cpu.current, cpu.ready) == (2, 3, 2)
    # 3 live job reservations (job-4 completed: replicas 0), 1 busy runner: 2 jobs wait
    assert (cpu.reserved, cpu.running_jobs, cpu.queued_jobs) == (3, 1, 2)
    assert cpu.hra == "cpu-hra"
    assert (cpu.scope, cpu.labels) == ("octo-org/app", ("self-hosted", "linux"))
    assert gpu.runners[BUSY] == 1
    assert gpu.runners[STARTING] == 1
    assert (gpu.gpu_runners, gpu.gpus, gpu.queued_jobs) == (2, 2, 0)
    assert big.runners == {STARTING: 0, IDLE: 1, BUSY: 1, DRAINING: 0, FAILED: 0}
    assert (big.gpu_runners, big.gpus, big.hra, big.scope) == (1, 2, None, "octo-org")
    hras = {h.name: h for h in snap.hras}
    assert hras["gpu-hra"].schedule == "min 1 9:00-17:00"
    assert hras["cpu-hra"].triggers == ("webhook",)
    assert (hras["cpu-hra"].min_replicas, hras["cpu-hra"].max_replicas, hras["cpu-hra"].desired_replicas) == (
        1,
        4,
        2,
    )


def test_expired_and_future_reservations_do_not_count() -> None:
    hra = o.hra(
        "h",
        "cpu",
        reservations=[
            o.reservation(1, expires="2026-01-01T12:04:59Z"),
            {"name": "job-2", "effectiveTime": "2026-01-01T12:10:00Z", "replicas": 1,
             "expirationTime": "2026-01-01T13:00:00Z"},
            {"expirationTime": "2026-01-01T12:30:00Z", "replicas": 2},  # ARC's unnamed reservation
            {"name": "bad", "expirationTime": "soon", "replicas": 1},
        ],
    )  # fmt: skip
    snap = fleet.snapshot(deployments=[o.rd("cpu")], hras=[hra], now=NOW)
    assert snap.targets[0].reserved == 2
    assert snap.targets[0].runners == dict.fromkeys(fleet.STATES, 0)


def test_runners_without_a_deployment_and_statefulsets_without_pods() -> None:
    standalone = o.runner("solo", None, "Idle")
    snap = fleet.snapshot(
        runners=[standalone],
        pods=[o.pod("solo")],
        runner_sets=[o.runnerset("big", 2)],
        stateful_sets=[o.statefulset("big-x", "big"), o.statefulset("big-y", "big", deleting=True)],
        now=NOW,
    )
    keys = {t.key: t for t in snap.targets}
    assert keys[("ci", "Runner", "solo")].runners[IDLE] == 1
    assert keys[("ci", "Runner", "solo")].desired is None
    big = keys[("ci", "RunnerSet", "big")]
    assert big.runners[STARTING] == 1
    assert big.runners[DRAINING] == 1
    assert {r.name for r in snap.runners} == {"solo", "big-x-0", "big-y-0"}


def test_snapshot_needs_an_aware_time() -> None:
    with pytest.raises(ValueError, match="timezone"):
        fleet.snapshot(now=dt.datetime(2026, 1, 1))


def _info(name: str, state: str, gpus: int = 1, holds: bool = True, target: str = "gpu") -> RunnerInfo:
    return RunnerInfo("ci", name, ("ci", "RunnerDeployment", target), state, gpus=gpus, holds_node=holds)


def test_gpu_ledger_counts_reserved_and_busy_time() -> None:
    ledger = GpuLedger()
    ledger.update(_info("a", STARTING, holds=False), 0.0)  # not on a node yet: nothing held
    ledger.update(_info("a", IDLE, gpus=2), 10.0)
    ledger.update(_info("a", IDLE, gpus=2), 15.0)  # no change: the interval goes on
    ledger.update(_info("a", BUSY, gpus=2), 20.0)
    ledger.update(_info("b", BUSY, gpus=0), 20.0)  # no GPU: ignored
    totals = ledger.totals(50.0)[("ci", "RunnerDeployment", "gpu")]
    assert (totals.reserved, totals.used) == (2 * 40.0, 2 * 30.0)
    assert ledger.holding == 1
    ledger.update(_info("a", DRAINING, gpus=2), 50.0)
    ledger.remove(("ci", "a"), 60.0)
    totals = ledger.totals(100.0)[("ci", "RunnerDeployment", "gpu")]
    assert (totals.reserved, totals.used) == (100.0, 60.0)
    assert ledger.holding == 0


def test_gpu_ledger_sync_forgets_runners_that_are_gone_and_keeps_totals() -> None:
    ledger = GpuLedger()
    ledger.sync([_info("a", BUSY), _info("b", IDLE, target="other")], 0.0)
    ledger.sync([_info("a", BUSY)], 10.0)
    totals = ledger.totals(20.0)
    assert totals[("ci", "RunnerDeployment", "gpu")].used == 20.0
    assert totals[("ci", "RunnerDeployment", "other")].reserved == 10.0
    assert totals[("ci", "RunnerDeployment", "other")].used == 0.0


def test_gpu_ledger_never_goes_backwards_with_a_clock_that_does() -> None:
    ledger = GpuLedger()
    ledger.update(_info("a", BUSY), 10.0)
    assert ledger.totals(5.0)[("ci", "RunnerDeployment", "gpu")].used == 0.0


INF = math.inf


@pytest.mark.parametrize(
    ("q", "buckets", "expected"),
    [
        (0.5, {1.0: 0, 2.0: 0, INF: 0}, None),
        (0.5, {}, None),
        # 10 observations: 4 in (0,1], 4 in (1,2], 2 in (2,5]: the 5th is 1/4 into (1,2]
        (0.5, {1.0: 4, 2.0: 8, 5.0: 10, INF: 10}, 1.25),
        (0.95, {1.0: 4, 2.0: 8, 5.0: 10, INF: 10}, 2 + 3 * (9.5 - 8) / 2),
        (0.5, {1.0: 10, INF: 10}, 0.5),
        # the rank falls in +Inf: the largest finite bound, as Prometheus answers
        (0.95, {1.0: 1, 2.0: 1, INF: 10}, 2.0),
        (1.0, {1.0: 3, 2.0: 4, INF: 4}, 2.0),
    ],
)
def test_histogram_quantile_as_prometheus(
    q: float, buckets: dict[float, float], expected: float | None
) -> None:
    assert histogram_quantile(q, buckets) == expected


def test_histogram_quantile_rejects_bad_quantiles() -> None:
    with pytest.raises(ValueError, match="quantile"):
        histogram_quantile(1.5, {1.0: 1, INF: 1})


def test_queue_wait_series_uses_the_window() -> None:
    series = QueueWaitSeries(window=60.0, keep=10)
    first = series.add(1000.0, {1.0: 0, 10.0: 0, INF: 0})
    assert (first.p50, first.p95, first.jobs) == (None, None, 0)
    p = series.add(1010.0, {1.0: 2, 10.0: 2, INF: 2})
    assert p.jobs == 2
    assert p.p50 == 0.5
    p = series.add(1050.0, {1.0: 2, 10.0: 4, INF: 4})
    assert p.jobs == 4
    # at 1070 the window (1010, 1070] starts after the 1010 reading: only the two slow jobs count
    p = series.add(1070.0, {1.0: 2, 10.0: 4, INF: 4})
    assert p.jobs == 2
    assert p.p50 == 5.5
    p = series.add(1200.0, {1.0: 2, 10.0: 4, INF: 4})
    assert (p.jobs, p.p50) == (0, None)
    assert series.last == p
    assert len(series.points) == 5


def test_queue_wait_series_survives_a_counter_reset() -> None:
    series = QueueWaitSeries(window=10.0)
    series.add(0.0, {1.0: 5, INF: 5})
    p = series.add(20.0, {1.0: 1, INF: 1})  # the process restarted: counts start again
    assert p.jobs == 1


def test_sum_buckets_adds_series_and_skips_non_buckets() -> None:
    series = [
        ({"le": "1.0", "repo": "a"}, 1.0),
        ({"le": "1.0", "repo": "b"}, 2.0),
        ({"le": "+Inf"}, 4.0),
        ({}, 9.0),
    ]
    assert fleet.sum_buckets(series) == {1.0: 3.0, INF: 4.0}
