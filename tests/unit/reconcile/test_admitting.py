"""Admission glue (reconcile/admitting.py): sized Runners, pods and policies -> admission facts, and the
plan -> the writes on each Runner, in tables."""

from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any

import pytest

from runnerd.api import RunnerSpec
from runnerd.api.sizing import RunnerSizingPolicySpec
from runnerd.manifests.sizedpod import sized_pod_spec, sized_runner_spec
from runnerd.reconcile.admission import (
    NodeFacts,
    Order,
    Place,
    PlacePending,
    Plan,
    PodFacts,
    PoolRules,
    Refuse,
    Wait,
    WaitingJob,
    node_facts,
)
from runnerd.reconcile.admitting import (
    CLEARED_STATUS,
    RunnerWrite,
    admission_of,
    awaiting_admission,
    gpu_totals,
    parse_time,
    pod_facts,
    pool_rules,
    prefer_node,
    queued_at,
    reservation,
    slim_cluster_pod,
    slim_node,
    stranded,
    unique_keys,
    waiting_job,
    writes,
)
from runnerd.reconcile.sizedjob import (
    ADMISSION_ANNOTATION,
    ADMITTED_NODE_ANNOTATION,
    QUEUED_AT_ANNOTATION,
    SIZED_JOB_LABEL,
    SIZING_POLICY_LABEL,
)
from runnerd.reconcile.sizing import TIMES, SizeRequest, parse_size
from tests.unit.manifests.podkit import ARTICLE_DIND, OPTIONS
from tests.unit.reconcile.sizingkit import A100, H100, POLICY, POOL, PRODUCT_LABEL

GPU = "nvidia.com/gpu"
D = Decimal
T0 = parse_time("2026-12-07T10:00:00Z") or 0.0


def runner(
    name: str = "gpu-runners-job-41",
    job: str | None = "41",
    queued: str | None = "2026-12-07T10:00:00Z",
    status: dict[str, Any] | None = None,
    **annotations: str,
) -> dict[str, Any]:
    labels = {SIZED_JOB_LABEL: job, SIZING_POLICY_LABEL: "gpu"} if job is not None else {}
    if queued is not None:
        annotations[QUEUED_AT_ANNOTATION] = queued
    obj: dict[str, Any] = {
        "metadata": {
            "name": name,
            "namespace": "ci",
            "labels": labels,
            "annotations": annotations,
            "creationTimestamp": "2026-12-07T10:05:00Z",
        },
        "spec": {},
    }
    if status is not None:
        obj["status"] = status
    return obj


@pytest.mark.parametrize(
    ("obj", "awaiting", "admitted"),
    [
        (runner(), True, None),
        (runner(**{ADMISSION_ANNOTATION: "placed", ADMITTED_NODE_ANNOTATION: "n1"}), False, "placed"),
        (runner(**{ADMISSION_ANNOTATION: "pending"}), False, "pending"),
        (runner(**{ADMISSION_ANNOTATION: "maybe"}), True, None),
        (runner(job=None), False, None),  # a pool runner: no gate
        (runner(job=None, **{ADMISSION_ANNOTATION: "placed"}), False, "placed"),
    ],
    ids=["sized", "placed", "pending", "unknown-value", "unsized", "unsized-annotated"],
)
def test_gate(obj: dict[str, Any], awaiting: bool, admitted: str | None) -> None:
    assert awaiting_admission(obj) is awaiting
    assert admission_of(obj) == admitted


@pytest.mark.parametrize(
    ("admission", "rules"),
    [
        ({}, PoolRules(Order.FIFO, 0, None)),
        ({"order": "Fifo", "maxPending": 3}, PoolRules(Order.FIFO, 3, None)),
        ({"order": "Backfill"}, PoolRules(Order.BACKFILL, 0, None)),
        ({"order": "Backfill", "backfillLimitSeconds": 900}, PoolRules(Order.BACKFILL, 0, 900.0)),
    ],
)
def test_pool_rules(admission: dict[str, Any], rules: PoolRules) -> None:
    spec = RunnerSizingPolicySpec.from_dict({**POLICY, "admission": admission})
    assert pool_rules(spec) == rules


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        (runner(), T0),
        (runner(queued="2026-12-07T10:00:00+00:00"), T0),
        (runner(queued=None), T0 + 300),  # the Runner's creation
        (runner(queued="yesterday"), T0 + 300),
    ],
    ids=["annotation", "offset", "creation", "malformed"],
)
def test_queue_time(obj: dict[str, Any], expected: float) -> None:
    assert queued_at(obj) == expected


def _sized_spec(labels: list[str]) -> RunnerSpec:
    size = parse_size(labels, POOL)
    assert isinstance(size, SizeRequest), size
    template = RunnerSpec.from_dict(copy.deepcopy(ARTICLE_DIND))
    return sized_runner_spec(template, labels, size, POOL)


@pytest.mark.parametrize(
    ("labels", "gpus", "selector"),
    [
        (["self-hosted", "gpu=2"], D(2), {}),
        (["self-hosted", "gpu=4", "gpu-type=h100", "cpu=16", "mem=128Gi"], D(4), {PRODUCT_LABEL: H100}),
        (["self-hosted", "cpu=2"], None, {}),
    ],
    ids=["gpu=2", "h100x4", "cpu-only"],
)
def test_waiting_job_counts_the_pod_the_builder_makes(
    labels: list[str], gpus: Decimal | None, selector: dict[str, str]
) -> None:
    obj = runner()
    pod_spec = sized_pod_spec("gpu-runners-job-41", "ci", _sized_spec(labels), OPTIONS)
    job = waiting_job(obj, pod_spec)
    assert job.key == "job 41"
    assert job.pool == "ci/gpu"
    assert job.queued_at == T0
    assert job.requests.get(GPU) == gpus
    assert job.requests["pods"] == D(1)
    assert dict(job.node_selector) == selector
    if gpus:  # the builder's nvidia.com/gpu toleration is part of the job
        assert any(t.get("key") == GPU for t in job.tolerations)


def _pod(
    phase: str = "Running", node: str | None = "n1", sized: bool = True, **annotations: str
) -> dict[str, Any]:
    labels = {SIZED_JOB_LABEL: "41", SIZING_POLICY_LABEL: "gpu", "app": "x"} if sized else {"app": "x"}
    spec: dict[str, Any] = {
        "containers": [
            {
                "name": "runner",
                "image": "i",
                "env": [{"name": "ACTIONS_RUNNER_INPUT_JITCONFIG", "value": "secret"}],
                "resources": {"limits": {GPU: "2"}, "requests": {"cpu": "1"}},
            }
        ],
        "initContainers": [{"name": "setup", "resources": {"requests": {"cpu": "2"}}}],
        "overhead": {"cpu": "100m"},
        "nodeSelector": {PRODUCT_LABEL: H100},
        "volumes": [{"name": "work", "emptyDir": {}}],
    }
    if node:
        spec["nodeName"] = node
    return {
        "metadata": {
            "name": "gpu-runners-job-41",
            "namespace": "ci",
            "uid": "u1",
            "labels": labels,
            "annotations": {"big": "x" * 1000, **annotations},
            "managedFields": [{"manager": "kubectl"}],
        },
        "spec": spec,
        "status": {"phase": phase, "conditions": [{"type": "Ready"}], "containerStatuses": []},
    }


def test_slim_cluster_pod_keeps_only_what_capacity_needs() -> None:
    slim = slim_cluster_pod(_pod(**{ADMITTED_NODE_ANNOTATION: "n1"}))
    assert slim == {
        "metadata": {
            "name": "gpu-runners-job-41",
            "namespace": "ci",
            "uid": "u1",
            "labels": {SIZED_JOB_LABEL: "41", SIZING_POLICY_LABEL: "gpu"},
            "annotations": {ADMITTED_NODE_ANNOTATION: "n1"},
        },
        "spec": {
            "nodeName": "n1",
            "nodeSelector": {PRODUCT_LABEL: H100},
            "overhead": {"cpu": "100m"},
            "containers": [{"resources": {"limits": {GPU: "2"}, "requests": {"cpu": "1"}}}],
            "initContainers": [{"resources": {"requests": {"cpu": "2"}}}],
        },
        "status": {"phase": "Running"},
    }
    assert "secret" not in repr(slim)


REQ = {"cpu": D("2.1"), GPU: D(2), "pods": D(1)}


@pytest.mark.parametrize(
    ("pod", "facts"),
    [
        (_pod(), PodFacts("ci/gpu-runners-job-41", REQ, node="n1", pool="ci/gpu")),
        (_pod(sized=False), PodFacts("ci/gpu-runners-job-41", REQ, node="n1")),
        (
            _pod(node=None, **{ADMITTED_NODE_ANNOTATION: "n2"}),
            PodFacts("ci/gpu-runners-job-41", REQ, hint="n2", pool="ci/gpu"),
        ),
        (  # bound: the node, not the hint
            _pod(node="n3", **{ADMITTED_NODE_ANNOTATION: "n2"}),
            PodFacts("ci/gpu-runners-job-41", REQ, node="n3", pool="ci/gpu"),
        ),
        (_pod(node=None), PodFacts("ci/gpu-runners-job-41", REQ, pool="ci/gpu")),  # admitted Pending
        (_pod(phase="Succeeded"), None),
        (_pod(phase="Failed"), None),
    ],
    ids=["bound", "other-workload", "hinted", "bound-elsewhere", "pending", "succeeded", "failed"],
)
def test_pod_facts(pod: dict[str, Any], facts: PodFacts | None) -> None:
    assert pod_facts(slim_cluster_pod(pod)) == facts


@pytest.mark.parametrize(
    ("annotations", "hint"),
    [
        ({ADMISSION_ANNOTATION: "placed", ADMITTED_NODE_ANNOTATION: "n1"}, "n1"),
        ({ADMISSION_ANNOTATION: "pending"}, None),
    ],
)
def test_an_admitted_runner_without_a_pod_holds_its_node_or_a_pending_slot(
    annotations: dict[str, str], hint: str | None
) -> None:
    held = reservation(runner(**annotations), {GPU: D(2)})
    assert held == PodFacts("ci/gpu-runners-job-41", {GPU: D(2)}, hint=hint, pool="ci/gpu")


K = "ci/gpu-runners-job-41"
PLACED_N1 = {ADMISSION_ANNOTATION: "placed", ADMITTED_NODE_ANNOTATION: "n1"}
JOB = WaitingJob("job 41", "ci/gpu", T0, {GPU: D(2)})
WAITING = {
    "phase": "Waiting",
    "reason": "WaitingForCapacity",
    "message": f"waiting for 2 {TIMES} nvidia.com/gpu: 0 of 16 free",
}
REFUSED = {"phase": "Refused", "reason": "SizeRefused", "message": "too big"}


@pytest.mark.parametrize(
    ("decision", "obj", "expected"),
    [
        (
            Place(JOB, "n1", "placed"),
            runner(),
            [
                RunnerWrite(
                    "ci/gpu-runners-job-41",
                    annotations={ADMISSION_ANNOTATION: "placed", ADMITTED_NODE_ANNOTATION: "n1"},
                    admitted_at=T0,
                )
            ],
        ),
        (
            PlacePending(JOB, "may wait"),
            runner(),
            [RunnerWrite(K, annotations={ADMISSION_ANNOTATION: "pending"}, admitted_at=T0)],
        ),
        (  # admitted after waiting: its Waiting status goes
            PlacePending(JOB, "may wait"),
            runner(status=WAITING),
            [RunnerWrite(K, {ADMISSION_ANNOTATION: "pending"}, CLEARED_STATUS, admitted_at=T0)],
        ),
        (
            Place(JOB, "n1", "placed"),
            runner(status=REFUSED),
            [RunnerWrite(K, PLACED_N1, CLEARED_STATUS, admitted_at=T0)],
        ),
        (Wait(JOB, WAITING["message"]), runner(), [RunnerWrite("ci/gpu-runners-job-41", status=WAITING)]),
        (Wait(JOB, WAITING["message"]), runner(status={**WAITING, "ready": False}), []),  # unchanged
        (
            Wait(JOB, f"waiting for 2 {TIMES} nvidia.com/gpu: 2 of 16 free"),
            runner(status=WAITING),
            [
                RunnerWrite(
                    "ci/gpu-runners-job-41",
                    status={**WAITING, "message": f"waiting for 2 {TIMES} nvidia.com/gpu: 2 of 16 free"},
                )
            ],
        ),
        (Refuse(JOB, "too big"), runner(), [RunnerWrite("ci/gpu-runners-job-41", status=REFUSED)]),
        (Refuse(JOB, "too big"), runner(status=REFUSED), []),
        (Wait(JOB, "w"), runner(status=REFUSED), [RunnerWrite(K, status={**WAITING, "message": "w"})]),
        # admitted already: the decision is final, nothing is written again
        (Place(JOB, "n2", "placed"), runner(**PLACED_N1), []),
        (Wait(JOB, "w"), runner(**{ADMISSION_ANNOTATION: "pending"}), []),
    ],
    ids=[
        "place", "pending", "waited-then-pending", "refused-then-placed", "wait", "wait-unchanged",
        "wait-new-reason", "refuse", "refuse-unchanged",
        "refused-then-waits", "placed-already", "pending-already",
    ],
)  # fmt: skip
def test_writes(decision: Any, obj: dict[str, Any], expected: list[RunnerWrite]) -> None:
    assert writes(Plan((decision,)), {"job 41": obj}) == expected


def test_a_decision_for_a_runner_that_is_gone_writes_nothing() -> None:
    assert writes(Plan((Place(JOB, "n1", "placed"),)), {}) == []


def test_unique_keys_by_job_id() -> None:
    a, b = runner("a", job="1"), runner("b", job="2", queued="2026-12-07T09:00:00Z")
    twin = runner("c", job="1", queued="2026-12-07T11:00:00Z")
    assert unique_keys([a, b, twin]) == {"job 2": b, "job 1": a, "ci/c": twin}


@pytest.mark.parametrize(
    "affinity",
    [
        None,
        {"podAntiAffinity": {"x": 1}},
        {
            "nodeAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 5, "preference": {}}]
            }
        },
    ],
    ids=["none", "other-affinity", "existing-preference"],
)
def test_prefer_node_adds_one_term_and_keeps_the_rest(affinity: dict[str, Any] | None) -> None:
    before = copy.deepcopy(affinity)
    out = prefer_node(affinity, "n1")
    assert affinity == before  # not mutated
    terms = out["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert terms[-1] == {
        "weight": 100,
        "preference": {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]},
    }
    assert len(terms) == 1 + len(
        ((affinity or {}).get("nodeAffinity") or {}).get(
            "preferredDuringSchedulingIgnoredDuringExecution", []
        )
    )
    for key, value in (affinity or {}).items():
        if key != "nodeAffinity":
            assert out[key] == value


def test_slim_node_keeps_what_node_facts_read() -> None:
    node = {
        "metadata": {"name": "n1", "uid": "u", "labels": {PRODUCT_LABEL: H100}, "managedFields": [{}]},
        "spec": {"taints": [{"key": GPU, "effect": "NoSchedule"}], "unschedulable": True, "podCIDR": "x"},
        "status": {
            "allocatable": {GPU: "8"},
            "capacity": {GPU: "8"},
            "images": [{"names": ["a" * 100]}] * 50,
            "conditions": [
                {"type": "MemoryPressure", "status": "False"},
                {"type": "Ready", "status": "True"},
            ],
        },
    }
    slim = slim_node(copy.deepcopy(node))
    assert slim == {
        "metadata": {"name": "n1", "uid": "u", "labels": {PRODUCT_LABEL: H100}},
        "spec": {"taints": [{"key": GPU, "effect": "NoSchedule"}], "unschedulable": True},
        "status": {"allocatable": {GPU: "8"}, "conditions": [{"type": "Ready", "status": "True"}]},
    }
    assert node_facts(slim) == node_facts(node)


MIG = "nvidia.com/mig-1g.10gb"


@pytest.mark.parametrize(
    ("pods", "expected"),
    [
        ([], {(GPU, H100): (D(16), D(0)), (GPU, A100): (D(4), D(0)), (MIG, A100): (D(7), D(0))}),
        (
            [
                PodFacts("a", {GPU: D(2)}, node="h1"),
                PodFacts("b", {GPU: D(3)}, hint="h2"),  # admitted, not bound: counted on its node
                PodFacts("c", {GPU: D(1)}),  # Pending, no node: not requested from any node
                PodFacts("d", {MIG: D(1), "cpu": D(1)}, node="a1"),
                PodFacts("e", {"cpu": D(4)}, node="cpu1"),
            ],
            {(GPU, H100): (D(16), D(5)), (GPU, A100): (D(4), D(0)), (MIG, A100): (D(7), D(1))},
        ),
    ],
    ids=["idle", "busy"],
)
def test_gpu_totals_by_resource_and_product(pods: list[PodFacts], expected: dict[Any, Any]) -> None:
    nodes = [
        NodeFacts("h1", {GPU: D(8), "cpu": D(96)}, {PRODUCT_LABEL: H100}),
        NodeFacts("h2", {GPU: D(8)}, {PRODUCT_LABEL: H100}),
        NodeFacts("a1", {GPU: D(4), MIG: D(7)}, {PRODUCT_LABEL: A100}),
        NodeFacts("cpu1", {"cpu": D(16)}),
    ]
    assert gpu_totals(nodes, pods, PRODUCT_LABEL) == expected


UNSCHEDULABLE = {
    "type": "PodScheduled",
    "status": "False",
    "reason": "Unschedulable",
    "message": "0/4 nodes are available: 2 Insufficient nvidia.com/gpu.",
    "lastTransitionTime": "2026-12-07T10:00:00Z",
}


def _stranded_pod(node: str | None, hint: str | None, sized: bool = True, **status: Any) -> dict[str, Any]:
    pod = _pod(node=node, sized=sized, **({ADMITTED_NODE_ANNOTATION: hint} if hint else {}))
    pod["status"] = {"phase": "Pending", "conditions": [{"type": "Ready", "status": "False"}, UNSCHEDULABLE]}
    pod["status"].update(status)
    return slim_cluster_pod(pod)


def test_the_pod_view_keeps_a_refused_scheduling_and_nothing_else_of_the_status() -> None:
    slim = _stranded_pod(None, "n1")
    assert slim["status"] == {
        "phase": "Pending",
        "conditions": [{k: v for k, v in UNSCHEDULABLE.items() if k != "lastTransitionTime"}],
    }


@pytest.mark.parametrize(
    ("pod", "reason"),
    [
        (_stranded_pod(None, "n1"), UNSCHEDULABLE["message"]),
        (_stranded_pod("n1", "n1"), None),  # bound after all
        (_stranded_pod(None, None), None),  # admitted Pending on purpose (no hint)
        (_stranded_pod(None, "n1", sized=False), None),  # not ours
        (_stranded_pod(None, "n1", conditions=[]), None),  # not refused (yet)
    ],
    ids=["stranded", "bound", "pending-allowance", "other-workload", "not-refused"],
)
def test_stranded(pod: dict[str, Any], reason: str | None) -> None:
    assert stranded(pod) == reason
