"""The AutoscalingRunnerSet controller: the scale set in GitHub, its EphemeralRunnerSets, its listener.

Thin: it observes the AutoscalingRunnerSet, the EphemeralRunnerSets it owns and its
AutoscalingListener (in the controller's namespace), asks
:func:`runnerd.reconcile.autoscalingrunnerset.decide_scale_set`, and carries the steps out.

Guarantees: the scale set is found by name in its runner group before one is created, and its id,
name and group are kept in ARC's annotations; one EphemeralRunnerSet per runner-spec hash (a set
this process created is remembered until the informer shows it, so it is never created twice); a
template change rolls without killing jobs (the old set is scaled to 0 with ``patchID`` 0: idle
runners go, busy ones finish; it is deleted once empty); deletion removes the listener, then the
sets (each runner's finalizer waits for its job), then the scale set in GitHub, then the chart's
``cleanup-protection`` finalizers, then its own.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from runnerd.api.scaleset import constants as c
from runnerd.controller.common import INDEX_CONTROLLER, StopSteps, created_at
from runnerd.controller.scaleset_common import (
    API_RETRY,
    AUTOSCALING_LISTENERS,
    AUTOSCALING_RUNNER_SETS,
    EPHEMERAL_RUNNER_SETS,
    SetController,
    set_finalizers,
    write_status,
)
from runnerd.github.actions.errors import ActionsServiceError, ScaleSetNotFound
from runnerd.kube.resources import ROLE_BINDINGS, ROLES, SECRETS, SERVICE_ACCOUNTS, Resource
from runnerd.manifests.scaleset import (
    build_ephemeral_runner_set,
    build_listener,
    listener_name,
    listener_spec_hash,
    runner_spec_hash,
)
from runnerd.reconcile.autoscalingrunnerset import (
    ListenerView,
    RunnerSetView,
    ScaleSetDecision,
    ScaleSetFacts,
    SetStep,
    decide_scale_set,
)
from runnerd.runtime import AlreadyExists, Informer, Key, NotFound, Result

CLEANUP_ANNOTATIONS: dict[str, Resource] = {
    "actions.github.com/cleanup-github-secret-name": SECRETS,
    "actions.github.com/cleanup-manager-role-binding": ROLE_BINDINGS,
    "actions.github.com/cleanup-manager-role-name": ROLES,
    "actions.github.com/cleanup-kubernetes-mode-role-binding-name": ROLE_BINDINGS,
    "actions.github.com/cleanup-kubernetes-mode-role-name": ROLES,
    "actions.github.com/cleanup-kubernetes-mode-service-account-name": SERVICE_ACCOUNTS,
    "actions.github.com/cleanup-no-permission-service-account-name": SERVICE_ACCOUNTS,
}
"""The chart's resources that carry ``actions.github.com/cleanup-protection``, by annotation."""

WAIT_RECHECK = 5.0


def _int(value: Any) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


@dataclass(eq=False, repr=False, kw_only=True)
class AutoscalingRunnerSetController(SetController):
    scale_sets: Informer
    runner_sets: Informer
    listeners: Informer
    listener_namespace: str

    def observe(self, obj: Mapping[str, Any]) -> ScaleSetFacts:
        meta, spec = obj["metadata"], obj.get("spec") or {}
        annotations = meta.get("annotations") or {}
        sets = []
        for ers in self.runner_sets.store.by_index(INDEX_CONTROLLER, str(meta.get("uid"))):
            ers_meta, ers_spec = ers["metadata"], ers.get("spec") or {}
            sets.append(
                RunnerSetView(
                    name=ers_meta["name"],
                    spec_hash=(ers_meta.get("annotations") or {}).get(c.ANNOTATION_RUNNER_SPEC_HASH, ""),
                    replicas=int(ers_spec.get("replicas") or 0),
                    patch_id=int(ers_spec.get("patchID") or 0),
                    current=int((ers.get("status") or {}).get("currentReplicas") or 0),
                    deleting=bool(ers_meta.get("deletionTimestamp")),
                    created=created_at(ers),
                )
            )
        listener = None
        raw = self.listeners.store.get(Key(self.listener_namespace, listener_name(obj)))
        if raw is not None:
            listener = ListenerView(
                name=raw["metadata"]["name"],
                spec_hash=(raw["metadata"].get("annotations") or {}).get(c.ANNOTATION_RUNNER_SPEC_HASH, ""),
                runner_set=(raw.get("spec") or {}).get("ephemeralRunnerSetName") or "",
                deleting=bool(raw["metadata"].get("deletionTimestamp")),
            )
        return ScaleSetFacts(
            spec_hash=runner_spec_hash(spec),
            listener_hash=listener_spec_hash(spec),
            deleting=bool(meta.get("deletionTimestamp")),
            has_finalizer=c.FINALIZER_AUTOSCALING_RUNNER_SET in (meta.get("finalizers") or ()),
            scale_set_id=_int(annotations.get(c.ANNOTATION_SCALE_SET_ID)),
            name_annotation=annotations.get(c.ANNOTATION_SCALE_SET_NAME),
            group_annotation=annotations.get(c.ANNOTATION_RUNNER_GROUP_NAME),
            want_name=spec.get("runnerScaleSetName") or meta["name"],
            want_group=spec.get("runnerGroup") or "",
            runner_sets=tuple(sets),
            listener=listener,
        )

    async def reconcile(self, key: Key) -> Result | None:
        obj = self.scale_sets.store.get(key)
        if obj is None:
            self.expect.forget(key)
            return None
        facts = self.observe(obj)
        # a creation the informer has shown is no longer expected, even once that set is gone again
        # (else a set deleted since would hold up the next creation until the expectation expires)
        self.expect.pending_creations(key, {s.name for s in facts.runner_sets})
        decision = decide_scale_set(facts)
        try:
            for step in decision.steps:
                await self._do(step, key, obj, facts, decision)
        except ActionsServiceError as exc:
            await self.recorder.warning(obj, "ScaleSetError", str(exc))
            return Result(requeue_after=API_RETRY)
        except StopSteps as stop:
            return stop.result
        if SetStep.UPDATE_STATUS in decision.steps or SetStep.REMOVE_FINALIZER in decision.steps:
            return None
        if facts.deleting and not facts.has_finalizer:
            return None
        # a write was made (the next step follows it), or a deletion is being waited for
        return Result(requeue_after=WAIT_RECHECK if facts.deleting or not decision.steps else 0.0)

    async def _do(
        self, step: SetStep, key: Key, obj: Mapping[str, Any], f: ScaleSetFacts, d: ScaleSetDecision
    ) -> None:
        meta = obj["metadata"]
        if step is SetStep.ADD_FINALIZER:
            finalizers = [*(meta.get("finalizers") or ()), c.FINALIZER_AUTOSCALING_RUNNER_SET]
            await set_finalizers(self.kube, AUTOSCALING_RUNNER_SETS, obj, finalizers)
        elif step is SetStep.REGISTER_SCALE_SET:
            await self._register(key, obj, f)
        elif step is SetStep.UPDATE_SCALE_SET:
            await self._update(key, obj, f)
        elif step is SetStep.CREATE_RUNNER_SET:
            await self._create_runner_set(key, obj, f)
        elif step is SetStep.DELETE_LISTENER and f.listener is not None:
            await self.kube.delete(
                AUTOSCALING_LISTENERS, f.listener.name, namespace=self.listener_namespace, missing_ok=True
            )
        elif step is SetStep.RETIRE_RUNNER_SETS:
            for name in d.retire:
                patch = {"spec": {"replicas": 0, "patchID": 0}}
                await self.kube.patch(EPHEMERAL_RUNNER_SETS, name, patch, namespace=key.namespace)
            for name in d.delete:
                await self.kube.delete(EPHEMERAL_RUNNER_SETS, name, namespace=key.namespace, missing_ok=True)
        elif step is SetStep.DELETE_RUNNER_SETS:
            for name in d.delete:
                await self.kube.delete(EPHEMERAL_RUNNER_SETS, name, namespace=key.namespace, missing_ok=True)
        elif step is SetStep.CREATE_LISTENER and d.current is not None and f.scale_set_id is not None:
            listener = build_listener(
                obj, namespace=self.listener_namespace, ers_name=d.current, scale_set_id=f.scale_set_id
            )
            with contextlib.suppress(AlreadyExists):
                await self.kube.create(AUTOSCALING_LISTENERS, listener, namespace=self.listener_namespace)
        elif step is SetStep.DELETE_SCALE_SET and f.scale_set_id is not None:
            api = await self.apis.for_object(key.namespace, obj.get("spec") or {})
            await api.delete_scale_set(f.scale_set_id)
            self.stats.scale_sets_deleted += 1
        elif step is SetStep.REMOVE_FINALIZER:
            await self._release(key, obj)
        elif step is SetStep.UPDATE_STATUS:
            await self._write_status(obj, f)

    async def _register(self, key: Key, obj: Mapping[str, Any], f: ScaleSetFacts) -> None:
        """Get or create the scale set (by name in its runner group), then ARC's annotations."""
        spec = obj.get("spec") or {}
        api = await self.apis.for_object(key.namespace, spec)
        group_id = await api.runner_group_id(f.want_group)
        scale_set = await api.get_scale_set(group_id, f.want_name)
        if scale_set is None:
            labels = [f.want_name, *(spec.get("runnerScaleSetLabels") or ())]
            scale_set = await api.create_scale_set(f.want_name, group_id, labels)
            self.stats.scale_sets_created += 1
            await self.recorder.normal(obj, "ScaleSetCreated", f"scale set {scale_set.name} ({scale_set.id})")
        await self._annotate(obj, scale_set.id, scale_set.name, scale_set.runner_group_name or f.want_group)

    async def _update(self, key: Key, obj: Mapping[str, Any], f: ScaleSetFacts) -> None:
        api = await self.apis.for_object(key.namespace, obj.get("spec") or {})
        assert f.scale_set_id is not None  # decided only with an id
        group_id = await api.runner_group_id(f.want_group)
        try:
            scale_set = await api.update_scale_set(f.scale_set_id, name=f.want_name, runner_group_id=group_id)
        except ScaleSetNotFound:  # gone in GitHub: register it again
            patch = {"metadata": {"annotations": {c.ANNOTATION_SCALE_SET_ID: None}}}
            await self.kube.patch(AUTOSCALING_RUNNER_SETS, key.name, patch, namespace=key.namespace)
            return
        await self._annotate(obj, scale_set.id, scale_set.name, scale_set.runner_group_name or f.want_group)

    async def _annotate(self, obj: Mapping[str, Any], scale_set_id: int, name: str, group: str) -> None:
        meta = obj["metadata"]
        annotations = {
            c.ANNOTATION_SCALE_SET_ID: str(scale_set_id),
            c.ANNOTATION_SCALE_SET_NAME: name,
            c.ANNOTATION_RUNNER_GROUP_NAME: group or "default",
        }
        await self.kube.patch(
            AUTOSCALING_RUNNER_SETS,
            meta["name"],
            {"metadata": {"annotations": annotations}},
            namespace=meta["namespace"],
        )

    async def _create_runner_set(self, key: Key, obj: Mapping[str, Any], f: ScaleSetFacts) -> None:
        seen = {s.name for s in f.runner_sets}
        if self.expect.pending_creations(key, seen) or f.scale_set_id is None:
            raise StopSteps(Result(requeue_after=1.0))  # created a moment ago; the informer lags
        name = f"{key.name}-{self.suffix()}"
        self.expect.created(key, name)
        try:
            await self.kube.create(
                EPHEMERAL_RUNNER_SETS,
                build_ephemeral_runner_set(obj, name, f.scale_set_id),
                namespace=key.namespace,
            )
        except Exception:
            self.expect.cancel(key, name)
            raise
        await self.recorder.normal(obj, "RunnerSetCreated", f"created EphemeralRunnerSet {name}")

    async def _release(self, key: Key, obj: Mapping[str, Any]) -> None:
        """The chart's cleanup-protection finalizers, then ours."""
        meta = obj["metadata"]
        for annotation, resource in CLEANUP_ANNOTATIONS.items():
            name = (meta.get("annotations") or {}).get(annotation)
            if not name:
                continue
            try:
                target = await self.kube.get(resource, name, namespace=key.namespace)
            except NotFound:
                continue
            finalizers = target["metadata"].get("finalizers") or []
            if c.FINALIZER_CLEANUP_PROTECTION in finalizers:
                kept = [x for x in finalizers if x != c.FINALIZER_CLEANUP_PROTECTION]
                await set_finalizers(self.kube, resource, target, kept)
        kept = [x for x in meta.get("finalizers") or () if x != c.FINALIZER_AUTOSCALING_RUNNER_SET]
        await set_finalizers(self.kube, AUTOSCALING_RUNNER_SETS, obj, kept)
        self.expect.forget(key)

    async def _write_status(self, obj: Mapping[str, Any], f: ScaleSetFacts) -> None:
        """The counts of all its sets (an old set's busy runners are still running)."""
        total = {
            "currentRunners": 0,
            "pendingEphemeralRunners": 0,
            "runningEphemeralRunners": 0,
            "failedEphemeralRunners": 0,
        }
        for ers in self.runner_sets.store.by_index(INDEX_CONTROLLER, str(obj["metadata"].get("uid"))):
            status = ers.get("status") or {}
            total["currentRunners"] += int(status.get("currentReplicas") or 0)
            for k in ("pendingEphemeralRunners", "runningEphemeralRunners", "failedEphemeralRunners"):
                total[k] += int(status.get(k) or 0)
        await write_status(self.kube, AUTOSCALING_RUNNER_SETS, obj, {**total, "phase": "Running"})
