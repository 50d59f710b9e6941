"""Workflow runs and their jobs: creation, approval, re-runs, and the job state machine.

A job goes ``waiting`` (environment approval) → ``queued`` → ``in_progress`` → ``completed``; a
queued job is handed to :class:`~.routing.Router` at once.  Every transition bumps the job's
version and is reported as a :class:`~.events.JobEvent`; a run's status and conclusion are derived
from its latest attempt's jobs (:meth:`Runs.refresh_run`) after each change.

Runs know nothing of runners beyond the ids the router wrote into a job: what a runner does with a
job is :mod:`.dispatch`.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterator
from typing import Any

from ..clock import Clock
from ..entities import Job, Repo, Run
from ..errors import Conflict, NotFound, ValidationFailed
from .events import Events
from .registry import Registry
from .routing import Router
from .specs import JobSpec


class Runs:
    """The runs and jobs tables, jobs waiting for approval, and jobs running."""

    def __init__(
        self, clock: Clock, registry: Registry, events: Events, router: Router, *, jobs: dict[int, Job]
    ) -> None:
        self.clock = clock
        self.registry = registry
        self.events = events
        self.router = router
        self._run_ids = itertools.count(7_000_000_001)
        self._job_ids = itertools.count(30_000_000_001)
        self._workflow_ids = itertools.count(160_001)
        self.runs: dict[int, Run] = {}
        self.jobs = jobs
        self._runs_by_repo: dict[int, dict[int, None]] = {}
        self._run_numbers: dict[int, int] = {}
        self._workflows: dict[tuple[int, str], int] = {}
        self._waiting: dict[int, float | None] = {}  # job id -> auto-approve time
        self._running: set[int] = set()

    # ----------------------------------------------------------------------------------------
    # runs

    def enqueue_run(
        self,
        repo: Repo,
        jobs: list[JobSpec],
        *,
        workflow_name: str = "CI",
        head_branch: str | None = None,
        event: str = "push",
        actor: str = "octocat",
    ) -> Run:
        if not jobs:
            raise ValidationFailed("a run needs at least one job")
        now = self.clock.now()
        number = self._run_numbers.get(repo.id, 0) + 1
        self._run_numbers[repo.id] = number
        wf_key = (repo.id, workflow_name)
        if wf_key not in self._workflows:
            self._workflows[wf_key] = next(self._workflow_ids)
        run_id = next(self._run_ids)
        sha = hashlib.sha1(f"{repo.full_name}:{run_id}".encode()).hexdigest()
        slug = "".join(c if c.isalnum() else "-" for c in workflow_name.lower()).strip("-") or "ci"
        run = Run(
            run_id,
            repo.id,
            number,
            self._workflows[wf_key],
            workflow_name,
            f".github/workflows/{slug}.yml",
            head_branch or repo.default_branch,
            sha,
            event,
            actor,
            now,
            now,
        )
        self.runs[run.id] = run
        self._runs_by_repo.setdefault(repo.id, {})[run.id] = None
        for spec in jobs:
            self._create_job(run, spec, attempt=1)
        self.refresh_run(run.id)
        return run

    def rerun(self, run_id: int) -> Run:
        run = self.runs.get(run_id)
        if run is None:
            raise NotFound()
        if run.status != "completed":
            raise Conflict("This workflow run is not completed")
        latest = [self.jobs[j] for j in run.job_ids if self.jobs[j].run_attempt == run.run_attempt]
        run.run_attempt += 1
        run.run_started_at = None
        for job in latest:
            spec = JobSpec(tuple(job.labels), job.name, job.duration, job.planned_conclusion, job.group)
            self._create_job(run, spec, attempt=run.run_attempt)
        self.refresh_run(run.id)
        return run

    def run(self, run_id: int) -> Run:
        run = self.runs.get(run_id)
        if run is None:
            raise NotFound()
        return run

    def runs_of(self, repo: Repo, status: str | None = None) -> list[Run]:
        """Newest first, as GitHub lists them."""
        runs = [self.runs[i] for i in reversed(self._runs_by_repo.get(repo.id, {}))]
        if status is None:
            return runs
        return [r for r in runs if r.status == status or r.conclusion == status]

    def jobs_of(self, run: Run, latest: bool = True) -> list[Job]:
        jobs = [self.jobs[j] for j in run.job_ids]
        if latest:
            jobs = [j for j in jobs if j.run_attempt == run.run_attempt]
        return jobs

    def refresh_run(self, run_id: int) -> None:
        """Derive the run's status and conclusion from its latest attempt's jobs."""
        run = self.runs[run_id]
        jobs = [self.jobs[j] for j in run.job_ids if self.jobs[j].run_attempt == run.run_attempt]
        statuses = {j.status for j in jobs}
        conclusion: str | None = None
        if statuses == {"completed"}:
            status = "completed"
            conclusions = {j.conclusion for j in jobs}
            for c in ("failure", "cancelled", "success", "skipped"):
                if c in conclusions:
                    conclusion = c
                    break
        elif "in_progress" in statuses or ("completed" in statuses and "queued" in statuses):
            status = "in_progress"
        elif "waiting" in statuses and "queued" not in statuses:
            status = "waiting"
        else:
            status = "queued"
        if status == "in_progress" and run.run_started_at is None:
            run.run_started_at = self.clock.now()
        if (status, conclusion) != (run.status, run.conclusion):
            run.status, run.conclusion = status, conclusion
            run.updated_at = self.clock.now()
        run.version += 1

    # ----------------------------------------------------------------------------------------
    # jobs

    def _create_job(self, run: Run, spec: JobSpec, *, attempt: int) -> Job:
        job = Job(
            next(self._job_ids),
            run.id,
            run.repo_id,
            attempt,
            spec.name,
            list(spec.labels),
            spec.group,
            spec.duration,
            spec.conclusion,
            run.workflow_name,
            run.head_branch,
            run.head_sha,
            self.clock.now(),
        )
        self.jobs[job.id] = job
        run.job_ids.append(job.id)
        if spec.wait is not None:
            job.status = "waiting"
            self._waiting[job.id] = None if spec.wait <= 0 else self.clock.now() + spec.wait
            self.events.job_event("waiting", job)
        else:
            self._queue_job(job)
        return job

    def _queue_job(self, job: Job) -> None:
        job.status = "queued"
        job.queued_at = self.clock.now()
        self.events.job_event("queued", job)
        self.router.route(job)

    def approve(self, job_id: int) -> Job:
        job = self.jobs.get(job_id)
        if job is None:
            raise NotFound()
        if job.status != "waiting":
            raise ValidationFailed(f"job {job_id} is {job.status}, not waiting")
        self._waiting.pop(job.id, None)
        self._queue_job(job)
        self.refresh_run(job.run_id)
        return job

    def approve_due(self, now: float) -> None:
        """Approve waiting jobs whose automatic approval time has come."""
        for job_id, when in list(self._waiting.items()):
            if when is not None and when <= now:
                self.approve(job_id)

    def next_approval(self) -> float | None:
        approve = [t for t in self._waiting.values() if t is not None]
        return min(approve) if approve else None

    def start(self, job: Job) -> None:
        """An assigned, queued job starts on its runner."""
        self.router.release(job.id)
        job.status = "in_progress"
        job.started_at = self.clock.now()
        self._running.add(job.id)
        self.events.job_event("in_progress", job)
        self.refresh_run(job.run_id)

    def finish(self, job: Job, conclusion: str) -> None:
        now = self.clock.now()
        self.router.release(job.id)
        self._running.discard(job.id)
        if job.started_at is None:
            job.started_at = now
        job.status = "completed"
        job.conclusion = conclusion
        job.completed_at = now
        self.events.job_event("completed", job)
        self.refresh_run(job.run_id)

    def cancel(self, job: Job) -> None:
        """Cancel an unfinished job (an unstarted one forgets its runner)."""
        if job.status != "in_progress":
            job.runner_id = job.runner_name = job.runner_group_name = None
            job.runner_group_id = None
        self._waiting.pop(job.id, None)
        self.finish(job, "cancelled")

    def abandon(self, job: Job) -> None:
        """The job's runner is gone: a started job fails, an unstarted one is re-queued."""
        if job.status == "in_progress":
            self.finish(job, "failure")
        elif job.status == "queued":
            self.router.requeue(job)

    def running_ids(self) -> list[int]:
        return list(self._running)

    # ----------------------------------------------------------------------------------------
    # reporting

    def job_times(self, job: Job) -> dict[str, Any]:
        repo = self.registry.repos_by_id[job.repo_id]
        return {
            "id": job.id,
            "run_id": job.run_id,
            "run_attempt": job.run_attempt,
            "repository": repo.full_name,
            "name": job.name,
            "labels": list(job.labels),
            "status": job.status,
            "conclusion": job.conclusion,
            "runner_id": job.runner_id,
            "runner_name": job.runner_name,
            "assignments": job.assignments,
            "created_at": job.created_at,
            "queued_at": job.queued_at,
            "assigned_at": job.assigned_at,
            "started_at": job.started_at,
            "completed_at": job.completed_at,
        }

    def iter_jobs(self, repo: str | None = None, status: str | None = None) -> Iterator[Job]:
        repo_id = self.registry.repo_by_name(repo).id if repo else None
        for job in self.jobs.values():
            if repo_id is not None and job.repo_id != repo_id:
                continue
            if status is not None and job.status != status:
                continue
            yield job
