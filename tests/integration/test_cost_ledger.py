"""The cost ledger end to end (real API server, ghsim, the pod agent): GPU runner pods run their
jobs and finish; the leader's ledger ConfigMap holds their runner-, CPU- and GPU-seconds per
repository, workflow and pool, priced by the controller's ``--cost-*`` flags, and
``runnerd status --cost`` prints them.

While one runner still runs, the controller is killed (no graceful stop, no last write) and either
a new process starts after that runner finished, or a standby replica takes the Lease over: every
runner is charged exactly its runner container's run time, none twice and none lost."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest

from devcluster.cluster import Cluster
from devcluster.wait import wait_until
from ghsim import Simulator
from ghsim.model.specs import JobSpec
from runnerd import cli, status
from runnerd.cli_cost import cost_settings
from runnerd.controller.app import install_cost
from runnerd.controller.common import RUNNER_DEPLOYMENTS, RUNNERS
from runnerd.controller.process import Controllers
from runnerd.kube.client import KubeClient
from runnerd.kube.resources import CONFIGMAPS, PODS
from runnerd.reconcile.cost import (
    HOUR,
    LEDGER_CONFIGMAP,
    Ledger,
    PriceTable,
    RunnerFacts,
    Usage,
    all_time,
    money,
    read_ledger_configmap,
)
from runnerd.reconcile.costfacts import runner_facts
from runnerd.runtime import InformerEvent, LeaderElector, NotFound
from runnerd.web import dashboard
from tests.integration.support import REPO, controller_process, pod_agent, seed

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(150)]

H100 = "NVIDIA-H100-80GB-HBM3"
PRICES = PriceTable("EUR", Decimal("0.04"), {H100: Decimal("3.00")})  # the flags' below
POOL = "gpu-runners"
FLAGS = [
    "controller",
    "--cost-currency=EUR",
    "--cost-cpu-hour=0.04",
    f"--cost-gpu-hour={H100}=3.00",
    "--cost-ledger-interval=2s",
]
# (job id, workflow, GPUs, job seconds): "eval" still runs when the first controller is killed
JOBS = [("1", "train", 2, 2.0), ("2", "eval", 1, 12.0)]


def pool() -> dict[str, Any]:
    template = {"spec": {"repository": REPO, "labels": ["self-hosted"]}}
    return {
        "apiVersion": "actions.summerwind.dev/v1alpha1",
        "kind": "RunnerDeployment",
        "metadata": {"name": POOL},
        "spec": {"replicas": 0, "template": template},
    }


def sized_runner(job: str, workflow: str, gpus: int, owner: dict[str, Any]) -> dict[str, Any]:
    """A sized job's Runner as the intake makes it: owned by the pool, the job's labels, sized."""
    owner_ref = {"apiVersion": owner["apiVersion"], "kind": "RunnerDeployment", "name": POOL}
    return {
        "apiVersion": "actions.summerwind.dev/v1alpha1",
        "kind": "Runner",
        "metadata": {
            "name": f"{POOL}-job-{job}",
            "annotations": {"runnerd.dev/repository": REPO, "runnerd.dev/workflow": workflow},
            "ownerReferences": [{**owner_ref, "uid": owner["metadata"]["uid"]}],
        },
        "spec": {
            "repository": REPO,
            "labels": ["self-hosted", f"gpu={gpus}"],
            "ephemeral": True,
            "dockerEnabled": False,
            "nodeSelector": {"nvidia.com/gpu.product": H100},
            "resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "2", "nvidia.com/gpu": str(gpus)}},
        },
    }


@dataclass
class Run:
    """What the test saw: the last facts of every runner pod (from each process's pod cache)."""

    cluster: Cluster
    sim: Simulator
    token: str
    namespace: str
    facts: dict[str, RunnerFacts] = field(default_factory=dict)
    uids: dict[str, str] = field(default_factory=dict)
    """workflow -> its runner pod's uid."""

    def on_pod(self, event: InformerEvent) -> None:
        found = runner_facts(event.obj)
        if found is not None and self.facts.get(found.uid, found).finished_at is None:
            self.facts[found.uid] = found

    @contextlib.asynccontextmanager
    async def controller(self, identity: str | None = None) -> AsyncIterator[Controllers]:
        """A controller process with the cost ledger (not started); ``identity``: with leader election."""
        settings = cost_settings(cli.build_parser().parse_args(FLAGS), self.namespace)
        assert settings is not None

        def configure(controllers: Controllers) -> None:
            install_cost(controllers, settings)
            controllers.informers["pods"].add_handler(self.on_pod)
            if identity is not None:
                controllers.manager.elector = LeaderElector(
                    controllers.kube.lease_client(),
                    namespace=self.namespace,
                    name="cost-test",
                    identity=identity,
                    lease_duration=3.0,
                    renew_deadline=2.0,
                    retry_period=0.5,
                )

        async with controller_process(
            self.cluster,
            self.sim,
            self.token,
            self.namespace,
            start=False,
            configure=configure,
            drain_grace=0.5,
        ) as controllers:
            yield controllers

    async def start_jobs(self, kube: KubeClient) -> None:
        """The jobs queued, their sized Runners created, until both runner pods exist."""
        owner = await kube.create(RUNNER_DEPLOYMENTS, pool(), namespace=self.namespace)
        world = self.sim.world
        for job, workflow, gpus, seconds in JOBS:
            spec = JobSpec(("self-hosted", f"gpu={gpus}"), workflow, seconds)
            world.enqueue_run(world.repo_by_name(REPO), [spec], workflow_name=workflow)
            await kube.create(RUNNERS, sized_runner(job, workflow, gpus, owner), namespace=self.namespace)

        async def both_pods() -> bool:
            pods = (await kube.list(PODS, namespace=self.namespace)).items
            names = {p["metadata"]["name"]: p["metadata"]["uid"] for p in pods}
            for job, workflow, _, _ in JOBS:
                if f"{POOL}-job-{job}" in names:
                    self.uids[workflow] = names[f"{POOL}-job-{job}"]
            return len(self.uids) == len(JOBS)

        await wait_until("both runner pods", both_pods, within=60)

    async def until_train_charged_and_eval_counted(self, controllers: Controllers) -> None:
        writer = controllers.cost.writer if controllers.cost is not None else None
        assert writer is not None

        def charged() -> bool:
            last = writer.last or Ledger()
            return self.uids["train"] in last.finished and self.uids["eval"] in last.counted_until

        await wait_until("train charged, eval counted while it runs", charged, within=60)

    async def until_eval_charged(self, kube: KubeClient, controllers: Controllers) -> Ledger:
        async def charged() -> bool:
            found = await ledger(kube, self.namespace)
            return found is not None and self.uids["eval"] in found.finished

        await wait_until("eval charged", charged, within=60)
        runners = controllers.informers["runners"].store
        await wait_until("the finished runners removed", lambda: not runners.objects(), within=60)
        final = await ledger(kube, self.namespace)
        assert final is not None
        return final

    def expected(self) -> dict[tuple[str, str, str, str], Usage]:
        out: dict[tuple[str, str, str, str], Usage] = {}
        for workflow, uid in self.uids.items():
            f = self.facts[uid]
            assert f.finished_at is not None
            run = Decimal(f.finished_at - f.started_at)
            assert run > 0, f"{workflow}: the runner container ran 0 s"
            out[(REPO, workflow, POOL, H100)] = Usage(run, run * f.cpu, run * f.gpus)
        assert [self.facts[self.uids[w]].gpus for w in ("train", "eval")] == [2, 1]
        return out


async def ledger(kube: KubeClient, namespace: str) -> Ledger | None:
    try:
        cm = await kube.get(CONFIGMAPS, LEDGER_CONFIGMAP, namespace=namespace)
    except NotFound:
        return None
    return read_ledger_configmap(cm)[0]


async def kill(task: asyncio.Task[None]) -> None:
    task.cancel()  # no graceful stop: no last write, the Lease is not released
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def stop(controllers: Controllers, task: asyncio.Task[None]) -> None:
    controllers.manager.stop()
    await asyncio.wait_for(task, 30)


@pytest.fixture
async def run(cluster: Cluster, crds: list[str], namespace: str) -> AsyncIterator[Run]:
    async with Simulator(tick_interval=0.05) as sim:
        r = Run(cluster, sim, seed(sim), namespace)
        async with pod_agent(cluster, sim, namespace):
            yield r


async def test_gpu_runners_are_charged_once_across_a_controller_kill_and_restart(run: Run) -> None:
    async with run.controller() as first:
        task = asyncio.create_task(first.manager.run())
        await run.start_jobs(first.kube)
        await run.until_train_charged_and_eval_counted(first)
        await kill(task)
    async with run.controller() as second:
        kube = second.kube

        async def eval_finished() -> bool:
            facts = runner_facts(await kube.get(PODS, f"{POOL}-job-2", namespace=run.namespace))
            return facts is not None and facts.finished_at is not None

        # the eval runner finishes while no controller runs; nothing deletes its pod meanwhile
        await wait_until("eval's runner finished", eval_finished, within=60)
        task = asyncio.create_task(second.manager.run())
        try:
            final = await run.until_eval_charged(kube, second)
        finally:
            await stop(second, task)
    assert all_time(final) == run.expected()
    await check_status_cost(run, run.expected(), final)


async def test_gpu_runners_are_charged_once_across_a_leader_change(run: Run) -> None:
    async with run.controller("a") as a, run.controller("b") as b:
        task_a = asyncio.create_task(a.manager.run())
        await wait_until("a leads", lambda: a.manager.leading, within=30)
        task_b = asyncio.create_task(b.manager.run())
        try:
            await run.start_jobs(a.kube)
            await run.until_train_charged_and_eval_counted(a)
            await kill(task_a)
            await wait_until("b leads", lambda: b.manager.leading, within=30)
            final = await run.until_eval_charged(b.kube, b)
            check_metrics_and_dashboard(leader=b, standby=a)
        finally:
            await kill(task_a)
            await stop(b, task_b)
    assert all_time(final) == run.expected()


def check_metrics_and_dashboard(*, leader: Controllers, standby: Controllers) -> None:
    """The leader's counters and Cost table are its last written ledger; a standby exports none."""
    assert leader.autoscaling is not None
    assert standby.autoscaling is not None
    metrics = leader.autoscaling.metrics
    written = leader.cost.writer.last if leader.cost is not None else None
    assert written is not None
    for (repo, workflow, pool_name, product), usage in all_time(written).items():
        labels = {"repository": repo, "workflow": workflow, "pool": pool_name}
        assert metrics.sample("runnerd_runner_seconds_total", labels) == float(usage.runner_seconds)
        gpu = metrics.sample("runnerd_gpu_seconds_total", {**labels, "gpu_product": product})
        assert gpu == float(usage.gpu_seconds)
        assert metrics.sample("runnerd_cost_total", {**labels, "currency": "EUR"}) is not None
    assert standby.autoscaling.metrics.sample("runnerd_runner_seconds_total", labels) is None
    table = dashboard.fleet_for(metrics, leader.informers).model()["cost"]
    assert table["currency"] == "EUR"
    assert {(r["repository"], r["workflow"], r["pool"]) for r in table["rows"]} == {
        (REPO, w, POOL) for _, w, _, _ in JOBS
    }
    assert dashboard.fleet_for(standby.autoscaling.metrics, standby.informers).model()["cost"] is None


async def check_status_cost(run: Run, expected: dict[Any, Usage], ledger: Ledger) -> None:
    """``runnerd status --cost``: the ledger's hours and the flags' prices, as JSON and as a table.
    Hours are compared as the product divides them (seconds / 3600, a Decimal quotient) and money as it
    sums it (each ledger bucket priced, then added), so no rounding can make an exact value differ."""
    base = [
        "status",
        "--cost",
        "--kubeconfig",
        str(run.cluster.kubeconfig),
        "--ledger-namespace",
        run.namespace,
    ]
    out = io.StringIO()
    assert await status.run_status(cli.build_parser().parse_args([*base, "-o", "json"]), {}, out) == 0
    doc = json.loads(out.getvalue())
    assert doc["currency"] == "EUR"
    rows = {(r["repository"], r["workflow"], r["pool"]): r for r in doc["rows"]}
    for (repo, workflow, pool_name, _product), usage in expected.items():
        row = rows[(repo, workflow, pool_name)]
        assert Decimal(row["gpuHours"]) == usage.gpu_seconds / HOUR
        assert Decimal(row["runnerHours"]) == usage.runner_seconds / HOUR
        group = (repo, workflow, pool_name)
        buckets = [(k, u) for k, u in ledger.buckets.items() if (k.repository, k.workflow, k.pool) == group]
        assert sum((u for _, u in buckets), Usage()) == usage
        priced = [money(u, k.gpu_product, PRICES)[0] for k, u in buckets]
        assert Decimal(row["cost"]) == sum(priced, Decimal(0))
        assert Decimal(row["unpricedGpuHours"]) == 0
    text = io.StringIO()
    assert await status.run_status(cli.build_parser().parse_args(base), {}, text) == 0
    lines = text.getvalue().splitlines()
    assert lines[0] == "COST (all time)"
    assert lines[1].split()[:7] == ["REPOSITORY", "WORKFLOW", "POOL", "RUNNER-H", "CPU-H", "GPU-H", "COST"]
    assert {tuple(line.split()[:3]) for line in lines[2:-1]} == {(REPO, w, POOL) for _, w, _, _ in JOBS}
    assert lines[-1].split()[0] == "TOTAL"
