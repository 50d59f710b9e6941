"""The RunnerReplicaSet controller: slow-start batches, expectations, effectiveTime holds, observations."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from runnerd.controller import runnerreplicaset, slowstart
from runnerd.controller.common import ControllerOptions
from runnerd.controller.directory import RunnerDirectory
from runnerd.controller.runnerreplicaset import ReplicaSetController
from runnerd.github import Scope
from runnerd.github.models import Runner as GitHubRunner
from runnerd.kube.resources import Resource
from runnerd.reconcile.replicas import RunnerPhase
from runnerd.runtime import EventRecorder, EventType, Informer, InformerEvent, Key, ServerError
from tests.unit.controller.conftest import InformerFactory
from tests.unit.controller.fakes import KeptEvents

pytestmark = pytest.mark.timeout(10)

NS = "ns"
KEY = Key(NS, "rs")


@dataclass
class FakeKube:
    """Creates Runners (slowly, one event-loop turn each); counts how many were in flight at once."""

    runners: dict[str, dict[str, Any]] = field(default_factory=dict)
    in_flight: int = 0
    most_in_flight: int = 0
    batches: list[int] = field(default_factory=list)
    fail_after: int | None = None
    gate: asyncio.Event | None = None
    statuses: list[dict[str, Any]] = field(default_factory=list)

    async def create(self, resource: Resource, body: dict[str, Any], *, namespace: str) -> dict[str, Any]:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(0)
            if self.gate is not None:
                await self.gate.wait()
            if self.fail_after is not None and len(self.runners) >= self.fail_after:
                raise ServerError(500, "InternalError", "etcd is unhappy")
            obj = copy.deepcopy(body)
            obj["metadata"]["uid"] = f"uid-{obj['metadata']['name']}"
            self.runners[obj["metadata"]["name"]] = obj
            return obj
        finally:
            self.in_flight -= 1

    async def patch_status(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        self.statuses.append(args[2]["status"])
        return {}


def replica_set(replicas: int, effective: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "replicas": replicas,
        "selector": {"matchLabels": {"app": "x"}},
        "template": {"metadata": {"labels": {"app": "x"}}, "spec": {"repository": "octo/app"}},
    }
    if effective is not None:
        spec["effectiveTime"] = effective
    return {
        "apiVersion": "actions.summerwind.dev/v1alpha1",
        "kind": "RunnerReplicaSet",
        "metadata": {"name": "rs", "namespace": NS, "uid": "uid-rs", "resourceVersion": "1"},
        "spec": spec,
    }


@dataclass
class World:
    kube: FakeKube
    replica_sets: Informer
    runners: Informer
    pods: Informer
    recorder: EventRecorder
    controller: ReplicaSetController = field(init=False)

    def __post_init__(self) -> None:
        self.controller = self.new_controller()

    def new_controller(self) -> ReplicaSetController:
        return ReplicaSetController(
            kube=self.kube,  # type: ignore[arg-type]
            directory=RunnerDirectory(None),  # type: ignore[arg-type]
            recorder=self.recorder,
            replica_sets=self.replica_sets,
            runners=self.runners,
            pods=self.pods,
            options=ControllerOptions(namespace=NS),
        )

    def show(self) -> None:
        """The informer catches up with the API server."""
        for obj in self.kube.runners.values():
            self.runners.store.upsert(copy.deepcopy(obj))

    def restart(self) -> None:
        """A new controller process: nothing in memory, the informer relisted."""
        self.controller = self.new_controller()
        self.show()


MakeWorld = Callable[[dict[str, Any]], World]


@pytest.fixture
def world(hand_fed_informer: InformerFactory, event_recorder: EventRecorder) -> MakeWorld:
    def make(rs: dict[str, Any]) -> World:
        replica_sets = hand_fed_informer("runnerreplicasets")
        replica_sets.store.upsert(rs)
        runners = hand_fed_informer("runners", owned=True)
        return World(FakeKube(), replica_sets, runners, hand_fed_informer("pods"), event_recorder)

    return make


async def test_runners_are_created_concurrently_and_never_twice(
    world: MakeWorld,
) -> None:
    w = world(replica_set(200))
    await w.controller.reconcile(KEY)
    assert len(w.kube.runners) == 200
    assert w.kube.most_in_flight == 64  # slow start: 1, 2, 4, 8, 16, 32, 64, then 64 and 9
    # the informer has not shown them yet: the expectations keep a second reconcile from creating more
    await w.controller.reconcile(KEY)
    assert len(w.kube.runners) == 200
    w.show()
    await w.controller.reconcile(KEY)
    assert len(w.kube.runners) == 200


async def test_a_round_of_creations_is_one_event_on_the_replica_set(
    world: MakeWorld, kept_events: KeptEvents
) -> None:
    w = world(replica_set(200))
    await w.controller.reconcile(KEY)
    created = [e for e in kept_events.events if e["reason"] == "RunnersCreated"]
    assert len(created) == 1  # not one per runner (nor a PodCreated on each Runner: test_runner_controller)
    assert created[0]["involvedObject"]["kind"] == "RunnerReplicaSet"
    assert created[0]["message"].startswith("created 200 runner(s)")
    assert created[0]["message"].endswith("and 190 more")
    await w.controller.reconcile(KEY)  # nothing created: no Event
    assert kept_events.reasons().count("RunnersCreated") == 1


async def test_a_failed_round_still_records_the_runners_it_created(
    world: MakeWorld, kept_events: KeptEvents
) -> None:
    w = world(replica_set(100))
    w.kube.fail_after = 3
    with pytest.raises(ServerError):
        await w.controller.reconcile(KEY)
    messages = [e["message"] for e in kept_events.events if e["reason"] == "RunnersCreated"]
    assert messages == [slowstart.created_message(list(w.kube.runners))]
    assert messages[0].startswith("created 3 runner(s)")


@pytest.mark.parametrize(
    ("count", "tail"),
    [(1, ": r0"), (10, ", r9"), (11, ", r9 and 1 more"), (64, ", r9 and 54 more")],
)
def test_created_message(count: int, tail: str) -> None:
    names = [f"r{i}" for i in range(count)]
    message = slowstart.created_message(names)
    assert message.startswith(f"created {count} runner(s)")
    assert message.endswith(tail)
    assert message.count(", r") == min(count, slowstart.CREATED_NAMES_SHOWN) - 1


async def test_a_failing_api_server_stops_the_slow_start(world: MakeWorld) -> None:
    w = world(replica_set(100))
    w.kube.fail_after = 3
    with pytest.raises(ServerError):
        await w.controller.reconcile(KEY)
    assert len(w.kube.runners) == 3  # batches of 1 and 2 went through; the batch of 4 failed
    w.kube.fail_after = None
    await w.controller.reconcile(KEY)
    assert len(w.kube.runners) == 100


@pytest.mark.parametrize("created_before_kill", [1, 3, 7, 20])
async def test_a_controller_killed_mid_batch_never_exceeds_the_desired_count(
    world: MakeWorld, created_before_kill: int
) -> None:
    w = world(replica_set(50))
    w.kube.gate = asyncio.Event()
    task = asyncio.create_task(w.controller.reconcile(KEY))
    # let creations through one at a time until the kill
    while len(w.kube.runners) < created_before_kill:
        w.kube.gate.set()
        await asyncio.sleep(0)
        w.kube.gate.clear()
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert created_before_kill <= len(w.kube.runners) < 50
    w.kube.gate = None
    w.restart()
    await w.controller.reconcile(KEY)
    assert len(w.kube.runners) == 50
    w.show()
    await w.controller.reconcile(KEY)
    assert len(w.kube.runners) == 50


async def test_a_finished_ephemeral_runner_is_not_replaced_until_the_autoscaler_decides_again(
    world: MakeWorld,
) -> None:
    w = world(replica_set(3, effective="2026-12-07T04:00:00Z"))
    await w.controller.reconcile(KEY)
    w.show()
    await w.controller.reconcile(KEY)  # sees them: the expectations are met
    assert len(w.kube.runners) == 3
    # one runner finished its job and is gone; its reservation still holds replicas at 3
    finished = sorted(w.kube.runners)[0]
    del w.kube.runners[finished]
    w.runners.store.delete(Key(NS, finished))
    result = await w.controller.reconcile(KEY)
    assert len(w.kube.runners) == 2
    assert result is not None
    assert result.requeue_after is not None
    assert 29 < result.requeue_after <= 30.1  # the hold ends at the latest after 30 s
    assert w.controller.holds.held == 1
    # a new job: the autoscaler's next decision moves effectiveTime; the gap is filled
    w.replica_sets.store.upsert(replica_set(3, effective="2026-12-07T04:00:05Z"))
    await w.controller.reconcile(KEY)
    assert len(w.kube.runners) == 3


def runner_pod(name: str, version: str, runner_state: dict[str, Any]) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": NS, "resourceVersion": version},
        "status": {"phase": "Running", "containerStatuses": [{"name": "runner", "state": runner_state}]},
    }


async def test_pod_states_are_reused_while_the_pod_is_unchanged(
    world: MakeWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    classified: list[str] = []
    classify = runnerreplicaset.runner_container_state

    def counting(pod: dict[str, Any]) -> Any:
        classified.append(pod["metadata"]["name"])
        return classify(pod)

    monkeypatch.setattr(runnerreplicaset, "runner_container_state", counting)
    w = world(replica_set(2))
    await w.controller.reconcile(KEY)
    w.show()
    first, second = sorted(w.kube.runners)
    for name in (first, second):
        w.pods.store.upsert(runner_pod(name, "10", {"running": {"startedAt": "2026-12-07T04:00:00Z"}}))
    await w.controller.reconcile(KEY)
    await w.controller.reconcile(KEY)
    assert sorted(classified) == [first, second]  # once each: the pods did not change
    # the first runner's job ended: the new version of its pod is classified again
    w.pods.store.upsert(runner_pod(first, "11", {"terminated": {"exitCode": 0}}))
    await w.controller.reconcile(KEY)
    assert sorted(classified) == [first, first, second]
    assert w.controller.observed[KEY][first].pod_state.lifecycle == "Exited"  # type: ignore[union-attr]
    # only the runners of the last reconcile are remembered
    w.runners.store.delete(Key(NS, first))
    await w.controller.reconcile(KEY)
    assert set(w.controller.observed[KEY]) == {second}
    assert w.controller.slow_start.first_batch(KEY) > 1  # its creations' slow start is remembered
    w.replica_sets.store.delete(KEY)
    await w.controller.reconcile(KEY)
    assert KEY not in w.controller.observed
    assert w.controller.slow_start.first_batch(KEY) == 1  # and forgotten with it


@dataclass
class FakeGitHub:
    """The runner listing GitHub gives the directory."""

    runners: list[GitHubRunner] = field(default_factory=list)

    async def list_runners(self, scope: Scope) -> list[GitHubRunner]:
        return list(self.runners)


async def test_unchanged_runners_are_reused_and_github_is_read_at_every_reconcile(world: MakeWorld) -> None:
    """What a Runner says is reused while its resourceVersion is unchanged; a new version, and
    GitHub's view (read at every reconcile), change the phases at once."""
    w = world(replica_set(2))
    github = FakeGitHub()
    w.controller.directory = RunnerDirectory(github)  # type: ignore[arg-type]
    await w.controller.reconcile(KEY)
    w.show()
    first, second = sorted(w.kube.runners)
    for name in (first, second):
        w.kube.runners[name]["metadata"]["resourceVersion"] = "1"
        pod = runner_pod(name, "10", {"running": {"startedAt": "2026-12-07T04:00:00Z"}})
        pod["status"]["conditions"] = [{"type": "Ready", "status": "True"}]  # online, no job
        w.pods.store.upsert(pod)
    w.show()

    async def phases() -> tuple[int, int]:
        w.kube.statuses.clear()
        w.replica_sets.store.upsert(replica_set(2))  # a fresh status, so every reconcile writes one
        await w.controller.reconcile(KEY)
        status = w.kube.statuses[-1]
        return status["readyReplicas"], status["busyReplicas"]

    assert await phases() == (0, 0)  # registering: no listing yet, no status.phase
    w.kube.runners[first]["status"] = {"phase": "Idle"}
    w.kube.runners[first]["metadata"]["resourceVersion"] = "2"
    w.show()
    assert await phases() == (1, 0)  # the new version of the Runner is read
    scope = Scope.repository("octo/app")
    github.runners = [
        GitHubRunner(1, first, "linux", "online", True, ()),
        GitHubRunner(2, second, "linux", "online", False, ()),
    ]
    await w.controller.directory.refresh(scope, max_age=0)
    assert await phases() == (2, 1)  # GitHub's view, with both Runners unchanged
    w.kube.runners[second]["metadata"]["deletionTimestamp"] = "2026-12-07T04:01:00Z"
    w.kube.runners[second]["metadata"]["resourceVersion"] = "3"
    w.show()
    assert await phases() == (1, 1)  # being deleted: no longer counted


RUNNING = {"running": {"startedAt": "2026-12-07T04:00:00Z"}}


@pytest.mark.parametrize(
    ("container", "ready", "ephemeral", "status_phase", "listed", "phase"),
    [
        (None, False, True, None, None, RunnerPhase.PENDING),  # no pod
        ({"waiting": {"reason": "ContainerCreating"}}, False, True, None, None, RunnerPhase.PENDING),
        ({"terminated": {"exitCode": 0}}, False, True, None, None, RunnerPhase.COMPLETED),
        ({"terminated": {"exitCode": 0}}, False, False, None, None, RunnerPhase.FAILED),  # persistent
        ({"terminated": {"exitCode": 1}}, False, True, None, None, RunnerPhase.FAILED),
        (RUNNING, True, True, None, None, RunnerPhase.REGISTERING),  # no listing
        (RUNNING, True, True, RunnerPhase.BUSY.value, None, RunnerPhase.BUSY),  # the Runner's last word
        (RUNNING, True, True, RunnerPhase.IDLE.value, "absent", RunnerPhase.REGISTERING),  # listed without it
        (RUNNING, True, True, None, "busy", RunnerPhase.BUSY),
        (RUNNING, True, True, RunnerPhase.IDLE.value, "idle", RunnerPhase.IDLE),
        (RUNNING, False, True, None, "idle", RunnerPhase.BUSY),  # online, not Ready: a job runs
    ],
)
async def test_observe_phase(
    container: dict[str, Any] | None,
    ready: bool,
    ephemeral: bool,
    status_phase: str | None,
    listed: str | None,
    phase: RunnerPhase,
) -> None:
    runner: dict[str, Any] = {
        "metadata": {"name": "r", "namespace": NS},
        "spec": {"repository": "octo/app", "ephemeral": ephemeral},
        "status": {"phase": status_phase} if status_phase else {},
    }
    pod = None
    if container is not None:
        pod = runner_pod("r", "1", container)
        if ready:
            pod["status"]["conditions"] = [{"type": "Ready", "status": "True"}]
    github = FakeGitHub()
    directory = RunnerDirectory(github)  # type: ignore[arg-type]
    if listed is not None:
        if listed != "absent":
            github.runners = [GitHubRunner(1, "r", "linux", "online", listed == "busy", ())]
        await directory.refresh(Scope.repository("octo/app"), max_age=0)
    assert runnerreplicaset.observe_phase(runner, pod, directory) is phase


RUNNING = {"running": {"startedAt": "2026-12-07T04:00:00Z"}}
EXITED = {"terminated": {"exitCode": 0}}
ADDED, MODIFIED, DELETED = EventType.ADDED, EventType.MODIFIED, EventType.DELETED


@pytest.mark.parametrize(
    ("kind", "old", "new", "urgent"),
    [
        (ADDED, None, RUNNING, False),
        (ADDED, None, EXITED, True),  # first seen already exited
        (MODIFIED, {}, RUNNING, False),  # scheduled -> running: the count is the same
        (MODIFIED, RUNNING, EXITED, True),  # the job ended: a gap a replacement may fill
        (MODIFIED, EXITED, EXITED, False),  # exited before: that event was the urgent one
        (EventType.SYNC, None, RUNNING, False),
        (DELETED, None, EXITED, False),
    ],
)
def test_pod_exits(kind: EventType, old: dict[str, Any] | None, new: dict[str, Any], urgent: bool) -> None:
    before = runner_pod("r", "1", old) if old is not None else None
    event = InformerEvent(kind, runner_pod("r", "2", new), before)
    assert runnerreplicaset.pod_exits(event) is urgent


def runner_obj(marked: bool, phase: str = "Running") -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "r", "namespace": NS, "resourceVersion": "1"}
    if marked:
        meta["deletionTimestamp"] = "2026-12-07T04:00:00Z"
    return {"metadata": meta, "status": {"phase": phase}}


@pytest.mark.parametrize(
    ("kind", "old_marked", "new_marked", "pod", "urgent"),
    [
        (ADDED, None, False, None, False),  # this process's own create: expected already
        (MODIFIED, False, False, RUNNING, False),  # status phase Idle -> Running
        (MODIFIED, False, True, RUNNING, True),  # marked while running: out of the count now
        (MODIFIED, False, True, None, True),  # marked before its pod exists
        (MODIFIED, False, True, EXITED, False),  # marked after its pod exited (that was urgent)
        (MODIFIED, True, True, RUNNING, False),  # finalizer removed: marked before
        (DELETED, None, True, None, False),  # gone after being marked
        (DELETED, None, False, RUNNING, True),  # gone without being marked first
        (ADDED, None, True, RUNNING, True),  # first seen marked (a relist)
    ],
)
def test_leaves_the_count(
    hand_fed_informer: InformerFactory,
    kind: EventType,
    old_marked: bool | None,
    new_marked: bool,
    pod: dict[str, Any] | None,
    urgent: bool,
) -> None:
    pods = hand_fed_informer("pods")
    if pod is not None:
        pods.store.upsert(runner_pod("r", "5", pod))
    old = runner_obj(old_marked, "Idle") if old_marked is not None else None
    event = InformerEvent(kind, runner_obj(new_marked), old)
    assert runnerreplicaset.leaves_the_count(pods)(event) is urgent
