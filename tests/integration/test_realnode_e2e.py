"""End to end on the real node: runnerd (in-process) + ghsim as GitHub + the article's
RunnerDeployment, whose runner pods run the test runner image as real containers.

A runner pod starts for real, registers, takes a job whose step talks to dockerd (the docker
sidecar's, or its own with ``dockerdWithinRunnerContainer: true``): ``docker info``, a
``docker build`` of an image from files of the runner's own filesystem and a ``docker run`` of it.
The runner exits with the step's code (its termination message says what the step printed), and
the pod is removed. SIGTERM during a job lets the job finish.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import yaml

from devcluster.cluster import Cluster
from devcluster.realnode import Image
from devcluster.wait import wait_until
from ghsim import JobSpec, Simulator
from runnerd.controller.common import RUNNER_DEPLOYMENTS
from runnerd.kube.client import KubeClient
from runnerd.kube.resources import PODS
from tests.conftest import fresh_namespace
from tests.integration.realnode_support import images, on_real_node, real_cluster
from tests.integration.support import ARTICLE_RD, REPO, controller_process, install_crds, seed

# 600 s: the first test to ask for the images builds them when `make images` has not (~4 min cold)
pytestmark = [pytest.mark.cluster, pytest.mark.timeout(600)]
__all__ = ["images", "real_cluster"]

# The job's step: dockerd answers, builds an image from files of this container (no registry) and runs it.
DOCKER_STEP = """set -e
docker info --format 'dockerd {{.ServerVersion}} storage {{.Driver}}'
mkdir -p /tmp/ctx && cd /tmp/ctx
tar -chf rootfs.tar -C / usr/bin/dash usr/lib/x86_64-linux-gnu/libc.so.6 lib64/ld-linux-x86-64.so.2
printf 'FROM scratch\\nADD rootfs.tar /\\nENTRYPOINT ["/usr/bin/dash", "-c"]\\n' >Dockerfile
DOCKER_BUILDKIT=0 docker build -q -t runnerd-e2e/hello . >/dev/null
docker run --rm --network none runnerd-e2e/hello 'echo hello from docker run'
"""


@pytest.fixture(scope="module")
def real_crds(real_cluster: Cluster) -> Cluster:
    install_crds(real_cluster)
    return real_cluster


@pytest.fixture
def real_namespace(real_crds: Cluster) -> Iterator[str]:
    # (kubectl wait on the default ServiceAccount failed at once when it did not exist yet)
    yield from fresh_namespace(real_crds)


@dataclass
class Env:
    sim: Simulator
    kube: KubeClient
    namespace: str
    images: dict[str, Image]
    cluster: Cluster
    #: pod name -> its containers' logs, fetched when the runner container exits (API server -> kubelet)
    logs: dict[str, str] = field(default_factory=dict)
    #: pod name -> the runner container's terminated state, as the kubelet reported it
    exits: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: pod name -> seconds from creation to the runner container running
    started: dict[str, float] = field(default_factory=dict)
    seen: dict[str, Any] = field(default_factory=dict)

    def rd(self, step: str, **spec: Any) -> dict[str, Any]:
        rd: dict[str, Any] = yaml.safe_load(ARTICLE_RD)
        rd["metadata"]["namespace"] = self.namespace
        template = rd["spec"]["template"]["spec"]
        template.update(
            on_real_node(
                {
                    "image": self.images["test-runner"].tag,
                    "imagePullPolicy": "IfNotPresent",
                    "env": [{"name": "RUNNERD_TEST_STEP", "value": step}],
                    **spec,
                }
            )
        )
        return rd

    async def pods(self) -> list[dict[str, Any]]:
        return (await self.kube.list(PODS, namespace=self.namespace)).items

    async def observe(self) -> None:
        """Record each runner container's start and exit (the pod is deleted soon after it exits)."""
        while True:
            for pod in await self.pods():
                name = pod["metadata"]["name"]
                self.seen[name] = {
                    c["name"]: c.get("state") for c in pod.get("status", {}).get("containerStatuses") or []
                } or pod.get("status", {}).get("conditions")
                for status in pod.get("status", {}).get("containerStatuses") or []:
                    if status["name"] != "runner":
                        continue
                    state = status.get("state", {})
                    if "terminated" in state and name not in self.exits:
                        self.exits[name] = state["terminated"]
                        self.logs[name] = await asyncio.to_thread(self.pod_logs, name)
                    running = state.get("running") or state.get("terminated")
                    if running and name not in self.started and running.get("startedAt"):
                        created = _ts(pod["metadata"]["creationTimestamp"])
                        self.started[name] = _ts(running["startedAt"]) - created
            await asyncio.sleep(0.1)

    def job(self, duration: float) -> int:
        world = self.sim.world
        return world.enqueue_run(
            world.repo_by_name(REPO), [JobSpec(("self-hosted", "arc-runner"), "job", duration)]
        ).job_ids[0]

    def pod_logs(self, pod: str) -> str:
        out = self.cluster.kubectl(
            "logs", pod, "-n", self.namespace, "--all-containers", "--prefix", check=False
        )
        return out.stdout[-4000:] + out.stderr[-1000:]

    def last_pods(self) -> str:
        """Where the runner pods stood at the last poll, and the logs of those that exited."""
        return f"pods: {self.seen}\nlogs: {self.logs}"

    def online(self) -> bool:
        return any(self.sim.world.runner_online(r) for r in self.sim.world.runners.values())


def _ts(text: str) -> float:
    return time.mktime(time.strptime(text, "%Y-%m-%dT%H:%M:%SZ"))


@pytest.fixture
async def env(real_crds: Cluster, real_namespace: str, images: dict[str, Image]) -> AsyncIterator[Env]:
    gateway = real_crds.real_nodes[0].gateway
    async with Simulator(host=gateway, tick_interval=0.05) as sim:
        pat = seed(sim)
        async with controller_process(
            real_crds,
            sim,
            pat,
            real_namespace,
            runner_image=images["test-runner"].tag,
            sync_period=5.0,
            drain_grace=2.0,
        ) as controllers:
            kube = controllers.kube
            e = Env(sim, kube, real_namespace, images, real_crds)
            observer = asyncio.create_task(e.observe(), name="observe-pods")
            try:
                yield e
                # scale to zero and wait until the node has no runner pod left
                await kube.patch(
                    RUNNER_DEPLOYMENTS,
                    "example-runner-deployment",
                    {"spec": {"replicas": 0}},
                    namespace=real_namespace,
                )
                await wait_until("no runner pod left", lambda: _none(e.pods()), 120)
            finally:
                observer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await observer


async def _none(pods: Any) -> bool:
    return not await pods


@pytest.mark.parametrize("dind_in_runner", [False, True], ids=["docker-sidecar", "dockerd-in-runner"])
async def test_article_rd_runs_a_docker_job_in_real_containers(env: Env, dind_in_runner: bool) -> None:
    spec = {"dockerdWithinRunnerContainer": True} if dind_in_runner else {}
    await env.kube.create(RUNNER_DEPLOYMENTS, env.rd(DOCKER_STEP, **spec), namespace=env.namespace)
    await wait_until(
        "a runner online in GitHub (a real container registered)", env.online, 120, state=env.last_pods
    )
    first = [p["metadata"]["name"] for p in await env.pods()]
    job_id = env.job(0.5)
    job = await wait_until(
        "the job to complete", lambda: (j := env.sim.world.jobs[job_id]).status == "completed" and j, 120
    )
    assert job.conclusion == "success"
    pod = job.runner_name
    exit_state = await wait_until(f"the runner container of {pod} to exit", lambda: env.exits.get(pod), 60)
    message = exit_state.get("message", "")
    assert exit_state["exitCode"] == 0, message
    assert "step-exit-code=0" in message, message
    assert "hello from docker run" in message, message
    assert pod in first

    async def removed() -> bool:
        return pod not in [p["metadata"]["name"] for p in await env.pods()]

    await wait_until(f"pod {pod} to be removed", removed, 90)


async def test_sigterm_during_a_job_lets_the_job_finish(env: Env, real_crds: Cluster) -> None:
    rd = env.rd("sleep 1")
    rd["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 60
    await env.kube.create(RUNNER_DEPLOYMENTS, rd, namespace=env.namespace)
    await wait_until("a runner online", env.online, 120, state=env.last_pods)
    job_id = env.job(8.0)
    await wait_until("the job running", lambda: env.sim.world.jobs[job_id].status == "in_progress", 60)
    pod = env.sim.world.jobs[job_id].runner_name
    assert pod is not None
    real_crds.kubectl("delete", "pod", pod, "-n", env.namespace, "--wait=false")  # kubelet: SIGTERM
    job = await wait_until(
        "the job to complete", lambda: (j := env.sim.world.jobs[job_id]).status == "completed" and j, 60
    )
    assert job.conclusion == "success"
    exit_state = await wait_until(f"the runner container of {pod} to exit", lambda: env.exits.get(pod), 60)
    assert exit_state["exitCode"] == 0, exit_state
