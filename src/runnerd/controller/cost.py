"""The cost ledger's writer: folds runner facts into the ledger ConfigMap, conditionally.

Design: docs/gpu-sizing.md, "Cost". Only the leader writes: ``controller/app.py``'s
``install_cost`` runs :class:`CostController` as a leader-only controller with one key
(:data:`COST_KEY`), reconciled every ``interval_s`` and 5 s after a runner pod's runner
container terminates. :class:`RunnerPodFacts` is its facts source: the runner pods and Runners of the
informer caches, the nodes' GPU products when a node informer exists, and the facts of runner pods
deleted since (so a pod removed right after its runner finished is still charged to the second).

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
  finished); one pass at a time. Decoding, folding and encoding run in a worker thread (about
  0.8 s of CPU for a ledger of 24,000 hourly buckets, bench/cost_ledger_bench.py), not on the
  event loop.
* :attr:`CostLedgerWriter.last` is the ledger of the last successful write (``None`` before the
  first): the metrics and the dashboard read it, never the API server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final, Protocol

from runnerd.api import constants as c
from runnerd.kube.client import KubeClient
from runnerd.kube.resources import CONFIGMAPS
from runnerd.reconcile.cost import (
    HOUR,
    LEDGER_CONFIGMAP,
    CardinalityLimits,
    Ledger,
    PriceTable,
    RunnerFacts,
    fold,
    ledger_configmap,
    read_ledger_configmap,
)
from runnerd.reconcile.costfacts import cost_facts, node_products, runner_facts, runner_terminated
from runnerd.runtime import (
    AlreadyExists,
    Conflict,
    EventType,
    Informer,
    InformerEvent,
    Key,
    NotFound,
    Obj,
    Result,
    controller_owner,
)

logger = logging.getLogger(__name__)

NODES_INFORMER: Final = "nodes"
RUNNER_OWNER = controller_owner("Runner", c.GROUP)

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
        self.kube = kube

    async def get(self, namespace: str, name: str) -> Obj | None:
        try:
            return await self.kube.get(CONFIGMAPS, name, namespace=namespace)
        except NotFound:
            return None

    async def create(self, namespace: str, body: Obj) -> Obj:
        return await self.kube.create(CONFIGMAPS, body, namespace=namespace)

    async def replace(self, body: Obj) -> Obj:
        return await self.kube.replace(CONFIGMAPS, body)


@dataclass
class CostLedgerWriter:
    store: ConfigMaps
    namespace: str
    prices: PriceTable
    limits: CardinalityLimits = field(default_factory=CardinalityLimits)
    name: str = LEDGER_CONFIGMAP
    clock: Callable[[], float] = time.time
    attempts: int = 5
    last: Ledger | None = field(default=None, init=False)
    """The ledger as last written (``None`` before the first write)."""
    _poked: asyncio.Event = field(default_factory=asyncio.Event, init=False, repr=False)

    async def write(self, runners: Sequence[RunnerFacts], live_uids: Collection[str]) -> Ledger:
        """One pass: read, fold, conditional write; again from a fresh read on a conflict."""
        for _ in range(self.attempts):
            current = await self.store.get(self.namespace, self.name)
            # decoding, folding and encoding a large ledger takes a CPU fraction of a second: in a
            # thread, so the event loop (webhooks, the other controllers) keeps running meanwhile
            new, body = await asyncio.to_thread(self._fold, current, runners, live_uids, int(self.clock()))
            try:
                if current is None:
                    await self.store.create(self.namespace, body)
                else:
                    await self.store.replace(body)
            except (Conflict, AlreadyExists):
                logger.debug("cost ledger %s/%s changed meanwhile; folding again", self.namespace, self.name)
                continue
            self.last = new
            return new
        raise WriteConflicts(f"{self.namespace}/{self.name}: {self.attempts} conflicting writes in a row")

    def _fold(
        self, current: Obj | None, runners: Sequence[RunnerFacts], live_uids: Collection[str], now: int
    ) -> tuple[Ledger, Obj]:
        """The ledger ``current`` holds with the facts folded in, and the ConfigMap to write."""
        try:
            ledger = read_ledger_configmap(current)[0] if current is not None else Ledger()
        except ValueError as e:
            raise LedgerUnreadable(f"{self.namespace}/{self.name}: {e}") from None
        new = fold(ledger, runners, live_uids, now, self.limits)
        version = None if current is None else (current.get("metadata") or {}).get("resourceVersion")
        body = ledger_configmap(self.namespace, new, self.prices, name=self.name, resource_version=version)
        return new, body

    def poke(self) -> None:
        """Write soon (a runner finished)."""
        self._poked.set()

    async def write_logged(self, source: FactsSource) -> bool:
        """One pass over ``source``'s facts; a failure is logged (the next pass retries), not raised."""
        runners, live = source()
        try:
            await self.write(runners, live)
            return True
        except (LedgerUnreadable, WriteConflicts) as e:
            logger.error("cost ledger not written: %s", e)
        except Exception:  # an API outage must not end the writer: the next interval retries
            logger.exception("cost ledger not written")
        return False

    async def run(self, source: FactsSource, *, interval_s: float = 60.0) -> None:
        """Write every ``interval_s`` and after each :meth:`poke`, until cancelled."""
        while True:
            self._poked.clear()
            await self.write_logged(source)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poked.wait(), timeout=interval_s)


COST_KEY = Key("", "cost-ledger")
"""The cost controller's one work-queue key."""
DEPARTED_KEEP_S = 600.0
"""How long the facts of a deleted runner pod are kept for the next passes."""
DEPARTED_MAX_AGE_S = HOUR - DEPARTED_KEEP_S
"""...and never once the runner finished this long ago: the ledger remembers a finished runner for
an hour after its finish once its pod is gone (``cost.forget``), so a copy folded later could be
counted again. The margin covers the clocks of two replicas."""


@dataclass
class RunnerPodFacts:
    """The writer's facts source over the informer caches (:data:`FactsSource`).

    Feed :meth:`on_pod` every event of the runner pod informer: a pod that is deleted leaves the
    cache, so its last facts are kept here for :data:`DEPARTED_KEEP_S`, and no longer than
    :data:`DEPARTED_MAX_AGE_S` after its runner finished (a pod deleted while its runner still ran
    is taken as finished when it was seen deleted). Their uids count as live meanwhile, so the
    ledger keeps remembering them as counted."""

    pods: Informer
    runners: Informer
    informers: Mapping[str, Informer] = field(default_factory=dict)
    """Where a ``nodes`` informer is looked up at each pass (its GPU product labels win over the
    pods' node selectors)."""
    clock: Callable[[], float] = time.time
    _departed: dict[str, tuple[float, RunnerFacts]] = field(default_factory=dict, init=False, repr=False)

    @property
    def departed(self) -> int:
        """How many deleted pods' facts are kept now."""
        return len(self._departed)

    def _runner_of(self, pod: Mapping[str, Any]) -> Mapping[str, Any] | None:
        keys = list(RUNNER_OWNER(dict(pod)))
        return self.runners.store.get(keys[0]) if keys else None

    def _node_products(self, pod: Mapping[str, Any] | None = None) -> dict[str, str]:
        """Every node's GPU product (``pod``: only its node's)."""
        nodes = self.informers.get(NODES_INFORMER)
        if nodes is None:
            return {}
        if pod is None:
            return node_products(nodes.store.objects())
        node = nodes.store.get(Key("", str((pod.get("spec") or {}).get("nodeName") or "")))
        return node_products([node] if node is not None else [])

    def on_pod(self, event: InformerEvent) -> bool:
        """Record a deleted pod's facts; whether a pass should run soon (a runner just finished)."""
        if event.type is EventType.DELETED:
            now = self.clock()
            pod = event.obj
            found = runner_facts(pod, runner=self._runner_of(pod), node_products=self._node_products(pod))
            if found is not None:
                if found.finished_at is None:
                    found = replace(found, finished_at=max(int(now), found.started_at))
                self._departed[found.uid] = (now, found)
            self._prune(now)  # here too: a standby replica runs no pass
            return found is not None
        if event.type is EventType.MODIFIED and event.old is not None:
            return runner_terminated(event.obj) and not runner_terminated(event.old)
        return False

    def _keep(self, seen_at: float, facts: RunnerFacts, now: float) -> bool:
        finished = facts.finished_at if facts.finished_at is not None else seen_at
        return now - seen_at < DEPARTED_KEEP_S and now - finished < DEPARTED_MAX_AGE_S

    def _prune(self, now: float) -> None:
        self._departed = {u: (t, f) for u, (t, f) in self._departed.items() if self._keep(t, f, now)}

    def __call__(self) -> tuple[list[RunnerFacts], set[str]]:
        self._prune(self.clock())
        facts, live = cost_facts(self.pods.store.objects(), self._runner_of, self._node_products())
        seen = {f.uid for f in facts}
        facts += [f for _, f in self._departed.values() if f.uid not in seen]
        return facts, live | self._departed.keys()


@dataclass(frozen=True)
class CostSettings:
    """What the controller flags (``--cost-*``) say about the ledger."""

    namespace: str
    """Where the ledger ConfigMap lives: the controller's own namespace."""
    prices: PriceTable = field(default_factory=PriceTable)
    limits: CardinalityLimits = field(default_factory=CardinalityLimits)
    interval_s: float = 60.0


@dataclass
class CostController:
    """The leader's ledger pass as a controller's reconcile of :data:`COST_KEY`."""

    writer: CostLedgerWriter
    source: FactsSource
    interval_s: float = 60.0
    prices: PriceTable = field(default_factory=PriceTable)

    async def reconcile(self, key: Key) -> Result:
        await self.writer.write_logged(self.source)
        return Result(requeue_after=self.interval_s)
