"""The Actions service behind ARC's runner scale sets: tenants, scale sets, runner groups, message
sessions, the message queue and scale-set runners.  Pure and synchronous (time from the world's
clock); :mod:`ghsim.actions.http` puts it on the wire.

Contract, as ``/work/shared/reference/scale-set-protocol.md`` §9 lists it:

* a registration token (REST) buys an admin JWT and the tenant's base URL; the tenant is the token's
  repository, organization or enterprise;
* scale-set names are unique per (tenant, runner group); ids are unique in the simulator;
* one session per scale set: a second gets 409 until the first is deleted or idle for
  ``session_idle_s`` (a session with a held long poll is never idle);
* the message log belongs to the scale set, not the session: an unacknowledged message is served
  again to the next session that polls from 0;
* removing a runner that runs a job answers 400 ``JobStillRunningException`` (ARC ≤ 0.13 only
  recognises it with 400; ``actions/scaleset`` matches the name whatever the status); removing a
  runner that is already gone answers 204 (ARC's finalizers remove every runner that way).
"""

from __future__ import annotations

import hashlib
import itertools
import uuid
from typing import Any

from ..config import ActionsSettings
from ..entities import Runner, Scope
from ..errors import Conflict, NotFound, RegistrationError, ValidationFailed
from ..model import World
from . import errors as ae
from .errors import ActionsError
from .jobs import JobFlow
from .scaleset import ScaleSet, Session, Tenant
from .tokens import TokenMint, TokenRejected


class ActionsService:
    def __init__(self, world: World) -> None:
        self.world = world
        self.tenants: dict[str, Tenant] = {}
        self.scale_sets: dict[int, ScaleSet] = {}
        self.sessions: dict[str, Session] = {}
        self.mint = TokenMint(world.clock)
        self.flow = JobFlow(world, self.scale_sets, self.tenants)
        self._ids = itertools.count(1)
        world.observers.append(self.flow.on_event)
        world.tick_hooks.append(self.tick)

    @property
    def settings(self) -> ActionsSettings:
        return self.world.config.actions

    # ---- handshake ---------------------------------------------------------------------------

    def register(self, token: str, scope: Scope, origin: str) -> tuple[Tenant, str]:
        """``POST /actions/runner-registration``: (tenant, admin JWT).  The tenant's base URL is
        ``{origin}/_actions/{tenant id}/``."""
        issued = self.world.issued.get(token)
        if issued is None or issued.kind != "registration":
            raise RegistrationError("invalid_token", "Not Found")
        if issued.expires_at <= self.world.now():
            raise RegistrationError("expired_token", "The registration token has expired")
        try:
            scope = self.world.scope_exists(scope)
        except NotFound:
            raise RegistrationError("invalid_token", f"{scope} does not exist") from None
        if scope.key != issued.scope.key:
            raise RegistrationError("wrong_scope", f"the registration token is not valid for {scope}")
        tid = hashlib.sha256(f"{scope.kind}:{scope.name.lower()}".encode()).hexdigest()[:24]
        tenant = self.tenants.setdefault(tid, Tenant(tid, scope))
        tenant.base_url = f"{origin}/_actions/{tid}/"
        jwt = self.mint.mint("admin", self.settings.admin_token_ttl_s, tenant=tid)
        return tenant, jwt

    def tenant_for(self, tenant_id: str, token: str | None) -> Tenant:
        """The tenant an admin-token call addresses; 401 ``InvalidTokenException`` otherwise."""
        if token is None:
            raise ae.invalid_token("An access token is required.")
        try:
            claims = self.mint.verify(token, "admin")
        except TokenRejected as exc:
            raise ae.invalid_token(str(exc)) from None
        tenant = self.tenants.get(tenant_id)
        if tenant is None or claims.get("tenant") != tenant_id:
            raise ae.invalid_token("The token is not valid for this tenant.")
        return tenant

    # ---- scale sets --------------------------------------------------------------------------

    def scale_set(self, tenant: Tenant, scale_set_id: int) -> ScaleSet:
        ss = self.scale_sets.get(scale_set_id)
        if ss is None or ss.tenant != tenant.id:
            raise ae.scale_set_not_found(scale_set_id)
        return ss

    def list_scale_sets(self, tenant: Tenant, group_id: int | None, name: str | None) -> list[ScaleSet]:
        return [
            ss
            for ss in self.scale_sets.values()
            if ss.tenant == tenant.id
            and (group_id is None or ss.group_id == group_id)
            and (name is None or ss.name.lower() == name.lower())
        ]

    def create_scale_set(self, tenant: Tenant, body: dict[str, Any]) -> ScaleSet:
        name = body.get("name")
        if not isinstance(name, str) or not name.strip():
            raise ae.bad_argument("The runner scale set name is required.")
        group_id, group_name = self._group(tenant, body.get("runnerGroupId") or 1)
        if self.list_scale_sets(tenant, group_id, name):
            raise ActionsError(
                409,
                ae.SCALE_SET_EXISTS,
                f"A runner scale set named {name} already exists in this runner group.",
            )
        ss = ScaleSet(
            next(self._ids),
            tenant.id,
            name,
            group_id,
            group_name,
            self._labels(body.get("labels"), name),
            self._setting(body.get("RunnerSetting"), {}),
            self.world.now(),
        )
        self.scale_sets[ss.id] = ss
        self.flow.index(ss)
        self.flow.claim_queued()
        return ss

    def update_scale_set(self, tenant: Tenant, scale_set_id: int, body: dict[str, Any]) -> ScaleSet:
        """PATCH: zero and empty fields mean "not provided"."""
        ss = self.scale_set(tenant, scale_set_id)
        name = body.get("name") or ss.name
        group_id, group_name = (ss.group_id, ss.group_name)
        if body.get("runnerGroupId"):
            group_id, group_name = self._group(tenant, body["runnerGroupId"])
        if (name.lower(), group_id) != (ss.name.lower(), ss.group_id) and self.list_scale_sets(
            tenant, group_id, name
        ):
            raise ActionsError(409, ae.SCALE_SET_EXISTS, f"A runner scale set named {name} already exists.")
        self.flow.unindex(ss)
        ss.name, ss.group_id, ss.group_name = str(name), group_id, group_name
        if body.get("labels"):
            ss.labels = self._labels(body["labels"], ss.name)
        ss.setting = self._setting(body.get("RunnerSetting"), ss.setting)
        self.flow.index(ss)
        self.flow.claim_queued()
        return ss

    def delete_scale_set(self, tenant: Tenant, scale_set_id: int) -> None:
        self.vanish(self.scale_set(tenant, scale_set_id).id)

    def vanish(self, scale_set_id: int) -> None:
        """The scale set is gone (deleted, or removed by GitHub): every later call gets 404."""
        ss = self.scale_sets.pop(scale_set_id, None)
        if ss is None:
            raise NotFound(f"no scale set {scale_set_id}")
        if ss.session is not None:
            self.sessions.pop(ss.session.id, None)
            ss.session = None
        self.flow.unindex(ss)
        self.flow.release_all(ss)
        self.flow.on_change(ss.id)

    def runner_groups(self, tenant: Tenant, name: str | None) -> list[dict[str, Any]]:
        scope = tenant.scope
        if scope.kind == "repo":
            groups = [(1, "Default", True)]
        else:
            groups = [(g.id, g.name, g.default) for g in self.world.groups.get(scope.key, {}).values()]
        out = []
        for gid, gname, default in groups:
            if name is not None and gname.lower() != name.lower():
                continue
            size = sum(1 for r in self.world.runners_in(scope) if r.group_id == gid)
            out.append({"id": gid, "name": gname, "size": size, "isDefaultGroup": default})
        return out

    def _group(self, tenant: Tenant, group_id: Any) -> tuple[int, str]:
        if isinstance(group_id, bool) or not isinstance(group_id, int):
            raise ae.bad_argument("runnerGroupId must be an integer.")
        for g in self.runner_groups(tenant, None):
            if g["id"] == group_id:
                return group_id, str(g["name"])
        raise ActionsError(
            404, ae.RUNNER_GROUP_NOT_FOUND, f"No runner group found with identifier {group_id}."
        )

    @staticmethod
    def _labels(raw: Any, name: str) -> list[dict[str, str]]:
        if not raw:
            return [{"type": "System", "name": name}]
        if not isinstance(raw, list):
            raise ae.bad_argument("labels must be a list.")
        out: list[dict[str, str]] = []
        seen: set[str] = set()
        for lab in raw:
            lname = lab.get("name") if isinstance(lab, dict) else None
            if not isinstance(lname, str) or not lname.strip():
                raise ae.bad_argument("Every label needs a name.")
            if lname.lower() not in seen:
                seen.add(lname.lower())
                out.append({"type": str(lab.get("type") or "System"), "name": lname})
        return out

    @staticmethod
    def _setting(raw: Any, current: dict[str, bool]) -> dict[str, bool]:
        out = dict(current)
        if isinstance(raw, dict):
            for key in ("ephemeral", "isElastic", "disableUpdate"):
                if raw.get(key):
                    out[key] = True
        return out

    # ---- sessions ----------------------------------------------------------------------------

    def open_session(self, tenant: Tenant, scale_set_id: int, owner: str) -> tuple[Session, str]:
        ss = self.scale_set(tenant, scale_set_id)
        now = self.world.now()
        if ss.session is not None and not self._idle(ss.session, now):
            raise ActionsError(
                409,
                ae.SESSION_CONFLICT,
                f"The actions runner scaleset {ss.name} already has an active session.",
            )
        if ss.session is not None:
            self.sessions.pop(ss.session.id, None)
        sess = Session(str(uuid.uuid4()), ss.id, owner, now, now)
        ss.session = sess
        self.sessions[sess.id] = sess
        return sess, self._queue_token(sess)

    def refresh_session(self, tenant: Tenant, scale_set_id: int, session_id: str) -> tuple[Session, str]:
        sess = self._tenant_session(tenant, scale_set_id, session_id)
        sess.last_active = self.world.now()
        return sess, self._queue_token(sess)

    def close_session(self, tenant: Tenant, scale_set_id: int, session_id: str) -> None:
        sess = self._tenant_session(tenant, scale_set_id, session_id)
        self._end(sess)

    def _tenant_session(self, tenant: Tenant, scale_set_id: int, session_id: str) -> Session:
        ss = self.scale_set(tenant, scale_set_id)
        sess = self.sessions.get(session_id)
        if sess is None or sess.scale_set_id != ss.id or self._idle(sess, self.world.now()):
            if sess is not None and sess.scale_set_id == ss.id:
                self._end(sess)
            raise ae.session_expired(session_id)
        return sess

    def _end(self, sess: Session) -> None:
        self.sessions.pop(sess.id, None)
        ss = self.scale_sets.get(sess.scale_set_id)
        if ss is not None and ss.session is sess:
            ss.session = None
            self.flow.on_change(ss.id)

    def _idle(self, sess: Session, now: float) -> bool:
        return sess.polls_held == 0 and now - sess.last_active >= self.settings.session_idle_s

    def _queue_token(self, sess: Session) -> str:
        return self.mint.mint("queue", self.settings.queue_token_ttl_s, session=sess.id)

    def queue_session(self, token: str | None) -> Session | None:
        """The live session a queue token belongs to; ``None`` → answer 401."""
        if token is None:
            return None
        try:
            claims = self.mint.verify(token, "queue")
        except TokenRejected:
            return None
        sess = self.sessions.get(str(claims.get("session")))
        if sess is None or self._idle(sess, self.world.now()) or sess.scale_set_id not in self.scale_sets:
            return None
        return sess

    # ---- the message queue -------------------------------------------------------------------

    def poll(self, sess: Session, last_id: int, capacity: int | None) -> bytes | None:
        """Admit, pack pending job messages, and return the first message after ``last_id``."""
        ss = self.scale_sets[sess.scale_set_id]
        sess.last_active = self.world.now()
        ss.capacity = capacity
        self.flow.admit(ss)
        ss.flush(max(1, self.settings.batch_size))
        message = ss.first_after(last_id)
        return None if message is None else message.raw

    def ack(self, sess: Session, message_id: int) -> None:
        sess.last_active = self.world.now()
        self.scale_sets[sess.scale_set_id].ack(message_id)

    def acquire(self, sess: Session, scale_set_id: int, request_ids: list[int]) -> list[int]:
        if sess.scale_set_id != scale_set_id:
            raise ae.scale_set_not_found(scale_set_id)
        sess.last_active = self.world.now()
        return self.flow.acquire(self.scale_sets[scale_set_id], request_ids)

    def acquirable(self, ss: ScaleSet) -> list[int]:
        return [t.job_id for t in ss.jobs.values() if t.stage == "available"]

    # ---- runners -----------------------------------------------------------------------------

    def generate_jit(
        self, tenant: Tenant, scale_set_id: int, name: Any, work_folder: Any
    ) -> tuple[Runner, str]:
        ss = self.scale_set(tenant, scale_set_id)
        if not isinstance(name, str) or not name:
            raise ae.bad_argument("The runner name is required.")
        folder = work_folder if isinstance(work_folder, str) and work_folder else "_work"
        group = ss.group_id if tenant.scope.kind != "repo" else 1
        labels = [lab["name"] for lab in ss.labels]
        try:
            runner, encoded = self.world.generate_jit(
                tenant.scope, name, group, labels, folder, default_labels=False
            )
        except Conflict:
            raise ActionsError(409, ae.AGENT_EXISTS, f"A runner with name {name} already exists.") from None
        except (NotFound, ValidationFailed) as exc:
            raise ae.bad_argument(exc.message) from None
        self.flow.add_runner(ss, runner.id)
        self.flow.on_change(ss.id)
        return runner, encoded

    def runner(self, tenant: Tenant, runner_id: int) -> Runner:
        runner = self.world.runners.get(runner_id)
        if runner is None or runner.scope.key != tenant.scope.key:
            raise ActionsError(404, ae.AGENT_NOT_FOUND, f"No runner found with identifier {runner_id}.")
        return runner

    def runners_named(self, tenant: Tenant, name: str) -> list[Runner]:
        return [r for r in self.world.runners_in(tenant.scope) if r.name.lower() == name.lower()]

    def owner_of(self, runner: Runner) -> int:
        return self.flow.runner_owner.get(runner.id, 0)

    def remove_runner(self, tenant: Tenant, runner_id: int) -> None:
        runner = self.world.runners.get(runner_id)
        if runner is None or runner.scope.key != tenant.scope.key:
            return  # already gone: 204, as ARC's finalizers expect
        if runner.job_id is not None and self.world.jobs[runner.job_id].status == "in_progress":
            raise ActionsError(400, ae.JOB_STILL_RUNNING, f"Job is still running on runner {runner.name}.")
        self.world.delete_runner(runner.scope, runner.id)

    # ---- time --------------------------------------------------------------------------------

    def tick(self, now: float) -> None:
        self.flow.tick(now)
        for sess in [s for s in self.sessions.values() if self._idle(s, now)]:
            self._end(sess)
