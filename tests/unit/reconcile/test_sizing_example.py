"""The worked example of docs/gpu-sizing.md, end to end through the pure modules."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from runnerd.manifests.pod import build_runner_pod
from runnerd.manifests.sizedpod import sized_runner_spec
from runnerd.reconcile.admission import (
    NodeFacts,
    Order,
    Place,
    PodFacts,
    PoolRules,
    Taint,
    WaitingJob,
    admit,
    pod_requests,
)
from runnerd.reconcile.cost import HOUR, Ledger, PriceTable, RunnerFacts, accrue, report
from runnerd.reconcile.sizing import Rejected, SizeRequest, parse_size
from tests.unit.manifests.podkit import ARTICLE_DIND, JIT, OPTIONS, spec
from tests.unit.reconcile.sizingkit import H100, POOL, PRODUCT_LABEL

GPU = "nvidia.com/gpu"
DOC = "docs/gpu-sizing.md"
NODES = [
    NodeFacts(
        n,
        {GPU: Decimal(8), "cpu": Decimal(64), "memory": Decimal(2**40)},
        {PRODUCT_LABEL: H100},
        (Taint(GPU),),
    )
    for n in ("n1", "n2")
]
USED = [PodFacts("other", {GPU: Decimal(6)}, node="n1")]


def waiting(key: str, labels: list[str], t: float) -> WaitingJob:
    size = parse_size(labels, POOL)
    assert isinstance(size, SizeRequest), size
    pod = build_runner_pod(key, "ns", sized_runner_spec(spec(ARTICLE_DIND), labels, size, POOL), JIT, OPTIONS)
    return WaitingJob(
        key,
        "gpu-runners",
        t,
        pod_requests(pod["spec"]),
        pod["spec"].get("nodeSelector", {}),
        tuple(pod["spec"].get("tolerations", [])),
    )


def test_worked_example() -> None:
    doc = Path(DOC).read_text(encoding="utf-8")
    train = waiting("train", ["self-hosted", "gpu=4", "gpu-type=h100", "cpu=16", "mem=128Gi"], 0)
    assert train.requests[GPU] == 4
    assert train.node_selector == {PRODUCT_LABEL: H100}
    evaluate = waiting("eval", ["self-hosted", "gpu=8"], 60)
    third = waiting("third", ["self-hosted", "gpu=2"], 120)

    fifo = admit([train, evaluate, third], NODES, USED, {"gpu-runners": PoolRules(Order.FIFO)}, 130)
    decisions = {d.job.key: d for d in fifo.decisions}
    assert isinstance(decisions["train"], Place)
    assert decisions["train"].node == "n2"
    reason = decisions["eval"].reason
    assert reason == "waiting for 8 × nvidia.com/gpu: 6 of 16 free"  # noqa: RUF001
    assert f"`{reason}`" in doc
    held = "waiting for 2 × nvidia.com/gpu: the nodes with room are held for eval"  # noqa: RUF001
    assert decisions["third"].reason.startswith(held)

    backfill = admit([train, evaluate, third], NODES, USED, {"gpu-runners": PoolRules(Order.BACKFILL)}, 130)
    assert [type(d).__name__ for d in backfill.decisions] == ["Place", "Wait", "Place"]

    refused = parse_size(["self-hosted", "gpu=16"], POOL)
    assert isinstance(refused, Rejected)
    assert f"`{refused.reason}`" in doc

    facts = RunnerFacts(
        "train", "octo/ml", "train", "gpu-runners", 0, HOUR // 2, Decimal(16), Decimal(4), H100
    )
    prices = PriceTable(cpu_hour=Decimal("0.04"), gpu_hour={H100: Decimal("3.00")})
    (row,) = report(accrue(Ledger(), [facts], HOUR), prices)
    assert (row.usage.runner_hours, row.usage.cpu_seconds / HOUR, row.usage.gpu_hours) == (
        Decimal("0.5"),
        8,
        2,
    )
    assert row.money == Decimal("6.32")
    assert "that is 6.32" in doc
