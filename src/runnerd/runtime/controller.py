"""A controller: a work queue of keys, workers that reconcile them, and the informers that feed it.

Events from the informers a controller watches are mapped to keys of its primary objects:

* :func:`own_key`: the object's own key (the controller's primary resource);
* :func:`controller_owner`: the key of the object's controller owner (``ownerReferences`` entry with
  ``controller: true`` of a given kind and API group), e.g. Runner Pods to their Runner;
* :func:`by_label`: the key named by one of the object's labels, e.g. ``runner-set-name``;
* or any ``Callable[[Obj], Iterable[Key]]``.

For updates both the old and the new object are mapped, so an object that moves to another owner
wakes up both. The reconcile function gets only the key: it reads current state from the informers'
stores (and the API), never from the event. That is what makes it level-triggered.

A watch may be ``coalesced``: its events ask for a reconcile within a window (one pass for a burst of
events, see :meth:`WorkQueue.add_coalesced`) instead of at once, except those its ``urgent`` filter
picks. Other watches, :meth:`Controller.enqueue` and the start of a run add at once, and a pass started
by them also serves every coalesced event before it.

No reconcile runs before every informer the controller watches, and every informer it declared with
:meth:`Controller.reads` (caches it reads without being woken by them), has synced: a decision on a
half-filled cache (e.g. "the scale target does not exist") would be acted on as if it were true.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from runnerd.runtime.errors import ApiError, Conflict
from runnerd.runtime.informer import EventType, Informer, InformerEvent
from runnerd.runtime.redact import describe_exception
from runnerd.runtime.types import Key, Obj, Result
from runnerd.runtime.workqueue import RateLimiter, ShutDown, TokenBucket, WorkQueue

logger = logging.getLogger(__name__)

Reconcile = Callable[[Key], Awaitable[Result | None]]
"""``async def reconcile(key) -> Result | None``: make the world match the spec of ``key``."""

Mapper = Callable[[Obj], Iterable[Key]]
"""Maps an object that changed to the keys of the primary objects to reconcile."""

EventFilter = Callable[[InformerEvent], bool]
"""Picks informer events (e.g. those of a coalesced watch that must not wait)."""


def spec_changed(event: InformerEvent) -> bool:
    """An :data:`EventFilter`: the object was added or deleted, marked for deletion, or its spec
    changed (``metadata.generation``; the API server leaves it alone on a status write). An object
    without a generation (no status subresource) counts every change."""
    if event.type in (EventType.ADDED, EventType.DELETED):
        return True
    if event.type is EventType.SYNC:
        return False  # nothing changed
    if event.old is None:
        return True
    new, old = event.obj.get("metadata") or {}, event.old.get("metadata") or {}
    generation = new.get("generation")
    if generation is None or generation != old.get("generation"):
        return True
    return bool(new.get("deletionTimestamp")) != bool(old.get("deletionTimestamp"))


@dataclass(frozen=True, slots=True)
class _Watch:
    informer: Informer
    mapper: Mapper
    coalesce: float = 0.0
    urgent: EventFilter | None = None


def own_key(obj: Obj) -> list[Key]:
    """Mapper: the object itself."""
    return [Key.of(obj)]


def _group(api_version: str) -> str:
    return api_version.rpartition("/")[0] if "/" in api_version else ""


def controller_owner(kind: str, group: str = "", *, namespaced: bool = True) -> Mapper:
    """Mapper: the controller owner of the object, if it is a ``kind`` of API ``group`` ("" = core).

    ``namespaced=False`` for cluster-scoped owners (their keys have no namespace).
    """

    def mapper(obj: Obj) -> list[Key]:
        meta = obj.get("metadata") or {}
        for ref in meta.get("ownerReferences") or ():
            if (
                ref.get("controller")
                and ref.get("kind") == kind
                and _group(ref.get("apiVersion", "")) == group
            ):
                return [Key((meta.get("namespace") or "") if namespaced else "", ref["name"])]
        return []

    return mapper


def by_label(label: str) -> Mapper:
    """Mapper: the object in the same namespace whose name is the value of label ``label``."""

    def mapper(obj: Obj) -> list[Key]:
        meta = obj.get("metadata") or {}
        name = (meta.get("labels") or {}).get(label)
        return [Key(meta.get("namespace") or "", name)] if name else []

    return mapper


class Controller:
    """Reconciles keys with ``workers`` concurrent workers; one key is never reconciled twice at once.

    A reconcile that raises is retried with the key's exponential back-off (``backoff_base`` doubling
    up to ``backoff_max`` seconds), also limited overall by a token bucket of ``qps``/``burst``; a
    429's ``Retry-After`` is honoured. ``Result(requeue_after=s)`` reconciles the key again after ``s``.
    """

    def __init__(
        self,
        name: str,
        reconcile: Reconcile,
        *,
        workers: int = 1,
        backoff_base: float = 0.005,
        backoff_max: float = 1000.0,
        qps: float = 10.0,
        burst: int = 100,
    ) -> None:
        if workers < 1:
            raise ValueError("workers must be >= 1")
        self.name = name
        self._reconcile = reconcile
        self._workers = workers
        self._backoff_base = backoff_base
        self._backoff_max = backoff_max
        self._qps = qps
        self._burst = burst
        self._new_queue()  # validates the limits now rather than at the first run
        self._watches: list[_Watch] = []
        self._reads: list[Informer] = []
        self._seeds: list[Key] = []
        self._queue: WorkQueue[Key] | None = None
        self.reconciles = 0
        """Reconciles run so far (successful or not)."""
        self.errors = 0
        """Reconciles that raised."""

    @property
    def informers(self) -> list[Informer]:
        """Every informer this controller depends on: those it watches and those it reads."""
        found: list[Informer] = []
        for informer in [watch.informer for watch in self._watches] + self._reads:
            if informer not in found:
                found.append(informer)
        return found

    def reads(self, *informers: Informer) -> None:
        """Reconciles read these informers' stores: wait for them to sync before the first one."""
        for informer in informers:
            if informer not in self._reads:
                self._reads.append(informer)

    def seed(self, *keys: Key) -> None:
        """Reconcile these keys at the start of every run, whatever the informers hold (a periodic
        controller with no object of its own: one key that its reconcile requeues)."""
        self._seeds += [key for key in keys if key not in self._seeds]

    @property
    def queue(self) -> WorkQueue[Key] | None:
        """The work queue while the controller runs (it is made afresh for every run)."""
        return self._queue

    def watch(
        self,
        informer: Informer,
        mapper: Mapper = own_key,
        *,
        coalesce: float = 0.0,
        urgent: EventFilter | None = None,
    ) -> None:
        """Reconcile the keys ``mapper`` gives for every object of ``informer`` that changes: at once,
        or with ``coalesce`` > 0 within that many seconds (one pass for a burst), except for the events
        ``urgent`` picks (at once)."""
        self._watches.append(_Watch(informer, mapper, coalesce, urgent))

    def owns(
        self,
        informer: Informer,
        *,
        kind: str,
        group: str = "",
        coalesce: float = 0.0,
        urgent: EventFilter | None = None,
    ) -> None:
        """Reconcile the controller owner (a ``kind`` in API ``group``) of every object that changes
        (``coalesce``, ``urgent``: as :meth:`watch`)."""
        self.watch(informer, controller_owner(kind, group), coalesce=coalesce, urgent=urgent)

    def enqueue(self, key: Key, *, after: float = 0.0) -> None:
        """Ask for a reconcile of ``key`` from outside (e.g. a webhook); ignored while not running."""
        if self._queue is not None:
            self._queue.add_after(key, after)

    async def run(self) -> None:
        """Runs until :meth:`shutdown` (returns once in-flight reconciles finish) or cancellation."""
        queue = self._new_queue()
        self._queue = queue
        removers = [
            watch.informer.add_handler(functools.partial(self._on_event, queue, watch))
            for watch in self._watches
        ]
        try:
            for informer in self.informers:
                await informer.wait_synced()
            # Events seen before this run (e.g. while another replica led) were not queued: start with
            # everything, as a resync would.
            for watch in self._watches:
                for obj in watch.informer.store:
                    self._add(queue, watch.mapper, obj)
            for key in self._seeds:
                queue.add(key)
            async with asyncio.TaskGroup() as group:
                for index in range(self._workers):
                    group.create_task(self._work(queue), name=f"{self.name}-worker-{index}")
        finally:
            for remove in removers:
                remove()
            queue.shutdown()
            self._queue = None

    def _new_queue(self) -> WorkQueue[Key]:
        bucket = TokenBucket(self._qps, self._burst)
        return WorkQueue(RateLimiter(base=self._backoff_base, max=self._backoff_max, bucket=bucket))

    def shutdown(self) -> None:
        """Stop taking keys; running reconciles finish, then :meth:`run` returns."""
        if self._queue is not None:
            self._queue.shutdown()

    def _on_event(self, queue: WorkQueue[Key], watch: _Watch, event: InformerEvent) -> None:
        window = watch.coalesce
        if window > 0 and watch.urgent is not None:
            try:
                if watch.urgent(event):
                    window = 0.0
            except Exception as exc:
                logger.error(
                    "%s: urgency filter %r failed: %s", self.name, watch.urgent, describe_exception(exc)
                )
                window = 0.0
        self._add(queue, watch.mapper, event.obj, window)
        if event.type is EventType.MODIFIED and event.old is not None:
            self._add(queue, watch.mapper, event.old, window)

    def _add(self, queue: WorkQueue[Key], mapper: Mapper, obj: Obj, window: float = 0.0) -> None:
        try:
            keys = list(mapper(obj))
        except Exception as exc:
            logger.error(
                "%s: mapper %r failed on %s: %s", self.name, mapper, Key.of(obj), describe_exception(exc)
            )
            return
        for key in keys:
            queue.add_coalesced(key, window)

    async def _work(self, queue: WorkQueue[Key]) -> None:
        while True:
            try:
                key = await queue.get()
            except ShutDown:
                return
            try:
                await self._process(queue, key)
            finally:
                queue.done(key)

    async def _process(self, queue: WorkQueue[Key], key: Key) -> None:
        self.reconciles += 1
        try:
            result = await self._reconcile(key)
        except Exception as exc:
            self.errors += 1
            retry_after = exc.retry_after if isinstance(exc, ApiError) else None
            delay = queue.rate_limiter.when(key, asyncio.get_running_loop().time())
            delay = max(delay, retry_after or 0.0)
            if isinstance(exc, Conflict):
                # Routine under optimistic concurrency: the next reconcile reads fresh state.
                logger.info("%s: reconcile %s: %s; retrying in %.3gs", self.name, key, exc, delay)
            else:
                logger.error(
                    "%s: reconcile %s failed (attempt %d), retrying in %.3gs: %s",
                    self.name,
                    key,
                    queue.failures(key),
                    delay,
                    describe_exception(exc, with_traceback=not isinstance(exc, ApiError)),
                )
            queue.add_after(key, delay)
            return
        if result is not None and result.requeue:
            queue.add_rate_limited(key)
            return
        queue.forget(key)
        if result is not None and result.requeue_after is not None:
            queue.add_after(key, result.requeue_after)
