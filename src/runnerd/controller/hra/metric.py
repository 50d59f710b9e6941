"""The HRA's pull-metric observation: what the configured metrics need, and nothing else.

* ``TotalNumberOfQueuedAndInProgressWorkflowRuns``: workflow runs and their jobs from GitHub, read
  from the observations shared with the safety-net poll (:mod:`runnerd.controller.runwatch`: keyed
  by repository, at most a sync period old, never refreshed because a reservation was written;
  for an HRA with a ``workflowJob`` trigger as old as the poll's adaptive interval, and without the
  runs the deliveries announced, whose jobs its reservations hold);
  none at all when ``PercentageRunnersBusy`` comes first and suggests a scale-up. A job whose
  ``completed`` delivery came since counts as completed, whatever the observation says.
* ``PercentageRunnersBusy``: the target's runners (informer caches) and GitHub's busy flags (the
  shared runner directory, one listing per scope per sync period).
* Nothing for webhook-only HRAs.

Its own budget: the controller's credentials share one :class:`RunObserver` (and its sliding-hour
call window, ``observe_max_calls_per_hour``) with the safety-net poll and the runner listings; each
``githubAPICredentialsFrom`` Secret gets its own observer and window. A GitHub failure is returned
(:attr:`Observed.failure`), never raised: the controller then decides without the metrics.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Container, Mapping, Sequence
from dataclasses import dataclass

from runnerd.api import MetricSpec, RunnerConfig
from runnerd.controller.clients import GitHubAPI, GitHubClients, credentials_secret
from runnerd.controller.common import INDEX_CONTROLLER, ControllerOptions, matching_labels
from runnerd.controller.hra.options import AutoscalingOptions
from runnerd.controller.runwatch import RunObserver
from runnerd.controller.targets import ScaleTarget
from runnerd.github import GitHubError, Scope
from runnerd.github.budget import CallWindow
from runnerd.reconcile.hra import (
    PERCENTAGE_BUSY,
    TOTAL_JOBS,
    AutoscaleError,
    JobObservation,
    Observations,
    RunnerObservation,
    metric_repositories,
    suggest_by_busy_runners,
)
from runnerd.reconcile.lifecycle import GitHubState
from runnerd.reconcile.matching import job_fits_runner
from runnerd.reconcile.runnerset import LABEL_RUNNERSET_NAME
from runnerd.runtime import Informer, Key, Obj


@dataclass
class Observed:
    """What one reconcile observed for the metrics."""

    obs: Observations
    failure: GitHubError | None = None
    """GitHub could not be asked: the metrics are skipped."""
    jobs_counts: dict[str, int] | None = None
    """Fitting jobs by status (completed, in_progress, queued, unknown), for the metrics layer."""


class MetricObserver:
    """Observes what an HRA's metrics need (see the module docstring)."""

    def __init__(
        self,
        *,
        clients: GitHubClients,
        hras: Informer,
        informers: Mapping[str, Informer],
        options: AutoscalingOptions,
        controller_options: ControllerOptions,
        observer: RunObserver,
        finished: Container[int] = (),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.clients = clients
        self.hras = hras
        self.informers = informers
        self.options = options
        self.controller_options = controller_options
        self.observer = observer
        """The controller's own credentials' observation, shared with the safety-net poll."""
        self.finished = finished
        """Jobs the webhooks said finished (the reservation writer's memory)."""
        self.monotonic = monotonic
        self._observers: dict[str, RunObserver] = {}  # per githubAPICredentialsFrom Secret
        self.github_observations = 0

    @property
    def sync_period(self) -> float:
        return self.options.sync_period or self.controller_options.sync_period

    @property
    def default_labels(self) -> tuple[str, ...]:
        return matching_labels(self.controller_options)

    async def observe(
        self, key: Key, metrics: Sequence[MetricSpec], target: ScaleTarget, *, backed: bool = False
    ) -> Observed:
        """What ``metrics`` need for the HRA ``key`` scaling ``target``; ``backed``: the HRA has a
        ``workflowJob`` trigger, so its jobs come as reservations and the metric is a backstop, read
        from observations as old as the safety-net poll's interval (never older than it would let
        a lost delivery wait)."""
        obs = Observations(target=target.config, target_replicas=target.replicas)
        observed = Observed(obs)
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
                    jobs, counts = await self._jobs(metrics[index], target.config, api, backed)
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
        self, metric: MetricSpec, config: RunnerConfig, api: GitHubAPI, backed: bool = False
    ) -> tuple[dict[str, list[JobObservation]], dict[str, int]]:
        """The metric's jobs, from the shared observations (see :mod:`runnerd.controller.runwatch`):
        at most a sync period old, whatever caused this reconcile (a reservation write included)."""
        repos = metric_repositories(metric, config)
        result: dict[str, list[JobObservation]] = {}
        counts = {"completed": 0, "in_progress": 0, "queued": 0, "unknown": 0}
        observer = self._observer(api)
        sync = max(self.sync_period, observer.backstop_age) if backed else self.sync_period
        for repo in repos:
            seen = await observer.observe(
                repo,
                max_age=sync,
                jobs_max_age=sync,
                ceiling=self.options.observe_max_calls_per_hour,
                defer=not self.options.count_jobs_twice,  # ARC's sum counts the announced jobs too
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
