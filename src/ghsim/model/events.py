"""What the model reports to its observers: job transitions and runner wake-ups.

:class:`Events` is the one place that calls the sink (the HTTP layer's) and then every observer
(e.g. the Actions service's scale sets), in that order, synchronously.  A :class:`JobEvent` carries an
immutable :class:`JobSnapshot`, so an observer never sees a job change under it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..entities import Job


@dataclass(frozen=True)
class JobEvent:
    """A ``workflow_job`` transition: ``action`` is waiting, queued, in_progress or completed."""

    action: str
    job: JobSnapshot


@dataclass(frozen=True)
class RunnerWake:
    """The runner has something new to learn: a job was assigned, or it was removed."""

    runner_id: int


Event = JobEvent | RunnerWake
EventSink = Callable[[Event], None]


@dataclass(frozen=True)
class JobSnapshot:
    """An immutable copy of a job at the moment of an event (webhook payloads are built from it)."""

    id: int
    run_id: int
    repo_id: int
    run_attempt: int
    name: str
    labels: tuple[str, ...]
    status: str
    conclusion: str | None
    created_at: float
    started_at: float | None
    completed_at: float | None
    runner_id: int | None
    runner_name: str | None
    runner_group_id: int | None
    runner_group_name: str | None
    workflow_name: str
    head_branch: str
    head_sha: str

    @classmethod
    def of(cls, job: Job, *, public_runner: bool = True) -> JobSnapshot:
        show = public_runner and job.status in ("in_progress", "completed")
        return cls(
            id=job.id,
            run_id=job.run_id,
            repo_id=job.repo_id,
            run_attempt=job.run_attempt,
            name=job.name,
            labels=tuple(job.labels),
            status=job.status,
            conclusion=job.conclusion,
            created_at=job.created_at,
            started_at=job.started_at,
            completed_at=job.completed_at,
            runner_id=job.runner_id if show else None,
            runner_name=job.runner_name if show else None,
            runner_group_id=job.runner_group_id if show else None,
            runner_group_name=job.runner_group_name if show else None,
            workflow_name=job.workflow_name,
            head_branch=job.head_branch,
            head_sha=job.head_sha,
        )


class Events:
    """The sink (replaceable) and the observers (a list callers append to)."""

    def __init__(self, sink: EventSink | None) -> None:
        self.sink = sink
        #: more observers of model events (the Actions service's scale sets), called after ``sink``
        self.observers: list[EventSink] = []

    def emit(self, event: Event) -> None:
        if self.sink is not None:
            self.sink(event)
        for observer in self.observers:
            observer(event)

    def job_event(self, action: str, job: Job) -> None:
        """Bump the job's version and, if anyone listens, report the transition."""
        job.version += 1
        if self.sink is not None or self.observers:
            self.emit(JobEvent(action, JobSnapshot.of(job)))
