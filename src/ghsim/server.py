"""The simulator's HTTP server (aiohttp): REST at ``/`` and ``/api/v3``, ``/_sim/``, ``/_runner/``.

Use it in-process::

    async with Simulator() as sim:          # 127.0.0.1, a free port
        sim.world.create_org("octo-org")
        ... talk to sim.base_url ...

or from the command line: ``runnerd-dev github-sim --port 8080``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from email.utils import formatdate
from pathlib import Path
from typing import Any

from aiohttp import web

from .actions import ActionsAdmin, ActionsHTTP, ActionsService
from .admin import AdminAPI
from .auth import ACCEPTED_SCOPES, ANONYMOUS, Principal
from .clock import Clock, SystemClock
from .config import SimConfig
from .core import Core
from .entities import Scope
from .errors import Forbidden, SimError, Unauthorized
from .httputil import API_VERSION, DOCS, GHES_VERSION, Ctx, Reply, Route, dumps, error_body
from .model import World
from .ratelimit import Verdict
from .rest import ROUTES
from .runner_api import RunnerAPI
from .state import apply_seed, export_seed, load_seed_file, save_seed_file

log = logging.getLogger(__name__)

GHES_PREFIX = "/api/v3"
RATE_DOCS = "https://docs.github.com/rest/using-the-rest-api/rate-limits-for-the-rest-api"
SECONDARY_DOCS = (
    "https://docs.github.com/rest/using-the-rest-api/rate-limits-for-the-rest-api#about-secondary-rate-limits"
)
STREAM_ABOVE = 128 * 1024
REQUEST_ID = web.RequestKey("ghsim_request_id", str)
_INT_PARAMS = (
    "runner_id",
    "runner_group_id",
    "run_id",
    "job_id",
    "installation_id",
    "hook_id",
    "delivery_id",
)


def aiohttp_path(path: str) -> str:
    """OpenAPI path template → aiohttp route (integer parameters only match digits)."""
    for name in _INT_PARAMS:
        path = path.replace("{" + name + "}", "{" + name + ":\\d+}")
    return path


def _scope_of(route: Route, request: web.Request) -> Scope | None:
    info = request.match_info
    if route.scope == "repo":
        return Scope("repo", f"{info['owner']}/{info['repo']}")
    if route.scope == "org":
        return Scope("org", info["org"])
    if route.scope == "enterprise":
        return Scope("enterprise", info["enterprise"])
    return None


class RestHandler:
    """Authentication, rate limits, scope checks, ETags and GitHub's headers around one route."""

    def __init__(self, core: Core, route: Route, *, ghes: bool) -> None:
        self.core = core
        self.route = route
        self.ghes = ghes

    async def handle(self, request: web.Request) -> web.StreamResponse:
        core, route = self.core, self.route
        principal: Principal = ANONYMOUS
        try:
            principal = core.auth.authenticate(request.headers.get("Authorization"))
        except Unauthorized as exc:
            return await self._respond(
                request,
                self._finish(request, principal, Reply(401, error_body(401, exc.message, DOCS)), None),
            )
        secondary = core.limiter.enter(principal.key, request.method)
        if not secondary.allowed:
            status = core.config.secondary.status
            body = error_body(
                status,
                "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. "
                "If you reach out to GitHub Support for help, please include the request ID "
                f"{self._request_id(request)}.",
                SECONDARY_DOCS,
            )
            verdict = (
                core.limiter.check(principal.key, principal.kind, route.resource) if route.counted else None
            )
            reply = Reply(status, body, {"Retry-After": str(secondary.retry_after)})
            return await self._respond(request, self._finish(request, principal, reply, verdict))
        try:
            return await self._handle(request, principal)
        finally:
            core.limiter.leave(principal.key)

    async def _handle(self, request: web.Request, principal: Principal) -> web.StreamResponse:
        core, route = self.core, self.route
        verdict: Verdict | None = None
        if route.counted:
            verdict = core.limiter.check(principal.key, principal.kind, route.resource)
            if not verdict.allowed:
                status = core.config.primary.status
                who = f"user ID {principal.pat.user_id}" if principal.pat else principal.key
                exhausted = error_body(
                    status,
                    f"API rate limit exceeded for {who}. If you reach out to GitHub Support for help, please "
                    f"include the request ID {self._request_id(request)} and timestamp.",
                    RATE_DOCS,
                )
                return await self._respond(
                    request, self._finish(request, principal, Reply(status, exhausted), verdict)
                )
        try:
            reply = await self._call(request, principal)
            if request.method != "GET":
                core.poke()
        except SimError as exc:
            reply = Reply(exc.status, error_body(exc.status, exc.message, route.docs, exc.errors))
            if isinstance(exc, Forbidden) and exc.accepted_scopes is not None:
                reply.headers["X-Accepted-OAuth-Scopes"] = exc.accepted_scopes
        body = _body_bytes(reply)
        if route.etag and reply.status == 200:
            etag = 'W/"' + hashlib.sha256(body).hexdigest() + '"'
            reply.headers["ETag"] = etag
            reply.headers["Cache-Control"] = "private, max-age=60, s-maxage=60"
            if _etag_matches(request.headers.get("If-None-Match"), etag):
                # a conditional request that hits does not count against the primary limit
                return await self._respond(
                    request, self._finish(request, principal, Reply(304, None, reply.headers), verdict)
                )
        if route.counted:
            verdict = core.limiter.consume(principal.key, principal.kind, route.resource)
        return await self._respond(request, self._finish(request, principal, reply, verdict, body))

    async def _call(self, request: web.Request, principal: Principal) -> Reply:
        route = self.route
        if route.need != "any" and principal.kind == "anonymous":
            raise Unauthorized("Requires authentication")
        if route.need == "app":
            self.core.auth.authorize(principal, "app", None, request.method)
        scope = _scope_of(route, request)
        if scope is not None:
            scope = self.core.world.scope_exists(scope)
        if route.need != "app":
            self.core.auth.authorize(principal, route.need, scope, request.method)
        return await route.handler(Ctx(self.core, request, principal, scope))

    @staticmethod
    async def _respond(request: web.Request, response: web.Response) -> web.StreamResponse:
        """Send big bodies in 64 KiB pieces, so the socket's write buffer stays small (asyncio
        keeps the capacity of a connection's write buffer once it has grown)."""
        body = response.body
        if not isinstance(body, bytes) or len(body) <= STREAM_ABOVE:
            return response
        stream = web.StreamResponse(status=response.status, headers=response.headers)
        stream.content_length = len(body)
        await stream.prepare(request)
        view = memoryview(body)
        for start in range(0, len(body), 65_536):
            await stream.write(view[start : start + 65_536])
        await stream.write_eof()
        return stream

    @staticmethod
    def _request_id(request: web.Request) -> str:
        rid = request.get(REQUEST_ID)
        if rid is None:
            rid = request[REQUEST_ID] = uuid.uuid4().hex[:20].upper()
        return rid

    def _finish(
        self,
        request: web.Request,
        principal: Principal,
        reply: Reply,
        verdict: Verdict | None,
        body: bytes | None = None,
    ) -> web.Response:
        headers = {
            # the simulator's clock, so that clients relating x-ratelimit-reset to Date agree
            "Date": formatdate(self.core.clock.now(), usegmt=True),
            "X-GitHub-Api-Version-Selected": API_VERSION,
            "X-GitHub-Media-Type": "github.v3; format=json",
            "X-GitHub-Request-Id": self._request_id(request),
            "Vary": "Accept, Authorization, Cookie, X-GitHub-OTP",
        }
        if self.ghes:
            headers["X-GitHub-Enterprise-Version"] = GHES_VERSION
        if verdict is not None:
            headers.update(
                {
                    "X-RateLimit-Limit": str(verdict.limit),
                    "X-RateLimit-Remaining": str(verdict.remaining),
                    "X-RateLimit-Used": str(verdict.used),
                    "X-RateLimit-Reset": str(verdict.reset),
                    "X-RateLimit-Resource": verdict.resource,
                }
            )
        if principal.pat is not None:
            headers["X-OAuth-Scopes"] = ", ".join(principal.pat.scopes)
            headers["X-Accepted-OAuth-Scopes"] = ", ".join(ACCEPTED_SCOPES.get(self.route.need, ()))
        headers.update(reply.headers)
        self.core.stats.count(self.route.operation_id, principal.key, reply.status)
        if reply.status in (204, 304) or (reply.body is None and reply.raw is None):
            return web.Response(status=reply.status, headers=headers)
        if body is None:
            body = _body_bytes(reply)
        headers["Content-Type"] = "application/json; charset=utf-8"
        return web.Response(status=reply.status, body=body, headers=headers)


def _body_bytes(reply: Reply) -> bytes:
    if reply.raw is not None:
        return reply.raw
    return dumps(reply.body) if reply.body is not None else b""


def _etag_matches(header: str | None, etag: str) -> bool:
    if not header:
        return False
    candidates = [c.strip() for c in header.split(",")]
    weak = etag[2:] if etag.startswith("W/") else etag
    return any(c in ("*", etag, weak) or (c.startswith("W/") and c[2:] == weak) for c in candidates)


@web.middleware
async def github_not_found(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Unknown REST paths get GitHub's JSON 404 (the ``/_sim/`` and ``/_runner/`` APIs keep aiohttp's)."""
    try:
        return await handler(request)
    except (web.HTTPNotFound, web.HTTPMethodNotAllowed):
        if request.path.startswith(("/_sim/", "/_runner/")):
            raise
        return web.Response(
            status=404,
            body=dumps(error_body(404, "Not Found", DOCS)),
            content_type="application/json",
        )


def build_app(
    core: Core, runner_api: RunnerAPI, admin: AdminAPI, actions: ActionsHTTP | None = None
) -> web.Application:
    app = web.Application(middlewares=[github_not_found], client_max_size=64 * 1024 * 1024)
    for prefix, ghes in (("", False), (GHES_PREFIX, True)):
        for route in ROUTES:
            if ghes and not route.ghes:
                continue
            app.router.add_route(
                route.method,
                prefix + aiohttp_path(route.path),
                RestHandler(core, route, ghes=ghes).handle,
            )
    app.add_routes(runner_api.routes())
    app.add_routes(admin.routes())
    if actions is not None:  # the Actions service's scale-set protocol (ghsim.actions)
        app.add_routes(actions.routes())
        app.add_routes(ActionsAdmin(actions).routes())
    return app


class Simulator:
    """The simulator as an in-process server.  ``async with Simulator() as sim: ...``"""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Clock | None = None,
        config: SimConfig | None = None,
        seed: dict[str, Any] | None = None,
        state_file: Path | None = None,
        public_url: str | None = None,
        tick_interval: float = 0.5,
    ) -> None:
        self.host = host
        self.port = port
        self.public_url = public_url
        self.state_file = state_file
        self.tick_interval = tick_interval
        self.core = Core(clock or SystemClock(), config)
        self.runner_api = RunnerAPI(self.core)
        self.admin = AdminAPI(self.core)
        self.actions = ActionsService(self.core.world)
        self.actions_http = ActionsHTTP(self.core, self.actions)
        self.app = build_app(self.core, self.runner_api, self.admin, self.actions_http)
        self._runner: web.AppRunner | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._base_url: str | None = None
        if state_file is not None and state_file.exists():
            apply_seed(self.core.world, load_seed_file(state_file))
        if seed is not None:
            apply_seed(self.core.world, seed)

    @property
    def world(self) -> World:
        return self.core.world

    @property
    def base_url(self) -> str:
        if self._base_url is None:
            raise RuntimeError("the simulator is not started")
        return self._base_url

    @property
    def ghes_url(self) -> str:
        return self.base_url + GHES_PREFIX

    async def start(self) -> str:
        runner = web.AppRunner(self.app, handle_signals=False, access_log=None, shutdown_timeout=2.0)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        await site.start()
        self._runner = runner
        address = runner.addresses[0]
        host = self.host if ":" not in self.host else f"[{self.host}]"
        self._base_url = f"http://{host}:{address[1]}"
        url = self.public_url or self._base_url
        self.core.set_urls(url)
        self.actions_http.public_url = self.public_url
        await self.core.dispatcher.start()
        self.core.tick_wakeup = asyncio.Event()
        self._ticker = asyncio.get_running_loop().create_task(self._tick_loop(), name="ghsim-ticker")
        return self._base_url

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        self.runner_api.wake_all()
        self.actions_http.wake_all()
        await self.core.dispatcher.stop()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self.state_file is not None:
            save_seed_file(self.state_file, export_seed(self.core.world))

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        """Wait until ``predicate()`` (over :attr:`world`) holds; see :meth:`Core.wait_for`."""
        await self.core.wait_for(predicate)

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _tick_loop(self) -> None:
        wakeup = self.core.tick_wakeup
        assert wakeup is not None
        world = self.core.world
        while True:
            try:
                world.tick()
            except Exception:  # a bug in the model must not stop time
                log.exception("ghsim: tick failed")
            self.core.notify()
            deadline = world.next_deadline()
            timeout = self.tick_interval
            if deadline is not None:
                timeout = max(0.01, min(timeout, deadline - world.now()))
            wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wakeup.wait(), timeout)
