"""The live dashboard on the controller's metrics port, and the fleet metrics it shares with ``/metrics``.

``GET /`` and ``GET /dashboard`` serve one self-contained page (inline CSS, JS and SVG; no external
assets, works offline) that polls ``GET /dashboard/data.json`` every couple of seconds. The JSON is
:func:`runnerd.views.dashboard.build` over the samples of the process's own metrics
registry, the one ``/metrics`` renders, so the page shows exactly the numbers ``/metrics`` exports.

:class:`Fleet` adds the fleet's metrics to that registry (see docs/dashboard.md for the list and
the definitions in :mod:`runnerd.reconcile.fleet`): runners by state, queued and running jobs,
GPU runners, GPU-seconds reserved and used per scale target, and queue-wait quantiles over a
recent window. Runner and job gauges are computed from the informer caches at scrape time; the
GPU-seconds and the recent queue-wait quantiles advance at each sample (every ``interval``
seconds), so two reads between samples agree.

A sample costs O(GPU runners + histogram buckets), not O(runners) nor O(label sets): the GPU
ledger follows the runner, pod and StatefulSet informers' events, and is checked against every
runner in the caches only at the first sample and every ``resync`` seconds after (a safety net);
the queue-wait point reads the histogram's buckets summed as they are observed
(:class:`runnerd.web.metrics.BucketTotals`), not its ~5,000 children at 1,000 runners.

In a controller process::

    app = dashboard.app(controllers)          # /healthz /readyz /metrics / /dashboard ...
    url = await dashboard.serve_dashboard(servers, controllers, "127.0.0.1:8080")

``controllers`` is what :func:`runnerd.controller.app.build` returns (this layer sees it only
through the :class:`ControllersLike` protocol: its informers, its manager's readiness and the
autoscaling metrics).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import math
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, fields
from importlib import resources
from typing import Any, Protocol

from aiohttp import web
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from runnerd.reconcile.fleet import (
    STATES,
    FleetSnapshot,
    GpuLedger,
    GpuSeconds,
    QueueWaitSeries,
    RunnerInfo,
    runner_info,
    runners_of,
    runnerset_runner_info,
    snapshot,
)
from runnerd.reconcile.runnerset import LABEL_RUNNER_STATEFULSET_NAME, LABEL_RUNNERSET_NAME, runner_name
from runnerd.runtime import EventType, Informer, InformerEvent, Key, Obj
from runnerd.views import dashboard as dm
from runnerd.views.cost import dashboard_cost
from runnerd.views.sizedjobs import dashboard_sized_jobs
from runnerd.web.metrics import Metrics
from runnerd.web.server import Servers, health_app, parse_address

log = logging.getLogger(__name__)

DEFAULT_INTERVAL = 2.0
DEFAULT_WINDOW = 300.0
DEFAULT_RESYNC = 60.0
TARGET_LABELS = dm.TARGET_LABELS

RUNNERS_INFORMER = "runners"
PODS_INFORMER = "pods"
DEPLOYMENTS_INFORMER = "runnerdeployments"
RUNNERSETS_INFORMER = "runnersets"
STATEFULSETS_INFORMER = "statefulsets"
HRAS_INFORMER = "horizontalrunnerautoscalers"


def page() -> str:
    """The dashboard's HTML (package data: ``runnerd/web/static/dashboard.html``)."""
    return resources.files("runnerd.web").joinpath("static", "dashboard.html").read_text(encoding="utf-8")


class Fleet:
    """The fleet's numbers for one process: fresh gauges at scrape time, GPU time, queue wait.

    ``informers`` by name (those of :func:`runnerd.controller.app.build`); missing ones count as
    empty. The GPU ledger follows the runner and pod informers' events from construction on (build
    this before the informers start, or the first :meth:`sample` catches up); every ``resync``
    seconds a sample checks it against every runner in the caches.
    """

    def __init__(
        self,
        metrics: Metrics,
        informers: Mapping[str, Informer],
        *,
        interval: float = DEFAULT_INTERVAL,
        window: float = DEFAULT_WINDOW,
        resync: float = DEFAULT_RESYNC,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        # not the Metrics object itself: fleet_for() keys fleets weakly by it
        self.registry = metrics.registry
        self._cost = weakref.WeakMethod(metrics.cost_snapshot)
        self._queue_waits = metrics.job_queue_waits
        self.informers = informers
        self.interval = interval
        self.window = window
        self.resync = resync
        self._synced_at: float | None = None
        self._clock = clock
        self._monotonic = monotonic
        self.ledger = GpuLedger()
        self.series = QueueWaitSeries(window=window, keep=max(int(window * 2 / interval), 60))
        self._gpu: dict[tuple[str, str, str], GpuSeconds] = {}
        self.samples_taken = 0
        self.ledger_syncs = 0
        self._removers: list[Callable[[], None]] = []
        handlers = (
            (PODS_INFORMER, self._on_pod),
            (RUNNERS_INFORMER, self._on_runner),
            (STATEFULSETS_INFORMER, self._on_stateful_set),
        )
        for name, handler in handlers:
            informer = informers.get(name)
            if informer is not None:
                self._removers.append(informer.add_handler(handler))
        metrics.registry.register(_FleetCollector(self))

    # --- the objects ----------------------------------------------------------------------------

    def _objects(self, name: str) -> list[Obj]:
        informer = self.informers.get(name)
        return informer.store.objects() if informer is not None else []

    def _get(self, name: str, namespace: str, obj_name: str) -> Obj | None:
        informer = self.informers.get(name)
        return informer.store.get(Key(namespace, obj_name)) if informer is not None else None

    def snapshot(self) -> FleetSnapshot:
        """The fleet now, from the informer caches."""
        return snapshot(
            deployments=self._objects(DEPLOYMENTS_INFORMER),
            runner_sets=self._objects(RUNNERSETS_INFORMER),
            hras=self._objects(HRAS_INFORMER),
            runners=self._objects(RUNNERS_INFORMER),
            pods=self._objects(PODS_INFORMER),
            stateful_sets=self._objects(STATEFULSETS_INFORMER),
            now=dt.datetime.fromtimestamp(self._clock(), dt.UTC),
        )

    # --- GPU time, as it happens ----------------------------------------------------------------

    def _runner_info(
        self, namespace: str, name: str, pod: Obj | None, runner: Obj | None
    ) -> RunnerInfo | None:
        if runner is not None:
            return runner_info(runner, pod)
        labels = ((pod or {}).get("metadata") or {}).get("labels") or {}
        if pod is not None and labels.get(LABEL_RUNNERSET_NAME) and labels.get(LABEL_RUNNER_STATEFULSET_NAME):
            sts = self._get(STATEFULSETS_INFORMER, namespace, str(labels[LABEL_RUNNER_STATEFULSET_NAME]))
            return runnerset_runner_info(pod, sts)
        return None

    def _on_pod(self, event: InformerEvent) -> None:
        meta = event.obj.get("metadata") or {}
        namespace, name = str(meta.get("namespace") or ""), str(meta.get("name") or "")
        pod = None if event.type is EventType.DELETED else event.obj
        info = self._runner_info(namespace, name, pod, self._get(RUNNERS_INFORMER, namespace, name))
        self._record(namespace, name, info)

    def _on_runner(self, event: InformerEvent) -> None:
        meta = event.obj.get("metadata") or {}
        namespace, name = str(meta.get("namespace") or ""), str(meta.get("name") or "")
        if event.type is EventType.DELETED:
            self.ledger.remove((namespace, name), self._monotonic())
            return
        self._record(namespace, name, runner_info(event.obj, self._get(PODS_INFORMER, namespace, name)))

    def _on_stateful_set(self, event: InformerEvent) -> None:
        """A RunnerSet runner drains while its StatefulSet is being deleted."""
        meta = event.obj.get("metadata") or {}
        if not (meta.get("labels") or {}).get(LABEL_RUNNERSET_NAME):
            return
        namespace, name = str(meta.get("namespace") or ""), runner_name(str(meta.get("name") or ""))
        if self._get(RUNNERS_INFORMER, namespace, name) is None:  # else a Runner's: its own events
            pod = self._get(PODS_INFORMER, namespace, name)
            self._record(namespace, name, self._runner_info(namespace, name, pod, None))

    def _record(self, namespace: str, name: str, info: RunnerInfo | None) -> None:
        if info is None:
            self.ledger.remove((namespace, name), self._monotonic())
        else:
            self.ledger.update(info, self._monotonic())

    # --- sampling -------------------------------------------------------------------------------

    def queue_buckets(self) -> dict[float, float]:
        """The job queue-wait histogram's cumulative buckets, summed over its labels."""
        return self._queue_waits.cumulative()

    def sync_ledger(self, now: float) -> None:
        """Check the GPU ledger against every runner in the caches (catches up with missed events)."""
        infos = runners_of(
            self._objects(RUNNERS_INFORMER),
            self._objects(PODS_INFORMER),
            self._objects(STATEFULSETS_INFORMER),
        )
        self.ledger.sync(infos, now)
        self._synced_at = now
        self.ledger_syncs += 1

    def sample(self) -> None:
        """Advance the GPU-seconds and add a queue-wait point (every ``interval`` seconds); the first
        sample and one every ``resync`` seconds also check the ledger against the caches."""
        now = self._monotonic()
        if self._synced_at is None or now - self._synced_at >= self.resync:
            self.sync_ledger(now)
        self._gpu = self.ledger.totals(now)
        self.series.add(self._clock(), self.queue_buckets())
        self.samples_taken += 1

    async def run(self) -> None:
        """Sample every ``interval`` seconds until cancelled."""
        while True:
            try:
                self.sample()
            except Exception:  # a bad object must not stop the dashboard
                log.exception("dashboard: sampling failed")
            await asyncio.sleep(self.interval)

    def gpu_seconds(self) -> Mapping[tuple[str, str, str], GpuSeconds]:
        """GPU-seconds per target as of the last sample."""
        return self._gpu

    def close(self) -> None:
        for remove in self._removers:
            remove()
        self._removers.clear()

    # --- the page's data ------------------------------------------------------------------------

    def model(self) -> dict[str, Any]:
        """``/dashboard/data.json``: the model over this registry's samples (what /metrics says), the
        sized jobs waiting or refused (from the runner cache) and the Cost table (from the ledger
        this process last wrote; ``None`` where it does not lead)."""
        samples = [(s.name, s.labels, s.value) for family in self.registry.collect() for s in family.samples]
        now = self._clock()
        model = dm.build(
            samples,
            points=list(self.series.points),
            generated_at=now,
            interval=self.interval,
            window=self.window,
        )
        when = dt.datetime.fromtimestamp(now, dt.UTC)
        model["sized_jobs"] = dashboard_sized_jobs(self._objects(RUNNERS_INFORMER), when)
        source = self._cost()
        snapshot = source() if source is not None else None
        model["cost"] = None if snapshot is None else dashboard_cost(*snapshot, now=int(now))
        return model


class _FleetCollector(Collector):
    def __init__(self, fleet: Fleet) -> None:
        self._fleet = weakref.ref(fleet)

    def describe(self) -> Iterable[Metric]:
        return self._families(None)

    def collect(self) -> Iterable[Metric]:
        return self._families(self._fleet())

    @staticmethod
    def _families(fleet: Fleet | None) -> list[Metric]:
        families = _FleetFamilies.declare()
        if fleet is not None:
            families.fill(fleet)
        return families.all()


@dataclass(frozen=True)
class _FleetFamilies:
    """The fleet's metric families, in the order they are exposed."""

    window: GaugeMetricFamily
    runners: GaugeMetricFamily
    queued: GaugeMetricFamily
    running: GaugeMetricFamily
    gpu_runners: GaugeMetricFamily
    gpus: GaugeMetricFamily
    hra: GaugeMetricFamily
    reserved: CounterMetricFamily
    busy: CounterMetricFamily
    recent: GaugeMetricFamily
    recent_jobs: GaugeMetricFamily

    @classmethod
    def declare(cls) -> _FleetFamilies:
        return cls(
            window=GaugeMetricFamily(dm.QUEUE_WAIT_WINDOW, "The recent queue-wait window's length"),
            runners=GaugeMetricFamily(
                dm.RUNNERS,
                "Runners of each scale target by state (starting, idle, busy, draining, failed)",
                labels=(*TARGET_LABELS, "state"),
            ),
            queued=GaugeMetricFamily(
                dm.JOBS_QUEUED,
                "Jobs reserved for the target (HRA capacity reservations) that no runner of it runs yet",
                labels=TARGET_LABELS,
            ),
            running=GaugeMetricFamily(
                dm.JOBS_RUNNING, "Jobs the target's runners run (its busy runners)", labels=TARGET_LABELS
            ),
            gpu_runners=GaugeMetricFamily(
                dm.GPU_RUNNERS, "Runners whose pod requests nvidia.com/gpu", labels=TARGET_LABELS
            ),
            gpus=GaugeMetricFamily(
                dm.GPUS_REQUESTED,
                "nvidia.com/gpu requested by the target's runner pods",
                labels=TARGET_LABELS,
            ),
            hra=GaugeMetricFamily(
                dm.TARGET_AUTOSCALER,
                "1 for each HorizontalRunnerAutoscaler that scales the target",
                labels=(*TARGET_LABELS, "horizontalrunnerautoscaler"),
            ),
            reserved=CounterMetricFamily(
                dm.GPU_RESERVED_SECONDS,
                "GPU-seconds held by the target's runner pods (GPUs x time bound to a node), since start",
                labels=TARGET_LABELS,
            ),
            busy=CounterMetricFamily(
                dm.GPU_BUSY_SECONDS,
                "GPU-seconds of the target's runners while running a job (GPUs x time busy), since start",
                labels=TARGET_LABELS,
            ),
            recent=GaugeMetricFamily(
                dm.QUEUE_WAIT_RECENT,
                "Job queue wait quantiles over the recent window"
                " (of github_workflow_job_queue_duration_seconds)",
                labels=("quantile",),
            ),
            recent_jobs=GaugeMetricFamily(
                dm.QUEUE_WAIT_RECENT_JOBS, "Jobs that started within the recent queue-wait window"
            ),
        )

    def fill(self, fleet: Fleet) -> None:
        self.window.add_metric([], fleet.window)
        snap = fleet.snapshot()
        for t in snap.targets:
            labels = [t.namespace, t.kind, t.name]
            for state in STATES:
                self.runners.add_metric([*labels, state], t.runners[state])
            self.queued.add_metric(labels, t.queued_jobs)
            self.running.add_metric(labels, t.running_jobs)
            self.gpu_runners.add_metric(labels, t.gpu_runners)
            self.gpus.add_metric(labels, t.gpus)
        for h in snap.hras:
            if snap.target(*h.target) is not None:
                self.hra.add_metric([*h.target, h.name], 1)
        for key, seconds in sorted(fleet.gpu_seconds().items()):
            self.reserved.add_metric(list(key), seconds.reserved)
            self.busy.add_metric(list(key), seconds.used)
        point = fleet.series.last
        if point is not None:
            for name, q in dm.QUANTILES.items():
                value = getattr(point, name)
                if value is not None and not math.isnan(value):
                    self.recent.add_metric([str(q)], value)
            self.recent_jobs.add_metric([], point.jobs)

    def all(self) -> list[Metric]:
        return [getattr(self, f.name) for f in fields(self)]


# --- HTTP --------------------------------------------------------------------------------------


class ManagerLike(Protocol):
    @property
    def ready(self) -> bool: ...


class AutoscalingLike(Protocol):
    @property
    def metrics(self) -> Metrics: ...


class ControllersLike(Protocol):
    """What the dashboard needs of :class:`runnerd.controller.process.Controllers`."""

    @property
    def manager(self) -> ManagerLike: ...

    @property
    def informers(self) -> Mapping[str, Informer]: ...

    @property
    def autoscaling(self) -> AutoscalingLike | None: ...


_FLEETS: weakref.WeakKeyDictionary[Metrics, Fleet] = weakref.WeakKeyDictionary()


def fleet_for(
    metrics: Metrics,
    informers: Mapping[str, Informer],
    *,
    interval: float = DEFAULT_INTERVAL,
    window: float = DEFAULT_WINDOW,
) -> Fleet:
    """The :class:`Fleet` of a metrics registry (made once: its collector is registered once)."""
    fleet = _FLEETS.get(metrics)
    if fleet is None:
        fleet = _FLEETS[metrics] = Fleet(metrics, informers, interval=interval, window=window)
    return fleet


def add_routes(app: web.Application, fleet: Fleet) -> None:
    """``/``, ``/dashboard`` and ``/dashboard/data.json`` on ``app``; the sampler runs with the app."""
    html = page()

    async def index(request: web.Request) -> web.Response:
        return web.Response(
            text=html,
            content_type="text/html",
            charset="utf-8",
            headers={"Cache-Control": "no-store", "Content-Security-Policy": _CSP},
        )

    async def data(request: web.Request) -> web.Response:
        return web.json_response(
            fleet.model(),
            headers={"Cache-Control": "no-store"},
            dumps=lambda o: json.dumps(o, allow_nan=False),
        )

    async def sampler(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(fleet.run(), name="dashboard-sampler")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    app.router.add_get("/", index)
    app.router.add_get("/dashboard", index)
    app.router.add_get("/dashboard/", index)
    app.router.add_get("/dashboard/data.json", data)
    app.cleanup_ctx.append(sampler)


_CSP = "; ".join(
    ("default-src 'none'", "script-src 'unsafe-inline'", "style-src 'unsafe-inline'", "connect-src 'self'")
)
"""Nothing outside the page loads: inline script and style, fetches to this server only."""


def app(
    controllers: ControllersLike, *, interval: float = DEFAULT_INTERVAL, window: float = DEFAULT_WINDOW
) -> web.Application:
    """The controller's metrics app: ``/healthz``, ``/readyz``, ``/metrics`` and the dashboard."""
    autoscaling = controllers.autoscaling
    if autoscaling is None:
        raise ValueError("the dashboard needs the autoscaling metrics (build() installs them)")
    manager = controllers.manager
    metrics = autoscaling.metrics
    application = health_app(ready=lambda: manager.ready, metrics=metrics)
    add_routes(application, fleet_for(metrics, controllers.informers, interval=interval, window=window))
    return application


async def serve_dashboard(
    servers: Servers,
    controllers: ControllersLike,
    address: str = "127.0.0.1:0",
    *,
    interval: float = DEFAULT_INTERVAL,
    window: float = DEFAULT_WINDOW,
) -> str:
    """Serve :func:`app` on ``address`` (Go ``host:port``; port 0 picks one) with ``servers``
    (stopped when ``servers`` is); returns the dashboard's URL, e.g. ``http://127.0.0.1:8080/``."""
    where = parse_address(address)
    if where is None:
        raise ValueError(f"the dashboard needs an address, not {address!r}")
    host, port = await servers.start("dashboard", app(controllers, interval=interval, window=window), where)
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    return f"http://[{shown}]:{port}/" if ":" in shown else f"http://{shown}:{port}/"
