"""Fakes and fixtures shared by the controller unit tests: informers fed by hand, a real EventRecorder
whose events are kept (``event_recorder``), the workload controllers' fakes of ``fakes.py`` (``kube``,
``github``, ``recorder``, ``clock``), real clients that are never connected (``clients``), and the
scale-set controllers' world over a fake cluster and a fake Actions service (``scale_set_world``)."""

from __future__ import annotations

import base64
import itertools
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from runnerd.controller.autoscalingrunnerset import AutoscalingRunnerSetController
from runnerd.controller.common import INDEX_CONTROLLER
from runnerd.controller.ephemeralrunner import EphemeralRunnerController
from runnerd.controller.ephemeralrunnerset import EphemeralRunnerSetController
from runnerd.controller.scaleset_common import ScaleSetAPIs
from runnerd.github import GitHubClient, GitHubConfig, PersonalAccessToken
from runnerd.kube.client import KubeClient
from runnerd.kube.config import KubeConfig
from runnerd.runtime import EventRecorder, Informer, Key, index_by_controller_uid
from tests.unit.controller.fakes import (
    Clock,
    FakeGitHub,
    FakeInformer,
    FakeKube,
    FakeRecorder,
    FakeScaleSetAPI,
    FakeStore,
    KeptEvents,
    NoListWatcher,
)

InformerFactory = Callable[..., Informer]


@pytest.fixture
def hand_fed_informer() -> InformerFactory:
    """``make(name, owned=False)``: an informer whose store the test fills; ``owned=True`` indexes
    it by controller UID, as the controller process does for Runners and RunnerReplicaSets."""

    def make(name: str, *, owned: bool = False) -> Informer:
        indexers = {INDEX_CONTROLLER: index_by_controller_uid} if owned else None
        return Informer(name, NoListWatcher(), indexers=indexers)

    return make


@pytest.fixture
def kept_events() -> KeptEvents:
    return KeptEvents()


@pytest.fixture
def event_recorder(kept_events: KeptEvents) -> EventRecorder:
    """An event recorder writing to :func:`kept_events`."""
    return EventRecorder(kept_events, component="test")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def github() -> FakeGitHub:
    return FakeGitHub()


@pytest.fixture
def kube() -> FakeKube:
    return FakeKube()


@pytest.fixture
def recorder() -> FakeRecorder:
    return FakeRecorder()


SCALE_SET_NS = "arc-runners"
LISTENER_NS = "arc-systems"


class ScaleSetWorld:
    """The three scale-set controllers over one fake cluster (``gc=True``) and one fake Actions
    service; :meth:`restart` makes fresh controller objects over the same state (a controller
    restart). :meth:`settle` reconciles every object until nothing changes, with a kubelet that
    starts each new runner pod; the listener's part (replicas, jobs) is played by the test."""

    def __init__(self, kube: FakeKube, api: FakeScaleSetAPI, recorder: FakeRecorder, clock: Clock) -> None:
        self.kube, self.api, self.recorder, self.clock = kube, api, recorder, clock
        self.suffixes = itertools.count(1)
        self.restart()

    def restart(self) -> None:
        kube, owned = self.kube, {INDEX_CONTROLLER: index_by_controller_uid}

        def informer(plural: str) -> Any:
            return FakeInformer(FakeStore(kube, plural, owned))

        apis = ScaleSetAPIs(kube, self.api)  # type: ignore[arg-type]
        common: dict[str, Any] = {"kube": kube, "apis": apis, "recorder": self.recorder}
        self.ars = AutoscalingRunnerSetController(
            **common,
            scale_sets=informer("autoscalingrunnersets"),
            runner_sets=informer("ephemeralrunnersets"),
            listeners=informer("autoscalinglisteners"),
            listener_namespace=LISTENER_NS,
            clock=self.clock,
            suffix=lambda: f"s{next(self.suffixes)}",
        )
        self.ers = EphemeralRunnerSetController(
            **common,
            runner_sets=informer("ephemeralrunnersets"),
            runners=informer("ephemeralrunners"),
            clock=self.clock,
            suffix=lambda: f"r{next(self.suffixes)}",
        )
        self.er = EphemeralRunnerController(
            **common,
            runners=informer("ephemeralrunners"),
            pods=informer("pods"),
            secrets=informer("secrets"),
            clock=self.clock,
        )

    def names(self, plural: str) -> list[str]:
        return sorted(name for (p, _, name) in self.kube.objects if p == plural)

    def get(self, plural: str, name: str, namespace: str = SCALE_SET_NS) -> dict[str, Any]:
        obj = self.kube.get_object(plural, namespace, name)
        assert obj is not None, (plural, name)
        return obj

    async def settle(self, rounds: int = 30) -> None:
        for _ in range(rounds):
            before = (len(self.kube.calls), repr(sorted(self.kube.objects.items())))
            for plural, ctl in (
                ("autoscalingrunnersets", self.ars),
                ("ephemeralrunnersets", self.ers),
                ("ephemeralrunners", self.er),
            ):
                for name in self.names(plural):
                    await ctl.reconcile(Key(SCALE_SET_NS, name))  # type: ignore[attr-defined]
            self.kubelet()
            if (len(self.kube.calls), repr(sorted(self.kube.objects.items()))) == before:
                return
        raise AssertionError("the scale-set controllers did not settle")

    def kubelet(self) -> None:
        """Every new runner pod starts and becomes Ready."""
        for (plural, _, _), pod in self.kube.objects.items():
            if plural == "pods" and not pod.get("status"):
                pod["status"] = {
                    "phase": "Running",
                    "conditions": [{"type": "Ready", "status": "True"}],
                    "containerStatuses": [
                        {"name": "runner", "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}}}
                    ],
                }

    def runners(self) -> list[str]:
        return self.names("ephemeralrunners")

    def take_job(self, runner: str, job_id: str = "job-1") -> None:
        """The listener's JobStarted: the runner holds a job (its status, and the service's view)."""
        self.get("ephemeralrunners", runner).setdefault("status", {})["jobId"] = job_id
        found = self.api.runner_named(runner)
        assert found is not None
        self.api.busy.add(found.id)

    def finish_job(self, runner: str) -> None:
        """The runner ran its job, deregistered itself and exited 0."""
        found = self.api.runner_named(runner)
        assert found is not None
        self.api.busy.discard(found.id)
        del self.api.runners[found.id]
        self.get("pods", runner)["status"] = {
            "phase": "Succeeded",
            "containerStatuses": [{"name": "runner", "state": {"terminated": {"exitCode": 0}}}],
        }

    def scale(self, replicas: int, patch_id: int) -> None:
        """The listener's patch of the current EphemeralRunnerSet."""
        listener = self.kube.objects[next(k for k in self.kube.objects if k[0] == "autoscalinglisteners")]
        ers = self.get("ephemeralrunnersets", listener["spec"]["ephemeralRunnerSetName"])
        ers["spec"].update(replicas=replicas, patchID=patch_id)


def autoscaling_runner_set(name: str = "arc-runner-set", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "actions.github.com/v1alpha1",
        "kind": "AutoscalingRunnerSet",
        "metadata": {"name": name, "namespace": SCALE_SET_NS, "uid": f"uid-{name}"},
        "spec": {
            "githubConfigUrl": "https://github.com/octo",
            "githubConfigSecret": "pre-defined-secret",
            "minRunners": 0,
            "maxRunners": 5,
            "template": {
                "spec": {"containers": [{"name": "runner", "image": "ghcr.io/actions/actions-runner"}]}
            },
            **spec,
        },
    }


@pytest.fixture
def scale_set_api() -> FakeScaleSetAPI:
    return FakeScaleSetAPI()


@pytest.fixture
def scale_set_world(scale_set_api: FakeScaleSetAPI, recorder: FakeRecorder, clock: Clock) -> ScaleSetWorld:
    """An empty scale-set namespace with its GitHub Secret (a PAT)."""
    kube = FakeKube(gc=True)
    kube.objects[("secrets", SCALE_SET_NS, "pre-defined-secret")] = {
        "metadata": {"name": "pre-defined-secret", "namespace": SCALE_SET_NS},
        "data": {"github_token": base64.b64encode(b"ghp_secret").decode()},
    }
    return ScaleSetWorld(kube, scale_set_api, recorder, clock)


@pytest.fixture
async def clients() -> AsyncIterator[tuple[KubeClient, GitHubClient]]:
    """Real Kubernetes and GitHub clients that are never connected: for wiring tests that build a
    whole process (``runnerd.controller.app.build``) without running it."""
    kube = KubeClient(KubeConfig(host="http://127.0.0.1:9", source="test"))  # never connected
    github = GitHubClient(PersonalAccessToken("t"), config=GitHubConfig(), trust_env=False)
    yield kube, github
    await github.close()
    await kube.close()
