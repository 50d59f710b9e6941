"""The rate-limit gate, the token slot and the ETag cache, without a network."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest

from runnerd.github.budget import CallStats, RateLimitGate, RateLimitState
from runnerd.github.cache import CachedResponse, EtagCache, TokenSlot
from runnerd.github.errors import RateLimitWaitExceeded
from runnerd.github.sansio import RateLimit
from tests.unit.github.fakes import FakeTime

pytestmark = pytest.mark.timeout(10)

T0 = 1_800_000_000.0


def _gate(time: FakeTime, stats: CallStats | None = None) -> RateLimitGate:
    return RateLimitGate(clock=time.clock, sleep=time.sleep, draw=lambda: 0.5, jitter_s=2.0, stats=stats)


async def test_open_gate_admits_without_waiting() -> None:
    time = FakeTime(T0)
    gate = _gate(time)
    async with gate.admit((), max_wait_s=0):
        pass
    assert time.sleeps == []
    assert gate.paused_until() is None


async def test_closed_gate_waits_until_resume_plus_jitter() -> None:
    time = FakeTime(T0)
    stats = CallStats()
    gate = _gate(time, stats)
    gate.close("core", T0 + 10)
    gate.close("core", T0 + 5)  # never shortens a pause
    assert gate.paused_until(("core",)) == T0 + 10
    assert gate.paused_until() is None  # other buckets are not paused
    async with gate.admit(("core",), max_wait_s=30):
        assert time.now == T0 + 10 + 1.0  # resume plus jitter (0.5 of 2 s)
    assert time.sleeps == [11.0]
    assert stats.snapshot().gate_waits == 1
    assert stats.snapshot().gate_wait_seconds == 11.0
    assert gate.snapshot() == {}


async def test_wait_longer_than_max_raises_at_once() -> None:
    time = FakeTime(T0)
    stats = CallStats()
    gate = _gate(time, stats)
    gate.close("*", T0 + 3600)
    with pytest.raises(RateLimitWaitExceeded) as excinfo:
        async with gate.admit(("core",), max_wait_s=60):
            pytest.fail("admitted")
    assert excinfo.value.resume_at == T0 + 3600
    assert excinfo.value.resource == "*"
    assert excinfo.value.status is None
    assert excinfo.value.retry_after(T0) == 3600
    assert time.sleeps == []
    assert stats.snapshot().gate_rejections == 1


async def test_first_call_after_a_pause_probes_alone() -> None:
    time = FakeTime(T0)
    gate = _gate(time)
    gate.close("*", T0 + 1)
    time.advance(2)  # the pause is over, but nobody has probed yet
    order: list[str] = []
    probe_may_finish = asyncio.Event()

    async def call(name: str, *, hold: asyncio.Event | None = None) -> None:
        async with gate.admit((), max_wait_s=10):
            order.append(f"start {name}")
            if hold is not None:
                await hold.wait()
            order.append(f"end {name}")

    probe = asyncio.create_task(call("probe", hold=probe_may_finish))
    while not order:  # noqa: ASYNC110 - wait for the probe to be inside
        await asyncio.sleep(0)
    followers = [asyncio.create_task(call(f"f{i}")) for i in range(3)]
    for _ in range(5):
        await asyncio.sleep(0)
    assert order == ["start probe"]  # the followers queue behind the probe
    probe_may_finish.set()
    await asyncio.gather(probe, *followers)
    assert order[:2] == ["start probe", "end probe"]
    assert sorted(order[2:]) == sorted([f"start f{i}" for i in range(3)] + [f"end f{i}" for i in range(3)])


async def test_probe_limited_again_keeps_followers_waiting() -> None:
    time = FakeTime(T0)
    gate = _gate(time)
    gate.close("core", T0 + 1)
    time.advance(2)
    inside = asyncio.Event()
    release = asyncio.Event()

    async def probe() -> None:
        async with gate.admit(("core",), max_wait_s=10):
            inside.set()
            await release.wait()
            gate.close("core", time.now + 1000)  # limited again

    task = asyncio.create_task(probe())
    await inside.wait()

    async def follower() -> None:
        async with gate.admit(("core",), max_wait_s=10):
            pytest.fail("admitted")

    follower_task = asyncio.create_task(follower())
    release.set()
    await task
    with pytest.raises(RateLimitWaitExceeded):
        await follower_task


def test_rate_limit_state_and_stats_snapshots() -> None:
    state = RateLimitState()
    state.update(RateLimit("core", 5000, 10, 4990, T0, T0))
    state.update(RateLimit("core", 5000, 9, 4991, T0, T0 + 1))
    state.update(RateLimit("search", 30, 30, 0, T0, T0))
    snap = state.snapshot()
    assert snap["core"].remaining == 9
    assert set(snap) == {"core", "search"}
    assert state.get("graphql") is None
    state.update(RateLimit("graphql", 1, 1, 0, T0, T0))
    assert "graphql" not in snap  # snapshots do not change afterwards

    stats = CallStats()
    stats.record_call("GET /x", 200)
    stats.record_call("GET /x", 200)
    stats.record_call("GET /x", "error")
    stats.record_retry("GET /x")
    before = stats.snapshot()
    stats.record_call("POST /y", 201)
    assert before.calls == {("GET /x", "200"): 2, ("GET /x", "error"): 1}
    assert before.total() == 3
    assert stats.snapshot().total("POST /y") == 1
    assert before.retries == {"GET /x": 1}


@dataclass(frozen=True)
class _Token:
    value: int
    expires_at: float


async def test_token_slot_single_flight_and_refresh() -> None:
    time = FakeTime(T0)
    fetched: list[int] = []
    gate = asyncio.Event()

    async def fetch() -> _Token:
        fetched.append(len(fetched) + 1)
        await gate.wait()
        return _Token(len(fetched), time.now + 3600)

    slot = TokenSlot(fetch, clock=time.clock, min_validity_s=300)
    tasks = [asyncio.create_task(slot.get()) for _ in range(10)]
    while not fetched:  # noqa: ASYNC110 - wait until the first caller is fetching
        await asyncio.sleep(0)
    gate.set()
    tokens = await asyncio.gather(*tasks)
    assert fetched == [1]
    assert {t.value for t in tokens} == {1}

    time.advance(3600 - 301)
    assert (await slot.get()).value == 1
    time.advance(2)  # now less than 300 s left
    assert (await slot.get()).value == 2
    assert (await slot.get(refresh=True)).value == 3
    slot.invalidate(_Token(99, 0))  # not the cached one: ignored
    assert (await slot.get()).value == 3
    slot.invalidate()
    assert (await slot.get()).value == 4


async def test_token_slot_failure_goes_to_the_caller_and_next_one_retries() -> None:
    time = FakeTime(T0)
    attempts = 0

    async def fetch() -> _Token:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise RuntimeError("boom")
        return _Token(attempts, time.now + 3600)

    slot = TokenSlot(fetch, clock=time.clock, min_validity_s=300)
    with pytest.raises(RuntimeError, match="boom"):
        await slot.get()
    assert (await slot.get()).value == 2


def test_etag_cache_lru() -> None:
    cache = EtagCache(max_entries=2)
    cache.put("a", CachedResponse('"1"', {"a": 1}, None))
    cache.put("b", CachedResponse('"2"', {"b": 2}, None))
    assert cache.get("a") is not None  # a is now the most recent
    cache.put("c", CachedResponse('"3"', {"c": 3}, None))
    assert cache.get("b") is None
    assert len(cache) == 2
    cache.discard("a")
    assert cache.get("a") is None
    disabled = EtagCache(max_entries=0)
    disabled.put("a", CachedResponse('"1"', {}, None))
    assert len(disabled) == 0
