from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator

import pytest

from runnerd.runtime.controller import Controller
from runnerd.runtime.informer import Informer
from runnerd.runtime.leader import LeaderElector
from runnerd.runtime.manager import Manager
from runnerd.runtime.types import Key, Result
from tests.unit.runtime.fakes import (
    FakeLeaseClient,
    FakeListWatcher,
    LeaseServer,
    cancel_and_wait,
    eventually,
    now,
    obj,
)


class Replica:
    """One controller process: an informer on the shared fake resource, a controller, an elector."""

    def __init__(self, identity: str, resource: FakeListWatcher, leases: LeaseServer | None) -> None:
        self.identity = identity
        self.reconciled: list[tuple[float, Key]] = []
        self.in_flight = 0
        self.slow: asyncio.Event | None = None
        self.informer = Informer("runners", resource)
        self.controller = Controller("runner", self.reconcile, workers=2)
        self.controller.watch(self.informer)
        self.lease_client = FakeLeaseClient(leases, identity) if leases else None
        elector = (
            LeaderElector(
                self.lease_client,
                namespace="ns",
                name="lead",
                identity=identity,
                lease_duration=15,
                renew_deadline=10,
                retry_period=2,
            )
            if self.lease_client
            else None
        )
        self.manager = Manager(elector=elector, shutdown_timeout=20)
        self.manager.add_controller(self.controller)
        self.task: asyncio.Task[None] | None = None

    async def reconcile(self, key: Key) -> Result:
        self.in_flight += 1
        try:
            self.reconciled.append((now(), key))
            if self.slow is not None:
                await self.slow.wait()
            return Result(requeue_after=60)
        finally:
            self.in_flight -= 1

    def start(self) -> None:
        self.task = asyncio.create_task(self.manager.run())


@pytest.fixture
def resource() -> FakeListWatcher:
    r = FakeListWatcher()
    r.put(obj("r1"))
    r.put(obj("r2"))
    return r


@pytest.fixture
async def replicas(resource: FakeListWatcher) -> AsyncIterator[list[Replica]]:
    leases = LeaseServer()
    made = [Replica("a", resource, leases), Replica("b", resource, leases)]
    yield made
    await cancel_and_wait(*(r.task for r in made))


async def test_without_election_controllers_run_until_stop(resource: FakeListWatcher) -> None:
    replica = Replica("solo", resource, None)
    replica.start()
    await eventually(lambda: len(replica.reconciled) == 2)
    assert replica.manager.ready
    assert replica.manager.leading
    assert replica.manager.informers == [replica.informer]
    replica.manager.stop()
    assert replica.task is not None
    await replica.task
    assert not replica.manager.leading


async def test_only_the_leader_reconciles_and_a_graceful_stop_hands_over(
    replicas: list[Replica], resource: FakeListWatcher
) -> None:
    a, b = replicas
    a.start()
    await eventually(lambda: len(a.reconciled) == 2)
    b.start()
    await eventually(lambda: b.manager.ready)
    resource.put(obj("r3"))
    await eventually(lambda: Key("ns", "r3") in [k for _, k in a.reconciled])
    await asyncio.sleep(30)
    assert b.reconciled == [], "the passive replica keeps its cache warm but does nothing"
    assert b.informer.store.get(Key("ns", "r3")) is not None

    a.manager.stop()
    assert a.task is not None
    await a.task
    stopped = now()
    await eventually(lambda: len(b.reconciled) >= 3)
    assert {k for _, k in b.reconciled} == {Key("ns", "r1"), Key("ns", "r2"), Key("ns", "r3")}
    assert b.reconciled[0][0] - stopped <= 2 * 2.2 + 0.01, "released lease: takeover within a retry"


async def test_lost_lease_cancels_reconciles_and_campaigns_again(replicas: list[Replica]) -> None:
    a, b = replicas
    a.slow = asyncio.Event()
    a.start()
    await eventually(lambda: a.in_flight == 2)
    b.start()
    assert a.lease_client is not None
    a.lease_client.partitioned = True
    await eventually(lambda: a.in_flight == 0)
    assert not a.manager.leading
    cancelled_at = now()
    await eventually(lambda: len(b.reconciled) == 2)
    assert b.reconciled[0][0] > cancelled_at
    a.lease_client.partitioned = False
    await asyncio.sleep(60)
    assert a.task is not None
    assert not a.task.done(), "a is a candidate again"
    assert not a.manager.leading
    assert b.manager.leading


async def test_shutdown_waits_for_in_flight_reconciles_up_to_the_deadline(resource: FakeListWatcher) -> None:
    replica = Replica("solo", resource, None)
    replica.slow = asyncio.Event()
    replica.start()
    await eventually(lambda: replica.in_flight == 2)
    replica.manager.stop()
    await asyncio.sleep(5)
    assert replica.task is not None
    assert not replica.task.done()
    replica.slow.set()  # finish within the deadline
    await replica.task
    assert replica.in_flight == 0


async def test_shutdown_cancels_reconciles_after_the_deadline(resource: FakeListWatcher) -> None:
    replica = Replica("solo", resource, None)
    replica.slow = asyncio.Event()  # never set
    replica.start()
    await eventually(lambda: replica.in_flight == 2)
    stop = now()
    replica.manager.stop()
    assert replica.task is not None
    await replica.task
    assert now() - stop == pytest.approx(20, abs=0.01)
    assert replica.in_flight == 0


async def test_stop_while_only_a_candidate(replicas: list[Replica]) -> None:
    a, b = replicas
    a.start()
    await eventually(lambda: a.manager.leading)
    b.start()
    await asyncio.sleep(5)
    b.manager.stop()
    assert b.task is not None
    await b.task
    assert b.reconciled == []
    assert a.manager.leading


async def test_sigterm_triggers_a_graceful_shutdown(resource: FakeListWatcher) -> None:
    replica = Replica("solo", resource, None)
    remove = replica.manager.install_signal_handlers()
    try:
        replica.start()
        await eventually(lambda: len(replica.reconciled) == 2)
        os.kill(os.getpid(), signal.SIGTERM)
        assert replica.task is not None
        await asyncio.wait_for(replica.task, timeout=30)
    finally:
        remove()


async def test_run_twice_is_refused(resource: FakeListWatcher) -> None:
    replica = Replica("solo", resource, None)
    replica.start()
    await eventually(lambda: replica.manager.leading)
    with pytest.raises(RuntimeError, match="already running"):
        await replica.manager.run()
    await cancel_and_wait(replica.task)


async def test_a_crashing_controller_stops_the_manager(
    resource: FakeListWatcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    replica = Replica("solo", resource, None)

    async def broken(queue: object) -> None:
        raise RuntimeError("runtime bug")

    monkeypatch.setattr(replica.controller, "_work", broken)
    with pytest.raises(ExceptionGroup) as caught:
        await replica.manager.run()
    assert caught.group_contains(RuntimeError, match="runtime bug")
    assert not replica.manager.leading


async def test_a_failing_mapper_is_logged_not_fatal(
    resource: FakeListWatcher, caplog: pytest.LogCaptureFixture
) -> None:
    replica = Replica("solo", resource, None)

    def mapper(o: dict[str, object]) -> list[Key]:
        raise KeyError("no such label")

    replica.controller.watch(replica.informer, mapper)
    replica.start()
    await eventually(lambda: len(replica.reconciled) == 2)
    assert "mapper" in caplog.text
    await cancel_and_wait(replica.task)


async def test_controllers_wait_for_every_cache_of_the_process(resource: FakeListWatcher) -> None:
    """Finding 2 of issue 13: a controller read a cache (the scale targets) before it had synced."""
    targets = FakeListWatcher()
    targets.put(obj("target"))
    targets.list_failures = 3  # this cache syncs late (the list is retried with back-off)
    target_informer = Informer("targets", targets)
    seen: list[bool] = []

    async def reconcile(key: Key) -> Result:
        seen.append(target_informer.synced)
        return Result()

    manager = Manager()
    controller = Controller("scaler", reconcile)
    controller.watch(Informer("runners", resource))
    manager.add_controller(controller)
    manager.add_informer(target_informer)
    task = asyncio.create_task(manager.run())
    try:
        await eventually(lambda: len(seen) == 2)
        assert seen == [True, True]
        assert manager.ready
    finally:
        manager.stop()
        await task


async def test_a_controller_waits_for_the_caches_it_reads(resource: FakeListWatcher) -> None:
    targets = FakeListWatcher()
    targets.list_failures = 3
    target_informer = Informer("targets", targets)
    runners = Informer("runners", resource)
    seen: list[bool] = []

    async def reconcile(key: Key) -> Result:
        seen.append(target_informer.synced)
        return Result()

    controller = Controller("scaler", reconcile)
    controller.watch(runners)
    controller.reads(target_informer, runners)
    assert controller.informers == [runners, target_informer]
    tasks = [asyncio.create_task(i.run()) for i in (runners, target_informer)]
    run = asyncio.create_task(controller.run())
    try:
        await eventually(lambda: len(seen) == 2)
        assert seen == [True, True]
    finally:
        controller.shutdown()
        await run
        await cancel_and_wait(*tasks)


async def test_stop_before_the_caches_synced(resource: FakeListWatcher) -> None:
    never = FakeListWatcher()
    never.list_failures = 10**6
    manager = Manager()
    controller = Controller("scaler", lambda key: asyncio.sleep(0, Result()))
    controller.watch(Informer("runners", resource))
    controller.reads(Informer("never", never))
    manager.add_controller(controller)
    task = asyncio.create_task(manager.run())
    await eventually(lambda: not manager.ready and manager.leading)
    manager.stop()
    await task
    assert controller.reconciles == 0


async def test_an_optional_cache_that_never_syncs_holds_nothing_up(resource: FakeListWatcher) -> None:
    """E.g. PersistentVolumes without the cluster-wide right to list them: RunnerSets still work."""
    forbidden = FakeListWatcher()
    forbidden.list_failures = 10**6
    replica = Replica("solo", resource, None)
    optional = replica.manager.add_informer(Informer("volumes", forbidden), required=False)
    replica.start()
    try:
        await eventually(lambda: len(replica.reconciled) == 2)
        assert replica.manager.ready
        assert not optional.synced
        assert optional not in replica.manager.required_informers
    finally:
        replica.manager.stop()
        assert replica.task is not None
        await replica.task
