"""Slow-start batches: create many children concurrently without flooding a failing API server.

:func:`create_in_batches` runs ``count`` creations in batches of 1, 2, 4, ... (at most
:data:`MAX_BATCH`), as Kubernetes' ReplicaSet controller does. Each batch runs concurrently and is
awaited whole; the first failure (in the batch's order) is raised once its batch is done and no
further batch starts, so a failing API server costs one call, not ``count``, and the caller's
next reconcile retries what is still missing.

:class:`SlowStart` remembers, per parent, where the slow start of its last round got to: a burst
reaches a replica set as a series of reconciles (each group of webhook deliveries raises the
desired count a little), and each round starting again at 1 costs a round trip per doubling. While
a parent's creations succeed, its next round within :data:`SLOW_START_MEMORY` seconds starts at the
batch size the last one would have used next; a failure (or a pause longer than that) starts it
over at 1. So a failing API server costs at most one batch of :data:`MAX_BATCH` calls after a run
of successes, then one call per round again.

Contract with the caller's ``create_one``: it draws its child's name and records it in
:class:`~runnerd.controller.expectations.Expectations` before it sends the create, and cancels
that expectation only when the server refused the create. Then creations still in flight when
another fails, or when the controller is stopped, are counted by the next reconcile (from the
expectations, or from the informer after a restart): the count never exceeds the desired one.
Used by the RunnerReplicaSet (:mod:`runnerd.controller.runnerreplicaset`) and EphemeralRunnerSet
(:mod:`runnerd.controller.ephemeralrunnerset`) controllers.

Both record a round's creations as one ``RunnersCreated`` Event on the set
(:func:`record_created`: how many, and the first names, Kubernetes' correlator style) instead of
an Event on each runner, which repeated what the pod itself shows and cost the API server one
write per runner in a burst (issue #10, fifth pass).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from typing import Any

from runnerd.runtime import EventRecorder

MAX_BATCH = 64
"""Children created at once (the last slow-start batch size)."""
SLOW_START_MEMORY = 30.0
"""Seconds a parent's reached batch size is remembered after its last successful round."""
MAX_PARENTS = 4096
"""Parents remembered at most (the oldest are dropped first: they start again at 1)."""
CREATED_NAMES_SHOWN = 10
"""Runner names a ``RunnersCreated`` Event lists (the rest are counted)."""


def created_message(names: Sequence[str]) -> str:
    """The message of a round's one ``RunnersCreated`` Event: how many, and the first names."""
    shown = ", ".join(names[:CREATED_NAMES_SHOWN])
    more = len(names) - CREATED_NAMES_SHOWN
    rest = f" and {more} more" if more > 0 else ""
    return f"created {len(names)} runner(s), each with its pod to come: {shown}{rest}"


async def record_created(recorder: EventRecorder, obj: Mapping[str, Any], names: Sequence[str]) -> None:
    """The round's ``RunnersCreated`` Event on the set ``obj``, when it created any runner (never
    raises: the recorder logs its failures)."""
    if names:
        await recorder.normal(obj, "RunnersCreated", created_message(names))


async def create_in_batches(
    count: int, create_one: Callable[[], Awaitable[None]], *, max_batch: int = MAX_BATCH, first: int = 1
) -> int:
    """Call ``create_one`` ``count`` times in slow-start batches from ``first``; raise the first
    failure after its batch (the batches after it never start). Returns the batch size the slow
    start would use next (at most ``max_batch``)."""
    batch = max(1, min(first, max_batch))
    while count > 0:
        n = min(batch, count, max_batch)
        results = await asyncio.gather(*(create_one() for _ in range(n)), return_exceptions=True)
        count -= n
        for result in results:
            if isinstance(result, BaseException):
                raise result
        batch = min(batch * 2, max_batch)
    return batch


class SlowStart:
    """:func:`create_in_batches` per parent, each round starting where the parent's last successful
    round left off (see the module docstring)."""

    def __init__(
        self,
        *,
        max_batch: int = MAX_BATCH,
        memory: float = SLOW_START_MEMORY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_batch = max_batch
        self.memory = memory
        self.clock = clock
        self._reached: dict[Hashable, tuple[int, float]] = {}  # parent -> (next batch, when)

    def first_batch(self, parent: Hashable) -> int:
        """The batch size ``parent``'s next round starts at."""
        reached = self._reached.get(parent)
        if reached is None or self.clock() - reached[1] > self.memory:
            return 1
        return reached[0]

    async def create(self, parent: Hashable, count: int, create_one: Callable[[], Awaitable[None]]) -> None:
        """``count`` creations for ``parent``; raises the first failure (see :func:`create_in_batches`)."""
        if count <= 0:
            return
        try:
            reached = await create_in_batches(
                count, create_one, max_batch=self.max_batch, first=self.first_batch(parent)
            )
        except BaseException:
            self._reached.pop(parent, None)
            raise
        self._reached.pop(parent, None)  # re-inserted last: the dict stays in order of use
        self._reached[parent] = (reached, self.clock())
        while len(self._reached) > MAX_PARENTS:
            del self._reached[next(iter(self._reached))]

    def forget(self, parent: Hashable) -> None:
        self._reached.pop(parent, None)


__all__ = [
    "CREATED_NAMES_SHOWN",
    "MAX_BATCH",
    "SLOW_START_MEMORY",
    "SlowStart",
    "create_in_batches",
    "created_message",
    "record_created",
]
