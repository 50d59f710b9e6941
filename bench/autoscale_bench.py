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
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CLK_TCK = os.sysconf("SC_CLK_TCK")

import aiohttp  # noqa: E402
from aiohttp import web  # noqa: E402

from devcluster import binaries  # noqa: E402
from devcluster.cluster import Cluster, ClusterConfig, GpuShape  # noqa: E402
from devcluster.ports import free_port  # noqa: E402
from devcluster.process import die_with_parent  # noqa: E402
from ghsim import JobSpec, SimConfig, Simulator  # noqa: E402
from ghsim.entities import Scope as SimScope  # noqa: E402
from ghsim.podagent import connect  # noqa: E402
from runnerd.controller.app import build  # noqa: E402
from runnerd.controller.common import (  # noqa: E402
    HORIZONTAL_RUNNER_AUTOSCALERS,
    RUNNER_DEPLOYMENTS,
    RUNNER_REPLICA_SETS,
    RUNNERS,
    ControllerOptions,
)
from runnerd.github import GitHubClient, GitHubConfig, PersonalAccessToken  # noqa: E402
from runnerd.kube.client import KubeClient  # noqa: E402
from runnerd.kube.resources import PODS  # noqa: E402
from runnerd.manifests.pod import PodOptions  # noqa: E402
from runnerd.runtime import EventType, Informer, InformerEvent, Key  # noqa: E402
from runnerd.web.server import Address, Servers  # noqa: E402

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


class Relay:
    """Between ghsim's hook and the controller's webhook server: when each ``queued`` delivery was
    received, and when the controller answered it 2xx (once its reservation was durable)."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.received: dict[int, float] = {}
        self.answered: dict[int, float] = {}
        self._session: aiohttp.ClientSession | None = None

    async def handle(self, request: web.Request) -> web.Response:
        received = time.time()
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        if self._session is None:
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        async with self._session.post(self.target, data=body, headers=headers) as resp:
            reply = await resp.read()
            status = resp.status
        if request.headers.get("X-GitHub-Event") == "workflow_job" and 200 <= status < 300:
            payload = json.loads(body)
            job_id = int((payload.get("workflow_job") or {}).get("id") or 0)
            if payload.get("action") == "queued" and job_id not in self.received:
                self.received[job_id] = received
                self.answered[job_id] = time.time()
        return web.Response(status=status, body=reply)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/webhook", self.handle)
        return app

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


class Timeline:
    """Wall-clock times of what the benchmark's own informers saw: deployment and replica set
    replicas, Runner objects, runner pods (the controller may be another process)."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.replicas: list[tuple[float, int]] = []
        self.rs_replicas: list[tuple[float, int]] = []
        self.runners: list[float] = []
        self.pods: list[float] = []

    def on_deployment(self, event: InformerEvent) -> None:
        value = (event.obj.get("spec") or {}).get("replicas")
        self.replicas.append((time.time(), 1 if value is None else int(value)))

    def on_replica_set(self, event: InformerEvent) -> None:
        value = (event.obj.get("spec") or {}).get("replicas")
        self.rs_replicas.append((time.time(), 1 if value is None else int(value)))

    def on_runner(self, event: InformerEvent) -> None:
        if event.type is EventType.ADDED:
            self.runners.append(time.time())

    def on_pod(self, event: InformerEvent) -> None:
        if event.type is EventType.ADDED:
            self.pods.append(time.time())

    def replicas_reached(self, n: int, after: float, replica_set: bool = False) -> float | None:
        for at, value in self.rs_replicas if replica_set else self.replicas:
            if at >= after and value >= n:
                return at
        return None


class Watching:
    """The benchmark's informers on the scenario's namespace, feeding a :class:`Timeline`."""

    def __init__(self, kube: KubeClient, namespace: str) -> None:
        self.timeline = Timeline(namespace)
        self.informers = {
            "runnerdeployments": Informer(
                "runnerdeployments", kube.list_watcher(RUNNER_DEPLOYMENTS, namespace=namespace)
            ),
            "runnerreplicasets": Informer(
                "runnerreplicasets", kube.list_watcher(RUNNER_REPLICA_SETS, namespace=namespace)
            ),
            "runners": Informer("runners", kube.list_watcher(RUNNERS, namespace=namespace)),
            "pods": Informer(
                "pods", kube.list_watcher(PODS, namespace=namespace, label_selector="actions-runner")
            ),
            "hras": Informer("hras", kube.list_watcher(HORIZONTAL_RUNNER_AUTOSCALERS, namespace=namespace)),
        }
        t = self.timeline
        for name, handler in (
            ("runnerdeployments", t.on_deployment),
            ("runnerreplicasets", t.on_replica_set),
            ("runners", t.on_runner),
            ("pods", t.on_pod),
        ):
            self.informers[name].add_handler(handler)
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> Watching:
        self._tasks = [asyncio.create_task(i.run(), name=f"bench-{n}") for n, i in self.informers.items()]
        for informer in self.informers.values():
            await informer.wait_synced()
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def store(self, name: str) -> Any:
        return self.informers[name].store


class ControllerProcess:
    """``runnerd controller`` as its own process, watching the scenario's namespace."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path, metrics_port: int) -> None:
        self.argv, self.env, self.log, self.metrics_port = argv, env, log, metrics_port
        self.proc: subprocess.Popen[bytes] | None = None

    def _spawn(self) -> subprocess.Popen[bytes]:
        with self.log.open("ab") as out:
            return subprocess.Popen(
                self.argv,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )

    async def start(self, within: float = 60.0) -> None:
        self.proc = self._spawn()
        url = f"http://127.0.0.1:{self.metrics_port}/readyz"
        deadline = time.monotonic() + within
        async with aiohttp.ClientSession() as session:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"the controller exited ({self.proc.returncode}); log {self.log}")
                with contextlib.suppress(aiohttp.ClientError, OSError):
                    async with session.get(url) as resp:
                        if resp.status == 200:
                            return
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the controller was not ready after {within:g}s; log {self.log}")
                await asyncio.sleep(0.2)

    def cpu_seconds(self) -> float:
        assert self.proc is not None
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    async def stop(self, grace: float = 30.0) -> None:
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(proc.wait, grace)
            except subprocess.TimeoutExpired:
                proc.kill()
        await asyncio.to_thread(proc.wait)


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


WRITE_VERBS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
METRIC_LINE = re.compile(r"^apiserver_request_total\{(?P<labels>[^}]*)\} (?P<value>[0-9.e+]+)$")


def api_writes(cluster: Cluster) -> Counter[str]:
    """The API server's write requests so far, by ``VERB resource[/subresource]`` (every client's:
    the controller's, the scheduler's bindings, the pod agent's), from its ``/metrics``."""
    request = urllib.request.Request(f"{cluster.server}/metrics")
    with urllib.request.urlopen(request, context=cluster.admin_ssl(), timeout=30) as resp:
        text = resp.read().decode()
    out: Counter[str] = Counter()
    for line in text.splitlines():
        match = METRIC_LINE.match(line)
        if match is None:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', match["labels"]))
        if labels.get("verb") in WRITE_VERBS:
            what = labels.get("resource", "") + (
                f"/{labels['subresource']}" if labels.get("subresource") else ""
            )
            out[f"{labels['verb']} {what}"] += int(float(match["value"]))
    return out


def _calls(stats: Any, principal: str) -> Counter[tuple[str, int]]:
    """The controller's calls so far, by (operation, status), as ghsim counted them."""
    out: Counter[tuple[str, int]] = Counter()
    for (endpoint, who, status), n in stats.by_endpoint_principal_status.items():
        if who == principal:
            out[(endpoint, status)] += n
    return out


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
                    lambda: _calls(stats, principal),
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
    out["sample_pod"] = _pod_template(watching.store("pods").objects(), namespace)
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
    out["sample_pod"] = _pod_template(watching.store("pods").objects(), namespace)
    await kube.patch(RUNNER_DEPLOYMENTS, "bench", {"spec": {"replicas": 0}}, namespace=namespace)
    runners = watching.store("runners")
    await wait("the pool back at zero", lambda: not world.runners and not runners.objects(), 300)
    out["calls_done"] = calls()
    if controller and cpu0 is not None:
        out["controller_cpu_s_until_done"] = round(controller.cpu_seconds() - cpu0, 2)
    return out


def scale_measures(m: dict[str, Any], timeline: Timeline, jobs: int) -> dict[str, Any]:
    t0 = m["t0"]
    pods = sorted(p for p in timeline.pods if p >= t0)[:jobs]
    runners = sorted(r for r in timeline.runners if r >= t0)[:jobs]
    rs_at = timeline.replicas_reached(jobs, t0, replica_set=True)

    def calls(at: Counter[tuple[str, int]]) -> dict[str, int]:
        diff = {
            f"{ep} {status}": n - m["calls_before"].get((ep, status), 0) for (ep, status), n in at.items()
        }
        return {k: v for k, v in sorted(diff.items()) if v}

    done_calls = calls(m["calls_done"])
    return {
        "mode": "scale",
        "jobs": jobs,
        "conclusions": [],
        "replica_set_scaled_after_ms": round((rs_at - t0) * 1000, 1) if rs_at is not None else None,
        "runner_object_created_ms": summary([r - t0 for r in runners]),
        "runner_pod_created_ms": summary([p - t0 for p in pods]),
        "all_pods_after_s": m["all_assigned_after_s"],
        "all_online_after_s": m["all_online_after_s"],
        "pods_per_s_from_the_write": round(len(pods) / (pods[-1] - t0), 1) if pods else None,
        "pod_create_rate_per_s": _rate(pods),
        "runner_create_rate_per_s": _rate(runners),
        "github_calls_until_done": sum(done_calls.values()),
        "github_calls_by_endpoint_until_done": done_calls,
        "controller_cpu_s_until_assigned": m.get("controller_cpu_s_until_assigned"),
        "controller_cpu_s_until_done": m.get("controller_cpu_s_until_done"),
        "sample_pod": m["sample_pod"],
        **_writes(m, jobs),
    }


def _writes(m: dict[str, Any], jobs: int) -> dict[str, Any]:
    """The API server's writes from the burst until every job was assigned (scale: every pod)."""
    diff = {k: n - m["writes_before"].get(k, 0) for k, n in m["writes_assigned"].items()}
    diff = {k: v for k, v in sorted(diff.items(), key=lambda kv: -kv[1]) if v}
    total = sum(diff.values())
    return {"api_writes_until_assigned": diff, "api_writes_per_job": round(total / max(1, jobs), 2)}


def _paired(origins: list[float], times: list[float]) -> list[float]:
    """First come, first served: the i-th earliest time less the i-th earliest origin."""
    return [t - o for o, t in zip(sorted(origins), sorted(times), strict=False)]


def measures(mode: str, world: Any, m: dict[str, Any], relay: Relay, timeline: Timeline) -> dict[str, Any]:
    t0 = m["t0"]
    jobs = [world.jobs[j] for j in m["job_ids"]]
    queued = sorted(j.queued_at for j in jobs if j.queued_at is not None)
    burst_pods = sorted(p for p in timeline.pods if p >= t0)
    runners = sorted(r for r in timeline.runners if r >= t0)
    if mode != "pull":
        start = {j.id: relay.received.get(j.id) for j in jobs}
        missing = [j for j, at in start.items() if at is None]
        if missing:
            print(f"{len(missing)} jobs had no queued delivery", file=sys.stderr)
    else:
        start = {j.id: j.queued_at for j in jobs}
    origins = sorted(at for at in start.values() if at is not None)
    to_pod = _paired(origins, burst_pods[: len(origins)])
    to_assign = [
        j.assigned_at - start[j.id] for j in jobs if j.assigned_at is not None and start[j.id] is not None
    ]

    def calls(at: Counter[tuple[str, int]]) -> dict[str, int]:
        diff = {
            f"{ep} {status}": n - m["calls_before"].get((ep, status), 0) for (ep, status), n in at.items()
        }
        return {k: v for k, v in sorted(diff.items()) if v}

    assigned_calls, done_calls = calls(m["calls_assigned"]), calls(m["calls_done"])
    result: dict[str, Any] = {
        "mode": mode,
        "jobs": len(jobs),
        "conclusions": sorted({j.conclusion or "" for j in jobs}),
        "queued_to_pod_create_ms": summary(_paired(queued, burst_pods)),
        "to_pod_create_ms": summary(to_pod),
        "to_assignment_ms": summary(to_assign),
        "all_assigned_after_s": m["all_assigned_after_s"],
        "github_calls_until_assigned": sum(assigned_calls.values()),
        "github_calls_per_job_until_assigned": round(sum(assigned_calls.values()) / len(jobs), 3),
        "github_calls_until_done": sum(done_calls.values()),
        "github_calls_per_job_until_done": round(sum(done_calls.values()) / len(jobs), 3),
        "github_calls_by_endpoint_until_done": done_calls,
        "pods_created": len(burst_pods),
        "pods_per_job": round(len(burst_pods) / len(jobs), 3),
        "runners_created": m.get("runners_created", len(runners)),
        "pod_create_rate_per_s": _rate(burst_pods[: len(jobs)]),
        "runner_create_rate_per_s": _rate(runners[: len(jobs)]),
        "controller_cpu_s_until_assigned": m.get("controller_cpu_s_until_assigned"),
        "controller_cpu_s_until_done": m.get("controller_cpu_s_until_done"),
        "sample_pod": m["sample_pod"],
        **_writes(m, len(jobs)),
    }
    if mode == "pull":
        return result
    received = sorted(relay.received.values())
    reserved = sorted(relay.answered.values())
    stage_rd, stage_rs = [], []
    for i, o in enumerate(received):
        at = timeline.replicas_reached(i + 1, t0)
        if at is not None:
            stage_rd.append(at - o)
        at = timeline.replicas_reached(i + 1, t0, replica_set=True)
        if at is not None:
            stage_rs.append(at - o)
    rd_at = [o + d for o, d in zip(received, stage_rd, strict=False)]
    rs_at = [o + d for o, d in zip(received, stage_rs, strict=False)]
    result["deliveries_received_over_s"] = round(received[-1] - received[0], 2) if received else None
    hops = {
        "delivery_received": received,
        "reservation_written": reserved,
        "deployment_replicas_reached": rd_at,
        "replica_set_replicas_reached": rs_at,
        "runner_object_created": runners,
        "runner_pod_created": burst_pods,
    }
    result["breakdown_from_receipt_ms"] = {
        name: summary(_paired(received, times)) for name, times in hops.items() if name != "delivery_received"
    }
    result["breakdown_from_queued_ms"] = {
        name: summary(_paired(queued, times)) for name, times in hops.items()
    }
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
        ("job queued → pod created p50 / p99 (ms)", lambda r: _pp(r.get("queued_to_pod_create_ms"))),
        ("receipt → pod created p50 / p99 (ms)", lambda r: _pp(r.get("to_pod_create_ms"))),
        ("receipt → job assigned p50 / p99 (ms)", lambda r: _pp(r.get("to_assignment_ms"))),
        ("GitHub calls per job, until all assigned", lambda r: r.get("github_calls_per_job_until_assigned")),
        ("GitHub calls per job, until done, back to 0", lambda r: r.get("github_calls_per_job_until_done")),
        ("pods per job", lambda r: r.get("pods_per_job", "—")),
        ("from receipt: reservation / replica set / Runner / pod p50 (ms)", _hops),
        ("scale: from the write, Runner / pod p50 / p99 (ms)", lambda r: (
            f"{_pp(r.get('runner_object_created_ms'))} / {_pp(r.get('runner_pod_created_ms'))}")),
        ("Runner objects/s", lambda r: r.get("runner_create_rate_per_s")),
        ("API server writes per job (all clients, until assigned)", lambda r: r.get("api_writes_per_job")),
        ("controller CPU s until assigned / done", lambda r: (
            f"{r.get('controller_cpu_s_until_assigned')} / {r.get('controller_cpu_s_until_done')}")),
        ("pod creations/s (share of the ceiling)",
         lambda r: f"{r['pod_create_rate_per_s']} ({r.get('creation_rate_share_of_ceiling')})"),
    ]  # fmt: skip
    lines = ["| measure | " + " | ".join(r["mode"] for r in results) + " |"]
    lines.append("|---|" + "---:|" * len(results))
    lines += [f"| {name} | " + " | ".join(str(get(r)) for r in results) + " |" for name, get in rows]
    lines.append(f"(pull and article metric sync period: {args.pull_sync:g} s)")
    lines.append("(controller: " + ("in the benchmark's process)" if args.in_process else "its own process)"))
    return "\n".join(lines)


def _hops(r: dict[str, Any]) -> str:
    hops = r.get("breakdown_from_receipt_ms")
    if not hops:
        return "—"
    names = (
        "reservation_written",
        "replica_set_replicas_reached",
        "runner_object_created",
        "runner_pod_created",
    )
    return " / ".join(f"{hops[n]['p50']:.0f}" for n in names)


def _pp(s: dict[str, float] | None) -> str:
    if s is None:
        return "—"
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
