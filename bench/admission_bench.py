"""Benchmark: one capacity-admission pass (``runnerd.reconcile.admission.admit``) at growing scale.

The admission controller runs one pass for the whole cluster whenever capacity or the queue changes
(docs/gpu-sizing.md, "Admission"), so the pass must stay well under the 1 s in which freed capacity
should reach the next job. Each scenario: N GPU nodes of 8 H100 (tainted as the GPU operator
taints them), their GPUs partly taken by bound pods (seeded), J waiting jobs of 1/2/4/8 GPUs with the
product selector and the GPU toleration, one Fifo pool. Prints the median of five passes per
scenario and a JSON line.

Run:  .venv/bin/python bench/admission_bench.py   (``--quick``: the two smaller scenarios)
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from decimal import Decimal

from runnerd.reconcile.admission import NodeFacts, PodFacts, PoolRules, Taint, WaitingJob, admit

GPU = "nvidia.com/gpu"
H100 = "NVIDIA-H100-80GB-HBM3"
PRODUCT = "nvidia.com/gpu.product"
SCENARIOS = ((40, 2), (200, 20), (1000, 200), (5000, 500))  # (waiting jobs, nodes)


def world(jobs: int, nodes: int, seed: int = 16) -> tuple[list[WaitingJob], list[NodeFacts], list[PodFacts]]:
    rng = random.Random(seed)
    node_list = [
        NodeFacts(
            f"gpu-node-{i}",
            {GPU: Decimal(8), "cpu": Decimal(96), "memory": Decimal(2**40), "pods": Decimal(110)},
            {PRODUCT: H100},
            (Taint(GPU, "present", "NoSchedule"),),
        )
        for i in range(nodes)
    ]
    pods = [
        PodFacts(f"busy-{i}-{k}", {GPU: Decimal(1), "cpu": Decimal(1), "pods": Decimal(1)}, node=n.name)
        for i, n in enumerate(node_list)
        for k in range(rng.choice((0, 3, 5, 8)))
    ]
    toleration = ({"key": GPU, "operator": "Exists", "effect": "NoSchedule"},)
    waiting = [
        WaitingJob(
            f"job {i}",
            "ci/gpu",
            1_000.0 + i,
            {GPU: Decimal(rng.choice((1, 2, 4, 8))), "cpu": Decimal(2), "pods": Decimal(1)},
            {PRODUCT: H100},
            toleration,
        )
        for i in range(jobs)
    ]
    return waiting, node_list, pods


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    results = []
    for jobs, nodes in SCENARIOS[:2] if args.quick else SCENARIOS:
        waiting, node_list, pods = world(jobs, nodes)
        rules = {"ci/gpu": PoolRules()}
        times = []
        for _ in range(5):
            start = time.perf_counter()
            plan = admit(waiting, node_list, pods, rules, now=10_000.0)
            times.append(time.perf_counter() - start)
        placed = sum(1 for d in plan.decisions if type(d).__name__ == "Place")
        row = {"jobs": jobs, "nodes": nodes, "pods": len(pods), "placed": placed}
        row["pass_ms"] = round(statistics.median(times) * 1000, 1)
        results.append(row)
        where = f"{jobs:>6} waiting jobs, {nodes:>4} nodes, {len(pods):>5} pods"
        print(f"{where}: {row['pass_ms']:>8.1f} ms a pass ({placed} placed)")
    print(json.dumps({"admission_pass": results}))


if __name__ == "__main__":
    main()
