"""``runnerd migrate-from-arc`` on the devcluster, with ARC-shaped objects and a busy runner: idle
and finished runners are released at once, the busy one keeps ARC's finalizer until its job is
done (the job succeeds), ARC's RunnerSet StatefulSet is deregistered and deleted, ARC's admission
webhook configuration is removed."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import pytest
import yaml

from devcluster.cluster import Cluster
from devcluster.wait import wait_until
from ghsim import JobSpec, Simulator
from ghsim import Scope as SimScope
from runnerd import cli, migrate
from runnerd.controller.common import RUNNER_DEPLOYMENTS
from runnerd.kube.client import KubeClient
from runnerd.kube.resources import PODS, STATEFUL_SETS
from runnerd.reconcile.migration import ARC_POD_FINALIZER
from runnerd.runtime import NotFound
from tests.integration.support import ARTICLE_RD, REPO, pod_agent, seed
from tests.integration.test_chart import arc_objects, create_owned

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(180)]

ARC_WEBHOOK = "actions-runner-controller-validating-webhook-configuration"


def arc_statefulset(namespace: str, sim_url: str, token: str) -> dict[str, Any]:
    """A RunnerSet runner as ARC makes it: one StatefulSet, its pod's RUNNER_NAME/RUNNER_TOKEN as
    ARC's pod webhook injects them (here written into the template)."""
    name = "example-runnerset-x8k2m"
    labels = {"runnerset-name": "example-runnerset", "runner-template-hash": "5c7d9f8b6"}
    env = {
        "RUNNER_REPO": REPO,
        "RUNNER_LABELS": "self-hosted,arc-set",
        "GITHUB_URL": sim_url + "/",
        "RUNNER_EPHEMERAL": "true",
        "RUNNER_NAME": f"{name}-0",
        "RUNNER_TOKEN": token,
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "replicas": 1,
            "serviceName": name,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": {**labels, "actions-runner": ""}},
                "spec": {
                    "containers": [
                        {
                            "name": "runner",
                            "image": "summerwind/actions-runner:latest",
                            "env": [{"name": k, "value": v} for k, v in env.items()],
                        }
                    ]
                },
            },
        },
    }


async def migrate_once(
    cluster: Cluster, namespace: str, pat: str, sim_url: str, *flags: str
) -> tuple[int, str]:
    args = cli.build_parser().parse_args(
        ["migrate-from-arc", "--kubeconfig", str(cluster.kubeconfig), "--namespace", namespace,
         "--github-url", sim_url, "--interval", "0.5", *flags]
    )  # fmt: skip
    out = io.StringIO()
    code = await migrate.run(args, {"github_token": pat}, out)
    return code, out.getvalue()


async def test_migrate_from_arc_releases_idle_and_done_runners_and_waits_for_busy_ones(
    cluster: Cluster, crds: list[str], namespace: str
) -> None:
    async with (
        Simulator(tick_interval=0.05) as sim,
        await KubeClient.connect(str(cluster.kubeconfig)) as kube,
    ):
        world = sim.world
        pat = seed(sim)
        token = world.issue_token(SimScope("repo", REPO), "registration").token
        rd = yaml.safe_load(ARTICLE_RD)
        rd["metadata"]["namespace"] = namespace
        rd = await kube.create(RUNNER_DEPLOYMENTS, rd, namespace=namespace)
        arc_pods: list[str] = []
        for suffix in ("busy1", "idle1"):
            rrs, runner, pod = arc_objects(rd, namespace, sim.base_url, token)
            for obj in (rrs, runner, pod):
                obj["metadata"]["name"] += suffix
            runner["spec"] = {**runner["spec"]}
            pod["spec"]["containers"][0]["env"] = [
                {**e, "value": pod["metadata"]["name"]} if e["name"] == "RUNNER_NAME" else e
                for e in pod["spec"]["containers"][0]["env"]
            ]
            await create_owned(kube, rd, rrs, runner, pod)
            arc_pods.append(pod["metadata"]["name"])
        busy, idle = arc_pods
        sts = await kube.create(
            STATEFUL_SETS, arc_statefulset(namespace, sim.base_url, token), namespace=namespace
        )
        sts_runner = f"{sts['metadata']['name']}-0"
        cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump({
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": ARC_WEBHOOK},
            "webhooks": [],
        }))  # fmt: skip

        async with pod_agent(cluster, sim, namespace):
            names = {busy, idle, sts_runner}
            await wait_until(
                "ARC's three runners online",
                lambda: names <= {r.name for r in world.runners.values() if world.runner_online(r)},
                60,
                state=lambda: ({r.name: world.runner_online(r) for r in world.runners.values()}, names),
            )
            run = world.enqueue_run(
                world.repo_by_name(REPO), [JobSpec(("self-hosted", "arc-runner"), "build", 6.0)]
            )
            job = await wait_until(
                "a job on ARC's busy runner",
                lambda: (j := world.jobs[run.job_ids[0]]).status == "in_progress" and j,
            )
            if job.runner_name != busy:  # whichever took it is the busy one
                busy, idle = idle, busy

            code, out = await migrate_once(cluster, namespace, pat, sim.base_url)
            assert code == migrate.EXIT_WAITING, out
            assert f"wait   Pod {namespace}/{busy}: runner {busy} is busy" in out
            assert (
                cluster.kubectl("get", "validatingwebhookconfiguration", ARC_WEBHOOK, check=False).returncode
                != 0
            )

            async def finalizers(name: str) -> list[str]:
                return list(
                    (await kube.get(PODS, name, namespace=namespace))["metadata"].get("finalizers") or []
                )

            assert await finalizers(idle) == []
            assert await finalizers(busy) == [ARC_POD_FINALIZER]  # the job's pod is not released
            assert sts_runner not in {r.name for r in world.runners.values()}  # deregistered ...
            with pytest.raises(NotFound):  # ... and its StatefulSet deleted
                await kube.get(STATEFUL_SETS, sts["metadata"]["name"], namespace=namespace)

            # --wait: released once its job is done; the job was not interrupted
            code, out = await asyncio.wait_for(
                migrate_once(cluster, namespace, pat, sim.base_url, "--wait"), 60
            )
            assert code == 0, out
            done = world.jobs[run.job_ids[0]]
            assert (done.status, done.conclusion, done.runner_name) == ("completed", "success", busy)
            assert await finalizers(busy) == []
            assert pat not in out
            assert token not in out
