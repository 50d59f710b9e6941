"""Routing: which idle runner takes which queued job.

The rules (GitHub's, see the package docstring) in data structures:

* queued jobs are bucketed by their *job key* (repository, labels, required group), each bucket
  ordered by job id (= age); idle runners by their *runner key* (scope level and name, group,
  labels), each bucket ordered by when the runner became idle;
* whether a job key may go to a runner key is computed once and cached; anything that changes
  scope or group policy calls :meth:`Router.invalidate`;
* a job that arrives takes the best idle runner (lowest scope level, then longest idle); a runner
  that becomes idle takes the oldest queued job it may take;
* an assignment is remembered until the runner starts the job (:meth:`Router.release`); one left
  unstarted past ``assign_timeout_s`` is handed back (:meth:`Router.overdue`, from the tick).

The router reads the job and runner tables; it changes only the assignment fields of a job
(``runner_*``, ``assigned_at``, ``assignments``) and ``runner.job_id``.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable

from ..clock import Clock
from ..entities import Job, Runner
from .events import Events, RunnerWake
from .groups import RunnerGroups
from .registry import Registry

JobKey = tuple[int, frozenset[str], str | None]
RunnerKey = tuple[int, str, int, frozenset[str]]


def job_key(job: Job) -> JobKey:
    return (job.repo_id, job.labels_key(), job.group.lower() if job.group else None)


def runner_key(runner: Runner) -> RunnerKey:
    return (
        runner.scope.level,
        runner.scope.name.lower(),
        runner.group.uid if runner.group is not None else 0,
        runner.labels_key(),
    )


class Router:
    """The queue of jobs without a runner, the idle runners, and the assignments between them."""

    def __init__(
        self,
        clock: Clock,
        registry: Registry,
        groups: RunnerGroups,
        events: Events,
        *,
        jobs: dict[int, Job],
        runners: dict[int, Runner],
    ) -> None:
        self.clock = clock
        self.registry = registry
        self.groups = groups
        self.events = events
        self.jobs = jobs
        self.runners = runners
        self._queue: dict[JobKey, deque[int]] = {}
        #: idle runners by signature; runner id -> when it became idle (a sequence number)
        self._idle: dict[RunnerKey, dict[int, int]] = {}
        self._idle_seq = itertools.count()
        self._idle_key: dict[int, RunnerKey] = {}
        self._eligible: dict[tuple[JobKey, RunnerKey], bool] = {}
        self._assigned: dict[int, float] = {}  # job id -> assigned at (not yet started)

    # ----------------------------------------------------------------------------------------
    # eligibility

    def invalidate(self) -> None:
        """Scope or group policy changed: forget every cached eligibility."""
        self._eligible.clear()

    def eligible(self, job: Job, runner: Runner) -> bool:
        """Could ``runner`` take ``job`` (ignoring whether it is online and idle)?"""
        return self._eligible_keys(job_key(job), runner_key(runner), runner)

    def _eligible_keys(self, jk: JobKey, rk: RunnerKey, runner: Runner) -> bool:
        cached = self._eligible.get((jk, rk))
        if cached is not None:
            return cached
        repo_id, job_labels, group_name = jk
        repo = self.registry.repos_by_id[repo_id]
        ok = job_labels <= rk[3]
        if ok and group_name is not None:
            ok = runner.group_name.lower() == group_name
        if ok:
            ok = self.groups.admits(runner.scope, runner.group, repo)
        self._eligible[(jk, rk)] = ok
        return ok

    # ----------------------------------------------------------------------------------------
    # idle runners

    def is_idle(self, runner: Runner) -> bool:
        return runner.id in self._idle_key

    def idle_count(self) -> int:
        return len(self._idle_key)

    def make_idle(self, runner: Runner) -> None:
        """The runner waits for work (if it is configured and has no job)."""
        if runner.id in self._idle_key or runner.job_id is not None or not runner.configured:
            return
        rk = runner_key(runner)
        self._idle.setdefault(rk, {})[runner.id] = next(self._idle_seq)
        self._idle_key[runner.id] = rk

    def unidle(self, runner: Runner) -> None:
        rk = self._idle_key.pop(runner.id, None)
        if rk is None:
            return
        bucket = self._idle[rk]
        bucket.pop(runner.id, None)
        if not bucket:
            del self._idle[rk]

    def unidle_offline(self, now: float, offline_after: float) -> None:
        """Idle runners not seen for ``offline_after`` seconds stop taking jobs."""
        for runner_id in list(self._idle_key):
            runner = self.runners[runner_id]
            if runner.last_seen is None or now - runner.last_seen >= offline_after:
                self.unidle(runner)

    # ----------------------------------------------------------------------------------------
    # matching

    def route(self, job: Job) -> None:
        """A job became queued: assign it to the best idle runner, or queue it."""
        key = job_key(job)
        runner = self._find_runner(key)
        if runner is not None:
            self._assign(job, runner)
            return
        self._queue.setdefault(key, deque()).append(job.id)

    def requeue(self, job: Job) -> None:
        """An assigned job lost its runner before starting: route it again, keeping its age."""
        self._assigned.pop(job.id, None)
        job.runner_id = job.runner_name = job.runner_group_name = None
        job.runner_group_id = None
        job.assigned_at = None
        job.version += 1
        key = job_key(job)
        runner = self._find_runner(key)
        if runner is not None:
            self._assign(job, runner)
            return
        # keep the queue ordered by age: a re-queued job goes back to its place
        dq = self._queue.setdefault(key, deque())
        if not dq or dq[-1] < job.id:
            dq.append(job.id)
        else:
            items = sorted([*dq, job.id])
            dq.clear()
            dq.extend(items)

    def _find_runner(self, jk: JobKey) -> Runner | None:
        best: tuple[int, int] | None = None
        best_runner: Runner | None = None
        for rk, bucket in self._idle.items():
            if best is not None and rk[0] > best[0]:
                continue
            # a bucket is ordered by idle time: its first runner has waited longest
            runner_id, since = next(iter(bucket.items()))
            rank = (rk[0], since)
            if best is not None and rank >= best:
                continue
            runner = self.runners[runner_id]
            if self._eligible_keys(jk, rk, runner):
                best, best_runner = rank, runner
        return best_runner

    def match_runner(self, runner: Runner) -> None:
        """``runner`` just became idle: give it the oldest queued job it may take."""
        rk = self._idle_key.get(runner.id)
        if rk is None:
            return
        best_id: int | None = None
        best_key: JobKey | None = None
        for jk, dq in list(self._queue.items()):
            while dq and self.jobs[dq[0]].status != "queued":
                dq.popleft()
            if not dq:
                del self._queue[jk]
                continue
            if (best_id is None or dq[0] < best_id) and self._eligible_keys(jk, rk, runner):
                best_id, best_key = dq[0], jk
        if best_id is None or best_key is None:
            return
        dq = self._queue[best_key]
        dq.popleft()
        if not dq:
            del self._queue[best_key]
        self._assign(self.jobs[best_id], runner)

    def rematch_all(self) -> None:
        """Policy changed: every idle runner looks at the queue again."""
        for runner_id in list(self._idle_key):
            runner = self.runners.get(runner_id)
            if runner is not None and runner.id in self._idle_key:
                self.match_runner(runner)

    def _assign(self, job: Job, runner: Runner) -> None:
        self.unidle(runner)
        now = self.clock.now()
        runner.job_id = job.id
        job.runner_id = runner.id
        job.runner_name = runner.name
        job.runner_group_id = runner.group_id
        job.runner_group_name = runner.group_name
        job.assigned_at = now
        job.assignments += 1
        job.version += 1
        self._assigned[job.id] = now
        self.events.emit(RunnerWake(runner.id))

    # ----------------------------------------------------------------------------------------
    # assignments and the queue over time

    def release(self, job_id: int) -> None:
        """The job started or finished: it is no longer waiting for its runner."""
        self._assigned.pop(job_id, None)

    def overdue(self, now: float, timeout: float) -> list[int]:
        """Jobs assigned at least ``timeout`` seconds ago and not started."""
        return [job_id for job_id, when in list(self._assigned.items()) if when + timeout <= now]

    def next_assign_deadline(self, timeout: float) -> float | None:
        return min(self._assigned.values()) + timeout if self._assigned else None

    def expire_queued(self, now: float, limit: float, cancel: Callable[[Job], None]) -> None:
        """Cancel queued jobs older than ``limit`` seconds (and drop stale queue entries)."""
        for jk, dq in list(self._queue.items()):
            while dq and (self.jobs[dq[0]].status != "queued" or now - self.jobs[dq[0]].created_at >= limit):
                job = self.jobs[dq.popleft()]
                if job.status == "queued":
                    cancel(job)
            if not dq:
                del self._queue[jk]

    def queued_count(self) -> int:
        return sum(1 for j in self.jobs.values() if j.status == "queued" and j.runner_id is None)
