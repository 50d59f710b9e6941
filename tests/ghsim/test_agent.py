"""Virtual runners (ghsim.agent) against an in-process simulator."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from ghsim import JobSpec, ManualClock, Simulator, VirtualRunner, run_virtual_runner
from ghsim.agent import EXIT_OK, EXIT_REGISTRATION_FAILED, EXIT_RETRYABLE, EXIT_SESSION_CONFLICT
from ghsim.entities import Scope

from .client import GitHub
from .conftest import Setup


async def no_sleep(seconds: float) -> None:
    await asyncio.sleep(0)


async def jit_env(gh: GitHub, name: str = "jit-1", labels: list[str] | None = None) -> dict[str, str]:
    r = await gh.post(
        "/orgs/octo-org/actions/runners/generate-jitconfig",
        json={"name": name, "runner_group_id": 1, "labels": labels or ["gpu"]},
    )
    assert r.status == 201
    return {"ACTIONS_RUNNER_INPUT_JITCONFIG": r.body["encoded_jit_config"]}


async def token_env(gh: GitHub, **extra: str) -> dict[str, str]:
    r = await gh.post("/orgs/octo-org/actions/runners/registration-token")
    return {
        "RUNNER_TOKEN": r.body["token"],
        "GITHUB_URL": "https://github.com/",
        "RUNNER_ORG": "octo-org",
        "RUNNER_NAME": "pod-1",
        "RUNNER_LABELS": "gpu,a100",
        **extra,
    }


def enqueue(sim: Simulator, labels: tuple[str, ...] = ("self-hosted", "gpu"), duration: float = 0) -> int:
    run = sim.world.enqueue_run(sim.world.repo_by_name("octo-org/app"), [JobSpec(labels, duration=duration)])
    return run.job_ids[0]


async def test_jit_runner_takes_a_job_and_exits_0(
    gh: GitHub, sim: Simulator, http: aiohttp.ClientSession
) -> None:
    job_id = enqueue(sim)
    env = await jit_env(gh)
    code = await run_virtual_runner(sim.base_url, env, session=http)
    assert code == EXIT_OK
    job = sim.world.jobs[job_id]
    assert (job.status, job.conclusion, job.runner_name) == ("completed", "success", "jit-1")
    assert None not in (job.queued_at, job.assigned_at, job.started_at, job.completed_at)
    assert "jit-1" not in {r.name for r in sim.world.runners.values()}  # ephemeral: removed


async def test_reused_jit_config_fails_with_code_1(
    gh: GitHub, sim: Simulator, http: aiohttp.ClientSession
) -> None:
    enqueue(sim)
    env = await jit_env(gh)
    assert await run_virtual_runner(sim.base_url, env, session=http) == EXIT_OK
    result = await VirtualRunner(sim.base_url, env, session=http).run()
    assert (result.exit_code, result.reason) == (EXIT_REGISTRATION_FAILED, "invalid_jit")


async def test_jit_config_used_twice_concurrently(
    gh: GitHub, sim: Simulator, http: aiohttp.ClientSession
) -> None:
    env = await jit_env(gh)
    first = asyncio.create_task(VirtualRunner(sim.base_url, env, session=http, poll_wait=5).run())
    async with asyncio.timeout(10):
        await sim.wait_for(lambda: any(r.configured for r in sim.world.runners.values()))
    second = await VirtualRunner(sim.base_url, env, session=http).run()
    assert (second.exit_code, second.reason) == (EXIT_REGISTRATION_FAILED, "jit_reused")
    enqueue(sim)
    assert (await first).exit_code == EXIT_OK


async def test_garbage_jit_config(sim: Simulator, http: aiohttp.ClientSession) -> None:
    result = await VirtualRunner(
        sim.base_url, {"ACTIONS_RUNNER_INPUT_JITCONFIG": "bm9wZQ=="}, session=http
    ).run()
    assert (result.exit_code, result.reason) == (EXIT_REGISTRATION_FAILED, "invalid_jit")


async def test_token_runner_serves_jobs_until_removed(
    gh: GitHub, sim: Simulator, http: aiohttp.ClientSession
) -> None:
    runner = VirtualRunner(sim.base_url, await token_env(gh), session=http, poll_wait=5)
    task = asyncio.create_task(runner.run())
    async with asyncio.timeout(10):
        await sim.wait_for(lambda: any(sim.world.runner_online(r) for r in sim.world.runners.values()))
    jobs = [enqueue(sim), enqueue(sim, ("a100",))]
    async with asyncio.timeout(10):
        await sim.wait_for(lambda: all(sim.world.jobs[j].status == "completed" for j in jobs))
    listed = await gh.get("/orgs/octo-org/actions/runners?name=pod-1")
    (info,) = listed.body["runners"]
    assert (info["status"], info["busy"], info["ephemeral"]) == ("online", False, False)
    assert [x["name"] for x in info["labels"]][-2:] == ["gpu", "a100"]
    assert (await gh.delete(f"/orgs/octo-org/actions/runners/{info['id']}")).status == 204
    result = await task
    assert (result.exit_code, result.reason, result.jobs_done) == (EXIT_OK, "removed", 2)


async def test_ephemeral_token_runner(gh: GitHub, sim: Simulator, http: aiohttp.ClientSession) -> None:
    jobs = [enqueue(sim), enqueue(sim)]
    env = await token_env(gh, RUNNER_EPHEMERAL="true")
    result = await VirtualRunner(sim.base_url, env, session=http).run()
    assert (result.exit_code, result.reason, result.jobs_done) == (EXIT_OK, "ephemeral_done", 1)
    assert [sim.world.jobs[j].status for j in jobs] == ["completed", "queued"]


async def test_wrong_token(sim: Simulator, setup: Setup, http: aiohttp.ClientSession) -> None:
    env = {"RUNNER_TOKEN": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "RUNNER_URL": "https://github.com/octo-org"}
    result = await VirtualRunner(sim.base_url, env, session=http).run()
    assert (result.exit_code, result.reason) == (EXIT_REGISTRATION_FAILED, "invalid_token")


async def test_token_of_another_scope(gh: GitHub, sim: Simulator, http: aiohttp.ClientSession) -> None:
    env = await token_env(gh)
    env["RUNNER_ORG"] = "other-org"
    result = await VirtualRunner(sim.base_url, env, session=http).run()
    assert (result.exit_code, result.reason) == (EXIT_REGISTRATION_FAILED, "invalid_token")


async def test_expired_token(
    gh: GitHub, sim: Simulator, http: aiohttp.ClientSession, clock: ManualClock
) -> None:
    env = await token_env(gh)
    clock.advance(3601)
    result = await VirtualRunner(sim.base_url, env, session=http).run()
    assert (result.exit_code, result.reason) == (EXIT_REGISTRATION_FAILED, "expired_token")


async def test_unknown_group(gh: GitHub, sim: Simulator, http: aiohttp.ClientSession) -> None:
    result = await VirtualRunner(sim.base_url, await token_env(gh, RUNNER_GROUP="nope"), session=http).run()
    assert (result.exit_code, result.reason) == (EXIT_REGISTRATION_FAILED, "group_not_found")


async def test_name_conflict_without_replace(gh: GitHub, sim: Simulator, http: aiohttp.ClientSession) -> None:
    scope = Scope("org", "octo-org")
    sim.world.register_runner(sim.world.issue_token(scope, "registration").token, scope, "pod-1", [])
    result = await VirtualRunner(
        sim.base_url, await token_env(gh, RUNNER_REPLACE="false"), session=http
    ).run()
    assert (result.exit_code, result.reason) == (EXIT_SESSION_CONFLICT, "name_conflict")


async def test_replace_takes_over_the_name(gh: GitHub, sim: Simulator, http: aiohttp.ClientSession) -> None:
    scope = Scope("org", "octo-org")
    old = sim.world.register_runner(sim.world.issue_token(scope, "registration").token, scope, "pod-1", [])
    enqueue(sim)
    result = await VirtualRunner(sim.base_url, await token_env(gh, RUNNER_EPHEMERAL="1"), session=http).run()
    assert result.exit_code == EXIT_OK
    assert old.runner.id not in sim.world.runners


async def test_missing_environment(sim: Simulator, http: aiohttp.ClientSession) -> None:
    result = await VirtualRunner(sim.base_url, {"RUNNER_NAME": "x"}, session=http).run()
    assert (result.exit_code, result.reason) == (EXIT_REGISTRATION_FAILED, "invalid_env")


async def test_unreachable_simulator_is_retryable() -> None:
    async with aiohttp.ClientSession() as http:
        runner = VirtualRunner(
            "http://127.0.0.1:9",
            {"ACTIONS_RUNNER_INPUT_JITCONFIG": "x"},
            session=http,
            sleep=no_sleep,
            retry_for_s=1,
        )
        result = await runner.run()
    assert (result.exit_code, result.reason) == (EXIT_RETRYABLE, "unreachable")


async def test_job_duration_uses_the_injected_sleep(
    gh: GitHub, sim: Simulator, http: aiohttp.ClientSession
) -> None:
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)
        await asyncio.sleep(0)

    job_id = enqueue(sim, duration=100)
    code = await run_virtual_runner(
        sim.base_url, await jit_env(gh), session=http, sleep=fake_sleep, boot_delay=7
    )
    assert code == EXIT_OK
    assert slept == [7, 30, 30, 30, 10]
    assert sim.world.jobs[job_id].status == "completed"


async def test_cancelled_run_ends_an_ephemeral_runner(
    gh: GitHub, sim: Simulator, http: aiohttp.ClientSession
) -> None:
    gate = asyncio.Event()
    sleeping = asyncio.Event()

    async def gated_sleep(seconds: float) -> None:
        sleeping.set()
        await gate.wait()

    job_id = enqueue(sim, duration=100)
    task = asyncio.create_task(
        VirtualRunner(sim.base_url, await jit_env(gh), session=http, sleep=gated_sleep).run()
    )
    await asyncio.wait_for(sleeping.wait(), 10)
    sim.world.cancel_run(sim.world.jobs[job_id].run_id)
    gate.set()
    result = await task
    assert (result.exit_code, result.reason) == (EXIT_OK, "removed")
    assert sim.world.jobs[job_id].conclusion == "cancelled"


async def test_killed_runner_fails_its_job(gh: GitHub, sim: Simulator, http: aiohttp.ClientSession) -> None:
    started = asyncio.Event()

    async def hang(seconds: float) -> None:
        started.set()
        await asyncio.Event().wait()

    job_id = enqueue(sim, duration=100)
    task = asyncio.create_task(VirtualRunner(sim.base_url, await jit_env(gh), session=http, sleep=hang).run())
    await asyncio.wait_for(started.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    job = sim.world.jobs[job_id]
    assert (job.status, job.conclusion) == ("completed", "failure")


async def test_boot_delay_from_startup_env(gh: GitHub, sim: Simulator, http: aiohttp.ClientSession) -> None:
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)

    enqueue(sim)
    env = {**await jit_env(gh), "STARTUP_DELAY_IN_SECONDS": "3"}
    assert (
        await run_virtual_runner(sim.base_url, env, session=http, sleep=fake_sleep, boot_delay=2) == EXIT_OK
    )
    assert slept == [5]
