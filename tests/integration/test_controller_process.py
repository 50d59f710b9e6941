"""``runnerd controller`` as real processes: killed mid-scale-down and restarted; leader election."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from devcluster.cluster import Cluster
from devcluster.wait import wait_until
from ghsim import JobSpec, Simulator
from runnerd.controller.common import RUNNER_DEPLOYMENTS, RUNNERS
from runnerd.kube.client import KubeClient
from runnerd.kube.resources import LEASES, PODS
from tests.integration.support import ARTICLE_RD, REPO, pod_agent, seed

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(180)]


@dataclass
class Procs:
    sim: Simulator
    kube: KubeClient
    namespace: str
    cluster: Cluster
    token: str
    log_dir: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, name: str, *extra: str) -> subprocess.Popen[bytes]:
        env = {
            **os.environ,
            "GITHUB_TOKEN": self.token,
            "POD_NAME": name,
            "POD_NAMESPACE": self.namespace,
            "PYTHONUNBUFFERED": "1",
        }
        argv = [
            sys.executable,
            "-m",
            "runnerd.cli",
            "controller",
            f"--kubeconfig={self.cluster.kubeconfig}",
            f"--watch-namespace={self.namespace}",
            f"--github-url={self.sim.base_url}",
            f"--runner-github-url={self.sim.base_url}/",
            "--sync-period=5s",
            "--drain-grace=2s",
            "--log-level=debug",
            *extra,
        ]
        log = (self.log_dir / f"{name}.log").open("ab")
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        self.procs[name] = proc
        return proc

    def kill(self, name: str) -> None:
        proc = self.procs.pop(name)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        self.procs.clear()

    def log(self, name: str) -> str:
        return (self.log_dir / f"{name}.log").read_text(errors="replace")[-3000:]

    async def runners(self) -> list[dict[str, Any]]:
        return (await self.kube.list(RUNNERS, namespace=self.namespace)).items

    async def pods(self) -> list[dict[str, Any]]:
        return (await self.kube.list(PODS, namespace=self.namespace)).items


@pytest.fixture
async def procs(cluster: Cluster, crds: list[str], namespace: str, tmp_path: Path) -> AsyncIterator[Procs]:
    async with Simulator(tick_interval=0.05) as sim:
        token = seed(sim)
        kube = await KubeClient.connect(str(cluster.kubeconfig))
        p = Procs(sim, kube, namespace, cluster, token, tmp_path)
        try:
            async with pod_agent(cluster, sim, namespace):
                yield p
        finally:
            p.stop_all()
            await kube.close()


def online(p: Procs) -> list[Any]:
    return [r for r in p.sim.world.runners.values() if p.sim.world.runner_online(r)]


async def test_controller_killed_during_scale_down_converges_without_orphans_or_killed_jobs(
    procs: Procs,
) -> None:
    p = procs
    p.start("first")
    rd = yaml.safe_load(ARTICLE_RD)
    rd["metadata"]["namespace"] = p.namespace
    rd["spec"]["replicas"] = 3
    await p.kube.create(RUNNER_DEPLOYMENTS, rd, namespace=p.namespace)
    await wait_until("3 runners online", lambda: len(online(p)) == 3, 60)
    world = p.sim.world
    run = world.enqueue_run(world.repo_by_name(REPO), [JobSpec(("self-hosted", "arc-runner"), "long", 6.0)])
    await wait_until("the job running", lambda: world.jobs[run.job_ids[0]].status == "in_progress")

    await p.kube.patch(
        RUNNER_DEPLOYMENTS, rd["metadata"]["name"], {"spec": {"replicas": 0}}, namespace=p.namespace
    )

    async def draining() -> bool:
        return any(r["metadata"].get("deletionTimestamp") for r in await p.runners())

    await wait_until("scale-down to begin", draining, 30)
    p.kill("first")  # mid scale-down: runners are being drained, one is running a job

    p.start("second")
    job = await wait_until(
        "the job to complete", lambda: (j := world.jobs[run.job_ids[0]]).status == "completed" and j, 60
    )
    assert job.conclusion == "success", p.log("second")

    async def converged() -> bool:
        return not world.runners and not await p.runners() and not await p.pods()

    await wait_until("no runner, no Runner object, no pod left", converged, 60)


async def test_leader_election_one_acts_and_the_other_takes_over(procs: Procs) -> None:
    p = procs
    flags = (
        "--enable-leader-election",
        "--leader-election-id=runnerd-test",
        f"--leader-election-namespace={p.namespace}",
        "--leader-election-lease-duration=4s",
        "--leader-election-renew-deadline=3s",
        "--leader-election-retry-period=500ms",
    )
    p.start("alpha", *flags)
    p.start("beta", *flags)

    async def holder() -> str:
        try:
            lease = await p.kube.get(LEASES, "runnerd-test", namespace=p.namespace)
        except Exception:
            return ""
        return str((lease.get("spec") or {}).get("holderIdentity") or "")

    leader = await wait_until("a leader", holder, 30)
    assert leader in ("alpha", "beta")
    rd = yaml.safe_load(ARTICLE_RD)
    rd["metadata"]["namespace"] = p.namespace
    await p.kube.create(RUNNER_DEPLOYMENTS, rd, namespace=p.namespace)
    await wait_until("the leader to bring a runner online", lambda: len(online(p)) == 1, 60)

    p.kill(leader)
    follower = "beta" if leader == "alpha" else "alpha"

    async def took_over() -> bool:
        return await holder() == follower

    await wait_until("the follower to take the lease", took_over, 15)
    await p.kube.patch(
        RUNNER_DEPLOYMENTS, rd["metadata"]["name"], {"spec": {"replicas": 2}}, namespace=p.namespace
    )
    await wait_until("the new leader to act", lambda: len(online(p)) == 2, 60)
    assert p.procs[follower].poll() is None
