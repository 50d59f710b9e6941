"""The client's view of its GitHub budget: rate-limit buckets, the shared pause gate, call counters.

* :class:`RateLimitState`: the latest ``x-ratelimit-*`` reading per resource (``core``,
  ``actions_runner_registration``, ...), for metrics and for the autoscaler to see its headroom.
* :class:`RateLimitGate`: once GitHub says "stop" (a 403/429 rate limit, or a response that spent the
  last call of a bucket), every later call of the client waits here until the limit lifts -- one gate,
  shared, instead of each caller retrying on its own. When the pause ends, one call goes first as a
  probe and the rest follow only if it was not limited again: no thundering herd at the reset.
  A call that would wait longer than the client's max wait raises :class:`RateLimitWaitExceeded`
  at once, so a controller can requeue instead of blocking a worker.
* :class:`CallStats`: counts of calls by endpoint template and status, for the metrics layer.
* :class:`CallWindow`: calls spent in the last hour (sliding window): the one budget that the
  autoscaling metric, the safety-net poll and the runner listings spend from (304s counted too).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import Counter, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from types import MappingProxyType

from runnerd.github.errors import RateLimitWaitExceeded
from runnerd.github.sansio import RateLimit

log = logging.getLogger(__name__)

WINDOW = 3600.0
ALL = "*"  # the gate key that every call passes (secondary rate limits)

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]
Draw = Callable[[], float]


class RateLimitState:
    """The latest reading of each rate-limit bucket."""

    def __init__(self) -> None:
        self._buckets: dict[str, RateLimit] = {}

    def update(self, bucket: RateLimit) -> None:
        self._buckets[bucket.resource] = bucket

    def get(self, resource: str = "core") -> RateLimit | None:
        return self._buckets.get(resource)

    def snapshot(self) -> Mapping[str, RateLimit]:
        return MappingProxyType(dict(self._buckets))


@dataclass(frozen=True)
class CallStatsSnapshot:
    """``calls[(endpoint, status)]``: responses (``status`` an HTTP status, or ``"error"`` when no
    response came), ``retries[endpoint]``, ``gate_waits``/``gate_wait_seconds``: calls that waited for a
    rate limit to lift, ``gate_rejections``: calls refused because the wait was too long."""

    calls: Mapping[tuple[str, str], int]
    retries: Mapping[str, int]
    gate_waits: int
    gate_wait_seconds: float
    gate_rejections: int

    def total(self, endpoint: str | None = None) -> int:
        return sum(n for (ep, _), n in self.calls.items() if endpoint is None or ep == endpoint)


class CallStats:
    """In-memory counters of the client's calls (exported by the metrics layer, not here)."""

    def __init__(self) -> None:
        self._calls: Counter[tuple[str, str]] = Counter()
        self._retries: Counter[str] = Counter()
        self._gate_waits = 0
        self._gate_wait_seconds = 0.0
        self._gate_rejections = 0

    def record_call(self, endpoint: str, status: int | str) -> None:
        self._calls[(endpoint, str(status))] += 1

    def record_retry(self, endpoint: str) -> None:
        self._retries[endpoint] += 1

    def record_gate_wait(self, seconds: float) -> None:
        self._gate_waits += 1
        self._gate_wait_seconds += seconds

    def record_gate_rejection(self) -> None:
        self._gate_rejections += 1

    def snapshot(self) -> CallStatsSnapshot:
        return CallStatsSnapshot(
            calls=MappingProxyType(dict(self._calls)),
            retries=MappingProxyType(dict(self._retries)),
            gate_waits=self._gate_waits,
            gate_wait_seconds=self._gate_wait_seconds,
            gate_rejections=self._gate_rejections,
        )


class RateLimitGate:
    """Pauses calls while a rate limit is in force (see the module docstring).

    Keys are rate-limit resources (a call passes the key of its bucket, once known) plus :data:`ALL`.
    ``clock``/``sleep``/``draw`` are injectable (seconds since the epoch; a sleep; a uniform [0, 1) draw).
    """

    def __init__(
        self, *, clock: Clock, sleep: Sleep, draw: Draw, jitter_s: float = 1.0, stats: CallStats | None = None
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self._draw = draw
        self._jitter_s = jitter_s
        self._stats = stats or CallStats()
        self._closed: dict[str, float] = {}
        self._probes: dict[str, asyncio.Event] = {}

    def close(self, key: str, resume_at: float) -> None:
        """Pause every call that passes ``key`` until ``resume_at`` (never shortens a pause)."""
        if resume_at > self._closed.get(key, 0.0):
            self._closed[key] = resume_at

    def paused_until(self, keys: Iterable[str] = (ALL,)) -> float | None:
        """When calls through ``keys`` may go again, or ``None`` when they may go now."""
        until = max((self._closed.get(k, 0.0) for k in keys), default=0.0)
        return until if until > self._clock() else None

    def snapshot(self) -> Mapping[str, float]:
        now = self._clock()
        return MappingProxyType({k: v for k, v in self._closed.items() if v > now})

    @asynccontextmanager
    async def admit(self, keys: Iterable[str], *, max_wait_s: float) -> AsyncIterator[None]:
        """Wait until calls through ``keys`` may go, then run the body (one call) inside.

        If this call is the first after a pause, it is the probe: calls behind it wait until the body
        has finished (and has closed the gate again if it was limited again).
        """
        keys = tuple(dict.fromkeys((ALL, *keys)))
        probing = await self._wait(keys, max_wait_s)
        events = {}
        for key in probing:
            events[key] = self._probes[key] = asyncio.Event()
        try:
            yield
        finally:
            for key, event in events.items():
                if self._probes.get(key) is event:
                    del self._probes[key]
                event.set()

    async def _wait(self, keys: tuple[str, ...], max_wait_s: float) -> list[str]:
        deadline = self._clock() + max_wait_s
        waited: float | None = None  # seconds, once this call has had to wait at all
        try:
            while True:
                now = self._clock()
                until = max(self._closed.get(k, 0.0) for k in keys)
                if until > now:
                    if until > deadline:
                        self._stats.record_gate_rejection()
                        key = max(keys, key=lambda k: self._closed.get(k, 0.0))
                        raise RateLimitWaitExceeded(
                            f"GitHub rate limit ({key}) in force for another {until - now:.0f}s, "
                            f"more than the maximum wait of {max_wait_s:.0f}s",
                            resume_at=until,
                            resource=key,
                        )
                    delay = until - now + self._draw() * self._jitter_s
                    waited = (waited or 0.0) + delay
                    await self._sleep(delay)
                    continue
                probe = next((self._probes[k] for k in keys if k in self._probes), None)
                if probe is not None:
                    started = self._clock()
                    await probe.wait()
                    waited = (waited or 0.0) + max(self._clock() - started, 0.0)
                    continue
                expired = [k for k in keys if k in self._closed]
                for k in expired:
                    del self._closed[k]
                if expired:
                    log.info("GitHub rate-limit pause over (%s); probing with one call", ", ".join(expired))
                return expired
        finally:
            if waited is not None:
                self._stats.record_gate_wait(waited)


def pages(items: int) -> int:
    """Calls a listing of ``items`` costs (100 per page, at least one)."""
    return max(1, math.ceil(items / 100))


class CallWindow:
    """Calls spent in the last hour (sliding window)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._spent: deque[tuple[float, int]] = deque()
        self._total = 0

    def _expire(self, now: float) -> None:
        while self._spent and now - self._spent[0][0] >= WINDOW:
            self._total -= self._spent.popleft()[1]

    def spent(self) -> int:
        self._expire(self._clock())
        return self._total

    def spend(self, calls: int) -> None:
        now = self._clock()
        self._expire(now)
        self._spent.append((now, calls))
        self._total += calls

    def free_at(self, calls: int, ceiling: int) -> float:
        """When ``calls`` more fit under ``ceiling`` (now, if they do)."""
        now = self._clock()
        self._expire(now)
        excess = self._total + calls - ceiling
        if excess <= 0:
            return now
        for at, n in self._spent:
            excess -= n
            if excess <= 0:
                return at + WINDOW
        return now + WINDOW
