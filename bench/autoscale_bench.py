"""Autoscaling benchmark: a burst of queued jobs, served through the webhook path and the pull metric.

Each scenario runs on the real control plane (devcluster), with ghsim in-process as GitHub (rate
limits off: the benchmark measures the controller, not the budget), **the controller as its own
process** (``runnerd controller``, as in production and in the trace bench; ``--in-process`` runs it
in the benchmark's event loop instead, as before 2026-12-07's fourth pass) and virtual runners in
the pods with no boot delay. Each scenario gets its own namespace and simulator, a RunnerDeployment
at 0 replicas and an HRA with ``minReplicas: 0``:

* ``webhook``: ``scaleUpTriggers: [{githubEvent: {workflowJob: {}}}]`` and no metric; a ghsim hook
  posts every ``workflow_job`` delivery to the controller's webhook server; the safety-net poll runs
  with its defaults (60 s bound, 1000 calls/hour) and its calls are counted;
* ``pull``: ``TotalNumberOfQueuedAndInProgressWorkflowRuns`` for the repository, no webhook, at a
  sync period of ``--pull-sync`` seconds (ARC's default: 60). The burst is queued right after the
  HRA's reconcile, so it waits (almost) a whole sync period: the worst case; a burst at a random
  moment waits half a period on average;
* ``article``: the article's shape, both at once: the trigger (webhooks) and the metric (sync period
  60 s), so the metric's GitHub cost under a burst of reservation writes is measured;
* ``scale``: the creation hop alone, no webhook and no HRA: the RunnerDeployment is scaled from 0
  to ``--jobs`` in one write, and each Runner object and pod is timed from that write (the pods
  per second are what the ceiling compares; in the webhook modes the pods cannot come faster than
  the deliveries).

Webhooks come from one organization hook (like a real installation), which ghsim delivers with its
default bounded parallelism (16 in flight), as GitHub does. A relay in the benchmark sits between
the hook and the controller: it notes when each ``queued`` delivery was received and when the
controller answered it (the controller answers once the reservation is durable), and forwards it.

Measured per job, **from the job's ``queued_at``** (what users feel) and, for the webhook modes, from
the moment the ``queued`` delivery was received: until a runner pod was created (jobs and pods
paired first come, first served) and until GitHub assigned the job to a runner; for the webhook
modes, every hop from receipt (reservation written, deployment and replica set scaled, Runner
objects, pods), also from ``queued_at``, as the benchmark's own informers saw them. GitHub API calls
are every call the controller's token made (counted by ghsim) from the burst until every job was
assigned, and until every job was done and the pool back at zero; the controller process's CPU
seconds over the burst. ``--cprofile FILE`` profiles the controller process (cProfile,
``bench/memprofile``): ``FILE.<mode>`` is written when it exits.

At the end (``--ceiling``), the creation ceiling: the same runner pods (the manifest of one the
controller made) created by a plain loop with 64 requests in flight against the same API server;
the controller's pod-creation rate during the burst is reported as a share of it.

    .venv/bin/python bench/autoscale_bench.py [--jobs 200] [--jobs-per-run 10] [--job-seconds 60]
        [--pull-sync 60] [--modes webhook article pull] [--ceiling] [--no-reservation-journal]
        [--in-process] [--cprofile FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


from autoscale_parts import (  # noqa: E402  bench/ is the script's directory
    LABELS,
    REPO,
    SECRET,
    ControllerProcess,
    Relay,
    Watching,
    api_writes,
    ceiling,
    controller_calls,
    hra_manifest,
    pod_template,
    summary,
    wait,
)
from autoscale_report import measures, scale_measures, table  # noqa: E402
from devcluster import binaries  # noqa: E402
from devcluster.cluster import Cluster, ClusterConfig, GpuShape  # noqa: E402
from devcluster.ports import free_port  # noqa: E402
from devcluster.stack import install_crds  # noqa: E402
from ghsim import JobSpec, SimConfig, Simulator  # noqa: E402
from ghsim.entities import Scope as SimScope  # noqa: E402
from ghsim.podagent import connect  # noqa: E402
from runnerd.controller.app import build  # noqa: E402
from runnerd.controller.common import (  # noqa: E402
    HORIZONTAL_RUNNER_AUTOSCALERS,
    RUNNER_DEPLOYMENTS,
    ControllerOptions,
)
from runnerd.github import GitHubClient, GitHubConfig, PersonalAccessToken  # noqa: E402
from runnerd.kube.client import KubeClient  # noqa: E402
from runnerd.manifests.pod import PodOptions  # noqa: E402
from runnerd.runtime import Key  # noqa: E402
from runnerd.web.server import Address, Servers  # noqa: E402


def _controller_argv(args: argparse.Namespace, mode: str, **addr: str) -> list[str]:
    argv = [
        sys.executable,
        "-m",
        "runnerd.cli",
        "controller",
        f"--kubeconfig={addr['kubeconfig']}",
        f"--watch-namespace={addr['namespace']}",
        f"--github-url={addr['github']}",
        f"--runner-github-url={addr['github']}/",
        f"--webhook-addr=127.0.0.1:{addr['webhook_port']}",
        f"--metrics-addr=127.0.0.1:{addr['metrics_port']}",
        "--runner-image=ghcr.io/runnerd/actions-runner:bench",
        "--log-level=warn",
        f"--sync-period={args.pull_sync if mode != 'webhook' else 60.0:g}s",
        "--drain-grace=2s",
    ]
    if not args.reservation_journal:
        argv.append("--no-reservation-journal")
    argv += args.controller_arg
    if mode == "pull":
        argv.append("--disable-webhook-poll")
    return argv


async def own_process(
    stack: contextlib.AsyncExitStack,
    cluster: Cluster,
    sim: Simulator,
    token: str,
    mode: str,
    args: argparse.Namespace,
) -> tuple[str, ControllerProcess]:
    """The controller as its own process; its webhook URL."""
    webhook_port, metrics_port = free_port(), free_port()
    argv = _controller_argv(
        args,
        mode,
        kubeconfig=str(cluster.kubeconfig),
        namespace=f"bench-{mode}",
        github=sim.base_url,
        webhook_port=str(webhook_port),
        metrics_port=str(metrics_port),
    )
    env = {
        **os.environ,
        "GITHUB_TOKEN": token,
        "GITHUB_WEBHOOK_SECRET_TOKEN": SECRET,
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("KUBECONFIG", None)
    if args.cprofile is not None:
        env["RUNNERD_CPROFILE"] = f"{args.cprofile.resolve()}.{mode}"
        env["PYTHONPATH"] = os.pathsep.join(
            filter(None, (str(ROOT / "bench" / "memprofile"), env.get("PYTHONPATH")))
        )
    log = Path(tempfile.mkdtemp(prefix="runnerd-autoscale-bench-")) / f"controller-{mode}.log"
    controller = ControllerProcess(argv, env, log, metrics_port)
    stack.push_async_callback(controller.stop)
    await controller.start()
    return f"http://127.0.0.1:{webhook_port}/webhook", controller


async def in_process(
    stack: contextlib.AsyncExitStack,
    kube: KubeClient,
    sim: Simulator,
    token: str,
    mode: str,
    args: argparse.Namespace,
    extras: dict[str, Any],
) -> str:
    """The controller in the benchmark's event loop (before the fourth pass); its webhook URL.
    ``extras`` gets the reservation writer's own numbers at the end."""
    github = GitHubClient(
        PersonalAccessToken(token), config=GitHubConfig(api_url=sim.base_url), trust_env=False
    )
    stack.push_async_callback(github.close)
    options = ControllerOptions(
        namespace=f"bench-{mode}",
        sync_period=60.0,
        drain_grace=2.0,
        pod=PodOptions(runner_image="ghcr.io/runnerd/actions-runner:bench", github_url=sim.base_url + "/"),
        reservation_journal=args.reservation_journal,
    )
    controllers = build(kube=kube, github=github, options=options)
    autoscaling = controllers.autoscaling
    assert autoscaling is not None
    stack.push_async_callback(autoscaling.close)
    if mode != "webhook":
        autoscaling.options.sync_period = args.pull_sync
    if mode == "pull":
        autoscaling.options.poll = False
    manager = asyncio.create_task(controllers.manager.run())

    async def stop() -> None:
        controllers.manager.stop()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(manager, 60)
        writer = autoscaling.writer
        extras["reservation_patch_ms"] = summary(writer.patch_seconds)
        extras["reservation_batch_size_max"] = max(writer.batch_sizes, default=0)
        extras["reservation_writes"] = writer.writes
        extras["reservation_conflicts"] = writer.conflicts
        extras["runners_created"] = controllers.replica_set.runners_created

    stack.push_async_callback(stop)
    servers = await stack.enter_async_context(Servers())
    host, port = await servers.start(
        "webhook", autoscaling.webhook_server(SECRET).app(), Address("127.0.0.1", 0)
    )
    return f"http://{host}:{port}/webhook"


async def scenario(cluster: Cluster, mode: str, args: argparse.Namespace) -> dict[str, Any]:
    namespace = f"bench-{mode}"
    cluster.request("POST", "/api/v1/namespaces", {"metadata": {"name": namespace}})
    config = SimConfig()
    config.primary.enabled = False
    config.secondary.enabled = False
    extras: dict[str, Any] = {}
    async with Simulator(tick_interval=0.02, config=config) as sim:
        world = sim.world
        world.create_org("octo-org")
        repo = world.create_repo("octo-org", "app")
        pat = world.create_pat("admin")
        principal, stats = f"pat:{pat.id}", sim.core.stats
        kube = await KubeClient.connect(str(cluster.kubeconfig))
        controller: ControllerProcess | None = None
        try:
            async with contextlib.AsyncExitStack() as stack:
                watching = await stack.enter_async_context(Watching(kube, namespace))
                if args.in_process:
                    url = await in_process(stack, kube, sim, pat.token, mode, args, extras)
                else:
                    url, controller = await own_process(stack, cluster, sim, pat.token, mode, args)
                relay = Relay(url)
                stack.push_async_callback(relay.close)
                servers = await stack.enter_async_context(Servers())
                await stack.enter_async_context(
                    connect(
                        str(cluster.kubeconfig),
                        sim.base_url,
                        namespace=namespace,
                        label_selector="actions-runner",
                        poll_wait=1.0,
                    )
                )
                if mode not in ("pull", "scale"):
                    host, port = await servers.start("relay", relay.app(), Address("127.0.0.1", 0))
                    world.create_hook(
                        f"http://{host}:{port}/webhook", scope=SimScope("org", "octo-org"), secret=SECRET
                    )
                m = await burst(
                    kube,
                    world,
                    repo,
                    watching,
                    mode,
                    args,
                    lambda: controller_calls(stats, principal),
                    controller,
                    lambda: asyncio.to_thread(api_writes, cluster),
                )
        finally:
            await kube.close()
    if args.in_process:
        m["runners_created"] = extras.pop("runners_created", None)
    if mode == "scale":
        return scale_measures(m, watching.timeline, args.jobs) | extras
    return measures(mode, world, m, relay, watching.timeline) | extras


async def burst(
    kube: KubeClient,
    world: Any,
    repo: Any,
    watching: Watching,
    mode: str,
    args: argparse.Namespace,
    calls: Callable[[], Counter[tuple[str, int]]],
    controller: ControllerProcess | None,
    writes: Callable[[], Awaitable[Counter[str]]],
) -> dict[str, Any]:
    """Warm up, then queue the burst and wait until it is served and the pool is back at zero."""
    namespace = f"bench-{mode}"
    rd = {
        "apiVersion": "actions.summerwind.dev/v1alpha1",
        "kind": "RunnerDeployment",
        "metadata": {"name": "bench", "namespace": namespace},
        "spec": {"replicas": 0, "template": {"spec": {"repository": REPO, "labels": list(LABELS)}}},
    }
    await kube.create(RUNNER_DEPLOYMENTS, rd, namespace=namespace)
    # Warm-up, as in a running installation: one runner through its whole life first (the first
    # object of each CRD type makes the API server build its handler: seconds).
    await kube.patch(RUNNER_DEPLOYMENTS, "bench", {"spec": {"replicas": 1}}, namespace=namespace)
    await wait("the warm-up runner online", lambda: any(map(world.runner_online, world.runners.values())), 60)
    await kube.patch(RUNNER_DEPLOYMENTS, "bench", {"spec": {"replicas": 0}}, namespace=namespace)
    runner_objects = watching.store("runners")
    await wait("the warm-up runner gone", lambda: not world.runners and not runner_objects.objects(), 60)
    if mode == "scale":
        return await scale_up(kube, world, watching, args, calls, controller, writes)
    await kube.create(HORIZONTAL_RUNNER_AUTOSCALERS, hra_manifest(mode, namespace), namespace=namespace)
    key = Key(namespace, "bench")
    hras = watching.store("hras")
    await wait("the HRA reconciled", lambda: (hras.get(key) or {}).get("status"), 30)

    def polled() -> int:
        return sum(n for (ep, _), n in calls().items() if "runs" in ep)

    try:
        await wait("the first poll", lambda: mode == "pull" or polled() >= 1, 30)
    except TimeoutError:
        raise TimeoutError(f"no first poll; the controller's calls: {dict(calls())}") from None
    await asyncio.sleep(0.5)  # let the status write's own reconcile finish
    out: dict[str, Any] = {"calls_before": calls(), "writes_before": await writes()}
    cpu0 = controller.cpu_seconds() if controller else None
    out["t0"] = t0 = time.time()
    runs = []
    for r in range(0, args.jobs, args.jobs_per_run):
        n = min(args.jobs_per_run, args.jobs - r)
        specs = [JobSpec(LABELS, f"job-{r + i}", args.job_seconds) for i in range(n)]
        runs.append(world.enqueue_run(repo, specs))
    out["job_ids"] = job_ids = [j for run in runs for j in run.job_ids]
    assign_within = (args.pull_sync if mode == "pull" else 0) + 300
    await wait("every job assigned", lambda: all(world.jobs[j].assigned_at for j in job_ids), assign_within)
    out["all_assigned_after_s"] = round(time.time() - t0, 2)
    out["calls_assigned"] = calls()
    out["writes_assigned"] = await writes()
    if controller and cpu0 is not None:
        out["controller_cpu_s_until_assigned"] = round(controller.cpu_seconds() - cpu0, 2)
    await wait("every job done", lambda: all(world.jobs[j].status == "completed" for j in job_ids), 180)
    deployments = watching.store("runnerdeployments")
    await wait(
        "the pool back at zero",
        lambda: (deployments.get(key) or {}).get("spec", {}).get("replicas") == 0 and not world.runners,
        (args.pull_sync if mode != "webhook" else 0) + 300,
    )
    out["calls_done"] = calls()
    if controller and cpu0 is not None:
        out["controller_cpu_s_until_done"] = round(controller.cpu_seconds() - cpu0, 2)
    out["sample_pod"] = pod_template(watching.store("pods").objects(), namespace)
    return out


async def scale_up(
    kube: KubeClient,
    world: Any,
    watching: Watching,
    args: argparse.Namespace,
    calls: Callable[[], Counter[tuple[str, int]]],
    controller: ControllerProcess | None,
    writes: Callable[[], Awaitable[Counter[str]]],
) -> dict[str, Any]:
    """The creation hop alone: the RunnerDeployment scaled from 0 to ``--jobs`` in one write (no
    webhook, no HRA); until every pod exists and every runner is online, then back to 0."""
    namespace = "bench-scale"
    out: dict[str, Any] = {"calls_before": calls(), "job_ids": [], "writes_before": await writes()}
    cpu0 = controller.cpu_seconds() if controller else None
    out["t0"] = t0 = time.time()
    await kube.patch(RUNNER_DEPLOYMENTS, "bench", {"spec": {"replicas": args.jobs}}, namespace=namespace)
    pods = watching.timeline.pods
    await wait("every runner pod created", lambda: sum(p >= t0 for p in pods) >= args.jobs, 300)
    out["all_assigned_after_s"] = round(time.time() - t0, 2)
    out["calls_assigned"] = calls()
    out["writes_assigned"] = await writes()
    if controller and cpu0 is not None:
        out["controller_cpu_s_until_assigned"] = round(controller.cpu_seconds() - cpu0, 2)
    await wait(
        "every runner online", lambda: sum(map(world.runner_online, world.runners.values())) >= args.jobs, 300
    )
    out["all_online_after_s"] = round(time.time() - t0, 2)
    out["sample_pod"] = pod_template(watching.store("pods").objects(), namespace)
    await kube.patch(RUNNER_DEPLOYMENTS, "bench", {"spec": {"replicas": 0}}, namespace=namespace)
    runners = watching.store("runners")
    await wait("the pool back at zero", lambda: not world.runners and not runners.objects(), 300)
    out["calls_done"] = calls()
    if controller and cpu0 is not None:
        out["controller_cpu_s_until_done"] = round(controller.cpu_seconds() - cpu0, 2)
    return out


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    state = Path(tempfile.mkdtemp(prefix="runnerd-autoscale-bench-"))
    nodes = max(2, args.jobs // 100 + 2)
    cluster = Cluster(
        ClusterConfig(state_dir=state, cpu_nodes=nodes, gpu_shapes=(GpuShape(nodes=0),), max_pods=110),
        binaries.ensure(),
    )
    cluster.start()
    try:
        install_crds(cluster)
        results = []
        template = None
        for mode in args.modes:
            results.append(await scenario(cluster, mode, args))
            template = template or results[-1].pop("sample_pod", None)
            results[-1].pop("sample_pod", None)
            print(json.dumps(results[-1]), file=sys.stderr)
        if args.ceiling and template is not None:
            top = await ceiling(cluster, template, args.jobs)
            for r in results:
                rate = r.get("pod_create_rate_per_s")
                r["ceiling"] = top
                r["creation_rate_share_of_ceiling"] = round(rate / top["pods_per_s"], 2) if rate else None
            print(json.dumps(top), file=sys.stderr)
        return results
    finally:
        cluster.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--jobs-per-run", type=int, default=10)
    parser.add_argument(
        "--job-seconds",
        type=float,
        default=60.0,
        help="long enough that no runner is replaced during the burst",
    )
    parser.add_argument("--pull-sync", type=float, default=60.0, help="the pull metric's sync period (s)")
    parser.add_argument(
        "--modes",
        nargs="+",
        choices=("webhook", "article", "pull", "scale"),
        default=["webhook", "article", "pull"],
    )
    parser.add_argument("--ceiling", action="store_true", help="measure a plain create loop's rate too")
    parser.add_argument(
        "--no-reservation-journal",
        dest="reservation_journal",
        action="store_false",
        help="the controller's --no-reservation-journal: each group commit writes the HRA's list (the"
        " journal is the controller's default)",
    )
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="run the controller in the benchmark's event loop (with ghsim, the pod agent and the "
        "virtual runners) instead of as its own process",
    )
    parser.add_argument(
        "--controller-arg",
        action="append",
        default=[],
        metavar="FLAG",
        help="one more flag for the controller process (repeatable): --controller-arg=--runner-workers=64",
    )
    parser.add_argument(
        "--cprofile",
        type=Path,
        help="profile the controller process (cProfile): FILE.<mode>, a pstats file written when it exits; "
        "slows the controller, so its numbers do not compare with an unprofiled run",
    )
    args = parser.parse_args()
    if args.in_process and args.cprofile:
        parser.error("--cprofile profiles the controller's own process: not with --in-process")
    load = Path("/proc/loadavg").read_text().split()[0]
    results = asyncio.run(run(args))
    print(f"load average (1 min): {load} -> {Path('/proc/loadavg').read_text().split()[0]}", file=sys.stderr)
    if results:
        print(table(results, args))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
