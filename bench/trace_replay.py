"""One replay of the trace benchmark (bench/trace_bench.py runs it and prints the report).

:func:`run_one` starts a fresh local control plane, runs the stack (ghsim, ``runnerd controller`` as a
subprocess, the pod agent) with rate limits off, feeds the trace, waits until every job is done and
every pool is back at zero, and returns what it measured (:class:`Result`); the control plane is
always stopped, and its state directory kept only when the run failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devcluster import binaries, workload
from devcluster.cluster import Cluster
from devcluster.observe import Feeder, percentile
from devcluster.process import cpu_seconds, peak_rss
from devcluster.stack import ClusterShape, Stack, StackOptions, cluster_config
from ghsim.config import PrimaryLimits, SecondaryLimits, SimConfig
from ghsim.model import TraceEntry

GPUS_PER_NODE = 8
#: controller flags worth recording with a result (the others are addresses and paths)
TUNING_FLAGS = (
    "--sync-period",
    "--drain-grace",
    "--log-level",
    "--runner-workers",
    "--default-scale-down-delay",
    "--registration-mode",
)


# ------------------------------------------------------------------------------------- one run


@dataclass
class RunConfig:
    trace: list[TraceEntry]
    trace_name: str
    runners: int
    gpu_max: int
    time_scale: float = 1.0
    hra_metric: bool = False
    scale_down_delay_s: int = 30
    boot_delay_s: float = 0.0
    timeout_s: float = 1800.0
    state_dir: Path | None = None
    registration_mode: str | None = None
    """the controller's ``--registration-mode`` (``None``: its default, JIT configs)"""
    webhook_audit: bool = True
    """the controller's default ``--webhook-audit auto`` (it finds the organization hook; only with one
    organization hook); ``False``: ``--webhook-audit=off``"""
    hook_per_repo: bool = True
    """one webhook per repository: GitHub delivers webhooks in parallel, ghsim sends each hook's
    deliveries one at a time, so a single organization hook would measure ghsim's queue"""

    @property
    def cpu_max(self) -> int:
        return self.runners - self.gpu_max


@dataclass
class Result:
    scale: int
    trace: str
    jobs: int
    gpu_jobs: int
    conclusions: dict[str, int]
    wall_s: float
    replay_s: float
    peak_runner_pods: int
    peak_busy_runners: int
    queue_wait_s: dict[str, float | None]
    runner_minutes: float
    busy_runner_minutes: float
    idle_runner_minutes: float
    gpu_hours_reserved: float
    gpu_hours_used: float
    github_calls: int
    github_calls_per_job: float
    github_calls_by_endpoint: dict[str, int]
    github_calls_by_endpoint_status: dict[str, dict[str, int]]
    github_calls_at_start_by_endpoint: dict[str, int]
    """Calls before the replay (the controller's start: hook discovery, first listings): not in the
    per-job count above."""
    controller_cpu_s: float
    controller_cpu_s_total: float
    controller_peak_rss_mib: float
    harness_cpu_s: float
    control_plane_cpu_s: dict[str, float]
    pods_created: int
    settings: dict[str, Any] = field(default_factory=dict)


def _cluster_shape(cfg: RunConfig) -> ClusterShape:
    max_pods = 110
    return ClusterShape(
        cpu_nodes=max(2, math.ceil(cfg.cpu_max / (max_pods - 10)) + 1),
        gpu_nodes=max(2, math.ceil(cfg.gpu_max / GPUS_PER_NODE) + 1),
        gpus_per_node=GPUS_PER_NODE,
        max_pods=max_pods,
    )


def run_one(cfg: RunConfig) -> Result:
    if cfg.gpu_max == 0 and any(workload.is_gpu(e.labels) for e in cfg.trace):
        raise SystemExit("the trace has GPU jobs but the scale has no GPU pool (--gpu-max 0)")
    state = cfg.state_dir or Path(tempfile.mkdtemp(prefix=f"runnerd-trace-bench-{cfg.runners}-"))
    shape = _cluster_shape(cfg)
    cluster = Cluster(cluster_config(state, shape), binaries.ensure())
    started = time.monotonic()
    log(f"scale {cfg.runners}: control plane, {shape.cpu_nodes} CPU + {shape.gpu_nodes} GPU nodes ({state})")
    cluster.start()
    ok = False
    try:
        result = asyncio.run(_interruptible(_replay(cluster, cfg, state, started)))
        ok = True
        return result
    finally:
        # a Ctrl-C while the control plane stops must not cut the stop short
        previous = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            cluster.stop()
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
        if ok and cfg.state_dir is None:
            shutil.rmtree(state, ignore_errors=True)  # etcd data: hundreds of MB at 1,000 runners
        elif not ok:
            log(f"scale {cfg.runners}: logs kept in {state}")


async def _interruptible(work: Coroutine[Any, Any, Result]) -> Result:
    """Run ``work``; the first SIGINT/SIGTERM cancels it (its cleanup runs), later ones are ignored."""
    task = asyncio.ensure_future(work)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    try:
        return await task
    except asyncio.CancelledError:
        raise KeyboardInterrupt from None
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


async def _replay(cluster: Cluster, cfg: RunConfig, state: Path, started: float) -> Result:
    off = SimConfig(primary=PrimaryLimits(enabled=False), secondary=SecondaryLimits(enabled=False))
    repos = tuple(dict.fromkeys(e.repo for e in cfg.trace)) or workload.REPOS
    opts = StackOptions(
        state_dir=state,
        namespace="bench",
        repos=repos,
        cpu_max=cfg.cpu_max,
        gpu_max=cfg.gpu_max,
        scale_down_delay_s=cfg.scale_down_delay_s,
        hra_metric=cfg.hra_metric,
        sync_period_s=None,
        drain_grace_s=None,
        boot_delay_s=cfg.boot_delay_s,
        sim_config=off,
        log_level="warn",
        hook_per_repo=cfg.hook_per_repo,
        webhook_audit=cfg.webhook_audit and not cfg.hook_per_repo,
        controller_args=(f"--registration-mode={cfg.registration_mode}",) if cfg.registration_mode else (),
    )
    entries = list(workload.scaled(cfg.trace, cfg.time_scale)) if cfg.time_scale != 1.0 else cfg.trace
    async with Stack(cluster, opts) as stack:
        assert stack.controller is not None
        pid = stack.controller.pid
        sim = stack.sim
        await _wait_settled(stack)
        at_start = _calls(stack)
        sim.core.stats.reset()
        cpu0, harness0 = cpu_seconds(pid), time.process_time()
        plane0 = {name: _safe_cpu(p) for name, p in cluster.pids().items()}
        replay_started = time.time()
        feeder = Feeder(sim, entries)
        feed = asyncio.create_task(feeder.run(), name="bench-feeder")
        peak_pods = peak_busy = 0
        last_report = 0.0
        try:
            deadline = time.monotonic() + cfg.timeout_s
            while True:
                snap = await stack.snapshot()
                peak_pods = max(peak_pods, snap.runners)
                peak_busy = max(peak_busy, snap.busy)
                failed = stack.controller_failed()
                if failed:
                    raise RuntimeError(failed)
                if feeder.exhausted and snap.done == feeder.scheduled and snap.at_zero:
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"not done after {cfg.timeout_s:g}s: {snap.line()}")
                if time.monotonic() - last_report > 15:
                    last_report = time.monotonic()
                    log(f"  {snap.line()}")
                await asyncio.sleep(0.5)
        finally:
            feed.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await feed
        replay_ended = time.time()
        controller_cpu = cpu_seconds(pid) - cpu0
        controller_total = cpu_seconds(pid)
        rss = peak_rss(pid)
        harness = time.process_time() - harness0
        plane = {name: round(_safe_cpu(p) - plane0.get(name, 0.0), 1) for name, p in cluster.pids().items()}
        return _result(
            cfg,
            stack,
            replay_started,
            replay_ended,
            started,
            peak_pods,
            peak_busy,
            controller_cpu,
            controller_total,
            rss,
            harness,
            plane,
            at_start,
        )


def _safe_cpu(pid: int) -> float:
    try:
        return cpu_seconds(pid)
    except OSError:
        return 0.0


async def _wait_settled(stack: Stack, within: float = 60.0) -> None:
    """Until both HRAs have been reconciled to zero (so the replay starts from a quiet system)."""
    deadline = time.monotonic() + within
    while True:
        desired = await stack.desired()
        if all(v == 0 for v in desired.values()):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"the RunnerDeployments did not settle at 0: {desired}")
        await asyncio.sleep(0.2)


def _result(
    cfg: RunConfig,
    stack: Stack,
    t0: float,
    t1: float,
    started: float,
    peak_pods: int,
    peak_busy: int,
    controller_cpu: float,
    controller_total: float,
    rss: int,
    harness: float,
    plane: dict[str, float],
    at_start: dict[str, int],
) -> Result:
    assert stack.agent is not None
    world = stack.sim.world
    pods = stack.agent.by_name()
    jobs = [j for j in world.jobs.values() if j.created_at >= t0 - 1]
    waits = [j.started_at - j.queued_at for j in jobs if j.started_at is not None and j.queued_at is not None]
    reserved = sum(p.reserved_until(t1) - p.created for p in pods.values())
    gpu_reserved = sum((p.reserved_until(t1) - p.created) * p.gpus for p in pods.values() if p.gpus)
    busy = gpu_busy = 0.0
    for j in jobs:
        if j.started_at is None or j.completed_at is None or j.runner_name is None:
            continue
        run = j.completed_at - j.started_at
        busy += run
        pod = pods.get(j.runner_name)
        if pod is not None and pod.gpus:
            gpu_busy += run * pod.gpus
    stats = stack.sim.core.stats
    calls = _calls(stack)
    total_calls = sum(calls.values())
    done = [j for j in jobs if j.status == "completed"]
    return Result(
        scale=cfg.runners,
        trace=cfg.trace_name,
        jobs=len(done),
        gpu_jobs=sum(1 for j in done if workload.is_gpu(j.labels)),
        conclusions=dict(Counter(str(j.conclusion) for j in done)),
        wall_s=round(time.monotonic() - started, 1),
        replay_s=round(t1 - t0, 1),
        peak_runner_pods=peak_pods,
        peak_busy_runners=peak_busy,
        queue_wait_s={f"p{q}": _round(percentile(waits, q)) for q in (50, 95, 99)},
        runner_minutes=round(reserved / 60, 2),
        busy_runner_minutes=round(busy / 60, 2),
        idle_runner_minutes=round((reserved - busy) / 60, 2),
        gpu_hours_reserved=round(gpu_reserved / 3600, 3),
        gpu_hours_used=round(gpu_busy / 3600, 3),
        github_calls=total_calls,
        github_calls_per_job=round(total_calls / max(1, len(done)), 2),
        github_calls_by_endpoint=dict(sorted(calls.items())),
        github_calls_by_endpoint_status=stats.calls_by_status(stack.pat_principal),
        github_calls_at_start_by_endpoint=dict(sorted(at_start.items())),
        controller_cpu_s=round(controller_cpu, 1),
        controller_cpu_s_total=round(controller_total, 1),
        controller_peak_rss_mib=round(rss / 2**20, 1),
        harness_cpu_s=round(harness, 1),
        control_plane_cpu_s=plane,
        pods_created=len(pods),
        settings={
            "cpu_max": cfg.cpu_max,
            "gpu_max": cfg.gpu_max,
            "hra_metric": cfg.hra_metric,
            "scale_down_delay_s": cfg.scale_down_delay_s,
            "boot_delay_s": cfg.boot_delay_s,
            "time_scale": cfg.time_scale,
            "repositories": len({e.repo for e in cfg.trace}),
            "webhooks": "one per repository" if cfg.hook_per_repo else "one for the organization",
            "webhook_audit": cfg.webhook_audit and not cfg.hook_per_repo,
            "controller_flags": [a for a in stack.controller_argv[2:] if a.startswith(TUNING_FLAGS)],
        },
    )


def _calls(stack: Stack) -> dict[str, int]:
    """The controller's GitHub calls so far, by endpoint (its PAT's)."""
    stats = stack.sim.core.stats
    return {ep: n for (ep, who), n in stats.by_endpoint_principal.items() if who == stack.pat_principal}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)
