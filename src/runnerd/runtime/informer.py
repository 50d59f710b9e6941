"""Informer: keeps a :class:`~runnerd.runtime.store.Store` in step with the API server.

The loop is the client-go one:

* LIST, then WATCH from the list's ``resourceVersion`` with bookmarks, so a quiet watch still
  advances its resume point;
* when the server ends the stream (its ``timeoutSeconds`` elapsed) or the stream goes quiet for
  ``idle_timeout`` (a half-open connection sends nothing, forever), watch again from the last
  ``resourceVersion`` seen: nothing is lost;
* on 410 Gone (an exception or an ``ERROR`` event with code 410) LIST again and diff the result
  against the store, which yields the adds, updates and deletes that happened in the gap;
* other failures back off exponentially and retry; the informer never gives up;
* every ``resync_period`` every stored object is handed to the handlers again (``SYNC``), so
  level-triggered controllers re-check everything now and then.

Handlers are plain callables run synchronously in the informer's task, in event order. They should
be quick (enqueue a key); an exception in one is logged and does not stop the informer.

Every object passes ``transform`` before it is stored (default:
:func:`~runnerd.runtime.store.strip_unused`, which drops ``managedFields`` and kubectl's
last-applied annotation), so the caches hold only what decisions read.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import random
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass

from runnerd.runtime.errors import ApiError, ResourceExpired, from_status
from runnerd.runtime.protocols import ListWatcher
from runnerd.runtime.redact import describe_exception
from runnerd.runtime.store import IndexFunc, Store, strip_unused
from runnerd.runtime.types import Key, Obj, WatchEvent, WatchEventType, resource_version
from runnerd.runtime.workqueue import exponential_delay

logger = logging.getLogger(__name__)


class EventType(enum.StrEnum):
    """What happened to an object, as the informer's handlers are told."""

    ADDED = "ADDED"
    MODIFIED = "MODIFIED"
    DELETED = "DELETED"
    SYNC = "SYNC"
    """Periodic resync: the object did not change, look at it again anyway."""


@dataclass(frozen=True, slots=True)
class InformerEvent:
    """A change of the cache. ``old`` is the previous cached state for ``MODIFIED`` (and ``DELETED``)."""

    type: EventType
    obj: Obj
    old: Obj | None = None


Handler = Callable[[InformerEvent], None]


class _Relist(Exception):
    """The watch cannot resume from its resource version: list again."""


class Informer:
    """Lists and watches one resource through a :class:`ListWatcher` into a :class:`Store`.

    ``watch_timeout``: the server-side ``timeoutSeconds`` of each watch request (randomised up to twice
    that, as client-go does, so many informers don't reconnect together).
    ``idle_timeout``: reconnect when the stream has sent nothing (not even a bookmark) for this long.
    ``resync_period``: hand every cached object to the handlers again this often (``None``: never).
    ``retry_base`` / ``retry_max``: the back-off between failed list or watch calls.
    ``transform``: applied to every object before it is stored (None: store as received).
    """

    def __init__(
        self,
        name: str,
        list_watcher: ListWatcher,
        *,
        indexers: Mapping[str, IndexFunc] | None = None,
        resync_period: float | None = None,
        watch_timeout: int = 300,
        idle_timeout: float = 75.0,
        retry_base: float = 0.5,
        retry_max: float = 30.0,
        transform: Callable[[Obj], Obj] | None = strip_unused,
    ) -> None:
        self.name = name
        self._transform = transform
        self.store = Store(indexers)
        self._list_watcher = list_watcher
        self._resync_period = resync_period
        self._watch_timeout = watch_timeout
        self._idle_timeout = idle_timeout
        self._retry_base = retry_base
        self._retry_max = retry_max
        self._handlers: list[Handler] = []
        self._synced = asyncio.Event()
        self._resource_version = ""
        self._failures = 0
        self._expired_streak = 0
        self.lists = 0
        """How many LISTs succeeded (the first one plus every relist)."""
        self.watches = 0
        """How many WATCH requests were started."""

    @property
    def synced(self) -> bool:
        """Whether the first LIST has been applied (the store is complete)."""
        return self._synced.is_set()

    @property
    def resource_version(self) -> str:
        """The resource version the next watch resumes from."""
        return self._resource_version

    async def wait_synced(self) -> None:
        await self._synced.wait()

    def add_handler(self, handler: Handler) -> Callable[[], None]:
        """Registers a handler; returns a function that unregisters it."""
        self._handlers.append(handler)

        def remove() -> None:
            with contextlib.suppress(ValueError):
                self._handlers.remove(handler)

        return remove

    async def run(self) -> None:
        """Runs until cancelled."""
        resync: asyncio.Task[None] | None = None
        if self._resync_period:
            resync = asyncio.create_task(self._resync_loop(self._resync_period), name=f"resync-{self.name}")
        try:
            while True:
                if not await self._list():
                    await self._backoff()
                    continue
                with contextlib.suppress(_Relist):
                    while True:
                        await self._watch()
        finally:
            if resync is not None:
                resync.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await resync

    async def _backoff(self) -> None:
        self._failures += 1
        await asyncio.sleep(
            exponential_delay(self._failures - 1, self._retry_base, self._retry_max, jitter=0.1)
        )

    async def _expired(self) -> None:
        # A relist is the normal answer to 410, at once; but 410 right after a relist again and again
        # (a server that cannot serve the version it just listed) must not become a hot loop.
        self._expired_streak += 1
        if self._expired_streak > 1:
            await asyncio.sleep(
                exponential_delay(self._expired_streak - 2, self._retry_base, self._retry_max, jitter=0.1)
            )

    async def _list(self) -> bool:
        try:
            items, version = await self._list_watcher.list()
        except Exception as exc:
            logger.warning("informer %s: list failed: %s", self.name, describe_exception(exc))
            return False
        self.lists += 1
        self._failures = 0
        self._replace(items, version)
        self._synced.set()
        return True

    def _replace(self, items: list[Obj], version: str) -> None:
        """Makes the store equal to a fresh list, telling handlers what changed since the last one."""
        if self._transform is not None:
            items = [self._transform(obj) for obj in items]
        fresh = {Key.of(obj): obj for obj in items}
        for key in sorted(set(self.store.keys()) - fresh.keys()):
            gone = self.store.delete(key)
            assert gone is not None
            self._dispatch(InformerEvent(EventType.DELETED, gone, gone))
        for obj in fresh.values():
            old = self.store.upsert(obj)
            if old is None:
                self._dispatch(InformerEvent(EventType.ADDED, obj))
            elif resource_version(old) != resource_version(obj):
                self._dispatch(InformerEvent(EventType.MODIFIED, obj, old))
        self._resource_version = version
        logger.debug("informer %s: listed %d objects at %s", self.name, len(fresh), version)

    async def _watch(self) -> None:
        """One watch request, until it ends, goes quiet or fails. Raises :class:`_Relist` on 410."""
        timeout = random.randint(self._watch_timeout, 2 * self._watch_timeout)
        self.watches += 1
        stream = self._list_watcher.watch(self._resource_version, timeout_seconds=timeout)
        try:
            try:
                await self._consume(stream)
            finally:
                await _aclose(stream)  # before any back-off: don't hold the connection while waiting
        except (ResourceExpired, _Relist) as exc:
            logger.info("informer %s: watch expired (%s); relisting", self.name, exc)
            await self._expired()
            raise _Relist from exc
        except Exception as exc:
            logger.warning("informer %s: watch failed: %s", self.name, describe_exception(exc))
            await self._backoff()
            if isinstance(exc, ApiError):
                # Not a connection problem: the server refused the watch; start over with a list.
                raise _Relist from exc

    async def _consume(self, stream: AsyncIterator[WatchEvent]) -> None:
        while True:
            try:
                async with asyncio.timeout(self._idle_timeout):
                    event = await anext(stream)
            except StopAsyncIteration:
                return
            except TimeoutError:
                logger.info("informer %s: watch quiet for %ss, reconnecting", self.name, self._idle_timeout)
                return
            self._failures = 0
            self._apply(event)
            self._expired_streak = 0

    def _apply(self, event: WatchEvent) -> None:
        obj = event.object
        if event.type is WatchEventType.ERROR:
            error = from_status(obj)
            if isinstance(error, ResourceExpired):
                raise _Relist(error.message)
            raise error
        version = resource_version(obj)
        if event.type is WatchEventType.BOOKMARK:
            if version:
                self._resource_version = version
            return
        if self._transform is not None:
            obj = self._transform(obj)
        key = Key.of(obj)
        if event.type is WatchEventType.DELETED:
            old = self.store.delete(key)
            self._dispatch(InformerEvent(EventType.DELETED, obj, old))
        else:
            old = self.store.upsert(obj)
            kind = EventType.ADDED if old is None else EventType.MODIFIED
            self._dispatch(InformerEvent(kind, obj, old))
        if version:
            self._resource_version = version

    async def _resync_loop(self, period: float) -> None:
        await self._synced.wait()
        while True:
            await asyncio.sleep(period)
            for obj in self.store.objects():
                self._dispatch(InformerEvent(EventType.SYNC, obj))

    def _dispatch(self, event: InformerEvent) -> None:
        for handler in list(self._handlers):
            try:
                handler(event)
            except Exception as exc:
                logger.error(
                    "informer %s: handler %r failed: %s", self.name, handler, describe_exception(exc)
                )


async def _aclose(stream: AsyncIterator[WatchEvent]) -> None:
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        await aclose()
