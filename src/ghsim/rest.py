"""GitHub's REST operations that a runner controller uses, and the route table that lists them.

:data:`ROUTES` is the single list of implemented operations (by OpenAPI ``operationId``); the
server mounts each at ``/`` (github.com) and under ``/api/v3`` (GHES), and the conformance tests
walk the same list. The App operations are :mod:`ghsim.apps`'s, the hook deliveries API
:mod:`ghsim.hookdeliveries`'s and the hook listings :mod:`ghsim.hooklistings`'s; this module holds
the runners, runner groups, runs, jobs and the rate limit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from . import apps, hookdeliveries, hooklistings
from .auth import Need
from .clock import iso_ms
from .entities import Repo, Run, RunnerGroup, Scope
from .errors import Conflict, NotFound, ValidationFailed
from .httputil import Ctx, Handler, Reply, Route, json_list, paginate
from .model import JobSnapshot

RUNNERS_DOCS = "https://docs.github.com/rest/actions/self-hosted-runners"
GROUPS_DOCS = "https://docs.github.com/rest/actions/self-hosted-runner-groups"
RUNS_DOCS = "https://docs.github.com/rest/actions/workflow-runs"
JOBS_DOCS = "https://docs.github.com/rest/actions/workflow-jobs"
RATE_DOCS = "https://docs.github.com/rest/rate-limit/rate-limit"

T = TypeVar("T")


def _scope(ctx: Ctx) -> Scope:
    assert ctx.scope is not None
    return ctx.scope


def _listing(ctx: Ctx, key: str, items: list[T], render: Callable[[T], dict[str, Any]]) -> Reply:
    """One page of ``items`` rendered under ``key``, with GitHub's ``total_count`` and ``Link`` header."""
    page, headers = paginate(ctx.request, items)
    return Reply(200, {"total_count": len(items), key: [render(x) for x in page]}, headers)


def _group(ctx: Ctx) -> RunnerGroup:
    return ctx.core.world.group(_scope(ctx), ctx.int_param("runner_group_id"))


def _labels_body(body: dict[str, Any], *, allow_empty: bool) -> list[str]:
    labels = body.get("labels")
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise ValidationFailed("Invalid request.\n\nFor 'properties/labels', nil is not an array.")
    if not labels and not allow_empty:
        raise ValidationFailed(
            "Invalid request.\n\nFor 'properties/labels', [] should have at least 1 item(s)."
        )
    if len(labels) > 100:
        raise ValidationFailed("Invalid request.\n\nFor 'properties/labels', too many items (maximum 100).")
    return labels


# ---- runners ------------------------------------------------------------------------------------


async def list_runners(ctx: Ctx) -> Reply:
    name = ctx.request.query.get("name")
    runners = sorted(ctx.core.world.runners_in(_scope(ctx), name=name), key=lambda r: r.id)
    return _listing(ctx, "runners", runners, ctx.core.renderer.runner)


async def get_runner(ctx: Ctx) -> Reply:
    runner = ctx.core.world.runner(_scope(ctx), ctx.int_param("runner_id"))
    return Reply(200, ctx.core.renderer.runner(runner))


async def delete_runner(ctx: Ctx) -> Reply:
    ctx.core.world.delete_runner(_scope(ctx), ctx.int_param("runner_id"))
    return Reply(204)


async def list_labels(ctx: Ctx) -> Reply:
    runner = ctx.core.world.runner(_scope(ctx), ctx.int_param("runner_id"))
    return Reply(200, ctx.core.renderer.labels(runner))


async def add_labels(ctx: Ctx) -> Reply:
    labels = _labels_body(await ctx.json(), allow_empty=False)
    runner = ctx.core.world.set_labels(_scope(ctx), ctx.int_param("runner_id"), labels, add=True)
    return Reply(200, ctx.core.renderer.labels(runner))


async def set_labels(ctx: Ctx) -> Reply:
    labels = _labels_body(await ctx.json(), allow_empty=True)
    runner = ctx.core.world.set_labels(_scope(ctx), ctx.int_param("runner_id"), labels, add=False)
    return Reply(200, ctx.core.renderer.labels(runner))


async def remove_all_labels(ctx: Ctx) -> Reply:
    runner = ctx.core.world.remove_custom_labels(_scope(ctx), ctx.int_param("runner_id"))
    return Reply(200, ctx.core.renderer.labels(runner))


async def remove_label(ctx: Ctx) -> Reply:
    runner = ctx.core.world.remove_label(
        _scope(ctx), ctx.int_param("runner_id"), ctx.request.match_info["name"]
    )
    return Reply(200, ctx.core.renderer.labels(runner))


async def registration_token(ctx: Ctx) -> Reply:
    tok = ctx.core.world.issue_token(_scope(ctx), "registration")
    return Reply(201, {"token": tok.token, "expires_at": iso_ms(tok.expires_at)})


async def remove_token(ctx: Ctx) -> Reply:
    tok = ctx.core.world.issue_token(_scope(ctx), "remove")
    return Reply(201, {"token": tok.token, "expires_at": iso_ms(tok.expires_at)})


async def generate_jitconfig(ctx: Ctx) -> Reply:
    body = await ctx.json()
    name = body.get("name")
    group_id = body.get("runner_group_id")
    work_folder = body.get("work_folder", "_work")
    if not isinstance(name, str) or not name:
        raise ValidationFailed('Invalid request.\n\n"name" wasn\'t supplied.')
    if not isinstance(group_id, int) or isinstance(group_id, bool):
        raise ValidationFailed('Invalid request.\n\n"runner_group_id" wasn\'t supplied.')
    if not isinstance(work_folder, str):
        raise ValidationFailed("Invalid request.\n\nwork_folder must be a string.")
    labels = _labels_body(body, allow_empty=False)
    try:
        runner, encoded = ctx.core.world.generate_jit(_scope(ctx), name, group_id, labels, work_folder)
    except NotFound:
        raise NotFound() from None
    return Reply(201, {"runner": ctx.core.renderer.runner(runner), "encoded_jit_config": encoded})


# ---- runner groups -----------------------------------------------------------------------------


async def list_org_groups(ctx: Ctx) -> Reply:
    scope = _scope(ctx)
    groups = ctx.core.world.org_groups(scope.name, ctx.request.query.get("visible_to_repository"))
    render = ctx.core.renderer.runner_group
    return _listing(ctx, "runner_groups", groups, lambda g: render(g, for_org=scope.name))


async def get_org_group(ctx: Ctx) -> Reply:
    return Reply(200, ctx.core.renderer.runner_group(_group(ctx), for_org=_scope(ctx).name))


async def list_org_group_repos(ctx: Ctx) -> Reply:
    repos = ctx.core.world.group_repositories(_group(ctx))
    return _listing(ctx, "repositories", repos, ctx.core.renderer.repository)


async def list_group_runners(ctx: Ctx) -> Reply:
    group = _group(ctx)
    runners = sorted(
        (r for r in ctx.core.world.runners_in(group.scope) if r.group is group), key=lambda r: r.id
    )
    return _listing(ctx, "runners", runners, ctx.core.renderer.runner)


async def list_enterprise_groups(ctx: Ctx) -> Reply:
    groups = ctx.core.world.enterprise_groups(
        _scope(ctx).name, ctx.request.query.get("visible_to_organization")
    )
    return _listing(ctx, "runner_groups", groups, ctx.core.renderer.runner_group)


async def get_enterprise_group(ctx: Ctx) -> Reply:
    return Reply(200, ctx.core.renderer.runner_group(_group(ctx)))


async def list_enterprise_group_orgs(ctx: Ctx) -> Reply:
    orgs = ctx.core.world.group_organizations(_group(ctx))
    return _listing(ctx, "organizations", orgs, ctx.core.renderer.organization)


# ---- workflow runs and jobs --------------------------------------------------------------------


def _repo(ctx: Ctx) -> Repo:
    return ctx.core.world.repo_by_name(_scope(ctx).name)


async def list_runs(ctx: Ctx) -> Reply:
    status = ctx.request.query.get("status") or None
    runs = ctx.core.world.runs_of(_repo(ctx), status)
    page, headers = paginate(ctx.request, runs)
    render = ctx.core.renderer.run_json
    return Reply(200, None, headers, raw=json_list("workflow_runs", len(runs), [render(r) for r in page]))


def _run(ctx: Ctx) -> Run:
    run = ctx.core.world.runs.get(ctx.int_param("run_id"))
    if run is None or run.repo_id != _repo(ctx).id:
        raise NotFound()
    return run


async def get_run(ctx: Ctx) -> Reply:
    return Reply(200, ctx.core.renderer.run(_run(ctx)))


async def cancel_run(ctx: Ctx) -> Reply:
    run = _run(ctx)
    if run.status == "completed":
        raise Conflict("Cannot cancel a workflow run that is completed.")
    ctx.core.world.cancel_run(run.id)
    return Reply(202, {})


async def list_jobs(ctx: Ctx) -> Reply:
    run = _run(ctx)
    flt = ctx.request.query.get("filter", "latest")
    if flt not in ("latest", "all"):
        raise ValidationFailed("Invalid request.\n\nfilter must be one of: latest, all.")
    jobs = ctx.core.world.jobs_of(run, latest=flt == "latest")
    page, headers = paginate(ctx.request, jobs)
    render = ctx.core.renderer.job_json
    return Reply(200, None, headers, raw=json_list("jobs", len(jobs), [render(j) for j in page]))


async def get_job(ctx: Ctx) -> Reply:
    job = ctx.core.world.jobs.get(ctx.int_param("job_id"))
    if job is None or job.repo_id != _repo(ctx).id:
        raise NotFound()
    return Reply(200, ctx.core.renderer.job_snapshot(JobSnapshot.of(job)))


# ---- rate limit --------------------------------------------------------------------------------


async def rate_limit(ctx: Ctx) -> Reply:
    p = ctx.principal
    limiter = ctx.core.limiter
    buckets = limiter.snapshot(p.key, p.kind)

    def res(limit: int, remaining: int, used: int, reset: int) -> dict[str, int]:
        return {"limit": limit, "remaining": remaining, "used": used, "reset": reset}

    core = buckets["core"]
    reg = buckets["actions_runner_registration"]
    core_json = res(core.limit, core.remaining, core.limit - core.remaining, core.reset)
    static_reset = core.reset
    search = 30 if p.kind != "anonymous" else 10
    return Reply(
        200,
        {
            "resources": {
                "core": core_json,
                "search": res(search, search, 0, static_reset),
                "graphql": res(
                    5000 if p.kind != "anonymous" else 0,
                    5000 if p.kind != "anonymous" else 0,
                    0,
                    static_reset,
                ),
                "actions_runner_registration": res(
                    reg.limit, reg.remaining, reg.limit - reg.remaining, reg.reset
                ),
            },
            "rate": core_json,
        },
    )


# ---- the table ---------------------------------------------------------------------------------

_SCOPES = {
    "repo": ("/repos/{owner}/{repo}", "actions", "for-repo", "from-repo"),
    "org": ("/orgs/{org}", "actions", "for-org", "from-org"),
    "enterprise": ("/enterprises/{enterprise}", "enterprise-admin", "for-enterprise", "from-enterprise"),
}


_RUNNER_NEED: dict[str, Need] = {
    "repo": "repo_admin",
    "org": "org_runners",
    "enterprise": "enterprise_runners",
}


_REGISTRATION: dict[str, Any] = {"resource": "actions_runner_registration"}

#: the runner operations of every scope: method, path below ``.../actions/runners``, operationId
#: (``{tag}``, ``{for_}`` and ``{from_}`` are the scope's), handler and the Route's other fields;
#: GitHub files the enterprise JIT operation under ``actions/``
_RUNNER_OPERATIONS: list[tuple[str, str, str, Handler, dict[str, Any]]] = [
    ("GET", "", "{tag}/list-self-hosted-runners-{for_}", list_runners, {"etag": True}),
    ("GET", "/{runner_id}", "{tag}/get-self-hosted-runner-{for_}", get_runner, {}),
    ("DELETE", "/{runner_id}", "{tag}/delete-self-hosted-runner-{from_}", delete_runner, {}),
    ("GET", "/{runner_id}/labels", "{tag}/list-labels-for-self-hosted-runner-{for_}", list_labels, {}),
    ("POST", "/{runner_id}/labels", "{tag}/add-custom-labels-to-self-hosted-runner-{for_}", add_labels, {}),
    ("PUT", "/{runner_id}/labels", "{tag}/set-custom-labels-for-self-hosted-runner-{for_}", set_labels, {}),
    (
        "DELETE",
        "/{runner_id}/labels",
        "{tag}/remove-all-custom-labels-from-self-hosted-runner-{for_}",
        remove_all_labels,
        {},
    ),
    (
        "DELETE",
        "/{runner_id}/labels/{name}",
        "{tag}/remove-custom-label-from-self-hosted-runner-{for_}",
        remove_label,
        {},
    ),
    (
        "POST",
        "/registration-token",
        "{tag}/create-registration-token-{for_}",
        registration_token,
        _REGISTRATION,
    ),
    ("POST", "/remove-token", "{tag}/create-remove-token-{for_}", remove_token, _REGISTRATION),
    (
        "POST",
        "/generate-jitconfig",
        "actions/generate-runner-jitconfig-{for_}",
        generate_jitconfig,
        _REGISTRATION,
    ),
]


def _runner_routes() -> list[Route]:
    return [
        Route(
            method,
            f"{base}/actions/runners{path}",
            operation.format(tag=tag, for_=for_, from_=from_),
            handler,
            _RUNNER_NEED[kind],
            kind,
            docs=RUNNERS_DOCS,
            **extra,
        )
        for kind, (base, tag, for_, from_) in _SCOPES.items()
        for method, path, operation, handler, extra in _RUNNER_OPERATIONS
    ]


ROUTES: list[Route] = [
    *_runner_routes(),
    Route(
        "GET",
        "/orgs/{org}/actions/runner-groups",
        "actions/list-self-hosted-runner-groups-for-org",
        list_org_groups,
        "org_runners",
        "org",
        etag=True,
        docs=GROUPS_DOCS,
    ),
    Route(
        "GET",
        "/orgs/{org}/actions/runner-groups/{runner_group_id}",
        "actions/get-self-hosted-runner-group-for-org",
        get_org_group,
        "org_runners",
        "org",
        docs=GROUPS_DOCS,
    ),
    Route(
        "GET",
        "/orgs/{org}/actions/runner-groups/{runner_group_id}/repositories",
        "actions/list-repo-access-to-self-hosted-runner-group-in-org",
        list_org_group_repos,
        "org_runners",
        "org",
        etag=True,
        docs=GROUPS_DOCS,
    ),
    Route(
        "GET",
        "/orgs/{org}/actions/runner-groups/{runner_group_id}/runners",
        "actions/list-self-hosted-runners-in-group-for-org",
        list_group_runners,
        "org_runners",
        "org",
        etag=True,
        docs=GROUPS_DOCS,
    ),
    Route(
        "GET",
        "/enterprises/{enterprise}/actions/runner-groups",
        "enterprise-admin/list-self-hosted-runner-groups-for-enterprise",
        list_enterprise_groups,
        "enterprise_runners",
        "enterprise",
        etag=True,
        docs=GROUPS_DOCS,
    ),
    Route(
        "GET",
        "/enterprises/{enterprise}/actions/runner-groups/{runner_group_id}",
        "enterprise-admin/get-self-hosted-runner-group-for-enterprise",
        get_enterprise_group,
        "enterprise_runners",
        "enterprise",
        docs=GROUPS_DOCS,
    ),
    Route(
        "GET",
        "/enterprises/{enterprise}/actions/runner-groups/{runner_group_id}/organizations",
        "enterprise-admin/list-org-access-to-self-hosted-runner-group-in-enterprise",
        list_enterprise_group_orgs,
        "enterprise_runners",
        "enterprise",
        etag=True,
        docs=GROUPS_DOCS,
    ),
    Route(
        "GET",
        "/enterprises/{enterprise}/actions/runner-groups/{runner_group_id}/runners",
        "enterprise-admin/list-self-hosted-runners-in-group-for-enterprise",
        list_group_runners,
        "enterprise_runners",
        "enterprise",
        etag=True,
        docs=GROUPS_DOCS,
    ),
    Route(
        "GET",
        "/repos/{owner}/{repo}/actions/runs",
        "actions/list-workflow-runs-for-repo",
        list_runs,
        "repo_actions",
        "repo",
        etag=True,
        docs=RUNS_DOCS,
    ),
    Route(
        "GET",
        "/repos/{owner}/{repo}/actions/runs/{run_id}",
        "actions/get-workflow-run",
        get_run,
        "repo_actions",
        "repo",
        docs=RUNS_DOCS,
    ),
    Route(
        "POST",
        "/repos/{owner}/{repo}/actions/runs/{run_id}/cancel",
        "actions/cancel-workflow-run",
        cancel_run,
        "repo_actions",
        "repo",
        docs=RUNS_DOCS,
    ),
    Route(
        "GET",
        "/repos/{owner}/{repo}/actions/runs/{run_id}/jobs",
        "actions/list-jobs-for-workflow-run",
        list_jobs,
        "repo_actions",
        "repo",
        etag=True,
        docs=JOBS_DOCS,
    ),
    Route(
        "GET",
        "/repos/{owner}/{repo}/actions/jobs/{job_id}",
        "actions/get-job-for-workflow-run",
        get_job,
        "repo_actions",
        "repo",
        docs=JOBS_DOCS,
    ),
    *apps.routes(),
    Route("GET", "/rate_limit", "rate-limit/get", rate_limit, "any", counted=False, docs=RATE_DOCS),
    *hookdeliveries.routes(),
    *hooklistings.routes(),
]
