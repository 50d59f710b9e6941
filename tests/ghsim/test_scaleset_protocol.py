"""The Actions service's scale-set protocol, call by call: handshake and admin tokens, scale sets and
runner groups, sessions, the message queue, acquisition, scale-set runners.  Every answer's shape is
checked by :class:`ScaleSetClient` (see :mod:`.scaleset_schemas`)."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from ghsim import JobSpec, Simulator

from .client import GitHub
from .conftest import Setup, advance, make_jwt, registration_token
from .scaleset_client import ScaleSetClient, job_messages, kinds
from .scaleset_schemas import jwt_claims

RS = "_apis/runtime/runnerscalesets"
AGENTS = "_apis/distributedtask/pools/0/agents"


def enqueue(
    sim: Simulator, labels: tuple[str, ...] = ("arc",), n: int = 1, repo: str = "octo-org/app"
) -> list[int]:
    run = sim.world.enqueue_run(
        sim.world.repo_by_name(repo), [JobSpec(labels, name=f"j{i}") for i in range(n)]
    )
    return run.job_ids


def type_of(answer: Any) -> str:
    return str(answer.body["typeName"]).split(",")[0].rsplit(".", 1)[-1]


async def scale_set_with_session(ssc: ScaleSetClient, name: str = "arc") -> tuple[int, dict[str, Any]]:
    ss = (await ssc.create_scale_set(name)).body
    return ss["id"], (await ssc.open_session(ss["id"])).body


# ---- handshake and admin tokens ----------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["", "/api/v3"])
async def test_handshake_with_a_pat_at_root_and_under_api_v3(
    prefix: str, sim: Simulator, gh: GitHub, http: aiohttp.ClientSession
) -> None:
    client = ScaleSetClient(http, sim.base_url, "https://github.com/octo-org")
    answer = await client.handshake(await registration_token(gh), path_prefix=prefix)
    assert answer.status == 200
    assert answer.body["url"].startswith(sim.base_url + "/_actions/")
    claims = jwt_claims(answer.body["token"])
    assert claims["exp"] == int(sim.core.clock.now() + sim.core.config.actions.admin_token_ttl_s)
    assert answer.headers.get("ActivityId")
    assert (await client.admin("GET", RS, shape="scale_set_list")).body == {"count": 0, "value": []}


async def test_handshake_with_a_github_app(
    sim: Simulator, setup: Setup, gh: GitHub, http: aiohttp.ClientSession
) -> None:
    jwt = make_jwt(setup, sim.core.clock.now())
    inst = await gh.post(f"/app/installations/{setup.inst_octo}/access_tokens", token=jwt)
    assert inst.status == 201
    reg = await gh.post("/orgs/octo-org/actions/runners/registration-token", token=inst.body["token"])
    client = ScaleSetClient(http, sim.ghes_url, f"{sim.base_url}/octo-org")
    assert (await client.handshake(reg.body["token"])).status == 200
    assert (await client.create_scale_set("app-set")).body["runnerGroupName"] == "Default"


async def test_handshake_refusals(sim: Simulator, gh: GitHub, http: aiohttp.ClientSession) -> None:
    token = await registration_token(gh)
    wrong_scope = ScaleSetClient(http, sim.ghes_url, f"{sim.base_url}/other-org")
    assert (await wrong_scope.handshake(token)).status == 403
    unknown = ScaleSetClient(http, sim.ghes_url, f"{sim.base_url}/octo-org")
    assert (await unknown.handshake("AAAAWRONG")).status == 404
    bad_url = ScaleSetClient(http, sim.ghes_url, f"{sim.base_url}/a/b/c")
    assert (await bad_url.handshake(token)).status == 400
    advance(sim, 3601)
    assert (await unknown.handshake(token)).status == 401  # the registration token expired


async def test_admin_token_expires_and_a_new_handshake_refreshes_it(
    sim: Simulator, gh: GitHub, http: aiohttp.ClientSession
) -> None:
    sim.core.config.actions.admin_token_ttl_s = 120
    client = ScaleSetClient(http, sim.ghes_url, f"{sim.base_url}/octo-org")
    await client.handshake(await registration_token(gh))
    assert (await client.admin("GET", RS)).status == 200
    advance(sim, 120)
    answer = await client.admin("GET", RS)
    assert (answer.status, type_of(answer)) == (401, "InvalidTokenException")
    await client.handshake(await registration_token(gh))
    assert (await client.admin("GET", RS)).status == 200
    garbage = await client.request("GET", client.url(RS), token="Bearer not.a.jwt")
    assert (garbage.status, type_of(garbage)) == (401, "InvalidTokenException")


async def test_a_token_of_one_tenant_does_not_open_another(
    sim: Simulator, gh: GitHub, ssc: ScaleSetClient, http: aiohttp.ClientSession
) -> None:
    other = ScaleSetClient(http, sim.ghes_url, f"{sim.base_url}/octo-org/app")
    await other.handshake(await registration_token(gh, "/repos/octo-org/app"))
    assert other.base != ssc.base
    answer = await other.request(
        "GET", other.url(RS).replace(other.base, ssc.base), token=f"Bearer {other.token}"
    )
    assert answer.status == 401


# ---- scale sets and runner groups --------------------------------------------------------------


async def test_scale_set_crud(sim: Simulator, setup: Setup, ssc: ScaleSetClient) -> None:
    created = (await ssc.create_scale_set("arc-runner-set")).body
    assert created["labels"] == [{"type": "System", "name": "arc-runner-set"}]
    assert created["RunnerSetting"] == {"ephemeral": True, "disableUpdate": True}
    assert created["createdOn"] != "0001-01-01T00:00:00Z"
    assert (created["runnerGroupId"], created["runnerGroupName"]) == (1, "Default")
    sid = created["id"]
    dup = await ssc.create_scale_set("ARC-runner-set", status=409)
    assert type_of(dup) == "RunnerScaleSetExistsException"
    assert (await ssc.admin("GET", f"{RS}/{sid}", shape="scale_set")).body["name"] == "arc-runner-set"
    found = await ssc.admin("GET", f"{RS}?runnerGroupId=1&name=arc-runner-set", shape="scale_set_list")
    assert [s["id"] for s in found.body["value"]] == [sid]
    none = await ssc.admin("GET", f"{RS}?runnerGroupId=1&name=nope", shape="scale_set_list")
    assert none.body == {"count": 0, "value": []}
    # PATCH as ARC sends it: zero fields are "not provided"
    group = await ssc.admin(
        "PATCH",
        f"{RS}/{sid}",
        body={"runnerGroupId": setup.gpu_group, "RunnerSetting": {}, "createdOn": "0001-01-01T00:00:00Z"},
        shape="scale_set",
    )
    assert (group.body["runnerGroupId"], group.body["runnerGroupName"], group.body["name"]) == (
        setup.gpu_group,
        "gpu",
        "arc-runner-set",
    )
    assert group.body["RunnerSetting"] == {"ephemeral": True, "disableUpdate": True}
    renamed = await ssc.admin(
        "PATCH", f"{RS}/{sid}", body={"name": "renamed", "RunnerSetting": {}}, shape="scale_set"
    )
    assert (renamed.body["name"], renamed.body["runnerGroupId"]) == ("renamed", setup.gpu_group)
    missing_group = await ssc.admin("PATCH", f"{RS}/{sid}", body={"runnerGroupId": 999})
    assert (missing_group.status, type_of(missing_group)) == (404, "RunnerGroupNotFoundException")
    assert (await ssc.admin("DELETE", f"{RS}/{sid}")).status == 204
    gone = await ssc.admin("GET", f"{RS}/{sid}")
    assert (gone.status, type_of(gone)) == (404, "RunnerScaleSetNotFoundException")
    assert gone.body["message"] == f"No runner scale set found with identifier {sid}."
    empty_name = await ssc.admin("POST", RS, body={"name": "", "runnerGroupId": 1})
    assert (empty_name.status, type_of(empty_name)) == (400, "ArgumentException")


async def test_runner_groups(setup: Setup, ssc: ScaleSetClient) -> None:
    default = await ssc.admin(
        "GET", "_apis/runtime/runnergroups/?groupName=Default", shape="runner_group_list"
    )
    assert default.body["value"] == [{"id": 1, "name": "Default", "size": 0, "isDefaultGroup": True}]
    gpu = await ssc.admin("GET", "_apis/runtime/runnergroups/?groupName=gpu", shape="runner_group_list")
    assert [(g["id"], g["isDefaultGroup"]) for g in gpu.body["value"]] == [(setup.gpu_group, False)]
    nope = await ssc.admin("GET", "_apis/runtime/runnergroups/?groupName=nope", shape="runner_group_list")
    assert nope.body["count"] == 0


# ---- sessions ----------------------------------------------------------------------------------


async def test_two_listeners_one_wins_the_other_gets_409_until_the_first_ends(
    sim: Simulator, ssc: ScaleSetClient
) -> None:
    sid = (await ssc.create_scale_set("arc")).body["id"]
    first, second = await asyncio.gather(
        ssc.open_session(sid, "a", status=None), ssc.open_session(sid, "b", status=None)
    )
    statuses = sorted([first.status, second.status])
    assert statuses == [200, 409]
    winner, loser = (first, second) if first.status == 200 else (second, first)
    assert type_of(loser) == "RunnerScaleSetSessionConflictException"
    assert "already has an active session" in loser.body["message"]
    for _ in range(3):  # ARC's listener crash-loops on this
        assert (await ssc.open_session(sid, "b", status=None)).status == 409
    await ssc.admin("DELETE", f"{RS}/{sid}/sessions/{winner.body['sessionId']}", status=204)
    assert (await ssc.open_session(sid, "b")).body["ownerName"] == "b"


async def test_session_refresh_expiry_and_unknown_sessions(sim: Simulator, ssc: ScaleSetClient) -> None:
    sid, sess = await scale_set_with_session(ssc)
    advance(sim, 30)
    refreshed = (await ssc.admin("PATCH", f"{RS}/{sid}/sessions/{sess['sessionId']}", shape="session")).body
    assert refreshed["sessionId"] == sess["sessionId"]
    assert refreshed["runnerScaleSet"]["id"] == sid
    assert refreshed["messageQueueAccessToken"] != sess["messageQueueAccessToken"]
    unknown = await ssc.admin("DELETE", f"{RS}/{sid}/sessions/4fd0ffb0-0000-0000-0000-000000000000")
    assert (unknown.status, type_of(unknown)) == (400, "RunnerScaleSetSessionExpiredException")
    # a crashed listener's session lingers (409) until it has been idle for session_idle_s
    assert (await ssc.open_session(sid, status=None)).status == 409
    advance(sim, sim.core.config.actions.session_idle_s)
    assert (await ssc.poll(refreshed)).status == 401
    stale = await ssc.admin("PATCH", f"{RS}/{sid}/sessions/{sess['sessionId']}")
    assert (stale.status, type_of(stale)) == (400, "RunnerScaleSetSessionExpiredException")
    assert (await ssc.open_session(sid, "restarted")).status == 200
    nowhere = await ssc.open_session(9999, status=404)
    assert type_of(nowhere) == "RunnerScaleSetNotFoundException"


async def test_a_held_poll_keeps_the_session_alive(sim: Simulator, ssc: ScaleSetClient) -> None:
    sid, sess = await scale_set_with_session(ssc)
    sim.core.config.actions.long_poll_s = 10_000
    poll = asyncio.create_task(ssc.poll(sess))
    await sim.wait_for(lambda: sim.actions.scale_sets[sid].session.polls_held == 1)  # type: ignore[union-attr]
    advance(sim, sim.core.config.actions.session_idle_s + 1)
    assert (await ssc.open_session(sid, status=None)).status == 409
    enqueue(sim)
    assert kinds((await poll).body) == ["JobAssigned"]


# ---- the message queue -------------------------------------------------------------------------


async def test_long_poll_is_held_on_the_simulator_clock_then_202(sim: Simulator, ssc: ScaleSetClient) -> None:
    sid, sess = await scale_set_with_session(ssc)
    poll = asyncio.create_task(ssc.poll(sess))
    await sim.wait_for(lambda: sim.actions.scale_sets[sid].session.polls_held == 1)  # type: ignore[union-attr]
    advance(sim, 49)
    await asyncio.sleep(0.05)
    assert not poll.done()
    advance(sim, 1)
    answer = await poll
    assert (answer.status, answer.raw) == (202, b"")
    assert answer.headers.get("X-GitHub-Request-Id")


async def test_unacknowledged_messages_are_replayed_after_a_listener_restart(
    sim: Simulator, ssc: ScaleSetClient
) -> None:
    sid, sess = await scale_set_with_session(ssc)
    enqueue(sim)
    first = (await ssc.poll(sess)).body
    enqueue(sim)
    second = (await ssc.poll(sess, first["messageId"])).body
    assert (first["messageId"], second["messageId"]) == (100000001, 100000002)
    # the listener dies without acknowledging; a new one (another owner) polls from 0
    await ssc.admin("DELETE", f"{RS}/{sid}/sessions/{sess['sessionId']}", status=204)
    sess2 = (await ssc.open_session(sid, "listener-1")).body
    assert sess2["statistics"]["totalAssignedJobs"] == 2
    again = (await ssc.poll(sess2)).body
    assert again == first
    assert (await ssc.poll(sess2, again["messageId"])).body == second
    await ssc.ack(sess2, first["messageId"])
    await ssc.ack(sess2, second["messageId"])
    await ssc.ack(sess2, second["messageId"])  # again: still 204
    sim.core.config.actions.long_poll_s = 5
    poll = asyncio.create_task(ssc.poll(sess2))
    await sim.wait_for(lambda: sim.actions.scale_sets[sid].session.polls_held == 1)  # type: ignore[union-attr]
    advance(sim, 5)
    assert (await poll).status == 202


async def test_capacity_gates_assignment(sim: Simulator, ssc: ScaleSetClient) -> None:
    sid, sess = await scale_set_with_session(ssc)
    sim.core.config.actions.long_poll_s = 5
    enqueue(sim, n=3)
    poll = asyncio.create_task(ssc.poll(sess, capacity=0))
    await sim.wait_for(lambda: sim.actions.scale_sets[sid].session.polls_held == 1)  # type: ignore[union-attr]
    advance(sim, 5)
    assert (await poll).status == 202
    one = (await ssc.poll(sess, capacity=1)).body
    assert kinds(one) == ["JobAssigned"]
    assert one["statistics"]["totalAssignedJobs"] == 1
    rest = (await ssc.poll(sess, one["messageId"], capacity=3)).body
    assert kinds(rest) == ["JobAssigned", "JobAssigned"]
    assert rest["statistics"]["totalAssignedJobs"] == 3


async def test_job_messages_come_in_batches_of_at_most_50(sim: Simulator, ssc: ScaleSetClient) -> None:
    _sid, sess = await scale_set_with_session(ssc)
    enqueue(sim, n=120)
    last, sizes = 0, []
    for _ in range(3):
        message = (await ssc.poll(sess, last)).body
        sizes.append(len(job_messages(message)))
        assert message["statistics"]["totalAssignedJobs"] == 120
        last = message["messageId"]
    assert sizes == [50, 50, 20]


async def test_expired_queue_token_is_401_until_the_session_is_refreshed(
    sim: Simulator, ssc: ScaleSetClient
) -> None:
    sim.core.config.actions.queue_token_ttl_s = 60
    sim.core.config.actions.mode = "ghes"
    sid, sess = await scale_set_with_session(ssc)
    enqueue(sim)
    message = (await ssc.poll(sess)).body
    advance(sim, 60)
    assert (await ssc.poll(sess, message["messageId"])).status == 401
    assert (await ssc.ack(sess, message["messageId"], status=None)).status == 401
    rid = job_messages(message)[0]["runnerRequestId"]
    assert (await ssc.acquire(sess, sid, [rid])).status == 401
    fresh = (await ssc.admin("PATCH", f"{RS}/{sid}/sessions/{sess['sessionId']}", shape="session")).body
    assert (await ssc.acquire(fresh, sid, [rid, 424242])).body == {"count": 1, "value": [rid]}
    await ssc.ack(fresh, message["messageId"])


async def test_bad_poll_parameters(ssc: ScaleSetClient) -> None:
    _, sess = await scale_set_with_session(ssc)
    bad = await ssc.request(
        "GET", sess["messageQueueUrl"] + "?lastMessageId=x", token=f"Bearer {sess['messageQueueAccessToken']}"
    )
    assert (bad.status, type_of(bad)) == (400, "ArgumentException")


async def test_acquisition_routes_per_mode(sim: Simulator, ssc: ScaleSetClient) -> None:
    sid, sess = await scale_set_with_session(ssc)
    broker = await ssc.acquire(sess, sid, [1])
    assert (broker.status, broker.raw, broker.headers["Content-Type"].split(";")[0]) == (
        404,
        b"404 page not found",
        "text/plain",
    )
    assert (await ssc.admin("GET", f"{RS}/{sid}/acquirablejobs")).status == 204
    sim.core.config.actions.mode = "ghes"
    enqueue(sim, n=2)
    listed = await ssc.admin("GET", f"{RS}/{sid}/acquirablejobs", shape="acquirable_list")
    assert listed.body["count"] == 2
    assert listed.body["value"][0]["messageType"] == "JobAvailable"


async def test_an_assigned_job_nobody_starts_is_requeued_at_most_max_requeues_times(
    sim: Simulator, ssc: ScaleSetClient
) -> None:
    sim.core.config.actions.assign_timeout_s = 100
    sid, sess = await scale_set_with_session(ssc)
    enqueue(sim)
    message = (await ssc.poll(sess)).body
    last, seen = message["messageId"], kinds(message)
    for _ in range(3):
        advance(sim, 100)
        message = (await ssc.poll(sess, last)).body
        last = message["messageId"]
        seen += kinds(message)
    assert seen == ["JobAssigned"] + ["JobCompleted", "JobAssigned"] * 3
    assert job_messages(message)[0]["result"] == "canceled"
    # the fourth time it stays assigned: nothing more to say
    sim.core.config.actions.long_poll_s = 150
    poll = asyncio.create_task(ssc.poll(sess, last))
    await sim.wait_for(lambda: sim.actions.scale_sets[sid].session.polls_held == 1)  # type: ignore[union-attr]
    advance(sim, 150)
    assert (await poll).status == 202
    assert sim.actions.scale_sets[sid].statistics()["totalAssignedJobs"] == 1


# ---- scale-set runners -------------------------------------------------------------------------


async def test_scale_set_runners(sim: Simulator, ssc: ScaleSetClient) -> None:
    sid, _sess = await scale_set_with_session(ssc)
    jit = (await ssc.jit(sid, "runner-a")).body
    rid = jit["runner"]["id"]
    dup = await ssc.jit(sid, "runner-a", status=409)
    assert type_of(dup) == "AgentExistsException"
    assert (await ssc.admin("GET", f"{AGENTS}/{rid}", shape="runner_reference")).body == jit["runner"]
    by_name = await ssc.admin("GET", f"{AGENTS}?agentName=runner-a", shape="runner_reference_list")
    assert by_name.body == {"count": 1, "value": [jit["runner"]]}
    nobody = await ssc.admin("GET", f"{AGENTS}?agentName=nobody", shape="runner_reference_list")
    assert nobody.body["count"] == 0
    runner = sim.world.runners[rid]
    assert [lab.name for lab in runner.labels] == ["arc"]
    assert runner.ephemeral
    # busy: JobStillRunningException (400, which ARC <= 0.13 and actions/scaleset both recognise)
    (job_id,) = enqueue(sim)
    sim.world.redeem_jit(jit["encodedJITConfig"])
    sim.world.poll(rid)
    sim.world.start_job(rid, job_id)
    busy = await ssc.admin("DELETE", f"{AGENTS}/{rid}")
    assert (busy.status, type_of(busy)) == (400, "JobStillRunningException")
    sim.world.complete_job(rid, job_id)  # ephemeral: deregistered
    assert (await ssc.admin("DELETE", f"{AGENTS}/{rid}")).status == 204
    gone = await ssc.admin("GET", f"{AGENTS}/{rid}")
    assert (gone.status, type_of(gone)) == (404, "AgentNotFoundException")
    idle = (await ssc.jit(sid, "runner-b")).body["runner"]["id"]
    assert (await ssc.admin("DELETE", f"{AGENTS}/{idle}")).status == 204
    assert idle not in sim.world.runners
