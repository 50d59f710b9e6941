"""Capacity-aware admission on the real control plane (issue #16): sized Runners made as the intake
makes them, the session cluster's 2 GPU nodes of 8 H100 each, the real scheduler and kwok. The
40-job test backs each Runner with a job queued in ghsim and finishes it there before its pod exits,
as a runner would; the other tests back theirs with jobs that stay queued. The safety-net poll
deletes a sized Runner whose job GitHub shows finished (or does not list in an active run), so a
made-up job id would hold only within the poll's grace.

- a ``gpu=2`` job's pod lands on a GPU node requesting exactly 2 GPUs, on the node admission chose,
  which is not the node whose GPUs another namespace's pod holds (the pod view is cluster-wide);
- a job larger than every node is ``Refused`` with the reason and never gets a pod;
- 40 jobs of 1/2/4/8 GPUs: no pod is ever Pending for capacity, FIFO is never violated, the next job
  is admitted as soon as a finished one frees room, and a controller restart half-way loses no
  waiting job and admits none twice;
- with devcluster's mixed fleet (``MIXED_GPU_SHAPES``), ``gpu-type=a100`` and ``mig=1g.10gb`` jobs
  land on their nodes, and a second A100 job waits with the reason.
"""

from __future__ import annotations

import contextlib
import random
import statistics
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from devcluster.cluster import EXIT_CODE_ANNOTATION, MIXED_GPU_SHAPES, Cluster, ClusterConfig
from devcluster.nodes import node_manifests
from devcluster.wait import wait_until
from ghsim import JobSpec, Simulator
from runnerd.controller.admission import NON_TERMINAL
from runnerd.controller.common import RUNNERS
from runnerd.kube.client import KubeClient
from runnerd.kube.resources import NODES, PODS
from runnerd.reconcile.sizedjob import ADMISSION_ANNOTATION, ADMITTED_NODE_ANNOTATION, SIZED_JOB_LABEL
from runnerd.reconcile.sizing import TIMES
from runnerd.runtime import NotFound
from tests.conftest import fresh_namespace
from tests.integration.support import REPO, controller_process, seed, sized_runner, sizing_pool

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(300)]

GPU = "nvidia.com/gpu"
H100 = "NVIDIA-H100-80GB-HBM3"
A100 = "NVIDIA-A100-SXM4-80GB"
MIG = "nvidia.com/mig-1g.10gb"
POLICY: dict[str, Any] = {
    "max": {"gpu": 16},
    "gpuProducts": [{"name": "h100", "nodeLabelValue": H100}],
    "admission": {"order": "Fifo", "maxPending": 0},
}


def _gpus(pod: dict[str, Any]) -> int:
    return sum(
        int((c.get("resources") or {}).get("requests", {}).get(GPU, 0)) for c in pod["spec"]["containers"]
    )


def _unschedulable(pod: dict[str, Any]) -> bool:
    return any(
        c.get("type") == "PodScheduled" and c.get("status") == "False"
        for c in (pod.get("status") or {}).get("conditions") or []
    )


def _queued(sim: Simulator, labels: list[str]) -> int:
    """A job queued in ghsim with ``labels`` (no runner takes it: these tests play no runners), so
    the safety-net poll sees it queued and keeps its Runner, however long the test takes."""
    run = sim.world.enqueue_run(sim.world.repo_by_name(REPO), [JobSpec(tuple(labels), "train", 600.0)])
    return int(run.job_ids[0])


@contextlib.asynccontextmanager
async def _world(cluster: Cluster, namespace: str) -> AsyncIterator[tuple[Simulator, str, KubeClient]]:
    async with Simulator(tick_interval=0.05) as sim:
        token = seed(sim)
        kube = await KubeClient.connect(str(cluster.kubeconfig))
        try:
            yield sim, token, kube
        finally:
            await kube.close()


@pytest.fixture
def other_namespace(cluster: Cluster) -> Iterator[str]:
    yield from fresh_namespace(cluster)


async def test_a_gpu_job_gets_exactly_its_gpus_and_a_job_too_large_for_every_node_is_refused(
    cluster: Cluster, crds: list[str], namespace: str, other_namespace: str
) -> None:
    """Also: the GPUs another namespace's pod holds count (the controller serves ``namespace`` only,
    its pod view is cluster-wide): that pod fills the GPU node admission would pick first by name."""
    async with _world(cluster, namespace) as (sim, token, kube):
        nodes = sorted(
            n["metadata"]["name"]
            for n in (await kube.list(NODES)).items
            if n["metadata"]["name"].startswith("gpu-node-")
        )
        toleration = {"key": GPU, "operator": "Exists", "effect": "NoSchedule"}
        foreign = {
            "metadata": {"name": "training", "namespace": other_namespace},
            "spec": {
                "nodeName": nodes[0],
                "tolerations": [toleration],
                "containers": [{"name": "train", "image": "train", "resources": {"limits": {GPU: "8"}}}],
            },
        }
        await kube.create(PODS, foreign, namespace=other_namespace)
        try:
            await _place_and_refuse(cluster, sim, token, kube, namespace, nodes)
        finally:  # its GPUs are free again before the next test
            await kube.delete(
                PODS, "training", namespace=other_namespace, grace_period_seconds=0, missing_ok=True
            )

            async def gone() -> bool:
                return not [p for p in (await kube.list(PODS, namespace=other_namespace)).items]

            await wait_until("the other namespace's GPU pod gone", gone, within=30)


async def _place_and_refuse(
    cluster: Cluster, sim: Simulator, token: str, kube: KubeClient, namespace: str, nodes: list[str]
) -> None:
    """A gpu=16 job (Refused) and a gpu=2 job (placed on ``nodes[1]``), see the test above."""
    pool = await sizing_pool(kube, namespace, POLICY)
    now = time.time()
    big_labels, job_labels = ["self-hosted", "gpu=16"], ["self-hosted", "gpu=2"]
    big = await kube.create(
        RUNNERS,
        sized_runner(pool, POLICY, _queued(sim, big_labels), big_labels, now - 2),
        namespace=namespace,
    )
    job = await kube.create(
        RUNNERS,
        sized_runner(pool, POLICY, _queued(sim, job_labels), job_labels, now - 1),
        namespace=namespace,
    )
    async with controller_process(cluster, sim, token, namespace, enable_sizing=True):

        async def placed_pod() -> dict[str, Any] | None:
            try:
                pod = await kube.get(PODS, job["metadata"]["name"], namespace=namespace)
            except NotFound:
                return None
            return pod if pod["spec"].get("nodeName") else None

        pod = await wait_until("the gpu=2 job's pod bound to a node", placed_pod, within=60)
        refused = await kube.get(RUNNERS, big["metadata"]["name"], namespace=namespace)
    status = refused.get("status") or {}
    assert status.get("phase") == "Refused", status
    assert status.get("reason") == "SizeRefused"
    assert "the largest matching node has 8" in status.get("message", ""), status
    assert ADMISSION_ANNOTATION not in (refused["metadata"].get("annotations") or {})
    pods = (await kube.list(PODS, namespace=namespace)).items
    assert [p["metadata"]["name"] for p in pods] == [job["metadata"]["name"]]  # none for the refused job
    assert pod["spec"]["nodeName"] == nodes[1]  # nodes[0]'s GPUs are the other namespace's pod's
    assert _gpus(pod) == 2
    assert pod["metadata"]["annotations"][ADMITTED_NODE_ANNOTATION] == pod["spec"]["nodeName"]
    node = await kube.get(NODES, pod["spec"]["nodeName"])
    assert node["metadata"]["labels"]["nvidia.com/gpu.product"] == H100


@dataclass
class Watch:
    """What the test saw of the namespace, polled from the API: violations of the invariants."""

    order: list[str]
    size: dict[str, int]
    capacity: dict[str, int]  # GPU node -> its GPUs
    admitted: dict[str, str] = field(default_factory=dict)  # runner -> its admitted node (never changes)
    pod_uids: dict[str, set[str]] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)
    polls: int = 0
    runners: dict[str, dict[str, Any]] = field(default_factory=dict)
    pods: dict[str, dict[str, Any]] = field(default_factory=dict)
    elsewhere: dict[str, int] = field(default_factory=dict)  # GPUs other namespaces' pods hold, per node
    finished: set[str] = field(default_factory=set)

    async def poll(self, kube: KubeClient, namespace: str) -> None:
        runners = (await kube.list(RUNNERS, namespace=namespace, label_selector=SIZED_JOB_LABEL)).items
        everywhere = (await kube.list(PODS, field_selector=NON_TERMINAL)).items
        pods = [p for p in everywhere if p["metadata"]["namespace"] == namespace]
        self.elsewhere = {}
        for pod in everywhere:
            node = pod["spec"].get("nodeName")
            if pod["metadata"]["namespace"] != namespace and node:
                self.elsewhere[node] = self.elsewhere.get(node, 0) + _gpus(pod)
        self.polls += 1
        self.runners = {r["metadata"]["name"]: r for r in runners}
        self.pods = {p["metadata"]["name"]: p for p in pods}
        for name, runner in self.runners.items():
            annotations = runner["metadata"].get("annotations") or {}
            if ADMISSION_ANNOTATION in annotations:
                node = annotations.get(ADMITTED_NODE_ANNOTATION, "")
                if self.admitted.setdefault(name, node) != node:
                    self.violations.append(f"{name} admitted twice: {self.admitted[name]} then {node}")
                if (runner.get("status") or {}).get("phase") in ("Waiting", "Refused"):
                    self.violations.append(f"{name} admitted but its status says {runner['status']}")
        ever = [name in self.admitted or name in self.finished for name in self.order]
        if ever != sorted(ever, reverse=True):
            self.violations.append(
                f"FIFO violated: admitted {[n for n, e in zip(self.order, ever, strict=True) if e]}"
            )
        for name, pod in self.pods.items():
            self.pod_uids.setdefault(name, set()).add(pod["metadata"]["uid"])
            if len(self.pod_uids[name]) > 1:
                self.violations.append(f"{name} got a second pod")
            if _unschedulable(pod):
                self.violations.append(f"pod {name} Pending for capacity: {pod['status']}")

    def describe(self) -> str:
        live = [n for n in self.admitted if n in self.runners]
        phases = {n: ((self.pods.get(n) or {}).get("status") or {}).get("phase") for n in live}
        statuses = {n: (self.runners[n].get("status") or {}).get("message") for n in self.waiting()[:2]}
        return f"admitted {phases}, free {self.free()}, head {self.waiting()[:3]} {statuses}"

    def waiting(self) -> list[str]:
        return [n for n in self.order if n in self.runners and n not in self.admitted]

    def free(self) -> dict[str, int]:
        """GPUs free per node, from the admitted Runners still here (where their pod is bound, else
        their admitted node)."""
        free = {n: gpus - self.elsewhere.get(n, 0) for n, gpus in self.capacity.items()}
        for name in self.admitted:
            if name not in self.runners:
                continue
            pod = self.pods.get(name)
            if pod is not None and (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                continue
            node = (pod or {}).get("spec", {}).get("nodeName") or self.admitted[name]
            free[node] = free.get(node, 0) - self.size[name]
        return free

    def head_fits(self) -> bool:
        waiting = self.waiting()
        return bool(waiting) and self.size[waiting[0]] <= max(self.free().values())


async def test_forty_gpu_jobs_on_two_nodes_fifo_never_pending_and_a_restart_loses_nothing(
    cluster: Cluster, crds: list[str], namespace: str
) -> None:
    rng = random.Random(16)
    sizes = [1, 2, 4, 8] * 10
    rng.shuffle(sizes)
    async with _world(cluster, namespace) as (sim, token, kube):
        pool = await sizing_pool(kube, namespace, POLICY)
        start = time.time() - 100
        nodes = (await kube.list(NODES)).items
        capacity = {
            n["metadata"]["name"]: int(n["status"]["allocatable"][GPU])
            for n in nodes
            if int((n["status"].get("allocatable") or {}).get(GPU, 0)) > 0
        }
        assert sorted(capacity.values()) == [8, 8], capacity  # the session cluster's 2 x 8 H100
        watch = Watch(order=[], size={}, capacity=capacity)

        async def gpus_free() -> bool:  # what earlier tests left (namespaces deleted without waiting)
            await watch.poll(kube, namespace)
            return not any(watch.elsewhere.get(n) for n in capacity)

        await wait_until(
            "the GPU nodes free of other tests' pods", gpus_free, within=60, state=lambda: watch.elsewhere
        )
        runs: dict[str, int] = {}  # runner -> its job's run in ghsim
        repo = sim.world.repo_by_name(REPO)
        for i, gpus in enumerate(sizes, start=1):
            labels = ["self-hosted", f"gpu={gpus}"]
            run = sim.world.enqueue_run(repo, [JobSpec(tuple(labels), f"train-{i}", 600.0)])
            obj = sized_runner(pool, POLICY, run.job_ids[0], labels, start + i)
            await kube.create(RUNNERS, obj, namespace=namespace)
            watch.order.append(obj["metadata"]["name"])
            watch.size[obj["metadata"]["name"]] = gpus
            runs[obj["metadata"]["name"]] = run.id
        delays: list[float] = []

        async def guard_poll() -> bool:
            await watch.poll(kube, namespace)
            assert not watch.violations, watch.violations[:5]
            return True

        async def settled() -> bool:
            """Every admitted Runner's pod runs, and the oldest waiting job does not fit."""
            await guard_poll()
            running = all(
                (watch.pods.get(n) or {}).get("status", {}).get("phase") == "Running"
                for n in watch.admitted
                if n in watch.runners
            )
            return running and not watch.head_fits()

        async def finish(count: int) -> None:
            for _ in range(count):
                await wait_until("admissions settled", settled, within=60, step=0.2, state=watch.describe)
                running = [n for n in watch.order if n in watch.admitted and n not in watch.finished]
                assert running, f"settled with nothing running: {watch.describe()}"
                name = running[0]
                name = running[0]
                sim.world.cancel_run(runs[name])  # the job ends on GitHub, then its runner exits
                watch.finished.add(name)
                with contextlib.suppress(NotFound):  # the poll may have deleted the Runner already
                    await kube.patch(
                        PODS,
                        name,
                        {"metadata": {"annotations": {EXIT_CODE_ANNOTATION: "0"}}},
                        namespace=namespace,
                    )

                async def gone(name: str = name) -> bool:
                    await guard_poll()
                    return name not in watch.runners

                await wait_until(f"{name} finished and deleted", gone, within=60, step=0.05)
                t_gone = time.monotonic()

                async def next_admitted() -> bool:
                    await guard_poll()
                    return not watch.head_fits()

                await wait_until(
                    "the next job admitted", next_admitted, within=10, step=0.05, state=watch.describe
                )
                delays.append(time.monotonic() - t_gone)

        async with controller_process(cluster, sim, token, namespace, enable_sizing=True):
            await finish(20)
        # restart: a new process (new caches, no memory of the first) finds every waiting job
        async with controller_process(cluster, sim, token, namespace, enable_sizing=True):
            await finish(20)
        await guard_poll()
        assert watch.finished == set(watch.order)
        assert watch.runners == {}
        assert all(len(uids) == 1 for uids in watch.pod_uids.values()), watch.pod_uids
        print(  # the numbers for docs/benchmarks.md (pytest -s)
            f"admission after capacity freed: p50 {statistics.median(delays):.3f}s, "
            f"max {max(delays):.3f}s over {len(delays)} jobs; {watch.polls} polls"
        )
        assert statistics.median(delays) < 2.0, delays


@pytest.fixture
def mixed_nodes(cluster: Cluster) -> Iterator[dict[str, str]]:
    """The rest of devcluster's mixed fleet (``MIXED_GPU_SHAPES``: one 4 x A100 node, one A100 as
    seven ``1g.10gb`` slices) added to the session cluster's 2 x 8 H100 for one test, then removed."""
    shapes = [s for s in MIXED_GPU_SHAPES if s.product != H100]
    manifests = node_manifests(
        ClusterConfig(state_dir=Path("/unused"), cpu_nodes=0, gpu_shapes=tuple(shapes))
    )
    names = {"a100": f"a100-{uuid.uuid4().hex[:6]}", "mig": f"a100-mig-{uuid.uuid4().hex[:6]}"}
    for manifest, name in zip(manifests, names.values(), strict=True):
        manifest["metadata"]["name"] = name
        manifest["metadata"]["labels"]["kubernetes.io/hostname"] = name
        cluster.request("POST", "/api/v1/nodes", manifest)
    try:
        yield names
    finally:
        for name in names.values():
            cluster.request("DELETE", f"/api/v1/nodes/{name}")


async def test_product_and_mig_jobs_land_on_their_nodes_and_a_busy_product_waits_with_its_reason(
    cluster: Cluster, crds: list[str], namespace: str, mixed_nodes: dict[str, str]
) -> None:
    policy: dict[str, Any] = {
        "max": {"gpu": 8},
        "gpuProducts": [{"name": "h100", "nodeLabelValue": H100}, {"name": "a100", "nodeLabelValue": A100}],
        "migProfiles": ["1g.10gb"],
        "admission": {"order": "Fifo"},
    }
    async with _world(cluster, namespace) as (sim, token, kube):

        async def ready() -> bool:
            nodes = {n["metadata"]["name"]: n for n in (await kube.list(NODES)).items}
            return (
                all(
                    any(
                        c["type"] == "Ready" and c["status"] == "True"
                        for c in nodes[name]["status"].get("conditions", [])
                    )
                    for name in mixed_nodes.values()
                    if name in nodes
                )
                and set(mixed_nodes.values()) <= nodes.keys()
            )

        await wait_until("the A100 nodes Ready", ready, within=30)
        cordon = {"spec": {"unschedulable": True}}
        await kube.patch(NODES, mixed_nodes["a100"], cordon)  # uncordoned below: the node trigger
        pool = await sizing_pool(kube, namespace, policy)
        now = time.time()
        jobs = {
            "a100": (["self-hosted", "gpu=2", "gpu-type=a100"], now - 3),
            "mig": (["self-hosted", "mig=1g.10gb"], now - 2),
            "later": (["self-hosted", "gpu=4", "gpu-type=a100"], now - 1),
        }
        names = {}
        for key, (labels, queued) in jobs.items():
            obj = await kube.create(
                RUNNERS, sized_runner(pool, policy, _queued(sim, labels), labels, queued), namespace=namespace
            )
            names[key] = obj["metadata"]["name"]
        async with controller_process(cluster, sim, token, namespace, enable_sizing=True):

            async def bound(*keys: str) -> dict[str, dict[str, Any]] | None:
                pods = {p["metadata"]["name"]: p for p in (await kube.list(PODS, namespace=namespace)).items}
                wanted = [pods.get(names[k]) for k in keys]
                return pods if all(p and p["spec"].get("nodeName") for p in wanted) else None

            seen: dict[str, Any] = {}

            async def status_of(key: str, phase: str) -> dict[str, Any] | None:
                runner = await kube.get(RUNNERS, names[key], namespace=namespace)
                status: dict[str, Any] = runner.get("status") or {}
                seen[key] = (status, runner["metadata"].get("annotations"))
                return status if status.get("phase") == phase else None

            async def placed(key: str) -> bool:
                runner = await kube.get(RUNNERS, names[key], namespace=namespace)
                return (runner["metadata"].get("annotations") or {}).get(ADMISSION_ANNOTATION) == "placed"

            await wait_until("the MIG pod bound", lambda: bound("mig"), within=60)
            cordoned = await wait_until(
                "the a100 job waiting", lambda: status_of("a100", "Waiting"), within=30, state=lambda: seen
            )
            uncordoned = time.monotonic()
            await kube.patch(NODES, mixed_nodes["a100"], {"spec": {"unschedulable": False}})
            await wait_until(
                "the a100 job placed once uncordoned", lambda: placed("a100"), within=15, step=0.05
            )
            print(f"placed {time.monotonic() - uncordoned:.3f}s after its node was uncordoned")  # pytest -s
            pods = await wait_until("the a100 and MIG pods bound", lambda: bound("a100", "mig"), within=60)

            status = await wait_until(
                "the second a100 job waiting", lambda: status_of("later", "Waiting"), within=30
            )
        assert cordoned["reason"] == "WaitingForCapacity"
        assert cordoned["message"].startswith(f"waiting for 2 {TIMES} nvidia.com/gpu ({A100})"), cordoned
        a100, mig = pods[names["a100"]], pods[names["mig"]]
        assert a100["spec"]["nodeName"] == mixed_nodes["a100"]
        assert _gpus(a100) == 2
        assert mig["spec"]["nodeName"] == mixed_nodes["mig"]
        requests = [(c.get("resources") or {}).get("requests", {}) for c in mig["spec"]["containers"]]
        assert sum(int(r.get(MIG, 0)) for r in requests) == 1
        assert _gpus(mig) == 0
        assert names["later"] not in pods
        assert status["message"] == f"waiting for 4 {TIMES} nvidia.com/gpu ({A100}): 2 of 4 free", status
