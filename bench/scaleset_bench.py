"""Scale-set benchmark: the autoscaling bench's burst of queued jobs, served in scale-set mode.

The real control plane (devcluster) with the scale-set chart's CRDs, ghsim in-process as GitHub
(rate limits off: the controller is measured, not the budget; its Actions service in ``broker``
mode, github.com's, with its default 50 s long poll) and virtual runners in the pods (ghsim's pod
agent, no boot delay). The controller is **its own process**, ``runnerd controller --scale-sets``
as the controller chart runs it (no GitHub credentials in its environment), so its CPU and RSS are
its own; **the listener runs inside that process** (runnerd has no listener pods), so the numbers
are controller + listener together.

ARC's quickstart shape: a PAT Secret and an AutoscalingRunnerSet with ``minRunners: 0`` and
``maxRunners`` at least the burst; one warm-up job through its whole life first (the first object
of each CRD type costs the API server seconds), then the burst: ``--jobs`` jobs with
``runs-on: <scale set name>`` in runs of ``--jobs-per-run``, queued at once.

Measured per job, **from the job's ``queued_at``** (what users feel), jobs and objects paired first
come, first served (the jobs are long enough that no runner is reused during the burst): the
EphemeralRunnerSet's ``spec.replicas`` reaching the job's rank (the listener's decision written),
the EphemeralRunner created, the runner pod created, and the job started (GitHub's ``started_at``,
per job). GitHub calls: every request the controller process made from the burst, by endpoint
and HTTP status, split into Actions-service calls and REST calls (the runners' own protocol calls
are not counted), until every job started and until every job was done and the scale set back at
zero. Controller
CPU over the same two windows, peak RSS (``VmHWM``) at the end; pods created per job, and the
EphemeralRunner and pod creation rates over the burst.

    .venv/bin/python bench/scaleset_bench.py [--jobs 200] [--jobs-per-run 10] [--job-seconds 60]
        [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from devcluster import binaries  # noqa: E402
from devcluster.cluster import Cluster, ClusterConfig, GpuShape  # noqa: E402
from devcluster.process import cpu_seconds, peak_rss, terminate  # noqa: E402
from devcluster.stack import install_crds  # noqa: E402
from devcluster.wait import wait_until  # noqa: E402
from ghsim import JobSpec, SimConfig, Simulator  # noqa: E402
from ghsim.core import Stats  # noqa: E402
from ghsim.podagent import connect  # noqa: E402
from runnerd.api.scaleset import constants as c  # noqa: E402
from runnerd.controller.scaleset_common import (  # noqa: E402
    AUTOSCALING_RUNNER_SETS,
    EPHEMERAL_RUNNER_SETS,
    EPHEMERAL_RUNNERS,
)
from runnerd.kube.client import KubeClient  # noqa: E402
from runnerd.kube.resources import PODS, SECRETS  # noqa: E402
from runnerd.runtime import EventType, Informer, InformerEvent  # noqa: E402

ORG, REPO = "octo-org", "app"
NAME = "arc-runner-set"
NAMESPACE = "bench-scaleset"
CRDS = ROOT / "charts" / "gha-runner-scale-set-controller" / "crds"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(values: list[float]) -> dict[str, float]:
    """min/p50/p99/max in milliseconds."""
    return {
        "min": round(min(values, default=float("nan")) * 1000, 1),
        "p50": round(pct(values, 0.5) * 1000, 1),
        "p99": round(pct(values, 0.99) * 1000, 1),
        "max": round(max(values, default=float("nan")) * 1000, 1),
    }


def rate(times: list[float]) -> float | None:
    """Creations per second from the first to the last."""
    if len(times) < 2 or times[-1] <= times[0]:
        return None
    return round((len(times) - 1) / (times[-1] - times[0]), 1)


def peak_rss_mib(pid: int) -> float:
    return round(peak_rss(pid) / 2**20, 1)


class Timeline:
    """Wall-clock times of what the bench's informers saw in the scale set's namespace."""

    def __init__(self) -> None:
        self.replicas: list[tuple[float, int]] = []
        self.runners: list[float] = []
        self.pods: list[float] = []
        self.runner_objects: set[str] = set()
        self.set_replicas: dict[str, int] = {}

    def on_set(self, event: InformerEvent) -> None:
        name = event.obj["metadata"]["name"]
        if event.type is EventType.DELETED:
            self.set_replicas.pop(name, None)
        else:
            self.set_replicas[name] = int((event.obj.get("spec") or {}).get("replicas") or 0)
        self.replicas.append((time.time(), sum(self.set_replicas.values())))

    def on_runner(self, event: InformerEvent) -> None:
        name = event.obj["metadata"]["name"]
        if event.type is EventType.ADDED:
            self.runners.append(time.time())
            self.runner_objects.add(name)
        elif event.type is EventType.DELETED:
            self.runner_objects.discard(name)

    def on_pod(self, event: InformerEvent) -> None:
        if event.type is EventType.ADDED:
            self.pods.append(time.time())

    def replicas_reached(self, n: int, after: float) -> float | None:
        for at, value in self.replicas:
            if at >= after and value >= n:
                return at
        return None

    def at_zero(self) -> bool:
        return not self.runner_objects and not any(self.set_replicas.values())


def scale_set(config_url: str, max_runners: int) -> dict[str, Any]:
    """ARC's quickstart, as the gha-runner-scale-set chart renders it (the parts that matter)."""
    return {
        "apiVersion": c.API_VERSION,
        "kind": "AutoscalingRunnerSet",
        "metadata": {"name": NAME, "namespace": NAMESPACE},
        "spec": {
            "githubConfigUrl": config_url,
            "githubConfigSecret": "github-secret",
            "minRunners": 0,
            "maxRunners": max_runners,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {
                            "name": "runner",
                            "image": "ghcr.io/actions/actions-runner:latest",
                            "command": ["/home/runner/run.sh"],
                        }
                    ],
                }
            },
        },
    }


def start_controller(cluster: Cluster, log_path: Path) -> subprocess.Popen[bytes]:
    """``runnerd controller --scale-sets`` for the bench namespace, without GitHub credentials."""
    argv = [
        sys.executable, "-m", "runnerd.cli", "controller", "--scale-sets",
        "--log-level=info", "--log-format=json", f"--watch-namespace={NAMESPACE}",
        f"--kubeconfig={cluster.kubeconfig}",
    ]  # fmt: skip
    secrets = {"GITHUB_TOKEN", "GITHUB_APP_ID", "GITHUB_APP_INSTALLATION_ID", "GITHUB_APP_PRIVATE_KEY"}
    env = {k: v for k, v in os.environ.items() if k not in secrets}
    env.update(
        POD_NAME="controller-0",
        POD_NAMESPACE=NAMESPACE,
        CONTROLLER_MANAGER_POD_NAMESPACE=NAMESPACE,
        PYTHONUNBUFFERED="1",
        PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(ROOT), os.environ.get("PYTHONPATH", "")]),
    )
    with log_path.open("wb") as log:
        return subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


class StatusStats(Stats):
    """ghsim's request counts, plus one per (endpoint, principal, status): a call answered 404 is
    one for something GitHub had already removed."""

    def __init__(self) -> None:
        super().__init__()
        self.by_endpoint_principal_status: Counter[tuple[str, str, int]] = Counter()

    def count(self, endpoint: str, principal: str, status: int) -> None:
        super().count(endpoint, principal, status)
        self.by_endpoint_principal_status[(endpoint, principal, status)] += 1


def calls_since(stats: StatusStats, before: Counter[tuple[str, str, int]]) -> dict[str, dict[str, int]]:
    """The controller's requests since ``before``, by endpoint and status: Actions service and REST."""
    out: dict[str, dict[str, int]] = {"actions": {}, "rest": {}}
    for (endpoint, principal, status), n in sorted(stats.by_endpoint_principal_status.items()):
        n -= before.get((endpoint, principal, status), 0)
        if not n or principal == "runner" or endpoint.startswith("_runner/"):
            continue
        side = "actions" if endpoint.startswith("actions/") else "rest"
        out[side][f"{endpoint} {status}"] = n
    return out


class Bench:
    def __init__(self, cluster: Cluster, sim: Simulator, kube: KubeClient, args: argparse.Namespace) -> None:
        self.cluster, self.sim, self.kube, self.args = cluster, sim, kube, args
        self.stats = StatusStats()
        sim.core.stats = self.stats  # before the first request: every part reads ``core.stats``
        self.timeline = Timeline()
        self.informers = [
            Informer("sets", kube.list_watcher(EPHEMERAL_RUNNER_SETS, namespace=NAMESPACE)),
            Informer("runners", kube.list_watcher(EPHEMERAL_RUNNERS, namespace=NAMESPACE)),
            Informer(
                "pods", kube.list_watcher(PODS, namespace=NAMESPACE, label_selector=c.LABEL_SCALE_SET_NAME)
            ),
        ]
        for informer, handler in zip(
            self.informers, (self.timeline.on_set, self.timeline.on_runner, self.timeline.on_pod), strict=True
        ):
            informer.add_handler(handler)

    def enqueue(self, n: int, per_run: int, seconds: float) -> list[int]:
        world = self.sim.world
        repo = world.repo_by_name(f"{ORG}/{REPO}")
        ids: list[int] = []
        for r in range(0, n, per_run):
            specs = [JobSpec((NAME,), f"job-{r + i}", seconds) for i in range(min(per_run, n - r))]
            ids += world.enqueue_run(repo, specs).job_ids
        return ids

    def done(self, ids: list[int]) -> bool:
        return all(self.sim.world.jobs[j].status == "completed" for j in ids)

    async def setup(self) -> None:
        world = self.sim.world
        world.create_org(ORG)
        world.create_repo(ORG, REPO)
        pat = world.create_pat("admin").token
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "github-secret", "namespace": NAMESPACE},
            "data": {"github_token": base64.b64encode(pat.encode()).decode()},
        }
        await self.kube.create(SECRETS, secret, namespace=NAMESPACE)
        ars = scale_set(f"{self.sim.base_url}/{ORG}", max(self.args.jobs, 5))
        await self.kube.create(AUTOSCALING_RUNNER_SETS, ars, namespace=NAMESPACE)

    async def warm_up(self, guard: Callable[[], None]) -> None:
        """One job through its whole life, then the scale set back at zero."""
        ids = self.enqueue(1, 1, 0.5)
        await wait_until("the warm-up job done", lambda: self.done(ids), within=120, guard=guard)
        await wait_until("the scale set back at 0", self.timeline.at_zero, within=60, guard=guard)

    async def burst(self, pid: int, guard: Callable[[], None]) -> dict[str, Any]:
        args, world = self.args, self.sim.world
        before = Counter(self.stats.by_endpoint_principal_status)
        cpu0 = cpu_seconds(pid)
        t0 = time.time()
        ids = self.enqueue(args.jobs, args.jobs_per_run, args.job_seconds)
        await wait_until(
            "every job started", lambda: all(world.jobs[j].started_at for j in ids), within=300, guard=guard
        )
        t_started, cpu_started = time.time(), cpu_seconds(pid)
        calls_started = calls_since(self.stats, before)
        await wait_until("every job done", lambda: self.done(ids), within=args.job_seconds + 180, guard=guard)
        await wait_until("the scale set back at 0", self.timeline.at_zero, within=180, guard=guard)
        calls_done = calls_since(self.stats, before)
        return self.result(
            ids, t0, t_started,
            calls_started, calls_done,
            cpu_started - cpu0, cpu_seconds(pid) - cpu0, peak_rss_mib(pid),
        )  # fmt: skip

    def result(
        self,
        ids: list[int],
        t0: float,
        t_started: float,
        calls_started: dict[str, dict[str, int]],
        calls_done: dict[str, dict[str, int]],
        cpu_started: float,
        cpu_done: float,
        rss: float,
    ) -> dict[str, Any]:
        jobs = [self.sim.world.jobs[j] for j in ids]
        n = len(jobs)
        queued = sorted(j.queued_at for j in jobs if j.queued_at is not None)
        pods = sorted(p for p in self.timeline.pods if p >= t0)
        runners = sorted(r for r in self.timeline.runners if r >= t0)
        decided = [self.timeline.replicas_reached(i + 1, t0) for i in range(len(queued))]

        def hop(times: list[float | None]) -> dict[str, float]:
            return summary([t - q for q, t in zip(queued, times, strict=False) if t is not None])

        started = [j.started_at - j.queued_at for j in jobs if j.started_at and j.queued_at]

        def per_job(calls: dict[str, dict[str, int]]) -> dict[str, float]:
            a, r = sum(calls["actions"].values()), sum(calls["rest"].values())
            return {"actions": round(a / n, 3), "rest": round(r / n, 3), "total": round((a + r) / n, 3)}

        return {
            "mode": "scale-set",
            "jobs": n,
            "conclusions": sorted({j.conclusion or "" for j in jobs}),
            "queued_to_replicas_written_ms": hop(list(decided)),
            "queued_to_runner_object_created_ms": hop(list(runners)),
            "queued_to_pod_create_ms": hop(list(pods)),
            "queued_to_job_started_ms": summary(started),
            "all_started_after_s": round(t_started - t0, 2),
            "github_calls_per_job_until_started": per_job(calls_started),
            "github_calls_per_job_until_done": per_job(calls_done),
            "github_calls_by_endpoint_until_started": calls_started,
            "github_calls_by_endpoint_until_done": calls_done,
            "runner_object_create_rate_per_s": rate(runners[:n]),
            "pod_create_rate_per_s": rate(pods[:n]),
            "pods_created": len(pods),
            "pods_per_job": round(len(pods) / n, 3),
            "controller_cpu_s_until_started": round(cpu_started, 2),
            "controller_cpu_ms_per_job": round(cpu_done * 1000 / n, 1),
            "controller_cpu_s_until_done": round(cpu_done, 2),
            "controller_peak_rss_mib": rss,
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        }


async def scenario(cluster: Cluster, args: argparse.Namespace, log_path: Path) -> dict[str, Any]:
    config = SimConfig()
    config.primary.enabled = False
    config.secondary.enabled = False
    cluster.request("POST", "/api/v1/namespaces", {"metadata": {"name": NAMESPACE}})
    async with (
        Simulator(tick_interval=0.02, config=config) as sim,
        await KubeClient.connect(str(cluster.kubeconfig)) as kube,
        connect(
            str(cluster.kubeconfig),
            sim.base_url,
            namespace=NAMESPACE,
            label_selector=c.LABEL_SCALE_SET_NAME,
            poll_wait=1.0,
        ),
    ):
        bench = Bench(cluster, sim, kube, args)
        tasks = [asyncio.create_task(i.run(), name=f"bench-informer-{i.name}") for i in bench.informers]
        proc = start_controller(cluster, log_path)

        def alive() -> None:
            if proc.poll() is not None:
                raise RuntimeError(f"the controller exited: {log_path.read_text(errors='replace')[-3000:]}")

        try:
            for informer in bench.informers:
                await informer.wait_synced()
            await bench.setup()
            await bench.warm_up(alive)
            return await bench.burst(proc.pid, alive)
        finally:
            code = await asyncio.to_thread(terminate, proc)
            print(f"controller exited with {code}", file=sys.stderr)
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task


async def run(args: argparse.Namespace) -> dict[str, Any]:
    state = Path(tempfile.mkdtemp(prefix="runnerd-scaleset-bench-"))
    nodes = max(2, args.jobs // 100 + 2)
    cluster = Cluster(
        ClusterConfig(state_dir=state, cpu_nodes=nodes, gpu_shapes=(GpuShape(nodes=0),), max_pods=110),
        binaries.ensure(),
    )
    load = [round(x, 2) for x in os.getloadavg()]
    cluster.start()
    try:
        install_crds(cluster, CRDS)
        result = await scenario(cluster, args, state / "controller.log")
        result["load_average_at_start"] = load
        return result
    finally:
        cluster.stop()


def table(r: dict[str, Any]) -> str:
    def pp(s: dict[str, float]) -> str:
        return f"{s['p50']:.1f} / {s['p99']:.1f}"

    def calls(key: str) -> str:
        d = r[key]
        return f"{d['total']} ({d['actions']} Actions service + {d['rest']} REST)"

    rows = [
        ("jobs (conclusions)", f"{r['jobs']} {r['conclusions']}"),
        ("job queued → EphemeralRunnerSet replicas written p50 / p99 (ms)",
         pp(r["queued_to_replicas_written_ms"])),
        ("job queued → EphemeralRunner created p50 / p99 (ms)", pp(r["queued_to_runner_object_created_ms"])),
        ("job queued → runner pod created p50 / p99 (ms)", pp(r["queued_to_pod_create_ms"])),
        ("job queued → job started p50 / p99 (ms)", pp(r["queued_to_job_started_ms"])),
        ("GitHub calls per job, until all started", calls("github_calls_per_job_until_started")),
        ("GitHub calls per job, until done and back to 0", calls("github_calls_per_job_until_done")),
        ("EphemeralRunners / runner pods created per second",
         f"{r['runner_object_create_rate_per_s']} / {r['pod_create_rate_per_s']}"),
        ("pods per job", r["pods_per_job"]),
        ("controller + listener CPU per job (ms), until back to 0", r["controller_cpu_ms_per_job"]),
        ("controller + listener peak RSS (MiB)", r["controller_peak_rss_mib"]),
        ("load average at start / end", f"{r['load_average_at_start']} / {r['load_average_at_end']}"),
    ]  # fmt: skip
    lines = ["| measure | scale-set mode |", "|---|---:|"]
    lines += [f"| {name} | {value} |" for name, value in rows]
    return "\n".join(lines)


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
        help="long enough that no runner is reused during the burst",
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON after the table")
    args = parser.parse_args()
    result = asyncio.run(run(args))
    print(table(result))
    if args.json:
        print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
