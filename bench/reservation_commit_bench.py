"""What one group commit of webhook reservations costs the API server, by how many jobs are live.

The webhook intake answers a delivery once its reservation is durable; a group commit (the writes
of up to 16 deliveries: ghsim's and the benchmarks' parallelism) is one request. Three shapes of
that request, each timed ``--commits`` times in a row against the real control plane (devcluster),
with one watch on the HRAs open (the controller's informer), for an HRA holding ``--live`` entries:

* ``list``: what :class:`runnerd.controller.reservation_writer.ReservationWriter` sends: a JSON patch
  that ``test``s the whole ``capacityReservations`` list it read and ``replace``s it (16 entries in,
  16 out, so the size stays);
* ``delta``: a JSON patch of the 16 changes only (``test`` + ``remove`` of the first entries by
  name, ``add`` at the end): the request is small, the stored object is not;
* ``journal``: a small object per commit (a ConfigMap holding the 16 entries), the HRA untouched:
  the cost a commit would have if reservations were journalled apart from the HRA and folded into
  it later.

    .venv/bin/python bench/reservation_commit_bench.py [--live 0 200 1000] [--commits 40]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from devcluster import binaries  # noqa: E402
from devcluster.cluster import Cluster, ClusterConfig, GpuShape  # noqa: E402
from devcluster.stack import install_crds  # noqa: E402
from runnerd.controller.common import HORIZONTAL_RUNNER_AUTOSCALERS  # noqa: E402
from runnerd.kube.client import KubeClient  # noqa: E402
from runnerd.kube.resources import CONFIGMAPS  # noqa: E402

BATCH = 16
NAMESPACE = "bench-commit"


def entry(job: int) -> dict[str, Any]:
    return {
        "name": f"job-{job}@acme/svc-{job % 100:03d}",
        "effectiveTime": "2026-12-07T10:00:00Z",
        "expirationTime": "2026-12-07T10:30:00Z",
        "replicas": 1,
    }


def hra(name: str, live: int) -> dict[str, Any]:
    return {
        "apiVersion": "actions.summerwind.dev/v1alpha1",
        "kind": "HorizontalRunnerAutoscaler",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "scaleTargetRef": {"name": "bench"},
            "minReplicas": 0,
            "maxReplicas": 100_000,
            "scaleUpTriggers": [{"githubEvent": {"workflowJob": {}}, "duration": "30m"}],
            "capacityReservations": [entry(j) for j in range(live)],
        },
    }


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))]


async def watch_hras(kube: KubeClient, seen: list[int]) -> None:
    """One watcher, as the controller's informer: every event is read and decoded."""
    version = (await kube.list(HORIZONTAL_RUNNER_AUTOSCALERS, namespace=NAMESPACE)).resource_version
    while True:
        async for _event in kube.watch(HORIZONTAL_RUNNER_AUTOSCALERS, version, namespace=NAMESPACE):
            seen[0] += 1


async def measure(kube: KubeClient, shape: str, live: int, commits: int) -> dict[str, Any]:
    name = f"{shape}-{live}"
    obj = await kube.create(HORIZONTAL_RUNNER_AUTOSCALERS, hra(name, live), namespace=NAMESPACE)
    current = list(obj["spec"].get("capacityReservations") or [])
    next_job = live
    times: list[float] = []
    for n in range(commits):
        new = [entry(next_job + i) for i in range(BATCH)]
        next_job += BATCH
        started = time.perf_counter()
        if shape == "list":
            kept = current[BATCH:] if len(current) >= BATCH else current
            replaced = kept + new
            patch = [
                {"op": "test", "path": "/spec/capacityReservations", "value": current},
                {"op": "replace", "path": "/spec/capacityReservations", "value": replaced},
            ]
            await kube.patch(
                HORIZONTAL_RUNNER_AUTOSCALERS, name, patch, namespace=NAMESPACE, patch_type="json"
            )
            current = replaced
        elif shape == "delta":
            ops: list[dict[str, Any]] = []
            removed = min(BATCH, len(current))
            for i in range(removed):  # the first entries, each checked by name before it goes
                ops.append(
                    {"op": "test", "path": "/spec/capacityReservations/0/name", "value": current[i]["name"]}
                )
                ops.append({"op": "remove", "path": "/spec/capacityReservations/0"})
            ops += [{"op": "add", "path": "/spec/capacityReservations/-", "value": e} for e in new]
            await kube.patch(HORIZONTAL_RUNNER_AUTOSCALERS, name, ops, namespace=NAMESPACE, patch_type="json")
            current = current[removed:] + new
        else:
            body = {"metadata": {"name": f"{name}-{n}"}, "data": {"ops": json.dumps(new)}}
            await kube.create(CONFIGMAPS, body, namespace=NAMESPACE)
        times.append(time.perf_counter() - started)
    p50 = pct(times, 0.5)
    return {
        "shape": shape,
        "live": live,
        "commits": commits,
        "p50_ms": round(1000 * p50, 1),
        "p99_ms": round(1000 * pct(times, 0.99), 1),
        "deliveries_per_s_at_16_in_flight": round(BATCH / p50),
        "request_bytes": len(json.dumps(patch if shape == "list" else ops if shape == "delta" else body)),
    }


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    state = Path(tempfile.mkdtemp(prefix="runnerd-commit-bench-"))
    cluster = Cluster(
        ClusterConfig(state_dir=state, cpu_nodes=1, gpu_shapes=(GpuShape(nodes=0),), max_pods=110),
        binaries.ensure(),
    )
    cluster.start()
    try:
        install_crds(cluster)
        cluster.request("POST", "/api/v1/namespaces", {"metadata": {"name": NAMESPACE}})
        kube = await KubeClient.connect(str(cluster.kubeconfig))
        seen = [0]
        watcher = asyncio.create_task(watch_hras(kube, seen))
        results = []
        try:
            for live in args.live:
                for shape in ("list", "delta", "journal"):
                    results.append(await measure(kube, shape, live, args.commits))
                    print(json.dumps(results[-1]), file=sys.stderr)
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            await kube.close()
        return results
    finally:
        cluster.stop()
        shutil.rmtree(state, ignore_errors=True)  # etcd data of a throwaway control plane


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--live", type=int, nargs="+", default=[0, 200, 1000])
    parser.add_argument("--commits", type=int, default=40)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results = asyncio.run(run(args))
    print("| live jobs | shape | commit p50 / p99 | deliveries/s at 16 in flight | request bytes |")
    print("|---:|---|---:|---:|---:|")
    for r in results:
        print(
            f"| {r['live']:,} | {r['shape']} | {r['p50_ms']} / {r['p99_ms']} ms | "
            f"{r['deliveries_per_s_at_16_in_flight']} | {r['request_bytes']:,} |"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
