"""The metrics registry: ARC's names and labels, runnerd's histograms, scrape-time sources, no globals."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from prometheus_client import REGISTRY

from runnerd.reconcile.fleet import sum_buckets
from runnerd.web.metric_families import HRA_LABELS, HRA_TARGET_LABELS, JOB_DURATION_BUCKETS, JOB_LABELS
from runnerd.web.metrics import BudgetSnapshot, Metrics, RateLimitReading
from runnerd.web.server import Address, health_app, parse_address

pytestmark = pytest.mark.timeout(20)

ARC_NAMES = {
    "horizontalrunnerautoscaler_spec_min_replicas",
    "horizontalrunnerautoscaler_spec_max_replicas",
    "horizontalrunnerautoscaler_status_desired_replicas",
    "horizontalrunnerautoscaler_replicas_desired",
    "horizontalrunnerautoscaler_runners",
    "horizontalrunnerautoscaler_runners_registered",
    "horizontalrunnerautoscaler_runners_busy",
    "horizontalrunnerautoscaler_terminating_busy",
    "horizontalrunnerautoscaler_necessary_replicas",
    "horizontalrunnerautoscaler_workflow_runs_completed",
    "horizontalrunnerautoscaler_workflow_runs_in_progress",
    "horizontalrunnerautoscaler_workflow_runs_queued",
    "horizontalrunnerautoscaler_workflow_runs_unknown",
    "runnerdeployment_spec_replicas",
    "runnerset_spec_replicas",
    "github_rate_limit",
    "github_rate_limit_remaining",
    "github_workflow_job_queue_duration_seconds",
    "github_workflow_job_run_duration_seconds",
    "github_workflow_job_conclusions",  # _total in the exposition
    "github_workflow_jobs_queued",
    "github_workflow_jobs_started",
    "github_workflow_jobs_completed",
}
RUNNERD_HISTOGRAMS = {
    "runnerd_webhook_to_pod_create_seconds",
    "runnerd_runner_startup_seconds",
    "github_workflow_job_queue_duration_seconds",
}


def hra(name: str, ns: str, *, lo: int | None, hi: int, desired: int | None) -> dict[str, object]:
    spec: dict[str, object] = {"maxReplicas": hi, "scaleTargetRef": {"name": "rd"}}
    if lo is not None:
        spec["minReplicas"] = lo
    status = {} if desired is None else {"desiredReplicas": desired}
    return {"metadata": {"name": name, "namespace": ns}, "spec": spec, "status": status}


def test_every_arc_metric_is_registered_in_the_instance_registry() -> None:
    metrics = Metrics()
    names = {family.name for family in metrics.families()}
    assert names >= ARC_NAMES
    types = {family.name: family.type for family in metrics.families()}
    assert all(types[name] == "histogram" for name in RUNNERD_HISTOGRAMS)
    # nothing leaks into prometheus_client's global registry, and two instances do not collide
    assert not ARC_NAMES & {family.name for family in REGISTRY.collect()}
    other = Metrics()
    other.jobs_queued.labels(*[""] * len(JOB_LABELS)).inc()
    assert metrics.sample("github_workflow_jobs_queued_total", dict.fromkeys(JOB_LABELS, "")) is None


def test_object_gauges_are_read_from_the_caches_at_scrape_time() -> None:
    metrics = Metrics()
    hras = [hra("a", "ns", lo=0, hi=5, desired=2), hra("b", "ns", lo=None, hi=3, desired=None)]
    rds = [{"metadata": {"name": "rd", "namespace": "ns"}, "spec": {"replicas": 2}}]
    metrics.watch_objects(hras=lambda: hras, deployments=lambda: rds)
    labels = {"horizontalrunnerautoscaler": "a", "namespace": "ns"}
    assert metrics.sample("horizontalrunnerautoscaler_spec_min_replicas", labels) == 0
    assert metrics.sample("horizontalrunnerautoscaler_spec_max_replicas", labels) == 5
    assert metrics.sample("horizontalrunnerautoscaler_status_desired_replicas", labels) == 2
    b = {"horizontalrunnerautoscaler": "b", "namespace": "ns"}
    assert (
        metrics.sample("horizontalrunnerautoscaler_spec_min_replicas", b) is None
    )  # as ARC: unset, unexported
    assert (
        metrics.sample("runnerdeployment_spec_replicas", {"runnerdeployment": "rd", "namespace": "ns"}) == 2
    )
    hras.pop(0)  # deleted: gone at the next scrape
    assert metrics.sample("horizontalrunnerautoscaler_spec_max_replicas", labels) is None


def test_per_hra_series_and_forgetting_them() -> None:
    metrics = Metrics()
    key = ("hra", "ns")
    target = ("", "octo-org", "", "RunnerDeployment", "rd")
    metrics.set_busy_observation(key, target, desired=4, runners=3, registered=3, busy=2, terminating_busy=1)
    metrics.set_jobs_observation(key, target, necessary=5, completed=1, in_progress=2, queued=3, unknown=0)
    metrics.set_decision(key, reserved=2, held=True)
    labels = dict(zip(HRA_TARGET_LABELS, (*key, *target), strict=True))
    assert metrics.sample("horizontalrunnerautoscaler_runners_busy", labels) == 2
    assert metrics.sample("horizontalrunnerautoscaler_terminating_busy", labels) == 1
    assert metrics.sample("horizontalrunnerautoscaler_necessary_replicas", labels) == 5
    assert metrics.sample("horizontalrunnerautoscaler_workflow_runs_queued", labels) == 3
    short = dict(zip(HRA_LABELS, key, strict=True))
    assert metrics.sample("runnerd_horizontalrunnerautoscaler_reserved_replicas", short) == 2
    assert metrics.sample("runnerd_horizontalrunnerautoscaler_scale_down_held", short) == 1
    metrics.forget_hra(key)
    assert metrics.sample("horizontalrunnerautoscaler_runners_busy", labels) is None
    assert metrics.sample("runnerd_horizontalrunnerautoscaler_reserved_replicas", short) is None
    metrics.forget_hra(key)  # twice is fine


@pytest.mark.parametrize(
    ("leading", "orphans", "leader", "seen", "removed"),
    [(True, (0, 0), 1, 0, 0), (False, (2, 5), 0, 2, 5)],
)
def test_leadership_and_orphans_are_read_at_scrape_time(
    leading: bool, orphans: tuple[int, int], leader: int, seen: int, removed: int
) -> None:
    metrics = Metrics()
    assert metrics.sample("runnerd_leader") is None  # a webhook server exports neither
    metrics.watch_process(leading=lambda: leading, orphans=lambda: orphans)
    assert metrics.sample("runnerd_leader") == leader
    assert metrics.sample("runnerd_orphan_registrations") == seen
    assert metrics.sample("runnerd_orphan_registrations_removed_total") == removed


def test_workflow_job_events_feed_arcs_job_metrics() -> None:
    metrics = Metrics()
    labels = dict.fromkeys(JOB_LABELS, "")
    labels.update(runs_on="self-hosted,gpu", repository_full_name="o/r")
    common = {
        "labels": labels,
        "conclusion": None,
        "created_at": 100.0,
        "started_at": None,
        "completed_at": None,
    }
    metrics.observe_job_event(action="queued", **common)  # type: ignore[arg-type]
    metrics.observe_job_event(action="in_progress", **{**common, "started_at": 112.5})  # type: ignore[arg-type]
    metrics.observe_job_event(
        action="completed",
        labels=labels,
        conclusion="success",
        created_at=100.0,
        started_at=112.5,
        completed_at=172.5,
    )
    assert metrics.sample("github_workflow_jobs_queued_total", labels) == 1
    assert metrics.sample("github_workflow_jobs_started_total", labels) == 1
    assert metrics.sample("github_workflow_job_queue_duration_seconds_sum", labels) == 12.5
    done = {**labels, "job_conclusion": "success"}
    assert metrics.sample("github_workflow_job_run_duration_seconds_sum", done) == 60
    assert metrics.sample("github_workflow_job_conclusions_total", done) == 1


@pytest.mark.parametrize(
    "waits",
    [
        [],
        [0.0, 0.5, 0.50001, 1.0, 3599.9, 3600.0, 3600.1, 1e9],  # on, just over and past the bounds
        [float(i % 97) * 7.3 for i in range(500)],
    ],
)
def test_the_queue_wait_totals_are_the_histogram_summed_over_its_labels(waits: list[float]) -> None:
    """What the dashboard samples every 2 s, without walking a child per job name and repository."""
    metrics = Metrics()
    for i, wait in enumerate(waits):
        labels = dict.fromkeys(JOB_LABELS, "")
        labels.update(job_name=f"job-{i % 13}", repository=f"repo-{i % 7}", runs_on="self-hosted")
        metrics.observe_job_event(
            action="in_progress",
            labels=labels,
            conclusion=None,
            created_at=100.0,
            started_at=100.0 + wait,
            completed_at=None,
        )
    summed = sum_buckets(
        (s.labels, s.value)
        for family in metrics.job_queue_duration.collect()
        for s in family.samples
        if s.name.endswith("_bucket")
    )
    expected = summed or {b: 0.0 for b in (*(float(b) for b in JOB_DURATION_BUCKETS), math.inf)}
    assert metrics.job_queue_waits.cumulative() == expected
    assert metrics.job_queue_waits.cumulative()[math.inf] == len(waits)


def test_github_budget_is_exported_from_the_snapshot() -> None:
    metrics = Metrics()
    snap = BudgetSnapshot(
        rate_limits=[RateLimitReading("core", 5000, 4990, 1_800_000_000.0, 10)],
        calls={
            ("GET /repos/{owner}/{repo}/actions/runs", "200"): 3,
            ("GET /repos/{owner}/{repo}/actions/runs", "304"): 7,
        },
        retries={"GET /x": 1},
        gate_waits=2,
        gate_wait_seconds=1.5,
        gate_rejections=1,
        paused_until={"core": 1_800_000_000.0},
    )
    metrics.watch_github(lambda: snap)
    assert metrics.sample("github_rate_limit", {"resource": "core"}) == 5000
    assert metrics.sample("github_rate_limit_remaining", {"resource": "core"}) == 4990
    runs = "GET /repos/{owner}/{repo}/actions/runs"
    assert metrics.sample("runnerd_github_api_calls_total", {"endpoint": runs, "status": "304"}) == 7
    assert metrics.sample("runnerd_github_rate_limit_waits_total") == 2
    assert metrics.sample("runnerd_github_rate_limit_rejections_total") == 1
    assert metrics.sample("runnerd_github_rate_limit_paused_until_timestamp_seconds", {"resource": "core"})
    text = metrics.render().decode()
    assert 'github_rate_limit_remaining{resource="core"} 4990.0' in text


def test_histograms_record_latencies() -> None:
    metrics = Metrics()
    metrics.webhook_to_pod_create.observe(0.04)
    metrics.runner_startup.observe(3.0)
    assert metrics.sample("runnerd_webhook_to_pod_create_seconds_bucket", {"le": "0.05"}) == 1
    assert metrics.sample("runnerd_webhook_to_pod_create_seconds_bucket", {"le": "0.025"}) == 0
    assert metrics.sample("runnerd_runner_startup_seconds_count") == 1


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (":8000", Address(None, 8000)),
        ("127.0.0.1:8080", Address("127.0.0.1", 8080)),
        ("[::1]:9", Address("::1", 9)),
        ("0", None),
        ("", None),
    ],
)
def test_parse_address(text: str, expected: Address | None) -> None:
    assert parse_address(text) == expected


@pytest.mark.parametrize("text", ["8000", "host:port", ":70000"])
def test_parse_address_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="port"):
        parse_address(text)


@pytest.fixture
async def health() -> AsyncIterator[tuple[aiohttp.ClientSession, str, list[bool]]]:
    ready = [False]
    metrics = Metrics()
    server = TestServer(health_app(ready=lambda: ready[0], metrics=metrics), host="127.0.0.1", port=0)
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as session:
            yield session, str(server.make_url("")).rstrip("/"), ready
    finally:
        await server.close()


async def test_health_readiness_and_metrics_endpoints(
    health: tuple[aiohttp.ClientSession, str, list[bool]],
) -> None:
    session, url, ready = health
    async with session.get(url + "/healthz") as resp:
        assert resp.status == 200
    async with session.get(url + "/readyz") as resp:
        assert resp.status == 503
    ready[0] = True
    async with session.get(url + "/readyz") as resp:
        assert resp.status == 200
    async with session.get(url + "/metrics") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        assert "# TYPE runnerd_webhook_to_pod_create_seconds histogram" in await resp.text()
