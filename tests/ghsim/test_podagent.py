"""The pod agent's decisions, with a fake Kubernetes API (no cluster)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from ghsim import JobSpec, Simulator
from ghsim.podagent import (
    EXIT_CODE_ANNOTATION,
    EXIT_CONTAINER_ANNOTATION,
    PodAgent,
    PodKey,
    container_env,
    wants_virtual_runner,
)

from .client import GitHub
from .scaleset_client import ScaleSetClient


def pod(
    name: str = "runner-1", *, phase: str = "Running", env: list[dict[str, Any]] | None = None, **meta: Any
) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}", **meta},
        "spec": {
            "nodeName": "kwok-1",
            "containers": [{"name": "docker"}, {"name": "runner", "env": env or []}],
        },
        "status": {"phase": phase},
    }


@pytest.mark.parametrize(
    ("p", "expected"),
    [
        (pod(), True),
        (pod(phase="Pending"), False),
        (pod(deletionTimestamp="2026-01-01T00:00:00Z"), False),
        (pod(annotations={EXIT_CODE_ANNOTATION: "0"}), False),
        ({**pod(), "spec": {"containers": [{"name": "other"}]}}, False),
    ],
)
def test_which_pods_get_a_virtual_runner(p: dict[str, Any], expected: bool) -> None:
    assert wants_virtual_runner(p) is expected


async def test_container_env_resolves_references() -> None:
    reads: list[tuple[str, str, str, str]] = []

    async def read_ref(kind: str, namespace: str, name: str, key: str) -> str | None:
        reads.append((kind, namespace, name, key))
        return {"token": "AAAA", "labels": "gpu"}.get(key)

    env = await container_env(
        pod(
            env=[
                {"name": "RUNNER_ORG", "value": "octo-org"},
                {"name": "RUNNER_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                {"name": "RUNNER_TOKEN", "valueFrom": {"secretKeyRef": {"name": "reg", "key": "token"}}},
                {"name": "RUNNER_LABELS", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "labels"}}},
                {"name": "MISSING", "valueFrom": {"secretKeyRef": {"name": "reg", "key": "nope"}}},
            ]
        ),
        read_ref,
    )
    assert env == {
        "RUNNER_ORG": "octo-org",
        "RUNNER_NAME": "runner-1",
        "NODE": "kwok-1",
        "RUNNER_TOKEN": "AAAA",
        "RUNNER_LABELS": "gpu",
    }
    assert reads[0] == ("Secret", "ns", "reg", "token")


class FakeCoreV1:
    def __init__(self) -> None:
        self.patches: list[tuple[str, str, dict[str, Any]]] = []
        self.patched = asyncio.Event()

    async def patch_namespaced_pod(self, name: str, namespace: str, body: dict[str, Any]) -> None:
        self.patches.append((name, namespace, body))
        self.patched.set()


async def test_runs_the_pod_and_annotates_its_exit(gh: GitHub, sim: Simulator) -> None:
    run = sim.world.enqueue_run(sim.world.repo_by_name("octo-org/app"), [JobSpec(("self-hosted", "gpu"))])
    jit = await gh.post(
        "/orgs/octo-org/actions/runners/generate-jitconfig",
        json={"name": "runner-1", "runner_group_id": 1, "labels": ["gpu"]},
    )
    api = FakeCoreV1()
    async with PodAgent(api, sim.base_url, namespace="ns", watch=False) as agent:
        p = pod(env=[{"name": "ACTIONS_RUNNER_INPUT_JITCONFIG", "value": jit.body["encoded_jit_config"]}])
        agent.handle("ADDED", p)
        agent.handle("MODIFIED", p)  # one runner per pod
        assert len(agent.tasks) == 1
        await asyncio.wait_for(api.patched.wait(), 10)
        assert api.patches == [
            (
                "runner-1",
                "ns",
                {
                    "metadata": {
                        "annotations": {EXIT_CODE_ANNOTATION: "0", EXIT_CONTAINER_ANNOTATION: "runner"}
                    }
                },
            )
        ]
        assert agent.exits == {PodKey.of(p): 0}
    assert sim.world.jobs[run.job_ids[0]].status == "completed"


async def test_deleting_the_pod_kills_its_runner(gh: GitHub, sim: Simulator) -> None:
    job_id = sim.world.enqueue_run(
        sim.world.repo_by_name("octo-org/app"), [JobSpec(("self-hosted", "gpu"), duration=3600)]
    ).job_ids[0]
    jit = await gh.post(
        "/orgs/octo-org/actions/runners/generate-jitconfig",
        json={"name": "runner-1", "runner_group_id": 1, "labels": ["gpu"]},
    )
    api = FakeCoreV1()
    async with PodAgent(api, sim.base_url, namespace="ns", watch=False) as agent:
        p = pod(env=[{"name": "ACTIONS_RUNNER_INPUT_JITCONFIG", "value": jit.body["encoded_jit_config"]}])
        agent.handle("ADDED", p)
        async with asyncio.timeout(10):
            await sim.wait_for(lambda: sim.world.jobs[job_id].status == "in_progress")
        task = agent.tasks[PodKey.of(p)]
        agent.handle("DELETED", p)
        with pytest.raises(asyncio.CancelledError):
            await task
    assert (sim.world.jobs[job_id].status, sim.world.jobs[job_id].conclusion) == ("completed", "failure")
    assert api.patches == []


async def test_runs_a_scale_set_jit_config(sim: Simulator, ssc: ScaleSetClient) -> None:
    """An EphemeralRunner pod of ARC's scale-set mode: ``ACTIONS_RUNNER_INPUT_JITCONFIG`` from
    ``generatejitconfig`` runs exactly as a REST JIT config does."""
    scale_set = (await ssc.create_scale_set("arc-runner-set")).body
    job_id = sim.world.enqueue_run(
        sim.world.repo_by_name("octo-org/app"), [JobSpec(("arc-runner-set",))]
    ).job_ids[0]
    jit = (await ssc.jit(scale_set["id"], "arc-runner-set-abc12-runner-x1y2z")).body
    api = FakeCoreV1()
    async with PodAgent(api, sim.base_url, namespace="ns", watch=False) as agent:
        p = pod(
            "arc-runner-set-abc12-runner-x1y2z",
            env=[{"name": "ACTIONS_RUNNER_INPUT_JITCONFIG", "value": jit["encodedJITConfig"]}],
        )
        agent.handle("ADDED", p)
        await asyncio.wait_for(api.patched.wait(), 10)
        assert agent.exits == {PodKey.of(p): 0}
    job = sim.world.jobs[job_id]
    assert (job.status, job.runner_name) == ("completed", "arc-runner-set-abc12-runner-x1y2z")
    assert sim.actions.scale_sets[scale_set["id"]].statistics()["totalRegisteredRunners"] == 0
