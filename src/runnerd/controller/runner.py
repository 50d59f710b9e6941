"""The Runner controller: one Runner object, one GitHub registration, one pod.

Thin: it observes (the Runner, its pod, GitHub's listing of the scope), asks
:func:`runnerd.reconcile.lifecycle.decide` what to do (kind ``RUNNER``), and has
:class:`runnerd.controller.lifecycle.Lifecycle` carry the steps out in order, stopping at the first
that cannot complete (a busy runner answers 422 to its removal: nothing after that runs).
:class:`RunnerPodHome` is where a Runner's object, pod and credential Secret live.

Writes per runner pod (issue #10, fifth pass): a Runner's first pod and its credential Secret are
written concurrently (the pod only references the Secret by name; the kubelet waits for it), so
the create costs one round trip after the registration instead of two; a replacement pod, or one
whose runner's own ServiceAccount must come first, still waits for its Secret. A pod whose Secret
could not be written (another object's Secret of that name, an error) is deleted again at once.
A Runner of a RunnerReplicaSet gets no ``PodCreated`` Event (its replica set records one Event
per round of creations); a Runner on its own still does.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Unpack

from runnerd.api import Runner
from runnerd.controller.clients import (
    CREDENTIALS_RETRY,
    credentials_secret,
    using,
)
from runnerd.controller.common import (
    ANNOTATION_REGISTRATION,
    PODS,
    RUNNER_FINALIZER,
    RUNNERS,
    Backoff,
    StopSteps,
    controller_kind,
    controller_ref,
    epoch,
)
from runnerd.controller.lifecycle import LifecycleController, LifecycleDeps, RunnerRef, rate_limit_wait
from runnerd.controller.runner_objects import RunnerObjects, create_pod_beside_secret
from runnerd.github import Scope
from runnerd.github.errors import GitHubError, RateLimitedError, RunnerBusyError
from runnerd.manifests.pod import RunnerPodError, build_runner_pod, runner_labels
from runnerd.reconcile.admitting import admitted_node, awaiting_admission, prefer_node
from runnerd.reconcile.credentials import JitConfig, Registration
from runnerd.reconcile.lifecycle import (
    BUSY_RETRY,
    POD_STATUS,
    GitHubState,
    PodStatus,
    RunnerDecision,
    RunnerFacts,
    Step,
    decide,
)
from runnerd.reconcile.podstate import RunnerPodPhase, RunnerPodState, runner_container_state
from runnerd.reconcile.replicas import RunnerPhase
from runnerd.reconcile.runner import runner_status, uses_jit
from runnerd.runtime import (
    AlreadyExists,
    Conflict,
    Informer,
    Invalid,
    Key,
    NotFound,
    Result,
)

logger = logging.getLogger(__name__)

POD_SEEN_GRACE = 30.0
"""How long a pod this process created may be missing from the informer's cache."""


def owned_by_replica_set(obj: Mapping[str, Any]) -> bool:
    """The Runner's controller is a RunnerReplicaSet (which records its creations per round)."""
    return controller_kind(obj) == "RunnerReplicaSet"


@dataclass
class RunnerStats:
    pods_created: int = 0
    pods_deleted: int = 0
    status_writes: int = 0
    deregistrations: int = 0
    busy_refusals: int = 0


@dataclass(frozen=True)
class Observed:
    """One Runner as seen in one reconcile."""

    obj: Mapping[str, Any]
    runner: Runner
    scope: Scope
    pod: Mapping[str, Any] | None
    pod_state: RunnerPodState | None
    facts: RunnerFacts

    @property
    def uid(self) -> str:
        return self.runner.metadata.uid or ""


class RunnerController(LifecycleController):
    def __init__(self, *, runners: Informer, pods: Informer, **deps: Unpack[LifecycleDeps]) -> None:
        self.stats = RunnerStats()
        super().__init__(self.stats, **deps)
        self.runners = runners
        self.pods = pods
        self._backoff: dict[str, Backoff] = {}
        self.deletes_sent: dict[str, float] = {}  # Runner uid -> when this process asked to delete it
        self.pods_made: dict[str, float] = {}  # Runner uid -> when its pod was created, until seen
        self.objects = RunnerObjects(self.kube, self.recorder, conflict_retry=self.options.max_backoff)

    def replaced(self, uid: str) -> bool:
        """A pod of this Runner failed and is being replaced (its back-off is remembered)."""
        return uid in self._backoff

    # ------------------------------------------------------------------------------- observe
    def uses_jit(self, runner: Runner) -> bool:
        return uses_jit(
            runner,
            forced=runner.metadata.annotations.get(ANNOTATION_REGISTRATION),
            mode=self.options.registration_mode,
            default_image=self.options.pod.runner_image,
        )

    async def reconcile(self, key: Key) -> Result | None:
        obj = self.runners.store.get(key)
        if obj is None or self._gated(key, obj) or self.finalized_before(obj):
            return None
        try:
            api = await self.clients.get(key.namespace, credentials_secret(obj))
        except GitHubError as exc:
            await self.recorder.warning(obj, exc.reason, str(exc))
            return Result(requeue_after=CREDENTIALS_RETRY)
        async with using(api):
            seen = await self._observe(key, obj)
            return None if seen is None else await self._act(seen)

    def _gated(self, key: Key, obj: Mapping[str, Any]) -> bool:
        """A sized job's Runner not admitted yet, with no pod and not being deleted: nothing to do,
        not even a credentials read (the gate of :func:`runnerd.reconcile.lifecycle.decide`)."""
        deleting = bool((obj.get("metadata") or {}).get("deletionTimestamp"))
        return awaiting_admission(obj) and not deleting and self.pods.store.get(key) is None

    async def _observe(self, key: Key, obj: Mapping[str, Any]) -> Observed | None:
        runner = await self.parse_scoped(obj, Runner, lambda r: r.spec.scope)
        if runner is None or runner.spec.scope is None:
            return None
        scope = Scope.from_runner_scope(runner.spec.scope)
        uid = runner.metadata.uid or ""
        pod = self.pods.store.get(key)
        pod_state = runner_container_state(pod) if pod is not None else None
        if pod is not None:
            self.pods_made.pop(uid, None)
        pod_status = POD_STATUS[pod_state.lifecycle] if pod_state else PodStatus.ABSENT
        deleting = runner.metadata.deletion_timestamp is not None
        ephemeral = runner.spec.effective_ephemeral

        # A `completed` webhook named this registration: an ephemeral runner's one job is over and
        # GitHub removed it, so no listing can change what happens next.
        known_id = (pod_state.runner_id if pod_state else None) or self.directory.runner_id(scope, key.name)
        finished_age = self.directory.finished_age(key.name, known_id)
        job_finished = finished_age is not None and ephemeral
        exited_done = (  # an ephemeral runner that exited 0: GitHub removed it, nothing to ask
            pod_state is not None and pod_status is PodStatus.EXITED and pod_state.exit_code == 0
        ) and ephemeral
        if (pod_status in (PodStatus.RUNNING, PodStatus.DELETING) or deleting) and not (
            job_finished or exited_done
        ):
            await self._refresh(obj, scope, key.name)

        runner_id = (pod_state.runner_id if pod_state else None) or self.directory.runner_id(scope, key.name)
        self.lifecycle.expire_refusal(scope, key.name)
        now = self.clock()
        running_since = None
        if pod_state is not None:
            running_since = epoch(pod_state.ready_since) or epoch(pod_state.running_since)
        facts = RunnerFacts(
            now=now,
            deleting=deleting,
            has_finalizer=RUNNER_FINALIZER in runner.metadata.finalizers,
            ephemeral=ephemeral,
            jit=self.uses_jit(runner),
            pod=pod_status,
            exit_code=pod_state.exit_code if pod_state else None,
            runner_id=runner_id,
            github=self.directory.state(scope, key.name),
            pod_running_since=running_since,
            pod_ready=pod_state is None or pod_state.phase is not RunnerPodPhase.RUNNING,
            drained_at=self.lifecycle.drained_at(uid),
            drain_grace=self.options.drain_grace,
            registration_timeout=self.options.registration_timeout,
            next_attempt_at=self._backoff.get(uid, Backoff()).next_attempt_at,
            job_finished_at=None if finished_age is None or runner_id != known_id else now - finished_age,
            awaiting_admission=awaiting_admission(obj),
        )
        return Observed(obj, runner, scope, pod, pod_state, facts)

    async def _refresh(self, obj: Mapping[str, Any], scope: Scope, name: str) -> None:
        """GitHub's view: fresh while the runner comes online, relaxed once it is known, also when it
        is being removed: its removal needs its id and a sign of no job, not a fresh listing (the
        drain grace, the webhooks, its pod's readiness and GitHub's 422 guard a runner that has just
        taken a job), so a wave of deletions costs no listings. After GitHub's 422, fresh again."""
        settled = self.directory.state(scope, name) in (GitHubState.IDLE, GitHubState.BUSY)
        if self.lifecycle.refused(scope, name):
            settled = False  # GitHub said busy: its retry reads a fresh listing, not the one before
        max_age = self.options.sync_period / 2 if settled else self.options.registering_max_age
        try:
            await self.directory.refresh(scope, max_age=max_age)
        except RateLimitedError as exc:
            logger.info(
                "runner %s/%s: GitHub rate limited until %.0f",
                obj["metadata"].get("namespace"),
                name,
                exc.resume_at,
            )
        except GitHubError as exc:
            await self.recorder.warning(
                obj, exc.reason, f"listing runners of {scope.kind} {scope.name}: {exc}"
            )

    # ------------------------------------------------------------------------------- act
    async def _act(self, seen: Observed) -> Result:
        facts, obj, pod_state = seen.facts, seen.obj, seen.pod_state
        decision = decide(facts)
        if pod_state is not None and pod_state.stuck and not facts.deleting:
            await self.recorder.warning(obj, pod_state.reason or pod_state.phase.value, pod_state.message)

        result = Result(requeue_after=decision.requeue_after)
        ref = RunnerRef(obj, seen.runner.name, seen.uid, seen.scope, facts.runner_id)
        try:
            await self.lifecycle.perform(decision.steps, ref, RunnerPodHome(self, seen))
        except StopSteps as stop:
            result = stop.result
        await self._remember(seen, decision)

        if not facts.deleting:
            want = runner_status(seen.runner, decision, pod_state)
            if want is not None:
                await self.set_status(obj, want)
        if (
            result.requeue_after is None
            and not facts.deleting
            and decision.phase in (RunnerPhase.IDLE, RunnerPhase.BUSY)
        ):
            result = Result(requeue_after=self.options.sync_period)
        return result

    async def _remember(self, seen: Observed, decision: RunnerDecision) -> None:
        """Back-off after a failed pod; memos of a runner whose work is done are dropped."""
        uid = seen.uid
        if decision.failed:
            backoff = self._backoff.get(uid, Backoff())
            backoff.failures += 1
            delay = min(self.options.max_backoff, 5.0 * 2 ** (backoff.failures - 1))
            backoff.next_attempt_at = seen.facts.now + delay
            self._backoff[uid] = backoff
            await self.recorder.warning(
                seen.obj, "RunnerPodReplaced", f"{decision.reason}; next pod in {delay:.0f}s"
            )
        elif decision.phase in (RunnerPhase.IDLE, RunnerPhase.BUSY):
            self._backoff.pop(uid, None)
        if Step.REMOVE_FINALIZER in decision.steps or Step.DELETE_RUNNER in decision.steps:
            self._backoff.pop(uid, None)
            self.lifecycle.forget(uid)
            if Step.REMOVE_FINALIZER in decision.steps:
                self.deletes_sent.pop(uid, None)
                self.pods_made.pop(uid, None)
                self.objects.forget(uid)

    async def set_status(self, obj: Mapping[str, Any], want: dict[str, Any]) -> None:
        current = obj.get("status") or {}
        if all(current.get(k) == v or (v in ("", None) and not current.get(k)) for k, v in want.items()):
            return
        meta = obj["metadata"]
        try:
            await self.kube.patch_status(RUNNERS, meta["name"], {"status": want}, namespace=meta["namespace"])
        except NotFound:
            return
        self.stats.status_writes += 1


class RunnerPodHome:
    """Where a Runner lives: its object (finalizer, deletion), its pod, its credential Secret
    (:class:`runnerd.controller.runner_objects.RunnerObjects`)."""

    def __init__(self, ctl: RunnerController, seen: Observed) -> None:
        self.ctl = ctl
        self.kube = ctl.kube
        self.seen = seen
        self.runner = seen.runner

    async def add_finalizer(self) -> None:
        runner = self.runner
        try:
            await self.kube.patch(
                RUNNERS,
                runner.name,
                {"metadata": {"finalizers": [*runner.metadata.finalizers, RUNNER_FINALIZER]}},
                namespace=runner.namespace,
                resource_version=runner.metadata.resource_version,
            )
        except NotFound:
            return
        except Conflict:
            raise StopSteps(Result(requeue=True)) from None

    async def remove_finalizer(self) -> None:
        """A JSON patch that tests the entry it removes: no conflict with concurrent status writes."""
        runner = self.runner
        finalizers = runner.metadata.finalizers
        if RUNNER_FINALIZER not in finalizers:
            return
        index = finalizers.index(RUNNER_FINALIZER)
        patch: list[dict[str, Any]] = [
            {"op": "test", "path": f"/metadata/finalizers/{index}", "value": RUNNER_FINALIZER},
            {"op": "remove", "path": f"/metadata/finalizers/{index}"},
        ]
        try:
            await self.kube.patch(RUNNERS, runner.name, patch, namespace=runner.namespace, patch_type="json")
        except NotFound:
            return
        except (Conflict, Invalid):
            raise StopSteps(Result(requeue=True)) from None

    async def consume_credentials(self) -> None:
        await self.ctl.objects.consume(self.runner)

    async def delete_pod(self) -> None:
        pod = self.seen.pod
        if pod is None:
            return
        await self.kube.delete(
            PODS,
            self.runner.name,
            namespace=self.runner.namespace,
            uid=pod["metadata"].get("uid"),
            missing_ok=True,
        )
        self.ctl.stats.pods_deleted += 1

    async def delete_runner(self) -> None:
        ctl, runner = self.ctl, self.runner
        uid = runner.metadata.uid or ""
        if ctl.clock() - ctl.deletes_sent.get(uid, float("-inf")) < 30.0:
            return  # sent already; the informer has not shown the deletionTimestamp yet
        await self.kube.delete(RUNNERS, runner.name, namespace=runner.namespace, uid=uid, missing_ok=True)
        ctl.deletes_sent[uid] = ctl.clock()

    async def create_pod(self) -> None:
        """Register with GitHub, store the credential in its Secret, then create the pod."""
        ctl, runner, obj, scope = self.ctl, self.runner, self.seen.obj, self.seen.scope
        uid = runner.metadata.uid or ""
        made = ctl.pods_made.get(uid)
        if made is not None and ctl.clock() - made < POD_SEEN_GRACE:
            # created a moment ago and not in the cache yet: registering again would overwrite the
            # credentials in its Secret before its container read them
            raise StopSteps(Result(requeue_after=1.0))
        try:
            registration = await ctl.lifecycle.register(
                obj,
                scope,
                runner.name,
                jit=ctl.uses_jit(runner),
                labels=runner_labels(runner.spec, ctl.options.pod),
                group=runner.spec.group,
                work_folder=runner.spec.effective_work_dir,
            )
        except RateLimitedError as exc:
            await ctl.recorder.warning(obj, exc.reason, f"waiting for GitHub's rate limit to reset: {exc}")
            raise StopSteps(rate_limit_wait(exc)) from None
        except RunnerBusyError:
            raise StopSteps(Result(requeue_after=BUSY_RETRY)) from None
        except GitHubError as exc:
            await ctl.recorder.warning(obj, exc.reason, f"registering runner {runner.name}: {exc}")
            await ctl.set_status(
                obj, {"phase": "Failed", "ready": False, "reason": exc.reason, "message": str(exc)}
            )
            raise StopSteps(Result(requeue=True)) from None
        annotations = {
            k: v for k, v in runner.metadata.annotations.items() if not k.startswith("kubectl.kubernetes.io/")
        }
        try:
            manifest = build_runner_pod(
                runner.name,
                runner.namespace,
                runner.spec,
                registration,
                ctl.options.pod,
                labels=dict(runner.metadata.labels),
                annotations=annotations,
                owner_references=[controller_ref(obj)],
            )
        except RunnerPodError as exc:
            await ctl.lifecycle.abandon(scope, registration)
            await ctl.recorder.warning(obj, "InvalidRunnerPod", str(exc))
            raise StopSteps(Result()) from None
        node = admitted_node(obj)
        if node is not None:  # admission's choice, preferred; the scheduler still decides
            manifest["spec"]["affinity"] = prefer_node(manifest["spec"].get("affinity"), node)
        try:
            await self._write_pod(manifest, registration)
        except AlreadyExists:
            await ctl.lifecycle.abandon(scope, registration)
            raise StopSteps(Result(requeue=True)) from None
        except Exception:
            await ctl.lifecycle.abandon(scope, registration)
            raise
        ctl.stats.pods_created += 1
        ctl.pods_made[uid] = ctl.clock()
        if not owned_by_replica_set(obj):  # a replica set's Runners: one Event per round on it
            mode = "JIT config" if isinstance(registration, JitConfig) else "registration token"
            await ctl.recorder.normal(obj, "PodCreated", f"created pod {runner.name} ({mode})")

    def _first_pod(self) -> bool:
        """No pod of this Runner ever ran as far as anything recorded: no status phase (written
        from Idle on, or Failed) and no failed pod in this process's memory. A Secret that exists
        all the same (a pod that vanished before its runner came online, or a crash between the two
        creates) is overwritten while the pod is created: its credential is this Runner's own, for a
        registration the new one replaced, so a container that read it before the overwrite fails
        to register and its pod is replaced (sequentially, as a failed pod)."""
        uid = self.runner.metadata.uid or ""
        return not (self.seen.obj.get("status") or {}).get("phase") and not self.ctl.replaced(uid)

    async def _write_pod(self, manifest: dict[str, Any], registration: Registration) -> None:
        """The credential Secret and the pod: written concurrently for a Runner's first pod (the pod
        only references the Secret, and the kubelet waits for a Secret that is not there yet), one
        after the other when a pod is replaced (its Secret holds the last credential until
        overwritten) or when the runner's own ServiceAccount comes first. A pod whose Secret could
        not be written is deleted again (:func:`create_pod_beside_secret`)."""
        ctl, runner, obj = self.ctl, self.runner, self.seen.obj
        identity = (
            manifest["spec"].get("serviceAccountName") == runner.name and not runner.spec.service_account_name
        )
        if identity or not self._first_pod():
            await ctl.objects.store_credentials(obj, runner, registration)
            if identity:
                await ctl.objects.create_identity(obj, runner)
            await self.kube.create(PODS, manifest, namespace=runner.namespace)
            return
        await create_pod_beside_secret(
            self.kube,
            manifest,
            runner.namespace,
            ctl.objects.store_credentials(obj, runner, registration),
        )
