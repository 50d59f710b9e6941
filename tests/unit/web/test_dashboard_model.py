"""The dashboard's model (runnerd.views.dashboard): numbers built from metric samples."""

from __future__ import annotations

import math

from runnerd.reconcile.fleet import WaitPoint
from runnerd.views import dashboard as dm

T = {"namespace": "ci", "kind": "RunnerDeployment", "name": "cpu"}


def runner_samples(**states: float) -> list[dm.Sample]:
    return [
        (dm.RUNNERS, {**T, "state": s}, states.get(s, 0.0))
        for s in ("starting", "idle", "busy", "draining", "failed")
    ]


SAMPLES: list[dm.Sample] = [
    *runner_samples(idle=2, busy=1),
    (dm.RUNNERS, {"namespace": "ci", "kind": "RunnerSet", "name": "big", "state": "busy"}, 3.0),
    (dm.JOBS_QUEUED, T, 4.0),
    (dm.JOBS_RUNNING, T, 1.0),
    (dm.GPU_RUNNERS, T, 0.0),
    (dm.GPUS_REQUESTED, T, 0.0),
    (dm.GPU_RESERVED_SECONDS + "_total", T, 7200.0),
    (dm.GPU_BUSY_SECONDS + "_total", T, 3600.0),
    (dm.TARGET_AUTOSCALER, {**T, "horizontalrunnerautoscaler": "cpu-hra"}, 1.0),
    (dm.HRA_MIN, {"horizontalrunnerautoscaler": "cpu-hra", "namespace": "ci"}, 1.0),
    (dm.HRA_MAX, {"horizontalrunnerautoscaler": "cpu-hra", "namespace": "ci"}, 4.0),
    (dm.HRA_DESIRED, {"horizontalrunnerautoscaler": "cpu-hra", "namespace": "ci"}, 3.0),
    (dm.RD_REPLICAS, {"runnerdeployment": "cpu", "namespace": "ci"}, 3.0),
    (dm.RS_REPLICAS, {"runnerset": "big", "namespace": "ci"}, 5.0),
    (dm.QUEUE_DURATION + "_bucket", {"le": "1.0", "repository": "a"}, 2.0),
    (dm.QUEUE_DURATION + "_bucket", {"le": "1.0", "repository": "b"}, 2.0),
    (dm.QUEUE_DURATION + "_bucket", {"le": "10.0", "repository": "a"}, 4.0),
    (dm.QUEUE_DURATION + "_bucket", {"le": "10.0", "repository": "b"}, 4.0),
    (dm.QUEUE_DURATION + "_bucket", {"le": "+Inf", "repository": "a"}, 4.0),
    (dm.QUEUE_DURATION + "_bucket", {"le": "+Inf", "repository": "b"}, 4.0),
    (dm.QUEUE_DURATION + "_count", {"repository": "a"}, 4.0),
    (dm.QUEUE_DURATION + "_count", {"repository": "b"}, 4.0),
    (dm.QUEUE_WAIT_RECENT, {"quantile": "0.5"}, 0.75),
    (dm.QUEUE_WAIT_RECENT_JOBS, {}, 2.0),
    (dm.QUEUE_WAIT_WINDOW, {}, 300.0),
    (dm.JOBS_COMPLETED, {"repository": "a"}, 5.0),
    (dm.RATE_LIMIT, {"resource": "core"}, 5000.0),
    (dm.RATE_LIMIT_REMAINING, {"resource": "core"}, 4321.0),
    (dm.RATE_LIMIT_RESET, {"resource": "core"}, 1_800_000_000.0),
    (dm.API_CALLS, {"endpoint": "GET /a", "status": "200"}, 10.0),
    (dm.API_CALLS, {"endpoint": "GET /a", "status": "304"}, 30.0),
    (dm.API_CALLS, {"endpoint": "POST /b", "status": "201"}, 50.0),
    (dm.API_RETRIES, {"endpoint": "GET /a"}, 1.0),
]


def test_targets_have_every_number_with_its_metric() -> None:
    model = dm.build(SAMPLES, generated_at=1.0)
    cpu, big = model["targets"]  # sorted: ci/RunnerDeployment/cpu, ci/RunnerSet/big
    assert (cpu["kind"], cpu["name"], big["kind"], big["name"]) == (
        "RunnerDeployment",
        "cpu",
        "RunnerSet",
        "big",
    )
    assert cpu["runners"]["idle"] == {"v": 2.0, "m": dm.RUNNERS, "l": {**T, "state": "idle"}}
    assert cpu["desired"] == {
        "v": 3.0,
        "m": dm.RD_REPLICAS,
        "l": {"runnerdeployment": "cpu", "namespace": "ci"},
    }
    assert big["desired"]["v"] == 5.0
    assert big["desired"]["m"] == dm.RS_REPLICAS
    assert (cpu["queued"]["v"], cpu["running"]["v"]) == (4.0, 1.0)
    assert (cpu["gpu_reserved_seconds"]["v"], cpu["gpu_busy_seconds"]["v"]) == (7200.0, 3600.0)
    assert cpu["hras"] == [
        {
            "name": "cpu-hra",
            "min": {
                "v": 1.0,
                "m": dm.HRA_MIN,
                "l": {"horizontalrunnerautoscaler": "cpu-hra", "namespace": "ci"},
            },
            "max": {
                "v": 4.0,
                "m": dm.HRA_MAX,
                "l": {"horizontalrunnerautoscaler": "cpu-hra", "namespace": "ci"},
            },
            "desired": {
                "v": 3.0,
                "m": dm.HRA_DESIRED,
                "l": {"horizontalrunnerautoscaler": "cpu-hra", "namespace": "ci"},
            },
        }
    ]
    # a series the registry lacks reads as 0 for counts, with its metric still named
    assert big["queued"] == {
        "v": 0.0,
        "m": dm.JOBS_QUEUED,
        "l": {"namespace": "ci", "kind": "RunnerSet", "name": "big"},
    }
    assert big["hras"] == []


def test_totals_sum_over_targets() -> None:
    totals = dm.build(SAMPLES, generated_at=1.0)["totals"]
    assert totals["runners"]["busy"] == {"v": 4.0, "m": dm.RUNNERS, "l": {"state": "busy"}}
    assert totals["queued"]["v"] == 4.0
    assert totals["completed"]["v"] == 5.0


def test_queue_wait_all_time_from_the_summed_histogram_and_recent_from_the_gauges() -> None:
    model = dm.build(SAMPLES, generated_at=1.0, points=[WaitPoint(10.0, 0.5, None, 1)])
    wait = model["queue_wait"]
    # 8 observations: 4 in (0,1], 4 in (1,10]: p50 is the 4th, at the top of the first bucket
    assert wait["all"]["p50"] == {"v": 1.0, "m": dm.QUEUE_DURATION, "l": {}, "q": 0.5}
    assert math.isclose(wait["all"]["p95"]["v"], 1 + 9 * (7.6 - 4) / 4)
    assert wait["all"]["count"]["v"] == 8.0
    assert wait["recent"]["p50"] == {"v": 0.75, "m": dm.QUEUE_WAIT_RECENT, "l": {"quantile": "0.5"}}
    assert wait["recent"]["p95"]["v"] is None  # no series: nothing started in the window
    assert wait["recent"]["jobs"]["v"] == 2.0
    assert wait["series"] == [[10.0, 0.5, None, 1]]
    assert model["window"] == 300.0


def test_github_budget_and_calls_per_endpoint() -> None:
    github = dm.build(SAMPLES, generated_at=1.0)["github"]
    (core,) = github["rate_limits"]
    assert core["resource"] == "core"
    assert (core["remaining"]["v"], core["limit"]["v"], core["reset_at"]["v"]) == (4321.0, 5000.0, 1.8e9)
    assert core["paused_until"] is None
    first, second = github["endpoints"]
    assert first["endpoint"] == "POST /b"  # most calls first
    assert second["calls"] == {"v": 40.0, "m": dm.API_CALLS, "l": {"endpoint": "GET /a"}}
    assert [s["l"]["status"] for s in second["statuses"]] == ["304", "200"]
    assert github["calls"]["v"] == 90.0
    assert github["retries"]["v"] == 1.0


def test_an_empty_registry_gives_an_empty_page() -> None:
    model = dm.build([], generated_at=5.0, interval=2.0)
    assert model["targets"] == []
    assert model["github"]["rate_limits"] == []
    assert model["github"]["endpoints"] == []
    assert model["queue_wait"]["all"]["p50"]["v"] is None
    assert model["totals"]["runners"]["idle"]["v"] == 0.0
    assert (model["generated_at"], model["interval"], model["window"]) == (5.0, 2.0, None)


def test_samples_sum_matches_label_subsets() -> None:
    s = dm.Samples(SAMPLES)
    assert s.sum(dm.RUNNERS, {"state": "busy"}) == 4.0
    assert s.sum(dm.RUNNERS, {"state": "nope"}) is None
    assert dm.RUNNERS in s.names()
