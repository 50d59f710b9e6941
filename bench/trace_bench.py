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
import json
import math
import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from devcluster import workload
from devcluster.workload import SyntheticShape
from ghsim.model import TraceEntry
from trace_replay import Result, RunConfig, log, run_one  # bench/ is the script's directory

ROOT = Path(__file__).resolve().parents[1]
TRACES = ROOT / "bench" / "traces"


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
    (
        "GitHub calls before the replay (start, hook discovery)",
        lambda r: ", ".join(f"{ep} {n}" for ep, n in r.github_calls_at_start_by_endpoint.items()) or "none",
    ),
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


def _add_replay_flags(p: argparse.ArgumentParser, command: str) -> None:
    """The flags of ``run`` and ``suite``: which trace at which scale, the pools, the controller's."""
    if command == "run":
        p.add_argument("--trace", type=Path, help="trace file (default: bench/traces/burst-<runners>.jsonl)")
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
    p.add_argument("--time-scale", type=float, default=1.0, help="multiply the trace's offsets and durations")
    p.add_argument(
        "--metric", action="store_true", help="HRAs also use TotalNumberOfQueuedAndInProgressWorkflowRuns"
    )
    p.add_argument("--scale-down-delay", type=int, default=30, help="HRA scaleDownDelaySecondsAfterScaleOut")
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
        help="run the controller with --webhook-audit=off (by default it runs with its default,"
        " --webhook-audit auto, which finds the one organization hook)",
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
        _add_replay_flags(sub.add_parser(name, help=helptext), name)
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
