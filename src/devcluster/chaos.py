"""A chaos run of ``runnerd controller`` (a real process) against ghsim and the real control plane.

Faults, all drawn from one seed so a run repeats: the controller SIGKILLed during the job burst and
restarted after a pause; ``workflow_job`` deliveries dropped, duplicated and reordered (ghsim's hook
faults); GitHub answering 5xx to a fraction of the controller's API calls, half of them *after*
GitHub acted (a proxy between the controller and ghsim). Used by
``tests/integration/test_chaos.py`` (short) and ``bench/soak_bench.py`` (long). It talks to the
cluster as its admin (:meth:`Cluster.request`) and imports nothing of runnerd: the product runs as
the process a user starts.

:func:`run` returns what the assertions need: every job's outcome and queue wait, what was left at
the end, and when the fleet got back to zero.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp import web

from ghsim import JobSpec, Simulator
from ghsim.entities import Scope
from ghsim.podagent import connect

from .cluster import Cluster
from .ports import free_port, release_port
from .process import terminate
from .wait import WaitTimeout, wait_until

REPO = "octo-org/app"
LABELS = ("self-hosted", "chaos")
API_GROUP = "/apis/actions.summerwind.dev/v1alpha1"
PLURALS = {
    "RunnerDeployment": "runnerdeployments",
    "HorizontalRunnerAutoscaler": "horizontalrunnerautoscalers",
}
SECRET = "chaos-webhook-secret"


@dataclass(frozen=True)
class Plan:
    seed: int = 1
    jobs: int = 12
    waves: int = 3
    wave_gap_s: float = 3.0
    job_s: tuple[float, float] = (1.0, 3.0)
    kills: int = 1
    """SIGKILLs of the controller, spread over the burst."""
    down_s: float = 2.0
    """How long the controller stays dead after each kill."""
    drop: float = 0.3
    duplicate: float = 0.1
    reorder: float = 0.1
    github_5xx: float = 0.05
    poll_bound_s: float = 10.0
    sync_period_s: float = 5.0
    duration: str = "15s"
    """The HRA trigger's reservation duration (a lost ``completed`` delivery holds a runner this long)."""
    max_replicas: int = 6


@dataclass
class Outcome:
    jobs: int = 0
    completed: int = 0
    succeeded: int = 0
    not_succeeded: list[str] = field(default_factory=list)
    queue_waits: list[float] = field(default_factory=list)
    kills: int = 0
    injected_5xx: int = 0
    injected_5xx_after: int = 0
    api_calls: int = 0
    left_runners: int = 0
    left_runner_objects: int = 0
    left_pods: int = 0
    converged_s: float | None = None
    """Seconds from the last job's completion until no runner, Runner or pod was left."""
    downtime_s: float = 0.0
    controller_log: str = ""


class FaultyGitHub:
    """A reverse proxy to ghsim that answers 5xx to a seeded fraction of requests; half of those are
    forwarded first (GitHub acted, the answer got lost)."""

    def __init__(self, upstream: str, rate: float, rng: random.Random) -> None:
        self.upstream = upstream.rstrip("/")
        self.rate = rate
        self.rng = rng
        self.calls = 0
        self.before = 0
        self.after = 0
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> FaultyGitHub:
        self._session = aiohttp.ClientSession(auto_decompress=False)
        app = web.Application(client_max_size=16 << 20)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        self.calls += 1
        fault = self.rng.random() < self.rate
        after = fault and self.rng.random() < 0.5
        if fault and not after:
            self.before += 1
            return web.Response(status=502, text="injected: before GitHub acted")
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        body = await request.read()
        async with self._session.request(
            request.method, self.upstream + request.path_qs, headers=headers, data=body or None
        ) as upstream:
            payload = await upstream.read()
            if after:
                self.after += 1
                return web.Response(status=503, text="injected: after GitHub acted")
            drop = {"content-length", "transfer-encoding", "connection", "content-encoding"}
            out = {k: v for k, v in upstream.headers.items() if k.lower() not in drop}
            if "Content-Encoding" in upstream.headers:
                out["Content-Encoding"] = upstream.headers["Content-Encoding"]
            return web.Response(status=upstream.status, body=payload, headers=out)


class ControllerProcess:
    """``runnerd controller`` as a subprocess on fixed ports (the hook's URL stays the same)."""

    def __init__(
        self, cluster: Cluster, namespace: str, github_url: str, runner_url: str, token: str
    ) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.github_url = github_url
        self.runner_url = runner_url
        self.token = token
        self.webhook_port = free_port()
        self.health_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path: Path | None = None

    def start(self, log_path: Path, plan: Plan) -> None:
        self.log_path = log_path
        env = {
            **os.environ,
            "GITHUB_TOKEN": self.token,
            "GITHUB_WEBHOOK_SECRET_TOKEN": SECRET,
            "PYTHONUNBUFFERED": "1",
        }
        env.pop("KUBECONFIG", None)
        address = f"127.0.0.1:{self.health_port}"
        argv = [
            sys.executable, "-m", "runnerd.cli", "controller",
            f"--kubeconfig={self.cluster.kubeconfig}",
            f"--watch-namespace={self.namespace}",
            f"--github-url={self.github_url}",
            f"--runner-github-url={self.runner_url}",
            f"--webhook-addr=127.0.0.1:{self.webhook_port}",
            f"--metrics-addr={address}",
            f"--health-probe-bind-address={address}",
            f"--sync-period={plan.sync_period_s:g}s",
            f"--webhook-poll-bound={plan.poll_bound_s:g}s",
            "--drain-grace=2s",
            "--default-scale-down-delay=1s",
            "--log-level=info",
        ]  # fmt: skip
        with log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                argv, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None:
            terminate(self.proc)
        release_port(self.webhook_port)
        release_port(self.health_port)

    def exited(self) -> str | None:
        if self.proc is None or self.proc.poll() is None:
            return None
        return f"the controller exited with code {self.proc.returncode}"

    async def ready(self, http: aiohttp.ClientSession) -> bool:
        with contextlib.suppress(aiohttp.ClientError, OSError):
            async with http.get(f"http://127.0.0.1:{self.health_port}/readyz") as answer:
                return answer.status == 200
        return False


def manifests(namespace: str, plan: Plan) -> list[dict[str, Any]]:
    rd = {
        "apiVersion": "actions.summerwind.dev/v1alpha1",
        "kind": "RunnerDeployment",
        "metadata": {"name": "chaos", "namespace": namespace},
        "spec": {"replicas": 0, "template": {"spec": {"repository": REPO, "labels": list(LABELS)}}},
    }
    hra = yaml.safe_load(
        f"""
apiVersion: actions.summerwind.dev/v1alpha1
kind: HorizontalRunnerAutoscaler
metadata:
  name: chaos
  namespace: {namespace}
spec:
  scaleTargetRef:
    name: chaos
  minReplicas: 0
  maxReplicas: {plan.max_replicas}
  scaleDownDelaySecondsAfterScaleOut: 1
  scaleUpTriggers:
    - githubEvent:
        workflowJob: {{}}
      duration: {plan.duration}
"""
    )
    return [rd, hra]


async def run(
    cluster: Cluster, namespace: str, plan: Plan, log_dir: Path, *, within: float = 300.0
) -> Outcome:
    """One chaos run (see the module docstring); raises :class:`WaitTimeout` naming what never
    happened (but for the fleet's return to zero, which the outcome reports)."""
    rng = random.Random(plan.seed)  # the workload and the kills
    faults = random.Random(plan.seed + 1)  # the n-th API call's fault is the same in every run
    outcome = Outcome(jobs=plan.jobs)
    os.makedirs(log_dir, exist_ok=True)
    async with Simulator(tick_interval=0.05) as sim, FaultyGitHub("", plan.github_5xx, faults) as proxy:
        proxy.upstream = sim.base_url
        world = sim.world
        world.create_org("octo-org")
        world.create_repo("octo-org", "app")
        token = world.create_pat("admin").token
        controller = ControllerProcess(cluster, namespace, proxy.url, sim.base_url + "/", token)
        try:
            async with (
                aiohttp.ClientSession() as http,
                connect(
                    str(cluster.kubeconfig),
                    sim.base_url,
                    namespace=namespace,
                    label_selector="actions-runner",
                    poll_wait=1.0,
                ),
            ):
                await _run(plan, rng, outcome, sim, cluster, controller, http, log_dir, namespace, within)
        finally:
            controller.stop()
        outcome.injected_5xx = proxy.before + proxy.after
        outcome.injected_5xx_after = proxy.after
        outcome.api_calls = proxy.calls
        if controller.log_path is not None:
            outcome.controller_log = str(controller.log_path)
    return outcome


async def _run(
    plan: Plan,
    rng: random.Random,
    outcome: Outcome,
    sim: Simulator,
    cluster: Cluster,
    controller: ControllerProcess,
    http: aiohttp.ClientSession,
    log_dir: Path,
    namespace: str,
    within: float,
) -> None:
    world = sim.world
    deadline = time.monotonic() + within
    killing = [False]  # while a kill is under way, the controller's exit is expected

    def guard() -> None:
        failed = controller.exited()
        if failed and not killing[0]:
            raise AssertionError(f"{failed}; log {controller.log_path}")

    controller.start(log_dir / "controller.log", plan)
    await wait_until("the controller ready", lambda: controller.ready(http), 60, guard)
    for obj in manifests(namespace, plan):
        path = f"{API_GROUP}/namespaces/{namespace}/{PLURALS[obj['kind']]}"
        await asyncio.to_thread(cluster.request, "POST", path, obj)
    world.create_hook(
        f"http://127.0.0.1:{controller.webhook_port}/webhook",
        scope=Scope("repo", REPO),
        secret=SECRET,
        faults={
            "drop": plan.drop,
            "duplicate": plan.duplicate,
            "reorder": plan.reorder,
            "seed": plan.seed,
        },
    )
    job_ids = await _burst(plan, rng, outcome, sim, controller, http, log_dir, killing)
    await wait_until(
        "every job completed",
        lambda: all(world.jobs[j].status == "completed" for j in job_ids),
        max(1.0, deadline - time.monotonic()),
        guard,
        state=lambda: _where(sim, job_ids),
    )
    done_at = time.monotonic()

    async def left() -> tuple[int, int]:
        runners = await asyncio.to_thread(
            cluster.request, "GET", f"{API_GROUP}/namespaces/{namespace}/runners"
        )
        pods = await asyncio.to_thread(cluster.request, "GET", f"/api/v1/namespaces/{namespace}/pods")
        return len(runners["items"]), len(pods["items"])

    async def converged() -> bool:
        return not world.runners and await left() == (0, 0)

    with contextlib.suppress(WaitTimeout):
        await wait_until("back to zero", converged, max(1.0, deadline - time.monotonic()), guard)
        outcome.converged_s = time.monotonic() - done_at
    outcome.left_runners = len(world.runners)
    outcome.left_runner_objects, outcome.left_pods = await left()
    _count_jobs(outcome, sim, job_ids)


async def _burst(
    plan: Plan,
    rng: random.Random,
    outcome: Outcome,
    sim: Simulator,
    controller: ControllerProcess,
    http: aiohttp.ClientSession,
    log_dir: Path,
    killing: list[bool],
) -> list[int]:
    """The job waves, with the controller's kills spread over them; the jobs' ids."""
    world = sim.world
    per_wave = [plan.jobs // plan.waves + (1 if i < plan.jobs % plan.waves else 0) for i in range(plan.waves)]
    burst = plan.wave_gap_s * max(plan.waves - 1, 1)
    kill_at = sorted(rng.uniform(0.2, 0.9) * burst for _ in range(plan.kills))
    started = time.monotonic()
    job_ids: list[int] = []
    wave = 0
    while wave < len(per_wave) or kill_at:
        now = time.monotonic() - started
        if wave < len(per_wave) and now >= wave * plan.wave_gap_s:
            specs = [
                JobSpec(LABELS, f"w{wave}-{i}", round(rng.uniform(*plan.job_s), 2))
                for i in range(per_wave[wave])
            ]
            job_ids += world.enqueue_run(world.repo_by_name(REPO), specs).job_ids
            wave += 1
        if kill_at and now >= kill_at[0]:
            kill_at.pop(0)
            killing[0] = True
            controller.kill()
            outcome.kills += 1
            down = time.monotonic()
            await asyncio.sleep(plan.down_s)
            controller.start(log_dir / "controller.log", plan)
            await wait_until("the controller ready after a kill", lambda: controller.ready(http), 60)
            outcome.downtime_s += time.monotonic() - down
            killing[0] = False
        await asyncio.sleep(0.05)
    return job_ids


def _where(sim: Simulator, job_ids: list[int]) -> str:
    world = sim.world
    waiting = [f"{world.jobs[j].name}: {world.jobs[j].status}" for j in job_ids]
    waiting = [w for w, j in zip(waiting, job_ids, strict=True) if world.jobs[j].status != "completed"]
    runners = [
        f"{r.name} {'online' if world.runner_online(r) else 'offline'}{' busy' if r.job_id else ''}"
        for r in world.runners.values()
    ]
    return f"jobs not completed: {waiting}; runners in GitHub: {runners}"


def _count_jobs(outcome: Outcome, sim: Simulator, job_ids: list[int]) -> None:
    for j in job_ids:
        job = sim.world.jobs[j]
        if job.status == "completed":
            outcome.completed += 1
        if job.conclusion == "success":
            outcome.succeeded += 1
        else:
            outcome.not_succeeded.append(f"{job.name}: {job.status}/{job.conclusion}")
        if job.started_at is not None:
            outcome.queue_waits.append(job.started_at - job.created_at)
