"""Per-job sizing on the real control plane with ghsim: the RunnerSizingPolicy controller and the
sized-job intake (``--enable-sizing``; docs/gpu-sizing.md, "Wiring").

The controller runs in-process with its webhook server on 127.0.0.1 and a ghsim hook posting
``workflow_job`` deliveries to it. Admission runs too (``--enable-sizing``): this module's pool asks
for a GPU product only one node has (:func:`busy_node`), and a pod outside the test holds all of that
node's GPUs, so a sized job's Runner stays ``Waiting`` with admission's reason, and the Runner
controller's gate keeps it without a pod or a registration.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from devcluster.cluster import Cluster, ClusterConfig, GpuShape
from devcluster.nodes import GPU_RESOURCE, GPU_TAINT, node_manifests
from devcluster.wait import wait_until
from ghsim import JobSpec, Simulator
from runnerd.controller.common import RUNNER_DEPLOYMENTS, RUNNERS
from runnerd.controller.process import Controllers
from runnerd.controller.sizingpolicy import SIZING_POLICIES
from runnerd.kube.client import KubeClient
from runnerd.kube.resources import EVENTS, PODS
from runnerd.reconcile.sizedjob import SIZED_JOB_LABEL
from runnerd.reconcile.sizing import TIMES
from runnerd.runtime import Key
from tests.integration.support import REPO, seed, webhook_controller

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(90)]

SECRET = "webhook-secret-for-sizing"
POLICY_CRD = "runnersizingpolicies.runnerd.dev"
POOL = "gpu-runners"
GH200 = "NVIDIA-GH200-480GB"
"""The product of :func:`busy_node` only (the session cluster's GPU nodes are H100s)."""
RD = f"""
apiVersion: actions.summerwind.dev/v1alpha1
kind: RunnerDeployment
metadata:
  name: {POOL}
spec:
  replicas: 0
  template:
    spec:
      repository: {REPO}
      labels: [self-hosted, gpu]
      dockerEnabled: false
"""
POLICY = f"""
apiVersion: runnerd.dev/v1alpha1
kind: RunnerSizingPolicy
metadata:
  name: gpu-policy
spec:
  scaleTargetRef: {{name: {POOL}}}
  max: {{gpu: 8, cpu: "16", memory: 64Gi}}
  gpuProducts: [{{name: gh200, nodeLabelValue: {GH200}}}]
"""
SIZED = ("self-hosted", "gpu", "gpu=2", "gpu-type=gh200")
WAITING_REASON = f"waiting for 2 {TIMES} nvidia.com/gpu ({GH200}): 0 of 4 free"
GITHUB_REGISTRATION = ("generate-jitconfig", "registration-token")


@pytest.fixture(scope="module")
def policy_crd(cluster: Cluster, crds: list[str]) -> str:
    """The chart's CRDs (``crds`` applies the whole directory) with the policy's Established."""
    cluster.wait_established([POLICY_CRD])
    return POLICY_CRD


@pytest.fixture(scope="module")
def busy_node(cluster: Cluster) -> Iterator[str]:
    """One GH200 node of 4 GPUs whose GPUs a pod in ``default`` holds (bound by name: it counts on
    the node from the start): a job of this module's pool could run there, but not now."""
    [node] = node_manifests(
        ClusterConfig(state_dir=Path("/unused"), cpu_nodes=0, gpu_shapes=(GpuShape(GH200, 4, 1),))
    )
    name = node["metadata"]["name"] = f"gh200-{uuid.uuid4().hex[:6]}"
    node["metadata"]["labels"]["kubernetes.io/hostname"] = name
    cluster.request("POST", "/api/v1/nodes", node)
    gpus = {GPU_RESOURCE: "4"}
    blocker = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"{name}-busy"},
        "spec": {
            "nodeName": name,
            "tolerations": [{**GPU_TAINT, "operator": "Equal"}],
            "containers": [
                {"name": "train", "image": "busy", "resources": {"requests": gpus, "limits": gpus}}
            ],
        },
    }
    cluster.request("POST", "/api/v1/namespaces/default/pods", blocker)
    # Ready before a test starts: admission counts a node that is not Ready as having nothing free
    cluster.kubectl("wait", "--for=condition=Ready", f"node/{name}", "--timeout=30s", timeout=40)
    try:
        yield name
    finally:
        cluster.request("DELETE", f"/api/v1/namespaces/default/pods/{name}-busy", {"gracePeriodSeconds": 0})
        cluster.request("DELETE", f"/api/v1/nodes/{name}")


@dataclass
class Env:
    sim: Simulator
    kube: KubeClient
    controllers: Controllers
    namespace: str

    async def create(self, manifest: str, **meta: Any) -> dict[str, Any]:
        obj = yaml.safe_load(manifest)
        obj["metadata"].update(namespace=self.namespace, **meta)
        resource = SIZING_POLICIES if obj["kind"] == "RunnerSizingPolicy" else RUNNER_DEPLOYMENTS
        return await self.kube.create(resource, obj, namespace=self.namespace)

    def enqueue(self, *labels: tuple[str, ...]) -> Any:
        world = self.sim.world
        return world.enqueue_run(world.repo_by_name(REPO), [JobSpec(tuple(x), "job", 1.0) for x in labels])

    def job_ids(self, run: Any) -> list[int]:
        return list(run.job_ids)

    def policy(self, name: str = "gpu-policy") -> dict[str, Any]:
        informer = self.controllers.informers["runnersizingpolicies"]
        return informer.store.get(Key(self.namespace, name)) or {}

    def accepted(self, name: str = "gpu-policy") -> dict[str, Any]:
        conditions = (self.policy(name).get("status") or {}).get("conditions") or ()
        return next((c for c in conditions if c.get("type") == "Accepted"), {})

    async def runners(self, job_id: int | None = None) -> list[dict[str, Any]]:
        selector = f"{SIZED_JOB_LABEL}={job_id}" if job_id is not None else SIZED_JOB_LABEL
        return (await self.kube.list(RUNNERS, namespace=self.namespace, label_selector=selector)).items

    async def events(self, reason: str) -> list[dict[str, Any]]:
        listed = await self.kube.list(EVENTS, namespace=self.namespace, field_selector=f"reason={reason}")
        return listed.items

    def registrations(self) -> list[str]:
        calls = self.controllers.github.stats.snapshot().calls
        return [endpoint for endpoint, _ in calls if any(r in endpoint for r in GITHUB_REGISTRATION)]


@contextlib.asynccontextmanager
async def running(
    cluster: Cluster, namespace: str, sim: Simulator, token: str, *, hook: bool = True
) -> AsyncIterator[Env]:
    async with webhook_controller(cluster, sim, token, namespace, secret=SECRET, hook=hook) as controllers:
        yield Env(sim, controllers.kube, controllers, namespace)


async def test_policies_are_accepted_one_per_pool(cluster: Cluster, policy_crd: str, namespace: str) -> None:
    async with Simulator(tick_interval=0.05) as sim, running(cluster, namespace, sim, seed(sim)) as env:
        await env.create(RD)
        await env.create(POLICY)
        accepted = await wait_until(
            "the policy is Accepted", lambda: env.accepted().get("status") == "True" and env.accepted()
        )
        assert "RunnerDeployment gpu-runners" in accepted["message"]
        # a second policy for the same pool: neither applies, each says why
        await env.create(POLICY, name="second")
        for name in ("gpu-policy", "second"):
            conflict = await wait_until(
                f"{name} is not Accepted",
                lambda n=name: env.accepted(n).get("status") == "False" and env.accepted(n),
            )
            assert conflict["reason"] == "ConflictingPolicy"
            assert "gpu-policy, second all name RunnerDeployment gpu-runners" in conflict["message"]
        # a policy for a pool that does not exist
        await env.create(POLICY.replace(f"name: {POOL}}}", "name: nowhere}"), name="lost")
        lost = await wait_until(
            "lost is refused", lambda: env.accepted("lost").get("status") == "False" and env.accepted("lost")
        )
        assert (lost["reason"], lost["message"]) == (
            "TargetNotFound",
            f"RunnerDeployment {namespace}/nowhere not found",
        )
        # a RunnerSet pool: the CRD takes the kind, the intake does not size its pods
        await env.create(POLICY.replace(f"{{name: {POOL}}}", "{kind: RunnerSet, name: rs}"), name="set")
        unsupported = await wait_until(
            "set is refused", lambda: env.accepted("set").get("status") == "False" and env.accepted("set")
        )
        assert unsupported["reason"] == "UnsupportedTarget"
        await env.kube.delete(SIZING_POLICIES, "second", namespace=namespace)
        await wait_until("Accepted again", lambda: env.accepted().get("status") == "True")
        assert env.policy()["status"]["observedGeneration"] == env.policy()["metadata"]["generation"]


async def test_sized_jobs_wait_or_are_refused_and_completed_deletes(
    cluster: Cluster, policy_crd: str, namespace: str, busy_node: str
) -> None:
    async with Simulator(tick_interval=0.05) as sim, running(cluster, namespace, sim, seed(sim)) as env:
        await env.create(RD)
        await env.create(POLICY)
        await wait_until("Accepted", lambda: env.accepted().get("status") == "True")
        run = env.enqueue(SIZED, ("self-hosted", "gpu", "gpu=64"), ("self-hosted", "gpu", "gpu-type=unknown"))
        sized, over, unknown = env.job_ids(run)

        [runner] = await wait_until("one waiting runner", lambda: env.runners(sized))
        spec = runner["spec"]
        assert runner["metadata"]["name"] == f"{POOL}-job-{sized}"
        assert spec["labels"] == list(SIZED)
        assert spec["resources"] == {"limits": {"nvidia.com/gpu": "2"}, "requests": {"nvidia.com/gpu": "2"}}
        assert spec["nodeSelector"] == {"nvidia.com/gpu.product": GH200}
        assert spec["ephemeral"] is True
        assert runner["metadata"]["annotations"]["runnerd.dev/repository"] == REPO

        refused = await wait_until(
            "two refusals",
            lambda: (
                len(env.policy().get("status", {}).get("refusedJobs") or ()) == 2 and env.policy()["status"]
            ),
        )
        by_job = {j["jobId"]: j["reason"] for j in refused["refusedJobs"]}
        assert by_job[over] == "gpu=64: above the cap of 8 GPUs for this pool"
        assert by_job[unknown] == "gpu-type=unknown: not offered by this pool (offered: gh200)"
        status = await wait_until(
            "the job waiting for capacity",
            lambda: env.policy()["status"].get("waiting") == 1 and env.policy()["status"],
        )
        assert status["refused"] == 2
        assert (status["waitingJobs"][0]["jobId"], status["waitingJobs"][0]["reason"]) == (
            sized,
            WAITING_REASON,
        )
        [runner] = await env.runners(sized)
        assert (runner["status"]["phase"], runner["status"]["message"]) == ("Waiting", WAITING_REASON)
        events = await wait_until("refusal events on the pool", lambda: _two(env.events("SizedJobRefused")))
        assert {e["involvedObject"]["name"] for e in events} == {POOL}
        assert [r["metadata"]["name"] for r in await env.runners()] == [
            f"{POOL}-job-{sized}"
        ]  # none for them
        # waiting: no pod, no registration with GitHub
        assert (await env.kube.list(PODS, namespace=namespace)).items == []
        assert env.registrations() == []
        metrics = env.controllers.autoscaling.metrics  # type: ignore[union-attr]
        labels = {"namespace": namespace, "pool": POOL}
        assert metrics.sample("runnerd_sized_jobs_refused_total", {**labels, "rule": "cap"}) == 1
        assert metrics.sample("runnerd_sized_jobs_refused_total", {**labels, "rule": "product"}) == 1
        assert metrics.sample("runnerd_sized_jobs", {**labels, "state": "waiting"}) == 1

        sim.world.cancel_run(run.id)  # completed (cancelled) deliveries
        await wait_until("the waiting runner is deleted", lambda: _none(env.runners()))
        status = await wait_until(
            "the policy forgets them",
            lambda: (
                (s := env.policy().get("status") or {}).get("refused") == 0 and s.get("waiting") == 0 and s
            ),
        )
        assert status["refusedJobs"] == []


async def test_a_restart_creates_no_second_runner(
    cluster: Cluster, policy_crd: str, namespace: str, busy_node: str
) -> None:
    async with Simulator(tick_interval=0.05) as sim:
        token = seed(sim)
        async with running(cluster, namespace, sim, token) as env:
            await env.create(RD)
            await env.create(POLICY)
            await wait_until("Accepted", lambda: env.accepted().get("status") == "True")
            first = env.job_ids(env.enqueue(SIZED))[0]
            [before] = await wait_until("a waiting runner", lambda: env.runners(first))
        # queued while no controller runs: its delivery is lost; the restarted poll finds it
        second = env.job_ids(env.enqueue(SIZED))[0]
        async with running(cluster, namespace, sim, token, hook=False) as env:
            poller = env.controllers.autoscaling.poller  # type: ignore[union-attr]
            [late] = await wait_until("the poll found the lost job", lambda: env.runners(second), within=30)
            await wait_until("two polls", lambda: poller.polls >= 2, within=30)
            [after] = await env.runners(first)
            assert after["metadata"]["uid"] == before["metadata"]["uid"]
            assert len(await env.runners()) == 2
            assert late["metadata"]["name"] == f"{POOL}-job-{second}"
            assert env.registrations() == []


async def _two(events: Awaitable[list[dict[str, Any]]]) -> list[dict[str, Any]] | None:
    found = await events
    return found if len(found) >= 2 else None


async def _none(runners: Awaitable[list[dict[str, Any]]]) -> bool:
    return not await runners
