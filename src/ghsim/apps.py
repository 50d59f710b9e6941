"""GitHub's Apps REST operations: the authenticated App, its installations and their tokens.

``GET /app``, ``GET /app/installations[/{installation_id}]``, ``POST
/app/installations/{installation_id}/access_tokens`` and the installation of a repository,
organization or enterprise; all need the App's JWT (``Need`` ``app``). An installation of another
App is 404; a suspended one gets no token (403); a token may be narrowed to some repositories and
permissions, as GitHub's. :func:`routes` is their part of :data:`ghsim.rest.ROUTES`.
"""

from __future__ import annotations

from typing import Any

from .clock import iso
from .entities import Installation
from .errors import Forbidden, NotFound, ValidationFailed
from .httputil import Ctx, Reply, Route, paginate

APPS_DOCS = "https://docs.github.com/rest/apps/apps"


async def get_app(ctx: Ctx) -> Reply:
    app = ctx.principal.app
    assert app is not None
    count = sum(1 for i in ctx.core.world.installations.values() if i.app_id == app.id)
    return Reply(
        200,
        {
            "id": app.id,
            "slug": app.slug,
            "client_id": app.client_id,
            "node_id": f"A_{app.id}",
            "owner": ctx.core.renderer.user(app.owner),
            "name": app.name,
            "description": None,
            "external_url": ctx.core.renderer.html,
            "html_url": f"{ctx.core.renderer.html}/apps/{app.slug}",
            "created_at": iso(app.created_at),
            "updated_at": iso(app.created_at),
            "permissions": dict(app.permissions),
            "events": list(app.events),
            "installations_count": count,
        },
    )


async def list_installations(ctx: Ctx) -> Reply:
    app = ctx.principal.app
    assert app is not None
    insts = sorted(
        (i for i in ctx.core.world.installations.values() if i.app_id == app.id), key=lambda i: i.id
    )
    page, headers = paginate(ctx.request, insts)
    return Reply(200, [ctx.core.renderer.installation(i, app) for i in page], headers)


def _own_installation(ctx: Ctx) -> Installation:
    app = ctx.principal.app
    assert app is not None
    inst = ctx.core.world.installations.get(ctx.int_param("installation_id"))
    if inst is None or inst.app_id != app.id:
        raise NotFound()
    return inst


async def get_installation(ctx: Ctx) -> Reply:
    app = ctx.principal.app
    assert app is not None
    return Reply(200, ctx.core.renderer.installation(_own_installation(ctx), app))


async def create_installation_token(ctx: Ctx) -> Reply:
    inst = _own_installation(ctx)
    body = await ctx.json(required=False)
    perms = body.get("permissions")
    repos = body.get("repositories")
    repo_ids = body.get("repository_ids")
    if perms is not None and (
        not isinstance(perms, dict) or not all(isinstance(v, str) for v in perms.values())
    ):
        raise ValidationFailed("Invalid request.\n\npermissions must be an object of strings.")
    if repos is not None and (not isinstance(repos, list) or not all(isinstance(x, str) for x in repos)):
        raise ValidationFailed("Invalid request.\n\nrepositories must be an array of strings.")
    if repo_ids is not None and (
        not isinstance(repo_ids, list) or not all(isinstance(x, int) for x in repo_ids)
    ):
        raise ValidationFailed("Invalid request.\n\nrepository_ids must be an array of integers.")
    if inst.suspended:
        raise Forbidden("This installation has been suspended")
    tok = ctx.core.world.issue_installation_token(
        inst.id, permissions=perms, repositories=repos, repository_ids=repo_ids
    )
    out: dict[str, Any] = {
        "token": tok.token,
        "expires_at": iso(tok.expires_at),
        "permissions": dict(tok.permissions),
        "repository_selection": "selected" if tok.repository_ids is not None else inst.repository_selection,
    }
    if tok.repository_ids is not None:
        world = ctx.core.world
        out["repositories"] = [
            ctx.core.renderer.repository(world.repos_by_id[i]) for i in sorted(tok.repository_ids)
        ]
    return Reply(201, out)


async def scope_installation(ctx: Ctx) -> Reply:
    app = ctx.principal.app
    assert app is not None
    assert ctx.scope is not None
    inst = ctx.core.world.installation_for(app.id, ctx.scope)
    if inst is None:
        raise NotFound()
    return Reply(200, ctx.core.renderer.installation(inst, app))


def routes() -> list[Route]:
    """The App operations (App JWT only), for :data:`ghsim.rest.ROUTES`."""
    return [
        Route("GET", "/app", "apps/get-authenticated", get_app, "app", docs=APPS_DOCS),
        Route(
            "GET",
            "/app/installations",
            "apps/list-installations",
            list_installations,
            "app",
            etag=True,
            docs=APPS_DOCS,
        ),
        Route(
            "GET",
            "/app/installations/{installation_id}",
            "apps/get-installation",
            get_installation,
            "app",
            docs=APPS_DOCS,
        ),
        Route(
            "POST",
            "/app/installations/{installation_id}/access_tokens",
            "apps/create-installation-access-token",
            create_installation_token,
            "app",
            docs=APPS_DOCS,
        ),
        Route(
            "GET",
            "/repos/{owner}/{repo}/installation",
            "apps/get-repo-installation",
            scope_installation,
            "app",
            "repo",
            docs=APPS_DOCS,
        ),
        Route(
            "GET",
            "/orgs/{org}/installation",
            "apps/get-org-installation",
            scope_installation,
            "app",
            "org",
            docs=APPS_DOCS,
        ),
        Route(
            "GET",
            "/enterprises/{enterprise}/installation",
            "apps/get-enterprise-installation",
            scope_installation,
            "app",
            "enterprise",
            docs=APPS_DOCS,
            ghes=False,
        ),
    ]
