"""``runnerd-dev demo``: the whole system on one machine.

What it runs, in order:

1. the local control plane (:class:`devcluster.cluster.Cluster`: etcd, kube-apiserver, scheduler,
   controller-manager, kwok with CPU and GPU nodes), in the foreground;
2. the chart's manifests that make sense on kwok nodes: the CRDs, the ServiceAccount and RBAC (the
   controller itself runs as a local process, not as the chart's Deployment); without a chart, the
   CRDs from ``charts/actions-runner-controller/crds``;
3. the GitHub simulator in-process, with an organization (``acme-ml``), its repositories and a PAT;
4. ``runnerd controller`` as a subprocess (the real command line), with its webhook server, its
   metrics/dashboard server and the PAT in its environment;
5. an organization webhook in the simulator that posts signed ``workflow_job`` deliveries to the
   controller;
6. the pod agent: the runner process of every runner pod on the kwok nodes (ghsim's virtual runner);
7. the article's RunnerDeployment + HorizontalRunnerAutoscaler and a GPU pair;
8. a workload (``mlops``, ``smoke`` or a trace file) fed to the simulator, and a one-line summary
   every few seconds.

Ctrl-C (SIGINT) or SIGTERM stops everything in reverse order; every process it started is gone
when it returns. :class:`Stack` is reused by ``bench/trace_bench.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import math
import os
import secrets
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import aiohttp
import yaml

from devcluster import binaries, workload
from devcluster.cluster import Cluster, ClusterConfig, ClusterError, GpuShape
from devcluster.nodes import GPU_RESOURCE
from devcluster.ports import BIND_ATTEMPTS, bind_failure, bindable, free_port
from devcluster.process import die_with_parent
from ghsim.config import SimConfig
from ghsim.entities import Scope
from ghsim.errors import SimError
from ghsim.model import TraceEntry
from ghsim.podagent import PodAgent
from ghsim.server import Simulator

REPO_ROOT = binaries.REPO_ROOT
CHART_DIR = REPO_ROOT / "charts" / "actions-runner-controller"
GROUP = "actions.summerwind.dev"
VERSION = "v1alpha1"
RUNNER_POD_LABEL = "actions-runner"
RUNNER_IMAGE = "ghcr.io/runnerd/actions-runner:demo"
CPU_RD = "example-runner-deployment"
CPU_HRA = "example-hra"
GPU_RD = "gpu-runner-deployment"
GPU_HRA = "gpu-hra"
#: kinds of the chart's rendering that are applied (the controller runs as a local process instead
#: of the chart's Deployment; Services, monitors and the token Secret have nothing to do on kwok)
CHART_KINDS = frozenset(
    {"CustomResourceDefinition", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
)


class DemoError(RuntimeError):
    """Something the demo needs did not start; the message says what and where its log is."""


# ------------------------------------------------------------------------------------- options


@dataclass
class StackOptions:
    """Everything :class:`Stack` starts; the defaults are the demo's."""

    state_dir: Path
    namespace: str = "runnerd-demo"
    org: str = workload.ORG
    repos: tuple[str, ...] = workload.REPOS
    cpu_max: int = 5
    gpu_max: int = 4
    gpus_per_runner: int = 1
    scale_down_delay_s: int = 30
    hra_metric: bool = True
    sync_period_s: float | None = 10.0
    """the controller's ``--sync-period`` (None: its default)"""
    drain_grace_s: float | None = 2.0
    """the controller's ``--drain-grace`` (None: its default)"""
    metrics_port: int = 0
    boot_delay_s: float = 2.0
    sim_config: SimConfig = field(default_factory=SimConfig)
    controller_args: tuple[str, ...] = ()
    log_level: str = "info"
    hook_per_repo: bool = False
    """one webhook per repository instead of one for the organization (ghsim sends each hook's
    deliveries one at a time, in order; GitHub sends them in parallel)"""


@dataclass
class ClusterShape:
    cpu_nodes: int = 2
    gpu_nodes: int = 2
    gpus_per_node: int = 8
    max_pods: int = 110
    gpu_product: str = "NVIDIA-H100-80GB-HBM3"


def cluster_config(state_dir: Path, shape: ClusterShape) -> ClusterConfig:
    return ClusterConfig(
        state_dir=state_dir / "cluster",
        cpu_nodes=shape.cpu_nodes,
        gpu_shapes=(GpuShape(shape.gpu_product, shape.gpus_per_node, shape.gpu_nodes),),
        max_pods=shape.max_pods,
    )


# ------------------------------------------------------------------------------------- manifests


def manifests(opts: StackOptions) -> list[dict[str, Any]]:
    """The article's RunnerDeployment + HRA (organization runners, so that every repository of the
    organization is served), and a GPU RunnerDeployment + HRA. Both HRAs scale from zero on
    ``workflow_job`` webhooks; with ``hra_metric`` they also count queued and in-progress jobs."""
    names = [r.split("/", 1)[1] for r in opts.repos if r.lower().startswith(opts.org.lower() + "/")]

    def rd(name: str, labels: Sequence[str], extra: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "RunnerDeployment",
            "metadata": {"name": name, "namespace": opts.namespace},
            "spec": {
                "replicas": 0,
                "template": {"spec": {"organization": opts.org, "labels": list(labels), **extra}},
            },
        }

    def hra(name: str, target: str, maximum: int) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "scaleTargetRef": {"name": target},
            "minReplicas": 0,
            "maxReplicas": maximum,
            "scaleDownDelaySecondsAfterScaleOut": opts.scale_down_delay_s,
            "scaleUpTriggers": [{"githubEvent": {"workflowJob": {}}, "duration": "30m"}],
        }
        if opts.hra_metric:
            spec["metrics"] = [
                {"type": "TotalNumberOfQueuedAndInProgressWorkflowRuns", "repositoryNames": names}
            ]
        return {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "HorizontalRunnerAutoscaler",
            "metadata": {"name": name, "namespace": opts.namespace},
            "spec": spec,
        }

    gpu_resources = {"resources": {"limits": {GPU_RESOURCE: opts.gpus_per_runner}}}
    out = [rd(CPU_RD, workload.CPU_LABELS, {}), hra(CPU_HRA, CPU_RD, opts.cpu_max)]
    if opts.gpu_max > 0:
        out += [rd(GPU_RD, workload.GPU_LABELS, gpu_resources), hra(GPU_HRA, GPU_RD, opts.gpu_max)]
    return out


def chart_documents(cluster: Cluster, namespace: str) -> list[dict[str, Any]] | None:
    """What the chart renders that makes sense on kwok (see :data:`CHART_KINDS`), or ``None`` when there
    is no chart yet or it does not render."""
    if not (CHART_DIR / "Chart.yaml").is_file() or not (CHART_DIR / "templates").is_dir():
        return None
    try:
        rendered = cluster.helm(
            "template", "runnerd", str(CHART_DIR), "--namespace", namespace, "--include-crds"
        )
    except (ClusterError, OSError, subprocess.TimeoutExpired):
        return None
    docs = [d for d in yaml.safe_load_all(rendered.stdout) if isinstance(d, dict)]
    kept = [d for d in docs if d.get("kind") in CHART_KINDS]
    if not any(d.get("kind") == "CustomResourceDefinition" for d in kept):
        return None
    return kept


# ------------------------------------------------------------------------------------- pods


@dataclass
class PodRecord:
    """One runner pod as the pod agent saw it (times are Unix seconds, as the simulator's)."""

    name: str
    gpus: int
    created: float
    ended: float | None = None
    deleted: float | None = None

    def reserved_until(self, now: float) -> float:
        ends = [t for t in (self.ended, self.deleted) if t is not None]
        return min(ends) if ends else now


def pod_gpus(pod: Mapping[str, Any]) -> int:
    total = 0
    for c in (pod.get("spec") or {}).get("containers") or ():
        value = ((c.get("resources") or {}).get("limits") or {}).get(GPU_RESOURCE)
        if value is not None:
            with contextlib.suppress(TypeError, ValueError):
                total += int(value)
    return total


class TrackingPodAgent(PodAgent):
    """ghsim's pod agent, also recording when each runner pod appeared and ended (for the summary and
    the benchmark's idle-time and GPU-hour accounting)."""

    def __init__(self, *args: Any, clock: Callable[[], float] = time.time, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.clock = clock
        self.pods: dict[str, PodRecord] = {}

    async def start(self) -> None:
        """As ghsim's, with no limit on connections to the simulator: every idle virtual runner holds
        a long poll, and aiohttp's default pool of 100 connections stalls the jobs of a fleet of more
        than 100 runners (their heartbeats and completions wait behind the polls)."""
        await super().start()
        default = self._session
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        if default is not None:
            await default.close()

    def handle(self, event_type: str, pod: Mapping[str, Any]) -> None:
        meta = pod.get("metadata") or {}
        uid = str(meta.get("uid", ""))
        now = self.clock()
        record = self.pods.get(uid)
        if record is None and event_type != "DELETED":
            record = self.pods[uid] = PodRecord(str(meta.get("name", "")), pod_gpus(pod), now)
        if record is not None:
            phase = (pod.get("status") or {}).get("phase")
            if record.ended is None and (phase in ("Succeeded", "Failed") or meta.get("deletionTimestamp")):
                record.ended = now
            if event_type == "DELETED" and record.deleted is None:
                record.deleted = now
                record.ended = record.ended or now
        super().handle(event_type, pod)

    def alive(self) -> list[PodRecord]:
        return [p for p in self.pods.values() if p.ended is None]

    def by_name(self) -> dict[str, PodRecord]:
        return {p.name: p for p in self.pods.values()}


# ------------------------------------------------------------------------------------- trace feed


class Feeder:
    """Schedules trace entries into the simulator a little ahead of time (so endless workloads work)."""

    def __init__(self, sim: Simulator, entries: Iterable[TraceEntry], lookahead_s: float = 30.0) -> None:
        self.sim = sim
        self._entries: Iterator[TraceEntry] = iter(entries)
        self._next: TraceEntry | None = None
        self.lookahead_s = lookahead_s
        self.base = sim.world.now()
        self.scheduled = 0
        self.exhausted = False

    def feed(self) -> None:
        horizon = self.sim.world.now() - self.base + self.lookahead_s
        batch: list[TraceEntry] = []
        while True:
            if self._next is None:
                self._next = next(self._entries, None)
                if self._next is None:
                    self.exhausted = True
                    break
            if self._next.offset > horizon:
                break
            batch.append(self._next)
            self._next = None
        if batch:
            self.scheduled += self.sim.world.schedule_trace(batch, start=self.base)
            self.sim.core.poke()

    async def run(self, period: float = 1.0) -> None:
        while not self.exhausted:
            self.feed()
            await asyncio.sleep(period)


# ------------------------------------------------------------------------------------- summary


@dataclass(frozen=True)
class Snapshot:
    elapsed: float
    queued: int
    running: int
    done: int
    done_on_gpu: int
    runners: int
    idle: int
    busy: int
    starting: int
    gpu_runners: int
    desired: dict[str, int | None]
    maximum: dict[str, int]
    wait_p50: float | None

    def line(self) -> str:
        desired = " ".join(
            f"{pool} {'?' if self.desired.get(pool) is None else self.desired[pool]}/{self.maximum[pool]}"
            for pool in self.maximum
        )
        wait = "-" if self.wait_p50 is None else f"{self.wait_p50:.1f}s"
        return (
            f"[{format_elapsed(self.elapsed)}] jobs: {self.queued} queued, {self.running} running, "
            f"{self.done} done ({self.done_on_gpu} on GPU) | runners: {self.runners} "
            f"({self.idle} idle, {self.busy} busy, {self.starting} starting), {self.gpu_runners} GPU | "
            f"desired: {desired} | queue wait p50 {wait}"
        )

    @property
    def at_zero(self) -> bool:
        return self.runners == 0 and all(v == 0 for v in self.desired.values())


def format_elapsed(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m:02d}:{s:02d}"


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in 0..100) of ``values``; ``None`` when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


# ------------------------------------------------------------------------------------- the stack


class Stack:
    """Everything but the control plane, on a started :class:`Cluster`. ``async with Stack(...)``."""

    def __init__(self, cluster: Cluster, opts: StackOptions, out: TextIO | None = None) -> None:
        self.cluster = cluster
        self.opts = opts
        self.out = out
        self.sim = Simulator(config=opts.sim_config, tick_interval=0.1)
        self.secret = secrets.token_hex(20)
        self.webhook_port = free_port()
        self.metrics_port = opts.metrics_port or free_port()
        self.controller: subprocess.Popen[bytes] | None = None
        self.controller_argv: list[str] = []
        self.agent: TrackingPodAgent | None = None
        self.pat_principal = ""
        self.chart_applied = False
        self.started = time.time()
        self._api_client: Any = None
        self._custom: Any = None
        self._stack = contextlib.AsyncExitStack()

    # ---- paths and URLs

    @property
    def log_dir(self) -> Path:
        return self.opts.state_dir / "logs"

    @property
    def controller_log(self) -> Path:
        return self.log_dir / "controller.log"

    @property
    def manifest_file(self) -> Path:
        return self.opts.state_dir / "manifests.yaml"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    @property
    def dashboard_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/dashboard"

    @property
    def webhook_url(self) -> str:
        return f"http://127.0.0.1:{self.webhook_port}/webhook"

    # ---- lifecycle

    async def __aenter__(self) -> Stack:
        try:
            await self._start()
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    async def _start(self) -> None:
        opts = self.opts
        self.log_dir.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(
            self.cluster.request, "POST", "/api/v1/namespaces", {"metadata": {"name": opts.namespace}}
        )
        await asyncio.to_thread(self._install_crds)
        await self.sim.start()
        self._stack.push_async_callback(self.sim.stop)
        self._seed_world()
        self._stack.push_async_callback(self.stop_controller)
        await self._kube_clients()
        await self._start_controller_bound()
        scopes = [Scope("repo", r) for r in opts.repos] if opts.hook_per_repo else [Scope("org", opts.org)]
        for scope in scopes:
            self.sim.world.create_hook(self.webhook_url, scope=scope, secret=self.secret)
        agent = TrackingPodAgent(
            self._core,
            self.sim.base_url,
            namespace=opts.namespace,
            label_selector=RUNNER_POD_LABEL,
            boot_delay=opts.boot_delay_s,
        )
        await agent.start()
        self.agent = agent
        self._stack.push_async_callback(agent.stop)
        self.manifest_file.write_text(yaml.safe_dump_all(manifests(opts), sort_keys=False))
        await asyncio.to_thread(self.cluster.kubectl, "apply", "-f", str(self.manifest_file))

    def _install_crds(self) -> None:
        docs = chart_documents(self.cluster, self.opts.namespace)
        if docs is not None:
            self.cluster.kubectl("apply", "--server-side", "-f", "-", input=yaml.safe_dump_all(docs))
            self.chart_applied = True
        else:
            self.cluster.kubectl("apply", "--server-side", "-f", str(CHART_DIR / "crds"))
        self.cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")

    def _seed_world(self) -> None:
        world = self.sim.world
        orgs: set[str] = set()
        for full in (*self.opts.repos, f"{self.opts.org}/.github"):
            owner, name = full.split("/", 1)
            if owner.lower() not in orgs:
                with contextlib.suppress(SimError):
                    world.create_org(owner)
                orgs.add(owner.lower())
            if name != ".github":
                with contextlib.suppress(SimError):
                    world.create_repo(owner, name)
        pat = world.create_pat("runnerd-demo")
        self._token = pat.token
        self.pat_principal = f"pat:{pat.id}"

    def _start_controller(self) -> None:
        opts = self.opts
        self.controller_argv = [
            "runnerd",
            "controller",
            f"--kubeconfig={self.cluster.kubeconfig}",
            f"--watch-namespace={opts.namespace}",
            f"--github-url={self.sim.base_url}",
            f"--runner-github-url={self.sim.base_url}/",
            f"--webhook-addr=127.0.0.1:{self.webhook_port}",
            f"--metrics-addr=127.0.0.1:{self.metrics_port}",
            f"--runner-image={RUNNER_IMAGE}",
            f"--log-level={opts.log_level}",
        ]
        if opts.sync_period_s is not None:
            self.controller_argv.append(f"--sync-period={opts.sync_period_s:g}s")
        if opts.drain_grace_s is not None:
            self.controller_argv.append(f"--drain-grace={opts.drain_grace_s:g}s")
        self.controller_argv += opts.controller_args
        env = {
            **os.environ,
            "GITHUB_TOKEN": self._token,
            "GITHUB_WEBHOOK_SECRET_TOKEN": self.secret,
            "PYTHONUNBUFFERED": "1",
        }
        env.pop("KUBECONFIG", None)
        with self.controller_log.open("ab") as log:
            self.controller = subprocess.Popen(
                [sys.executable, "-m", "runnerd.cli", *self.controller_argv[1:]],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches the demo, which stops it in order
                preexec_fn=die_with_parent,
            )

    async def _start_controller_bound(self) -> None:
        """Start the controller and wait until it is ready; one that lost its webhook or metrics
        port to another program is started again on new ports (see :mod:`devcluster.cluster`)."""
        for attempt in range(1, BIND_ATTEMPTS + 1):
            offset = self.controller_log.stat().st_size if self.controller_log.exists() else 0
            self._start_controller()
            try:
                await self._wait_controller_ready()
                return
            except DemoError:
                with self.controller_log.open("rb") as fh:
                    fh.seek(offset)
                    output = fh.read().decode(errors="replace")
                if attempt == BIND_ATTEMPTS or not bind_failure(output):
                    raise
            await self.stop_controller()
            self.webhook_port, self.metrics_port = free_port(), free_port()

    async def stop_controller(self, grace: float = 20.0) -> None:
        proc = self.controller
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(proc.wait, grace)
            except subprocess.TimeoutExpired:
                proc.kill()
        await asyncio.to_thread(proc.wait)

    def controller_failed(self) -> str | None:
        proc = self.controller
        if proc is None or proc.poll() is None:
            return None
        tail = self.controller_log.read_text(errors="replace").splitlines()[-15:]
        return f"the controller exited with code {proc.returncode}; log {self.controller_log}:\n" + "\n".join(
            tail
        )

    async def _kube_clients(self) -> None:
        from kubernetes_asyncio import client, config

        configuration = client.Configuration()
        await config.load_kube_config(
            config_file=str(self.cluster.kubeconfig), client_configuration=configuration
        )
        self._api_client = client.ApiClient(configuration)
        self._stack.push_async_callback(self._api_client.close)
        self._core = client.CoreV1Api(self._api_client)
        self._custom = client.CustomObjectsApi(self._api_client)

    async def _wait_controller_ready(self, within: float = 60.0) -> None:
        deadline = time.monotonic() + within
        url = f"http://127.0.0.1:{self.metrics_port}/readyz"
        async with aiohttp.ClientSession() as session:
            while True:
                failed = self.controller_failed()
                if failed:
                    raise DemoError(failed)
                with contextlib.suppress(aiohttp.ClientError, OSError):
                    async with session.get(url) as resp:
                        if resp.status == 200:
                            return
                if time.monotonic() > deadline:
                    raise DemoError(
                        f"the controller was not ready after {within:g}s; log {self.controller_log}"
                    )
                await asyncio.sleep(0.2)

    async def dashboard_available(self) -> bool:
        with contextlib.suppress(aiohttp.ClientError, OSError):
            async with aiohttp.ClientSession() as session, session.get(self.dashboard_url) as resp:
                return resp.status == 200
        return False

    # ---- observation

    async def desired(self) -> dict[str, int | None]:
        """``spec.replicas`` of the demo's RunnerDeployments (pool name → replicas; None when unknown)."""
        out: dict[str, int | None] = {}
        for pool, name in self.pools().items():
            try:
                obj = await self._custom.get_namespaced_custom_object(
                    GROUP, VERSION, self.opts.namespace, "runnerdeployments", name
                )
            except Exception:
                out[pool] = None
                continue
            value = (obj.get("spec") or {}).get("replicas")
            out[pool] = 1 if value is None else int(value)
        return out

    def pools(self) -> dict[str, str]:
        pools = {"cpu": CPU_RD}
        if self.opts.gpu_max > 0:
            pools["gpu"] = GPU_RD
        return pools

    def maximum(self) -> dict[str, int]:
        out = {"cpu": self.opts.cpu_max}
        if self.opts.gpu_max > 0:
            out["gpu"] = self.opts.gpu_max
        return out

    def gpu_job_ids(self) -> list[int]:
        """Completed jobs that ran on a runner pod with a GPU."""
        assert self.agent is not None
        pods = self.agent.by_name()
        out = []
        for job in self.sim.world.jobs.values():
            if job.status != "completed" or job.runner_name is None:
                continue
            pod = pods.get(job.runner_name)
            if pod is not None and pod.gpus > 0:
                out.append(job.id)
        return out

    async def snapshot(self) -> Snapshot:
        assert self.agent is not None
        world = self.sim.world
        queued = running = done = 0
        waits: list[float] = []
        for job in world.jobs.values():
            if job.status in ("queued", "waiting"):
                queued += 1
            elif job.status == "in_progress":
                running += 1
            elif job.status == "completed":
                done += 1
            if job.started_at is not None and job.queued_at is not None:
                waits.append(job.started_at - job.queued_at)
        by_name = {r.name: r for r in world.runners.values()}
        alive = self.agent.alive()
        idle = busy = 0
        for pod in alive:
            runner = by_name.get(pod.name)
            if runner is None:
                continue
            if runner.job_id is not None:
                busy += 1
            elif world.runner_online(runner):
                idle += 1
        return Snapshot(
            elapsed=time.time() - self.started,
            queued=queued,
            running=running,
            done=done,
            done_on_gpu=len(self.gpu_job_ids()),
            runners=len(alive),
            idle=idle,
            busy=busy,
            starting=len(alive) - idle - busy,
            gpu_runners=sum(1 for p in alive if p.gpus > 0),
            desired=await self.desired(),
            maximum=self.maximum(),
            wait_p50=statistics.median(waits) if waits else None,
        )

    def github_calls(self) -> int:
        """REST calls the controller made to the simulator (its PAT's count)."""
        return self.sim.core.stats.by_principal.get(self.pat_principal, 0)


# ------------------------------------------------------------------------------------- the demo


@dataclass
class DemoArgs:
    state_dir: Path
    workload: str = "mlops"
    trace: Path | None = None
    seed: int = 7
    time_scale: float = 1.0
    interval: float = 5.0
    shape: ClusterShape = dataclasses.field(default_factory=ClusterShape)
    stack: StackOptions | None = None


def default_state_dir() -> Path:
    root = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return root / "runnerd" / "demo"


def load_workload(args: DemoArgs) -> tuple[Iterable[TraceEntry], tuple[str, ...], str]:
    """The entries to replay, the repositories they need, and a description."""
    if args.trace is not None:
        entries = workload.read_trace(args.trace)
        repos = tuple(dict.fromkeys(e.repo for e in entries)) or workload.REPOS
        what = f"trace {args.trace} ({len(entries)} jobs)"
        if args.time_scale != 1.0:
            return (
                list(workload.scaled(entries, args.time_scale)),
                repos,
                what + f", time x{args.time_scale:g}",
            )
        return entries, repos, what
    if args.workload == "smoke":
        return workload.smoke(), workload.REPOS, "smoke: 4 short jobs, one on a GPU runner"
    entries_iter: Iterable[TraceEntry] = workload.mlops(args.seed)
    if args.time_scale != 1.0:
        entries_iter = workload.scaled(entries_iter, args.time_scale)
    return (
        entries_iter,
        workload.REPOS,
        f"mlops (seed {args.seed}): bursts of lint and test jobs, GPU training tests, quiet gaps",
    )


def say(out: TextIO, text: str) -> None:
    print(text, file=out, flush=True)


async def run_stack(cluster: Cluster, args: DemoArgs, out: TextIO) -> int:
    entries, repos, description = load_workload(args)
    opts = args.stack or StackOptions(state_dir=args.state_dir)
    opts.repos = tuple(dict.fromkeys((*repos,)))
    org_repos = [r for r in opts.repos if r.lower().startswith(opts.org.lower() + "/")]
    if len(org_repos) != len(opts.repos):
        others = ", ".join(r for r in opts.repos if r not in org_repos)
        say(out, f"runnerd demo: note: no RunnerDeployment serves {others} (only organization {opts.org})")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with Stack(cluster, opts, out) as stack:
            await _banner(stack, description, out)
            feeder = Feeder(stack.sim, entries)
            feed_task = asyncio.create_task(feeder.run(), name="demo-feeder")
            announced = False
            try:
                while not stop.is_set():
                    failed = stack.controller_failed()
                    if failed:
                        say(out, f"runnerd demo: {failed}")
                        return 1
                    snap = await stack.snapshot()
                    say(out, snap.line())
                    done = finished(snap, feeder)
                    if done and not announced:
                        announced = True
                        say(out, done)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), args.interval)
            finally:
                feed_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await feed_task
                say(out, "runnerd demo: stopping (controller, pod agent, GitHub simulator, control plane)")
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    return 0


def finished(snap: Snapshot, feeder: Feeder) -> str | None:
    """The line announcing that a finite workload is over and every pool is back to zero, if it is."""
    if not (feeder.exhausted and snap.done == feeder.scheduled and snap.at_zero):
        return None
    return (
        f"runnerd demo: workload done: {snap.done} jobs completed, {snap.done_on_gpu} on a GPU runner; "
        "every pool is back to zero (Ctrl-C stops the demo)"
    )


async def _banner(stack: Stack, description: str, out: TextIO) -> None:
    opts = stack.opts
    repos = ", ".join(r.split("/", 1)[1] for r in opts.repos)
    dashboard = stack.dashboard_url if await stack.dashboard_available() else None
    command = " ".join(shlex.quote(a) for a in stack.controller_argv)
    chart = "the chart's CRDs, ServiceAccount and RBAC" if stack.chart_applied else "the CRDs"
    lines = [
        f"  kubectl        export KUBECONFIG={stack.cluster.kubeconfig}",
        f"                 kubectl get runnerdeployments,hra,runners,pods -n {opts.namespace}",
        f"  installed      {chart}; manifests in {stack.manifest_file}",
        f"  GitHub (sim)   {stack.sim.base_url}  organization {opts.org}: {repos}",
        f"  controller     {command}",
        f"                 log {stack.controller_log}",
        f"  webhooks       workflow_job -> {stack.webhook_url} (HMAC-signed)",
        f"  cpu pool       {CPU_RD} + {CPU_HRA}: 0..{opts.cpu_max} runners, [self-hosted, arc-runner]",
        f"  gpu pool       {GPU_RD} + {GPU_HRA}: 0..{opts.gpu_max} runners, [self-hosted, gpu], "
        f"{opts.gpus_per_runner} GPU each",
        f"  workload       {description}",
        f"  dashboard      {dashboard}" if dashboard else f"  metrics        {stack.metrics_url}",
        f"  status         runnerd status --kubeconfig {stack.cluster.kubeconfig} -n {opts.namespace} "
        f"--metrics-url {stack.metrics_url}",
        "Ctrl-C stops everything.",
    ]
    say(out, "runnerd demo: running")
    for line in lines:
        say(out, line)


def run_demo(args: DemoArgs, out: TextIO = sys.stdout) -> int:
    """The demo in the foreground: returns when interrupted (0) or when something failed (1)."""
    shape = args.shape
    state = args.state_dir
    try:
        bins = binaries.ensure()
    except binaries.BinariesError as e:
        say(out, f"runnerd demo: {e}")
        return 1
    # a fresh cluster each time: the previous run's etcd data and logs go
    shutil.rmtree(state / "cluster", ignore_errors=True)
    shutil.rmtree(state / "logs", ignore_errors=True)
    state.mkdir(parents=True, exist_ok=True)
    cluster = Cluster(cluster_config(state, shape), bins)
    say(
        out,
        f"runnerd demo: starting the control plane ({shape.cpu_nodes} CPU nodes, {shape.gpu_nodes} GPU nodes "
        f"with {shape.gpus_per_node} x {shape.gpu_product})",
    )
    started = time.monotonic()
    try:
        cluster.start()
    except ClusterError as e:
        say(out, f"runnerd demo: the control plane did not start: {e}")
        return 1
    except KeyboardInterrupt:
        return 130
    say(out, f"runnerd demo: control plane ready in {time.monotonic() - started:.1f}s at {cluster.server}")
    code = 1
    try:
        code = asyncio.run(run_stack(cluster, args, out))
    except (DemoError, ClusterError, SimError) as e:
        say(out, f"runnerd demo: {e}")
    except KeyboardInterrupt:
        code = 0
    finally:
        # a second Ctrl-C while the control plane stops must not cut the stop short
        previous = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            cluster.stop()
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
        shutil.rmtree(state / "cluster" / "etcd", ignore_errors=True)
    say(out, "runnerd demo: stopped; nothing is left running")
    return code


# ------------------------------------------------------------------------------------- command line


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        "demo", help="the whole system on one machine: control plane, GitHub simulator, controller, workload"
    )
    p.add_argument("--workload", choices=("mlops", "smoke"), default="mlops", help="built-in workload")
    p.add_argument("--trace", type=Path, help="replay this trace file (docs/ghsim.md#trace-files) instead")
    p.add_argument("--seed", type=int, default=7, help="seed of the mlops workload (default 7)")
    p.add_argument(
        "--time-scale", type=float, default=1.0, help="multiply offsets and durations (0.5: 2x faster)"
    )
    p.add_argument("--interval", type=float, default=5.0, help="seconds between summary lines (default 5)")
    p.add_argument("--state-dir", type=Path, default=None, help="default ~/.cache/runnerd/demo")
    p.add_argument(
        "--metrics-port", type=int, default=8080, help="controller's metrics/dashboard port (0: any)"
    )
    p.add_argument("--cpu-max", type=int, default=5, help="maxReplicas of the CPU pool (default 5)")
    p.add_argument("--gpu-max", type=int, default=4, help="maxReplicas of the GPU pool (default 4)")
    p.add_argument(
        "--scale-down-delay", type=int, default=None, help="HRA scaleDownDelaySecondsAfterScaleOut"
    )
    p.add_argument("--sync-period", type=float, default=10.0, help="controller --sync-period in seconds")
    p.add_argument("--boot-delay", type=float, default=2.0, help="seconds a runner takes to boot")
    p.add_argument(
        "--webhook-only",
        action="store_true",
        help="HRAs scale on workflow_job webhooks only (no TotalNumberOfQueuedAndInProgressWorkflowRuns)",
    )
    return p


def args_from(ns: argparse.Namespace) -> DemoArgs:
    state_dir = ns.state_dir or default_state_dir()
    smoke = ns.workload == "smoke" and ns.trace is None
    delay = ns.scale_down_delay if ns.scale_down_delay is not None else (3 if smoke else 30)
    metrics_port = ns.metrics_port
    if metrics_port and not bindable(metrics_port):
        metrics_port = 0
    stack = StackOptions(
        state_dir=state_dir,
        cpu_max=ns.cpu_max,
        gpu_max=ns.gpu_max,
        scale_down_delay_s=delay,
        sync_period_s=ns.sync_period,
        metrics_port=metrics_port,
        boot_delay_s=ns.boot_delay,
        hra_metric=not ns.webhook_only,
    )
    return DemoArgs(
        state_dir=state_dir,
        workload=ns.workload,
        trace=ns.trace,
        seed=ns.seed,
        time_scale=ns.time_scale,
        interval=ns.interval,
        stack=stack,
    )


def main(ns: argparse.Namespace) -> int:
    args = args_from(ns)
    if args.trace is not None and not args.trace.is_file():
        print(f"runnerd demo: no trace file {args.trace}", file=sys.stderr)
        return 2
    if args.trace is not None:
        try:
            workload.read_trace(args.trace)
        except SimError as e:
            print(f"runnerd demo: {args.trace}: {e.message}", file=sys.stderr)
            return 2
    return run_demo(args)
