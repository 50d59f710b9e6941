"""Virtual runners: the runner side of the simulator, as a plain asyncio coroutine.

A virtual runner reads the same environment a runner container gets from actions-runner-controller
and behaves like ``config.sh`` + ``run.sh``:

1. waits ``boot_delay`` (+ ``STARTUP_DELAY_IN_SECONDS``), like a container starting;
2. registers with ``RUNNER_TOKEN`` (at the repository/organization/enterprise URL) or redeems
   ``ACTIONS_RUNNER_INPUT_JITCONFIG`` (from the REST ``generate-jitconfig`` or from a runner scale
   set's ``generatejitconfig``: both are the same kind of config, see :mod:`ghsim.actions`);
3. goes online and long-polls for a job; runs it for the job's duration (heartbeats meanwhile),
   reports start and completion;
4. exits ``0`` when an ephemeral runner has done its job, when the runner is removed from GitHub,
   or when its job was cancelled (ephemeral); exits non-zero when registration fails.

Exit codes (the listener's own codes where it has one):

======  ===================================================================================
code    meaning
======  ===================================================================================
``0``   done: ephemeral runner finished its job, or the runner was removed from GitHub
``1``   registration rejected: token wrong, expired or for another scope; JIT config invalid
        or already used; runner group not found; required environment missing
``2``   retryable: the simulator could not be reached (after retries) or answered nonsense
``5``   session conflict: a runner with this name exists and ``RUNNER_REPLACE=false``
======  ===================================================================================

Environment (ARC's names): ``RUNNER_TOKEN``, ``RUNNER_URL`` or ``GITHUB_URL`` with one of
``RUNNER_REPO`` (``owner/name``) / ``RUNNER_ORG`` / ``RUNNER_ENTERPRISE``, ``RUNNER_NAME``,
``RUNNER_LABELS`` (comma-separated), ``RUNNER_GROUP``, ``RUNNER_EPHEMERAL``,
``RUNNER_NO_DEFAULT_LABELS``, ``RUNNER_REPLACE`` (default true, as ARC passes ``--replace``),
``STARTUP_DELAY_IN_SECONDS``; or ``ACTIONS_RUNNER_INPUT_JITCONFIG`` alone.

This module knows nothing about Kubernetes: a pod agent maps a pod's env to ``env`` and the
returned code to the container's exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypedDict, Unpack

import aiohttp

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_REGISTRATION_FAILED = 1
EXIT_RETRYABLE = 2
EXIT_SESSION_CONFLICT = 5

Sleep = Callable[[float], Awaitable[None]]
JobHook = Callable[[bool], Awaitable[None]]

_TRUE = ("1", "true", "yes", "on")


class _Retryable(Exception):
    pass


class _Exit(Exception):  # control flow, not an error
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass
class RunnerResult:
    exit_code: int
    #: ``ephemeral_done``, ``removed``, ``cancelled``, or the registration failure reason
    #: (``invalid_token``, ``expired_token``, ``invalid_jit``, ``jit_reused``, ``name_conflict``,
    #: ``group_not_found``, ``invalid_env``, ``unreachable``)
    reason: str
    runner_id: int | None = None
    runner_name: str | None = None
    jobs_done: int = 0


def _flag(env: Mapping[str, str], name: str, default: bool = False) -> bool:
    value = env.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in _TRUE


def runner_url(env: Mapping[str, str]) -> str | None:
    """The URL ``config.sh --url`` would get, from ``RUNNER_URL`` or ARC's variables."""
    if env.get("RUNNER_URL"):
        return env["RUNNER_URL"]
    base = (env.get("GITHUB_URL") or "https://github.com/").rstrip("/")
    if env.get("RUNNER_ENTERPRISE"):
        return f"{base}/enterprises/{env['RUNNER_ENTERPRISE']}"
    if env.get("RUNNER_REPO"):
        return f"{base}/{env['RUNNER_REPO']}"
    if env.get("RUNNER_ORG"):
        return f"{base}/{env['RUNNER_ORG']}"
    return None


class VirtualRunner:
    def __init__(
        self,
        base_url: str,
        env: Mapping[str, str],
        *,
        boot_delay: float = 0.0,
        session: aiohttp.ClientSession | None = None,
        sleep: Sleep = asyncio.sleep,
        poll_wait: float = 20.0,
        time_scale: float = 1.0,
        heartbeat_s: float = 30.0,
        retry_for_s: float = 60.0,
        job_hook: JobHook | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.env = dict(env)
        self.boot_delay = boot_delay
        self._session = session
        self._own_session = session is None
        self.sleep = sleep
        self.poll_wait = poll_wait
        self.time_scale = time_scale
        self.heartbeat_s = heartbeat_s
        self.retry_for_s = retry_for_s
        #: called with True when a job starts and False when it ends, like the runner image's
        #: ACTIONS_RUNNER_HOOK_JOB_STARTED / _COMPLETED hooks
        self.job_hook = job_hook
        self.runner_id: int | None = None
        self.runner_name: str | None = env.get("RUNNER_NAME")
        self.ephemeral = False
        self.jobs_done = 0
        self._credential: str | None = None

    async def run(self) -> RunnerResult:
        try:
            if self._session is None:
                self._session = aiohttp.ClientSession()
            try:
                await self._run()
            except _Exit as done:
                return self._result(done.code, done.reason)
            raise AssertionError("unreachable")  # pragma: no cover
        except asyncio.CancelledError:
            await self._disconnect()
            raise
        finally:
            if self._own_session and self._session is not None:
                await self._session.close()
                await asyncio.sleep(0)  # let the closed connections' sockets close
                self._session = None

    def _result(self, code: int, reason: str) -> RunnerResult:
        return RunnerResult(code, reason, self.runner_id, self.runner_name, self.jobs_done)

    async def _run(self) -> None:
        delay = self.boot_delay
        with contextlib.suppress(ValueError):
            delay += float(self.env.get("STARTUP_DELAY_IN_SECONDS") or 0)
        if delay > 0:
            await self.sleep(delay)
        await self._register()
        while True:
            job = await self._poll()
            if job is not None:
                await self._work(job)

    # ---- HTTP ------------------------------------------------------------------------------

    async def _call(
        self, method: str, path: str, body: Any = None, *, deadline_s: float = 30.0
    ) -> tuple[int, dict[str, Any]]:
        """One request, retried while the simulator is unreachable (up to ``retry_for_s``)."""
        assert self._session is not None
        headers = {"Authorization": f"RunnerSession {self._credential}"} if self._credential else {}
        waited = 0.0
        backoff = 0.1
        while True:
            try:
                async with self._session.request(
                    method,
                    self.base_url + path,
                    json=body,
                    headers=headers,
                    timeout=aiohttp.ClientTimeout(total=deadline_s),
                ) as resp:
                    data: Any = {}
                    if resp.status not in (204, 304) and resp.content_type == "application/json":
                        data = await resp.json()
                    if resp.status >= 500:
                        raise _Retryable(f"HTTP {resp.status}")
                    return resp.status, data if isinstance(data, dict) else {}
            except (aiohttp.ClientError, TimeoutError, _Retryable) as exc:
                if waited >= self.retry_for_s:
                    log.warning(
                        "virtual runner %s: giving up on %s %s: %s", self.runner_name, method, path, exc
                    )
                    raise _Exit(EXIT_RETRYABLE, "unreachable") from None
                await self.sleep(backoff)
                waited += backoff
                backoff = min(backoff * 2, 5.0)

    async def _register(self) -> None:
        jit = self.env.get("ACTIONS_RUNNER_INPUT_JITCONFIG")
        if jit:
            status, data = await self._call("POST", "/_runner/jit", {"jitconfig": jit})
        else:
            token, url = self.env.get("RUNNER_TOKEN"), runner_url(self.env)
            if not token or not url:
                log.warning(
                    "virtual runner: RUNNER_TOKEN and a repository/organization/enterprise URL are required"
                )
                raise _Exit(EXIT_REGISTRATION_FAILED, "invalid_env")
            if not self.runner_name:
                self.runner_name = "ghsim-" + secrets.token_hex(4)
            labels = [x.strip() for x in (self.env.get("RUNNER_LABELS") or "").split(",") if x.strip()]
            status, data = await self._call(
                "POST",
                "/_runner/register",
                {
                    "token": token,
                    "url": url,
                    "name": self.runner_name,
                    "labels": labels,
                    "group": self.env.get("RUNNER_GROUP") or None,
                    "ephemeral": _flag(self.env, "RUNNER_EPHEMERAL"),
                    "replace": _flag(self.env, "RUNNER_REPLACE", default=True),
                    "no_default_labels": _flag(self.env, "RUNNER_NO_DEFAULT_LABELS"),
                },
            )
        if status != 201:
            reason = str(data.get("reason", f"http_{status}"))
            log.info("virtual runner %s: registration failed: %s", self.runner_name or "(jit)", reason)
            code = EXIT_SESSION_CONFLICT if reason == "name_conflict" else EXIT_REGISTRATION_FAILED
            raise _Exit(code, reason)
        self.runner_id = int(data["runner_id"])
        self.runner_name = str(data["name"])
        self.ephemeral = bool(data.get("ephemeral"))
        self._credential = str(data["session"])

    async def _poll(self) -> dict[str, Any] | None:
        status, data = await self._call(
            "GET", f"/_runner/poll?wait={self.poll_wait:g}", deadline_s=self.poll_wait + 30
        )
        if status == 410:
            raise _Exit(EXIT_OK, "removed")
        if status == 200 and isinstance(data.get("job"), dict):
            job: dict[str, Any] = data["job"]
            return job
        if status == 204:
            return None
        raise _Exit(EXIT_RETRYABLE, f"http_{status}")

    async def _work(self, job: dict[str, Any]) -> None:
        job_id = int(job["id"])
        status, _ = await self._call("POST", f"/_runner/jobs/{job_id}/start")
        if status == 410:
            raise _Exit(EXIT_OK, "removed")
        if status != 200:
            return  # not ours any more (re-queued meanwhile): poll again
        if self.job_hook is not None:
            await self.job_hook(True)
        try:
            await self._run_job(job_id, job)
        finally:
            if self.job_hook is not None:
                await self.job_hook(False)

    async def _run_job(self, job_id: int, job: dict[str, Any]) -> None:
        remaining = max(0.0, float(job.get("duration", 0))) * self.time_scale
        while remaining > 0:
            step = min(remaining, self.heartbeat_s)
            await self.sleep(step)
            remaining -= step
            if remaining <= 0:
                break
            status, data = await self._call("POST", f"/_runner/jobs/{job_id}/heartbeat")
            if status == 410:
                raise _Exit(EXIT_OK, "removed")
            if not data.get("continue", True):
                self.jobs_done += 1
                if self.ephemeral:
                    raise _Exit(EXIT_OK, "cancelled")
                return
        status, data = await self._call("POST", f"/_runner/jobs/{job_id}/complete", {})
        if status == 410:
            raise _Exit(EXIT_OK, "removed")
        self.jobs_done += 1
        if data.get("removed"):
            raise _Exit(EXIT_OK, "ephemeral_done")

    async def _disconnect(self) -> None:
        if self._credential is None or self._session is None or self._session.closed:
            return
        # best effort: tell the simulator the runner is gone, so its job fails now rather than
        # when the job's lease runs out
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            async with self._session.post(
                self.base_url + "/_runner/disconnect",
                headers={"Authorization": f"RunnerSession {self._credential}"},
                timeout=aiohttp.ClientTimeout(total=2),
            ) as resp:
                await resp.read()


class RunnerOptions(TypedDict, total=False):
    """The keyword options of :class:`VirtualRunner` that :func:`run_virtual_runner` passes on."""

    boot_delay: float
    session: aiohttp.ClientSession | None
    sleep: Sleep
    poll_wait: float
    time_scale: float
    job_hook: JobHook | None


async def run_virtual_runner(base_url: str, env: Mapping[str, str], **options: Unpack[RunnerOptions]) -> int:
    """Run one virtual runner until it exits; returns its exit code (see the module docstring)."""
    result = await VirtualRunner(base_url, env, **options).run()
    return result.exit_code
