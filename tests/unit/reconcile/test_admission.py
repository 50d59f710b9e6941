"""Capacity-aware admission: table-driven cases and an exhaustive sweep of small mixes."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import pytest

from runnerd.reconcile.admission import (
    Decision,
    NodeFacts,
    Order,
    Place,
    PlacePending,
    PodFacts,
    PoolRules,
    Refuse,
    Taint,
    Wait,
    WaitingJob,
    admit,
    describe,
    fits,
    free_capacity,
    matches,
    node_facts,
    pod_requests,
    tolerated,
)
from tests.unit.reconcile.sizingkit import A100, H100, PRODUCT_LABEL

GPU = "nvidia.com/gpu"
D = Decimal
GPU_TAINT = Taint(GPU, "", "NoSchedule")
GPU_TOLERATION = {"key": GPU, "operator": "Exists", "effect": "NoSchedule"}
FIFO, BACKFILL = PoolRules(Order.FIFO), PoolRules(Order.BACKFILL)


def node(name: str, gpus: int, product: str = H100, cpu: int = 64, **kw: Any) -> NodeFacts:
    return NodeFacts(
        name,
        {GPU: D(gpus), "cpu": D(cpu), "memory": D(512 * 2**30), "pods": D(110)},
        {PRODUCT_LABEL: product},
        (GPU_TAINT,),
        **kw,
    )


def cpu_node(name: str, cpu: int = 16) -> NodeFacts:
    return NodeFacts(name, {"cpu": D(cpu), "memory": D(64 * 2**30), "pods": D(110)})


def job(
    key: str, gpus: int = 0, t: float = 0.0, pool: str = "p", product: str | None = H100, **kw: Any
) -> WaitingJob:
    requests = {GPU: D(gpus), "cpu": D(1), "pods": D(1)} if gpus else {"cpu": D(1), "pods": D(1)}
    requests.update(kw.pop("requests", {}))
    selector = {PRODUCT_LABEL: product} if gpus and product else {}
    tolerations = (GPU_TOLERATION,) if gpus else ()
    return WaitingJob(key, pool, t, requests, selector, tolerations, **kw)


def busy(node_name: str, gpus: int, name: str = "other") -> PodFacts:
    return PodFacts(f"{name}-{node_name}", {GPU: D(gpus), "pods": D(1)}, node=node_name)


def summary(decisions: Sequence[Decision]) -> list[tuple[str, str]]:
    out = []
    for d in decisions:
        kind = type(d).__name__
        out.append((d.job.key, f"{kind}:{d.node}" if isinstance(d, Place) else kind))
    return out


TWO_BY_EIGHT = [node("n1", 8), node("n2", 8)]


@pytest.mark.parametrize(
    ("pods", "jobs", "rules", "expected"),
    [
        pytest.param([], [job("a", 2)], FIFO, [("a", "Place:n1")], id="empty-cluster-places"),
        pytest.param(
            [busy("n1", 8), busy("n2", 7)], [job("a", 2)], FIFO, [("a", "Wait")], id="fragmented-waits"
        ),
        pytest.param(
            [busy("n1", 6)], [job("a", 2)], FIFO, [("a", "Place:n1")], id="best-fit-fills-the-fuller-node"
        ),
        pytest.param(
            [],
            [job("a", 8, 1), job("b", 8, 2), job("c", 1, 3)],
            FIFO,
            [("a", "Place:n1"), ("b", "Place:n2"), ("c", "Wait")],
            id="full-then-wait",
        ),
        pytest.param(
            [busy("n1", 4), busy("n2", 4)],
            [job("big", 8, 1), job("small", 1, 2)],
            FIFO,
            [("big", "Wait"), ("small", "Wait")],
            id="fifo-small-waits-behind-big",
        ),
        pytest.param(
            [busy("n1", 4), busy("n2", 4)],
            [job("big", 8, 1), job("small", 1, 2)],
            BACKFILL,
            [("big", "Wait"), ("small", "Place:n1")],
            id="backfill-small-passes-big",
        ),
        pytest.param(
            [busy("n1", 4), busy("n2", 4)],
            [job("big", 8, 1), job("small", 1, 2)],
            PoolRules(Order.BACKFILL, backfill_limit_s=50),
            [("big", "Wait"), ("small", "Wait")],
            id="backfill-limit-reached-holds",
        ),
        pytest.param(
            [busy("n1", 4), busy("n2", 4)],
            [job("big", 8, 1), job("small", 1, 2)],
            PoolRules(Order.BACKFILL, backfill_limit_s=500),
            [("big", "Wait"), ("small", "Place:n1")],
            id="backfill-limit-not-yet",
        ),
        pytest.param([], [job("huge", 16)], FIFO, [("huge", "Refuse")], id="more-than-any-node-is-refused"),
        pytest.param(
            [busy("n1", 8), busy("n2", 8)],
            [job("huge", 16, 1), job("a", 1, 2)],
            FIFO,
            [("huge", "Refuse"), ("a", "Wait")],
            id="refused-job-holds-nothing",
        ),
        pytest.param(
            [],
            [job("huge", 16, 1), job("a", 1, 2)],
            FIFO,
            [("huge", "Refuse"), ("a", "Place:n1")],
            id="refused-job-blocks-nobody",
        ),
        pytest.param(
            [busy("n1", 8), busy("n2", 8)],
            [job("a", 1, 1), job("b", 1, 2), job("c", 1, 3)],
            PoolRules(max_pending=2),
            [("a", "PlacePending"), ("b", "PlacePending"), ("c", "Wait")],
            id="pending-allowance",
        ),
        pytest.param(
            [busy("n1", 8), busy("n2", 8), PodFacts("mine", {GPU: D(1)}, pool="p")],
            [job("a", 1, 1), job("b", 1, 2)],
            PoolRules(max_pending=2),
            [("a", "PlacePending"), ("b", "Wait")],
            id="existing-pending-pod-uses-the-allowance",
        ),
        pytest.param(
            [],
            [job("huge", 16)],
            PoolRules(max_pending=1),
            [("huge", "PlacePending")],
            id="autoscaler-may-add-big",
        ),
        pytest.param(
            [busy("n1", 4), busy("n2", 4)],
            [job("big", 8, 1), job("small", 1, 2)],
            PoolRules(max_pending=3),
            [("big", "PlacePending"), ("small", "Place:n1")],
            id="pending-job-holds-no-node",
        ),
        pytest.param(
            [],
            [job("a", 2, 1, product=A100)],
            FIFO,
            [("a", "Refuse")],
            id="unknown-product-node-is-refused",
        ),
        pytest.param(
            [busy("n1", 8), busy("n2", 8)],
            [job("gpu", 8, 1), job("lint", 0, 2)],
            FIFO,
            [("gpu", "Wait"), ("lint", "Refuse")],
            id="cpu-job-does-not-tolerate-gpu-taint",
        ),
    ],
)
def test_admission_table(
    pods: list[PodFacts], jobs: list[WaitingJob], rules: PoolRules, expected: list[tuple[str, str]]
) -> None:
    plan = admit(jobs, TWO_BY_EIGHT, pods, {"p": rules}, now=100.0)
    assert summary(plan.decisions) == expected
    assert set(plan.reasons()) == {j.key for j in jobs}


def test_products_do_not_block_each_other() -> None:
    nodes = [node("h", 8, H100), node("a", 8, A100)]
    pods = [busy("h", 8)]
    jobs = [
        job("h100-job", 2, 1, product=H100),
        job("a100-job", 2, 2, product=A100),
        job("any", 2, 3, product=None),
    ]
    plan = admit(jobs, nodes, pods, {}, now=0)
    # "any" names no product: the A100 node, which the waiting H100 job cannot use, is not held.
    assert summary(plan.decisions) == [("h100-job", "Wait"), ("a100-job", "Place:a"), ("any", "Place:a")]


def test_any_product_job_uses_a_node_not_held() -> None:
    nodes = [node("h", 8, H100), node("a", 8, A100)]
    plan = admit(
        [job("h100-job", 8, 1, product=H100), job("any", 2, 2, product=None)], nodes, [busy("h", 4)], {}, 0
    )
    assert summary(plan.decisions) == [("h100-job", "Wait"), ("any", "Place:a")]


def test_reason_strings() -> None:
    pods = [busy("n1", 8), busy("n2", 8)]
    plan = admit([job("a", 2, 1), job("b", 1, 2)], TWO_BY_EIGHT, pods, {}, 0)
    reasons = plan.reasons()
    assert reasons["a"] == f"waiting for 2 × {GPU} ({H100}): 0 of 16 free"  # noqa: RUF001
    assert reasons["b"] == f"waiting for 1 × {GPU} ({H100}): 0 of 16 free"  # noqa: RUF001


def test_reason_names_fragmentation() -> None:
    plan = admit([job("a", 4)], TWO_BY_EIGHT, [busy("n1", 5), busy("n2", 5)], {}, 0)
    assert plan.reasons()["a"] == f"waiting for 4 × {GPU} ({H100}): 6 of 16 free, at most 3 on one node"  # noqa: RUF001


def test_reason_names_the_job_holding_the_nodes() -> None:
    plan = admit([job("big", 8, 1), job("small", 1, 2)], TWO_BY_EIGHT, [busy("n1", 4), busy("n2", 4)], {}, 0)
    small = plan.decisions[1]
    assert isinstance(small, Wait)
    assert small.behind == "big"
    assert "held for big, queued earlier (8 × nvidia.com/gpu" in small.reason  # noqa: RUF001
    assert "first in, first out" in small.reason


def test_reason_for_cpu_and_memory() -> None:
    nodes = [cpu_node("c1", cpu=4)]
    pods = [PodFacts("x", {"cpu": D(3), "memory": D(60 * 2**30)}, node="c1")]
    cpu_job = WaitingJob("cpu", "p", 0, {"cpu": D(2)})
    mem_job = WaitingJob("mem", "p", 1, {"cpu": D(1), "memory": D(8 * 2**30)})
    plan = admit([cpu_job, mem_job], nodes, pods, {"p": BACKFILL}, 0)
    assert plan.reasons() == {
        "cpu": "waiting for 2 cpu: 1 of 4 free",
        "mem": "waiting for 8Gi memory: 4Gi of 64Gi free",
    }


def test_refusal_and_pending_reasons() -> None:
    plan = admit([job("huge", 16)], TWO_BY_EIGHT, [], {}, 0)
    assert plan.reasons()["huge"] == f"asks for 16 × {GPU} ({H100}); the largest matching node has 8"  # noqa: RUF001
    plan = admit([job("x", 1, product=A100)], TWO_BY_EIGHT, [], {}, 0)
    assert plan.reasons()["x"] == f"no node matches 1 × {GPU} ({A100}) (node selector and taints)"  # noqa: RUF001
    plan = admit([job("p1", 16)], TWO_BY_EIGHT, [], {"p": PoolRules(max_pending=2)}, 0)
    assert plan.reasons()["p1"].endswith("; may wait Pending for the node autoscaler (1 of 2)")


def test_hinted_unbound_pod_holds_its_node() -> None:
    # A pod admitted on n1 in an earlier pass, not yet bound: its GPUs are not handed out again.
    pods = [PodFacts("ours", {GPU: D(8)}, hint="n1", pool="p"), busy("n2", 8)]
    plan = admit([job("a", 1)], TWO_BY_EIGHT, pods, {"p": PoolRules(max_pending=1)}, 0)
    assert summary(plan.decisions) == [("a", "PlacePending")], "the hinted pod is not counted as Pending"
    assert isinstance(plan.decisions[0], PlacePending)


def test_cordoned_and_not_ready_nodes_take_nothing_but_are_not_refused() -> None:
    nodes = [node("n1", 8, schedulable=False)]
    plan = admit([job("a", 2)], nodes, [], {}, 0)
    assert summary(plan.decisions) == [("a", "Wait")]
    assert plan.reasons()["a"] == f"waiting for 2 × {GPU} ({H100}): 0 of 0 free"  # noqa: RUF001


def test_plan_is_deterministic_and_independent_of_input_order() -> None:
    jobs = [job(k, g, t) for k, g, t in [("a", 4, 3), ("b", 2, 1), ("c", 8, 2), ("d", 1, 1)]]
    first = admit(jobs, TWO_BY_EIGHT, [], {}, 0)
    again = admit(list(reversed(jobs)), list(reversed(TWO_BY_EIGHT)), [], {}, 0)
    assert first == again
    assert [d.job.key for d in first.decisions] == ["b", "d", "c", "a"]
    assert [d.node for d in first.decisions if isinstance(d, Place)] == ["n1", "n1", "n2", "n1"]


# --- exhaustive sweep: every mix of used GPUs and up to three waiting jobs on 2 x 8 GPUs -------

USED = (0, 3, 4, 8)
SIZES = (1, 2, 4, 8, 16)
MIXES = [
    (used, sizes, order)
    for used in itertools.product(USED, repeat=2)
    for n in (1, 2, 3)
    for sizes in itertools.product(SIZES, repeat=n)
    for order in Order
]


def _check_invariants(used: tuple[int, ...], sizes: tuple[int, ...], order: Order) -> None:
    pods = [busy(f"n{i + 1}", u) for i, u in enumerate(used) if u]
    jobs = [job(f"j{i}", size, float(i)) for i, size in enumerate(sizes)]
    plan = admit(jobs, TWO_BY_EIGHT, pods, {"p": PoolRules(order)}, now=0)
    free = {f"n{i + 1}": 8 - u for i, u in enumerate(used)}
    assert [d.job.key for d in plan.decisions] == [j.key for j in jobs], "oldest first, one decision each"
    held: set[str] = set()
    for d, size in zip(plan.decisions, sizes, strict=True):
        if isinstance(d, Place):
            assert d.node not in held, "a later job took a node held for an earlier one"
            assert free[d.node] >= size, "placed on a node without room"
            free[d.node] -= size
        elif isinstance(d, Refuse):
            assert size > 8
        else:
            assert isinstance(d, Wait), "no Pending pods without an allowance"
            assert size <= 8
            assert all(f < size for n, f in free.items() if n not in held), "waits although a free node fits"
            if order is Order.FIFO:
                held |= set(free)
        assert d.reason
    assert all(f >= 0 for f in free.values())


def test_exhaustive_mixes() -> None:
    assert len(MIXES) == 16 * (5 + 25 + 125) * 2
    for used, sizes, order in MIXES:
        _check_invariants(used, sizes, order)


# --- facts from Kubernetes objects --------------------------------------------------------------


def test_pod_requests() -> None:
    spec = {
        "containers": [
            {"resources": {"limits": {GPU: 2, "memory": "1Gi"}, "requests": {"cpu": "500m"}}},
            {"resources": {"requests": {"cpu": "1", "memory": "1Gi"}}},
            {},
        ],
        "initContainers": [
            {"resources": {"requests": {"cpu": "4"}}},
            {"resources": {"limits": {"memory": "1Mi"}}},
        ],
        "overhead": {"cpu": "100m"},
    }
    assert pod_requests(spec) == {GPU: D(2), "memory": D(2 * 2**30), "cpu": D("4.1"), "pods": D(1)}


def test_node_facts() -> None:
    raw = {
        "metadata": {"name": "gpu-1", "labels": {PRODUCT_LABEL: H100}},
        "spec": {"taints": [{"key": GPU, "effect": "NoSchedule"}]},
        "status": {
            "allocatable": {GPU: "8", "cpu": "63500m", "memory": "500Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }
    facts = node_facts(raw)
    assert facts == NodeFacts(
        "gpu-1",
        {GPU: D(8), "cpu": D("63.5"), "memory": D(500 * 2**30), "pods": D(110)},
        {PRODUCT_LABEL: H100},
        (Taint(GPU, "", "NoSchedule"),),
        True,
    )
    assert not node_facts({**raw, "spec": {"unschedulable": True}}).schedulable
    assert not node_facts(
        {**raw, "status": {"conditions": [{"type": "Ready", "status": "False"}]}}
    ).schedulable


@pytest.mark.parametrize(
    ("taint", "schedulable"),
    [
        ({"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}, False),  # cordoned
        ({"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"}, False),
        ({"key": "node.kubernetes.io/memory-pressure", "effect": "NoSchedule"}, False),
        (
            {
                "key": "node.cloudprovider.kubernetes.io/uninitialized",
                "value": "true",
                "effect": "NoSchedule",
            },
            False,
        ),
        ({"key": "node.kubernetes.io/network-unavailable", "effect": "PreferNoSchedule"}, True),
    ],
    ids=["cordoned", "not-ready", "memory-pressure", "uninitialized", "soft"],
)
def test_a_transient_taint_means_not_now_not_never(taint: dict[str, str], schedulable: bool) -> None:
    """A job whose only node is cordoned (or recovering) waits for it; it is not refused."""
    raw = {
        "metadata": {"name": "gpu-1", "labels": {PRODUCT_LABEL: H100}},
        "spec": {"taints": [{"key": GPU, "effect": "NoSchedule"}, taint]},
        "status": {
            "allocatable": {GPU: "8", "cpu": "96", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }
    facts = node_facts(raw)
    assert facts.taints == (Taint(GPU, "", "NoSchedule"),)
    assert facts.schedulable is schedulable
    (decision,) = admit([job("j", 2)], [facts], [], {"p": FIFO}, 0.0).decisions
    assert isinstance(decision, Place if schedulable else Wait), decision


@pytest.mark.parametrize(
    ("toleration", "ok"),
    [
        ({"key": GPU, "operator": "Exists"}, True),
        ({"key": GPU, "operator": "Exists", "effect": "NoSchedule"}, True),
        ({"key": GPU, "operator": "Exists", "effect": "NoExecute"}, False),
        ({"key": GPU, "operator": "Equal", "value": "present"}, True),
        ({"key": GPU, "value": "other"}, False),
        ({"operator": "Exists"}, True),
        ({"operator": "Equal"}, False),
        ({"key": "other", "operator": "Exists"}, False),
    ],
)
def test_tolerated(toleration: dict[str, str], ok: bool) -> None:
    assert tolerated(Taint(GPU, "present", "NoSchedule"), [toleration]) is ok


def test_matches_ignores_soft_taints() -> None:
    soft = NodeFacts("n", {"cpu": D(1)}, taints=(Taint("x", "", "PreferNoSchedule"),))
    assert matches(soft, WaitingJob("j", "p", 0, {"cpu": D(1)}))


def test_fits_and_free_capacity() -> None:
    free = free_capacity(TWO_BY_EIGHT, [busy("n1", 3), PodFacts("gone", {GPU: D(1)}, node="elsewhere")])
    assert free["n1"][GPU] == 5
    assert free["n2"][GPU] == 8
    assert fits({"cpu": D(1)}, {"cpu": D(1), "pods": D(1)}), (
        "a node that lists no pods slots is not short of them"
    )
    assert not fits({"cpu": D(1), "pods": D(0)}, {"cpu": D(1), "pods": D(1)})


def test_describe() -> None:
    assert describe(job("a", 2)) == f"2 × {GPU} ({H100})"  # noqa: RUF001
    assert describe(WaitingJob("c", "p", 0, {"cpu": D("0.5"), "pods": D(1)})) == "0.5 cpu"
