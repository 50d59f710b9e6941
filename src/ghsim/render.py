"""JSON shapes of GitHub's REST resources and webhook sub-objects.

The shapes follow the pinned OpenAPI description (``@octokit/openapi``) and webhook schemas
(``@octokit/webhooks-schemas``); the tests validate them against both.  URLs point at the simulator
itself, so a client that follows them stays inside the simulator.
"""

from __future__ import annotations

import base64
import json
import zlib
from typing import Any

from .clock import iso
from .entities import App, Enterprise, Installation, Job, Org, Repo, Run, Runner, RunnerGroup
from .model import JobSnapshot, World

JSON = dict[str, Any]


def node_id(kind: str, ident: int | str) -> str:
    return base64.b64encode(f"0:{kind}{ident}".encode()).decode().rstrip("=")


def _user_id(login: str) -> int:
    return 1_000_000 + zlib.crc32(login.lower().encode()) % 50_000_000


def repository_urls(api: str) -> JSON:
    """A repository's API URL templates (``forks_url`` to ``deployments_url``), below its ``url``."""
    return {
        "forks_url": f"{api}/forks",
        "keys_url": f"{api}/keys{{/key_id}}",
        "collaborators_url": f"{api}/collaborators{{/collaborator}}",
        "teams_url": f"{api}/teams",
        "hooks_url": f"{api}/hooks",
        "issue_events_url": f"{api}/issues/events{{/number}}",
        "events_url": f"{api}/events",
        "assignees_url": f"{api}/assignees{{/user}}",
        "branches_url": f"{api}/branches{{/branch}}",
        "tags_url": f"{api}/tags",
        "blobs_url": f"{api}/git/blobs{{/sha}}",
        "git_tags_url": f"{api}/git/tags{{/sha}}",
        "git_refs_url": f"{api}/git/refs{{/sha}}",
        "trees_url": f"{api}/git/trees{{/sha}}",
        "statuses_url": f"{api}/statuses/{{sha}}",
        "languages_url": f"{api}/languages",
        "stargazers_url": f"{api}/stargazers",
        "contributors_url": f"{api}/contributors",
        "subscribers_url": f"{api}/subscribers",
        "subscription_url": f"{api}/subscription",
        "commits_url": f"{api}/commits{{/sha}}",
        "git_commits_url": f"{api}/git/commits{{/sha}}",
        "comments_url": f"{api}/comments{{/number}}",
        "issue_comment_url": f"{api}/issues/comments{{/number}}",
        "contents_url": f"{api}/contents/{{+path}}",
        "compare_url": f"{api}/compare/{{base}}...{{head}}",
        "merges_url": f"{api}/merges",
        "archive_url": f"{api}/{{archive_format}}{{/ref}}",
        "downloads_url": f"{api}/downloads",
        "issues_url": f"{api}/issues{{/number}}",
        "pulls_url": f"{api}/pulls{{/number}}",
        "milestones_url": f"{api}/milestones{{/number}}",
        "notifications_url": f"{api}/notifications{{?since,all,participating}}",
        "labels_url": f"{api}/labels{{/name}}",
        "releases_url": f"{api}/releases{{/id}}",
        "deployments_url": f"{api}/deployments",
    }


class Renderer:
    def __init__(self, world: World, api_url: str, html_url: str | None = None) -> None:
        self.world = world
        self.api = api_url.rstrip("/")
        self.html = (html_url or api_url).rstrip("/")
        self._repo_cache: dict[int, JSON] = {}
        self._repo_bytes: dict[int, bytes] = {}
        self._job_cache: dict[int, tuple[int, bytes]] = {}
        self._run_cache: dict[int, tuple[int, bytes]] = {}

    # ---- accounts ----------------------------------------------------------------------------

    def user(self, login: str, *, kind: str = "User", ident: int | None = None) -> JSON:
        if ident is None:
            known = self.world.users.get(login.lower())
            org = self.world.orgs.get(login.lower())
            ident = known.id if known else org.id if org else _user_id(login)
            if org is not None:
                kind = "Organization"
        base = f"{self.api}/users/{login}"
        return {
            "login": login,
            "id": ident,
            "node_id": node_id("User", ident),
            "avatar_url": f"{self.html}/avatars/u/{ident}?v=4",
            "gravatar_id": "",
            "url": base,
            "html_url": f"{self.html}/{login}",
            "followers_url": f"{base}/followers",
            "following_url": f"{base}/following{{/other_user}}",
            "gists_url": f"{base}/gists{{/gist_id}}",
            "starred_url": f"{base}/starred{{/owner}}{{/repo}}",
            "subscriptions_url": f"{base}/subscriptions",
            "organizations_url": f"{base}/orgs",
            "repos_url": f"{base}/repos",
            "events_url": f"{base}/events{{/privacy}}",
            "received_events_url": f"{base}/received_events",
            "type": kind,
            "site_admin": False,
        }

    def organization(self, org: Org) -> JSON:
        base = f"{self.api}/orgs/{org.login}"
        return {
            "login": org.login,
            "id": org.id,
            "node_id": node_id("Organization", org.id),
            "url": base,
            "repos_url": f"{base}/repos",
            "events_url": f"{base}/events",
            "hooks_url": f"{base}/hooks",
            "issues_url": f"{base}/issues",
            "members_url": f"{base}/members{{/member}}",
            "public_members_url": f"{base}/public_members{{/member}}",
            "avatar_url": f"{self.html}/avatars/u/{org.id}?v=4",
            "description": org.description,
        }

    def enterprise(self, ent: Enterprise) -> JSON:
        return {
            "id": ent.id,
            "node_id": node_id("Enterprise", ent.id),
            "name": ent.name,
            "slug": ent.slug,
            "description": None,
            "website_url": None,
            "html_url": f"{self.html}/enterprises/{ent.slug}",
            "created_at": iso(ent.created_at),
            "updated_at": iso(ent.created_at),
            "avatar_url": f"{self.html}/avatars/b/{ent.id}?v=4",
        }

    def repository(self, repo: Repo) -> JSON:
        """A repository in the shape both ``minimal-repository`` (REST) and webhooks accept."""
        cached = self._repo_cache.get(repo.id)
        if cached is not None:
            return cached
        api = f"{self.api}/repos/{repo.full_name}"
        html = f"{self.html}/{repo.full_name}"
        host = self.html.split("://", 1)[-1]
        out: JSON = {
            "id": repo.id,
            "node_id": node_id("Repository", repo.id),
            "name": repo.name,
            "full_name": repo.full_name,
            "private": repo.private,
            "owner": self.user(repo.owner, kind=repo.owner_type, ident=repo.owner_id),
            "html_url": html,
            "description": None,
            "fork": False,
            "url": api,
            **repository_urls(api),
            "created_at": iso(repo.created_at),
            "updated_at": iso(repo.created_at),
            "pushed_at": iso(repo.created_at),
            "git_url": f"git://{host}/{repo.full_name}.git",
            "ssh_url": f"git@{host.split(':')[0]}:{repo.full_name}.git",
            "clone_url": f"{html}.git",
            "svn_url": html,
            "homepage": None,
            "size": 0,
            "stargazers_count": 0,
            "watchers_count": 0,
            "language": None,
            "has_issues": True,
            "has_projects": True,
            "has_downloads": True,
            "has_wiki": True,
            "has_pages": False,
            "has_discussions": False,
            "forks_count": 0,
            "mirror_url": None,
            "archived": False,
            "disabled": False,
            "open_issues_count": 0,
            "license": None,
            "allow_forking": True,
            "is_template": False,
            "web_commit_signoff_required": False,
            "topics": [],
            "visibility": "private" if repo.private else "public",
            "forks": 0,
            "open_issues": 0,
            "watchers": 0,
            "default_branch": repo.default_branch,
            "custom_properties": {},
        }
        self._repo_cache[repo.id] = out
        return out

    # ---- runners -------------------------------------------------------------------------------

    def runner(self, runner: Runner) -> JSON:
        return {
            "id": runner.id,
            "name": runner.name,
            "os": runner.os,
            "status": "online" if self.world.runner_online(runner) else "offline",
            "busy": self.world.runner_busy(runner),
            "ephemeral": runner.ephemeral,
            "runner_group_id": runner.group_id,
            "labels": [{"id": lab.id, "name": lab.name, "type": lab.type} for lab in runner.labels],
        }

    def labels(self, runner: Runner, *, custom_only: bool = False) -> JSON:
        labels = [
            {"id": lab.id, "name": lab.name, "type": lab.type}
            for lab in runner.labels
            if not custom_only or lab.type == "custom"
        ]
        return {"total_count": len(labels), "labels": labels}

    def runner_group(self, group: RunnerGroup, *, for_org: str | None = None) -> JSON:
        scope = group.scope
        as_org = scope.kind == "org" or for_org is not None
        inherited = as_org and scope.kind == "enterprise"
        if as_org:
            base = f"{self.api}/orgs/{for_org or scope.name}/actions/runner-groups/{group.id}"
        else:
            base = f"{self.api}/enterprises/{scope.name}/actions/runner-groups/{group.id}"
        out: JSON = {
            "id": group.id,
            "name": group.name,
            "visibility": group.visibility,
            "default": group.default,
            "runners_url": f"{base}/runners",
            "hosted_runners_url": f"{base}/hosted-runners",
        }
        if as_org:
            out["inherited"] = inherited
        out["allows_public_repositories"] = group.allows_public_repositories
        out["restricted_to_workflows"] = group.restricted_to_workflows
        out["selected_workflows"] = []
        out["workflow_restrictions_read_only"] = inherited
        if inherited:
            out["inherited_allows_public_repositories"] = group.allows_public_repositories
        if group.visibility == "selected" and not inherited:
            selected = "repositories" if as_org else "organizations"
            out[f"selected_{selected}_url"] = f"{base}/{selected}"
        return out

    # ---- runs and jobs ---------------------------------------------------------------------------

    def job(self, job: Job) -> JSON:
        return self.job_snapshot(JobSnapshot.of(job))

    def job_json(self, job: Job) -> bytes:
        """The job as JSON text, cached until the job changes (for long lists)."""
        cached = self._job_cache.get(job.id)
        if cached is not None and cached[0] == job.version:
            return cached[1]
        out = _dumps(self.job(job))
        self._job_cache[job.id] = (job.version, out)
        return out

    def repository_json(self, repo: Repo) -> bytes:
        cached = self._repo_bytes.get(repo.id)
        if cached is None:
            cached = self._repo_bytes[repo.id] = _dumps(self.repository(repo))
        return cached

    def run_json(self, run: Run) -> bytes:
        """The run as JSON text, cached until the run changes (for long lists)."""
        cached = self._run_cache.get(run.id)
        if cached is not None and cached[0] == run.version:
            return cached[1]
        out = self._run_fields(run)
        repo = self.repository_json(self.world.repos_by_id[run.repo_id])
        text = _dumps(out)[:-1] + b',"repository":' + repo + b',"head_repository":' + repo + b"}"
        self._run_cache[run.id] = (run.version, text)
        return text

    def job_snapshot(self, job: JobSnapshot) -> JSON:
        repo = self.world.repos_by_id[job.repo_id]
        api = f"{self.api}/repos/{repo.full_name}"
        started = job.started_at if job.started_at is not None else job.created_at
        steps: list[JSON] = []
        if job.status == "in_progress":
            steps = [_step("Set up job", 1, "in_progress", None, started, None)]
        elif job.status == "completed" and job.runner_id is not None:
            assert job.completed_at is not None
            assert job.conclusion is not None
            steps = [
                _step("Set up job", 1, "completed", "success", started, started),
                _step("Run job", 2, "completed", job.conclusion, started, job.completed_at),
                _step("Complete job", 3, "completed", "success", job.completed_at, job.completed_at),
            ]
        return {
            "id": job.id,
            "run_id": job.run_id,
            "run_url": f"{api}/actions/runs/{job.run_id}",
            "run_attempt": job.run_attempt,
            "node_id": node_id("CheckRun", job.id),
            "head_sha": job.head_sha,
            "url": f"{api}/actions/jobs/{job.id}",
            "html_url": f"{self.html}/{repo.full_name}/actions/runs/{job.run_id}/job/{job.id}",
            "status": job.status,
            "conclusion": job.conclusion,
            "created_at": iso(job.created_at),
            "started_at": iso(started),
            "completed_at": iso(job.completed_at) if job.completed_at is not None else None,
            "name": job.name,
            "steps": steps,
            "check_run_url": f"{api}/check-runs/{job.id}",
            "labels": list(job.labels),
            "runner_id": job.runner_id,
            "runner_name": job.runner_name,
            "runner_group_id": job.runner_group_id,
            "runner_group_name": job.runner_group_name,
            "workflow_name": job.workflow_name,
            "head_branch": job.head_branch,
        }

    def run(self, run: Run) -> JSON:
        out = self._run_fields(run)
        repo_json = self.repository(self.world.repos_by_id[run.repo_id])
        out["repository"] = repo_json
        out["head_repository"] = repo_json
        return out

    def _run_fields(self, run: Run) -> JSON:
        """Everything of a run but its two repository objects."""
        repo = self.world.repos_by_id[run.repo_id]
        api = f"{self.api}/repos/{repo.full_name}"
        base = f"{api}/actions/runs/{run.id}"
        actor = self.user(run.actor)
        out: JSON = {
            "id": run.id,
            "name": run.workflow_name,
            "node_id": node_id("WorkflowRun", run.id),
            "check_suite_id": run.id + 1,
            "check_suite_node_id": node_id("CheckSuite", run.id + 1),
            "head_branch": run.head_branch,
            "head_sha": run.head_sha,
            "path": run.path,
            "display_title": f"{run.workflow_name} #{run.run_number}",
            "run_number": run.run_number,
            "event": run.event,
            "status": run.status,
            "conclusion": run.conclusion,
            "workflow_id": run.workflow_id,
            "url": base,
            "html_url": f"{self.html}/{repo.full_name}/actions/runs/{run.id}",
            "pull_requests": [],
            "created_at": iso(run.created_at),
            "updated_at": iso(run.updated_at),
            "actor": actor,
            "triggering_actor": actor,
            "run_attempt": run.run_attempt,
            "referenced_workflows": [],
            "run_started_at": iso(run.run_started_at or run.created_at),
            "jobs_url": f"{base}/jobs",
            "logs_url": f"{base}/logs",
            "check_suite_url": f"{api}/check-suites/{run.id + 1}",
            "artifacts_url": f"{base}/artifacts",
            "cancel_url": f"{base}/cancel",
            "rerun_url": f"{base}/rerun",
            "previous_attempt_url": (
                f"{base}/attempts/{run.run_attempt - 1}" if run.run_attempt > 1 else None
            ),
            "workflow_url": f"{api}/actions/workflows/{run.workflow_id}",
            "head_commit": {
                "id": run.head_sha,
                "tree_id": run.head_sha[::-1],
                "message": f"{run.workflow_name} run {run.run_number}",
                "timestamp": iso(run.created_at),
                "author": {"name": run.actor, "email": f"{run.actor}@users.noreply.ghsim.local"},
                "committer": {"name": run.actor, "email": f"{run.actor}@users.noreply.ghsim.local"},
            },
        }
        return out

    # ---- apps ------------------------------------------------------------------------------------

    def installation(self, inst: Installation, app: App) -> JSON:
        if inst.account_kind == "enterprise":
            account = self.enterprise(self.world.enterprise(inst.account))
            target_type = "Enterprise"
        else:
            account = self.user(inst.account)
            # ``apps/list-installations`` describes the account as simple-user *and* enterprise
            # (allOf), so carry the enterprise fields too; clients ignore what they do not read
            created = self.world.orgs[inst.account.lower()].created_at if inst.account_kind == "org" else 0.0
            account.update(
                name=inst.account, slug=inst.account, created_at=iso(created), updated_at=iso(created)
            )
            target_type = "Organization" if inst.account_kind == "org" else "User"
        html = (
            f"{self.html}/organizations/{inst.account}/settings/installations/{inst.id}"
            if inst.account_kind == "org"
            else f"{self.html}/settings/installations/{inst.id}"
        )
        return {
            "id": inst.id,
            "client_id": app.client_id,
            "account": account,
            "repository_selection": inst.repository_selection,
            "access_tokens_url": f"{self.api}/app/installations/{inst.id}/access_tokens",
            "repositories_url": f"{self.api}/installation/repositories",
            "html_url": html,
            "app_id": app.id,
            "app_slug": app.slug,
            "target_id": inst.account_id,
            "target_type": target_type,
            "permissions": dict(inst.permissions),
            "events": list(app.events),
            "created_at": iso(inst.created_at),
            "updated_at": iso(inst.created_at),
            "single_file_name": None,
            "has_multiple_single_files": False,
            "single_file_paths": [],
            "suspended_by": None,
            "suspended_at": None,
        }


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _step(
    name: str, number: int, status: str, conclusion: str | None, started: float, completed: float | None
) -> JSON:
    return {
        "name": name,
        "status": status,
        "conclusion": conclusion,
        "number": number,
        "started_at": iso(started),
        "completed_at": iso(completed) if completed is not None else None,
    }
