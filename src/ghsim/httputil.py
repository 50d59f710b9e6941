"""Small HTTP helpers shared by the REST, admin and runner handlers."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from yarl import URL

from .auth import Need, Principal
from .core import Core
from .entities import Scope
from .errors import BadRequest, ValidationFailed

DOCS = "https://docs.github.com/rest"
API_VERSION = "2022-11-28"
GHES_VERSION = "3.19.0"


@dataclass
class Reply:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    #: the body as JSON text already (lists assembled from cached fragments)
    raw: bytes | None = None


def json_list(key: str, total: int, items: list[bytes]) -> bytes:
    """``{"total_count": total, key: [items...]}`` from JSON fragments."""
    return b'{"total_count":%d,"%s":[%s]}' % (total, key.encode(), b",".join(items))


@dataclass
class Ctx:
    core: Core
    request: web.Request
    principal: Principal
    scope: Scope | None

    @property
    def params(self) -> dict[str, str]:
        return dict(self.request.match_info)

    def int_param(self, name: str) -> int:
        try:
            return int(self.request.match_info[name])
        except ValueError:
            raise BadRequest(f"{name} must be an integer") from None

    async def json(self, *, required: bool = True) -> dict[str, Any]:
        return await json_object(self.request, required=required)


Handler = Callable[[Ctx], Awaitable[Reply]]


@dataclass(frozen=True)
class Route:
    """One REST operation of GitHub's API that the simulator implements."""

    method: str
    path: str
    operation_id: str
    handler: Handler
    need: Need
    #: where the scope comes from: the ``{owner}/{repo}``, ``{org}`` or ``{enterprise}`` parameters
    scope: str | None = None
    resource: str = "core"
    #: list endpoint: ETag + If-None-Match
    etag: bool = False
    #: False for endpoints GitHub does not count against the primary rate limit
    counted: bool = True
    docs: str = DOCS
    #: also served under /api/v3 (False for operations GitHub Enterprise Server does not have)
    ghes: bool = True


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def error_body(
    status: int, message: str, docs: str = DOCS, errors: list[str] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {"message": message, "documentation_url": docs, "status": str(status)}
    if errors:
        body["errors"] = errors
    return body


def page_params(request: web.Request) -> tuple[int, int]:
    def number(name: str, default: int) -> int:
        raw = request.query.get(name)
        if raw is None or raw == "":
            return default
        try:
            return int(raw)
        except ValueError:
            raise ValidationFailed(f"Invalid request.\n\n{name} must be an integer") from None

    per_page = max(1, min(100, number("per_page", 30)))
    page = max(1, number("page", 1))
    return per_page, page


async def json_object(
    request: web.Request, *, required: bool = True, not_object: str = "Problems parsing JSON"
) -> dict[str, Any]:
    """The request's body as a JSON object (``{}`` when empty and not ``required``); a body that
    is not JSON, or absent when required, is GitHub's 400 ``Problems parsing JSON``."""
    raw = await request.read()
    if not raw:
        if required:
            raise BadRequest("Problems parsing JSON")
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        raise BadRequest("Problems parsing JSON") from None
    if not isinstance(body, dict):
        raise BadRequest(not_object)
    return body


def paginate(request: web.Request, items: list[Any]) -> tuple[list[Any], dict[str, str]]:
    """One page of ``items`` and the ``Link`` header GitHub would send with it."""
    per_page, page = page_params(request)
    total_pages = max(1, -(-len(items) // per_page))
    chunk = items[(page - 1) * per_page : page * per_page]
    links = []
    # GitHub's Link header points at the same host and path the client called
    base = URL(str(request.url))

    def link(p: int, rel: str) -> str:
        return f'<{base.update_query(per_page=per_page, page=p)}>; rel="{rel}"'

    if page > 1:
        links.append(link(min(page - 1, total_pages), "prev"))
    if page < total_pages:
        links.append(link(page + 1, "next"))
        links.append(link(total_pages, "last"))
    if page > 1:
        links.append(link(1, "first"))
    return chunk, ({"Link": ", ".join(links)} if links else {})
