"""What the runtime needs from Kubernetes, as Protocols.

The runtime never talks HTTP: an adapter (``runnerd.kube``) implements these over a real client, and
tests implement them in memory. All objects are plain dicts.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from runnerd.runtime.types import LeaseRecord, Obj, WatchEvent


class ListWatcher(Protocol):
    """Lists and watches one resource type, within a fixed scope (namespace, selectors).

    ``list`` returns every object (all pages) and the list's ``resourceVersion``.
    ``watch`` streams changes after ``resource_version``, with bookmarks enabled, and ends by itself
    after about ``timeout_seconds`` (server side). A too-old ``resource_version`` is reported either by
    raising :class:`~runnerd.runtime.errors.ResourceExpired` or by an ``ERROR`` event with code 410.
    The iterator is closed (``aclose``) by the caller when it stops early.
    """

    async def list(self) -> tuple[list[Obj], str]: ...

    def watch(self, resource_version: str, *, timeout_seconds: int) -> AsyncIterator[WatchEvent]: ...


class LeaseClient(Protocol):
    """Reads and conditionally writes ``coordination.k8s.io/v1`` Leases.

    ``get`` returns ``None`` when the Lease does not exist. ``create`` raises
    :class:`~runnerd.runtime.errors.AlreadyExists` when it does. ``update`` writes the record
    conditionally on ``record.resource_version`` and raises :class:`~runnerd.runtime.errors.Conflict`
    when the Lease changed since. Both return the record as stored (with its new resource version).
    """

    async def get(self, namespace: str, name: str) -> LeaseRecord | None: ...

    async def create(self, namespace: str, name: str, record: LeaseRecord) -> LeaseRecord: ...

    async def update(self, namespace: str, name: str, record: LeaseRecord) -> LeaseRecord: ...


class EventSink(Protocol):
    """Writes ``core/v1`` Events.

    ``patch`` is a JSON merge patch; it raises :class:`~runnerd.runtime.errors.NotFound` when the Event
    is gone (Events expire after an hour by default).
    """

    async def create(self, namespace: str, event: Obj) -> Obj: ...

    async def patch(self, namespace: str, name: str, patch: Obj) -> Obj: ...
