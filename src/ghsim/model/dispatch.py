"""Dispatch: the runner side of the job protocol, and cancelling a run under its runners.

A runner polls (which marks it online and idle, and may get it a job), starts its assigned job,
heartbeats while it works, and completes it; an ephemeral runner is removed after its one job.
A runner that disconnects, or whose job is cancelled, learns it at its next poll or heartbeat
(:class:`~.events.RunnerWake` tells the HTTP layer to answer a waiting long-poll).
"""

from __future__ import annotations

from ..clock import Clock
from ..entities import CONCLUSIONS, Job, Run, Runner
from ..errors import Conflict, NotFound, ValidationFailed
from .events import Events, RunnerWake
from .routing import Router
from .runners import PollResult, RunnerPool
from .runs import Runs


class Dispatch:
    """Stateless: works on the runner pool, the runs and the router."""

    def __init__(self, clock: Clock, events: Events, router: Router, runs: Runs, pool: RunnerPool) -> None:
        self.clock = clock
        self.events = events
        self.router = router
        self.runs = runs
        self.pool = pool

    def poll(self, runner_id: int) -> PollResult:
        """The runner asks for work.  Marks it online; returns its assigned job, if any."""
        runner = self.pool.runners.get(runner_id)
        if runner is None:
            return "removed"
        runner.last_seen = self.clock.now()
        if runner.job_id is not None:
            return self.runs.jobs[runner.job_id]
        if runner.ephemeral and runner.jobs_done:
            return None
        if not self.router.is_idle(runner):
            self.router.make_idle(runner)
            self.router.match_runner(runner)
        return self.runs.jobs[runner.job_id] if runner.job_id is not None else None

    def start_job(self, runner_id: int, job_id: int) -> Job:
        runner, job = self._runner_job(runner_id, job_id)
        runner.last_seen = self.clock.now()
        if job.status == "in_progress":
            return job
        if job.status != "queued":
            raise Conflict(f"job {job_id} is {job.status}")
        self.runs.start(job)
        return job

    def heartbeat(self, runner_id: int, job_id: int | None = None) -> bool:
        """The runner is alive (and working on ``job_id``).  False if that job was cancelled."""
        runner = self.pool.runners.get(runner_id)
        if runner is None:
            return False
        runner.last_seen = self.clock.now()
        if job_id is None:
            return True
        return runner.job_id == job_id

    def complete_job(self, runner_id: int, job_id: int, conclusion: str | None = None) -> bool:
        """The runner finished ``job_id``.  Returns True when the runner is removed (ephemeral)."""
        runner, job = self._runner_job(runner_id, job_id)
        runner.last_seen = self.clock.now()
        if job.status == "queued":
            self.start_job(runner_id, job_id)
        if conclusion is not None and conclusion not in CONCLUSIONS:
            raise ValidationFailed(f"conclusion must be one of {', '.join(CONCLUSIONS)}")
        self.runs.finish(job, conclusion or job.planned_conclusion)
        runner.job_id = None
        runner.jobs_done += 1
        if runner.ephemeral:
            self.pool.remove_runner(runner, reason="ephemeral runner finished its job")
            return True
        self.router.make_idle(runner)
        self.router.match_runner(runner)
        return False

    def disconnect(self, runner_id: int) -> None:
        """The runner process went away without finishing (pod deleted, crash)."""
        runner = self.pool.runners.get(runner_id)
        if runner is None:
            return
        self.router.unidle(runner)
        runner.last_seen = None
        if runner.job_id is not None:
            self.pool.lose_job(runner, "runner disconnected")

    def cancel_run(self, run_id: int) -> Run:
        """Cancel every unfinished job of the run; their runners learn it at their next poll or
        heartbeat (an ephemeral runner whose job had started is removed)."""
        run = self.runs.run(run_id)
        for job_id in run.job_ids:
            job = self.runs.jobs[job_id]
            if job.status == "completed":
                continue
            runner = self.pool.runners.get(job.runner_id) if job.runner_id is not None else None
            started = job.status == "in_progress"
            self.runs.cancel(job)
            if runner is not None and runner.job_id == job.id:
                runner.job_id = None
                if started:
                    runner.jobs_done += 1
                    if runner.ephemeral:
                        self.pool.remove_runner(runner, reason="its job was cancelled")
                        continue
                self.events.emit(RunnerWake(runner.id))
        return run

    def _runner_job(self, runner_id: int, job_id: int) -> tuple[Runner, Job]:
        runner = self.pool.runners.get(runner_id)
        if runner is None:
            raise NotFound("runner removed")
        job = self.runs.jobs.get(job_id)
        if job is None or runner.job_id != job_id:
            raise Conflict(f"job {job_id} is not assigned to runner {runner.name}")
        return runner, job
