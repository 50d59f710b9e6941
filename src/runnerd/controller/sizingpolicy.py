"""The ``RunnerSizingPolicy`` controller, and the policies as the intake sees them.

Observes the policies (informer), their pools (the RunnerDeployment informer, through the
:class:`~runnerd.controller.targets.TargetResolver`), the pools' sized Runners (the Runner informer)
and the jobs the intake refused (:class:`~runnerd.reconcile.sizingpolicy.RefusalLog`); decides with
:mod:`runnerd.reconcile.sizingpolicy`; acts by a merge patch of the policy's ``status`` subresource,
only when the wanted status differs, and an Event on the policy when its ``Accepted`` condition
changes. Installed only with ``--enable-sizing`` (the CRD must be there).

:meth:`SizingPolicies.accepted` answers the intake from the same caches and the same pure rule as
the ``Accepted`` condition (not from the written status, which may lag), so a job is sized exactly
when its pool's policy is Accepted.

Guarantees: a reconcile writes nothing when nothing changed; a 404 or 409 on the status write is
left to the next event (the informer brings the newer object, which is reconciled again).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from runnerd.api import RunnerSpec, ScaleTargetRef
from runnerd.api.sizing import GROUP as SIZING_GROUP
from runnerd.api.sizing import KIND as SIZING_KIND
from runnerd.api.sizing import VERSION as SIZING_VERSION
from runnerd.controller.common import INDEX_CONTROLLER
from runnerd.controller.targets import ScaleTarget, TargetResolver
from runnerd.kube.client import KubeClient
from runnerd.kube.resources import Resource
from runnerd.reconcile.sizedjob import SIZED_JOB_LABEL, SIZING_POLICY_LABEL, SizedRunner, SizedState
from runnerd.reconcile.sizing import PoolSizing
from runnerd.reconcile.sizingpolicy import (
    ACCEPTED,
    Acceptance,
    PoolKey,
    RefusalLog,
    acceptance,
    claims,
    desired_status,
    policy_pool,
    status_differs,
)
from runnerd.runtime import Conflict, EventRecorder, Informer, Key, NotFound, Obj, Result
from runnerd.runtime.store import index_by_label

log = logging.getLogger(__name__)

SIZING_POLICIES = Resource(SIZING_GROUP, SIZING_VERSION, "runnersizingpolicies", SIZING_KIND)
POLICY_INFORMER = "runnersizingpolicies"
INDEX_SIZED_JOB = "sized-job"
"""The Runner informer's index of sized Runners by job id."""


def index_sized_runners(runners: Informer) -> None:
    """Index the Runner informer's sized Runners by job id (:data:`INDEX_SIZED_JOB`), once however
    many users share the informer."""
    with contextlib.suppress(ValueError):  # already there: one Runner informer, several users
        runners.store.add_indexer(INDEX_SIZED_JOB, index_by_label(SIZED_JOB_LABEL))


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class AcceptedPolicy:
    """An Accepted policy with its compiled caps and its pool."""

    name: str
    obj: Obj
    sizing: PoolSizing
    target: ScaleTarget

    @property
    def pool(self) -> PoolKey:
        return self.target.namespace, self.target.kind, self.target.name


class SizingPolicies:
    """The policy controller's reconcile, and the Accepted policies for the intake."""

    def __init__(
        self,
        *,
        kube: KubeClient,
        policies: Informer,
        runners: Informer,
        resolver: TargetResolver,
        recorder: EventRecorder,
        refusals: RefusalLog | None = None,
        clock: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        self.kube = kube
        self.policies = policies
        self.runners = runners
        self.resolver = resolver
        self.recorder = recorder
        self.refusals = refusals or RefusalLog()
        self.clock = clock
        self.status_writes = 0
        index_sized_runners(runners)

    # --- observe -------------------------------------------------------------------------------

    def verdict(
        self, obj: Mapping[str, Any], claimed: Mapping[PoolKey, list[str]] | None = None
    ) -> tuple[Acceptance, ScaleTarget | None]:
        """Whether ``obj`` is Accepted, and its pool when that resolves; ``claimed``: the policies'
        :func:`claims`, when the caller already has them (one pass over many policies)."""
        pool = policy_pool(obj)
        name = str((obj.get("metadata") or {}).get("name") or "")
        if claimed is None:
            claimed = claims(self.policies.store.objects())
        rivals = [n for n in claimed.get(pool, []) if n != name] if pool else []
        target: ScaleTarget | None = None
        problem: str | None = None
        if pool is not None and pool[1] == "RunnerDeployment":
            found = self.resolver.resolve(pool[0], ScaleTargetRef(kind=pool[1], name=pool[2]))
            if isinstance(found, str):
                problem = found
            else:
                target = found
        spec = target.config if target is not None and isinstance(target.config, RunnerSpec) else None
        verdict = acceptance(obj, rivals, problem, spec)
        return verdict, target

    def accepted(self) -> dict[PoolKey, AcceptedPolicy]:
        """Pool -> its Accepted policy."""
        out: dict[PoolKey, AcceptedPolicy] = {}
        objs = self.policies.store.objects()
        claimed = claims(objs)  # once, not once per policy
        for obj in objs:
            if (obj.get("metadata") or {}).get("deletionTimestamp"):
                continue
            verdict, target = self.verdict(obj, claimed)
            if verdict.accepted and verdict.sizing is not None and target is not None:
                name = str(obj["metadata"]["name"])
                out[(target.namespace, target.kind, target.name)] = AcceptedPolicy(
                    name, obj, verdict.sizing, target
                )
        return out

    def naming(self, pool: PoolKey) -> list[Key]:
        """The policies naming ``pool`` (Accepted or not)."""
        return [Key.of(obj) for obj in self.policies.store.objects() if policy_pool(obj) == pool]

    def sized_runners(self, pool: PoolKey | None, uid: str | None = None) -> list[SizedRunner]:
        """The sized Runners of ``pool`` (by owner uid when known, else by owner name)."""
        if pool is None:
            return []
        objs: Iterable[Obj]
        objs = self.runners.store.by_index(INDEX_CONTROLLER, uid) if uid else self.runners.store.objects()
        out = []
        for obj in objs:
            runner = SizedRunner.read(obj)
            if runner is not None and runner.namespace == pool[0] and runner.pool == pool[2]:
                out.append(runner)
        return out

    def by_job(self, job_id: int) -> list[Obj]:
        """The sized Runners made for ``job_id`` (at most one per pool)."""
        return self.runners.store.by_index(INDEX_SIZED_JOB, str(job_id))

    def sized(self) -> list[Obj]:
        """Every sized Runner (from the index: no pass over the pools' other runners)."""
        return self.runners.store.indexed(INDEX_SIZED_JOB)

    def counts(self) -> dict[tuple[str, str, str], int]:
        """``runnerd_sized_jobs``: (namespace, pool, state) -> jobs, intake refusals included."""
        out: dict[tuple[str, str, str], int] = {}
        for obj in self.sized():
            runner = SizedRunner.read(obj)
            if runner is None or runner.deleting:
                continue
            key = (runner.namespace, runner.pool or "", runner.state.value)
            out[key] = out.get(key, 0) + 1
        for (namespace, _, name), _refusal in self.refusals.all():
            key = (namespace, name, SizedState.REFUSED.value)
            out[key] = out.get(key, 0) + 1
        return out

    # --- watch mappers ----------------------------------------------------------------------------

    def keys_of_runner(self, obj: Obj) -> list[Key]:
        """A sized Runner changed: its policy."""
        meta = obj.get("metadata") or {}
        name = (meta.get("labels") or {}).get(SIZING_POLICY_LABEL)
        return [Key(str(meta.get("namespace") or ""), str(name))] if name else []

    def keys_of_pool(self, obj: Obj) -> list[Key]:
        """A pool changed: the policies naming it."""
        meta = obj.get("metadata") or {}
        return self.naming(
            (str(meta.get("namespace") or ""), "RunnerDeployment", str(meta.get("name") or ""))
        )

    def keys_of_policy(self, obj: Obj) -> list[Key]:
        """A policy changed: it, and the other policies naming its pool (their conflict may end)."""
        pool = policy_pool(obj)
        keys = {Key.of(obj), *(self.naming(pool) if pool is not None else ())}
        return sorted(keys, key=lambda k: (k.namespace, k.name))

    # --- reconcile ------------------------------------------------------------------------------

    async def reconcile(self, key: Key) -> Result | None:
        obj = self.policies.store.get(key)
        if obj is None:
            return None
        verdict, target = self.verdict(obj)
        pool = policy_pool(obj)
        runners = self.sized_runners(pool, target.uid if target is not None else None)
        status = obj.get("status") or {}
        if pool is not None:
            self.refusals.seed(pool, status, [r.job_id for r in runners])
        refusals = self.refusals.of(pool) if pool is not None else []
        wanted = desired_status(obj, verdict, runners, refusals, self.clock())
        if not status_differs(status, wanted):
            return None
        try:
            await self.kube.patch_status(
                SIZING_POLICIES, key.name, {"status": wanted}, namespace=key.namespace
            )
        except (NotFound, Conflict):
            return None
        self.status_writes += 1
        await self._announce(obj, status, verdict)
        return None

    async def _announce(self, obj: Obj, status: Mapping[str, Any], verdict: Acceptance) -> None:
        """An Event when the Accepted condition changes (or is first written)."""
        old = next(
            (
                c
                for c in status.get("conditions") or ()
                if isinstance(c, Mapping) and c.get("type") == ACCEPTED
            ),
            None,
        )
        value = "True" if verdict.accepted else "False"
        if old is not None and old.get("status") == value and old.get("message") == verdict.message:
            return
        if verdict.accepted:
            await self.recorder.normal(obj, verdict.reason, verdict.message)
        else:
            await self.recorder.warning(obj, verdict.reason, verdict.message)
