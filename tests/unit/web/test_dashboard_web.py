"""The dashboard's HTTP side and the fleet metrics: data.json and /metrics agree, GPU time, the page."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal as D
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from runnerd.reconcile.cost import Ledger, PriceTable, RunnerFacts, fold
from runnerd.runtime import Informer
from runnerd.status import samples_from_text
from runnerd.views import dashboard as dm
from runnerd.web import dashboard
from runnerd.web.metrics import BudgetSnapshot, Metrics, RateLimitReading
from runnerd.web.server import Servers, health_app
from tests.unit.runtime.fakes import FakeListWatcher
from tests.unit.web import checks
from tests.unit.web import objects as o

pytestmark = pytest.mark.timeout(20)

NOW = dt.datetime(2026, 1, 1, 12, 5, tzinfo=dt.UTC).timestamp()
SOURCES = {
    "deployments": dashboard.DEPLOYMENTS_INFORMER,
    "runner_sets": dashboard.RUNNERSETS_INFORMER,
    "hras": dashboard.HRAS_INFORMER,
    "runners": dashboard.RUNNERS_INFORMER,
    "pods": dashboard.PODS_INFORMER,
    "stateful_sets": dashboard.STATEFULSETS_INFORMER,
}
JOB = {"runs_on": "self-hosted", "repository": "app", "repository_full_name": "octo-org/app"}


class Clock:
    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


@dataclass
class World:
    watchers: dict[str, FakeListWatcher]
    informers: dict[str, Informer]
    metrics: Metrics = field(default_factory=Metrics)

    def put(self, source: str, obj: dict[str, Any]) -> None:
        self.watchers[SOURCES[source]].put(obj)

    def controllers(self) -> Any:
        @dataclass
        class Manager:
            ready: bool = True

        @dataclass
        class Autoscaling:
            metrics: Metrics

        @dataclass
        class Controllers:
            manager: Manager
            informers: dict[str, Informer]
            autoscaling: Autoscaling | None

        return Controllers(Manager(), self.informers, Autoscaling(self.metrics))


async def settle(world: World) -> None:
    """Until every informer's store holds what its fake server holds."""
    await checks.wait_for(
        lambda: all(
            {str(o["metadata"]["resourceVersion"]) for o in w.objects.values()}
            == {str(o["metadata"].get("resourceVersion")) for o in world.informers[n].store.objects()}
            for n, w in world.watchers.items()
        )
    )


@pytest.fixture
async def world() -> AsyncIterator[World]:
    watchers = {name: FakeListWatcher() for name in SOURCES.values()}
    informers = {name: Informer(name, w) for name, w in watchers.items()}
    w = World(watchers, informers)
    tasks = [asyncio.create_task(i.run(), name=f"informer-{n}") for n, i in informers.items()]
    try:
        for informer in informers.values():
            await informer.wait_synced()
        yield w
    finally:
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t


def load_fleet(world: World) -> None:
    for source, objs in o.fleet_objects().items():
        for obj in objs:
            world.put(source, obj)


def budget() -> BudgetSnapshot:
    return BudgetSnapshot(
        rate_limits=[RateLimitReading("core", 5000, 4875, NOW + 1800)],
        calls={("GET /repos/{owner}/{repo}/actions/runners", "200"): 7, ("POST /x", "201"): 2},
        retries={"POST /x": 1},
    )


@contextlib.asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()


def fleet_app(world: World, **kw: Any) -> tuple[web.Application, dashboard.Fleet]:
    fleet = dashboard.Fleet(world.metrics, world.informers, clock=Clock(NOW), **kw)
    app = health_app(ready=lambda: True, metrics=world.metrics)
    dashboard.add_routes(app, fleet)
    return app, fleet


async def test_every_number_of_data_json_is_what_metrics_says(world: World) -> None:
    load_fleet(world)
    await settle(world)
    world.metrics.watch_github(budget)
    world.metrics.watch_objects(
        hras=world.informers[dashboard.HRAS_INFORMER].store.objects,
        deployments=world.informers[dashboard.DEPLOYMENTS_INFORMER].store.objects,
        runner_sets=world.informers[dashboard.RUNNERSETS_INFORMER].store.objects,
    )
    for wait in (0.4, 3.0, 12.0):
        world.metrics.observe_job_event(
            action="in_progress",
            labels=JOB,
            conclusion=None,
            created_at=100.0,
            started_at=100.0 + wait,
            completed_at=None,
        )
    app, fleet = fleet_app(world, interval=60.0)
    async with serving(app) as client:
        await checks.wait_for(lambda: fleet.samples_taken >= 1)  # the sampler starts with the app
        scrape = checks.parse(await (await client.get("/metrics")).text())
        resp = await client.get("/dashboard/data.json")
        assert resp.headers["Cache-Control"] == "no-store"
        model = await resp.json()
    numbers = list(checks.cells(model))
    assert len(numbers) > 50
    for c in numbers:
        want = checks.expected(scrape, c["m"], c["l"], c.get("q"))
        if want is None:  # absent series: counts read as 0, quantiles and gauges as null
            assert c["v"] in (None, 0.0), c
        else:
            assert checks.close(c["v"], want), (c, want)
    cpu = next(t for t in model["targets"] if t["name"] == "cpu")
    assert cpu["queued"]["v"] == 2.0
    assert cpu["running"]["v"] == 1.0
    assert {s: cpu["runners"][s]["v"] for s in ("idle", "busy", "draining", "failed")} == dict.fromkeys(
        ("idle", "busy", "draining", "failed"), 1.0
    )
    assert cpu["hras"][0]["name"] == "cpu-hra"
    assert cpu["hras"][0]["max"]["v"] == 4.0
    assert model["queue_wait"]["all"]["count"]["v"] == 3.0
    assert model["queue_wait"]["recent"]["jobs"]["v"] == 3.0
    assert model["queue_wait"]["recent"]["p50"]["v"] is not None
    assert model["github"]["rate_limits"][0]["remaining"]["v"] == 4875.0
    assert model["github"]["endpoints"][0]["calls"]["v"] == 7.0
    assert model["window"] == dashboard.DEFAULT_WINDOW


async def test_the_registry_and_its_text_give_the_same_model(world: World) -> None:
    """runnerd status builds the model from scraped text; the dashboard from the registry."""
    load_fleet(world)
    await settle(world)
    world.metrics.watch_github(budget)
    world.metrics.observe_job_event(
        action="in_progress", labels=JOB, conclusion=None, created_at=1.0, started_at=8.5, completed_at=None
    )
    fleet = dashboard.Fleet(world.metrics, world.informers, clock=Clock(NOW))
    fleet.sample()
    # the sized jobs (runner cache) and the Cost table (the ledger) do not come from the samples
    from_registry = {k: v for k, v in fleet.model().items() if k not in ("sized_jobs", "cost")}
    from_text = dm.build(
        samples_from_text(world.metrics.render().decode()), generated_at=NOW, interval=fleet.interval
    )
    assert from_text == {**from_registry, "queue_wait": {**from_registry["queue_wait"], "series": []}}
    fleet.close()


async def test_the_model_has_the_waiting_sized_jobs_and_the_leaders_cost_table(world: World) -> None:
    world.put(
        "runners",
        {
            "metadata": {
                "name": "gpu-job-41",
                "namespace": "ci",
                "labels": {"runnerd.dev/sized-job": "41"},
                "annotations": {
                    "runnerd.dev/queued-at": "2026-01-01T12:00:00Z",
                    "runnerd.dev/size": "2 x GPU",
                },
            },
            "status": {"phase": "Waiting", "reason": "WaitingForCapacity", "message": "waiting for 2 GPUs"},
        },
    )
    await settle(world)
    fleet = dashboard.Fleet(world.metrics, world.informers, clock=Clock(NOW))
    model = fleet.model()
    [row] = model["sized_jobs"]["rows"]
    assert (row["job"], row["size"], row["reason"], row["waitingSeconds"]) == (
        "41",
        "2 x GPU",
        "waiting for 2 GPUs",
        300.0,
    )
    assert model["cost"] is None  # no ledger here: this process does not write it
    ledger = fold(
        Ledger(),
        [
            RunnerFacts(
                "u", "octo/ml", "train", "gpu", int(NOW) - 3600, int(NOW), gpus=D(2), gpu_product="H100"
            )
        ],
        set(),
        int(NOW),
    )
    world.metrics.watch_cost(lambda: (ledger, PriceTable("EUR", gpu_hour={"H100": D(3)})))
    cost = fleet.model()["cost"]
    assert cost["currency"] == "EUR"
    assert cost["rows"] == [
        {
            "repository": "octo/ml",
            "workflow": "train",
            "pool": "gpu",
            **{f"gpuHours{w}": 2.0 for w in ("24h", "7d", "30d")},
            **{f"cost{w}": 6.0 for w in ("24h", "7d", "30d")},
        }
    ]
    fleet.close()


async def test_gpu_seconds_follow_the_runners_and_advance_at_each_sample(world: World) -> None:
    tick = Clock(1000.0)
    fleet = dashboard.Fleet(world.metrics, world.informers, clock=Clock(NOW), monotonic=tick)
    labels = {"runner-deployment-name": "gpu"}
    world.put("deployments", o.rd("gpu", 1))
    world.put("runners", o.runner("gpu-a", "gpu", "Idle"))
    world.put("pods", o.pod("gpu-a", gpus=2, node="kwok-gpu-0", labels=labels))
    await settle(world)
    assert fleet.ledger.holding == 1
    tick.now = 1010.0
    world.put("runners", o.runner("gpu-a", "gpu", "Running"))  # took a job
    await settle(world)
    tick.now = 1040.0
    world.watchers[dashboard.RUNNERS_INFORMER].delete("gpu-a", o.NS)  # done and removed
    world.watchers[dashboard.PODS_INFORMER].delete("gpu-a", o.NS)
    await settle(world)
    assert fleet.ledger.holding == 0
    target = {"namespace": o.NS, "kind": "RunnerDeployment", "name": "gpu"}
    busy, reserved = dm.GPU_BUSY_SECONDS + "_total", dm.GPU_RESERVED_SECONDS + "_total"
    assert world.metrics.sample(busy, target) is None  # nothing until the first sample
    tick.now = 1100.0
    fleet.sample()
    assert world.metrics.sample(reserved, target) == 2 * 40.0
    assert world.metrics.sample(busy, target) == 2 * 30.0
    assert world.metrics.sample(dm.GPU_RUNNERS, target) == 0.0
    fleet.close()


async def test_a_sample_reads_every_runner_only_at_the_first_and_every_resync(world: World) -> None:
    """Between resyncs the GPU ledger follows the informers' events alone (a sample costs O(GPU
    runners + buckets)); the first sample and one every ``resync`` seconds catch up with the caches."""
    tick = Clock(1000.0)
    labels = {"runner-deployment-name": "gpu"}
    world.put("deployments", o.rd("gpu", 1))
    world.put("runners", o.runner("gpu-a", "gpu", "Running"))
    world.put("pods", o.pod("gpu-a", gpus=1, node="kwok-gpu-0", labels=labels))
    await settle(world)  # before the fleet: only the first sample's sync sees gpu-a
    fleet = dashboard.Fleet(world.metrics, world.informers, clock=Clock(NOW), monotonic=tick, resync=60.0)
    target = {"namespace": o.NS, "kind": "RunnerDeployment", "name": "gpu"}
    busy = dm.GPU_BUSY_SECONDS + "_total"
    syncs = []
    for now in (1000.0, 1002.0, 1030.0, 1059.9, 1060.0, 1062.0, 1120.0):
        tick.now = now
        fleet.sample()
        syncs.append(fleet.ledger_syncs)
    assert syncs == [1, 1, 1, 1, 2, 2, 3]
    assert world.metrics.sample(busy, target) == 120.0
    world.put("runners", o.runner("gpu-b", "gpu", "Running"))  # an event between resyncs
    world.put("pods", o.pod("gpu-b", gpus=2, node="kwok-gpu-1", labels=labels))
    await settle(world)
    tick.now = 1130.0
    fleet.sample()
    assert fleet.ledger_syncs == 3
    assert world.metrics.sample(busy, target) == 130.0 + 2 * 10.0
    fleet.close()


async def test_a_runnerset_runner_drains_when_its_statefulset_is_deleted(world: World) -> None:
    tick = Clock(1000.0)
    fleet = dashboard.Fleet(world.metrics, world.informers, clock=Clock(NOW), monotonic=tick)
    world.put("runner_sets", o.runnerset("big"))
    world.put("stateful_sets", o.statefulset("big-x", "big"))
    world.put("pods", o.runnerset_pod("big-x", "big", gpus=1, node="kwok-gpu-0", ready=False))  # busy
    await settle(world)
    tick.now = 1010.0
    world.put("stateful_sets", o.statefulset("big-x", "big", deleting=True))
    await settle(world)
    totals = fleet.ledger.totals(1040.0)[(o.NS, "RunnerSet", "big")]
    assert (totals.reserved, totals.used) == (40.0, 10.0)  # draining: the GPU held, not used
    world.watchers[dashboard.STATEFULSETS_INFORMER].delete("big-x", o.NS)
    world.watchers[dashboard.PODS_INFORMER].delete("big-x-0", o.NS)
    await settle(world)
    assert fleet.ledger.holding == 0
    fleet.close()


async def test_the_page_is_one_self_contained_document(world: World) -> None:
    app, _ = fleet_app(world)
    async with serving(app) as client:
        pages = []
        for path in ("/", "/dashboard", "/dashboard/"):
            resp = await client.get(path)
            assert resp.status == 200
            assert resp.content_type == "text/html"
            assert "default-src 'none'" in resp.headers["Content-Security-Policy"]
            pages.append(await resp.text())
    html = pages[0]
    assert pages == [html] * 3
    assert 'id="targets"' in html
    assert "data-metric" in html
    # nothing loads from elsewhere: no src/href to another origin, no stylesheet links, no @import/url()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "<link" not in html
    assert "@import" not in html
    assert "url(" not in html
    assert re.findall(r"https?://[^\s\"'`]+", html) == ["http://www.w3.org/2000/svg"]  # a namespace name


async def test_the_sampler_lives_and_dies_with_the_app(world: World) -> None:
    app, fleet = fleet_app(world, interval=0.01)
    async with serving(app):
        await checks.wait_for(lambda: fleet.samples_taken >= 3)
        assert any(t.get_name() == "dashboard-sampler" for t in asyncio.all_tasks())
    assert not any(t.get_name() == "dashboard-sampler" for t in asyncio.all_tasks())
    taken = fleet.samples_taken
    await asyncio.sleep(0.05)
    assert fleet.samples_taken == taken


async def test_app_serves_health_metrics_and_dashboard_and_registers_once(world: World) -> None:
    controllers = world.controllers()
    first, second = dashboard.app(controllers), dashboard.app(controllers)  # one collector per registry
    assert dashboard.fleet_for(world.metrics, world.informers) is dashboard.fleet_for(world.metrics, {})
    async with serving(first) as client:
        for path in ("/healthz", "/readyz", "/metrics", "/", "/dashboard/data.json"):
            assert (await client.get(path)).status == 200, path
        assert dm.RUNNERS in await (await client.get("/metrics")).text()
    assert isinstance(second, web.Application)
    controllers.autoscaling = None
    with pytest.raises(ValueError, match="autoscaling"):
        dashboard.app(controllers)


async def test_serve_dashboard_returns_the_url(world: World) -> None:
    async with Servers() as servers:
        url = await dashboard.serve_dashboard(servers, world.controllers(), "127.0.0.1:0")
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/", url)
        async with aiohttp.ClientSession() as session:
            async with session.get(url) as resp:
                assert resp.status == 200
                assert "runnerd" in await resp.text()
            async with session.get(url + "dashboard/data.json") as resp:
                assert (await resp.json())["targets"] == []
        with pytest.raises(ValueError, match="address"):
            await dashboard.serve_dashboard(servers, world.controllers(), "0")
