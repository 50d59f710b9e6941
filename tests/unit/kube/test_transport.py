"""The transport against a stand-in API server: headers, bodies, credentials, bounds, watches, TLS."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from devcluster.pki import Pki
from runnerd.kube import CONFIGMAPS, KubeClient, load_config
from runnerd.kube.auth import StaticCredentials, TokenFile
from runnerd.kube.config import KubeConfig
from runnerd.kube.transport import Transport
from runnerd.runtime.errors import ApiError, NotFound, ServerError
from tests.unit.kube.conftest import FakeApiServer, b64, kubeconfig


async def test_requests_carry_credentials_json_and_query(api_server: FakeApiServer) -> None:
    config = KubeConfig(host=api_server.url, source="test", credentials=StaticCredentials("Bearer t"))
    async with KubeClient(config) as kube:
        moment = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
        await kube.request("POST", "/api/v1/namespaces/ns/configmaps", body={"at": moment, "gone": None})
        await kube.list(CONFIGMAPS, namespace="ns", label_selector="a=b,c in (x)")
        await kube.patch(
            CONFIGMAPS, "a%2Fb", {"data": {}}, namespace="ns", patch_type="apply", field_manager="m"
        )
    post, listing, patch = api_server.seen
    assert post.headers["Authorization"] == "Bearer t"
    assert post.headers["User-Agent"].startswith("runnerd/")
    assert post.headers["Content-Type"] == "application/json"
    assert json.loads(post.body) == {"at": "2026-01-02T03:04:05+00:00", "gone": None}
    assert listing.query == "labelSelector=a%3Db%2Cc+in+%28x%29&limit=500"
    assert listing.body == b""
    assert patch.path == "/api/v1/namespaces/ns/configmaps/a%252Fb"
    assert patch.query == "fieldManager=m"
    assert patch.headers["Content-Type"] == "application/apply-patch+yaml"


async def test_errors_keep_their_taxonomy(api_server: FakeApiServer) -> None:
    async def not_found(_: web.Request) -> web.StreamResponse:
        status = {"kind": "Status", "code": 404, "reason": "NotFound", "message": "gone"}
        return web.json_response(status, status=404)

    api_server.handler = not_found
    async with KubeClient(KubeConfig(host=api_server.url, source="test")) as kube:
        with pytest.raises(NotFound):
            await kube.get(CONFIGMAPS, "x", namespace="ns")
        assert await kube.delete(CONFIGMAPS, "x", namespace="ns", missing_ok=True) is None
    async with KubeClient(KubeConfig(host="http://127.0.0.1:9", source="test"), request_timeout=5) as kube:
        with pytest.raises(ServerError) as caught:
            await kube.get(CONFIGMAPS, "x", namespace="ns")
        assert caught.value.status == 0


async def test_a_401_rereads_the_token(api_server: FakeApiServer, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("old")

    async def check(request: web.Request) -> web.StreamResponse:
        ok = request.headers.get("Authorization") == "Bearer new"
        return web.json_response({} if ok else {"kind": "Status", "code": 401}, status=200 if ok else 401)

    api_server.handler = check
    config = KubeConfig(host=api_server.url, source="test", credentials=TokenFile(token, period=3600))
    async with KubeClient(config) as kube:
        with pytest.raises(ApiError) as caught:
            await kube.request("GET", "/version")
        assert caught.value.status == 401
        token.write_text("new")  # rotated
        assert await kube.request("GET", "/version") == {}


async def test_requests_in_flight_are_bounded_and_watches_hold_their_own(api_server: FakeApiServer) -> None:
    release = asyncio.Event()

    async def handler(request: web.Request) -> web.StreamResponse:
        if request.query.get("watch") == "true":
            response = web.StreamResponse()
            await response.prepare(request)
            await response.write(b'{"type":"ADDED","object":{"metadata":{"name":"a"}}}\n')
            await release.wait()
            await response.write(b'\n{"type":"BOOKMARK","object":{"metadata":{"resourceVersion":"9"}}}\n')
            return response
        await release.wait()
        return web.json_response({})

    api_server.handler = handler
    async with KubeClient(KubeConfig(host=api_server.url, source="test"), max_requests=3) as kube:
        events = kube.watch(CONFIGMAPS, "1", namespace="ns")
        first = await anext(events)
        assert (first.type.value, kube.transport.watches) == ("ADDED", 1)
        calls = [asyncio.create_task(kube.request("GET", "/version")) for _ in range(8)]
        await api_server.until_in_flight(4)  # the watch and 3 requests
        release.set()
        assert await asyncio.gather(*calls) == [{}] * 8
        assert api_server.most_in_flight == 4  # never more than 3 requests besides the watch
        rest = [event.type.value async for event in events]
        assert rest == ["BOOKMARK"]
        assert kube.transport.watches == 0


async def test_tls_with_client_certificates_from_data(
    tls_api_server: FakeApiServer, tmp_path: Path, test_pki: Pki
) -> None:
    ca = {"certificate-authority-data": b64(test_pki.ca_crt)}
    user = {"client-certificate-data": b64(test_pki.admin_crt), "client-key-data": b64(test_pki.admin_key)}
    path = kubeconfig(tmp_path / "config", server=tls_api_server.url, cluster=ca, user=user)
    async with KubeClient(await load_config(path)) as kube:
        assert await kube.request("GET", "/version") == {"ok": True}
    anonymous = kubeconfig(tmp_path / "anonymous", server=tls_api_server.url, cluster=ca)
    async with KubeClient(await load_config(anonymous), request_timeout=5) as kube:
        with pytest.raises(ServerError) as caught:  # the server asks for a certificate
            await kube.request("GET", "/version")
        assert caught.value.status == 0
    assert len(tls_api_server.seen) == 1


async def test_watch_errors(api_server: FakeApiServer) -> None:
    async def gone(_: web.Request) -> web.StreamResponse:
        return web.json_response(
            {"kind": "Status", "code": 410, "reason": "Expired", "message": "too old"}, status=410
        )

    api_server.handler = gone
    call: Callable[[], Awaitable[object]]
    async with KubeClient(KubeConfig(host=api_server.url, source="test")) as kube:
        call = anext(aiter(kube.watch(CONFIGMAPS, "1")))  # type: ignore[assignment]
        with pytest.raises(ApiError) as caught:
            await call
        assert caught.value.status == 410
        assert kube.transport.watches == 0


@pytest.mark.parametrize("no_proxy", ["", "kube.test"])
async def test_the_environment_proxy_is_read_once(
    api_server: FakeApiServer, monkeypatch: pytest.MonkeyPatch, no_proxy: str
) -> None:
    for name in ("http_proxy", "https_proxy", "no_proxy", "HTTPS_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", api_server.url)  # the stand-in server plays the proxy
    monkeypatch.setenv("NO_PROXY", no_proxy)
    async with KubeClient(KubeConfig(host="http://kube.test:1", source="test"), request_timeout=5) as kube:
        if no_proxy:
            with pytest.raises(ServerError):  # straight to kube.test, which does not exist
                await kube.request("GET", "/version")
            assert api_server.seen == []
        else:
            assert await kube.request("GET", "/version") == {"ok": True}
            monkeypatch.setenv("NO_PROXY", "kube.test")  # read once: later changes are not seen
            assert await kube.request("GET", "/version") == {"ok": True}
            assert [seen.path for seen in api_server.seen] == ["/version", "/version"]


async def tls_config(server: FakeApiServer, tmp_path: Path, test_pki: Pki) -> KubeConfig:
    ca = {"certificate-authority-data": b64(test_pki.ca_crt)}
    user = {"client-certificate-data": b64(test_pki.admin_crt), "client-key-data": b64(test_pki.admin_key)}
    return await load_config(kubeconfig(tmp_path / "config", server=server.url, cluster=ca, user=user))


@pytest.mark.parametrize("server_answers", [True, False], ids=["close_notify answered", "server busy"])
async def test_close_returns_once_an_abandoned_watchs_socket_is_closed(
    tls_api_server: FakeApiServer, tmp_path: Path, test_pki: Pki, server_answers: bool
) -> None:
    """An abandoned watch's TLS connection is closed outside the session (its close_notify waits for
    the server's answer): close() still returns only once its socket is closed, also when the server
    never answers (then it is aborted after the grace)."""

    served: list[asyncio.Transport] = []

    async def endless(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write(b'{"type":"BOOKMARK","object":{}}\n')
        if not server_answers and request.transport is not None:
            served.append(request.transport)
            request.transport.pause_reading()  # the client's close_notify is never read
        await asyncio.Event().wait()
        return response

    tls_api_server.handler = endless
    transport = Transport(
        await tls_config(tls_api_server, tmp_path, test_pki), user_agent="t", close_grace=0.2
    )
    response = await transport.stream(
        "/api/v1/configmaps", query=[("watch", "true")], client_timeout=aiohttp.ClientTimeout(total=10)
    )
    assert response.connection is not None
    assert response.connection.transport is not None
    sock = response.connection.transport.get_extra_info("socket")
    assert await response.content.readline()
    response.close()  # abandoned mid-stream: the TLS shutdown starts, nobody awaits it
    transport.stream_closed()
    await transport.close()
    assert sock.fileno() == -1
    for server_side in served:  # the stand-in server's end, which never read on
        server_side.abort()


async def test_close_returns_once_a_cancelled_requests_socket_is_closed(
    tls_api_server: FakeApiServer, tmp_path: Path, test_pki: Pki
) -> None:
    """A request cancelled while the server works on it (a reconcile cancelled at shutdown) closes
    its connection without a response to show for it: close() waits for that socket too."""

    async def never(_: web.Request) -> web.StreamResponse:
        await asyncio.Event().wait()
        raise AssertionError("not reached")

    tls_api_server.handler = never
    transport = Transport(await tls_config(tls_api_server, tmp_path, test_pki), user_agent="t")
    call = asyncio.create_task(
        transport.fetch("GET", "/version", client_timeout=aiohttp.ClientTimeout(total=10))
    )
    await tls_api_server.until_in_flight(1)
    (connection,) = transport.connections.transports
    sock = connection.get_extra_info("socket")
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    await transport.close()
    assert sock.fileno() == -1
    assert transport.connections.transports == ()
