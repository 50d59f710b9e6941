"""The simulator's records.  Plain mutable dataclasses owned by :class:`ghsim.model.World`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

ScopeKind = Literal["repo", "org", "enterprise"]

#: job statuses as GitHub reports them
JobStatus = Literal["waiting", "queued", "in_progress", "completed"]
#: conclusions a simulated job can end with (the ones the ``workflow_job`` webhook schema allows)
CONCLUSIONS = ("success", "failure", "cancelled", "skipped")


@dataclass(frozen=True)
class Scope:
    """Where runners are registered: a repository (``owner/name``), an organization or an enterprise."""

    kind: ScopeKind
    name: str

    @property
    def key(self) -> tuple[str, str]:
        return (self.kind, self.name.lower())

    @property
    def level(self) -> int:
        """Routing precedence: repository runners first, then organization, then enterprise."""
        return {"repo": 0, "org": 1, "enterprise": 2}[self.kind]

    def __str__(self) -> str:
        return f"{self.kind}:{self.name}"


@dataclass(eq=False)
class Enterprise:
    id: int
    slug: str
    name: str
    created_at: float


@dataclass(eq=False)
class Org:
    id: int
    login: str
    enterprise: str | None
    created_at: float
    description: str | None = None


@dataclass(eq=False)
class User:
    id: int
    login: str
    site_admin: bool = False


@dataclass(eq=False)
class Repo:
    id: int
    owner: str
    owner_id: int
    owner_type: Literal["Organization", "User"]
    name: str
    private: bool
    created_at: float
    default_branch: str = "main"

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"


@dataclass(eq=False)
class RunnerGroup:
    """An organization or enterprise runner group.

    ``id`` is what the REST API shows: every organization's and enterprise's default group is ``1``,
    custom groups get ids unique across the simulator.  ``uid`` is unique for every group.
    """

    uid: int
    id: int
    name: str
    scope: Scope
    visibility: Literal["all", "selected", "private"] = "all"
    default: bool = False
    allows_public_repositories: bool = False
    selected_repository_ids: set[int] = field(default_factory=set)
    selected_organization_ids: set[int] = field(default_factory=set)
    restricted_to_workflows: bool = False


@dataclass(eq=False)
class App:
    id: int
    slug: str
    name: str
    client_id: str
    public_key_pem: str
    owner: str
    permissions: dict[str, str]
    created_at: float
    events: list[str] = field(default_factory=lambda: ["workflow_job"])


@dataclass(eq=False)
class Installation:
    id: int
    app_id: int
    account_kind: Literal["org", "user", "enterprise"]
    account: str
    account_id: int
    repository_selection: Literal["all", "selected"]
    repository_ids: set[int]
    permissions: dict[str, str]
    created_at: float
    suspended: bool = False


@dataclass(eq=False)
class Pat:
    id: int
    token: str
    login: str
    user_id: int
    scopes: tuple[str, ...]
    created_at: float
    expires_at: float | None = None
    #: limit which resources the token's user can see; ``None`` means all
    orgs: set[str] | None = None
    repos: set[str] | None = None
    enterprises: set[str] | None = None


@dataclass(eq=False)
class IssuedToken:
    """A registration or remove token (scope-bound, reusable until it expires)."""

    token: str
    kind: Literal["registration", "remove"]
    scope: Scope
    expires_at: float


@dataclass(eq=False)
class InstallationToken:
    token: str
    installation_id: int
    expires_at: float
    permissions: dict[str, str]
    #: ``None``: every repository the installation covers
    repository_ids: set[int] | None


@dataclass(frozen=True)
class Label:
    id: int
    name: str
    type: Literal["read-only", "custom"]


@dataclass(eq=False)
class Runner:
    id: int
    name: str
    scope: Scope
    group: RunnerGroup | None
    labels: list[Label]
    ephemeral: bool
    created_at: float
    version: str | None
    os: str = "Linux"
    #: secret inside a not yet used JIT config
    jit_secret: str | None = None
    jit: bool = False
    #: the virtual runner has registered (token) or redeemed its JIT config
    configured: bool = False
    #: credential of the runner's session with ``/_runner/``
    session: str | None = None
    last_seen: float | None = None
    job_id: int | None = None
    jobs_done: int = 0

    def labels_key(self) -> frozenset[str]:
        return frozenset(label.name.lower() for label in self.labels)

    @property
    def group_id(self) -> int:
        return self.group.id if self.group is not None else 1

    @property
    def group_name(self) -> str:
        return self.group.name if self.group is not None else "Default"


@dataclass(eq=False)
class Job:
    id: int
    run_id: int
    repo_id: int
    run_attempt: int
    name: str
    labels: list[str]
    group: str | None
    duration: float
    planned_conclusion: str
    workflow_name: str
    head_branch: str
    head_sha: str
    created_at: float
    status: JobStatus = "queued"
    conclusion: str | None = None
    queued_at: float | None = None
    assigned_at: float | None = None
    started_at: float | None = None
    completed_at: float | None = None
    #: the runner the job is assigned to (set at assignment, before the job starts)
    runner_id: int | None = None
    runner_name: str | None = None
    runner_group_id: int | None = None
    runner_group_name: str | None = None
    approve_at: float | None = None
    assignments: int = 0
    version: int = 0

    def labels_key(self) -> frozenset[str]:
        return frozenset(label.lower() for label in self.labels)


@dataclass(eq=False)
class Run:
    id: int
    repo_id: int
    run_number: int
    workflow_id: int
    workflow_name: str
    path: str
    head_branch: str
    head_sha: str
    event: str
    actor: str
    created_at: float
    updated_at: float
    run_attempt: int = 1
    run_started_at: float | None = None
    job_ids: list[int] = field(default_factory=list)
    status: str = "queued"
    conclusion: str | None = None
    version: int = 0


@dataclass(eq=False)
class Hook:
    id: int
    url: str
    secret: str | None
    events: list[str]
    #: repository full name, organization login, enterprise slug, or an app's hook
    scope: Scope | None
    app_id: int | None
    active: bool = True
    # fault injection
    drop: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    delay_s: float = 0.0
    fail: bool = False
    seed: int = 0
