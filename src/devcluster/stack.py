"""The demo's stack on a started dev cluster (:class:`Stack`): the chart's CRDs and RBAC, the
GitHub simulator, ``runnerd controller`` as a subprocess, the organization webhook, the pod agent
and the article's manifests (:func:`manifests`); stopped in reverse order. Also what the trace
benchmark needs to build the same thing: :class:`StackOptions`, :class:`ClusterShape`,
:func:`cluster_config`."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import aiohttp
import yaml

from devcluster import binaries, workload
from devcluster.cluster import Cluster, ClusterConfig, ClusterError, GpuShape
from devcluster.nodes import GPU_RESOURCE
from devcluster.observe import Snapshot, TrackingPodAgent
from devcluster.ports import BIND_ATTEMPTS, bind_failure, free_port
from devcluster.process import die_with_parent, terminate
from ghsim.config import SimConfig
from ghsim.entities import Scope
from ghsim.errors import SimError
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
    webhook_audit: bool = False
    """run the controller with its default ``--webhook-audit auto``, which finds the organization's
    hook (one organization hook only); ``False``: ``--webhook-audit=off``"""


@dataclass
class ClusterShape:
    cpu_nodes: int = 2
    gpu_nodes: int = 2
    gpus_per_node: int = 8
    max_pods: int = 110
    gpu_product: str = "NVIDIA-H100-80GB-HBM3"
    gpu_shapes: tuple[GpuShape, ...] = ()
    """When given, the GPU nodes instead of ``gpu_nodes`` x ``gpus_per_node`` ``gpu_product``
    (the demo's: :data:`devcluster.cluster.MIXED_GPU_SHAPES`)."""

    def shapes(self) -> tuple[GpuShape, ...]:
        return self.gpu_shapes or (GpuShape(self.gpu_product, self.gpus_per_node, self.gpu_nodes),)

    def describe(self) -> str:
        """``2 CPU nodes, GPU nodes: 2 x 8 NVIDIA-H100-80GB-HBM3, 1 x 7 1g.10gb (NVIDIA-A100-SXM4-80GB)``"""
        parts = []
        for g in self.shapes():
            if not g.nodes:
                continue
            what = [f"{g.gpus} {g.product}"] if g.gpus else []
            what += [f"{count} {profile} ({g.product})" for profile, count in g.mig]
            parts.append(f"{g.nodes} x " + " + ".join(what))
        return f"{self.cpu_nodes} CPU nodes, GPU nodes: {', '.join(parts) or 'none'}"


def cluster_config(state_dir: Path, shape: ClusterShape) -> ClusterConfig:
    return ClusterConfig(
        state_dir=state_dir / "cluster",
        cpu_nodes=shape.cpu_nodes,
        gpu_shapes=shape.shapes(),
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


def install_crds(cluster: Cluster, directory: Path = CHART_DIR / "crds") -> None:
    """The CRDs in ``directory`` (the chart's by default) applied server-side, and Established."""
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(directory))
    cluster.wait_established()


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
        self.hook_ids: list[int] = []
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
        if opts.webhook_audit:
            if opts.hook_per_repo:
                raise ValueError("the webhook audit reads one organization hook, not one hook per repository")
            self._create_hooks()
        await self._start_controller_bound()
        if not opts.webhook_audit:
            self._create_hooks()
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

    def _create_hooks(self) -> None:
        opts = self.opts
        scopes = [Scope("repo", r) for r in opts.repos] if opts.hook_per_repo else [Scope("org", opts.org)]
        self.hook_ids = [
            self.sim.world.create_hook(self.webhook_url, scope=scope, secret=self.secret).id
            for scope in scopes
        ]

    def _install_crds(self) -> None:
        docs = chart_documents(self.cluster, self.opts.namespace)
        if docs is not None:
            self.cluster.kubectl("apply", "--server-side", "-f", "-", input=yaml.safe_dump_all(docs))
            self.chart_applied = True
            self.cluster.wait_established()
        else:
            install_crds(self.cluster)

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
        # the classic scopes of the article's PAT, and admin:org_hook for the webhook delivery audit
        pat = world.create_pat(
            "runnerd-demo", ("repo", "admin:org", "manage_runners:enterprise", "admin:org_hook")
        )
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
        if not opts.webhook_audit:  # True: the controller's default (auto) finds the organization hook
            self.controller_argv.append("--webhook-audit=off")
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
        if self.controller is not None:
            await asyncio.to_thread(terminate, self.controller, grace)

    def cost_command(self) -> list[str]:
        """``runnerd status --cost`` for the demo's ledger (the controller's namespace)."""
        return [
            "runnerd",
            "status",
            "--cost",
            f"--kubeconfig={self.cluster.kubeconfig}",
            f"--ledger-namespace={self.opts.namespace}",
        ]

    async def cost_report(self, within: float = 30.0) -> str:
        """What ``runnerd status --cost`` prints now (or why it printed nothing)."""
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "runnerd.cli",
            *self.cost_command()[1:],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        try:
            output, _ = await asyncio.wait_for(proc.communicate(), within)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            return f"runnerd status --cost did not answer within {within:g}s"
        return output.decode(errors="replace").rstrip("\n")

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

    async def sized_runners(self, selector: str) -> list[dict[str, Any]]:
        """The namespace's Runners with the label ``selector`` (the demo's sized jobs)."""
        listed = await self._custom.list_namespaced_custom_object(
            GROUP, VERSION, self.opts.namespace, "runners", label_selector=selector
        )
        return list(listed.get("items") or ())

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
