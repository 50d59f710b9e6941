"""The sized-job intake: a queued job that asks for a size becomes a waiting Runner, or is refused.

The webhook sink (:class:`~runnerd.controller.reservations.ReservationSink`) and the safety-net
poll hand every queued job whose labels carry a sizing key
(:func:`runnerd.reconcile.sizing.split_labels`) to :meth:`SizedIntake.queued` first:

1. The job's *plain* labels pick the pool among the pools with an Accepted ``RunnerSizingPolicy``
   (:func:`runnerd.reconcile.matching.match_workflow_job`, the webhook's rules; no HRA needed).
2. :func:`~runnerd.reconcile.sizing.parse_size` and
   :func:`~runnerd.manifests.sizedpod.unsupported_reason` check the size against the policy. A
   refused job gets no Runner: a ``SizedJobRefused`` Event on the pool, an entry in the policy's
   ``status.refusedJobs`` (the :class:`~runnerd.reconcile.sizingpolicy.RefusalLog`), and
   ``runnerd_sized_jobs_refused_total{namespace,pool,rule}``, once per job.
3. Otherwise the waiting Runner of :mod:`runnerd.reconcile.sizedjob` is created (deterministic
   name: a 409 means it is already there; a Runner in the cache means no call at all). No capacity
   reservation is written and no GitHub call is made: admission and the Runner controller take it
   from there.

A sized job that no Accepted policy's pool fits goes on to today's HRA path when its *full* labels
fit an HRA's pool (a pool that lists ``gpu=2`` as a plain label keeps working); when only its plain
labels fit a pool, it is refused there with the rule ``no_policy``. A job without sizing labels is
never touched here.

**Who deletes a sized Runner.** Its job's ``completed`` delivery (cancelled included), or the
safety-net poll seeing the job finished, makes the intake delete the job's Runner whatever its
admission state: a waiting one has no finalizer, no pod and no registration, so it goes at once; an
admitted one goes through the Runner controller's finalizer (drain, deregistration, pod), which
never removes a runner that is running a job. A sized runner whose pod finished (an ephemeral
runner that exited) is deleted by the Runner controller's lifecycle, as every ephemeral Runner is
(``Completed``). A finished job id is remembered (bounded), so a late ``queued`` creates nothing.

**A job whose Runner went first.** GitHub gives a job to any runner whose labels cover it, so the
runner made for job A may run job B; A's Runner then goes while A is queued
(:func:`runnerd.controller.sizing.recheck_if_lost` tells :meth:`SizedIntake.runner_lost`, and the
poll's recheck hands A back here). A's next Runner is named ``<pool>-job-<A>-<n>``, never the old
name: the old Runner's pod (an exited ephemeral runner, still being removed) and GitHub
registration are found by name, and a new Runner of that name would take them for its own and be
deleted as finished without ever running A. The count is kept in memory (bounded); after a restart
the first name is used again, which is safe once the old pod is gone.

Guarantees: idempotent per job id (redeliveries, the poll's relisting and a restart create no second
Runner and count no refusal twice); the Runners and refusals are in etcd (Runner objects, the
policy's status), so a restart loses no waiting or refused job.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from runnerd.api import ApiParseError, RunnerDeployment
from runnerd.controller.common import RUNNERS
from runnerd.controller.reservation_writer import FinishedJobs
from runnerd.controller.sizingpolicy import AcceptedPolicy, SizingPolicies
from runnerd.controller.targets import WebhookTarget
from runnerd.kube.client import KubeClient
from runnerd.manifests import gpu as g
from runnerd.manifests.sizedpod import unsupported_reason
from runnerd.manifests.sizedrunner import build_waiting_runner
from runnerd.reconcile.matching import Ambiguous, JobEvent, Match, Target, match_workflow_job
from runnerd.reconcile.sizedjob import (
    EVENT_REFUSED,
    RULE_NO_POLICY,
    RULE_UNSUPPORTED,
    JobFacts,
    PoolRef,
    SizedRunner,
    refusal_rule,
)
from runnerd.reconcile.sizing import Rejected, parse_size, split_labels
from runnerd.reconcile.sizingpolicy import PoolKey, Refusal
from runnerd.runtime import AlreadyExists, EventRecorder, Key, Obj
from runnerd.web.metrics import Metrics

log = logging.getLogger(__name__)

CREATED = "reserved"
EXISTS = "unchanged"
REFUSED = "refused"
AMBIGUOUS = "ambiguous"
FINISHED = "finished"
MAX_ATTEMPTS_KEPT = 10_000
"""Jobs whose lost Runners are counted at once (the oldest is forgotten first)."""


@dataclass(frozen=True)
class Outcome:
    """What the intake did with a queued job: ``effect`` (``reserved``: a Runner was created,
    ``unchanged``, ``refused``, ``ambiguous``, ``finished``), the pool, and a sentence."""

    effect: str
    pool: Key | None
    message: str


class SizedIntake:
    def __init__(
        self,
        *,
        kube: KubeClient,
        policies: SizingPolicies,
        recorder: EventRecorder,
        metrics: Metrics,
        hra_targets: Callable[[], Sequence[WebhookTarget]] = list,
        default_labels: Sequence[str] = (),
        gpu: g.GpuOptions | None = None,
        on_change: Callable[[PoolKey], None] = lambda pool: None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.kube = kube
        self.policies = policies
        self.refusals = policies.refusals
        self.recorder = recorder
        self.metrics = metrics
        self.hra_targets = hra_targets
        self.default_labels = tuple(default_labels)
        self.gpu = gpu or g.GpuOptions()
        self.on_change = on_change
        """Called with a pool whose sized jobs changed (the policy controller enqueues its policy)."""
        self.clock = clock
        self.finished = FinishedJobs()
        self.attempts: dict[int, int] = {}
        """Job id -> how many of its Runners went before it finished (names its next Runner)."""
        self.created = 0

    # --- queued ----------------------------------------------------------------------------------

    async def queued(self, event: JobEvent, job_id: int, workflow: str | None = None,
                     queued_at: float | None = None) -> Outcome | None:  # fmt: skip
        """Take a queued job that asks for a size (``None``: not the intake's, go on as before)."""
        plain, sizing = split_labels(event.labels)
        if not sizing:
            return None
        job = JobFacts(job_id, event.repository, tuple(event.labels), queued_at or self.clock(), workflow)
        accepted = self.policies.accepted()
        routes = {f"{p.target.namespace}/{p.target.name}": p for p in accepted.values()}
        plain_event = dataclasses.replace(event, labels=plain)
        result = match_workflow_job(
            plain_event,
            [Target(hra=r, config=p.target.config) for r, p in routes.items()],
            default_labels=self.default_labels,
        )
        if isinstance(result, Ambiguous):
            log.info("sized job %s of %s: %s", job_id, event.repository, result.reason)
            return Outcome(AMBIGUOUS, None, result.reason)
        if isinstance(result, Match):
            return await self._size(job, routes[result.target.hra])
        return await self._no_policy(event, plain_event, job, accepted)

    async def _size(self, job: JobFacts, policy: AcceptedPolicy) -> Outcome:
        target = policy.target
        pool = Key(target.namespace, target.name)
        if job.job_id in self.finished:
            return Outcome(FINISHED, pool, f"job {job.job_id} queued after it finished: no runner")
        existing = [r for r in self.policies.by_job(job.job_id) if _in_pool(r, policy)]
        if existing:
            return Outcome(
                EXISTS, pool, f"job {job.job_id} already has runner {existing[0]['metadata']['name']}"
            )
        size = parse_size(job.labels, policy.sizing)
        if isinstance(size, Rejected):
            return await self.refuse(policy.pool, target.obj, job, size.reason, refusal_rule(size.reason))
        try:
            template = RunnerDeployment.from_dict(target.obj).spec.template
        except ApiParseError as exc:  # the resolver parsed it already; kept for a racing update
            return Outcome(EXISTS, pool, f"{target.kind} {pool} does not parse: {exc}")
        why = unsupported_reason(template.spec, size)
        if why is not None:
            return await self.refuse(policy.pool, target.obj, job, why, RULE_UNSUPPORTED)
        ref = PoolRef(target.namespace, target.kind, target.name, target.uid)
        attempt = self.attempts.get(job.job_id, 0)
        body = build_waiting_runner(job, ref, policy.name, template, size, policy.sizing, self.gpu, attempt)
        name = body["metadata"]["name"]
        try:
            await self.kube.create(RUNNERS, body, namespace=target.namespace)
        except AlreadyExists:
            return Outcome(EXISTS, pool, f"job {job.job_id} already has runner {name}")
        self.created += 1
        self.on_change(policy.pool)
        log.info("sized job %s of %s: waiting runner %s/%s (%s)", job.job_id, job.repository,
                 target.namespace, name, size.describe())  # fmt: skip
        return Outcome(CREATED, pool, f"job {job.job_id}: waiting runner {name} ({size.describe()})")

    async def _no_policy(
        self, event: JobEvent, plain_event: JobEvent, job: JobFacts, accepted: dict[PoolKey, AcceptedPolicy]
    ) -> Outcome | None:
        """A sized job no Accepted pool fits: today's path when its full labels fit an HRA's pool,
        else refused (``no_policy``) in the pool its plain labels fit, if one does."""
        hra_targets = [t for t in self.hra_targets() if _pool_key(t) not in accepted]
        routes = [t.route for t in hra_targets]
        if isinstance(match_workflow_job(event, routes, default_labels=self.default_labels), Match):
            return None
        result = match_workflow_job(plain_event, routes, default_labels=self.default_labels)
        if not isinstance(result, Match):
            return None
        found = next(t for t in hra_targets if t.route.hra == result.target.hra)
        if job.job_id in self.finished:
            return Outcome(FINISHED, found.target.key, f"job {job.job_id} queued after it finished")
        _, sizing = split_labels(job.labels)
        reason = f"labels {list(sizing)} ask for a size, but this pool has no Accepted RunnerSizingPolicy"
        return await self.refuse(_pool_key(found), found.target.obj, job, reason, RULE_NO_POLICY)

    async def refuse(self, pool: PoolKey, pool_obj: Obj, job: JobFacts, reason: str, rule: str) -> Outcome:
        """Refuse ``job`` in ``pool``: Event, policy status, metric (once per job)."""
        key = Key(pool[0], pool[2])
        _, sizing = split_labels(job.labels)
        refusal = Refusal(job.job_id, job.repository, " ".join(sizing), job.queued_at, reason, rule)
        if self.refusals.add(pool, refusal):
            self.metrics.sized_jobs_refused.labels(pool[0], pool[2], rule).inc()
            await self.recorder.warning(
                pool_obj, EVENT_REFUSED, f"job {job.job_id} of {job.repository}: {reason}"
            )
            self.on_change(pool)
            log.info("sized job %s of %s refused in %s: %s", job.job_id, job.repository, key, reason)
        return Outcome(REFUSED, key, f"job {job.job_id} refused: {reason}")

    # --- finished --------------------------------------------------------------------------------

    def runner_lost(self, job_id: int) -> None:
        """A Runner of ``job_id`` went before the job finished: its next Runner gets the next name
        (:func:`~runnerd.reconcile.sizedjob.sized_runner_name`), never the old one's."""
        if job_id in self.finished:
            return
        self.attempts[job_id] = self.attempts.get(job_id, 0) + 1
        while len(self.attempts) > MAX_ATTEMPTS_KEPT:
            del self.attempts[next(iter(self.attempts))]

    async def completed(self, job_id: int) -> Outcome | None:
        """The job finished (or was cancelled): delete its sized Runner, forget its refusal.
        ``None`` when the intake holds nothing for it (before or now)."""
        self.finished.add(job_id)
        self.attempts.pop(job_id, None)
        pools = self.refusals.drop(job_id)
        for pool in pools:
            self.on_change(pool)
        deleted = []
        for obj in self.policies.by_job(job_id):
            meta = obj["metadata"]
            if meta.get("deletionTimestamp"):
                deleted.append(str(meta["name"]))
                continue
            await self.kube.delete(
                RUNNERS, meta["name"], namespace=meta["namespace"], uid=meta.get("uid"), missing_ok=True
            )
            deleted.append(str(meta["name"]))
        if not deleted and not pools:
            return None
        what = f"deleted runner {', '.join(deleted)}" if deleted else "forgot its refusal"
        where = Key(pools[0][0], pools[0][2]) if pools else None
        return Outcome("released", where, f"job {job_id} finished: {what}")

    # --- what the safety-net poll reads ------------------------------------------------------------

    def holds(self, job_id: int) -> bool:
        return bool(self.policies.by_job(job_id)) or self.refusals.has(job_id)

    def live(self, repository: str) -> dict[int, tuple[Key, float]]:
        """The jobs of ``repository`` the intake holds (a Runner or a refusal): job id -> (pool, queued)."""
        wanted = repository.casefold()
        out: dict[int, tuple[Key, float]] = {}
        for obj in self.policies.sized():
            runner = SizedRunner.read(obj)
            if runner is None or runner.deleting or runner.repository.casefold() != wanted:
                continue
            out[runner.job_id] = (Key(runner.namespace, runner.pool or ""), runner.queued_at or 0.0)
        for pool, refusal in self.refusals.all():
            if refusal.repository.casefold() == wanted:
                out.setdefault(refusal.job_id, (Key(pool[0], pool[2]), refusal.since))
        return out

    def repositories(self) -> set[str]:
        """Repositories the safety-net poll covers for the intake: those of the jobs it holds, and
        those of repository-scoped pools with an Accepted policy (an HRA is not needed)."""
        out = {r.repository for _, r in self.refusals.all() if r.repository}
        for policy in self.policies.accepted().values():
            if policy.target.config.repository:
                out.add(policy.target.config.repository)
        for obj in self.policies.sized():
            runner = SizedRunner.read(obj)
            if runner is not None and runner.repository:
                out.add(runner.repository)
        return out


def _in_pool(obj: Obj, policy: AcceptedPolicy) -> bool:
    runner = SizedRunner.read(obj)
    return (
        runner is not None
        and runner.namespace == policy.target.namespace
        and runner.pool == policy.target.name
    )


def _pool_key(target: WebhookTarget) -> PoolKey:
    t = target.target
    return t.namespace, t.kind, t.name
