"""The simulated GitHub: state, routing and time.  Pure and synchronous.

Nothing here does I/O or reads the wall clock: time comes from the injected :class:`Clock`, and
what happens (a job changes state, a runner gets work, a runner is removed) is reported to an
optional event sink.  The HTTP layer (:mod:`ghsim.server`) and the tests drive this class directly.

Routing follows GitHub's documented rules:

* a job goes to an *online, idle* runner that has *every* label of the job (case-insensitive);
* a runner may take jobs of a repository only if it is registered to that repository, or to its
  organization in a runner group visible to the repository, or to its enterprise in a runner group
  shared with the organization (public repositories need ``allows_public_repositories``);
* repository runners are preferred to organization runners, which are preferred to enterprise
  runners; among equals, the runner that has been idle longest wins; among jobs, the oldest;
* a job nobody can take stays queued (and fails after ``queue_timeout_s``);
* an assigned job that the runner does not start within ``assign_timeout_s`` is re-queued;
* an ephemeral runner takes exactly one job and is removed when it completes; a JIT config can be
  redeemed once.
"""

from __future__ import annotations

import base64
import hashlib
import heapq
import itertools
import json
import secrets
import string
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

from .clock import Clock
from .config import SimConfig
from .entities import (
    CONCLUSIONS,
    App,
    Enterprise,
    Hook,
    Installation,
    InstallationToken,
    IssuedToken,
    Job,
    Label,
    Org,
    Pat,
    Repo,
    Run,
    Runner,
    RunnerGroup,
    Scope,
    User,
)
from .errors import Conflict, NotFound, RegistrationError, ValidationFailed

DEFAULT_LABELS = ("self-hosted", "Linux", "X64")

# --------------------------------------------------------------------------------------------
# Events reported to the sink


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


@dataclass(frozen=True)
class JobSpec:
    """One job of a workflow run to enqueue."""

    labels: tuple[str, ...]
    name: str = "build"
    duration: float = 0.0
    conclusion: str = "success"
    #: runner group name the job requires (``runs-on: {group: ...}``)
    group: str | None = None
    #: start in ``waiting`` (environment approval) until approved, or until this many seconds pass
    wait: float | None = None

    def __post_init__(self) -> None:
        if not self.labels:
            raise ValidationFailed("a job needs at least one label")
        if self.conclusion not in CONCLUSIONS:
            raise ValidationFailed(f"conclusion must be one of {', '.join(CONCLUSIONS)}")
        if self.duration < 0:
            raise ValidationFailed("duration must not be negative")


@dataclass(frozen=True)
class TraceEntry:
    """One line of a trace file: a single-job run enqueued ``offset`` seconds after replay starts."""

    offset: float
    repo: str
    labels: tuple[str, ...]
    duration: float
    conclusion: str = "success"
    workflow: str = "trace"
    name: str = "job"
    group: str | None = None


@dataclass(frozen=True)
class Registered:
    runner: Runner
    session: str


PollResult = Literal["removed"] | Job | None

_JobKey = tuple[int, frozenset[str], str | None]
_RunnerKey = tuple[int, str, int, frozenset[str]]

_NOT_ACCESSIBLE_REPO = (
    "There is at least one repository that does not exist or is not accessible to the parent installation."
)
_TOKEN_ALPHABET = string.ascii_uppercase + string.digits
_ALNUM = string.ascii_letters + string.digits


def _rand(alphabet: str, n: int) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(n))


def new_pat() -> str:
    return "ghp_" + _rand(_ALNUM, 36)


class World:
    """All simulated state.  Every method is synchronous and takes its time from ``clock``."""

    def __init__(self, clock: Clock, config: SimConfig | None = None, sink: EventSink | None = None) -> None:
        self.clock = clock
        self.config = config or SimConfig()
        self.sink = sink
        self._ids = itertools.count(1)
        self._repo_ids = itertools.count(100_001)
        self._org_ids = itertools.count(9_000_001)
        self._user_ids = itertools.count(5_000_001)
        self._run_ids = itertools.count(7_000_000_001)
        self._job_ids = itertools.count(30_000_000_001)
        self._runner_ids = itertools.count(1)
        self._group_ids = itertools.count(2)
        self._group_uids = itertools.count(1)
        self._label_ids: dict[str, int] = {}
        self._app_ids = itertools.count(100_001)
        self._installation_ids = itertools.count(40_000_001)
        self._hook_ids = itertools.count(500_001)
        self._workflow_ids = itertools.count(160_001)

        self.enterprises: dict[str, Enterprise] = {}
        self.orgs: dict[str, Org] = {}
        self.users: dict[str, User] = {}
        self.repos: dict[str, Repo] = {}  # key: full name, lower case
        self.repos_by_id: dict[int, Repo] = {}
        self.groups: dict[tuple[str, str], dict[int, RunnerGroup]] = {}  # scope key -> id -> group
        self.apps: dict[int, App] = {}
        self.installations: dict[int, Installation] = {}
        self.pats: dict[str, Pat] = {}
        self.pats_by_id: dict[int, Pat] = {}
        self.issued: dict[str, IssuedToken] = {}
        self.installation_tokens: dict[str, InstallationToken] = {}
        self.hooks: dict[int, Hook] = {}

        self.runners: dict[int, Runner] = {}
        self._runners_by_scope: dict[tuple[str, str], dict[int, Runner]] = {}
        self._sessions: dict[str, int] = {}
        self._jit: dict[str, int] = {}
        #: sessions of removed runners, so that the runner learns it was removed
        self._removed_sessions: set[str] = set()

        self.runs: dict[int, Run] = {}
        self.jobs: dict[int, Job] = {}
        self._runs_by_repo: dict[int, dict[int, None]] = {}
        self._run_numbers: dict[int, int] = {}
        self._workflows: dict[tuple[int, str], int] = {}

        # routing indexes
        self._queue: dict[_JobKey, deque[int]] = {}
        #: idle runners by signature; runner id -> when it became idle (a sequence number)
        self._idle: dict[_RunnerKey, dict[int, int]] = {}
        self._idle_seq = itertools.count()
        self._idle_key: dict[int, _RunnerKey] = {}
        self._eligible: dict[tuple[_JobKey, _RunnerKey], bool] = {}
        self._assigned: dict[int, float] = {}  # job id -> assigned at (not yet started)
        self._running: set[int] = set()
        self._waiting: dict[int, float | None] = {}  # job id -> auto-approve time
        self._trace: list[tuple[float, int, TraceEntry]] = []
        self._trace_seq = itertools.count()
        self._last_sweep = -1.0e18

    # ----------------------------------------------------------------------------------------
    # helpers

    def now(self) -> float:
        return self.clock.now()

    def _emit(self, event: Event) -> None:
        if self.sink is not None:
            self.sink(event)

    def _job_event(self, action: str, job: Job) -> None:
        job.version += 1
        if self.sink is not None:
            self.sink(JobEvent(action, JobSnapshot.of(job)))

    def _label(self, name: str, kind: Literal["read-only", "custom"]) -> Label:
        key = name.lower()
        if key not in self._label_ids:
            self._label_ids[key] = len(self._label_ids) + 1
        return Label(self._label_ids[key], name, kind)

    def _invalidate_routing(self) -> None:
        self._eligible.clear()

    # ----------------------------------------------------------------------------------------
    # entities

    def create_enterprise(self, slug: str, name: str | None = None) -> Enterprise:
        if not slug or slug.lower() in self.enterprises:
            raise ValidationFailed(f"enterprise {slug!r} exists or is invalid")
        ent = Enterprise(next(self._org_ids), slug, name or slug, self.now())
        self.enterprises[slug.lower()] = ent
        self.groups[Scope("enterprise", slug).key] = {
            1: RunnerGroup(next(self._group_uids), 1, "Default", Scope("enterprise", slug), default=True)
        }
        self._invalidate_routing()
        return ent

    def create_org(self, login: str, enterprise: str | None = None, description: str | None = None) -> Org:
        if not login or login.lower() in self.orgs or login.lower() in self.users:
            raise ValidationFailed(f"account {login!r} exists or is invalid")
        if enterprise is not None:
            enterprise = self.enterprise(enterprise).slug
        org = Org(next(self._org_ids), login, enterprise, self.now(), description)
        self.orgs[login.lower()] = org
        self.groups[Scope("org", login).key] = {
            1: RunnerGroup(next(self._group_uids), 1, "Default", Scope("org", login), default=True)
        }
        self._invalidate_routing()
        return org

    def create_user(self, login: str, site_admin: bool = False) -> User:
        if login.lower() in self.users:
            return self.users[login.lower()]
        if login.lower() in self.orgs:
            raise ValidationFailed(f"{login!r} is an organization")
        user = User(next(self._user_ids), login, site_admin)
        self.users[login.lower()] = user
        return user

    def create_repo(self, owner: str, name: str, private: bool = True) -> Repo:
        full = f"{owner}/{name}".lower()
        if not owner or not name or full in self.repos:
            raise ValidationFailed(f"repository {owner}/{name} exists or is invalid")
        org = self.orgs.get(owner.lower())
        if org is not None:
            repo = Repo(next(self._repo_ids), org.login, org.id, "Organization", name, private, self.now())
        else:
            user = self.create_user(owner)
            repo = Repo(next(self._repo_ids), user.login, user.id, "User", name, private, self.now())
        self.repos[full] = repo
        self.repos_by_id[repo.id] = repo
        self._runs_by_repo[repo.id] = {}
        self._invalidate_routing()
        return repo

    def create_group(
        self,
        scope: Scope,
        name: str,
        *,
        visibility: Literal["all", "selected", "private"] = "all",
        allows_public_repositories: bool = False,
        selected_repositories: Iterable[str] = (),
        selected_organizations: Iterable[str] = (),
    ) -> RunnerGroup:
        if scope.kind == "repo":
            raise ValidationFailed("runner groups belong to organizations and enterprises")
        self.scope_exists(scope)
        groups = self.groups[scope.key]
        if any(g.name.lower() == name.lower() for g in groups.values()):
            raise Conflict(f"A runner group named {name!r} already exists")
        if visibility not in ("all", "selected", "private"):
            raise ValidationFailed("visibility must be all, selected or private")
        if scope.kind == "enterprise" and visibility == "private":
            raise ValidationFailed("enterprise runner groups are visible to all or to selected organizations")
        group = RunnerGroup(
            next(self._group_uids),
            next(self._group_ids),
            name,
            scope,
            visibility=visibility,
            allows_public_repositories=allows_public_repositories,
        )
        for full in selected_repositories:
            repo = self.repo_by_name(full)
            if scope.kind == "org" and repo.owner.lower() != scope.name.lower():
                raise ValidationFailed(f"{full} does not belong to {scope.name}")
            group.selected_repository_ids.add(repo.id)
        for login in selected_organizations:
            org = self.org(login)
            if scope.kind != "enterprise" or (org.enterprise or "").lower() != scope.name.lower():
                raise ValidationFailed(f"{login} is not an organization of {scope.name}")
            group.selected_organization_ids.add(org.id)
        groups[group.id] = group
        self._invalidate_routing()
        return group

    def delete_group(self, scope: Scope, group_id: int) -> None:
        """Remove a custom runner group; its runners move to the Default group (as on GitHub)."""
        self.scope_exists(scope)
        groups = self.groups[scope.key]
        group = groups.get(group_id)
        if group is None or group_id == 1:
            raise NotFound(f"No custom runner group with id {group_id}")
        del groups[group_id]
        for runner in self.runners.values():
            if runner.group is group:
                runner.group = groups[1]
        self._invalidate_routing()

    def update_group(
        self,
        scope: Scope,
        group_id: int,
        *,
        visibility: str | None = None,
        allows_public_repositories: bool | None = None,
        selected_repositories: Iterable[str] | None = None,
        selected_organizations: Iterable[str] | None = None,
    ) -> RunnerGroup:
        group = self.group(scope, group_id)
        if visibility is not None:
            if visibility not in ("all", "selected", "private"):
                raise ValidationFailed("visibility must be all, selected or private")
            group.visibility = visibility  # type: ignore[assignment]
        if allows_public_repositories is not None:
            group.allows_public_repositories = allows_public_repositories
        if selected_repositories is not None:
            group.selected_repository_ids = {self.repo_by_name(r).id for r in selected_repositories}
        if selected_organizations is not None:
            group.selected_organization_ids = {self.org(o).id for o in selected_organizations}
        self._invalidate_routing()
        self._rematch_all()
        return group

    def create_app(
        self,
        slug: str,
        public_key_pem: str,
        *,
        name: str | None = None,
        owner: str = "octo-org",
        permissions: dict[str, str] | None = None,
        ident: int | None = None,
    ) -> App:
        if any(a.slug.lower() == slug.lower() for a in self.apps.values()):
            raise ValidationFailed(f"app {slug!r} exists")
        if ident is not None and ident in self.apps:
            raise ValidationFailed(f"app id {ident} exists")
        app_id = ident if ident is not None else next(self._app_ids)
        while ident is None and app_id in self.apps:
            app_id = next(self._app_ids)
        app = App(
            app_id,
            slug,
            name or slug,
            "Iv23li" + hashlib.sha1(f"{app_id}".encode()).hexdigest()[:14],
            public_key_pem,
            owner,
            dict(
                permissions
                or {
                    "administration": "write",
                    "organization_self_hosted_runners": "write",
                    "actions": "read",
                    "metadata": "read",
                }
            ),
            self.now(),
        )
        self.apps[app.id] = app
        return app

    def create_installation(
        self,
        app_id: int,
        account: str,
        *,
        repositories: Iterable[str] | None = None,
        permissions: dict[str, str] | None = None,
        ident: int | None = None,
    ) -> Installation:
        if ident is not None and ident in self.installations:
            raise ValidationFailed(f"installation id {ident} exists")
        app = self.apps.get(app_id)
        if app is None:
            raise NotFound(f"no app {app_id}")
        kind: Literal["org", "user", "enterprise"]
        if account.lower() in self.orgs:
            kind, acct_id, acct = "org", self.orgs[account.lower()].id, self.orgs[account.lower()].login
        elif account.lower() in self.enterprises:
            ent = self.enterprises[account.lower()]
            kind, acct_id, acct = "enterprise", ent.id, ent.slug
        elif account.lower() in self.users:
            kind, acct_id, acct = "user", self.users[account.lower()].id, self.users[account.lower()].login
        else:
            raise NotFound(f"no account {account}")
        for inst in self.installations.values():
            if inst.app_id == app_id and inst.account.lower() == acct.lower():
                raise ValidationFailed(f"app {app.slug} is already installed on {acct}")
        repo_ids: set[int] = set()
        if repositories is not None:
            for full in repositories:
                repo = self.repo_by_name(full)
                if repo.owner.lower() != acct.lower():
                    raise ValidationFailed(f"{full} does not belong to {acct}")
                repo_ids.add(repo.id)
        inst_id = ident if ident is not None else next(self._installation_ids)
        while ident is None and inst_id in self.installations:
            inst_id = next(self._installation_ids)
        inst = Installation(
            inst_id,
            app_id,
            kind,
            acct,
            acct_id,
            "all" if repositories is None else "selected",
            repo_ids,
            dict(permissions if permissions is not None else app.permissions),
            self.now(),
        )
        self.installations[inst.id] = inst
        return inst

    def create_pat(
        self,
        login: str = "octocat",
        scopes: Iterable[str] = ("repo", "admin:org", "manage_runners:enterprise"),
        *,
        token: str | None = None,
        expires_in: float | None = None,
        orgs: Iterable[str] | None = None,
        repos: Iterable[str] | None = None,
        enterprises: Iterable[str] | None = None,
    ) -> Pat:
        user = self.create_user(login)
        token = token or new_pat()
        if token in self.pats:
            raise ValidationFailed("token exists")
        pat = Pat(
            next(self._ids),
            token,
            user.login,
            user.id,
            tuple(scopes),
            self.now(),
            None if expires_in is None else self.now() + expires_in,
            None if orgs is None else {o.lower() for o in orgs},
            None if repos is None else {r.lower() for r in repos},
            None if enterprises is None else {e.lower() for e in enterprises},
        )
        self.pats[token] = pat
        self.pats_by_id[pat.id] = pat
        return pat

    def create_hook(
        self,
        url: str,
        *,
        scope: Scope | None = None,
        app_id: int | None = None,
        secret: str | None = None,
        events: Iterable[str] = ("workflow_job",),
        faults: dict[str, Any] | None = None,
    ) -> Hook:
        if (scope is None) == (app_id is None):
            raise ValidationFailed(
                "a hook belongs to exactly one of: repository, organization, enterprise, app"
            )
        if scope is not None:
            self.scope_exists(scope)
        if app_id is not None and app_id not in self.apps:
            raise NotFound(f"no app {app_id}")
        hook = Hook(next(self._hook_ids), url, secret, list(events), scope, app_id)
        self.hooks[hook.id] = hook
        if faults:
            try:
                self.set_hook_faults(hook.id, faults)
            except ValidationFailed:
                del self.hooks[hook.id]
                raise
        return hook

    def set_hook_faults(self, hook_id: int, faults: dict[str, Any]) -> Hook:
        hook = self.hooks.get(hook_id)
        if hook is None:
            raise NotFound(f"no hook {hook_id}")
        for key, value in faults.items():
            if key in ("drop", "duplicate", "reorder"):
                if not isinstance(value, int | float) or not 0 <= value <= 1:
                    raise ValidationFailed(f"{key} is a fraction between 0 and 1")
                setattr(hook, key, float(value))
            elif key == "delay_s":
                if not isinstance(value, int | float) or value < 0:
                    raise ValidationFailed("delay_s must be a non-negative number")
                hook.delay_s = float(value)
            elif key in ("fail", "active"):
                if not isinstance(value, bool):
                    raise ValidationFailed(f"{key} must be a boolean")
                setattr(hook, key, value)
            elif key == "seed":
                if not isinstance(value, int):
                    raise ValidationFailed("seed must be an integer")
                hook.seed = value
            else:
                raise ValidationFailed(f"unknown hook setting {key}")
        return hook

    # ----------------------------------------------------------------------------------------
    # lookups

    def enterprise(self, slug: str) -> Enterprise:
        ent = self.enterprises.get(slug.lower())
        if ent is None:
            raise NotFound()
        return ent

    def org(self, login: str) -> Org:
        org = self.orgs.get(login.lower())
        if org is None:
            raise NotFound()
        return org

    def repo(self, owner: str, name: str) -> Repo:
        repo = self.repos.get(f"{owner}/{name}".lower())
        if repo is None:
            raise NotFound()
        return repo

    def repo_by_name(self, full_name: str) -> Repo:
        owner, _, name = full_name.partition("/")
        return self.repo(owner, name)

    def scope_exists(self, scope: Scope) -> Scope:
        """Canonical spelling of an existing scope; :class:`NotFound` if there is none."""
        if scope.kind == "repo":
            return Scope("repo", self.repo_by_name(scope.name).full_name)
        if scope.kind == "org":
            return Scope("org", self.org(scope.name).login)
        return Scope("enterprise", self.enterprise(scope.name).slug)

    def enterprise_of_repo(self, repo: Repo) -> Enterprise | None:
        org = self.orgs.get(repo.owner.lower())
        if org is None or org.enterprise is None:
            return None
        return self.enterprises.get(org.enterprise.lower())

    def group(self, scope: Scope, group_id: int) -> RunnerGroup:
        groups = self.groups.get(scope.key)
        if groups is None:
            raise NotFound()
        group = groups.get(group_id)
        if group is None and scope.kind == "org":
            group = next((g for g in self.inherited_groups(scope.name) if g.id == group_id), None)
        if group is None:
            raise NotFound()
        return group

    def group_by_name(self, scope: Scope, name: str) -> RunnerGroup | None:
        candidates = list(self.groups.get(scope.key, {}).values())
        if scope.kind == "org":
            candidates += self.inherited_groups(scope.name)
        return next((g for g in candidates if g.name.lower() == name.lower()), None)

    def inherited_groups(self, org_login: str) -> list[RunnerGroup]:
        """Enterprise runner groups (other than the enterprise default) shared with an organization."""
        org = self.org(org_login)
        if org.enterprise is None:
            return []
        out = []
        for group in self.groups.get(Scope("enterprise", org.enterprise).key, {}).values():
            if group.default:
                continue
            if group.visibility == "all" or org.id in group.selected_organization_ids:
                out.append(group)
        return out

    def org_groups(self, org_login: str, visible_to_repository: str | None = None) -> list[RunnerGroup]:
        org = self.org(org_login)
        groups = list(self.groups[Scope("org", org.login).key].values()) + self.inherited_groups(org.login)
        if visible_to_repository is not None:
            repo = self.repo(org.login, visible_to_repository)
            groups = [g for g in groups if self._group_admits_repo(g, repo)]
        return groups

    def enterprise_groups(self, slug: str, visible_to_organization: str | None = None) -> list[RunnerGroup]:
        ent = self.enterprise(slug)
        groups = list(self.groups[Scope("enterprise", ent.slug).key].values())
        if visible_to_organization is not None:
            org = self.org(visible_to_organization)
            groups = [g for g in groups if g.visibility == "all" or org.id in g.selected_organization_ids]
        return groups

    def group_repositories(self, group: RunnerGroup) -> list[Repo]:
        if group.scope.kind != "org":
            return []
        if group.visibility == "selected":
            return [
                self.repos_by_id[i] for i in sorted(group.selected_repository_ids) if i in self.repos_by_id
            ]
        return []

    def group_organizations(self, group: RunnerGroup) -> list[Org]:
        if group.scope.kind != "enterprise" or group.visibility != "selected":
            return []
        return sorted(
            (o for o in self.orgs.values() if o.id in group.selected_organization_ids), key=lambda o: o.id
        )

    # ----------------------------------------------------------------------------------------
    # tokens

    def issue_token(self, scope: Scope, kind: Literal["registration", "remove"]) -> IssuedToken:
        scope = self.scope_exists(scope)
        tok = IssuedToken(
            _rand(_TOKEN_ALPHABET, 29), kind, scope, self.now() + self.config.registration_token_ttl_s
        )
        self.issued[tok.token] = tok
        return tok

    def issue_installation_token(
        self,
        installation_id: int,
        *,
        permissions: dict[str, str] | None = None,
        repositories: Iterable[str] | None = None,
        repository_ids: Iterable[int] | None = None,
    ) -> InstallationToken:
        inst = self.installations.get(installation_id)
        if inst is None:
            raise NotFound()
        if inst.suspended:
            raise ValidationFailed("This installation has been suspended")
        perms = dict(inst.permissions)
        if permissions is not None:
            for name, level in permissions.items():
                granted = inst.permissions.get(name)
                if granted is None or (granted == "read" and level != "read"):
                    raise ValidationFailed("The permissions requested are not granted to this installation.")
            perms = dict(permissions)
        repo_ids: set[int] | None = None
        if repositories is not None or repository_ids is not None:
            repo_ids = set()
            for full in repositories or ():
                repo = self.repos.get(f"{inst.account}/{full}".lower()) or self.repos.get(full.lower())
                if repo is None or not self.installation_covers(inst, repo):
                    raise ValidationFailed(_NOT_ACCESSIBLE_REPO)
                repo_ids.add(repo.id)
            for rid in repository_ids or ():
                repo = self.repos_by_id.get(rid)
                if repo is None or not self.installation_covers(inst, repo):
                    raise ValidationFailed(_NOT_ACCESSIBLE_REPO)
                repo_ids.add(rid)
        tok = InstallationToken(
            "ghs_" + _rand(_ALNUM, 36),
            inst.id,
            self.now() + self.config.installation_token_ttl_s,
            perms,
            repo_ids,
        )
        self.installation_tokens[tok.token] = tok
        return tok

    def installation_covers(self, inst: Installation, repo: Repo) -> bool:
        if inst.account_kind == "enterprise":
            ent = self.enterprise_of_repo(repo)
            return ent is not None and ent.slug.lower() == inst.account.lower()
        if repo.owner.lower() != inst.account.lower():
            return False
        return inst.repository_selection == "all" or repo.id in inst.repository_ids

    def installation_for(self, app_id: int | None, scope: Scope) -> Installation | None:
        """The installation (of ``app_id``, or of any app) that covers ``scope``."""
        for inst in self.installations.values():
            if app_id is not None and inst.app_id != app_id:
                continue
            if scope.kind == "repo":
                repo = self.repo_by_name(scope.name)
                if self.installation_covers(inst, repo):
                    return inst
            elif inst.account.lower() == scope.name.lower() and (
                (scope.kind == "org" and inst.account_kind == "org")
                or (scope.kind == "enterprise" and inst.account_kind == "enterprise")
            ):
                return inst
        return None

    # ----------------------------------------------------------------------------------------
    # runners: the REST side

    def runners_in(self, scope: Scope, name: str | None = None) -> list[Runner]:
        runners = self._runners_by_scope.get(self.scope_exists(scope).key, {})
        if name is None:
            return list(runners.values())
        return [r for r in runners.values() if r.name == name]

    def runner(self, scope: Scope, runner_id: int) -> Runner:
        runner = self._runners_by_scope.get(scope.key, {}).get(runner_id)
        if runner is None:
            raise NotFound()
        return runner

    def runner_online(self, runner: Runner) -> bool:
        if runner.job_id is not None:
            return True
        if runner.last_seen is None:
            return False
        return self.now() - runner.last_seen < self.config.runner_offline_after_s

    def runner_busy(self, runner: Runner) -> bool:
        """The ``busy`` flag as the REST API reports it (with the optional reporting lag)."""
        if runner.job_id is None:
            return False
        job = self.jobs[runner.job_id]
        if job.status != "in_progress" or job.started_at is None:
            return False
        return self.now() - job.started_at >= self.config.busy_flag_delay_s

    def generate_jit(
        self, scope: Scope, name: str, runner_group_id: int, labels: list[str], work_folder: str = "_work"
    ) -> tuple[Runner, str]:
        scope = self.scope_exists(scope)
        if not name:
            raise ValidationFailed('Invalid request.\n\n"name" wasn\'t supplied.')
        if not labels or len(labels) > 100:
            raise ValidationFailed("labels must have between 1 and 100 items")
        group = self._group_for_registration(scope, group_id=runner_group_id)
        if any(r.name.lower() == name.lower() for r in self._runners_by_scope.get(scope.key, {}).values()):
            raise Conflict("Already exists - A runner with the name " + name + " already exists.")
        runner = self._add_runner(scope, name, group, labels, ephemeral=True, default_labels=True)
        runner.jit = True
        runner.os = "unknown"  # as GitHub shows a JIT runner that has not connected yet
        runner.jit_secret = secrets.token_urlsafe(24)
        self._jit[runner.jit_secret] = runner.id
        return runner, self._encode_jit(runner, scope, work_folder)

    def _encode_jit(self, runner: Runner, scope: Scope, work_folder: str) -> str:
        # Shaped like the real thing (base64 of a JSON map of base64 files); the simulator only
        # reads the credential back.
        def b64(obj: Any) -> str:
            return base64.b64encode(json.dumps(obj).encode()).decode()

        dot_runner = {
            "AgentId": str(runner.id),
            "AgentName": runner.name,
            "PoolId": str(runner.group_id),
            "PoolName": runner.group_name,
            "ServerUrl": "ghsim",
            "GitHubUrl": scope.name,
            "WorkFolder": work_folder,
            "Ephemeral": "true",
        }
        credentials = {"Scheme": "OAuthAccessToken", "Data": {"token": runner.jit_secret}}
        return b64({".runner": b64(dot_runner), ".credentials": b64(credentials)})

    @staticmethod
    def decode_jit(encoded: str) -> str | None:
        """The secret inside an encoded JIT config, or ``None`` if it is not one."""
        try:
            outer = json.loads(base64.b64decode(encoded, validate=True))
            creds = json.loads(base64.b64decode(outer[".credentials"], validate=True))
            token = creds["Data"]["token"]
        except (ValueError, KeyError, TypeError):
            return None
        return token if isinstance(token, str) else None

    def delete_runner(self, scope: Scope, runner_id: int) -> None:
        runner = self.runner(scope, runner_id)
        if runner.job_id is not None:
            job = self.jobs[runner.job_id]
            if job.status == "in_progress" and self.runner_busy(runner):
                raise ValidationFailed(f'Bad request - Runner "{runner.name}" is still running a job"')
        self._remove_runner(runner, reason="deleted")

    def set_labels(self, scope: Scope, runner_id: int, labels: list[str], *, add: bool) -> Runner:
        runner = self.runner(scope, runner_id)
        if len(labels) > 100:
            raise ValidationFailed("at most 100 labels")
        read_only = [lab for lab in runner.labels if lab.type == "read-only"]
        custom = [] if not add else [lab for lab in runner.labels if lab.type == "custom"]
        have = {lab.name.lower() for lab in read_only + custom}
        for name in labels:
            if not name or len(name) > 256:
                raise ValidationFailed(f"invalid label {name!r}")
            if name.lower() not in have:
                custom.append(self._label(name, "custom"))
                have.add(name.lower())
        self._relabel(runner, read_only + custom)
        return runner

    def remove_label(self, scope: Scope, runner_id: int, name: str) -> Runner:
        runner = self.runner(scope, runner_id)
        match = [lab for lab in runner.labels if lab.name.lower() == name.lower()]
        if not match:
            raise NotFound(f"Label {name} not found")
        if match[0].type == "read-only":
            raise ValidationFailed(f"Cannot remove read-only label {name}")
        self._relabel(runner, [lab for lab in runner.labels if lab is not match[0]])
        return runner

    def remove_custom_labels(self, scope: Scope, runner_id: int) -> Runner:
        runner = self.runner(scope, runner_id)
        self._relabel(runner, [lab for lab in runner.labels if lab.type == "read-only"])
        return runner

    def _relabel(self, runner: Runner, labels: list[Label]) -> None:
        was_idle = runner.id in self._idle_key
        self._unidle(runner)
        runner.labels = labels
        if was_idle:
            self._make_idle(runner)
            self._match_runner(runner)

    # ----------------------------------------------------------------------------------------
    # runners: the runner side (virtual runners talk to these through /_runner/)

    def register_runner(
        self,
        token: str,
        scope: Scope,
        name: str,
        labels: list[str],
        *,
        group: str | None = None,
        ephemeral: bool = False,
        replace: bool = True,
        default_labels: bool = True,
    ) -> Registered:
        issued = self.issued.get(token)
        if issued is None or issued.kind != "registration":
            raise RegistrationError(
                "invalid_token", "Http response code: NotFound from 'POST /actions/runner-registration'"
            )
        if issued.expires_at <= self.now():
            raise RegistrationError("expired_token", "The registration token has expired")
        try:
            scope = self.scope_exists(scope)
        except NotFound:
            raise RegistrationError("invalid_token", f"{scope} does not exist") from None
        if scope.key != issued.scope.key:
            raise RegistrationError("invalid_token", f"the registration token is not valid for {scope}")
        if not name:
            raise RegistrationError("invalid_request", "a runner needs a name")
        try:
            group_obj = self._group_for_registration(scope, group_name=group)
        except (NotFound, ValidationFailed) as exc:
            raise RegistrationError(
                "group_not_found", f'Could not find any self-hosted runner group named "{group}".'
            ) from exc
        existing = [
            r for r in self._runners_by_scope.get(scope.key, {}).values() if r.name.lower() == name.lower()
        ]
        if existing:
            if not replace:
                raise RegistrationError("name_conflict", f"A runner exists with the same name {name}.")
            for old in existing:
                self._remove_runner(old, reason="replaced")
        runner = self._add_runner(
            scope, name, group_obj, labels, ephemeral=ephemeral, default_labels=default_labels
        )
        runner.configured = True
        return Registered(runner, self._open_session(runner))

    def redeem_jit(self, encoded: str) -> Registered:
        secret = self.decode_jit(encoded)
        if secret is None:
            raise RegistrationError("invalid_jit", "the JIT configuration cannot be decoded")
        runner_id = self._jit.get(secret)
        runner = self.runners.get(runner_id) if runner_id is not None else None
        if runner is None:
            raise RegistrationError("invalid_jit", "the runner of this JIT configuration no longer exists")
        if runner.configured:
            raise RegistrationError("jit_reused", "this JIT configuration has already been used")
        runner.configured = True
        runner.os = "Linux"
        return Registered(runner, self._open_session(runner))

    def remove_with_token(self, token: str, scope: Scope, name: str) -> None:
        issued = self.issued.get(token)
        if issued is None or issued.kind != "remove" or issued.expires_at <= self.now():
            raise RegistrationError("invalid_token", "invalid or expired remove token")
        if scope.key != issued.scope.key:
            raise RegistrationError("invalid_token", f"the remove token is not valid for {scope}")
        for runner in [r for r in self._runners_by_scope.get(scope.key, {}).values() if r.name == name]:
            self._remove_runner(runner, reason="removed with a remove token")

    def runner_for_session(self, session: str) -> Runner | None:
        """The runner of a session; ``None`` if it was removed.  :class:`NotFound` if never known."""
        runner_id = self._sessions.get(session)
        if runner_id is None:
            if session in self._removed_sessions:
                return None
            raise NotFound("unknown runner session")
        return self.runners[runner_id]

    def poll(self, runner_id: int) -> PollResult:
        """The runner asks for work.  Marks it online; returns its assigned job, if any."""
        runner = self.runners.get(runner_id)
        if runner is None:
            return "removed"
        runner.last_seen = self.now()
        if runner.job_id is not None:
            return self.jobs[runner.job_id]
        if runner.ephemeral and runner.jobs_done:
            return None
        if runner.id not in self._idle_key:
            self._make_idle(runner)
            self._match_runner(runner)
        return self._current_job(runner)

    def _current_job(self, runner: Runner) -> Job | None:
        return self.jobs[runner.job_id] if runner.job_id is not None else None

    def start_job(self, runner_id: int, job_id: int) -> Job:
        runner, job = self._runner_job(runner_id, job_id)
        runner.last_seen = self.now()
        if job.status == "in_progress":
            return job
        if job.status != "queued":
            raise Conflict(f"job {job_id} is {job.status}")
        self._assigned.pop(job.id, None)
        job.status = "in_progress"
        job.started_at = self.now()
        self._running.add(job.id)
        self._job_event("in_progress", job)
        self._refresh_run(job.run_id)
        return job

    def heartbeat(self, runner_id: int, job_id: int | None = None) -> bool:
        """The runner is alive (and working on ``job_id``).  False if that job was cancelled."""
        runner = self.runners.get(runner_id)
        if runner is None:
            return False
        runner.last_seen = self.now()
        if job_id is None:
            return True
        return runner.job_id == job_id

    def complete_job(self, runner_id: int, job_id: int, conclusion: str | None = None) -> bool:
        """The runner finished ``job_id``.  Returns True when the runner is removed (ephemeral)."""
        runner, job = self._runner_job(runner_id, job_id)
        runner.last_seen = self.now()
        if job.status == "queued":
            self.start_job(runner_id, job_id)
        if conclusion is not None and conclusion not in CONCLUSIONS:
            raise ValidationFailed(f"conclusion must be one of {', '.join(CONCLUSIONS)}")
        self._finish(job, conclusion or job.planned_conclusion)
        runner.job_id = None
        runner.jobs_done += 1
        if runner.ephemeral:
            self._remove_runner(runner, reason="ephemeral runner finished its job")
            return True
        self._make_idle(runner)
        self._match_runner(runner)
        return False

    def disconnect(self, runner_id: int) -> None:
        """The runner process went away without finishing (pod deleted, crash)."""
        runner = self.runners.get(runner_id)
        if runner is None:
            return
        self._unidle(runner)
        runner.last_seen = None
        if runner.job_id is not None:
            self._lose_job(runner, "runner disconnected")

    def _runner_job(self, runner_id: int, job_id: int) -> tuple[Runner, Job]:
        runner = self.runners.get(runner_id)
        if runner is None:
            raise NotFound("runner removed")
        job = self.jobs.get(job_id)
        if job is None or runner.job_id != job_id:
            raise Conflict(f"job {job_id} is not assigned to runner {runner.name}")
        return runner, job

    def _open_session(self, runner: Runner) -> str:
        runner.session = secrets.token_urlsafe(24)
        self._sessions[runner.session] = runner.id
        return runner.session

    def _group_for_registration(
        self, scope: Scope, *, group_id: int | None = None, group_name: str | None = None
    ) -> RunnerGroup | None:
        if scope.kind == "repo":
            if group_id not in (None, 1) or (group_name or "default").lower() != "default":
                raise NotFound("repository runners belong to the Default group")
            return None
        if group_id is not None:
            group = self.groups[scope.key].get(group_id)
            if group is None:
                raise NotFound(f"No runner group with id {group_id}")
            return group
        if not group_name:
            return self.groups[scope.key][1]
        group = next(
            (g for g in self.groups[scope.key].values() if g.name.lower() == group_name.lower()), None
        )
        if group is None:
            raise NotFound(f"No runner group named {group_name}")
        return group

    def _add_runner(
        self,
        scope: Scope,
        name: str,
        group: RunnerGroup | None,
        labels: list[str],
        *,
        ephemeral: bool,
        default_labels: bool,
    ) -> Runner:
        out: list[Label] = []
        seen: set[str] = set()
        if default_labels:
            for lab in DEFAULT_LABELS:
                out.append(self._label(lab, "read-only"))
                seen.add(lab.lower())
        for lab in labels:
            lab = lab.strip()
            if lab and lab.lower() not in seen:
                out.append(self._label(lab, "custom"))
                seen.add(lab.lower())
        runner = Runner(
            next(self._runner_ids),
            name,
            scope,
            group,
            out,
            ephemeral,
            self.now(),
            self.config.runner_version,
        )
        self.runners[runner.id] = runner
        self._runners_by_scope.setdefault(scope.key, {})[runner.id] = runner
        return runner

    def _remove_runner(self, runner: Runner, *, reason: str) -> None:
        self._unidle(runner)
        if runner.job_id is not None:
            self._lose_job(runner, reason)
        self.runners.pop(runner.id, None)
        self._runners_by_scope.get(runner.scope.key, {}).pop(runner.id, None)
        if runner.session is not None:
            self._sessions.pop(runner.session, None)
            self._removed_sessions.add(runner.session)
        if runner.jit_secret is not None:
            self._jit.pop(runner.jit_secret, None)
        self._emit(RunnerWake(runner.id))

    def _lose_job(self, runner: Runner, reason: str) -> None:
        """The runner can no longer do its job: a started job fails, an unstarted one is re-queued."""
        assert runner.job_id is not None
        job = self.jobs[runner.job_id]
        runner.job_id = None
        if job.status == "in_progress":
            self._finish(job, "failure")
        elif job.status == "queued":
            self._requeue(job)

    # ----------------------------------------------------------------------------------------
    # workflow runs and jobs

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
        now = self.now()
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
        self._runs_by_repo[repo.id][run.id] = None
        for spec in jobs:
            self._create_job(run, spec, attempt=1)
        self._refresh_run(run.id)
        return run

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
            self.now(),
        )
        self.jobs[job.id] = job
        run.job_ids.append(job.id)
        if spec.wait is not None:
            job.status = "waiting"
            self._waiting[job.id] = None if spec.wait <= 0 else self.now() + spec.wait
            self._job_event("waiting", job)
        else:
            self._queue_job(job, emit=True)
        return job

    def approve(self, job_id: int) -> Job:
        job = self.jobs.get(job_id)
        if job is None:
            raise NotFound()
        if job.status != "waiting":
            raise ValidationFailed(f"job {job_id} is {job.status}, not waiting")
        self._waiting.pop(job.id, None)
        self._queue_job(job, emit=True)
        self._refresh_run(job.run_id)
        return job

    def cancel_run(self, run_id: int) -> Run:
        run = self.runs.get(run_id)
        if run is None:
            raise NotFound()
        for job_id in run.job_ids:
            job = self.jobs[job_id]
            if job.status == "completed":
                continue
            runner = self.runners.get(job.runner_id) if job.runner_id is not None else None
            started = job.status == "in_progress"
            if not started:
                job.runner_id = job.runner_name = job.runner_group_name = None
                job.runner_group_id = None
            self._waiting.pop(job.id, None)
            self._finish(job, "cancelled")
            if runner is not None and runner.job_id == job.id:
                # the runner learns it at its next heartbeat or poll
                runner.job_id = None
                if started:
                    runner.jobs_done += 1
                    if runner.ephemeral:
                        self._remove_runner(runner, reason="its job was cancelled")
                        continue
                self._emit(RunnerWake(runner.id))
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
        self._refresh_run(run.id)
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

    def _queue_job(self, job: Job, *, emit: bool) -> None:
        job.status = "queued"
        job.queued_at = self.now()
        if emit:
            self._job_event("queued", job)
        key = self._job_key(job)
        runner = self._find_runner(key)
        if runner is not None:
            self._assign(job, runner)
            return
        self._queue.setdefault(key, deque()).append(job.id)

    def _requeue(self, job: Job) -> None:
        self._assigned.pop(job.id, None)
        job.runner_id = job.runner_name = job.runner_group_name = None
        job.runner_group_id = None
        job.assigned_at = None
        job.version += 1
        key = self._job_key(job)
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

    def _finish(self, job: Job, conclusion: str) -> None:
        now = self.now()
        self._assigned.pop(job.id, None)
        self._running.discard(job.id)
        if job.started_at is None:
            job.started_at = now
        job.status = "completed"
        job.conclusion = conclusion
        job.completed_at = now
        self._job_event("completed", job)
        self._refresh_run(job.run_id)

    def _refresh_run(self, run_id: int) -> None:
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
            run.run_started_at = self.now()
        if (status, conclusion) != (run.status, run.conclusion):
            run.status, run.conclusion = status, conclusion
            run.updated_at = self.now()
        run.version += 1

    # ----------------------------------------------------------------------------------------
    # routing

    def _job_key(self, job: Job) -> _JobKey:
        return (job.repo_id, job.labels_key(), job.group.lower() if job.group else None)

    @staticmethod
    def _runner_key(runner: Runner) -> _RunnerKey:
        return (
            runner.scope.level,
            runner.scope.name.lower(),
            runner.group.uid if runner.group is not None else 0,
            runner.labels_key(),
        )

    def eligible(self, job: Job, runner: Runner) -> bool:
        """Could ``runner`` take ``job`` (ignoring whether it is online and idle)?"""
        return self._eligible_keys(self._job_key(job), self._runner_key(runner), runner)

    def _eligible_keys(self, jk: _JobKey, rk: _RunnerKey, runner: Runner) -> bool:
        cached = self._eligible.get((jk, rk))
        if cached is not None:
            return cached
        repo_id, job_labels, group_name = jk
        repo = self.repos_by_id[repo_id]
        ok = job_labels <= rk[3]
        if ok and group_name is not None:
            ok = runner.group_name.lower() == group_name
        if ok:
            ok = self._scope_admits_repo(runner, repo)
        self._eligible[(jk, rk)] = ok
        return ok

    def _scope_admits_repo(self, runner: Runner, repo: Repo) -> bool:
        scope = runner.scope
        if scope.kind == "repo":
            return scope.name.lower() == repo.full_name.lower()
        group = runner.group
        if group is None:
            return False
        if scope.kind == "org":
            return repo.owner.lower() == scope.name.lower() and self._group_admits_repo(group, repo)
        ent = self.enterprise_of_repo(repo)
        return (
            ent is not None
            and ent.slug.lower() == scope.name.lower()
            and self._group_admits_repo(group, repo)
        )

    def _group_admits_repo(self, group: RunnerGroup, repo: Repo) -> bool:
        if not repo.private and not group.allows_public_repositories:
            return False
        if group.scope.kind == "org":
            # "private": every private repository of the organization
            return (
                group.visibility == "all"
                or (group.visibility == "private" and repo.private)
                or (group.visibility == "selected" and repo.id in group.selected_repository_ids)
            )
        org = self.orgs.get(repo.owner.lower())
        if org is None:
            return False
        return group.visibility == "all" or (
            group.visibility == "selected" and org.id in group.selected_organization_ids
        )

    def _make_idle(self, runner: Runner) -> None:
        if runner.id in self._idle_key or runner.job_id is not None or not runner.configured:
            return
        rk = self._runner_key(runner)
        self._idle.setdefault(rk, {})[runner.id] = next(self._idle_seq)
        self._idle_key[runner.id] = rk

    def _unidle(self, runner: Runner) -> None:
        rk = self._idle_key.pop(runner.id, None)
        if rk is None:
            return
        bucket = self._idle[rk]
        bucket.pop(runner.id, None)
        if not bucket:
            del self._idle[rk]

    def _find_runner(self, jk: _JobKey) -> Runner | None:
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

    def _match_runner(self, runner: Runner) -> None:
        """``runner`` just became idle: give it the oldest queued job it may take."""
        rk = self._idle_key.get(runner.id)
        if rk is None:
            return
        best_id: int | None = None
        best_key: _JobKey | None = None
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

    def _rematch_all(self) -> None:
        for runner_id in list(self._idle_key):
            runner = self.runners.get(runner_id)
            if runner is not None and runner.id in self._idle_key:
                self._match_runner(runner)

    def _assign(self, job: Job, runner: Runner) -> None:
        self._unidle(runner)
        now = self.now()
        runner.job_id = job.id
        job.runner_id = runner.id
        job.runner_name = runner.name
        job.runner_group_id = runner.group_id
        job.runner_group_name = runner.group_name
        job.assigned_at = now
        job.assignments += 1
        job.version += 1
        self._assigned[job.id] = now
        self._emit(RunnerWake(runner.id))

    def queued_count(self) -> int:
        return sum(1 for j in self.jobs.values() if j.status == "queued" and j.runner_id is None)

    # ----------------------------------------------------------------------------------------
    # time

    def schedule_trace(self, entries: Iterable[TraceEntry], start: float | None = None) -> int:
        base = self.now() if start is None else start
        n = 0
        for entry in entries:
            self.repo_by_name(entry.repo)  # fail early on unknown repositories
            heapq.heappush(self._trace, (base + entry.offset, next(self._trace_seq), entry))
            n += 1
        return n

    def next_deadline(self) -> float | None:
        """The earliest time at which :meth:`tick` has something to do (``None``: nothing planned)."""
        candidates: list[float] = []
        if self._trace:
            candidates.append(self._trace[0][0])
        if self._assigned:
            candidates.append(min(self._assigned.values()) + self.config.assign_timeout_s)
        approve = [t for t in self._waiting.values() if t is not None]
        if approve:
            candidates.append(min(approve))
        return min(candidates) if candidates else None

    def tick(self) -> None:
        """Do whatever is due: trace arrivals, timeouts, offline runners, expired tokens."""
        now = self.now()
        while self._trace and self._trace[0][0] <= now:
            _, _, entry = heapq.heappop(self._trace)
            repo = self.repo_by_name(entry.repo)
            self.enqueue_run(
                repo,
                [JobSpec(entry.labels, entry.name, entry.duration, entry.conclusion, entry.group)],
                workflow_name=entry.workflow,
            )
        for job_id, when in list(self._waiting.items()):
            if when is not None and when <= now:
                self.approve(job_id)
        timeout = self.config.assign_timeout_s
        for job_id, when in list(self._assigned.items()):
            if when + timeout <= now:
                job = self.jobs[job_id]
                runner = self.runners.get(job.runner_id) if job.runner_id is not None else None
                if runner is not None:
                    runner.job_id = None
                    runner.last_seen = None  # it did not answer: treat it as offline
                    self._unidle(runner)
                self._requeue(job)
        if now - self._last_sweep >= min(1.0, self.config.runner_offline_after_s / 4):
            self._sweep(now)

    def _sweep(self, now: float) -> None:
        self._last_sweep = now
        offline_after = self.config.runner_offline_after_s
        for runner_id in list(self._idle_key):
            runner = self.runners[runner_id]
            if runner.last_seen is None or now - runner.last_seen >= offline_after:
                self._unidle(runner)
        lease = self.config.job_lease_s
        for job_id in list(self._running):
            job = self.jobs[job_id]
            worker = self.runners.get(job.runner_id) if job.runner_id is not None else None
            if worker is None:
                self._finish(job, "failure")
            elif worker.last_seen is None or now - worker.last_seen >= lease:
                worker.job_id = None
                worker.last_seen = None
                self._finish(job, "failure")
        limit = self.config.queue_timeout_s
        for jk, dq in list(self._queue.items()):
            while dq and (self.jobs[dq[0]].status != "queued" or now - self.jobs[dq[0]].created_at >= limit):
                job = self.jobs[dq.popleft()]
                if job.status == "queued":
                    self._finish(job, "cancelled")
            if not dq:
                del self._queue[jk]
        for token in [t for t, it in self.issued.items() if it.expires_at <= now - 86_400]:
            del self.issued[token]
        for token in [t for t, it in self.installation_tokens.items() if it.expires_at <= now - 86_400]:
            del self.installation_tokens[token]

    # ----------------------------------------------------------------------------------------
    # reporting

    def job_times(self, job: Job) -> dict[str, Any]:
        repo = self.repos_by_id[job.repo_id]
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
        repo_id = self.repo_by_name(repo).id if repo else None
        for job in self.jobs.values():
            if repo_id is not None and job.repo_id != repo_id:
                continue
            if status is not None and job.status != status:
                continue
            yield job

    def summary(self) -> dict[str, Any]:
        counts: dict[str, int] = {"waiting": 0, "queued": 0, "assigned": 0, "in_progress": 0, "completed": 0}
        for job in self.jobs.values():
            if job.status == "queued" and job.runner_id is not None:
                counts["assigned"] += 1
            else:
                counts[job.status] += 1
        online = sum(1 for r in self.runners.values() if self.runner_online(r))
        return {
            "jobs": counts,
            "runners": {
                "total": len(self.runners),
                "online": online,
                "idle": len(self._idle_key),
                "busy": sum(1 for r in self.runners.values() if r.job_id is not None),
            },
        }
