"""Fault switches of the Actions service (``/_sim/actions/...``), and a conformance sweep that
proves every response shape of the reference was checked."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from ghsim import JobSpec, Simulator

from .client import GitHub
from .conftest import advance, registration_token
from .scaleset_client import BOM, ScaleSetClient, job_messages
from .scaleset_schemas import CHECKERS, SEEN

RS = "_apis/runtime/runnerscalesets"


async def admin(http: aiohttp.ClientSession, sim: Simulator, method: str, path: str, body: Any = None) -> Any:
    async with http.request(method, sim.base_url + path, json=body) as resp:
        data = await resp.json() if resp.content_type == "application/json" else None
        return resp.status, data


async def fault(http: aiohttp.ClientSession, sim: Simulator, **spec: Any) -> None:
    status, _ = await admin(http, sim, "POST", "/_sim/actions/faults", spec)
    assert status == 201


def enqueue(sim: Simulator, n: int = 1) -> list[int]:
    repo = sim.world.repo_by_name("octo-org/app")
    return sim.world.enqueue_run(repo, [JobSpec(("arc",)) for _ in range(n)]).job_ids


async def test_session_conflict_loop(
    sim: Simulator, ssc: ScaleSetClient, http: aiohttp.ClientSession
) -> None:
    sid = (await ssc.create_scale_set("arc")).body["id"]
    await fault(http, sim, op="session.create", kind="error", status=409, times=3)
    for _ in range(3):
        answer = await ssc.open_session(sid, status=409)
        assert "RunnerScaleSetSessionConflictException" in answer.body["typeName"]
    assert (await ssc.open_session(sid)).status == 200
    assert (await admin(http, sim, "GET", "/_sim/actions/faults"))[1] == []


async def test_server_errors_rate_limits_and_text_plain(
    sim: Simulator, ssc: ScaleSetClient, http: aiohttp.ClientSession
) -> None:
    sid = (await ssc.create_scale_set("arc")).body["id"]
    await fault(http, sim, op="scaleset.get", kind="error", status=503, times=1)
    assert (await ssc.admin("GET", f"{RS}/{sid}")).status == 503
    assert (await ssc.admin("GET", f"{RS}/{sid}")).status == 200
    await fault(http, sim, op="jit.generate", kind="error", status=429, times=1)
    limited = await ssc.jit(sid, "r1", status=429)
    assert "TooManyRequestsException" in limited.body["typeName"]
    await fault(
        http, sim, op="scaleset.*", kind="error", status=500, text_plain=True, message="boom", times=1
    )
    plain = await ssc.admin("GET", f"{RS}/{sid}")
    assert (plain.status, plain.raw, plain.headers["Content-Type"].startswith("text/plain")) == (
        500,
        b"boom",
        True,
    )


async def test_empty_and_bom_bodies(sim: Simulator, ssc: ScaleSetClient, http: aiohttp.ClientSession) -> None:
    sid = (await ssc.create_scale_set("arc")).body["id"]
    await fault(http, sim, op="scaleset.get", kind="bom", times=1)
    answer = await ssc.admin("GET", f"{RS}/{sid}", shape="scale_set")
    assert answer.raw.startswith(BOM)
    assert answer.body["id"] == sid
    sess = (await ssc.open_session(sid)).body
    await fault(http, sim, op="message.get", kind="empty", times=1)
    empty = await ssc.poll(sess)
    assert (empty.status, empty.raw) == (200, b"")


async def test_long_poll_stall_and_empty_queue_url(
    sim: Simulator, ssc: ScaleSetClient, http: aiohttp.ClientSession
) -> None:
    sid = (await ssc.create_scale_set("arc")).body["id"]
    await fault(http, sim, op="session.create", kind="empty_queue_url", times=1)
    broken = await ssc.open_session(sid)
    assert broken.body["messageQueueUrl"] == ""
    await ssc.admin("DELETE", f"{RS}/{sid}/sessions/{broken.body['sessionId']}", status=204)
    sess = (await ssc.open_session(sid)).body
    enqueue(sim)
    await fault(http, sim, op="message.get", kind="stall", seconds=300, times=1)
    poll = asyncio.create_task(ssc.poll(sess))
    await asyncio.sleep(0.05)
    assert not poll.done()  # a message waits, but the poll hangs
    advance(sim, 300)
    assert (await poll).status == 202
    assert job_messages((await ssc.poll(sess)).body)[0]["messageType"] == "JobAssigned"


async def test_scale_set_vanishes(sim: Simulator, ssc: ScaleSetClient, http: aiohttp.ClientSession) -> None:
    sid = (await ssc.create_scale_set("arc")).body["id"]
    sess = (await ssc.open_session(sid)).body
    poll = asyncio.create_task(ssc.poll(sess))
    await sim.wait_for(lambda: sim.actions.scale_sets[sid].session is not None)
    status, _ = await admin(http, sim, "POST", f"/_sim/actions/scalesets/{sid}/vanish")
    assert status == 204
    assert (await poll).status == 401  # its session went with it
    for answer in (await ssc.admin("GET", f"{RS}/{sid}"), await ssc.open_session(sid, status=None)):
        assert answer.status == 404
        assert "RunnerScaleSetNotFoundException" in answer.body["typeName"]


async def test_expired_tokens(sim: Simulator, ssc: ScaleSetClient, http: aiohttp.ClientSession) -> None:
    sid = (await ssc.create_scale_set("arc")).body["id"]
    sess = (await ssc.open_session(sid)).body
    status, _ = await admin(http, sim, "POST", "/_sim/actions/expire-tokens", {"kind": "queue"})
    assert status == 200
    assert (await ssc.poll(sess)).status == 401
    refreshed = (await ssc.admin("PATCH", f"{RS}/{sid}/sessions/{sess['sessionId']}", shape="session")).body
    enqueue(sim)
    assert (await ssc.poll(refreshed)).status == 200
    await admin(http, sim, "POST", "/_sim/actions/expire-tokens", {"kind": "admin"})
    answer = await ssc.admin("GET", RS)
    assert answer.status == 401
    assert "InvalidTokenException" in answer.body["typeName"]
    await fault(http, sim, op="*", kind="error", status=401)
    assert (await ssc.poll(refreshed)).status == 401
    await admin(http, sim, "DELETE", "/_sim/actions/faults")
    status, overview = await admin(http, sim, "GET", "/_sim/actions")
    assert status == 200
    assert overview["scale_sets"][0]["statistics"]["totalAssignedJobs"] == 1


async def test_bad_fault_specs(sim: Simulator, http: aiohttp.ClientSession) -> None:
    for spec in (
        {"op": "nope", "kind": "error"},
        {"op": "*", "kind": "weird"},
        {"kind": "error", "times": 0},
    ):
        assert (await admin(http, sim, "POST", "/_sim/actions/faults", spec))[0] == 422


async def test_every_shape_of_the_reference_is_checked(
    sim: Simulator, gh: GitHub, ssc: ScaleSetClient
) -> None:
    """One sweep over every operation; each answer goes through its shape check."""
    SEEN.clear()
    sim.core.config.actions.mode = "ghes"
    await ssc.handshake(await registration_token(gh))
    sid = (await ssc.create_scale_set("arc")).body["id"]
    await ssc.admin("GET", f"{RS}?runnerGroupId=1&name=arc", shape="scale_set_list")
    await ssc.admin("GET", "_apis/runtime/runnergroups/?groupName=Default", shape="runner_group_list")
    sess = (await ssc.open_session(sid)).body
    enqueue(sim)
    offer = (await ssc.poll(sess)).body
    await ssc.admin("GET", f"{RS}/{sid}/acquirablejobs", shape="acquirable_list")
    await ssc.acquire(sess, sid, [job_messages(offer)[0]["runnerRequestId"]])
    jit = (await ssc.jit(sid, "r1")).body
    await ssc.admin("GET", "_apis/distributedtask/pools/0/agents?agentName=r1", shape="runner_reference_list")
    await ssc.admin("GET", f"{RS}/9999", status=404)
    assert jit["runner"]["runnerScaleSetId"] == sid
    assert set(CHECKERS) <= SEEN
