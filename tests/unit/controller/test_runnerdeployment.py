"""The RunnerDeployment controller over a fake API server: replica set per template, rollout, status."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from runnerd.api import RunnerDeployment
from runnerd.controller.common import LABEL_DEPLOYMENT_NAME, LABEL_TEMPLATE_HASH, ControllerOptions
from runnerd.controller.runnerdeployment import DeploymentController
from runnerd.kube.resources import Resource
from runnerd.runtime import EventRecorder, Informer, Key, NotFound, Result
from tests.unit.controller.conftest import InformerFactory
from tests.unit.controller.fakes import KeptEvents

pytestmark = pytest.mark.timeout(10)

NS = "ns"
KEY = Key(NS, "rd")


@dataclass
class FakeKube:
    """RunnerReplicaSets by name, and every write the controller sent."""

    replica_sets: dict[str, dict[str, Any]] = field(default_factory=dict)
    writes: list[tuple[str, str, Any]] = field(default_factory=list)
    statuses: list[dict[str, Any]] = field(default_factory=list)

    async def create(self, resource: Resource, body: dict[str, Any], *, namespace: str) -> dict[str, Any]:
        obj = copy.deepcopy(body)
        meta = obj["metadata"]
        meta["name"] = f"{meta.pop('generateName')}{len(self.replica_sets)}"
        meta["uid"] = f"uid-{meta['name']}"
        meta["creationTimestamp"] = f"2026-12-07T04:00:{len(self.replica_sets):02d}Z"
        self.replica_sets[meta["name"]] = obj
        self.writes.append(("create", meta["name"], body["spec"]))
        return obj

    async def patch(self, resource: Resource, name: str, patch: dict[str, Any], *, namespace: str) -> Any:
        if name not in self.replica_sets:
            raise NotFound(404, "NotFound", name)
        self.replica_sets[name]["spec"].update(patch["spec"])
        self.writes.append(("patch", name, patch["spec"]))
        return self.replica_sets[name]

    async def delete(self, resource: Resource, name: str, *, namespace: str, missing_ok: bool) -> None:
        self.replica_sets.pop(name, None)
        self.writes.append(("delete", name, None))

    async def patch_status(
        self, resource: Resource, name: str, patch: dict[str, Any], *, namespace: str
    ) -> dict[str, Any]:
        assert resource.kind == "RunnerDeployment", "the controller writes only its own status"
        self.statuses.append(patch["status"])
        return patch


def deployment(replicas: int, image: str = "runner:1", effective: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "replicas": replicas,
        "template": {"spec": {"repository": "octo/app", "image": image}},
    }
    if effective is not None:
        spec["effectiveTime"] = effective
    return {
        "apiVersion": "actions.summerwind.dev/v1alpha1",
        "kind": "RunnerDeployment",
        "metadata": {"name": "rd", "namespace": NS, "uid": "uid-rd", "resourceVersion": "1"},
        "spec": spec,
    }


@dataclass
class World:
    kube: FakeKube
    deployments: Informer
    replica_sets: Informer
    runners: Informer
    controller: DeploymentController

    def show(self) -> None:
        """The informers catch up with the API server."""
        for obj in self.replica_sets.store.objects():
            if obj["metadata"]["name"] not in self.kube.replica_sets:
                self.replica_sets.store.delete(Key(NS, obj["metadata"]["name"]))
        for obj in self.kube.replica_sets.values():
            self.replica_sets.store.upsert(copy.deepcopy(obj))

    def set_deployment(self, obj: dict[str, Any]) -> None:
        self.deployments.store.upsert(obj)

    def replica_set_reports(self, name: str, *, ready: int, runners: int) -> None:
        """The replica set's controller wrote its status; ``runners`` Runner objects are its own."""
        rs = self.kube.replica_sets[name]
        rs["status"] = {"replicas": runners, "readyReplicas": ready, "availableReplicas": ready}
        for i in range(runners):
            self.runners.store.upsert(runner_of(rs, i))
        for obj in self.runners.store.by_index("controller", rs["metadata"]["uid"])[runners:]:
            self.runners.store.delete(Key(NS, obj["metadata"]["name"]))
        self.show()

    async def reconcile(self) -> Result | None:
        return await self.controller.reconcile(KEY)

    def by_template(self) -> dict[str, int]:
        """spec.replicas of each replica set, by its template hash."""
        return {
            rs["metadata"]["labels"][LABEL_TEMPLATE_HASH]: rs["spec"]["replicas"]
            for rs in self.kube.replica_sets.values()
        }


def runner_of(rs: dict[str, Any], i: int) -> dict[str, Any]:
    name = f"{rs['metadata']['name']}-r{i}"
    return {
        "metadata": {
            "name": name,
            "namespace": NS,
            "uid": f"uid-{name}",
            "ownerReferences": [{"uid": rs["metadata"]["uid"], "controller": True}],
        }
    }


MakeWorld = Callable[[dict[str, Any]], World]


@pytest.fixture
def world(hand_fed_informer: InformerFactory, event_recorder: EventRecorder) -> MakeWorld:
    def make(rd: dict[str, Any]) -> World:
        kube = FakeKube()
        deployments = hand_fed_informer("runnerdeployments")
        deployments.store.upsert(rd)
        replica_sets = hand_fed_informer("runnerreplicasets", owned=True)
        runners = hand_fed_informer("runners", owned=True)
        controller = DeploymentController(
            kube=kube,  # type: ignore[arg-type]
            recorder=event_recorder,
            deployments=deployments,
            replica_sets=replica_sets,
            runners=runners,
            options=ControllerOptions(namespace=NS),
        )
        return World(kube, deployments, replica_sets, runners, controller)

    return make


async def test_a_new_deployment_gets_one_replica_set_and_never_two(
    world: MakeWorld, kept_events: KeptEvents
) -> None:
    w = world(deployment(3, effective="2026-12-07T04:00:00Z"))
    await w.reconcile()
    [(verb, name, spec)] = w.kube.writes
    assert (verb, name) == ("create", "rd-0")
    assert spec["replicas"] == 3
    assert spec["effectiveTime"] == "2026-12-07T04:00:00Z"
    rs = w.kube.replica_sets["rd-0"]
    current = w.controller.template_hash(_rd(w))
    assert rs["metadata"]["labels"] == {LABEL_DEPLOYMENT_NAME: "rd", LABEL_TEMPLATE_HASH: current}
    assert rs["spec"]["selector"]["matchLabels"] == {
        LABEL_DEPLOYMENT_NAME: "rd",
        LABEL_TEMPLATE_HASH: current,
    }
    assert rs["spec"]["template"]["metadata"]["labels"][LABEL_TEMPLATE_HASH] == current
    assert rs["metadata"]["ownerReferences"][0]["uid"] == "uid-rd"
    assert kept_events.reasons() == ["ReplicaSetCreated"]
    # the informer has not shown it yet: the expectation keeps a second reconcile from making another
    result = await w.reconcile()
    assert result == Result(requeue_after=1.0)
    assert len(w.kube.replica_sets) == 1
    w.show()
    result = await w.reconcile()
    assert len(w.kube.writes) == 1
    assert result == Result(requeue_after=None)  # one replica set at the right size: nothing to wait for


async def test_a_template_change_rolls_over_once_the_new_replica_set_is_ready(world: MakeWorld) -> None:
    w = world(deployment(2, image="runner:1"))
    await w.reconcile()
    w.replica_set_reports("rd-0", ready=2, runners=2)
    old = w.controller.template_hash(_rd(w))

    w.set_deployment(deployment(2, image="runner:2"))
    await w.reconcile()
    new = w.controller.template_hash(_rd(w))
    assert new != old
    assert w.by_template() == {old: 2, new: 2}  # the old one keeps its runners while the new one starts
    w.show()
    result = await w.reconcile()
    assert w.by_template() == {old: 2, new: 2}
    assert result == Result(requeue_after=5.0)  # rolling: two replica sets

    w.replica_set_reports("rd-1", ready=2, runners=2)
    await w.reconcile()
    assert w.by_template() == {old: 0, new: 2}  # the new one is ready: the old one goes to 0
    w.show()
    await w.reconcile()
    assert "rd-0" in w.kube.replica_sets  # a busy runner is left: the replica set waits for it

    w.replica_set_reports("rd-0", ready=0, runners=0)
    await w.reconcile()
    assert w.by_template() == {new: 2}
    assert w.kube.writes[-1] == ("delete", "rd-0", None)


async def test_scaling_to_zero_scales_every_replica_set_at_once(world: MakeWorld) -> None:
    w = world(deployment(2, image="runner:1"))
    await w.reconcile()
    w.replica_set_reports("rd-0", ready=1, runners=2)
    w.set_deployment(deployment(0, image="runner:2"))
    await w.reconcile()
    w.show()
    await w.reconcile()
    assert sorted(w.by_template().values()) == [0, 0]


async def test_a_new_effective_time_reaches_the_current_replica_set_with_an_unchanged_count(
    world: MakeWorld,
) -> None:
    w = world(deployment(2, effective="2026-12-07T04:00:00Z"))
    await w.reconcile()
    w.show()
    # one job finished and another queued: same count, a new decision the replica set must see
    w.set_deployment(deployment(2, effective="2026-12-07T04:00:09Z"))
    await w.reconcile()
    assert w.kube.writes[-1] == ("patch", "rd-0", {"effectiveTime": "2026-12-07T04:00:09Z"})
    w.show()
    writes = len(w.kube.writes)
    await w.reconcile()
    assert len(w.kube.writes) == writes  # already passed on: no second patch


async def test_status_sums_the_replica_sets_and_is_written_only_when_it_changes(world: MakeWorld) -> None:
    w = world(deployment(3))
    await w.reconcile()
    w.replica_set_reports("rd-0", ready=2, runners=3)
    w.kube.replica_sets["rd-0"]["status"]["busyReplicas"] = 1
    w.show()
    await w.reconcile()
    assert w.kube.statuses[-1] == {
        "desiredReplicas": 3,
        "replicas": 3,
        "readyReplicas": 2,
        "availableReplicas": 2,
        "updatedReplicas": 3,
        "busyReplicas": 1,
        "selector": f"{LABEL_DEPLOYMENT_NAME}=rd",
    }
    w.set_deployment({**deployment(3), "status": w.kube.statuses[-1]})
    written = len(w.kube.statuses)
    await w.reconcile()
    assert len(w.kube.statuses) == written


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda rd: rd["metadata"].__setitem__("deletionTimestamp", "2026-12-07T04:00:00Z"), None),
        (lambda rd: rd["spec"].__setitem__("replicas", "three"), "InvalidSpec"),
    ],
    ids=["being-deleted", "invalid-spec"],
)
async def test_a_deployment_being_deleted_or_invalid_is_left_alone(
    world: MakeWorld, kept_events: KeptEvents, change: Callable[[dict[str, Any]], None], reason: str | None
) -> None:
    rd = deployment(2)
    change(rd)
    w = world(rd)
    assert await w.reconcile() is None
    assert w.kube.writes == []
    assert w.kube.statuses == []
    assert kept_events.reasons() == ([reason] if reason else [])


async def test_a_deleted_deployment_forgets_its_expectations(world: MakeWorld) -> None:
    w = world(deployment(1))
    await w.reconcile()
    w.deployments.store.delete(KEY)
    assert await w.reconcile() is None
    w.set_deployment(deployment(1))
    w.kube.replica_sets.clear()
    await w.reconcile()  # nothing expected any more: the deployment is created afresh
    assert len(w.kube.replica_sets) == 1


def _rd(w: World) -> RunnerDeployment:
    obj = w.deployments.store.get(KEY)
    assert obj is not None
    return RunnerDeployment.from_dict(obj)


async def test_a_deployment_is_parsed_and_hashed_once_per_cached_object(
    world: MakeWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Passes woken by its replica sets' status writes find the very object of the last pass."""
    w = world(deployment(2))
    hashed: list[str] = []
    hash_of = w.controller.template_hash

    def counting(rd: Any) -> str:
        hashed.append(rd.name)
        return hash_of(rd)

    monkeypatch.setattr(w.controller, "template_hash", counting)
    await w.reconcile()
    w.show()
    (name,) = w.kube.replica_sets
    w.replica_set_reports(name, ready=1, runners=2)
    await w.reconcile()
    assert hashed == ["rd"]
    w.set_deployment(deployment(2, image="runner:2"))  # a new object: worked out again
    await w.reconcile()
    assert hashed == ["rd", "rd"]
    assert len(w.by_template()) == 2
    w.deployments.store.delete(KEY)
    await w.reconcile()
    assert len(w.controller.parsed) == 0
