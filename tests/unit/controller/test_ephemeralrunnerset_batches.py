"""The EphemeralRunnerSet controller creates its runners in slow-start batches (the RunnerReplicaSet's
:func:`runnerd.controller.slowstart.create_in_batches`): concurrently, never twice while its informer
lags, never more than ``replicas`` when a create fails mid-batch or the controller is stopped
mid-batch, each runner for the set's current ``patchID``. The ``patchID`` rule is ARC's, unchanged:
once the informer shows a runner of the set's current patch, what is still missing is created at the
listener's next patch. A round that created runners records one ``RunnersCreated`` Event on the set,
also when a creation of the round failed."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pytest

from runnerd.api.scaleset import constants as c
from runnerd.controller.ephemeralrunnerset import EphemeralRunnerSetController
from runnerd.controller.slowstart import create_in_batches, created_message
from runnerd.kube.resources import Resource
from runnerd.runtime import Key, ServerError
from tests.unit.controller.conftest import SCALE_SET_NS, ScaleSetWorld, autoscaling_runner_set
from tests.unit.controller.fakes import FakeInformer, FakeKube, FakeStore

pytestmark = pytest.mark.timeout(20)

ARS = "arc-runner-set"


@dataclass
class SlowKube(FakeKube):
    """Creates EphemeralRunners one event-loop turn each (behind ``gate`` when set), counting how many
    are in flight at once; the creates numbered in ``fail_calls`` (from 1) are refused."""

    in_flight: int = 0
    most_in_flight: int = 0
    runner_creates: int = 0
    fail_calls: set[int] = field(default_factory=set)
    gate: asyncio.Event | None = None

    async def create(
        self, resource: Resource, body: dict[str, Any], *, namespace: str | None = None
    ) -> dict[str, Any]:
        if resource.plural != "ephemeralrunners":
            return await super().create(resource, body, namespace=namespace)
        self.runner_creates += 1
        call = self.runner_creates
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(0)
            if self.gate is not None:
                await self.gate.wait()
            if call in self.fail_calls:
                raise ServerError(500, "InternalError", "etcd is unhappy")
            return await super().create(resource, body, namespace=namespace)
        finally:
            self.in_flight -= 1


async def runner_set(world: ScaleSetWorld, replicas: int, patch_id: int = 1) -> tuple[SlowKube, Key]:
    """The world over a :class:`SlowKube`, its scale set created and settled, then scaled to ``replicas``
    (the EphemeralRunnerSet not reconciled since)."""
    kube = SlowKube(objects=world.kube.objects, gc=True)
    world.kube = kube
    world.restart()
    world.kube.objects[("autoscalingrunnersets", SCALE_SET_NS, ARS)] = autoscaling_runner_set(
        ARS, maxRunners=500
    )
    await world.settle()
    (name,) = world.names("ephemeralrunnersets")
    world.scale(replicas, patch_id)
    return kube, Key(SCALE_SET_NS, name)


def lagging(world: ScaleSetWorld) -> EphemeralRunnerSetController:
    """An EphemeralRunnerSet controller whose runner informer shows nothing (it lags behind)."""
    return EphemeralRunnerSetController(
        kube=world.kube,  # type: ignore[arg-type]
        apis=world.ers.apis,
        recorder=world.recorder,  # type: ignore[arg-type]
        runner_sets=world.ers.runner_sets,
        runners=FakeInformer(FakeStore(FakeKube(), "ephemeralrunners", world.ers.runners.store.indexers)),  # type: ignore[arg-type]
        clock=world.clock,
    )


async def test_runners_are_created_concurrently_for_the_current_patch_id(
    scale_set_world: ScaleSetWorld,
) -> None:
    world = scale_set_world
    kube, key = await runner_set(world, 200, patch_id=7)
    await world.ers.reconcile(key)
    assert len(world.runners()) == 200
    assert kube.most_in_flight == 64  # slow start: 1, 2, 4, 8, 16, 32, 64, then 64 and 9
    assert world.ers.stats.runners_created == 200
    patch_ids = {
        world.get("ephemeralrunners", n)["metadata"]["annotations"][c.ANNOTATION_PATCH_ID]
        for n in world.runners()
    }
    assert patch_ids == {"7"}
    await world.ers.reconcile(key)
    assert kube.runner_creates == 200


async def test_a_lagging_informer_never_creates_twice(scale_set_world: ScaleSetWorld) -> None:
    world = scale_set_world
    kube, key = await runner_set(world, 100)
    ers = lagging(world)
    for _ in range(3):
        await ers.reconcile(key)
    assert len(world.runners()) == 100
    assert kube.runner_creates == 100


async def test_a_round_of_creations_is_one_event_on_the_set(scale_set_world: ScaleSetWorld) -> None:
    world = scale_set_world
    _, key = await runner_set(world, 200)
    await world.ers.reconcile(key)
    created = [message for _, reason, message in world.recorder.events if reason == "RunnersCreated"]
    assert len(created) == 1  # not one per runner (nor a PodCreated on each: test_ephemeralrunner)
    assert created[0].startswith("created 200 runner(s)")
    assert created[0].endswith("and 190 more")
    await world.ers.reconcile(key)  # nothing created: no Event
    assert world.recorder.reasons().count("RunnersCreated") == 1


async def test_a_failed_round_still_records_the_runners_it_created(scale_set_world: ScaleSetWorld) -> None:
    world = scale_set_world
    kube, key = await runner_set(world, 100)
    kube.fail_calls = {4, 5, 6, 7}  # batches of 1 and 2 went through; the whole batch of 4 failed
    with pytest.raises(ServerError):
        await world.ers.reconcile(key)
    created = [message for _, reason, message in world.recorder.events if reason == "RunnersCreated"]
    assert len(created) == 1
    assert created[0].startswith("created 3 runner(s)")
    names = created[0].split(": ", 1)[1].split(", ")
    assert sorted(names) == world.runners()
    assert created[0] == created_message(names)  # the RunnerReplicaSet's message


@pytest.mark.parametrize(
    ("fail_calls", "created"),
    [
        ({1}, 0),  # the first batch (1) fails: nothing more is tried
        ({4, 5, 6, 7}, 3),  # batches of 1 and 2 went through; the whole batch of 4 failed
        ({5}, 6),  # one create of the batch of 4 failed: its three others stand
        ({20, 30}, 29),  # two failures in the batch of 16: the batch finishes, no batch of 32 starts
    ],
)
async def test_a_failed_create_stops_the_slow_start_and_is_retried(
    scale_set_world: ScaleSetWorld, fail_calls: set[int], created: int
) -> None:
    world = scale_set_world
    kube, key = await runner_set(world, 100)
    kube.fail_calls = fail_calls
    ers = lagging(world)  # the informer shows nothing: only the expectations count
    with pytest.raises(ServerError):
        await ers.reconcile(key)
    assert len(world.runners()) == created
    assert kube.runner_creates == created + len(fail_calls)
    await ers.reconcile(key)  # the retry creates only what is missing
    assert len(world.runners()) == 100
    await ers.reconcile(key)
    await world.ers.reconcile(key)
    assert len(world.runners()) == 100


@pytest.mark.parametrize("created_before_stop", [1, 3, 7, 20])
async def test_a_controller_stopped_mid_batch_never_exceeds_replicas(
    scale_set_world: ScaleSetWorld, created_before_stop: int
) -> None:
    world = scale_set_world
    kube, key = await runner_set(world, 50)
    kube.gate = asyncio.Event()
    task = asyncio.create_task(world.ers.reconcile(key))
    while len(world.runners()) < created_before_stop:  # let creations through one turn at a time
        kube.gate.set()
        await asyncio.sleep(0)
        kube.gate.clear()
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert created_before_stop <= len(world.runners()) < 50
    kube.gate = None
    stopped_with = len(world.runners())
    world.restart()  # a new leader: nothing in memory, its informer shows what exists
    await world.ers.reconcile(key)
    assert len(world.runners()) == stopped_with  # patchID 1 was acted on: ARC's rule, unchanged
    world.scale(50, 2)  # the listener's next patch
    await world.ers.reconcile(key)
    assert len(world.runners()) == 50
    await world.ers.reconcile(key)
    assert len(world.runners()) == 50


@pytest.mark.parametrize(
    ("count", "max_batch", "batches"),
    [
        (0, 64, []),
        (1, 64, [1]),
        (10, 64, [1, 2, 4, 3]),
        (200, 64, [1, 2, 4, 8, 16, 32, 64, 64, 9]),
        (9, 2, [1, 2, 2, 2, 2]),
    ],
)
async def test_slow_start_batch_sizes(count: int, max_batch: int, batches: list[int]) -> None:
    seen: list[int] = []
    in_flight = 0

    async def create_one() -> None:
        nonlocal in_flight
        in_flight += 1
        if in_flight == 1:
            seen.append(0)
        seen[-1] = max(seen[-1], in_flight)
        await asyncio.sleep(0)
        in_flight -= 1

    await create_in_batches(count, create_one, max_batch=max_batch)
    assert seen == batches
