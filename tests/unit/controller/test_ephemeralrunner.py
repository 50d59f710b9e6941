"""The EphemeralRunner controller on its own: informer lag never registers a runner twice, an
invalid pod is ARC's terminal ``InvalidPod``, the listener's job fields survive its status writes,
the JIT config appears in no event, a first pod is written with its JIT Secret (a pod whose Secret
could not be written is deleted and its registration removed), and a set's runner records no
``PodCreated``."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from runnerd.api.scaleset import constants as c
from runnerd.controller.ephemeralrunner import EphemeralRunnerController
from runnerd.controller.scaleset_common import EPHEMERAL_RUNNERS, ScaleSetAPIs
from runnerd.manifests.scaleset import LABEL_RUNNER_POD, build_ephemeral_runner
from runnerd.runtime import Key, ServerError
from tests.unit.controller.conftest import SCALE_SET_NS, ScaleSetWorld
from tests.unit.controller.fakes import FakeInformer, FakeKube, FakeStore, SecretRace

pytestmark = pytest.mark.timeout(10)

NAME = "set-runner-abcde"
KEY = Key(SCALE_SET_NS, NAME)


def add_runner(
    world: ScaleSetWorld, containers: list[dict[str, str]] | None = None, *, in_a_set: bool = True
) -> None:
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
    if not in_a_set:
        del er["metadata"]["ownerReferences"]
    world.kube.objects[("ephemeralrunners", SCALE_SET_NS, NAME)] = er


def racing(world: ScaleSetWorld, **race: Any) -> SecretRace:
    """The world over a :class:`SecretRace` (same objects), with one EphemeralRunner of a set."""
    kube = SecretRace(objects=world.kube.objects, gc=True, **race)
    world.kube = kube
    world.restart()
    add_runner(world)
    return kube


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
    add_runner(world, in_a_set=False)  # its PodCreated is recorded
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


async def test_a_first_pod_and_its_jit_secret_are_written_at_once(scale_set_world: ScaleSetWorld) -> None:
    world = scale_set_world
    kube = racing(world)  # sequential: the Secret's create times out
    await world.er.reconcile(KEY)
    assert world.names("pods") == [NAME]
    assert NAME in world.names("secrets")
    assert kube.pod_saw_secret is False
    assert world.get("ephemeralrunners", NAME)["status"]["runnerId"] == world.api.runner_named(NAME).id  # type: ignore[union-attr]


async def test_a_replacement_pod_uses_the_secret_that_is_there(scale_set_world: ScaleSetWorld) -> None:
    world = scale_set_world
    kube = racing(world, wait_for_pod=False)
    await world.er.reconcile(KEY)
    del kube.objects[("pods", SCALE_SET_NS, NAME)]  # its pod went before it came online
    world.clock.now += 60  # past the grace for a pod this process created
    kube.pod_saw_secret = None
    await world.er.reconcile(KEY)
    assert kube.pod_saw_secret is True
    assert world.api.calls == [f"JIT {NAME}"]  # ARC keeps the JIT config for the next pod
    assert [call for call in kube.calls if call[0] == "create"] == [
        ("create", "secrets", NAME),
        ("create", "pods", NAME),
        ("create", "pods", NAME),
    ]


async def test_a_pod_whose_jit_secret_could_not_be_written_is_deleted_again(
    scale_set_world: ScaleSetWorld,
) -> None:
    world = scale_set_world
    kube = racing(world, secret_error=ServerError(500, "InternalError", "etcd"))
    with pytest.raises(ServerError):
        await world.er.reconcile(KEY)
    assert kube.pod_saw_secret is False  # the pod's create went out with the Secret's
    assert ("delete", "pods", NAME) in kube.calls
    assert world.names("pods") == []
    assert world.api.calls[-1].startswith("DELETE runner ")  # the unused registration is removed
    assert world.api.runner_named(NAME) is None
    assert "PodCreated" not in world.recorder.reasons()

    kube.secret_error, kube.wait_for_pod = None, False
    await world.er.reconcile(KEY)  # registered afresh: no stale registration in the way
    assert world.api.calls[-1] == f"JIT {NAME}"
    assert not any(call.startswith("GET runner") for call in world.api.calls)
    assert world.names("pods") == [NAME]


@pytest.mark.parametrize(("in_a_set", "events"), [(True, []), (False, ["PodCreated"])])
async def test_a_sets_runner_records_no_pod_created(
    scale_set_world: ScaleSetWorld, in_a_set: bool, events: list[str]
) -> None:
    world = scale_set_world
    add_runner(world, in_a_set=in_a_set)
    await world.er.reconcile(KEY)
    assert world.names("pods") == [NAME]
    assert world.recorder.reasons() == events  # a set records RunnersCreated per round
