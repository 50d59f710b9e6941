"""What one process runs: the objects :mod:`runnerd.controller.app` builds, for the CLI, the web
layer, tests and metrics to look at (and for installers such as the RunnerSet controller's to extend).

No building here, and no import of :mod:`runnerd.controller.app`.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass

from runnerd.controller.clients import GitHubClients
from runnerd.controller.common import ControllerOptions
from runnerd.controller.cost import CostController
from runnerd.controller.directory import RunnerDirectory
from runnerd.controller.hra.controller import HRAController
from runnerd.controller.hra.options import AutoscalingOptions
from runnerd.controller.latency import PodCreateLatency, RunnerStartup
from runnerd.controller.orphans import OrphanSweeper
from runnerd.controller.poller import SafetyNetPoller
from runnerd.controller.reservation_writer import ReservationWriter
from runnerd.controller.reservations import ReservationSink
from runnerd.controller.runner import RunnerController
from runnerd.controller.runnerdeployment import DeploymentController
from runnerd.controller.runnerreplicaset import ReplicaSetController
from runnerd.controller.scaleset import ScaleSetControllers
from runnerd.controller.sizedintake import SizedIntake
from runnerd.controller.sizingpolicy import SizingPolicies
from runnerd.controller.targets import TargetResolver
from runnerd.github import GitHubClient
from runnerd.github.actions.clients import ActionsClients
from runnerd.kube.client import KubeClient
from runnerd.runtime import Controller, EventRecorder, Informer, Manager
from runnerd.web.metrics import Metrics
from runnerd.web.webhook import DEFAULT_DEDUP_SIZE, DEFAULT_MAX_BODY, WebhookServer


@dataclass
class Autoscaling:
    """What :func:`runnerd.controller.app_autoscaling.install_autoscaling` added to a controller process."""

    options: AutoscalingOptions
    metrics: Metrics
    hras: Informer
    resolver: TargetResolver
    controller: HRAController
    hra_controller: Controller
    writer: ReservationWriter
    sink: ReservationSink
    poller: SafetyNetPoller
    poll_controller: Controller
    pod_latency: PodCreateLatency
    runner_startup: RunnerStartup

    def webhook_server(
        self, secret: str | bytes, *, max_body: int = DEFAULT_MAX_BODY, dedup_size: int = DEFAULT_DEDUP_SIZE
    ) -> WebhookServer:
        return WebhookServer(
            secret=secret, sink=self.sink, metrics=self.metrics, max_body=max_body, dedup_size=dedup_size
        )

    async def close(self) -> None:
        await self.writer.close()
        await self.controller.close()


@dataclass
class ScaleSets:
    """What :func:`runnerd.controller.app.install_scale_sets` added to a process (``--scale-sets``):
    the scale-set controllers, the listener manager, the Actions-service clients."""

    controllers: ScaleSetControllers
    clients: ActionsClients
    metrics: Metrics

    async def close(self) -> None:
        await self.clients.close()


@dataclass
class ScaleSetProcess:
    """A scale-set-only controller process (``runnerd controller --scale-sets``): no legacy
    controllers, no legacy GitHub credentials (each AutoscalingRunnerSet names its own Secret)."""

    manager: Manager
    kube: KubeClient
    options: ControllerOptions
    recorder: EventRecorder
    informers: MutableMapping[str, Informer]
    metrics: Metrics
    scale_sets: ScaleSets | None = None


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
    """HRA autoscaling, the webhook sink and the safety-net poll (added by
    :func:`runnerd.controller.app_autoscaling.install_autoscaling`)."""
    scale_sets: ScaleSets | None = None
    """Scale-set mode next to the legacy one (``--scale-sets --legacy``)."""
    sizing: Sizing | None = None
    """The policy controller and the sized-job intake (``--enable-sizing``)."""
    cost: CostController | None = None
    """The cost ledger's writer (added by :func:`runnerd.controller.app.install_cost`)."""


@dataclass
class Sizing:
    """Per-job sizing: the RunnerSizingPolicy informer and controller, and the intake the webhook
    sink and the safety-net poll hand sized jobs to (:func:`runnerd.controller.sizing.install`)."""

    policies: SizingPolicies
    informer: Informer
    controller: Controller
    intake: SizedIntake


@dataclass
class WebhookProcess:
    """The standalone webhook server's moving parts (``runnerd webhook-server``, built by
    :func:`runnerd.controller.app.build_webhook_process`)."""

    manager: Manager
    informers: dict[str, Informer]
    sink: ReservationSink
    writer: ReservationWriter
    metrics: Metrics

    def webhook_server(
        self, secret: str | bytes, *, max_body: int = DEFAULT_MAX_BODY, dedup_size: int = DEFAULT_DEDUP_SIZE
    ) -> WebhookServer:
        return WebhookServer(
            secret=secret, sink=self.sink, metrics=self.metrics, max_body=max_body, dedup_size=dedup_size
        )

    @property
    def ready(self) -> bool:
        return all(i.synced for i in self.informers.values())
