"""ghsim's pod agent on the real control plane: a pod with a valid JIT config becomes an online
runner, takes a job, and its container ends with exit code 0 when the job completes; a pod with a
reused JIT config fails the way the real runner does."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from kubernetes_asyncio import client as k8s
from kubernetes_asyncio import config as k8s_config

from devcluster.cluster import Cluster
from devcluster.wait import wait_until
from ghsim import JobSpec, Simulator
from ghsim import Scope as SimScope
from ghsim.podagent import PodAgent

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(90)]


@pytest.fixture
async def core(cluster: Cluster) -> AsyncIterator[k8s.CoreV1Api]:
    configuration = k8s.Configuration()
    await k8s_config.load_kube_config(config_file=str(cluster.kubeconfig), client_configuration=configuration)
    async with k8s.ApiClient(configuration) as api:
        yield k8s.CoreV1Api(api)


def runner_pod(name: str, jit: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"actions-runner": ""}},
        "spec": {
            "restartPolicy": "Never",
            "containers": [
                {
                    "name": "runner",
                    "image": "ghcr.io/runnerd/actions-runner:test",
                    "env": [{"name": "ACTIONS_RUNNER_INPUT_JITCONFIG", "value": jit}],
                }
            ],
        },
    }


async def test_jit_pod_runs_a_job_and_exits_zero(core: k8s.CoreV1Api, namespace: str) -> None:
    async with Simulator(tick_interval=0.05) as sim:
        world = sim.world
        world.create_org("octo-org")
        repo = world.create_repo("octo-org", "app")
        runner, jit = world.generate_jit(SimScope("repo", "octo-org/app"), "pod-runner", 1, ["arc-runner"])
        async with PodAgent(
            core, sim.base_url, namespace=namespace, label_selector="actions-runner", poll_wait=1
        ):
            await core.create_namespaced_pod(namespace, runner_pod("pod-runner", jit))
            await wait_until("the runner online", lambda: world.runner_online(runner))
            run = world.enqueue_run(repo, [JobSpec(("self-hosted", "arc-runner"), "build", 2.0)])
            job = world.jobs[run.job_ids[0]]

            async def not_ready_while_job_runs() -> Any:
                pod = await core.read_namespaced_pod("pod-runner", namespace)
                conditions = {c.type: c for c in pod.status.conditions or ()}
                ready = conditions.get("Ready")
                return conditions if ready is not None and ready.status == "False" else None

            conditions = await wait_until("the pod not Ready while its job runs", not_ready_while_job_runs)
            assert conditions["Ready"].reason == "JobRunning"
            assert conditions["PodScheduled"].status == "True"  # the other conditions are kept
            assert job.status == "in_progress"
            await wait_until("the job to complete", lambda: job.status == "completed")
            assert (job.conclusion, job.runner_name) == ("success", "pod-runner")

            async def pod_succeeded() -> Any:
                pod = await core.read_namespaced_pod("pod-runner", namespace)
                return pod if pod.status.phase == "Succeeded" else None

            pod = await wait_until("the pod to succeed", pod_succeeded)
            assert pod.status.container_statuses[0].state.terminated.exit_code == 0
            assert "pod-runner" not in {r.name for r in world.runners.values()}  # ephemeral: gone

            # the same JIT config again: single use, so the runner process fails (exit 1)
            await core.create_namespaced_pod(namespace, runner_pod("pod-reused", jit))

            async def pod_failed() -> Any:
                pod = await core.read_namespaced_pod("pod-reused", namespace)
                return pod if pod.status.phase == "Failed" else None

            failed = await wait_until("the reused-config pod to fail", pod_failed)
            assert failed.status.container_statuses[0].state.terminated.exit_code == 1
