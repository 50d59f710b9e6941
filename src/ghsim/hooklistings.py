"""GitHub's hook listings: an organization's webhooks, a repository's, and a GitHub App's own
webhook configuration (what runnerd's delivery audit reads to find the hook that delivers to it).

``GET /orgs/{org}/hooks`` (``org-hook`` items) and ``GET /repos/{owner}/{repo}/hooks`` (``hook``
items) list every hook of the scope, active or not, paged by ``page``/``per_page`` with GitHub's
``Link`` header; ``GET /app/hook/config`` answers the App's ``webhook-config`` (App JWT only; 404
when the App has no webhook). As GitHub, the secret is never shown (``********`` when one is set).

Authorization follows :mod:`ghsim.auth` exactly as the hook deliveries API
(:mod:`ghsim.hookdeliveries`): ``org_hooks`` (classic scope ``admin:org_hook``, App permission
``organization_hooks`` read) and ``repo_hooks`` (``repo`` or ``admin:repo_hook``,
``repository_hooks`` read); a token that does not see the scope gets 404, one that sees it without
the right gets 403.
"""

from __future__ import annotations

from typing import Any

from .clock import iso
from .entities import Hook
from .errors import NotFound
from .httputil import Ctx, Reply, Route, paginate

DOCS_ORG = "https://docs.github.com/rest/orgs/webhooks"
DOCS_REPO = "https://docs.github.com/rest/repos/webhooks"
DOCS_APP = "https://docs.github.com/rest/apps/webhooks"


def config(hook: Hook) -> dict[str, Any]:
    """The hook's ``webhook-config`` (the secret masked, as GitHub does)."""
    out: dict[str, Any] = {"url": hook.url, "content_type": "json", "insecure_ssl": "0"}
    if hook.secret:
        out["secret"] = "********"
    return out


def hook_item(ctx: Ctx, hook: Hook, kind: str) -> dict[str, Any]:
    """The ``org-hook`` (``kind`` ``org``) or ``hook`` (``repo``) object of a hook."""
    url = f"{str(ctx.request.url.with_query(None)).rstrip('/')}/{hook.id}"
    stamp = iso(ctx.core.world.now())
    item: dict[str, Any] = {
        "type": "Organization" if kind == "org" else "Repository",
        "id": hook.id,
        "name": "web",
        "active": hook.active,
        "events": list(hook.events),
        "config": config(hook),
        "updated_at": stamp,
        "created_at": stamp,
        "url": url,
        "ping_url": f"{url}/pings",
        "deliveries_url": f"{url}/deliveries",
    }
    if kind == "repo":
        item["test_url"] = f"{url}/test"
        item["last_response"] = {"code": None, "status": "unused", "message": None}
    return item


def _hooks_of(ctx: Ctx) -> list[Hook]:
    scope = ctx.scope
    if scope is None:
        raise NotFound()
    key = scope.key
    return sorted(
        (h for h in ctx.core.world.hooks.values() if h.scope is not None and h.scope.key == key),
        key=lambda h: h.id,
    )


def _lister(kind: str) -> Any:
    async def list_hooks(ctx: Ctx) -> Reply:
        chunk, headers = paginate(ctx.request, _hooks_of(ctx))
        return Reply(200, [hook_item(ctx, h, kind) for h in chunk], headers)

    return list_hooks


async def app_hook_config(ctx: Ctx) -> Reply:
    app = ctx.principal.app
    hook = next((h for h in ctx.core.world.hooks.values() if app is not None and h.app_id == app.id), None)
    if hook is None:
        raise NotFound()
    return Reply(200, config(hook))


def routes() -> list[Route]:
    """The three operations."""
    return [
        Route(
            "GET",
            "/orgs/{org}/hooks",
            "orgs/list-webhooks",
            _lister("org"),
            "org_hooks",
            "org",
            docs=DOCS_ORG,
        ),
        Route(
            "GET",
            "/repos/{owner}/{repo}/hooks",
            "repos/list-webhooks",
            _lister("repo"),
            "repo_hooks",
            "repo",
            docs=DOCS_REPO,
        ),
        Route(
            "GET",
            "/app/hook/config",
            "apps/get-webhook-config-for-app",
            app_hook_config,
            "app",
            docs=DOCS_APP,
        ),
    ]
