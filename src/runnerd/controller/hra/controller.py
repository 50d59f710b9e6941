"""The HorizontalRunnerAutoscaler controller.

One reconcile of an HRA:

1. resolve ``scaleTargetRef`` (a RunnerDeployment, or a RunnerSet when this process has a
   ``runnersets`` informer) from the informer caches;
2. observe only what the configured metrics need (:mod:`runnerd.controller.hra.metric`);
3. decide with :func:`runnerd.reconcile.hra.desired_replicas` (metrics, schedule, capacity
   reservations, scale-down delay); a job that the metric counts and a reservation names is counted
   once (``count_jobs_twice`` restores ARC's sum);
4. patch the target's ``spec.replicas`` (and ``spec.effectiveTime`` for ephemeral runners), hand the
   HRA's status (``desiredReplicas``, ``lastSuccessfulScaleOutTime``, ``scheduledOverridesSummary``,
   conditions) and an Event when the desired count changes to the background status writer
   (:mod:`runnerd.controller.hra.status`), and requeue at the decision's next deadline (a
   reservation expiring, a schedule boundary, the end of a held scale-down) or the sync period,
   whichever comes first.

When GitHub cannot be asked (rate limit, outage), the metrics are skipped, reservations and schedules
still apply, and the HRA never scales *down* on missing data; the ``GitHubAPIBudget`` condition says
why. Conditions (``status.conditions``): ``ScalingActive``, ``AbleToScale``, ``ScalingLimited``,
``GitHubAPIBudget`` (for HRAs that use GitHub) and ``AmbiguousWebhookTarget`` (written by the webhook
path, expired by the status writer). At most one ``DesiredReplicasChanged`` Event per HRA every
:data:`EVENT_INTERVAL` seconds.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from collections.abc import Callable, Container, Mapping
from typing import Any

from runnerd.api import HorizontalRunnerAutoscaler, format_time
from runnerd.controller.clients import GitHubAPI, GitHubClients
from runnerd.controller.common import ControllerOptions, matching_labels
from runnerd.controller.directory import RunnerDirectory
from runnerd.controller.hra.metric import MetricObserver, Observed
from runnerd.controller.hra.options import AutoscalingOptions
from runnerd.controller.hra.status import (
    ABLE_TO_SCALE,
    GITHUB_API_BUDGET,
    SCALING_ACTIVE,
    SCALING_LIMITED,
    Condition,
    PendingStatus,
    StatusWriter,
)
from runnerd.controller.journal import ReservationJournal
from runnerd.controller.poller import SafetyNetPoller
from runnerd.controller.reservation_writer import utcnow
from runnerd.controller.reservations import format_condition_time
from runnerd.controller.runwatch import RunObserver
from runnerd.controller.targets import ScaleTarget, TargetResolver
from runnerd.github import GitHubClient, RateLimitedError
from runnerd.github.budget import CallWindow
from runnerd.kube.client import KubeClient
from runnerd.reconcile.hra import (
    AutoscaleError,
    BusySuggestion,
    QueuedJobsSuggestion,
    ScaleDecision,
    check_metrics,
    desired_replicas,
)
from runnerd.reconcile.matching import workflow_job_trigger
from runnerd.runtime import ApiError, EventRecorder, Informer, Key, NotFound, Obj, Result
from runnerd.web.metrics import Metrics

EVENT_INTERVAL = 5.0
"""At most one ``DesiredReplicasChanged`` Event per HRA this often (a burst changes it many times)."""


def _fmt_epoch(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


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
        self.recorder = recorder
        self.hras = hras
        self.resolver = resolver
        self.options = options
        self.controller_options = controller_options
        self.metrics = metrics
        self.poller = poller
        self.clock = clock
        self.monotonic = monotonic
        self.metric = MetricObserver(
            clients=clients or GitHubClients(None, GitHubAPI(github, directory)),
            hras=hras,
            informers=informers,
            options=options,
            controller_options=controller_options,
            observer=observer or RunObserver(github, CallWindow(monotonic), clock=monotonic),
            finished=finished,
            monotonic=monotonic,
        )
        self.status = StatusWriter(
            kube=kube, hras=hras, recorder=recorder, options=options, clock=lambda: self.clock()
        )
        self._last_event: dict[Key, float] = {}
        self._event_from: dict[Key, int | None] = {}
        self.scale_writes = 0
        self.journal: ReservationJournal | None = None
        """Set (the default; not with ``--no-reservation-journal``): unfolded journal entries count with
        the HRA's list."""

    @property
    def observer(self) -> RunObserver:
        """The observation of the controller's own credentials, shared with the safety-net poll."""
        return self.metric.observer

    @observer.setter
    def observer(self, observer: RunObserver) -> None:
        self.metric.observer = observer

    @property
    def finished(self) -> Container[int]:
        """Jobs the webhooks said finished (the reservation writer's memory)."""
        return self.metric.finished

    @finished.setter
    def finished(self, finished: Container[int]) -> None:
        self.metric.finished = finished

    @property
    def github_observations(self) -> int:
        return self.metric.github_observations

    @property
    def sync_period(self) -> float:
        return self.options.sync_period or self.controller_options.sync_period

    @property
    def default_labels(self) -> tuple[str, ...]:
        return matching_labels(self.controller_options)

    def offer(self, key: Key, obj: Obj) -> None:
        """A version of the HRA this process just wrote (fresher than the cache, for a moment)."""
        self.status.offer(key, obj)

    async def close(self) -> None:
        """Finish (or drop, when cancelled) the status writes in flight."""
        await self.status.close()

    # --- reconcile -------------------------------------------------------------------------------

    async def reconcile(self, key: Key) -> Result | None:
        obj = self.status.current(key)
        if obj is None:
            self.metrics.forget_hra((key.name, key.namespace))
            for memo in (self._last_event, self._event_from):
                memo.pop(key, None)
            return None
        hra = self.resolver.parse_hra(obj)
        if hra is None:
            await self._invalid_spec(obj)
            return None
        hra = self.status.in_flight(key, hra)
        if self.journal is not None:
            hra = self.journal.counted(key, obj, hra)
        if hra.metadata.deletion_timestamp is not None:
            return None
        sync = self.sync_period
        target = self.resolver.resolve(key.namespace, hra.spec.scale_target_ref)
        if isinstance(target, str):
            await self.recorder.warning(obj, "FailedGetScaleTarget", target)
            await self._fail(obj, SCALING_ACTIVE, "FailedGetScaleTarget", target, "target_missing")
            return Result(requeue_after=sync)

        now = self.clock()
        try:
            check_metrics(hra.spec.metrics)
            backed = workflow_job_trigger(hra.spec) is not None
            observed = await self.metric.observe(key, hra.spec.metrics, target, backed=backed)
            decision = self._decide(hra, target, observed, now)
        except AutoscaleError as exc:
            await self.recorder.warning(obj, "InvalidMetricSpec", str(exc))
            await self._fail(
                obj,
                SCALING_ACTIVE,
                "InvalidMetricSpec",
                str(exc),
                "invalid",
                uses_github=bool(hra.spec.metrics),
            )
            return Result(requeue_after=sync)

        scaled = await self._scale(target, decision)
        if scaled is not None:  # the target vanished or refused the patch
            await self._fail(obj, ABLE_TO_SCALE, "FailedUpdateScale", scaled, "target_missing")
            return Result(requeue_after=sync)

        self._report(key, obj, hra, target, decision, observed)
        wake = sync
        if decision.requeue_after is not None:
            wake = min(wake, max(decision.requeue_after.total_seconds(), 0.0) + 0.05)
        return Result(requeue_after=wake)

    async def _invalid_spec(self, obj: Obj) -> None:
        try:
            HorizontalRunnerAutoscaler.from_dict(obj)
        except ValueError as exc:
            await self.recorder.warning(obj, "InvalidSpec", str(exc))
            await self.status.write(
                obj, {}, [(SCALING_ACTIVE, False, "InvalidSpec", str(exc))], uses_github=False
            )
        self.metrics.reconciles.labels("invalid").inc()

    async def _fail(
        self, obj: Obj, type_: str, reason: str, message: str, outcome: str, *, uses_github: bool = False
    ) -> None:
        """Write one failed condition now, and count the reconcile as ``outcome``."""
        await self.status.write(obj, {}, [(type_, False, reason, message)], uses_github=uses_github)
        self.metrics.reconciles.labels(outcome).inc()

    def _report(
        self,
        key: Key,
        obj: Obj,
        hra: HorizontalRunnerAutoscaler,
        target: ScaleTarget,
        decision: ScaleDecision,
        observed: Observed,
    ) -> None:
        """Hand the status (and Event) to the background writer, so that the next reconcile of this
        HRA (the next webhook of a burst) does not wait for them, and update the metrics."""
        before = hra.status.desired_replicas
        event: tuple[str, str] | None = None
        if before != decision.desired_replicas:
            event = self._desired_event(key, before, decision)
        self.status.schedule(
            key,
            PendingStatus(
                obj,
                self._status_fields(hra, decision),
                self._conditions(hra, decision, observed),
                bool(hra.spec.metrics) or (self.options.poll and workflow_job_trigger(hra.spec) is not None),
                event,
                decision.desired_replicas,
                decision.last_successful_scale_out_time,
            ),
        )
        self._record_metrics((key.name, key.namespace), target, decision, observed)
        self.metrics.reconciles.labels("scaled" if before != decision.desired_replicas else "unchanged").inc()

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

    # --- decide ----------------------------------------------------------------------------------

    def _decide(
        self, hra: HorizontalRunnerAutoscaler, target: ScaleTarget, observed: Observed, now: dt.datetime
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

    async def _scale(self, target: ScaleTarget, decision: ScaleDecision) -> str | None:
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
        self, hra: HorizontalRunnerAutoscaler, decision: ScaleDecision, observed: Observed
    ) -> list[Condition]:
        out: list[Condition] = []
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

    def _budget_condition(self, observed: Observed) -> Condition:
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

    def _record_metrics(
        self, hra: tuple[str, str], target: ScaleTarget, decision: ScaleDecision, observed: Observed
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
