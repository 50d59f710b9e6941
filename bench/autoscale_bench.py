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
  moment waits half a period on average;
* ``article``: the article's shape, both at once: the trigger (webhooks) and the metric (sync period
  60 s), so the metric's GitHub cost under a burst of reservation writes is measured.

Webhooks come from one organization hook (like a real installation), which ghsim delivers with its
default bounded parallelism (16 in flight), as GitHub does.

Measured per job, **from the job's ``queued_at``** (what users feel) and, for the webhook modes, from
the moment the ``queued`` delivery was received: until a runner pod was created (jobs and pods
paired first come, first served) and until GitHub assigned the job to a runner. GitHub API calls are
every call the controller made from the burst until every job was assigned, and until every job was
done and the pool back at zero. The webhook path also gets a breakdown of where the time goes.

At the end (``--ceiling``), the creation ceiling: the same runner pods (the manifest of one the
controller made) created by a plain loop with 64 requests in flight against the same API server;
the controller's pod-creation rate during the burst is reported as a share of it.

    .venv/bin/python bench/autoscale_bench.py [--jobs 200] [--jobs-per-run 10] [--job-seconds 60]
        [--pull-sync 60] [--modes webhook article pull] [--ceiling] [--reservation-journal]
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

from devcluster import binaries  # noqa: E402
from devcluster.cluster import Cluster, ClusterConfig, GpuShape  # noqa: E402
from ghsim import JobSpec, SimConfig, Simulator  # noqa: E402
from ghsim.entities import Scope as SimScope  # noqa: E402
from ghsim.podagent import connect  # noqa: E402
from runnerd.controller.app import build, install_journal  # noqa: E402
from runnerd.controller.common import (  # noqa: E402
    HORIZONTAL_RUNNER_AUTOSCALERS,
    RUNNER_DEPLOYMENTS,
    ControllerOptions,
)
from runnerd.github import GitHubClient, GitHubConfig, PersonalAccessToken  # noqa: E402
from runnerd.kube.client import KubeClient  # noqa: E402
from runnerd.kube.resources import PODS  # noqa: E402
from runnerd.manifests.pod import PodOptions  # noqa: E402
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


def _rate(times: list[float]) -> float | None:
    """Creations per second from the first to the last."""
    if len(times) < 2 or times[-1] <= times[0]:
        return None
    return round((len(times) - 1) / (times[-1] - times[0]), 1)


def _pod_template(pods: list[dict[str, Any]], namespace: str) -> dict[str, Any] | None:
    """A runner pod the controller made, reduced to what a create sends (for the ceiling)."""
    for pod in pods:
        meta = pod.get("metadata") or {}
        if meta.get("namespace") != namespace:
            continue
        spec = json.loads(json.dumps({k: v for k, v in (pod.get("spec") or {}).items() if k != "nodeName"}))
        # the service-account volume is added by the API server; the JIT config is not printed
        spec["volumes"] = [
            v for v in spec.get("volumes") or () if not v["name"].startswith("kube-api-access")
        ]
        for container in spec.get("containers") or ():
            container["volumeMounts"] = [
                m for m in container.get("volumeMounts") or () if not m["name"].startswith("kube-api-access")
            ]
            for env in container.get("env") or ():
                if "JITCONFIG" in env.get("name", ""):
                    env["value"] = "x" * len(env.get("value") or "")
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"labels": {"bench": "ceiling"}},
            "spec": spec,
        }
    return None


async def ceiling(cluster: Cluster, template: dict[str, Any], count: int) -> dict[str, Any]:
    """A plain concurrent create loop (64 in flight) of ``count`` copies of ``template``."""
    namespace = "bench-ceiling"
    cluster.request("POST", "/api/v1/namespaces", {"metadata": {"name": namespace}})
    kube = await KubeClient.connect(str(cluster.kubeconfig))
    gate = asyncio.Semaphore(64)
    done: list[float] = []

    async def create(i: int) -> None:
        body = json.loads(json.dumps(template))
        body["metadata"]["name"] = f"ceiling-{i}"
        async with gate:
            await kube.create(PODS, body, namespace=namespace)
        done.append(time.time())

    try:
        started = time.time()
        await asyncio.gather(*(create(i) for i in range(count)))
        elapsed = time.time() - started
    finally:
        await kube.close()
    return {"pods": count, "seconds": round(elapsed, 2), "pods_per_s": round(count / elapsed, 1)}


def hra_manifest(mode: str, namespace: str) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "scaleTargetRef": {"name": "bench"},
        "minReplicas": 0,
        "maxReplicas": 1000,
        "scaleDownDelaySecondsAfterScaleOut": 5,
    }
    if mode != "pull":
        spec["scaleUpTriggers"] = [{"githubEvent": {"workflowJob": {}}, "duration": "10m"}]
    if mode != "webhook":
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
        if args.reservation_journal:
            install_journal(controllers)
        autoscaling = controllers.autoscaling
        assert autoscaling is not None
        if mode != "webhook":
            autoscaling.options.sync_period = args.pull_sync
        if mode == "pull":
            autoscaling.options.poll = False
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
                connect(
                    str(cluster.kubeconfig),
                    sim.base_url,
                    namespace=namespace,
                    label_selector="actions-runner",
                    poll_wait=1.0,
                ),
            ):
                if mode != "pull":
                    server = autoscaling.webhook_server(SECRET)
                    server.sink = recording
                    host, port = await servers.start("webhook", server.app(), Address("127.0.0.1", 0))
                    world.create_hook(
                        f"http://{host}:{port}/webhook", scope=SimScope("org", "octo-org"), secret=SECRET
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
                assign_within = (args.pull_sync if mode == "pull" else 0) + 300
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
                    (args.pull_sync if mode != "webhook" else 0) + 300,
                )
                at_done = github.stats.snapshot()
                sample_pod = _pod_template(controllers.informers["pods"].store.objects(), namespace)
        finally:
            controllers.manager.stop()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(manager, 60)
            await autoscaling.close()
            await github.close()
            await kube.close()

    jobs = [world.jobs[j] for j in job_ids]
    queued = sorted(j.queued_at for j in jobs if j.queued_at is not None)
    burst_pods = sorted(p for p in timeline.pods if p >= t0)
    queued_to_pod = [p - q for q, p in zip(queued, burst_pods, strict=False)]
    if mode != "pull":
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
        "queued_to_pod_create_ms": summary(queued_to_pod),
        "to_pod_create_ms": summary(to_pod),
        "to_assignment_ms": summary(to_assign),
        "all_assigned_after_s": round(t_assigned - t0, 2),
        "github_calls_until_assigned": sum(assigned_calls.values()),
        "github_calls_per_job_until_assigned": round(sum(assigned_calls.values()) / len(jobs), 3),
        "github_calls_until_done": sum(done_calls.values()),
        "github_calls_per_job_until_done": round(sum(done_calls.values()) / len(jobs), 3),
        "github_calls_by_endpoint_until_done": done_calls,
        "pods_created": len(burst_pods),
        "pods_per_job": round(len(burst_pods) / len(jobs), 3),
        "runners_created": controllers.replica_set.runners_created,
        "pod_create_rate_per_s": _rate(burst_pods[: len(jobs)]),
        "sample_pod": sample_pod,
    }
    if mode != "pull":
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


def table(results: list[dict[str, Any]], args: argparse.Namespace) -> str:
    rows: list[tuple[str, Callable[[dict[str, Any]], Any]]] = [
        ("jobs (conclusions)", lambda r: f"{r['jobs']} {r['conclusions']}"),
        ("job queued → pod created p50 / p99 (ms)", lambda r: _pp(r["queued_to_pod_create_ms"])),
        ("receipt → pod created p50 / p99 (ms)", lambda r: _pp(r["to_pod_create_ms"])),
        ("receipt → job assigned p50 / p99 (ms)", lambda r: _pp(r["to_assignment_ms"])),
        ("GitHub calls per job, until all assigned", lambda r: r["github_calls_per_job_until_assigned"]),
        ("GitHub calls per job, until done and back to 0", lambda r: r["github_calls_per_job_until_done"]),
        ("pods per job", lambda r: r["pods_per_job"]),
        ("pod creations/s (share of the ceiling)",
         lambda r: f"{r['pod_create_rate_per_s']} ({r.get('creation_rate_share_of_ceiling')})"),
    ]  # fmt: skip
    lines = ["| measure | " + " | ".join(r["mode"] for r in results) + " |"]
    lines.append("|---|" + "---:|" * len(results))
    lines += [f"| {name} | " + " | ".join(str(get(r)) for r in results) + " |" for name, get in rows]
    lines.append(f"(pull and article metric sync period: {args.pull_sync:g} s)")
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
    parser.add_argument(
        "--modes", nargs="+", choices=("webhook", "article", "pull"), default=["webhook", "article", "pull"]
    )
    parser.add_argument("--ceiling", action="store_true", help="measure a plain create loop's rate too")
    parser.add_argument(
        "--reservation-journal", action="store_true", help="the controller's --reservation-journal intake"
    )
    args = parser.parse_args()
    results = asyncio.run(run(args))
    if results:
        print(table(results, args))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
