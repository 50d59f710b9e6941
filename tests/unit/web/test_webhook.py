"""The webhook endpoint: signatures, size limit, dedup, malformed requests, ping (HTTP on 127.0.0.1)."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from runnerd.web.metrics import Metrics
from runnerd.web.payload import MalformedPayload, WorkflowJobEvent, parse_workflow_job
from runnerd.web.webhook import DeliveryLog, SinkReply, WebhookServer, valid_signature

pytestmark = pytest.mark.timeout(20)

SECRET = "It's a Secret to Everybody"


def sign(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def payload(action: str = "queued", job_id: int = 42, **job: Any) -> dict[str, Any]:
    return {
        "action": action,
        "workflow_job": {
            "id": job_id,
            "run_id": 7,
            "name": "build",
            "workflow_name": "CI",
            "head_branch": "main",
            "status": action,
            "conclusion": None,
            "labels": ["self-hosted", "linux"],
            "runner_id": None,
            "runner_name": None,
            "runner_group_name": None,
            "created_at": "2026-11-27T10:00:00Z",
            "started_at": "2026-11-27T10:00:05Z",
            "completed_at": None,
            **job,
        },
        "repository": {
            "name": "app",
            "full_name": "octo-org/app",
            "owner": {"login": "octo-org", "type": "Organization"},
        },
        "organization": {"login": "octo-org"},
    }


class FakeSink:
    def __init__(self, reply: SinkReply | None = None, fail: bool = False) -> None:
        self.events: list[WorkflowJobEvent] = []
        self.reply = reply or SinkReply(200, "scaled octo/hra by 1", "scaled")
        self.fail = fail

    async def workflow_job(self, event: WorkflowJobEvent) -> SinkReply:
        self.events.append(event)
        if self.fail:
            raise RuntimeError("boom")
        return self.reply


class Client:
    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self.session = session
        self.url = url

    async def post(
        self,
        body: bytes | dict[str, Any],
        *,
        event: str | None = "workflow_job",
        delivery: str | None = None,
        signature: str | None = "auto",
        path: str = "/webhook",
        headers: dict[str, str] | None = None,
    ) -> tuple[int, str]:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        h = {"Content-Type": "application/json", **(headers or {})}
        if event is not None:
            h["X-GitHub-Event"] = event
        if delivery is not None:
            h["X-GitHub-Delivery"] = delivery
        if signature == "auto":
            h["X-Hub-Signature-256"] = sign(raw)
        elif signature is not None:
            h["X-Hub-Signature-256"] = signature
        async with self.session.post(self.url + path, data=raw, headers=h) as resp:
            return resp.status, await resp.text()


@pytest.fixture
def sink() -> FakeSink:
    return FakeSink()


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
async def client(sink: FakeSink, metrics: Metrics) -> AsyncIterator[Client]:
    server = WebhookServer(secret=SECRET, sink=sink, metrics=metrics, max_body=64 * 1024, dedup_size=4)
    test_server = TestServer(server.app(), host="127.0.0.1", port=0)
    await test_server.start_server()
    try:
        async with aiohttp.ClientSession() as session:
            yield Client(session, str(test_server.make_url("")).rstrip("/"))
    finally:
        await test_server.close()


def outcome(metrics: Metrics, outcome: str, event: str = "workflow_job") -> float:
    return metrics.sample("runnerd_webhook_deliveries_total", {"event": event, "outcome": outcome}) or 0.0


async def test_signed_workflow_job_reaches_the_sink(client: Client, sink: FakeSink, metrics: Metrics) -> None:
    status, text = await client.post(payload(), delivery="d-1")
    assert (status, text) == (200, "scaled octo/hra by 1")
    [event] = sink.events
    assert event.action == "queued"
    assert event.job_id == 42
    assert event.labels == ("self-hosted", "linux")
    assert event.repository == "octo-org/app"
    assert event.routing().org == "octo-org"
    assert event.delivery == "d-1"
    assert event.started_at is not None
    assert event.created_at is not None
    assert event.started_at - event.created_at == 5
    assert event.received_at > 0
    assert outcome(metrics, "scaled") == 1


async def test_root_path_is_served_too_for_arc_compatibility(client: Client, sink: FakeSink) -> None:
    status, _ = await client.post(payload(), path="/")
    assert status == 200
    assert len(sink.events) == 1


@pytest.mark.parametrize(
    "signature",
    [
        None,  # unsigned
        "sha256=" + "0" * 64,  # wrong
        sign(b"another body"),  # a valid signature of something else
        sign(json.dumps(payload()).encode(), "wrong secret"),
        "sha1=" + hmac.new(SECRET.encode(), json.dumps(payload()).encode(), hashlib.sha1).hexdigest(),
        "",
        "sha256=é",
    ],
)
async def test_bad_or_missing_signature_gets_401_and_changes_nothing(
    client: Client, sink: FakeSink, metrics: Metrics, signature: str | None
) -> None:
    status, _ = await client.post(payload(), signature=signature, delivery="d-1")
    assert status == 401
    assert sink.events == []
    assert outcome(metrics, "bad_signature") == 1
    # the rejected delivery id did not enter the dedup log: the real delivery is still processed
    status, _ = await client.post(payload(), delivery="d-1")
    assert status == 200
    assert len(sink.events) == 1


async def test_duplicate_delivery_is_processed_once(client: Client, sink: FakeSink, metrics: Metrics) -> None:
    for _ in range(3):
        status, _ = await client.post(payload(), delivery="same")
        assert status == 200
    assert len(sink.events) == 1
    assert outcome(metrics, "duplicate") == 2


async def test_dedup_log_is_bounded(client: Client, sink: FakeSink) -> None:
    for i in range(6):  # dedup_size is 4
        await client.post(payload(job_id=i), delivery=f"d-{i}")
    await client.post(payload(job_id=0), delivery="d-0")  # forgotten: processed again
    await client.post(payload(job_id=5), delivery="d-5")  # remembered
    assert [e.job_id for e in sink.events] == [0, 1, 2, 3, 4, 5, 0]


async def test_failing_sink_gets_500_and_a_redelivery_is_processed(metrics: Metrics) -> None:
    sink = FakeSink(fail=True)
    server = WebhookServer(secret=SECRET, sink=sink, metrics=metrics)
    test_server = TestServer(server.app(), host="127.0.0.1", port=0)
    await test_server.start_server()
    try:
        async with aiohttp.ClientSession() as session:
            client = Client(session, str(test_server.make_url("")).rstrip("/"))
            assert (await client.post(payload(), delivery="d"))[0] == 500
            sink.fail = False
            assert (await client.post(payload(), delivery="d"))[0] == 200
    finally:
        await test_server.close()
    assert len(sink.events) == 2
    assert outcome(metrics, "failed") == 1


async def test_body_over_the_limit_gets_413(client: Client, sink: FakeSink, metrics: Metrics) -> None:
    big = payload()
    big["padding"] = "x" * (70 * 1024)
    status, _ = await client.post(big)
    assert status == 413
    assert sink.events == []
    assert outcome(metrics, "too_large") == 1


async def test_chunked_body_over_the_limit_gets_413(client: Client, sink: FakeSink) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(80):
            yield b"x" * 1024

    headers = {"X-GitHub-Event": "workflow_job", "X-Hub-Signature-256": "sha256=" + "0" * 64}
    async with client.session.post(client.url + "/webhook", data=chunks(), headers=headers) as resp:
        assert resp.status == 413
    assert sink.events == []


@pytest.mark.parametrize(
    ("body", "event", "expected"),
    [
        (b"{not json", "workflow_job", 400),
        (b"[]", "workflow_job", 400),
        (json.dumps({"action": "queued"}).encode(), "workflow_job", 400),
        (json.dumps(payload(labels="self-hosted")).encode(), "workflow_job", 400),
        (json.dumps(payload(id="42")).encode(), "workflow_job", 400),
        (json.dumps(payload()).encode(), None, 400),
    ],
)
async def test_malformed_requests_get_400_and_change_nothing(
    client: Client, sink: FakeSink, metrics: Metrics, body: bytes, event: str | None, expected: int
) -> None:
    status, _ = await client.post(body, event=event)
    assert status == expected
    assert sink.events == []
    assert outcome(metrics, "malformed", event or "none") == 1


async def test_ping_gets_pong(client: Client, sink: FakeSink) -> None:
    status, text = await client.post({"zen": "Design for failure.", "hook_id": 1}, event="ping")
    assert (status, text) == (200, "pong")
    assert sink.events == []


async def test_other_events_are_ignored(client: Client, sink: FakeSink, metrics: Metrics) -> None:
    status, text = await client.post({"action": "created"}, event="check_run")
    assert status == 200
    assert "ignored" in text
    assert sink.events == []
    assert outcome(metrics, "ignored", "check_run") == 1


async def test_get_answers_that_the_server_runs(client: Client) -> None:
    async with client.session.get(client.url + "/") as resp:
        assert resp.status == 200
        assert await resp.text() == "webhook server is running"
    async with client.session.put(client.url + "/webhook", data=b"") as resp:
        assert resp.status == 405


def test_a_secret_is_required_and_never_shown() -> None:
    with pytest.raises(ValueError, match="secret"):
        WebhookServer(secret="", sink=FakeSink())
    server = WebhookServer(secret=SECRET, sink=FakeSink())
    assert SECRET not in repr(server)


def test_signature_check() -> None:
    body = b'{"a": 1}'
    assert valid_signature(SECRET.encode(), body, sign(body))
    assert valid_signature(SECRET.encode(), body, " " + sign(body) + "\n")
    assert not valid_signature(SECRET.encode(), body, sign(body).upper())
    assert not valid_signature(SECRET.encode(), body, None)


def test_delivery_log() -> None:
    log = DeliveryLog(2)
    assert log.add("a")
    assert log.add("b")
    assert not log.add("a")  # duplicate; refreshed as most recent
    assert log.add("c")  # evicts b
    assert "a" in log
    assert "b" not in log
    assert len(log) == 2
    log.discard("a")
    assert "a" not in log
    with pytest.raises(ValueError, match="at least one"):
        DeliveryLog(0)


def test_payload_parsing_of_user_repositories_and_enterprises() -> None:
    data = payload("in_progress", runner_name="r-1", runner_id=9, runner_group_name="gpu")
    data["repository"]["owner"]["type"] = "User"
    del data["organization"]
    data["enterprise"] = {"slug": "acme"}
    event = parse_workflow_job(data)
    assert event.routing().org is None
    assert event.enterprise == "acme"
    assert event.runner_group_name == "gpu"
    assert event.runs_on == "self-hosted,linux"
    with pytest.raises(MalformedPayload):
        parse_workflow_job({**data, "repository": {"full_name": "no-slash", "owner": {"login": "x"}}})
    with pytest.raises(MalformedPayload):
        parse_workflow_job(payload(created_at="yesterday"))
