"""Time: what the model does when its clock has moved on (:meth:`Timers.tick`).

In order: trace arrivals that are due become runs; waiting jobs whose approval time came are
approved; jobs assigned but not started within ``assign_timeout_s`` are re-queued (their runner is
treated as offline); then, at most every second (or a quarter of ``runner_offline_after_s``), the
sweep: idle runners not seen for ``runner_offline_after_s`` stop taking jobs, running jobs whose
runner is gone or silent for ``job_lease_s`` fail, queued jobs older than ``queue_timeout_s`` are
cancelled, and tokens expired more than a day ago are forgotten.  Tick hooks run last.

:meth:`Timers.next_deadline` tells a driver when the next tick has something to do.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import KW_ONLY, dataclass, field

from ..clock import Clock
from ..config import SimConfig
from ..entities import Job, Runner
from .credentials import Credentials
from .registry import Registry
from .routing import Router
from .runs import Runs
from .specs import JobSpec, TraceEntry


@dataclass(eq=False, repr=False)
class Timers:
    """The trace schedule, the timeouts and the periodic sweep."""

    clock: Clock
    config: SimConfig
    registry: Registry
    credentials: Credentials
    router: Router
    runs: Runs
    _: KW_ONLY
    runners: dict[int, Runner]
    _trace: list[tuple[float, int, TraceEntry]] = field(init=False, default_factory=list)
    _trace_seq: Iterator[int] = field(init=False, default_factory=itertools.count)
    _last_sweep: float = field(init=False, default=-1.0e18)
    #: called with the time at the end of every :meth:`tick`
    tick_hooks: list[Callable[[float], None]] = field(init=False, default_factory=list)

    def schedule_trace(self, entries: Iterable[TraceEntry], start: float | None = None) -> int:
        base = self.clock.now() if start is None else start
        n = 0
        for entry in entries:
            self.registry.repo_by_name(entry.repo)  # fail early on unknown repositories
            heapq.heappush(self._trace, (base + entry.offset, next(self._trace_seq), entry))
            n += 1
        return n

    def next_deadline(self) -> float | None:
        """The earliest time at which :meth:`tick` has something to do (``None``: nothing planned)."""
        candidates: list[float] = []
        if self._trace:
            candidates.append(self._trace[0][0])
        assign = self.router.next_assign_deadline(self.config.assign_timeout_s)
        if assign is not None:
            candidates.append(assign)
        approve = self.runs.next_approval()
        if approve is not None:
            candidates.append(approve)
        return min(candidates) if candidates else None

    def tick(self) -> None:
        """Do whatever is due: trace arrivals, timeouts, offline runners, expired tokens."""
        now = self.clock.now()
        self._arrivals(now)
        self.runs.approve_due(now)
        self._reassign_overdue(now)
        if now - self._last_sweep >= min(1.0, self.config.runner_offline_after_s / 4):
            self._sweep(now)
        for hook in self.tick_hooks:
            hook(now)

    def _arrivals(self, now: float) -> None:
        while self._trace and self._trace[0][0] <= now:
            _, _, entry = heapq.heappop(self._trace)
            repo = self.registry.repo_by_name(entry.repo)
            self.runs.enqueue_run(
                repo,
                [JobSpec(entry.labels, entry.name, entry.duration, entry.conclusion, entry.group)],
                workflow_name=entry.workflow,
            )

    def _reassign_overdue(self, now: float) -> None:
        for job_id in self.router.overdue(now, self.config.assign_timeout_s):
            job = self.runs.jobs[job_id]
            runner = self.runners.get(job.runner_id) if job.runner_id is not None else None
            if runner is not None:
                runner.job_id = None
                runner.last_seen = None  # it did not answer: treat it as offline
                self.router.unidle(runner)
            self.router.requeue(job)

    def _sweep(self, now: float) -> None:
        self._last_sweep = now
        self.router.unidle_offline(now, self.config.runner_offline_after_s)
        lease = self.config.job_lease_s
        for job_id in self.runs.running_ids():
            job = self.runs.jobs[job_id]
            worker = self.runners.get(job.runner_id) if job.runner_id is not None else None
            if worker is None:
                self.runs.finish(job, "failure")
            elif worker.last_seen is None or now - worker.last_seen >= lease:
                worker.job_id = None
                worker.last_seen = None
                self.runs.finish(job, "failure")
        self.router.expire_queued(now, self.config.queue_timeout_s, self._cancel_queued)
        self.credentials.forget_expired(now)

    def _cancel_queued(self, job: Job) -> None:
        self.runs.finish(job, "cancelled")
