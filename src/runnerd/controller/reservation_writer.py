"""Writes of HRA capacity reservations: conditional, serialised and batched per HRA.

:class:`ReservationWriter` makes the write of :mod:`runnerd.controller.reservations` safe and fast
under bursts. Every write is conditional:
the first one (no list yet) is a merge patch with the HRA's ``resourceVersion`` as precondition,
later ones a JSON patch that ``test``s the list it read before it ``replace``s it, so a concurrent
change of the reservations fails the write (409/422) and it is redone on a fresh read, while the HRA
controller's status writes, which move the ``resourceVersion`` on every scale, do not. And group
commit per HRA: while one patch is in flight, further events for that HRA queue up and go out
together in the next patch. There is no batching delay (ARC waits 3 s) and nothing is lost (ARC's
unconditional merge patches can overwrite each other).
After each write the HRA controller gets the written object and the key, so it scales the target at
once instead of waiting for a sync period (in the leader; elsewhere the enqueue is a no-op).

With a :class:`~runnerd.controller.journal.ReservationJournal` (the default; not with
``--no-reservation-journal``) a commit does not write the HRA: it decides each event on the HRA's
list with the unfolded journal entries applied and records the changes as one journal entry (a
ConfigMap create, which nothing else conflicts with); the leader folds the entries into the HRA
(see :mod:`runnerd.controller.journal`). Either way a commit decides its group of events in one
pass over the list (:func:`~runnerd.reconcile.reservations.apply_workflow_job_events`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from runnerd.api import CapacityReservation
from runnerd.controller.common import HORIZONTAL_RUNNER_AUTOSCALERS
from runnerd.controller.journal import ReservationJournal
from runnerd.controller.targets import TargetResolver
from runnerd.kube.client import KubeClient
from runnerd.reconcile.journal import JournalOp
from runnerd.reconcile.matching import workflow_job_trigger
from runnerd.reconcile.reservations import JobDelivery, Outcome, apply_workflow_job_events, job_of
from runnerd.runtime import ApiError, Conflict, Informer, Invalid, Key, NotFound, Obj
from runnerd.web.metrics import Metrics


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def newer(a: Obj | None, b: Obj | None) -> Obj | None:
    """The later of two versions of one object (resourceVersions compared as etcd revisions)."""
    if a is None or b is None:
        return a or b
    va = str((a.get("metadata") or {}).get("resourceVersion") or "")
    vb = str((b.get("metadata") or {}).get("resourceVersion") or "")
    try:
        return a if int(va) >= int(vb) else b
    except ValueError:
        return b  # opaque versions: trust the informer


@dataclass(frozen=True)
class JobOp:
    action: Literal["queued", "completed"]
    job_id: int
    conclusion: str | None = None
    runner_id: int | None = None
    repository: str | None = None


FINISHED_MEMORY = 100_000
"""Finished job ids each writer remembers (a late ``queued`` for one of them reserves nothing)."""


class FinishedJobs:
    """Job ids that finished, oldest forgotten first: the markers kept outside the HRA."""

    def __init__(self, size: int = FINISHED_MEMORY) -> None:
        self._size = size
        self._ids: dict[int, None] = {}

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, job_id: int) -> None:
        self._ids.pop(job_id, None)
        self._ids[job_id] = None
        while len(self._ids) > self._size:
            del self._ids[next(iter(self._ids))]


@dataclass(frozen=True)
class OpResult:
    update: Outcome | None  # None: not applied (see reason)
    reason: str

    @property
    def delta(self) -> int:
        return self.update.delta if self.update is not None else 0


class ReservationWriter:
    """Serialised, batched, conditional writes of HRA capacity reservations (see the module docstring)."""

    def __init__(
        self,
        kube: KubeClient,
        hras: Informer,
        resolver: TargetResolver,
        *,
        metrics: Metrics | None = None,
        clock: Callable[[], dt.datetime] = utcnow,
        on_written: Callable[[Key, Obj], None] | None = None,
        max_attempts: int = 10,
    ) -> None:
        self.kube = kube
        self.hras = hras
        self.resolver = resolver
        self.metrics = metrics
        self.clock = clock
        self.on_written = on_written
        self.max_attempts = max_attempts
        self.journal: ReservationJournal | None = None
        """Set: commits go to the journal, the leader folds them into the HRA."""
        self.on_journaled: Callable[[Key], None] | None = None
        self._pending: dict[Key, list[tuple[JobOp, asyncio.Future[OpResult]]]] = {}
        self._drainers: dict[Key, asyncio.Task[None]] = {}
        self._latest: dict[Key, Obj] = {}
        self.finished = FinishedJobs()
        self.writes = 0
        self.conflicts = 0
        self.batch_sizes: list[int] = []
        """Events per write (bounded; for the benchmark)."""
        self.patch_seconds: list[float] = []
        """Duration of each reservation PATCH (bounded; for the benchmark)."""

    async def apply(self, key: Key, op: JobOp) -> OpResult:
        future: asyncio.Future[OpResult] = asyncio.get_running_loop().create_future()
        self._pending.setdefault(key, []).append((op, future))
        if key not in self._drainers:
            self._drainers[key] = asyncio.create_task(self._drain(key), name=f"reservations-{key}")
        return await future

    def latest(self, key: Key) -> Obj | None:
        """The freshest version of the HRA this process knows (its own last write or the cache)."""
        return newer(self._latest.get(key), self.hras.store.get(key))

    def remember(self, key: Key, obj: Obj) -> None:
        """A version of the HRA this process wrote elsewhere (the journal's fold)."""
        self._latest[key] = obj

    async def close(self) -> None:
        tasks = list(self._drainers.values())
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        for batch in self._pending.values():
            for _, future in batch:
                future.cancel()
        self._pending.clear()

    async def _drain(self, key: Key) -> None:
        try:
            while self._pending.get(key):
                batch = self._pending.pop(key)
                try:
                    results = await self._commit(key, [op for op, _ in batch])
                except Exception as exc:
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (_, future), result in zip(batch, results, strict=True):
                    if not future.done():
                        future.set_result(result)
        finally:
            self._drainers.pop(key, None)

    def _count(self, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.reservation_writes.labels(outcome).inc()

    async def _commit(self, key: Key, ops: Sequence[JobOp]) -> list[OpResult]:
        """Apply ``ops`` to the HRA's reservations in one conditional write, redone on a fresh read
        after a conflict (at most ``max_attempts`` times); with a journal, one journal entry."""
        if self.journal is not None:
            return await self._journal_commit(self.journal, key, ops)
        obj = self.latest(key)
        for _ in range(self.max_attempts):
            if obj is None:
                try:
                    obj = await self.kube.get(
                        HORIZONTAL_RUNNER_AUTOSCALERS, key.name, namespace=key.namespace
                    )
                except NotFound:
                    return [OpResult(None, f"{key} no longer exists")] * len(ops)
            applied = self._apply_ops(key, obj, ops)
            if isinstance(applied, str):
                return [OpResult(None, applied)] * len(ops)
            reservations, results, changed = applied
            if not changed:
                return results
            started = time.monotonic()
            try:
                written = await self._patch(key, obj, [r.to_dict() for r in reservations])
            except (Conflict, Invalid):
                self.conflicts += 1
                self._count("conflict")
                self._latest.pop(key, None)
                obj = None  # read it again
                continue
            except NotFound:
                return [OpResult(None, f"{key} no longer exists")] * len(ops)
            except ApiError:
                self._count("failed")
                raise
            self._written(key, written, len(ops), time.monotonic() - started)
            return results
        self._count("failed")
        raise Conflict(
            409, "Conflict", f"{key}: capacity reservations changed {self.max_attempts} times while writing"
        )

    async def _journal_commit(
        self, journal: ReservationJournal, key: Key, ops: Sequence[JobOp]
    ) -> list[OpResult]:
        """Decide ``ops`` on the HRA's list with the unfolded entries applied; journal the changes."""
        obj = self.latest(key)
        if obj is None:
            try:
                obj = await self.kube.get(HORIZONTAL_RUNNER_AUTOSCALERS, key.name, namespace=key.namespace)
            except NotFound:
                return [OpResult(None, f"{key} no longer exists")] * len(ops)
        hra = self.resolver.parse_hra(obj)
        if hra is None:
            return [OpResult(None, f"{key} does not parse")] * len(ops)
        base = journal.reservations(key, obj, hra.spec.capacity_reservations)
        applied = self._apply_ops(key, obj, ops, base)
        if isinstance(applied, str):
            return [OpResult(None, applied)] * len(ops)
        reservations, results, _ = applied
        changes = journal_ops(ops, results, reservations)
        if not changes:
            return results
        started = time.monotonic()
        try:
            await journal.append(key, obj, changes)
        except ApiError:
            self._count("failed")
            raise
        self.writes += 1
        self._count("written")
        if len(self.patch_seconds) < 100_000:
            self.patch_seconds.append(time.monotonic() - started)
            self.batch_sizes.append(len(ops))
        if self.on_journaled is not None:
            self.on_journaled(key)
        return results

    def _apply_ops(
        self, key: Key, obj: Obj, ops: Sequence[JobOp], base: Sequence[CapacityReservation] | None = None
    ) -> tuple[tuple[CapacityReservation, ...], list[OpResult], bool] | str:
        """The HRA's reservations (or ``base``) after ``ops`` (one pass over the list for the group,
        :func:`~runnerd.reconcile.reservations.apply_workflow_job_events`), each op's result, and
        whether the list changed; or why the ops cannot apply to this HRA."""
        hra = self.resolver.parse_hra(obj)
        if hra is None:
            return f"{key} does not parse"
        trigger = workflow_job_trigger(hra.spec)
        if trigger is None:
            return f"{key} has no workflowJob trigger"
        reservations = tuple(hra.spec.capacity_reservations if base is None else base)
        skipped: dict[int, str] = {}  # ops not applied: a queued for a job that finished
        deliveries: list[JobDelivery] = []
        completed: set[int] = set()
        for i, op in enumerate(ops):
            if op.action == "queued" and (op.job_id in self.finished or op.job_id in completed):
                skipped[i] = f"job {op.job_id} queued after it finished: no reservation"
                continue
            if op.action == "completed":
                completed.add(op.job_id)
            deliveries.append(JobDelivery(op.action, op.conclusion, op.runner_id, op.job_id, op.repository))
        batch = apply_workflow_job_events(
            reservations,
            deliveries,
            self.clock(),
            trigger.effective_duration,
            hra.spec.max_replicas,
            keep_markers=False,
        )
        for op in ops:
            if op.action == "completed":
                self.finished.add(op.job_id)
        outcomes = iter(batch.outcomes)
        results = [
            OpResult(Outcome(False, 0, 0, 0, skipped[i]), skipped[i])
            if i in skipped
            else OpResult(o := next(outcomes), o.reason)
            for i in range(len(ops))
        ]
        return batch.reservations, results, batch.changed

    async def _patch(self, key: Key, obj: Obj, new: list[dict[str, Any]]) -> Obj:
        """Write ``new`` as the HRA's reservations, on condition that they did not change since ``obj``."""
        old = (obj.get("spec") or {}).get("capacityReservations")
        if isinstance(old, list):
            # Conditional on the list itself: the HRA controller's status writes (which move the
            # resourceVersion on every scale) do not make this write fail.
            return await self.kube.patch(
                HORIZONTAL_RUNNER_AUTOSCALERS,
                key.name,
                [
                    {"op": "test", "path": "/spec/capacityReservations", "value": old},
                    {"op": "replace", "path": "/spec/capacityReservations", "value": new},
                ],
                namespace=key.namespace,
                patch_type="json",
            )
        version = str((obj.get("metadata") or {}).get("resourceVersion") or "")
        return await self.kube.patch(
            HORIZONTAL_RUNNER_AUTOSCALERS,
            key.name,
            {"spec": {"capacityReservations": new}},
            namespace=key.namespace,
            resource_version=version or None,
        )

    def _written(self, key: Key, written: Obj, ops: int, seconds: float) -> None:
        self.writes += 1
        self._count("written")
        if len(self.patch_seconds) < 100_000:
            self.patch_seconds.append(seconds)
            self.batch_sizes.append(ops)
        self._latest[key] = written
        if len(self._latest) > 4096:
            self._latest.clear()
        if self.on_written is not None:
            self.on_written(key, written)


def journal_ops(
    ops: Sequence[JobOp], results: Sequence[OpResult], reservations: Sequence[CapacityReservation]
) -> list[JournalOp]:
    """What a commit journals: every ``completed`` (it may name a job this process has not seen),
    and every ``queued`` that reserved, with its reservation's times."""
    out: list[JournalOp] = []
    by_job = {job: r for r in reservations if (job := job_of(r)) is not None}
    for op, result in zip(ops, results, strict=True):
        if result.update is None:
            continue
        if op.action == "completed":
            out.append(JournalOp("completed", op.job_id, op.repository))
            continue
        held = by_job.get(op.job_id)
        if result.delta > 0 and held is not None:
            out.append(
                JournalOp("queued", op.job_id, op.repository, held.effective_time, held.expiration_time)
            )
    return out
