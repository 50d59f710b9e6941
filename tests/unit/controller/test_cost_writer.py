"""The cost ledger writer: conditional writes of the ledger ConfigMap, folded again from a fresh read
on a conflict, so two writers (an old and a new leader) or a restart never count a second twice;
an unreadable ledger is never overwritten; ``run`` writes on a poke."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Collection, Sequence
from decimal import Decimal

import pytest

from runnerd.controller.cost import CostLedgerWriter, LedgerUnreadable, WriteConflicts
from runnerd.reconcile.cost import (
    LEDGER_CONFIGMAP,
    LEDGER_KEY,
    Ledger,
    PriceTable,
    RunnerFacts,
    Usage,
    fold,
    read_ledger_configmap,
)
from runnerd.runtime import Conflict, Obj
from tests.unit.controller.fakes import FakeConfigMaps

D = Decimal
T0 = 1_796_000_400
H100 = "NVIDIA-H100-80GB-HBM3"
PRICES = PriceTable(cpu_hour=D("0.04"), gpu_hour={H100: D(3)})
FACTS = [
    RunnerFacts("a", "octo/ml", "train", "gpu", T0, T0 + 1800, D(16), D(4), H100),
    RunnerFacts("b", "octo/ml", "eval", "gpu", T0 + 600, None, D(2), D(1), H100),
]
LIVE = {"a", "b"}


def writer(store: FakeConfigMaps, now: int) -> CostLedgerWriter:
    return CostLedgerWriter(store, "arc", PRICES, clock=lambda: float(now))


def total(ledger: Ledger) -> Usage:
    return sum(ledger.buckets.values(), Usage())


async def test_creates_then_updates_with_a_precondition() -> None:
    store = FakeConfigMaps()
    first = await writer(store, T0 + 1200).write(FACTS, LIVE)
    assert store.objects[LEDGER_CONFIGMAP]["metadata"]["resourceVersion"] == "1"
    second = await writer(store, T0 + 2400).write(FACTS, LIVE)
    assert store.ledger() == second == fold(first, FACTS, LIVE, T0 + 2400)
    assert read_ledger_configmap(store.objects[LEDGER_CONFIGMAP])[1] == PRICES
    assert total(second).runner_seconds == 1800 + 1800


@pytest.mark.parametrize("first_write", [False, True], ids=["racing-create", "racing-update"])
async def test_two_leaders_racing_count_once(first_write: bool) -> None:
    store = FakeConfigMaps()
    if first_write:
        await writer(store, T0 + 600).write(FACTS, LIVE)
    old, new = writer(store, T0 + 2400), writer(store, T0 + 2400)

    async def other_leader_writes() -> None:
        await new.write(FACTS, LIVE)

    store.before_write = other_leader_writes
    await old.write(FACTS, LIVE)  # loses its write once, folds again from the new leader's ledger
    expected = fold(Ledger(), FACTS, LIVE, T0 + 2400)
    assert total(store.ledger()) == total(expected)
    assert store.writes == (3 if first_write else 2)


async def test_restart_replays_nothing_twice() -> None:
    store = FakeConfigMaps()
    for now in (T0 + 600, T0 + 1200, T0 + 2400):
        await writer(store, now).write(FACTS, LIVE)  # a new process every time
        await writer(store, now).write(FACTS, LIVE)  # and the same facts again
    assert total(store.ledger()) == total(fold(Ledger(), FACTS, LIVE, T0 + 2400))


async def test_unreadable_ledger_is_not_overwritten() -> None:
    store = FakeConfigMaps()
    store.objects[LEDGER_CONFIGMAP] = {
        "metadata": {"name": LEDGER_CONFIGMAP, "resourceVersion": "7"},
        "binaryData": {LEDGER_KEY: "garbage"},
    }
    before = copy.deepcopy(store.objects)
    with pytest.raises(LedgerUnreadable, match="arc/runnerd-cost-ledger: malformed cost ledger"):
        await writer(store, T0).write(FACTS, LIVE)
    assert store.objects == before


async def test_gives_up_after_conflicts_in_a_row() -> None:
    store = FakeConfigMaps()
    await writer(store, T0).write(FACTS, LIVE)
    w = writer(store, T0 + 60)
    w.attempts = 3

    async def always_conflict(body: Obj) -> Obj:
        raise Conflict("modified")

    store.replace = always_conflict  # type: ignore[method-assign]
    with pytest.raises(WriteConflicts, match="3 conflicting writes"):
        await w.write(FACTS, LIVE)


async def test_run_writes_at_start_and_on_poke() -> None:
    store = FakeConfigMaps()
    w = writer(store, T0 + 1200)
    facts: list[RunnerFacts] = [FACTS[1]]

    def source() -> tuple[Sequence[RunnerFacts], Collection[str]]:
        return list(facts), LIVE

    task = asyncio.create_task(w.run(source, interval_s=3600))
    try:
        await asyncio.wait_for(store.written.wait(), timeout=10)
        store.written.clear()
        assert set(store.ledger().counted_until) == {"b"}
        facts.append(FACTS[0])
        w.poke()
        await asyncio.wait_for(store.written.wait(), timeout=10)
        assert set(store.ledger().finished) == {"a"}
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_run_survives_an_unreadable_ledger(caplog: pytest.LogCaptureFixture) -> None:
    store = FakeConfigMaps()
    store.objects[LEDGER_CONFIGMAP] = {"metadata": {"name": LEDGER_CONFIGMAP, "resourceVersion": "1"}}
    store.objects[LEDGER_CONFIGMAP]["binaryData"] = {LEDGER_KEY: "garbage"}
    w = writer(store, T0)
    passes = [asyncio.Event(), asyncio.Event()]
    calls = 0

    def source() -> tuple[Sequence[RunnerFacts], Collection[str]]:
        nonlocal calls
        calls += 1
        if calls <= len(passes):
            passes[calls - 1].set()
        return FACTS, LIVE

    task = asyncio.create_task(w.run(source, interval_s=3600))
    try:
        await asyncio.wait_for(passes[0].wait(), timeout=10)
        w.poke()  # the writer is still alive after the failed pass
        await asyncio.wait_for(passes[1].wait(), timeout=10)
        assert "cost ledger not written" in caplog.text
        assert store.writes == 0
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
