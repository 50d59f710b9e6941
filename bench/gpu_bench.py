"""GPU benchmark (issue #16): fixed-size GPU pools as ARC users run them, against per-job sizing
with capacity-aware admission, side by side on one control plane, in one run.

One devcluster with GPU nodes of mixed products: twice each side's fleet
(``--gpu-shape PRODUCT:GPUS:NODES``, repeatable; by default 2 x 8 H100 + 1 x 8 A100 a side). Each
product's nodes are labelled ``bench.runnerd.dev/side`` ``fixed`` or ``sized`` in turn, so both
sides have the same fleet and never compete for GPUs. Each side is a
:class:`devcluster.stack.Stack` of its own: a namespace, a GitHub simulator, ``runnerd controller``
as a subprocess, an organization webhook, the pod agent playing every runner pod, and the stack's
CPU pool (RunnerDeployment + webhook HRA).

* **fixed** (what ARC users do today): one RunnerDeployment per GPU size and product
  (``gpu-1-h100`` ... ``gpu-8-a100``, labels ``[self-hosted, gpu-N, PRODUCT]``, pods always of N GPUs
  on that product's nodes), each with a webhook HRA whose ``maxReplicas`` lets it fill its
  product's GPUs alone (as a team sizes one pool without knowing the others' load);
* **sized**: one RunnerDeployment ``[self-hosted, gpu]`` with a RunnerSizingPolicy (``max.gpu 8``,
  products ``h100``/``a100``, admission ``--order``, ``maxPending: 0``), the controller run with
  ``--enable-sizing``; jobs ask ``[self-hosted, gpu, gpu=N, gpu-type=PRODUCT]``.

The trace (seeded, ``gpu_workload.gpu_trace``) is written in simulated time: for ``--minutes`` (10)
GPU jobs of 1/2/4/8 GPUs (40/30/20/10 %), two thirds H100 and one third A100, 1-5 minutes long,
arrive as a Poisson stream asking ``--load`` (2) times a side's GPUs (the demand drawn is printed),
beside CPU jobs (6 a minute, 0.5-3 minutes). It is replayed with every offset and duration
multiplied by ``--scale`` (0.5: a simulated minute takes 30 s of wall time). Times printed are wall
seconds; divide by the scale for simulated ones.

Reported per side:

- GPU-hours used / reserved: jobs' run time x their pod's GPUs, against GPU pods' time bound to a node
  (``spec.nodeName`` set) until they ended; and GPU pods' whole life (Pending included) x GPUs;
- GPUs freed -> waiting job's pod bound: from the last end of a GPU pod of the job's product before
  its pod was bound (when the job was queued before that end) to the binding: the admission hop (b),
  the scheduler's (a);
- peak ``Pending`` pods: the most runner pods at once that the scheduler had refused
  (``PodScheduled: False``) and not yet bound; also pod-seconds spent that way;
- queue wait p50 / p95 per GPU size and for CPU jobs, from the job's ``queued_at`` to its start;
- GitHub calls per job (every REST call of the side's token) and pods per job.

The run ends when both sides have run every job and have no runner pod left. ``--quick``: 2
simulated minutes, scale 0.25, a smoke run.

    nice -n 5 .venv/bin/python bench/gpu_bench.py [--quick] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from devcluster import binaries
from devcluster.cluster import Cluster, ClusterConfig, GpuShape
from devcluster.observe import Feeder, PodRecord, percentile
from devcluster.stack import Stack, StackOptions
from ghsim.config import PrimaryLimits, SecondaryLimits, SimConfig
from ghsim.entities import Job
from ghsim.model import TraceEntry
from gpu_workload import (  # bench/ is the script's directory
    PRODUCT_LABEL,
    PRODUCTS,
    SIDE_LABEL,
    SIDES,
    SIZED_POOL,
    demand,
    fixed_manifests,
    for_side,
    gpu_trace,
    job_product,
    job_size,
    side_gpus,
    sized_manifests,
)

# ------------------------------------------------------------------------------------- results


@dataclass
class SideResult:
    side: str
    jobs: int
    gpu_jobs: int
    conclusions: dict[str, int]
    gpu_hours_used: float
    gpu_hours_reserved: float
    used_share: float | None
    gpu_hours_of_pods: float
    """GPU pods' whole life (created, Pending included, until ended) x GPUs"""
    release_to_bound_s: dict[str, float | None]
    peak_pending: int
    pending_pod_seconds: float
    queue_wait_s: dict[str, dict[str, float | None]]
    github_calls: int
    github_calls_per_job: float
    github_calls_by_endpoint: dict[str, int]
    gpu_pods_per_gpu_job: float
    sized_pods: int
    """GPU pods of sized Runners (``<pool>-job-<id>``): all of (b)'s, none of (a)'s"""
    pods_per_job: float
    makespan_s: float


def peak_overlap(intervals: Sequence[tuple[float, float]]) -> int:
    """The most intervals open at once (an interval ending when another starts does not overlap it)."""
    edges = sorted(
        [(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals], key=lambda e: (e[0], e[1])
    )
    peak = now = 0
    for _, step in edges:
        now += step
        peak = max(peak, now)
    return peak


def pending_intervals(pods: Sequence[PodRecord], end: float) -> list[tuple[float, float]]:
    out = []
    for p in pods:
        if p.unschedulable is None:
            continue
        stop = min(t for t in (p.bound, p.ended, end) if t is not None)
        out.append((p.unschedulable, max(stop, p.unschedulable)))
    return out


def release_lags(jobs: Sequence[Job], pods: dict[str, PodRecord]) -> list[float]:
    """For each GPU job that was still waiting when a GPU pod of its product last ended before its
    own pod was bound: seconds from that end (GPUs freed) to its pod bound on a node. The next job
    may need a later release than the last one, so this is the admission (a: scheduling) hop."""
    ran = {j.runner_name: j for j in jobs if j.runner_name}
    ends: dict[str, list[float]] = {}
    for name, pod in pods.items():
        job = ran.get(name)
        if pod.gpus and job is not None and pod.ended is not None:
            ends.setdefault(job_product(job.name), []).append(pod.ended)
    lags = []
    for j in jobs:
        mine = pods.get(j.runner_name or "")
        if not job_size(j.name) or mine is None or mine.bound is None or j.queued_at is None:
            continue
        before = [e for e in ends.get(job_product(j.name), ()) if e <= mine.bound]
        if before and max(before) > j.queued_at:
            lags.append(mine.bound - max(before))
    return lags


def side_result(side: str, stack: Stack, t0: float, t1: float) -> SideResult:
    assert stack.agent is not None
    pods = stack.agent.by_name()
    jobs = [j for j in stack.sim.world.jobs.values() if j.created_at >= t0 - 1 and j.status == "completed"]
    used = reserved = requested = 0.0
    waits: dict[str, list[float]] = {}
    for j in jobs:
        size = job_size(j.name)
        if j.started_at is not None and j.queued_at is not None:
            waits.setdefault(f"gpu={size}" if size else "cpu", []).append(j.started_at - j.queued_at)
        pod = pods.get(j.runner_name or "")
        if pod is not None and pod.gpus and j.started_at is not None and j.completed_at is not None:
            used += (j.completed_at - j.started_at) * pod.gpus
    gpu_pods = [p for p in pods.values() if p.gpus]
    for p in gpu_pods:
        requested += (p.reserved_until(t1) - p.created) * p.gpus
        if p.bound is not None:
            reserved += (p.reserved_until(t1) - p.bound) * p.gpus
    pending = pending_intervals(list(pods.values()), t1)
    stats = stack.sim.core.stats
    calls = {ep: n for (ep, who), n in stats.by_endpoint_principal.items() if who == stack.pat_principal}
    gpu_jobs = sum(1 for j in jobs if job_size(j.name))
    ends = [j.completed_at for j in jobs if j.completed_at is not None and job_size(j.name)]
    return SideResult(
        side=side,
        jobs=len(jobs),
        gpu_jobs=gpu_jobs,
        conclusions=dict(Counter(str(j.conclusion) for j in jobs)),
        gpu_hours_used=round(used / 3600, 3),
        gpu_hours_reserved=round(reserved / 3600, 3),
        used_share=round(used / reserved, 4) if reserved else None,
        gpu_hours_of_pods=round(requested / 3600, 3),
        release_to_bound_s=summary(release_lags(jobs, pods)),
        peak_pending=peak_overlap(pending),
        pending_pod_seconds=round(sum(b - a for a, b in pending), 1),
        queue_wait_s={
            k: summary(v)
            for k, v in sorted(waits.items(), key=lambda kv: (kv[0] != "cpu", len(kv[0]), kv[0]))
        },
        github_calls=sum(calls.values()),
        github_calls_per_job=round(sum(calls.values()) / max(1, len(jobs)), 2),
        github_calls_by_endpoint=dict(sorted(calls.items())),
        gpu_pods_per_gpu_job=round(len(gpu_pods) / max(1, gpu_jobs), 2),
        sized_pods=sum(1 for p in gpu_pods if p.name.startswith(f"{SIZED_POOL}-job-")),
        pods_per_job=round(len(pods) / max(1, len(jobs)), 2),
        makespan_s=round(max(ends, default=t0) - t0, 1),
    )


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 1)


def summary(values: Sequence[float]) -> dict[str, float | None]:
    return {"p50": _round(percentile(values, 50)), "p95": _round(percentile(values, 95)), "n": len(values)}


def table(results: Sequence[SideResult], scale: float) -> str:
    def wait(r: SideResult, key: str) -> str:
        return pp(r.queue_wait_s.get(key))

    def pp(w: dict[str, float | None] | None) -> str:
        if not w or w["p50"] is None or w["p95"] is None:
            return "-"
        return f"{w['p50']:.1f} / {w['p95']:.1f} s (n={w['n']:.0f})"

    keys = sorted({k for r in results for k in r.queue_wait_s}, key=lambda k: (k != "cpu", len(k), k))
    rows: list[tuple[str, Any]] = [
        ("jobs (GPU jobs)", lambda r: f"{r.jobs} ({r.gpu_jobs})"),
        ("GPU-hours used / reserved", lambda r: f"{r.gpu_hours_used:.3f} / {r.gpu_hours_reserved:.3f} "
         f"(**{100 * (r.used_share or 0):.1f} %**)"),
        ("GPU-hours of GPU pods, Pending included", lambda r: f"{r.gpu_hours_of_pods:.3f}"),
        ("GPUs freed → waiting job's pod bound, p50 / p95", lambda r: pp(r.release_to_bound_s)),
        ("peak Pending pods (PodScheduled=False)", lambda r: f"**{r.peak_pending}**"),
        ("pod-seconds Pending", lambda r: f"{r.pending_pod_seconds:,.0f}"),
        *[(f"queue wait p50 / p95, {k}", lambda r, k=k: wait(r, k)) for k in keys],
        ("GitHub calls per job", lambda r: f"{r.github_calls_per_job:.2f} ({r.github_calls:,} calls)"),
        ("GPU pods per GPU job / pods per job",
         lambda r: f"{r.gpu_pods_per_gpu_job:.2f} / {r.pods_per_job:.2f}"),
        ("last GPU job done after",
         lambda r: f"{r.makespan_s:.0f} s ({r.makespan_s / scale / 60:.1f} sim min)"),
    ]  # fmt: skip
    head = (
        "| measure | " + " | ".join(f"({'a' if r.side == 'fixed' else 'b'}) {r.side}" for r in results) + " |"
    )
    lines = [head, "|---|" + "---:|" * len(results)]
    lines += [f"| {name} | " + " | ".join(str(fn(r)) for r in results) + " |" for name, fn in rows]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------- the run


@dataclass
class Settings:
    shapes: tuple[GpuShape, ...]
    minutes: float
    scale: float
    load: float
    seed: int
    order: str
    backfill_s: float
    scale_down_delay_s: float
    boot_delay_s: float
    cpu_max: int
    timeout_s: float


def label_sides(cluster: Cluster) -> None:
    """Half of each product's GPU nodes to each side (alternating by name)."""
    nodes = json.loads(cluster.kubectl("get", "nodes", "-o", "json").stdout)["items"]
    by_product: dict[str, list[str]] = {}
    for n in nodes:
        product = n["metadata"]["labels"].get(PRODUCT_LABEL)
        if product:
            by_product.setdefault(product, []).append(n["metadata"]["name"])
    for names in by_product.values():
        for i, name in enumerate(sorted(names, key=lambda s: int(s.rsplit("-", 1)[1]))):
            cluster.kubectl("label", "node", name, f"{SIDE_LABEL}={SIDES[i % 2]}", "--overwrite")


def stack_options(side: str, state: Path, s: Settings) -> StackOptions:
    off = SimConfig(primary=PrimaryLimits(enabled=False), secondary=SecondaryLimits(enabled=False))
    return StackOptions(
        state_dir=state / side,
        namespace=f"bench-{side}",
        cpu_max=s.cpu_max,
        gpu_max=0,
        scale_down_delay_s=max(1, round(s.scale_down_delay_s * s.scale)),
        hra_metric=False,
        sync_period_s=None,
        drain_grace_s=None,
        boot_delay_s=s.boot_delay_s,
        sim_config=off,
        log_level="warn",
        controller_args=("--enable-sizing",) if side == "sized" else (),
    )


async def apply(cluster: Cluster, state: Path, name: str, docs: list[dict[str, Any]]) -> None:
    path = state / f"{name}.yaml"
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    await asyncio.to_thread(cluster.kubectl, "apply", "-f", str(path))


async def policy_accepted(cluster: Cluster, namespace: str, within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        out = await asyncio.to_thread(
            cluster.kubectl, "get", "runnersizingpolicies", "-n", namespace, SIZED_POOL, "-o", "json"
        )
        conditions = (json.loads(out.stdout).get("status") or {}).get("conditions") or []
        if any(c.get("type") == "Accepted" and c.get("status") == "True" for c in conditions):
            return
        await asyncio.sleep(0.5)
    raise TimeoutError(f"the RunnerSizingPolicy in {namespace} was not Accepted within {within:g}s")


def done(stack: Stack, feeder: Feeder) -> bool:
    assert stack.agent is not None
    jobs = stack.sim.world.jobs.values()
    finished = sum(1 for j in jobs if j.status == "completed")
    return feeder.exhausted and finished == feeder.scheduled and not stack.agent.alive()


async def replay(cluster: Cluster, state: Path, s: Settings, trace: list[TraceEntry]) -> list[SideResult]:
    gpus = side_gpus(s.shapes)
    delay = max(1, round(s.scale_down_delay_s * s.scale))
    async with (
        Stack(cluster, stack_options("fixed", state, s)) as fixed,
        Stack(cluster, stack_options("sized", state, s)) as sized,
    ):
        stacks = {"fixed": fixed, "sized": sized}
        await apply(cluster, state, "fixed", fixed_manifests("bench-fixed", gpus, delay))
        await apply(
            cluster, state, "sized", sized_manifests("bench-sized", s.order, round(s.backfill_s * s.scale))
        )
        await policy_accepted(cluster, "bench-sized")
        for stack in stacks.values():
            stack.sim.core.stats.reset()
        t0 = time.time()
        feeders = {side: Feeder(st.sim, for_side(trace, side, s.scale)) for side, st in stacks.items()}
        tasks = [asyncio.create_task(f.run(), name=f"feed-{side}") for side, f in feeders.items()]
        ended: dict[str, float] = {}
        try:
            deadline, last = time.monotonic() + s.timeout_s, 0.0
            while len(ended) < len(stacks):
                for side, stack in stacks.items():
                    if (failed := stack.controller_failed()) is not None:
                        raise RuntimeError(f"{side}: {failed}")
                    if side not in ended and done(stack, feeders[side]):
                        ended[side] = time.time()
                if time.monotonic() > deadline:
                    raise TimeoutError(f"not done after {s.timeout_s:g}s: {progress(stacks)}")
                if time.monotonic() - last > 20:
                    last = time.monotonic()
                    log(f"[{time.time() - t0:5.0f}s] {progress(stacks)}")
                await asyncio.sleep(0.5)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        return [side_result(side, stack, t0, ended[side]) for side, stack in stacks.items()]


def progress(stacks: dict[str, Stack]) -> str:
    parts = []
    for side, stack in stacks.items():
        assert stack.agent is not None
        status = Counter(j.status for j in stack.sim.world.jobs.values())
        alive = stack.agent.alive()
        pending = sum(1 for p in alive if p.bound is None and p.unschedulable is not None)
        parts.append(
            f"{side}: {status.get('queued', 0)} queued, {status.get('in_progress', 0)} running, "
            f"{status.get('completed', 0)} done, {len(alive)} pods ({pending} Pending)"
        )
    return " | ".join(parts)


def run(s: Settings) -> list[SideResult]:
    state = Path(tempfile.mkdtemp(prefix="runnerd-gpu-bench-"))
    doubled = tuple(GpuShape(g.product, g.gpus, g.nodes * 2, g.mig) for g in s.shapes)
    cluster = Cluster(
        ClusterConfig(state_dir=state / "cluster", cpu_nodes=2, gpu_shapes=doubled), binaries.ensure()
    )
    trace = gpu_trace(minutes=s.minutes, gpus=side_gpus(s.shapes), load=s.load, seed=s.seed)
    asked = demand(trace, side_gpus(s.shapes), s.minutes)
    log(
        f"{len(trace)} jobs ({sum(1 for e in trace if job_size(e.name))} GPU), GPU demand {asked:.2f} x "
        f"a side's GPUs over {s.minutes:g} simulated minutes; state in {state}"
    )
    cluster.start()
    ok = False
    try:
        label_sides(cluster)
        results = asyncio.run(replay(cluster, state, s, trace))
        ok = True
        return results
    finally:
        cluster.stop()
        if ok:
            shutil.rmtree(state, ignore_errors=True)
        else:
            log(f"logs kept in {state}")


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--gpu-shape", action="append", help="PRODUCT:GPUS:NODES per side (repeatable)")
    parser.add_argument("--minutes", type=float, default=10.0, help="simulated minutes of arrivals")
    parser.add_argument("--scale", type=float, default=0.5, help="wall seconds per simulated second")
    parser.add_argument("--load", type=float, default=2.0, help="GPU demand / GPU capacity")
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument("--order", choices=("Fifo", "Backfill"), default="Fifo")
    parser.add_argument("--backfill-limit", type=float, default=900.0, help="simulated seconds (Backfill)")
    parser.add_argument("--scale-down-delay", type=float, default=60.0, help="HRAs' delay, simulated seconds")
    parser.add_argument("--boot-delay", type=float, default=0.0, help="virtual runner boot, wall seconds")
    parser.add_argument("--cpu-max", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=1800.0)
    parser.add_argument("--quick", action="store_true", help="2 simulated minutes at scale 0.25")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    shapes = tuple(
        GpuShape.parse(t)
        for t in args.gpu_shape or ("NVIDIA-H100-80GB-HBM3:8:2", "NVIDIA-A100-SXM4-80GB:8:1")
    )
    for g in shapes:
        if g.product not in PRODUCTS.values() or g.mig:
            raise SystemExit(f"--gpu-shape {g}: whole GPUs of {', '.join(PRODUCTS.values())} only")
    settings = Settings(
        shapes=shapes,
        minutes=2.0 if args.quick else args.minutes,
        scale=0.25 if args.quick else args.scale,
        load=args.load,
        seed=args.seed,
        order=args.order,
        backfill_s=args.backfill_limit,
        scale_down_delay_s=args.scale_down_delay,
        boot_delay_s=args.boot_delay,
        cpu_max=args.cpu_max,
        timeout_s=args.timeout,
    )
    results = run(settings)
    if args.json is not None:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2) + "\n")
    print(table(results, settings.scale))
    for r in results:
        print(json.dumps(asdict(r)), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
