"""The Actions service on the wire (aiohttp): the handshake at ``{api}/actions/runner-registration``
(github.com-style and under ``/api/v3``), the service under ``/_actions/{tenant}/_apis/…`` and the
message queue under ``/_broker/scalesets/message``.

Every admin call carries ``Authorization: Bearer <admin JWT>`` (401 ``InvalidTokenException``
otherwise); queue calls and ``acquirejobs`` carry the session's queue token (401 when it expired or
its session is gone).  Errors are the service's ``{"typeName", "message"}`` envelope.  Every answer
has an ``ActivityId`` header; queue and handshake answers also ``X-GitHub-Request-Id`` (as the
broker and the REST API send it).

A message poll is held until a message is there or ``long_poll_s`` of *simulator* time has passed
(then 202): it waits on the scale set's changes and on the simulator's ticks, so tests on a manual
clock move the hold along by advancing the clock instead of sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from ..core import Core
from ..errors import RegistrationError
from ..httputil import DOCS, dumps, error_body
from ..runner_api import scope_from_url
from . import errors as ae
from . import render
from .errors import ActionsError
from .faults import Fault, FaultSet
from .scaleset import Session
from .service import ActionsService
from .tokens import bearer

Out = tuple[int, Any]
Handler = Callable[[web.Request], Awaitable[Out]]
FAULTS = web.RequestKey("actions_faults", list[Fault])
BOM = b"\xef\xbb\xbf"
QUEUE_PATH = "/_broker/scalesets/message"
_HANDSHAKE_STATUS = {"invalid_token": 404, "expired_token": 401, "wrong_scope": 403}


class ActionsHTTP:
    def __init__(self, core: Core, service: ActionsService) -> None:
        self.core = core
        self.service = service
        self.faults = FaultSet()
        #: the simulator's public URL, when it is not what clients put in ``Host``
        self.public_url: str | None = None
        self._waiting: dict[asyncio.Event, tuple[int | None, float]] = {}
        self._by_scale_set: dict[int, set[asyncio.Event]] = {}
        self._stopping = False
        service.flow.on_change = self._changed
        core.world.tick_hooks.append(self._on_tick)

    def routes(self) -> list[web.RouteDef]:
        w = self._wrap
        rs = "/_actions/{tenant}/_apis/runtime/runnerscalesets"
        one = rs + "/{id:\\d+}"
        agents = "/_actions/{tenant}/_apis/distributedtask/pools/0/agents"
        return [
            web.post("/actions/runner-registration", w("handshake", self.handshake)),
            web.post("/api/v3/actions/runner-registration", w("handshake", self.handshake)),
            web.get(rs, w("scaleset.list", self.list_scale_sets)),
            web.post(rs, w("scaleset.create", self.create_scale_set)),
            web.get(one, w("scaleset.get", self.get_scale_set)),
            web.patch(one, w("scaleset.update", self.update_scale_set)),
            web.delete(one, w("scaleset.delete", self.delete_scale_set)),
            web.post(one + "/sessions", w("session.create", self.create_session)),
            web.patch(one + "/sessions/{sid}", w("session.refresh", self.refresh_session)),
            web.delete(one + "/sessions/{sid}", w("session.delete", self.delete_session)),
            web.get(one + "/acquirablejobs", w("acquirablejobs", self.acquirable_jobs)),
            web.post(one + "/acquirejobs", w("acquirejobs", self.acquire_jobs)),
            web.post(one + "/generatejitconfig", w("jit.generate", self.generate_jit)),
            web.get("/_actions/{tenant}/_apis/runtime/runnergroups/", w("runnergroup.list", self.groups)),
            web.get("/_actions/{tenant}/_apis/runtime/runnergroups", w("runnergroup.list", self.groups)),
            web.get(agents, w("agent.list", self.list_agents)),
            web.get(agents + "/{rid:\\d+}", w("agent.get", self.get_agent)),
            web.delete(agents + "/{rid:\\d+}", w("agent.delete", self.delete_agent)),
            web.get(QUEUE_PATH, w("message.get", self.get_message)),
            web.delete(QUEUE_PATH + "/{mid:\\d+}", w("message.delete", self.delete_message)),
        ]

    # ---- plumbing ----------------------------------------------------------------------------

    def _wrap(self, op: str, fn: Handler) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handler(request: web.Request) -> web.Response:
            faults = self.faults.take(op)
            request[FAULTS] = faults
            for fault in faults:
                if fault.kind == "stall":
                    await self._hold(None, self.core.clock.now() + fault.seconds)
                    if op == "message.get":
                        return self._finish(op, request, 202, None)
            status, body = await self._answer(op, fn, request, faults)
            if any(f.kind == "bom" for f in faults) and isinstance(body, bytes | dict | list):
                body = BOM + (body if isinstance(body, bytes) else dumps(body))
            return self._finish(op, request, status, body)

        return handler

    async def _answer(self, op: str, fn: Handler, request: web.Request, faults: list[Fault]) -> Out:
        for fault in faults:
            if fault.kind == "error":
                exc = ActionsError(fault.status, fault.exception(), fault.message)
                return exc.status, (exc.message if fault.text_plain else exc.envelope())
            if fault.kind == "empty":
                return fault.status, b""
        try:
            return await fn(request)
        except ActionsError as exc:
            return exc.status, exc.envelope()

    def _finish(self, op: str, request: web.Request, status: int, body: Any) -> web.Response:
        """``body``: ``None`` (no body), ``bytes`` (JSON text), ``str`` (``text/plain``) or JSON."""
        headers = {"ActivityId": str(uuid.uuid4())}
        if op == "handshake" or request.path.startswith(QUEUE_PATH):
            headers["X-GitHub-Request-Id"] = uuid.uuid4().hex[:20].upper()
        self.core.stats.count("actions/" + op, "actions", status)
        self.core.notify()
        if body is None or status == 204:
            return web.Response(status=status, headers=headers)
        if isinstance(body, str):
            headers["Content-Type"] = "text/plain; charset=utf-8"
            return web.Response(status=status, body=body.encode(), headers=headers)
        if not isinstance(body, bytes):
            body = dumps(body)
        if body:
            headers["Content-Type"] = "application/json; charset=utf-8"
        return web.Response(status=status, body=body, headers=headers)

    def _origin(self, request: web.Request) -> str:
        return (self.public_url or f"{request.scheme}://{request.host}").rstrip("/")

    def _tenant(self, request: web.Request) -> Any:
        token = bearer(request.headers.get("Authorization"))
        return self.service.tenant_for(request.match_info["tenant"], token)

    def _queue_session(self, request: web.Request) -> Session:
        sess = self.service.queue_session(bearer(request.headers.get("Authorization")))
        if sess is None:
            raise ActionsError(401, ae.INVALID_TOKEN, "The message queue access token is expired or invalid.")
        return sess

    @staticmethod
    async def _json(request: web.Request) -> Any:
        raw = await request.read()
        if raw.startswith(BOM):
            raw = raw[3:]
        if not raw.strip():
            return {}
        try:
            return json.loads(raw)
        except ValueError:
            raise ae.bad_argument("The request body is not valid JSON.") from None

    @staticmethod
    def _id(request: web.Request, name: str = "id") -> int:
        return int(request.match_info[name])

    # ---- long polls --------------------------------------------------------------------------

    def _changed(self, scale_set_id: int) -> None:
        for event in self._by_scale_set.get(scale_set_id, ()):
            event.set()

    def _on_tick(self, now: float) -> None:
        for event, (_, deadline) in self._waiting.items():
            if deadline <= now:
                event.set()

    def wake_all(self) -> None:
        """Release every held request (server shutdown)."""
        self._stopping = True
        for event in self._waiting:
            event.set()

    async def _hold(self, scale_set_id: int | None, deadline: float) -> None:
        """Wait until the scale set changes, or ``deadline`` (simulator time) has passed."""
        remaining = deadline - self.core.clock.now()
        if remaining <= 0 or self._stopping:
            return
        event = asyncio.Event()
        self._waiting[event] = (scale_set_id, deadline)
        if scale_set_id is not None:
            self._by_scale_set.setdefault(scale_set_id, set()).add(event)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), timeout=remaining)
        finally:
            del self._waiting[event]
            if scale_set_id is not None:
                waiters = self._by_scale_set[scale_set_id]
                waiters.discard(event)
                if not waiters:
                    del self._by_scale_set[scale_set_id]

    # ---- handshake ---------------------------------------------------------------------------

    async def handshake(self, request: web.Request) -> Out:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        body = await self._json(request)
        url = body.get("url") if isinstance(body, dict) else None
        if scheme != "RemoteAuth" or not token.strip() or not isinstance(url, str):
            return 400, error_body(400, "RemoteAuth <registration token> and a url are required", DOCS)
        try:
            scope = scope_from_url(url)
            tenant, jwt = self.service.register(token.strip(), scope, self._origin(request))
        except ValueError as exc:
            return 400, error_body(400, str(exc), DOCS)
        except RegistrationError as exc:
            status = _HANDSHAKE_STATUS.get(exc.reason, 400)
            return status, error_body(status, exc.message, DOCS)
        return 200, {"url": tenant.base_url, "token": jwt}

    # ---- scale sets and runner groups --------------------------------------------------------

    async def list_scale_sets(self, request: web.Request) -> Out:
        tenant = self._tenant(request)
        group = request.query.get("runnerGroupId")
        if group is not None and not group.isdigit():
            raise ae.bad_argument("runnerGroupId must be an integer.")
        found = self.service.list_scale_sets(tenant, int(group) if group else None, request.query.get("name"))
        return 200, {"count": len(found), "value": [render.scale_set(ss, tenant.base_url) for ss in found]}

    async def create_scale_set(self, request: web.Request) -> Out:
        tenant = self._tenant(request)
        body = await self._json(request)
        if not isinstance(body, dict):
            raise ae.bad_argument("The body must be a runner scale set.")
        return 200, render.scale_set(self.service.create_scale_set(tenant, body), tenant.base_url)

    async def get_scale_set(self, request: web.Request) -> Out:
        tenant = self._tenant(request)
        return 200, render.scale_set(self.service.scale_set(tenant, self._id(request)), tenant.base_url)

    async def update_scale_set(self, request: web.Request) -> Out:
        tenant = self._tenant(request)
        body = await self._json(request)
        if not isinstance(body, dict):
            raise ae.bad_argument("The body must be a runner scale set.")
        ss = self.service.update_scale_set(tenant, self._id(request), body)
        return 200, render.scale_set(ss, tenant.base_url)

    async def delete_scale_set(self, request: web.Request) -> Out:
        self.service.delete_scale_set(self._tenant(request), self._id(request))
        return 204, None

    async def groups(self, request: web.Request) -> Out:
        found = self.service.runner_groups(self._tenant(request), request.query.get("groupName"))
        return 200, {"count": len(found), "value": found}

    # ---- sessions ----------------------------------------------------------------------------

    def _session_out(self, request: web.Request, sess: Session, queue_token: str) -> Out:
        tenant = self.service.tenants[self.service.scale_sets[sess.scale_set_id].tenant]
        empty = any(f.kind == "empty_queue_url" for f in request[FAULTS])
        queue_url = "" if empty else self._origin(request) + QUEUE_PATH
        ss = self.service.scale_sets[sess.scale_set_id]
        return 200, render.session(sess, ss, tenant.base_url, queue_url, queue_token)

    async def create_session(self, request: web.Request) -> Out:
        tenant = self._tenant(request)
        body = await self._json(request)
        owner = body.get("ownerName") if isinstance(body, dict) else None
        sess, token = self.service.open_session(tenant, self._id(request), str(owner or uuid.uuid4()))
        return self._session_out(request, sess, token)

    async def refresh_session(self, request: web.Request) -> Out:
        tenant = self._tenant(request)
        sess, token = self.service.refresh_session(tenant, self._id(request), request.match_info["sid"])
        return self._session_out(request, sess, token)

    async def delete_session(self, request: web.Request) -> Out:
        self.service.close_session(self._tenant(request), self._id(request), request.match_info["sid"])
        return 204, None

    # ---- the message queue and acquisition ---------------------------------------------------

    async def get_message(self, request: web.Request) -> Out:
        sess = self._queue_session(request)
        last = request.query.get("lastMessageId", "0")
        cap = request.headers.get("X-ScaleSetMaxCapacity")
        if not last.isdigit() or (cap is not None and not cap.strip().isdigit()):
            raise ae.bad_argument("lastMessageId and X-ScaleSetMaxCapacity must be non-negative integers.")
        capacity = int(cap) if cap is not None else None
        deadline = self.core.clock.now() + self.service.settings.long_poll_s
        sess.polls_held += 1
        try:
            while True:
                if sess.id not in self.service.sessions:
                    raise ActionsError(401, ae.INVALID_TOKEN, "The message session has ended.")
                raw = self.service.poll(sess, int(last), capacity)
                if raw is not None:
                    return 200, raw
                if self.core.clock.now() >= deadline or self._stopping:
                    return 202, None
                await self._hold(sess.scale_set_id, deadline)
        finally:
            sess.polls_held -= 1
            sess.last_active = self.core.clock.now()

    async def delete_message(self, request: web.Request) -> Out:
        self.service.ack(self._queue_session(request), self._id(request, "mid"))
        return 204, None

    async def acquire_jobs(self, request: web.Request) -> Out:
        if self.service.flow.mode != "ghes":
            return 404, "404 page not found"
        sess = self._queue_session(request)
        body = await self._json(request)
        if not isinstance(body, list) or not all(
            isinstance(i, int) and not isinstance(i, bool) for i in body
        ):
            raise ae.bad_argument("The body must be a list of runner request ids.")
        got = self.service.acquire(sess, self._id(request), body)
        return 200, {"count": len(got), "value": got}

    async def acquirable_jobs(self, request: web.Request) -> Out:
        tenant = self._tenant(request)
        ss = self.service.scale_set(tenant, self._id(request))
        url = f"{tenant.base_url}_apis/runtime/runnerscalesets/{ss.id}/acquirejobs"
        world = self.core.world
        value = [
            render.acquirable_job(world, ss.jobs[job_id], world.jobs[job_id], url)
            for job_id in self.service.acquirable(ss)
        ]
        if not value:
            return 204, None
        return 200, {"count": len(value), "value": value}

    # ---- runners -----------------------------------------------------------------------------

    async def generate_jit(self, request: web.Request) -> Out:
        tenant = self._tenant(request)
        body = await self._json(request)
        if not isinstance(body, dict):
            raise ae.bad_argument("The body must be {name, workFolder}.")
        ss_id = self._id(request)
        runner, encoded = self.service.generate_jit(tenant, ss_id, body.get("name"), body.get("workFolder"))
        return 200, {"runner": render.runner_reference(runner, ss_id), "encodedJITConfig": encoded}

    async def get_agent(self, request: web.Request) -> Out:
        runner = self.service.runner(self._tenant(request), self._id(request, "rid"))
        return 200, render.runner_reference(runner, self.service.owner_of(runner))

    async def list_agents(self, request: web.Request) -> Out:
        tenant = self._tenant(request)
        name = request.query.get("agentName", "")
        found = self.service.runners_named(tenant, name)
        value = [render.runner_reference(r, self.service.owner_of(r)) for r in found]
        return 200, {"count": len(value), "value": value}

    async def delete_agent(self, request: web.Request) -> Out:
        self.service.remove_runner(self._tenant(request), self._id(request, "rid"))
        return 204, None
