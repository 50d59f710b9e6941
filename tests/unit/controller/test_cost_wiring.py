"""The cost ledger's wiring: the facts source over the informer caches (runner pods, their Runners,
node products, pods deleted since), the one-key controller's pass, and the cost flags."""

from __future__ import annotations

import argparse
from decimal import Decimal
from typing import Any

import pytest

from runnerd.cli_cost import add_cost_flags, cost_settings
from runnerd.controller.cost import (
    COST_KEY,
    DEPARTED_KEEP_S,
    CostController,
    CostLedgerWriter,
    CostSettings,
    RunnerPodFacts,
)
from runnerd.reconcile.cost import CardinalityLimits, Ledger, PriceTable, Usage, fold
from runnerd.runtime import EventType, InformerEvent, Key, Obj
from tests.unit.controller.conftest import InformerFactory
from tests.unit.controller.fakes import FakeConfigMaps

D = Decimal
T0 = 1_796_000_400  # 2026-11-30T01:00:00Z
START, FINISH = "2026-11-30T01:00:00Z", "2026-11-30T01:30:00Z"
H100 = "NVIDIA-H100-80GB-HBM3"
PRICES = PriceTable(cpu_hour=D("0.04"), gpu_hour={H100: D(3)})


def runner_pod(uid: str, state: dict[str, Any] | None = None, *, runner: str = "r1") -> Obj:
    return {
        "metadata": {
            "name": f"{runner}-pod",
            "namespace": "ns",
            "uid": uid,
            "labels": {"runner-deployment-name": "gpu"},
            "ownerReferences": [
                {
                    "apiVersion": "actions.summerwind.dev/v1alpha1",
                    "kind": "Runner",
                    "name": runner,
                    "controller": True,
                }
            ],
        },
        "spec": {
            "nodeName": "gpu-0",
            "containers": [
                {"name": "runner", "resources": {"requests": {"cpu": "2", "nvidia.com/gpu": "1"}}}
            ],
        },
        "status": {
            "containerStatuses": [{"name": "runner", "state": state or {"running": {"startedAt": START}}}]
        },
    }


def sized_runner(name: str = "r1") -> Obj:
    return {
        "metadata": {
            "name": name,
            "namespace": "ns",
            "annotations": {"runnerd.dev/repository": "octo/ml", "runnerd.dev/workflow": "train"},
        }
    }


FINISHED = {"terminated": {"startedAt": START, "finishedAt": FINISH}}


class Now:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def source(hand_fed_informer: InformerFactory) -> RunnerPodFacts:
    pods, runners, nodes = hand_fed_informer("pods"), hand_fed_informer("runners"), hand_fed_informer("nodes")
    runners.store.upsert(sized_runner())
    nodes.store.upsert({"metadata": {"name": "gpu-0", "labels": {"nvidia.com/gpu.product": H100}}})
    return RunnerPodFacts(pods, runners, {"nodes": nodes}, clock=Now(T0 + 600))


def test_facts_come_from_the_pod_its_runner_and_the_node(source: RunnerPodFacts) -> None:
    source.pods.store.upsert(runner_pod("u1"))
    [facts], live = source()
    assert (facts.repository, facts.workflow, facts.pool, facts.gpu_product) == (
        "octo/ml",
        "train",
        "gpu",
        H100,
    )
    assert (facts.cpu, facts.gpus, facts.started_at, facts.finished_at) == (D(2), D(1), T0, None)
    assert live == {"u1"}


@pytest.mark.parametrize(
    ("event", "poke"),
    [
        (InformerEvent(EventType.MODIFIED, runner_pod("u1", FINISHED), runner_pod("u1")), True),
        (InformerEvent(EventType.MODIFIED, runner_pod("u1", FINISHED), runner_pod("u1", FINISHED)), False),
        (InformerEvent(EventType.MODIFIED, runner_pod("u1"), runner_pod("u1")), False),
        (InformerEvent(EventType.ADDED, runner_pod("u1", FINISHED)), False),
        (InformerEvent(EventType.SYNC, runner_pod("u1", FINISHED)), False),
        (InformerEvent(EventType.DELETED, runner_pod("u1")), True),
        (InformerEvent(EventType.DELETED, runner_pod("u1", {"waiting": {}})), False),
    ],
    ids=[
        "runner-finished",
        "already-finished",
        "still-running",
        "added",
        "resync",
        "deleted",
        "never-started",
    ],
)
def test_a_pass_is_asked_for_when_a_runner_finishes_or_its_pod_goes(
    source: RunnerPodFacts, event: InformerEvent, poke: bool
) -> None:
    assert source.on_pod(event) is poke


def test_a_deleted_pods_facts_are_kept_for_the_next_passes(source: RunnerPodFacts) -> None:
    source.on_pod(InformerEvent(EventType.DELETED, runner_pod("u1", FINISHED)))
    source.on_pod(InformerEvent(EventType.DELETED, runner_pod("u2", runner="gone")))  # killed while running
    facts, live = source()
    assert live == {"u1", "u2"}  # while a copy may still be folded, the ledger remembers them
    by_uid = {f.uid: f for f in facts}
    assert by_uid["u1"].finished_at == T0 + 1800
    assert by_uid["u1"].repository == "octo/ml"
    assert by_uid["u1"].gpu_product == H100  # its node's
    assert by_uid["u2"].finished_at == T0 + 600  # when it was seen deleted
    assert by_uid["u2"].repository == "(unknown)"  # its Runner is gone too
    assert isinstance(source.clock, Now)
    source.clock.t += DEPARTED_KEEP_S
    assert source() == ([], set())


def test_a_pod_deleted_long_after_its_runner_finished_is_not_charged_again(source: RunnerPodFacts) -> None:
    """The ledger forgets a finished runner an hour after its finish once its pod is gone; a copy of
    its facts folded after that would count it again."""
    assert isinstance(source.clock, Now)
    source.pods.store.upsert(runner_pod("u1", FINISHED))
    ledger = fold(Ledger(), *source(), T0 + 600)  # charged while its finished pod lingers
    source.clock.t = T0 + 2 * 3600
    deleted = source.pods.store.delete(Key("ns", "r1-pod"))
    assert deleted is not None
    source.on_pod(InformerEvent(EventType.DELETED, deleted))
    for step in range(3):  # the passes after its deletion
        ledger = fold(ledger, *source(), int(source.clock.t))
        source.clock.t += 60
        assert sum(ledger.buckets.values(), Usage()).runner_seconds == 1800, step


def test_a_standby_keeps_no_more_than_the_last_minutes_of_deleted_pods(source: RunnerPodFacts) -> None:
    """No pass runs on a standby replica: the deletions themselves drop the old copies."""
    assert isinstance(source.clock, Now)
    for i in range(5):
        source.on_pod(InformerEvent(EventType.DELETED, runner_pod(f"u{i}")))
        source.clock.t += DEPARTED_KEEP_S / 2
    assert source.departed == 2


def test_a_pod_in_the_cache_wins_over_a_departed_copy(source: RunnerPodFacts) -> None:
    source.on_pod(InformerEvent(EventType.DELETED, runner_pod("u1")))
    source.pods.store.upsert(runner_pod("u1", FINISHED))  # (a relist brought it back)
    [facts], _ = source()
    assert facts.finished_at == T0 + 1800


async def test_the_pass_writes_and_comes_back_after_the_interval(source: RunnerPodFacts) -> None:
    source.pods.store.upsert(runner_pod("u1", FINISHED))
    store = FakeConfigMaps()
    writer = CostLedgerWriter(store, "arc", PRICES, clock=lambda: float(T0 + 3600))
    controller = CostController(writer, source, interval_s=30.0)
    assert writer.last is None
    result = await controller.reconcile(COST_KEY)
    assert result.requeue_after == 30.0
    assert writer.last == store.ledger()
    assert sum(writer.last.buckets.values(), Usage()) == Usage(D(1800), D(3600), D(1800))


async def test_a_failed_pass_is_retried_after_the_interval(source: RunnerPodFacts) -> None:
    store = FakeConfigMaps()

    async def down(namespace: str, name: str) -> Obj | None:
        raise OSError("connection refused")

    store.get = down  # type: ignore[method-assign]
    controller = CostController(CostLedgerWriter(store, "arc", PRICES), source, interval_s=30.0)
    assert (await controller.reconcile(COST_KEY)).requeue_after == 30.0
    assert controller.writer.last is None


def parse(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser(exit_on_error=False)
    add_cost_flags(p)
    return p.parse_args(argv)


def test_flags_make_the_settings() -> None:
    args = parse(
        "--cost-currency=EUR",
        "--cost-cpu-hour=0.04",
        "--cost-gpu-hour=NVIDIA-H100-80GB-HBM3=3.00",
        "--cost-gpu-hour",
        "NVIDIA-A100-SXM4-80GB=1.5",
        "--cost-default-gpu-hour=1",
        "--cost-max-repositories=10",
        "--cost-max-workflows=20",
        "--cost-max-pools=5",
        "--cost-ledger-interval=30s",
    )
    assert cost_settings(args, "arc") == CostSettings(
        "arc",
        PriceTable("EUR", D("0.04"), {H100: D("3.00"), "NVIDIA-A100-SXM4-80GB": D("1.5")}, D(1)),
        CardinalityLimits(10, 20, 5),
        30.0,
    )
    assert cost_settings(parse(), "arc") == CostSettings("arc")
    assert cost_settings(parse("--cost-ledger-interval=0"), "arc") is None


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--cost-cpu-hour=-1"], "is not a price"),
        (["--cost-cpu-hour=nan"], "is not a price"),
        (["--cost-gpu-hour=3.00"], "is not PRODUCT=PRICE"),
        (["--cost-gpu-hour==3"], "is not PRODUCT=PRICE"),
        (["--cost-gpu-hour=H100=cheap"], "is not a price"),
        (["--cost-currency=usd"], "is not an ISO 4217 code"),
        (["--cost-max-pools=0"], "is not a whole number of 1 or more"),
        (["--cost-ledger-interval=-1s"], "cannot be negative"),
        (["--cost-ledger-interval=soon"], "not a duration"),
    ],
)
def test_bad_flags_are_refused_by_name(argv: list[str], message: str) -> None:
    with pytest.raises(argparse.ArgumentError, match=message):
        parse(*argv)
