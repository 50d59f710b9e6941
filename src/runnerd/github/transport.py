"""The GitHub REST transport: one logical call, with authentication, budget, caching and retries.

:class:`Transport` is what :class:`~runnerd.github.client.GitHubClient`'s endpoint methods call. It
owns the aiohttp session and this package's policy (see :mod:`runnerd.github.sansio` and
:mod:`runnerd.github.budget`):

* credentials: a PAT, or a GitHub App whose installation token is cached and refreshed (5 minutes
  before expiry by default) by one caller at a time; a 401 with an installation token mints a new
  one, once per call;
* conditional GETs: ``If-None-Match`` with the cached ``ETag``; a 304 returns the cached body and costs
  no rate limit;
* rate limits: every response's ``x-ratelimit-*`` headers are recorded; a limited call raises
  :class:`RateLimitedError` and closes the shared gate, behind which later calls wait (up to a max
  wait, then they raise :class:`RateLimitWaitExceeded`);
* retries: 5xx and connection failures are retried with exponential backoff and jitter, for
  idempotent calls only (a POST is retried only when the connection was never made);
* counters: every response is counted by endpoint template and status in :class:`CallStats`;
* proxy: with ``trust_env``, ``HTTPS_PROXY``/``HTTP_PROXY``/``NO_PROXY`` from the environment,
  looked up once per origin (aiohttp's own ``trust_env`` would look them, and ``~/.netrc``, up in a
  thread for every request: two thread hops a request, measured at 1,000 runners). ``~/.netrc`` is
  not read: every request carries its own ``Authorization``.

The clock, sleep and random draw are injectable so tests take no real time.
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import ssl as ssl_module
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass
from typing import Any, Final

import aiohttp
import yarl
from aiohttp.helpers import get_env_proxy_for_url
from gidgethub import sansio as gh_sansio

from runnerd.github.budget import ALL, CallStats, Clock, Draw, RateLimitGate, RateLimitState, Sleep
from runnerd.github.cache import CachedResponse, EtagCache, TokenSlot
from runnerd.github.config import GitHubConfig
from runnerd.github.credentials import Credentials, GitHubAppCredentials, PersonalAccessToken
from runnerd.github.errors import (
    GitHubConnectionError,
    GitHubError,
    GitHubHTTPError,
    RateLimitedError,
    UnexpectedResponseError,
    http_error_class,
)
from runnerd.github.models import InstallationToken
from runnerd.github.sansio import (
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
)

# The logger of the whole client (its records kept their name when the transport got a module).
log = logging.getLogger("runnerd.github.client")

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


class Auth(enum.Enum):
    DEFAULT = "default"  # the PAT or the installation token
    APP_JWT = "app-jwt"  # the GitHub App itself (only to mint installation tokens)


@dataclass(frozen=True)
class Response:
    status: int
    headers: Mapping[str, str]
    data: Any
    link: str | None


@dataclass(frozen=True)
class _Request:
    """One logical call, as every attempt at it sends it."""

    method: str
    endpoint: str  # the method and URL template: names the call in counters, logs and errors
    url: str
    body: bytes
    is_json: bool
    auth: Auth
    idempotent: bool
    gated: bool
    conditional: bool


class Transport:
    """Sends calls to one GitHub API with one set of credentials; see the module docstring.

    One session (opened on first use), one rate-limit gate, ETag cache and installation token, shared
    by every caller. :meth:`rotate` swaps the credentials; :meth:`close` ends it for good.
    """

    def __init__(
        self,
        credentials: Credentials,
        *,
        config: GitHubConfig,
        user_agent: str,
        request_timeout_s: float,
        max_rate_limit_wait_s: float,
        rate_limit_jitter_s: float,
        retry: RetryPolicy,
        installation_token_min_validity_s: float,
        etag_cache_size: int,
        trust_env: bool,
        ssl: ssl_module.SSLContext | None,
        clock: Clock,
        sleep: Sleep,
        draw: Draw,
    ) -> None:
        self._credentials = credentials
        self._config = config
        self._user_agent = user_agent
        self._timeout = aiohttp.ClientTimeout(total=request_timeout_s)
        self._max_wait_s = max_rate_limit_wait_s
        self._retry = retry
        self._installation_min_validity_s = installation_token_min_validity_s
        self._etag_cache_size = etag_cache_size
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
        self._session: aiohttp.ClientSession | None = None
        self._proxies: dict[tuple[str, str], _Proxy] = {}
        self._closed = False

    def rotate(self, credentials: Credentials) -> None:
        """Use ``credentials`` from now on: the installation token and the ETag cache are dropped."""
        self._credentials = credentials
        self._etags = EtagCache(self._etag_cache_size)
        self._installation = TokenSlot(
            self._fetch_installation_token,
            clock=self._clock,
            min_validity_s=self._installation_min_validity_s,
        )

    # -- lifecycle ---------------------------------------------------------------------------------

    async def open(self) -> None:
        """Create the HTTP session (done on first use otherwise)."""
        if self._closed:
            raise GitHubError("the GitHub client is closed")
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=self._timeout,
                connector=aiohttp.TCPConnector(ssl=self._ssl if self._ssl is not None else True),
            )

    async def close(self) -> None:
        """Close the HTTP session; the transport cannot be used afterwards. Idempotent."""
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

    def paused_until(self, resource: str | None = None) -> float | None:
        """When calls (of ``resource``'s bucket, or every call for ``None``) may go again after a rate
        limit, in seconds since the epoch; ``None`` when they may go now."""
        return self._gate.paused_until((ALL,) if resource is None else (ALL, resource))

    # -- authentication ----------------------------------------------------------------------------

    async def _fetch_installation_token(self) -> InstallationToken:
        assert isinstance(self._credentials, GitHubAppCredentials)
        resp = await self.call(
            "POST",
            _ACCESS_TOKENS,
            {"installation_id": str(self._credentials.installation_id)},
            auth=Auth.APP_JWT,
            idempotent=True,
        )
        token = InstallationToken.from_json(resp.data)
        log.info("GitHub App installation token minted (installation %s)", self._credentials.installation_id)
        return token

    async def _headers(self, auth: Auth) -> tuple[dict[str, str], InstallationToken | None]:
        creds = self._credentials
        installation: InstallationToken | None = None
        if auth is Auth.APP_JWT:
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

    def url(self, template: str, url_vars: Mapping[str, str] | None, query: Mapping[str, str]) -> str:
        url = gh_sansio.format_url(template, url_vars, base_url=self._config.api_url)
        if query:
            url = str(yarl.URL(url, encoded=True).update_query(dict(query)))
        return url

    async def paginate(
        self,
        template: str,
        url_vars: Mapping[str, str],
        *,
        key: str | None,
        query: Mapping[str, str],
        conditional: bool | None = None,
    ) -> list[Any]:
        """Every page's items: the list under ``key`` of each page's object (``None``: each page is
        the list itself, as for webhook listings); ``conditional`` as :meth:`call`'s."""
        items: list[Any] = []
        url = self.url(template, url_vars, {"per_page": str(PER_PAGE), **query})
        for _ in range(MAX_PAGES):
            resp = await self.call("GET", template, url=url, conditional=conditional)
            if key is None:
                page = resp.data
            else:
                page = resp.data.get(key) if isinstance(resp.data, Mapping) else None
            if not isinstance(page, list):
                raise UnexpectedResponseError(f"GET {template}: no {key or 'item'!r} list in the response")
            items.extend(page)
            next_url = next_page_url(resp.link)
            if next_url is None:
                return items
            if not same_origin(next_url, self._config.api_url):
                # Never send our credentials to another host.
                raise UnexpectedResponseError(f"GET {template}: next page link leaves the API host")
            url = next_url
        raise UnexpectedResponseError(f"GET {template}: more than {MAX_PAGES} pages")

    async def call(
        self,
        method: str,
        template: str,
        url_vars: Mapping[str, str] | None = None,
        *,
        url: str | None = None,
        json_body: Any = None,
        auth: Auth = Auth.DEFAULT,
        idempotent: bool | None = None,
        gated: bool = True,
        conditional: bool | None = None,
    ) -> Response:
        """One logical call (with retries); ``template`` names it in counters and errors."""
        request = _Request(
            method=method,
            endpoint=endpoint_key(method, template),
            url=self.url(template, url_vars, {}) if url is None else url,
            body=b"" if json_body is None else json.dumps(json_body).encode(),
            is_json=json_body is not None,
            auth=auth,
            idempotent=method in _IDEMPOTENT_METHODS if idempotent is None else idempotent,
            gated=gated,
            conditional=method == "GET" if conditional is None else conditional,
        )
        attempt = 0
        reauthenticated = False
        while True:
            attempt += 1
            outcome, installation = await self._attempt(request)
            if isinstance(outcome, Response):
                return outcome
            # A failed attempt: retry or raise (outside the gate, so a probe does not hold others back).
            if (
                isinstance(outcome, GitHubHTTPError)
                and outcome.status == 401
                and installation is not None
                and not reauthenticated
            ):
                # The installation token was revoked or expired early: mint a new one, once.
                self._installation.invalidate(installation)
                reauthenticated = True
                self.stats.record_retry(request.endpoint)
                continue
            self._raise_unless_retried(request, outcome, attempt)
            await self._back_off(request.endpoint, outcome, attempt)

    async def _attempt(
        self, request: _Request
    ) -> tuple[Response | GitHubHTTPError | aiohttp.ClientError | TimeoutError, InstallationToken | None]:
        """Send the request once: the response, or the failure to retry or raise (with the installation
        token it was sent with, if any). Rate limits and malformed responses raise."""
        headers, installation = await self._headers(request.auth)
        if request.is_json:
            headers["content-type"] = "application/json"
        cached = self._etags.get(request.url) if request.conditional else None
        if cached is not None:
            headers["if-none-match"] = cached.etag
        endpoint = request.endpoint
        resource = self._resource_of.get(endpoint)
        gate: AbstractAsyncContextManager[None] = (
            self._gate.admit((resource,) if resource else (), max_wait_s=self._max_wait_s)
            if request.gated
            else nullcontext()
        )
        async with gate:
            try:
                status, raw_headers, raw_body = await self._send(
                    request.method, request.url, headers, request.body
                )
            except (aiohttp.ClientError, TimeoutError) as exc:
                self.stats.record_call(endpoint, "error")
                log.debug("GitHub %s failed: %s", endpoint, type(exc).__name__)
                return exc, installation
            self.stats.record_call(endpoint, status)
            log.debug("GitHub %s -> %s", endpoint, status)
            outcome = self._handle(
                endpoint, request.url, status, raw_headers, raw_body, cached, request.conditional
            )
            return outcome, installation

    def _raise_unless_retried(self, request: _Request, failure: BaseException, attempt: int) -> None:
        """Raise ``failure`` (as this package's error) unless the policy retries it after ``attempt``."""
        if isinstance(failure, GitHubHTTPError):
            if not (request.idempotent and is_retryable_status(failure.status)):
                raise failure
        elif isinstance(failure, aiohttp.ClientError | TimeoutError):
            never_connected = isinstance(failure, aiohttp.ClientConnectorError) and not isinstance(
                failure, aiohttp.ClientSSLError
            )
            if not (request.idempotent or never_connected) or isinstance(failure, aiohttp.ClientSSLError):
                raise _connection_error(request.endpoint, failure)
        else:  # pragma: no cover - _attempt only returns the above
            raise AssertionError(failure)
        if attempt >= self._retry.max_attempts:
            if isinstance(failure, GitHubHTTPError):
                raise failure
            raise _connection_error(request.endpoint, failure)

    async def _back_off(self, endpoint: str, failure: BaseException, attempt: int) -> None:
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
        target = yarl.URL(url, encoded=True)
        proxy = self._proxy_for(target)
        async with self._session.request(
            method,
            target,
            headers=headers,
            data=body if body else None,
            allow_redirects=False,
            proxy=proxy.url,
            proxy_auth=proxy.auth,
        ) as response:
            return response.status, lower_headers(response.headers), await response.read()

    def _proxy_for(self, url: yarl.URL) -> _Proxy:
        """The environment's proxy for ``url`` (none without ``trust_env``), looked up once per origin."""
        if not self._trust_env:
            return _NO_PROXY
        origin = (url.scheme, url.host or "")
        proxy = self._proxies.get(origin)
        if proxy is None:
            try:
                found, auth = get_env_proxy_for_url(url)
                proxy = _Proxy(found, auth)
            except LookupError:
                proxy = _NO_PROXY
            self._proxies[origin] = proxy
        return proxy

    def _handle(
        self,
        endpoint: str,
        url: str,
        status: int,
        headers: Mapping[str, str],
        raw_body: bytes,
        cached: CachedResponse | None,
        conditional: bool,
    ) -> Response | GitHubHTTPError:
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
            return Response(status=200, headers=headers, data=cached.data, link=cached.link)
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
            return Response(status=status, headers=headers, data=data, link=link)
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


@dataclass(frozen=True, slots=True)
class _Proxy:
    url: yarl.URL | None = None
    auth: aiohttp.BasicAuth | None = None


_NO_PROXY: Final = _Proxy()


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
