"""Scale-set mode's controllers (ARC's ``actions.github.com/v1alpha1``), added to a controller process.

:func:`install` mirrors the legacy controllers' installers (:func:`runnerd.controller.runnerset.install`):
it adds the AutoscalingRunnerSet, EphemeralRunnerSet and EphemeralRunner controllers and their
informers to a process (:class:`ScaleSetHost`: the legacy process :func:`runnerd.controller.app.build`
makes, or the scale-set-only one of :func:`runnerd.controller.app.build_scale_set_process`). The
Actions-service clients come from the caller (one per configuration URL and Secret); with
``listener_clients`` it also adds the listener manager (:mod:`runnerd.controller.listeners`): one
in-process listener per AutoscalingListener, on the leader only.

Watches: an AutoscalingRunnerSet on itself, its EphemeralRunnerSets (controller owner) and its
listener (labels ``actions.github.com/scale-set-name``/``-namespace``: the listener lives in the
controller's namespace); an EphemeralRunnerSet on itself and its EphemeralRunners; an
EphemeralRunner on itself, its pod and its JIT Secret (owner). The EphemeralRunner controller runs
``options.runner_workers`` workers (as the legacy Runner controller does), the others
``options.workers``. Runner pods and Secrets are listed by the label every scale-set object
carries, so other pods and Secrets never reach the cache.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Protocol

from runnerd.api.scaleset import constants as c
from runnerd.controller.autoscalingrunnerset import AutoscalingRunnerSetController
from runnerd.controller.common import INDEX_CONTROLLER, ControllerOptions
from runnerd.controller.ephemeralrunner import EphemeralRunnerController
from runnerd.controller.ephemeralrunnerset import EphemeralRunnerSetController
from runnerd.controller.listeners import ListenerController, ListenerManager
from runnerd.controller.scaleset_common import (
    AUTOSCALING_LISTENERS,
    AUTOSCALING_RUNNER_SETS,
    EPHEMERAL_RUNNER_SETS,
    EPHEMERAL_RUNNERS,
    ScaleSetAPIs,
)
from runnerd.github.actions.api import ScaleSetClients
from runnerd.github.actions.clients import ActionsClients
from runnerd.kube.client import KubeClient
from runnerd.kube.resources import PODS, SECRETS
from runnerd.runtime import (
    Controller,
    EventRecorder,
    Informer,
    Key,
    Manager,
    Mapper,
    Obj,
    controller_owner,
    index_by_controller_uid,
)
from runnerd.runtime.controller import Reconcile


class ScaleSetHost(Protocol):
    """What :func:`install` extends: a process's client, options, event recorder, manager and informers."""

    kube: KubeClient
    options: ControllerOptions
    recorder: EventRecorder
    manager: Manager
    informers: MutableMapping[str, Informer]


@dataclass(frozen=True)
class ScaleSetControllers:
    autoscaling_runner_set: AutoscalingRunnerSetController
    ephemeral_runner_set: EphemeralRunnerSetController
    ephemeral_runner: EphemeralRunnerController
    listeners: ListenerManager | None = None


def listener_owner(obj: Obj) -> list[Key]:
    """Mapper: a listener's AutoscalingRunnerSet (named by its labels; it lives in another namespace)."""
    labels = (obj.get("metadata") or {}).get("labels") or {}
    name, namespace = labels.get(c.LABEL_SCALE_SET_NAME), labels.get(c.LABEL_SCALE_SET_NAMESPACE)
    return [Key(namespace, name)] if name and namespace else []


@dataclass(frozen=True)
class ScaleSetInformers:
    """The caches the scale-set controllers read (runner pods and Secrets by the scale-set label)."""

    scale_sets: Informer
    runner_sets: Informer
    runners: Informer
    listeners: Informer
    pods: Informer
    secrets: Informer

    def all(self) -> tuple[Informer, ...]:
        return (self.scale_sets, self.runner_sets, self.runners, self.listeners, self.pods, self.secrets)


def scale_set_informers(kube: KubeClient, ns: str | None, listener_ns: str) -> ScaleSetInformers:
    owned = {INDEX_CONTROLLER: index_by_controller_uid}
    scale_sets = Informer("autoscalingrunnersets", kube.list_watcher(AUTOSCALING_RUNNER_SETS, namespace=ns))
    runner_sets = Informer(
        "ephemeralrunnersets", kube.list_watcher(EPHEMERAL_RUNNER_SETS, namespace=ns), indexers=owned
    )
    runners = Informer("ephemeralrunners", kube.list_watcher(EPHEMERAL_RUNNERS, namespace=ns), indexers=owned)
    listeners = Informer(
        "autoscalinglisteners", kube.list_watcher(AUTOSCALING_LISTENERS, namespace=listener_ns)
    )
    selector = c.LABEL_SCALE_SET_NAME
    pods = Informer("scaleset-pods", kube.list_watcher(PODS, namespace=ns, label_selector=selector))
    secrets = Informer("scaleset-secrets", kube.list_watcher(SECRETS, namespace=ns, label_selector=selector))
    return ScaleSetInformers(scale_sets, runner_sets, runners, listeners, pods, secrets)


Wiring = list[tuple[str, Reconcile, int, Informer, list[tuple[Informer, Mapper]]]]


def add_controllers(manager: Manager, wiring: Wiring) -> None:
    """One controller per row: its name, reconcile, workers, primary informer and the informers it
    watches through a mapper to the primary's keys."""
    for name, reconcile, n, primary, secondaries in wiring:
        ctl = Controller(name, reconcile, workers=n)
        ctl.watch(primary)
        for informer, mapper in secondaries:
            ctl.watch(informer, mapper)
        manager.add_controller(ctl)


def install(
    controllers: ScaleSetHost,
    clients: ScaleSetClients,
    *,
    listener_clients: ActionsClients | None = None,
    listener_namespace: str | None = None,
) -> ScaleSetControllers:
    """Add the scale-set controllers (and their informers) to a process; the AutoscalingListeners
    live in ``listener_namespace`` (default: the process's namespace, ``options.namespace``, or
    ``default``). ``listener_clients``: also run the listeners, in this process."""
    kube, ns = controllers.kube, controllers.options.namespace
    listener_ns = listener_namespace or ns or "default"
    inf = scale_set_informers(kube, ns, listener_ns)
    scale_sets, runner_sets, runners = inf.scale_sets, inf.runner_sets, inf.runners
    listeners, pods, secrets = inf.listeners, inf.pods, inf.secrets
    apis = ScaleSetAPIs(kube, clients)
    recorder = controllers.recorder
    ars = AutoscalingRunnerSetController(
        kube=kube,
        apis=apis,
        recorder=recorder,
        scale_sets=scale_sets,
        runner_sets=runner_sets,
        listeners=listeners,
        listener_namespace=listener_ns,
    )
    ers = EphemeralRunnerSetController(
        kube=kube, apis=apis, recorder=recorder, runner_sets=runner_sets, runners=runners
    )
    er = EphemeralRunnerController(
        kube=kube, apis=apis, recorder=recorder, runners=runners, pods=pods, secrets=secrets
    )
    workers, runner_workers = controllers.options.workers, controllers.options.runner_workers
    wiring: Wiring = [
        (
            "autoscalingrunnerset",
            ars.reconcile,
            workers,
            scale_sets,
            [
                (runner_sets, controller_owner("AutoscalingRunnerSet", c.GROUP)),
                (listeners, listener_owner),
            ],
        ),
        (
            "ephemeralrunnerset",
            ers.reconcile,
            workers,
            runner_sets,
            [
                (runners, controller_owner("EphemeralRunnerSet", c.GROUP)),
            ],
        ),
        (
            "ephemeralrunner",
            er.reconcile,
            runner_workers,  # as many as the legacy Runner controller: each waits on a JIT config
            runners,
            [
                (pods, controller_owner("EphemeralRunner", c.GROUP)),
                (secrets, controller_owner("EphemeralRunner", c.GROUP)),
            ],
        ),
    ]
    add_controllers(controllers.manager, wiring)
    for informer in inf.all():
        controllers.informers[informer.name] = informer
    manager: ListenerManager | None = None
    if listener_clients is not None:
        manager = ListenerManager(kube=kube, listeners=listeners, apis=apis, clients=listener_clients)
        controllers.manager.add_controller(ListenerController(manager))
    return ScaleSetControllers(ars, ers, er, manager)
