"""Concurrent runner creation on the real API server: never above ``replicas``, even when the
controller is killed in the middle of a slow-start batch and another one takes over."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest

from devcluster.cluster import Cluster
from devcluster.wait import wait_until
from ghsim import Simulator
from runnerd.controller.common import RUNNER_DEPLOYMENTS, RUNNERS
from runnerd.runtime import InformerEvent
from tests.integration.support import controller_process

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(120)]

REPLICAS = 40


def controller(cluster: Cluster, sim: Simulator, token: str, namespace: str) -> Any:
    """One controller process (its own clients, informers and in-memory state); the test runs
    (and kills) its manager."""
    return controller_process(cluster, sim, token, namespace, start=False, sync_period=5.0)


async def test_a_controller_killed_mid_batch_never_exceeds_replicas(
    cluster: Cluster, crds: list[str], namespace: str
) -> None:
    async with Simulator(tick_interval=0.05) as sim:
        sim.world.create_org("octo-org")
        sim.world.create_repo("octo-org", "app")
        token = sim.world.create_pat("admin").token
        most = [0]

        def count(event: InformerEvent, store: Any) -> None:
            most[0] = max(
                most[0], len([o for o in store.objects() if not o["metadata"].get("deletionTimestamp")])
            )

        async with controller(cluster, sim, token, namespace) as first:
            runners = first.informers["runners"]
            runners.add_handler(lambda e: count(e, runners.store))
            task = asyncio.create_task(first.manager.run())
            rd = {
                "apiVersion": "actions.summerwind.dev/v1alpha1",
                "kind": "RunnerDeployment",
                "metadata": {"name": "rd", "namespace": namespace},
                "spec": {"replicas": REPLICAS, "template": {"spec": {"repository": "octo-org/app"}}},
            }
            await first.kube.create(RUNNER_DEPLOYMENTS, rd, namespace=namespace)
            # killed as soon as the first slow-start batches landed: later batches are in flight
            await wait_until("the first runners", lambda: first.replica_set.runners_created >= 3, within=60)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            killed_at = first.replica_set.runners_created
        assert killed_at < REPLICAS

        async with controller(cluster, sim, token, namespace) as second:
            runners = second.informers["runners"]

            def never_above(event: InformerEvent) -> None:
                count(event, runners.store)

            runners.add_handler(never_above)
            task = asyncio.create_task(second.manager.run())
            try:

                def guard() -> None:
                    assert most[0] <= REPLICAS, f"{most[0]} runners for {REPLICAS} replicas"

                async def listed() -> int:
                    return len((await second.kube.list(RUNNERS, namespace=namespace)).items)

                await wait_until(
                    "all runners", lambda: len(runners.store) == REPLICAS, within=60, guard=guard
                )
                # the replica set has reconciled with every runner in view: its status says so
                await wait_until(
                    "the replica set's status",
                    lambda: any(
                        (rs.get("status") or {}).get("replicas") == REPLICAS
                        for rs in second.informers["runnerreplicasets"].store.objects()
                    ),
                    within=30,
                    guard=guard,
                )
                assert await listed() == REPLICAS
                guard()
            finally:
                second.manager.stop()
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait_for(task, 30)
