"""HTTP to the Kubernetes API server: one aiohttp session, a bounded number of requests in flight.

Facts in: a :class:`~runnerd.kube.config.KubeConfig`, a method, a path (already quoted), query
pairs and a JSON body. Out: the status, headers and bytes of the answer (:meth:`Transport.fetch`),
or the open response of a watch (:meth:`Transport.stream`).

Guarantees:

- One connector (one TLS context) for everything. HTTP/1.1 carries one request per connection at a
  time, so at most ``max_requests`` requests are in flight (the others wait for a slot) and a watch
  holds a connection of its own while it streams, without a slot: the connections to the API server
  are at most ``max_requests`` plus the open watches (:attr:`Transport.watches`). Each TLS
  connection costs a 256 KiB buffer.
- Every request carries the credentials' ``Authorization`` (none for client certificates); a 401
  invalidates them, so the next request reads a rotated token or runs the exec plugin again.
- Bodies are JSON (``datetime`` values as ISO 8601); the query is encoded here and the path is sent
  as given.
- The proxy is the cluster's ``proxy-url``, else ``HTTPS_PROXY``/``HTTP_PROXY``/``NO_PROXY`` from
  the environment, looked up once when the session opens (aiohttp's ``trust_env`` would look it,
  and ``~/.netrc``, up in a thread for every request: two thread hops a request, measured at 1,000
  runners; ``~/.netrc`` is not read, as kubectl does not).
- A watch line may be up to 2 MiB (etcd stores objects up to 1.5 MiB).
- :meth:`Transport.close` returns once every connection it ever opened is closed, its socket
  included: also the ones closed before it (an abandoned watch, a cancelled request), whose TLS
  ``close_notify`` exchange waits for the API server's answer on later loop iterations. A connection
  still closing after :data:`CLOSE_GRACE` seconds (an API server too busy to answer) is aborted. So
  a loop that ends right after :meth:`Transport.close` leaves no socket open (a
  ``ResourceWarning: unclosed``), however loaded the API server is.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Protocol
from urllib.parse import urlencode

import aiohttp
import aiohttp.connector
from aiohttp.helpers import get_env_proxy_for_url
from aiohttp.tracing import Trace
from multidict import CIMultiDictProxy
from yarl import URL

from runnerd.kube.config import KubeConfig

__all__ = ["DEFAULT_MAX_REQUESTS", "Connections", "Reply", "TrackingConnector", "Transport", "encode_json"]

DEFAULT_MAX_REQUESTS = 16
"""Requests in flight to the API server at once (watches not counted)."""
READ_BUFFER = 2**21
CLOSE_GRACE = 2.0
"""Seconds :meth:`Transport.close` lets closing connections finish their TLS shutdown before it
aborts them."""


class Closing(Protocol):
    """aiohttp's protocol of one connection, as far as closing it is concerned."""

    @property
    def closed(self) -> asyncio.Future[None] | None: ...


class Connections:
    """The connections handed out (see :class:`TrackingConnector`) and not seen closed yet."""

    def __init__(self) -> None:
        self._open: dict[Closing, asyncio.Transport] = {}

    @property
    def transports(self) -> tuple[asyncio.Transport, ...]:
        return tuple(self._open.values())

    def seen(self, connection: aiohttp.connector.Connection) -> None:
        protocol, transport = connection.protocol, connection.transport
        if protocol is None or transport is None or protocol in self._open:
            return
        closed = protocol.closed
        if closed is None:  # lost already
            return
        self._open[protocol] = transport

        def forget(done: asyncio.Future[None]) -> None:
            self._open.pop(protocol, None)
            if not done.cancelled():
                done.exception()  # retrieved: a connection lost with an error is no error here

        closed.add_done_callback(forget)

    async def closed(self, grace: float) -> None:
        """Until every connection is closed, its socket included; those still closing after
        ``grace`` seconds (a TLS ``close_notify`` the server does not answer) are aborted."""
        await self._wait(grace)
        if self._open:
            for transport in list(self._open.values()):
                transport.abort()
            await self._wait(grace)

    async def _wait(self, seconds: float) -> None:
        waiting = [closed for protocol in list(self._open) if (closed := protocol.closed) is not None]
        if waiting:
            await asyncio.wait(waiting, timeout=seconds)


class TrackingConnector(aiohttp.TCPConnector):
    """A connector that reports every connection it hands out to :class:`Connections`, before it
    carries a request: one closed by a cancelled request is waited for too."""

    def __init__(self, connections: Connections, **options: Any) -> None:
        super().__init__(**options)
        self.connections = connections

    async def connect(
        self,
        req: aiohttp.ClientRequest,
        traces: list[Trace],
        timeout: aiohttp.ClientTimeout,  # noqa: ASYNC109 (aiohttp's signature: called with timeout=)
    ) -> aiohttp.connector.Connection:
        connection = await super().connect(req, traces, timeout)
        self.connections.seen(connection)
        return connection


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    reason: str
    headers: CIMultiDictProxy[str]
    data: bytes


def _json_default(value: Any) -> str:
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def encode_json(body: Any) -> bytes:
    return json.dumps(body, separators=(",", ":"), default=_json_default).encode()


class Transport:
    """See the module docstring. The session is opened at the first request; :meth:`close` ends it."""

    def __init__(
        self,
        config: KubeConfig,
        *,
        user_agent: str,
        max_requests: int = DEFAULT_MAX_REQUESTS,
        close_grace: float = CLOSE_GRACE,
    ) -> None:
        if max_requests < 1:
            raise ValueError("max_requests must be at least 1")
        self.config = config
        self.user_agent = user_agent
        self.max_requests = max_requests
        self.close_grace = close_grace
        self.connections = Connections()
        """The connections opened and not closed yet."""
        self.watches = 0
        """Watches streaming now (each holds a connection)."""
        self._slots = asyncio.Semaphore(max_requests)
        self._session: aiohttp.ClientSession | None = None
        self._tls: ssl.SSLContext | None = None
        self._proxy: str | None = None
        self._proxy_auth: aiohttp.BasicAuth | None = None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._tls = self.config.tls.context() if self.config.secure else None
            connector = TrackingConnector(
                self.connections, limit=0, ssl=self._tls if self._tls is not None else True
            )
            self._proxy, self._proxy_auth = self.config.proxy, None
            if self._proxy is None:
                try:
                    proxy, self._proxy_auth = get_env_proxy_for_url(URL(self.config.host))
                    self._proxy = str(proxy)
                except LookupError:
                    pass  # no proxy for the API server
            self._session = aiohttp.ClientSession(
                connector=connector,
                read_bufsize=READ_BUFFER,
                headers={"User-Agent": self.user_agent, "Accept": "application/json"},
            )
        return self._session

    async def _request(
        self,
        method: str,
        path: str,
        query: Sequence[tuple[str, str]],
        body: Any,
        content_type: str,
        client_timeout: aiohttp.ClientTimeout,
    ) -> aiohttp.ClientResponse:
        session = self._open()
        headers = {"Content-Type": content_type}
        authorization = await self.config.credentials.authorization(self._tls)
        if authorization:
            headers["Authorization"] = authorization
        target = f"{self.config.host}{path}"
        if query:
            target += "?" + urlencode(list(query))
        response = await session.request(
            method,
            URL(target, encoded=True),
            headers=headers,
            data=None if body is None else encode_json(body),
            timeout=client_timeout,
            proxy=self._proxy,
            proxy_auth=self._proxy_auth,
            server_hostname=self.config.tls.server_name,
        )
        if response.status == 401:
            self.config.credentials.invalidate()
        return response

    async def fetch(
        self,
        method: str,
        path: str,
        *,
        query: Sequence[tuple[str, str]] = (),
        body: Any = None,
        content_type: str = "application/json",
        client_timeout: aiohttp.ClientTimeout,
    ) -> Reply:
        """One request, read whole; waits for one of the ``max_requests`` slots first."""
        async with self._slots:
            response = await self._request(method, path, query, body, content_type, client_timeout)
            try:
                data = await response.read()
            finally:
                response.release()
        return Reply(response.status, response.reason or "", response.headers, data)

    async def stream(
        self, path: str, *, query: Sequence[tuple[str, str]], client_timeout: aiohttp.ClientTimeout
    ) -> aiohttp.ClientResponse:
        """A GET whose body is read as it comes (a watch); counted in :attr:`watches` until closed."""
        response = await self._request("GET", path, query, None, "application/json", client_timeout)
        self.watches += 1
        return response

    def stream_closed(self) -> None:
        """A response of :meth:`stream` was released or closed."""
        self.watches -= 1

    async def close(self) -> None:
        """Close the session, then wait until every connection it opened is closed (see the
        module docstring)."""
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()
        await self.connections.closed(self.close_grace)
