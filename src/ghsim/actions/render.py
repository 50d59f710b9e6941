"""JSON shapes of the Actions service (field names as ARC's ``github/actions/types.go`` and
``actions/scaleset``'s ``types.go`` decode them).

Times are RFC 3339 in UTC; a time that does not apply yet is Go's zero time
``0001-01-01T00:00:00Z`` (what the service sends, and what Go clients decode without error).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ..entities import Job, Runner
from ..model import World
from .scaleset import ScaleSet, Session, TrackedJob

JSON = dict[str, Any]
ZERO_TIME = "0001-01-01T00:00:00Z"

#: the model's conclusions → ``JobCompleted.result`` (values seen from the service)
RESULTS = {"success": "succeeded", "failure": "failed", "cancelled": "canceled", "skipped": "skipped"}


def rfc3339(ts: float | None) -> str:
    if ts is None:
        return ZERO_TIME
    dt = datetime.fromtimestamp(ts, tz=UTC)
    text = dt.strftime("%Y-%m-%dT%H:%M:%S")
    if dt.microsecond:
        text += f".{dt.microsecond:06d}".rstrip("0")
    return text + "Z"


def scale_set(ss: ScaleSet, base_url: str, *, statistics: bool = True) -> JSON:
    out: JSON = {
        "id": ss.id,
        "name": ss.name,
        "runnerGroupId": ss.group_id,
        "runnerGroupName": ss.group_name,
        "labels": [dict(lab) for lab in ss.labels],
        "RunnerSetting": dict(ss.setting),
        "createdOn": rfc3339(ss.created_on),
        "runnerJitConfigUrl": f"{base_url}_apis/runtime/runnerscalesets/{ss.id}/generatejitconfig",
    }
    if statistics:
        out["statistics"] = ss.statistics()
    return out


def session(sess: Session, ss: ScaleSet, base_url: str, queue_url: str, queue_token: str) -> JSON:
    return {
        "sessionId": sess.id,
        "ownerName": sess.owner,
        "runnerScaleSet": scale_set(ss, base_url),
        "messageQueueUrl": queue_url,
        "messageQueueAccessToken": queue_token,
        "statistics": ss.statistics(),
    }


def runner_reference(runner: Runner, scale_set_id: int) -> JSON:
    return {"id": runner.id, "name": runner.name, "runnerScaleSetId": scale_set_id}


def job_message(
    world: World,
    kind: str,
    tracked: TrackedJob,
    job: Job,
    *,
    request_id: int,
    acquire_url: str | None = None,
    result: str | None = None,
) -> JSON:
    """One element of a message's ``body`` array (``JobAvailable`` … ``JobCompleted``)."""
    repo = world.repos_by_id[job.repo_id]
    run = world.runs[job.run_id]
    ref = f"refs/heads/{run.head_branch}"
    out: JSON = {
        "messageType": kind,
        "runnerRequestId": request_id,
        "repositoryName": repo.name,
        "ownerName": repo.owner,
        "jobId": tracked.uuid,
        "jobWorkflowRef": f"{repo.full_name}/{run.path}@{ref}",
        "jobDisplayName": job.name,
        "workflowRunId": run.id,
        "eventName": run.event,
        "requestLabels": list(job.labels),
        "queueTime": rfc3339(tracked.queue_time),
        "scaleSetAssignTime": rfc3339(tracked.scale_set_assign_time),
        "runnerAssignTime": rfc3339(tracked.runner_assign_time),
        "finishTime": rfc3339(tracked.finish_time),
    }
    if kind == "JobAvailable":
        out["acquireJobUrl"] = acquire_url or ""
    if kind in ("JobStarted", "JobCompleted"):
        out["runnerId"] = tracked.runner_id or 0
        out["runnerName"] = tracked.runner_name or ""
    if kind == "JobCompleted":
        out["result"] = result or ""
    return out


def acquirable_job(world: World, tracked: TrackedJob, job: Job, acquire_url: str) -> JSON:
    repo = world.repos_by_id[job.repo_id]
    run = world.runs[job.run_id]
    return {
        "acquireJobUrl": acquire_url,
        "messageType": "JobAvailable",
        "runnerRequestId": tracked.request_id,
        "repositoryName": repo.name,
        "ownerName": repo.owner,
        "jobWorkflowRef": f"{repo.full_name}/{run.path}@refs/heads/{run.head_branch}",
        "eventName": run.event,
        "requestLabels": list(job.labels),
    }
