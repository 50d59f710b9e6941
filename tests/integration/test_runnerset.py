"""RunnerSet end to end: real API server (StatefulSet, volume controllers), ghsim, virtual runners."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from devcluster.cluster import Cluster
from devcluster.wait import wait_until
from ghsim import JobSpec, Simulator
from runnerd.controller.common import RUNNER_SETS
from runnerd.controller.runnerset_volumes import PERSISTENT_VOLUMES
from runnerd.kube.client import KubeClient
from runnerd.kube.resources import PERSISTENT_VOLUME_CLAIMS, PODS, SECRETS, STATEFUL_SETS
from runnerd.reconcile.credentials import ENV_JIT_CONFIG
from runnerd.reconcile.runnerset import ANNOTATION_CONSUMED_BY, LABEL_RUNNERSET_NAME
from tests.integration.support import REPO, controller_process, pod_agent, seed

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(120)]


@dataclass
class Env:
    sim: Simulator
    kube: KubeClient
    namespace: str

    def online(self) -> list[Any]:
        world = self.sim.world
        return [r for r in world.runners.values() if world.runner_online(r)]

    async def items(self, resource: Any, selector: str) -> list[dict[str, Any]]:
        return (await self.kube.list(resource, namespace=self.namespace, label_selector=selector)).items

    async def statefulsets(self, runnerset: str) -> list[dict[str, Any]]:
        return await self.items(STATEFUL_SETS, f"{LABEL_RUNNERSET_NAME}={runnerset}")

    def job(self, seconds: float) -> int:
        world = self.sim.world
        run = world.enqueue_run(
            world.repo_by_name(REPO), [JobSpec(("self-hosted", "arc-runner"), "job", seconds)]
        )
        return int(run.job_ids[0])


@pytest.fixture
async def env(cluster: Cluster, crds: list[str], namespace: str) -> AsyncIterator[Env]:
    async with Simulator(tick_interval=0.05) as sim:
        pat = seed(sim)
        async with (
            controller_process(
                cluster, sim, pat, namespace, sync_period=5.0, registering_max_age=0.5, drain_grace=1.0
            ) as controllers,
            pod_agent(cluster, sim, namespace),
        ):
            yield Env(sim, controllers.kube, namespace)


def runnerset(name: str, replicas: int, **template_spec: Any) -> dict[str, Any]:
    runner: dict[str, Any] = {"name": "runner", **template_spec.pop("runner", {})}
    return {
        "apiVersion": RUNNER_SETS.api_version,
        "kind": "RunnerSet",
        "metadata": {"name": name},
        "spec": {
            "repository": REPO,
            "labels": ["arc-runner"],
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "serviceName": name,
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [runner]}},
            **template_spec,
        },
    }


async def test_runnerset_runs_jobs_and_scales_down_without_killing_a_job(env: Env) -> None:
    await env.kube.create(RUNNER_SETS, runnerset("rs", 2), namespace=env.namespace)
    first = await wait_until("2 runners online", lambda: len(env.online()) == 2 and env.online())

    # One StatefulSet per runner; the credential is in its Secret, never in the pod spec.
    sets = await env.statefulsets("rs")
    assert len(sets) == 2
    assert all(s["spec"]["replicas"] == 1 for s in sets)
    assert {f"{s['metadata']['name']}-0" for s in sets} == {r.name for r in first}
    for sts in sets:
        name = sts["metadata"]["name"]
        pod = await env.kube.get(PODS, f"{name}-0", namespace=env.namespace)
        runner = next(c for c in pod["spec"]["containers"] if c["name"] == "runner")
        env_vars = {e["name"]: e for e in runner["env"]}
        assert env_vars["RUNNER_NAME"]["value"] == f"{name}-0"
        assert env_vars[ENV_JIT_CONFIG] == {
            "name": ENV_JIT_CONFIG,
            "valueFrom": {"secretKeyRef": {"name": name, "key": ENV_JIT_CONFIG}},
        }
        assert "RUNNER_TOKEN" not in env_vars
        assert all("value" not in e for e in runner["env"] if e["name"] == ENV_JIT_CONFIG)
        secret = await env.kube.get(SECRETS, name, namespace=env.namespace)
        assert secret["metadata"]["ownerReferences"][0]["uid"] == sts["metadata"]["uid"]

        # Single use: once GitHub lists the runner, the Secret no longer holds the credential.
        async def consumed(secret_name: str = name) -> bool:
            s = await env.kube.get(SECRETS, secret_name, namespace=env.namespace)
            annotations = s["metadata"].get("annotations") or {}
            return ANNOTATION_CONSUMED_BY in annotations and ENV_JIT_CONFIG not in (s.get("data") or {})

        await wait_until(f"the credential of {name} consumed", consumed)

    # Two jobs run; the ephemeral runners are replaced.
    jobs = [env.job(0.5), env.job(0.5)]
    world = env.sim.world
    await wait_until("2 jobs done", lambda: all(world.jobs[j].status == "completed" for j in jobs))
    assert [world.jobs[j].conclusion for j in jobs] == ["success", "success"]
    used = {world.jobs[j].runner_name for j in jobs}
    assert used == {r.name for r in first}
    fresh = await wait_until(
        "2 fresh runners online",
        lambda: (o := env.online()) and len(o) == 2 and not used & {r.name for r in o},
    )
    assert fresh

    # Scale to 0 while a job runs: the idle runner goes at once, the busy one after its job.
    long_job = env.job(6.0)
    busy = await wait_until("the long job to start", lambda: world.jobs[long_job].runner_name)
    await env.kube.patch(RUNNER_SETS, "rs", {"spec": {"replicas": 0}}, namespace=env.namespace)
    await wait_until(
        "only the busy runner left", lambda: [r.name for r in world.runners.values()] == [busy], within=10
    )
    assert world.jobs[long_job].status != "completed"

    async def runner_sets() -> list[str]:
        return [f"{s['metadata']['name']}-0" for s in await env.statefulsets("rs")]

    # the idle runner's StatefulSet is deleted right after its deregistration (a moment later)
    await wait_until("only the busy runner's StatefulSet left", lambda: _equals(runner_sets(), [busy]), 5)
    await wait_until("the long job done", lambda: world.jobs[long_job].status == "completed", within=15)
    assert world.jobs[long_job].conclusion == "success"
    await wait_until("no StatefulSet left", lambda: _empty(env.statefulsets("rs")))
    assert not world.runners

    async def status() -> dict[str, Any]:
        obj = await env.kube.get(RUNNER_SETS, "rs", namespace=env.namespace)
        return dict(obj.get("status") or {})

    final = await wait_until("status at 0", lambda: _at_zero(status()))
    assert final["desiredReplicas"] == 0
    assert final["selector"] == "app=rs"


async def _empty(items: Any) -> bool:
    return not await items


async def _at_zero(status: Any) -> dict[str, Any] | None:
    s = await status
    # eventually all zero: a status written while the busy runner's StatefulSet was being deleted
    # still counts it busy (terminating busy), until the reconcile that sees it gone
    zero = s.get("replicas") == 0 and s.get("readyReplicas") == 0 and s.get("busyReplicas") == 0
    return s if zero else None


async def test_runnerset_volume_goes_to_the_next_runner(env: Env) -> None:
    storage_class = f"cache-{uuid.uuid4().hex[:8]}"
    volume = {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": storage_class},
        "spec": {
            "capacity": {"storage": "1Gi"},
            "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": storage_class,
            "hostPath": {"path": f"/tmp/{storage_class}"},
        },
    }
    await env.kube.create(PERSISTENT_VOLUMES, volume)
    try:
        manifest = runnerset(
            "cached",
            1,
            runner={"volumeMounts": [{"name": "cache", "mountPath": "/cache"}]},
            volumeClaimTemplates=[
                {
                    "metadata": {"name": "cache"},
                    "spec": {
                        "storageClassName": storage_class,
                        "accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": "1Gi"}},
                    },
                }
            ],
        )
        await env.kube.create(RUNNER_SETS, manifest, namespace=env.namespace)
        first = (await wait_until("a runner online", env.online))[0].name

        async def claim_of(runner: str) -> dict[str, Any] | None:
            claims = await env.items(PERSISTENT_VOLUME_CLAIMS, f"{LABEL_RUNNERSET_NAME}=cached")
            return next((c for c in claims if c["metadata"]["name"] == f"cache-{runner}"), None)

        claim = await claim_of(first)
        assert claim is not None
        assert claim["spec"]["volumeName"] == storage_class

        job = env.job(0.2)
        await wait_until("the job done", lambda: env.sim.world.jobs[job].status == "completed")
        second = (
            await wait_until("the next runner online", lambda: [r for r in env.online() if r.name != first])
        )[0].name

        async def rebound() -> bool:
            c = await claim_of(second)
            return c is not None and c["spec"].get("volumeName") == storage_class

        await wait_until("the volume bound to the next runner's claim", rebound)
        assert await claim_of(first) is None  # the finished runner's claim was deleted, its volume kept
        await env.kube.patch(RUNNER_SETS, "cached", {"spec": {"replicas": 0}}, namespace=env.namespace)
        await wait_until("no StatefulSet left", lambda: _empty(env.statefulsets("cached")))
    finally:
        await env.kube.delete(PERSISTENT_VOLUMES, storage_class, missing_ok=True)


async def test_runnerset_template_change_rolls_runners_without_killing_a_job(env: Env) -> None:
    await env.kube.create(RUNNER_SETS, runnerset("roll", 1), namespace=env.namespace)
    first = (await wait_until("a runner online", env.online))[0].name
    old_hash = (await env.statefulsets("roll"))[0]["metadata"]["labels"]["runner-template-hash"]
    job = env.job(4.0)
    await wait_until("the job to start", lambda: env.sim.world.jobs[job].runner_name == first)

    template = {"containers": [{"name": "runner", "env": [{"name": "ROLLED", "value": "1"}]}]}
    await env.kube.patch(
        RUNNER_SETS, "roll", {"spec": {"template": {"spec": template}}}, namespace=env.namespace
    )
    second = (
        await wait_until(
            "a runner of the new template online", lambda: [r for r in env.online() if r.name != first]
        )
    )[0].name
    assert env.sim.world.jobs[job].status != "completed"  # the old runner keeps its job meanwhile
    sets = {s["metadata"]["name"] + "-0": s for s in await env.statefulsets("roll")}
    assert sets[second]["metadata"]["labels"]["runner-template-hash"] != old_hash
    runner = next(c for c in sets[second]["spec"]["template"]["spec"]["containers"] if c["name"] == "runner")
    assert {"name": "ROLLED", "value": "1"} in runner["env"]

    await wait_until("the job done", lambda: env.sim.world.jobs[job].status == "completed", within=15)
    assert env.sim.world.jobs[job].conclusion == "success"

    async def only_new() -> bool:
        names = [s["metadata"]["name"] + "-0" for s in await env.statefulsets("roll")]
        return names == [second] and [r.name for r in env.sim.world.runners.values()] == [second]

    await wait_until("only the new runner left", only_new)
    status = (await env.kube.get(RUNNER_SETS, "roll", namespace=env.namespace)).get("status") or {}
    assert status.get("updatedReplicas") == 1


async def _equals(value: Any, expected: object) -> bool:
    return bool(await value == expected)
