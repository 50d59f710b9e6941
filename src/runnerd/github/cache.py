"""Two small caches: conditional-request bodies (ETags) and single-flight expiring tokens."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from runnerd.github.sansio import needs_refresh

ETAG_CACHE_SIZE = 4096
"""Enough for a 1,000-run installation: a jobs listing per active run, two run listings per polled
repository and a runner listing page per 100 runners (bodies of a few KiB each)."""


@dataclass(frozen=True)
class CachedResponse:
    etag: str
    data: Any
    link: str | None


class EtagCache:
    """The last 200 body of each GET URL with its ``ETag``, least recently used evicted first.

    GitHub answers ``If-None-Match`` with 304 when nothing changed, and a 304 to an authorized request
    does not count against the rate limit, so polling the runner list is free while it is unchanged.
    """

    def __init__(self, max_entries: int = ETAG_CACHE_SIZE) -> None:
        self._max = max_entries
        self._entries: OrderedDict[str, CachedResponse] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, url: str) -> CachedResponse | None:
        entry = self._entries.get(url)
        if entry is not None:
            self._entries.move_to_end(url)
        return entry

    def put(self, url: str, entry: CachedResponse) -> None:
        if self._max <= 0:
            return
        self._entries[url] = entry
        self._entries.move_to_end(url)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

    def discard(self, url: str) -> None:
        self._entries.pop(url, None)

    def clear(self) -> None:
        self._entries.clear()


class Expiring(Protocol):
    @property
    def expires_at(self) -> float: ...


T = TypeVar("T", bound=Expiring)


class TokenSlot(Generic[T]):
    """One cached, expiring token, refreshed by at most one caller at a time.

    :meth:`get` returns the cached token while it has at least ``min_validity_s`` left; otherwise the
    first caller fetches a new one under the slot's lock and the callers queued behind the lock get that
    one (single flight: N concurrent callers cause one fetch). If the fetch fails, the error goes to that
    caller and the next caller in the queue tries again.
    """

    def __init__(
        self, fetch: Callable[[], Awaitable[T]], *, clock: Callable[[], float], min_validity_s: float
    ) -> None:
        self._fetch = fetch
        self._clock = clock
        self._min_validity_s = min_validity_s
        self._value: T | None = None
        self._lock = asyncio.Lock()

    @property
    def cached(self) -> T | None:
        return self._value

    def _fresh(self) -> T | None:
        value = self._value
        if value is not None and not needs_refresh(value.expires_at, self._clock(), self._min_validity_s):
            return value
        return None

    async def get(self, *, refresh: bool = False) -> T:
        """The cached token, or a new one. ``refresh=True`` fetches a new one unless another caller
        refreshed it while this one waited for the lock."""
        stale = self._value
        if not refresh and (value := self._fresh()) is not None:
            return value
        async with self._lock:
            value = self._fresh()
            if value is not None and (not refresh or value is not stale):
                return value
            value = await self._fetch()
            self._value = value
            return value

    def invalidate(self, value: T | None = None) -> None:
        """Forget the cached token (only if it is still ``value``, when given)."""
        if value is None or self._value is value:
            self._value = None
