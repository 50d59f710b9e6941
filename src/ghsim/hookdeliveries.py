"""GitHub's hook deliveries API: list a hook's delivery attempts, get one, redeliver one.

The same three operations for an organization's hook (``/orgs/{org}/hooks/{hook_id}/...``), a
repository's (``/repos/{owner}/{repo}/hooks/{hook_id}/...``) and a GitHub App's own webhook
(``/app/hook/...``, App JWT only). The attempts are the ones :class:`ghsim.webhooks.WebhookDispatcher`
records. As GitHub:

* a listing is newest first (highest id first), ``per_page`` at most 100, paged by an opaque
  ``cursor`` named in the ``Link`` header's ``rel="next"``;
* ``status=success`` keeps the attempts whose ``status_code`` is 200-399, ``status=failure`` those
  with 400-599 (so an attempt that never got an answer, ``status_code`` 0, is in neither);
* a hook that is not the path's (another organization's, another repository's, another App's) is
  404; so is a delivery of another hook;
* a redelivery (``POST .../attempts``, 202 ``{}``) sends the original payload and headers again with
  the same ``X-GitHub-Delivery`` GUID, listed as a new attempt with ``redelivery: true``.

Authorization follows :mod:`ghsim.auth`: ``org_hooks`` (classic scope ``admin:org_hook``, App
permission ``organization_hooks``) and ``repo_hooks`` (``repo`` or ``admin:repo_hook``,
``repository_hooks``); a redelivery needs the permission's ``write``.
"""

from __future__ import annotations

import json
from typing import Any

from yarl import URL

from .auth import Need
from .clock import iso
from .entities import Hook
from .errors import NotFound, ValidationFailed
from .httputil import Ctx, Handler, Reply, Route, page_params
from .webhooks import Attempt

DOCS_ORG = "https://docs.github.com/rest/orgs/webhooks"
DOCS_REPO = "https://docs.github.com/rest/repos/webhooks"
DOCS_APP = "https://docs.github.com/rest/apps/webhooks"
CURSOR_PREFIX = "v1_"


def _hook(ctx: Ctx, kind: str) -> Hook:
    world = ctx.core.world
    if kind == "app":
        app = ctx.principal.app
        hook = next((h for h in world.hooks.values() if app is not None and h.app_id == app.id), None)
        if hook is None:
            raise NotFound()
        return hook
    hook = world.hooks.get(ctx.int_param("hook_id"))
    if hook is None or hook.scope is None or ctx.scope is None:
        raise NotFound()
    if hook.scope.kind != ctx.scope.kind or hook.scope.name.lower() != ctx.scope.name.lower():
        raise NotFound()
    return hook


def _attempt(ctx: Ctx, hook: Hook) -> Attempt:
    attempt = ctx.core.dispatcher.attempt(ctx.int_param("delivery_id"))
    if attempt is None or attempt.delivery.hook_id != hook.id:
        raise NotFound()
    return attempt


def item(attempt: Attempt) -> dict[str, Any]:
    """The ``hook-delivery-item`` of an attempt."""
    d = attempt.delivery
    return {
        "id": attempt.id,
        "guid": d.guid,
        "delivered_at": iso(attempt.delivered_at),
        "redelivery": attempt.redelivery,
        "duration": attempt.duration,
        "status": attempt.status,
        "status_code": attempt.status_code,
        "event": d.event,
        "action": d.action,
        "installation_id": d.installation_id,
        "repository_id": d.repository_id,
        "throttled_at": None,
    }


def _matches(attempt: Attempt, status: str | None) -> bool:
    if status == "success":
        return 200 <= attempt.status_code <= 399
    if status == "failure":
        return 400 <= attempt.status_code <= 599
    return True


def _cursor(ctx: Ctx) -> int | None:
    raw = ctx.request.query.get("cursor")
    if not raw:
        return None
    if not raw.startswith(CURSOR_PREFIX) or not raw[len(CURSOR_PREFIX) :].isdigit():
        raise ValidationFailed("Invalid cursor")
    return int(raw[len(CURSOR_PREFIX) :])


def handlers(kind: str) -> tuple[Handler, Handler, Handler]:
    """The list, get and redeliver handlers for ``kind`` (``org``, ``repo`` or ``app``)."""

    async def list_deliveries(ctx: Ctx) -> Reply:
        hook = _hook(ctx, kind)
        status = ctx.request.query.get("status") or None
        if status not in (None, "success", "failure"):
            raise ValidationFailed("Invalid request.\n\nstatus must be one of: success, failure.")
        per_page, _ = page_params(ctx.request)
        before = _cursor(ctx)
        page: list[Attempt] = []
        more = False
        for attempt in reversed(ctx.core.dispatcher.attempts.get(hook.id, ())):
            if (before is not None and attempt.id >= before) or not _matches(attempt, status):
                continue
            if len(page) == per_page:
                more = True
                break
            page.append(attempt)
        headers: dict[str, str] = {}
        if more:
            url = URL(str(ctx.request.url)).update_query(
                per_page=per_page, cursor=f"{CURSOR_PREFIX}{page[-1].id}"
            )
            headers["Link"] = f'<{url}>; rel="next"'
        return Reply(200, [item(a) for a in page], headers)

    async def get_delivery(ctx: Ctx) -> Reply:
        attempt = _attempt(ctx, _hook(ctx, kind))
        d = attempt.delivery
        body = item(attempt)
        body["url"] = str(ctx.request.url.with_query(None))
        body["request"] = {"headers": dict(d.headers), "payload": json.loads(d.body)}
        body["response"] = {"headers": attempt.response_headers or None, "payload": attempt.response_body}
        return Reply(200, body)

    async def redeliver(ctx: Ctx) -> Reply:
        attempt = _attempt(ctx, _hook(ctx, kind))
        ctx.core.dispatcher.redeliver_attempt(attempt)
        return Reply(202, {})

    return list_deliveries, get_delivery, redeliver


def routes() -> list[Route]:
    """The nine operations (organization, repository and App hooks)."""
    out: list[Route] = []
    bases: tuple[tuple[str, str, str, Need, str | None, str], ...] = (
        ("org", "/orgs/{org}/hooks/{hook_id}", "orgs", "org_hooks", "org", DOCS_ORG),
        ("repo", "/repos/{owner}/{repo}/hooks/{hook_id}", "repos", "repo_hooks", "repo", DOCS_REPO),
        ("app", "/app/hook", "apps", "app", None, DOCS_APP),
    )
    for kind, base, tag, need, scope, docs in bases:
        listing, get, post = handlers(kind)
        one = f"{base}/deliveries/{{delivery_id}}"
        out += [
            Route(
                "GET", f"{base}/deliveries", f"{tag}/list-webhook-deliveries", listing, need, scope, docs=docs
            ),
            Route("GET", one, f"{tag}/get-webhook-delivery", get, need, scope, docs=docs),
            Route(
                "POST", f"{one}/attempts", f"{tag}/redeliver-webhook-delivery", post, need, scope, docs=docs
            ),
        ]
    return out
