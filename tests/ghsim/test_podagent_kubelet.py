"""The pod agent plays the kubelet's part of starting a runner container: a required Secret or
ConfigMap key that is missing keeps the container from starting until it appears."""

from __future__ import annotations

import asyncio
import base64
from types import SimpleNamespace
from typing import Any

import pytest

from devcluster.wait import wait_until
from ghsim import JobSpec, Simulator
from ghsim.podagent import PodAgent, PodKey, required_refs

from .client import GitHub
from .test_podagent import FakeCoreV1, pod

JIT_FROM_SECRET = {
    "name": "ACTIONS_RUNNER_INPUT_JITCONFIG",
    "valueFrom": {"secretKeyRef": {"name": "runner-1", "key": "jitconfig"}},
}


@pytest.mark.parametrize(
    ("env", "required"),
    [
        ([], set()),
        ([{"name": "A", "value": "x"}], set()),
        ([{"name": "N", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}], set()),
        ([JIT_FROM_SECRET], {"ACTIONS_RUNNER_INPUT_JITCONFIG"}),
        ([{"name": "C", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "k"}}}], {"C"}),
        ([{"name": "O", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k", "optional": True}}}], set()),
    ],
)
def test_required_refs(env: list[dict[str, Any]], required: set[str]) -> None:
    assert required_refs(pod(env=env)) == required


class SecretsLater(FakeCoreV1):
    """A Kubernetes API whose Secret ``runner-1`` does not exist until :meth:`create` is called."""

    def __init__(self) -> None:
        super().__init__()
        self.secret: dict[str, str] | None = None
        self.reads = 0

    def create(self, jit_config: str) -> None:
        self.secret = {"jitconfig": base64.b64encode(jit_config.encode()).decode()}

    async def read_namespaced_secret(self, name: str, namespace: str) -> Any:
        self.reads += 1
        if self.secret is None or name != "runner-1":
            raise LookupError(f"secret {namespace}/{name} not found")
        return SimpleNamespace(data=self.secret)


async def test_a_missing_secret_holds_the_container_until_it_exists(gh: GitHub, sim: Simulator) -> None:
    run = sim.world.enqueue_run(sim.world.repo_by_name("octo-org/app"), [JobSpec(("self-hosted", "gpu"))])
    jit = await gh.post(
        "/orgs/octo-org/actions/runners/generate-jitconfig",
        json={"name": "runner-1", "runner_group_id": 1, "labels": ["gpu"]},
    )
    api = SecretsLater()
    async with PodAgent(api, sim.base_url, namespace="ns", watch=False) as agent:
        p = pod(env=[JIT_FROM_SECRET])
        agent.handle("ADDED", p)
        await wait_until("the Secret read again", lambda: api.reads >= 2, 10, step=0.05)
        assert not api.patches  # not started: no runner, no exit
        assert not agent.exits
        api.create(jit.body["encoded_jit_config"])
        await asyncio.wait_for(api.patched.wait(), 10)
        assert agent.exits == {PodKey.of(p): 0}
    assert sim.world.jobs[run.job_ids[0]].status == "completed"
