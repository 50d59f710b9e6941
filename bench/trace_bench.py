"""Trace-driven benchmark: replay a job-arrival trace against the whole system and report what it cost.

One run = a fresh local control plane (devcluster, kwok CPU and GPU nodes), the GitHub simulator
in-process (rate limits off: the trace is compressed in time, so hourly budgets would measure the
budget, not the controller), ``runnerd controller`` as a subprocess (so its CPU time and memory are
its own), one organization webhook to the controller (delivered 16 at a time, as GitHub does), the
pod agent playing every runner pod, a CPU and a GPU RunnerDeployment with webhook-driven HRAs
(``minReplicas: 0``, ``maxReplicas`` = the scale's share of runners), and the trace fed to the
simulator. The run ends when every job is done
and every pool is back to zero. Reported:

- job queue wait (queued -> started on a runner): p50, p95, p99;
- idle runner-minutes: runner pod time (created -> ended) not spent running a job;
- GPU-hours reserved (GPU pods' lifetime x GPUs) versus used (GPU jobs' run time x GPUs);
- GitHub API calls per job (every REST call the controller's token made, by endpoint in the JSON);
- the controller process's CPU seconds (over the replay) and peak RSS (VmHWM);
- peak concurrent runner pods and busy runners, to show the scale was reached.

Trace files are ghsim's JSON lines (docs/ghsim.md#trace-files, docs/benchmarks.md). Commands::

    .venv/bin/python bench/trace_bench.py generate --runners 100 --out bench/traces/burst-100.jsonl
    .venv/bin/python bench/trace_bench.py run --trace bench/traces/burst-100.jsonl --runners 100
    .venv/bin/python bench/trace_bench.py suite --scales 1,100,1000 --json results.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Coroutine
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from devcluster import binaries, workload
from devcluster.cluster import Cluster
from devcluster.observe import Feeder, percentile
from devcluster.stack import ClusterShape, Stack, StackOptions, cluster_config
from devcluster.workload import SyntheticShape
from ghsim.config import PrimaryLimits, SecondaryLimits, SimConfig
from ghsim.model import TraceEntry

ROOT = Path(__file__).resolve().parents[1]
TRACES = ROOT / "bench" / "traces"
CLK_TCK = os.sysconf("SC_CLK_TCK")
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


def standard_repos(runners: int) -> tuple[str, ...]:
    """One repository per 10 runners (at least 3): an organization that needs 1,000 runners at once has
    many repositories, and each gets its own webhook (see :class:`RunConfig`)."""
    return workload.repo_names(max(3, runners // 10))


def standard_shape(runners: int, *, gpu_share: float = 0.1, seed: int = 1) -> SyntheticShape:
    """The benchmark's trace for a scale: two bursts of ``runners`` jobs within 20 s (10 % GPU from 10
    runners up), jobs long enough (CPU 120-200 s, GPU 150-240 s) that a whole burst of 1,000 runs at
    once on 2 cores, and in the 45 s between the end of one burst and the next a trickle of lint jobs
    (one a minute per 10 runners)."""
    share = gpu_share if runners >= 10 else 0.0
    return SyntheticShape(
        peak=runners,
        gpu_share=share,
        bursts=2,
        burst_window_s=20.0,
        duration_s=(120.0, 200.0),
        gpu_duration_s=(150.0, 240.0),
        gap_s=45.0,
        trickle_per_min=max(1.0, runners * 0.1),
        seed=seed,
    )


# ------------------------------------------------------------------------------------- process stats


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a live process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


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
    """the controller's ``--webhook-audit`` on the organization hook (only with one organization hook)"""
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
    calls = {ep: n for (ep, who), n in stats.by_endpoint_principal.items() if who == stack.pat_principal}
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


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------- reporting


ROWS: list[tuple[str, Any]] = [
    ("jobs (GPU jobs)", lambda r: f"{r.jobs:,} ({r.gpu_jobs:,})"),
    ("peak runner pods / busy runners", lambda r: f"{r.peak_runner_pods:,} / {r.peak_busy_runners:,}"),
    ("replay wall time", lambda r: f"{r.replay_s:.0f} s"),
    (
        "queue wait p50 / p95 / p99",
        lambda r: " / ".join(_s(r.queue_wait_s[k]) for k in ("p50", "p95", "p99")),
    ),
    ("runner-minutes: busy / idle", lambda r: f"{_m(r.busy_runner_minutes)} / {_m(r.idle_runner_minutes)}"),
    ("idle share of runner time", lambda r: f"{_share(r.idle_runner_minutes, r.runner_minutes)}"),
    ("GPU-hours reserved / used", lambda r: _gpu(r)),
    ("GitHub API calls per job", lambda r: f"{r.github_calls_per_job:.2f} ({r.github_calls:,} calls)"),
    ("GitHub calls answered 4xx/5xx, by endpoint", lambda r: _failed_calls(r)),
    ("controller CPU seconds (replay)", lambda r: f"{r.controller_cpu_s:,.1f}"),
    ("controller CPU ms per job", lambda r: f"{1000 * r.controller_cpu_s / max(1, r.jobs):.0f}"),
    ("controller peak RSS", lambda r: f"{r.controller_peak_rss_mib:.0f} MiB"),
]


def _m(v: float) -> str:
    return f"{v:,.2f}" if v < 10 else f"{v:,.1f}"


def _s(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f} s"


def _share(part: float, whole: float) -> str:
    return "-" if whole <= 0 else f"{100 * part / whole:.0f} %"


def _failed_calls(r: Result) -> str:
    failed = [
        f"{endpoint} {status}: {n:,}"
        for endpoint, by_status in r.github_calls_by_endpoint_status.items()
        for status, n in by_status.items()
        if int(status) >= 400
    ]
    return "; ".join(failed) or "none"


def _gpu(r: Result) -> str:
    if r.gpu_jobs == 0:
        return "- (no GPU pool)"
    used = _share(r.gpu_hours_used, r.gpu_hours_reserved)
    return f"{r.gpu_hours_reserved:.3f} / {r.gpu_hours_used:.3f} ({used} used)"


def table(results: list[Result]) -> str:
    head = "| measure | " + " | ".join(f"{r.scale:,} runners" for r in results) + " |"
    sep = "|---|" + "---:|" * len(results)
    rows = [f"| {name} | " + " | ".join(str(fn(r)) for r in results) + " |" for name, fn in ROWS]
    return "\n".join([head, sep, *rows])


# ------------------------------------------------------------------------------------- command line


def _generate(args: argparse.Namespace) -> int:
    shape = standard_shape(args.runners, gpu_share=args.gpu_share, seed=args.seed)
    if args.bursts is not None:
        shape = SyntheticShape(**{**asdict(shape), "bursts": args.bursts})
    entries = workload.synthetic(shape, standard_repos(args.runners))
    header = (
        f"runnerd trace benchmark: {shape.bursts} bursts of {shape.peak} jobs "
        f"({shape.gpu_jobs_per_burst} GPU), seed {shape.seed}\n"
        "generated by: bench/trace_bench.py generate "
        f"--runners {args.runners} --gpu-share {args.gpu_share:g} --seed {args.seed}"
    )
    n = workload.write_trace(entries, args.out, header=header)
    log(f"{args.out}: {n} jobs, last arrival at {entries[-1].offset:.0f} s")
    return 0


def _config(args: argparse.Namespace, trace: list[TraceEntry], name: str, runners: int) -> RunConfig:
    gpu_max = args.gpu_max if args.gpu_max is not None else math.floor(runners * args.gpu_share)
    if runners < 10 and args.gpu_max is None:
        gpu_max = 0
    return RunConfig(
        trace=trace,
        trace_name=name,
        runners=runners,
        gpu_max=gpu_max,
        time_scale=args.time_scale,
        hra_metric=args.metric,
        scale_down_delay_s=args.scale_down_delay,
        boot_delay_s=args.boot_delay,
        hook_per_repo=args.repo_hooks,
        webhook_audit=not args.no_webhook_audit,
        registration_mode=args.registration_mode,
    )


def _trace_for(args: argparse.Namespace, runners: int) -> tuple[list[TraceEntry], str]:
    path = TRACES / f"burst-{runners}.jsonl"
    if path.is_file():
        return workload.read_trace(path), str(path.relative_to(ROOT))
    shape = standard_shape(runners, gpu_share=args.gpu_share, seed=args.seed)
    return workload.synthetic(shape, standard_repos(runners)), f"synthetic(peak={runners}, seed={args.seed})"


def _run(args: argparse.Namespace) -> int:
    if args.trace is not None:
        trace, name = workload.read_trace(args.trace), str(args.trace)
    else:
        trace, name = _trace_for(args, args.runners)
    result = run_one(_config(args, trace, name, args.runners))
    _emit([result], args)
    return 0


def _suite(args: argparse.Namespace) -> int:
    results = []
    for runners in (int(x) for x in args.scales.split(",")):
        trace, name = _trace_for(args, runners)
        results.append(run_one(_config(args, trace, name, runners)))
        log(table(results))
    _emit(results, args)
    return 0


def _emit(results: list[Result], args: argparse.Namespace) -> None:
    if args.json is not None:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2) + "\n")
    print(table(results))
    for r in results:
        print(json.dumps(asdict(r)), file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except KeyboardInterrupt:
        log("interrupted")
        return 130


def _main(argv: list[str] | None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="write a synthetic trace")
    gen.add_argument("--runners", type=int, required=True, help="jobs per burst (the concurrency asked for)")
    gen.add_argument("--gpu-share", type=float, default=0.1)
    gen.add_argument("--seed", type=int, default=1)
    gen.add_argument("--bursts", type=int, default=None)
    gen.add_argument("--out", type=Path, required=True)
    for name, helptext in (
        ("run", "replay one trace"),
        ("suite", "replay the standard trace at several scales"),
    ):
        p = sub.add_parser(name, help=helptext)
        if name == "run":
            p.add_argument(
                "--trace", type=Path, help="trace file (default: bench/traces/burst-<runners>.jsonl)"
            )
            p.add_argument(
                "--runners", type=int, required=True, help="maxReplicas of the CPU and GPU pools together"
            )
        else:
            p.add_argument("--scales", default="1,100,1000")
        p.add_argument("--gpu-share", type=float, default=0.1, help="share of the runners in the GPU pool")
        p.add_argument(
            "--gpu-max", type=int, default=None, help="maxReplicas of the GPU pool (overrides the share)"
        )
        p.add_argument("--seed", type=int, default=1)
        p.add_argument(
            "--time-scale", type=float, default=1.0, help="multiply the trace's offsets and durations"
        )
        p.add_argument(
            "--metric", action="store_true", help="HRAs also use TotalNumberOfQueuedAndInProgressWorkflowRuns"
        )
        p.add_argument(
            "--scale-down-delay", type=int, default=30, help="HRA scaleDownDelaySecondsAfterScaleOut"
        )
        p.add_argument("--boot-delay", type=float, default=0.0, help="seconds a virtual runner takes to boot")
        p.add_argument(
            "--repo-hooks",
            action="store_true",
            help="one webhook per repository instead of one organization hook (ghsim delivers a "
            "hook's events 16 at a time, as GitHub does)",
        )
        p.add_argument(
            "--no-webhook-audit",
            action="store_true",
            help="without the controller's --webhook-audit (the default with one organization hook)",
        )
        p.add_argument(
            "--registration-mode",
            choices=("jit", "token"),
            default=None,
            help="the controller's --registration-mode (default: its own, JIT configs)",
        )
        p.add_argument("--json", type=Path, help="write the results here")
        p.add_argument(
            "--tracemalloc",
            type=Path,
            help="profile the controller's heap (bench/memprofile): the profile at its peak goes here; "
            "slows the controller, so its CPU and latency numbers do not compare with an untraced run",
        )
        p.add_argument(
            "--cprofile",
            type=Path,
            help="profile the controller's CPU (cProfile, bench/memprofile): a pstats file written when it "
            "exits; slows the controller, so its numbers do not compare with an unprofiled run",
        )
    args = parser.parse_args(argv)
    if args.command == "generate":
        return _generate(args)
    for option, variable in (("tracemalloc", "RUNNERD_TRACEMALLOC"), ("cprofile", "RUNNERD_CPROFILE")):
        if getattr(args, option, None) is not None:
            profile = Path(__file__).resolve().parent / "memprofile"
            os.environ[variable] = str(getattr(args, option).resolve())
            os.environ["PYTHONPATH"] = os.pathsep.join(
                filter(None, (str(profile), os.environ.get("PYTHONPATH")))
            )
    if args.command == "run":
        return _run(args)
    return _suite(args)


if __name__ == "__main__":
    sys.exit(main())
