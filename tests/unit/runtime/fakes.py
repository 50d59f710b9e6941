"""In-memory stand-ins for the runtime's Protocols, and small test helpers."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from typing import Any, TypeAlias

from devcluster.wait import wait_until
from runnerd.runtime.errors import AlreadyExists, Conflict, NotFound, ResourceExpired
from runnerd.runtime.types import Key, LeaseRecord, Obj, WatchEvent, WatchEventType

LoopFactory: TypeAlias = Callable[[], asyncio.AbstractEventLoop]


async def eventually(condition: Callable[[], bool], *, limit: float = 3600.0, step: float = 0.01) -> None:
    """Waits (in loop time, so it costs nothing real) until ``condition()`` holds, at most ``limit`` s."""
    await wait_until("the condition", condition, limit, step=step)


def now() -> float:
    return asyncio.get_running_loop().time()


def obj(name: str, namespace: str = "ns", **meta: Any) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace, **meta},
    }


def owned(
    name: str,
    owner: str,
    *,
    kind: str = "Runner",
    api_version: str = "actions.summerwind.dev/v1alpha1",
    controller: bool = True,
    namespace: str = "ns",
) -> Obj:
    ref = {
        "apiVersion": api_version,
        "kind": kind,
        "name": owner,
        "uid": f"uid-{owner}",
        "controller": controller,
    }
    return obj(name, namespace, ownerReferences=[ref])


_END = object()


@dataclass
class _Watcher:
    queue: asyncio.Queue[Any] = field(default_factory=asyncio.Queue)
    connected: bool = True


class FakeListWatcher:
    """One resource type on a fake API server: versions, watch history, compaction and faults."""

    def __init__(self) -> None:
        self.objects: dict[Key, Obj] = {}
        self.version = 0
        self.history: list[WatchEvent] = []
        self.compacted = 0
        self.watchers: list[_Watcher] = []
        self.list_calls = 0
        self.watch_versions: list[str] = []
        self.watch_timeouts: list[int] = []
        self.list_failures = 0
        """Fail this many of the next list calls."""
        self.expire_with_event = False
        """Report a too-old version by an ERROR event instead of raising ResourceExpired."""

    # The server side, driven by tests.

    def _commit(self, type: WatchEventType, body: Obj) -> Obj:
        self.version += 1
        body = copy.deepcopy(body)
        body["metadata"]["resourceVersion"] = str(self.version)
        event = WatchEvent(type, body)
        self.history.append(event)
        for watcher in self.watchers:
            if watcher.connected:
                watcher.queue.put_nowait(copy.deepcopy(event))
        return body

    def put(self, body: Obj) -> Obj:
        key = Key.of(body)
        type = WatchEventType.MODIFIED if key in self.objects else WatchEventType.ADDED
        self.objects[key] = self._commit(type, body)
        return self.objects[key]

    def delete(self, name: str, namespace: str = "ns") -> None:
        gone = self.objects.pop(Key(namespace, name))
        self._commit(WatchEventType.DELETED, gone)

    def bookmark(self) -> None:
        self.version += 1
        event = WatchEvent(WatchEventType.BOOKMARK, {"metadata": {"resourceVersion": str(self.version)}})
        for watcher in self.watchers:
            if watcher.connected:
                watcher.queue.put_nowait(event)

    def compact(self) -> None:
        """Forget history: watches from any version before now get 410."""
        self.compacted = self.version

    def stall(self) -> None:
        """Current watch streams silently stop delivering (a half-open connection)."""
        for watcher in self.watchers:
            watcher.connected = False

    def end_watches(self) -> None:
        """The server closes current watch streams (as when ``timeoutSeconds`` elapse)."""
        for watcher in self.watchers:
            watcher.queue.put_nowait(_END)

    def send_to_watches(self, event: WatchEvent) -> None:
        for watcher in self.watchers:
            watcher.queue.put_nowait(event)

    # The ListWatcher protocol.

    async def list(self) -> tuple[list[Obj], str]:
        self.list_calls += 1
        if self.list_failures:
            self.list_failures -= 1
            raise ConnectionError("connection refused")
        return [copy.deepcopy(o) for o in self.objects.values()], str(self.version)

    async def watch(self, resource_version: str, *, timeout_seconds: int) -> AsyncIterator[WatchEvent]:
        self.watch_versions.append(resource_version)
        self.watch_timeouts.append(timeout_seconds)
        since = int(resource_version or 0)
        if since < self.compacted:
            if not self.expire_with_event:
                raise ResourceExpired(410, "Expired", f"too old resource version: {since} ({self.compacted})")
            yield WatchEvent(WatchEventType.ERROR, {"kind": "Status", "code": 410, "reason": "Expired"})
            return
        watcher = _Watcher()
        for event in self.history:
            if int(event.object["metadata"]["resourceVersion"]) > since:
                watcher.queue.put_nowait(copy.deepcopy(event))
        self.watchers.append(watcher)
        try:
            while True:
                item = await watcher.queue.get()
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self.watchers.remove(watcher)


class LeaseServer:
    """The Lease objects of a fake API server, shared by several clients."""

    def __init__(self) -> None:
        self.records: dict[tuple[str, str], LeaseRecord] = {}
        self.version = 0
        self.writes: list[tuple[float, str, LeaseRecord]] = []

    def store(self, namespace: str, name: str, record: LeaseRecord, by: str) -> LeaseRecord:
        self.version += 1
        stored = replace(record, resource_version=str(self.version))
        self.records[namespace, name] = stored
        self.writes.append((now(), by, stored))
        return stored


class FakeLeaseClient:
    """A LeaseClient on a :class:`LeaseServer`, with faults: partition (hang) or fail, and a hook."""

    def __init__(self, server: LeaseServer, who: str = "") -> None:
        self.server = server
        self.who = who
        self.partitioned = False
        self.failing: Exception | None = None
        self.conflicts = 0
        """Answer the next this many updates with Conflict."""
        self.lose_responses = False
        """Writes succeed on the server, but their responses never arrive (the call hangs)."""
        self.calls = 0

    async def _enter(self) -> None:
        self.calls += 1
        if self.partitioned:
            await asyncio.Event().wait()  # hangs until cancelled
        if self.failing is not None:
            raise self.failing

    async def get(self, namespace: str, name: str) -> LeaseRecord | None:
        await self._enter()
        return self.server.records.get((namespace, name))

    async def create(self, namespace: str, name: str, record: LeaseRecord) -> LeaseRecord:
        await self._enter()
        if (namespace, name) in self.server.records:
            raise AlreadyExists(409, "AlreadyExists", "exists")
        return await self._respond(self.server.store(namespace, name, record, self.who))

    async def update(self, namespace: str, name: str, record: LeaseRecord) -> LeaseRecord:
        await self._enter()
        current = self.server.records.get((namespace, name))
        if current is None:
            raise NotFound(404, "NotFound", "no lease")
        if self.conflicts:
            self.conflicts -= 1
            raise Conflict(409, "Conflict", "injected")
        if current.resource_version != record.resource_version:
            raise Conflict(409, "Conflict", "the object has been modified")
        return await self._respond(self.server.store(namespace, name, record, self.who))

    async def _respond(self, stored: LeaseRecord) -> LeaseRecord:
        if self.lose_responses:
            await asyncio.Event().wait()
        return stored


class FakeEventSink:
    def __init__(self) -> None:
        self.events: dict[tuple[str, str], Obj] = {}
        self.creates = 0
        self.patches = 0
        self.failing: Exception | None = None

    async def create(self, namespace: str, event: Obj) -> Obj:
        if self.failing is not None:
            raise self.failing
        self.creates += 1
        key = (namespace, event["metadata"]["name"])
        if key in self.events:
            raise AlreadyExists(409, "AlreadyExists", "exists")
        self.events[key] = copy.deepcopy(event)
        return self.events[key]

    async def patch(self, namespace: str, name: str, patch: Obj) -> Obj:
        if self.failing is not None:
            raise self.failing
        self.patches += 1
        if (namespace, name) not in self.events:
            raise NotFound(404, "NotFound", "event gone")
        self.events[namespace, name].update(patch)
        return self.events[namespace, name]


async def cancel_and_wait(*tasks: asyncio.Task[Any] | None) -> None:
    for task in tasks:
        if task is not None:
            task.cancel()
    await asyncio.gather(*(t for t in tasks if t is not None), return_exceptions=True)
