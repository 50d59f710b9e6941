"""A test client for the simulator that checks every REST answer against GitHub's description.

Each response of an implemented operation is validated (status + body) against the pinned OpenAPI
document for that operation: ``api.github.com`` (``ghec`` for enterprise operations) at the root,
``ghes-3.19`` under ``/api/v3``.  ``CHECKED`` records what was validated, so the conformance test can
prove that every operation of the route table was checked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import aiohttp
from multidict import CIMultiDictProxy

from ghsim.rest import ROUTES

from .schemas import doc_for

#: (operation id, status, "root" | "ghes") of every validated response, in order
CHECKED: list[tuple[str, int, str]] = []

_INT = ("runner_id", "runner_group_id", "run_id", "job_id", "installation_id", "hook_id", "delivery_id")


def _compile(path: str) -> re.Pattern[str]:
    def repl(m: re.Match[str]) -> str:
        return r"\d+" if m.group(1) in _INT else r"[^/]+"

    return re.compile("^" + re.sub(r"\{(\w+)\}", repl, path) + "$")


_MATCHERS = [(r.method, _compile(r.path), r.operation_id) for r in ROUTES]


def operation_of(method: str, path: str) -> str | None:
    path = path.split("?", 1)[0]
    for m, pattern, op in _MATCHERS:
        if m == method and pattern.match(path):
            return op
    return None


@dataclass
class Resp:
    status: int
    headers: CIMultiDictProxy[str]
    body: Any
    operation: str | None

    def header(self, name: str) -> str | None:
        return self.headers.get(name)


class GitHub:
    """``await gh.get("/orgs/o/actions/runners", token=...)``; validates unless ``validate=False``."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, *, ghes: bool = False) -> None:
        self.session = session
        self.base_url = base_url.rstrip("/")
        self.ghes = ghes
        self.token: str | None = None

    def flavour(self, *, ghes: bool) -> GitHub:
        other = GitHub(self.session, self.base_url, ghes=ghes)
        other.token = self.token
        return other

    async def request(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        auth: str | None = None,
        json: Any = None,
        headers: dict[str, str] | None = None,
        validate: bool = True,
    ) -> Resp:
        hdrs = {"Accept": "application/vnd.github+json", **(headers or {})}
        token = token if token is not None else self.token
        if auth is not None:
            hdrs["Authorization"] = auth
        elif token:
            hdrs["Authorization"] = f"Bearer {token}"
        url = self.base_url + ("/api/v3" if self.ghes else "") + path
        async with self.session.request(method, url, json=json, headers=hdrs) as r:
            raw = await r.read()
            body: Any = None
            if raw:
                body = await r.json(content_type=None)
            resp = Resp(r.status, r.headers, body, operation_of(method, path))
        if validate and resp.operation is not None:
            doc_for(resp.operation, ghes_flavor=self.ghes).validate(resp.operation, resp.status, body)
            CHECKED.append((resp.operation, resp.status, "ghes" if self.ghes else "root"))
        return resp

    async def get(self, path: str, **kw: Any) -> Resp:
        return await self.request("GET", path, **kw)

    async def post(self, path: str, **kw: Any) -> Resp:
        return await self.request("POST", path, **kw)

    async def put(self, path: str, **kw: Any) -> Resp:
        return await self.request("PUT", path, **kw)

    async def delete(self, path: str, **kw: Any) -> Resp:
        return await self.request("DELETE", path, **kw)

    # ---- the admin API (no validation: it is the simulator's own) -------------------------------

    async def sim(self, method: str, path: str, body: Any = None, *, expect: int | None = None) -> Any:
        async with self.session.request(method, self.base_url + "/_sim" + path, json=body) as r:
            data = await r.json(content_type=None) if r.status != 204 else None
            if expect is not None:
                assert r.status == expect, f"{method} /_sim{path}: {r.status} {data}"
            elif r.status >= 400:
                raise AssertionError(f"{method} /_sim{path}: {r.status} {data}")
            return data
