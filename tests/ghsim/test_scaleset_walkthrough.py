"""The reference's §9.1 "one job end to end", in broker mode and in GHES mode: listener session,
held poll → 202, job queued → JobAssigned (GHES: JobAvailable + acquirejobs first), JIT runner (a
virtual runner with ``ACTIONS_RUNNER_INPUT_JITCONFIG``) → JobStarted → JobCompleted, finalizer
DELETE → 204; the same job seen through REST and ``workflow_job`` deliveries."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from ghsim import JobSpec, Simulator, run_virtual_runner
from ghsim.agent import EXIT_OK
from ghsim.entities import Scope

from .client import GitHub
from .conftest import Setup, advance
from .scaleset_client import ScaleSetClient, job_messages, kinds


def held(sim: Simulator, scale_set_id: int) -> bool:
    ss = sim.actions.scale_sets[scale_set_id]
    return ss.session is not None and ss.session.polls_held > 0


async def next_message(ssc: ScaleSetClient, sess: dict[str, Any], last: int) -> dict[str, Any]:
    answer = await ssc.poll(sess, last)
    assert answer.status == 200, answer.raw
    message: dict[str, Any] = answer.body
    await ssc.ack(sess, message["messageId"])
    return message


async def idle_then_assigned(
    mode: str, sim: Simulator, ssc: ScaleSetClient, ss: dict[str, Any], sess: dict[str, Any]
) -> tuple[int, dict[str, Any], int]:
    """Steps 2-3: an idle poll ends in 202; a job queued during a held poll arrives as
    ``JobAssigned`` (GHES: after ``JobAvailable`` and ``acquirejobs``).  → (job id, message, last id)"""
    poll = asyncio.create_task(ssc.poll(sess))
    await sim.wait_for(lambda: held(sim, ss["id"]))
    advance(sim, 51)
    assert (await poll).status == 202
    poll = asyncio.create_task(ssc.poll(sess))
    await sim.wait_for(lambda: held(sim, ss["id"]))
    run = sim.world.enqueue_run(sim.world.repo_by_name("octo-org/app"), [JobSpec(("arc-runner-set",))])
    request_id = 0
    if mode == "ghes":
        message = (await poll).body
        assert (message["messageId"], kinds(message)) == (100000001, ["JobAvailable"])
        assert message["statistics"]["totalAvailableJobs"] == 1
        offer = job_messages(message)[0]
        assert offer["acquireJobUrl"].endswith(f"/runnerscalesets/{ss['id']}/acquirejobs")
        request_id = offer["runnerRequestId"]
        got = await ssc.acquire(sess, ss["id"], [request_id])
        assert got.body == {"count": 1, "value": [request_id]}
        await ssc.ack(sess, message["messageId"])
        poll = asyncio.create_task(ssc.poll(sess, message["messageId"]))
    answer = await poll
    assert answer.status == 200
    message = answer.body
    assert message["messageId"] == (100000001 if mode == "broker" else 100000002)
    assert kinds(message) == ["JobAssigned"]
    assigned = job_messages(message)[0]
    assert assigned["requestLabels"] == ["arc-runner-set"]
    assert (assigned["ownerName"], assigned["repositoryName"]) == ("octo-org", "app")
    assert assigned["runnerRequestId"] == request_id
    stats = message["statistics"]
    assert (stats["totalAssignedJobs"], stats["totalAvailableJobs"], stats["totalAcquiredJobs"]) == (1, 0, 0)
    await ssc.ack(sess, message["messageId"])
    return run.job_ids[0], assigned, message["messageId"]


STARTED = {
    "totalAvailableJobs": 0,
    "totalAcquiredJobs": 0,
    "totalAssignedJobs": 1,
    "totalRunningJobs": 1,
    "totalRegisteredRunners": 1,
    "totalBusyRunners": 1,
    "totalIdleRunners": 0,
}


@pytest.mark.parametrize("mode", ["broker", "ghes"])
async def test_one_job_end_to_end(
    mode: str, sim: Simulator, setup: Setup, gh: GitHub, ssc: ScaleSetClient, http: aiohttp.ClientSession
) -> None:
    sim.core.config.actions.mode = mode
    hook = sim.world.create_hook(
        "http://127.0.0.1:9/hook", scope=Scope("org", "octo-org"), faults={"drop": 1.0}
    )
    ss = (await ssc.create_scale_set("arc-runner-set")).body
    # 1. session: its statistics are "message 0"
    sess = (await ssc.open_session(ss["id"], "arc-runner-set-754b578d-listener")).body
    assert sess["statistics"]["totalAssignedJobs"] == 0
    job_id, assigned, last = await idle_then_assigned(mode, sim, ssc, ss, sess)
    # 4. the controller registers a JIT runner: it counts as registered at once
    name = "arc-runner-set-x7k2p-runner-abcde"
    jit = (await ssc.jit(ss["id"], name)).body
    got = (await ssc.admin("GET", f"_apis/runtime/runnerscalesets/{ss['id']}", shape="scale_set")).body
    assert got["statistics"]["totalRegisteredRunners"] == 1
    # 5. its pod runs the JIT config and takes the job (held open until we have looked)
    release = asyncio.Event()

    async def job_hook(started: bool) -> None:
        if started:
            await release.wait()

    env = {"ACTIONS_RUNNER_INPUT_JITCONFIG": jit["encodedJITConfig"]}
    runner = asyncio.create_task(run_virtual_runner(sim.base_url, env, session=http, job_hook=job_hook))
    message = await next_message(ssc, sess, last)
    started = job_messages(message)[0]
    assert (kinds(message), started["runnerName"], started["runnerId"]) == (
        ["JobStarted"],
        name,
        jit["runner"]["id"],
    )
    assert started["jobId"] == assigned["jobId"]
    assert message["statistics"] == STARTED
    rest = await gh.get(f"/repos/octo-org/app/actions/jobs/{job_id}")
    assert (rest.body["status"], rest.body["runner_name"]) == ("in_progress", name)
    # 6. the job ends; the ephemeral runner deregisters and exits 0
    release.set()
    assert await runner == EXIT_OK
    message = await next_message(ssc, sess, message["messageId"])
    assert (kinds(message), job_messages(message)[0]["result"]) == (["JobCompleted"], "succeeded")
    assert (message["statistics"]["totalAssignedJobs"], message["statistics"]["totalRegisteredRunners"]) == (
        0,
        0,
    )
    # the EphemeralRunner finalizer removes the (already deregistered) runner: 204
    await ssc.admin("DELETE", f"_apis/distributedtask/pools/0/agents/{jit['runner']['id']}", status=204)
    rest = await gh.get(f"/repos/octo-org/app/actions/jobs/{job_id}")
    assert (rest.body["status"], rest.body["conclusion"]) == ("completed", "success")
    seen = [(d.job_id, d.action) for d in sim.core.dispatcher.deliveries if d.hook_id == hook.id]
    assert seen == [(job_id, "queued"), (job_id, "in_progress"), (job_id, "completed")]
    # the listener exits: its session goes
    await ssc.admin(
        "DELETE", f"_apis/runtime/runnerscalesets/{ss['id']}/sessions/{sess['sessionId']}", status=204
    )
    assert sim.actions.scale_sets[ss["id"]].session is None
