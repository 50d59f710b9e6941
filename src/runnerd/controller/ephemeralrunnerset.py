"""The EphemeralRunnerSet controller: EphemeralRunners toward ``spec.replicas``.

Thin: it observes the set and its runners (by controller uid), asks
:func:`runnerd.reconcile.ephemeralrunnerset.decide_set`, and acts: creates runners concurrently in
slow-start batches (:mod:`runnerd.controller.slowstart`, shared with the RunnerReplicaSet; each
name drawn and remembered in :class:`~runnerd.controller.expectations.Expectations` before its
create is sent and until the informer shows it, so a quick second reconcile never creates twice,
nor does one after a create failed mid-batch), removes idle ones (the service's removal first:
``JobStillRunning`` leaves the runner be; then its object), deletes finished ones, writes the counts.
A round that created runners records one ``RunnersCreated`` Event on the set
(:func:`runnerd.controller.slowstart.record_created`, as the RunnerReplicaSet does), written beside
the status (no round trip of its own), or at once when a creation failed.

Deleting the set deletes its runners and waits for them: each runner's finalizer waits for its job,
so the set's finalizer never releases a busy runner either.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from runnerd.api.scaleset import constants as c
from runnerd.controller.common import INDEX_CONTROLLER, StopSteps, created_at
from runnerd.controller.scaleset_common import (
    API_RETRY,
    EPHEMERAL_RUNNER_SETS,
    EPHEMERAL_RUNNERS,
    SetController,
    set_finalizers,
    write_status,
)
from runnerd.controller.slowstart import create_in_batches, record_created
from runnerd.github.actions.errors import ActionsServiceError, JobStillRunning, RunnerNotFound
from runnerd.manifests.scaleset import build_ephemeral_runner
from runnerd.reconcile.ephemeralrunnerset import SetDecision, decide_set, runner_view
from runnerd.runtime import AlreadyExists, ApiError, Informer, Key, Result

DELETION_RECHECK = 5.0


@dataclass(eq=False, repr=False, kw_only=True)
class EphemeralRunnerSetController(SetController):
    runner_sets: Informer
    runners: Informer

    async def reconcile(self, key: Key) -> Result | None:
        obj = self.runner_sets.store.get(key)
        if obj is None:
            self.expect.forget(key)
            return None
        meta = obj["metadata"]
        children = self.runners.store.by_index(INDEX_CONTROLLER, str(meta.get("uid")))
        finalizers = list(meta.get("finalizers") or ())
        try:
            if meta.get("deletionTimestamp"):
                return await self._finalize(key, obj, children, finalizers)
            if c.FINALIZER_EPHEMERAL_RUNNER not in finalizers:
                await set_finalizers(
                    self.kube, EPHEMERAL_RUNNER_SETS, obj, [*finalizers, c.FINALIZER_EPHEMERAL_RUNNER]
                )
                return Result(requeue_after=0.0)
            return await self._scale(key, obj, children)
        except StopSteps as stop:
            return stop.result

    async def _scale(self, key: Key, obj: Mapping[str, Any], children: list[dict[str, Any]]) -> Result | None:
        spec = obj.get("spec") or {}
        seen = {str(r["metadata"]["name"]) for r in children}
        expected = self.expect.pending_creations(key, seen)
        deleting = self.expect.pending_deletions(key, seen)
        views = [runner_view(r, created_at(r)) for r in children]
        views = [replace(v, deleting=True) if v.name in deleting else v for v in views]
        patch_id = int(spec.get("patchID") or 0)
        decision = decide_set(int(spec.get("replicas") or 0), patch_id, views, expected=len(expected))
        created: list[str] = []
        try:
            await create_in_batches(decision.create, lambda: self._create(key, obj, patch_id, created))
        except BaseException:
            await record_created(self.recorder, obj, created)  # what the round created before it failed
            raise
        requeue = None
        if decision.remove and not await self._remove_idle(key, obj, decision, children):
            requeue = Result(requeue_after=API_RETRY)
        for name in decision.delete_finished:
            await self._delete(key, name)
        written, _ = await asyncio.gather(  # the round's Event beside the status: no round trip of its own
            write_status(self.kube, EPHEMERAL_RUNNER_SETS, obj, decision.status()),
            record_created(self.recorder, obj, created),
            return_exceptions=True,
        )
        if isinstance(written, BaseException):
            raise written
        return requeue

    async def _create(self, key: Key, obj: Mapping[str, Any], patch_id: int, created: list[str]) -> None:
        name = f"{key.name}-runner-{self.suffix()}"
        self.expect.created(key, name)
        try:
            await self.kube.create(
                EPHEMERAL_RUNNERS, build_ephemeral_runner(obj, name, patch_id), namespace=key.namespace
            )
        except AlreadyExists:
            self.expect.cancel(key, name)
            raise StopSteps(Result(requeue=True)) from None
        except ApiError:
            self.expect.cancel(key, name)  # refused: nothing was created
            raise
        self.stats.runners_created += 1
        created.append(name)

    async def _remove_idle(
        self, key: Key, obj: Mapping[str, Any], decision: SetDecision, children: list[dict[str, Any]]
    ) -> bool:
        """Deregister each candidate, then delete it; one holding a job stays (False: the service
        could not be asked)."""
        by_name = {str(r["metadata"]["name"]): r for r in children}
        runner_spec = (obj.get("spec") or {}).get("ephemeralRunnerSpec") or {}
        try:
            api = await self.apis.for_object(key.namespace, runner_spec)
        except ActionsServiceError as exc:
            await self.recorder.warning(obj, "ScaleDownFailed", str(exc))
            return False
        for name in decision.remove:
            runner_id = int((by_name[name].get("status") or {}).get("runnerId") or 0)
            try:
                await api.remove_runner(runner_id)
            except JobStillRunning:
                continue  # it took a job meanwhile: it stays
            except RunnerNotFound:
                pass  # gone already
            except ActionsServiceError as exc:
                await self.recorder.warning(obj, "ScaleDownFailed", f"removing {name}: {exc}")
                return False
            self.apis.mark_removed(runner_spec, runner_id)  # its finalizer needs no second call
            await self._delete(key, name)
        return True

    async def _delete(self, key: Key, name: str) -> None:
        self.expect.deleted(key, name)
        await self.kube.delete(EPHEMERAL_RUNNERS, name, namespace=key.namespace, missing_ok=True)
        self.stats.runners_deleted += 1

    async def _finalize(
        self, key: Key, obj: Mapping[str, Any], children: list[dict[str, Any]], finalizers: list[str]
    ) -> Result | None:
        if c.FINALIZER_EPHEMERAL_RUNNER not in finalizers:
            return None
        live = [r for r in children if not r["metadata"].get("deletionTimestamp")]
        for runner in live:
            await self._delete(key, str(runner["metadata"]["name"]))
        if children:
            return Result(requeue_after=DELETION_RECHECK)  # each runner's finalizer waits for its job
        await set_finalizers(
            self.kube,
            EPHEMERAL_RUNNER_SETS,
            obj,
            [f for f in finalizers if f != c.FINALIZER_EPHEMERAL_RUNNER],
        )
        self.expect.forget(key)
        return None
