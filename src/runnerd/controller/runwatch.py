"""What GitHub says about a repository's active workflow runs and their jobs, observed once and shared.

The ``TotalNumberOfQueuedAndInProgressWorkflowRuns`` metric of every HRA and the safety-net poll ask
the same two questions of the same repositories (which runs are queued or in progress, and which jobs
do they hold), so they share one :class:`RunObserver`. Guarantees:

* An observation is keyed by what it depends on: the repository (casefolded). Which HRA asks, its
  ``generation``, its labels or its reservations do not matter (labels are applied to the observed
  jobs afterwards, purely), so a reservation write never causes a GitHub call, and an unchanged
  metric spec reuses the observation until it is older than the caller's ``max_age`` (the sync
  period for the metric, the poll interval for the poll).
* Concurrent readers of a stale observation share a single refresh (single flight).
* One refresh costs ``2`` conditional run listings (``status=queued`` and ``status=in_progress``,
  answered 304 while nothing changed) plus one jobs listing per run that is new, whose signature
  (status, attempt, ``updated_at``) changed, or, for a reader that asks so (the metric), a run of
  several jobs whose jobs were listed longer than its ``jobs_max_age`` ago (a run's ``updated_at``
  does not always move when one of its jobs changes; a run of one job changes status with it).
* Every call is spent in one :class:`~runnerd.github.budget.CallWindow`, the budget that the poll and
  the runner listings spend from too; a reader that finds the window over its ceiling gets the last
  observation (possibly stale) instead of a refresh, and :attr:`RunObserver.limited` says so.
* With a :class:`~runnerd.controller.deliveries.DeliveryLedger` attached (the safety-net poll attaches
  the webhook intake's), a run that applied deliveries announced is not listed (its snapshot says
  ``listed=False`` and holds no jobs) until :func:`runnerd.reconcile.pollpace.list_jobs` says so; every
  reader then knows such a run's announced jobs from their reservations, not from the observation.
* :attr:`RunObserver.backstop_age` is how old an observation may be for a reader backed by webhooks
  (the metric of an HRA with a ``workflowJob`` trigger): the poll's adaptive interval.
* Memory is bounded: at most ``max_repositories`` observations (least recently used dropped).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field

from runnerd.controller.deliveries import DeliveryLedger
from runnerd.github import GitHubClient, Scope, WorkflowJob, WorkflowRun
from runnerd.github.budget import CallWindow, pages
from runnerd.reconcile.pollpace import LONGEST, list_jobs

MAX_REPOSITORIES = 1024


@dataclass(frozen=True)
class RunSnapshot:
    run: WorkflowRun
    signature: tuple[object, ...]
    jobs: tuple[WorkflowJob, ...]
    jobs_at: float  # monotonic, when the jobs were listed
    first_seen: float = 0.0  # monotonic, when the run was first observed active
    listed: bool = True  # False: deferred (the deliveries announced it); ``jobs`` is empty


@dataclass(frozen=True)
class RepoObservation:
    repository: str
    fetched_at: float  # monotonic
    fetched_wall: float  # seconds since the epoch (to compare with reservation times)
    runs: Mapping[int, RunSnapshot] = field(default_factory=dict)
    calls: int = 0  # calls the refresh that produced it spent (0: reused)

    def jobs(self) -> list[WorkflowJob]:
        return [j for s in self.runs.values() for j in s.jobs]

    def job_ids(self) -> set[int]:
        return {j.id for s in self.runs.values() for j in s.jobs}

    def unlisted(self) -> set[int]:
        """Active runs whose jobs were not listed (the deliveries announced them)."""
        return {run_id for run_id, s in self.runs.items() if not s.listed}


def _stale(snap: RunSnapshot, now: float, jobs_max_age: float) -> bool:
    """A run of several jobs whose jobs were listed too long ago (a run of one job changes its own
    status with its job's, so its signature says when to list again)."""
    return len(snap.jobs) > 1 and now - snap.jobs_at > jobs_max_age


def signature(run: WorkflowRun) -> tuple[object, ...]:
    return (run.status, run.run_attempt, run.raw.get("updated_at"))


class RunObserver:
    """Shared, budgeted observations of repositories' active runs (see the module docstring)."""

    def __init__(
        self,
        github: GitHubClient,
        window: CallWindow,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        concurrency: int = 8,
        max_repositories: int = MAX_REPOSITORIES,
    ) -> None:
        self.github = github
        self.window = window
        self._clock = clock
        self._wall = wall
        self._gate = asyncio.Semaphore(concurrency)
        self._max = max_repositories
        self._seen: OrderedDict[str, RepoObservation] = OrderedDict()
        self._inflight: dict[str, asyncio.Future[RepoObservation]] = {}
        self.ledger: DeliveryLedger | None = None
        """What the deliveries announced (attached by the safety-net poll); ``None``: list every run."""
        self.defer_bound = LONGEST
        """An announced run's jobs are listed once it has been active this long unlisted."""
        self.live: Callable[[str], Collection[int]] = lambda repository: ()
        """The jobs of a repository that live reservations hold (set by the safety-net poll)."""
        self.backstop_age = 0.0
        """How old an observation a webhook-backed reader accepts (the poll's current interval)."""
        self.deferred = 0
        """Job listings not made because the deliveries announced the run."""
        self.refreshes = 0
        self.limited = 0
        """Reads answered from a stale observation because the window was over its ceiling."""

    def cached(self, repository: str) -> RepoObservation | None:
        return self._seen.get(repository.casefold())

    def _fresh(self, seen: RepoObservation, max_age: float, jobs_max_age: float | None, defer: bool) -> bool:
        now = self._clock()
        if now - seen.fetched_at > max_age or (not defer and seen.unlisted()):
            return False
        return jobs_max_age is None or not any(_stale(s, now, jobs_max_age) for s in seen.runs.values())

    async def observe(
        self,
        repository: str,
        *,
        max_age: float,
        jobs_max_age: float | None = None,
        ceiling: int | None = None,
        defer: bool = True,
    ) -> RepoObservation:
        """An observation whose run listings are at most ``max_age`` seconds old and whose jobs are at
        most ``jobs_max_age`` old (``None``: listed again only when their run changed). With
        ``ceiling`` (calls per hour), the last observation instead of a refresh while the shared window
        is over it (a first one is always made). ``defer=False``: every run's jobs listed, also the
        runs the deliveries announced (a reader that counts jobs twice, as ARC does, needs them all)."""
        key = repository.casefold()
        seen = self._seen.get(key)
        if seen is not None and self._fresh(seen, max_age, jobs_max_age, defer):
            self._seen.move_to_end(key)
            return RepoObservation(seen.repository, seen.fetched_at, seen.fetched_wall, seen.runs, 0)
        if seen is not None and ceiling is not None:
            wanted = 2 + sum(1 for _ in seen.runs)
            if self.window.free_at(wanted, ceiling) > self._clock():
                self.limited += 1
                return RepoObservation(seen.repository, seen.fetched_at, seen.fetched_wall, seen.runs, 0)
        inflight = self._inflight.get(key)
        if inflight is not None:
            shared = await asyncio.shield(inflight)
            return RepoObservation(shared.repository, shared.fetched_at, shared.fetched_wall, shared.runs, 0)
        future: asyncio.Future[RepoObservation] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            observation = await self._refresh(repository, seen, jobs_max_age, defer)
            self._seen[key] = observation
            self._seen.move_to_end(key)
            while len(self._seen) > self._max:
                self._seen.popitem(last=False)
            future.set_result(observation)
            return observation
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: waiters re-raise it themselves
            raise
        finally:
            self._inflight.pop(key, None)

    async def _refresh(
        self, repository: str, seen: RepoObservation | None, jobs_max_age: float | None, defer: bool
    ) -> RepoObservation:
        scope = Scope.repository(repository)
        started, wall = self._clock(), self._wall()
        calls = 0
        listed: dict[int, WorkflowRun] = {}
        try:
            for status in ("queued", "in_progress"):
                page = await self.github.list_workflow_runs(scope, status=status)
                calls += pages(len(page))
                for run in page:
                    listed.setdefault(run.id, run)
            old = seen.runs if seen is not None else {}
            live = self.live(repository) if self.ledger is not None and defer else ()
            fetch = [
                run
                for run in listed.values()
                if self._due(repository, run, old.get(run.id), started, jobs_max_age, defer, live)
            ]

            async def jobs_of(run: WorkflowRun) -> tuple[WorkflowRun, list[WorkflowJob]]:
                async with self._gate:
                    return run, await self.github.list_jobs_for_run(scope, run.id)

            fetched = await asyncio.gather(*(jobs_of(run) for run in fetch))
        finally:
            # a failed refresh still spent what it sent (at least the call that failed)
            self.window.spend(max(calls, 1))
        runs: dict[int, RunSnapshot] = {}
        extra = 0
        for run, jobs in fetched:
            extra += pages(len(jobs))
            first = old[run.id].first_seen if run.id in old else started
            runs[run.id] = RunSnapshot(run, signature(run), tuple(jobs), started, first)
        self.window.spend(extra)
        for run_id, run in listed.items():
            if run_id in runs:
                continue
            known = old.get(run_id)
            if known is None or not known.listed:  # deferred: the deliveries announced it
                first = known.first_seen if known is not None else started
                runs[run_id] = RunSnapshot(run, signature(run), (), started, first, listed=False)
            else:
                runs[run_id] = RunSnapshot(run, known.signature, known.jobs, known.jobs_at, known.first_seen)
        self.refreshes += 1
        return RepoObservation(repository, started, wall, runs, calls + extra)

    def _due(
        self,
        repository: str,
        run: WorkflowRun,
        known: RunSnapshot | None,
        now: float,
        jobs_max_age: float | None,
        defer: bool,
        live: Collection[int],
    ) -> bool:
        """Whether to list ``run``'s jobs in this refresh."""
        if known is not None and known.listed:
            return known.signature != signature(run) or (
                jobs_max_age is not None and _stale(known, now, jobs_max_age)
            )
        if self.ledger is None or not defer:
            return True
        unlisted_for = now - known.first_seen if known is not None else 0.0
        facts = self.ledger.facts(repository, run.id, unlisted_for, live)
        due, _ = list_jobs(facts, self.defer_bound)
        if not due:
            self.deferred += 1
        return due
