"""The controller end to end: real API server, the article's manifests, ghsim as GitHub, virtual runners."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from devcluster.cluster import Cluster
from ghsim import JobSpec, Simulator
from runnerd.controller.app import Controllers, build
from runnerd.controller.common import RUNNER_DEPLOYMENTS, RUNNERS, ControllerOptions
from runnerd.github import GitHubClient, GitHubConfig, PersonalAccessToken
from runnerd.kube.client import KubeClient
from runnerd.kube.resources import PODS
from runnerd.reconcile.pod import PodOptions
from tests.integration.podagent import PodAgent

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(180)]

REPO = "octo-org/app"
CRD_DIR = Path(__file__).resolve().parents[2] / "charts" / "actions-runner-controller" / "crds"


@pytest.fixture(scope="module")
def crds(cluster: Cluster) -> None:
    cluster.kubectl("apply", "-f", str(CRD_DIR))
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")


@dataclass
class Env:
    sim: Simulator
    kube: KubeClient
    github: GitHubClient
    controllers: Controllers
    agent: PodAgent
    namespace: str
    cluster: Cluster

    async def apply(self, manifest: dict[str, Any]) -> None:
        manifest["metadata"]["namespace"] = self.namespace
        await self.kube.create(RUNNER_DEPLOYMENTS, manifest, namespace=self.namespace)

    async def runners(self) -> list[dict[str, Any]]:
        return (await self.kube.list(RUNNERS, namespace=self.namespace)).items

    def github_runners(self) -> list[Any]:
        return list(self.sim.world.runners.values())


async def wait_until(what: str, probe: Callable[[], Any], within: float = 60.0) -> Any:
    deadline = time.monotonic() + within
    while True:
        value = probe()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(0.1)


@pytest.fixture
async def env(cluster: Cluster, crds: None, namespace: str) -> AsyncIterator[Env]:
    async with Simulator(tick_interval=0.05) as sim:
        world = sim.world
        world.create_org("octo-org")
        world.create_repo("octo-org", "app")
        pat = world.create_pat("admin").token
        kube = await KubeClient.connect(str(cluster.kubeconfig))
        github = GitHubClient(
            PersonalAccessToken(pat), config=GitHubConfig(api_url=sim.base_url), trust_env=False
        )
        options = ControllerOptions(
            namespace=namespace,
            sync_period=5.0,
            registering_max_age=0.5,
            pod=PodOptions(runner_image="ghcr.io/runnerd/runner:test", github_url=sim.base_url + "/"),
        )
        controllers = build(kube=kube, github=github, options=options)
        task = asyncio.create_task(controllers.manager.run(), name="manager")
        try:
            async with PodAgent(kube, sim.base_url, namespace) as agent:
                yield Env(sim, kube, github, controllers, agent, namespace, cluster)
        finally:
            controllers.manager.stop()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(task, 30)
            await github.close()
            await kube.close()


ARTICLE_RD = """
apiVersion: actions.summerwind.dev/v1alpha1
kind: RunnerDeployment
metadata:
  name: example-runner-deployment
  namespace: actions-runner-system
spec:
  replicas: 1
  template:
    spec:
      repository: octo-org/app
      labels:
        - self-hosted
        - arc-runner
"""


async def test_article_runner_deployment_registers_and_runs_a_job(env: Env) -> None:
    await env.apply(yaml.safe_load(ARTICLE_RD))

    def online() -> list[Any]:
        return [r for r in env.github_runners() if env.sim.world.runner_online(r)]

    runners = await wait_until("a runner online in GitHub", online)
    labels = {label.name for label in runners[0].labels}
    assert {"self-hosted", "arc-runner"} <= labels

    run = env.sim.world.enqueue_run(
        env.sim.world.repo_by_name(REPO), [JobSpec(("self-hosted", "arc-runner"), "test-job", 0.5)]
    )
    job_id = run.job_ids[0]
    job = await wait_until(
        "the job to complete", lambda: (j := env.sim.world.jobs[job_id]).status == "completed" and j
    )
    assert job.conclusion == "success"
    # the ephemeral runner is replaced (replicas: 1) and the finished one is gone from GitHub
    await wait_until(
        "a fresh runner online",
        lambda: [r for r in online() if r.name != job.runner_name],
    )
    assert job.runner_name not in {r.name for r in env.github_runners()}
    pods = (await env.kube.list(PODS, namespace=env.namespace)).items
    assert job.runner_name not in {p["metadata"]["name"] for p in pods}
