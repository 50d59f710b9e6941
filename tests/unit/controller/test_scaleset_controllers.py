"""The scale-set controllers together over a fake cluster and a fake Actions service: ARC's
quickstart, the never-kill rule across scale-downs, restarts and template rolls, deletion of both
sides, and runners the service no longer has. The listener's part (replicas, jobs) is played by the
test (``ScaleSetWorld.scale``/``take_job``/``finish_job``)."""

from __future__ import annotations

import pytest

from runnerd.api.scaleset import constants as c
from runnerd.controller.ephemeralrunnerset import EphemeralRunnerSetController
from runnerd.controller.scaleset_common import AUTOSCALING_RUNNER_SETS, EPHEMERAL_RUNNERS
from runnerd.github.actions.errors import RunnerExists, RunnerNotFound
from runnerd.github.actions.models import ScaleSetRunner
from runnerd.manifests.scaleset import ENV_JIT_CONFIG, SECRET_KEY_JIT
from runnerd.runtime import Key
from tests.unit.controller.conftest import LISTENER_NS, SCALE_SET_NS, ScaleSetWorld, autoscaling_runner_set
from tests.unit.controller.fakes import FakeInformer, FakeKube, FakeStore

pytestmark = pytest.mark.timeout(20)

ARS = "arc-runner-set"


async def start(world: ScaleSetWorld, replicas: int = 0, **spec: object) -> None:
    world.kube.objects[("autoscalingrunnersets", SCALE_SET_NS, ARS)] = autoscaling_runner_set(ARS, **spec)
    await world.settle()
    if replicas:
        world.scale(replicas, 1)
        await world.settle()


def pods(world: ScaleSetWorld) -> list[str]:
    return world.names("pods")


async def test_quickstart_scales_zero_to_n_to_zero(scale_set_world: ScaleSetWorld) -> None:
    world, api = scale_set_world, scale_set_world.api
    await start(world)
    ars = world.get("autoscalingrunnersets", ARS)
    annotations = ars["metadata"]["annotations"]
    (scale_set,) = api.scale_sets.values()
    assert scale_set.name == ARS
    assert scale_set.runner_group_id == 1
    assert annotations[c.ANNOTATION_SCALE_SET_ID] == str(scale_set.id)
    assert annotations[c.ANNOTATION_SCALE_SET_NAME] == ARS
    assert ars["metadata"]["finalizers"] == [c.FINALIZER_AUTOSCALING_RUNNER_SET]
    assert api.configs[0] == ("https://github.com/octo", {"github_token": "ghp_secret"})
    (ers_name,) = world.names("ephemeralrunnersets")
    (listener,) = [o for (p, ns, _), o in world.kube.objects.items() if p == "autoscalinglisteners"]
    assert listener["metadata"]["namespace"] == LISTENER_NS
    assert listener["spec"]["ephemeralRunnerSetName"] == ers_name
    assert (listener["spec"]["minRunners"], listener["spec"]["maxRunners"]) == (0, 5)
    assert world.runners() == []

    world.scale(3, 1)
    await world.settle()
    runners = world.runners()
    assert len(runners) == 3
    assert pods(world) == runners
    for name in runners:
        er = world.get("ephemeralrunners", name)
        assert er["status"]["phase"] == c.PHASE_RUNNING
        assert er["status"]["ready"] is True
        assert er["status"]["runnerId"] == api.runner_named(name).id  # type: ignore[union-attr]
        assert er["metadata"]["annotations"][c.ANNOTATION_PATCH_ID] == "1"
        assert SECRET_KEY_JIT in world.get("secrets", name)["data"]
        pod = world.get("pods", name)
        assert "jit-config-of" not in repr(pod)  # the credential reaches the pod only through its Secret
        env = {e["name"]: e for e in pod["spec"]["containers"][0]["env"]}
        assert env[ENV_JIT_CONFIG]["valueFrom"]["secretKeyRef"] == {"name": name, "key": SECRET_KEY_JIT}
    ers = world.get("ephemeralrunnersets", ers_name)
    assert ers["status"]["currentReplicas"] == 3
    assert ers["status"]["runningEphemeralRunners"] == 3
    assert world.get("autoscalingrunnersets", ARS)["status"]["currentRunners"] == 3

    for name in runners:
        world.take_job(name)
    await world.settle()
    for name in runners:
        world.finish_job(name)
    world.scale(0, 2)  # the listener's patch after the JobCompleted messages
    await world.settle()
    assert world.runners() == []
    assert pods(world) == []
    assert world.names("secrets") == ["pre-defined-secret"]
    assert api.runners == {}
    assert world.get("ephemeralrunnersets", ers_name)["status"]["currentReplicas"] == 0
    assert sum(call.startswith("JIT") for call in api.calls) == 3  # nothing created twice


async def test_a_busy_runner_survives_a_scale_down_and_a_controller_restart(
    scale_set_world: ScaleSetWorld,
) -> None:
    world, api = scale_set_world, scale_set_world.api
    await start(world, replicas=2)
    busy, idle = world.runners()
    idle_id = api.runner_named(idle).id  # type: ignore[union-attr]
    world.take_job(busy)
    world.scale(0, 0)  # the listener's "trim to exactly 0" patch
    await world.settle()
    assert api.calls.count(f"DELETE runner {idle_id}") == 1  # its finalizer needs no second call
    assert world.runners() == [busy]
    assert pods(world) == [busy]
    assert api.runner_named(idle) is None

    world.restart()  # fresh controllers over the same cluster and service
    world.scale(0, 0)
    await world.settle()
    assert world.runners() == [busy]
    assert pods(world) == [busy]

    await world.kube.delete(EPHEMERAL_RUNNERS, busy, namespace=SCALE_SET_NS)
    await world.settle()  # deleted by hand: the finalizer waits for the job (jobId: not even asked)
    assert pods(world) == [busy]
    assert world.runners() == [busy]
    assert f"DELETE runner {api.runner_named(busy).id}" not in api.calls  # type: ignore[union-attr]

    world.finish_job(busy)
    await world.settle()
    assert world.runners() == []
    assert pods(world) == []


async def test_a_template_roll_lets_the_busy_runner_finish(scale_set_world: ScaleSetWorld) -> None:
    world = scale_set_world
    await start(world, replicas=2)
    (old_set,) = world.names("ephemeralrunnersets")
    busy, _idle = world.runners()
    world.take_job(busy)

    ars = world.get("autoscalingrunnersets", ARS)
    ars["spec"]["template"]["spec"]["containers"][0]["image"] = "ghcr.io/actions/actions-runner:2.330.0"
    await world.settle()
    (new_set,) = [s for s in world.names("ephemeralrunnersets") if s != old_set]
    (listener,) = [o for (p, _, _), o in world.kube.objects.items() if p == "autoscalinglisteners"]
    assert listener["spec"]["ephemeralRunnerSetName"] == new_set
    old = world.get("ephemeralrunnersets", old_set)
    assert (old["spec"]["replicas"], old["spec"]["patchID"]) == (0, 0)
    assert world.runners() == [busy]
    assert pods(world) == [busy]

    world.scale(1, 1)
    await world.settle()
    new_runner = next(r for r in world.runners() if r.startswith(new_set))
    image = world.get("pods", new_runner)["spec"]["containers"][0]["image"]
    assert image.endswith(":2.330.0")

    world.finish_job(busy)
    await world.settle()
    assert world.names("ephemeralrunnersets") == [new_set]  # the empty old set is deleted
    assert world.runners() == [new_runner]


async def test_deleting_the_scale_set_cleans_both_sides_after_the_job(scale_set_world: ScaleSetWorld) -> None:
    world, api = scale_set_world, scale_set_world.api
    await start(world, replicas=2)
    busy, _ = world.runners()
    world.take_job(busy)
    world.kube.objects[("secrets", SCALE_SET_NS, "pre-defined-secret")]["metadata"]["finalizers"] = [
        c.FINALIZER_CLEANUP_PROTECTION
    ]
    ars = world.get("autoscalingrunnersets", ARS)
    ars["metadata"]["annotations"]["actions.github.com/cleanup-github-secret-name"] = "pre-defined-secret"

    await world.kube.delete(AUTOSCALING_RUNNER_SETS, ARS, namespace=SCALE_SET_NS)
    await world.settle()
    assert world.names("autoscalinglisteners") == []
    assert world.runners() == [busy]
    assert pods(world) == [busy]
    assert api.scale_sets  # not yet: a runner still holds a job

    world.finish_job(busy)
    await world.settle()
    assert world.names("autoscalingrunnersets") == []
    assert world.names("ephemeralrunnersets") == []
    assert world.runners() == []
    assert pods(world) == []
    assert api.scale_sets == {}
    assert api.runners == {}
    assert world.get("secrets", "pre-defined-secret")["metadata"]["finalizers"] == []


async def test_a_runner_the_service_no_longer_has_never_wedges_its_finalizer(
    scale_set_world: ScaleSetWorld,
) -> None:
    world, api = scale_set_world, scale_set_world.api
    await start(world, replicas=2)
    first, second = world.runners()
    api.runners.pop(api.runner_named(first).id)  # type: ignore[union-attr]
    api.errors["remove"] = [RunnerNotFound(404, "AgentNotFoundException", "gone")]
    for name in (first, second):
        await world.kube.delete(EPHEMERAL_RUNNERS, name, namespace=SCALE_SET_NS)
    world.scale(0, 2)
    await world.settle()
    assert world.runners() == []
    assert pods(world) == []


async def test_a_stale_registration_of_the_same_name_is_removed_and_registration_retried(
    scale_set_world: ScaleSetWorld,
) -> None:
    world, api = scale_set_world, scale_set_world.api
    await start(world)
    world.scale(1, 1)
    (ers,) = world.names("ephemeralrunnersets")
    await world.ers.reconcile(Key(SCALE_SET_NS, ers))
    (name,) = world.runners()
    scale_set_id = next(iter(api.scale_sets))
    api.runners[999] = ScaleSetRunner(999, name, scale_set_id)  # left by a controller that stopped
    await world.settle()
    assert 999 not in api.runners
    assert api.runner_named(name) is not None
    assert pods(world) == [name]
    assert "StaleRegistrationRemoved" in world.recorder.reasons()


async def test_a_name_taken_in_another_scale_set_ends_the_runner(scale_set_world: ScaleSetWorld) -> None:
    world, api = scale_set_world, scale_set_world.api
    await start(world)
    world.scale(1, 1)
    (ers,) = world.names("ephemeralrunnersets")
    await world.ers.reconcile(Key(SCALE_SET_NS, ers))
    (name,) = world.runners()
    api.runners[999] = ScaleSetRunner(999, name, 4242)
    api.errors["jit"] = [RunnerExists(409, "AgentExistsException", name)]
    await world.er.reconcile(Key(SCALE_SET_NS, name))
    assert "RunnerNameTaken" in world.recorder.reasons()
    assert 999 in api.runners  # another scale set's runner is left alone


async def test_a_failed_pod_without_a_job_is_replaced_after_back_off_then_given_up(
    scale_set_world: ScaleSetWorld,
) -> None:
    world, api = scale_set_world, scale_set_world.api
    await start(world, replicas=1)
    (name,) = world.runners()
    runner_id = api.runner_named(name).id  # type: ignore[union-attr]
    for failure in range(1, 7):
        world.get("pods", name)["metadata"]["uid"] = f"pod-{failure}"
        world.get("pods", name)["status"] = {
            "phase": "Failed",
            "containerStatuses": [{"name": "runner", "state": {"terminated": {"exitCode": 1}}}],
        }
        world.clock.now += 100.0
        await world.er.reconcile(Key(SCALE_SET_NS, name))
        if failure <= 5:
            assert len(world.get("ephemeralrunners", name)["status"]["failures"]) == failure
            assert pods(world) == []
            await world.er.reconcile(Key(SCALE_SET_NS, name))  # the back-off holds the next pod
            world.clock.now += 100.0
            await world.er.reconcile(Key(SCALE_SET_NS, name))
            world.kubelet()
            assert pods(world) == [name]
            assert api.runner_named(name).id == runner_id  # type: ignore[union-attr]  # same registration
    await world.settle()
    assert name not in world.runners()


async def test_the_services_refusal_guards_a_runner_whose_job_the_listener_has_not_reported(
    scale_set_world: ScaleSetWorld,
) -> None:
    world, api = scale_set_world, scale_set_world.api
    await start(world, replicas=1)
    (name,) = world.runners()
    api.busy.add(api.runner_named(name).id)  # type: ignore[union-attr]  # assigned; no jobId yet
    await world.kube.delete(EPHEMERAL_RUNNERS, name, namespace=SCALE_SET_NS)
    await world.settle()
    assert pods(world) == [name]
    assert world.runners() == [name]
    assert "RunnerBusy" in world.recorder.reasons()

    world.finish_job(name)
    world.scale(0, 2)
    await world.settle()
    assert world.runners() == []
    assert pods(world) == []


async def test_a_runner_set_never_creates_twice_while_its_informer_lags(
    scale_set_world: ScaleSetWorld,
) -> None:
    world = scale_set_world
    await start(world)
    (ers,) = world.names("ephemeralrunnersets")
    world.scale(2, 1)
    lagging = EphemeralRunnerSetController(
        kube=world.kube,  # type: ignore[arg-type]
        apis=world.ers.apis,
        recorder=world.recorder,  # type: ignore[arg-type]
        runner_sets=world.ers.runner_sets,
        runners=FakeInformer(FakeStore(FakeKube(), "ephemeralrunners", world.ers.runners.store.indexers)),  # type: ignore[arg-type]
        clock=world.clock,
    )
    for _ in range(3):
        await lagging.reconcile(Key(SCALE_SET_NS, ers))
    assert len(world.runners()) == 2
