"""Slow-start batches and their memory per parent (:mod:`runnerd.controller.slowstart`)."""

from __future__ import annotations

import asyncio

import pytest

from runnerd.controller.slowstart import MAX_BATCH, SLOW_START_MEMORY, SlowStart, create_in_batches


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Creations:
    """``create_one`` that records the size of each concurrent batch; ``fail_at``: the n-th call
    (from 1) raises."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.batches: list[int] = []
        self.calls = 0
        self.fail_at = fail_at
        self._in_flight = 0

    async def __call__(self) -> None:
        self.calls += 1
        call = self.calls
        self._in_flight += 1
        if self._in_flight == 1:
            self.batches.append(0)
        self.batches[-1] = max(self.batches[-1], self._in_flight)
        await asyncio.sleep(0)
        self._in_flight -= 1
        if call == self.fail_at:
            raise RuntimeError("refused")


@pytest.mark.parametrize(
    ("count", "first", "batches", "next_batch"),
    [
        (0, 1, [], 1),
        (1, 1, [1], 2),
        (16, 1, [1, 2, 4, 8, 1], 32),
        (16, 16, [16], 32),
        (200, 1, [1, 2, 4, 8, 16, 32, 64, 64, 9], MAX_BATCH),
        (100, 64, [64, 36], MAX_BATCH),
        (5, 500, [5], MAX_BATCH),
        (3, 0, [1, 2], 4),
    ],
)
async def test_batches_from_the_first_size(
    count: int, first: int, batches: list[int], next_batch: int
) -> None:
    creations = Creations()
    assert await create_in_batches(count, creations, first=first) == next_batch
    assert creations.batches == batches


# (rounds: each a count and what happens before it) -> the batches of each round
@pytest.mark.parametrize(
    ("rounds", "batches"),
    [
        pytest.param(
            [(16, "ok"), (16, "ok"), (40, "ok")],
            [[1, 2, 4, 8, 1], [16], [40]],
            id="a growing burst reaches full batches sooner",
        ),
        pytest.param(
            [(16, "ok"), (16, "pause")],
            [[1, 2, 4, 8, 1], [1, 2, 4, 8, 1]],
            id="after a pause it starts over at 1",
        ),
        pytest.param(
            [(16, "ok"), (8, "fail 3"), (8, "ok")],
            [[1, 2, 4, 8, 1], [8], [1, 2, 4, 1]],
            id="a failure starts the next round over at 1",
        ),
    ],
)
async def test_each_round_starts_where_the_last_successful_one_left_off(
    rounds: list[tuple[int, str]], batches: list[list[int]]
) -> None:
    clock = Clock()
    slow = SlowStart(clock=clock)
    seen: list[list[int]] = []
    for count, what in rounds:
        if what == "pause":
            clock.now += SLOW_START_MEMORY + 1
        creations = Creations(fail_at=int(what.split()[1]) if what.startswith("fail") else None)
        try:
            await slow.create("rs", count, creations)
        except RuntimeError:
            assert what.startswith("fail")
        seen.append(creations.batches)
    assert seen == batches


async def test_parents_are_remembered_apart_and_forgotten() -> None:
    slow = SlowStart(clock=Clock())
    await slow.create("a", 16, Creations())
    assert (slow.first_batch("a"), slow.first_batch("b")) == (32, 1)
    slow.forget("a")
    assert slow.first_batch("a") == 1


async def test_a_cancelled_round_starts_over_at_one() -> None:
    slow = SlowStart(clock=Clock())
    await slow.create("rs", 16, Creations())
    gate = asyncio.Event()

    async def stuck() -> None:
        await gate.wait()

    task = asyncio.create_task(slow.create("rs", 4, stuck))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert slow.first_batch("rs") == 1
