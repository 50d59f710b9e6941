"""The runner pool: self-hosted runners, how they join (registration token or JIT config) and leave,
their labels, and what the REST API reports about them.

* a runner registered with a token is configured at once; a JIT runner exists (offline, ephemeral)
  from ``generate-jitconfig`` and is configured when its config is redeemed, which works once;
* names are unique per scope (case-insensitive): registering a taken name replaces the old runner
  unless ``replace`` is false; a JIT config for a taken name is refused;
* a removed runner's session is remembered, so that the runner learns it was removed;
* removing a runner that holds a job hands the job back (:meth:`~.runs.Runs.abandon`).

The runner side of the job protocol (poll, start, heartbeat, complete) is :mod:`.dispatch`.
"""

from __future__ import annotations

import base64
import itertools
import json
import secrets
from collections.abc import Iterator
from dataclasses import KW_ONLY, dataclass, field
from typing import Any, Literal

from ..clock import Clock
from ..config import SimConfig
from ..entities import Job, Label, Runner, RunnerGroup, Scope
from ..errors import Conflict, NotFound, RegistrationError, ValidationFailed
from .credentials import Credentials
from .events import Events, RunnerWake
from .groups import RunnerGroups
from .registry import Registry
from .routing import Router
from .runs import Runs

DEFAULT_LABELS = ("self-hosted", "Linux", "X64")


@dataclass(frozen=True)
class Registered:
    runner: Runner
    session: str


PollResult = Literal["removed"] | Job | None


def decode_jit(encoded: str) -> str | None:
    """The secret inside an encoded JIT config, or ``None`` if it is not one."""
    try:
        outer = json.loads(base64.b64decode(encoded, validate=True))
        creds = json.loads(base64.b64decode(outer[".credentials"], validate=True))
        token = creds["Data"]["token"]
    except (ValueError, KeyError, TypeError):
        return None
    return token if isinstance(token, str) else None


def encode_jit(runner: Runner, scope: Scope, work_folder: str) -> str:
    """Shaped like the real thing (base64 of a JSON map of base64 files); the simulator only reads
    the credential back."""

    def b64(obj: Any) -> str:
        return base64.b64encode(json.dumps(obj).encode()).decode()

    dot_runner = {
        "AgentId": str(runner.id),
        "AgentName": runner.name,
        "PoolId": str(runner.group_id),
        "PoolName": runner.group_name,
        "ServerUrl": "ghsim",
        "GitHubUrl": scope.name,
        "WorkFolder": work_folder,
        "Ephemeral": "true",
    }
    credentials = {"Scheme": "OAuthAccessToken", "Data": {"token": runner.jit_secret}}
    return b64({".runner": b64(dot_runner), ".credentials": b64(credentials)})


@dataclass(eq=False, repr=False)
class RunnerPool:
    """The runners table, by scope, by session and by JIT secret; label ids."""

    clock: Clock
    config: SimConfig
    registry: Registry
    groups: RunnerGroups
    credentials: Credentials
    events: Events
    router: Router
    runs: Runs
    _: KW_ONLY
    runners: dict[int, Runner]
    _runner_ids: Iterator[int] = field(init=False, default_factory=lambda: itertools.count(1))
    _label_ids: dict[str, int] = field(init=False, default_factory=dict)
    _by_scope: dict[tuple[str, str], dict[int, Runner]] = field(init=False, default_factory=dict)
    _sessions: dict[str, int] = field(init=False, default_factory=dict)
    _jit: dict[str, int] = field(init=False, default_factory=dict)
    #: sessions of removed runners, so that the runner learns it was removed
    _removed_sessions: set[str] = field(init=False, default_factory=set)

    # ----------------------------------------------------------------------------------------
    # the REST side

    def runners_in(self, scope: Scope, name: str | None = None) -> list[Runner]:
        runners = self._by_scope.get(self.registry.scope_exists(scope).key, {})
        if name is None:
            return list(runners.values())
        return [r for r in runners.values() if r.name == name]

    def runner(self, scope: Scope, runner_id: int) -> Runner:
        runner = self._by_scope.get(scope.key, {}).get(runner_id)
        if runner is None:
            raise NotFound()
        return runner

    def runner_online(self, runner: Runner) -> bool:
        if runner.job_id is not None:
            return True
        if runner.last_seen is None:
            return False
        return self.clock.now() - runner.last_seen < self.config.runner_offline_after_s

    def runner_busy(self, runner: Runner) -> bool:
        """The ``busy`` flag as the REST API reports it (with the optional reporting lag)."""
        if runner.job_id is None:
            return False
        job = self.runs.jobs[runner.job_id]
        if job.status != "in_progress" or job.started_at is None:
            return False
        return self.clock.now() - job.started_at >= self.config.busy_flag_delay_s

    def generate_jit(
        self,
        scope: Scope,
        name: str,
        runner_group_id: int,
        labels: list[str],
        work_folder: str = "_work",
        *,
        default_labels: bool = True,
    ) -> tuple[Runner, str]:
        scope = self.registry.scope_exists(scope)
        if not name:
            raise ValidationFailed('Invalid request.\n\n"name" wasn\'t supplied.')
        if not labels or len(labels) > 100:
            raise ValidationFailed("labels must have between 1 and 100 items")
        group = self.groups.for_registration(scope, group_id=runner_group_id)
        if any(r.name.lower() == name.lower() for r in self._by_scope.get(scope.key, {}).values()):
            raise Conflict("Already exists - A runner with the name " + name + " already exists.")
        runner = self._add_runner(scope, name, group, labels, ephemeral=True, default_labels=default_labels)
        runner.jit = True
        runner.os = "unknown"  # as GitHub shows a JIT runner that has not connected yet
        runner.jit_secret = secrets.token_urlsafe(24)
        self._jit[runner.jit_secret] = runner.id
        return runner, encode_jit(runner, scope, work_folder)

    def delete_runner(self, scope: Scope, runner_id: int) -> None:
        runner = self.runner(scope, runner_id)
        if runner.job_id is not None:
            job = self.runs.jobs[runner.job_id]
            if job.status == "in_progress" and self.runner_busy(runner):
                raise ValidationFailed(f'Bad request - Runner "{runner.name}" is still running a job"')
        self.remove_runner(runner, reason="deleted")

    # ----------------------------------------------------------------------------------------
    # labels

    def set_labels(self, scope: Scope, runner_id: int, labels: list[str], *, add: bool) -> Runner:
        runner = self.runner(scope, runner_id)
        if len(labels) > 100:
            raise ValidationFailed("at most 100 labels")
        read_only = [lab for lab in runner.labels if lab.type == "read-only"]
        custom = [] if not add else [lab for lab in runner.labels if lab.type == "custom"]
        have = {lab.name.lower() for lab in read_only + custom}
        for name in labels:
            if not name or len(name) > 256:
                raise ValidationFailed(f"invalid label {name!r}")
            if name.lower() not in have:
                custom.append(self._label(name, "custom"))
                have.add(name.lower())
        self._relabel(runner, read_only + custom)
        return runner

    def remove_label(self, scope: Scope, runner_id: int, name: str) -> Runner:
        runner = self.runner(scope, runner_id)
        match = [lab for lab in runner.labels if lab.name.lower() == name.lower()]
        if not match:
            raise NotFound(f"Label {name} not found")
        if match[0].type == "read-only":
            raise ValidationFailed(f"Cannot remove read-only label {name}")
        self._relabel(runner, [lab for lab in runner.labels if lab is not match[0]])
        return runner

    def remove_custom_labels(self, scope: Scope, runner_id: int) -> Runner:
        runner = self.runner(scope, runner_id)
        self._relabel(runner, [lab for lab in runner.labels if lab.type == "read-only"])
        return runner

    def _label(self, name: str, kind: Literal["read-only", "custom"]) -> Label:
        key = name.lower()
        if key not in self._label_ids:
            self._label_ids[key] = len(self._label_ids) + 1
        return Label(self._label_ids[key], name, kind)

    def _relabel(self, runner: Runner, labels: list[Label]) -> None:
        was_idle = self.router.is_idle(runner)
        self.router.unidle(runner)
        runner.labels = labels
        if was_idle:
            self.router.make_idle(runner)
            self.router.match_runner(runner)

    # ----------------------------------------------------------------------------------------
    # joining and leaving (virtual runners talk to these through /_runner/)

    def register_runner(
        self,
        token: str,
        scope: Scope,
        name: str,
        labels: list[str],
        *,
        group: str | None = None,
        ephemeral: bool = False,
        replace: bool = True,
        default_labels: bool = True,
    ) -> Registered:
        scope = self._registration_scope(token, scope)
        if not name:
            raise RegistrationError("invalid_request", "a runner needs a name")
        try:
            group_obj = self.groups.for_registration(scope, group_name=group)
        except (NotFound, ValidationFailed) as exc:
            raise RegistrationError(
                "group_not_found", f'Could not find any self-hosted runner group named "{group}".'
            ) from exc
        existing = [r for r in self._by_scope.get(scope.key, {}).values() if r.name.lower() == name.lower()]
        if existing:
            if not replace:
                raise RegistrationError("name_conflict", f"A runner exists with the same name {name}.")
            for old in existing:
                self.remove_runner(old, reason="replaced")
        runner = self._add_runner(
            scope, name, group_obj, labels, ephemeral=ephemeral, default_labels=default_labels
        )
        runner.configured = True
        return Registered(runner, self._open_session(runner))

    def _registration_scope(self, token: str, scope: Scope) -> Scope:
        """The canonical scope a registration token admits; :class:`RegistrationError` if none."""
        issued = self.credentials.valid_token(token, "registration")
        if issued is None:
            raise RegistrationError(
                "invalid_token", "Http response code: NotFound from 'POST /actions/runner-registration'"
            )
        if issued.expires_at <= self.clock.now():
            raise RegistrationError("expired_token", "The registration token has expired")
        try:
            scope = self.registry.scope_exists(scope)
        except NotFound:
            raise RegistrationError("invalid_token", f"{scope} does not exist") from None
        if scope.key != issued.scope.key:
            raise RegistrationError("invalid_token", f"the registration token is not valid for {scope}")
        return scope

    def redeem_jit(self, encoded: str) -> Registered:
        secret = decode_jit(encoded)
        if secret is None:
            raise RegistrationError("invalid_jit", "the JIT configuration cannot be decoded")
        runner_id = self._jit.get(secret)
        runner = self.runners.get(runner_id) if runner_id is not None else None
        if runner is None:
            raise RegistrationError("invalid_jit", "the runner of this JIT configuration no longer exists")
        if runner.configured:
            raise RegistrationError("jit_reused", "this JIT configuration has already been used")
        runner.configured = True
        runner.os = "Linux"
        return Registered(runner, self._open_session(runner))

    def remove_with_token(self, token: str, scope: Scope, name: str) -> None:
        issued = self.credentials.valid_token(token, "remove")
        if issued is None or issued.expires_at <= self.clock.now():
            raise RegistrationError("invalid_token", "invalid or expired remove token")
        if scope.key != issued.scope.key:
            raise RegistrationError("invalid_token", f"the remove token is not valid for {scope}")
        for runner in [r for r in self._by_scope.get(scope.key, {}).values() if r.name == name]:
            self.remove_runner(runner, reason="removed with a remove token")

    def runner_for_session(self, session: str) -> Runner | None:
        """The runner of a session; ``None`` if it was removed.  :class:`NotFound` if never known."""
        runner_id = self._sessions.get(session)
        if runner_id is None:
            if session in self._removed_sessions:
                return None
            raise NotFound("unknown runner session")
        return self.runners[runner_id]

    def _open_session(self, runner: Runner) -> str:
        runner.session = secrets.token_urlsafe(24)
        self._sessions[runner.session] = runner.id
        return runner.session

    def _add_runner(
        self,
        scope: Scope,
        name: str,
        group: RunnerGroup | None,
        labels: list[str],
        *,
        ephemeral: bool,
        default_labels: bool,
    ) -> Runner:
        out: list[Label] = []
        seen: set[str] = set()
        if default_labels:
            for lab in DEFAULT_LABELS:
                out.append(self._label(lab, "read-only"))
                seen.add(lab.lower())
        for lab in labels:
            lab = lab.strip()
            if lab and lab.lower() not in seen:
                out.append(self._label(lab, "custom"))
                seen.add(lab.lower())
        runner = Runner(
            next(self._runner_ids),
            name,
            scope,
            group,
            out,
            ephemeral,
            self.clock.now(),
            self.config.runner_version,
        )
        self.runners[runner.id] = runner
        self._by_scope.setdefault(scope.key, {})[runner.id] = runner
        return runner

    def remove_runner(self, runner: Runner, *, reason: str) -> None:
        """The runner is gone: its job (if any) is handed back and the runner is woken to learn it."""
        self.router.unidle(runner)
        if runner.job_id is not None:
            self.lose_job(runner, reason)
        self.runners.pop(runner.id, None)
        self._by_scope.get(runner.scope.key, {}).pop(runner.id, None)
        if runner.session is not None:
            self._sessions.pop(runner.session, None)
            self._removed_sessions.add(runner.session)
        if runner.jit_secret is not None:
            self._jit.pop(runner.jit_secret, None)
        self.events.emit(RunnerWake(runner.id))

    def lose_job(self, runner: Runner, reason: str) -> None:
        """The runner can no longer do its job: a started job fails, an unstarted one is re-queued."""
        assert runner.job_id is not None
        job = self.runs.jobs[runner.job_id]
        runner.job_id = None
        self.runs.abandon(job)
