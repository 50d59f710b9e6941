"""``--reservation-journal`` on the real control plane: a burst is acknowledged once journalled (the
HRA not yet written), lands in the HRA's ``capacityReservations`` within about a second, and a
controller killed between the acknowledgement and the fold loses nothing."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import yaml

from devcluster.cluster import Cluster
from devcluster.wait import wait_until
from ghsim import Simulator
from runnerd.controller.app_autoscaling import install_journal
from runnerd.controller.common import HORIZONTAL_RUNNER_AUTOSCALERS, RUNNER_DEPLOYMENTS
from runnerd.controller.process import Controllers
from runnerd.kube.resources import CONFIGMAPS
from runnerd.reconcile.journal import HRA_LABEL, decode
from runnerd.reconcile.reservations import parse_job_reservation
from runnerd.runtime import Key
from runnerd.web.payload import WorkflowJobEvent
from tests.integration.support import REPO, controller_process, seed

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(90)]

BURST = 60
LABELS = ("self-hosted", "journal")

RD = """
apiVersion: actions.summerwind.dev/v1alpha1
kind: RunnerDeployment
metadata:
  name: rd
spec:
  replicas: 0
  template:
    spec:
      repository: {repo}
      labels: [self-hosted, journal]
"""

HRA = """
apiVersion: actions.summerwind.dev/v1alpha1
kind: HorizontalRunnerAutoscaler
metadata:
  name: hra
spec:
  scaleTargetRef:
    name: rd
  minReplicas: 0
  maxReplicas: 100
  scaleUpTriggers:
    - githubEvent:
        workflowJob: {}
      duration: 30m
"""


def queued(job_id: int) -> WorkflowJobEvent:
    owner, name = REPO.split("/")
    return WorkflowJobEvent(
        action="queued",
        job_id=job_id,
        run_id=1,
        name="build",
        workflow_name="CI",
        head_branch="main",
        status="queued",
        conclusion=None,
        labels=LABELS,
        runner_id=None,
        runner_name=None,
        runner_group_name=None,
        created_at=None,
        started_at=None,
        completed_at=None,
        repository=REPO,
        repository_name=name,
        owner=owner,
        owner_type="Organization",
        organization=owner,
        enterprise=None,
        received_monotonic=time.monotonic(),
    )


@contextlib.asynccontextmanager
async def journalled(
    cluster: Cluster, sim: Simulator, token: str, namespace: str, *, hold_folds: bool = False
) -> AsyncIterator[Controllers]:
    """A controller process with the journal; ``hold_folds``: its leader never folds (as if it died
    before its first fold)."""

    def configure(controllers: Controllers) -> None:
        journal = install_journal(controllers)
        if hold_folds:

            async def held(key: Key, attempts: int = 10) -> None:
                return None

            journal.fold = held  # type: ignore[method-assign]

    async with controller_process(
        cluster, sim, token, namespace, configure=configure, sync_period=5.0
    ) as controllers:
        yield controllers


def listed_jobs(hra: dict[str, Any]) -> set[int]:
    found = set()
    for r in (hra.get("spec") or {}).get("capacityReservations") or ():
        parsed = parse_job_reservation(r.get("name"))
        if parsed is not None and r.get("replicas") == 1:
            found.add(parsed[0])
    return found


async def journalled_jobs(controllers: Controllers, namespace: str) -> set[int]:
    entries = await controllers.kube.list(CONFIGMAPS, namespace=namespace, label_selector=f"{HRA_LABEL}=true")
    found = set()
    for obj in entries.items:
        entry = decode(obj)
        assert entry is not None
        found |= {op.job_id for op in entry.ops if op.action == "queued"}
    return found


async def setup(controllers: Controllers, namespace: str) -> Callable[[], Any]:
    for manifest, resource in (
        (RD.format(repo=REPO), RUNNER_DEPLOYMENTS),
        (HRA, HORIZONTAL_RUNNER_AUTOSCALERS),
    ):
        obj = yaml.safe_load(manifest)
        obj["metadata"]["namespace"] = namespace
        await controllers.kube.create(resource, obj, namespace=namespace)
    autoscaling = controllers.autoscaling
    assert autoscaling is not None
    key = Key(namespace, "hra")
    await wait_until("the HRA cached", lambda: autoscaling.hras.store.get(key))

    async def get() -> dict[str, Any]:
        return await controllers.kube.get(HORIZONTAL_RUNNER_AUTOSCALERS, "hra", namespace=namespace)

    return get


def rd_replicas(controllers: Controllers, namespace: str) -> int:
    obj = controllers.informers["runnerdeployments"].store.get(Key(namespace, "rd")) or {}
    return int((obj.get("spec") or {}).get("replicas") or 0)


async def test_a_burst_is_acknowledged_once_journalled_and_folded_within_a_second(
    cluster: Cluster, crds: list[str], namespace: str
) -> None:
    async with (
        Simulator(tick_interval=0.05) as sim,
        journalled(cluster, sim, seed(sim), namespace) as controllers,
    ):
        get = await setup(controllers, namespace)
        autoscaling = controllers.autoscaling
        assert autoscaling is not None
        jobs = set(range(1000, 1000 + BURST))
        started = time.monotonic()
        replies = await asyncio.gather(*(autoscaling.sink.workflow_job(queued(j)) for j in jobs))
        acked = time.monotonic() - started
        assert [r.status for r in replies] == [200] * BURST
        assert {r.outcome for r in replies} == {"scaled"}
        # durable at the acknowledgement: each job is in a journal entry or already folded
        assert jobs <= await journalled_jobs(controllers, namespace) | listed_jobs(await get())
        assert autoscaling.writer.writes < BURST  # group commits
        folded_at = await wait_until("every job in the HRA's list", lambda: _all_listed(get, jobs), within=3)
        assert folded_at is not None
        assert time.monotonic() - started - acked <= 2.0, "folded within about a second of the last ack"
        # counted once, whether journalled, folded, or both for a moment
        await wait_until(
            "the target scaled to the burst", lambda: rd_replicas(controllers, namespace) == BURST
        )
        await wait_until("folded entries collected", lambda: _no_entries(controllers, namespace), within=5)
        assert rd_replicas(controllers, namespace) == BURST


async def test_a_controller_killed_between_ack_and_fold_loses_nothing(
    cluster: Cluster, crds: list[str], namespace: str
) -> None:
    async with Simulator(tick_interval=0.05) as sim:
        token = seed(sim)
        jobs = set(range(2000, 2000 + BURST))
        async with journalled(cluster, sim, token, namespace, hold_folds=True) as first:
            get = await setup(first, namespace)
            autoscaling = first.autoscaling
            assert autoscaling is not None
            replies = await asyncio.gather(*(autoscaling.sink.workflow_job(queued(j)) for j in jobs))
            assert {r.outcome for r in replies} == {"scaled"}
            await wait_until("the first leader scaled", lambda: rd_replicas(first, namespace) == BURST)
            assert listed_jobs(await get()) == set()  # acknowledged, not folded
        # the first process is gone with its memory; the journal is in etcd
        async with journalled(cluster, sim, token, namespace) as second:
            assert jobs == await journalled_jobs(second, namespace)

            async def get_again() -> dict[str, Any]:
                return await second.kube.get(HORIZONTAL_RUNNER_AUTOSCALERS, "hra", namespace=namespace)

            await wait_until("every job in the HRA's list", lambda: _all_listed(get_again, jobs), within=10)
            await wait_until("folded entries collected", lambda: _no_entries(second, namespace), within=5)
            assert rd_replicas(second, namespace) == BURST


async def _all_listed(get: Callable[[], Any], jobs: set[int]) -> bool:
    return jobs <= listed_jobs(await get())


async def _no_entries(controllers: Controllers, namespace: str) -> bool:
    entries = await controllers.kube.list(CONFIGMAPS, namespace=namespace, label_selector=f"{HRA_LABEL}=true")
    return not entries.items
