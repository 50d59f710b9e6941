"""Controller benchmark: runner pods created per second, and Kubernetes API writes per ephemeral
runner lifecycle (Runner created → pod created → runner online → job run → pod and Runner removed).

It runs the real control plane (devcluster), ghsim in-process as GitHub, the controller in-process
and virtual runners in the pods; every request the controller sends to the API server is counted.

    .venv/bin/python bench/controller_bench.py [--runners 100] [--jobs-per-runner 1]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


from devcluster import binaries  # noqa: E402
from devcluster.cluster import Cluster, ClusterConfig, GpuShape  # noqa: E402
from devcluster.stack import install_crds  # noqa: E402
from ghsim import JobSpec, Simulator  # noqa: E402
from ghsim.podagent import connect  # noqa: E402
from runnerd.controller.app import build  # noqa: E402
from runnerd.controller.common import PODS, RUNNER_DEPLOYMENTS, RUNNERS, ControllerOptions  # noqa: E402
from runnerd.github import GitHubClient, GitHubConfig, PersonalAccessToken  # noqa: E402
from runnerd.kube.client import KubeClient  # noqa: E402
from runnerd.manifests.pod import PodOptions  # noqa: E402


class CountingKubeClient(KubeClient):
    """Counts every request by method and resource (and subresource)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.counts: Counter[str] = Counter()
        self.pod_create_times: list[float] = []

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: Sequence[tuple[str, str]] = (),
        body: Any = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        parts = [p for p in path.split("/") if p]
        # /api/v1/namespaces/ns/pods[/name[/sub]] or /apis/g/v/namespaces/ns/plural[/name[/sub]]
        if "namespaces" in parts and len(parts) > parts.index("namespaces") + 2:
            rest = parts[parts.index("namespaces") + 2 :]
        else:
            rest = parts[2:] if parts[0] == "api" else parts[3:]
        resource = rest[0] if rest else "?"
        sub = rest[2] if len(rest) > 2 else ""
        self.counts[f"{method} {resource}{'/' + sub if sub else ''}"] += 1
        result = await super().request(method, path, query=query, body=body, content_type=content_type)
        if method == "POST" and resource == "pods":
            self.pod_create_times.append(time.monotonic())
        return result


async def run(args: argparse.Namespace) -> dict[str, Any]:
    state = Path(tempfile.mkdtemp(prefix="runnerd-bench-"))
    nodes = max(2, args.runners // 100 + 1)
    cluster = Cluster(
        ClusterConfig(state_dir=state, cpu_nodes=nodes, gpu_shapes=(GpuShape(nodes=0),), max_pods=110),
        binaries.ensure(),
    )
    cluster.start()
    namespace = "bench"
    cluster.request("POST", "/api/v1/namespaces", {"metadata": {"name": namespace}})
    install_crds(cluster)
    try:
        async with Simulator(tick_interval=0.05) as sim:
            sim.world.create_org("octo-org")
            repo = sim.world.create_repo("octo-org", "app")
            token = sim.world.create_pat("admin").token
            from runnerd.kube.config import load_config

            kube = CountingKubeClient(await load_config(str(cluster.kubeconfig)))
            agent_kube = await KubeClient.connect(str(cluster.kubeconfig))
            github = GitHubClient(
                PersonalAccessToken(token), config=GitHubConfig(api_url=sim.base_url), trust_env=False
            )
            options = ControllerOptions(
                namespace=namespace,
                sync_period=10.0,
                registering_max_age=1.0,
                drain_grace=2.0,
                pod=PodOptions(
                    runner_image="ghcr.io/runnerd/actions-runner:bench", github_url=sim.base_url + "/"
                ),
            )
            controllers = build(kube=kube, github=github, options=options)
            manager = asyncio.create_task(controllers.manager.run())
            try:
                agent = connect(
                    str(cluster.kubeconfig),
                    sim.base_url,
                    namespace=namespace,
                    label_selector="actions-runner",
                    poll_wait=1.0,
                )
                async with agent:
                    return await scenario(args, sim, repo, kube, agent_kube, controllers, namespace)
            finally:
                controllers.manager.stop()
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait_for(manager, 60)
                await github.close()
                await kube.close()
                await agent_kube.close()
    finally:
        peak = cluster.peak_rss_bytes()
        cluster.stop()
        print(f"control plane peak RSS: {sum(peak.values()) / 2**20:.0f} MiB", file=sys.stderr)


async def wait(what: str, probe: Any, within: float) -> None:
    deadline = time.monotonic() + within
    while not probe():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        await asyncio.sleep(0.05)


async def scenario(
    args: argparse.Namespace,
    sim: Simulator,
    repo: Any,
    kube: CountingKubeClient,
    observer: KubeClient,
    controllers: Any,
    ns: str,
) -> dict[str, Any]:
    n = args.runners
    world = sim.world
    rd = {
        "apiVersion": "actions.summerwind.dev/v1alpha1",
        "kind": "RunnerDeployment",
        "metadata": {"name": "bench", "namespace": ns},
        "spec": {
            "replicas": 0,
            "template": {"spec": {"repository": "octo-org/app", "labels": ["self-hosted", "bench"]}},
        },
    }
    await kube.create(RUNNER_DEPLOYMENTS, rd, namespace=ns)
    await asyncio.sleep(1.0)
    kube.counts.clear()
    kube.pod_create_times.clear()

    # 1) scale from 0 to n: pods created per second
    t0 = time.monotonic()
    await kube.patch(RUNNER_DEPLOYMENTS, "bench", {"spec": {"replicas": n}}, namespace=ns)
    await wait("n pods created", lambda: len(kube.pod_create_times) >= n, 300)
    created_s = kube.pod_create_times[n - 1] - t0
    await wait(
        "n runners online", lambda: sum(world.runner_online(r) for r in world.runners.values()) >= n, 300
    )
    online_s = time.monotonic() - t0

    # 2) every runner takes one job; as jobs are assigned, the desired count drops to 0 (as an
    # autoscaler would), so each runner lives exactly one ephemeral lifecycle and nothing is replaced
    jobs = [JobSpec(("self-hosted", "bench"), f"j{i}", 1.0) for i in range(n)]
    run = world.enqueue_run(repo, jobs)
    await wait("all jobs assigned", lambda: all(world.jobs[j].runner_id for j in run.job_ids), 300)
    await kube.patch(RUNNER_DEPLOYMENTS, "bench", {"spec": {"replicas": 0}}, namespace=ns)
    await wait("all jobs done", lambda: all(world.jobs[j].status == "completed" for j in run.job_ids), 600)
    await wait("no runners left in GitHub", lambda: not world.runners, 300)
    t_clean = time.monotonic()
    while (await observer.list(RUNNERS, namespace=ns)).items or (
        await observer.list(PODS, namespace=ns)
    ).items:
        if time.monotonic() - t_clean > 300:
            raise TimeoutError("Runner objects and pods to be removed")
        await asyncio.sleep(0.2)
    lifecycle = Counter(kube.counts)
    completed = len(run.job_ids)
    runners_total = controllers.replica_set.runners_created
    waits = [world.jobs[j].assigned_at - world.jobs[j].queued_at for j in run.job_ids]  # type: ignore[operator]
    writes_only = {k: v for k, v in lifecycle.items() if not k.startswith("GET")}
    per_runner = {k: round(v / runners_total, 2) for k, v in sorted(writes_only.items())}
    conclusions = Counter(world.jobs[j].conclusion for j in run.job_ids)
    return {
        "runners": n,
        "jobs": completed,
        "conclusions": dict(conclusions),
        "scale_up": {
            "pods_created_s": round(created_s, 2),
            "pods_per_s": round(n / created_s, 1),
            "all_online_s": round(online_s, 2),
        },
        "runners_created": runners_total,
        "writes_per_runner": per_runner,
        "writes_per_runner_total": round(sum(writes_only.values()) / runners_total, 2),
        "job_queue_wait_s": {
            "p50": round(statistics.median(waits), 3),
            "p95": round(sorted(waits)[int(0.95 * (len(waits) - 1))], 3),
        },
        "github_calls_per_job": round(controllers.github.stats.snapshot().total() / max(1, completed), 2),
        "github_calls": {
            f"{ep} {status}": count
            for (ep, status), count in sorted(controllers.github.stats.snapshot().calls.items())
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runners", type=int, default=100)
    parser.add_argument("--jobs-per-runner", type=int, default=1)
    args = parser.parse_args()
    result = asyncio.run(run(args))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
