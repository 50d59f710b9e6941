"""GitHub webhook payloads the webhook server understands, parsed into typed, validated values.

Only what routing, reservations and metrics need is kept. A payload that lacks a field those need
(or has it with the wrong type) raises :class:`MalformedPayload`, which the server answers with 400.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from runnerd.reconcile.matching import JobEvent


class MalformedPayload(ValueError):
    """The body is not the event it claims to be."""


def _obj(data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = data.get(key)
    if not isinstance(value, Mapping):
        raise MalformedPayload(f"{key} must be an object")
    return value


def _opt_obj(data: Mapping[str, Any], key: str) -> Mapping[str, Any] | None:
    return None if data.get(key) is None else _obj(data, key)


def _str(data: Mapping[str, Any], key: str, where: str, *, required: bool = False) -> str | None:
    value = data.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or (required and not value):
        raise MalformedPayload(f"{where}.{key} must be a string")
    return value


def _int(data: Mapping[str, Any], key: str, where: str, *, required: bool = False) -> int | None:
    value = data.get(key)
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise MalformedPayload(f"{where}.{key} must be an integer")
    return value


def _time(data: Mapping[str, Any], key: str, where: str) -> float | None:
    text = _str(data, key, where)
    if not text:
        return None
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        raise MalformedPayload(f"{where}.{key} is not an ISO 8601 time") from None
    if parsed.tzinfo is None:
        raise MalformedPayload(f"{where}.{key} has no time zone")
    return parsed.timestamp()


@dataclass(frozen=True)
class WorkflowJobEvent:
    """One ``workflow_job`` delivery. Times are seconds since the epoch."""

    action: str
    job_id: int
    run_id: int | None
    name: str | None
    workflow_name: str | None
    head_branch: str | None
    status: str | None
    conclusion: str | None
    labels: tuple[str, ...]
    runner_id: int | None
    runner_name: str | None
    runner_group_name: str | None
    created_at: float | None
    started_at: float | None
    completed_at: float | None
    repository: str  # owner/name
    repository_name: str
    owner: str
    owner_type: str  # "User" or "Organization"
    organization: str | None
    enterprise: str | None
    delivery: str | None = None  # X-GitHub-Delivery
    received_at: float = 0.0  # wall clock, when the request arrived
    received_monotonic: float = 0.0  # time.monotonic() at arrival (for latencies within the process)

    def routing(self) -> JobEvent:
        """The facts :func:`runnerd.reconcile.matching.match_workflow_job` routes by."""
        return JobEvent(
            repository=self.repository,
            labels=self.labels,
            owner_type=self.owner_type,
            organization=self.organization,
            enterprise=self.enterprise,
            runner_group=self.runner_group_name,
        )

    @property
    def runs_on(self) -> str:
        """The job's labels joined with commas (ARC's ``runs_on`` metric label)."""
        return ",".join(self.labels)


def parse_workflow_job(
    payload: Any,
    *,
    delivery: str | None = None,
    received_at: float = 0.0,
    received_monotonic: float = 0.0,
) -> WorkflowJobEvent:
    """A ``workflow_job`` event from its decoded JSON body; raises :class:`MalformedPayload`."""
    if not isinstance(payload, Mapping):
        raise MalformedPayload("the body must be a JSON object")
    action = _str(payload, "action", "payload", required=True)
    assert action is not None
    job = _obj(payload, "workflow_job")
    repo = _obj(payload, "repository")
    owner = _obj(repo, "owner")
    labels = job.get("labels")
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise MalformedPayload("workflow_job.labels must be a list of strings")
    full_name = _str(repo, "full_name", "repository", required=True)
    assert full_name is not None
    if full_name.count("/") != 1:
        raise MalformedPayload("repository.full_name must be owner/name")
    owner_login = _str(owner, "login", "repository.owner", required=True)
    assert owner_login is not None
    org = _opt_obj(payload, "organization")
    enterprise = _opt_obj(payload, "enterprise")
    job_id = _int(job, "id", "workflow_job", required=True)
    assert job_id is not None
    return WorkflowJobEvent(
        action=action,
        job_id=job_id,
        run_id=_int(job, "run_id", "workflow_job"),
        name=_str(job, "name", "workflow_job"),
        workflow_name=_str(job, "workflow_name", "workflow_job"),
        head_branch=_str(job, "head_branch", "workflow_job"),
        status=_str(job, "status", "workflow_job"),
        conclusion=_str(job, "conclusion", "workflow_job"),
        labels=tuple(labels),
        runner_id=_int(job, "runner_id", "workflow_job"),
        runner_name=_str(job, "runner_name", "workflow_job"),
        runner_group_name=_str(job, "runner_group_name", "workflow_job"),
        created_at=_time(job, "created_at", "workflow_job"),
        started_at=_time(job, "started_at", "workflow_job"),
        completed_at=_time(job, "completed_at", "workflow_job"),
        repository=full_name,
        repository_name=_str(repo, "name", "repository") or full_name.split("/", 1)[1],
        owner=owner_login,
        owner_type=_str(owner, "type", "repository.owner") or "Organization",
        organization=_str(org, "login", "organization") if org is not None else None,
        enterprise=_str(enterprise, "slug", "enterprise") if enterprise is not None else None,
        delivery=delivery,
        received_at=received_at,
        received_monotonic=received_monotonic,
    )
