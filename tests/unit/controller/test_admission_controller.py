"""The admission controller over a fake cluster: facts from nodes, pods, sized Runners and policies,
one pass of ``admit``, the writes on the Runners; its memory of what it admitted; its triggers."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from runnerd.api import RunnerSpec
from runnerd.controller.admission import ADMISSION_KEY, AdmissionController, node_changed, pod_changed
from runnerd.manifests.pod import PodOptions
from runnerd.manifests.sizedpod import sized_runner_spec
from runnerd.reconcile.admitting import parse_time
from runnerd.reconcile.sizedjob import (
    ADMISSION_ANNOTATION,
    ADMITTED_NODE_ANNOTATION,
    QUEUED_AT_ANNOTATION,
    SIZED_JOB_LABEL,
    SIZING_POLICY_LABEL,
)
from runnerd.reconcile.sizing import SizeRequest, parse_size
from runnerd.runtime import EventType, InformerEvent
from runnerd.web.metrics import Metrics
from tests.unit.controller.fakes import FakeInformer, FakeKube, FakeRecorder, FakeStore
from tests.unit.reconcile.sizingkit import H100, POLICY, POOL, PRODUCT_LABEL

pytestmark = pytest.mark.timeout(10)

NS = "ci"
GPU = "nvidia.com/gpu"
NOW = parse_time("2026-12-07T11:00:00Z") or 0.0
TEMPLATE: dict[str, Any] = {"repository": "octo/app", "dockerEnabled": False, "labels": ["self-hosted"]}


def add_node(kube: FakeKube, name: str, gpus: int = 8, ready: bool = True) -> None:
    kube.objects[("nodes", "", name)] = {
        "metadata": {"name": name, "labels": {PRODUCT_LABEL: H100}},
        "spec": {"taints": [{"key": GPU, "value": "present", "effect": "NoSchedule"}]},
        "status": {
            "allocatable": {GPU: str(gpus), "cpu": "96", "memory": "1Ti", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def add_policy(kube: FakeKube, **admission: Any) -> None:
    spec = {**copy.deepcopy(POLICY), "admission": admission or POLICY["admission"]}
    kube.objects[("runnersizingpolicies", NS, "gpu")] = {
        "apiVersion": "runnerd.dev/v1alpha1",
        "kind": "RunnerSizingPolicy",
        "metadata": {"name": "gpu", "namespace": NS},
        "spec": spec,
    }


def add_job(kube: FakeKube, job: int, gpus: int, minute: int = 0, **annotations: str) -> str:
    labels = ["self-hosted", f"gpu={gpus}"]
    size = parse_size(labels, POOL)
    assert isinstance(size, SizeRequest)
    spec = sized_runner_spec(RunnerSpec.from_dict(copy.deepcopy(TEMPLATE)), labels, size, POOL)
    name = f"gpu-runners-job-{job}"
    kube.objects[("runners", NS, name)] = {
        "apiVersion": "actions.summerwind.dev/v1alpha1",
        "kind": "Runner",
        "metadata": {
            "name": name,
            "namespace": NS,
            "uid": f"uid-{job}",
            "generation": 1,
            "labels": {SIZED_JOB_LABEL: str(job), SIZING_POLICY_LABEL: "gpu"},
            "annotations": {QUEUED_AT_ANNOTATION: f"2026-12-07T10:{minute:02d}:00Z", **annotations},
            "ownerReferences": [{"kind": "RunnerDeployment", "name": "gpu-runners", "uid": "rd"}],
        },
        "spec": {**spec.to_dict(), "ephemeral": True},
    }
    return name


def add_pod(kube: FakeKube, name: str, node: str | None, gpus: int, **annotations: str) -> None:
    spec: dict[str, Any] = {"containers": [{"name": "c", "resources": {"limits": {GPU: str(gpus)}}}]}
    if node:
        spec["nodeName"] = node
    kube.objects[("pods", NS, name)] = {
        "metadata": {"name": name, "namespace": NS, "annotations": annotations},
        "spec": spec,
        "status": {"phase": "Running" if node else "Pending"},
    }


def admission(
    kube: FakeKube, metrics: Metrics | None = None, recorder: FakeRecorder | None = None
) -> AdmissionController:
    return AdmissionController(
        kube=kube,  # type: ignore[arg-type]
        runners=FakeInformer(FakeStore(kube, "runners")),  # type: ignore[arg-type]
        pods=FakeInformer(FakeStore(kube, "pods")),  # type: ignore[arg-type]
        nodes=FakeInformer(FakeStore(kube, "nodes")),  # type: ignore[arg-type]
        policies=FakeInformer(FakeStore(kube, "runnersizingpolicies")),  # type: ignore[arg-type]
        pod_options=PodOptions(),
        recorder=recorder,  # type: ignore[arg-type]
        metrics=metrics,
        clock=lambda: NOW,
    )


def meta(kube: FakeKube, name: str) -> dict[str, Any]:
    result: dict[str, Any] = kube.objects[("runners", NS, name)]["metadata"]
    return result


def status(kube: FakeKube, name: str) -> dict[str, Any]:
    result: dict[str, Any] = kube.objects[("runners", NS, name)].get("status") or {}
    return result


async def test_a_gpu_job_is_placed_on_the_best_fitting_node_and_counted(kube: FakeKube) -> None:
    add_node(kube, "gpu-node-1")
    add_node(kube, "gpu-node-2")
    add_pod(kube, "other", "gpu-node-2", 6)
    add_policy(kube)
    a = add_job(kube, 41, 2)
    metrics, recorder = Metrics(), FakeRecorder()
    await admission(kube, metrics, recorder).reconcile(ADMISSION_KEY)
    assert meta(kube, a)["annotations"][ADMISSION_ANNOTATION] == "placed"
    assert meta(kube, a)["annotations"][ADMITTED_NODE_ANNOTATION] == "gpu-node-2"  # 2 left there: best fit
    assert status(kube, a) == {}  # admitted: the Runner controller owns its status
    assert recorder.reasons() == ["Admitted"]
    assert (
        metrics.sample("runnerd_admission_wait_seconds_count", {"namespace": NS, "pool": "gpu-runners"}) == 1
    )
    labels = {"resource": GPU, "gpu_product": H100}
    assert metrics.sample("runnerd_gpu_allocatable", labels) == 16
    assert metrics.sample("runnerd_gpu_requested", labels) == 6  # its pod is not there yet: counted by hint


async def test_jobs_wait_in_order_with_their_reasons_and_placed_runners_hold_their_nodes(
    kube: FakeKube,
) -> None:
    add_node(kube, "gpu-node-1")
    add_node(kube, "gpu-node-2")
    add_policy(kube)
    a, b, c = add_job(kube, 1, 8, 0), add_job(kube, 2, 8, 1), add_job(kube, 3, 8, 2)
    ctl = admission(kube)
    await ctl.reconcile(ADMISSION_KEY)
    assert {
        meta(kube, a)["annotations"][ADMITTED_NODE_ANNOTATION],
        meta(kube, b)["annotations"][ADMITTED_NODE_ANNOTATION],
    } == {
        "gpu-node-1",
        "gpu-node-2",
    }
    assert ADMISSION_ANNOTATION not in meta(kube, c)["annotations"]
    assert status(kube, c)["phase"] == "Waiting"
    assert status(kube, c)["reason"] == "WaitingForCapacity"
    assert "0 of 16 free" in status(kube, c)["message"]
    # no pods yet: the placed Runners still hold their nodes; nothing changes, nothing is written
    kube.calls.clear()
    await ctl.reconcile(ADMISSION_KEY)
    assert kube.calls == []
    # a's pod ran and finished and a is gone: c takes its node
    node_a = meta(kube, a)["annotations"][ADMITTED_NODE_ANNOTATION]
    del kube.objects[("runners", NS, a)]
    await ctl.reconcile(ADMISSION_KEY)
    assert meta(kube, c)["annotations"][ADMITTED_NODE_ANNOTATION] == node_a
    assert not any(status(kube, c).values())  # admitted: its Waiting status is gone


async def test_a_hinted_pod_counts_on_its_node_until_bound_then_where_it_is_bound(kube: FakeKube) -> None:
    add_node(kube, "gpu-node-1")
    add_node(kube, "gpu-node-2")
    add_policy(kube)
    a = add_job(kube, 1, 8, 0, **{ADMISSION_ANNOTATION: "placed", ADMITTED_NODE_ANNOTATION: "gpu-node-1"})
    add_pod(kube, a, None, 8, **{ADMISSION_ANNOTATION: "placed", ADMITTED_NODE_ANNOTATION: "gpu-node-1"})
    b = add_job(kube, 2, 8, 1)
    ctl = admission(kube)
    await ctl.reconcile(ADMISSION_KEY)
    assert meta(kube, b)["annotations"][ADMITTED_NODE_ANNOTATION] == "gpu-node-2"
    c = add_job(kube, 3, 8, 2)
    kube.objects[("pods", NS, a)]["spec"]["nodeName"] = "gpu-node-2"  # the scheduler chose otherwise
    await ctl.reconcile(ADMISSION_KEY)
    # once bound, a counts where it runs, not on its hint: gpu-node-1 is free again
    assert meta(kube, c)["annotations"][ADMITTED_NODE_ANNOTATION] == "gpu-node-1"


async def test_an_admitted_pod_the_scheduler_refuses_is_reported_once(kube: FakeKube) -> None:
    add_node(kube, "gpu-node-1")
    add_policy(kube)
    placed = {ADMISSION_ANNOTATION: "placed", ADMITTED_NODE_ANNOTATION: "gpu-node-1"}
    a = add_job(kube, 1, 8, 0, **placed)
    add_pod(kube, a, None, 8, **placed)
    kube.objects[("pods", NS, a)]["metadata"]["labels"] = {SIZED_JOB_LABEL: "1", SIZING_POLICY_LABEL: "gpu"}
    kube.objects[("pods", NS, a)]["metadata"]["uid"] = "pod-1"
    kube.objects[("pods", NS, a)]["status"]["conditions"] = [
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/4 nodes fit"}
    ]
    recorder = FakeRecorder()
    ctl = admission(kube, recorder=recorder)
    await ctl.reconcile(ADMISSION_KEY)
    await ctl.reconcile(ADMISSION_KEY)
    assert recorder.reasons() == ["AdmittedPodUnschedulable"]
    assert "gpu-node-1" in recorder.events[0][2]
    assert "0/4 nodes fit" in recorder.events[0][2]


async def test_a_job_larger_than_every_node_is_refused_and_reported(kube: FakeKube) -> None:
    add_node(kube, "gpu-node-1", gpus=4)
    add_policy(kube)
    a = add_job(kube, 1, 8)
    recorder = FakeRecorder()
    await admission(kube, recorder=recorder).reconcile(ADMISSION_KEY)
    assert status(kube, a)["phase"] == "Refused"
    assert status(kube, a)["reason"] == "SizeRefused"
    assert "the largest matching node has 4" in status(kube, a)["message"]
    assert ADMISSION_ANNOTATION not in meta(kube, a)["annotations"]
    assert recorder.reasons() == ["SizeRefused"]


async def test_what_it_admitted_is_remembered_until_the_cache_shows_it(kube: FakeKube) -> None:
    """A pass that runs before the Runner cache shows an admission neither admits the job again
    nor hands its capacity to another."""
    add_node(kube, "gpu-node-1")
    add_policy(kube)
    a = add_job(kube, 1, 8, 0)
    ctl = admission(kube)
    await ctl.reconcile(ADMISSION_KEY)
    assert meta(kube, a)["annotations"][ADMITTED_NODE_ANNOTATION] == "gpu-node-1"
    stale = {k: v for k, v in meta(kube, a)["annotations"].items() if k == QUEUED_AT_ANNOTATION}
    meta(kube, a)["annotations"] = stale  # the cache has not caught up
    b = add_job(kube, 2, 8, 1)
    kube.calls.clear()
    await ctl.reconcile(ADMISSION_KEY)
    assert ("patch", "runners", a) not in kube.calls
    assert ADMISSION_ANNOTATION not in meta(kube, b)["annotations"]
    assert status(kube, b)["phase"] == "Waiting"


async def test_with_a_pending_allowance_a_job_no_node_fits_is_admitted_pending(kube: FakeKube) -> None:
    add_node(kube, "gpu-node-1", gpus=4)
    add_policy(kube, maxPending=1)
    a, b = add_job(kube, 1, 8, 0), add_job(kube, 2, 8, 1)
    await admission(kube).reconcile(ADMISSION_KEY)
    assert meta(kube, a)["annotations"][ADMISSION_ANNOTATION] == "pending"
    assert ADMITTED_NODE_ANNOTATION not in meta(kube, a)["annotations"]
    assert status(kube, b)["phase"] == "Waiting"  # the one slot is taken


async def test_backfill_looks_again_when_a_job_reaches_its_limit(kube: FakeKube) -> None:
    add_node(kube, "gpu-node-1", gpus=4)
    add_node(kube, "gpu-node-2", gpus=8)
    add_pod(kube, "busy", "gpu-node-2", 4)
    add_policy(kube, order="Backfill", backfillLimitSeconds=7200)
    add_job(kube, 1, 8, 0)
    result = await admission(kube).reconcile(ADMISSION_KEY)
    assert result is not None
    assert result.requeue_after is not None
    assert 0 < result.requeue_after <= 7200


async def test_unsized_runners_and_other_namespaces_pods_are_facts_not_jobs(kube: FakeKube) -> None:
    add_node(kube, "gpu-node-1")
    add_policy(kube)
    kube.objects[("runners", NS, "plain")] = {"metadata": {"name": "plain", "namespace": NS}, "spec": {}}
    await admission(kube).reconcile(ADMISSION_KEY)
    assert "annotations" not in kube.objects[("runners", NS, "plain")]["metadata"]
    assert kube.calls == []


def _event(kind: EventType, obj: dict[str, Any], old: dict[str, Any] | None = None) -> InformerEvent:
    return InformerEvent(kind, obj, old)


NODE: dict[str, Any] = {
    "metadata": {"name": "n", "resourceVersion": "1"},
    "spec": {},
    "status": {"allocatable": {GPU: "8"}, "conditions": [{"type": "Ready", "status": "True"}]},
}
POD: dict[str, Any] = {
    "metadata": {"name": "p", "resourceVersion": "1"},
    "spec": {},
    "status": {"phase": "Pending"},
}


def _with(obj: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    here = out
    for key in path[:-1]:
        here = here[key]
    here[path[-1]] = value
    return out


@pytest.mark.parametrize(
    ("event", "changed"),
    [
        (_event(EventType.ADDED, NODE), True),
        (_event(EventType.DELETED, NODE), True),
        (_event(EventType.SYNC, NODE), False),
        (_event(EventType.MODIFIED, _with(NODE, ("metadata", "resourceVersion"), "2"), NODE), False),
        (_event(EventType.MODIFIED, _with(NODE, ("status", "allocatable"), {GPU: "4"}), NODE), True),
        (_event(EventType.MODIFIED, _with(NODE, ("spec", "unschedulable"), True), NODE), True),
        (
            _event(
                EventType.MODIFIED,
                _with(NODE, ("status", "conditions"), [{"type": "Ready", "status": "False"}]),
                NODE,
            ),
            True,
        ),
    ],
    ids=["added", "deleted", "sync", "heartbeat", "allocatable", "cordoned", "not-ready"],
)
def test_node_events_that_matter(event: InformerEvent, changed: bool) -> None:
    assert node_changed(event) is changed


@pytest.mark.parametrize(
    ("event", "changed"),
    [
        (_event(EventType.ADDED, POD), True),
        (_event(EventType.DELETED, POD), True),  # deleted, or finished (it left the view)
        (_event(EventType.SYNC, POD), False),
        (_event(EventType.MODIFIED, _with(POD, ("metadata", "resourceVersion"), "2"), POD), False),
        (_event(EventType.MODIFIED, _with(POD, ("spec", "nodeName"), "n"), POD), True),  # bound
        (_event(EventType.MODIFIED, _with(POD, ("status", "phase"), "Running"), POD), True),
        (
            _event(
                EventType.MODIFIED,
                _with(POD, ("status", "conditions"), [{"type": "PodScheduled", "status": "False"}]),
                POD,
            ),
            True,
        ),
    ],
    ids=["added", "deleted", "sync", "status-churn", "bound", "phase", "unschedulable"],
)
def test_pod_events_that_matter(event: InformerEvent, changed: bool) -> None:
    assert pod_changed(event) is changed
