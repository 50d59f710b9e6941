"""The Actions-service client for one ``githubConfigUrl``: implements :class:`ScaleSetAPI`.

Contract:

* bootstrap (§2 of the scale-set reference): PAT, or GitHub App → installation token (minted anew at
  every bootstrap, never cached) → registration token (REST) → ``POST {api}/actions/runner-registration``
  with ``RemoteAuth`` → the service's base URL and admin JWT. 401/403 from that call are retried up
  to 5 times (``min(0.5 s · 2^n, 20 s)``), as ARC ≥ 0.10 does;
* the admin token is refreshed *before* any call when ``now + 60 s`` passes its ``exp`` claim (read
  unverified), by one caller at a time. Unlike ARC, a 401 on an admin call also renews it and retries
  the call once: github.com was observed refusing admin JWTs well before their ``exp``;
* admin calls get ``?api-version=6.0-preview`` and the transport's retries and error mapping;
* ``get_*`` answer ``None`` for what does not exist; ``delete_scale_set`` and ``remove_runner`` accept
  "already gone" (404); ``remove_runner`` raises :class:`JobStillRunning` whatever the status;
* calls are counted by endpoint template in :attr:`stats`; no token, JWT or JIT config is logged.
"""

from __future__ import annotations

import asyncio
import random
import ssl
import time
from collections.abc import Collection, Mapping, Sequence
from typing import Any, Final
from urllib.parse import urlencode

from runnerd import __version__
from runnerd.github.actions.config import ConfigURL
from runnerd.github.actions.connection import Connection
from runnerd.github.actions.errors import ActionsServiceError, ScaleSetNotFound
from runnerd.github.actions.models import RunnerScaleSet, ScaleSetJitConfig, ScaleSetRunner
from runnerd.github.actions.transport import ActionsTransport, Answer, RetryPolicy
from runnerd.github.budget import CallStats, Clock, Draw, Sleep
from runnerd.github.credentials import Credentials, GitHubAppCredentials
from runnerd.github.sansio import make_app_jwt

API_VERSION: Final = "6.0-preview"
SCALE_SETS: Final = "_apis/runtime/runnerscalesets"
AGENTS: Final = "_apis/distributedtask/pools/0/agents"
ZERO_TIME: Final = "0001-01-01T00:00:00Z"
DEFAULT_GROUP_ID: Final = 1
REFRESH_MARGIN_S: Final = 60.0
REGISTRATION_RETRIES: Final = 5


class ActionsClient:
    """See the module docstring. ``clock``/``sleep``/``draw`` are injectable (tests use virtual time)."""

    def __init__(
        self,
        config_url: str | ConfigURL,
        credentials: Credentials,
        *,
        clock: Clock = time.time,
        sleep: Sleep = asyncio.sleep,
        draw: Draw = random.random,
        stats: CallStats | None = None,
        policy: RetryPolicy | None = None,
        transport: ActionsTransport | None = None,
        subsystem: str = "controller",
        ssl_context: ssl.SSLContext | None = None,
        trust_env: bool = True,
        connection: Connection | None = None,
    ) -> None:
        """``ssl_context``: the TLS context (else ``connection``'s, else the defaults);
        ``trust_env``: take the proxy from ``HTTP(S)_PROXY``/``NO_PROXY`` unless ``connection``
        configures one; ``connection``: ARC's ``proxy`` and ``githubServerTLS``, resolved."""
        self.config = config_url if isinstance(config_url, ConfigURL) else ConfigURL.parse(config_url)
        self._credentials = credentials
        self._clock = clock
        self._sleep = sleep
        self.transport = transport or ActionsTransport(
            user_agent=f"runnerd/{__version__} ({subsystem}) ScaleSetID/NA",
            stats=stats,
            policy=policy,
            sleep=sleep,
            draw=draw,
            ssl_context=ssl_context,
            trust_env=trust_env,
            connection=connection,
        )
        self._lock = asyncio.Lock()
        self._base_url = ""
        self._admin_token = ""
        self._expires_at = 0.0

    @property
    def stats(self) -> CallStats:
        return self.transport.stats

    async def close(self) -> None:
        await self.transport.close()

    # -- bootstrap ------------------------------------------------------------------------------

    async def admin(self) -> tuple[str, str]:
        """The service's base URL and a fresh-enough admin token (bootstrapping when needed)."""
        async with self._lock:
            if not self._expires_at or self._clock() + REFRESH_MARGIN_S > self._expires_at:
                await self._bootstrap()
            return self._base_url, self._admin_token

    async def _bootstrap(self) -> None:
        registration = await self._registration_token(await self._rest_token())
        base_url, token = await self._admin_connection(registration)
        import jwt  # PyJWT costs megabytes to import: loaded by scale-set clients only

        try:
            claims = jwt.decode(token, options={"verify_signature": False})
            expires_at = float(claims["exp"])
        except (jwt.PyJWTError, KeyError, TypeError, ValueError):
            raise ActionsServiceError(0, "", "the admin token is not a JWT with an exp claim") from None
        self._base_url, self._admin_token, self._expires_at = base_url, token, expires_at

    async def _rest_token(self) -> str:
        creds = self._credentials
        if not isinstance(creds, GitHubAppCredentials):
            return creds.token
        app_jwt = make_app_jwt(creds.app_id, creds.private_key, self._clock())
        answer = await self.transport.request(
            "POST",
            f"{self.config.api_url}/app/installations/{creds.installation_id}/access_tokens",
            "POST /app/installations/{installation_id}/access_tokens",
            authorization=f"Bearer {app_jwt}",
            headers={"Content-Type": "application/vnd.github+json"},
            expect=(201,),
        )
        return _field(answer, "token")

    async def _registration_token(self, rest_token: str) -> str:
        answer = await self.transport.request(
            "POST",
            self.config.api_url + self.config.registration_token_path,
            f"POST {self.config.scope.path_template}/actions/runners/registration-token",
            authorization=f"Bearer {rest_token}",
            headers={"Content-Type": "application/vnd.github.v3+json"},
            expect=(201,),
        )
        return _field(answer, "token")

    async def _admin_connection(self, registration_token: str) -> tuple[str, str]:
        body = {"url": self.config.url, "runner_event": "register"}
        for attempt in range(REGISTRATION_RETRIES + 1):
            try:
                answer = await self.transport.request(
                    "POST",
                    f"{self.config.api_url}/actions/runner-registration",
                    "POST /actions/runner-registration",
                    authorization=f"RemoteAuth {registration_token}",
                    body=body,
                    expect=range(200, 300),
                )
            except ActionsServiceError as exc:
                if exc.status not in (401, 403) or attempt == REGISTRATION_RETRIES:
                    raise
                await self._sleep(min(0.5 * 2.0**attempt, 20.0))
                continue
            return _field(answer, "url"), _field(answer, "token")
        raise AssertionError("unreachable")  # pragma: no cover

    # -- admin-token calls ----------------------------------------------------------------------

    async def call(
        self,
        method: str,
        path: str,
        *,
        template: str | None = None,
        query: Mapping[str, str | int] | None = None,
        body: Any = None,
        expect: Collection[int] = (200,),
    ) -> Answer:
        """An admin-token call to ``path`` under the service's base URL (counted as ``template``)."""
        params = urlencode({**(query or {}), "api-version": API_VERSION})
        for renewed in (False, True):
            base_url, token = await self.admin()
            try:
                return await self.transport.request(
                    method,
                    f"{base_url.rstrip('/')}/{path.lstrip('/')}?{params}",
                    f"{method} {template or path}",
                    authorization=f"Bearer {token}",
                    body=body,
                    expect=expect,
                )
            except ActionsServiceError as exc:
                if exc.status != 401 or renewed:
                    raise
                await self._forget(token)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _forget(self, token: str) -> None:
        """Drops a token the service refused before its ``exp`` (observed on github.com), once."""
        async with self._lock:
            if self._admin_token == token:
                self._expires_at = 0.0

    async def runner_group_id(self, name: str) -> int:
        if not name or name.lower() == "default":
            return DEFAULT_GROUP_ID
        answer = await self.call("GET", "_apis/runtime/runnergroups/", query={"groupName": name})
        groups = _one_or_none(answer, f"runner group {name!r}")
        if groups is None:
            raise ActionsServiceError(404, "", f"no runner group found with name {name!r}")
        return int(groups["id"])

    async def get_scale_set(self, runner_group_id: int, name: str) -> RunnerScaleSet | None:
        answer = await self.call("GET", SCALE_SETS, query={"runnerGroupId": runner_group_id, "name": name})
        found = _one_or_none(answer, f"runner scale sets with name {name!r}")
        return None if found is None else RunnerScaleSet.from_json(found)

    async def get_scale_set_by_id(self, scale_set_id: int) -> RunnerScaleSet | None:
        try:
            answer = await self.call("GET", f"{SCALE_SETS}/{scale_set_id}", template=f"{SCALE_SETS}/{{id}}")
        except ScaleSetNotFound:
            return None
        return RunnerScaleSet.from_json(answer.data)

    async def create_scale_set(
        self, name: str, runner_group_id: int, labels: Sequence[str]
    ) -> RunnerScaleSet:
        names = list(dict.fromkeys(label for label in (name, *labels) if label))  # ARC: the name first
        body = {
            "name": name,
            "runnerGroupId": runner_group_id,
            "labels": [{"type": "System", "name": label} for label in names],
            "RunnerSetting": {"ephemeral": True, "disableUpdate": True},
            "createdOn": ZERO_TIME,
        }
        return RunnerScaleSet.from_json((await self.call("POST", SCALE_SETS, body=body)).data)

    async def update_scale_set(
        self, scale_set_id: int, *, name: str | None = None, runner_group_id: int | None = None
    ) -> RunnerScaleSet:
        body: dict[str, Any] = {"RunnerSetting": {}, "createdOn": ZERO_TIME}
        if name:
            body["name"] = name
        if runner_group_id:
            body["runnerGroupId"] = runner_group_id
        answer = await self.call(
            "PATCH", f"{SCALE_SETS}/{scale_set_id}", template=f"{SCALE_SETS}/{{id}}", body=body
        )
        return RunnerScaleSet.from_json(answer.data)

    async def delete_scale_set(self, scale_set_id: int) -> None:
        try:
            await self.call(
                "DELETE", f"{SCALE_SETS}/{scale_set_id}", template=f"{SCALE_SETS}/{{id}}", expect=(200, 204)
            )
        except ScaleSetNotFound:
            return

    async def generate_jit_config(
        self, scale_set_id: int, name: str, work_folder: str = ""
    ) -> ScaleSetJitConfig:
        answer = await self.call(
            "POST",
            f"{SCALE_SETS}/{scale_set_id}/generatejitconfig",
            template=f"{SCALE_SETS}/{{id}}/generatejitconfig",
            body={"name": name, "workFolder": work_folder},
        )
        return ScaleSetJitConfig.from_json(answer.data)

    async def get_runner(self, runner_id: int) -> ScaleSetRunner | None:
        try:
            answer = await self.call("GET", f"{AGENTS}/{runner_id}", template=f"{AGENTS}/{{id}}")
        except ActionsServiceError as exc:
            if exc.status == 404:
                return None
            raise
        return ScaleSetRunner.from_json(answer.data)

    async def get_runner_by_name(self, name: str) -> ScaleSetRunner | None:
        answer = await self.call("GET", AGENTS, query={"agentName": name})
        found = _one_or_none(answer, f"runners with name {name!r}")
        return None if found is None else ScaleSetRunner.from_json(found)

    async def remove_runner(self, runner_id: int) -> None:
        try:
            await self.call("DELETE", f"{AGENTS}/{runner_id}", template=f"{AGENTS}/{{id}}", expect=(200, 204))
        except ActionsServiceError as exc:
            if exc.status == 404 and exc.exception != "JobStillRunningException":
                return
            raise


def _field(answer: Answer, key: str) -> str:
    value = answer.data.get(key) if isinstance(answer.data, Mapping) else None
    if not isinstance(value, str) or not value:
        raise ActionsServiceError(answer.status, "", f"the answer has no {key!r}")
    return value


def _one_or_none(answer: Answer, what: str) -> Mapping[str, Any] | None:
    data = answer.data if isinstance(answer.data, Mapping) else {}
    values = data.get("value") or []
    if len(values) > 1:
        raise ActionsServiceError(answer.status, "", f"multiple {what} found")
    return values[0] if values else None
