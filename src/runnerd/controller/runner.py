"""The Runner controller: one Runner object, one GitHub registration, one pod.

It observes (the Runner, its pod, GitHub's listing of the scope), asks
:func:`runnerd.reconcile.runner.decide` what to do, and carries the steps out in order, stopping at
the first that cannot complete (a busy runner answers 422 to its removal: nothing after that runs).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from runnerd.api import ApiParseError, Runner
from runnerd.controller.clients import (
    CREDENTIALS_RETRY,
    GitHubAPI,
    GitHubClients,
    credentials_secret,
    using,
)
from runnerd.controller.common import (
    ANNOTATION_REGISTRATION,
    PODS,
    RUNNER_FINALIZER,
    RUNNERS,
    Backoff,
    ControllerOptions,
    RunnerGroups,
    StopSteps,
    controller_ref,
    drain_labels,
    epoch,
)
from runnerd.controller.directory import RunnerDirectory
from runnerd.controller.orphans import carries
from runnerd.controller.runner_objects import RunnerObjects
from runnerd.github import GitHubClient, Scope
from runnerd.github import JitConfig as JitRunnerConfig
from runnerd.github.errors import (
    ConflictError,
    GitHubError,
    NotFoundError,
    RateLimitedError,
    RunnerBusyError,
)
from runnerd.kube.client import KubeClient
from runnerd.reconcile.pod import (
    JitConfig,
    Registration,
    RegistrationToken,
    RunnerPodError,
    build_runner_pod,
    runner_labels,
)
from runnerd.reconcile.podstate import RunnerPodPhase, RunnerPodState, runner_container_state
from runnerd.reconcile.replicas import RunnerPhase
from runnerd.reconcile.runner import (
    BUSY_RETRY,
    GitHubState,
    PodStatus,
    RunnerDecision,
    RunnerFacts,
    Step,
    decide,
)
from runnerd.runtime import (
    AlreadyExists,
    Conflict,
    EventRecorder,
    Informer,
    Invalid,
    Key,
    NotFound,
    Result,
)

logger = logging.getLogger(__name__)

_LIFECYCLE = {
    "Pending": PodStatus.PENDING,
    "Running": PodStatus.RUNNING,
    "Exited": PodStatus.EXITED,
    "Deleting": PodStatus.DELETING,
}
_DEFAULT_LABELS = frozenset({"self-hosted"})
POD_SEEN_GRACE = 30.0
"""How long a pod this process created may be missing from the informer's cache."""
_WRITTEN_PHASES = frozenset({RunnerPhase.IDLE, RunnerPhase.BUSY, RunnerPhase.FAILED})


@dataclass
class RunnerStats:
    pods_created: int = 0
    pods_deleted: int = 0
    status_writes: int = 0
    deregistrations: int = 0
    busy_refusals: int = 0


class RunnerController:
    def __init__(
        self,
        *,
        kube: KubeClient,
        github: GitHubClient,
        directory: RunnerDirectory,
        recorder: EventRecorder,
        runners: Informer,
        pods: Informer,
        options: ControllerOptions,
        clock: Callable[[], float] = time.time,
        clients: GitHubClients | None = None,
    ) -> None:
        self.kube = kube
        self.clients = clients or GitHubClients(None, GitHubAPI(github, directory))
        self.recorder = recorder
        self.runners = runners
        self.pods = pods
        self.options = options
        self.clock = clock
        self.stats = RunnerStats()
        self._backoff: dict[str, Backoff] = {}
        self.groups = RunnerGroups(options.runner_group_ttl)
        self._drained: dict[str, float] = {}  # Runner uid -> when its labels were replaced
        self._deleted: dict[str, float] = {}  # Runner uid -> when this process asked to delete it
        self._finalized: dict[str, float] = {}  # Runner uid -> when its finalizer was removed
        self._pods_made: dict[str, float] = {}  # Runner uid -> when its pod was created, until seen
        self.objects = RunnerObjects(kube, recorder, conflict_retry=options.max_backoff)

    # ------------------------------------------------------------------------------- observe
    def uses_jit(self, runner: Runner) -> bool:
        forced = runner.metadata.annotations.get(ANNOTATION_REGISTRATION)
        if forced in ("jit", "token"):
            return forced == "jit" and runner.spec.effective_ephemeral
        if not runner.spec.effective_ephemeral:
            return False  # GitHub's JIT runners are always ephemeral
        if self.options.registration_mode != "auto":
            return self.options.registration_mode == "jit"
        image = runner.spec.image or self.options.pod.runner_image
        return "summerwind/actions-runner" not in image

    @property
    def github(self) -> GitHubClient:
        """The client of the Runner being reconciled (its githubAPICredentialsFrom, or the default)."""
        return self.clients.current().github

    @property
    def directory(self) -> RunnerDirectory:
        return self.clients.current().directory

    async def reconcile(self, key: Key) -> Result | None:
        obj = self.runners.store.get(key)
        if obj is None:
            return None
        try:
            api = await self.clients.get(key.namespace, credentials_secret(obj))
        except GitHubError as exc:
            await self.recorder.warning(obj, exc.reason, str(exc))
            return Result(requeue_after=CREDENTIALS_RETRY)
        async with using(api):
            return await self._reconcile(key, obj)

    async def _reconcile(self, key: Key, obj: Mapping[str, Any]) -> Result | None:
        try:
            runner = Runner.from_dict(obj)
        except ApiParseError as exc:
            await self.recorder.warning(obj, "InvalidSpec", str(exc))
            return None
        runner_scope = runner.spec.scope
        if runner_scope is None:
            await self.recorder.warning(
                obj, "InvalidSpec", "spec needs enterprise, organization or repository"
            )
            return None
        scope = Scope.from_runner_scope(runner_scope)
        uid = runner.metadata.uid or ""
        pod = self.pods.store.get(key)
        pod_state = runner_container_state(pod) if pod is not None else None
        if pod is not None:
            self._pods_made.pop(runner.metadata.uid or "", None)
        pod_status = _LIFECYCLE[pod_state.lifecycle] if pod_state else PodStatus.ABSENT
        deleting = runner.metadata.deletion_timestamp is not None

        # A `completed` webhook named this registration: an ephemeral runner's one job is over and
        # GitHub removed it, so no listing can change what happens next.
        known_id = (pod_state.runner_id if pod_state else None) or self.directory.runner_id(scope, key.name)
        finished_age = self.directory.finished_age(key.name, known_id)
        job_finished = finished_age is not None and runner.spec.effective_ephemeral
        exited_done = (  # an ephemeral runner that exited 0: GitHub removed it, nothing to ask
            pod_state is not None and pod_status is PodStatus.EXITED and pod_state.exit_code == 0
        ) and runner.spec.effective_ephemeral

        # GitHub's view: fresh while the runner comes online, relaxed once it is known.
        github_state = self.directory.state(scope, key.name)
        if (pod_status in (PodStatus.RUNNING, PodStatus.DELETING) or deleting) and not (
            job_finished or exited_done
        ):
            settled = github_state in (GitHubState.IDLE, GitHubState.BUSY)
            max_age = (
                self.options.sync_period / 2 if settled and not deleting else self.options.registering_max_age
            )
            try:
                await self.directory.refresh(scope, max_age=max_age)
            except RateLimitedError as exc:
                logger.info("runner %s: GitHub rate limited until %.0f", key, exc.resume_at)
            except GitHubError as exc:
                await self.recorder.warning(
                    obj, exc.reason, f"listing runners of {scope.kind} {scope.name}: {exc}"
                )
            github_state = self.directory.state(scope, key.name)

        runner_id = (pod_state.runner_id if pod_state else None) or self.directory.runner_id(scope, key.name)
        backoff = self._backoff.get(uid, Backoff())
        now = self.clock()
        running_since = None
        if pod_state is not None:
            running_since = epoch(pod_state.ready_since) or epoch(pod_state.running_since)
        facts = RunnerFacts(
            now=now,
            deleting=deleting,
            has_finalizer=RUNNER_FINALIZER in runner.metadata.finalizers,
            ephemeral=runner.spec.effective_ephemeral,
            jit=self.uses_jit(runner),
            pod=pod_status,
            exit_code=pod_state.exit_code if pod_state else None,
            runner_id=runner_id,
            github=github_state,
            pod_running_since=running_since,
            pod_ready=pod_state is None or pod_state.phase is not RunnerPodPhase.RUNNING,
            drained_at=self._drained.get(uid),
            drain_grace=self.options.drain_grace,
            registration_timeout=self.options.registration_timeout,
            next_attempt_at=backoff.next_attempt_at,
            job_finished_at=None if finished_age is None or runner_id != known_id else now - finished_age,
        )
        decision = decide(facts)
        if github_state in (GitHubState.IDLE, GitHubState.BUSY) and pod_state is not None and not deleting:
            await self.objects.consume(runner)  # online: its container has read the credential
        if pod_state is not None and pod_state.stuck and not deleting:
            await self.recorder.warning(obj, pod_state.reason or pod_state.phase.value, pod_state.message)

        result = Result(requeue_after=decision.requeue_after)
        try:
            for step in decision.steps:
                await self._do(step, obj, runner, scope, pod, runner_id)
        except StopSteps as stop:
            result = stop.result

        if decision.failed:
            backoff.failures += 1
            delay = min(self.options.max_backoff, 5.0 * 2 ** (backoff.failures - 1))
            backoff.next_attempt_at = now + delay
            self._backoff[uid] = backoff
            await self.recorder.warning(
                obj, "RunnerPodReplaced", f"{decision.reason}; next pod in {delay:.0f}s"
            )
        elif decision.phase in (RunnerPhase.IDLE, RunnerPhase.BUSY):
            self._backoff.pop(uid, None)
        if Step.REMOVE_FINALIZER in decision.steps or Step.DELETE_RUNNER in decision.steps:
            self._backoff.pop(uid, None)
            self._drained.pop(uid, None)
            if Step.REMOVE_FINALIZER in decision.steps:
                self._deleted.pop(uid, None)
                self._pods_made.pop(uid, None)
                self.objects.forget(uid)

        if not deleting:
            await self._write_status(obj, runner, decision, pod_state)
        if (
            result.requeue_after is None
            and not deleting
            and decision.phase
            in (
                RunnerPhase.IDLE,
                RunnerPhase.BUSY,
            )
        ):
            result = Result(requeue_after=self.options.sync_period)
        return result

    # ------------------------------------------------------------------------------- act
    async def _do(
        self,
        step: Step,
        obj: Mapping[str, Any],
        runner: Runner,
        scope: Scope,
        pod: Mapping[str, Any] | None,
        runner_id: int | None,
    ) -> None:
        name, namespace = runner.name, runner.namespace
        if step is Step.ADD_FINALIZER:
            await self._patch_finalizers(runner, [*runner.metadata.finalizers, RUNNER_FINALIZER])
        elif step is Step.REMOVE_FINALIZER:
            await self._remove_finalizer(runner)
        elif step is Step.CREATE_POD:
            await self._create_pod(obj, runner, scope)
        elif step is Step.DRAIN:
            if runner_id is None:
                return
            try:
                if not self.directory.gone(scope, runner_id):
                    await self.github.set_runner_labels(scope, runner_id, drain_labels(self.options))
            except RateLimitedError as exc:
                raise StopSteps(Result(requeue_after=max(1.0, exc.resume_at - time.time()))) from None
            except NotFoundError:
                # already gone from GitHub: nothing can be routed to it, and nothing to deregister
                self.directory.mark_gone(scope, name, runner_id)
            except GitHubError as exc:
                await self.recorder.warning(obj, exc.reason, f"draining runner {name}: {exc}")
                raise StopSteps(Result(requeue=True)) from None
            self._drained[runner.metadata.uid or ""] = self.clock()
            await self.recorder.normal(
                obj,
                "Draining",
                f"runner {name} takes no new jobs; removed in {self.options.drain_grace:.0f}s"
                " unless a job shows up",
            )
        elif step is Step.DEREGISTER:
            if runner_id is None:
                return
            try:
                if not self.directory.gone(scope, runner_id):
                    await self.github.delete_runner(scope, runner_id)  # 404: already gone, fine
            except RunnerBusyError:
                self.stats.busy_refusals += 1
                await self.recorder.normal(
                    obj, "RunnerBusy", f"runner {name} is running a job; it is removed once the job is done"
                )
                raise StopSteps(Result(requeue_after=BUSY_RETRY)) from None
            except RateLimitedError as exc:
                raise StopSteps(Result(requeue_after=max(1.0, exc.resume_at - time.time()))) from None
            except GitHubError as exc:
                await self.recorder.warning(obj, exc.reason, f"removing runner {name} from GitHub: {exc}")
                raise StopSteps(Result(requeue=True)) from None
            self.stats.deregistrations += 1
            self.directory.mark_gone(scope, name, runner_id)
        elif step is Step.DELETE_POD:
            if pod is None:
                return
            await self.kube.delete(
                PODS, name, namespace=namespace, uid=pod["metadata"].get("uid"), missing_ok=True
            )
            self.stats.pods_deleted += 1
        elif step is Step.DELETE_RUNNER:
            uid = runner.metadata.uid or ""
            if self.clock() - self._deleted.get(uid, float("-inf")) < 30.0:
                return  # sent already; the informer has not shown the deletionTimestamp yet
            await self.kube.delete(RUNNERS, name, namespace=namespace, uid=uid, missing_ok=True)
            self._deleted[uid] = self.clock()

    async def _patch_finalizers(self, runner: Runner, finalizers: list[str]) -> None:
        try:
            await self.kube.patch(
                RUNNERS,
                runner.name,
                {"metadata": {"finalizers": finalizers}},
                namespace=runner.namespace,
                resource_version=runner.metadata.resource_version,
            )
        except NotFound:
            return
        except Conflict:
            raise StopSteps(Result(requeue=True)) from None

    async def _remove_finalizer(self, runner: Runner) -> None:
        """A JSON patch that tests the entry it removes: no conflict with concurrent status writes."""
        finalizers = runner.metadata.finalizers
        uid = runner.metadata.uid or ""
        if RUNNER_FINALIZER not in finalizers or uid in self._finalized:
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
        self._finalized[uid] = self.clock()
        if len(self._finalized) > 10_000:  # the objects are gone; keep the memo small
            cutoff = self.clock() - 300.0
            self._finalized = {k: t for k, t in self._finalized.items() if t > cutoff}

    async def _register(self, obj: Mapping[str, Any], runner: Runner, scope: Scope) -> Registration:
        if not self.uses_jit(runner):
            token = await self.github.create_registration_token(scope)
            return RegistrationToken(token.token)
        labels = runner_labels(runner.spec, self.options.pod)
        custom = [label for label in labels if label.lower() not in _DEFAULT_LABELS] or ["self-hosted"]
        group = runner.spec.group
        work = runner.spec.effective_work_dir

        async def generate(group_id: int) -> JitRunnerConfig:
            return await self.github.generate_jit_config(
                scope, runner.name, labels=custom, runner_group_id=group_id, work_folder=work
            )

        for attempt in (1, 2):
            try:
                jit = await self.groups.call(self.github, scope, group, generate)
                return JitConfig(jit.encoded_jit_config, jit.runner_id)
            except ConflictError:
                # A registration of this name is left from an attempt whose pod was never created
                # (e.g. the controller stopped in between). It has no pod, so it holds no job.
                if attempt == 2:
                    raise
                for stale in await self.github.list_runners(scope, name=runner.name):
                    if stale.name != runner.name:
                        continue
                    label = self.options.pod.installation_label
                    if label and not carries(stale, label):
                        # another installation's runner of the same name (two clusters, one org)
                        await self.recorder.warning(
                            obj,
                            "RunnerNameTaken",
                            f"a runner named {runner.name} is registered by another installation",
                        )
                        raise
                    await self.github.delete_runner(scope, stale.id)
                    await self.recorder.normal(
                        obj,
                        "StaleRegistrationRemoved",
                        f"removed a registration of {runner.name} left without a pod",
                    )
        raise AssertionError("unreachable")

    async def _create_pod(self, obj: Mapping[str, Any], runner: Runner, scope: Scope) -> None:
        made = self._pods_made.get(runner.metadata.uid or "")
        if made is not None and self.clock() - made < POD_SEEN_GRACE:
            # created a moment ago and not in the cache yet: registering again would overwrite the
            # credentials in its Secret before its container read them
            raise StopSteps(Result(requeue_after=1.0))
        try:
            registration = await self._register(obj, runner, scope)
        except RateLimitedError as exc:
            await self.recorder.warning(obj, exc.reason, f"waiting for GitHub's rate limit to reset: {exc}")
            raise StopSteps(Result(requeue_after=max(1.0, exc.resume_at - time.time()))) from None
        except RunnerBusyError:
            raise StopSteps(Result(requeue_after=BUSY_RETRY)) from None
        except GitHubError as exc:
            await self.recorder.warning(obj, exc.reason, f"registering runner {runner.name}: {exc}")
            await self._set_status(
                obj, {"phase": "Failed", "ready": False, "reason": exc.reason, "message": str(exc)}
            )
            raise StopSteps(Result(requeue=True)) from None
        labels = dict(runner.metadata.labels)
        annotations = {
            k: v for k, v in runner.metadata.annotations.items() if not k.startswith("kubectl.kubernetes.io/")
        }
        try:
            manifest = build_runner_pod(
                runner.name,
                runner.namespace,
                runner.spec,
                registration,
                self.options.pod,
                labels=labels,
                annotations=annotations,
                owner_references=[controller_ref(obj)],
            )
        except RunnerPodError as exc:
            await self._abandon_registration(scope, registration)
            await self.recorder.warning(obj, "InvalidRunnerPod", str(exc))
            raise StopSteps(Result()) from None
        try:
            await self.objects.store_credentials(obj, runner, registration)
            if (
                manifest["spec"].get("serviceAccountName") == runner.name
                and not runner.spec.service_account_name
            ):
                await self.objects.create_identity(obj, runner)
            await self.kube.create(PODS, manifest, namespace=runner.namespace)
        except AlreadyExists:
            await self._abandon_registration(scope, registration)
            raise StopSteps(Result(requeue=True)) from None
        except Exception:
            await self._abandon_registration(scope, registration)
            raise
        self.stats.pods_created += 1
        self._pods_made[runner.metadata.uid or ""] = self.clock()
        mode = "JIT config" if isinstance(registration, JitConfig) else "registration token"
        await self.recorder.normal(obj, "PodCreated", f"created pod {runner.name} ({mode})")

    async def _abandon_registration(self, scope: Scope, registration: Registration) -> None:
        if isinstance(registration, JitConfig):
            try:
                await asyncio.shield(self.github.delete_runner(scope, registration.runner_id))
            except GitHubError as exc:
                logger.warning("could not remove unused registration %s: %s", registration.runner_id, exc)

    # ------------------------------------------------------------------------------- status
    async def _write_status(
        self,
        obj: Mapping[str, Any],
        runner: Runner,
        decision: RunnerDecision,
        pod_state: RunnerPodState | None,
    ) -> None:
        # Only phases a user acts on are written (two writes for a typical ephemeral runner: Idle,
        # Running). A Runner with no status.phase is starting: pending, or registering with GitHub.
        stuck = pod_state is not None and pod_state.stuck
        if decision.phase not in _WRITTEN_PHASES and not stuck:
            return
        phase = decision.phase or RunnerPhase.PENDING
        reason, message = (decision.reason, "") if phase is RunnerPhase.FAILED else ("", "")
        if pod_state is not None and pod_state.stuck:
            reason, message = pod_state.reason or pod_state.phase.value, pod_state.message
        scope = runner.spec.scope
        registration: dict[str, Any] = {"labels": list(runner.spec.labels)}
        if scope is not None:
            registration[scope.kind] = scope.name
        want = {
            "phase": phase.value,
            "ready": phase in (RunnerPhase.IDLE, RunnerPhase.BUSY),
            "reason": reason,
            "message": message,
            "registration": registration,
        }
        await self._set_status(obj, want)

    async def _set_status(self, obj: Mapping[str, Any], want: dict[str, Any]) -> None:
        current = obj.get("status") or {}
        if all(current.get(k) == v or (v in ("", None) and not current.get(k)) for k, v in want.items()):
            return
        meta = obj["metadata"]
        try:
            await self.kube.patch_status(RUNNERS, meta["name"], {"status": want}, namespace=meta["namespace"])
        except NotFound:
            return
        self.stats.status_writes += 1
