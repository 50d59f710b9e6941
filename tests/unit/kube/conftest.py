"""A stand-in API server (aiohttp, plain HTTP or TLS with client certificates) and a test PKI."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from devcluster import pki as devpki

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Seen:
    """One request the stand-in server received."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes


@dataclass
class FakeApiServer:
    url: str
    seen: list[Seen] = field(default_factory=list)
    handler: Handler | None = None
    """Answers every request (default: ``{"ok": true}``)."""
    in_flight: int = 0
    most_in_flight: int = 0
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def until_in_flight(self, count: int) -> None:
        async with self.changed:
            await self.changed.wait_for(lambda: self.in_flight == count)

    async def count_request(self, delta: int) -> None:
        async with self.changed:
            self.in_flight += delta
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            self.changed.notify_all()


@pytest.fixture(scope="session")
def test_pki(tmp_path_factory: pytest.TempPathFactory) -> devpki.Pki:
    return devpki.generate(tmp_path_factory.mktemp("pki"))


def b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


async def _serve(tls: ssl.SSLContext | None) -> AsyncIterator[FakeApiServer]:
    server = FakeApiServer(url="")

    async def handle(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        server.seen.append(
            Seen(
                request.method,
                request.rel_url.raw_path,
                request.rel_url.raw_query_string,
                dict(request.headers),
                body,
            )
        )
        await server.count_request(1)
        try:
            if server.handler is not None:
                return await server.handler(request)
            return web.json_response({"ok": True})
        finally:
            await server.count_request(-1)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    await web.SockSite(runner, sock, ssl_context=tls).start()
    server.url = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    try:
        yield server
    finally:
        await runner.cleanup()
        await asyncio.sleep(0)


@pytest.fixture
async def api_server() -> AsyncIterator[FakeApiServer]:
    async for server in _serve(None):
        yield server


@pytest.fixture
async def tls_api_server(test_pki: devpki.Pki) -> AsyncIterator[FakeApiServer]:
    """HTTPS, with the PKI's serving certificate, asking for a client certificate of its CA."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(test_pki.ca_crt))
    context.load_cert_chain(test_pki.apiserver_crt, test_pki.apiserver_key)
    context.verify_mode = ssl.CERT_REQUIRED
    async for server in _serve(context):
        yield server


def kubeconfig(
    path: Path, *, server: str, cluster: dict[str, Any] | None = None, user: dict[str, Any] | None = None
) -> Path:
    """A one-context kubeconfig (JSON is YAML) at ``path``."""
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "c",
        "clusters": [{"name": "k", "cluster": {"server": server, **(cluster or {})}}],
        "users": [{"name": "u", "user": user or {}}],
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
    }
    path.write_text(json.dumps(document))
    return path
