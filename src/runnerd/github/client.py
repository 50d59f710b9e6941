"""The GitHub REST client: the only code in runnerd that talks to GitHub.

:class:`GitHubClient` is the endpoints runnerd uses (JIT configs, registration and remove tokens,
runners, runner groups, workflow runs and jobs, the rate limit), each one method that states its
REST call. How a call is sent (credentials, conditional GETs, the rate-limit gate, retries, counters)
is :mod:`runnerd.github.transport`'s contract, built on aiohttp and gidgethub's sans-I/O helpers.
Registration tokens are cached per scope here, until they have less than a minimum validity left.

The clock, sleep and random draw are injectable so tests take no real time.
"""

from __future__ import annotations

import asyncio
import random
import ssl as ssl_module
import time
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, Final, Literal

from runnerd import __version__
from runnerd.github.budget import CallStats, Clock, Draw, RateLimitState, Sleep
from runnerd.github.cache import ETAG_CACHE_SIZE, TokenSlot
from runnerd.github.config import GitHubConfig, Scope
from runnerd.github.credentials import Credentials, GitHubAppCredentials, PersonalAccessToken
from runnerd.github.errors import (
    GitHubHTTPError,
    NotFoundError,
    RunnerBusyError,
    RunnerGroupNotFoundError,
    UnexpectedResponseError,
)
from runnerd.github.hookdeliveries import app_hook_url, attempt_from_json, hook_info_from_json, hook_path
from runnerd.github.models import (
    JitConfig,
    RegistrationToken,
    Runner,
    RunnerGroup,
    WorkflowJob,
    WorkflowRun,
)
from runnerd.github.sansio import RateLimit, next_page_url, same_origin, server_clock_offset
from runnerd.github.transport import Auth, RetryPolicy, Transport
from runnerd.reconcile.deliveryaudit import DeliveryAttempt, HookRef
from runnerd.reconcile.hookdiscovery import HookInfo

DEFAULT_USER_AGENT: Final = f"runnerd/{__version__}"
DEFAULT_RUNNER_GROUP_ID: Final = 1  # every organization's and repository's "Default" group
DEFAULT_RUNNER_GROUP_NAME: Final = "Default"


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
        self._registration_min_validity_s = registration_token_min_validity_s
        self._clock = clock
        self._http = Transport(
            credentials,
            config=self._config,
            user_agent=user_agent,
            request_timeout_s=request_timeout_s,
            max_rate_limit_wait_s=max_rate_limit_wait_s,
            rate_limit_jitter_s=rate_limit_jitter_s,
            retry=retry or RetryPolicy(),
            installation_token_min_validity_s=installation_token_min_validity_s,
            etag_cache_size=etag_cache_size,
            trust_env=trust_env,
            ssl=ssl,
            clock=clock,
            sleep=sleep,
            draw=draw,
        )
        self._registration: dict[Scope, TokenSlot[RegistrationToken]] = {}

    def __repr__(self) -> str:
        return f"GitHubClient(api_url={self._config.api_url!r}, credentials={self._credentials!r})"

    @property
    def config(self) -> GitHubConfig:
        return self._config

    @property
    def credentials(self) -> Credentials:
        return self._credentials

    @property
    def stats(self) -> CallStats:
        """Calls, retries and rate-limit waits, by endpoint template and status."""
        return self._http.stats

    @property
    def rate_limits(self) -> RateLimitState:
        """The last rate-limit state seen for each bucket."""
        return self._http.rate_limits

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
        self._http.rotate(credentials)
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
        await self._http.open()

    async def close(self) -> None:
        """Close the HTTP session; the client cannot be used afterwards. Idempotent."""
        await self._http.close()

    @property
    def closed(self) -> bool:
        return self._http.closed

    # -- budget ------------------------------------------------------------------------------------

    def paused_until(self, resource: str | None = None) -> float | None:
        """When calls (of ``resource``'s bucket, or every call for ``None``) may go again after a rate
        limit, in seconds since the epoch; ``None`` when they may go now."""
        return self._http.paused_until(resource)

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
        resp = await self._http.call(
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
        resp = await self._http.call(
            "POST", f"{scope.path_template}/actions/runners/{kind}", scope.path_vars, idempotent=True
        )
        return RegistrationToken.from_json(resp.data)

    async def list_runners(self, scope: Scope, *, name: str | None = None) -> list[Runner]:
        """Every runner of ``scope`` (all pages), or those named ``name``.
        ``GET {scope}/actions/runners?per_page=100[&name=]``."""
        query = {"name": name} if name is not None else {}
        items = await self._http.paginate(
            scope.path_template + "/actions/runners", scope.path_vars, key="runners", query=query
        )
        runners = [Runner.from_json(item) for item in items]
        # Older GitHub Enterprise Servers ignore ?name=: filter here too.
        return runners if name is None else [r for r in runners if r.name == name]

    async def get_runner(self, scope: Scope, runner_id: int) -> Runner:
        """``GET {scope}/actions/runners/{runner_id}``; :class:`NotFoundError` when it does not exist."""
        resp = await self._http.call(
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
            await self._http.call(
                "DELETE", endpoint_template, {**scope.path_vars, "runner_id": str(runner_id)}
            )
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
        resp = await self._http.call(
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
        items = await self._http.paginate(
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
        items = await self._http.paginate(
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
        items = await self._http.paginate(
            "/repos/{owner}/{repo}/actions/runs/{run_id}/jobs",
            {**repo.path_vars, "run_id": str(run_id)},
            key="jobs",
            query={"filter": filter},
        )
        return [WorkflowJob.from_json(item) for item in items]

    async def list_hook_deliveries(
        self, hook: HookRef, *, next_url: str | None = None
    ) -> tuple[list[DeliveryAttempt], str | None]:
        """One page (100, newest first) of the hook's delivery attempts, and the next page's URL
        (``None``: the last page). ``GET {hook}/deliveries?per_page=100`` (see
        :mod:`runnerd.github.hookdeliveries`; the App's hook is read with the App's JWT)."""
        template, url_vars = hook_path(hook)
        template += "/deliveries"
        url = next_url or self._http.url(template, url_vars, {"per_page": "100"})
        resp = await self._http.call("GET", template, url=url, auth=self._hook_auth(hook), conditional=False)
        if not isinstance(resp.data, list):
            raise UnexpectedResponseError(f"GET {template}: not a list")
        following = next_page_url(resp.link)
        if following is not None and not same_origin(following, self._config.api_url):
            raise UnexpectedResponseError(f"GET {template}: next page link leaves the API host")
        return [attempt_from_json(item) for item in resp.data], following

    async def redeliver_hook_delivery(self, hook: HookRef, delivery_id: int) -> None:
        """Ask GitHub to send a delivery again, with the same GUID.
        ``POST {hook}/deliveries/{delivery_id}/attempts`` (202)."""
        template, url_vars = hook_path(hook)
        await self._http.call(
            "POST",
            template + "/deliveries/{delivery_id}/attempts",
            {**url_vars, "delivery_id": str(delivery_id)},
            auth=self._hook_auth(hook),
        )

    async def list_hooks(self, owner: str, repo: str | None = None) -> list[HookInfo]:
        """An organization's webhooks (``repo`` ``None``) or a repository's, every page.
        ``GET /orgs/{org}/hooks`` | ``GET /repos/{owner}/{repo}/hooks`` (``?per_page=100``)."""
        if repo is None:
            template, url_vars = "/orgs/{org}/hooks", {"org": owner}
        else:
            template, url_vars = "/repos/{owner}/{repo}/hooks", {"owner": owner, "repo": repo}
        items = await self._http.paginate(template, url_vars, key=None, query={}, conditional=False)
        kind: Literal["org", "repo"] = "org" if repo is None else "repo"
        return [hook_info_from_json(kind, owner, repo or "", item) for item in items]

    async def get_app_hook_url(self) -> str:
        """The GitHub App's own webhook URL (empty: none). ``GET /app/hook/config`` with the App's JWT;
        a 404 is an App without a webhook."""
        if not isinstance(self._credentials, GitHubAppCredentials):
            raise ValueError("the GitHub App's own webhook needs GitHub App credentials")
        try:
            resp = await self._http.call("GET", "/app/hook/config", auth=Auth.APP_JWT, conditional=False)
        except NotFoundError:
            return ""
        return app_hook_url(resp.data)

    def _hook_auth(self, hook: HookRef) -> Auth:
        if hook.kind != "app":
            return Auth.DEFAULT
        if not isinstance(self._credentials, GitHubAppCredentials):
            raise ValueError("the GitHub App's own webhook needs GitHub App credentials")
        return Auth.APP_JWT

    async def get_rate_limit(self) -> Mapping[str, RateLimit]:
        """Every rate-limit bucket: ``GET /rate_limit`` (free; not held back by the gate). The result is
        also recorded in :attr:`rate_limits`."""
        resp = await self._http.call("GET", "/rate_limit", None, gated=False, conditional=False)
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


def _require_repository(scope: Scope) -> None:
    if scope.kind != "repository":
        raise ValueError(f"{scope} is not a repository scope")
