"""The GitHub REST client: the only code in runnerd that talks to GitHub.

Built on aiohttp, with gidgethub's sans-I/O helpers for headers and URL templates, and this package's
own policy (see :mod:`runnerd.github.sansio` and :mod:`runnerd.github.budget`):

* credentials: a PAT, or a GitHub App whose installation token is cached and refreshed (5 minutes
  before expiry by default) by one caller at a time;
* conditional GETs: ``If-None-Match`` with the cached ``ETag``; a 304 returns the cached body and costs
  no rate limit;
* rate limits: every response's ``x-ratelimit-*`` headers are recorded; a limited call raises
  :class:`RateLimitedError` and closes the shared gate, behind which later calls wait (up to a max
  wait, then they raise :class:`RateLimitWaitExceeded`);
* retries: 5xx and connection failures are retried with exponential backoff and jitter, for
  idempotent calls only (a POST is retried only when the connection was never made);
* counters: every response is counted by endpoint template and status in :class:`CallStats`.

The clock, sleep and random draw are injectable so tests take no real time.
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import random
import ssl as ssl_module
import time
from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final

import aiohttp
import yarl
from gidgethub import sansio as gh_sansio

from runnerd import __version__
from runnerd.github.budget import ALL, CallStats, Clock, Draw, RateLimitGate, RateLimitState, Sleep
from runnerd.github.cache import ETAG_CACHE_SIZE, CachedResponse, EtagCache, TokenSlot
from runnerd.github.config import GitHubConfig, Scope
from runnerd.github.credentials import Credentials, GitHubAppCredentials, PersonalAccessToken
from runnerd.github.errors import (
    GitHubConnectionError,
    GitHubError,
    GitHubHTTPError,
    NotFoundError,
    RateLimitedError,
    RunnerBusyError,
    RunnerGroupNotFoundError,
    UnexpectedResponseError,
    http_error_class,
)
from runnerd.github.models import (
    InstallationToken,
    JitConfig,
    RegistrationToken,
    Runner,
    RunnerGroup,
    WorkflowJob,
    WorkflowRun,
)
from runnerd.github.sansio import (
    RateLimit,
    backoff_delay,
    classify_rate_limit,
    endpoint_key,
    error_message,
    exhausted_until,
    is_retryable_status,
    lower_headers,
    make_app_jwt,
    next_page_url,
    parse_rate_limit,
    same_origin,
    server_clock_offset,
)

log = logging.getLogger(__name__)

DEFAULT_USER_AGENT: Final = f"runnerd/{__version__}"
DEFAULT_RUNNER_GROUP_ID: Final = 1  # every organization's and repository's "Default" group
DEFAULT_RUNNER_GROUP_NAME: Final = "Default"
PER_PAGE: Final = 100
MAX_PAGES: Final = 200
_IDEMPOTENT_METHODS: Final = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
_ACCESS_TOKENS: Final = "/app/installations/{installation_id}/access_tokens"


@dataclass(frozen=True)
class RetryPolicy:
    """Retries of idempotent calls on 5xx and connection failures: at most ``max_attempts`` tries, the
    n-th retry after about ``base_delay_s * 2**(n-1)`` (capped at ``max_delay_s``), jittered."""

    max_attempts: int = 4
    base_delay_s: float = 0.5
    max_delay_s: float = 8.0


class _Auth(enum.Enum):
    DEFAULT = "default"  # the PAT or the installation token
    APP_JWT = "app-jwt"  # the GitHub App itself (only to mint installation tokens)


@dataclass(frozen=True)
class _Response:
    status: int
    headers: Mapping[str, str]
    data: Any
    link: str | None


class GitHubClient:
    """An async GitHub REST client for runner registration and the autoscaler's polling.

    Use it as ``async with GitHubClient(credentials, config=...) as gh: ...``, or call :meth:`close`
    when done; it owns one aiohttp session, opened on first use. One client serves every scope its
    credentials can reach, and its caches, gate and counters are shared by all its callers.

    ``max_rate_limit_wait_s``: the longest a call waits for a rate limit to lift before raising
    :class:`~runnerd.github.errors.RateLimitWaitExceeded` (the controller then requeues).
    ``installation_token_min_validity_s`` / ``registration_token_min_validity_s``: cached tokens are
    replaced when they have less than this left. ``etag_cache_size``: GET bodies kept for conditional
    requests (0 disables). ``trust_env``: honour ``HTTPS_PROXY``/``NO_PROXY``. ``ssl``: an
    ``ssl.SSLContext`` for a GHES with a private CA.
    """

    def __init__(
        self,
        credentials: Credentials,
        *,
        config: GitHubConfig | None = None,
        user_agent: str = DEFAULT_USER_AGENT,
        request_timeout_s: float = 30.0,
        max_rate_limit_wait_s: float = 30.0,
        rate_limit_jitter_s: float = 1.0,
        retry: RetryPolicy | None = None,
        installation_token_min_validity_s: float = 300.0,
        registration_token_min_validity_s: float = 600.0,
        etag_cache_size: int = ETAG_CACHE_SIZE,
        trust_env: bool = True,
        ssl: ssl_module.SSLContext | None = None,
        clock: Clock = time.time,
        sleep: Sleep = asyncio.sleep,
        draw: Draw = random.random,
    ) -> None:
        if not isinstance(credentials, PersonalAccessToken | GitHubAppCredentials):
            raise TypeError(f"unsupported credentials: {type(credentials).__name__}")
        self._settings: dict[str, Any] = {
            "config": config,
            "user_agent": user_agent,
            "request_timeout_s": request_timeout_s,
            "max_rate_limit_wait_s": max_rate_limit_wait_s,
            "rate_limit_jitter_s": rate_limit_jitter_s,
            "retry": retry,
            "installation_token_min_validity_s": installation_token_min_validity_s,
            "registration_token_min_validity_s": registration_token_min_validity_s,
            "etag_cache_size": etag_cache_size,
            "trust_env": trust_env,
            "ssl": ssl,
            "clock": clock,
            "sleep": sleep,
            "draw": draw,
        }
        self._credentials = credentials
        self._config = config or GitHubConfig()
        self._user_agent = user_agent
        self._timeout = aiohttp.ClientTimeout(total=request_timeout_s)
        self._max_wait_s = max_rate_limit_wait_s
        self._retry = retry or RetryPolicy()
        self._registration_min_validity_s = registration_token_min_validity_s
        self._trust_env = trust_env
        self._ssl = ssl
        self._clock = clock
        self._sleep = sleep
        self._draw = draw

        self.stats = CallStats()
        self.rate_limits = RateLimitState()
        self._gate = RateLimitGate(
            clock=clock, sleep=sleep, draw=draw, jitter_s=rate_limit_jitter_s, stats=self.stats
        )
        self._etags = EtagCache(etag_cache_size)
        self._resource_of: dict[str, str] = {}  # endpoint -> rate-limit resource, learned from responses
        self._secondary_strikes = 0
        self._installation = TokenSlot(
            self._fetch_installation_token, clock=clock, min_validity_s=installation_token_min_validity_s
        )
        self._registration: dict[Scope, TokenSlot[RegistrationToken]] = {}
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"GitHubClient(api_url={self._config.api_url!r}, credentials={self._credentials!r})"

    @property
    def config(self) -> GitHubConfig:
        return self._config

    @property
    def credentials(self) -> Credentials:
        return self._credentials

    def sibling(self, credentials: Credentials) -> GitHubClient:
        """A new client with these settings (URL, proxy, TLS, timeouts) and other credentials: its
        own session, rate-limit budget, ETag cache and tokens."""
        return GitHubClient(credentials, **self._settings)

    def rotate(self, credentials: Credentials) -> None:
        """Use ``credentials`` from now on (a rotated Secret). Cached installation and registration
        tokens, and the ETag cache (what is visible may differ), are dropped; the budget stays and
        is corrected by the next response's rate-limit headers."""
        if not isinstance(credentials, PersonalAccessToken | GitHubAppCredentials):
            raise TypeError(f"unsupported credentials: {type(credentials).__name__}")
        self._credentials = credentials
        self._etags = EtagCache(int(self._settings["etag_cache_size"]))
        self._installation = TokenSlot(
            self._fetch_installation_token,
            clock=self._clock,
            min_validity_s=float(self._settings["installation_token_min_validity_s"]),
        )
        self._registration = {}

    # -- lifecycle ---------------------------------------------------------------------------------

    async def __aenter__(self) -> GitHubClient:
        await self.open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def open(self) -> None:
        """Create the HTTP session (done on first use otherwise)."""
        if self._closed:
            raise GitHubError("the GitHub client is closed")
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=self._timeout,
                trust_env=self._trust_env,
                connector=aiohttp.TCPConnector(ssl=self._ssl if self._ssl is not None else True),
            )

    async def close(self) -> None:
        """Close the HTTP session; the client cannot be used afterwards. Idempotent."""
        self._closed = True
        session, self._session = self._session, None
        if session is not None:
            await session.close()
            # Connections finish closing on later loop iterations (one for plain TCP, a few more
            # for TLS's close_notify); give them that, or a loop that ends now leaks their sockets.
            await asyncio.sleep(0.25 if self._config.api_url.startswith("https") else 0)

    @property
    def closed(self) -> bool:
        return self._closed

    # -- budget ------------------------------------------------------------------------------------

    def paused_until(self, resource: str | None = None) -> float | None:
        """When calls (of ``resource``'s bucket, or every call for ``None``) may go again after a rate
        limit, in seconds since the epoch; ``None`` when they may go now."""
        return self._gate.paused_until((ALL,) if resource is None else (ALL, resource))

    # -- endpoints ---------------------------------------------------------------------------------

    async def generate_jit_config(
        self,
        scope: Scope,
        name: str,
        *,
        labels: Sequence[str],
        runner_group_id: int = DEFAULT_RUNNER_GROUP_ID,
        work_folder: str = "_work",
    ) -> JitConfig:
        """Register a just-in-time runner: ``POST {scope}/actions/runners/generate-jitconfig``.

        Not retried (a lost response may still have created the runner: look it up by name with
        :meth:`list_runners` before trying again). Raises :class:`ConflictError` (409) when a runner of
        that name exists, :class:`NotFoundError`, :class:`ValidationFailedError`, :class:`RateLimitedError`.
        """
        labels = list(labels)
        if not name:
            raise ValueError("a JIT runner needs a name")
        if not 1 <= len(labels) <= 100 or not all(isinstance(x, str) and x for x in labels):
            raise ValueError("a JIT runner needs 1 to 100 non-empty labels")
        resp = await self._call(
            "POST",
            scope.path_template + "/actions/runners/generate-jitconfig",
            scope.path_vars,
            json_body={
                "name": name,
                "runner_group_id": runner_group_id,
                "labels": labels,
                "work_folder": work_folder,
            },
        )
        return JitConfig.from_json(resp.data)

    async def create_registration_token(self, scope: Scope, *, refresh: bool = False) -> RegistrationToken:
        """A registration token for ``config.sh`` in ``scope``: one per scope, cached until it has less
        than ``registration_token_min_validity_s`` left (``refresh=True`` forces a new one).
        ``POST {scope}/actions/runners/registration-token``."""
        slot = self._registration.get(scope)
        if slot is None:

            async def fetch() -> RegistrationToken:
                return await self._create_token(scope, "registration-token")

            slot = self._registration[scope] = TokenSlot(
                fetch, clock=self._clock, min_validity_s=self._registration_min_validity_s
            )
        return await slot.get(refresh=refresh)

    async def create_remove_token(self, scope: Scope) -> RegistrationToken:
        """A token for ``config.sh remove`` (not cached). ``POST {scope}/actions/runners/remove-token``."""
        return await self._create_token(scope, "remove-token")

    async def _create_token(self, scope: Scope, kind: str) -> RegistrationToken:
        # Minting a token twice is harmless, so these POSTs may be retried.
        resp = await self._call(
            "POST", f"{scope.path_template}/actions/runners/{kind}", scope.path_vars, idempotent=True
        )
        return RegistrationToken.from_json(resp.data)

    async def list_runners(self, scope: Scope, *, name: str | None = None) -> list[Runner]:
        """Every runner of ``scope`` (all pages), or those named ``name``.
        ``GET {scope}/actions/runners?per_page=100[&name=]``."""
        query = {"name": name} if name is not None else {}
        items = await self._paginate(
            scope.path_template + "/actions/runners", scope.path_vars, key="runners", query=query
        )
        runners = [Runner.from_json(item) for item in items]
        # Older GitHub Enterprise Servers ignore ?name=: filter here too.
        return runners if name is None else [r for r in runners if r.name == name]

    async def get_runner(self, scope: Scope, runner_id: int) -> Runner:
        """``GET {scope}/actions/runners/{runner_id}``; :class:`NotFoundError` when it does not exist."""
        resp = await self._call(
            "GET",
            scope.path_template + "/actions/runners/{runner_id}",
            {**scope.path_vars, "runner_id": str(runner_id)},
        )
        return Runner.from_json(resp.data)

    async def delete_runner(self, scope: Scope, runner_id: int) -> bool:
        """Remove a runner: ``DELETE {scope}/actions/runners/{runner_id}``.

        Returns ``True`` when it was removed, ``False`` when it was already gone (404). Raises
        :class:`RunnerBusyError` when GitHub refuses because the runner is running a job (422).
        """
        endpoint_template = scope.path_template + "/actions/runners/{runner_id}"
        try:
            await self._call("DELETE", endpoint_template, {**scope.path_vars, "runner_id": str(runner_id)})
        except NotFoundError:
            return False
        except GitHubHTTPError as exc:
            if exc.status == 422:
                raise RunnerBusyError(
                    status=exc.status,
                    endpoint=exc.endpoint,
                    message=exc.message,
                    request_id=exc.request_id,
                    runner_id=runner_id,
                ) from None
            raise
        return True

    async def set_runner_labels(self, scope: Scope, runner_id: int, labels: Sequence[str]) -> list[str]:
        """Replace a runner's custom labels: ``PUT {scope}/actions/runners/{runner_id}/labels``.

        Returns every label the runner has afterwards (GitHub's read-only ones included). The
        controller uses it to drain a runner before removing it: once its custom labels are gone, no
        new job that asks for them is routed to it.
        """
        resp = await self._call(
            "PUT",
            scope.path_template + "/actions/runners/{runner_id}/labels",
            {**scope.path_vars, "runner_id": str(runner_id)},
            json_body={"labels": list(labels)},
        )
        data = resp.data if isinstance(resp.data, dict) else {}
        return [str(label.get("name")) for label in data.get("labels") or () if isinstance(label, dict)]

    async def list_runner_groups(
        self, scope: Scope, *, visible_to_repository: str | None = None
    ) -> list[RunnerGroup]:
        """Runner groups of an organization or enterprise (all pages).
        ``GET /orgs/{org}/actions/runner-groups[?visible_to_repository=]``; ``visible_to_repository``
        (a repository name) is for organizations only."""
        if scope.kind == "repository":
            raise ValueError("runner groups belong to organizations and enterprises, not repositories")
        if visible_to_repository is not None and scope.kind != "organization":
            raise ValueError("visible_to_repository applies to organizations only")
        query = {"visible_to_repository": visible_to_repository} if visible_to_repository else {}
        items = await self._paginate(
            scope.path_template + "/actions/runner-groups", scope.path_vars, key="runner_groups", query=query
        )
        return [RunnerGroup.from_json(item) for item in items]

    async def find_runner_group_id(
        self, scope: Scope, group: str | None, *, visible_to_repository: str | None = None
    ) -> int:
        """The ID of runner group ``group`` in ``scope`` (the spec's ``group``, for JIT registration).

        No group (``None``/empty) is the Default group, ID 1, without a call; so is any repository
        scope, whose runners are always in the Default group. Otherwise the exact name wins, then a
        case-insensitive match. Raises :class:`RunnerGroupNotFoundError`.
        """
        if not group or (scope.kind == "repository" and group.casefold() == "default"):
            return DEFAULT_RUNNER_GROUP_ID
        if scope.kind == "repository":
            raise RunnerGroupNotFoundError(
                f"repository runners cannot join runner group {group!r}", group=group
            )
        groups = await self.list_runner_groups(scope, visible_to_repository=visible_to_repository)
        for candidate in groups:
            if candidate.name == group:
                return candidate.id
        for candidate in groups:
            if candidate.name.casefold() == group.casefold():
                return candidate.id
        raise RunnerGroupNotFoundError(f"no runner group {group!r} in {scope}", group=group)

    async def list_workflow_runs(self, repo: Scope, *, status: str | None = None) -> list[WorkflowRun]:
        """Workflow runs of a repository (all pages), e.g. ``status="queued"``.
        ``GET /repos/{owner}/{repo}/actions/runs?per_page=100[&status=]``."""
        _require_repository(repo)
        items = await self._paginate(
            "/repos/{owner}/{repo}/actions/runs",
            repo.path_vars,
            key="workflow_runs",
            query={"status": status} if status else {},
        )
        return [WorkflowRun.from_json(item) for item in items]

    async def list_jobs_for_run(
        self, repo: Scope, run_id: int, *, filter: str = "latest"
    ) -> list[WorkflowJob]:
        """Jobs of a workflow run (all pages; ``filter`` ``latest`` or ``all`` attempts).
        ``GET /repos/{owner}/{repo}/actions/runs/{run_id}/jobs?per_page=100&filter=``."""
        _require_repository(repo)
        items = await self._paginate(
            "/repos/{owner}/{repo}/actions/runs/{run_id}/jobs",
            {**repo.path_vars, "run_id": str(run_id)},
            key="jobs",
            query={"filter": filter},
        )
        return [WorkflowJob.from_json(item) for item in items]

    async def get_rate_limit(self) -> Mapping[str, RateLimit]:
        """Every rate-limit bucket: ``GET /rate_limit`` (free; not held back by the gate). The result is
        also recorded in :attr:`rate_limits`."""
        resp = await self._call("GET", "/rate_limit", None, gated=False, conditional=False)
        resources = resp.data.get("resources") if isinstance(resp.data, Mapping) else None
        if not isinstance(resources, Mapping):
            raise UnexpectedResponseError("GET /rate_limit: no 'resources' object")
        now = self._clock()
        offset = server_clock_offset(resp.headers, now)
        buckets: dict[str, RateLimit] = {}
        for resource, raw in resources.items():
            if not isinstance(raw, Mapping):
                continue
            try:
                bucket = RateLimit(
                    resource=str(resource),
                    limit=int(raw["limit"]),
                    remaining=int(raw["remaining"]),
                    used=int(raw["used"]) if "used" in raw else None,
                    reset_at=int(raw["reset"]) + offset,
                    observed_at=now,
                )
            except (KeyError, TypeError, ValueError):
                raise UnexpectedResponseError(f"GET /rate_limit: malformed bucket {resource!r}") from None
            buckets[bucket.resource] = bucket
            self.rate_limits.update(bucket)
        return buckets

    # -- authentication ----------------------------------------------------------------------------

    async def _fetch_installation_token(self) -> InstallationToken:
        assert isinstance(self._credentials, GitHubAppCredentials)
        resp = await self._call(
            "POST",
            _ACCESS_TOKENS,
            {"installation_id": str(self._credentials.installation_id)},
            auth=_Auth.APP_JWT,
            idempotent=True,
        )
        token = InstallationToken.from_json(resp.data)
        log.info("GitHub App installation token minted (installation %s)", self._credentials.installation_id)
        return token

    async def _headers(self, auth: _Auth) -> tuple[dict[str, str], InstallationToken | None]:
        creds = self._credentials
        installation: InstallationToken | None = None
        if auth is _Auth.APP_JWT:
            assert isinstance(creds, GitHubAppCredentials)
            jwt = make_app_jwt(creds.app_id, creds.private_key, self._clock())
            headers = gh_sansio.create_headers(self._user_agent, jwt=jwt)
        elif isinstance(creds, PersonalAccessToken):
            headers = gh_sansio.create_headers(self._user_agent, oauth_token=creds.token)
        else:
            installation = await self._installation.get()
            headers = gh_sansio.create_headers(self._user_agent, oauth_token=installation.token)
        if self._config.api_version:
            headers["x-github-api-version"] = self._config.api_version
        return headers, installation

    # -- the request loop --------------------------------------------------------------------------

    def _url(self, template: str, url_vars: Mapping[str, str] | None, query: Mapping[str, str]) -> str:
        url = gh_sansio.format_url(template, url_vars, base_url=self._config.api_url)
        if query:
            url = str(yarl.URL(url, encoded=True).update_query(dict(query)))
        return url

    async def _paginate(
        self, template: str, url_vars: Mapping[str, str], *, key: str, query: Mapping[str, str]
    ) -> list[Any]:
        items: list[Any] = []
        url = self._url(template, url_vars, {"per_page": str(PER_PAGE), **query})
        for _ in range(MAX_PAGES):
            resp = await self._call("GET", template, url=url)
            page = resp.data.get(key) if isinstance(resp.data, Mapping) else None
            if not isinstance(page, list):
                raise UnexpectedResponseError(f"GET {template}: no {key!r} list in the response")
            items.extend(page)
            next_url = next_page_url(resp.link)
            if next_url is None:
                return items
            if not same_origin(next_url, self._config.api_url):
                # Never send our credentials to another host.
                raise UnexpectedResponseError(f"GET {template}: next page link leaves the API host")
            url = next_url
        raise UnexpectedResponseError(f"GET {template}: more than {MAX_PAGES} pages")

    async def _call(
        self,
        method: str,
        template: str,
        url_vars: Mapping[str, str] | None = None,
        *,
        url: str | None = None,
        json_body: Any = None,
        auth: _Auth = _Auth.DEFAULT,
        idempotent: bool | None = None,
        gated: bool = True,
        conditional: bool | None = None,
    ) -> _Response:
        """One logical call (with retries); ``template`` names it in counters and errors."""
        endpoint = endpoint_key(method, template)
        if url is None:
            url = self._url(template, url_vars, {})
        if idempotent is None:
            idempotent = method in _IDEMPOTENT_METHODS
        if conditional is None:
            conditional = method == "GET"
        body = b"" if json_body is None else json.dumps(json_body).encode()
        attempt = 0
        reauthenticated = False
        while True:
            attempt += 1
            headers, installation = await self._headers(auth)
            if json_body is not None:
                headers["content-type"] = "application/json"
            cached = self._etags.get(url) if conditional else None
            if cached is not None:
                headers["if-none-match"] = cached.etag
            resource = self._resource_of.get(endpoint)
            gate: AbstractAsyncContextManager[None] = (
                self._gate.admit((resource,) if resource else (), max_wait_s=self._max_wait_s)
                if gated
                else nullcontext()
            )
            failure: BaseException | None = None
            async with gate:
                try:
                    status, raw_headers, raw_body = await self._send(method, url, headers, body)
                except (aiohttp.ClientError, TimeoutError) as exc:
                    self.stats.record_call(endpoint, "error")
                    log.debug("GitHub %s failed: %s", endpoint, type(exc).__name__)
                    failure = exc
                else:
                    self.stats.record_call(endpoint, status)
                    log.debug("GitHub %s -> %s", endpoint, status)
                    outcome = self._handle(endpoint, url, status, raw_headers, raw_body, cached, conditional)
                    if isinstance(outcome, _Response):
                        return outcome
                    failure = outcome
            # A failed attempt: retry or raise (outside the gate, so a probe does not hold others back).
            if isinstance(failure, GitHubHTTPError):
                if failure.status == 401 and installation is not None and not reauthenticated:
                    # The installation token was revoked or expired early: mint a new one, once.
                    self._installation.invalidate(installation)
                    reauthenticated = True
                    self.stats.record_retry(endpoint)
                    continue
                if not (idempotent and is_retryable_status(failure.status)):
                    raise failure
            elif isinstance(failure, aiohttp.ClientError | TimeoutError):
                never_connected = isinstance(failure, aiohttp.ClientConnectorError) and not isinstance(
                    failure, aiohttp.ClientSSLError
                )
                if not (idempotent or never_connected) or isinstance(failure, aiohttp.ClientSSLError):
                    raise _connection_error(endpoint, failure)
            else:  # pragma: no cover - _handle only returns the above
                raise AssertionError(failure)
            if attempt >= self._retry.max_attempts:
                if isinstance(failure, GitHubHTTPError):
                    raise failure
                raise _connection_error(endpoint, failure)
            delay = backoff_delay(
                attempt, base_s=self._retry.base_delay_s, max_s=self._retry.max_delay_s, draw=self._draw()
            )
            self.stats.record_retry(endpoint)
            log.info(
                "GitHub %s failed (%s); retry %d of %d in %.1fs",
                endpoint,
                failure.status if isinstance(failure, GitHubHTTPError) else type(failure).__name__,
                attempt,
                self._retry.max_attempts - 1,
                delay,
            )
            await self._sleep(delay)

    async def _send(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, Mapping[str, str], bytes]:
        await self.open()
        assert self._session is not None
        async with self._session.request(
            method,
            yarl.URL(url, encoded=True),
            headers=headers,
            data=body if body else None,
            allow_redirects=False,
        ) as response:
            return response.status, lower_headers(response.headers), await response.read()

    def _handle(
        self,
        endpoint: str,
        url: str,
        status: int,
        headers: Mapping[str, str],
        raw_body: bytes,
        cached: CachedResponse | None,
        conditional: bool,
    ) -> _Response | GitHubHTTPError:
        """Record what a response says about the budget, then turn it into a result or an error.

        Raises :class:`RateLimitedError` (after closing the gate) and :class:`UnexpectedResponseError`;
        returns the HTTP error (for the caller to retry or raise).
        """
        now = self._clock()
        bucket = parse_rate_limit(headers, now)
        if bucket is not None:
            self.rate_limits.update(bucket)
            self._resource_of[endpoint] = bucket.resource
        link = headers.get("link")
        if status == 304 and cached is not None:
            return _Response(status=200, headers=headers, data=cached.data, link=cached.link)
        data = _decode(endpoint, headers, raw_body, status)
        if 200 <= status < 300:
            self._secondary_strikes = 0
            until = exhausted_until(bucket, now)
            if bucket is not None and until is not None:
                self._gate.close(bucket.resource, until)
                log.warning(
                    "GitHub rate limit %r spent; pausing its calls for %.0fs", bucket.resource, until - now
                )
            etag = headers.get("etag")
            if conditional and status == 200 and etag:
                self._etags.put(url, CachedResponse(etag=etag, data=data, link=link))
            return _Response(status=status, headers=headers, data=data, link=link)
        message = error_message(data)
        verdict = classify_rate_limit(
            status, headers, message, now=now, secondary_strikes=self._secondary_strikes
        )
        if verdict is not None:
            if verdict.secondary:
                self._secondary_strikes += 1
            self._gate.close(verdict.key, verdict.resume_at)
            log.warning(
                "GitHub %s rate limit on %s; pausing %s for %.0fs",
                "secondary" if verdict.secondary else "primary",
                endpoint,
                "all calls" if verdict.key == ALL else f"{verdict.key!r} calls",
                verdict.resume_at - now,
            )
            raise RateLimitedError(
                f"{endpoint}: GitHub rate limit, calls paused for {verdict.resume_at - now:.0f}s"
                + (f": {message}" if message else ""),
                resume_at=verdict.resume_at,
                resource=verdict.key,
                status=status,
            )
        if status == 304:
            raise UnexpectedResponseError(
                f"{endpoint}: 304 Not Modified for a request that was not conditional"
            )
        return http_error_class(status)(
            status=status, endpoint=endpoint, message=message, request_id=headers.get("x-github-request-id")
        )


def _decode(endpoint: str, headers: Mapping[str, str], body: bytes, status: int) -> Any:
    if not body.strip():
        return None
    content_type = headers.get("content-type", "")
    if "json" in content_type.lower() or body.lstrip()[:1] in (b"{", b"["):
        try:
            return json.loads(body)
        except ValueError:
            if 200 <= status < 300:
                raise UnexpectedResponseError(f"{endpoint}: response body is not valid JSON") from None
            return None
    if 200 <= status < 300:
        raise UnexpectedResponseError(f"{endpoint}: expected JSON, got {content_type or 'no content type'}")
    return body.decode("utf-8", "replace")


def _connection_error(endpoint: str, exc: BaseException) -> GitHubConnectionError:
    detail = str(exc) if isinstance(exc, aiohttp.ClientConnectorError) else ""
    text = f"{endpoint}: {type(exc).__name__}" + (f": {detail}" if detail else "")
    return GitHubConnectionError(text)


def _require_repository(scope: Scope) -> None:
    if scope.kind != "repository":
        raise ValueError(f"{scope} is not a repository scope")
