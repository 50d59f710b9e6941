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
7. the article's RunnerDeployment + HorizontalRunnerAutoscaler and a GPU pair, and a sized GPU pool
   with its ``RunnerSizingPolicy`` (the controller runs with ``--enable-sizing``;
   :mod:`devcluster.sizeddemo`);
8. a workload (``mlops``, ``smoke`` or a trace file) fed to the simulator (the built-in ones start
   with two sized A100 jobs: one placed, one waiting for it), a one-line summary every few seconds
   and a line each time a sized job is placed, waits (with admission's reason) or is refused;
9. when it stops, the cost ledger as ``runnerd status --cost`` prints it.

Ctrl-C (SIGINT) or SIGTERM stops everything in reverse order; every process it started is gone
when it returns. The stack is :mod:`devcluster.stack` (reused by ``bench/trace_bench.py``), what it
watches :mod:`devcluster.observe`; this module is the command: its arguments, workload and output.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import heapq
import os
import shlex
import shutil
import signal
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import yaml

from devcluster import binaries, sizeddemo, workload
from devcluster.cluster import MIXED_GPU_SHAPES, Cluster, ClusterError
from devcluster.observe import Feeder, Snapshot
from devcluster.ports import bindable
from devcluster.stack import (
    CPU_HRA,
    CPU_RD,
    GPU_HRA,
    GPU_RD,
    ClusterShape,
    DemoError,
    Stack,
    StackOptions,
    cluster_config,
)
from ghsim.errors import SimError
from ghsim.model import TraceEntry


@dataclass
class DemoArgs:
    state_dir: Path
    workload: str = "mlops"
    trace: Path | None = None
    seed: int = 7
    time_scale: float = 1.0
    interval: float = 5.0
    shape: ClusterShape = dataclasses.field(default_factory=lambda: ClusterShape(gpu_shapes=MIXED_GPU_SHAPES))
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
    sized = sizeddemo.entries(workload.REPOS[0], args.time_scale)
    if args.workload == "smoke":
        jobs = sorted([*workload.smoke(), *sized], key=lambda e: e.offset)
        return jobs, workload.REPOS, "smoke: 4 short jobs, one on a GPU runner; 2 sized A100 jobs"
    entries_iter: Iterable[TraceEntry] = workload.mlops(args.seed)
    if args.time_scale != 1.0:
        entries_iter = workload.scaled(entries_iter, args.time_scale)
    return (
        heapq.merge(sized, entries_iter, key=lambda e: e.offset),
        workload.REPOS,
        f"mlops (seed {args.seed}): bursts of lint and test jobs, GPU training tests, quiet gaps; "
        "first 2 sized A100 jobs",
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
            sized = stack.manifest_file.with_name("sized-gpu.yaml")
            sized.write_text(
                yaml.safe_dump_all(sizeddemo.manifests(opts.namespace, opts.org), sort_keys=False)
            )
            await asyncio.to_thread(cluster.kubectl, "apply", "-f", str(sized))
            await _banner(stack, description, out)
            report = sizeddemo.SizedReport()
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
                    for line in report.lines(await stack.sized_runners(sizeddemo.SIZED_JOB_LABEL)):
                        say(out, line)
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
                await _cost_table(stack, out)
                say(out, "runnerd demo: stopping (controller, pod agent, GitHub simulator, control plane)")
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    return 0


DEMO_PRICES = (
    "--cost-currency=USD",
    "--cost-cpu-hour=0.04",
    "--cost-gpu-hour=NVIDIA-H100-80GB-HBM3=3.00",
    "--cost-gpu-hour=NVIDIA-A100-SXM4-80GB=1.50",
    "--cost-ledger-interval=5s",
)
"""The controller's cost flags in the demo (example prices; the chart's ``cost.*`` values)."""


async def _cost_table(stack: Stack, out: TextIO) -> None:
    """The demo ends with the cost ledger, as ``runnerd status --cost`` prints it."""
    if stack.controller_failed():
        return
    say(out, "runnerd demo: " + " ".join(shlex.quote(a) for a in stack.cost_command()))
    for line in (await stack.cost_report()).splitlines():
        say(out, "  " + line)


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
        f"  sized pool     {sizeddemo.SIZED_RD} + RunnerSizingPolicy {sizeddemo.SIZING_POLICY}: "
        "[self-hosted, linux, gpu=N, gpu-type=h100|a100], one pod per job, sized to it",
        f"                 kubectl get runners -n {opts.namespace} -l {sizeddemo.SIZED_JOB_LABEL}; "
        f"kubectl get runnersizingpolicies -n {opts.namespace} -o yaml",
        f"  workload       {description}",
        f"  dashboard      {dashboard}" if dashboard else f"  metrics        {stack.metrics_url}",
        f"  status         runnerd status --kubeconfig {stack.cluster.kubeconfig} -n {opts.namespace} "
        f"--metrics-url {stack.metrics_url}",
        f"  cost           {' '.join(stack.cost_command())} (printed again when the demo stops)",
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
    say(out, f"runnerd demo: starting the control plane ({shape.describe()})")
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
    # the cost ledger lives in the controller's namespace: the demo's
    stack.controller_args = (
        *DEMO_PRICES,
        f"--leader-election-namespace={stack.namespace}",
        "--enable-sizing",
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
