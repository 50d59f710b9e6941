"""Wiring: informers, controllers, leader election and the manager of one process.

:func:`build` makes the controller process (``runnerd controller``): the workload controllers, the
orphan sweep, the RunnerSet controller (:func:`runnerd.controller.runnerset.install`) and HRA
autoscaling (:func:`runnerd.controller.app_autoscaling.install_autoscaling`: the HRA informer and
controller, the webhook reservation sink served by :mod:`runnerd.web`, the safety-net poll and the
metrics; :func:`runnerd.controller.app_autoscaling.install_journal`: the reservation journal).
:func:`install_cost` adds the cost ledger's writer (leader only; ``runnerd controller`` always).
:func:`install_scale_sets` adds scale-set mode (``--scale-sets --legacy``: next to the legacy
controllers); :func:`build_scale_set_process` makes a scale-set-only process (``--scale-sets``).
:func:`build_webhook_process` makes the standalone webhook server (``runnerd webhook-server``).
Wiring lives here only (and in :mod:`runnerd.controller.app_autoscaling`): the controllers this module
builds never import it.
"""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping
from typing import Any

from runnerd.api import constants as c
from runnerd.controller.app_autoscaling import budget_snapshot, install_autoscaling, install_journal
from runnerd.controller.clients import GitHubAPI, GitHubClients
from runnerd.controller.common import (
    HORIZONTAL_RUNNER_AUTOSCALERS,
    INDEX_CONTROLLER,
    PODS,
    RUNNER_DEPLOYMENTS,
    RUNNER_REPLICA_SETS,
    RUNNER_SETS,
    RUNNERS,
    ControllerOptions,
)
from runnerd.controller.controller_metrics import ControllerCollector
from runnerd.controller.cost import (
    COST_KEY,
    NODES_INFORMER,
    CostController,
    CostLedgerWriter,
    CostSettings,
    KubeConfigMaps,
    RunnerPodFacts,
)
from runnerd.controller.directory import RunnerDirectory
from runnerd.controller.journal import ReservationJournal
from runnerd.controller.listener_export import ListenerCollector
from runnerd.controller.orphans import OrphanSweeper, sweep_key
from runnerd.controller.process import Controllers, ScaleSetProcess, ScaleSets, WebhookProcess
from runnerd.controller.reservation_writer import ReservationWriter
from runnerd.controller.reservations import ReservationSink
from runnerd.controller.runner import RunnerController
from runnerd.controller.runnerdeployment import DeploymentController
from runnerd.controller.runnerreplicaset import (
    COALESCE_WINDOW,
    ReplicaSetController,
    leaves_the_count,
    pod_exits,
)
from runnerd.controller.runnerset import install as install_runnersets
from runnerd.controller.scaleset import ScaleSetHost
from runnerd.controller.scaleset import install as install_scale_set_controllers
from runnerd.controller.targets import HRA_INFORMER, RD_INFORMER, RUNNERSET_INFORMER, TargetResolver
from runnerd.controller.visibility import GroupVisibility
from runnerd.github import GitHubClient, Scope
from runnerd.github.actions.clients import ActionsClients
from runnerd.kube.client import KubeClient
from runnerd.kube.resources import NODES
from runnerd.reconcile.admitting import slim_node
from runnerd.reconcile.runnerpod import LABEL_RUNNER
from runnerd.runtime import (
    Controller,
    EventRecorder,
    Informer,
    InformerEvent,
    Key,
    LeaderElector,
    Manager,
    controller_owner,
    index_by_controller_uid,
    slim_pod,
    spec_changed,
)
from runnerd.web.metrics import Metrics

COMPONENT = "runnerd-controller"
INDEX_NAME = "name"
COST_POKE_DELAY_S = 5.0
"""A runner that finished is in the cost ledger this soon; a burst of them shares one write, so a
large ledger (0.8 s of CPU a pass at 24,000 buckets, bench/cost_ledger_bench.py) costs at most
about a seventh of a core while runners finish."""


def index_by_name(obj: dict[str, Any]) -> list[str]:
    return [obj["metadata"]["name"]]


def build(
    *,
    kube: KubeClient,
    github: GitHubClient,
    options: ControllerOptions,
    elector: LeaderElector | None = None,
    identity: str = "",
    runner_sets: bool = True,
    recycle_volumes: bool = True,
) -> Controllers:
    """The controllers of one process. ``runner_sets=False``: no RunnerSet controller (no StatefulSet,
    Secret or claim access); ``recycle_volumes=False``: no volume hand-on (no PersistentVolume access)."""
    informers = _workload_informers(kube, options.namespace)
    recorder = EventRecorder(kube.event_sink(), component=COMPONENT, instance=identity)
    directory = RunnerDirectory(github)
    directory.period = options.sync_period
    clients = GitHubClients(kube, GitHubAPI(github, directory), refresh=options.credentials_refresh)
    runner, replica_set, deployment, sweeper = _workload_reconcilers(
        kube, github, options, informers, recorder, directory, clients
    )
    manager = Manager(elector=elector)
    for ctl in _workload_controllers(informers, runner, replica_set, deployment, sweeper, directory, options):
        manager.add_controller(ctl)
    controllers = Controllers(
        manager=manager,
        kube=kube,
        github=github,
        options=options,
        recorder=recorder,
        directory=directory,
        runner=runner,
        replica_set=replica_set,
        deployment=deployment,
        informers=informers,
        sweeper=sweeper,
        clients=clients,
    )
    if runner_sets:
        install_runnersets(controllers, recycle_volumes=recycle_volumes)
    controllers.autoscaling = install_autoscaling(controllers)
    if options.reservation_journal:
        install_journal(controllers)
    controllers.autoscaling.metrics.watch_process(
        leading=lambda: manager.leading, orphans=lambda: (sweeper.suspected, sweeper.removed_total)
    )
    return controllers


def _workload_reconcilers(
    kube: KubeClient,
    github: GitHubClient,
    options: ControllerOptions,
    informers: MutableMapping[str, Informer],
    recorder: EventRecorder,
    directory: RunnerDirectory,
    clients: GitHubClients,
) -> tuple[RunnerController, ReplicaSetController, DeploymentController, OrphanSweeper]:
    """The Runner, RunnerReplicaSet and RunnerDeployment reconcilers and the orphan sweep."""
    runners, pods = informers["runners"], informers["pods"]
    replica_sets, deployments = informers["runnerreplicasets"], informers["runnerdeployments"]
    runner = RunnerController(
        kube=kube,
        github=github,
        directory=directory,
        recorder=recorder,
        runners=runners,
        pods=pods,
        options=options,
        clients=clients,
    )
    replica_set = ReplicaSetController(
        kube=kube,
        directory=directory,
        recorder=recorder,
        replica_sets=replica_sets,
        runners=runners,
        pods=pods,
        options=options,
    )
    deployment = DeploymentController(
        kube=kube,
        recorder=recorder,
        deployments=deployments,
        replica_sets=replica_sets,
        runners=runners,
        options=options,
    )
    sweeper = OrphanSweeper(
        github=github,
        directory=directory,
        runners=runners,
        informers=informers,
        period=options.orphan_sweep_period,
        label=options.pod.installation_label,
        grace=options.orphan_grace,
        clients=clients,
    )
    return runner, replica_set, deployment, sweeper


def _workload_informers(kube: KubeClient, ns: str | None) -> dict[str, Informer]:
    """By name: runners, pods, runnerreplicasets, runnerdeployments."""
    indexers = {INDEX_CONTROLLER: index_by_controller_uid}
    runners = Informer(
        "runners",
        kube.list_watcher(RUNNERS, namespace=ns),
        indexers={**indexers, INDEX_NAME: index_by_name},
    )
    pods = Informer(
        "pods",
        kube.list_watcher(PODS, namespace=ns, label_selector=LABEL_RUNNER),
        indexers=indexers,
        transform=slim_pod,  # only what decisions read: a runner pod's env holds its JIT config
    )
    replica_sets = Informer(
        "runnerreplicasets", kube.list_watcher(RUNNER_REPLICA_SETS, namespace=ns), indexers=indexers
    )
    deployments = Informer("runnerdeployments", kube.list_watcher(RUNNER_DEPLOYMENTS, namespace=ns))
    return {i.name: i for i in (runners, pods, replica_sets, deployments)}


def _workload_controllers(
    informers: MutableMapping[str, Informer],
    runner: RunnerController,
    replica_set: ReplicaSetController,
    deployment: DeploymentController,
    sweeper: OrphanSweeper,
    directory: RunnerDirectory,
    options: ControllerOptions,
) -> list[Controller]:
    """The Runner, RunnerReplicaSet, RunnerDeployment and orphan-sweep controllers, watching."""
    runners, pods = informers["runners"], informers["pods"]
    replica_sets, deployments = informers["runnerreplicasets"], informers["runnerdeployments"]
    runner_ctl = Controller("runner", runner.reconcile, workers=options.runner_workers)
    runner_ctl.watch(runners)
    runner_ctl.owns(pods, kind="Runner", group=c.GROUP)

    rrs_ctl = Controller("runnerreplicaset", replica_set.reconcile, workers=options.workers)
    # a replica set's own status writes and its runners' steps are coalesced; a scale is not
    rrs_ctl.watch(replica_sets, coalesce=COALESCE_WINDOW, urgent=spec_changed)
    rrs_ctl.owns(
        runners,
        kind="RunnerReplicaSet",
        group=c.GROUP,
        coalesce=COALESCE_WINDOW,
        urgent=leaves_the_count(pods),
    )
    runner_owner = controller_owner("Runner", c.GROUP)
    rrs_owner = controller_owner("RunnerReplicaSet", c.GROUP)

    def pod_to_replica_set(pod: dict[str, Any]) -> list[Key]:
        keys: list[Key] = []
        for runner_key in runner_owner(pod):
            owner = runners.store.get(runner_key)
            if owner is not None:
                keys += rrs_owner(owner)
        return keys

    rrs_ctl.watch(pods, pod_to_replica_set, coalesce=COALESCE_WINDOW, urgent=pod_exits)

    def runner_hinted(_scope: Scope, name: str) -> None:
        # a workflow_job webhook named this runner: reconcile it now (status Running, no scale-down)
        for key in runners.store.index_keys(INDEX_NAME, name):
            runner_ctl.enqueue(key)

    directory.on_hint(runner_hinted)

    rd_ctl = Controller("runnerdeployment", deployment.reconcile, workers=options.workers)
    rd_ctl.watch(deployments, coalesce=COALESCE_WINDOW, urgent=spec_changed)
    rd_ctl.owns(
        replica_sets, kind="RunnerDeployment", group=c.GROUP, coalesce=COALESCE_WINDOW, urgent=spec_changed
    )

    sweep_ctl = Controller("github-orphans", sweeper.reconcile, workers=1)
    sweep_ctl.watch(replica_sets, sweep_key)
    return [runner_ctl, rrs_ctl, rd_ctl, sweep_ctl]


def install_cost(controllers: Controllers, settings: CostSettings) -> CostController:
    """The cost ledger's writer: a leader-only controller with one key, written every
    ``settings.interval_s`` and when a runner pod's runner container terminates or a started one is
    deleted; the cost counters and the dashboard's Cost table read the ledger it last wrote. A
    runner's GPU product is its node's label: the process gets a node informer (cluster-wide
    ``list``/``watch`` on nodes; optional: without it, the pod's node selector names the product)."""
    informers, manager = controllers.informers, controllers.manager
    pods, runners = informers["pods"], informers["runners"]
    if NODES_INFORMER not in informers:  # with --enable-sizing, admission made it already
        nodes = Informer(NODES_INFORMER, controllers.kube.list_watcher(NODES), transform=slim_node)
        informers[NODES_INFORMER] = manager.add_informer(nodes, required=False)
    writer = CostLedgerWriter(
        KubeConfigMaps(controllers.kube), settings.namespace, settings.prices, settings.limits
    )
    source = RunnerPodFacts(pods, runners, informers)
    cost = CostController(writer, source, settings.interval_s, settings.prices)
    ctl = Controller("cost-ledger", cost.reconcile, workers=1)
    ctl.reads(pods, runners)
    ctl.seed(COST_KEY)

    def on_pod(event: InformerEvent) -> None:
        if source.on_pod(event):
            ctl.enqueue(COST_KEY, after=COST_POKE_DELAY_S)  # a no-op unless this process leads

    pods.add_handler(on_pod)
    manager.add_controller(ctl)
    if controllers.autoscaling is not None:
        prices = settings.prices
        controllers.autoscaling.metrics.watch_cost(
            lambda: (writer.last, prices) if manager.leading and writer.last is not None else None
        )
    controllers.cost = cost
    return cost


# --- scale-set mode ----------------------------------------------------------------------------------


def install_scale_sets(
    host: ScaleSetHost,
    *,
    clients: ActionsClients,
    metrics: Metrics,
    listener_namespace: str | None = None,
) -> ScaleSets:
    """Add the scale-set controllers and the in-process listeners to a process; the listeners' and
    the controller's metrics join ``metrics`` (ARC's names)."""
    controllers = install_scale_set_controllers(
        host, clients, listener_clients=clients, listener_namespace=listener_namespace
    )
    listeners = controllers.listeners
    assert listeners is not None
    metrics.registry.register(ListenerCollector(listeners.metrics))
    runner_sets = host.informers["ephemeralrunnersets"].store
    metrics.registry.register(ControllerCollector(runner_sets.objects, listeners.running_scale_sets))
    return ScaleSets(controllers=controllers, clients=clients, metrics=metrics)


def build_scale_set_process(
    *,
    kube: KubeClient,
    options: ControllerOptions,
    clients: ActionsClients,
    elector: LeaderElector | None = None,
    identity: str = "",
    listener_namespace: str | None = None,
) -> ScaleSetProcess:
    """A process running scale-set mode only: no legacy informers (their CRDs may be absent)."""
    process = ScaleSetProcess(
        manager=Manager(elector=elector),
        kube=kube,
        options=options,
        recorder=EventRecorder(kube.event_sink(), component=COMPONENT, instance=identity),
        informers={},
        metrics=Metrics(),
    )
    process.scale_sets = install_scale_sets(
        process, clients=clients, metrics=process.metrics, listener_namespace=listener_namespace
    )
    manager = process.manager
    process.metrics.watch_process(leading=lambda: manager.leading, orphans=lambda: (0, 0))
    return process


# --- the standalone webhook server ------------------------------------------------------------------


def build_webhook_process(
    *,
    kube: KubeClient,
    namespace: str | None,
    github: GitHubClient | None = None,
    runner_sets: bool = True,
    default_labels: Iterable[str] = (),
    metrics: Metrics | None = None,
    identity: str = "",
    reservation_journal: bool = True,
) -> WebhookProcess:
    """A process that only serves webhooks: it writes reservations, the controller scales.

    It watches HRAs, RunnerDeployments and (``runner_sets``) RunnerSets. ``github`` is only used to
    resolve runner-group visibility. With ``reservation_journal`` (the default) its commits create
    journal entries, which the leading controller folds; it reads none it did not write (no
    ConfigMap list or watch: :class:`ReservationJournal` without an informer).
    """
    metrics = metrics or Metrics()
    informers: dict[str, Informer] = {
        HRA_INFORMER: Informer(
            HRA_INFORMER, kube.list_watcher(HORIZONTAL_RUNNER_AUTOSCALERS, namespace=namespace)
        ),
        RD_INFORMER: Informer(RD_INFORMER, kube.list_watcher(RUNNER_DEPLOYMENTS, namespace=namespace)),
    }
    if runner_sets:
        informers[RUNNERSET_INFORMER] = Informer(
            RUNNERSET_INFORMER, kube.list_watcher(RUNNER_SETS, namespace=namespace)
        )
    manager = Manager()
    for informer in informers.values():
        manager.add_informer(informer)
    resolver = TargetResolver(informers)
    writer = ReservationWriter(kube, informers[HRA_INFORMER], resolver, metrics=metrics)
    if reservation_journal:
        writer.journal = ReservationJournal(kube, None, clock=writer.clock)
    recorder = EventRecorder(kube.event_sink(), component="runnerd-webhook-server", instance=identity)
    sink = ReservationSink(
        kube=kube,
        hras=informers[HRA_INFORMER],
        resolver=resolver,
        writer=writer,
        recorder=recorder,
        metrics=metrics,
        default_labels=default_labels,
        visibility=GroupVisibility(github) if github is not None else None,
    )
    metrics.watch_objects(
        hras=informers[HRA_INFORMER].store.objects,
        deployments=informers[RD_INFORMER].store.objects,
        runner_sets=informers[RUNNERSET_INFORMER].store.objects if runner_sets else None,
    )
    if github is not None:
        metrics.watch_github(lambda: budget_snapshot(github))
    return WebhookProcess(manager, informers, sink, writer, metrics)
