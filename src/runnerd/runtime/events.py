"""Recording ``core/v1`` Events on objects, the way ``kubectl describe`` shows them.

Repeats of the same event (same object, type, reason and message) within the recorder's memory
increment ``count`` and ``lastTimestamp`` of the existing Event instead of creating another one, like
client-go's event correlator. Recording is best effort: a failure is logged, never raised, so that a
reconcile does not fail because an Event could not be written.

Concurrency: recordings of the same event (same key) are serialised, so a repeat sees the count its
predecessor wrote; different events are written concurrently (one recorder serves a whole process: a
burst of runners, each recording its own ``PodCreated``, does not queue its reconciles behind one
another's Event round trips).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Literal

from runnerd.runtime.errors import NotFound
from runnerd.runtime.protocols import EventSink
from runnerd.runtime.redact import describe_exception, redact
from runnerd.runtime.types import Obj

logger = logging.getLogger(__name__)

EventKind = Literal["Normal", "Warning"]

MAX_MESSAGE = 1024
"""The API server rejects Event messages longer than this."""


def _timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class EventRecorder:
    """Writes Events through an :class:`EventSink` as ``component`` (and ``instance``, e.g. the pod)."""

    def __init__(
        self,
        sink: EventSink,
        *,
        component: str,
        instance: str = "",
        cache_size: int = 4096,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._sink = sink
        self.component = component
        self.instance = instance
        self._cache_size = cache_size
        self._wall_clock = wall_clock
        # (namespace, involved uid/kind/name, type, reason, message) -> (event name, count)
        self._seen: OrderedDict[tuple[str, ...], tuple[str, int]] = OrderedDict()
        # one lock per event being written (dropped when its last writer is done: bounded by the
        # recordings in flight)
        self._locks: dict[tuple[str, ...], tuple[asyncio.Lock, int]] = {}

    def writes_in_flight_keys(self) -> list[tuple[str, ...]]:
        """The events being written now (one lock each)."""
        return list(self._locks)

    async def normal(self, obj: Mapping[str, Any], reason: str, message: str) -> None:
        await self.record(obj, "Normal", reason, message)

    async def warning(self, obj: Mapping[str, Any], reason: str, message: str) -> None:
        await self.record(obj, "Warning", reason, message)

    async def record(self, obj: Mapping[str, Any], type: EventKind, reason: str, message: str) -> None:
        """Records an Event about ``obj`` (any object with ``metadata``, ``kind``, ``apiVersion``)."""
        meta = obj.get("metadata") or {}
        namespace = meta.get("namespace") or "default"
        message = redact(message)[:MAX_MESSAGE]
        cache_key = (
            namespace,
            str(obj.get("kind", "")),
            str(meta.get("name", "")),
            str(meta.get("uid", "")),
            type,
            reason,
            message,
        )
        now = self._wall_clock()
        lock, users = self._locks.get(cache_key) or (asyncio.Lock(), 0)
        self._locks[cache_key] = (lock, users + 1)
        try:
            async with lock:
                await self._write(obj, namespace, cache_key, type, reason, message, now)
        except Exception as exc:
            logger.warning(
                "could not record event %s %s on %s/%s: %s",
                type,
                reason,
                namespace,
                meta.get("name"),
                describe_exception(exc),
            )
        finally:
            lock, users = self._locks[cache_key]
            if users > 1:
                self._locks[cache_key] = (lock, users - 1)
            else:
                del self._locks[cache_key]

    async def _write(
        self,
        obj: Mapping[str, Any],
        namespace: str,
        cache_key: tuple[str, ...],
        type: EventKind,
        reason: str,
        message: str,
        now: datetime,
    ) -> None:
        seen = self._seen.get(cache_key)
        if seen is not None:
            name, count = seen
            patch: Obj = {"count": count + 1, "lastTimestamp": _timestamp(now)}
            try:
                await self._sink.patch(namespace, name, patch)
            except NotFound:
                pass  # expired: create a new one below
            else:
                self._remember(cache_key, name, count + 1)
                return
        meta = obj.get("metadata") or {}
        name = f"{meta.get('name', 'unknown')}.{time.time_ns():x}"
        involved: Obj = {
            "apiVersion": obj.get("apiVersion", ""),
            "kind": obj.get("kind", ""),
            "name": meta.get("name", ""),
            "namespace": meta.get("namespace", ""),
            "uid": meta.get("uid", ""),
            "resourceVersion": meta.get("resourceVersion", ""),
        }
        event: Obj = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": namespace},
            "involvedObject": {k: v for k, v in involved.items() if v},
            "type": type,
            "reason": reason,
            "message": message,
            "count": 1,
            "firstTimestamp": _timestamp(now),
            "lastTimestamp": _timestamp(now),
            "source": {"component": self.component, **({"host": self.instance} if self.instance else {})},
            "reportingComponent": self.component,
            "reportingInstance": self.instance,
        }
        created = await self._sink.create(namespace, event)
        self._remember(cache_key, str((created.get("metadata") or {}).get("name") or name), 1)

    def _remember(self, cache_key: tuple[str, ...], name: str, count: int) -> None:
        self._seen[cache_key] = (name, count)
        self._seen.move_to_end(cache_key)
        while len(self._seen) > self._cache_size:
            self._seen.popitem(last=False)
