"""A deduplicating, rate-limited work queue of keys (client-go's ``workqueue``, for asyncio).

Guarantees:

* a key is in the queue at most once: adding it again while it waits is a no-op;
* a key is handed to at most one worker at a time: adding it while a worker processes it marks it
  dirty, and it is queued again (once, however many adds) when that worker calls :meth:`done`;
* :meth:`add_after` delays an add; several delayed adds of one key keep the earliest;
* :meth:`add_coalesced` asks for a pass that sees the present state within ``window`` seconds: a
  burst of such adds of one key is one pass. It is a no-op while the key waits to be handed out (that
  pass will read the present state); otherwise it waits ``window`` (keeping the earliest), and the
  wait is dropped when the key is handed out sooner (by an :meth:`add` or another timer), since that
  pass starts after the add. Nothing is lost: every add is followed by a pass that starts after it;
* :meth:`add_rate_limited` delays an add by the key's exponential back-off (``base * 2**failures``,
  capped at ``max``), and by an overall token bucket, whichever is longer; :meth:`forget` resets the
  key's back-off after a success;
* after :meth:`shutdown`, :meth:`get` raises :class:`ShutDown` and adds are ignored; keys being
  processed may still be marked :meth:`done`.

All methods except :meth:`get` are synchronous, so informer handlers can call them. Time is the
event loop's clock (``loop.time()``), so tests can run the queue on a virtual-time loop.
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


def exponential_delay(attempt: int, base: float, cap: float, *, jitter: float = 0.0) -> float:
    """``base * 2**attempt``, capped at ``cap``, then spread by up to ``+jitter`` (a fraction)."""
    delay = cap if attempt >= 64 else min(cap, base * 2.0**attempt)
    if jitter:
        delay *= 1.0 + random.uniform(0.0, jitter)
    return delay


class ShutDown(Exception):
    """The queue was shut down: no more work."""


class TokenBucket:
    """An overall rate limit: ``qps`` tokens a second, up to ``burst`` saved up.

    :meth:`reserve` always takes a token and says how long to wait for it (tokens may go into debt,
    like Go's ``rate.Limiter.Reserve``), so the delays it hands out space events ``1/qps`` apart.
    """

    def __init__(self, qps: float, burst: int) -> None:
        if qps <= 0 or burst < 1:
            raise ValueError("qps must be > 0 and burst >= 1")
        self.qps = qps
        self.burst = burst
        self._tokens = float(burst)
        self._last: float | None = None

    def reserve(self, now: float) -> float:
        if self._last is not None:
            self._tokens = min(float(self.burst), self._tokens + (now - self._last) * self.qps)
        self._last = now
        self._tokens -= 1.0
        return 0.0 if self._tokens >= 0 else -self._tokens / self.qps


class RateLimiter(Generic[K]):
    """Per-key exponential back-off combined (max) with an optional overall :class:`TokenBucket`."""

    def __init__(
        self, *, base: float = 0.005, max: float = 1000.0, bucket: TokenBucket | None = None
    ) -> None:
        if base <= 0 or max < base:
            raise ValueError("need 0 < base <= max")
        self.base = base
        self.max = max
        self.bucket = bucket
        self._failures: dict[K, int] = {}

    def when(self, key: K, now: float) -> float:
        """The delay before ``key`` may be retried; counts one more failure for it."""
        failures = self._failures.get(key, 0)
        self._failures[key] = failures + 1
        delay = exponential_delay(failures, self.base, self.max)
        if self.bucket is not None:
            delay = max(delay, self.bucket.reserve(now))
        return delay

    def forget(self, key: K) -> None:
        self._failures.pop(key, None)

    def failures(self, key: K) -> int:
        return self._failures.get(key, 0)


class WorkQueue(Generic[K]):
    """See the module docstring."""

    def __init__(self, rate_limiter: RateLimiter[K] | None = None) -> None:
        self.rate_limiter: RateLimiter[K] = rate_limiter or RateLimiter(bucket=TokenBucket(10.0, 100))
        self._queue: deque[K] = deque()
        self._dirty: set[K] = set()
        self._processing: set[K] = set()
        self._waiting: dict[K, tuple[float, asyncio.TimerHandle]] = {}
        self._coalescing: dict[K, tuple[float, asyncio.TimerHandle]] = {}
        self._getters: deque[asyncio.Future[None]] = deque()
        self._shutting_down = False

    def __len__(self) -> int:
        """Keys ready to be handed out (not counting delayed or in-process keys)."""
        return len(self._queue)

    @property
    def shutting_down(self) -> bool:
        return self._shutting_down

    @property
    def processing(self) -> frozenset[K]:
        return frozenset(self._processing)

    @property
    def waiting(self) -> frozenset[K]:
        """Keys with a pending :meth:`add_after` / :meth:`add_rate_limited` / :meth:`add_coalesced`."""
        return frozenset(self._waiting.keys() | self._coalescing.keys())

    def add(self, key: K) -> None:
        if self._shutting_down or key in self._dirty:
            return
        self._dirty.add(key)
        if key in self._processing:
            return  # queued again by done()
        self._queue.append(key)
        self._wake_one()

    def add_after(self, key: K, delay: float) -> None:
        if self._shutting_down:
            return
        if delay <= 0:
            self.add(key)
            return
        loop = asyncio.get_running_loop()
        ready_at = loop.time() + delay
        pending = self._waiting.get(key)
        if pending is not None:
            if pending[0] <= ready_at:
                return
            pending[1].cancel()
        self._waiting[key] = (ready_at, loop.call_at(ready_at, self._ready, key))

    def add_coalesced(self, key: K, window: float) -> None:
        """A pass of ``key`` that starts after now, within ``window`` seconds (see the module docstring)."""
        if self._shutting_down:
            return
        if window <= 0:
            self.add(key)
            return
        if key in self._dirty:
            return  # a pass that has not started yet: it reads the state as it is then
        loop = asyncio.get_running_loop()
        ready_at = loop.time() + window
        pending = self._coalescing.get(key)
        if pending is not None:
            if pending[0] <= ready_at:
                return
            pending[1].cancel()
        self._coalescing[key] = (ready_at, loop.call_at(ready_at, self._coalesced, key))

    def add_rate_limited(self, key: K) -> None:
        if self._shutting_down:
            return
        self.add_after(key, self.rate_limiter.when(key, asyncio.get_running_loop().time()))

    def forget(self, key: K) -> None:
        """The key succeeded: reset its back-off."""
        self.rate_limiter.forget(key)

    def failures(self, key: K) -> int:
        return self.rate_limiter.failures(key)

    async def get(self) -> K:
        """The next key to process; the caller must call :meth:`done` with it afterwards."""
        while not self._queue or self._shutting_down:
            if self._shutting_down:
                raise ShutDown
            getter = asyncio.get_running_loop().create_future()
            self._getters.append(getter)
            try:
                await getter
            except asyncio.CancelledError:
                # If this getter was woken to take a key, pass the wake-up on.
                if getter.done() and not getter.cancelled():
                    self._wake_one()
                raise
            finally:
                if getter in self._getters:
                    self._getters.remove(getter)
        key = self._queue.popleft()
        self._dirty.discard(key)
        self._processing.add(key)
        coalescing = self._coalescing.pop(key, None)
        if coalescing is not None:
            coalescing[1].cancel()  # this pass starts after every add_coalesced so far
        return key

    def done(self, key: K) -> None:
        self._processing.discard(key)
        if key in self._dirty and not self._shutting_down:
            self._queue.append(key)
            self._wake_one()

    def shutdown(self) -> None:
        """Stops handing out keys: pending :meth:`get` calls raise :class:`ShutDown`."""
        self._shutting_down = True
        for table in (self._waiting, self._coalescing):
            for _, timer in table.values():
                timer.cancel()
            table.clear()
        while self._getters:
            getter = self._getters.popleft()
            if not getter.done():
                getter.set_result(None)

    def _ready(self, key: K) -> None:
        self._waiting.pop(key, None)
        self.add(key)

    def _coalesced(self, key: K) -> None:
        self._coalescing.pop(key, None)
        self.add(key)

    def _wake_one(self) -> None:
        while self._getters:
            getter = self._getters.popleft()
            if not getter.done():
                getter.set_result(None)
                return
