"""Per-job GPU sizing end to end (issue #16): jobs queued in ghsim with sizing labels in their
``runs-on``, delivered by webhook to the controller (``--enable-sizing``, the cost ledger on), on the
session cluster's 2 GPU nodes of 8 H100 each, with the pod agent playing the runners.

- ``[self-hosted, linux, gpu=2, gpu-type=h100]`` gets a runner pod on an H100 node requesting
  exactly ``nvidia.com/gpu: 2``; the job runs there and succeeds; its Runner is removed;
- ``gpu=16`` (over the pool's cap of 8) is refused: an Event on the pool, the policy's status; it
  never gets a Runner, a pod or a GitHub registration;
- a burst of 24 GPUs of jobs on 16 GPUs: no pod is ever Pending, each waiting job's reason is on its
  Runner and in the policy's status, and every job runs in the end, on the runner made for it (each
  asks for its own ``cpu=N``, so that each can be asserted on its own runner);
- two jobs with the same labels, the swap forced: the job whose runner ran the other job gets a new
  Runner from the safety-net poll's recheck (:func:`runnerd.controller.sizing.recheck_if_lost`),
  under a new name, and runs within 30 s;
- the ledger charges the repository exactly the GPU-seconds its runner pods ran, and
  ``runnerd status --cost`` prints them.
"""

from __future__ import annotations

import dataclasses
import io
import json
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest
import yaml

from devcluster.cluster import Cluster
from devcluster.wait import wait_until
from ghsim import JobSpec, Simulator
from runnerd import cli, status
from runnerd.cli_cost import cost_settings
from runnerd.controller.app import install_cost
from runnerd.controller.common import RUNNER_DEPLOYMENTS, RUNNERS
from runnerd.controller.process import Controllers
from runnerd.controller.sizingpolicy import SIZING_POLICIES
from runnerd.kube.client import KubeClient
from runnerd.kube.resources import CONFIGMAPS, EVENTS, NODES, PODS
from runnerd.reconcile.cost import (
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
from runnerd.reconcile.sizedjob import ADMISSION_ANNOTATION, SIZED_JOB_LABEL
from runnerd.reconcile.sizing import TIMES
from runnerd.runtime import EventType, InformerEvent, Key, NotFound
from tests.integration.support import REPO, pod_agent, seed, webhook_controller

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(180)]

SECRET = "webhook-secret-for-gpu-e2e"
GPU = "nvidia.com/gpu"
H100 = "NVIDIA-H100-80GB-HBM3"
POOL = "gpu-runners"
RD = f"""
apiVersion: actions.summerwind.dev/v1alpha1
kind: RunnerDeployment
metadata: {{name: {POOL}}}
spec:
  replicas: 0
  template:
    spec:
      repository: {REPO}
      labels: [self-hosted, linux]
      dockerEnabled: false
"""
POLICY = f"""
apiVersion: runnerd.dev/v1alpha1
kind: RunnerSizingPolicy
metadata: {{name: gpu-policy}}
spec:
  scaleTargetRef: {{name: {POOL}}}
  max: {{gpu: 8, cpu: "8"}}
  gpuProducts: [{{name: h100, nodeLabelValue: {H100}}}]
  admission: {{order: Fifo, maxPending: 0}}
"""
FLAGS = [
    "controller",
    "--cost-currency=EUR",
    "--cost-cpu-hour=0.04",
    f"--cost-gpu-hour={H100}=3.00",
    "--cost-ledger-interval=1s",
]
BURST = 6  # jobs of 4 GPUs: 24 GPUs asked of 16; each with its own cpu=N, so no runner takes another's job
WAITING = re.compile(rf"waiting for 4 {TIMES} nvidia\.com/gpu \({H100}\): \d+ of 16 free")


@dataclass
class E2E:
    sim: Simulator
    kube: KubeClient
    controllers: Controllers
    namespace: str
    facts: dict[str, RunnerFacts] = field(default_factory=dict)
    """uid -> the last facts of every runner pod the controller's pod cache saw."""
    pod_names: set[str] = field(default_factory=set)
    pending: list[str] = field(default_factory=list)
    """Pods the test saw Pending for capacity (``PodScheduled=False``): must stay empty."""

    def on_pod(self, event: InformerEvent) -> None:
        """Called right after the ledger's own handler for the same event: a pod deleted while its
        runner still ran (a runner whose job another runner took, deleted when that job finished) is
        taken as finished now, as the ledger takes it (to the second)."""
        self.pod_names.add(event.obj["metadata"]["name"])
        found = runner_facts(event.obj)
        if found is None or self.facts.get(found.uid, found).finished_at is not None:
            return
        if event.type is EventType.DELETED and found.finished_at is None:
            found = dataclasses.replace(found, finished_at=max(int(time.time()), found.started_at))
        self.facts[found.uid] = found

    def enqueue(self, workflow: str, labels: Iterable[Iterable[str]], seconds: float) -> list[int]:
        """One run of ``workflow`` with a job per entry of ``labels`` (its sizing labels)."""
        world = self.sim.world
        jobs = [
            JobSpec(("self-hosted", "linux", *x), f"{workflow}-{i}", seconds) for i, x in enumerate(labels)
        ]
        return list(world.enqueue_run(world.repo_by_name(REPO), jobs, workflow_name=workflow).job_ids)

    def done(self, job_ids: Iterable[int]) -> bool:
        return all(self.sim.world.jobs[j].status == "completed" for j in job_ids)

    def policy_status(self) -> dict[str, Any]:
        informer = self.controllers.informers["runnersizingpolicies"]
        return (informer.store.get(Key(self.namespace, "gpu-policy")) or {}).get("status") or {}

    async def guard(self) -> None:
        """Every poll: no pod of the namespace is Pending for capacity."""
        for pod in (await self.kube.list(PODS, namespace=self.namespace)).items:
            conditions = (pod.get("status") or {}).get("conditions") or ()
            if any(c.get("type") == "PodScheduled" and c.get("status") == "False" for c in conditions):
                self.pending.append(f"{pod['metadata']['name']}: {pod['status']}")
        assert not self.pending, self.pending[:3]

    async def runners(self) -> list[dict[str, Any]]:
        await self.guard()
        listed = await self.kube.list(RUNNERS, namespace=self.namespace, label_selector=SIZED_JOB_LABEL)
        return listed.items

    async def bound_pod(self, job_id: int) -> dict[str, Any] | None:
        await self.guard()
        try:
            pod = await self.kube.get(PODS, f"{POOL}-job-{job_id}", namespace=self.namespace)
        except NotFound:
            return None
        return pod if pod["spec"].get("nodeName") else None

    def jit_configs(self) -> int:
        calls = self.controllers.github.stats.snapshot().calls
        return sum(n for (endpoint, code), n in calls.items() if endpoint.endswith("generate-jitconfig"))


async def test_sized_gpu_jobs_from_github_run_wait_or_are_refused_and_are_charged(
    cluster: Cluster, crds: list[str], namespace: str
) -> None:
    settings = cost_settings(cli.build_parser().parse_args(FLAGS), namespace)
    assert settings is not None
    e2e: list[E2E] = []

    def configure(controllers: Controllers) -> None:
        install_cost(controllers, settings)
        controllers.informers["pods"].add_handler(lambda event: e2e[0].on_pod(event))

    async with (
        Simulator(tick_interval=0.05) as sim,
        pod_agent(cluster, sim, namespace),
        webhook_controller(
            cluster, sim, seed(sim), namespace, secret=SECRET, configure=configure, drain_grace=0.5
        ) as controllers,
    ):
        e2e.append(env := E2E(sim, controllers.kube, controllers, namespace))
        for manifest, resource in ((RD, RUNNER_DEPLOYMENTS), (POLICY, SIZING_POLICIES)):
            await env.kube.create(resource, yaml.safe_load(manifest), namespace=namespace)
        await one_job_on_an_h100(env)
        refused = await a_job_over_the_cap_is_refused(env)
        await a_burst_waits_for_capacity_and_runs(env)
        assert f"{POOL}-job-{refused}" not in env.pod_names
        assert env.jit_configs() == len(env.pod_names)  # one registration per runner pod, none else
        await the_ledger_charges_the_repository(cluster, env)


async def one_job_on_an_h100(env: E2E) -> None:
    [job] = env.enqueue("train", [("gpu=2", "gpu-type=h100")], 3.0)
    pod = await wait_until("the gpu=2 job's pod bound", lambda: env.bound_pod(job), within=60)
    node = await env.kube.get(NODES, pod["spec"]["nodeName"])
    assert node["metadata"]["labels"]["nvidia.com/gpu.product"] == H100
    resources = [c.get("resources") or {} for c in pod["spec"]["containers"]]
    assert [r["requests"][GPU] for r in resources if GPU in r.get("requests", {})] == ["2"]
    assert [r["limits"][GPU] for r in resources if GPU in r.get("limits", {})] == ["2"]
    await wait_until("the job done on GitHub", lambda: env.done([job]), within=60)
    ran = env.sim.world.jobs[job]
    assert (ran.conclusion, ran.runner_name) == ("success", pod["metadata"]["name"])

    async def removed() -> bool:
        return not await env.runners()

    await wait_until("its Runner removed", removed, within=60)


async def a_job_over_the_cap_is_refused(env: E2E) -> int:
    [job] = env.enqueue("huge", [("gpu=16", "gpu-type=h100")], 1.0)
    reason = "gpu=16: above the cap of 8 GPUs for this pool"

    def listed() -> bool:
        return any(j["jobId"] == job for j in env.policy_status().get("refusedJobs") or ())

    await wait_until("the refusal in the policy's status", listed, within=30)
    [entry] = [j for j in env.policy_status()["refusedJobs"] if j["jobId"] == job]
    assert entry["reason"] == reason
    condition = {c["type"]: c for c in env.policy_status()["conditions"]}["JobsRefused"]
    assert condition["status"] == "True"
    assert reason in condition["message"]
    events = await env.kube.list(EVENTS, namespace=env.namespace, field_selector="reason=SizedJobRefused")
    assert [(e["involvedObject"]["name"], e["message"]) for e in events.items] == [
        (POOL, f"job {job} of {REPO}: {reason}")
    ]
    assert await env.runners() == []
    return job


async def a_burst_waits_for_capacity_and_runs(env: E2E) -> None:
    jobs = env.enqueue("burst", [("gpu=4", "gpu-type=h100", f"cpu={n}") for n in range(1, BURST + 1)], 6.0)

    async def reasons_shown() -> dict[int, str] | None:
        runners = await env.runners()
        waiting = {
            int(r["metadata"]["labels"][SIZED_JOB_LABEL]): (r.get("status") or {}).get("message", "")
            for r in runners
            if ADMISSION_ANNOTATION not in (r["metadata"].get("annotations") or {})
        }
        listed = {j["jobId"]: j["reason"] for j in env.policy_status().get("waitingJobs") or ()}
        shown = waiting and all(WAITING.fullmatch(m) for m in waiting.values()) and listed == waiting
        return waiting if shown else None

    waiting = await wait_until("the waiting jobs' reasons on their Runners and the policy", reasons_shown)
    assert 2 <= len(waiting) <= BURST - 1, waiting  # at most 4 of 4 GPUs run at once on 2 x 8

    def where() -> str:
        world = env.sim.world
        return str({j: (world.jobs[j].status, world.jobs[j].runner_name) for j in jobs})

    await wait_until(
        "every burst job done on GitHub", lambda: _done_guarded(env, jobs), within=90, state=where
    )
    ran = {j: (env.sim.world.jobs[j].conclusion, env.sim.world.jobs[j].runner_name) for j in jobs}
    assert ran == {j: ("success", f"{POOL}-job-{j}") for j in jobs}  # each on the runner made for it

    async def removed() -> bool:
        return not await env.runners()

    await wait_until("every sized Runner removed", removed, within=60)


async def _done_guarded(env: E2E, jobs: list[int]) -> bool:
    await env.guard()
    return env.done(jobs)


async def the_ledger_charges_the_repository(cluster: Cluster, env: E2E) -> None:
    async def every_pod_charged() -> Ledger | None:
        try:
            cm = await env.kube.get(CONFIGMAPS, LEDGER_CONFIGMAP, namespace=env.namespace)
        except NotFound:
            return None
        ledger = read_ledger_configmap(cm)[0]
        return ledger if set(env.facts) <= set(ledger.finished) else None

    ledger = await wait_until("every runner pod charged", every_pod_charged, within=60)
    expected: dict[tuple[str, str, str, str], Usage] = {}
    for f in env.facts.values():
        assert f.finished_at is not None, f
        run = Decimal(f.finished_at - f.started_at)
        key = (REPO, f.workflow, POOL, H100)
        expected[key] = expected.get(key, Usage()) + Usage(run, run * f.cpu, run * f.gpus)
    assert {k[1] for k in expected} == {"train", "burst"}
    assert all_time(ledger) == expected
    gpu_seconds = sum((u.gpu_seconds for u in expected.values()), Decimal(0))
    assert gpu_seconds >= 2 * 3 + BURST * 4 * 6  # the jobs' own run time at least

    args = ["status", "--cost", "--kubeconfig", str(cluster.kubeconfig), "--ledger-namespace", env.namespace]
    out = io.StringIO()
    assert await status.run_status(cli.build_parser().parse_args([*args, "-o", "json"]), {}, out) == 0
    rows = {r["workflow"]: r for r in json.loads(out.getvalue())["rows"] if r["repository"] == REPO}
    assert rows.keys() == {"train", "burst"}
    prices = PriceTable("EUR", Decimal("0.04"), {H100: Decimal("3.00")})  # the flags'
    for (_, workflow, _, _), usage in expected.items():  # each row: the ledger's hours, priced by the flags
        assert Decimal(rows[workflow]["gpuHours"]) == usage.gpu_seconds / 3600
        assert Decimal(rows[workflow]["cost"]) == money(usage, H100, prices)[0]


async def test_a_job_whose_runner_ran_another_job_gets_a_new_runner_and_runs(
    cluster: Cluster, crds: list[str], namespace: str
) -> None:
    """Force the swap: job A is queued with no delivery (the hook is off; the paced poll waits 10
    minutes), then job B with the same labels. B's runner takes A (GitHub gives a runner the oldest
    queued job its labels cover), so B's Runner goes when its runner exits, with B still queued: the
    recheck gives B a new Runner, under a new name (the old runner pod, found by name, must not make
    it look finished), and B runs within seconds, not the poll's minutes."""

    def slow_poll(controllers: Controllers) -> None:
        assert controllers.autoscaling is not None
        controllers.autoscaling.options.poll_bound = 600.0  # after its first pass, only a recheck lists

    async with (
        Simulator(tick_interval=0.05) as sim,
        pod_agent(cluster, sim, namespace),
        webhook_controller(
            cluster, sim, seed(sim), namespace, secret=SECRET, configure=slow_poll, drain_grace=0.5
        ) as controllers,
    ):
        env = E2E(sim, controllers.kube, controllers, namespace)
        assert controllers.autoscaling is not None
        for manifest, resource in ((RD, RUNNER_DEPLOYMENTS), (POLICY, SIZING_POLICIES)):
            await env.kube.create(resource, yaml.safe_load(manifest), namespace=namespace)
        poller = controllers.autoscaling.poller
        await wait_until("the repository polled once", lambda: poller.polls >= 1, within=30)
        size = ("gpu=2", "gpu-type=h100")
        hooks = list(sim.world.hooks.values())
        for hook in hooks:
            hook.active = False
        [a] = env.enqueue("first", [size], 2.0)
        for hook in hooks:
            hook.active = True
        [b] = env.enqueue("second", [size], 2.0)

        def where() -> str:
            return str({j: (sim.world.jobs[j].status, sim.world.jobs[j].runner_name) for j in (a, b)})

        await wait_until("A done on B's runner", lambda: _done_guarded(env, [a]), within=60, state=where)
        assert sim.world.jobs[a].runner_name == f"{POOL}-job-{b}"  # the swap happened
        a_done = time.monotonic()
        await wait_until("B done on a new runner", lambda: _done_guarded(env, [b]), within=30, state=where)
        assert time.monotonic() - a_done < 30
        assert (sim.world.jobs[b].conclusion, sim.world.jobs[b].runner_name) == (
            "success",
            f"{POOL}-job-{b}-1",
        )
        assert poller.rechecked >= 1
        assert poller.recovered == 0  # no webhook for B was lost

        async def removed() -> bool:
            return not await env.runners()

        await wait_until("every sized Runner removed", removed, within=60)
