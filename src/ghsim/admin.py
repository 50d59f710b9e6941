"""``/_sim/``: the admin API that sets up and inspects the simulated GitHub (see docs/ghsim.md).

No authentication: the simulator listens on loopback and is a test tool.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Literal

from aiohttp import web

from . import state
from .clock import ManualClock
from .core import Core
from .entities import Scope
from .errors import BadRequest, NotFound, SimError, ValidationFailed
from .httputil import dumps, json_object
from .model import World
from .trace import parse_trace

JSON = dict[str, Any]
AdminHandler = Callable[[web.Request], Awaitable[web.Response]]


def _reply(status: int, body: Any = None) -> web.Response:
    if body is None:
        return web.Response(status=status)
    return web.Response(status=status, body=dumps(body), content_type="application/json")


async def _body(request: web.Request) -> JSON:
    return await json_object(request, required=False, not_object="the body must be a JSON object")


def _int(request: web.Request, name: str) -> int:
    try:
        return int(request.match_info[name])
    except ValueError:
        raise BadRequest(f"{name} must be an integer") from None


class AdminAPI:
    def __init__(self, core: Core) -> None:
        self.core = core

    @property
    def world(self) -> World:
        return self.core.world

    def routes(self) -> list[web.RouteDef]:
        w = self._wrap
        return [
            web.get("/_sim/health", w(self.health)),
            web.get("/_sim/config", w(self.get_config)),
            web.patch("/_sim/config", w(self.patch_config)),
            web.get("/_sim/state", w(self.get_state)),
            web.post("/_sim/state", w(self.post_state)),
            web.post("/_sim/enterprises", w(self.create(state.add_enterprise))),
            web.post("/_sim/orgs", w(self.create(state.add_org))),
            web.post("/_sim/repos", w(self.create(state.add_repo))),
            web.post("/_sim/runner-groups", w(self.create(state.add_runner_group))),
            web.patch("/_sim/orgs/{owner}/runner-groups/{id:\\d+}", w(self.patch_group("org"))),
            web.patch("/_sim/enterprises/{owner}/runner-groups/{id:\\d+}", w(self.patch_group("enterprise"))),
            web.post("/_sim/apps", w(self.create(state.add_app))),
            web.post("/_sim/installations", w(self.create(state.add_installation))),
            web.patch("/_sim/installations/{id:\\d+}", w(self.patch_installation)),
            web.post("/_sim/pats", w(self.create(state.add_pat))),
            web.post("/_sim/hooks", w(self.create(state.add_hook))),
            web.patch("/_sim/hooks/{id:\\d+}", w(self.patch_hook)),
            web.get("/_sim/hooks/{id:\\d+}/deliveries", w(self.deliveries)),
            web.post("/_sim/deliveries/{guid}/redeliver", w(self.redeliver)),
            web.post("/_sim/runs", w(self.create(state.add_run))),
            web.post("/_sim/runs/{id:\\d+}/cancel", w(self.cancel_run)),
            web.post("/_sim/runs/{id:\\d+}/rerun", w(self.rerun)),
            web.post("/_sim/jobs/{id:\\d+}/approve", w(self.approve)),
            web.get("/_sim/jobs", w(self.jobs)),
            web.get("/_sim/jobs/{id:\\d+}", w(self.job)),
            web.post("/_sim/trace", w(self.trace)),
            web.get("/_sim/runners", w(self.runners)),
            web.get("/_sim/stats", w(self.stats)),
            web.post("/_sim/stats/reset", w(self.reset_stats)),
            web.post("/_sim/ratelimit", w(self.ratelimit)),
            web.post("/_sim/clock/advance", w(self.advance)),
            web.post("/_sim/tick", w(self.tick)),
        ]

    def _wrap(self, fn: AdminHandler) -> AdminHandler:
        async def handler(request: web.Request) -> web.Response:
            try:
                response: web.Response = await fn(request)
            except SimError as exc:
                return _reply(exc.status, {"message": exc.message})
            self.core.poke()
            return response

        return handler

    def create(self, add: Callable[[World, JSON], JSON]) -> AdminHandler:
        async def handler(request: web.Request) -> web.Response:
            return _reply(201, add(self.world, await _body(request)))

        return handler

    async def health(self, request: web.Request) -> web.Response:
        return _reply(200, {"ok": True})

    async def get_config(self, request: web.Request) -> web.Response:
        return _reply(200, self.core.config.to_dict())

    async def patch_config(self, request: web.Request) -> web.Response:
        self.core.config.update(await _body(request))
        return _reply(200, self.core.config.to_dict())

    async def get_state(self, request: web.Request) -> web.Response:
        return _reply(200, state.export_seed(self.world))

    async def post_state(self, request: web.Request) -> web.Response:
        return _reply(201, state.apply_seed(self.world, await _body(request)))

    def patch_group(self, kind: Literal["org", "enterprise"]) -> AdminHandler:
        async def handler(request: web.Request) -> web.Response:
            body = await _body(request)
            scope = self.world.scope_exists(Scope(kind, request.match_info["owner"]))
            public = body.get("allows_public_repositories")
            if public is not None and not isinstance(public, bool):
                raise ValidationFailed("allows_public_repositories must be a boolean")
            group = self.world.update_group(
                scope,
                _int(request, "id"),
                visibility=body.get("visibility"),
                allows_public_repositories=public,
                selected_repositories=state._strs(body, "selected_repositories"),
                selected_organizations=state._strs(body, "selected_organizations"),
            )
            return _reply(200, {"id": group.id, "name": group.name, "visibility": group.visibility})

        return handler

    async def patch_installation(self, request: web.Request) -> web.Response:
        body = await _body(request)
        inst = self.world.installations.get(_int(request, "id"))
        if inst is None:
            raise NotFound()
        if "suspended" in body:
            if not isinstance(body["suspended"], bool):
                raise ValidationFailed("suspended must be a boolean")
            inst.suspended = body["suspended"]
        perms = state._perms(body)
        if perms is not None:
            inst.permissions = perms
        return _reply(200, {"id": inst.id, "suspended": inst.suspended, "permissions": inst.permissions})

    async def patch_hook(self, request: web.Request) -> web.Response:
        hook_id = _int(request, "id")
        body = await _body(request)
        faults = body.get("faults", body)
        if not isinstance(faults, dict):
            raise ValidationFailed("faults must be an object")
        self.world.set_hook_faults(hook_id, faults)
        self.core.dispatcher._rngs.pop(hook_id, None)  # a new seed restarts the sequence
        return _reply(200, state.hook_json(self.world, hook_id))

    async def deliveries(self, request: web.Request) -> web.Response:
        hook_id = _int(request, "id")
        if hook_id not in self.world.hooks:
            raise NotFound()
        payloads = request.query.get("include") == "payload"
        out = []
        for d in self.core.dispatcher.deliveries:
            if d.hook_id != hook_id:
                continue
            item = d.summary()
            if payloads:
                item["payload"] = json.loads(d.body)
                item["headers"] = d.headers
            out.append(item)
        return _reply(200, {"deliveries": out})

    async def redeliver(self, request: web.Request) -> web.Response:
        try:
            new = self.core.dispatcher.redeliver(request.match_info["guid"])
        except KeyError:
            raise NotFound() from None
        return _reply(202, new.summary())

    async def cancel_run(self, request: web.Request) -> web.Response:
        run = self.world.cancel_run(_int(request, "id"))
        return _reply(200, {"id": run.id, "status": run.status, "conclusion": run.conclusion})

    async def rerun(self, request: web.Request) -> web.Response:
        run = self.world.rerun(_int(request, "id"))
        return _reply(201, {"id": run.id, "run_attempt": run.run_attempt, "job_ids": run.job_ids})

    async def approve(self, request: web.Request) -> web.Response:
        job = self.world.approve(_int(request, "id"))
        return _reply(200, self.world.job_times(job))

    async def jobs(self, request: web.Request) -> web.Response:
        repo = request.query.get("repo") or None
        status = request.query.get("status") or None
        return _reply(200, {"jobs": [self.world.job_times(j) for j in self.world.iter_jobs(repo, status)]})

    async def job(self, request: web.Request) -> web.Response:
        job = self.world.jobs.get(_int(request, "id"))
        if job is None:
            raise NotFound()
        return _reply(200, self.world.job_times(job))

    async def trace(self, request: web.Request) -> web.Response:
        ctype = request.content_type
        if ctype in ("application/x-ndjson", "application/jsonl", "text/plain"):
            lines = (await request.text()).splitlines()
            start = None
        else:
            body = await _body(request)
            start = body.get("start")
            if "path" in body:
                path = body["path"]
                if not isinstance(path, str):
                    raise ValidationFailed("path must be a string")
                try:
                    text = await asyncio.to_thread(Path(path).read_text)
                    lines = text.splitlines()
                except OSError as exc:
                    raise ValidationFailed(f"cannot read {path}: {exc.strerror}") from None
            elif isinstance(body.get("lines"), str):
                lines = body["lines"].splitlines()
            elif isinstance(body.get("lines"), list):
                lines = [json.dumps(x) for x in body["lines"]]
            else:
                raise ValidationFailed("give path, or lines (JSON-lines text or a list of objects)")
            if start is not None and (isinstance(start, bool) or not isinstance(start, int | float)):
                raise ValidationFailed("start must be a Unix time")
        entries = parse_trace(lines)
        n = self.world.schedule_trace(entries, start)
        self.world.tick()
        return _reply(201, {"scheduled": n})

    async def runners(self, request: web.Request) -> web.Response:
        world = self.world
        out = []
        for r in world.runners.values():
            out.append(
                {
                    "id": r.id,
                    "name": r.name,
                    "scope": str(r.scope),
                    "runner_group_id": r.group_id,
                    "labels": [lab.name for lab in r.labels],
                    "ephemeral": r.ephemeral,
                    "jit": r.jit,
                    "configured": r.configured,
                    "online": world.runner_online(r),
                    "busy": r.job_id is not None,
                    "job_id": r.job_id,
                    "jobs_done": r.jobs_done,
                    "last_seen": r.last_seen,
                }
            )
        return _reply(200, {"runners": out})

    async def stats(self, request: web.Request) -> web.Response:
        return _reply(200, {**self.core.stats.to_dict(), **self.world.summary()})

    async def reset_stats(self, request: web.Request) -> web.Response:
        self.core.stats.reset()
        return _reply(204)

    async def ratelimit(self, request: web.Request) -> web.Response:
        body = await _body(request)
        principal, kind = self._principal(body)
        resource = body.get("resource", "core")
        if resource not in ("core", "actions_runner_registration"):
            raise ValidationFailed("resource is core or actions_runner_registration")
        limiter = self.core.limiter
        if body.get("reset"):
            limiter.reset(principal, None if "resource" not in body else resource)
        if "remaining" in body:
            remaining = body["remaining"]
            if isinstance(remaining, bool) or not isinstance(remaining, int):
                raise ValidationFailed("remaining must be an integer")
            limiter.set_remaining(principal, kind, resource, remaining)
        buckets = limiter.snapshot(principal, kind)
        return _reply(
            200,
            {
                "principal": principal,
                "resources": {
                    name: {
                        "limit": b.limit,
                        "remaining": b.remaining,
                        "used": b.limit - b.remaining,
                        "reset": b.reset,
                    }
                    for name, b in buckets.items()
                },
            },
        )

    def _principal(self, body: JSON) -> tuple[str, str]:
        token = body.get("token")
        if isinstance(token, str):
            principal = self.core.auth.authenticate(f"token {token}")
            return principal.key, principal.kind
        key = body.get("principal")
        if isinstance(key, str) and ":" in key:
            kind = key.split(":", 1)[0]
            return key, kind
        if key == "anonymous":
            return "anonymous", "anonymous"
        raise ValidationFailed("give token, or principal (e.g. pat:1, installation:40000001)")

    async def advance(self, request: web.Request) -> web.Response:
        clock = self.core.clock
        if not isinstance(clock, ManualClock):
            raise ValidationFailed("the simulator runs on the system clock (start it with a manual clock)")
        body = await _body(request)
        seconds = body.get("seconds")
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
            raise ValidationFailed("seconds must be a non-negative number")
        clock.advance(float(seconds))
        self.world.tick()
        return _reply(200, {"now": clock.now()})

    async def tick(self, request: web.Request) -> web.Response:
        self.world.tick()
        return _reply(200, {"now": self.core.clock.now(), "next_deadline": self.world.next_deadline()})
