"""``/_runner/``: how a virtual runner talks to the simulator.

This stands in for the runner's own protocol with GitHub (``config.sh`` registration, the listener's
message long-poll, job start/finish).  All bodies are JSON.  After registering, the runner sends
``Authorization: RunnerSession <session>`` with every call.

==========================================  =================================================
``POST /_runner/register``                  register with a registration token
``POST /_runner/jit``                       register with an encoded JIT config
``GET  /_runner/poll?wait=<s>``             long-poll for a job (200 job, 204 none, 410 removed)
``POST /_runner/jobs/{id}/start``           the job started (``in_progress``)
``POST /_runner/jobs/{id}/heartbeat``       the runner is alive (``{"continue": false}``: cancelled)
``POST /_runner/jobs/{id}/complete``        the job finished; ``{"removed": true}`` for ephemeral
``POST /_runner/disconnect``                the runner process is going away
``POST /_runner/remove``                    ``config.sh remove --token`` (a remove token)
==========================================  =================================================

Registration failures answer ``{"reason": ..., "message": ...}`` with 401 (``invalid_token``,
``expired_token``, ``invalid_jit``), 409 (``jit_reused``, ``name_conflict``) or 404
(``group_not_found``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any
from urllib.parse import urlparse

from aiohttp import web

from .core import Core
from .entities import Job, Runner, Scope
from .errors import Conflict, NotFound, RegistrationError, SimError
from .httputil import dumps

REASON_STATUS = {
    "invalid_token": 401,
    "expired_token": 401,
    "invalid_jit": 401,
    "jit_reused": 409,
    "name_conflict": 409,
    "group_not_found": 404,
    "invalid_request": 400,
}


def _json(status: int, body: Any = None) -> web.Response:
    if body is None:
        return web.Response(status=status)
    return web.Response(status=status, body=dumps(body), content_type="application/json")


def scope_from_url(url: str) -> Scope:
    """``https://github.com/org/repo`` → repo, ``…/org`` → org, ``…/enterprises/e`` → enterprise."""
    path = [p for p in urlparse(url).path.split("/") if p]
    if path[:2] == ["api", "v3"]:
        path = path[2:]
    if len(path) == 2 and path[0] == "enterprises":
        return Scope("enterprise", path[1])
    if len(path) == 2:
        return Scope("repo", f"{path[0]}/{path[1]}")
    if len(path) == 1:
        return Scope("org", path[0])
    raise ValueError(f"cannot tell repository, organization or enterprise from {url!r}")


def job_json(core: Core, job: Job) -> dict[str, Any]:
    repo = core.world.repos_by_id[job.repo_id]
    return {
        "id": job.id,
        "run_id": job.run_id,
        "run_attempt": job.run_attempt,
        "name": job.name,
        "repository": repo.full_name,
        "labels": list(job.labels),
        "duration": job.duration,
        "status": job.status,
    }


def registered_json(core: Core, runner: Runner, session: str) -> dict[str, Any]:
    return {
        "runner_id": runner.id,
        "name": runner.name,
        "scope": str(runner.scope),
        "labels": [lab.name for lab in runner.labels],
        "runner_group_id": runner.group_id,
        "ephemeral": runner.ephemeral,
        "session": session,
        "long_poll_s": core.config.long_poll_s,
    }


class RunnerAPI:
    def __init__(self, core: Core) -> None:
        self.core = core
        self._pollers: set[asyncio.Event] = set()

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/_runner/register", self.register),
            web.post("/_runner/jit", self.jit),
            web.get("/_runner/poll", self.poll),
            web.post("/_runner/jobs/{job_id:\\d+}/start", self.start),
            web.post("/_runner/jobs/{job_id:\\d+}/heartbeat", self.heartbeat),
            web.post("/_runner/jobs/{job_id:\\d+}/complete", self.complete),
            web.post("/_runner/disconnect", self.disconnect),
            web.post("/_runner/remove", self.remove),
        ]

    def wake_all(self) -> None:
        """Release every long-poll (server shutdown)."""
        for ev in list(self._pollers):
            ev.set()

    async def _body(self, request: web.Request) -> dict[str, Any]:
        try:
            body = json.loads(await request.read() or b"{}")
        except ValueError:
            raise web.HTTPBadRequest(text="invalid JSON") from None
        if not isinstance(body, dict):
            raise web.HTTPBadRequest(text="invalid JSON")
        return body

    def _count(self, name: str, status: int) -> None:
        self.core.stats.count(f"_runner/{name}", "runner", status)
        self.core.notify()

    def _failure(self, name: str, exc: RegistrationError) -> web.Response:
        status = REASON_STATUS.get(exc.reason, 400)
        self._count(name, status)
        return _json(status, {"reason": exc.reason, "message": exc.message})

    async def register(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        token, url, name = body.get("token"), body.get("url"), body.get("name")
        labels = body.get("labels") or []
        if not isinstance(token, str) or not isinstance(url, str) or not isinstance(name, str):
            return self._failure(
                "register", RegistrationError("invalid_request", "token, url and name are required")
            )
        if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
            return self._failure("register", RegistrationError("invalid_request", "labels must be strings"))
        try:
            scope = scope_from_url(url)
        except ValueError as exc:
            return self._failure("register", RegistrationError("invalid_request", str(exc)))
        group = body.get("group")
        try:
            reg = self.core.world.register_runner(
                token,
                scope,
                name,
                labels,
                group=group if isinstance(group, str) and group else None,
                ephemeral=bool(body.get("ephemeral", False)),
                replace=bool(body.get("replace", True)),
                default_labels=not bool(body.get("no_default_labels", False)),
            )
        except RegistrationError as exc:
            return self._failure("register", exc)
        self._count("register", 201)
        return _json(201, registered_json(self.core, reg.runner, reg.session))

    async def jit(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        encoded = body.get("jitconfig")
        if not isinstance(encoded, str):
            return self._failure("jit", RegistrationError("invalid_jit", "jitconfig is required"))
        try:
            reg = self.core.world.redeem_jit(encoded)
        except RegistrationError as exc:
            return self._failure("jit", exc)
        self._count("jit", 201)
        return _json(201, registered_json(self.core, reg.runner, reg.session))

    def _runner(self, request: web.Request) -> Runner | None:
        header = request.headers.get("Authorization", "")
        scheme, _, session = header.partition(" ")
        if scheme != "RunnerSession" or not session:
            raise web.HTTPUnauthorized(text="RunnerSession credential required")
        try:
            return self.core.world.runner_for_session(session.strip())
        except NotFound:
            raise web.HTTPUnauthorized(text="unknown runner session") from None

    def _removed(self, name: str) -> web.Response:
        self._count(name, 410)
        return _json(410, {"reason": "removed", "message": "the runner was removed from GitHub"})

    async def poll(self, request: web.Request) -> web.Response:
        runner = self._runner(request)
        if runner is None:
            return self._removed("poll")
        try:
            wait = min(float(request.query.get("wait", self.core.config.long_poll_s)), 300.0)
        except ValueError:
            wait = self.core.config.long_poll_s
        world = self.core.world
        result = world.poll(runner.id)
        if result is None and wait > 0:
            waker = asyncio.Event()
            self.core.wakers[runner.id] = waker
            self._pollers.add(waker)
            try:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(waker.wait(), timeout=wait)
            finally:
                self._pollers.discard(waker)
                if self.core.wakers.get(runner.id) is waker:
                    del self.core.wakers[runner.id]
            result = world.poll(runner.id)
        if result == "removed":
            return self._removed("poll")
        if result is None:
            self._count("poll", 204)
            return _json(204)
        assert isinstance(result, Job)
        self._count("poll", 200)
        return _json(200, {"job": job_json(self.core, result)})

    async def _job_call(self, request: web.Request) -> tuple[Runner | None, int, dict[str, Any]]:
        runner = self._runner(request)
        body = await self._body(request)
        return runner, int(request.match_info["job_id"]), body

    async def start(self, request: web.Request) -> web.Response:
        runner, job_id, _ = await self._job_call(request)
        if runner is None:
            return self._removed("start")
        try:
            job = self.core.world.start_job(runner.id, job_id)
        except (Conflict, NotFound) as exc:
            self._count("start", 409)
            return _json(409, {"reason": "not_assigned", "message": exc.message})
        self._count("start", 200)
        return _json(200, {"job": job_json(self.core, job)})

    async def heartbeat(self, request: web.Request) -> web.Response:
        runner, job_id, _ = await self._job_call(request)
        if runner is None:
            return self._removed("heartbeat")
        ok = self.core.world.heartbeat(runner.id, job_id)
        self._count("heartbeat", 200)
        return _json(200, {"continue": ok})

    async def complete(self, request: web.Request) -> web.Response:
        runner, job_id, body = await self._job_call(request)
        if runner is None:
            return self._removed("complete")
        conclusion = body.get("conclusion")
        try:
            removed = self.core.world.complete_job(
                runner.id, job_id, conclusion if isinstance(conclusion, str) else None
            )
        except SimError as exc:
            self._count("complete", 409)
            return _json(409, {"reason": "not_assigned", "message": exc.message})
        self._count("complete", 200)
        return _json(200, {"removed": removed})

    async def disconnect(self, request: web.Request) -> web.Response:
        runner = self._runner(request)
        if runner is not None:
            self.core.world.disconnect(runner.id)
        self._count("disconnect", 204)
        return _json(204)

    async def remove(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        token, url, name = body.get("token"), body.get("url"), body.get("name")
        if not isinstance(token, str) or not isinstance(url, str) or not isinstance(name, str):
            return self._failure(
                "remove", RegistrationError("invalid_request", "token, url and name are required")
            )
        try:
            self.core.world.remove_with_token(token, scope_from_url(url), name)
        except RegistrationError as exc:
            return self._failure("remove", exc)
        except ValueError as exc:
            return self._failure("remove", RegistrationError("invalid_request", str(exc)))
        self._count("remove", 204)
        return _json(204)
