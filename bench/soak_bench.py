"""Soak under chaos (issue 13 item 6, the long version of tests/integration/test_chaos.py): a fresh
local control plane, ``runnerd controller`` as a process SIGKILLed ``--kills`` times during a burst of
``--jobs`` jobs, while ghsim drops, duplicates and reorders ``workflow_job`` deliveries and a proxy
answers 5xx to a fraction of the controller's GitHub calls (half after GitHub acted).

    .venv/bin/python bench/soak_bench.py --jobs 150 --waves 15 --kills 3 --seed 11

Prints one JSON object: jobs completed / succeeded (a job whose runner was killed does not
succeed), queue wait p50/p95/max against the safety-net bound, faults injected, controller downtime,
what was left at the end, and how long the fleet took to get back to zero after the last job. Exit
status 1 if a job was lost or killed, a runner, Runner or pod was left, or the fleet did not converge.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from devcluster import binaries  # noqa: E402
from devcluster.chaos import Plan, run  # noqa: E402
from devcluster.cluster import Cluster, ClusterConfig  # noqa: E402
from devcluster.observe import percentile  # noqa: E402
from devcluster.stack import install_crds  # noqa: E402

CRD_DIR = ROOT / "charts" / "actions-runner-controller" / "crds"


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--jobs", type=int, default=150)
    p.add_argument("--waves", type=int, default=15)
    p.add_argument("--wave-gap", type=float, default=4.0, help="seconds between waves")
    p.add_argument("--job-seconds", type=float, nargs=2, default=(2.0, 8.0), metavar=("MIN", "MAX"))
    p.add_argument("--kills", type=int, default=3)
    p.add_argument("--down", type=float, default=3.0, help="seconds the controller stays dead per kill")
    p.add_argument("--drop", type=float, default=0.3)
    p.add_argument("--duplicate", type=float, default=0.1)
    p.add_argument("--reorder", type=float, default=0.1)
    p.add_argument("--github-5xx", type=float, default=0.05)
    p.add_argument("--poll-bound", type=float, default=15.0, help="--webhook-poll-bound in seconds")
    p.add_argument("--duration", default="30s", help="the HRA trigger's reservation duration")
    p.add_argument("--max-replicas", type=int, default=40)
    p.add_argument("--within", type=float, default=900.0, help="give up after this many seconds")
    return p.parse_args(argv)


async def soak(args: argparse.Namespace, state: Path) -> dict[str, object]:
    plan = Plan(
        seed=args.seed,
        jobs=args.jobs,
        waves=args.waves,
        wave_gap_s=args.wave_gap,
        job_s=tuple(args.job_seconds),
        kills=args.kills,
        down_s=args.down,
        drop=args.drop,
        duplicate=args.duplicate,
        reorder=args.reorder,
        github_5xx=args.github_5xx,
        poll_bound_s=args.poll_bound,
        duration=args.duration,
        max_replicas=args.max_replicas,
    )
    cluster = Cluster(
        ClusterConfig(state_dir=state / "cluster", cpu_nodes=2, gpu_shapes=()), binaries.ensure()
    )
    await asyncio.to_thread(cluster.start)
    try:
        install_crds(cluster, CRD_DIR)
        cluster.request("POST", "/api/v1/namespaces", {"metadata": {"name": "soak"}})
        began = time.monotonic()
        out = await run(cluster, "soak", plan, state / "logs", within=args.within)
        wall = time.monotonic() - began
    finally:
        await asyncio.to_thread(cluster.stop)
    waits = out.queue_waits
    bound = plan.poll_bound_s + plan.sync_period_s + out.downtime_s
    return {
        "plan": {k: v for k, v in vars(args).items() if k != "within"},
        "jobs": out.jobs,
        "completed": out.completed,
        "succeeded": out.succeeded,
        "not_succeeded": out.not_succeeded,
        "queue_wait_s": {
            "p50": round(percentile(waits, 50) or 0, 1),
            "p95": round(percentile(waits, 95) or 0, 1),
            "max": round(max(waits, default=0), 1),
        },
        "safety_net_bound_s": round(bound, 1),
        "kills": out.kills,
        "controller_downtime_s": round(out.downtime_s, 1),
        "github_calls": out.api_calls,
        "injected_5xx": out.injected_5xx,
        "injected_5xx_after_github_acted": out.injected_5xx_after,
        "left": {
            "runners": out.left_runners,
            "runner_objects": out.left_runner_objects,
            "pods": out.left_pods,
        },
        "converged_s_after_last_job": None if out.converged_s is None else round(out.converged_s, 1),
        "wall_s": round(wall, 1),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    state = Path(tempfile.mkdtemp(prefix="soak-bench-"))
    try:
        result = asyncio.run(soak(args, state))
    except BaseException:
        print(f"soak_bench: failed; state and logs kept in {state}", file=sys.stderr)
        raise
    print(json.dumps(result, indent=2))
    left = result["left"]
    ok = (
        result["completed"] == result["jobs"] == result["succeeded"]
        and isinstance(left, dict)
        and not any(left.values())
        and result["converged_s_after_last_job"] is not None
    )
    if ok:
        shutil.rmtree(state, ignore_errors=True)
    else:
        print(f"soak_bench: logs kept in {state}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
