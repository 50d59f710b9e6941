"""The HorizontalRunnerAutoscaler controller, and the wiring of the autoscaling fast path.

One reconcile of an HRA:

1. resolve ``scaleTargetRef`` (a RunnerDeployment, or a RunnerSet when this process has a
   ``runnersets`` informer) from the informer caches;
2. observe only what the configured metrics need: workflow runs and their jobs from GitHub for
   ``TotalNumberOfQueuedAndInProgressWorkflowRuns``, read from the observations shared with the
   safety-net poll (:mod:`runnerd.controller.runwatch`: keyed by repository, at most a sync period
   old, never refreshed because a reservation was written; none at all when
   ``PercentageRunnersBusy`` comes first and suggests a scale-up),
   the target's runners and GitHub's busy flags (the shared runner directory, one listing per scope
   per sync period) for ``PercentageRunnersBusy``; nothing for webhook-only HRAs;
3. decide with :func:`runnerd.reconcile.hra.desired_replicas` (metrics, schedule, capacity
   reservations, scale-down delay); a job that the metric counts and a reservation names is counted
   once (``count_jobs_twice`` restores ARC's sum);
4. patch the target's ``spec.replicas`` (and ``spec.effectiveTime`` for ephemeral runners), write the
   HRA's status (``desiredReplicas``, ``lastSuccessfulScaleOutTime``, ``scheduledOverridesSummary``,
   conditions), record an Event when the desired count changes, and requeue at the decision's next
   deadline (a reservation expiring, a schedule boundary, the end of a held scale-down) or the sync
   period, whichever comes first.

When GitHub cannot be asked (rate limit, outage), the metrics are skipped, reservations and schedules
still apply, and the HRA never scales *down* on missing data; the ``GitHubAPIBudget`` condition says
why. Conditions (``status.conditions``): ``ScalingActive``, ``AbleToScale``, ``ScalingLimited``,
``GitHubAPIBudget`` (for HRAs that use GitHub) and ``AmbiguousWebhookTarget`` (written by the webhook
path, expired here).

:func:`install` adds all of it to a controller process built by :func:`runnerd.controller.app.build`:
the HRA informer and controller, the webhook sink (served by :mod:`runnerd.web`), the safety-net poll
and the metrics.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
import time
from collections.abc import Callable, Container, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from runnerd.api import HorizontalRunnerAutoscaler, MetricSpec, RunnerConfig, format_time, parse_time
from runnerd.controller.clients import GitHubAPI, GitHubClients, credentials_secret
from runnerd.controller.common import (
    HORIZONTAL_RUNNER_AUTOSCALERS,
    RUNNER_DEPLOYMENTS,
    RUNNER_SETS,
    ControllerOptions,
    matching_labels,
)
from runnerd.controller.directory import RunnerDirectory
from runnerd.controller.latency import PodCreateLatency, RunnerStartup
from runnerd.controller.poller import POLL_KEY, SafetyNetPoller
from runnerd.controller.replicasets import INDEX_CONTROLLER
from runnerd.controller.runwatch import RunObserver
from runnerd.controller.targets import (
    HRA_INFORMER,
    RD_INFORMER,
    RUNNERSET_INFORMER,
    ScaleTarget,
    TargetResolver,
)
from runnerd.controller.visibility import GroupVisibility
from runnerd.controller.webhook_sink import (
    CONDITION_AMBIGUOUS,
    ReservationSink,
    ReservationWriter,
    format_condition_time,
    newer,
    utcnow,
)
from runnerd.github import GitHubClient, GitHubError, RateLimitedError, Scope
from runnerd.github.budget import CallWindow
from runnerd.kube.client import KubeClient
from runnerd.reconcile.hra import (
    PERCENTAGE_BUSY,
    TOTAL_JOBS,
    AutoscaleError,
    BusySuggestion,
    JobObservation,
    Observations,
    QueuedJobsSuggestion,
    RunnerObservation,
    ScaleDecision,
    check_metrics,
    desired_replicas,
    metric_repositories,
    suggest_by_busy_runners,
)
from runnerd.reconcile.matching import job_fits_runner, workflow_job_trigger
from runnerd.reconcile.runner import GitHubState
from runnerd.reconcile.runnerset import LABEL_RUNNERSET_NAME
from runnerd.runtime import (
    ApiError,
    Controller,
    EventRecorder,
    Informer,
    Key,
    Manager,
    NotFound,
    Obj,
    Result,
)
from runnerd.web.metrics import BudgetSnapshot, Metrics, RateLimitReading
from runnerd.web.webhook import DEFAULT_DEDUP_SIZE, DEFAULT_MAX_BODY, WebhookServer

if TYPE_CHECKING:
    from runnerd.controller.app import Controllers

log = logging.getLogger(__name__)

SCALING_ACTIVE = "ScalingActive"
ABLE_TO_SCALE = "AbleToScale"
SCALING_LIMITED = "ScalingLimited"
GITHUB_API_BUDGET = "GitHubAPIBudget"
OWN_CONDITIONS = (SCALING_ACTIVE, ABLE_TO_SCALE, SCALING_LIMITED, GITHUB_API_BUDGET)
EVENT_INTERVAL = 5.0
"""At most one ``DesiredReplicasChanged`` Event per HRA this often (a burst changes it many times)."""


@dataclass
class AutoscalingOptions:
    """Autoscaling settings; read live, so the CLI (or a test) may change them before the manager runs."""

    sync_period: float | None = None
    """How often an HRA is reconciled at least (None: the controller's ``--sync-period``)."""
    default_scale_down_delay: float = 600.0
    """``--default-scale-down-delay`` (HRAs without ``scaleDownDelaySecondsAfterScaleOut``)."""
    poll: bool = True
    """Run the safety-net poll (leader only)."""
    poll_bound: float = 60.0
    """A queued job whose webhook never came gets a runner within about this many seconds."""
    poll_max_calls_per_hour: int = 1000
    """The most GitHub calls the safety-net poll spends per hour (counted: 304s too)."""
    runner_groups_visibility: bool = False
    """Ask GitHub which runner groups a repository may use before routing a webhook (ARC's
    ``useRunnerGroupsVisibility``); only consulted when a candidate is in a non-default group."""
    ambiguity_ttl: float = 3600.0
    """``AmbiguousWebhookTarget`` turns False this long after the last ambiguous delivery."""
    workers: int | None = None
    observe_max_calls_per_hour: int = 3000
    """The ceiling of the one GitHub call budget (a sliding hour) that the metric's observations, the
    safety-net poll and the runner listings spend from; over it, the metric reuses its last
    observation. The poll keeps its own lower ceiling (``poll_max_calls_per_hour``) on the same window."""
    count_jobs_twice: bool = False
    """ARC's sum: every webhook reservation on top of the metric's count, even for a job the metric
    already counted (``--count-jobs-twice``). Off: a job known by its id counts once."""


def budget_snapshot(github: GitHubClient) -> BudgetSnapshot:
    """The GitHub client's budget for the metrics layer."""
    stats = github.stats.snapshot()
    readings = [
        RateLimitReading(b.resource, b.limit, b.remaining, b.reset_at, b.used)
        for b in github.rate_limits.snapshot().values()
    ]
    paused: dict[str, float] = {}
    for resource in [None, *(r.resource for r in readings)]:
        until = github.paused_until(resource)
        if until is not None:
            paused["*" if resource is None else resource] = until
    return BudgetSnapshot(
        rate_limits=readings,
        calls=stats.calls,
        retries=stats.retries,
        gate_waits=stats.gate_waits,
        gate_wait_seconds=stats.gate_wait_seconds,
        gate_rejections=stats.gate_rejections,
        paused_until=paused,
    )


def _condition(
    existing: Mapping[str, Mapping[str, Any]],
    type_: str,
    status: bool,
    reason: str,
    message: str,
    now: dt.datetime,
    generation: int,
) -> dict[str, Any]:
    text = "True" if status else "False"
    old = existing.get(type_)
    since = (
        old.get("lastTransitionTime")
        if old is not None and old.get("status") == text and old.get("lastTransitionTime")
        else format_condition_time(now)
    )
    return {
        "type": type_,
        "status": text,
        "reason": reason,
        "message": message[:4096],
        "lastTransitionTime": since,
        "observedGeneration": generation,
    }


def _fmt_epoch(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class _PendingStatus:
    obj: Obj
    fields: dict[str, Any]
    conditions: list[tuple[str, bool, str, str]]
    uses_github: bool
    event: tuple[str, str] | None
    desired: int
    last_scale_out: dt.datetime | None


@dataclass
class _Observed:
    obs: Observations
    failure: GitHubError | None = None
    jobs_counts: dict[str, int] | None = None


class HRAController:
    """Reconciles HorizontalRunnerAutoscalers (see the module docstring)."""

    def __init__(
        self,
        *,
        kube: KubeClient,
        github: GitHubClient,
        directory: RunnerDirectory,
        recorder: EventRecorder,
        hras: Informer,
        resolver: TargetResolver,
        informers: Mapping[str, Informer],
        options: AutoscalingOptions,
        controller_options: ControllerOptions,
        metrics: Metrics,
        poller: SafetyNetPoller | None = None,
        observer: RunObserver | None = None,
        finished: Container[int] = (),
        clock: Callable[[], dt.datetime] = utcnow,
        monotonic: Callable[[], float] = time.monotonic,
        clients: GitHubClients | None = None,
    ) -> None:
        self.kube = kube
        self.github = github
        self.directory = directory
        self.clients = clients or GitHubClients(None, GitHubAPI(github, directory))
        self.recorder = recorder
        self.hras = hras
        self.resolver = resolver
        self.informers = informers
        self.options = options
        self.controller_options = controller_options
        self.metrics = metrics
        self.poller = poller
        self.clock = clock
        self._fresh: dict[Key, Obj] = {}
        self.monotonic = monotonic
        self.observer = observer or RunObserver(github, CallWindow(monotonic), clock=monotonic)
        self._observers: dict[str, RunObserver] = {}  # per githubAPICredentialsFrom Secret
        self.finished = finished
        """Jobs the webhooks said finished (the reservation writer's memory)."""
        self._pending_status: dict[Key, _PendingStatus] = {}
        self._writing_status: dict[Key, _PendingStatus] = {}
        self._status_tasks: dict[Key, asyncio.Task[None]] = {}
        self._last_event: dict[Key, float] = {}
        self._event_from: dict[Key, int | None] = {}
        self.scale_writes = 0
        self.github_observations = 0

    @property
    def sync_period(self) -> float:
        return self.options.sync_period or self.controller_options.sync_period

    @property
    def default_labels(self) -> tuple[str, ...]:
        return matching_labels(self.controller_options)

    def offer(self, key: Key, obj: Obj) -> None:
        """A version of the HRA this process just wrote (fresher than the cache, for a moment)."""
        self._fresh[key] = obj

    def _current(self, key: Key) -> Obj | None:
        cached = self.hras.store.get(key)
        fresh = self._fresh.get(key)
        if cached is None or fresh is None:
            self._fresh.pop(key, None)
            return cached
        best = newer(fresh, cached)
        if best is cached:
            self._fresh.pop(key, None)
        return best

    # --- reconcile -------------------------------------------------------------------------------

    async def reconcile(self, key: Key) -> Result | None:
        obj = self._current(key)
        hra_labels = (key.name, key.namespace)
        if obj is None:
            self.metrics.forget_hra(hra_labels)
            for memo in (self._last_event, self._event_from):
                memo.pop(key, None)
            return None
        hra = self.resolver.parse_hra(obj)
        if hra is not None:
            hra = self._with_in_flight_status(key, hra)
        if hra is None:
            try:
                HorizontalRunnerAutoscaler.from_dict(obj)
            except ValueError as exc:
                await self.recorder.warning(obj, "InvalidSpec", str(exc))
                await self._write_status(
                    obj, {}, [(SCALING_ACTIVE, False, "InvalidSpec", str(exc))], uses_github=False
                )
            self.metrics.reconciles.labels("invalid").inc()
            return None
        if hra.metadata.deletion_timestamp is not None:
            return None
        sync = self.sync_period
        target = self.resolver.resolve(key.namespace, hra.spec.scale_target_ref)
        if isinstance(target, str):
            await self.recorder.warning(obj, "FailedGetScaleTarget", target)
            await self._write_status(
                obj, {}, [(SCALING_ACTIVE, False, "FailedGetScaleTarget", target)], uses_github=False
            )
            self.metrics.reconciles.labels("target_missing").inc()
            return Result(requeue_after=sync)

        now = self.clock()
        try:
            check_metrics(hra.spec.metrics)
            observed = await self._observe(key, hra.metadata.generation, hra.spec.metrics, target)
            decision = self._decide(hra, target, observed, now)
        except AutoscaleError as exc:
            await self.recorder.warning(obj, "InvalidMetricSpec", str(exc))
            await self._write_status(
                obj,
                {},
                [(SCALING_ACTIVE, False, "InvalidMetricSpec", str(exc))],
                uses_github=bool(hra.spec.metrics),
            )
            self.metrics.reconciles.labels("invalid").inc()
            return Result(requeue_after=sync)

        scaled = await self._scale(obj, target, decision)
        if scaled is not None:  # the target vanished or refused the patch
            await self._write_status(
                obj, {}, [(ABLE_TO_SCALE, False, "FailedUpdateScale", scaled)], uses_github=False
            )
            self.metrics.reconciles.labels("target_missing").inc()
            return Result(requeue_after=sync)

        before = hra.status.desired_replicas
        event: tuple[str, str] | None = None
        if before != decision.desired_replicas:
            event = self._desired_event(key, before, decision)
        # The status (and Event) are written in the background, so that the next reconcile of this
        # HRA (the next webhook of a burst) does not wait for them; the next decision reads the
        # in-flight values (see _with_in_flight_status).
        self._schedule_status(
            key,
            _PendingStatus(
                obj,
                self._status_fields(hra, decision),
                self._conditions(hra, decision, observed),
                bool(hra.spec.metrics) or (self.options.poll and workflow_job_trigger(hra.spec) is not None),
                event,
                decision.desired_replicas,
                decision.last_successful_scale_out_time,
            ),
        )
        self._record_metrics(hra_labels, target, decision, observed)
        self.metrics.reconciles.labels("scaled" if before != decision.desired_replicas else "unchanged").inc()
        wake = sync
        if decision.requeue_after is not None:
            wake = min(wake, max(decision.requeue_after.total_seconds(), 0.0) + 0.05)
        return Result(requeue_after=wake)

    # --- status in the background ----------------------------------------------------------------

    def _with_in_flight_status(self, key: Key, hra: HorizontalRunnerAutoscaler) -> HorizontalRunnerAutoscaler:
        """The HRA with the status this controller decided but has not written yet."""
        pending = self._pending_status.get(key) or self._writing_status.get(key)
        if pending is None:
            return hra
        status = dataclasses.replace(
            hra.status,
            desired_replicas=pending.desired,
            last_successful_scale_out_time=pending.last_scale_out,
        )
        return dataclasses.replace(hra, status=status)

    def _desired_event(self, key: Key, before: int | None, decision: ScaleDecision) -> tuple[str, str] | None:
        """A ``DesiredReplicasChanged`` Event, at most one per HRA every ``EVENT_INTERVAL`` seconds."""
        now = self.monotonic()
        last = self._last_event.get(key)
        start = self._event_from.get(key, before)
        if last is not None and now - last < EVENT_INTERVAL:
            self._event_from.setdefault(key, before)
            return None
        self._last_event[key] = now
        self._event_from.pop(key, None)
        return (
            "DesiredReplicasChanged",
            f"desired replicas {start if start is not None else 'unset'} -> {decision.desired_replicas}: "
            + "; ".join(decision.reasons[1:]),
        )

    def _schedule_status(self, key: Key, pending: _PendingStatus) -> None:
        previous = self._pending_status.get(key)
        if previous is not None and pending.event is None:
            pending.event = previous.event  # an Event not sent yet goes out with the newer status
        self._pending_status[key] = pending
        if key not in self._status_tasks:
            self._status_tasks[key] = asyncio.create_task(self._flush_status(key), name=f"hra-status-{key}")

    async def _flush_status(self, key: Key) -> None:
        try:
            while (pending := self._pending_status.pop(key, None)) is not None:
                self._writing_status[key] = pending
                try:
                    base = self._current(key) or pending.obj
                    await self._write_status(
                        base, pending.fields, pending.conditions, uses_github=pending.uses_github
                    )
                    if pending.event is not None:
                        await self.recorder.normal(base, *pending.event)
                except ApiError as exc:
                    log.warning("writing the status of HRA %s: %s (the next reconcile writes it)", key, exc)
                finally:
                    self._writing_status.pop(key, None)
        finally:
            self._status_tasks.pop(key, None)

    async def close(self) -> None:
        """Finish (or drop, when cancelled) the status writes in flight."""
        tasks = list(self._status_tasks.values())
        if tasks:
            await asyncio.wait(tasks, timeout=5.0)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)

    # --- observe ---------------------------------------------------------------------------------

    async def _observe(
        self, key: Key, generation: int | None, metrics: Sequence[MetricSpec], target: ScaleTarget
    ) -> _Observed:
        obs = Observations(target=target.config, target_replicas=target.replicas)
        observed = _Observed(obs)
        types = [m.type for m in metrics]
        if not types:
            return observed
        try:
            # githubAPICredentialsFrom: the HRA's, else its target's, else the controller's own
            hra = self.hras.store.get(key) or {}
            secret = credentials_secret(hra) or credentials_secret(target.obj)
            api = await self.clients.get(key.namespace, secret)
            if PERCENTAGE_BUSY in types:
                obs = dataclasses.replace(obs, runners=await self._runners(target, api))
            if TOTAL_JOBS in types:
                index = types.index(TOTAL_JOBS)
                needed = index == 0 or suggest_by_busy_runners(metrics[0], obs).suggested <= 0
                if needed:
                    jobs, counts = await self._jobs(metrics[index], target.config, api)
                    obs = dataclasses.replace(obs, jobs=jobs)
                    observed.jobs_counts = counts
        except GitHubError as exc:
            observed.failure = exc
        observed.obs = obs
        return observed

    def _runner_objects(self, target: ScaleTarget) -> list[Obj]:
        if target.kind == "RunnerDeployment":
            replica_sets = self.informers.get("runnerreplicasets")
            runners = self.informers.get("runners")
            if replica_sets is None or runners is None:
                return []
            found: list[Obj] = []
            for rs in replica_sets.store.by_index(INDEX_CONTROLLER, target.uid):
                found += runners.store.by_index(INDEX_CONTROLLER, str(rs["metadata"].get("uid") or ""))
            return found
        pods = self.informers.get("pods")
        if pods is None:
            return []
        return [
            p
            for p in pods.store.objects()
            if (p.get("metadata") or {}).get("namespace") == target.namespace
            and ((p.get("metadata") or {}).get("labels") or {}).get(LABEL_RUNNERSET_NAME) == target.name
        ]

    async def _runners(self, target: ScaleTarget, api: GitHubAPI) -> list[RunnerObservation]:
        scope = target.config.scope
        if scope is None:
            raise AutoscaleError(
                "the scale target needs exactly one of enterprise, organization or repository"
            )
        gh_scope = Scope(scope.kind, scope.name)
        listing = await api.directory.refresh(gh_scope, max_age=self.sync_period)
        self.github_observations += 1
        out = []
        for obj in self._runner_objects(target):
            name = str(obj["metadata"]["name"])
            state = api.directory.state(gh_scope, name)
            registered = name in listing.runners
            busy = state is GitHubState.BUSY
            deleting = bool(obj["metadata"].get("deletionTimestamp"))
            out.append(
                RunnerObservation(
                    name=name,
                    registered=registered,
                    busy=busy and not deleting,
                    terminating_busy=busy and deleting,
                )
            )
        return out

    def _observer(self, api: GitHubAPI) -> RunObserver:
        """The shared observation of these credentials: the controller's own is shared with the
        safety-net poll; each ``githubAPICredentialsFrom`` Secret's client has its own (and its own
        call window), made on first use and dropped with its client (a rotation makes a new one)."""
        if not api.secret or api.github is self.observer.github:
            return self.observer
        found = self._observers.get(api.secret)
        if found is None or found.github is not api.github:
            found = RunObserver(api.github, CallWindow(self.monotonic), clock=self.monotonic)
            self._observers[api.secret] = found
        return found

    async def _jobs(
        self, metric: MetricSpec, config: RunnerConfig, api: GitHubAPI
    ) -> tuple[dict[str, list[JobObservation]], dict[str, int]]:
        """The metric's jobs, from the shared observations (see :mod:`runnerd.controller.runwatch`):
        at most a sync period old, whatever caused this reconcile (a reservation write included)."""
        repos = metric_repositories(metric, config)
        result: dict[str, list[JobObservation]] = {}
        counts = {"completed": 0, "in_progress": 0, "queued": 0, "unknown": 0}
        sync = self.sync_period
        for repo in repos:
            seen = await self._observer(api).observe(
                repo, max_age=sync, jobs_max_age=sync, ceiling=self.options.observe_max_calls_per_hour
            )
            if seen.calls:
                self.github_observations += 1
            # a job whose completed delivery came since is finished, whatever the observation says
            found = [
                JobObservation("completed" if j.id in self.finished else j.status or "", j.labels, j.id)
                for j in seen.jobs()
            ]
            result[repo] = found
            for job in found:
                if job_fits_runner(job.labels, config.labels, self.default_labels):
                    counts[job.status if job.status in counts else "unknown"] += 1
        return result, counts

    # --- decide ----------------------------------------------------------------------------------

    def _decide(
        self, hra: HorizontalRunnerAutoscaler, target: ScaleTarget, observed: _Observed, now: dt.datetime
    ) -> ScaleDecision:
        delay = dt.timedelta(seconds=self.options.default_scale_down_delay)
        if observed.failure is None:
            return desired_replicas(
                hra.spec,
                hra.status,
                now,
                observed.obs,
                default_scale_down_delay=delay,
                default_labels=self.default_labels,
                count_jobs_twice=self.options.count_jobs_twice,
            )
        # GitHub could not be asked: decide without the metrics, and never below what runs now.
        spec = dataclasses.replace(hra.spec, metrics=[])
        decision = desired_replicas(
            spec,
            hra.status,
            now,
            observed.obs,
            default_scale_down_delay=delay,
            default_labels=self.default_labels,
        )
        floor = max(hra.status.desired_replicas or 0, target.replicas if target.replicas is not None else 1)
        floor = min(floor, decision.max_replicas)
        if floor <= decision.desired_replicas:
            return decision
        before = hra.status.desired_replicas
        scaled_out = before is None or floor > before
        return dataclasses.replace(
            decision,
            desired_replicas=floor,
            scaled_out=scaled_out and (before is not None or floor > 1),
            last_successful_scale_out_time=now if scaled_out else decision.last_successful_scale_out_time,
            reasons=(
                *decision.reasons,
                f"metrics not observed ({observed.failure}): keeping {floor} replicas",
            ),
        )

    # --- act -------------------------------------------------------------------------------------

    async def _scale(self, hra_obj: Obj, target: ScaleTarget, decision: ScaleDecision) -> str | None:
        spec: dict[str, Any] = {}
        if target.replicas != decision.desired_replicas:
            spec["replicas"] = decision.desired_replicas
        if decision.effective_time is not None and (
            target.effective_time is None or target.effective_time != decision.effective_time
        ):
            spec["effectiveTime"] = format_time(decision.effective_time)
        if not spec:
            return None
        try:
            await self.kube.patch(target.resource, target.name, {"spec": spec}, namespace=target.namespace)
        except NotFound:
            return f"{target.kind} {target.namespace}/{target.name} not found"
        except ApiError as exc:
            if exc.status in (400, 403, 422):
                return f"patching {target.kind} {target.namespace}/{target.name}: {exc}"
            raise
        self.scale_writes += 1
        return None

    def _status_fields(self, hra: HorizontalRunnerAutoscaler, decision: ScaleDecision) -> dict[str, Any]:
        last = decision.last_successful_scale_out_time
        return {
            "desiredReplicas": decision.desired_replicas,
            "lastSuccessfulScaleOutTime": format_time(last) if last is not None else None,
            "scheduledOverridesSummary": decision.scheduled_overrides_summary,
            "observedGeneration": hra.metadata.generation,
        }

    def _conditions(
        self, hra: HorizontalRunnerAutoscaler, decision: ScaleDecision, observed: _Observed
    ) -> list[tuple[str, bool, str, str]]:
        out: list[tuple[str, bool, str, str]] = []
        if observed.failure is not None:
            out.append(
                (
                    SCALING_ACTIVE,
                    False,
                    "FailedGetMetrics",
                    f"metrics not observed: {observed.failure}; reservations and schedules still apply, "
                    "and the HRA does not scale down until they can be observed again",
                )
            )
        else:
            out.append(
                (
                    SCALING_ACTIVE,
                    True,
                    "ValidMetricSpec" if hra.spec.metrics else "NoMetrics",
                    decision.reasons[-1] if decision.reasons else "",
                )
            )
        if decision.scale_down_held_until is not None:
            out.append(
                (
                    ABLE_TO_SCALE,
                    True,
                    "ScaleDownStabilized",
                    f"scale-down to {decision.computed_replicas} held until "
                    f"{format_condition_time(decision.scale_down_held_until)}",
                )
            )
        else:
            out.append((ABLE_TO_SCALE, True, "ReadyForNewScale", "the target accepts new replica counts"))
        wanted = decision.suggested_replicas + decision.reserved_replicas
        if wanted > decision.max_replicas:
            out.append(
                (
                    SCALING_LIMITED,
                    True,
                    "TooManyReplicas",
                    f"{wanted} wanted, capped at maxReplicas {decision.max_replicas}",
                )
            )
        elif wanted < decision.min_replicas:
            out.append(
                (
                    SCALING_LIMITED,
                    True,
                    "TooFewReplicas",
                    f"{wanted} wanted, raised to minReplicas {decision.min_replicas}",
                )
            )
        else:
            out.append((SCALING_LIMITED, False, "DesiredWithinRange", "the desired count is within range"))
        out.append(self._budget_condition(observed))
        return out

    def _budget_condition(self, observed: _Observed) -> tuple[str, bool, str, str]:
        failure = observed.failure
        if isinstance(failure, RateLimitedError):
            return (
                GITHUB_API_BUDGET,
                False,
                "RateLimited",
                f"GitHub rate limit ({failure.resource}) in force until {_fmt_epoch(failure.resume_at)}: "
                "metrics are not observed, only reservations and schedules scale",
            )
        if self.poller is not None:
            limited = self.poller.budget_limited()
            if limited is not None:
                return (GITHUB_API_BUDGET, False, limited[0], limited[1])
        until = self.github.paused_until("core")
        if until is not None:
            return (
                GITHUB_API_BUDGET,
                False,
                "RateLimited",
                f"GitHub calls paused by a rate limit until {_fmt_epoch(until)}",
            )
        # No counts in the message: it would change with every call and rewrite the status each time.
        return (
            GITHUB_API_BUDGET,
            True,
            "WithinBudget",
            "no GitHub rate limit holds this autoscaler back (see github_rate_limit_remaining)",
        )

    async def _write_status(
        self,
        obj: Obj,
        fields: Mapping[str, Any],
        conditions: Iterable[tuple[str, bool, str, str]],
        *,
        uses_github: bool,
    ) -> None:
        meta = obj.get("metadata") or {}
        status = obj.get("status") or {}
        current = [c for c in status.get("conditions") or () if isinstance(c, dict)]
        existing = {str(c.get("type")): c for c in current}
        now = self.clock()
        generation = int(meta.get("generation") or 0)
        mine = {c[0]: c for c in conditions}
        new: list[dict[str, Any]] = []
        for type_ in OWN_CONDITIONS:
            if type_ in mine:
                _, ok, reason, message = mine[type_]
                new.append(_condition(existing, type_, ok, reason, message, now, generation))
            elif type_ in existing and not (type_ == GITHUB_API_BUDGET and not uses_github):
                new.append(dict(existing[type_]))
        for c in current:
            if c.get("type") in OWN_CONDITIONS:
                continue
            if c.get("type") == CONDITION_AMBIGUOUS and c.get("status") == "True":
                try:
                    since = parse_time(str(c.get("lastTransitionTime")))
                except ValueError:
                    since = now
                if (now - since).total_seconds() > self.options.ambiguity_ttl:
                    c = _condition(
                        existing,
                        CONDITION_AMBIGUOUS,
                        False,
                        "NoRecentAmbiguity",
                        f"no ambiguous workflow_job delivery for {self.options.ambiguity_ttl:g}s",
                        now,
                        generation,
                    )
            new.append(dict(c))
        patch: dict[str, Any] = {k: v for k, v in fields.items() if status.get(k) != v}
        if _strip_times(new) != _strip_times(current):
            patch["conditions"] = new
        if not patch:
            return
        try:
            written = await self.kube.patch_status(
                HORIZONTAL_RUNNER_AUTOSCALERS,
                str(meta["name"]),
                {"status": patch},
                namespace=str(meta.get("namespace") or ""),
            )
        except NotFound:
            return
        self.offer(Key.of(written), written)

    def _record_metrics(
        self, hra: tuple[str, str], target: ScaleTarget, decision: ScaleDecision, observed: _Observed
    ) -> None:
        self.metrics.set_decision(hra, reserved=decision.reserved_replicas, held=decision.held)
        scope = target.scope_labels()
        for s in decision.suggestions:
            if isinstance(s, BusySuggestion):
                self.metrics.set_busy_observation(
                    hra,
                    scope,
                    desired=s.suggested,
                    runners=s.runners,
                    registered=s.registered,
                    busy=s.busy,
                    terminating_busy=s.terminating_busy,
                )
            elif isinstance(s, QueuedJobsSuggestion) and observed.jobs_counts is not None:
                c = observed.jobs_counts
                self.metrics.set_jobs_observation(
                    hra,
                    scope,
                    necessary=s.suggested,
                    completed=c["completed"],
                    in_progress=c["in_progress"],
                    queued=c["queued"],
                    unknown=c["unknown"],
                )


def _strip_times(conditions: Iterable[Mapping[str, Any]]) -> list[tuple[Any, ...]]:
    return [
        (c.get("type"), c.get("status"), c.get("reason"), c.get("message"), c.get("observedGeneration"))
        for c in conditions
    ]


@dataclass
class Autoscaling:
    """What :func:`install` added to a controller process."""

    options: AutoscalingOptions
    metrics: Metrics
    hras: Informer
    resolver: TargetResolver
    controller: HRAController
    hra_controller: Controller
    writer: ReservationWriter
    sink: ReservationSink
    poller: SafetyNetPoller
    poll_controller: Controller
    pod_latency: PodCreateLatency
    runner_startup: RunnerStartup

    def webhook_server(
        self, secret: str | bytes, *, max_body: int = DEFAULT_MAX_BODY, dedup_size: int = DEFAULT_DEDUP_SIZE
    ) -> WebhookServer:
        return WebhookServer(
            secret=secret, sink=self.sink, metrics=self.metrics, max_body=max_body, dedup_size=dedup_size
        )

    async def close(self) -> None:
        await self.writer.close()
        await self.controller.close()


def install(
    controllers: Controllers,
    *,
    options: AutoscalingOptions | None = None,
    metrics: Metrics | None = None,
) -> Autoscaling:
    """Add HRA autoscaling (informer, controller, webhook sink, safety-net poll, metrics) to a process."""
    options = options or AutoscalingOptions()
    metrics = metrics or Metrics()
    informers = controllers.informers
    kube, github = controllers.kube, controllers.github
    hras = Informer(
        HRA_INFORMER,
        kube.list_watcher(HORIZONTAL_RUNNER_AUTOSCALERS, namespace=controllers.options.namespace),
    )
    informers[HRA_INFORMER] = hras
    controllers.manager.add_informer(hras)
    resolver = TargetResolver(informers)

    pod_latency = PodCreateLatency(metrics)
    startup = RunnerStartup(metrics)
    if "pods" in informers:
        informers["pods"].add_handler(pod_latency.on_pod)
        informers["pods"].add_handler(startup.on_pod)
    if "runners" in informers:
        informers["runners"].add_handler(startup.on_runner)

    hra_ctl: Controller | None = None
    controller: HRAController | None = None

    def written(key: Key, obj: Obj) -> None:
        if controller is not None:
            controller.offer(key, obj)
        if hra_ctl is not None:
            hra_ctl.enqueue(key)  # a no-op unless this process leads

    writer = ReservationWriter(kube, hras, resolver, metrics=metrics, on_written=written)

    async def visibility(event: Any, targets: Any) -> Any:
        if not options.runner_groups_visibility:
            return None
        return await groups(event, targets)

    groups = GroupVisibility(github)
    sink = ReservationSink(
        kube=kube,
        hras=hras,
        resolver=resolver,
        writer=writer,
        recorder=controllers.recorder,
        metrics=metrics,
        default_labels=matching_labels(controllers.options),
        directory=controllers.directory,
        runners=informers.get("runners"),
        pod_latency=pod_latency,
        visibility=visibility,
        clients=controllers.clients,
    )
    # one observation per repository and one call budget for the metric, the poll and the listings
    observer = RunObserver(github, CallWindow(time.monotonic))
    controllers.directory.budget = observer.window
    poller = SafetyNetPoller(github=github, sink=sink, options=options, metrics=metrics, observer=observer)
    controller = HRAController(
        kube=kube,
        github=github,
        directory=controllers.directory,
        recorder=controllers.recorder,
        hras=hras,
        resolver=resolver,
        informers=informers,
        options=options,
        controller_options=controllers.options,
        metrics=metrics,
        poller=poller,
        clients=controllers.clients,
        observer=observer,
        finished=writer.finished,
    )
    hra_ctl = Controller(
        "horizontalrunnerautoscaler",
        controller.reconcile,
        workers=options.workers or controllers.options.workers,
    )
    hra_ctl.watch(hras)
    poll_ctl = Controller("safety-net-poll", poller.reconcile, workers=1)
    poll_ctl.watch(hras, lambda obj: [POLL_KEY])
    controllers.manager.add_controller(hra_ctl)
    controllers.manager.add_controller(poll_ctl)

    rd = informers.get(RD_INFORMER)
    runner_sets = informers.get(RUNNERSET_INFORMER)
    metrics.watch_objects(
        hras=hras.store.objects,
        deployments=rd.store.objects if rd is not None else None,
        runner_sets=runner_sets.store.objects if runner_sets is not None else None,
    )
    metrics.watch_github(lambda: budget_snapshot(github))
    return Autoscaling(
        options=options,
        metrics=metrics,
        hras=hras,
        resolver=resolver,
        controller=controller,
        hra_controller=hra_ctl,
        writer=writer,
        sink=sink,
        poller=poller,
        poll_controller=poll_ctl,
        pod_latency=pod_latency,
        runner_startup=startup,
    )


@dataclass
class WebhookProcess:
    """The standalone webhook server's moving parts (``runnerd webhook-server``)."""

    manager: Manager
    informers: dict[str, Informer]
    sink: ReservationSink
    writer: ReservationWriter
    metrics: Metrics

    def webhook_server(
        self, secret: str | bytes, *, max_body: int = DEFAULT_MAX_BODY, dedup_size: int = DEFAULT_DEDUP_SIZE
    ) -> WebhookServer:
        return WebhookServer(
            secret=secret, sink=self.sink, metrics=self.metrics, max_body=max_body, dedup_size=dedup_size
        )

    @property
    def ready(self) -> bool:
        return all(i.synced for i in self.informers.values())


def build_webhook_process(
    *,
    kube: KubeClient,
    namespace: str | None,
    github: GitHubClient | None = None,
    runner_sets: bool = True,
    default_labels: Iterable[str] = (),
    metrics: Metrics | None = None,
    identity: str = "",
) -> WebhookProcess:
    """A process that only serves webhooks: it writes reservations, the controller scales.

    It watches HRAs, RunnerDeployments and (``runner_sets``) RunnerSets. ``github`` is only used to
    resolve runner-group visibility.
    """
    metrics = metrics or Metrics()
    informers: dict[str, Informer] = {
        HRA_INFORMER: Informer(
            HRA_INFORMER, kube.list_watcher(HORIZONTAL_RUNNER_AUTOSCALERS, namespace=namespace)
        ),
        RD_INFORMER: Informer(RD_INFORMER, kube.list_watcher(RUNNER_DEPLOYMENTS, namespace=namespace)),
    }
    if runner_sets:
        informers[RUNNERSET_INFORMER] = Informer(
            RUNNERSET_INFORMER, kube.list_watcher(RUNNER_SETS, namespace=namespace)
        )
    manager = Manager()
    for informer in informers.values():
        manager.add_informer(informer)
    resolver = TargetResolver(informers)
    writer = ReservationWriter(kube, informers[HRA_INFORMER], resolver, metrics=metrics)
    recorder = EventRecorder(kube.event_sink(), component="runnerd-webhook-server", instance=identity)
    sink = ReservationSink(
        kube=kube,
        hras=informers[HRA_INFORMER],
        resolver=resolver,
        writer=writer,
        recorder=recorder,
        metrics=metrics,
        default_labels=default_labels,
        visibility=GroupVisibility(github) if github is not None else None,
    )
    metrics.watch_objects(
        hras=informers[HRA_INFORMER].store.objects,
        deployments=informers[RD_INFORMER].store.objects,
        runner_sets=informers[RUNNERSET_INFORMER].store.objects if runner_sets else None,
    )
    if github is not None:
        metrics.watch_github(lambda: budget_snapshot(github))
    return WebhookProcess(manager, informers, sink, writer, metrics)
