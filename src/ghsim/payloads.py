"""The ``workflow_job`` webhook payload: a typed model that reads GitHub's examples and writes
payloads valid against ``@octokit/webhooks-schemas``.

One deliberate addition: deliveries to *enterprise* hooks carry an ``enterprise`` object, as
GitHub's do (ARC reads ``enterprise.slug`` from it), although the pinned schema does not list the
property.  Everything else is exactly the schema's shape.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .entities import Hook
from .model import JobSnapshot
from .render import Renderer, node_id

JSON = dict[str, Any]

ACTIONS = ("queued", "waiting", "in_progress", "completed")


class PayloadError(ValueError):
    pass


def _get(d: JSON, key: str, types: type | tuple[type, ...], *, optional: bool = False) -> Any:
    if key not in d or d[key] is None:
        if optional:
            return None
        raise PayloadError(f"missing {key}")
    value = d[key]
    if not isinstance(value, types) or (isinstance(value, bool) and bool not in _as_tuple(types)):
        raise PayloadError(f"{key} has the wrong type ({type(value).__name__})")
    return value


def _as_tuple(types: type | tuple[type, ...]) -> tuple[type, ...]:
    return types if isinstance(types, tuple) else (types,)


@dataclass
class WorkflowStep:
    name: str
    status: str
    conclusion: str | None
    number: int
    started_at: str | None
    completed_at: str | None

    @classmethod
    def from_dict(cls, d: JSON) -> WorkflowStep:
        return cls(
            _get(d, "name", str),
            _get(d, "status", str),
            _get(d, "conclusion", str, optional=True),
            _get(d, "number", int),
            _get(d, "started_at", str, optional=True),
            _get(d, "completed_at", str, optional=True),
        )

    def to_dict(self) -> JSON:
        return {
            "name": self.name,
            "status": self.status,
            "conclusion": self.conclusion,
            "number": self.number,
            "started_at": self.started_at,
            "completed_at": self.completed_at,
        }


@dataclass
class WorkflowJob:
    id: int
    run_id: int
    run_url: str
    node_id: str
    head_sha: str
    url: str
    html_url: str
    status: str
    conclusion: str | None
    started_at: str
    completed_at: str | None
    name: str
    check_run_url: str
    labels: list[str]
    runner_id: int | None
    runner_name: str | None
    runner_group_id: int | None
    runner_group_name: str | None
    steps: list[WorkflowStep] = field(default_factory=list)
    # GitHub's older examples lack these; current deliveries always have them
    run_attempt: int | None = None
    created_at: str | None = None
    workflow_name: str | None = None
    head_branch: str | None = None

    @classmethod
    def from_dict(cls, d: JSON) -> WorkflowJob:
        labels = _get(d, "labels", list)
        if not all(isinstance(x, str) for x in labels):
            raise PayloadError("labels must be strings")
        status = _get(d, "status", str)
        if status not in ("queued", "in_progress", "completed", "waiting"):
            raise PayloadError(f"unknown status {status}")
        return cls(
            id=_get(d, "id", int),
            run_id=_get(d, "run_id", int),
            run_url=_get(d, "run_url", str),
            node_id=_get(d, "node_id", str),
            head_sha=_get(d, "head_sha", str),
            url=_get(d, "url", str),
            html_url=_get(d, "html_url", str),
            status=status,
            conclusion=_get(d, "conclusion", str, optional=True),
            started_at=_get(d, "started_at", str),
            completed_at=_get(d, "completed_at", str, optional=True),
            name=_get(d, "name", str),
            check_run_url=_get(d, "check_run_url", str),
            labels=list(labels),
            runner_id=_get(d, "runner_id", int, optional=True),
            runner_name=_get(d, "runner_name", str, optional=True),
            runner_group_id=_get(d, "runner_group_id", int, optional=True),
            runner_group_name=_get(d, "runner_group_name", str, optional=True),
            steps=[WorkflowStep.from_dict(s) for s in _get(d, "steps", list, optional=True) or []],
            run_attempt=_get(d, "run_attempt", int, optional=True),
            created_at=_get(d, "created_at", str, optional=True),
            workflow_name=_get(d, "workflow_name", str, optional=True),
            head_branch=_get(d, "head_branch", str, optional=True),
        )

    def to_dict(self) -> JSON:
        out: JSON = {
            "id": self.id,
            "run_id": self.run_id,
            "run_url": self.run_url,
            "node_id": self.node_id,
            "head_sha": self.head_sha,
            "url": self.url,
            "html_url": self.html_url,
            "status": self.status,
            "conclusion": self.conclusion,
            "started_at": self.started_at,
            "completed_at": self.completed_at,
            "name": self.name,
            "steps": [s.to_dict() for s in self.steps],
            "check_run_url": self.check_run_url,
            "labels": list(self.labels),
            "runner_id": self.runner_id,
            "runner_name": self.runner_name,
            "runner_group_id": self.runner_group_id,
            "runner_group_name": self.runner_group_name,
            "workflow_name": self.workflow_name,
            "head_branch": self.head_branch,
        }
        if self.run_attempt is not None:
            out["run_attempt"] = self.run_attempt
        if self.created_at is not None:
            out["created_at"] = self.created_at
        return out


@dataclass
class WorkflowJobEvent:
    """The body of a ``workflow_job`` delivery."""

    action: str
    workflow_job: WorkflowJob
    repository: JSON
    sender: JSON
    organization: JSON | None = None
    installation: JSON | None = None
    enterprise: JSON | None = None
    deployment: JSON | None = None

    @classmethod
    def from_dict(cls, d: JSON) -> WorkflowJobEvent:
        if not isinstance(d, dict):
            raise PayloadError("a payload is a JSON object")
        action = _get(d, "action", str)
        if action not in ACTIONS:
            raise PayloadError(f"unknown workflow_job action {action}")
        repository = _get(d, "repository", dict)
        _get(repository, "full_name", str)
        _get(repository, "id", int)
        installation = _get(d, "installation", dict, optional=True)
        if installation is not None:
            _get(installation, "id", int)
        return cls(
            action=action,
            workflow_job=WorkflowJob.from_dict(_get(d, "workflow_job", dict)),
            repository=repository,
            sender=_get(d, "sender", dict),
            organization=_get(d, "organization", dict, optional=True),
            installation=installation,
            enterprise=_get(d, "enterprise", dict, optional=True),
            deployment=_get(d, "deployment", dict, optional=True),
        )

    def to_dict(self) -> JSON:
        out: JSON = {"action": self.action, "workflow_job": self.workflow_job.to_dict()}
        if self.deployment is not None:
            out["deployment"] = self.deployment
        out["repository"] = self.repository
        if self.organization is not None:
            out["organization"] = self.organization
        if self.enterprise is not None:
            out["enterprise"] = self.enterprise
        out["sender"] = self.sender
        if self.installation is not None:
            out["installation"] = self.installation
        return out

    @property
    def repository_full_name(self) -> str:
        return str(self.repository["full_name"])

    @property
    def enterprise_slug(self) -> str | None:
        return None if self.enterprise is None else str(self.enterprise.get("slug"))

    @property
    def installation_id(self) -> int | None:
        return None if self.installation is None else int(self.installation["id"])


def build_workflow_job_event(
    renderer: Renderer, action: str, job: JobSnapshot, hook: Hook, installation_id: int | None = None
) -> WorkflowJobEvent:
    world = renderer.world
    repo = world.repos_by_id[job.repo_id]
    org = world.orgs.get(repo.owner.lower())
    run = world.runs.get(job.run_id)
    ent = (
        world.enterprise_of_repo(repo) if hook.scope is not None and hook.scope.kind == "enterprise" else None
    )
    return WorkflowJobEvent(
        action=action,
        workflow_job=WorkflowJob.from_dict(renderer.job_snapshot(job)),
        repository=renderer.repository(repo),
        sender=renderer.user(run.actor if run is not None else "octocat"),
        organization=renderer.organization(org) if org is not None else None,
        installation=(
            {"id": installation_id, "node_id": node_id("Installation", installation_id)}
            if installation_id is not None
            else None
        ),
        enterprise=renderer.enterprise(ent) if ent is not None else None,
    )
