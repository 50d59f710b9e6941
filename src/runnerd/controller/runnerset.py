"""The RunnerSet controller: ``replicas`` runners, each one StatefulSet (``replicas: 1``) of its own.

ARC's design, without ARC's mutating pod webhook: the credentials go in a Secret per runner that
the pod reads through ``secretKeyRef`` (:mod:`runnerd.reconcile.runnerset` explains the whole
contract). Thin: for every runner StatefulSet it observes the pod, the Secret and GitHub's listing,
asks :func:`runnerd.reconcile.lifecycle.decide` what to do (kind ``STATEFULSET``), and has
:class:`runnerd.controller.lifecycle.Lifecycle` do it in order through :class:`StatefulSetHome`,
stopping at the first step that cannot complete (GitHub answers 422 to the removal of a busy runner:
nothing after that runs). Then it creates or removes runners toward ``replicas``
(:func:`runnerd.reconcile.runnerset.plan_runnerset`: never a busy one), hands the volumes of
finished runners on (:mod:`runnerd.controller.runnerset_volumes`), and writes the status.

A runner is created in this order: register with GitHub (a JIT config, or a registration token),
create the StatefulSet (its name, hence the runner's, is picked here), create its Secret. If the
controller stops in between, a registration is left without a StatefulSet (the orphan sweep,
:mod:`runnerd.controller.orphans`, removes it: no pod can ever use it; the next JIT registration of
the same name also removes it, on GitHub's 409) or a StatefulSet without credentials (it is removed
like a failed runner).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Unpack

from runnerd.api import RunnerSet
from runnerd.controller.clients import (
    CREDENTIALS_RETRY,
    credentials_secret,
    using,
)
from runnerd.controller.common import (
    RUNNER_SETS,
    Backoff,
    StopSteps,
    created_at,
    random_suffix,
)
from runnerd.controller.expectations import Expectations, ReplacementHolds
from runnerd.controller.lifecycle import LifecycleController, LifecycleDeps, RunnerRef
from runnerd.controller.runnerset_home import StatefulSetHome, StatefulSetRunners, owner_uid
from runnerd.controller.runnerset_volumes import (
    ANNOTATION_RECYCLE_FOR,
    LABEL_RECYCLE,
    PERSISTENT_VOLUMES,
    VolumeRecycler,
)
from runnerd.github import Scope
from runnerd.github.errors import GitHubError, RateLimitedError
from runnerd.kube.resources import PERSISTENT_VOLUME_CLAIMS, SECRETS, STATEFUL_SETS
from runnerd.manifests.pod import ANNOTATION_GITHUB_API_CREDS_SECRET
from runnerd.reconcile.lifecycle import (
    REGISTERING_RECHECK,
    GitHubState,
    PodStatus,
    RunnerDecision,
    Step,
    decide,
)
from runnerd.reconcile.replicas import RunnerPhase, RunnerView
from runnerd.reconcile.runnerset import (
    FINALIZER,
    LABEL_RUNNER_STATEFULSET_NAME,
    LABEL_RUNNERSET_NAME,
    RunnerStatefulSet,
    parse_statefulset,
    plan_runnerset,
    runner_facts,
    runnerset_selector,
    runnerset_status,
    runnerset_template_hash,
    selector_string,
)
from runnerd.runtime import (
    Conflict,
    Controller,
    Informer,
    InformerEvent,
    Key,
    NotFound,
    Obj,
    Result,
    by_label,
)

if TYPE_CHECKING:
    from runnerd.controller.process import Controllers

logger = logging.getLogger(__name__)


INDEX_RUNNERSET = "runnerset"
"""Store index of StatefulSets, Secrets and claims: ``<namespace>/<runnerset-name>``."""
MAX_RUNNER_STATEFULSETS = 1000
"""ARC's safety limit: a RunnerSet with more StatefulSets than this is not reconciled."""


def index_by_runnerset(obj: Obj) -> list[str]:
    meta = obj.get("metadata") or {}
    name = (meta.get("labels") or {}).get(LABEL_RUNNERSET_NAME)
    return [f"{meta.get('namespace') or ''}/{name}"] if name else []


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


@dataclass
class SetPass:
    """One reconcile of one RunnerSet: what it found and what it will write."""

    key: Key
    obj: Mapping[str, Any]
    rs: RunnerSet
    scope: Scope
    current_hash: str
    deleting: bool
    views: dict[str, RunnerView] = field(default_factory=dict)
    infos: dict[str, tuple[Obj, RunnerStatefulSet]] = field(default_factory=dict)
    requeue: list[float] = field(default_factory=list)


class RunnerSetController(LifecycleController):
    def __init__(
        self,
        *,
        runner_sets: Informer,
        stateful_sets: Informer,
        pods: Informer,
        secrets: Informer,
        claims: Informer | None = None,
        volumes: Informer | None = None,
        suffix: Callable[[], str] = random_suffix,
        **deps: Unpack[LifecycleDeps],
    ) -> None:
        self.stats = RunnerSetStats()
        super().__init__(self.stats, **deps)
        self.runner_sets = runner_sets
        self.stateful_sets = stateful_sets
        self.pods = pods
        self.secrets = secrets
        self.claims = claims
        self.volumes = volumes
        self.suffix = suffix
        self.recycler = VolumeRecycler(
            kube=self.kube,
            recorder=self.recorder,
            claims=claims,
            volumes=volumes,
            index=INDEX_RUNNERSET,
            stats=self.stats,
        )
        self.expect = Expectations(time.monotonic)
        self.holds = ReplacementHolds(time.monotonic)
        self._backoff: dict[Key, Backoff] = {}
        self.runners = StatefulSetRunners(
            kube=self.kube,
            recorder=self.recorder,
            lifecycle=self.lifecycle,
            pods=pods,
            secrets=secrets,
            options=self.options,
            stats=self.stats,
            expect=self.expect,
            suffix=suffix,
        )

    # ------------------------------------------------------------------------------- reconcile
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
        labelled = [  # a StatefulSet this process finalized is gone, whatever a lagging cache shows
            s
            for s in self.stateful_sets.store.by_index(INDEX_RUNNERSET, f"{key.namespace}/{key.name}")
            if (s["metadata"].get("labels") or {}).get(LABEL_RUNNER_STATEFULSET_NAME) == s["metadata"]["name"]
            and not self.finalized_before(s)
        ]
        if obj is None:
            self.expect.forget(key)
            self.holds.forget(key)
            self._backoff.pop(key, None)
            return await self._reconcile_orphans(key, labelled)
        p = await self._load(key, obj, labelled)
        if p is None:
            return None
        await self._refresh(
            obj, {p.scope, *filter(None, (_scope(parse_statefulset(s)) for s in labelled))}, labelled
        )
        await self._sync_runners(p, labelled)
        live = {s["metadata"]["name"] for s in labelled}
        for name in self.expect.pending_creations(key, live):
            p.views[name] = RunnerView(
                name=name, created_at=time.time(), phase=RunnerPhase.PENDING, template_hash=p.current_hash
            )
        desired = 0 if p.deleting else p.rs.spec.effective_replicas
        plan = plan_runnerset(desired, p.current_hash, list(p.views.values()))
        await self._scale_down(p, plan.delete)
        if not p.deleting:
            await self._scale_up(p, desired, plan.create)
        await self.recycler.recycle(key, obj, live | set(p.views), runnerset_exists=True)
        if not p.deleting:
            selector = selector_string(runnerset_selector(p.rs.name, p.rs.spec))
            await self._write_status(
                obj, runnerset_status(desired, p.current_hash, list(p.views.values()), selector)
            )
        # Runners being removed come back on their own schedule (drain grace, busy retry) or on events.
        unsettled = any(
            v.phase in (RunnerPhase.PENDING, RunnerPhase.REGISTERING) and not v.deleting
            for v in p.views.values()
        )
        if unsettled:
            p.requeue.append(self._poll_interval())
        elif p.views:
            p.requeue.append(self.options.sync_period)
        return Result(requeue_after=max(0.0, min(p.requeue))) if p.requeue else None

    async def _load(self, key: Key, obj: Mapping[str, Any], labelled: list[Obj]) -> SetPass | None:
        """The RunnerSet, if it can be reconciled (else a warning says why)."""
        rs = await self.parse_scoped(obj, RunnerSet, lambda r: r.spec.scope)
        if rs is None or rs.spec.scope is None:
            return None
        if len(labelled) > MAX_RUNNER_STATEFULSETS:
            await self.recorder.warning(
                obj, "TooManyRunners", f"{len(labelled)} runner StatefulSets; not reconciling above 1000"
            )
            return None
        return SetPass(
            key=key,
            obj=obj,
            rs=rs,
            scope=Scope.from_runner_scope(rs.spec.scope),
            current_hash=runnerset_template_hash(rs.spec, self.options.pod.common_runner_labels),
            deleting=rs.metadata.deletion_timestamp is not None,
        )

    async def _sync_runners(self, p: SetPass, labelled: list[Obj]) -> None:
        """Decide and act for every runner; the ones the RunnerSet keeps become views."""
        uid = p.rs.metadata.uid or ""
        not_deleting = {s["metadata"]["name"] for s in labelled if not s["metadata"].get("deletionTimestamp")}
        being_deleted = self.expect.pending_deletions(p.key, not_deleting)
        for sts in labelled:
            info = parse_statefulset(sts)
            if info.name in being_deleted:
                # Deleted by this process a moment ago; the informer will show it (and wake us).
                p.views[info.name] = RunnerView(
                    name=info.name,
                    created_at=created_at(sts),
                    phase=RunnerPhase.PENDING,
                    deleting=True,
                    template_hash=info.template_hash,
                )
                continue
            remove = owner_uid(sts) != uid or p.deleting
            decision, stopped = await self._sync_runner(p.obj, sts, info, remove=remove)
            if stopped is not None and stopped.requeue_after is not None:
                p.requeue.append(stopped.requeue_after)
            elif stopped is not None:
                p.requeue.append(1.0)
            if decision.requeue_after is not None:
                p.requeue.append(decision.requeue_after)
            if decision.failed and stopped is None and Step.DELETE_RUNNER in decision.steps:
                self._fail(p.key)
            elif decision.phase in (RunnerPhase.IDLE, RunnerPhase.BUSY) and not decision.finished:
                self._backoff.pop(p.key, None)
            if remove:
                continue
            p.infos[info.name] = (sts, info)
            p.views[info.name] = RunnerView(
                name=info.name,
                created_at=created_at(sts),
                phase=decision.phase or RunnerPhase.PENDING,
                deleting=info.deleting or decision.finished,
                template_hash=info.template_hash,
            )

    async def _scale_down(self, p: SetPass, names: Sequence[str]) -> None:
        removed: list[str] = []
        for name in names:
            sts, info = p.infos[name]
            _, stopped = await self._sync_runner(p.obj, sts, info, remove=True)
            if stopped is None:
                removed.append(name)
                p.views[name] = dataclasses.replace(p.views[name], deleting=True)
            else:
                p.requeue.append(stopped.requeue_after or 1.0)
        if removed:
            await self.recorder.normal(p.obj, "ScaledDown", f"removing runner(s) {', '.join(removed)}")

    async def _scale_up(self, p: SetPass, desired: int, create: int) -> None:
        # effectiveTime: a finished ephemeral runner is not replaced until the HRA decides again
        spec = p.rs.spec
        missing, hold_until = self.holds.check(
            p.key, spec.effective_ephemeral, spec.effective_time, desired, create
        )
        if hold_until is not None:
            p.requeue.append(max(hold_until - time.monotonic(), 0.0) + 0.05)
        if not missing:
            return
        backoff = self._backoff.get(p.key)
        wait = (backoff.next_attempt_at - self.clock()) if backoff else 0.0
        if wait > 0:
            p.requeue.append(wait)
            return
        for _ in range(missing):
            created = await self.runners.create(p.key, p.obj, p.rs, p.scope, p.current_hash)
            if created.failed:
                self._fail(p.key)
            if created.name is None:
                p.requeue.append(REGISTERING_RECHECK)
                break
            p.views[created.name] = RunnerView(
                name=created.name,
                created_at=time.time(),
                phase=RunnerPhase.PENDING,
                template_hash=p.current_hash,
            )

    async def _reconcile_orphans(self, key: Key, labelled: list[Obj]) -> Result | None:
        """The RunnerSet is gone: remove its runners (through GitHub) and then their claims."""
        if not labelled and not self.recycler.orphan_claims(key) and not self.recycler.marked_volumes(key):
            return None
        scopes = {s for s in (_scope(parse_statefulset(sts)) for sts in labelled) if s is not None}
        await self._refresh(labelled[0] if labelled else {}, scopes, labelled)
        requeue: list[float] = []
        for sts in labelled:
            decision, stopped = await self._sync_runner(sts, sts, parse_statefulset(sts), remove=True)
            requeue.append(
                (stopped.requeue_after if stopped else decision.requeue_after) or self._poll_interval()
            )
        await self.recycler.recycle(
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
            pod = self.runners.observe_pod(sts, info)
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

    # ------------------------------------------------------------------------------- one runner
    async def _sync_runner(
        self, obj: Mapping[str, Any], sts: Obj, info: RunnerStatefulSet, *, remove: bool
    ) -> tuple[RunnerDecision, Result | None]:
        """Decide for one runner and act; returns the decision and, if a step stopped, the result."""
        scope = _scope(info)
        pod = self.runners.observe_pod(sts, info)
        secret = self.runners.observe_secret(sts, info)
        self.lifecycle.expire_refusal(scope, info.runner)
        github = self.directory.state(scope, info.runner) if scope else GitHubState.UNKNOWN
        runner_id = info.runner_id or secret.runner_id or pod.runner_id
        if runner_id is None and scope is not None:
            runner_id = self.directory.runner_id(scope, info.runner)
        finished_age = self.directory.finished_age(info.runner, runner_id)
        now = self.clock()
        decision = decide(
            runner_facts(
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
                drained_at=self.lifecycle.drained_at(info.uid),
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
            [s.value for s in decision.steps],
            decision.reason,
        )
        if pod.stuck_reason and not decision.finished:
            await self.recorder.warning(obj, pod.stuck_reason, f"runner {info.runner}: {pod.stuck_message}")
        ref = RunnerRef(obj, info.runner, info.uid, scope, runner_id)
        try:
            await self.lifecycle.perform(
                decision.steps, ref, StatefulSetHome(self.runners, sts, info, pod, runner_id)
            )
        except StopSteps as stop:
            return decision, stop.result
        if decision.failed and Step.DELETE_RUNNER in decision.steps:
            await self.recorder.warning(
                obj, "RunnerFailed", f"runner {info.runner}: {decision.reason}; replacing it"
            )
        return decision, None

    # ------------------------------------------------------------------------------- create
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
