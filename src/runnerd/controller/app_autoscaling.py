"""Wiring of HRA autoscaling into a controller process (``runnerd controller``; not scale-set mode).

:func:`install_autoscaling` adds the HRA informer and controller, the webhook reservation sink served
by :mod:`runnerd.web`, the safety-net poll, the latency watches and the metrics (and, with
``--enable-sizing``, the sized-job intake, :func:`runnerd.controller.sizing.install`).
:func:`install_journal` adds the reservation journal (``--reservation-journal``, the default).
:func:`budget_snapshot` reads the GitHub client's budget for the metrics layer.
Wiring only, like :mod:`runnerd.controller.app` (which calls it): the controllers never import it.
"""

from __future__ import annotations

import time
from collections.abc import MutableMapping
from typing import Any

from runnerd.controller.common import HORIZONTAL_RUNNER_AUTOSCALERS, matching_labels
from runnerd.controller.hra.controller import HRAController
from runnerd.controller.hra.options import AutoscalingOptions
from runnerd.controller.journal import ReservationJournal, hra_key_of, journal_informer
from runnerd.controller.latency import PodCreateLatency, RunnerStartup
from runnerd.controller.poller import POLL_KEY, SafetyNetPoller
from runnerd.controller.process import Autoscaling, Controllers
from runnerd.controller.reservation_writer import ReservationWriter
from runnerd.controller.reservations import ReservationSink
from runnerd.controller.runwatch import RunObserver
from runnerd.controller.sizing import install as install_sizing
from runnerd.controller.targets import HRA_INFORMER, RD_INFORMER, RUNNERSET_INFORMER, TargetResolver
from runnerd.controller.visibility import GroupVisibility
from runnerd.github import GitHubClient
from runnerd.github.budget import CallWindow
from runnerd.runtime import Controller, Informer, Key, Obj, spec_changed
from runnerd.web.metrics import BudgetSnapshot, Metrics, RateLimitReading


def budget_snapshot(github: GitHubClient) -> BudgetSnapshot:
    """The GitHub client's budget for the metrics layer."""
    stats = github.stats.snapshot()
    readings = [
        RateLimitReading(b.resource, b.limit, b.remaining, b.reset_at, b.used)
        for b in github.rate_limits.snapshot().values()
    ]
    paused: dict[str, float] = {}
    for resource in [None, *(r.resource for r in readings)]:
        until = github.paused_until(resource)
        if until is not None:
            paused["*" if resource is None else resource] = until
    return BudgetSnapshot(
        rate_limits=readings,
        calls=stats.calls,
        retries=stats.retries,
        gate_waits=stats.gate_waits,
        gate_wait_seconds=stats.gate_wait_seconds,
        gate_rejections=stats.gate_rejections,
        paused_until=paused,
    )


def install_autoscaling(
    controllers: Controllers,
    *,
    options: AutoscalingOptions | None = None,
    metrics: Metrics | None = None,
) -> Autoscaling:
    """Add HRA autoscaling (informer, controller, webhook sink, safety-net poll, metrics) to a process."""
    options = options or AutoscalingOptions()
    metrics = metrics or Metrics()
    informers = controllers.informers
    kube, github = controllers.kube, controllers.github
    hras = Informer(
        HRA_INFORMER,
        kube.list_watcher(HORIZONTAL_RUNNER_AUTOSCALERS, namespace=controllers.options.namespace),
    )
    informers[HRA_INFORMER] = hras
    controllers.manager.add_informer(hras)
    resolver = TargetResolver(informers)
    pod_latency, startup = _latency_watches(informers, metrics)

    hra_ctl: Controller | None = None
    controller: HRAController | None = None

    def written(key: Key, obj: Obj) -> None:
        if controller is not None:
            controller.offer(key, obj)
        if hra_ctl is not None:
            hra_ctl.enqueue(key)  # a no-op unless this process leads

    writer = ReservationWriter(kube, hras, resolver, metrics=metrics, on_written=written)
    sink = _sink(controllers, hras, resolver, writer, metrics, pod_latency, options)
    # one observation per repository and one call budget for the metric, the poll and the listings
    observer = RunObserver(github, CallWindow(time.monotonic))
    controllers.directory.budget = observer.window
    poller = SafetyNetPoller(github=github, sink=sink, options=options, metrics=metrics, observer=observer)
    controller = HRAController(
        kube=kube,
        github=github,
        directory=controllers.directory,
        recorder=controllers.recorder,
        hras=hras,
        resolver=resolver,
        informers=informers,
        options=options,
        controller_options=controllers.options,
        metrics=metrics,
        poller=poller,
        clients=controllers.clients,
        observer=observer,
        finished=writer.finished,
    )
    hra_ctl = Controller(
        "horizontalrunnerautoscaler",
        controller.reconcile,
        workers=options.workers or controllers.options.workers,
    )
    hra_ctl.watch(hras)
    poll_ctl = _poll_controller(poller, hras, informers)
    controllers.manager.add_controller(hra_ctl)
    controllers.manager.add_controller(poll_ctl)
    _watch_for_metrics(metrics, informers, github)
    autoscaling = Autoscaling(
        options=options,
        metrics=metrics,
        hras=hras,
        resolver=resolver,
        controller=controller,
        hra_controller=hra_ctl,
        writer=writer,
        sink=sink,
        poller=poller,
        poll_controller=poll_ctl,
        pod_latency=pod_latency,
        runner_startup=startup,
    )
    if controllers.options.enable_sizing:  # per-job sizing: its intake sits in this webhook sink
        controllers.sizing = install_sizing(controllers, autoscaling)
    return autoscaling


def _latency_watches(
    informers: MutableMapping[str, Informer], metrics: Metrics
) -> tuple[PodCreateLatency, RunnerStartup]:
    pod_latency = PodCreateLatency(metrics)
    startup = RunnerStartup(metrics)
    if "pods" in informers:
        informers["pods"].add_handler(pod_latency.on_pod)
        informers["pods"].add_handler(startup.on_pod)
    if "runners" in informers:
        informers["runners"].add_handler(startup.on_runner)
    return pod_latency, startup


def _sink(
    controllers: Controllers,
    hras: Informer,
    resolver: TargetResolver,
    writer: ReservationWriter,
    metrics: Metrics,
    pod_latency: PodCreateLatency,
    options: AutoscalingOptions,
) -> ReservationSink:
    """The controller process's webhook sink (runner-group visibility only when the option is on)."""
    groups = GroupVisibility(controllers.github)

    async def visibility(event: Any, targets: Any) -> Any:
        if not options.runner_groups_visibility:
            return None
        return await groups(event, targets)

    return ReservationSink(
        kube=controllers.kube,
        hras=hras,
        resolver=resolver,
        writer=writer,
        recorder=controllers.recorder,
        metrics=metrics,
        default_labels=matching_labels(controllers.options),
        directory=controllers.directory,
        runners=controllers.informers.get("runners"),
        pod_latency=pod_latency,
        visibility=visibility,
        clients=controllers.clients,
    )


def _poll_controller(
    poller: SafetyNetPoller, hras: Informer, informers: MutableMapping[str, Informer]
) -> Controller:
    """The safety-net poll's controller: one key, woken by the HRAs and by their scale targets (the
    repositories to poll are the targets'; one that appears, or changes its spec, after its HRA is
    polled without waiting for the HRA to change; their status writes at most once in 5 s)."""
    poll_ctl = Controller("safety-net-poll", poller.reconcile, workers=1)
    poll_ctl.watch(hras, lambda obj: [POLL_KEY])
    for name in (RD_INFORMER, RUNNERSET_INFORMER):
        if (scale_targets := informers.get(name)) is not None:
            poll_ctl.watch(scale_targets, lambda obj: [POLL_KEY], coalesce=5.0, urgent=spec_changed)
    return poll_ctl


def _watch_for_metrics(
    metrics: Metrics, informers: MutableMapping[str, Informer], github: GitHubClient
) -> None:
    rd = informers.get(RD_INFORMER)
    runner_sets = informers.get(RUNNERSET_INFORMER)
    metrics.watch_objects(
        hras=informers[HRA_INFORMER].store.objects,
        deployments=rd.store.objects if rd is not None else None,
        runner_sets=runner_sets.store.objects if runner_sets is not None else None,
    )
    metrics.watch_github(lambda: budget_snapshot(github))


def install_journal(controllers: Controllers) -> ReservationJournal:
    """``--reservation-journal`` (the default, :attr:`ControllerOptions.reservation_journal`): webhook
    commits create journal entries (ConfigMaps), the leader folds them into the HRAs at most once a
    second, and the HRA controller counts unfolded ones too (see :mod:`runnerd.controller.journal`).
    Before the manager runs; a second call returns the installed journal."""
    autoscaling = controllers.autoscaling
    assert autoscaling is not None
    if autoscaling.writer.journal is not None:
        return autoscaling.writer.journal
    informer = journal_informer(controllers.kube, controllers.options.namespace)
    controllers.informers[informer.name] = controllers.manager.add_informer(informer)
    hra_ctl, controller, writer = autoscaling.hra_controller, autoscaling.controller, autoscaling.writer

    def folded(key: Key, obj: Obj) -> None:
        controller.offer(key, obj)
        writer.remember(key, obj)

    journal = ReservationJournal(controllers.kube, informer, clock=writer.clock, on_folded=folded)
    fold_ctl = Controller("reservation-journal", journal.reconcile, workers=1)

    def to_hra(obj: Obj) -> list[Key]:
        key = hra_key_of(obj)
        return [key] if key is not None else []

    fold_ctl.watch(informer, to_hra)
    fold_ctl.reads(autoscaling.hras)
    hra_ctl.watch(informer, to_hra)  # entries another process (a webhook server) wrote
    controllers.manager.add_controller(fold_ctl)
    controller.journal = writer.journal = journal
    writer.on_journaled = hra_ctl.enqueue  # a no-op unless this process leads
    return journal
