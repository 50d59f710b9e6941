"""A scripted local HTTP server standing in for GitHub, and a fake clock, for the client's behaviour tests.

Each test scripts the replies it needs (``server.on("GET", "/path", Reply(...), ...)``); replies are
served in order and the last one repeats. Every request is recorded. The server stamps ``Date`` from
the fake clock, so rate-limit reset times line up with what the client's clock says.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from multidict import CIMultiDictProxy


class FakeTime:
    """An injectable wall clock and sleep: sleeping moves the clock instead of waiting."""

    def __init__(self, now: float) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += max(seconds, 0.0)
        await asyncio.sleep(0)

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Recorded:
    method: str
    path: str  # raw (percent-encoded) path, without the query
    query: dict[str, str]
    headers: CIMultiDictProxy[str]
    body: Any  # decoded JSON, or None


@dataclass
class Reply:
    status: int = 200
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)


Handler = Callable[[web.Request, "Recorded"], Awaitable[Reply]]
Script = Reply | Handler


def rate_headers(
    *, remaining: int = 4999, limit: int = 5000, reset: float, resource: str = "core", used: int | None = None
) -> dict[str, str]:
    return {
        "x-ratelimit-limit": str(limit),
        "x-ratelimit-remaining": str(remaining),
        "x-ratelimit-used": str(limit - remaining if used is None else used),
        "x-ratelimit-reset": str(int(reset)),
        "x-ratelimit-resource": resource,
    }


class FakeGitHub:
    def __init__(self, time: FakeTime) -> None:
        self.time = time
        self.requests: list[Recorded] = []
        self._scripts: dict[tuple[str, str], list[Script]] = {}
        self.app = web.Application()
        self.app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self.base_url = ""  # set by the fixture once the server listens

    def on(self, method: str, path: str, *replies: Script) -> None:
        """Script the replies to ``method path`` (raw path, no query); the last one repeats."""
        self._scripts[(method.upper(), path)] = list(replies)

    def calls(self, method: str | None = None, path: str | None = None) -> list[Recorded]:
        return [
            r
            for r in self.requests
            if (method is None or r.method == method) and (path is None or r.path == path)
        ]

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        recorded = Recorded(
            method=request.method,
            path=request.rel_url.raw_path,
            query=dict(request.rel_url.query),
            headers=request.headers,
            body=json.loads(raw) if raw else None,
        )
        self.requests.append(recorded)
        script = self._scripts.get((request.method, recorded.path))
        if not script:
            reply = Reply(404, {"message": "Not Found (unscripted)"})
        else:
            step = script.pop(0) if len(script) > 1 else script[0]
            reply = step if isinstance(step, Reply) else await step(request, recorded)
        headers = {"Date": email.utils.formatdate(self.time.now, usegmt=True), **reply.headers}
        if reply.body is None:
            return web.Response(status=reply.status, headers=headers)
        headers.setdefault("Content-Type", "application/json; charset=utf-8")
        return web.Response(status=reply.status, body=json.dumps(reply.body).encode(), headers=headers)


def runner_json(runner_id: int, name: str, *, busy: bool = False, status: str = "online") -> dict[str, Any]:
    return {
        "id": runner_id,
        "name": name,
        "os": "linux",
        "status": status,
        "busy": busy,
        "ephemeral": True,
        "labels": [
            {"id": 1, "name": "self-hosted", "type": "read-only"},
            {"id": 2, "name": "gpu", "type": "custom"},
        ],
    }
