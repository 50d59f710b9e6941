"""Wiring: informers, controllers, leader election and the manager of one controller process."""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any

from runnerd.api import constants as c
from runnerd.controller.autoscaler import Autoscaling, install
from runnerd.controller.clients import GitHubAPI, GitHubClients
from runnerd.controller.common import (
    INDEX_CONTROLLER,
    PODS,
    RUNNER_DEPLOYMENTS,
    RUNNER_REPLICA_SETS,
    RUNNERS,
    ControllerOptions,
)
from runnerd.controller.directory import RunnerDirectory
from runnerd.controller.orphans import OrphanSweeper, sweep_key
from runnerd.controller.runner import RunnerController
from runnerd.controller.runnerdeployment import DeploymentController
from runnerd.controller.runnerreplicaset import ReplicaSetController
from runnerd.controller.runnerset import install as install_runnersets
from runnerd.github import GitHubClient, Scope
from runnerd.kube.client import KubeClient
from runnerd.reconcile.runnerpod import LABEL_RUNNER
from runnerd.runtime import (
    Controller,
    EventRecorder,
    Informer,
    Key,
    LeaderElector,
    Manager,
    controller_owner,
    index_by_controller_uid,
    slim_pod,
)

COMPONENT = "runnerd-controller"
INDEX_NAME = "name"


def index_by_name(obj: dict[str, Any]) -> list[str]:
    return [obj["metadata"]["name"]]


@dataclass
class Controllers:
    """Everything one process runs, for tests and metrics to look at."""

    manager: Manager
    kube: KubeClient
    github: GitHubClient
    options: ControllerOptions
    recorder: EventRecorder
    directory: RunnerDirectory
    runner: RunnerController
    replica_set: ReplicaSetController
    deployment: DeploymentController
    sweeper: OrphanSweeper
    informers: MutableMapping[str, Informer]
    clients: GitHubClients
    """GitHub clients per credentials Secret (githubAPICredentialsFrom), the default included."""
    """By name: runners, pods, runnerreplicasets, runnerdeployments (extensions may add more)."""
    autoscaling: Autoscaling | None = None
    """HRA autoscaling, the webhook sink and the safety-net poll (added by :func:`install`)."""


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
    """The controllers of one process. ``runner_sets=False`` leaves the RunnerSet controller out (no
    StatefulSet, Secret or PersistentVolumeClaim access); ``recycle_volumes=False`` keeps it but
    without handing volumes on (no cluster-wide PersistentVolume access)."""
    ns = options.namespace
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
    recorder = EventRecorder(kube.event_sink(), component=COMPONENT, instance=identity)
    directory = RunnerDirectory(github)
    clients = GitHubClients(kube, GitHubAPI(github, directory), refresh=options.credentials_refresh)

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

    runner_ctl = Controller("runner", runner.reconcile, workers=options.runner_workers)
    runner_ctl.watch(runners)
    runner_ctl.owns(pods, kind="Runner", group=c.GROUP)

    rrs_ctl = Controller("runnerreplicaset", replica_set.reconcile, workers=options.workers)
    rrs_ctl.watch(replica_sets)
    rrs_ctl.owns(runners, kind="RunnerReplicaSet", group=c.GROUP)
    runner_owner = controller_owner("Runner", c.GROUP)
    rrs_owner = controller_owner("RunnerReplicaSet", c.GROUP)

    def pod_to_replica_set(pod: dict[str, Any]) -> list[Key]:
        keys: list[Key] = []
        for runner_key in runner_owner(pod):
            owner = runners.store.get(runner_key)
            if owner is not None:
                keys += rrs_owner(owner)
        return keys

    rrs_ctl.watch(pods, pod_to_replica_set)

    def runner_hinted(_scope: Scope, name: str) -> None:
        # a workflow_job webhook named this runner: reconcile it now (status Running, no scale-down)
        for key in runners.store.index_keys(INDEX_NAME, name):
            runner_ctl.enqueue(key)

    directory.on_hint(runner_hinted)

    rd_ctl = Controller("runnerdeployment", deployment.reconcile, workers=options.workers)
    rd_ctl.watch(deployments)
    rd_ctl.owns(replica_sets, kind="RunnerDeployment", group=c.GROUP)

    informers: dict[str, Informer] = {i.name: i for i in (runners, pods, replica_sets, deployments)}
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
    sweep_ctl = Controller("github-orphans", sweeper.reconcile, workers=1)
    sweep_ctl.watch(replica_sets, sweep_key)

    manager = Manager(elector=elector)
    for ctl in (runner_ctl, rrs_ctl, rd_ctl, sweep_ctl):
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
    controllers.autoscaling = install(controllers)
    controllers.autoscaling.metrics.watch_process(
        leading=lambda: manager.leading, orphans=lambda: (sweeper.suspected, sweeper.removed_total)
    )
    return controllers
