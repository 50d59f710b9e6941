"""The GitHub webhook endpoint: authenticate, deduplicate, parse, and hand ``workflow_job`` to a sink.

A request is checked in this order, and a rejected one changes nothing:

1. ``GET`` answers ``webhook server is running`` (ARC's health check of this port); other methods
   but ``POST`` get 405.
2. A body over ``max_body`` bytes gets 413 (before it is read, when ``Content-Length`` says so).
3. No ``X-Hub-Signature-256``, or one that is not the HMAC-SHA256 of the raw body with the secret
   (compared in constant time), gets 401. The legacy SHA-1 ``X-Hub-Signature`` is not accepted.
4. No ``X-GitHub-Event`` gets 400.
5. A ``X-GitHub-Delivery`` seen before (a bounded LRU of recent ids) gets 200 and is not processed
   again. Only authenticated requests enter the LRU, so nobody can poison it.
6. A body that is not JSON, or a ``workflow_job`` without the fields routing needs, gets 400.
7. ``ping`` gets 200 ``pong``; ``workflow_job`` goes to the sink, whose answer is returned; any
   other event gets 200 and is ignored (ARC's legacy triggers other than ``workflow_job`` are no-ops).

A sink that fails (raises, or answers 5xx) takes the delivery id out of the LRU again, so that a
redelivery with the same id is processed.
"""

from __future__ import annotations

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

from runnerd.web.metrics import Metrics
from runnerd.web.payload import MalformedPayload, WorkflowJobEvent, parse_workflow_job

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Hub-Signature-256"
EVENT_HEADER = "X-GitHub-Event"
DELIVERY_HEADER = "X-GitHub-Delivery"
DEFAULT_MAX_BODY = 1 << 20
"""1 MiB: a ``workflow_job`` delivery is a few KiB (GitHub caps any payload at 25 MB)."""
DEFAULT_DEDUP_SIZE = 10_000
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
    if not header:
        return False
    expected = signature_256(secret, body).encode()
    return hmac.compare_digest(expected, header.strip().encode("utf-8", "replace"))


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
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        key = secret.encode() if isinstance(secret, str) else bytes(secret)
        if not key:
            raise ValueError("a webhook secret is required")
        self._secret = key
        self.sink = sink
        self.metrics = metrics
        self.max_body = max_body
        self.deliveries = DeliveryLog(dedup_size)
        self._clock = clock
        self._monotonic = monotonic

    def __repr__(self) -> str:  # never show the secret
        return f"WebhookServer(max_body={self.max_body}, dedup_size={self.deliveries.size})"

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.max_body)
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
            return await self._handle(request, event, received_at, started)
        finally:
            if self.metrics is not None:
                self.metrics.webhook_request_duration.labels(event or "none").observe(
                    self._monotonic() - started
                )

    async def _handle(
        self, request: web.Request, event: str, received_at: float, started: float
    ) -> web.Response:
        if request.method in ("GET", "HEAD"):
            return web.Response(text=RUNNING)
        if request.method != "POST":
            return web.Response(status=405, text="method not allowed", headers={"Allow": "GET, POST"})
        if request.content_length is not None and request.content_length > self.max_body:
            self._count(event, "too_large")
            return web.Response(status=413, text=f"body larger than {self.max_body} bytes")
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            self._count(event, "too_large")
            return web.Response(status=413, text=f"body larger than {self.max_body} bytes")
        if not valid_signature(self._secret, body, request.headers.get(SIGNATURE_HEADER)):
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
