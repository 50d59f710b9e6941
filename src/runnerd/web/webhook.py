"""The GitHub webhook endpoint: authenticate, deduplicate, parse, and hand ``workflow_job`` to a sink.

A request is checked in this order, and a rejected one changes nothing:

1. ``GET`` answers ``webhook server is running`` (ARC's health check of this port); other methods
   but ``POST`` get 405.
2. Until ``ready()`` (every informer the routing decision reads has synced), 503: a delivery
   acknowledged with a 2xx is never sent again by GitHub, so one that cannot be routed yet must fail
   visibly (GitHub shows it failed; the safety-net poll covers the job).
3. While ``max_in_flight`` bodies are being received (not yet authenticated), another request gets
   503 at once, before its body is read. Authenticated deliveries being processed do not count: a
   slow sink never turns GitHub's deliveries away.
4. A body over ``max_body`` bytes gets 413 (before it is read, when ``Content-Length`` says so). The
   body is read in chunks, the HMAC updated as they arrive, into one buffer of at most ``max_body``
   bytes; a body not complete within ``body_timeout`` seconds gets 408. A client that goes away
   mid-body is logged as one line. So memory held by deliveries is at most about
   ``max_in_flight * max_body``, and it is freed when each request ends. A connection that has not
   sent its request line and headers within ``header_timeout`` seconds is closed
   (:data:`runnerd.web.server.IDLE_TIMEOUT`).
5. No ``X-Hub-Signature-256``, or one that is not the HMAC-SHA256 of the raw body with the secret
   (compared in constant time), gets 401. The legacy SHA-1 ``X-Hub-Signature`` is not accepted.
6. No ``X-GitHub-Event`` gets 400.
7. A ``X-GitHub-Delivery`` seen before (a bounded LRU of recent ids) gets 200 and is not processed
   again. Only authenticated requests enter the LRU, so nobody can poison it.
8. A body that is not JSON, or a ``workflow_job`` without the fields routing needs, gets 400.
9. ``ping`` gets 200 ``pong``; ``workflow_job`` goes to the sink, whose answer is returned; any
   other event gets 200 and is ignored (ARC's legacy triggers other than ``workflow_job`` are no-ops).

A sink that fails (raises, or answers 5xx) takes the delivery id out of the LRU again, so that a
redelivery with the same id is processed. Every rejection before step 5 closes the connection (after
draining what is left of the body for at most :data:`LINGER_SECONDS`).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from runnerd.web.metrics import Metrics
from runnerd.web.payload import MalformedPayload, WorkflowJobEvent, parse_workflow_job
from runnerd.web.server import IDLE_TIMEOUT, LINGER

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Hub-Signature-256"
EVENT_HEADER = "X-GitHub-Event"
DELIVERY_HEADER = "X-GitHub-Delivery"
DEFAULT_MAX_BODY = 1 << 20
"""1 MiB: a ``workflow_job`` delivery is a few KiB (GitHub caps any payload at 25 MB)."""
DEFAULT_DEDUP_SIZE = 10_000
DEFAULT_MAX_IN_FLIGHT = 32
"""Bodies received at once before their signature is checked (the memory an unauthenticated client
can pin is about this times ``max_body``)."""
DEFAULT_BODY_TIMEOUT = 10.0
"""Seconds to receive a whole body: GitHub gives up on a delivery after 10 s anyway."""
DEFAULT_HEADER_TIMEOUT = 10.0
"""Seconds from connecting (or from the previous response) to a whole request line and headers."""
LINGER_SECONDS = 1.0
"""After a refusal (413, 408, 503) the rest of the body is read and dropped this long, then closed."""
RUNNING = "webhook server is running"


@dataclass(frozen=True)
class SinkReply:
    status: int
    message: str
    outcome: str = "accepted"
    """For ``runnerd_webhook_deliveries_total``: e.g. ``scaled``, ``unchanged``, ``no_match``."""


class WorkflowJobSink(Protocol):
    """Receives authenticated, deduplicated, parsed ``workflow_job`` deliveries."""

    async def workflow_job(self, event: WorkflowJobEvent) -> SinkReply: ...


def signature_256(secret: bytes, body: bytes) -> str:
    """The ``X-Hub-Signature-256`` value GitHub sends for ``body``."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def valid_signature(secret: bytes, body: bytes, header: str | None) -> bool:
    """Whether ``header`` is the body's signature; constant time in the header's content."""
    return matches(signature_256(secret, body), header)


def matches(expected: str, header: str | None) -> bool:
    """Whether ``header`` is the ``expected`` signature; constant time in the header's content."""
    if not header:
        return False
    return hmac.compare_digest(expected.encode(), header.strip().encode("utf-8", "replace"))


class BodyRejected(Exception):
    """The body was not read: ``status`` and ``message`` say why (``status`` 0: the client left)."""

    def __init__(self, status: int, message: str, outcome: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.outcome = outcome


class DeliveryLog:
    """The ids of recent deliveries (a bounded LRU)."""

    def __init__(self, size: int = DEFAULT_DEDUP_SIZE) -> None:
        if size < 1:
            raise ValueError("the delivery log needs room for at least one id")
        self.size = size
        self._ids: OrderedDict[str, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, guid: object) -> bool:
        return guid in self._ids

    def add(self, guid: str) -> bool:
        """Record ``guid``; ``False`` when it was already there (a duplicate)."""
        if guid in self._ids:
            self._ids.move_to_end(guid)
            return False
        self._ids[guid] = None
        while len(self._ids) > self.size:
            self._ids.popitem(last=False)
        return True

    def discard(self, guid: str) -> None:
        self._ids.pop(guid, None)


class WebhookServer:
    """The webhook endpoint as an aiohttp application (see the module docstring).

    ``secret`` is required: this server never accepts unsigned deliveries (ARC's accepts anything
    when no secret is configured).
    """

    def __init__(
        self,
        *,
        secret: str | bytes,
        sink: WorkflowJobSink,
        metrics: Metrics | None = None,
        max_body: int = DEFAULT_MAX_BODY,
        dedup_size: int = DEFAULT_DEDUP_SIZE,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        body_timeout: float = DEFAULT_BODY_TIMEOUT,
        header_timeout: float = DEFAULT_HEADER_TIMEOUT,
        ready: Callable[[], bool] | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        key = secret.encode() if isinstance(secret, str) else bytes(secret)
        if not key:
            raise ValueError("a webhook secret is required")
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        self._secret = key
        self.sink = sink
        self.metrics = metrics
        self.max_body = max_body
        self.max_in_flight = max_in_flight
        self.body_timeout = body_timeout
        self.header_timeout = header_timeout
        self.ready: Callable[[], bool] = ready or (lambda: True)
        """Whether deliveries can be routed (every informer they read has synced); 503 until then."""
        self.in_flight = 0
        """Bodies being received now (not yet authenticated)."""
        self.deliveries = DeliveryLog(dedup_size)
        self._clock = clock
        self._monotonic = monotonic

    def __repr__(self) -> str:  # never show the secret
        return (
            f"WebhookServer(max_body={self.max_body}, dedup_size={self.deliveries.size}, "
            f"max_in_flight={self.max_in_flight}, body_timeout={self.body_timeout:g})"
        )

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.max_body)
        app[IDLE_TIMEOUT] = self.header_timeout
        app[LINGER] = LINGER_SECONDS
        for path in ("/", "/webhook"):
            app.router.add_route("*", path, self.handle)
        return app

    def _count(self, event: str, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.webhook_deliveries.labels(event or "none", outcome).inc()

    async def handle(self, request: web.Request) -> web.Response:
        started = self._monotonic()
        received_at = self._clock()
        event = request.headers.get(EVENT_HEADER, "")
        try:
            return await self._admit(request, event, received_at, started)
        finally:
            if self.metrics is not None:
                self.metrics.webhook_request_duration.labels(event or "none").observe(
                    self._monotonic() - started
                )

    def _refuse(self, event: str, outcome: str, status: int, text: str) -> web.Response:
        self._count(event, outcome)
        response = web.Response(status=status, text=text)
        response.force_close()
        return response

    async def _admit(
        self, request: web.Request, event: str, received_at: float, started: float
    ) -> web.Response:
        if request.method in ("GET", "HEAD"):
            return web.Response(text=RUNNING)
        if request.method != "POST":
            return web.Response(status=405, text="method not allowed", headers={"Allow": "GET, POST"})
        if not self.ready():
            return self._refuse(event, "not_ready", 503, "not ready: caches not synced yet")
        if self.in_flight >= self.max_in_flight:
            return self._refuse(event, "overloaded", 503, f"over {self.max_in_flight} bodies being received")
        return await self._handle(request, event, received_at, started)

    async def _read_signed(self, request: web.Request) -> tuple[bytes, str]:
        """The body (at most ``max_body`` bytes, within ``body_timeout``) and its signature."""
        if request.content_length is not None and request.content_length > self.max_body:
            raise BodyRejected(413, f"body larger than {self.max_body} bytes", "too_large")
        mac = hmac.new(self._secret, digestmod=hashlib.sha256)
        body = bytearray()
        try:
            async with asyncio.timeout(self.body_timeout):
                async for chunk in request.content.iter_any():
                    if len(body) + len(chunk) > self.max_body:
                        raise BodyRejected(413, f"body larger than {self.max_body} bytes", "too_large")
                    mac.update(chunk)
                    body += chunk
        except TimeoutError:
            raise BodyRejected(408, f"body not received within {self.body_timeout:g}s", "timeout") from None
        except (ConnectionError, HttpProcessingError) as exc:
            raise BodyRejected(
                0, f"client went away after {len(body)} bytes ({exc})", "disconnected"
            ) from None
        return bytes(body), "sha256=" + mac.hexdigest()

    async def _handle(
        self, request: web.Request, event: str, received_at: float, started: float
    ) -> web.Response:
        self.in_flight += 1
        try:
            body, signature = await self._read_signed(request)
        except BodyRejected as rejected:
            if rejected.status == 0:
                log.info("webhook %s from %s: %s", event or "request", request.remote, rejected.message)
            return self._refuse(event, rejected.outcome, rejected.status or 400, rejected.message)
        finally:
            self.in_flight -= 1
        if not matches(signature, request.headers.get(SIGNATURE_HEADER)):
            self._count(event, "bad_signature")
            log.info(
                "webhook %s from %s rejected: %s",
                event or "request",
                request.remote,
                "no X-Hub-Signature-256" if SIGNATURE_HEADER not in request.headers else "bad signature",
            )
            return web.Response(status=401, text="invalid or missing X-Hub-Signature-256")
        if not event:
            self._count(event, "malformed")
            return web.Response(status=400, text=f"missing {EVENT_HEADER}")
        guid = request.headers.get(DELIVERY_HEADER) or None
        if guid is not None and not self.deliveries.add(guid):
            self._count(event, "duplicate")
            return web.Response(text=f"delivery {guid} already processed")
        try:
            reply = await self._dispatch(event, body, guid, received_at, started)
        except BaseException:
            if guid is not None:
                self.deliveries.discard(guid)
            raise
        if reply.status >= 400 and guid is not None:
            self.deliveries.discard(guid)  # not processed: a redelivery may try again
        return web.Response(status=reply.status, text=reply.message)

    async def _dispatch(
        self, event: str, body: bytes, guid: str | None, received_at: float, started: float
    ) -> SinkReply:
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            self._count(event, "malformed")
            return SinkReply(400, "the body is not JSON")
        if event == "ping":
            self._count(event, "pong")
            return SinkReply(200, "pong")
        if event != "workflow_job":
            self._count(event, "ignored")
            return SinkReply(200, f"{event} events are ignored")
        try:
            parsed = parse_workflow_job(
                payload, delivery=guid, received_at=received_at, received_monotonic=started
            )
        except MalformedPayload as exc:
            self._count(event, "malformed")
            return SinkReply(400, f"malformed workflow_job event: {exc}")
        try:
            reply = await self.sink.workflow_job(parsed)
        except Exception:
            self._count(event, "failed")
            log.exception("workflow_job delivery %s (job %s) failed", guid, parsed.job_id)
            return SinkReply(500, "the event could not be processed")
        self._count(event, reply.outcome if reply.status < 400 else "failed")
        return reply
