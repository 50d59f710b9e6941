from __future__ import annotations

import asyncio

import pytest

from runnerd.runtime.workqueue import RateLimiter, ShutDown, TokenBucket, WorkQueue, exponential_delay
from tests.unit.runtime.fakes import eventually, now


@pytest.mark.parametrize(
    ("attempt", "base", "cap", "expected"),
    [
        (0, 0.005, 1000, 0.005),
        (1, 0.005, 1000, 0.01),
        (10, 0.005, 1000, 5.12),
        (20, 0.005, 1000, 1000),
        (500, 1, 60, 60),
    ],
)
def test_exponential_delay(attempt: int, base: float, cap: float, expected: float) -> None:
    assert exponential_delay(attempt, base, cap) == pytest.approx(expected)


def test_exponential_delay_jitter_only_adds() -> None:
    delays = {exponential_delay(3, 1.0, 100.0, jitter=0.5) for _ in range(50)}
    assert all(8.0 <= d <= 12.0 for d in delays)
    assert len(delays) > 1


@pytest.mark.parametrize(
    ("qps", "burst", "times", "expected"),
    [
        # a burst is free, then tokens come 1/qps apart (and reservations queue up behind each other)
        (10.0, 2, [0, 0, 0, 0], [0, 0, 0.1, 0.2]),
        # time refills the bucket, but never beyond the burst
        (10.0, 2, [0, 0, 10, 10, 10], [0, 0, 0, 0, 0.1]),
        (1.0, 1, [0, 0.5, 0.5], [0, 0.5, 1.5]),
    ],
)
def test_token_bucket(qps: float, burst: int, times: list[float], expected: list[float]) -> None:
    bucket = TokenBucket(qps, burst)
    assert [bucket.reserve(t) for t in times] == pytest.approx(expected)


def test_rate_limiter_backs_off_per_key_and_forgets() -> None:
    limiter: RateLimiter[str] = RateLimiter(base=1.0, max=8.0)
    assert [limiter.when("a", 0) for _ in range(5)] == [1, 2, 4, 8, 8]
    assert limiter.when("b", 0) == 1
    assert limiter.failures("a") == 5
    limiter.forget("a")
    assert limiter.failures("a") == 0
    assert limiter.when("a", 0) == 1


def test_rate_limiter_takes_the_longer_of_backoff_and_bucket() -> None:
    limiter: RateLimiter[str] = RateLimiter(base=0.001, max=1.0, bucket=TokenBucket(1.0, 1))
    assert limiter.when("a", 0) == pytest.approx(0.001)
    assert limiter.when("b", 0) == pytest.approx(1.0)  # bucket empty
    assert limiter.when("c", 0) == pytest.approx(2.0)


@pytest.mark.parametrize(
    ("bad", "kwargs"),
    [
        (TokenBucket, {"qps": 0, "burst": 1}),
        (TokenBucket, {"qps": 1, "burst": 0}),
        (RateLimiter, {"base": 0}),
        (RateLimiter, {"base": 2.0, "max": 1.0}),
    ],
)
def test_invalid_limits_are_rejected(bad: type, kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011
        bad(**kwargs)


async def test_adds_are_deduplicated_and_fifo() -> None:
    queue: WorkQueue[str] = WorkQueue()
    for key in ["a", "b", "a", "c", "b"]:
        queue.add(key)
    assert len(queue) == 3
    assert [await queue.get() for _ in range(3)] == ["a", "b", "c"]


async def test_add_while_processing_is_coalesced_and_processed_once_after() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("a")
    key = await queue.get()
    for _ in range(3):
        queue.add("a")
    assert len(queue) == 0, "a key being processed is not handed out again"
    assert queue.processing == {"a"}
    queue.done(key)
    assert len(queue) == 1
    assert await queue.get() == "a"
    queue.done("a")
    assert len(queue) == 0


async def test_done_without_readd_does_not_requeue() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("a")
    queue.done(await queue.get())
    assert len(queue) == 0
    assert queue.processing == frozenset()


async def test_one_key_never_processed_concurrently() -> None:
    queue: WorkQueue[str] = WorkQueue()
    active: set[str] = set()
    overlaps: list[str] = []
    processed: list[str] = []

    async def worker() -> None:
        while True:
            try:
                key = await queue.get()
            except ShutDown:
                return
            if key in active:
                overlaps.append(key)
            active.add(key)
            await asyncio.sleep(0.01)
            if len(processed) < 6:
                queue.add(key)  # re-added while being processed
            processed.append(key)
            active.discard(key)
            queue.done(key)

    workers = [asyncio.create_task(worker()) for _ in range(4)]
    queue.add("a")
    queue.add("b")
    await eventually(lambda: len(processed) >= 8 and len(queue) == 0 and not queue.processing)
    queue.shutdown()
    await asyncio.gather(*workers)
    assert overlaps == []
    assert set(processed) == {"a", "b"}


async def test_add_after_delays_and_keeps_the_earliest() -> None:
    queue: WorkQueue[str] = WorkQueue()
    start = now()
    queue.add_after("a", 10)
    queue.add_after("a", 5)
    queue.add_after("a", 20)  # later than the pending one: ignored
    assert queue.waiting == {"a"}
    assert len(queue) == 0
    assert await queue.get() == "a"
    assert now() - start == pytest.approx(5)
    assert queue.waiting == frozenset()
    queue.done("a")
    await asyncio.sleep(30)
    assert len(queue) == 0, "the replaced timers do not fire"


async def test_add_coalesced_bursts_are_one_pass_within_the_window() -> None:
    queue: WorkQueue[str] = WorkQueue()
    start = now()
    queue.add_coalesced("a", 2)
    queue.add_coalesced("a", 5)  # later: the pending one serves it
    await asyncio.sleep(1)
    queue.add_coalesced("a", 2)  # due at 3: the pending one, at 2, is earlier
    queue.add_coalesced("a", 0.5)  # due at 1.5: earlier, replaces it
    assert queue.waiting == {"a"}
    assert len(queue) == 0
    assert await queue.get() == "a"
    assert now() - start == pytest.approx(1.5)
    queue.done("a")
    await asyncio.sleep(30)
    assert len(queue) == 0, "the replaced timers do not fire"
    assert queue.waiting == frozenset()


async def test_add_coalesced_is_served_by_a_pass_not_yet_started() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("a")
    queue.add_coalesced("a", 2)  # queued: that pass reads the state after this add
    assert queue.waiting == frozenset()
    queue.add_coalesced("b", 2)
    queue.add("b")  # handed out at once: the waiting add is dropped when it is
    assert [await queue.get(), await queue.get()] == ["a", "b"]
    assert queue.waiting == frozenset()
    queue.done("a")
    queue.done("b")
    await asyncio.sleep(30)
    assert len(queue) == 0


async def test_add_coalesced_while_processing_waits_then_passes_again() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("a")
    assert await queue.get() == "a"
    start = now()
    queue.add_coalesced("a", 2)  # the running pass may have read the state before this add
    queue.done("a")
    assert len(queue) == 0
    assert await queue.get() == "a"
    assert now() - start == pytest.approx(2)
    queue.done("a")
    queue.add_coalesced("a", 0)  # no window: at once
    assert len(queue) == 1


async def test_add_after_non_positive_delay_adds_now() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add_after("a", 0)
    queue.add_after("b", -1)
    assert len(queue) == 2


async def test_add_rate_limited_uses_the_keys_backoff() -> None:
    queue: WorkQueue[str] = WorkQueue(RateLimiter(base=1.0, max=4.0))
    delays = []
    for _ in range(4):
        start = now()
        queue.add_rate_limited("a")
        key = await queue.get()
        delays.append(now() - start)
        queue.done(key)
    assert delays == pytest.approx([1, 2, 4, 4])
    queue.forget("a")
    start = now()
    queue.add_rate_limited("a")
    await queue.get()
    assert now() - start == pytest.approx(1)


async def test_shutdown_wakes_getters_drops_work_and_ignores_adds() -> None:
    queue: WorkQueue[str] = WorkQueue()
    getter = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    queue.add_after("later", 5)
    queue.add_coalesced("soon", 1)
    queue.shutdown()
    with pytest.raises(ShutDown):
        await getter
    queue.add("a")
    queue.add_after("b", 1)
    queue.add_rate_limited("c")
    queue.add_coalesced("d", 1)
    assert len(queue) == 0
    assert queue.waiting == frozenset()
    with pytest.raises(ShutDown):
        await queue.get()


async def test_shutdown_stops_handing_out_queued_keys_but_accepts_done() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("a")
    queue.add("b")
    key = await queue.get()
    queue.shutdown()
    with pytest.raises(ShutDown):
        await queue.get()
    queue.done(key)
    assert queue.processing == frozenset()


async def test_cancelled_getter_passes_its_wakeup_on() -> None:
    queue: WorkQueue[str] = WorkQueue()
    first = asyncio.create_task(queue.get())
    second = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    queue.add("a")  # wakes `first`...
    first.cancel()  # ...which is cancelled before it runs
    assert await second == "a"
    with pytest.raises(asyncio.CancelledError):
        await first
