"""Typed shapes of the Actions service's scale-set resources (its JSON names: see ``from_json``)."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any


@dataclass(frozen=True)
class RunnerScaleSet:
    id: int
    name: str
    runner_group_id: int
    runner_group_name: str = ""
    labels: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunnerScaleSet:
        return cls(
            id=int(data["id"]),
            name=str(data.get("name") or ""),
            runner_group_id=int(data.get("runnerGroupId") or 0),
            runner_group_name=str(data.get("runnerGroupName") or ""),
            labels=tuple(str(label.get("name", "")) for label in data.get("labels") or ()),
        )


@dataclass(frozen=True)
class ScaleSetRunner:
    """A runner registration in the scale set's pool (``RunnerReference``)."""

    id: int
    name: str
    scale_set_id: int

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ScaleSetRunner:
        return cls(int(data["id"]), str(data.get("name") or ""), int(data.get("runnerScaleSetId") or 0))


@dataclass(frozen=True)
class ScaleSetJitConfig:
    """A single-use runner configuration; ``encoded`` is a credential: never log it."""

    runner: ScaleSetRunner
    encoded: str

    def __repr__(self) -> str:
        return f"ScaleSetJitConfig(runner={self.runner!r}, encoded=<redacted>)"

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ScaleSetJitConfig:
        return cls(ScaleSetRunner.from_json(data["runner"]), str(data["encodedJITConfig"]))


@dataclass(frozen=True)
class ScaleSetStatistics:
    total_available_jobs: int = 0
    total_acquired_jobs: int = 0
    total_assigned_jobs: int = 0
    total_running_jobs: int = 0
    total_registered_runners: int = 0
    total_busy_runners: int = 0
    total_idle_runners: int = 0

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ScaleSetStatistics:
        def n(key: str) -> int:
            return int(data.get(key) or 0)

        return cls(
            total_available_jobs=n("totalAvailableJobs"),
            total_acquired_jobs=n("totalAcquiredJobs"),
            total_assigned_jobs=n("totalAssignedJobs"),
            total_running_jobs=n("totalRunningJobs"),
            total_registered_runners=n("totalRegisteredRunners"),
            total_busy_runners=n("totalBusyRunners"),
            total_idle_runners=n("totalIdleRunners"),
        )


@dataclass(frozen=True)
class ScaleSetSession:
    """A message session (``RunnerScaleSetSession``); ``queue_token`` is a credential: never log it."""

    id: str
    owner: str
    scale_set_id: int
    queue_url: str
    queue_token: str
    statistics: ScaleSetStatistics

    def __repr__(self) -> str:
        return (
            f"ScaleSetSession(id={self.id!r}, owner={self.owner!r}, scale_set_id={self.scale_set_id}, "
            f"queue_url={self.queue_url!r}, queue_token=<redacted>)"
        )

    @classmethod
    def from_json(cls, data: Mapping[str, Any], scale_set_id: int = 0) -> ScaleSetSession:
        scale_set = data.get("runnerScaleSet") or {}
        return cls(
            id=str(data.get("sessionId") or ""),
            owner=str(data.get("ownerName") or ""),
            scale_set_id=int(scale_set.get("id") or scale_set_id),
            queue_url=str(data.get("messageQueueUrl") or ""),
            queue_token=str(data.get("messageQueueAccessToken") or ""),
            statistics=ScaleSetStatistics.from_json(data.get("statistics") or {}),
        )


JOB_AVAILABLE = "JobAvailable"
JOB_ASSIGNED = "JobAssigned"
JOB_STARTED = "JobStarted"
JOB_COMPLETED = "JobCompleted"
JOB_MESSAGE_TYPES = (JOB_AVAILABLE, JOB_ASSIGNED, JOB_STARTED, JOB_COMPLETED)


@dataclass(frozen=True)
class ScaleSetJob:
    """One job message of a queue message's body (``messageType`` one of :data:`JOB_MESSAGE_TYPES`).

    Times are seconds since the epoch (``None``: absent or Go's zero time). The type-specific fields
    (``acquire_job_url``: JobAvailable; ``runner_id``, ``runner_name``: JobStarted/JobCompleted;
    ``result``: JobCompleted) are empty elsewhere."""

    message_type: str
    runner_request_id: int = 0
    repository_name: str = ""
    owner_name: str = ""
    job_id: str = ""
    job_workflow_ref: str = ""
    job_display_name: str = ""
    workflow_run_id: int = 0
    event_name: str = ""
    request_labels: tuple[str, ...] = ()
    queue_time: float | None = None
    scale_set_assign_time: float | None = None
    runner_assign_time: float | None = None
    finish_time: float | None = None
    acquire_job_url: str = ""
    runner_id: int = 0
    runner_name: str = ""
    result: str = ""

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ScaleSetJob:
        return cls(
            message_type=str(data.get("messageType") or ""),
            runner_request_id=int(data.get("runnerRequestId") or 0),
            repository_name=str(data.get("repositoryName") or ""),
            owner_name=str(data.get("ownerName") or ""),
            job_id=str(data.get("jobId") or ""),
            job_workflow_ref=str(data.get("jobWorkflowRef") or ""),
            job_display_name=str(data.get("jobDisplayName") or ""),
            workflow_run_id=int(data.get("workflowRunId") or 0),
            event_name=str(data.get("eventName") or ""),
            request_labels=tuple(str(label) for label in data.get("requestLabels") or ()),
            queue_time=parse_time(data.get("queueTime")),
            scale_set_assign_time=parse_time(data.get("scaleSetAssignTime")),
            runner_assign_time=parse_time(data.get("runnerAssignTime")),
            finish_time=parse_time(data.get("finishTime")),
            acquire_job_url=str(data.get("acquireJobUrl") or ""),
            runner_id=int(data.get("runnerId") or 0),
            runner_name=str(data.get("runnerName") or ""),
            result=str(data.get("result") or ""),
        )


@dataclass(frozen=True)
class ScaleSetMessage:
    """A queue message (``RunnerScaleSetMessage``): its id, the statistics of that moment and the job
    messages of its body (unknown job types dropped, ``skipped`` counts them)."""

    id: int
    statistics: ScaleSetStatistics
    jobs: tuple[ScaleSetJob, ...] = ()
    skipped: int = 0

    def of_type(self, message_type: str) -> tuple[ScaleSetJob, ...]:
        return tuple(job for job in self.jobs if job.message_type == message_type)


def parse_time(value: Any) -> float | None:
    """Seconds since the epoch of an RFC 3339 time; ``None`` for absent, unparsable or Go's zero time."""
    if not isinstance(value, str) or not value or value.startswith("0001-01-01"):
        return None
    text = value.strip().replace("Z", "+00:00").replace("z", "+00:00")
    head, dot, rest = text.partition(".")
    if dot:  # Python < 3.12 takes at most 6 fraction digits
        digits = "".join(itertools.takewhile(str.isdigit, rest))
        text = f"{head}.{digits[:6] or '0'}{rest[len(digits) :]}"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()
