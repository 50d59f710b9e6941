"""The scale-set listener loop (``runnerd.controller.autoscalinglistener``) against ghsim's Actions
service: ARC's quickstart 0 → N → 0 with virtual runners (both protocol modes), a stale session at
start, a vanished scale set, 30 % of long polls failing, a failed EphemeralRunnerSet patch, an expired
queue token, the capacity gate, cancellation. Time is virtual: the listener's backoffs move the
simulator's clock."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from ghsim import run_virtual_runner
from runnerd.controller.autoscalinglistener import AutoscalingListener, ListenerSettings, ScaleSetGone
from runnerd.controller.listener_metrics import ListenerMetrics
from runnerd.github.actions.client import ActionsClient
from runnerd.github.actions.models import ScaleSetJob
from runnerd.github.actions.session import MessageSession
from tests.unit.github.conftest import ActionsWorld

Patch = tuple[int, int]


class FakeRunnerSet:
    """The EphemeralRunnerSet the listener patches: records ``(replicas, patchID)``; can fail."""

    def __init__(self) -> None:
        self.patches: list[Patch] = []
        self.started: list[ScaleSetJob] = []
        self.failures = 0
        self._changed = asyncio.Condition()

    async def set_desired(self, replicas: int, patch_id: int) -> None:
        if self.failures:
            self.failures -= 1
            raise RuntimeError("the apiserver is unavailable")
        async with self._changed:
            self.patches.append((replicas, patch_id))
            self._changed.notify_all()

    async def job_started(self, job: ScaleSetJob) -> None:
        async with self._changed:
            self.started.append(job)
            self._changed.notify_all()

    async def wait(self, predicate: Callable[[FakeRunnerSet], bool]) -> None:
        async with asyncio.timeout(20), self._changed:
            await self._changed.wait_for(lambda: predicate(self))

    @property
    def replicas(self) -> int:
        return self.patches[-1][0] if self.patches else -1


def make_listener(
    world: ActionsWorld,
    client: ActionsClient,
    ers: FakeRunnerSet,
    scale_set_id: int,
    stale_session_id: str = "",
    **settings: Any,
) -> AutoscalingListener:
    return AutoscalingListener(
        client,
        ListenerSettings(scale_set_id, owner="arc-listener", **settings),
        ers.set_desired,
        on_job_started=ers.job_started,
        metrics=ListenerMetrics({"name": "arc-ers", "namespace": "arc-runners", **client.config.labels}),
        clock=world.clock.now,
        sleep=world.sleep,
        draw=lambda: 0.5,
        stale_session_id=stale_session_id,
    )


@contextlib.asynccontextmanager
async def running(listener: AutoscalingListener) -> AsyncIterator[asyncio.Task[Any]]:
    task = asyncio.create_task(listener.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, ScaleSetGone):
            await task


@pytest.mark.parametrize("mode", ["broker", "ghes"])
async def test_quickstart_scales_0_to_n_to_0(
    actions_world: ActionsWorld, actions_client: ActionsClient, mode: str
) -> None:
    actions_world.sim.core.config.actions.mode = mode
    scale_set = await actions_client.create_scale_set("arc", 1, [])
    ers = FakeRunnerSet()
    listener = make_listener(actions_world, actions_client, ers, scale_set.id, min_runners=0, max_runners=5)
    async with running(listener), aiohttp.ClientSession() as http:
        await ers.wait(lambda e: e.patches == [(0, 0)])  # the session's statistics: message 0
        assert listener.phase == "Listening"
        actions_world.enqueue(3)
        await ers.wait(lambda e: e.replicas == 3)
        jits = [await actions_client.generate_jit_config(scale_set.id, f"arc-runner-{i}") for i in range(3)]
        runners = [
            run_virtual_runner(
                actions_world.sim.base_url, {"ACTIONS_RUNNER_INPUT_JITCONFIG": jit.encoded}, session=http
            )
            for jit in jits
        ]
        assert await asyncio.gather(*runners) == [0, 0, 0]
        await ers.wait(lambda e: len(e.started) == 3 and e.replicas == 0)
        assert ers.patches[-1][1] != 0  # completions: a real patch, not the "at min" signal
        assert sorted(job.runner_name for job in ers.started) == [
            "arc-runner-0",
            "arc-runner-1",
            "arc-runner-2",
        ]
        metrics = listener.metrics
        started = sum(n for (name, _), n in metrics.counters.items() if name == "gha_started_jobs_total")
        completed = {
            dict(labels)["job_result"]: n
            for (name, labels), n in metrics.counters.items()
            if name == "gha_completed_jobs_total"
        }
        assert (started, completed) == (3, {"succeeded": 3})
        assert (metrics.gauges["gha_assigned_jobs"], metrics.gauges["gha_desired_runners"]) == (0, 0)
        assert (metrics.gauges["gha_min_runners"], metrics.gauges["gha_max_runners"]) == (0, 5)
        assert ("gha_job_execution_duration_seconds" in {name for name, _ in metrics.histograms}) is True
        await actions_world.sim.wait_for(lambda: actions_world.poll_held(scale_set.id))
        actions_world.advance(51)  # an idle poll ends in 202: at min, patch id 0
        await ers.wait(lambda e: e.patches[-1] == (0, 0))
    assert actions_world.sim.actions.scale_sets[scale_set.id].session is None  # deleted on cancel
    assert listener.metrics.listener["reconnects"] == 0


async def test_stale_session_at_start_is_taken_over(
    actions_world: ActionsWorld, actions_client: ActionsClient
) -> None:
    scale_set = await actions_client.create_scale_set("arc", 1, [])
    crashed = MessageSession(actions_client, scale_set.id, "crashed", clock=actions_world.clock.now)
    await crashed.open()  # its listener was killed: the session lingers (ARC crash-loops on the 409)
    ers = FakeRunnerSet()
    listener = make_listener(actions_world, actions_client, ers, scale_set.id)
    async with running(listener):
        await ers.wait(lambda e: e.patches == [(0, 0)])
        assert listener.metrics.listener["session_conflicts"] > 1
        assert listener.metrics.listener["reconnects"] == 0
        session = actions_world.sim.actions.scale_sets[scale_set.id].session
        assert session is not None
        assert session.owner == "arc-listener"


async def test_previous_listeners_session_is_deleted_first(
    actions_world: ActionsWorld, actions_client: ActionsClient
) -> None:
    scale_set = await actions_client.create_scale_set("arc", 1, [])
    crashed = MessageSession(actions_client, scale_set.id, "arc-listener", clock=actions_world.clock.now)
    stale = await crashed.open()  # the old leader died; its session id is in the listener's status
    ers = FakeRunnerSet()
    listener = make_listener(actions_world, actions_client, ers, scale_set.id, stale_session_id=stale.id)
    async with running(listener):
        await ers.wait(lambda e: e.patches == [(0, 0)])
        assert listener.metrics.listener["session_conflicts"] == 0
        assert actions_world.sleeps == []
        assert listener.session_id not in ("", stale.id)


async def test_vanished_scale_set_is_a_clear_signal(
    actions_world: ActionsWorld, actions_client: ActionsClient
) -> None:
    scale_set = await actions_client.create_scale_set("arc", 1, [])
    ers = FakeRunnerSet()
    listener = make_listener(actions_world, actions_client, ers, scale_set.id)
    async with running(listener) as task:
        await ers.wait(lambda e: e.patches == [(0, 0)])
        assert await actions_world.admin(f"/_sim/actions/scalesets/{scale_set.id}/vanish") == 204
        with pytest.raises(ScaleSetGone) as gone:
            await task
    assert gone.value.scale_set_id == scale_set.id
    assert listener.phase == "Gone"


async def test_survives_30_percent_of_polls_failing(
    actions_world: ActionsWorld, actions_client: ActionsClient
) -> None:
    scale_set = await actions_client.create_scale_set("arc", 1, [])
    ers = FakeRunnerSet()
    listener = make_listener(actions_world, actions_client, ers, scale_set.id)
    async with running(listener):
        await ers.wait(lambda e: e.patches == [(0, 0)])
        for n in range(1, 11):
            if n % 2:  # the next poll gets an empty 200 (ARC#4285's "EOF": ARC exits)
                await actions_world.fault(op="message.get", kind="empty", times=1)
            else:  # a 503 the client's own retry absorbs
                await actions_world.fault(op="message.get", kind="error", status=503, times=1)
            actions_world.enqueue(1)
            await ers.wait(lambda e, n=n: e.replicas == n)  # type: ignore[misc]
            await actions_world.sim.wait_for(lambda: not actions_world.sim.actions_http.faults.faults)
        actions_world.enqueue(1)
        await ers.wait(lambda e: e.replicas == 11)
    counts = listener.metrics.listener
    assert counts["failed_polls"] == 5
    assert counts["failed_polls"] / (counts["failed_polls"] + counts["polls"]) >= 0.3
    assert (counts["reconnects"], counts["sessions"]) == (0, 1)
    assert actions_client.stats.snapshot().retries == {"GET {messageQueueUrl}": 5}


async def test_failed_patch_is_not_acknowledged(
    actions_world: ActionsWorld, actions_client: ActionsClient
) -> None:
    scale_set = await actions_client.create_scale_set("arc", 1, [])
    ers = FakeRunnerSet()
    listener = make_listener(actions_world, actions_client, ers, scale_set.id)
    async with running(listener):
        await ers.wait(lambda e: e.patches == [(0, 0)])
        ers.failures = 1
        actions_world.enqueue(2)
        # the patch failed: the message was not acked, a new session gets it again
        await ers.wait(lambda e: len(e.patches) == 3)
        assert (listener.metrics.listener["reconnects"], listener.metrics.listener["sessions"]) == (1, 2)
        # the new session's statistics, then the redelivered message (the sequence restarts)
        assert ers.patches == [(0, 0), (2, 0), (2, 1)]
        assert "apiserver" not in listener.last_error
        assert listener.phase == "Listening"


async def test_queue_token_expiry_keeps_the_session(
    actions_world: ActionsWorld, actions_client: ActionsClient
) -> None:
    scale_set = await actions_client.create_scale_set("arc", 1, [])
    ers = FakeRunnerSet()
    listener = make_listener(actions_world, actions_client, ers, scale_set.id, max_runners=2)
    async with running(listener):
        await ers.wait(lambda e: e.patches == [(0, 0)])
        await actions_world.sim.wait_for(lambda: actions_world.poll_held(scale_set.id))
        assert await actions_world.admin("/_sim/actions/expire-tokens", {"kind": "queue"}) == 200
        actions_world.enqueue(5)  # the held poll answers; its ack meets the expired token
        await ers.wait(lambda e: e.replicas == 2)  # X-ScaleSetMaxCapacity: only 2 assigned
        await actions_world.sim.wait_for(lambda: actions_world.poll_held(scale_set.id))  # acked, polling
    assert actions_world.sim.actions.scale_sets[scale_set.id].statistics()["totalAssignedJobs"] == 2
    assert listener.metrics.listener["sessions"] == 1
    assert (
        actions_client.stats.snapshot().total("PATCH _apis/runtime/runnerscalesets/{id}/sessions/{sessionId}")
        >= 1
    )


async def test_persistent_poll_failures_replace_the_session(
    actions_world: ActionsWorld, actions_client: ActionsClient
) -> None:
    scale_set = await actions_client.create_scale_set("arc", 1, [])
    ers = FakeRunnerSet()
    listener = make_listener(actions_world, actions_client, ers, scale_set.id, max_poll_failures=3)
    async with running(listener):
        await ers.wait(lambda e: e.patches == [(0, 0)])
        sim = actions_world.sim
        await sim.wait_for(lambda: actions_world.poll_held(scale_set.id))
        await actions_world.fault(op="message.get", kind="empty", times=3)
        actions_world.advance(51)  # the held poll ends (202); the next three fail
        await sim.wait_for(
            lambda: not sim.actions_http.faults.faults and actions_world.poll_held(scale_set.id)
        )
        actions_world.enqueue(1)
        await ers.wait(lambda e: e.replicas == 1)
        counts = listener.metrics.listener
        assert (counts["failed_polls"], counts["reconnects"], counts["sessions"]) == (3, 1, 2)
        assert listener.phase == "Listening"
        assert actions_world.sim.actions.scale_sets[scale_set.id].session is not None
