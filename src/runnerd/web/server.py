"""Serving aiohttp applications on ARC-style addresses, and the health/readiness/metrics app.

Addresses are Go ``host:port`` strings as ARC's flags take them: ``:8000`` (every interface),
``127.0.0.1:8080``, ``[::1]:8080``; ``0`` (or an empty string) disables the server, as ARC's
``--metrics-addr=0`` does. Port 0 picks a free port (tests).

Every server closes a connection that has not sent a whole request line and headers within
``idle_timeout`` seconds of connecting (or of its previous response): a client that opens
connections and stalls holds nothing for long. After a response to a request whose body the
handler did not read, the rest of the body is read and dropped for at most ``linger`` seconds, then
the connection is closed. An application may set its own with :data:`IDLE_TIMEOUT` and
:data:`LINGER` (the webhook endpoint does). Reading bodies is the handlers' business.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from runnerd.web.metrics import CONTENT_TYPE, Metrics

log = logging.getLogger(__name__)

DEFAULT_IDLE_TIMEOUT = 15.0
IDLE_TIMEOUT = web.AppKey("idle_timeout", float)
"""Seconds a connection may take to send its request line and headers (see the module docstring)."""
DEFAULT_LINGER = 10.0
LINGER = web.AppKey("linger", float)
"""Seconds to drain a body the handler left unread before closing (see the module docstring)."""


@dataclass(frozen=True)
class Address:
    host: str | None  # None: every interface
    port: int

    def __str__(self) -> str:
        host = self.host or ""
        return f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"


def parse_address(text: str) -> Address | None:
    """``host:port`` (or ``:port``); ``None`` for ``0``/empty (disabled). Raises ``ValueError``."""
    text = text.strip()
    if text in ("", "0"):
        return None
    host, sep, port = text.rpartition(":")
    if not sep:
        raise ValueError(f"not host:port: {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        number = int(port)
    except ValueError:
        raise ValueError(f"not a port number in {text!r}") from None
    if not 0 <= number <= 65535:
        raise ValueError(f"port out of range in {text!r}")
    return Address(host or None, number)


def health_app(*, ready: Callable[[], bool], metrics: Metrics | None = None) -> web.Application:
    """``/healthz`` (the process serves), ``/readyz`` (``ready()``: e.g. informers synced), ``/metrics``."""

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def readyz(request: web.Request) -> web.Response:
        if ready():
            return web.Response(text="ok")
        return web.Response(status=503, text="not ready: caches not synced")

    async def scrape(request: web.Request) -> web.Response:
        assert metrics is not None
        return web.Response(body=metrics.render(), headers={"Content-Type": CONTENT_TYPE})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    if metrics is not None:
        app.router.add_get("/metrics", scrape)
    return app


class Servers:
    """Runs several aiohttp applications, each on its own address; ``async with`` stops them."""

    def __init__(self) -> None:
        self._runners: list[web.AppRunner] = []
        self.bound: dict[str, tuple[str, int]] = {}

    async def start(self, name: str, app: web.Application, address: Address) -> tuple[str, int]:
        """Serve ``app`` on ``address``; returns the bound (host, port)."""
        runner = web.AppRunner(
            app,
            handle_signals=False,
            access_log=None,
            shutdown_timeout=5.0,
            keepalive_timeout=app.get(IDLE_TIMEOUT, DEFAULT_IDLE_TIMEOUT),
            lingering_time=app.get(LINGER, DEFAULT_LINGER),
        )
        await runner.setup()
        self._runners.append(runner)
        site = web.TCPSite(runner, address.host, address.port)
        await site.start()
        host, port = runner.addresses[0][:2]
        self.bound[name] = (str(host), int(port))
        log.info("%s listening on %s", name, Address(str(host), int(port)))
        return self.bound[name]

    async def stop(self) -> None:
        runners, self._runners = self._runners, []
        for runner in reversed(runners):
            await runner.cleanup()

    async def __aenter__(self) -> Servers:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
