"""RunnerReplicaSet and RunnerDeployment controllers.

A RunnerReplicaSet keeps ``replicas`` Runner objects (each with its pod); a RunnerDeployment keeps
one RunnerReplicaSet per template and rolls between them. Decisions come from
:mod:`runnerd.reconcile.replicas`; this module observes and writes.

Informers lag behind writes, so objects this process just created (or deleted) are remembered until
the informer shows them ("expectations"): a quick second reconcile never creates a runner twice.
A runner's name is drawn and expected before its create is sent, and runners are created
concurrently in slow-start batches (1, 2, 4, ...), so a burst reaches the API server at the rate it
accepts. A controller killed mid-batch leaves only runners that exist in the API server; the next
leader counts them from its informer, so the count never exceeds ``replicas``.

Ephemeral runners that finished their job are not replaced until the autoscaler decides again
(``effectiveTime``, see :func:`runnerd.reconcile.replicas.replacement_hold`).
"""

from __future__ import annotations

import asyncio
import copy
import logging
import secrets
import time
from collections.abc import Callable, Mapping
from typing import Any

from runnerd.api import ApiParseError, Runner, RunnerDeployment, RunnerReplicaSet
from runnerd.controller.common import (
    LABEL_DEPLOYMENT_NAME,
    LABEL_TEMPLATE_HASH,
    RUNNER_DEPLOYMENTS,
    RUNNER_FINALIZER,
    RUNNER_REPLICA_SETS,
    RUNNERS,
    ControllerOptions,
    controller_ref,
    created_at,
)
from runnerd.controller.directory import RunnerDirectory
from runnerd.controller.expectations import REPLACEMENT_HOLD, Expectations, ReplacementHolds
from runnerd.github import Scope
from runnerd.kube.client import KubeClient
from runnerd.reconcile.hashing import template_hash
from runnerd.reconcile.lifecycle import GitHubState
from runnerd.reconcile.podstate import RunnerPodPhase, runner_container_state
from runnerd.reconcile.replicas import (
    ReplicaSetView,
    RunnerPhase,
    RunnerView,
    plan_replicas,
    plan_rollout,
)
from runnerd.runtime import (
    AlreadyExists,
    ApiError,
    Conflict,
    EventRecorder,
    Informer,
    Key,
    NotFound,
    Obj,
    Result,
)

logger = logging.getLogger(__name__)

INDEX_CONTROLLER = "controller"
MAX_BATCH = 64
"""Runners created at once (the last slow-start batch size)."""
SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # the API server's generateName alphabet


def random_suffix() -> str:
    """Five characters, as ``generateName`` adds."""
    return "".join(secrets.choice(SUFFIX_ALPHABET) for _ in range(5))


def observe_phase(
    runner: Mapping[str, Any], pod: Mapping[str, Any] | None, directory: RunnerDirectory
) -> RunnerPhase:
    """The phase of a runner as this process sees it right now (pod + GitHub listing)."""
    spec = runner.get("spec") or {}
    ephemeral = spec.get("ephemeral") is not False
    if pod is None:
        return RunnerPhase.PENDING
    state = runner_container_state(pod)
    if state.lifecycle == "Exited":
        return RunnerPhase.COMPLETED if state.exit_code == 0 and ephemeral else RunnerPhase.FAILED
    if state.lifecycle != "Running":
        return RunnerPhase.PENDING
    scope = _scope(spec)
    github = directory.state(scope, runner["metadata"]["name"]) if scope else GitHubState.UNKNOWN
    if github is GitHubState.BUSY:
        return RunnerPhase.BUSY
    if github is GitHubState.IDLE:
        # online but not Ready: the runner's job-started hook failed its readiness probe
        return RunnerPhase.BUSY if state.phase is RunnerPodPhase.RUNNING else RunnerPhase.IDLE
    status_phase = (runner.get("status") or {}).get("phase")
    if status_phase in (RunnerPhase.BUSY.value, RunnerPhase.IDLE.value) and github is GitHubState.UNKNOWN:
        return RunnerPhase(status_phase)
    return RunnerPhase.REGISTERING


def _scope(spec: Mapping[str, Any]) -> Scope | None:
    for kind in ("enterprise", "organization", "repository"):
        if spec.get(kind):
            return Scope(kind, spec[kind])
    return None


class ReplicaSetController:
    def __init__(
        self,
        *,
        kube: KubeClient,
        directory: RunnerDirectory,
        recorder: EventRecorder,
        replica_sets: Informer,
        runners: Informer,
        pods: Informer,
        options: ControllerOptions,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.kube = kube
        self.directory = directory
        self.recorder = recorder
        self.replica_sets = replica_sets
        self.runners = runners
        self.pods = pods
        self.options = options
        self.expect = Expectations(clock)
        self.clock = clock
        self.runners_created = 0
        self.holds = ReplacementHolds(clock)

    async def reconcile(self, key: Key) -> Result | None:
        obj = self.replica_sets.store.get(key)
        if obj is None:
            self.expect.forget(key)
            self.holds.forget(key)
            return None
        try:
            rrs = RunnerReplicaSet.from_dict(obj)
        except ApiParseError as exc:
            await self.recorder.warning(obj, "InvalidSpec", str(exc))
            return None
        if rrs.metadata.deletion_timestamp is not None:
            return None  # the garbage collector deletes the Runners; their finalizers protect jobs
        owned = self.runners.store.by_index(INDEX_CONTROLLER, rrs.metadata.uid or "")
        views: list[RunnerView] = []
        live = {r["metadata"]["name"] for r in owned}
        being_deleted = self.expect.pending_deletions(key, live)
        for runner in owned:
            name = runner["metadata"]["name"]
            pod = self.pods.store.get(Key(key.namespace, name))
            views.append(
                RunnerView(
                    name=name,
                    created_at=created_at(runner),
                    phase=observe_phase(runner, pod, self.directory),
                    deleting=bool(runner["metadata"].get("deletionTimestamp")) or name in being_deleted,
                )
            )
        for name in self.expect.pending_creations(key, live):
            views.append(RunnerView(name=name, created_at=time.time(), phase=RunnerPhase.PENDING))

        desired = rrs.spec.effective_replicas
        plan = plan_replicas(desired, views)
        hold_until = await self._fill(key, obj, rrs, desired, plan.create)
        for name in plan.delete:
            self.expect.deleted(key, name)
            await self.kube.delete(RUNNERS, name, namespace=key.namespace, missing_ok=True)
        if plan.delete:
            await self.recorder.normal(
                obj, "ScaledDown", f"removing {len(plan.delete)} idle runner(s): {', '.join(plan.delete)}"
            )

        active = [v for v in views if v.active]
        status = {
            "replicas": len(active),
            "readyReplicas": sum(v.phase in (RunnerPhase.IDLE, RunnerPhase.BUSY) for v in active),
            "availableReplicas": sum(v.phase in (RunnerPhase.IDLE, RunnerPhase.BUSY) for v in active),
            "busyReplicas": sum(v.phase is RunnerPhase.BUSY for v in views),
            "selector": _selector_string(rrs.spec.selector or {}),
        }
        await _patch_status(self.kube, RUNNER_REPLICA_SETS, obj, status)
        creating = plan.create and hold_until is None
        pending = creating or plan.delete or any(v.phase is RunnerPhase.REGISTERING for v in views)
        wake = 5.0 if pending else None
        if hold_until is not None:
            wake = min(wake or REPLACEMENT_HOLD, max(hold_until - self.clock(), 0.0) + 0.05)
        return Result(requeue_after=wake)

    async def _fill(
        self, key: Key, obj: Mapping[str, Any], rrs: RunnerReplicaSet, desired: int, missing: int
    ) -> float | None:
        """Create ``missing`` runners unless the effectiveTime rule holds them; when held until."""
        create, until = self.holds.check(
            key, rrs.spec.template.spec.effective_ephemeral, rrs.spec.effective_time, desired, missing
        )
        await self._create_batches(key, obj, rrs, create)
        return until

    async def _create_batches(
        self, key: Key, obj: Mapping[str, Any], rrs: RunnerReplicaSet, count: int
    ) -> None:
        """Create ``count`` runners concurrently in slow-start batches (1, 2, 4, ... at most
        :data:`MAX_BATCH`, as Kubernetes' ReplicaSet controller does): a failing API server costs
        one call, not ``count``; the first failure stops the rest (the next reconcile retries)."""
        batch = 1
        while count > 0:
            n = min(batch, count, MAX_BATCH)
            results = await asyncio.gather(
                *(self._create_runner(key, obj, rrs) for _ in range(n)), return_exceptions=True
            )
            count -= n
            for result in results:
                if isinstance(result, BaseException):
                    raise result
            batch *= 2

    async def _create_runner(self, key: Key, obj: Mapping[str, Any], rrs: RunnerReplicaSet) -> None:
        template = rrs.spec.template
        meta = template.metadata
        labels = dict(meta.labels)
        for k, v in ((rrs.spec.selector or {}).get("matchLabels") or {}).items():
            labels.setdefault(k, v)
        metadata: dict[str, Any] = {
            "namespace": key.namespace,
            "labels": labels,
            "annotations": dict(meta.annotations),
            "finalizers": [RUNNER_FINALIZER],
            "ownerReferences": [controller_ref(obj)],
        }
        body = {
            "apiVersion": RUNNERS.api_version,
            "kind": "Runner",
            "metadata": metadata,
            "spec": template.spec.to_dict(),
        }
        # The name is chosen (and expected) before the create, so a create whose answer is lost
        # still counts until the informer shows it or the expectation expires.
        for _ in range(5):
            name = f"{rrs.name}-{random_suffix()}"
            metadata["name"] = name
            self.expect.created(key, name)
            try:
                await self.kube.create(RUNNERS, body, namespace=key.namespace)
            except AlreadyExists:
                self.expect.cancel(key, name)  # a name taken by someone else: draw another
                continue
            except ApiError:
                self.expect.cancel(key, name)  # refused: nothing was created
                raise
            self.runners_created += 1
            return
        raise AlreadyExists(409, "AlreadyExists", f"{rrs.name}: five random runner names were all taken")


class DeploymentController:
    def __init__(
        self,
        *,
        kube: KubeClient,
        recorder: EventRecorder,
        deployments: Informer,
        replica_sets: Informer,
        runners: Informer,
        options: ControllerOptions,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.kube = kube
        self.recorder = recorder
        self.deployments = deployments
        self.replica_sets = replica_sets
        self.runners = runners
        self.options = options
        self.expect = Expectations(clock)

    def template_hash(self, rd: RunnerDeployment) -> str:
        template = rd.spec.template.to_dict()
        return template_hash(
            {"template": template, "commonLabels": list(self.options.pod.common_runner_labels)}
        )

    async def reconcile(self, key: Key) -> Result | None:
        obj = self.deployments.store.get(key)
        if obj is None:
            self.expect.forget(key)
            return None
        try:
            rd = RunnerDeployment.from_dict(obj)
        except ApiParseError as exc:
            await self.recorder.warning(obj, "InvalidSpec", str(exc))
            return None
        if rd.metadata.deletion_timestamp is not None:
            return None
        desired = rd.spec.effective_replicas
        current_hash = self.template_hash(rd)
        owned = self.replica_sets.store.by_index(INDEX_CONTROLLER, rd.metadata.uid or "")
        names = {r["metadata"]["name"] for r in owned}
        if self.expect.pending_creations(key, names):
            return Result(requeue_after=1.0)  # wait for the informer to show the replica set we made
        views = []
        for rs in owned:
            status = rs.get("status") or {}
            runners = self.runners.store.by_index(INDEX_CONTROLLER, rs["metadata"]["uid"])
            views.append(
                ReplicaSetView(
                    name=rs["metadata"]["name"],
                    template_hash=(rs["metadata"].get("labels") or {}).get(LABEL_TEMPLATE_HASH, ""),
                    replicas=_replicas(rs),
                    ready=int(status.get("readyReplicas") or 0),
                    runners=len(runners),
                    created_at=created_at(rs),
                )
            )
        plan = plan_rollout(desired, current_hash, views)
        if plan.create:
            await self._create_replica_set(key, obj, rd, current_hash, desired)
        for name, spec in sorted(self._spec_patches(obj, owned, plan.scale, current_hash).items()):
            try:
                await self.kube.patch(RUNNER_REPLICA_SETS, name, {"spec": spec}, namespace=key.namespace)
            except NotFound:
                continue
        for name in plan.delete:
            await self.kube.delete(RUNNER_REPLICA_SETS, name, namespace=key.namespace, missing_ok=True)
            await self.recorder.normal(
                obj, "ReplicaSetDeleted", f"deleted replica set {name} (no runners left)"
            )

        statuses = [rs.get("status") or {} for rs in owned]
        current = [v for v in views if v.template_hash == current_hash]
        status = {
            "desiredReplicas": desired,
            "replicas": sum(int(s.get("replicas") or 0) for s in statuses),
            "readyReplicas": sum(int(s.get("readyReplicas") or 0) for s in statuses),
            "availableReplicas": sum(int(s.get("availableReplicas") or 0) for s in statuses),
            "updatedReplicas": sum(
                int((rs.get("status") or {}).get("replicas") or 0)
                for rs in owned
                if rs["metadata"]["name"] in {v.name for v in current}
            ),
            "busyReplicas": sum(int(s.get("busyReplicas") or 0) for s in statuses),
            "selector": _selector_string(_deployment_selector(rd)),
        }
        await _patch_status(self.kube, RUNNER_DEPLOYMENTS, obj, status)
        rolling = plan.create or plan.scale or plan.delete or len(owned) > 1
        return Result(requeue_after=5.0 if rolling else None)

    @staticmethod
    def _spec_patches(
        obj: Mapping[str, Any], owned: list[Obj], scale: Mapping[str, int], current_hash: str
    ) -> dict[str, dict[str, Any]]:
        """Replica counts to write, and the deployment's ``effectiveTime`` passed on with them and to
        the current template's replica sets whenever it changed (an unchanged count included: one
        job finished and another one queued is a new decision the replica set must see)."""
        effective = (obj.get("spec") or {}).get("effectiveTime")
        patches: dict[str, dict[str, Any]] = {name: {"replicas": n} for name, n in scale.items()}
        for rs in owned:
            name = rs["metadata"]["name"]
            current = (rs["metadata"].get("labels") or {}).get(LABEL_TEMPLATE_HASH) == current_hash
            if not effective or (rs.get("spec") or {}).get("effectiveTime") == effective:
                continue
            if name in patches or current:
                patches.setdefault(name, {})["effectiveTime"] = effective
        return patches

    async def _create_replica_set(
        self, key: Key, obj: Mapping[str, Any], rd: RunnerDeployment, hash_: str, desired: int
    ) -> None:
        selector = _deployment_selector(rd)
        template = copy.deepcopy(rd.spec.template.to_dict())
        labels = {**(template.get("metadata") or {}).get("labels", {}), **selector.get("matchLabels", {})}
        labels[LABEL_TEMPLATE_HASH] = hash_
        template.setdefault("metadata", {})["labels"] = labels
        match_labels = {**selector.get("matchLabels", {}), LABEL_TEMPLATE_HASH: hash_}
        spec: dict[str, Any] = {
            "replicas": desired,
            "selector": {**selector, "matchLabels": match_labels},
            "template": template,
        }
        effective = (obj.get("spec") or {}).get("effectiveTime")
        if effective:
            spec["effectiveTime"] = effective
        body = {
            "apiVersion": RUNNER_REPLICA_SETS.api_version,
            "kind": "RunnerReplicaSet",
            "metadata": {
                "generateName": f"{rd.name}-",
                "namespace": key.namespace,
                "labels": {LABEL_DEPLOYMENT_NAME: rd.name, LABEL_TEMPLATE_HASH: hash_},
                "ownerReferences": [controller_ref(obj)],
            },
            "spec": spec,
        }
        created = await self.kube.create(RUNNER_REPLICA_SETS, body, namespace=key.namespace)
        self.expect.created(key, created["metadata"]["name"])
        await self.recorder.normal(
            obj,
            "ReplicaSetCreated",
            f"created replica set {created['metadata']['name']} for template {hash_}",
        )


def _replicas(obj: Mapping[str, Any]) -> int:
    value = (obj.get("spec") or {}).get("replicas")
    return 1 if value is None else int(value)


def _deployment_selector(rd: RunnerDeployment) -> dict[str, Any]:
    if rd.spec.selector:
        return dict(rd.spec.selector)
    return {"matchLabels": {LABEL_DEPLOYMENT_NAME: rd.name}}


def _selector_string(selector: Mapping[str, Any]) -> str:
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or ():
        values = ",".join(expr.get("values") or ())
        op = expr.get("operator")
        if op == "In":
            parts.append(f"{expr['key']} in ({values})")
        elif op == "NotIn":
            parts.append(f"{expr['key']} notin ({values})")
        elif op == "Exists":
            parts.append(expr["key"])
        elif op == "DoesNotExist":
            parts.append(f"!{expr['key']}")
    return ",".join(parts)


async def _patch_status(
    kube: KubeClient, resource: Any, obj: Mapping[str, Any], status: Mapping[str, Any]
) -> None:
    current = obj.get("status") or {}
    if all(current.get(k) == v for k, v in status.items()):
        return
    meta = obj["metadata"]
    try:
        await kube.patch_status(resource, meta["name"], {"status": dict(status)}, namespace=meta["namespace"])
    except (NotFound, Conflict):
        return


__all__ = ["DeploymentController", "ReplicaSetController", "Runner", "observe_phase"]
