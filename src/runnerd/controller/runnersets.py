"""The RunnerSet controller: ``replicas`` runners, each one StatefulSet (``replicas: 1``) of its own.

ARC's design, without ARC's mutating pod webhook: the credentials go in a Secret per runner that
the pod reads through ``secretKeyRef`` (:mod:`runnerd.reconcile.runnerset` explains the whole
contract). For every runner StatefulSet this controller observes the pod, the Secret and GitHub's
listing, asks :func:`runnerd.reconcile.runnerset.decide_runner` what to do, and does it in order,
stopping at the first step that cannot complete (GitHub answers 422 to the removal of a busy runner:
nothing after that runs). Then it creates or removes runners toward ``replicas``
(:func:`runnerd.reconcile.runnerset.plan_runnerset`: never a busy one), reuses the volumes of
finished runners, and writes the status.

A runner is created in this order: register with GitHub (a JIT config, or a registration token),
create the StatefulSet (its name, hence the runner's, is picked here), create its Secret. If the
controller stops in between, a registration is left without a StatefulSet (the orphan sweep,
:mod:`runnerd.controller.orphans`, removes it: no pod can ever use it) or a StatefulSet without
credentials (it is removed like a failed runner).

Volume claims of ``volumeClaimTemplates`` are not deleted with a runner's StatefulSet. Once it is
gone, its claims are deleted and a volume whose reclaim policy is ``Retain`` is handed to the next
runner of the same RunnerSet that waits for a claim of the same template (the volume's ``claimRef``
is set to that claim, so no other namespace or RunnerSet can take it).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from runnerd.api import ApiParseError, RunnerSet
from runnerd.controller.clients import (
    CREDENTIALS_RETRY,
    GitHubAPI,
    GitHubClients,
    credentials_secret,
    using,
)
from runnerd.controller.common import (
    ANNOTATION_REGISTRATION,
    RUNNER_SETS,
    Backoff,
    ControllerOptions,
    RunnerGroups,
    StopSteps,
    controller_ref,
    created_at,
    drain_labels,
)
from runnerd.controller.directory import RunnerDirectory
from runnerd.controller.expectations import Expectations, ReplacementHolds
from runnerd.github import GitHubClient, Scope
from runnerd.github.errors import GitHubError, NotFoundError, RateLimitedError, RunnerBusyError
from runnerd.kube.client import KubeClient
from runnerd.kube.resources import PERSISTENT_VOLUME_CLAIMS, SECRETS, STATEFUL_SETS, Resource
from runnerd.reconcile.pod import (
    ANNOTATION_GITHUB_API_CREDS_SECRET,
    RUNNER_CONTAINER,
    JitConfig,
    Registration,
    RegistrationToken,
    RunnerPodError,
    runner_labels,
)
from runnerd.reconcile.replicas import RunnerPhase, RunnerView
from runnerd.reconcile.runner import BUSY_RETRY, REGISTERING_RECHECK, GitHubState, PodStatus
from runnerd.reconcile.runnerset import (
    FINALIZER,
    LABEL_RUNNER_STATEFULSET_NAME,
    LABEL_RUNNERSET_NAME,
    SUFFIX_ALPHABET,
    SUFFIX_LENGTH,
    Action,
    CredentialKind,
    Credentials,
    PodObservation,
    RunnerSetRunnerDecision,
    RunnerSetRunnerFacts,
    RunnerStatefulSet,
    SecretState,
    build_runner_secret,
    build_runner_statefulset,
    claim_fits_volume,
    claim_ref,
    claim_template_name,
    consume_patch,
    decide_runner,
    observe_pod,
    parse_statefulset,
    plan_runnerset,
    runner_name,
    runnerset_selector,
    runnerset_status,
    runnerset_template_hash,
    secret_state,
    selector_string,
    statefulset_name,
)
from runnerd.runtime import (
    AlreadyExists,
    Conflict,
    Controller,
    EventRecorder,
    Forbidden,
    Informer,
    InformerEvent,
    Invalid,
    Key,
    NotFound,
    Obj,
    Result,
    by_label,
)

if TYPE_CHECKING:
    from runnerd.controller.process import Controllers

logger = logging.getLogger(__name__)

PERSISTENT_VOLUMES = Resource("", "v1", "persistentvolumes", "PersistentVolume", namespaced=False)

INDEX_RUNNERSET = "runnerset"
"""Store index of StatefulSets, Secrets and claims: ``<namespace>/<runnerset-name>``."""
LABEL_RECYCLE = "runnerd.dev/recycle"
"""On a PersistentVolume released by a finished runner, until the next runner has it."""
ANNOTATION_RECYCLE_FOR = "runnerd.dev/recycle-for"
"""``<namespace>/<runnerset>`` whose next runner gets the volume."""
ANNOTATION_RECYCLE_TEMPLATE = "runnerd.dev/recycle-claim-template"
ANNOTATION_RECYCLE_FROM = "runnerd.dev/recycle-from-claim"
ANNOTATION_RECYCLED_VOLUME = "runnerd.dev/recycled-volume"
"""On a claim given a released volume (the update also makes the volume binder look at it now)."""
SECRET_GRACE = 30.0
"""How long a write of this process may be missing from the informer before it counts as not done."""
MAX_RUNNER_STATEFULSETS = 1000
"""ARC's safety limit: a RunnerSet with more StatefulSets than this is not reconciled."""


def index_by_runnerset(obj: Obj) -> list[str]:
    meta = obj.get("metadata") or {}
    name = (meta.get("labels") or {}).get(LABEL_RUNNERSET_NAME)
    return [f"{meta.get('namespace') or ''}/{name}"] if name else []


def random_suffix() -> str:
    return "".join(secrets.choice(SUFFIX_ALPHABET) for _ in range(SUFFIX_LENGTH))


def _owner_uid(obj: Mapping[str, Any]) -> str | None:
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or ():
        if ref.get("controller"):
            return str(ref.get("uid"))
    return None


def _scope(info: RunnerStatefulSet) -> Scope | None:
    if info.scope_kind is None:
        return None
    try:
        return Scope(info.scope_kind, info.scope_name)
    except GitHubError:
        return None


@dataclass
class RunnerSetStats:
    statefulsets_created: int = 0
    statefulsets_deleted: int = 0
    credentials_consumed: int = 0
    deregistrations: int = 0
    busy_refusals: int = 0
    claims_deleted: int = 0
    volumes_reused: int = 0


def _credentials_annotation(sts: Mapping[str, Any]) -> str | None:
    template = (sts.get("spec") or {}).get("template") or {}
    value = ((template.get("metadata") or {}).get("annotations") or {}).get(
        ANNOTATION_GITHUB_API_CREDS_SECRET
    )
    return str(value) if value else None


class RunnerSetController:
    def __init__(
        self,
        *,
        kube: KubeClient,
        github: GitHubClient,
        directory: RunnerDirectory,
        recorder: EventRecorder,
        runner_sets: Informer,
        stateful_sets: Informer,
        pods: Informer,
        secrets: Informer,
        options: ControllerOptions,
        claims: Informer | None = None,
        volumes: Informer | None = None,
        clock: Callable[[], float] = time.time,
        suffix: Callable[[], str] = random_suffix,
        clients: GitHubClients | None = None,
    ) -> None:
        self.kube = kube
        self.clients = clients or GitHubClients(None, GitHubAPI(github, directory))
        self.recorder = recorder
        self.runner_sets = runner_sets
        self.stateful_sets = stateful_sets
        self.pods = pods
        self.secrets = secrets
        self.claims = claims
        self.volumes = volumes
        self.options = options
        self.clock = clock
        self.suffix = suffix
        self.stats = RunnerSetStats()
        self.expect = Expectations(time.monotonic)
        self.holds = ReplacementHolds(time.monotonic)
        self._secrets_made: dict[Key, float] = {}
        self._backoff: dict[Key, Backoff] = {}
        self.groups = RunnerGroups(options.runner_group_ttl)
        self._drained: dict[str, float] = {}  # StatefulSet uid -> when its runner's labels were replaced
        self._reserved: dict[str, float] = {}  # claim uid -> when a volume was reserved for it

    # ------------------------------------------------------------------------------- reconcile
    @property
    def github(self) -> GitHubClient:
        """The client of the RunnerSet being reconciled (its githubAPICredentialsFrom, or the default)."""
        return self.clients.current().github

    @property
    def directory(self) -> RunnerDirectory:
        return self.clients.current().directory

    async def reconcile(self, key: Key) -> Result | None:
        obj = self.runner_sets.store.get(key)
        if obj is not None:
            secret = credentials_secret(obj)
        else:  # its StatefulSets remember it in their pod template
            stateful_sets = self.stateful_sets.store.by_index(INDEX_RUNNERSET, f"{key.namespace}/{key.name}")
            secret = next(filter(None, map(_credentials_annotation, stateful_sets)), None)
        try:
            api = await self.clients.get(key.namespace, secret)
        except GitHubError as exc:
            if obj is not None:
                await self.recorder.warning(obj, exc.reason, str(exc))
            else:
                logger.warning("RunnerSet %s: %s", key, exc)
            return Result(requeue_after=CREDENTIALS_RETRY)
        async with using(api):
            return await self._reconcile(key)

    async def _reconcile(self, key: Key) -> Result | None:
        obj = self.runner_sets.store.get(key)
        labelled = [
            s
            for s in self.stateful_sets.store.by_index(INDEX_RUNNERSET, f"{key.namespace}/{key.name}")
            if (s["metadata"].get("labels") or {}).get(LABEL_RUNNER_STATEFULSET_NAME) == s["metadata"]["name"]
        ]
        if obj is None:
            self.expect.forget(key)
            self.holds.forget(key)
            self._backoff.pop(key, None)
            return await self._reconcile_orphans(key, labelled)
        try:
            rs = RunnerSet.from_dict(obj)
        except ApiParseError as exc:
            await self.recorder.warning(obj, "InvalidSpec", str(exc))
            return None
        runner_scope = rs.spec.scope
        if runner_scope is None:
            await self.recorder.warning(
                obj, "InvalidSpec", "spec needs enterprise, organization or repository"
            )
            return None
        if len(labelled) > MAX_RUNNER_STATEFULSETS:
            await self.recorder.warning(
                obj, "TooManyRunners", f"{len(labelled)} runner StatefulSets; not reconciling above 1000"
            )
            return None
        scope = Scope.from_runner_scope(runner_scope)
        uid = rs.metadata.uid or ""
        current_hash = runnerset_template_hash(rs.spec, self.options.pod.common_runner_labels)
        deleting_rs = rs.metadata.deletion_timestamp is not None

        await self._refresh(
            obj, {scope, *filter(None, (_scope(parse_statefulset(s)) for s in labelled))}, labelled
        )

        views: dict[str, RunnerView] = {}
        infos: dict[str, tuple[Obj, RunnerStatefulSet]] = {}
        requeue: list[float] = []
        not_deleting = {s["metadata"]["name"] for s in labelled if not s["metadata"].get("deletionTimestamp")}
        being_deleted = self.expect.pending_deletions(key, not_deleting)
        for sts in labelled:
            info = parse_statefulset(sts)
            if info.name in being_deleted:
                # Deleted by this process a moment ago; the informer will show it (and wake us).
                views[info.name] = RunnerView(
                    name=info.name,
                    created_at=created_at(sts),
                    phase=RunnerPhase.PENDING,
                    deleting=True,
                    template_hash=info.template_hash,
                )
                continue
            remove = _owner_uid(sts) != uid or deleting_rs
            decision, stopped = await self._sync_runner(obj, sts, info, remove=remove)
            if stopped is not None and stopped.requeue_after is not None:
                requeue.append(stopped.requeue_after)
            elif stopped is not None:
                requeue.append(1.0)
            if decision.requeue_after is not None:
                requeue.append(decision.requeue_after)
            if decision.failed and stopped is None and Action.DELETE in decision.actions:
                self._fail(key)
            elif decision.phase in (RunnerPhase.IDLE, RunnerPhase.BUSY) and not decision.finished:
                self._backoff.pop(key, None)
            if remove:
                continue
            infos[info.name] = (sts, info)
            views[info.name] = RunnerView(
                name=info.name,
                created_at=created_at(sts),
                phase=decision.phase,
                deleting=info.deleting or decision.finished,
                template_hash=info.template_hash,
            )

        live = {s["metadata"]["name"] for s in labelled}
        for name in self.expect.pending_creations(key, live):
            views[name] = RunnerView(
                name=name, created_at=time.time(), phase=RunnerPhase.PENDING, template_hash=current_hash
            )

        desired = 0 if deleting_rs else rs.spec.effective_replicas
        plan = plan_runnerset(desired, current_hash, list(views.values()))
        removed: list[str] = []
        for name in plan.delete:
            sts, info = infos[name]
            decision, stopped = await self._sync_runner(obj, sts, info, remove=True)
            if stopped is None:
                removed.append(name)
                views[name] = RunnerView(
                    name=name,
                    created_at=views[name].created_at,
                    phase=views[name].phase,
                    deleting=True,
                    template_hash=views[name].template_hash,
                )
            else:
                requeue.append(stopped.requeue_after or 1.0)
        if removed:
            await self.recorder.normal(obj, "ScaledDown", f"removing runner(s) {', '.join(removed)}")

        missing = 0
        if not deleting_rs:
            # effectiveTime: a finished ephemeral runner is not replaced until the HRA decides again
            missing, hold_until = self.holds.check(
                key, rs.spec.effective_ephemeral, rs.spec.effective_time, desired, plan.create
            )
            if hold_until is not None:
                requeue.append(max(hold_until - time.monotonic(), 0.0) + 0.05)
        if missing and not deleting_rs:
            backoff = self._backoff.get(key)
            wait = (backoff.next_attempt_at - self.clock()) if backoff else 0.0
            if wait > 0:
                requeue.append(wait)
            else:
                for _ in range(missing):
                    created = await self._create_runner(key, obj, rs, scope, current_hash)
                    if created is None:
                        requeue.append(REGISTERING_RECHECK)
                        break
                    views[created] = RunnerView(
                        name=created,
                        created_at=time.time(),
                        phase=RunnerPhase.PENDING,
                        template_hash=current_hash,
                    )

        await self._recycle_volumes(key, obj, live | set(views), runnerset_exists=True)

        if not deleting_rs:
            selector = selector_string(runnerset_selector(rs.name, rs.spec))
            await self._write_status(
                obj, runnerset_status(desired, current_hash, list(views.values()), selector)
            )

        # Runners being removed come back on their own schedule (drain grace, busy retry) or on events.
        unsettled = any(
            v.phase in (RunnerPhase.PENDING, RunnerPhase.REGISTERING) and not v.deleting
            for v in views.values()
        )
        if unsettled:
            requeue.append(self._poll_interval())
        elif views:
            requeue.append(self.options.sync_period)
        return Result(requeue_after=max(0.0, min(requeue))) if requeue else None

    async def _reconcile_orphans(self, key: Key, labelled: list[Obj]) -> Result | None:
        """The RunnerSet is gone: remove its runners (through GitHub) and then their claims."""
        if not labelled and not self._orphan_claims(key) and not self._marked_volumes(key):
            return None
        scopes = {s for s in (_scope(parse_statefulset(sts)) for sts in labelled) if s is not None}
        await self._refresh(labelled[0] if labelled else {}, scopes, labelled)
        requeue: list[float] = []
        for sts in labelled:
            decision, stopped = await self._sync_runner(sts, sts, parse_statefulset(sts), remove=True)
            requeue.append(
                (stopped.requeue_after if stopped else decision.requeue_after) or self._poll_interval()
            )
        await self._recycle_volumes(
            key, None, {s["metadata"]["name"] for s in labelled}, runnerset_exists=False
        )
        return Result(requeue_after=min(requeue)) if requeue else None

    def _poll_interval(self) -> float:
        """How often runners that are starting or being removed are looked at (GitHub is polled)."""
        return min(REGISTERING_RECHECK, max(1.0, 2 * self.options.registering_max_age))

    def _fail(self, key: Key) -> None:
        """A runner failed (or could not be made): the next one waits, doubling up to max_backoff."""
        backoff = self._backoff.setdefault(key, Backoff())
        backoff.failures += 1
        delay = min(self.options.max_backoff, 5.0 * 2 ** (backoff.failures - 1))
        backoff.next_attempt_at = self.clock() + delay

    # ------------------------------------------------------------------------------- observe
    async def _refresh(self, obj: Mapping[str, Any], scopes: set[Scope], labelled: list[Obj]) -> None:
        settled = True
        for sts in labelled:
            info = parse_statefulset(sts)
            scope = _scope(info)
            pod = self._pod(sts, info)
            if scope is None:
                continue
            state = self.directory.state(scope, info.runner)
            if (
                info.deleting
                or pod.status is not PodStatus.RUNNING
                or state not in (GitHubState.IDLE, GitHubState.BUSY)
            ):
                settled = False
        max_age = self.options.sync_period / 2 if settled else self.options.registering_max_age
        for scope in scopes:
            try:
                await self.directory.refresh(scope, max_age=max_age)
            except RateLimitedError as exc:
                logger.info("runnerset: GitHub rate limited until %.0f", exc.resume_at)
            except GitHubError as exc:
                if obj:
                    await self.recorder.warning(
                        obj, exc.reason, f"listing runners of {scope.kind} {scope.name}: {exc}"
                    )

    def _pod(self, sts: Mapping[str, Any], info: RunnerStatefulSet) -> PodObservation:
        pod = self.pods.store.get(Key(sts["metadata"]["namespace"], info.runner))
        if pod is not None and _owner_uid(pod) != info.uid:
            pod = None
        return observe_pod(pod)

    def _secret(self, sts: Mapping[str, Any], info: RunnerStatefulSet) -> SecretState:
        key = Key(sts["metadata"]["namespace"], info.name)
        secret = self.secrets.store.get(key)
        if secret is not None and _owner_uid(secret) != info.uid:
            secret = None
        state = secret_state(secret, info.credentials)
        made = self._secrets_made.get(key)
        if secret is not None or (made is not None and time.monotonic() - made > SECRET_GRACE):
            self._secrets_made.pop(key, None)
        elif made is not None:
            return SecretState(Credentials.FRESH, None, info.runner_id)  # created; informer lags
        return state

    # ------------------------------------------------------------------------------- one runner
    async def _sync_runner(
        self, obj: Mapping[str, Any], sts: Obj, info: RunnerStatefulSet, *, remove: bool
    ) -> tuple[RunnerSetRunnerDecision, Result | None]:
        """Decide for one runner and act; returns the decision and, if a step stopped, the result."""
        scope = _scope(info)
        pod = self._pod(sts, info)
        secret = self._secret(sts, info)
        github = self.directory.state(scope, info.runner) if scope else GitHubState.UNKNOWN
        runner_id = info.runner_id or secret.runner_id or pod.runner_id
        if runner_id is None and scope is not None:
            runner_id = self.directory.runner_id(scope, info.runner)
        finished_age = self.directory.finished_age(info.runner, runner_id)
        now = self.clock()
        decision = decide_runner(
            RunnerSetRunnerFacts(
                now=now,
                deleting=info.deleting,
                has_finalizer=FINALIZER in info.finalizers,
                ephemeral=info.ephemeral,
                jit=info.credentials == "jit",
                pod=pod,
                secret=secret,
                runner_id=runner_id,
                github=github,
                remove=remove,
                drained_at=self._drained.get(info.uid),
                drain_grace=self.options.drain_grace,
                registration_timeout=self.options.registration_timeout,
                job_finished_at=None if finished_age is None else now - finished_age,
            )
        )
        logger.debug(
            "%.3f runner %s: pod=%s secret=%s github=%s id=%s remove=%s deleting=%s -> %s %s",
            self.clock(),
            info.runner,
            pod.status.value,
            secret.credentials.value,
            github.value,
            runner_id,
            remove,
            info.deleting,
            [a.value for a in decision.actions],
            decision.reason,
        )
        if pod.stuck_reason and not decision.finished:
            await self.recorder.warning(obj, pod.stuck_reason, f"runner {info.runner}: {pod.stuck_message}")
        latest: Obj = sts
        try:
            for action in decision.actions:
                latest = await self._act(action, obj, latest, info, scope, pod, runner_id)
        except StopSteps as stop:
            return decision, stop.result
        if decision.failed and Action.DELETE in decision.actions:
            await self.recorder.warning(
                obj, "RunnerFailed", f"runner {info.runner}: {decision.reason}; replacing it"
            )
        return decision, None

    async def _act(
        self,
        action: Action,
        obj: Mapping[str, Any],
        sts: Obj,
        info: RunnerStatefulSet,
        scope: Scope | None,
        pod: PodObservation,
        runner_id: int | None,
    ) -> Obj:
        meta = sts["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        if action is Action.ADD_FINALIZER:
            return await self._patch_finalizers(sts, [*info.finalizers, FINALIZER])
        if action is Action.DRAIN:
            if runner_id is None or scope is None:
                return sts
            try:
                if not self.directory.gone(scope, runner_id):
                    await self.github.set_runner_labels(scope, runner_id, drain_labels(self.options))
            except RateLimitedError as exc:
                raise StopSteps(Result(requeue_after=max(1.0, exc.resume_at - time.time()))) from None
            except NotFoundError:
                # already gone from GitHub: nothing can be routed to it, and nothing to deregister
                self.directory.mark_gone(scope, info.runner, runner_id)
            except GitHubError as exc:
                await self.recorder.warning(obj, exc.reason, f"draining runner {info.runner}: {exc}")
                raise StopSteps(Result(requeue=True)) from None
            self._drained[info.uid] = self.clock()
            return sts
        if action is Action.REMOVE_FINALIZER:
            latest = await self._remove_finalizer(sts)
            self._drained.pop(info.uid, None)
            return latest
        if action is Action.CONSUME:
            try:
                await self.kube.patch(
                    SECRETS,
                    name,
                    consume_patch(info.credentials, pod.uid or "", runner_id),
                    namespace=namespace,
                )
            except NotFound:
                return sts
            self.stats.credentials_consumed += 1
            return sts
        if action is Action.DEREGISTER:
            if runner_id is None or scope is None:
                return sts
            try:
                if not self.directory.gone(scope, runner_id):
                    await self.github.delete_runner(scope, runner_id)  # 404: already gone, fine
            except RunnerBusyError:
                self.stats.busy_refusals += 1
                self.directory.hint_busy(scope, info.runner, True)
                await self.recorder.normal(
                    obj,
                    "RunnerBusy",
                    f"runner {info.runner} is running a job; it is removed once the job is done",
                )
                raise StopSteps(Result(requeue_after=BUSY_RETRY)) from None
            except RateLimitedError as exc:
                raise StopSteps(Result(requeue_after=max(1.0, exc.resume_at - time.time()))) from None
            except GitHubError as exc:
                await self.recorder.warning(
                    obj, exc.reason, f"removing runner {info.runner} from GitHub: {exc}"
                )
                raise StopSteps(Result(requeue=True)) from None
            self.stats.deregistrations += 1
            self.directory.mark_gone(scope, info.runner, runner_id)
            return sts
        # Action.DELETE
        self.expect.deleted(Key(namespace, info.runnerset), name)
        deleted = await self.kube.delete(
            STATEFUL_SETS, name, namespace=namespace, uid=info.uid, missing_ok=True
        )
        self.stats.statefulsets_deleted += 1
        if deleted is not None and deleted.get("kind") == "StatefulSet":
            return deleted
        return sts

    async def _remove_finalizer(self, sts: Obj) -> Obj:
        """Take our finalizer off (re-reading the StatefulSet when its controller changed it meanwhile)."""
        meta = sts["metadata"]
        for _ in range(3):
            finalizers = [f for f in (sts["metadata"].get("finalizers") or ()) if f != FINALIZER]
            try:
                return await self._patch_finalizers(sts, finalizers)
            except StopSteps:
                try:
                    sts = await self.kube.get(STATEFUL_SETS, meta["name"], namespace=meta["namespace"])
                except NotFound:
                    return sts
                if sts["metadata"].get("uid") != meta.get("uid"):
                    return sts
        raise StopSteps(Result(requeue=True))

    async def _patch_finalizers(self, sts: Obj, finalizers: list[str]) -> Obj:
        meta = sts["metadata"]
        try:
            return await self.kube.patch(
                STATEFUL_SETS,
                meta["name"],
                {"metadata": {"finalizers": finalizers}},
                namespace=meta["namespace"],
                resource_version=meta.get("resourceVersion"),
            )
        except NotFound:
            return sts
        except Conflict:
            raise StopSteps(Result(requeue=True)) from None

    # ------------------------------------------------------------------------------- create
    def credential_kind(self, rs: RunnerSet) -> CredentialKind:
        """JIT config (default) or registration token, as for Runners (see ControllerOptions)."""
        template_meta = rs.spec.template.get("metadata") or {}
        forced = rs.metadata.annotations.get(ANNOTATION_REGISTRATION) or (
            template_meta.get("annotations") or {}
        ).get(ANNOTATION_REGISTRATION)
        ephemeral = rs.spec.effective_ephemeral
        if forced in ("jit", "token"):
            return "jit" if forced == "jit" and ephemeral else "token"
        if not ephemeral:
            return "token"  # GitHub's JIT runners are always ephemeral
        if self.options.registration_mode != "auto":
            return "jit" if self.options.registration_mode == "jit" else "token"
        containers = (rs.spec.template.get("spec") or {}).get("containers") or ()
        template_image = next(
            (ct.get("image") for ct in containers if ct.get("name") == RUNNER_CONTAINER), None
        )
        image = rs.spec.image or template_image or self.options.pod.runner_image
        return "token" if "summerwind/actions-runner" in str(image) else "jit"

    async def _register(self, rs: RunnerSet, scope: Scope, runner: str, kind: CredentialKind) -> Registration:
        if kind == "token":
            token = await self.github.create_registration_token(scope)
            return RegistrationToken(token.token)
        labels = [x for x in runner_labels(rs.spec, self.options.pod) if x.lower() != "self-hosted"]
        jit = await self.groups.call(
            self.github,
            scope,
            rs.spec.group,
            lambda group_id: self.github.generate_jit_config(
                scope,
                runner,
                labels=labels or ["self-hosted"],
                runner_group_id=group_id,
                work_folder=rs.spec.effective_work_dir,
            ),
        )
        return JitConfig(jit.encoded_jit_config, jit.runner_id)

    async def _create_runner(
        self, key: Key, obj: Mapping[str, Any], rs: RunnerSet, scope: Scope, hash_: str
    ) -> str | None:
        """Register a runner, then create its StatefulSet and Secret; its name, or None if it could not."""
        name = statefulset_name(rs.name, self.suffix())
        runner = runner_name(name)
        kind = self.credential_kind(rs)

        def manifest_for(runner_id: int | None) -> Obj:
            return build_runner_statefulset(
                runnerset=rs.name,
                namespace=key.namespace,
                spec=rs.spec,
                name=name,
                template_hash_=hash_,
                credentials=kind,
                runner_id=runner_id,
                # per-runner ServiceAccounts are made for Runners only: a RunnerSet names its own
                options=dataclasses.replace(self.options.pod, service_account_per_runner=False),
                owner_references=[controller_ref(obj)],
                finalizers=[FINALIZER],
            )

        try:
            manifest_for(0 if kind == "jit" else None)  # a spec that makes no pod registers nothing
        except (RunnerPodError, ApiParseError) as exc:
            await self.recorder.warning(obj, "InvalidRunnerPod", str(exc))
            self._fail(key)
            return None
        try:
            registration = await self._register(rs, scope, runner, kind)
        except RateLimitedError as exc:
            await self.recorder.warning(obj, exc.reason, f"waiting for GitHub's rate limit to reset: {exc}")
            return None
        except GitHubError as exc:
            await self.recorder.warning(obj, exc.reason, f"registering runner {runner}: {exc}")
            self._fail(key)
            return None
        manifest = manifest_for(registration.runner_id if isinstance(registration, JitConfig) else None)
        try:
            sts = await self.kube.create(STATEFUL_SETS, manifest, namespace=key.namespace)
        except AlreadyExists:
            await self._abandon(scope, registration)
            return None
        except Invalid as exc:
            await self._abandon(scope, registration)
            await self.recorder.warning(obj, "InvalidRunnerStatefulSet", str(exc))
            self._fail(key)
            return None
        except Exception:
            await self._abandon(scope, registration)
            raise
        self.expect.created(key, name)
        self.stats.statefulsets_created += 1
        secret_key = Key(key.namespace, name)
        self._secrets_made[secret_key] = time.monotonic()
        with contextlib.suppress(AlreadyExists):
            await self.kube.create(SECRETS, build_runner_secret(sts, registration, runnerset=rs.name))
        mode = "JIT config" if kind == "jit" else "registration token"
        await self.recorder.normal(obj, "RunnerCreated", f"created runner StatefulSet {name} ({mode})")
        return name

    async def _abandon(self, scope: Scope, registration: Registration) -> None:
        if isinstance(registration, JitConfig):
            try:
                await asyncio.shield(self.github.delete_runner(scope, registration.runner_id))
            except GitHubError as exc:
                logger.warning("could not remove unused registration %s: %s", registration.runner_id, exc)

    # ------------------------------------------------------------------------------- volumes
    def _marked_volumes(self, key: Key) -> list[Obj]:
        """Volumes of finished runners waiting for the next runner of RunnerSet ``key``."""
        if self.volumes is None:
            return []
        return [
            v
            for v in self.volumes.store.objects()
            if (v["metadata"].get("annotations") or {}).get(ANNOTATION_RECYCLE_FOR) == str(key)
        ]

    def _orphan_claims(self, key: Key) -> list[Obj]:
        if self.claims is None:
            return []
        return self.claims.store.by_index(INDEX_RUNNERSET, f"{key.namespace}/{key.name}")

    async def _recycle_volumes(
        self, key: Key, obj: Mapping[str, Any] | None, live: set[str], *, runnerset_exists: bool
    ) -> None:
        """Delete the claims of runners that are gone; hand their released volumes to new runners.
        Needs no polling: claim and volume events wake the RunnerSet up."""
        if self.claims is None:
            return
        claims = self.claims.store.by_index(INDEX_RUNNERSET, f"{key.namespace}/{key.name}")
        for claim in claims:
            meta = claim["metadata"]
            owner = (meta.get("labels") or {}).get(LABEL_RUNNER_STATEFULSET_NAME, "")
            if owner in live or meta.get("deletionTimestamp") or (not runnerset_exists and live):
                continue
            volume = (claim.get("spec") or {}).get("volumeName")
            template = claim_template_name(meta["name"], owner)
            if runnerset_exists and self.volumes is not None and volume and template:
                await self._mark_volume(obj, str(volume), key, template, meta["name"])
            await self.kube.delete(
                PERSISTENT_VOLUME_CLAIMS,
                meta["name"],
                namespace=key.namespace,
                uid=meta.get("uid"),
                missing_ok=True,
            )
            self.stats.claims_deleted += 1
        for volume in self._marked_volumes(key):
            vmeta = volume["metadata"]
            annotations = vmeta.get("annotations") or {}
            ref = (volume.get("spec") or {}).get("claimRef") or {}
            if not runnerset_exists or ref.get("name") != annotations.get(ANNOTATION_RECYCLE_FROM):
                await self._unmark_volume(volume, None)  # the RunnerSet is gone, or someone else rebound it
                continue
            if (volume.get("status") or {}).get("phase") != "Released":
                continue  # the old claim is still going away
            target = self._waiting_claim(claims, volume, str(annotations.get(ANNOTATION_RECYCLE_TEMPLATE)))
            if target is not None:
                await self._unmark_volume(volume, target)
                if obj is not None:
                    await self.recorder.normal(
                        obj,
                        "VolumeReused",
                        f"volume {vmeta['name']} of a finished runner goes to claim "
                        f"{target['metadata']['name']}",
                    )

    def _waiting_claim(self, claims: list[Obj], volume: Obj, template: str) -> Obj | None:
        now = time.monotonic()
        self._reserved = {uid: at for uid, at in self._reserved.items() if now - at < SECRET_GRACE}
        waiting = [
            c
            for c in claims
            if c["metadata"].get("uid") not in self._reserved  # the informer may not show our annotation yet
            and not (c.get("spec") or {}).get("volumeName")
            and not c["metadata"].get("deletionTimestamp")
            and (c.get("status") or {}).get("phase", "Pending") == "Pending"
            and claim_template_name(
                c["metadata"]["name"],
                (c["metadata"].get("labels") or {}).get(LABEL_RUNNER_STATEFULSET_NAME, ""),
            )
            == template
            and not (c["metadata"].get("annotations") or {}).get(ANNOTATION_RECYCLED_VOLUME)
            and claim_fits_volume(c, volume)
        ]
        waiting.sort(key=lambda c: (created_at(c), c["metadata"]["name"]))
        return waiting[0] if waiting else None

    async def _mark_volume(
        self, obj: Mapping[str, Any] | None, volume: str, key: Key, template: str, claim: str
    ) -> None:
        try:
            current = await self.kube.get(PERSISTENT_VOLUMES, volume)
            if (current.get("spec") or {}).get("persistentVolumeReclaimPolicy") != "Retain":
                return  # deleted with its claim: nothing to reuse
            await self.kube.patch(
                PERSISTENT_VOLUMES,
                volume,
                {
                    "metadata": {
                        "labels": {LABEL_RECYCLE: "true"},
                        "annotations": {
                            ANNOTATION_RECYCLE_FOR: str(key),
                            ANNOTATION_RECYCLE_TEMPLATE: template,
                            ANNOTATION_RECYCLE_FROM: claim,
                        },
                    }
                },
            )
        except NotFound:
            return
        except Forbidden as exc:
            if obj is not None:
                await self.recorder.warning(
                    obj, "VolumeNotReused", f"volume {volume} cannot be reused: {exc}"
                )

    async def _unmark_volume(self, volume: Obj, target: Obj | None) -> None:
        meta = volume["metadata"]
        patch: Obj = {
            "metadata": {
                "labels": {LABEL_RECYCLE: None},
                "annotations": {
                    ANNOTATION_RECYCLE_FOR: None,
                    ANNOTATION_RECYCLE_TEMPLATE: None,
                    ANNOTATION_RECYCLE_FROM: None,
                },
            }
        }
        if target is not None:
            # Pre-bind: a claimRef without uid reserves the volume for this claim only.
            ref = {**claim_ref(target), "uid": None, "resourceVersion": None, "fieldPath": None}
            patch["spec"] = {"claimRef": ref}
        try:
            await self.kube.patch(
                PERSISTENT_VOLUMES, meta["name"], patch, resource_version=meta.get("resourceVersion")
            )
        except (NotFound, Conflict):
            return
        if target is None:
            return
        self.stats.volumes_reused += 1
        tmeta = target["metadata"]
        self._reserved[str(tmeta.get("uid"))] = time.monotonic()
        try:
            await self.kube.patch(
                PERSISTENT_VOLUME_CLAIMS,
                tmeta["name"],
                {"metadata": {"annotations": {ANNOTATION_RECYCLED_VOLUME: meta["name"]}}},
                namespace=tmeta["namespace"],
            )
        except NotFound:
            return

    # ------------------------------------------------------------------------------- status
    async def _write_status(self, obj: Mapping[str, Any], status: Mapping[str, Any]) -> None:
        current = obj.get("status") or {}
        if all(current.get(k) == v for k, v in status.items()):
            return
        meta = obj["metadata"]
        try:
            await self.kube.patch_status(
                RUNNER_SETS, meta["name"], {"status": dict(status)}, namespace=meta["namespace"]
            )
        except (NotFound, Conflict):
            return


def install(controllers: Controllers, *, recycle_volumes: bool = True) -> RunnerSetController:
    """Add the RunnerSet controller (and its informers) to a controller process built by ``build()``.

    ``recycle_volumes`` needs cluster-wide ``get``/``patch``/``list``/``watch`` on persistentvolumes;
    without it, claims of finished runners are still deleted but their volumes are not handed on.
    """
    kube = controllers.kube
    ns = controllers.options.namespace
    indexers = {INDEX_RUNNERSET: index_by_runnerset}
    selector = LABEL_RUNNER_STATEFULSET_NAME
    runner_sets = Informer("runnersets", kube.list_watcher(RUNNER_SETS, namespace=ns))
    stateful_sets = Informer(
        "statefulsets",
        kube.list_watcher(STATEFUL_SETS, namespace=ns, label_selector=selector),
        indexers=indexers,
    )
    secrets_ = Informer("runner-secrets", kube.list_watcher(SECRETS, namespace=ns, label_selector=selector))
    claims = Informer(
        "runner-claims",
        kube.list_watcher(PERSISTENT_VOLUME_CLAIMS, namespace=ns, label_selector=selector),
        indexers=indexers,
    )
    volumes = (
        Informer("runner-volumes", kube.list_watcher(PERSISTENT_VOLUMES, label_selector=LABEL_RECYCLE))
        if recycle_volumes
        else None
    )
    controller = RunnerSetController(
        kube=kube,
        github=controllers.github,
        directory=controllers.directory,
        clients=controllers.clients,
        recorder=controllers.recorder,
        runner_sets=runner_sets,
        stateful_sets=stateful_sets,
        pods=controllers.informers["pods"],
        secrets=secrets_,
        claims=claims,
        volumes=volumes,
        options=controllers.options,
    )
    ctl = Controller("runnerset", controller.reconcile, workers=controllers.options.workers)
    ctl.watch(runner_sets)
    to_runnerset = by_label(LABEL_RUNNERSET_NAME)
    for informer in (stateful_sets, controllers.informers["pods"], secrets_, claims):
        ctl.watch(informer, to_runnerset)
    if volumes is not None:
        # Not a watch of the controller: without permission on volumes, RunnerSets still work.

        def on_volume(event: InformerEvent) -> None:
            target = (event.obj["metadata"].get("annotations") or {}).get(ANNOTATION_RECYCLE_FOR)
            if target:
                ctl.enqueue(Key.parse(str(target)))

        volumes.add_handler(on_volume)
        controllers.manager.add_informer(volumes, required=False)
    controllers.manager.add_controller(ctl)
    for informer in (runner_sets, stateful_sets, secrets_, claims):
        controllers.informers[informer.name] = informer
    if volumes is not None:
        controllers.informers[volumes.name] = volumes
    return controller
