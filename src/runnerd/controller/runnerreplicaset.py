"""RunnerReplicaSet controller: keeps ``replicas`` Runner objects (each with its pod).

Decisions come from :func:`runnerd.reconcile.runnerreplicaset.plan_replicas` (which runners to create or
remove, shared with RunnerSets) and :func:`runnerd.reconcile.runnerreplicaset.replacement_hold`; this module
observes and writes. The RunnerDeployment above it is :mod:`runnerd.controller.runnerdeployment`;
each Runner below it is :mod:`runnerd.controller.runner`.

Informers lag behind writes, so objects this process just created (or deleted) are remembered until
the informer shows them ("expectations"): a quick second reconcile never creates a runner twice.
A runner's name is drawn and expected before its create is sent, and runners are created
concurrently in slow-start batches (1, 2, 4, ...; :mod:`runnerd.controller.slowstart`, each round
starting where the replica set's last successful one left off), so a burst reaches the API server
at the rate it accepts. A controller killed mid-batch leaves only runners
that exist in the API server; the next leader counts them from its informer, so the count never
exceeds ``replicas``.

Events (issue #10, fifth pass): one ``RunnersCreated`` Event on the replica set per round that
created runners (:func:`runnerd.controller.slowstart.record_created`, shared with the
EphemeralRunnerSet), written beside its status patch, instead of a ``PodCreated`` Event on each of
its Runners. Failures keep their Warnings on each Runner.

Ephemeral runners that finished their job are not replaced until the autoscaler decides again
(``effectiveTime``, see :func:`runnerd.reconcile.runnerreplicaset.replacement_hold`).

Every pod change reconciles the replica set, which looks at all its runners: each runner's
creation time and its pod's state are kept from one reconcile to the next, by the pod's
``resourceVersion``, and what the Runner says (scope, ephemeral, ``status.phase``, deletion) with
the phase its pod alone decides, by the Runner's too, for the runners of the last reconcile only
(issue #10: at 1,000 runners the re-classification of unchanged pods was a third of the
controller's CPU, and re-reading unchanged runners a fifth after that). GitHub's view of a runner
(the directory) is read at every reconcile, as before.

Fewer passes (issue #10, fourth pass): most pod and Runner events only move a runner between
pending, registering, idle and busy, which changes no create or delete at once, only the status
counts and which idle runner a later scale-down picks. Those events are coalesced
(:data:`COALESCE_WINDOW`, :meth:`runnerd.runtime.Controller.watch`): a burst is one pass, within a
second, that reads the state as it is then (level-triggered: nothing is lost). Two kinds of event
still reconcile at once, because they can open a gap that a replacement fills
(:func:`leaves_the_count`): a runner container that exits (the runner is finished, out of the
count) and a Runner marked for deletion or deleted whose pod had not already exited. A change of
the replica set's spec (a scale-up or down from the deployment or the autoscaler: a new
``generation``) is never delayed; its status writes (this controller's own) are coalesced too, and
so are the RunnerDeployment's passes for them (:func:`runnerd.runtime.spec_changed`).
Counting incrementally was the other option; it would put a second bookkeeping of the replica plan
beside :func:`~runnerd.reconcile.runnerreplicaset.plan_replicas`, which must stay the one place
that decides, for a pass that already costs ~4 us a runner.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from runnerd.api import ApiParseError, RunnerReplicaSet
from runnerd.controller.common import (
    INDEX_CONTROLLER,
    RUNNER_FINALIZER,
    RUNNER_REPLICA_SETS,
    RUNNERS,
    ControllerOptions,
    ObjectMemo,
    controller_ref,
    created_at,
    patch_status,
    random_suffix,
)
from runnerd.controller.directory import RunnerDirectory
from runnerd.controller.expectations import REPLACEMENT_HOLD, Expectations, ReplacementHolds
from runnerd.controller.slowstart import MAX_BATCH, SlowStart, record_created
from runnerd.github import Scope
from runnerd.kube.client import KubeClient
from runnerd.reconcile.lifecycle import GitHubState
from runnerd.reconcile.podstate import RunnerPodPhase, RunnerPodState, runner_container_state
from runnerd.reconcile.replicas import RunnerPhase, RunnerView
from runnerd.reconcile.runnerreplicaset import plan_replicas
from runnerd.reconcile.runnerset import selector_string
from runnerd.runtime import (
    AlreadyExists,
    ApiError,
    EventRecorder,
    EventType,
    Informer,
    InformerEvent,
    Key,
    Result,
)

logger = logging.getLogger(__name__)

COALESCE_WINDOW = 1.0
"""Seconds a pod or Runner event that leaves the replica count as it is may wait for its pass."""


def _exited(pod: Mapping[str, Any] | None) -> bool:
    return pod is not None and runner_container_state(pod).lifecycle == "Exited"


def pod_exits(event: InformerEvent) -> bool:
    """A pod event whose runner container has just exited (the runner leaves the count)."""
    if event.type is EventType.DELETED or not _exited(event.obj):
        return False
    return event.type is not EventType.MODIFIED or not _exited(event.old)


def leaves_the_count(pods: Informer) -> Callable[[InformerEvent], bool]:
    """A Runner event that takes the runner out of the replica count, unless its pod's exit (an
    urgent event of its own) already did: the Runner marked for deletion, or deleted unmarked."""

    def urgent(event: InformerEvent) -> bool:
        meta = event.obj.get("metadata") or {}
        if event.type is EventType.DELETED:
            return not meta.get("deletionTimestamp")
        if not meta.get("deletionTimestamp"):
            return False
        old = (event.old or {}).get("metadata") or {}
        if event.type is EventType.MODIFIED and old.get("deletionTimestamp"):
            return False  # marked before: that event was the urgent one
        pod = pods.store.get(Key(str(meta.get("namespace") or ""), str(meta.get("name") or "")))
        return not _exited(pod)

    return urgent


def observe_phase(
    runner: Mapping[str, Any],
    pod: Mapping[str, Any] | None,
    directory: RunnerDirectory,
    state: RunnerPodState | None = None,
) -> RunnerPhase:
    """The phase of a runner as this process sees it right now (pod + GitHub listing); ``state``:
    the pod's :func:`~runnerd.reconcile.podstate.runner_container_state`, if already known."""
    if pod is None:
        return RunnerPhase.PENDING
    spec = runner.get("spec") or {}
    if state is None:
        state = runner_container_state(pod)
    fixed = _fixed_phase(spec, state)
    if fixed is not None:
        return fixed
    scope = _scope(spec)
    github = directory.state(scope, runner["metadata"]["name"]) if scope else GitHubState.UNKNOWN
    return _github_phase(
        github, state.phase is RunnerPodPhase.RUNNING, (runner.get("status") or {}).get("phase")
    )


def _fixed_phase(spec: Mapping[str, Any], state: RunnerPodState | None) -> RunnerPhase | None:
    """The phase where GitHub's view of the runner does not decide it (no pod, pending, exited)."""
    if state is None:
        return RunnerPhase.PENDING
    lifecycle = state.lifecycle
    if lifecycle == "Exited":
        ephemeral = spec.get("ephemeral") is not False
        return RunnerPhase.COMPLETED if state.exit_code == 0 and ephemeral else RunnerPhase.FAILED
    if lifecycle != "Running":
        return RunnerPhase.PENDING
    return None


def _github_phase(github: GitHubState, job_signal: bool, status_phase: Any) -> RunnerPhase:
    """The phase of a runner whose container runs: GitHub's view, the pod's job signal (running, not
    Ready) and the Runner's last written ``status.phase``."""
    if github is GitHubState.BUSY:
        return RunnerPhase.BUSY
    if github is GitHubState.IDLE:
        # online but not Ready: the runner's job-started hook failed its readiness probe
        return RunnerPhase.BUSY if job_signal else RunnerPhase.IDLE
    if status_phase in (RunnerPhase.BUSY.value, RunnerPhase.IDLE.value) and github is GitHubState.UNKNOWN:
        return RunnerPhase(status_phase)
    return RunnerPhase.REGISTERING


def _scope(spec: Mapping[str, Any]) -> Scope | None:
    for kind in ("enterprise", "organization", "repository"):
        if spec.get(kind):
            return _scope_of(kind, str(spec[kind]))
    return None


@functools.lru_cache(maxsize=1024)
def _scope_of(kind: str, name: str) -> Scope:
    return Scope(kind, name)  # type: ignore[arg-type]  # one of the three kinds above


class _Seen(NamedTuple):
    """What a reconcile worked out about one runner: its pod's part reused while the pod is
    unchanged (same ``resourceVersion``), the rest while the Runner is unchanged too."""

    runner_uid: str
    runner_version: str
    pod_version: str
    created_at: float
    pod_state: RunnerPodState | None
    fixed: RunnerPhase | None
    """The phase when GitHub's view does not decide it (:func:`_fixed_phase`)."""
    job_signal: bool
    """The runner container runs and the pod is not Ready."""
    scope: Scope | None
    status_phase: Any
    marked: bool
    """The Runner has a ``deletionTimestamp``."""
    runner: Mapping[str, Any]
    pod: Mapping[str, Any] | None
    """The cached objects this was worked out from (the informers replace, never change, them)."""

    def phase(self, name: str, directory: RunnerDirectory) -> RunnerPhase:
        """What :func:`observe_phase` says, with GitHub's view read now."""
        if self.fixed is not None:
            return self.fixed
        github = directory.state(self.scope, name) if self.scope else GitHubState.UNKNOWN
        return _github_phase(github, self.job_signal, self.status_phase)


def _seen(runner: Mapping[str, Any], pod: Mapping[str, Any] | None, before: _Seen | None) -> _Seen:
    if before is not None and before.runner is runner and before.pod is pod and pod is not None:
        return before  # the very objects of the last reconcile
    meta = runner["metadata"]
    uid = str(meta.get("uid") or "")
    runner_version = str(meta.get("resourceVersion") or "")
    version = str((pod.get("metadata") or {}).get("resourceVersion") or "") if pod is not None else ""
    if before is not None and before.runner_uid == uid and before.pod_version == version and version:
        if runner_version and before.runner_version == runner_version:
            return before
        created, state = before.created_at, before.pod_state
    else:
        created, state = created_at(runner), runner_container_state(pod) if pod is not None else None
    spec = runner.get("spec") or {}
    return _Seen(
        runner_uid=uid,
        runner_version=runner_version,
        pod_version=version,
        created_at=created,
        pod_state=state,
        fixed=_fixed_phase(spec, state),
        job_signal=state is not None and state.phase is RunnerPodPhase.RUNNING,
        scope=_scope(spec),
        status_phase=(runner.get("status") or {}).get("phase"),
        marked=bool(meta.get("deletionTimestamp")),
        runner=runner,
        pod=pod,
    )


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
        self.slow_start = SlowStart(clock=clock)
        self.holds = ReplacementHolds(clock)
        self.observed: dict[Key, dict[str, _Seen]] = {}
        """By replica set: what its last reconcile worked out about each of its runners."""
        self.parsed: ObjectMemo[RunnerReplicaSet] = ObjectMemo()
        """By replica set: its parsed form, while the cache holds the same object."""

    async def reconcile(self, key: Key) -> Result | None:
        obj = self.replica_sets.store.get(key)
        if obj is None:
            self.expect.forget(key)
            self.holds.forget(key)
            self.observed.pop(key, None)
            self.parsed.forget(key)
            self.slow_start.forget(key)
            return None
        try:
            rrs = self.parsed.get(key, obj, RunnerReplicaSet.from_dict)
        except ApiParseError as exc:
            await self.recorder.warning(obj, "InvalidSpec", str(exc))
            return None
        if rrs.metadata.deletion_timestamp is not None:
            return None  # the garbage collector deletes the Runners; their finalizers protect jobs
        owned = self.runners.store.by_index(INDEX_CONTROLLER, rrs.metadata.uid or "")
        views: list[RunnerView] = []
        live = {r["metadata"]["name"] for r in owned}
        being_deleted = self.expect.pending_deletions(key, live)
        before, seen = self.observed.get(key, {}), {}
        for runner in owned:
            name = runner["metadata"]["name"]
            pod = self.pods.store.get(Key(key.namespace, name))
            known = seen[name] = _seen(runner, pod, before.get(name))
            views.append(
                RunnerView(
                    name=name,
                    created_at=known.created_at,
                    phase=known.phase(name, self.directory),
                    deleting=known.marked or name in being_deleted,
                )
            )
        self.observed[key] = seen
        for name in self.expect.pending_creations(key, live):
            views.append(RunnerView(name=name, created_at=time.time(), phase=RunnerPhase.PENDING))

        desired = rrs.spec.effective_replicas
        plan = plan_replicas(desired, views)
        created: list[str] = []
        try:
            hold_until = await self._fill(key, obj, rrs, desired, plan.create, created)
        except BaseException:
            await record_created(self.recorder, obj, created)  # what the round created before it failed
            raise
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
            "selector": selector_string(rrs.spec.selector or {}),
        }
        written, _ = await asyncio.gather(  # the round's Event beside the status: no round trip of its own
            patch_status(self.kube, RUNNER_REPLICA_SETS, obj, status),
            record_created(self.recorder, obj, created),  # never raises (the recorder logs its failures)
            return_exceptions=True,
        )
        if isinstance(written, BaseException):
            raise written
        creating = plan.create and hold_until is None
        pending = creating or plan.delete or any(v.phase is RunnerPhase.REGISTERING for v in views)
        wake = 5.0 if pending else None
        if hold_until is not None:
            wake = min(wake or REPLACEMENT_HOLD, max(hold_until - self.clock(), 0.0) + 0.05)
        return Result(requeue_after=wake)

    async def _fill(
        self,
        key: Key,
        obj: Mapping[str, Any],
        rrs: RunnerReplicaSet,
        desired: int,
        missing: int,
        created: list[str],
    ) -> float | None:
        """Create ``missing`` runners unless the effectiveTime rule holds them (their names are
        appended to ``created``); when held until."""
        create, until = self.holds.check(
            key, rrs.spec.template.spec.effective_ephemeral, rrs.spec.effective_time, desired, missing
        )
        await self.slow_start.create(key, create, lambda: self._create_runner(key, obj, rrs, created))
        return until

    async def _create_runner(
        self, key: Key, obj: Mapping[str, Any], rrs: RunnerReplicaSet, created: list[str]
    ) -> None:
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
            created.append(name)
            return
        raise AlreadyExists(409, "AlreadyExists", f"{rrs.name}: five random runner names were all taken")


__all__ = [
    "COALESCE_WINDOW",
    "MAX_BATCH",
    "ReplicaSetController",
    "leaves_the_count",
    "observe_phase",
    "pod_exits",
]
