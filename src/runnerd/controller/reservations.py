"""The webhook fast path: a ``workflow_job`` delivery becomes a durable capacity reservation.

:class:`ReservationSink` routes an event to one HRA (:func:`~runnerd.reconcile.matching.match_workflow_job`
over every HRA with a ``workflowJob`` trigger and its target's scope and labels) and applies it with
:func:`~runnerd.reconcile.reservations.apply_workflow_job_event` to that HRA's
``spec.capacityReservations``, exactly where ARC's webhook server writes them, so the state survives
restarts and an ARC controller reads it the same way. Reservations are named after the job and its
repository (``job-<id>@<owner>/<repo>``), so duplicated, reordered or late deliveries (and the
safety-net poll finding the same job) never count a job twice, and the safety net knows where to ask
whether a reserved job finished (after a restart too).

The list stays as long as the live jobs, whatever the number of past ones: a ``completed`` removes
its job's entry (no zero-replica marker is left in the HRA, and old markers are compacted away), and
each writer remembers the last
:data:`~runnerd.controller.reservation_writer.FINISHED_MEMORY` finished job ids in memory, so a late
``queued`` for a finished job reserves nothing. After a restart that memory is empty: a ``queued``
redelivered then for a job already finished reserves a replica again, and the safety-net poll
releases it once GitHub's listing shows the job finished (see :mod:`runnerd.controller.poller`).

:class:`~runnerd.controller.reservation_writer.ReservationWriter` writes the list: conditional writes,
group commit per HRA, and the finished-jobs memory.

With ``--enable-sizing`` a job whose labels ask for a size goes to the sized-job intake first
(:mod:`runnerd.controller.sizedintake`): no reservation, a waiting Runner or a refusal; its Runner or
refusal counts as its reservation for the safety-net poll (:meth:`ReservationSink.reservations_of`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from runnerd.api import parse_time
from runnerd.controller.clients import GitHubClients, credentials_secret
from runnerd.controller.common import HORIZONTAL_RUNNER_AUTOSCALERS, ObjectMemo
from runnerd.controller.deliveries import DeliveryLedger
from runnerd.controller.directory import RunnerDirectory
from runnerd.controller.latency import PodCreateLatency
from runnerd.controller.reservation_writer import JobOp, ReservationWriter, utcnow
from runnerd.controller.sizedintake import CREATED, REFUSED, SizedIntake
from runnerd.controller.targets import TargetResolver, WebhookTarget
from runnerd.github import Scope, WorkflowJob
from runnerd.kube.client import KubeClient
from runnerd.reconcile.matching import (
    SELF_HOSTED,
    Ambiguous,
    JobEvent,
    Match,
    MatchResult,
    NoMatch,
    VisibleGroups,
    match_workflow_job,
)
from runnerd.reconcile.reservations import Outcome, parse_job_reservation
from runnerd.runtime import Conflict, EventRecorder, Informer, Key, NotFound, Obj
from runnerd.web.metrics import Metrics
from runnerd.web.payload import WorkflowJobEvent
from runnerd.web.webhook import SinkReply

log = logging.getLogger(__name__)

CONDITION_AMBIGUOUS = "AmbiguousWebhookTarget"
NO_TARGET = "no horizontalrunnerautoscaler to scale for this github event"


def format_condition_time(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class RepoContext:
    """What a webhook told us about a repository that the REST API's runs do not say."""

    repository: str
    owner_type: str
    organization: str | None
    enterprise: str | None
    hra: Key
    seen_at: float  # monotonic


Visibility = Callable[[JobEvent, Sequence[WebhookTarget]], Awaitable[VisibleGroups | None]]


def job_reservations(hra: Mapping[str, Any]) -> dict[int, tuple[str | None, dict[str, Any]]]:
    """An HRA's job reservations (``capacityReservations`` named after a job): job id ->
    (repository or ``None``, the reservation)."""
    out: dict[int, tuple[str | None, dict[str, Any]]] = {}
    for r in (hra.get("spec") or {}).get("capacityReservations") or ():
        if isinstance(r, dict) and (parsed := parse_job_reservation(r.get("name"))) is not None:
            out[parsed[0]] = (parsed[1], r)
    return out


class ReservationSink:
    """The :class:`~runnerd.web.webhook.WorkflowJobSink` of the controller and the webhook server."""

    def __init__(
        self,
        *,
        kube: KubeClient,
        hras: Informer,
        resolver: TargetResolver,
        writer: ReservationWriter,
        recorder: EventRecorder,
        metrics: Metrics,
        default_labels: Iterable[str] = (),
        directory: RunnerDirectory | None = None,
        runners: Informer | None = None,
        pod_latency: PodCreateLatency | None = None,
        visibility: Visibility | None = None,
        clients: GitHubClients | None = None,
        clock: Callable[[], dt.datetime] = utcnow,
        monotonic: Callable[[], float] = time.monotonic,
        report_interval: float = 60.0,
    ) -> None:
        self.kube = kube
        self.hras = hras
        self.resolver = resolver
        self.writer = writer
        self.recorder = recorder
        self.metrics = metrics
        self.default_labels = tuple(default_labels)
        self.directory = directory
        self.runners = runners
        self.pod_latency = pod_latency
        self.visibility = visibility
        self.clients = clients
        """Per-Secret GitHub clients: a runner's hints go to the directory of its credentials."""
        self.clock = clock
        self.monotonic = monotonic
        self.report_interval = report_interval
        self.repositories: dict[str, RepoContext] = {}
        """Repositories webhooks came from, by ``owner/name`` (casefolded): the poll covers them too."""
        self._reported: dict[tuple[Key, str], float] = {}
        self.deliveries = DeliveryLedger()
        """The runs and jobs applied deliveries announced: the safety-net poll paces itself by them."""
        self.intake: SizedIntake | None = None
        """With ``--enable-sizing``: queued jobs that ask for a size go there, not to an HRA."""
        self._jobs: ObjectMemo[dict[int, tuple[str | None, dict[str, Any]]]] = ObjectMemo()
        """By HRA: its job reservations by job id, parsed once per HRA version (a ``completed``
        delivery asks which HRA holds its job; the poll asks per repository)."""

    # --- routing -------------------------------------------------------------------------------

    def targets(self) -> list[WebhookTarget]:
        return self.resolver.webhook_targets(self.hras.store.objects())

    async def route(self, event: JobEvent) -> tuple[MatchResult, dict[str, WebhookTarget]]:
        targets = self.targets()
        by_route = {f"{t.hra.namespace}/{t.hra.name}": t for t in targets}
        if not targets:
            return NoMatch("no HorizontalRunnerAutoscaler has a workflowJob scaleUpTrigger"), by_route
        visible = await self.visibility(event, targets) if self.visibility is not None else None
        result = match_workflow_job(
            event, [t.route for t in targets], visible, default_labels=self.default_labels
        )
        return result, by_route

    def _jobs_by_hra(self) -> Iterable[tuple[Key, dict[int, tuple[str | None, dict[str, Any]]]]]:
        objs = self.hras.store.objects()
        keys = [Key.of(obj) for obj in objs]
        if len(self._jobs) > len(keys):  # an HRA went: forget what was parsed of it
            for gone in self._jobs.keys() - set(keys):
                self._jobs.forget(gone)
        for key, obj in zip(keys, objs, strict=True):
            yield key, self._jobs.get(key, obj, job_reservations)

    def _job_reservations(self) -> Iterable[tuple[Key, int, str | None, dict[str, Any]]]:
        for key, jobs in self._jobs_by_hra():
            for job_id, (repo, r) in jobs.items():
                yield key, job_id, repo, r

    def holder(self, job_id: int) -> Key | None:
        """The HRA holding a reservation for ``job_id``, if any."""
        return next((key for key, jobs in self._jobs_by_hra() if job_id in jobs), None)

    def reserved_repositories(self) -> set[str]:
        """Repositories named by live job reservations (the safety net polls them, after a restart too)."""
        found = {repo for _, _, repo, r in self._job_reservations() if repo and (r.get("replicas") or 0) > 0}
        return found | (self.intake.repositories() if self.intake is not None else set())

    def reservations_of(self, repository: str) -> dict[int, tuple[Key, float]]:
        """Live job reservations of ``repository``'s jobs: job id -> (HRA, effective time as epoch).
        Live: it reserves a replica and has not expired (an expired one no longer scales anything)."""
        wanted = repository.casefold()
        now = self.clock().timestamp()
        found: dict[int, tuple[Key, float]] = {}
        for key, job_id, repo, r in self._job_reservations():
            if repo is None or repo.casefold() != wanted or (r.get("replicas") or 0) <= 0:
                continue
            try:
                since = parse_time(str(r.get("effectiveTime"))).timestamp()
                until = parse_time(str(r["expirationTime"])).timestamp() if r.get("expirationTime") else None
            except ValueError:
                continue
            if until is not None and until <= now:
                continue
            found[job_id] = (key, since)
        if self.intake is not None:  # a sized job's Runner or refusal holds it like a reservation
            for job_id, held in self.intake.live(repository).items():
                found.setdefault(job_id, held)
        return found

    # --- the webhook -----------------------------------------------------------------------------

    async def workflow_job(self, event: WorkflowJobEvent) -> SinkReply:
        self._observe(event)
        self._hint(event)
        who = f"workflow_job {event.action} for job {event.job_id}"
        if event.action not in ("queued", "completed"):
            if event.action == "in_progress":
                self.deliveries.started(event.repository, event.run_id, event.job_id)
            return SinkReply(200, f"{who}: nothing to scale", "ignored")
        if self.intake is not None:
            sized = await self._sized(event)
            if sized is not None:
                return sized
        action: Literal["queued", "completed"] = "queued" if event.action == "queued" else "completed"
        op = JobOp(action, event.job_id, event.conclusion, event.runner_id, event.repository)
        if event.action == "completed":
            key = self.holder(event.job_id)
            if key is not None:
                return await self._apply(key, op, event, None)
        result, by_route = await self.route(event.routing())
        if isinstance(result, Match):
            target = by_route[result.target.hra]
            self._learn(event, target.hra)
            return await self._apply(target.hra, op, event, target)
        if isinstance(result, Ambiguous):
            for t in result.targets:
                self._learn(event, by_route[t.hra].hra)
            await self.report_ambiguity(result, by_route)
            return SinkReply(200, result.reason, "ambiguous")
        log.debug("%s of %s: %s", who, event.repository, result.reason)
        if event.action == "queued" and SELF_HOSTED in (label.lower() for label in event.labels):
            self.metrics.jobs_unmatched.labels(event.runs_on).inc()
        return SinkReply(200, f"{NO_TARGET}: {result.reason}", "no_match")

    async def _sized(self, event: WorkflowJobEvent) -> SinkReply | None:
        """A sized job's delivery, if the intake takes it (``None``: today's path)."""
        assert self.intake is not None
        if event.action == "completed":
            outcome = await self.intake.completed(event.job_id)
        else:
            outcome = await self.intake.queued(
                event.routing(), event.job_id, event.workflow_name, event.created_at
            )
        if outcome is None:
            return None
        if event.action == "queued" and outcome.pool is not None:
            self._learn(event, outcome.pool)  # the poll covers its repository (organization pools too)
        self.deliveries.record(event.repository, event.run_id, event.job_id, event.action)
        label = {CREATED: "sized", REFUSED: "sized_refused"}.get(outcome.effect, outcome.effect)
        return SinkReply(200, outcome.message, label)

    async def _apply(
        self, key: Key, op: JobOp, event: WorkflowJobEvent, target: WebhookTarget | None
    ) -> SinkReply:
        result = await self.writer.apply(key, op)
        name = f"{key.namespace}/{key.name}"
        if result.update is None:
            return SinkReply(200, f"{NO_TARGET}: {result.reason}", "no_match")
        self.deliveries.record(event.repository, event.run_id, event.job_id, event.action)
        effect = _effect(result.update)
        self.metrics.reservation_events.labels("webhook", effect).inc()
        if result.delta > 0 and self.pod_latency is not None and target is not None:
            t = target.target
            for _ in range(result.delta):
                self.pod_latency.expect(t.namespace, t.kind, t.name, event.received_monotonic)
        if result.delta:
            return SinkReply(200, f"scaled {name} by {result.delta}: {result.reason}", "scaled")
        return SinkReply(200, f"{name}: {result.reason}", "unchanged")

    async def reserve_polled(
        self, event: JobEvent, job_id: int, repository: str | None = None, job: WorkflowJob | None = None
    ) -> tuple[str, Key | None]:
        """The safety-net poll found ``job_id`` queued: reserve for it (a no-op if a webhook did);
        a sized job goes to the intake."""
        if self.intake is not None:
            queued_at = _created_at(job)
            outcome = await self.intake.queued(event, job_id, job.workflow_name if job else None, queued_at)
            if outcome is not None:
                self.metrics.reservation_events.labels("poll", outcome.effect).inc()
                return outcome.effect, outcome.pool
        result, by_route = await self.route(event)
        if isinstance(result, Ambiguous):
            await self.report_ambiguity(result, by_route)
            return "ambiguous", None
        if not isinstance(result, Match):
            return "no_match", None
        key = by_route[result.target.hra].hra
        op_result = await self.writer.apply(key, JobOp("queued", job_id, repository=repository))
        effect = _effect(op_result.update) if op_result.update is not None else "not_applied"
        self.metrics.reservation_events.labels("poll", effect).inc()
        return effect, key

    async def complete_polled(self, key: Key, job_id: int) -> str:
        """The poll saw the job's run finish: release its reservation (a no-op if a webhook did), or
        delete its sized Runner."""
        if self.intake is not None and self.intake.holds(job_id):
            await self.intake.completed(job_id)
            self.metrics.reservation_events.labels("poll", "released").inc()
            return "released"
        op_result = await self.writer.apply(key, JobOp("completed", job_id, "unknown"))
        effect = _effect(op_result.update) if op_result.update is not None else "not_applied"
        self.metrics.reservation_events.labels("poll", effect).inc()
        return effect

    def _learn(self, event: WorkflowJobEvent, hra: Key) -> None:
        self.repositories[event.repository.casefold()] = RepoContext(
            event.repository, event.owner_type, event.organization, event.enterprise, hra, self.monotonic()
        )

    # --- side effects --------------------------------------------------------------------------

    def _observe(self, event: WorkflowJobEvent) -> None:
        labels = {
            "runs_on": event.runs_on,
            "job_name": event.name or "",
            "organization": event.organization or "",
            "repository": event.repository_name,
            "repository_full_name": event.repository,
            "owner": event.owner,
            "workflow_name": event.workflow_name or "",
            "head_branch": event.head_branch or "",
        }
        self.metrics.observe_job_event(
            action=event.action,
            labels=labels,
            conclusion=event.conclusion,
            created_at=event.created_at,
            started_at=event.started_at,
            completed_at=event.completed_at,
        )

    def _hint(self, event: WorkflowJobEvent) -> None:
        """Tell the runner directory a runner took (or finished) a job, ahead of GitHub's listing."""
        if self.directory is None or self.runners is None or not event.runner_name:
            return
        if event.action not in ("in_progress", "completed"):
            return
        runner = next(
            (
                o
                for o in self.runners.store.objects()
                if (o.get("metadata") or {}).get("name") == event.runner_name
            ),
            None,
        )
        # the directory of the credentials the runner was registered with (githubAPICredentialsFrom)
        directory = self.directory
        if runner is not None and self.clients is not None:
            namespace = str((runner.get("metadata") or {}).get("namespace") or "")
            api = self.clients.cached(namespace, credentials_secret(runner))
            directory = api.directory if api is not None else directory
        if event.action == "completed" and event.runner_id is not None:
            # its registration ran its job (an ephemeral one is then removed by GitHub); RunnerSet
            # runners, which have no Runner object, read it too
            directory.hint_finished(event.runner_name, event.runner_id)
        spec = (runner or {}).get("spec") or {}
        for kind in ("enterprise", "organization", "repository"):
            if spec.get(kind):
                scope = Scope.parse(**{kind: str(spec[kind])})
                directory.hint_busy(scope, event.runner_name, event.action == "in_progress")
                return

    async def report_ambiguity(self, result: Ambiguous, by_route: dict[str, WebhookTarget]) -> None:
        """A warning Event and the ``AmbiguousWebhookTarget`` condition on every candidate HRA."""
        now = self.monotonic()
        for t in result.targets:
            key = by_route[t.hra].hra
            last = self._reported.get((key, result.reason))
            if last is not None and now - last < self.report_interval:
                continue
            self._reported[(key, result.reason)] = now
            if len(self._reported) > 4096:
                self._reported.clear()
            obj = self.hras.store.get(key)
            if obj is None:
                continue
            await self.recorder.warning(obj, CONDITION_AMBIGUOUS, result.reason)
            await self._set_ambiguous(key, obj, result.reason)

    async def _set_ambiguous(self, key: Key, obj: Obj, message: str) -> None:
        conditions: list[dict[str, Any]] = [
            dict(c)
            for c in (obj.get("status") or {}).get("conditions") or ()
            if isinstance(c, dict) and c.get("type") != CONDITION_AMBIGUOUS
        ]
        conditions.append(
            {
                "type": CONDITION_AMBIGUOUS,
                "status": "True",
                "reason": "SeveralTargetsFit",
                "message": message[:4096],
                "lastTransitionTime": format_condition_time(self.clock()),
                "observedGeneration": (obj.get("metadata") or {}).get("generation") or 0,
            }
        )
        # best effort: the next ambiguous delivery writes it again
        with contextlib.suppress(Conflict, NotFound):
            await self.kube.patch_status(
                HORIZONTAL_RUNNER_AUTOSCALERS,
                key.name,
                {"status": {"conditions": conditions}},
                namespace=key.namespace,
                resource_version=str(obj["metadata"].get("resourceVersion") or "") or None,
            )


def _created_at(job: WorkflowJob | None) -> float | None:
    """When a listed job was queued (its ``created_at``), if the listing says."""
    text = job.raw.get("created_at") if job is not None else None
    try:
        return parse_time(str(text)).timestamp() if text else None
    except ValueError:
        return None


def _effect(update: Outcome) -> str:
    if update.delta > 0:
        return "reserved"
    if update.delta < 0:
        return "released"
    return "unchanged"
