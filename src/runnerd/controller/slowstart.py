"""Slow-start batches: create many children concurrently without flooding a failing API server.

:func:`create_in_batches` runs ``count`` creations in batches of 1, 2, 4, ... (at most
:data:`MAX_BATCH`), as Kubernetes' ReplicaSet controller does. Each batch runs concurrently and is
awaited whole; the first failure (in the batch's order) is raised once its batch is done and no
further batch starts, so a failing API server costs one call, not ``count``, and the caller's
next reconcile retries what is still missing.

Contract with the caller's ``create_one``: it draws its child's name and records it in
:class:`~runnerd.controller.expectations.Expectations` before it sends the create, and cancels
that expectation only when the server refused the create. Then creations still in flight when
another fails, or when the controller is stopped, are counted by the next reconcile (from the
expectations, or from the informer after a restart): the count never exceeds the desired one.
Used by the RunnerReplicaSet (:mod:`runnerd.controller.runnerreplicaset`) and EphemeralRunnerSet
(:mod:`runnerd.controller.ephemeralrunnerset`) controllers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

MAX_BATCH = 64
"""Children created at once (the last slow-start batch size)."""


async def create_in_batches(
    count: int, create_one: Callable[[], Awaitable[None]], *, max_batch: int = MAX_BATCH
) -> None:
    """Call ``create_one`` ``count`` times in slow-start batches; raise the first failure after
    its batch (the batches after it never start)."""
    batch = 1
    while count > 0:
        n = min(batch, count, max_batch)
        results = await asyncio.gather(*(create_one() for _ in range(n)), return_exceptions=True)
        count -= n
        for result in results:
            if isinstance(result, BaseException):
                raise result
        batch *= 2


__all__ = ["MAX_BATCH", "create_in_batches"]
