"""Leader election on a ``coordination.k8s.io/v1`` Lease, with client-go's semantics.

* A candidate reads the Lease every ``retry_period``. It takes the Lease when nobody holds it, or
  when the holder has not renewed it for ``leaseDurationSeconds`` *as measured by the candidate's own
  clock since it last saw the record change* (clocks of different machines are never compared). Every
  write is conditional on the ``resourceVersion`` read, so two candidates cannot both win.
* The leader renews every ``retry_period``. If it has not renewed successfully within
  ``renew_deadline`` of the start of its last successful renewal, it stops leading: it cancels the
  work it runs and waits for it to end. ``renew_deadline < lease_duration``, and others measure the
  lease duration from when they saw that same renewal (which is later), so the old leader has stopped
  acting before anyone else may start.
* When the work ends by itself (graceful shutdown), the leader releases the Lease (empty holder,
  duration 1 s) so that a successor takes over at its next retry instead of after a lease duration.

Identities must be unique per process (e.g. pod name plus a random suffix).
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
from collections.abc import Callable, Coroutine
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from runnerd.runtime.errors import AlreadyExists, Conflict
from runnerd.runtime.protocols import LeaseClient
from runnerd.runtime.redact import describe_exception
from runnerd.runtime.types import LeaseRecord

logger = logging.getLogger(__name__)

JITTER = 1.2
"""Candidates wait ``retry_period * (1 + up to JITTER)`` between attempts, like client-go."""


class LeadershipLost(Exception):
    """The leader could not renew its Lease in time (or someone else holds it); its work was cancelled."""


def utcnow() -> datetime:
    return datetime.now(UTC)


class LeaderElector:
    """Campaigns for a Lease and runs work only while holding it. See the module docstring."""

    def __init__(
        self,
        client: LeaseClient,
        *,
        namespace: str,
        name: str,
        identity: str,
        lease_duration: float = 15.0,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
        wall_clock: Callable[[], datetime] = utcnow,
    ) -> None:
        if not identity:
            raise ValueError("identity must not be empty")
        if not lease_duration > renew_deadline > retry_period > 0:
            raise ValueError("need lease_duration > renew_deadline > retry_period > 0")
        self._client = client
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self._wall_clock = wall_clock
        self._observed: LeaseRecord | None = None
        self._observed_at = 0.0
        self._leading = False
        self.transitions = 0
        """How many times this elector became leader."""

    @property
    def is_leader(self) -> bool:
        return self._leading

    @property
    def leader(self) -> str:
        """The holder of the Lease as last observed ("" if none)."""
        return self._observed.holder_identity if self._observed else ""

    async def run(self, lead: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Waits to become leader, then runs ``lead()`` while renewing the Lease.

        Returns after ``lead()`` returns, having released the Lease. Raises :class:`LeadershipLost`
        (after cancelling ``lead()`` and waiting for it) if the Lease could not be kept. An exception
        from ``lead()`` is re-raised, also after releasing the Lease.
        """
        try:
            renewed_at = await self._acquire()
        except asyncio.CancelledError:
            await self._release()  # the try that was cancelled may have won the Lease just before
            raise
        self._leading = True
        self.transitions += 1
        logger.info("leader election %s/%s: %s became leader", self.namespace, self.name, self.identity)
        work = asyncio.create_task(lead(), name=f"lead-{self.name}")
        keep = asyncio.create_task(self._keep(renewed_at), name=f"renew-{self.name}")
        lost = False
        try:
            await asyncio.wait({work, keep}, return_when=asyncio.FIRST_COMPLETED)
            lost = not work.done()
        finally:
            # Stop acting first (lost, or cancelled ourselves), then stop renewing.
            self._leading = False
            if not work.done():
                work.cancel()
                await asyncio.wait({work})
            keep.cancel()
            await asyncio.wait({keep})
            if not lost:
                await self._release()
        if lost:
            raise LeadershipLost(f"{self.identity} lost the lease {self.namespace}/{self.name}")
        work.result()

    async def _acquire(self) -> float:
        """Tries every ``retry_period`` (jittered) until the Lease is ours; returns when that try began."""
        while True:
            started = asyncio.get_running_loop().time()
            if await self._try():
                return started
            await asyncio.sleep(self.retry_period * (1.0 + random.uniform(0.0, JITTER)))

    async def _keep(self, renewed_at: float) -> None:
        """Renews every ``retry_period``; returns when the renew deadline has passed without success."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.retry_period)
            while True:
                started = loop.time()
                remaining = renewed_at + self.renew_deadline - started
                if remaining <= 0:
                    logger.error(
                        "leader election %s/%s: %s failed to renew within %ss; stepping down",
                        self.namespace,
                        self.name,
                        self.identity,
                        self.renew_deadline,
                    )
                    return
                try:
                    async with asyncio.timeout(remaining):
                        renewed = await self._try()
                except TimeoutError:
                    renewed = False
                if renewed:
                    renewed_at = started
                    break
                if self.leader and self.leader != self.identity:
                    logger.error(
                        "leader election %s/%s: %s now holds the lease; %s steps down",
                        self.namespace,
                        self.name,
                        self.leader,
                        self.identity,
                    )
                    return
                await asyncio.sleep(
                    min(self.retry_period, max(0.0, renewed_at + self.renew_deadline - loop.time()))
                )

    async def _try(self) -> bool:
        """One attempt to acquire or renew. True if the Lease is now ours."""
        loop = asyncio.get_running_loop()
        now = self._wall_clock()
        duration = math.ceil(self.lease_duration)
        try:
            current = await self._client.get(self.namespace, self.name)
            if current is None:
                record = LeaseRecord(self.identity, duration, now, now, 0)
                self._observe(await self._client.create(self.namespace, self.name, record), loop.time())
                return True
            if self._observed is None or current.resource_version != self._observed.resource_version:
                self._observe(current, loop.time())
            holder = current.holder_identity
            if holder and holder != self.identity:
                if self._observed_at + current.lease_duration_seconds > loop.time():
                    return False  # held, and not expired by our clock
                logger.info(
                    "leader election %s/%s: lease of %s expired; %s takes over",
                    self.namespace,
                    self.name,
                    holder,
                    self.identity,
                )
            ours = holder == self.identity
            record = replace(
                current,
                holder_identity=self.identity,
                lease_duration_seconds=duration,
                acquire_time=current.acquire_time if ours else now,
                renew_time=now,
                lease_transitions=current.lease_transitions if ours else current.lease_transitions + 1,
            )
            self._observe(await self._client.update(self.namespace, self.name, record), loop.time())
            return True
        except (Conflict, AlreadyExists) as exc:
            logger.debug("leader election %s/%s: lost a race: %s", self.namespace, self.name, exc)
            return False
        except Exception as exc:
            logger.warning(
                "leader election %s/%s: error: %s", self.namespace, self.name, describe_exception(exc)
            )
            return False

    def _observe(self, record: LeaseRecord, at: float) -> None:
        self._observed = record
        self._observed_at = at

    async def _release(self) -> None:
        """Gives the Lease up, if it is ours, so a successor need not wait for it to expire."""
        try:
            async with asyncio.timeout(self.retry_period):
                current = await self._client.get(self.namespace, self.name)
                if current is None or current.holder_identity != self.identity:
                    return
                now = self._wall_clock()
                record = replace(
                    current, holder_identity="", lease_duration_seconds=1, acquire_time=now, renew_time=now
                )
                released = await self._client.update(self.namespace, self.name, record)
            self._observe(released, asyncio.get_running_loop().time())
        except Exception as exc:
            logger.warning(
                "leader election %s/%s: could not release the lease: %s",
                self.namespace,
                self.name,
                describe_exception(exc),
            )
        else:
            logger.info(
                "leader election %s/%s: %s released the lease", self.namespace, self.name, self.identity
            )
