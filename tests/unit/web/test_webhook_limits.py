"""Webhook server limits (issue 13, findings 1 and 3): 503 until the caches synced, header and body
read timeouts, a cap on deliveries in flight, bounded memory that is given back, and one log line
for a client that goes away. Real sockets on 127.0.0.1 against :class:`runnerd.web.server.Servers`."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import socket
import struct
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from runnerd.web.metrics import Metrics
from runnerd.web.server import Address, Servers
from runnerd.web.webhook import WebhookServer
from tests.unit.runtime.fakes import eventually
from tests.unit.web.test_webhook import SECRET, FakeSink, payload, sign

pytestmark = pytest.mark.timeout(30)


@dataclass
class Running:
    server: WebhookServer
    sink: FakeSink
    metrics: Metrics
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/webhook"

    async def post(self, delivery: str) -> tuple[int, str]:
        body = json.dumps(payload()).encode()
        headers = {
            "X-GitHub-Event": "workflow_job",
            "X-GitHub-Delivery": delivery,
            "X-Hub-Signature-256": sign(body),
            "Content-Type": "application/json",
        }
        async with (
            aiohttp.ClientSession() as session,
            session.post(self.url, data=body, headers=headers) as r,
        ):
            return r.status, await r.text()

    async def open(self, head: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        writer.write(head)
        await writer.drain()
        return reader, writer


def request_head(length: int) -> bytes:
    return (
        "POST /webhook HTTP/1.1\r\nHost: x\r\nX-GitHub-Event: workflow_job\r\n"
        f"X-Hub-Signature-256: sha256=00\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


Start = Callable[..., Awaitable[Running]]


@pytest.fixture
async def start() -> AsyncIterator[Start]:
    servers = Servers()

    async def run(**options: Any) -> Running:
        sink, metrics = FakeSink(), Metrics()
        server = WebhookServer(secret=SECRET, sink=sink, metrics=metrics, **options)
        _, port = await servers.start("webhook", server.app(), Address("127.0.0.1", 0))
        return Running(server, sink, metrics, port)

    yield run
    await servers.stop()


def outcome(metrics: Metrics, name: str) -> float:
    return metrics.sample("runnerd_webhook_deliveries_total", {"event": "workflow_job", "outcome": name}) or 0


async def test_503_until_the_caches_synced_and_nothing_remembered(start: Start) -> None:
    """Finding 1: a delivery right after a start was acknowledged (2xx) and dropped."""
    synced = False
    running: Running = await start(ready=lambda: synced)
    status, text = await running.post("d-1")
    assert (status, text) == (503, "not ready: caches not synced yet")
    assert running.sink.events == []
    assert "d-1" not in running.server.deliveries
    assert outcome(running.metrics, "not_ready") == 1
    synced = True
    assert (await running.post("d-1"))[0] == 200  # GitHub's redelivery of the same id is processed
    assert len(running.sink.events) == 1


async def test_a_connection_that_stalls_in_its_headers_is_closed(start: Start) -> None:
    running: Running = await start(header_timeout=0.3)
    reader, writer = await running.open(b"POST /webhook HTTP/1.1\r\nHost: x\r\n")
    try:
        async with asyncio.timeout(5):
            assert await reader.read() == b""  # closed by the server, no response
    finally:
        writer.close()


async def test_a_body_that_stalls_gets_408(start: Start) -> None:
    running: Running = await start(body_timeout=0.3)
    reader, writer = await running.open(request_head(1000) + b"{" * 10)
    try:
        async with asyncio.timeout(5):
            answer = await reader.read()
    finally:
        writer.close()
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert b"body not received within 0.3s" in answer
    assert outcome(running.metrics, "timeout") == 1
    assert running.server.in_flight == 0


async def test_deliveries_over_the_cap_get_503_at_once(start: Start) -> None:
    running: Running = await start(max_in_flight=2, body_timeout=2.0)
    stalled = [await running.open(request_head(1000) + b"{") for _ in range(2)]
    try:
        await eventually(lambda: running.server.in_flight >= 2, limit=5)
        status, text = await running.post("d-over")
        assert (status, text) == (503, "over 2 bodies being received")
        assert outcome(running.metrics, "overloaded") == 1
    finally:
        for _, writer in stalled:
            writer.close()
    await eventually(lambda: running.server.in_flight == 0, limit=5)
    assert (await running.post("d-after"))[0] == 200


async def test_authenticated_deliveries_being_processed_do_not_count_against_the_cap(start: Start) -> None:
    """A slow sink (e.g. a busy API server) must not turn GitHub's own deliveries away."""
    running: Running = await start(max_in_flight=2)
    release = asyncio.Event()
    sink_call = running.sink.workflow_job
    entered: list[Any] = []

    async def slow(event: Any) -> Any:
        entered.append(event)
        await release.wait()
        return await sink_call(event)

    running.sink.workflow_job = slow  # type: ignore[method-assign]
    posts = [asyncio.create_task(running.post(f"d-{i}")) for i in range(5)]
    await eventually(lambda: len(entered) == 5 or any(p.done() for p in posts), limit=10)
    release.set()
    answers = await asyncio.gather(*posts)
    assert [status for status, _ in answers] == [200] * 5
    assert outcome(running.metrics, "overloaded") == 0


async def test_memory_held_by_stalled_bodies_is_bounded_and_given_back(start: Start) -> None:
    """Finding 3: 150 stalled 1 MB bodies pinned 200 MB (no cap, the whole body buffered first)."""
    max_body, chunk, clients, cap = 256 * 1024, 200 * 1024, 30, 4
    tracemalloc.start()
    try:
        running: Running = await start(max_body=max_body, max_in_flight=cap, body_timeout=8.0)
        gc.collect()
        baseline = tracemalloc.get_traced_memory()[0]
        conns = [await running.open(request_head(max_body) + b" " * chunk) for _ in range(clients)]

        def saturated() -> bool:
            refused = outcome(running.metrics, "overloaded")
            return refused >= clients - cap and running.server.in_flight >= cap

        await eventually(saturated, limit=20)
        await asyncio.sleep(0.2)  # let the ones in flight read what was sent
        held = tracemalloc.get_traced_memory()[0] - baseline
        for _, writer in conns:
            writer.close()
        await eventually(lambda: running.server.in_flight == 0, limit=10)
        gc.collect()
        after = tracemalloc.get_traced_memory()[0] - baseline
    finally:
        tracemalloc.stop()
    assert outcome(running.metrics, "overloaded") == clients - cap
    assert held < cap * max_body + 2 * 1024 * 1024, held  # not clients * chunk (6 MB)
    assert after < 512 * 1024, after


async def test_a_client_that_goes_away_is_one_log_line(
    start: Start, caplog: pytest.LogCaptureFixture
) -> None:
    running: Running = await start()
    caplog.set_level(logging.DEBUG)
    for _ in range(3):
        sock = socket.create_connection(("127.0.0.1", running.port))
        sock.sendall(request_head(100_000) + b"{" * 1000)
        await eventually(lambda: running.server.in_flight > 0, limit=5)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()  # a reset, as a client that gives up sends
        await eventually(lambda: running.server.in_flight == 0, limit=5)
    assert not [r for r in caplog.records if r.exc_info], [r.getMessage() for r in caplog.records]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    gone = [r.getMessage() for r in caplog.records if "client went away" in r.getMessage()]
    assert len(gone) == 3
    assert all("\n" not in line for line in gone)
    assert outcome(running.metrics, "disconnected") == 3
