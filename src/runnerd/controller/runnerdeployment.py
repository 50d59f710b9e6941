"""RunnerDeployment controller: one RunnerReplicaSet per pod template, rolled between them.

The rollout decision is :func:`runnerd.reconcile.runnerdeployment.plan_rollout`; this module
observes the deployment's replica sets and writes the plan: a replica set for a new template, the
replica counts (and the deployment's ``effectiveTime``, which the replica sets' replacement hold
reads), and the deletion of old replica sets with no runner left. Each replica set is then
:mod:`runnerd.controller.runnerreplicaset`'s.

A change of a deployment's or a replica set's spec (a new ``generation``: the autoscaler's scale, a
new template) reconciles at once; their status writes only change the counts this controller sums
into the deployment's status, so those events are coalesced (one pass within a second; issue #10:
each status write of a replica set or of the deployment itself woke it at once).

A replica set this process created is expected (:class:`runnerd.controller.expectations.Expectations`)
until the informer shows it, so a quick second reconcile never creates a second one.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Mapping
from typing import Any

from runnerd.api import ApiParseError, RunnerDeployment
from runnerd.controller.common import (
    INDEX_CONTROLLER,
    LABEL_DEPLOYMENT_NAME,
    LABEL_TEMPLATE_HASH,
    RUNNER_DEPLOYMENTS,
    RUNNER_REPLICA_SETS,
    ControllerOptions,
    ObjectMemo,
    controller_ref,
    created_at,
    patch_status,
)
from runnerd.controller.expectations import Expectations
from runnerd.kube.client import KubeClient
from runnerd.reconcile.hashing import template_hash
from runnerd.reconcile.runnerdeployment import ReplicaSetView, plan_rollout
from runnerd.reconcile.runnerset import selector_string
from runnerd.runtime import EventRecorder, Informer, Key, NotFound, Obj, Result


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
        self.parsed: ObjectMemo[tuple[RunnerDeployment, str]] = ObjectMemo()
        """By deployment: its parsed form and template hash, while the cache holds the same object."""

    def template_hash(self, rd: RunnerDeployment) -> str:
        template = rd.spec.template.to_dict()
        return template_hash(
            {"template": template, "commonLabels": list(self.options.pod.common_runner_labels)}
        )

    def _parse(self, obj: Mapping[str, Any]) -> tuple[RunnerDeployment, str]:
        rd = RunnerDeployment.from_dict(obj)
        return rd, self.template_hash(rd)

    async def reconcile(self, key: Key) -> Result | None:
        obj = self.deployments.store.get(key)
        if obj is None:
            self.expect.forget(key)
            self.parsed.forget(key)
            return None
        try:
            rd, current_hash = self.parsed.get(key, obj, self._parse)
        except ApiParseError as exc:
            await self.recorder.warning(obj, "InvalidSpec", str(exc))
            return None
        if rd.metadata.deletion_timestamp is not None:
            return None
        desired = rd.spec.effective_replicas
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
            "selector": selector_string(_deployment_selector(rd)),
        }
        await patch_status(self.kube, RUNNER_DEPLOYMENTS, obj, status)
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


__all__ = ["DeploymentController"]
