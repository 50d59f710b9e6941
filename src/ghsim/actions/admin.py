"""``/_sim/actions``: inspect the Actions service and switch its faults (see docs/ghsim.md).

==========================================  ======================================================
``GET    /_sim/actions``                    tenants, scale sets (statistics, session, log), faults
``GET    /_sim/actions/faults``             the active faults
``POST   /_sim/actions/faults``             add a fault (or a list of them), see :mod:`.faults`
``DELETE /_sim/actions/faults[/{id}]``      remove all faults (or one)
``POST   /_sim/actions/scalesets/{id}/vanish``  GitHub deletes the scale set: every call → 404
``POST   /_sim/actions/expire-tokens``      ``{"kind": "admin"|"queue"|"all"}``: tokens minted
                                            so far read as expired (clients must refresh)
==========================================  ======================================================
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from ..errors import SimError, ValidationFailed
from ..httputil import dumps
from .http import ActionsHTTP

JSON = dict[str, Any]


def _reply(status: int, body: Any = None) -> web.Response:
    if body is None:
        return web.Response(status=status)
    return web.Response(status=status, body=dumps(body), content_type="application/json")


class ActionsAdmin:
    def __init__(self, http: ActionsHTTP) -> None:
        self.http = http
        self.service = http.service

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/_sim/actions", self._guard(self.overview)),
            web.get("/_sim/actions/faults", self._guard(self.list_faults)),
            web.post("/_sim/actions/faults", self._guard(self.add_faults)),
            web.delete("/_sim/actions/faults", self._guard(self.clear_faults)),
            web.delete("/_sim/actions/faults/{id:\\d+}", self._guard(self.clear_faults)),
            web.post("/_sim/actions/scalesets/{id:\\d+}/vanish", self._guard(self.vanish)),
            web.post("/_sim/actions/expire-tokens", self._guard(self.expire_tokens)),
        ]

    def _guard(self, fn: Any) -> Any:
        async def handler(request: web.Request) -> web.Response:
            try:
                response: web.Response = await fn(request)
            except SimError as exc:
                return _reply(exc.status, {"message": exc.message})
            self.http.core.notify()
            return response

        return handler

    async def overview(self, request: web.Request) -> web.Response:
        svc = self.service
        scale_sets = []
        for ss in svc.scale_sets.values():
            sess = ss.session
            scale_sets.append(
                {
                    "id": ss.id,
                    "tenant": ss.tenant,
                    "scope": str(svc.tenants[ss.tenant].scope),
                    "name": ss.name,
                    "runnerGroupId": ss.group_id,
                    "labels": [lab["name"] for lab in ss.labels],
                    "statistics": ss.statistics(),
                    "capacity": ss.capacity,
                    "session": None
                    if sess is None
                    else {"sessionId": sess.id, "ownerName": sess.owner, "lastActive": sess.last_active},
                    "messages": list(ss.log_ids),
                    "pending": len(ss.pending),
                    "runners": sorted(ss.runner_ids),
                }
            )
        return _reply(
            200,
            {
                "mode": svc.flow.mode,
                "tenants": [
                    {"id": t.id, "scope": str(t.scope), "url": t.base_url} for t in svc.tenants.values()
                ],
                "scale_sets": scale_sets,
                "faults": [f.to_dict() for f in self.http.faults.faults],
            },
        )

    async def list_faults(self, request: web.Request) -> web.Response:
        return _reply(200, [f.to_dict() for f in self.http.faults.faults])

    async def add_faults(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        specs = body if isinstance(body, list) else [body]
        if not all(isinstance(s, dict) for s in specs):
            raise ValidationFailed("a fault is an object")
        added = [self.http.faults.add(spec).to_dict() for spec in specs]
        return _reply(201, added if isinstance(body, list) else added[0])

    async def clear_faults(self, request: web.Request) -> web.Response:
        fid = request.match_info.get("id")
        self.http.faults.remove(int(fid) if fid is not None else None)
        return _reply(204)

    async def vanish(self, request: web.Request) -> web.Response:
        self.service.vanish(int(request.match_info["id"]))
        return _reply(204)

    async def expire_tokens(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        kind = body.get("kind", "all") if isinstance(body, dict) else None
        if kind not in ("admin", "queue", "all"):
            raise ValidationFailed("kind is admin, queue or all")
        for k in ("admin", "queue") if kind == "all" else (kind,):
            self.service.mint.revoke(k)
        return _reply(200, {"expired": kind})

    @staticmethod
    async def _body(request: web.Request) -> Any:
        raw = await request.read()
        if not raw:
            return {}
        try:
            return json.loads(raw)
        except ValueError:
            raise ValidationFailed("Problems parsing JSON") from None
