"""The EphemeralRunner controller on its own: informer lag never registers a runner twice, an
invalid pod is ARC's terminal ``InvalidPod``, the listener's job fields survive its status writes,
and the JIT config appears in no event."""

from __future__ import annotations

import copy

import pytest

from runnerd.api.scaleset import constants as c
from runnerd.controller.ephemeralrunner import EphemeralRunnerController
from runnerd.controller.scaleset_common import EPHEMERAL_RUNNERS, ScaleSetAPIs
from runnerd.manifests.scaleset import LABEL_RUNNER_POD, build_ephemeral_runner
from runnerd.runtime import Key
from tests.unit.controller.conftest import SCALE_SET_NS, ScaleSetWorld
from tests.unit.controller.fakes import FakeInformer, FakeKube, FakeStore

pytestmark = pytest.mark.timeout(10)

NAME = "set-runner-abcde"
KEY = Key(SCALE_SET_NS, NAME)


def add_runner(world: ScaleSetWorld, containers: list[dict[str, str]] | None = None) -> None:
    ers = {
        "apiVersion": c.API_VERSION,
        "kind": "EphemeralRunnerSet",
        "metadata": {"name": "set", "namespace": SCALE_SET_NS, "uid": "set-uid", "labels": {}},
        "spec": {
            "ephemeralRunnerSpec": {
                "githubConfigUrl": "https://github.com/octo",
                "githubConfigSecret": "pre-defined-secret",
                "runnerScaleSetId": 1,
                "spec": {"containers": containers or [{"name": "runner", "image": "runner"}]},
            }
        },
    }
    er = build_ephemeral_runner(ers, NAME, 1)
    er["metadata"]["uid"] = "er-uid"
    world.kube.objects[("ephemeralrunners", SCALE_SET_NS, NAME)] = er


def lagging(world: ScaleSetWorld) -> EphemeralRunnerController:
    """A controller whose pod and Secret caches never show what it created."""
    empty = FakeKube()
    return EphemeralRunnerController(
        kube=world.kube,  # type: ignore[arg-type]
        apis=ScaleSetAPIs(world.kube, world.api),  # type: ignore[arg-type]
        recorder=world.recorder,  # type: ignore[arg-type]
        runners=FakeInformer(FakeStore(world.kube, "ephemeralrunners")),  # type: ignore[arg-type]
        pods=FakeInformer(FakeStore(empty, "pods")),  # type: ignore[arg-type]
        secrets=FakeInformer(FakeStore(empty, "secrets")),  # type: ignore[arg-type]
        clock=world.clock,
    )


async def test_informer_lag_never_registers_twice(scale_set_world: ScaleSetWorld) -> None:
    world = scale_set_world
    add_runner(world)
    ctl = lagging(world)
    await ctl.reconcile(KEY)
    result = await ctl.reconcile(KEY)
    assert world.api.calls == [f"JIT {NAME}"]
    assert [call for call in world.kube.calls if call[0] == "create"] == [
        ("create", "secrets", NAME),
        ("create", "pods", NAME),
    ]
    assert result is not None
    assert result.requeue_after == 1.0
    status = world.get("ephemeralrunners", NAME)["status"]
    assert status["runnerId"] == world.api.runner_named(NAME).id  # type: ignore[union-attr]


async def test_a_template_without_a_runner_container_is_failed_for_good(
    scale_set_world: ScaleSetWorld,
) -> None:
    world = scale_set_world
    add_runner(world, containers=[{"name": "sidecar", "image": "x"}])
    await world.er.reconcile(KEY)
    await world.er.reconcile(KEY)
    status = world.get("ephemeralrunners", NAME)["status"]
    assert (status["phase"], status["reason"]) == (c.PHASE_FAILED, "InvalidPod")
    assert world.api.calls == []  # nothing registered for a pod that cannot exist
    assert world.names("pods") == []


async def test_status_writes_keep_the_listeners_job_fields(scale_set_world: ScaleSetWorld) -> None:
    world = scale_set_world
    add_runner(world)
    await world.er.reconcile(KEY)
    er = world.get("ephemeralrunners", NAME)
    er["status"].update(jobId="42", jobRepositoryName="octo/app", jobDisplayName="build")
    world.kubelet()
    await world.er.reconcile(KEY)
    status = world.get("ephemeralrunners", NAME)["status"]
    assert status["phase"] == c.PHASE_RUNNING
    assert (status["jobId"], status["jobRepositoryName"], status["jobDisplayName"]) == (
        "42",
        "octo/app",
        "build",
    )


async def test_the_jit_config_is_in_no_event(scale_set_world: ScaleSetWorld) -> None:
    world = scale_set_world
    add_runner(world)
    await world.er.reconcile(KEY)
    assert world.recorder.events
    assert "jit-config-of" not in repr(world.recorder.events)
    assert "jit-config-of" not in repr(world.get("ephemeralrunners", NAME))


async def test_kubernetes_mode_job_pods_and_secrets_go_with_the_runner(
    scale_set_world: ScaleSetWorld,
) -> None:
    world = scale_set_world
    hooks = {"name": "ACTIONS_RUNNER_CONTAINER_HOOKS", "value": "/home/runner/k8s/index.js"}
    add_runner(world, containers=[{"name": "runner", "image": "runner", "env": [hooks]}])  # type: ignore[list-item]
    await world.er.reconcile(KEY)
    world.kubelet()
    for plural in ("pods", "secrets"):
        labels = {LABEL_RUNNER_POD: NAME}
        world.kube.objects[(plural, SCALE_SET_NS, f"{NAME}-workflow")] = {
            "metadata": {"name": f"{NAME}-workflow", "namespace": SCALE_SET_NS, "labels": labels}
        }
    world.kube.objects[("pods", SCALE_SET_NS, "unrelated")] = {
        "metadata": {"name": "unrelated", "namespace": SCALE_SET_NS, "labels": {LABEL_RUNNER_POD: "other"}}
    }
    await world.kube.delete(EPHEMERAL_RUNNERS, NAME, namespace=SCALE_SET_NS)
    await world.er.reconcile(KEY)
    assert world.runners() == []
    assert world.names("pods") == ["unrelated"]
    assert world.names("secrets") == ["pre-defined-secret"]


async def test_a_finalized_runner_seen_again_from_a_stale_cache_is_left_alone(
    scale_set_world: ScaleSetWorld,
) -> None:
    """Its pod's deletion reaches the cache before its own: the EphemeralRunner whose finalizers this
    process removed shows them again. No second removal from the service (a 404) and no second
    finalization; a new EphemeralRunner of the same name (a new uid) is handled as usual."""
    world = scale_set_world
    add_runner(world)
    await world.er.reconcile(KEY)
    world.kubelet()
    await world.er.reconcile(KEY)
    await world.kube.delete(EPHEMERAL_RUNNERS, NAME, namespace=SCALE_SET_NS)
    stale = copy.deepcopy(world.get("ephemeralrunners", NAME))
    await world.er.reconcile(KEY)
    assert world.runners() == []  # deregistered, its pod deleted, its finalizers removed: gone
    removals = [call for call in world.api.calls if call.startswith("DELETE")]
    assert len(removals) == 1
    cache = FakeKube(objects={("ephemeralrunners", SCALE_SET_NS, NAME): stale})
    world.er.runners = FakeInformer(FakeStore(cache, "ephemeralrunners"))  # type: ignore[assignment]
    calls = (len(world.api.calls), len(world.kube.calls))
    await world.er.reconcile(KEY)
    assert (len(world.api.calls), len(world.kube.calls)) == calls

    fresh = copy.deepcopy(stale)
    fresh["metadata"]["uid"] = "a-new-uid"
    del fresh["metadata"]["deletionTimestamp"]
    cache.objects[("ephemeralrunners", SCALE_SET_NS, NAME)] = fresh
    await world.er.reconcile(KEY)
    assert world.api.calls[-1] == f"JIT {NAME}"  # a new runner: registered
