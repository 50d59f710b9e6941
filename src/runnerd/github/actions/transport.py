"""HTTP for the Actions service: one request, with ARC's conventions and retries.

Contract:

* every request is sent as given (the caller builds URLs and the ``Authorization`` header); the
  answer's body is read whole, a leading UTF-8 BOM is stripped and JSON is decoded;
* connection failures, 429 and 5xx other than 501 are retried up to ``max_retries`` times with capped
  exponential backoff (ARC's go-retryablehttp: 4 retries, 1 s doubling to at most 30 s), for every
  method, as ARC does;
* a status the caller does not accept raises the exception class named in the service's error
  envelope (``{"typeName", "message"}``; a ``text/plain`` body is the message; an empty body is
  "unknown exception"), see :func:`error_from_answer`;
* every answer is counted in :class:`~runnerd.github.budget.CallStats` under the endpoint name the
  caller gives (a template, never a URL with ids), retries too;
* nothing is logged but the endpoint name, the status and the service's ``ActivityId``: never a
  header value, a token or a body;
* a :class:`~runnerd.github.actions.connection.Connection` adds its CA bundle to the trusted roots
  and routes each request through its proxy (with basic credentials) unless the URL bypasses it;
  a configured proxy replaces the environment's.

``sleep`` and ``draw`` are injectable so retry tests take no real time.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import ssl as ssl_module
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, Final

import aiohttp

from runnerd.github.actions.connection import Connection
from runnerd.github.actions.errors import (
    ActionsServiceError,
    JobStillRunning,
    RunnerExists,
    RunnerNotFound,
    ScaleSetNotFound,
    SessionConflict,
    SessionExpired,
)
from runnerd.github.budget import CallStats, Draw, Sleep

log = logging.getLogger("runnerd.github.actions")

BOM: Final = b"\xef\xbb\xbf"
#: ARC's HTTP client timeout: above the queue's ~50 s long poll
REQUEST_TIMEOUT_S: Final = 300.0
_EXCEPTIONS: Final[tuple[tuple[str, type[ActionsServiceError]], ...]] = (
    ("RunnerScaleSetNotFoundException", ScaleSetNotFound),
    ("RunnerScaleSetSessionConflictException", SessionConflict),
    ("RunnerScaleSetSessionExpiredException", SessionExpired),
    ("AgentExistsException", RunnerExists),
    ("AgentNotFoundException", RunnerNotFound),
    ("JobStillRunningException", JobStillRunning),
)


@dataclass(frozen=True)
class RetryPolicy:
    """Retries of connection failures, 429 and 5xx (not 501): the n-th retry after
    ``min(max_delay_s, base_delay_s * 2**(n-1))``, scaled by a draw in [0.5, 1)."""

    max_retries: int = 4
    base_delay_s: float = 1.0
    max_delay_s: float = 30.0

    def delay(self, retry: int, draw: float) -> float:
        nominal = min(self.max_delay_s, self.base_delay_s * 2.0 ** max(retry - 1, 0))
        return nominal * (0.5 + 0.5 * min(max(draw, 0.0), 1.0))


@dataclass(frozen=True)
class Answer:
    status: int
    data: Any
    activity_id: str


def retryable(status: int) -> bool:
    return status == 429 or (status >= 500 and status != 501)


def decode_body(raw: bytes, content_type: str) -> Any:
    """The JSON of a body (BOM stripped); ``None`` when empty; the text when not JSON."""
    if raw.startswith(BOM):
        raw = raw[len(BOM) :]
    if not raw.strip():
        return None
    text = raw.decode("utf-8", errors="replace")
    if "text/plain" in content_type:
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text


def error_from_answer(status: int, data: Any) -> ActionsServiceError:
    """The exception for a non-success answer whose decoded body is ``data``."""
    if data is None:
        return ActionsServiceError(status, "", "unknown exception")
    if isinstance(data, Mapping):
        type_name = str(data.get("typeName") or "")
        message = str(data.get("message") or "")
        for short, cls in _EXCEPTIONS:
            if short in type_name:
                return cls(status, short, message)
        short = type_name.split(",", 1)[0].rsplit(".", 1)[-1]
        return ActionsServiceError(status, short, message or "unknown exception")
    return ActionsServiceError(status, "", str(data).strip()[:500])


class ActionsTransport:
    """One aiohttp session for one configuration URL's calls; :meth:`close` ends it."""

    def __init__(
        self,
        *,
        user_agent: str,
        stats: CallStats | None = None,
        policy: RetryPolicy | None = None,
        sleep: Sleep = asyncio.sleep,
        draw: Draw = random.random,
        ssl_context: ssl_module.SSLContext | None = None,
        trust_env: bool = True,
        timeout_s: float = REQUEST_TIMEOUT_S,
        connection: Connection | None = None,
    ) -> None:
        self.user_agent = user_agent
        self.stats = stats or CallStats()
        self.policy = policy or RetryPolicy()
        self._sleep = sleep
        self._draw = draw
        self.connection = connection or Connection()
        self._ssl = ssl_context or self.connection.ssl_context()
        self._trust_env = trust_env and not self.connection.proxied
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    def _http(self) -> aiohttp.ClientSession:
        if self._closed:
            raise RuntimeError("the Actions transport is closed")
        if self._session is None:
            connector = aiohttp.TCPConnector(ssl=self._ssl if self._ssl is not None else True)
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=self._timeout, trust_env=self._trust_env
            )
        return self._session

    async def close(self) -> None:
        self._closed = True
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()
            # a closed connection's socket is released on a later loop iteration (as in
            # runnerd.github.transport): give it that one, or a loop that ends now leaks it
            await asyncio.sleep(0)

    async def request(
        self,
        method: str,
        url: str,
        endpoint: str,
        *,
        authorization: str,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        expect: Collection[int] = (200,),
    ) -> Answer:
        """Sends ``method url`` (retrying per the policy); the answer if its status is in
        ``expect``, else the envelope's exception (status 0: no answer after the retries)."""
        hdrs = {"User-Agent": self.user_agent, "Content-Type": "application/json"}
        hdrs.update(headers or {})
        hdrs["Authorization"] = authorization
        data = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        retry = 0
        while True:
            try:
                answer = await self._send(method, url, endpoint, hdrs, data)
            except (aiohttp.ClientError, TimeoutError) as exc:
                self.stats.record_call(endpoint, "error")
                if retry >= self.policy.max_retries:
                    raise ActionsServiceError(0, "", f"{endpoint}: {type(exc).__name__}") from None
                log.info("%s: %s, retrying", endpoint, type(exc).__name__)
            else:
                if answer.status in expect:
                    return answer
                if not retryable(answer.status) or retry >= self.policy.max_retries:
                    raise error_from_answer(answer.status, answer.data)
                log.info("%s: %d (ActivityId %s), retrying", endpoint, answer.status, answer.activity_id)
            retry += 1
            self.stats.record_retry(endpoint)
            await self._sleep(self.policy.delay(retry, self._draw()))

    def _proxy(self, url: str, headers: Mapping[str, str]) -> dict[str, Any]:
        """The request's headers and proxy arguments: the proxy's credentials go on the CONNECT of
        an ``https://`` request (never to GitHub), on the request itself for ``http://``."""
        route = self.connection.proxy_for(url)
        if route is None:
            return {"headers": headers}
        if not route.username:
            return {"headers": headers, "proxy": route.proxy}
        auth = {"Proxy-Authorization": aiohttp.encode_basic_auth(route.username, route.password)}
        if url.startswith("https:"):
            return {"headers": headers, "proxy": route.proxy, "proxy_headers": auth}
        return {"headers": {**headers, **auth}, "proxy": route.proxy}

    async def _send(
        self, method: str, url: str, endpoint: str, headers: Mapping[str, str], data: bytes | None
    ) -> Answer:
        proxy = self._proxy(url, headers)
        async with self._http().request(method, url, data=data, **proxy) as resp:
            raw = await resp.read()
            self.stats.record_call(endpoint, resp.status)
            return Answer(
                resp.status,
                decode_body(raw, resp.headers.get("Content-Type", "")),
                resp.headers.get("ActivityId", "") or resp.headers.get("X-GitHub-Request-Id", ""),
            )
