"""The message session against ghsim's Actions service: create/refresh/delete, the session-conflict
fix (retry with backoff, take over an expired or our own stale session), the long poll with
``lastMessageId`` and ``X-ScaleSetMaxCapacity``, acks, the queue token's 401, acquisition, parsing."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from runnerd.github.actions.client import ActionsClient
from runnerd.github.actions.errors import (
    ActionsServiceError,
    MessageQueueTokenExpired,
    ScaleSetNotFound,
    SessionConflict,
)
from runnerd.github.actions.models import JOB_ASSIGNED, JOB_AVAILABLE, ScaleSetMessage
from runnerd.github.actions.session import ConflictPolicy, MessageSession, parse_message
from tests.unit.github.conftest import ActionsWorld

SESSIONS_CREATE = "POST _apis/runtime/runnerscalesets/{id}/sessions"
SESSIONS_REFRESH = "PATCH _apis/runtime/runnerscalesets/{id}/sessions/{sessionId}"


def new_session(
    world: ActionsWorld, client: ActionsClient, scale_set_id: int, **kwargs: Any
) -> MessageSession:
    kwargs.setdefault("owner", "listener")
    return MessageSession(
        client, scale_set_id, clock=world.clock.now, sleep=world.sleep, draw=lambda: 0.5, **kwargs
    )


async def scale_set(client: ActionsClient, name: str = "arc") -> int:
    return (await client.create_scale_set(name, 1, [])).id


async def idle_poll(world: ActionsWorld, session: MessageSession, last: int = 0, capacity: int = 10) -> Any:
    """A poll that nothing answers: held until the simulator's 50 s pass, then 202 (``None``)."""
    poll = asyncio.create_task(session.get_message(last, capacity))
    await world.sim.wait_for(lambda: world.poll_held(session.scale_set_id))
    world.advance(51)
    return await poll


async def test_poll_capacity_ack_and_close(
    actions_world: ActionsWorld, actions_client: ActionsClient
) -> None:
    sid = await scale_set(actions_client)
    session = new_session(actions_world, actions_client, sid)
    opened = await session.open()
    assert (opened.scale_set_id, opened.owner, opened.statistics.total_assigned_jobs) == (sid, "listener", 0)
    assert opened.queue_token not in repr(opened)
    assert await idle_poll(actions_world, session) is None
    actions_world.enqueue(2)
    assert await idle_poll(actions_world, session, capacity=0) is None  # the admission gate holds them
    message = await session.get_message(0, 1)
    assert message is not None
    assert (message.id, [j.message_type for j in message.jobs]) == (100000001, [JOB_ASSIGNED])
    assert message.statistics.total_assigned_jobs == 1
    job = message.jobs[0]
    assert (job.owner_name, job.repository_name, job.request_labels) == ("octo-org", "app", ("arc",))
    assert job.queue_time is not None
    await session.delete_message(message.id)
    second = await session.get_message(message.id, 10)
    assert second is not None
    assert (second.id, second.statistics.total_assigned_jobs) == (100000002, 2)
    await session.close()
    await session.close()
    assert actions_world.sim.actions.scale_sets[sid].session is None


async def test_conflict_is_retried_until_the_old_session_expires(
    actions_world: ActionsWorld, actions_client: ActionsClient
) -> None:
    sid = await scale_set(actions_client)
    crashed = new_session(actions_world, actions_client, sid, owner="crashed")
    await crashed.open()  # never deleted: its listener was killed
    session = new_session(actions_world, actions_client, sid)
    opened = await session.open()
    assert opened.owner == "listener"
    assert session.conflicts > 1
    waited = sum(actions_world.sleeps)
    assert 600 <= waited < 600 + 30  # the service's idle expiry, plus at most one capped backoff
    assert max(actions_world.sleeps) <= 30


async def test_conflict_gives_up_after_its_timeout(
    actions_world: ActionsWorld, actions_client: ActionsClient
) -> None:
    sid = await scale_set(actions_client)
    await new_session(actions_world, actions_client, sid, owner="other").open()
    session = new_session(actions_world, actions_client, sid, conflicts=ConflictPolicy(timeout_s=60))
    with pytest.raises(SessionConflict):
        await session.open()
    assert sum(actions_world.sleeps) <= 60
    assert session.session is None


async def test_own_stale_session_is_taken_over_at_once(
    actions_world: ActionsWorld, actions_client: ActionsClient
) -> None:
    sid = await scale_set(actions_client)
    stale = await new_session(actions_world, actions_client, sid).open()
    session = new_session(actions_world, actions_client, sid)
    opened = await session.open(stale_session_id=stale.id)
    assert opened.id != stale.id
    assert (session.conflicts, actions_world.sleeps) == (0, [])
    # a stale id the service already forgot is fine too
    await session.close()
    assert (await new_session(actions_world, actions_client, sid).open(stale_session_id=stale.id)).id


async def test_injected_conflicts(actions_world: ActionsWorld, actions_client: ActionsClient) -> None:
    sid = await scale_set(actions_client)
    await actions_world.fault(op="session.create", kind="error", status=409, times=3)
    session = new_session(actions_world, actions_client, sid)
    await session.open()
    assert session.conflicts == 3
    assert actions_world.sleeps == [1.5, 3.0, 6.0]


async def test_queue_token_401_refreshes_the_session_once(
    actions_world: ActionsWorld, actions_client: ActionsClient
) -> None:
    sid = await scale_set(actions_client)
    session = new_session(actions_world, actions_client, sid)
    first = await session.open()
    actions_world.enqueue(1)
    assert await actions_world.admin("/_sim/actions/expire-tokens", {"kind": "queue"}) == 200
    message = await session.get_message(0, 10)
    assert message is not None
    assert session.session is not None
    assert session.session.id == first.id
    assert session.session.queue_token != first.queue_token
    await actions_world.admin("/_sim/actions/expire-tokens", {"kind": "queue"})
    await session.delete_message(message.id)  # the ack refreshes too
    assert actions_client.stats.snapshot().total(SESSIONS_REFRESH) == 2
    await actions_world.fault(op="message.get", kind="error", status=401, times=2)
    with pytest.raises(MessageQueueTokenExpired):
        await session.get_message(message.id, 10)


async def test_bad_answers(actions_world: ActionsWorld, actions_client: ActionsClient) -> None:
    sid = await scale_set(actions_client)
    await actions_world.fault(op="session.create", kind="empty_queue_url", times=1)
    session = new_session(actions_world, actions_client, sid)
    with pytest.raises(ActionsServiceError, match="no message queue URL"):
        await session.open()
    await session.open()  # the broken session was deleted: no conflict
    assert session.conflicts == 0
    actions_world.enqueue(1)
    await actions_world.fault(op="message.get", kind="empty", times=1)
    with pytest.raises(ActionsServiceError, match="empty"):
        await session.get_message(0, 10)
    await actions_world.fault(op="message.get", kind="bom", times=1)
    message = await session.get_message(0, 10)
    assert message is not None
    assert message.id == 100000001


async def test_scale_set_vanishing_under_a_poll(
    actions_world: ActionsWorld, actions_client: ActionsClient
) -> None:
    sid = await scale_set(actions_client)
    session = new_session(actions_world, actions_client, sid)
    await session.open()
    poll = asyncio.create_task(session.get_message(0, 10))
    await actions_world.sim.wait_for(lambda: actions_world.poll_held(sid))
    assert await actions_world.admin(f"/_sim/actions/scalesets/{sid}/vanish") == 204
    with pytest.raises(ScaleSetNotFound):
        await poll
    await session.close()  # the scale set is gone: nothing to delete, no error


@pytest.mark.parametrize(("mode", "acquired"), [("ghes", 1), ("broker", 0)])
async def test_acquire_jobs(
    actions_world: ActionsWorld, actions_client: ActionsClient, mode: str, acquired: int
) -> None:
    actions_world.sim.core.config.actions.mode = mode
    sid = await scale_set(actions_client)
    session = new_session(actions_world, actions_client, sid)
    await session.open()
    assert await session.acquire_jobs([]) == []
    actions_world.enqueue(1)
    message = await session.get_message(0, 10)
    assert message is not None
    offered = message.of_type(JOB_AVAILABLE) or message.jobs
    ids = [job.runner_request_id for job in offered]
    got = await session.acquire_jobs(ids)
    assert len(got) == acquired
    if mode == "ghes":
        assert got == ids
        assert offered[0].acquire_job_url.endswith(f"/runnerscalesets/{sid}/acquirejobs")


STATS = {"totalAssignedJobs": 2, "totalRunningJobs": 1, "totalRegisteredRunners": 3}


def envelope(
    body: Any, message_type: str = "RunnerScaleSetJobMessages", stats: Any = STATS
) -> dict[str, Any]:
    return {"messageId": 7, "messageType": message_type, "statistics": stats, "body": body}


@pytest.mark.parametrize(
    ("data", "types", "skipped"),
    [
        (envelope(""), [], 0),
        (envelope("[]"), [], 0),
        (
            envelope(
                json.dumps(
                    [
                        {"messageType": "JobStarted", "runnerId": 4, "runnerName": "r", "jobId": "j"},
                        {
                            "messageType": "JobCompleted",
                            "result": "succeeded",
                            "finishTime": "2026-01-01T00:00:10Z",
                        },
                        {"messageType": "SomethingNew"},
                    ]
                )
            ),
            ["JobStarted", "JobCompleted"],
            1,
        ),
    ],
)
def test_parse_message(data: dict[str, Any], types: list[str], skipped: int) -> None:
    message = parse_message(data)
    assert isinstance(message, ScaleSetMessage)
    assert (message.id, [j.message_type for j in message.jobs], message.skipped) == (7, types, skipped)
    assert (message.statistics.total_assigned_jobs, message.statistics.total_registered_runners) == (2, 3)


def test_parse_message_fields() -> None:
    body = json.dumps(
        [
            {
                "messageType": "JobCompleted",
                "runnerRequestId": 11,
                "workflowRunId": 9,
                "requestLabels": ["arc"],
                "runnerAssignTime": "2026-01-01T00:00:01.1234567Z",
                "finishTime": "2026-01-01T00:01:01Z",
                "queueTime": "0001-01-01T00:00:00Z",
                "runnerId": 4,
                "runnerName": "r",
                "result": "failed",
            }
        ]
    )
    job = parse_message(envelope(body)).jobs[0]
    assert (job.runner_request_id, job.workflow_run_id, job.runner_id, job.runner_name, job.result) == (
        11,
        9,
        4,
        "r",
        "failed",
    )
    assert job.queue_time is None
    assert job.finish_time is not None
    assert job.runner_assign_time is not None
    assert job.finish_time - job.runner_assign_time == pytest.approx(59.8765433)


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (None, "empty"),
        (envelope("[]", message_type="Other"), "invalid message type"),
        (envelope("[]", stats=None), "statistics is nil"),
        (envelope("{not json"), "not JSON"),
        (envelope('{"a": 1}'), "not a list"),
    ],
)
def test_parse_message_rejects(data: Any, error: str) -> None:
    with pytest.raises(ActionsServiceError, match=error):
        parse_message(data)
