"""ARC's ``proxy`` and ``githubServerTLS`` on the Actions-service connections: which requests go
through which proxy (Go's httpproxy rules, table-driven), the proxy's credentials on the wire, the
CA bundle trusted on top of the system's roots (a real TLS server with a throwaway CA), a bundle
without a certificate refused, and one client per distinct connection.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
from aiohttp import web

from devcluster import pki
from runnerd.github.actions.clients import ActionsClients
from runnerd.github.actions.connection import Connection, ProxyServer, Route, bypassed
from runnerd.github.actions.errors import ActionsServiceError
from runnerd.github.actions.transport import ActionsTransport, RetryPolicy

pytestmark = [pytest.mark.timeout(30)]

HTTP = ProxyServer("http://proxy.corp:3128")
HTTPS = ProxyServer("http://secure-proxy.corp:3128", "arc", "s3cret")
BOTH = Connection(http_proxy=HTTP, https_proxy=HTTPS, no_proxy=("ghes.corp", ".internal"), proxied=True)


@pytest.mark.parametrize(
    ("connection", "url", "route"),
    [
        (BOTH, "https://api.github.com/x", Route(HTTPS.url, "arc", "s3cret")),
        (BOTH, "http://github.example/x", Route(HTTP.url)),
        (BOTH, "https://ghes.corp/api/v3", None),  # noProxy: the name itself
        (BOTH, "https://api.ghes.corp/x", None),  # ... and its subdomains
        (BOTH, "https://a.internal/x", None),  # a leading dot: subdomains
        (BOTH, "https://internal/x", Route(HTTPS.url, "arc", "s3cret")),  # ... only
        (BOTH, "https://notghes.corp/x", Route(HTTPS.url, "arc", "s3cret")),
        (BOTH, "https://127.0.0.1:8443/x", None),  # loopback is never proxied
        (BOTH, "https://localhost/x", None),
        (BOTH, "https://[::1]/x", None),
        (Connection(http_proxy=HTTP, proxied=True), "https://api.github.com/x", None),  # no https proxy
        (Connection(https_proxy=HTTPS, proxied=True), "http://github.example/x", None),
        (Connection(), "https://api.github.com/x", None),
    ],
)
def test_which_proxy_a_request_takes(connection: Connection, url: str, route: Route | None) -> None:
    assert connection.proxy_for(url) == route


@pytest.mark.parametrize(
    ("entry", "host", "port", "bypass"),
    [
        ("*", "api.github.com", 443, True),
        ("10.0.0.0/8", "10.1.2.3", 443, True),
        ("10.0.0.0/8", "11.1.2.3", 443, False),
        ("10.0.0.0/8", "ghes.corp", 443, False),
        ("192.168.1.10", "192.168.1.10", 443, True),
        ("ghes.corp:8443", "ghes.corp", 8443, True),
        ("ghes.corp:8443", "ghes.corp", 443, False),
        ("*.corp", "ghes.corp", 443, True),
        ("*.corp", "corp", 443, False),
        ("GHES.Corp", "ghes.corp", 443, True),
        ("[2001:db8::1]:443", "2001:db8::1", 443, True),
        ("", "ghes.corp", 443, False),
    ],
)
def test_no_proxy_entries(entry: str, host: str, port: int, bypass: bool) -> None:
    assert bypassed(host, port, [entry]) is bypass


def test_the_digest_tells_configurations_apart_and_hides_the_password() -> None:
    other_password = Connection(https_proxy=ProxyServer(HTTPS.url, "arc", "other"), proxied=True)
    digests = {c.digest() for c in (BOTH, other_password, Connection(), Connection(proxied=True))}
    assert len(digests) == 4
    assert BOTH.digest() == Connection(**vars(BOTH)).digest()
    assert "s3cret" not in repr(BOTH)
    assert "s3cret" not in BOTH.digest()


@asynccontextmanager
async def server(
    handler: Callable[[web.Request], Awaitable[web.Response]], context: ssl.SSLContext | None = None
) -> AsyncIterator[int]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    try:
        yield int(runner.addresses[0][1])
    finally:
        await runner.cleanup()


@asynccontextmanager
async def recording_proxy(seen: list[tuple[str, str]]) -> AsyncIterator[int]:
    """A plain TCP server playing an HTTP proxy: it notes each request's target and
    ``Proxy-Authorization``, answers a GET with a small JSON body and refuses a CONNECT."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin1").split("\r\n")
        method, target = head[0].split(" ")[:2]
        auth = [h.split(":", 1)[1].strip() for h in head[1:] if h.lower().startswith("proxy-authorization:")]
        seen.append((target, auth[0] if auth else ""))
        body = b'{"via": "proxy"}'
        status = b"403 Forbidden" if method == "CONNECT" else b"200 OK"
        writer.write(
            b"HTTP/1.1 " + status + b"\r\nContent-Type: application/json\r\nConnection: close\r\n"
            + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )  # fmt: skip
        await writer.drain()
        writer.close()

    tcp = await asyncio.start_server(serve, "127.0.0.1", 0)
    try:
        yield int(tcp.sockets[0].getsockname()[1])
    finally:
        tcp.close()
        await tcp.wait_closed()


async def test_requests_go_through_the_proxy_with_its_credentials() -> None:
    seen: list[tuple[str, str]] = []
    async with recording_proxy(seen) as port:
        at = ProxyServer(f"http://127.0.0.1:{port}", "arc", "s3cret")
        via = Connection(http_proxy=at, https_proxy=at, proxied=True)
        transport = ActionsTransport(
            user_agent="t", connection=via, trust_env=False, policy=RetryPolicy(max_retries=0)
        )
        try:
            answer = await transport.request("GET", "http://github.example/_apis/x", "x", authorization="t")
            direct = await transport.request("GET", f"http://127.0.0.1:{port}/y", "y", authorization="t")
            with pytest.raises(ActionsServiceError):  # this proxy refuses to tunnel
                await transport.request("GET", "https://github.example/_apis/z", "z", authorization="t")
        finally:
            await transport.close()
    assert answer.data == direct.data == {"via": "proxy"}
    credentials = "Basic " + base64.b64encode(b"arc:s3cret").decode()
    # absolute-form through the proxy; loopback straight to the server (no proxy credentials); an
    # https:// request's credentials on its CONNECT only
    assert seen == [
        ("http://github.example/_apis/x", credentials),
        ("/y", ""),
        ("github.example:443", credentials),
    ]


@pytest.fixture(scope="module")
def throwaway_ca(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, ssl.SSLContext]:
    """A throwaway CA (PEM) and a server context with a certificate for 127.0.0.1 it signed."""
    made = pki.generate(tmp_path_factory.mktemp("pki"))
    serving = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    serving.load_cert_chain(made.apiserver_crt, made.apiserver_key)
    return made.ca_crt.read_text(), serving


async def test_the_ca_bundle_is_trusted_on_top_of_the_system_roots(
    throwaway_ca: tuple[str, ssl.SSLContext],
) -> None:
    ca, serving = throwaway_ca
    trusted = Connection(ca_bundle=ca)
    context = trusted.ssl_context()
    assert context is not None
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert "runnerd-devcluster-ca" in str(context.get_ca_certs())

    async def ok(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async with server(ok, serving) as port:
        url = f"https://127.0.0.1:{port}/_apis/x"
        for connection, fine in ((trusted, True), (Connection(), False)):
            transport = ActionsTransport(
                user_agent="t", connection=connection, trust_env=False, policy=RetryPolicy(max_retries=0)
            )
            try:
                if fine:
                    assert (await transport.request("GET", url, "x", authorization="t")).data == {"ok": True}
                else:
                    with pytest.raises(ActionsServiceError) as refused:
                        await transport.request("GET", url, "x", authorization="t")
                    assert refused.value.status == 0  # the certificate was not trusted
            finally:
                await transport.close()


async def test_one_client_per_connection_and_a_bundle_without_a_certificate_refused() -> None:
    clients = ActionsClients(trust_env=False)
    secret = {"github_token": "ghp_x"}
    url = "https://github.com/octo-org"
    try:
        plain = await clients.for_config(url, secret)
        assert await clients.for_config(url, secret, Connection()) is plain
        proxied = await clients.for_config(url, secret, BOTH)
        assert proxied is not plain
        assert await clients.for_config(url, secret, Connection(**vars(BOTH))) is proxied
        assert proxied.transport.connection == BOTH
        with pytest.raises(ActionsServiceError) as invalid:
            await clients.for_config(url, secret, Connection(ca_bundle="not a certificate"))
        assert invalid.value.exception == "CertificateInvalid"
        assert len(clients) == 2
    finally:
        await clients.close()
