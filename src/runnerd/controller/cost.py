"""The cost ledger's writer: folds runner facts into the ledger ConfigMap, conditionally.

Design: docs/gpu-sizing.md, "Cost". Only the leader runs :meth:`CostLedgerWriter.run`; it is not
wired into ``controller/app.py`` yet (that file's "Wiring" entry in docs/gpu-sizing.md has the call).

Guarantees:

* **No double counting.** Every write is a read of the ConfigMap, a pure
  :func:`~runnerd.reconcile.cost.fold` of the current facts into what it holds, and a write with the
  read ``resourceVersion`` as precondition (a create when there is none). On a conflict (another
  writer, e.g. the old leader, wrote in between) the pass starts again from a fresh read. Because
  ``fold`` is idempotent per runner pod ``uid``, folding facts that the other writer already counted
  adds nothing, and a new leader whose clock is behind adds nothing either.
* **Nothing lost on a restart** beyond the last interval of a runner whose pod was deleted while no
  leader ran (the ledger remembers, per running pod, the second it was counted up to).
* **A ledger it cannot read is never overwritten**: :class:`LedgerUnreadable` is raised (and ``run``
  logs it and tries again next interval), so a bad edit by hand cannot silently reset the totals.
* Writes happen every ``interval_s`` and at once after :meth:`CostLedgerWriter.poke` (a runner
  finished); one pass at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from runnerd.kube.client import KubeClient
from runnerd.kube.resources import CONFIGMAPS
from runnerd.reconcile.cost import (
    LEDGER_CONFIGMAP,
    CardinalityLimits,
    Ledger,
    PriceTable,
    RunnerFacts,
    fold,
    ledger_configmap,
    read_ledger_configmap,
)
from runnerd.runtime import AlreadyExists, Conflict, NotFound, Obj

logger = logging.getLogger(__name__)

FactsSource = Callable[[], tuple[Sequence[RunnerFacts], Collection[str]]]
"""Returns the facts of every runner pod seen now and the uids of the pods that still exist."""


class LedgerUnreadable(RuntimeError):
    """The ledger ConfigMap exists but cannot be parsed; it is left as it is."""


class WriteConflicts(RuntimeError):
    """Every attempt of one pass lost its conditional write."""


class ConfigMaps(Protocol):
    """What the writer needs of the API server (a fake in the tests, :class:`KubeConfigMaps` live)."""

    async def get(self, namespace: str, name: str) -> Obj | None: ...

    async def create(self, namespace: str, body: Obj) -> Obj:
        """Raises ``AlreadyExists`` if it exists."""
        ...

    async def replace(self, body: Obj) -> Obj:
        """Raises ``Conflict`` if ``metadata.resourceVersion`` is not the stored one."""
        ...


class KubeConfigMaps:
    def __init__(self, kube: KubeClient) -> None:
        self._kube = kube

    async def get(self, namespace: str, name: str) -> Obj | None:
        try:
            return await self._kube.get(CONFIGMAPS, name, namespace=namespace)
        except NotFound:
            return None

    async def create(self, namespace: str, body: Obj) -> Obj:
        return await self._kube.create(CONFIGMAPS, body, namespace=namespace)

    async def replace(self, body: Obj) -> Obj:
        return await self._kube.replace(CONFIGMAPS, body)


@dataclass
class CostLedgerWriter:
    store: ConfigMaps
    namespace: str
    prices: PriceTable
    limits: CardinalityLimits = field(default_factory=CardinalityLimits)
    name: str = LEDGER_CONFIGMAP
    clock: Callable[[], float] = time.time
    attempts: int = 5
    _poked: asyncio.Event = field(default_factory=asyncio.Event, init=False, repr=False)

    async def write(self, runners: Sequence[RunnerFacts], live_uids: Collection[str]) -> Ledger:
        """One pass: read, fold, conditional write; again from a fresh read on a conflict."""
        for _ in range(self.attempts):
            current = await self.store.get(self.namespace, self.name)
            try:
                ledger = read_ledger_configmap(current)[0] if current is not None else Ledger()
            except ValueError as e:
                raise LedgerUnreadable(f"{self.namespace}/{self.name}: {e}") from None
            new = fold(ledger, runners, live_uids, int(self.clock()), self.limits)
            version = None if current is None else (current.get("metadata") or {}).get("resourceVersion")
            body = ledger_configmap(
                self.namespace, new, self.prices, name=self.name, resource_version=version
            )
            try:
                if current is None:
                    await self.store.create(self.namespace, body)
                else:
                    await self.store.replace(body)
            except (Conflict, AlreadyExists):
                logger.debug("cost ledger %s/%s changed meanwhile; folding again", self.namespace, self.name)
                continue
            return new
        raise WriteConflicts(f"{self.namespace}/{self.name}: {self.attempts} conflicting writes in a row")

    def poke(self) -> None:
        """Write soon (a runner finished)."""
        self._poked.set()

    async def run(self, source: FactsSource, *, interval_s: float = 60.0) -> None:
        """Write every ``interval_s`` and after each :meth:`poke`, until cancelled."""
        while True:
            self._poked.clear()
            runners, live = source()
            try:
                await self.write(runners, live)
            except (LedgerUnreadable, WriteConflicts) as e:
                logger.error("cost ledger not written: %s", e)
            except Exception:  # an API outage must not end the writer: the next interval retries
                logger.exception("cost ledger not written")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poked.wait(), timeout=interval_s)
