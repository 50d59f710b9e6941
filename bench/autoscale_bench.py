"""Autoscaling benchmark: a burst of queued jobs, served through the webhook path and the pull metric.

Both scenarios run in one invocation on the real control plane (devcluster), with ghsim in-process
as GitHub (rate limits off: the benchmark measures the controller, not the budget), the controller
in-process and virtual runners in the pods with no boot delay. Each scenario gets its own namespace
and simulator, a RunnerDeployment at 0 replicas and an HRA with ``minReplicas: 0``:

* ``webhook``: ``scaleUpTriggers: [{githubEvent: {workflowJob: {}}}]`` and no metric; a ghsim hook
  posts every ``workflow_job`` delivery to the controller's webhook server; the safety-net poll runs
  with its defaults (60 s bound, 1000 calls/hour) and its calls are counted;
* ``pull``: ``TotalNumberOfQueuedAndInProgressWorkflowRuns`` for the repository, no webhook, at a
  sync period of ``--pull-sync`` seconds (ARC's default: 60). The burst is queued right after the
  HRA's reconcile, so it waits (almost) a whole sync period: the worst case; a burst at a random
  moment waits half a period on average.

Measured per job, from the moment the ``queued`` delivery was received (webhook) or the job was
queued (pull; GitHub would have sent the webhook then): until a runner pod was created (jobs and pods
paired first come, first served) and until GitHub assigned the job to a runner. GitHub API calls are
every call the controller made from the burst until every job was assigned, and until every job was
done and the pool back at zero. The webhook path also gets a breakdown of where the time goes.

    .venv/bin/python bench/autoscale_bench.py [--jobs 200] [--jobs-per-run 10] [--job-seconds 60]
        [--pull-sync 60] [--modes webhook pull]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.integration.podagent import PodAgent  # noqa: E402

from devcluster import binaries  # noqa: E402
from devcluster.cluster import Cluster, ClusterConfig, GpuShape  # noqa: E402
from ghsim import JobSpec, SimConfig, Simulator  # noqa: E402
from ghsim.entities import Scope as SimScope  # noqa: E402
from runnerd.controller.app import build  # noqa: E402
from runnerd.controller.common import (  # noqa: E402
    HORIZONTAL_RUNNER_AUTOSCALERS,
    RUNNER_DEPLOYMENTS,
    ControllerOptions,
)
from runnerd.github import GitHubClient, GitHubConfig, PersonalAccessToken  # noqa: E402
from runnerd.kube.client import KubeClient  # noqa: E402
from runnerd.reconcile.pod import PodOptions  # noqa: E402
from runnerd.runtime import EventType, InformerEvent, Key  # noqa: E402
from runnerd.web.payload import WorkflowJobEvent  # noqa: E402
from runnerd.web.server import Address, Servers  # noqa: E402
from runnerd.web.webhook import SinkReply, WorkflowJobSink  # noqa: E402

REPO = "octo-org/app"
LABELS = ("self-hosted", "bench")
SECRET = "bench-webhook-secret"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(values: list[float], scale: float = 1000.0) -> dict[str, float]:
    """p50/p99/max in milliseconds (``scale`` 1000) or seconds (1)."""
    return {
        "p50": round(pct(values, 0.5) * scale, 1),
        "p99": round(pct(values, 0.99) * scale, 1),
        "max": round(max(values, default=float("nan")) * scale, 1),
    }


class RecordingSink:
    """Wraps the controller's sink: when each ``queued`` delivery arrived and its reservation was written."""

    def __init__(self, inner: WorkflowJobSink) -> None:
        self.inner = inner
        self.received: dict[int, float] = {}
        self.reserved: list[float] = []

    async def workflow_job(self, event: WorkflowJobEvent) -> SinkReply:
        reply = await self.inner.workflow_job(event)
        if event.action == "queued" and event.job_id not in self.received:
            self.received[event.job_id] = event.received_at
            if reply.outcome == "scaled":
                self.reserved.append(time.time())
        return reply


class Timeline:
    """Wall-clock times of what the informers saw: deployment replicas, Runner objects, runner pods."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.replicas: list[tuple[float, int]] = []
        self.rs_replicas: list[tuple[float, int]] = []
        self.runners: list[float] = []
        self.pods: list[float] = []

    def _mine(self, event: InformerEvent) -> bool:
        return (event.obj.get("metadata") or {}).get("namespace") == self.namespace

    def on_deployment(self, event: InformerEvent) -> None:
        if self._mine(event):
            value = (event.obj.get("spec") or {}).get("replicas")
            self.replicas.append((time.time(), 1 if value is None else int(value)))

    def on_replica_set(self, event: InformerEvent) -> None:
        if self._mine(event):
            value = (event.obj.get("spec") or {}).get("replicas")
            self.rs_replicas.append((time.time(), 1 if value is None else int(value)))

    def on_runner(self, event: InformerEvent) -> None:
        if self._mine(event) and event.type is EventType.ADDED:
            self.runners.append(time.time())

    def on_pod(self, event: InformerEvent) -> None:
        if self._mine(event) and event.type is EventType.ADDED:
            self.pods.append(time.time())

    def replicas_reached(self, n: int, after: float, replica_set: bool = False) -> float | None:
        for at, value in self.rs_replicas if replica_set else self.replicas:
            if at >= after and value >= n:
                return at
        return None


async def wait(what: str, probe: Callable[[], Any], within: float) -> None:
    deadline = time.monotonic() + within
    while not probe():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        await asyncio.sleep(0.02)


def job_of(sim: Simulator) -> Callable[[str], int | None]:
    def find(name: str) -> int | None:
        for runner in sim.world.runners.values():
            if runner.name == name:
                return runner.job_id
        return None

    return find


def hra_manifest(mode: str, namespace: str) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "scaleTargetRef": {"name": "bench"},
        "minReplicas": 0,
        "maxReplicas": 1000,
        "scaleDownDelaySecondsAfterScaleOut": 5,
    }
    if mode == "webhook":
        spec["scaleUpTriggers"] = [{"githubEvent": {"workflowJob": {}}, "duration": "10m"}]
    else:
        spec["metrics"] = [
            {"type": "TotalNumberOfQueuedAndInProgressWorkflowRuns", "repositoryNames": [REPO]}
        ]
    return {
        "apiVersion": "actions.summerwind.dev/v1alpha1",
        "kind": "HorizontalRunnerAutoscaler",
        "metadata": {"name": "bench", "namespace": namespace},
        "spec": spec,
    }


async def scenario(cluster: Cluster, mode: str, args: argparse.Namespace) -> dict[str, Any]:
    namespace = f"bench-{mode}"
    cluster.request("POST", "/api/v1/namespaces", {"metadata": {"name": namespace}})
    config = SimConfig()
    config.primary.enabled = False
    config.secondary.enabled = False
    async with Simulator(tick_interval=0.02, config=config) as sim:
        world = sim.world
        world.create_org("octo-org")
        repo = world.create_repo("octo-org", "app")
        token = world.create_pat("admin").token
        kube = await KubeClient.connect(str(cluster.kubeconfig))
        agent_kube = await KubeClient.connect(str(cluster.kubeconfig))
        github = GitHubClient(
            PersonalAccessToken(token), config=GitHubConfig(api_url=sim.base_url), trust_env=False
        )
        options = ControllerOptions(
            namespace=namespace,
            sync_period=60.0,
            drain_grace=2.0,
            pod=PodOptions(
                runner_image="ghcr.io/runnerd/actions-runner:bench", github_url=sim.base_url + "/"
            ),
        )
        controllers = build(kube=kube, github=github, options=options)
        autoscaling = controllers.autoscaling
        assert autoscaling is not None
        if mode == "pull":
            autoscaling.options.poll = False
            autoscaling.options.sync_period = args.pull_sync
        timeline = Timeline(namespace)
        controllers.informers["runnerdeployments"].add_handler(timeline.on_deployment)
        controllers.informers["runners"].add_handler(timeline.on_runner)
        controllers.informers["runnerreplicasets"].add_handler(timeline.on_replica_set)
        controllers.informers["pods"].add_handler(timeline.on_pod)
        recording = RecordingSink(autoscaling.sink)
        manager = asyncio.create_task(controllers.manager.run())
        try:
            async with (
                Servers() as servers,
                PodAgent(agent_kube, sim.base_url, namespace, boot_delay=0.0, job_of=job_of(sim)),
            ):
                if mode == "webhook":
                    server = autoscaling.webhook_server(SECRET)
                    server.sink = recording
                    host, port = await servers.start("webhook", server.app(), Address("127.0.0.1", 0))
                    world.create_hook(
                        f"http://{host}:{port}/webhook", scope=SimScope("repo", REPO), secret=SECRET
                    )
                rd = {
                    "apiVersion": "actions.summerwind.dev/v1alpha1",
                    "kind": "RunnerDeployment",
                    "metadata": {"name": "bench", "namespace": namespace},
                    "spec": {
                        "replicas": 0,
                        "template": {"spec": {"repository": REPO, "labels": list(LABELS)}},
                    },
                }
                await kube.create(RUNNER_DEPLOYMENTS, rd, namespace=namespace)
                # Warm-up, as in a running installation: one runner through its whole life first (the
                # first object of each CRD type makes the API server build its handler: seconds).
                await kube.patch(RUNNER_DEPLOYMENTS, "bench", {"spec": {"replicas": 1}}, namespace=namespace)
                await wait(
                    "the warm-up runner online",
                    lambda: any(map(world.runner_online, world.runners.values())),
                    60,
                )
                await kube.patch(RUNNER_DEPLOYMENTS, "bench", {"spec": {"replicas": 0}}, namespace=namespace)
                runner_objects = controllers.informers["runners"].store
                await wait(
                    "the warm-up runner gone", lambda: not world.runners and not runner_objects.objects(), 60
                )
                await kube.create(
                    HORIZONTAL_RUNNER_AUTOSCALERS, hra_manifest(mode, namespace), namespace=namespace
                )
                hras = autoscaling.hras
                key = Key(namespace, "bench")
                await wait("the HRA reconciled", lambda: (hras.store.get(key) or {}).get("status"), 30)
                await wait("the first poll", lambda: mode == "pull" or autoscaling.poller.polls >= 1, 30)
                await asyncio.sleep(0.5)  # let the status write's own reconcile finish
                before = github.stats.snapshot()
                t0 = time.time()
                runs = []
                for r in range(0, args.jobs, args.jobs_per_run):
                    n = min(args.jobs_per_run, args.jobs - r)
                    specs = [JobSpec(LABELS, f"job-{r + i}", args.job_seconds) for i in range(n)]
                    runs.append(world.enqueue_run(repo, specs))
                job_ids = [j for run in runs for j in run.job_ids]
                assign_within = (args.pull_sync if mode == "pull" else 0) + 180
                await wait(
                    "every job assigned",
                    lambda: all(world.jobs[j].assigned_at for j in job_ids),
                    assign_within,
                )
                t_assigned = time.time()
                at_assigned = github.stats.snapshot()
                await wait(
                    "every job done",
                    lambda: all(world.jobs[j].status == "completed" for j in job_ids),
                    180,
                )
                await wait(
                    "the pool back at zero",
                    lambda: (
                        (controllers.informers["runnerdeployments"].store.get(key) or {})
                        .get("spec", {})
                        .get("replicas")
                        == 0
                        and not world.runners
                    ),
                    (args.pull_sync if mode == "pull" else 0) + 180,
                )
                at_done = github.stats.snapshot()
        finally:
            controllers.manager.stop()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(manager, 60)
            await autoscaling.close()
            await github.close()
            await kube.close()
            await agent_kube.close()

    jobs = [world.jobs[j] for j in job_ids]
    if mode == "webhook":
        start = {j.id: recording.received.get(j.id) for j in jobs}
        missing = [j for j, at in start.items() if at is None]
        if missing:
            print(f"{len(missing)} jobs had no queued delivery", file=sys.stderr)
    else:
        start = {j.id: j.queued_at for j in jobs}
    origins = sorted(at for at in start.values() if at is not None)
    pods = sorted(p for p in timeline.pods if p >= t0)[: len(origins)]
    to_pod = [p - o for o, p in zip(origins, pods, strict=False)]
    to_assign = [
        j.assigned_at - start[j.id] for j in jobs if j.assigned_at is not None and start[j.id] is not None
    ]

    def calls(snapshot: Any) -> dict[str, int]:
        out: dict[str, int] = {}
        for (endpoint, status), n in snapshot.calls.items():
            out[f"{endpoint} {status}"] = n - before.calls.get((endpoint, status), 0)
        return {k: v for k, v in sorted(out.items()) if v}

    assigned_calls, done_calls = calls(at_assigned), calls(at_done)
    result: dict[str, Any] = {
        "mode": mode,
        "jobs": len(jobs),
        "conclusions": sorted({j.conclusion or "" for j in jobs}),
        "to_pod_create_ms": summary(to_pod),
        "to_assignment_ms": summary(to_assign),
        "all_assigned_after_s": round(t_assigned - t0, 2),
        "github_calls_until_assigned": sum(assigned_calls.values()),
        "github_calls_per_job_until_assigned": round(sum(assigned_calls.values()) / len(jobs), 3),
        "github_calls_until_done": sum(done_calls.values()),
        "github_calls_per_job_until_done": round(sum(done_calls.values()) / len(jobs), 3),
        "github_calls_by_endpoint_until_done": done_calls,
        "pods_created": len([p for p in timeline.pods if p >= t0]),
        "runners_created": controllers.replica_set.runners_created,
    }
    if mode == "webhook":
        received = sorted(recording.received.values())
        reserved = sorted(recording.reserved)
        runners = sorted(r for r in timeline.runners if r >= t0)
        stage_reserve = [r - o for o, r in zip(received, reserved, strict=False)]
        stage_rd, stage_rs = [], []
        for i, o in enumerate(received):
            at = timeline.replicas_reached(i + 1, t0)
            if at is not None:
                stage_rd.append(at - o)
            at = timeline.replicas_reached(i + 1, t0, replica_set=True)
            if at is not None:
                stage_rs.append(at - o)
        stage_runner = [r - o for o, r in zip(received, runners, strict=False)]
        result["deliveries_received_over_s"] = round(received[-1] - received[0], 2) if received else None
        result["breakdown_from_receipt_ms"] = {
            "reservation_written": summary(stage_reserve),
            "deployment_replicas_reached": summary(stage_rd),
            "replica_set_replicas_reached": summary(stage_rs),
            "runner_object_created": summary(stage_runner),
            "runner_pod_created": summary(to_pod),
        }
        result["reservation_patch_ms"] = summary(autoscaling.writer.patch_seconds)
        result["reservation_batch_size_max"] = max(autoscaling.writer.batch_sizes, default=0)
        result["in_process_histogram_samples"] = len(autoscaling.pod_latency.samples)
        result["reservation_writes"] = autoscaling.writer.writes
        result["reservation_conflicts"] = autoscaling.writer.conflicts
    else:
        result["pull_sync_s"] = args.pull_sync
    return result


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    state = Path(tempfile.mkdtemp(prefix="runnerd-autoscale-bench-"))
    nodes = max(2, args.jobs // 100 + 2)
    cluster = Cluster(
        ClusterConfig(state_dir=state, cpu_nodes=nodes, gpu_shapes=(GpuShape(nodes=0),), max_pods=110),
        binaries.ensure(),
    )
    cluster.start()
    try:
        crds = ROOT / "charts" / "actions-runner-controller" / "crds"
        cluster.kubectl("apply", "-f", str(crds))
        cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")
        results = []
        for mode in args.modes:
            results.append(await scenario(cluster, mode, args))
            print(json.dumps(results[-1]), file=sys.stderr)
        return results
    finally:
        cluster.stop()


def table(results: list[dict[str, Any]], args: argparse.Namespace) -> str:
    by = {r["mode"]: r for r in results}
    w, p = by["webhook"], by["pull"]
    rows = [
        ("jobs (conclusions)", f"{w['jobs']} {w['conclusions']}", f"{p['jobs']} {p['conclusions']}"),
        ("receipt → pod created p50 / p99 (ms)", _pp(w["to_pod_create_ms"]), _pp(p["to_pod_create_ms"])),
        ("receipt → job assigned p50 / p99 (ms)", _pp(w["to_assignment_ms"]), _pp(p["to_assignment_ms"])),
        ("GitHub calls per job, until all assigned", w["github_calls_per_job_until_assigned"],
         p["github_calls_per_job_until_assigned"]),
        ("GitHub calls per job, until done and back to 0", w["github_calls_per_job_until_done"],
         p["github_calls_per_job_until_done"]),
    ]  # fmt: skip
    lines = [f"| measure | webhook | pull metric (sync {args.pull_sync:g} s) |", "|---|---:|---:|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return "\n".join(lines)


def _pp(s: dict[str, float]) -> str:
    return f"{s['p50']:.1f} / {s['p99']:.1f}"


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
    parser.add_argument("--modes", nargs="+", choices=("webhook", "pull"), default=["webhook", "pull"])
    args = parser.parse_args()
    results = asyncio.run(run(args))
    if len(results) == 2:
        print(table(results, args))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
