"""What autoscaling costs at the GitHub API and in pods, end to end (real API server, ghsim, pod agent).

* The article's HRA shape (the pull metric plus a ``workflowJob`` trigger) serves a burst with a
  bounded number of GitHub calls: reservation writes never refresh the metric.
* A finished ephemeral runner is not replaced while its job's reservation is still effective
  (``effectiveTime``): one pod per job even when the ``completed`` delivery is late.
"""

from __future__ import annotations

import time

import pytest

from devcluster.cluster import Cluster
from devcluster.wait import wait_until
from tests.integration.test_autoscaling import RD, WEBHOOK_HRA, running

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(90)]

METRIC = [{"type": "TotalNumberOfQueuedAndInProgressWorkflowRuns", "repositoryNames": ["octo-org/app"]}]
BURST = 12


def _calls(env: object) -> int:
    return int(env.github.stats.snapshot().total())  # type: ignore[attr-defined]


def _runs_calls(env: object) -> int:
    return int(env.github.stats.snapshot().total("GET /repos/{owner}/{repo}/actions/runs"))  # type: ignore[attr-defined]


async def test_the_article_hra_serves_a_burst_within_a_call_bound(
    cluster: Cluster, crds: list[str], namespace: str
) -> None:
    sync = 5.0
    async with running(cluster, namespace, sync=sync, scale_down_delay=1.0) as env:
        await env.create(RD)
        await env.create(WEBHOOK_HRA, **{"spec.metrics": METRIC, "spec.maxReplicas": BURST})
        await wait_until("the HRA reconciled", lambda: (env.hra() or {}).get("status"))
        env.hook()
        before, runs_before = _calls(env), _runs_calls(env)
        started = time.monotonic()
        run = env.enqueue(BURST, duration=1.0)
        await wait_until(
            "every job done", lambda: all(j.status == "completed" for j in env.jobs(run)), within=60
        )
        await wait_until("back to zero", lambda: env.rd_replicas() == 0, within=30)
        elapsed = time.monotonic() - started
        calls, runs_calls = _calls(env) - before, _runs_calls(env) - runs_before
        writes = env.autoscaling.writer.writes
        # the metric is refreshed by time (2 run listings per sync period), not by the
        # reservation writes (one per delivery batch)
        assert writes >= 2
        assert runs_calls <= 2 * (elapsed / sync + 2), (runs_calls, elapsed, writes)
        # one JIT config per runner, the metric, the runner listings: under 3 calls per job here
        # (the sync period is short; the benchmark measures the installation's real ratio)
        assert calls <= 3 * BURST, calls


async def test_a_finished_ephemeral_runner_is_not_replaced_while_its_reservation_is_effective(
    cluster: Cluster, crds: list[str], namespace: str
) -> None:
    async with running(cluster, namespace) as env:
        await env.create(RD)
        await env.create(WEBHOOK_HRA)
        await wait_until("the HRA reconciled", lambda: (env.hra() or {}).get("status"))
        hook = env.hook()
        run = env.enqueue(1, duration=0.5)
        await wait_until("one runner wanted", lambda: env.rd_replicas() == 1, within=10)
        # every later delivery (in_progress, completed) is lost: the reservation stays effective
        hook.fail = True
        replica_set = env.controllers.replica_set
        await wait_until("the job done", lambda: env.jobs(run)[0].status == "completed", within=30)
        created = replica_set.runners_created
        assert created == 1
        await wait_until(
            "the finished runner is gone", lambda: not env.controllers.informers["runners"].store.objects()
        )
        await wait_until("the gap is held", lambda: replica_set.holds.held >= 1, within=10)
        assert env.rd_replicas() == 1  # the reservation still wants a replica

        def no_second_runner() -> None:
            assert replica_set.runners_created == 1, "the finished runner was replaced"

        # the late completed delivery arrives: the reservation is released, and the gap never filled
        [completed] = [
            d for d in env.sim.core.dispatcher.deliveries if d.action == "completed" and d.status == "failed"
        ]
        hook.fail = False
        env.sim.core.dispatcher.redeliver(completed.guid)
        await wait_until("back to zero", lambda: env.rd_replicas() == 0, within=20, guard=no_second_runner)
        no_second_runner()
